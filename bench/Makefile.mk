# bench/: benchmark programs (never run by make check) and bench/results/.
EXTRA_DIST += bench/results
noinst_PROGRAMS += bench/bench_tokenizer
bench_bench_tokenizer_LDADD = $(MT_LIBS) $(MT_SYSLIBS)
EXTRA_DIST += bench/tokenizer_hf.py
EXTRA_DIST += bench/plain_stream.c bench/plain_memcpy.cu
noinst_PROGRAMS += bench/bench_experts
bench_bench_experts_LDADD = $(MT_LIBS) $(MT_SYSLIBS)
noinst_PROGRAMS += bench/bench_cpu_experts
bench_bench_cpu_experts_LDADD = $(MT_LIBS) $(MT_SYSLIBS)
EXTRA_DIST += bench/serve_load.sh
if MT_HAVE_CUDA
noinst_PROGRAMS += bench/bench_kernels
bench_bench_kernels_LDADD = $(MT_LIBS) $(MT_SYSLIBS)
else
EXTRA_DIST += bench/bench_kernels.c
endif
