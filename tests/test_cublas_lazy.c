/* SPDX-License-Identifier: MIT */
/*
 * test_cublas_lazy.c - cuBLAS is opened on first use, not at start (kernels/cublas_lazy.c), and
 * its entry points reach the real libraries. Needs the CUDA toolkit, not a device: the calls
 * made here run on the host (a handle needs a device, so only its status is printed).
 */
#include <config.h>

#include "tests/tap.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#ifdef MT_HAVE_CUDA
#include <cublasLt.h>
#include <cublas_v2.h>

#include "kernels/cublas_lazy.h"

/* Whether a file whose name has `lib` in it is mapped into this process. */
static bool
mapped(const char *lib)
{
    char line[4096];
    bool found = false;
    FILE *f = fopen("/proc/self/maps", "r");

    if (f == NULL) {
        tap_bail_out("cannot read /proc/self/maps");
    }
    while (!found && fgets(line, sizeof(line), f) != NULL) {
        found = strstr(line, lib) != NULL;
    }
    fclose(f);
    return found;
}

int
main(void)
{
    tap_ok(!mapped("libcublas"), "no cuBLAS library is loaded at start (they are not linked)");
    tap_ok(mt_cublas_load_error() == NULL, "no load error before the first call");

    /* without the library the forwarder answers "cuBLAS not loaded"; this text is libcublas' */
    const char *s = cublasGetStatusString(CUBLAS_STATUS_NOT_SUPPORTED);
    tap_ok(s != NULL && strstr(s, "not supported") != NULL,
           "cublasGetStatusString reaches libcublas: '%s'", s ? s : "(null)");
    tap_ok(mapped("libcublas.so"), "libcublas is loaded after the first call");

    /* cuBLASLt's descriptors are host objects: each call below is the library's */
    cublasLtMatrixLayout_t layout = NULL;
    cublasLtMatmulDesc_t desc = NULL;
    cublasLtMatmulPreference_t pref = NULL;
    const int32_t trans = CUBLAS_OP_T;
    const size_t ws = 1u << 20;
    cublasStatus_t cs = cublasLtMatrixLayoutCreate(&layout, CUDA_R_32F, 4, 4, 4);
    cs = cs ? cs : cublasLtMatrixLayoutDestroy(layout);
    cs = cs ? cs : cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F);
    cs = cs ? cs : cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &trans,
                                                  sizeof(trans));
    cs = cs ? cs : cublasLtMatmulDescDestroy(desc);
    cs = cs ? cs : cublasLtMatmulPreferenceCreate(&pref);
    cs = cs ? cs : cublasLtMatmulPreferenceSetAttribute(
                       pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws));
    cs = cs ? cs : cublasLtMatmulPreferenceDestroy(pref);
    tap_ok(cs == CUBLAS_STATUS_SUCCESS,
           "cuBLASLt layout, matmul descriptor and preference: created, set, destroyed (%d)",
           (int)cs);
    /* a wrong attribute size is the library's to refuse: a forwarder that dropped an argument
     * would not get this answer */
    cs = cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F);
    tap_ok(cs == CUBLAS_STATUS_SUCCESS &&
               cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &trans, 1) ==
                   CUBLAS_STATUS_INVALID_VALUE,
           "cuBLASLt refuses a 1-byte transpose attribute");
    if (cs == CUBLAS_STATUS_SUCCESS) {
        cublasLtMatmulDescDestroy(desc);
    }

    cublasHandle_t h = NULL;
    cs = cublasCreate(&h);
    tap_diag("cublasCreate: %s (needs a device)", cublasGetStatusString(cs));
    if (cs == CUBLAS_STATUS_SUCCESS) {
        tap_ok(cublasDestroy(h) == CUBLAS_STATUS_SUCCESS, "a cuBLAS handle is destroyed");
    }
    tap_ok(mt_cublas_load_error() == NULL, "every function called was found: %s",
           mt_cublas_load_error() ? mt_cublas_load_error() : "no load error");
    return tap_done();
}

#else

int
main(void)
{
    tap_skip_all("built without CUDA");
    return tap_done();
}

#endif
