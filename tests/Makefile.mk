# tests/: one TAP program per module, run by `make check`.
LOG_DRIVER = env AM_TAP_AWK='$(AWK)' $(SHELL) $(top_srcdir)/build-aux/tap-driver.sh
# every test runs under a time limit: a hang fails that test by name (tests/time_limit.sh)
LOG_COMPILER = $(SHELL) $(top_srcdir)/tests/time_limit.sh
EXTRA_DIST += tests/time_limit.sh
AM_TESTS_ENVIRONMENT = OMP_NUM_THREADS=2 MALLOC_PERTURB_=165 MOETIER_DEVICE=cpu \
	MT_REQUIRE_SERVE_CLIENTS=$${MT_REQUIRE_SERVE_CLIENTS:-0} \
	MT_TEST_DATA=$(abs_top_srcdir)/tests/data MT_SRCDIR=$(abs_top_srcdir) \
	MT_BUILDDIR=$(abs_top_builddir) MT_CC='$(CC)' MT_CFLAGS='$(CFLAGS)' MT_LDFLAGS='$(LDFLAGS)'; \
	export OMP_NUM_THREADS MALLOC_PERTURB_ MOETIER_DEVICE MT_REQUIRE_SERVE_CLIENTS MT_TEST_DATA \
	MT_SRCDIR MT_BUILDDIR MT_CC MT_CFLAGS MT_LDFLAGS;

noinst_LIBRARIES += tests/libmttap.a
tests_libmttap_a_SOURCES = tests/tap.c tests/tap.h tests/sha256.c
MT_TEST_LIBS = tests/libmttap.a $(MT_LIBS) $(MT_SYSLIBS)

check_PROGRAMS += tests/test_safetensors
tests_test_safetensors_LDADD = $(MT_TEST_LIBS)
check_PROGRAMS += tests/test_chat tests/test_chat_parse
check_PROGRAMS += tests/test_config
tests_test_config_LDADD = $(MT_TEST_LIBS)
check_PROGRAMS += tests/test_model
tests_test_model_LDADD = $(MT_TEST_LIBS)
tests_test_chat_LDADD = $(MT_TEST_LIBS)
tests_test_chat_parse_LDADD = $(MT_TEST_LIBS)
check_PROGRAMS += tests/test_cli_common
tests_test_cli_common_SOURCES = tests/test_cli_common.c runtime/cli/cli_common.c \
	runtime/cli/cli_autoplan.c runtime/cli/cli_progress.c runtime/cli/cli_bench.c \
	runtime/cli/cli_report.c
tests_test_cli_common_LDADD = $(MT_TEST_LIBS)

check_PROGRAMS += tests/test_out_file
tests_test_out_file_LDADD = $(MT_TEST_LIBS)
check_PROGRAMS += tests/test_status
tests_test_status_LDADD = $(MT_TEST_LIBS)
check_PROGRAMS += tests/test_tokenizer
tests_test_tokenizer_LDADD = $(MT_TEST_LIBS)
check_PROGRAMS += tests/test_hwprofile
tests_test_hwprofile_LDADD = $(MT_TEST_LIBS)
# The leaf libraries link alone: io/ and cpu/ need only the base library (the layering's proof).
check_PROGRAMS += tests/test_uring_reader
tests_test_uring_reader_SOURCES = tests/test_uring_reader.c tests/submit_faults.c \
	tests/submit_faults.h
tests_test_uring_reader_LDADD = tests/libmttap.a io/libmtio.a runtime/base/libmtbase.a \
	$(URING_LIBS) -lm
# a submit that fails without entering the kernel (tests/submit_faults.c)
tests_test_uring_reader_LDFLAGS = -Wl,--wrap=io_uring_submit
check_PROGRAMS += tests/test_read_slots
tests_test_read_slots_SOURCES = tests/test_read_slots.c tests/submit_faults.c \
	tests/submit_faults.h
tests_test_read_slots_LDADD = tests/libmttap.a io/libmtio.a runtime/base/libmtbase.a \
	$(URING_LIBS) -lm
# a submit that fails without entering the kernel (tests/submit_faults.c), and a wait that a
# signal interrupts (the test's __wrap___io_uring_get_cqe)
tests_test_read_slots_LDFLAGS = -Wl,--wrap=io_uring_submit -Wl,--wrap=__io_uring_get_cqe
check_PROGRAMS += tests/test_io_queue
tests_test_io_queue_SOURCES = tests/test_io_queue.c tests/submit_faults.c \
	tests/submit_faults.h
tests_test_io_queue_LDADD = tests/libmttap.a io/libmtio.a runtime/base/libmtbase.a \
	$(URING_LIBS) -lm
# a submit that fails without entering the kernel (tests/submit_faults.c)
tests_test_io_queue_LDFLAGS = -Wl,--wrap=io_uring_submit
# io/ and the base library alone, nothing else of runtime/ (issue 8: leaves link on their own).
check_PROGRAMS += tests/test_disk_bench
tests_test_disk_bench_LDADD = tests/libmttap.a io/libmtio.a runtime/base/libmtbase.a \
	$(URING_LIBS) -lm
