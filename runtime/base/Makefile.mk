# runtime/base/: status and logging, file and JSON helpers, clock, RNG, dtypes. Depends on nothing
# of ours; cpu/, io/, kernels/ and the rest of runtime/ link it.
noinst_LIBRARIES += runtime/base/libmtbase.a
runtime_base_libmtbase_a_SOURCES = \
	runtime/base/status.c runtime/base/status.h \
	runtime/base/file_util.c runtime/base/file_util.h runtime/base/file_kind.h \
	runtime/base/out_file.c runtime/base/out_file.h \
	runtime/base/json_num.c runtime/base/json_num.h \
	runtime/base/json_kind.c runtime/base/json_kind.h \
	runtime/base/json_text.c runtime/base/json_text.h \
	runtime/base/dtype.c runtime/base/dtype.h \
	runtime/base/clock.c runtime/base/clock.h \
	runtime/base/rng.c runtime/base/rng.h \
	runtime/base/size_text.c runtime/base/size_text.h \
	runtime/base/mem_available.c runtime/base/mem_available.h
