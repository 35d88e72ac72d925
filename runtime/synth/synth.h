/* SPDX-License-Identifier: MIT */
/*
 * synth.h - random test checkpoints in the exact HF layout of DeepSeek-V3.2 (`moetier synth`).
 *
 * A synthetic checkpoint is a directory a loader cannot tell from a published one: config.json,
 * model-00001-of-000004.safetensors ... shards, model.safetensors.index.json, tokenizer.json and
 * tokenizer_config.json, with every tensor of the inventory (runtime/model.h) in its official name,
 * shape and dtype. Only the numbers are random. Three presets: "tiny" (CI: hidden 256, a generated
 * byte-level BPE tokenizer), "small" (the real 129,280-token vocabulary and tokenizer files) and
 * "v32-shape" (the real 671B dimensions with few layers, tens of GB).
 *
 * The one idea: every tensor is a pure function of (seed, tensor name, element index), through a
 * counter-based generator, so tensors are produced and written one 128-row strip at a time in
 * bounded memory (tens of MB, whatever the checkpoint size), in parallel, and the same seed gives
 * the same bytes.
 */
#ifndef MT_SYNTH_H
#define MT_SYNTH_H

#include <signal.h> /* sig_atomic_t */
#include <stdbool.h>
#include <stddef.h> /* config.h uses size_t */
#include <stdint.h>

#include "runtime/model/config.h"
#include "runtime/base/status.h"

/*
 * The most main layers a synth checkpoint can have: every preset's config declares one MTP layer
 * (num_nextn_predict_layers 1, as V3.2's does, whether or not --no-mtp leaves its tensors out),
 * and main plus MTP layers fit in MT_MAX_LAYERS.
 */
#define MT_SYNTH_MAX_LAYERS (MT_MAX_LAYERS - 1)

/* What to write. Zero-initialise, then set out_dir and preset; -1 means "the preset's default". */
struct mt_synth_options {
    const char *out_dir;       /* created if absent; must be empty unless force */
    const char *preset;        /* "tiny", "small" or "v32-shape" */
    int layers;                /* num_hidden_layers override, or -1 */
    int dense_layers;          /* first_k_dense_replace override, or -1 */
    bool bf16;                 /* BF16 linears, no scales, no quantization_config (else FP8) */
    uint64_t seed;
    int mtp;                   /* 1: write the MTP layer, 0: omit it, -1: preset default */
    bool force;                /* write into a non-empty directory (replacing a checkpoint there) */
    bool progress;             /* progress lines on stderr */
    bool dry_run;              /* plan only: fill the result (sizes, shards), write nothing */
    const char *tokenizer_dir; /* real tokenizer files for small/v32-shape; NULL: see below */
    uint64_t shard_bytes;      /* most tensor bytes a shard (an FP8 linear and its scale stay
                                  together); 0: 4.3 GB, as DeepSeek's shards */
    /* borrowed, may be NULL: a flag a signal handler sets (non-zero) to stop the write; it is
     * read between strips of a few MB, and a stop is a failure (MT_ERR_IO, nothing kept) */
    const volatile sig_atomic_t *stop;
};

/* What was written. */
struct mt_synth_result {
    uint64_t n_tensors;
    uint64_t bytes;            /* tensor data bytes (the index's total_size) */
    uint64_t file_bytes;       /* all files written, headers and JSON included */
    int n_shards;
    double seconds;
};

/*
 * The config of a preset with the overrides of opt applied (layers, dense_layers, bf16), validated.
 * MT_ERR_INVAL for an unknown preset or an impossible override, naming it.
 */
mt_status_t mt_synth_config(const struct mt_synth_options *opt, struct mt_model_config *cfg_out);

/* Whether a preset includes the MTP layer when opt->mtp is -1. */
bool mt_synth_preset_mtp(const char *preset);

/*
 * The directory holding the real tokenizer.json and tokenizer_config.json: opt_dir when non-NULL,
 * else $MT_TOKENIZER_DIR, else the source tree's tests/data/tokenizer, else the installed
 * $(pkgdatadir)/tokenizer. Returns the first that holds tokenizer.json (opt_dir and the variable
 * are returned as given, checked later).
 */
const char *mt_synth_tokenizer_dir(const char *opt_dir);

/*
 * Write the checkpoint described by opt (see the file comment). Refuses, before writing anything,
 * a non-empty directory (unless force) and a file system without room for the whole checkpoint.
 * With force, first removes the staging directories (".synth-XXXXXX") that a killed synth left in
 * it. On failure, and when *opt->stop is set before the files are moved into place, removes the
 * files it wrote (the staging directory) and leaves the directory as it was. MT_ERR_INVAL
 * (options, non-empty directory), MT_ERR_IO (creation, writing, full disk, stopped), MT_ERR_NOMEM.
 * res_out may be NULL.
 */
mt_status_t mt_synth_write(const struct mt_synth_options *opt, struct mt_synth_result *res_out);

/*
 * The generator, exposed for tests: element i of the tensor keyed by `key` as a uniform value in
 * [-1, 1), and the key of a tensor name under a seed.
 */
uint64_t mt_synth_key(uint64_t seed, const char *name);
float mt_synth_uniform(uint64_t key, uint64_t i);

/* The FP8 e4m3fn encoder synth uses (equal to cpu/convert.h's mt_f32_to_fp8 for |x| <= 448). */
uint8_t mt_synth_fp8_encode(float x);

#endif /* MT_SYNTH_H */