check_PROGRAMS += tests/test_synth
tests_test_synth_LDADD = $(MT_TEST_LIBS)
check_PROGRAMS += tests/test_engine
tests_test_engine_SOURCES = tests/test_engine.c tests/golden.c tests/golden.h
tests_test_engine_LDADD = $(MT_TEST_LIBS)
# the cross-backend harness: executors (and ops) against the reference
check_PROGRAMS += tests/test_moe_sum
tests_test_moe_sum_LDADD = $(MT_TEST_LIBS)
check_PROGRAMS += tests/test_executors
tests_test_executors_SOURCES = tests/test_executors.c tests/harness.c tests/harness.h
tests_test_executors_LDADD = $(MT_TEST_LIBS)
check_PROGRAMS += tests/test_ref_ops
tests_test_ref_ops_LDADD = tests/libmttap.a cpu/libmtcpu.a runtime/base/libmtbase.a \
	$(HWLOC_LIBS) $(OPENMP_CFLAGS) -lm
check_PROGRAMS += tests/test_sampler
check_PROGRAMS += tests/test_serve_openai
tests_test_serve_openai_LDADD = $(MT_SERVE_LIBS) $(MT_TEST_LIBS) $(MHD_LIBS)
check_PROGRAMS += tests/test_serve_guard
tests_test_serve_guard_LDADD = $(MT_SERVE_LIBS) $(MT_TEST_LIBS)
check_PROGRAMS += tests/test_serve_deadline
tests_test_serve_deadline_LDADD = $(MT_SERVE_LIBS) $(MT_TEST_LIBS)
check_PROGRAMS += tests/test_serve_metrics
tests_test_serve_metrics_LDADD = $(MT_SERVE_LIBS) $(MT_TEST_LIBS)
tests_test_sampler_SOURCES = tests/test_sampler.c tests/sampler_ref.h
tests_test_sampler_LDADD = $(MT_TEST_LIBS)
check_PROGRAMS += tests/test_logprob
tests_test_logprob_LDADD = $(MT_TEST_LIBS)
check_PROGRAMS += tests/test_json_prefix
tests_test_json_prefix_LDADD = $(MT_TEST_LIBS)
check_PROGRAMS += tests/test_json_constraint
tests_test_json_constraint_LDADD = $(MT_TEST_LIBS)
check_PROGRAMS += tests/test_json_schema
tests_test_json_schema_SOURCES = tests/test_json_schema.c tests/json_validate.c \
	tests/json_validate.h
tests_test_json_schema_LDADD = $(MT_TEST_LIBS)
check_PROGRAMS += tests/test_trace
tests_test_trace_LDADD = $(MT_TEST_LIBS)
check_PROGRAMS += tests/test_planner
tests_test_planner_LDADD = $(MT_TEST_LIBS)
EXTRA_DIST += bench/profiles

TESTS += $(check_PROGRAMS)
TESTS += tests/test_inspect.sh
TESTS += tests/test_run.sh tests/test_gpu_run.sh tests/test_gpu_plan.sh
TESTS += tests/test_chat_cli.sh
TESTS += tests/test_serve.sh tests/test_serve_clients.sh tests/test_serve_tools.sh \
	tests/test_serve_logprobs.sh tests/test_serve_sampling.sh tests/test_serve_json.sh
EXTRA_DIST += tests/test_serve.sh tests/test_serve_clients.sh tests/test_serve_tools.sh \
	tests/test_serve_logprobs.sh tests/test_serve_sampling.sh tests/test_serve_json.sh \
	tests/serve/lib_serve.sh \
	tests/serve/package.json tests/serve/package-lock.json tests/serve/client.mjs \
	tests/serve/page.py tests/serve/half_close.c tests/serve/idle_gets.c \
	tests/serve/get_twice.c tests/serve/http_read.h
TESTS += tests/test_tokenize_cli.sh
TESTS += tests/test_bench.sh
EXTRA_DIST += tests/test_bench.sh
TESTS += tests/test_plan.sh
TESTS += tests/test_plan_run.sh
TESTS += tests/test_autoplan.sh
EXTRA_DIST += tests/test_autoplan.sh
TESTS += tests/test_stream_run.sh
EXTRA_DIST += tests/test_stream_run.sh
TESTS += tests/test_run_report.sh tests/test_faults.sh tests/test_chat_sigint.sh
TESTS += tests/test_nocuda.sh
# test_alloc_faults.sh preloads a shared object, which automake builds only through libtool: so
# a rule of its own, without CFLAGS (a sanitizer build's flags have no place in it)
TESTS += tests/test_alloc_faults.sh
EXTRA_DIST += tests/test_alloc_faults.sh tests/fault_alloc.c
check_DATA = tests/fault_alloc.so
tests/fault_alloc.so: $(srcdir)/tests/fault_alloc.c
	$(AM_V_CC)$(MKDIR_P) tests && $(CC) -O2 -g -Wall -shared -fPIC -o $@ \
		$(srcdir)/tests/fault_alloc.c
