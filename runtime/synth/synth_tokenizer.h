/* SPDX-License-Identifier: MIT */
/*
 * synth_tokenizer.h - the tokenizer files of a synthetic checkpoint (internal to runtime/synth/).
 *
 * The tiny preset trains its own byte-level BPE tokenizer here, with DeepSeek's structure and a
 * vocabulary of the config's size; the other presets copy DeepSeek's real files. Either way the
 * two files are produced in memory first, so synth can refuse a missing tokenizer directory
 * before it creates or touches anything in the output directory.
 */
#ifndef MT_SYNTH_TOKENIZER_H
#define MT_SYNTH_TOKENIZER_H

#include <stddef.h>

#include "runtime/base/status.h"

/* tokenizer.json and tokenizer_config.json as they will be written. Embedded; fini frees. */
struct mt_synth_tokenizer_files {
    char *json;          /* owned: tokenizer.json */
    size_t json_len;
    char *config;        /* owned: tokenizer_config.json */
    size_t config_len;
};

/*
 * Train the tiny preset's tokenizer for a vocabulary of vocab_size ids (merges fill it up to 480).
 * Deterministic: the same vocab_size gives the same bytes. MT_ERR_INVAL when vocab_size is too
 * small for the 263 byte, special and added symbols, MT_ERR_NOMEM. On error files_out is left
 * empty.
 */
mt_status_t mt_synth_tokenizer_train(int vocab_size, struct mt_synth_tokenizer_files *files_out);

/*
 * Read DeepSeek's two tokenizer files from dir (V3's placeholder names for ids 128798 and 128799
 * become <think> and </think>). MT_ERR_IO naming the missing file, with a hint; MT_ERR_NOMEM.
 */
mt_status_t mt_synth_tokenizer_load(const char *dir, struct mt_synth_tokenizer_files *files_out);

/* Free both texts and zero the struct; a zeroed struct is a no-op. */
void mt_synth_tokenizer_files_fini(struct mt_synth_tokenizer_files *files);

#endif /* MT_SYNTH_TOKENIZER_H */
