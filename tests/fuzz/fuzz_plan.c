/* SPDX-License-Identifier: MIT */
/*
 * fuzz_plan.c - libFuzzer target: an arbitrary byte string as a plan file (plan --check, run
 * --plan).
 *
 * The one idea: the input is written to an in-memory file and loaded with mt_plan_load(), the
 * same path a plan on disk takes (file read, JSON, version tag, fields, dims hash, tiers), and
 * whatever it accepts must be a plan the engine can index: every tier code valid, decode and
 * prefill storing each expert in the same place, dims within their bounds. A violation traps.
 * Build and run: tests/fuzz/run.sh plan.
 *
 * fuzz-sources: runtime/plan/plan_file.c runtime/plan/planner.c runtime/plan/planner_cost.c
 * fuzz-sources: runtime/plan/planner_search.c runtime/plan/trace.c runtime/plan/hwprofile.c
 * fuzz-sources: runtime/model/config.c runtime/base/status.c runtime/base/file_util.c
 * fuzz-sources: runtime/base/json_num.c runtime/base/out_file.c runtime/base/rng.c
 * fuzz-sources: runtime/base/json_text.c runtime/plan/gpu_work.c runtime/plan/gpu_prefill.c
 * fuzz-sources: runtime/base/json_kind.c runtime/base/size_text.c
 */
#include <config.h>

#include "runtime/plan/planner.h"
#include "runtime/base/status.h"

#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool
is_dram_(int t)
{
    return t == MT_TIER_DRAM_CPU || t == MT_TIER_DRAM_PCIE;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int fd = -1;
    static char path[64];
    struct mt_plan *p = NULL;

    mt_log_set_quiet(true);
    if (fd < 0) {
        fd = memfd_create("fuzz-plan", 0);
        if (fd < 0) {
            __builtin_trap();
        }
        snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    }
    if (ftruncate(fd, 0) != 0 || pwrite(fd, data, size, 0) != (ssize_t)size) {
        __builtin_trap();
    }
    if (mt_plan_load(path, &p) == MT_OK) {
        size_t n = (size_t)p->n_layers * (size_t)p->n_experts;

        if (p->n_layers < 1 || p->n_layers > MT_MAX_LAYERS || p->n_experts < 1 || p->k < 1) {
            __builtin_trap();
        }
        for (size_t i = 0; i < n; i++) {
            int t = p->tiers[i];
            int pt = p->prefill_tiers[i];

            if ((t >= MT_TIER_COUNT && t != MT_TIER_NONE) ||
                (pt >= MT_TIER_COUNT && pt != MT_TIER_NONE) ||
                (t != pt && !(is_dram_(t) && is_dram_(pt)))) {
                __builtin_trap();
            }
        }
        mt_plan_destroy(p);
    } else if (p != NULL) {
        __builtin_trap();
    }
    return 0;
}
