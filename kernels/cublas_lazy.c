/* SPDX-License-Identifier: MIT */
/*
 * cublas_lazy.c - cuBLAS and cuBLASLt, loaded when the kernels first call them.
 *
 * Linked the usual way, libcublas and libcublasLt cost every start of a CUDA build about half a
 * second and 200 MB of resident memory (their static initialisers run at load time), also for
 * the commands that never touch a GPU: tokenize, inspect, plan, a run on the CPU engine, and
 * each of the hundreds of runs of the shell tests. So the programs do not link them. This file
 * defines the entry points the kernels call, each with the prototype of NVIDIA's header (the
 * compiler checks every one against it), and each opens its library with dlopen on first use.
 * A library that cannot be loaded makes the call return CUBLAS_STATUS_NOT_INITIALIZED, and
 * mt_cublas_load_error() says why (mt_cublas_status adds it to the error).
 *
 * The libraries stay loaded until the process exits: handles may be destroyed at exit, and
 * cuBLAS is not made to be unloaded.
 */
#include <config.h>

#include <dlfcn.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>

#include <cublasLt.h>
#include <cublas_v2.h>

#include "kernels/cublas_lazy.h"

struct lazy_lib {
    const char *stem; /* "libcublas": the file is <stem>.so.<cuBLAS major> */
    bool tried;
    void *handle;
};

static struct lazy_lib blas = {"libcublas", false, NULL};
static struct lazy_lib blas_lt = {"libcublasLt", false, NULL};

/* Guards the slow path (dlopen, dlsym, the error); a resolved symbol is read without it. */
static pthread_mutex_t lazy_lock = PTHREAD_MUTEX_INITIALIZER;
static char lazy_error[1024]; /* the first failure, kept: later ones follow from it */

static void
lazy_open(struct lazy_lib *l)
{
    char path[512];

    /* The toolkit the build was configured with first (configure's MT_CUDA_LIBDIR, also the
     * programs' rpath), then the loader's search (LD_LIBRARY_PATH, ld.so.cache). */
    snprintf(path, sizeof(path), "%s/%s.so.%d", MT_CUDA_LIBDIR, l->stem, CUBLAS_VER_MAJOR);
    l->handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (l->handle == NULL) {
        snprintf(path, sizeof(path), "%s.so.%d", l->stem, CUBLAS_VER_MAJOR);
        l->handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    }
    if (l->handle == NULL && lazy_error[0] == '\0') {
        const char *why = dlerror();
        snprintf(lazy_error, sizeof(lazy_error),
                 "cannot load %s (%s); the GPU path needs CUDA %d's cuBLAS: install it, or put "
                 "the directory that has it in LD_LIBRARY_PATH",
                 path, why ? why : "no reason given", CUBLAS_VER_MAJOR);
    }
}

/* The address of `name` in `l`, opening `l` on first use; NULL (and lazy_error) if either
 * fails. `*cache` keeps the answer for the next call. */
