# bench/: benchmark programs (never run by make check) and bench/results/.
EXTRA_DIST += bench/results
noinst_PROGRAMS += bench/bench_tokenizer
bench_bench_tokenizer_LDADD = $(MT_LIBS) $(MT_SYSLIBS)
EXTRA_DIST += bench/tokenizer_hf.py bench/tokenizer_codepoints.py bench/vendor_h200.py
EXTRA_DIST += bench/plain_stream.c bench/plain_memcpy.cu bench/gemv_timeline.cu
noinst_PROGRAMS += bench/bench_experts
bench_bench_experts_LDADD = $(MT_LIBS) $(MT_SYSLIBS)
noinst_PROGRAMS += bench/bench_cpu_experts
bench_bench_cpu_experts_LDADD = $(MT_LIBS) $(MT_SYSLIBS)
noinst_PROGRAMS += bench/bench_sampler
bench_bench_sampler_SOURCES = bench/bench_sampler.c tests/sampler_ref.h
bench_bench_sampler_LDADD = $(MT_LIBS) $(MT_SYSLIBS)
EXTRA_DIST += bench/serve_load.sh
if MT_HAVE_CUDA
noinst_PROGRAMS += bench/bench_kernels
bench_bench_kernels_LDADD = $(MT_LIBS) $(MT_SYSLIBS)
else
EXTRA_DIST += bench/bench_kernels.c
endif
# tests/reference/dump_logits: every logit of the golden sets to one file, to prove a refactoring
# bit-exact (cmp before.bin after.bin); built here so that it cannot rot.
noinst_PROGRAMS += tests/reference/dump_logits
tests_reference_dump_logits_LDADD = $(MT_LIBS) $(MT_SYSLIBS)
