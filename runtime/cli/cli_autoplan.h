/* SPDX-License-Identifier: MIT */
/*
 * cli_autoplan.h - where run, chat and serve put the routed experts when the user gave only
 * `-m DIR`: the device, the memory budgets, the hardware profile and the plan.
 *
 * The one idea: plan only when there is a choice. When every expert fits beside the always-on
 * weights in the budget of the one device used (all in DRAM on the CPU engine, all on the GPU
 * on the GPU engine), the placement is obvious and nothing is measured; only when they do not
 * fit is a hardware profile needed (--hw FILE, else the one cached for this host, else a quick
 * bench of up to a minute whose result is cached), and the planner decides GPU, DRAM and NVMe
 * in memory, as `moetier plan` would. So tests and CI, whose models are small, never run a
 * benchmark by accident.
 *
 *     --plan FILE    load it, check it against the model, the budgets and the free memory
 *     --no-plan      the old behaviour: every expert on the engine's own device (DRAM on the
 *                    CPU engine, GPU memory on the GPU engine), or with --store, streamed
 *     (neither)      the automatic placement above
 *
 * Budgets: --gpu-mem (default: the device's free memory minus max(512 MiB, 5%), the GPU
 * engine's own default) and --cpu-mem (default: MemAvailable of /proc/meminfo); the planner
 * keeps --cpu-reserve (default 4 GiB) of the DRAM budget free for staging and the OS, and
 * 1.5 GiB of the GPU budget for workspace. Streamed experts get the DRAM the plan leaves: the
 * stream cache is what remains of the experts' DRAM budget, at least 2 x k experts taken from
 * the reserve.
 */
#ifndef MT_CLI_AUTOPLAN_H
#define MT_CLI_AUTOPLAN_H

#include "runtime/cli/cli_common.h"
#include "runtime/plan/hwprofile.h"
#include "runtime/plan/planner.h"

#include <stdio.h>

/*
 * The engine --device (or $MOETIER_DEVICE: from names which) asks for: cpu as given; gpu when a
 * CUDA device is present, else MT_ERR_UNSUPPORTED with the reason (before anything is planned or
 * loaded); auto the GPU engine when a CUDA device is present (mt_gpu_device_count), else the CPU
 * engine. With say, one line on stderr tells which and why. Never fails for auto (a CUDA error
 * means the CPU, with the reason in that line).
 */
mt_status_t mt_cli_device_pick(enum mt_cli_device want, const char *from, bool say,
                               enum mt_device *device_out);

/*
 * A hardware profile of this machine: hw_path when given (what-if or measured); else the one
 * cached for this host (mt_hwprofile_cache_path); else a quick bench (disk: a file or directory
 * to measure reads on, NULL for the cache directory; progress on stderr), saved to the cache
 * for next time. No cache directory, or one that cannot be written, is one warning: the
 * profile is measured and used all the same.
 * MT_ERR_FORMAT/MT_ERR_IO naming a bad --hw file or cached profile (with the hint to delete a
 * broken cache), or the bench's failure.
 */
mt_status_t mt_cli_profile_get(const char *hw_path, const char *disk, struct mt_hwprofile *out);

/*
 * `moetier plan`'s budgets where the flags give none (gpu_set, cpu_set: the flag was given):
 * for a profile of this host (its "host" is this hostname), what is free now (the device's
 * free memory minus max(512 MiB, 5%), MemAvailable); for another machine's (a what-if), its
 * GPU memory minus that margin and 90% of its DRAM.
 */
void mt_cli_default_budgets(const struct mt_hwprofile *hw, bool gpu_set, bool cpu_set,
                            struct mt_plan_budget *b);

/*
 * The GPU engine's KV cache a token, all layers, for its latent dtype, sparse attention or not
 * and its indexer: what `run --device gpu` and `plan` with a GPU budget (the reference layout of
 * mt_model_sizes is the CPU engine's).
 */
uint64_t mt_cli_gpu_kv_bytes(const struct mt_model_config *cfg, enum mt_dtype latent, bool sparse,
                             enum mt_indexer_mode indexer);

/*
 * Decide where the routed experts of e->model go for an engine on device (flags f) and fill
 * eo->expert_tiers (and, for the experts on NVMe, the stream provider) accordingly: --plan,
 * --no-plan/--store, or the automatic placement (see the file comment). Prints one line (the
 * experts per tier and the predicted tok/s) when f->report, and the whole plan with the reason
 * for each tier when f->verbose; a warning when --hw or --cpu-reserve, which only shape the
 * automatic plan, come with --plan, --no-plan or --store. On failure the reason has been
 * printed (mt_fail); what was made is in e, for mt_cli_engine_fini.
 */
mt_status_t mt_cli_placement(struct mt_cli_engine *e, const struct mt_cli_engine_flags *f,
                             enum mt_device device, struct mt_engine_opts *eo);

/*
 * The bytes read at start-up, for the progress bar: the always-on weights, on the GPU engine
 * the routed experts placed on the GPU (all of them without tiers), and a plan's DRAM experts
 * (preloaded). The CPU engine without a plan reads its experts on first use: not counted.
 */
uint64_t mt_cli_placement_load_bytes(const struct mt_cli_engine *e,
                                     const struct mt_engine_opts *eo);

/*
 * The plan in one screen (moetier plan's output, run -v's): model, rates, budgets, per tier
 * experts, GiB, GB and ms per token, the bottleneck, the predicted decode and prefill tok/s,
 * and why each tier holds what it holds (which budget filled).
 */
void mt_cli_plan_print(FILE *out, const struct mt_plan *p);

/*
 * A quick profile of this machine: what `moetier bench --quick` measures (GPU, PCIe, DRAM, CPU,
 * and disk reads of `disk` when not NULL), progress on stderr, no table. A `disk` file too small
 * to time reads on is replaced by a test file in spare_dir (NULL: no disk measured, with a
 * warning). A disk that cannot be timed (its test file cannot be written, a read fails) is a
 * warning too: *disk_failed is set and the profile has no disk; the caller should not cache it.
 * Lives in cli_bench.c.
 */
mt_status_t mt_cli_bench_quick_profile(const char *disk, const char *spare_dir,
                                       struct mt_hwprofile *out, bool *disk_failed);

#endif /* MT_CLI_AUTOPLAN_H */
