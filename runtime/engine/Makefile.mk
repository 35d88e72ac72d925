# runtime/engine/: the forward pass, KV cache, MoE dispatch to executors, expert provider,
# generation session.
runtime_libmtruntime_a_SOURCES += \
	runtime/engine/engine.c runtime/engine/engine.h
