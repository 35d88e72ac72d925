/* SPDX-License-Identifier: MIT */
/*
 * fuzz_config.c - libFuzzer target: an arbitrary byte string as a model's config.json.
 *
 * The one idea: the input goes through mt_config_parse() and mt_config_validate(), the two gates
 * every config.json passes (inspect, plan, synth, run), and whatever they accept must satisfy what
 * the rest of moetier relies on without further checks: positive dimensions, experts that split
 * into groups, a power-of-two indexer head, finite RoPE numbers. A violation traps, so libFuzzer
 * reports it as a crash. Build and run: tests/fuzz/run.sh.
 *
 * fuzz-sources: runtime/model/config.c runtime/base/file_util.c runtime/base/status.c
 * fuzz-sources: runtime/base/json_num.c runtime/base/out_file.c
 */
#include <config.h>

#include "runtime/base/status.h"
#include "runtime/model/config.h"

#include <math.h>
#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct mt_model_config cfg;

    mt_log_set_quiet(true);
    if (mt_config_parse((const char *)data, size, "fuzz-input", &cfg) != MT_OK) {
        return 0;
    }
    if (mt_config_validate(&cfg, "fuzz-input") != MT_OK) {
        return 0;
    }
    if (cfg.num_hidden_layers < 1 || cfg.hidden_size < 1 || cfg.n_routed_experts < 1 ||
        cfg.n_shared_experts < 1 || cfg.n_group < 1 || cfg.n_routed_experts % cfg.n_group != 0 ||
        cfg.num_experts_per_tok > cfg.n_routed_experts || cfg.topk_group > cfg.n_group ||
        cfg.first_k_dense_replace > cfg.num_hidden_layers || cfg.qk_rope_head_dim % 2 != 0 ||
        cfg.index_head_dim < cfg.qk_rope_head_dim ||
        (cfg.index_head_dim & (cfg.index_head_dim - 1)) != 0 || !isfinite(cfg.rope_theta) ||
        !(isfinite(mt_config_softmax_scale(&cfg)) && mt_config_softmax_scale(&cfg) > 0.0)) {
        __builtin_trap();
    }
    for (int l = 0; l < cfg.num_hidden_layers; l++) {
        (void)mt_config_layer_is_moe(&cfg, l);
    }
    return 0;
}
