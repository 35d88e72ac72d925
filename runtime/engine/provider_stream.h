/* SPDX-License-Identifier: MIT */
/*
 * provider_stream.h - the streaming expert provider: routed experts from NVMe through io/.
 *
 * The one idea: a thin adapter. It describes each routed expert of a model to io/ as six plain
 * extents (file index, offset, length of gate, up, down and their scales, from the safetensors
 * table), or names an expert store and the model's hash; io/ reads them into pinned slots; acquire
 * hands the kernels pointers INTO the slot (no host copy), release gives the slot back. With CUDA
 * and a GPU present, the staging region is also page-locked for the GPU (cudaHostRegister through
 * kernels/host_copy.h) so copies to the device need no bounce.
 */
#ifndef MT_PROVIDER_STREAM_H
#define MT_PROVIDER_STREAM_H

#include <stdint.h>

#include "io/expert_source.h"
#include "runtime/base/status.h"
#include "runtime/engine/expert_provider.h"

struct mt_model;

/*
 * The io/ description of model's routed experts: *descs_out [num_hidden_layers * n_routed] (dense
 * layers all zero) and *paths_out, the shard paths (borrowed from model), n_files. Caller frees
 * *descs_out and *paths_out (the array only). MT_ERR_NOMEM.
 */
mt_status_t mt_stream_describe(const struct mt_model *model, struct mt_io_expert_desc **descs_out,
                               const char ***paths_out, int *n_files_out);

/*
 * A 64-bit hash of the model that a store must match: config.json's bytes, every tensor's name,
 * dtype and shape, and the first 4 KiB of 256 routed experts' gate weights (a checkpoint of the
 * same shape with other weights differs). MT_ERR_IO when config.json or a shard cannot be read.
 */
mt_status_t mt_stream_model_hash(const struct mt_model *model, uint64_t *hash_out);

/*
 * The streaming provider over model's shards, or over the store store_paths[0..n_store) when
 * n_store > 0 (checked against the model's hash). io options as in io/expert_source.h; NULL for
 * the defaults. model is borrowed until destroy. Errors from io/ (MT_ERR_IO, MT_ERR_FORMAT,
 * MT_ERR_INVAL, MT_ERR_NOMEM); a failed cudaHostRegister earns one warning, not an error.
 */
mt_status_t mt_expert_provider_stream_create(const struct mt_model *model,
                                             const struct mt_io_source_options *opt,
                                             const char *const *store_paths, int n_store,
                                             struct mt_expert_provider **p_out);

/* The io/ source under a streaming provider (stats, prefetch-and-wait, pinning). Borrowed. */
struct mt_io_source *mt_expert_provider_stream_source(struct mt_expert_provider *p);

#endif /* MT_PROVIDER_STREAM_H */
