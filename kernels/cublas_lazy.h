/* SPDX-License-Identifier: MIT */
/*
 * cublas_lazy.h - why cuBLAS could not be loaded (kernels/cublas_lazy.c opens it on first use).
 */
#ifndef MT_KERNELS_CUBLAS_LAZY_H
#define MT_KERNELS_CUBLAS_LAZY_H

#ifdef __cplusplus
extern "C" {
#endif

/* The first failure to load libcublas or libcublasLt or one of their functions, as a sentence
 * with a hint; NULL while none has failed. */
const char *mt_cublas_load_error(void);

#ifdef __cplusplus
}
#endif

#endif /* MT_KERNELS_CUBLAS_LAZY_H */
