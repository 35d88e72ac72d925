/* SPDX-License-Identifier: MIT */
/*
 * fuzz_trace.c - libFuzzer target: an arbitrary byte string as an activation trace (plan
 * --trace).
 *
 * The one idea: the input is written to an in-memory file and loaded with mt_trace_load(), the
 * same path a trace on disk takes, and whatever it accepts must give the planner sane numbers:
 * every activation probability in [0, 1], every layer's counts summing to its tokens x k. A
 * violation traps. Build and run: tests/fuzz/run.sh trace.
 *
 * fuzz-sources: runtime/plan/trace.c runtime/base/status.c runtime/base/file_util.c
 * fuzz-sources: runtime/base/json_num.c runtime/base/out_file.c runtime/base/json_kind.c
 */
#include <config.h>

#include "runtime/plan/trace.h"
#include "runtime/base/status.h"

#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int fd = -1;
    static char path[64];
    struct mt_trace *t = NULL;

    mt_log_set_quiet(true);
    if (fd < 0) {
        fd = memfd_create("fuzz-trace", 0);
        if (fd < 0) {
            __builtin_trap();
        }
        snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    }
    if (ftruncate(fd, 0) != 0 || pwrite(fd, data, size, 0) != (ssize_t)size) {
        __builtin_trap();
    }
    if (mt_trace_load(path, &t) == MT_OK) {
        int L = mt_trace_n_layers(t);
        int E = mt_trace_n_experts(t);

        for (int l = 0; l < L; l++) {
            uint64_t sum = 0;

            for (int e = 0; e < E; e++) {
                double p = mt_trace_probability(t, l, e);

                if (!(p >= 0.0 && p <= 1.0)) {
                    __builtin_trap();
                }
                sum += mt_trace_count(t, l, e);
            }
            if (sum != mt_trace_layer_tokens(t, l) * (uint64_t)mt_trace_k(t)) {
                __builtin_trap();
            }
        }
        mt_trace_destroy(t);
    } else if (t != NULL) {
        __builtin_trap();
    }
    return 0;
}
