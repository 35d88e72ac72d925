# cpu/: the fp32 reference of every operation, SIMD expert kernels, NUMA-pinned thread teams.
noinst_LIBRARIES += cpu/libmtcpu.a
cpu_libmtcpu_a_SOURCES = \
	cpu/convert.c cpu/convert.h
