# cpu/: the fp32 reference of every operation, SIMD expert kernels, NUMA-pinned thread teams.
noinst_LIBRARIES += cpu/libmtcpu.a
cpu_libmtcpu_a_SOURCES = \
	cpu/convert.c cpu/convert.h
cpu_libmtcpu_a_SOURCES += cpu/ref_ops.h cpu/ref_linear.c cpu/ref_norm.c cpu/ref_rope.c \
	cpu/ref_indexer.c cpu/ref_attention.c cpu/ref_moe.c
cpu_libmtcpu_a_SOURCES += cpu/isa.c cpu/isa.h cpu/topology.c cpu/topology.h cpu/team.c cpu/team.h \
	cpu/stream.c cpu/stream.h cpu/flops.c cpu/flops.h cpu/amx_config.h
cpu_libmtcpu_a_SOURCES += cpu/experts.c cpu/experts.h cpu/experts_impl.h cpu/experts_tile.h \
	cpu/experts_avx2.c cpu/experts_avx512.c cpu/experts_dot.c cpu/experts_lut.c cpu/experts_amx.c \
	cpu/experts_amx_tiles.c cpu/experts_amx_small.c cpu/transpose16.h cpu/experts_bench.c \
	cpu/experts_bench.h
