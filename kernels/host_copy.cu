/* SPDX-License-Identifier: MIT */
/*
 * host_copy.cu - page-locking the staging region and copying experts to the GPU
 * (kernels/host_copy.h). Copies are timed with a pair of events around everything queued
 * between two syncs, so the measured rate is the link's, not the host's waiting.
 */
#include <config.h>

#include "kernels/host_copy.h"

#include "kernels/cuda_check.cuh"

#include <stdlib.h>

struct mt_gpu_h2d {
    int dev;
    cudaStream_t stream; /* owned */
    void *dst[2];        /* owned device buffers, cap bytes each */
    size_t cap;
    int next;
    bool started;
    cudaEvent_t t0, t1;  /* owned */
};

static int refusals; /* mt_gpu_host_register_refuse */

void
mt_gpu_host_register_refuse(int n)
{
    refusals = n;
}

/* A refusal the tests asked for, else MT_OK. */
static mt_status_t
register_fault(size_t bytes)
{
    if (refusals <= 0) {
        return MT_OK;
    }
    refusals--;
    return mt_fail(MT_ERR_CUDA, 0, "cudaHostRegister of %zu bytes refused (a test's fault)",
                   bytes);
}

mt_status_t
mt_gpu_host_register(void *base, size_t bytes)
{
    mt_status_t st = register_fault(bytes);

    return st != MT_OK ? st : MT_CUDA(cudaHostRegister(base, bytes, cudaHostRegisterDefault));
}

mt_status_t
mt_gpu_host_register_mapped(void *base, size_t bytes, void **dev_out)
{
    mt_status_t st = register_fault(bytes);

    if (st != MT_OK) {
        return st;
    }
    st = MT_CUDA(cudaHostRegister(base, bytes, cudaHostRegisterMapped));

    if (st == MT_OK && (st = MT_CUDA(cudaHostGetDevicePointer(dev_out, base, 0))) != MT_OK) {
        cudaHostUnregister(base);
    }
    return st;
}

void
mt_gpu_host_unregister(void *base)
{
    cudaError_t err = cudaHostUnregister(base);

    if (err != cudaSuccess) {
        mt_log_warn("cudaHostUnregister of the staging region failed: %s", cudaGetErrorString(err));
    }
}

mt_status_t
mt_gpu_h2d_create(int dev, size_t cap, struct mt_gpu_h2d **h_out)
{
    struct mt_gpu_h2d *h = (struct mt_gpu_h2d *)calloc(1, sizeof(*h));
    mt_status_t st;

    if (h == NULL) {
        return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate an H2D copier");
    }
    h->dev = dev;
    h->cap = cap;
    st = MT_CUDA(cudaSetDevice(dev));
    if (st == MT_OK) {
        st = MT_CUDA(cudaStreamCreateWithFlags(&h->stream, cudaStreamNonBlocking));
    }
    if (st == MT_OK) {
        st = MT_CUDA(cudaMalloc(&h->dst[0], cap));
    }
    if (st == MT_OK) {
        st = MT_CUDA(cudaMalloc(&h->dst[1], cap));
    }
    if (st == MT_OK) {
        st = MT_CUDA(cudaEventCreate(&h->t0));
    }
    if (st == MT_OK) {
        st = MT_CUDA(cudaEventCreate(&h->t1));
    }
    if (st != MT_OK) {
        mt_gpu_h2d_destroy(h);
        return st;
    }
    *h_out = h;
    return MT_OK;
}

void
mt_gpu_h2d_destroy(struct mt_gpu_h2d *h)
{
    if (h == NULL) {
        return;
    }
    if (h->stream != NULL) {
        cudaStreamSynchronize(h->stream);
    }
    cudaFree(h->dst[0]);
    cudaFree(h->dst[1]);
    if (h->t0 != NULL) {
        cudaEventDestroy(h->t0);
    }
    if (h->t1 != NULL) {
        cudaEventDestroy(h->t1);
    }
    if (h->stream != NULL) {
        cudaStreamDestroy(h->stream);
    }
    free(h);
}

mt_status_t
mt_gpu_h2d_copy(struct mt_gpu_h2d *h, const void *src, size_t n)
{
    mt_status_t st;

    if (n > h->cap) {
        return mt_fail(MT_ERR_INVAL, 0, "H2D copy of %zu bytes exceeds the %zu-byte device slot",
                       n, h->cap);
    }
    if (!h->started) {
        st = MT_CUDA(cudaEventRecord(h->t0, h->stream));
        if (st != MT_OK) {
            return st;
        }
        h->started = true;
    }
    st = MT_CUDA(cudaMemcpyAsync(h->dst[h->next], src, n, cudaMemcpyHostToDevice, h->stream));
    h->next ^= 1;
    return st;
}

mt_status_t
mt_gpu_h2d_sync(struct mt_gpu_h2d *h, double *ms_out)
{
    float ms = 0;
    mt_status_t st;

    *ms_out = 0;
    if (!h->started) {
        return MT_OK;
    }
    st = MT_CUDA(cudaEventRecord(h->t1, h->stream));
    if (st == MT_OK) {
        st = MT_CUDA(cudaEventSynchronize(h->t1));
    }
    if (st == MT_OK) {
        st = MT_CUDA(cudaEventElapsedTime(&ms, h->t0, h->t1));
    }
    h->started = false;
    *ms_out = ms;
    return st;
}
