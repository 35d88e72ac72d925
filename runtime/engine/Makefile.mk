# runtime/engine/: the forward pass, KV cache, MoE dispatch to executors, expert provider,
# generation session.
runtime_libmtruntime_a_SOURCES += \
	runtime/engine/engine.c runtime/engine/engine.h runtime/engine/engine_impl.h \
	runtime/engine/weights.c runtime/engine/attention.c runtime/engine/moe.c \
	runtime/engine/engine_gpu.c runtime/engine/engine_gpu_attn.c runtime/engine/engine_gpu_impl.h \
	runtime/engine/engine_gpu_moe.c \
	runtime/engine/kv_cache.c runtime/engine/kv_cache.h \
	runtime/engine/executor.c runtime/engine/executor.h \
	runtime/engine/executor_cpu_team.c runtime/engine/executor_cpu_team.h \
	runtime/engine/expert_provider.c runtime/engine/expert_provider.h \
	runtime/engine/provider_tiered.c \
	runtime/engine/provider_stream.c runtime/engine/provider_stream.h \
	runtime/engine/session.c runtime/engine/session.h
