/* SPDX-License-Identifier: MIT */
/*
 * graph.cu - record a stream's work as a CUDA graph and replay it (graph.h).
 *
 * The one idea: instantiating a graph costs milliseconds, updating an instantiated one with a
 * new recording of the same shape costs microseconds, so the engine records every decode step
 * (its positions and lengths change) and updates one executable graph with it; only when the
 * work's shape changes (a branch taken differently: the indexer starting to select once the
 * context passes top-k) is a new one instantiated.
 */
#include <config.h>

#include "kernels/graph.h"
#include "kernels/cuda_check.cuh"
#include "kernels/launch_times.h"

extern "C" mt_status_t
mt_gpu_graph_begin(struct CUstream_st *stream)
{
    mt_status_t st = MT_CUDA(cudaStreamBeginCapture(stream, cudaStreamCaptureModeRelaxed));

    if (st != MT_OK) {
        /* the caller goes on with plain launches: the next launch check must not see this */
        (void)cudaGetLastError();
    }
    return st;
}

extern "C" mt_status_t
mt_gpu_graph_end(struct CUstream_st *stream, bool keep, struct CUgraphExec_st **exec,
                 bool *rebuilt_out)
{
    cudaGraph_t graph = NULL;
    cudaGraphExec_t ex = *exec;
    mt_status_t st = MT_CUDA(cudaStreamEndCapture(stream, &graph));

    *rebuilt_out = false;
    if (st != MT_OK || !keep) {
        (void)cudaGetLastError(); /* a failed recording leaves no sticky error behind */
        if (graph != NULL) {
            cudaGraphDestroy(graph);
        }
        return st;
    }
    if (ex != NULL) {
        cudaGraphExecUpdateResultInfo info;
        if (cudaGraphExecUpdate(ex, graph, &info) != cudaSuccess) {
            (void)cudaGetLastError(); /* not an error: the shape changed, build a new one */
            cudaGraphExecDestroy(ex);
            ex = NULL;
        }
    }
    if (ex == NULL) {
        st = MT_CUDA(cudaGraphInstantiate(&ex, graph, 0));
        if (st != MT_OK) {
            (void)cudaGetLastError(); /* as above: the message is recorded, plain launches go on */
            ex = NULL;
        }
        *rebuilt_out = true;
    }
    cudaGraphDestroy(graph);
    *exec = ex;
    return st;
}

extern "C" mt_status_t
mt_gpu_graph_launch(struct CUgraphExec_st *exec, struct CUstream_st *stream)
{
    mt_status_t st = MT_CUDA(cudaGraphLaunch(exec, stream));

    if (st == MT_OK) {
        mt_gpu_launch_times_record("cuda graph (a recorded step)", stream);
    }
    return st;
}

extern "C" void
mt_gpu_graph_destroy(struct CUgraphExec_st *exec)
{
    if (exec != NULL) {
        cudaGraphExecDestroy(exec);
    }
}