static void *
lazy_resolve(struct lazy_lib *l, const char *name, void **cache)
{
    void *fn = __atomic_load_n(cache, __ATOMIC_ACQUIRE);

    if (fn != NULL) {
        return fn;
    }
    pthread_mutex_lock(&lazy_lock);
    if (!l->tried) {
        l->tried = true;
        lazy_open(l);
    }
    if (l->handle != NULL) {
        fn = dlsym(l->handle, name);
        if (fn == NULL && lazy_error[0] == '\0') {
            snprintf(lazy_error, sizeof(lazy_error),
                     "%s.so.%d has no %s: is it older than the headers moetier was built with?",
                     l->stem, CUBLAS_VER_MAJOR, name);
        }
        __atomic_store_n(cache, fn, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&lazy_lock);
    return fn;
}

const char *
mt_cublas_load_error(void)
{
    pthread_mutex_lock(&lazy_lock);
    const char *e = lazy_error[0] != '\0' ? lazy_error : NULL;
    pthread_mutex_unlock(&lazy_lock);
    return e; /* the text is written once, never changed after */
}

/* One entry point: `ret name params` forwards `args` to the library's own `name`. */
#define LAZY(lib, ret, fail, name, params, args)                                                  \
    ret CUBLASWINAPI name params                                                                 \
    {                                                                                            \
        static void *sym;                                                                        \
        ret(*fn) params = (ret(*) params)lazy_resolve(&(lib), #name, &sym);                      \
        return fn != NULL ? fn args : (fail);                                                    \
    }
#define NOT_LOADED CUBLAS_STATUS_NOT_INITIALIZED

/* cuBLAS (kernels/gemm.cu, kernels/bench.cu); cublas_v2.h names the first four *_v2 */
LAZY(blas, cublasStatus_t, NOT_LOADED, cublasCreate_v2, (cublasHandle_t * handle), (handle))
LAZY(blas, cublasStatus_t, NOT_LOADED, cublasDestroy_v2, (cublasHandle_t handle), (handle))
LAZY(blas, cublasStatus_t, NOT_LOADED, cublasSetStream_v2,
     (cublasHandle_t handle, cudaStream_t streamId), (handle, streamId))
LAZY(blas, cublasStatus_t, NOT_LOADED, cublasSetWorkspace_v2,
     (cublasHandle_t handle, void *workspace, size_t workspaceSizeInBytes),
     (handle, workspace, workspaceSizeInBytes))
LAZY(blas, const char *, "cuBLAS not loaded", cublasGetStatusString, (cublasStatus_t status),
     (status))
LAZY(blas, cublasStatus_t, NOT_LOADED, cublasGemmEx,
     (cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m, int n,
      int k, const void *alpha, const void *A, cudaDataType Atype, int lda, const void *B,
      cudaDataType Btype, int ldb, const void *beta, void *C, cudaDataType Ctype, int ldc,
      cublasComputeType_t computeType, cublasGemmAlgo_t algo),
     (handle, transa, transb, m, n, k, alpha, A, Atype, lda, B, Btype, ldb, beta, C, Ctype, ldc,
      computeType, algo))
LAZY(blas, cublasStatus_t, NOT_LOADED, cublasGemmStridedBatchedEx,
     (cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m, int n,
      int k, const void *alpha, const void *A, cudaDataType Atype, int lda, long long int strideA,
      const void *B, cudaDataType Btype, int ldb, long long int strideB, const void *beta,
      void *C, cudaDataType Ctype, int ldc, long long int strideC, int batchCount,
      cublasComputeType_t computeType, cublasGemmAlgo_t algo),
     (handle, transa, transb, m, n, k, alpha, A, Atype, lda, strideA, B, Btype, ldb, strideB,
      beta, C, Ctype, ldc, strideC, batchCount, computeType, algo))

/* cuBLASLt (kernels/gemm_fp8.cu) */
LAZY(blas_lt, cublasStatus_t, NOT_LOADED, cublasLtCreate, (cublasLtHandle_t * lightHandle),
     (lightHandle))
LAZY(blas_lt, cublasStatus_t, NOT_LOADED, cublasLtDestroy, (cublasLtHandle_t lightHandle),
     (lightHandle))
LAZY(blas_lt, cublasStatus_t, NOT_LOADED, cublasLtMatmul,
     (cublasLtHandle_t lightHandle, cublasLtMatmulDesc_t computeDesc, const void *alpha,
      const void *A, cublasLtMatrixLayout_t Adesc, const void *B, cublasLtMatrixLayout_t Bdesc,
      const void *beta, const void *C, cublasLtMatrixLayout_t Cdesc, void *D,
      cublasLtMatrixLayout_t Ddesc, const cublasLtMatmulAlgo_t *algo, void *workspace,
      size_t workspaceSizeInBytes, cudaStream_t stream),
     (lightHandle, computeDesc, alpha, A, Adesc, B, Bdesc, beta, C, Cdesc, D, Ddesc, algo,
      workspace, workspaceSizeInBytes, stream))
LAZY(blas_lt, cublasStatus_t, NOT_LOADED, cublasLtMatrixLayoutCreate,
     (cublasLtMatrixLayout_t * matLayout, cudaDataType type, uint64_t rows, uint64_t cols,
      int64_t ld),
     (matLayout, type, rows, cols, ld))
LAZY(blas_lt, cublasStatus_t, NOT_LOADED, cublasLtMatrixLayoutDestroy,
     (cublasLtMatrixLayout_t matLayout), (matLayout))
LAZY(blas_lt, cublasStatus_t, NOT_LOADED, cublasLtMatmulDescCreate,
     (cublasLtMatmulDesc_t * matmulDesc, cublasComputeType_t computeType,
      cudaDataType_t scaleType),
     (matmulDesc, computeType, scaleType))
LAZY(blas_lt, cublasStatus_t, NOT_LOADED, cublasLtMatmulDescDestroy,
     (cublasLtMatmulDesc_t matmulDesc), (matmulDesc))
LAZY(blas_lt, cublasStatus_t, NOT_LOADED, cublasLtMatmulDescSetAttribute,
     (cublasLtMatmulDesc_t matmulDesc, cublasLtMatmulDescAttributes_t attr, const void *buf,
      size_t sizeInBytes),
     (matmulDesc, attr, buf, sizeInBytes))
LAZY(blas_lt, cublasStatus_t, NOT_LOADED, cublasLtMatmulPreferenceCreate,
     (cublasLtMatmulPreference_t * pref), (pref))
LAZY(blas_lt, cublasStatus_t, NOT_LOADED, cublasLtMatmulPreferenceDestroy,
     (cublasLtMatmulPreference_t pref), (pref))
LAZY(blas_lt, cublasStatus_t, NOT_LOADED, cublasLtMatmulPreferenceSetAttribute,
     (cublasLtMatmulPreference_t pref, cublasLtMatmulPreferenceAttributes_t attr,
      const void *buf, size_t sizeInBytes),
     (pref, attr, buf, sizeInBytes))
LAZY(blas_lt, cublasStatus_t, NOT_LOADED, cublasLtMatmulAlgoGetHeuristic,
     (cublasLtHandle_t lightHandle, cublasLtMatmulDesc_t operationDesc,
      cublasLtMatrixLayout_t Adesc, cublasLtMatrixLayout_t Bdesc, cublasLtMatrixLayout_t Cdesc,
      cublasLtMatrixLayout_t Ddesc, cublasLtMatmulPreference_t preference,
      int requestedAlgoCount, cublasLtMatmulHeuristicResult_t heuristicResultsArray[],
      int *returnAlgoCount),
     (lightHandle, operationDesc, Adesc, Bdesc, Cdesc, Ddesc, preference, requestedAlgoCount,
      heuristicResultsArray, returnAlgoCount))
