/* SPDX-License-Identifier: MIT */
/*
 * graph.h - CUDA graphs for the GPU engine (graph.cu): the work a stream is given between
 * begin and end is recorded instead of run, then replayed by one launch. A decode step is ~100
 * small launches; replayed as a graph the GPU runs them back to back instead of waiting for the
 * host to issue each one.
 *
 * A recording is kept as an executable graph that later recordings update in place (only the
 * kernels' arguments and sizes changed: cheap) or replace (the work itself changed: a new
 * instantiation, ~ms). Only for CUDA builds (no stubs).
 */
#ifndef MT_KERNELS_GRAPH_H
#define MT_KERNELS_GRAPH_H

#include <stdbool.h>

#include "runtime/base/status.h"

#ifdef __cplusplus
extern "C" {
#endif

struct CUstream_st;
struct CUgraphExec_st;

/* Start recording the work given to stream (relaxed mode: other threads' CUDA calls go on). */
mt_status_t mt_gpu_graph_begin(struct CUstream_st *stream);
/*
 * Stop recording on stream. With keep, *exec (NULL: none yet) becomes the recorded work: updated
 * in place where the work has the same shape, instantiated anew otherwise (*rebuilt_out true).
 * Without keep (the caller's recording failed half-way) the recording is dropped and *exec kept.
 * If instantiating fails, *exec is destroyed and set to NULL; if ending the recording fails, *exec
 * is kept. No failure here leaves an error behind for the next launch's check.
 */
mt_status_t mt_gpu_graph_end(struct CUstream_st *stream, bool keep, struct CUgraphExec_st **exec,
                             bool *rebuilt_out);
/* Run exec's recorded work on stream. */
mt_status_t mt_gpu_graph_launch(struct CUgraphExec_st *exec, struct CUstream_st *stream);
void mt_gpu_graph_destroy(struct CUgraphExec_st *exec);

#ifdef __cplusplus
}
#endif

#endif /* MT_KERNELS_GRAPH_H */
