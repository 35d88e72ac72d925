# runtime/model/: safetensors reader and writer, config.json, tensor inventory and registry.
runtime_libmtruntime_a_SOURCES += \
	runtime/model/safetensors.c runtime/model/safetensors.h \
	runtime/model/config.c runtime/model/config.h \
	runtime/model/model.c runtime/model/model.h