CLEANFILES += tests/fault_alloc.so
EXTRA_DIST += tests/test_nocuda.sh
EXTRA_DIST += tests/test_run_report.sh tests/test_faults.sh tests/test_chat_sigint.sh
TESTS += tests/test_install.sh
EXTRA_DIST += tests/test_install.sh tests/embed/embed.c
EXTRA_DIST += tests/test_plan_run.sh
TESTS += tests/test_inputs.sh
EXTRA_DIST += tests/test_inputs.sh
TESTS += tests/test_outputs.sh
EXTRA_DIST += tests/test_outputs.sh
TESTS += tests/test_synth_cli.sh
EXTRA_DIST += tests/test_synth_cli.sh
EXTRA_DIST += tests/test_plan.sh
EXTRA_DIST += tests/test_run.sh tests/test_gpu_run.sh tests/test_gpu_plan.sh
EXTRA_DIST += tests/test_chat_cli.sh
EXTRA_DIST += tests/test_tokenize_cli.sh
EXTRA_DIST += tests/test_inspect.sh tests/lib.sh
EXTRA_DIST += tests/data tests/reference/README.md tests/reference/HF_NOTES.md \
	tests/reference/make_golden.py tests/reference/check_small_tokenizers.py \
	tests/reference/tiny_bpe.py
# tests/fuzz: libFuzzer targets, one per parser of untrusted input (tests/fuzz/run.sh; CI).
EXTRA_DIST += tests/fuzz/run.sh tests/fuzz/corpus tests/fuzz/make_corpus.py \
	tests/fuzz/safetensors.dict
EXTRA_DIST += tests/fuzz/fuzz_config.c
EXTRA_DIST += tests/fuzz/fuzz_safetensors.c
EXTRA_DIST += tests/fuzz/fuzz_tokenizer.c
EXTRA_DIST += tests/fuzz/fuzz_profile.c tests/fuzz/fuzz_plan.c tests/fuzz/fuzz_trace.c \
	tests/fuzz/profile.dict tests/fuzz/plan.dict tests/fuzz/trace.dict
EXTRA_DIST += tests/fuzz/fuzz_serve_request.c tests/fuzz/serve_request.dict
EXTRA_DIST += tests/fuzz/fuzz_tool_calls.c tests/fuzz/tool_calls.dict
EXTRA_DIST += tests/fuzz/fuzz_json_prefix.c tests/fuzz/json_prefix.dict
EXTRA_DIST += tests/fuzz/fuzz_json_schema.c tests/fuzz/json_schema.dict

# io/ stands alone: its test links io/ and the base library only, never runtime/.
check_PROGRAMS += tests/test_expert_source
tests_test_expert_source_LDADD = tests/libmttap.a io/libmtio.a runtime/base/libmtbase.a \
	$(URING_LIBS) -lpthread -lm
check_PROGRAMS += tests/test_provider_stream
tests_test_provider_stream_LDADD = $(MT_TEST_LIBS)
check_PROGRAMS += tests/test_cpu_experts
tests_test_cpu_experts_LDADD = $(MT_TEST_LIBS)
check_PROGRAMS += tests/test_expert_pool
tests_test_expert_pool_LDADD = $(MT_TEST_LIBS)
check_PROGRAMS += tests/test_cpu_topology
tests_test_cpu_topology_LDADD = $(MT_TEST_LIBS)
# GPU kernels against the CPU reference (1..0 # SKIP without a device)
EXTRA_DIST += tests/gpu_test.h
check_PROGRAMS += tests/test_cublas_lazy
tests_test_cublas_lazy_LDADD = $(MT_TEST_LIBS)
check_PROGRAMS += tests/test_gpu_device
tests_test_gpu_device_LDADD = $(MT_TEST_LIBS)
check_PROGRAMS += tests/test_gpu_gemv
tests_test_gpu_gemv_LDADD = $(MT_TEST_LIBS)
check_PROGRAMS += tests/test_gpu_indexer
tests_test_gpu_indexer_LDADD = $(MT_TEST_LIBS)
check_PROGRAMS += tests/test_gpu_mla
tests_test_gpu_mla_LDADD = $(MT_TEST_LIBS)
check_PROGRAMS += tests/test_gpu_moe
tests_test_gpu_moe_LDADD = $(MT_TEST_LIBS)
check_PROGRAMS += tests/test_gpu_ops
tests_test_gpu_ops_LDADD = $(MT_TEST_LIBS)
check_PROGRAMS += tests/test_gpu_gemm
tests_test_gpu_gemm_LDADD = $(MT_TEST_LIBS)
check_PROGRAMS += tests/test_gpu_step
tests_test_gpu_step_LDADD = $(MT_TEST_LIBS)
# the GPU engine against HF's golden sets and the CPU engine
check_PROGRAMS += tests/test_gpu_engine
tests_test_gpu_engine_SOURCES = tests/test_gpu_engine.c tests/golden.c tests/golden.h
tests_test_gpu_engine_LDADD = $(MT_TEST_LIBS)
check_PROGRAMS += tests/test_gpu_hetero
tests_test_gpu_hetero_SOURCES = tests/test_gpu_hetero.c tests/golden.c tests/golden.h
tests_test_gpu_hetero_LDADD = $(MT_TEST_LIBS)
