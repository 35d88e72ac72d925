/* SPDX-License-Identifier: MIT */
/*
 * fuzz_profile.c - libFuzzer target: an arbitrary byte string as a hardware profile (--hw).
 *
 * The one idea: the input goes through mt_hwprofile_parse(), the parser `moetier plan --hw` and
 * `bench` use, and whatever it accepts must be a profile the planner can trust: counts within
 * their arrays, no negative rate, strings terminated. A violation traps, so libFuzzer reports it.
 * Build and run: tests/fuzz/run.sh profile.
 *
 * fuzz-sources: runtime/plan/hwprofile.c runtime/base/status.c runtime/base/file_util.c
 * fuzz-sources: runtime/base/json_num.c runtime/base/out_file.c
 */
#include <config.h>

#include "runtime/plan/hwprofile.h"
#include "runtime/base/status.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check_(bool ok)
{
    if (!ok) {
        __builtin_trap();
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct mt_hwprofile *p = malloc(sizeof(*p));
    char *text = malloc(size + 1);

    mt_log_set_quiet(true);
    if (p == NULL || text == NULL) {
        free(p);
        free(text);
        return 0;
    }
    memcpy(text, data, size);
    text[size] = '\0';
    if (mt_hwprofile_parse(text, "fuzz-input", p) == MT_OK) {
        check_(p->version == MT_HWPROFILE_VERSION);
        check_(p->n_disks >= 0 && p->n_disks <= MT_HWPROFILE_MAX_DISKS);
        check_(p->cpu.n_nodes >= 0 && p->cpu.n_nodes <= MT_HWPROFILE_MAX_NODES);
        check_(p->pcie.n_h2d >= 0 && p->pcie.n_h2d <= MT_HWPROFILE_MAX_CURVE);
        check_(p->pcie.n_d2h >= 0 && p->pcie.n_d2h <= MT_HWPROFILE_MAX_CURVE);
        check_(memchr(p->source, '\0', sizeof(p->source)) != NULL);
        check_(p->gpu.hbm_read_gbps >= 0 && p->cpu.read_gbps >= 0 && p->pcie.h2d_gbps >= 0);
        for (int i = 0; i < p->n_disks; i++) {
            check_(p->disks[i].best_gbps >= 0 && p->disks[i].n_points >= 0 &&
                   p->disks[i].n_points <= MT_HWPROFILE_MAX_POINTS);
        }
        check_(mt_hwprofile_disk_total_gbps(p) >= 0);
    }
    free(text);
    free(p);
    return 0;
}
