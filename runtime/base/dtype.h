/* SPDX-License-Identifier: MIT */
/*
 * dtype.h - the one element-type enum of moetier: safetensors' dtypes, used by the checkpoint
 * reader, the CPU ops, the kernels and the KV cache alike.
 *
 * The one idea: a tensor's dtype is what is stored, never what is computed with; FP8 e4m3 weights
 * carry 128x128 fp32 block scales beside them (weight_scale_inv), and every path dequantizes on
 * the fly and accumulates in fp32.
 */
#ifndef MT_DTYPE_H
#define MT_DTYPE_H

#include <stddef.h>

#include "runtime/base/status.h"

#ifdef __cplusplus
extern "C" {
#endif

enum mt_dtype {
    MT_DTYPE_F8_E4M3,
    MT_DTYPE_F8_E5M2,
    MT_DTYPE_BF16,
    MT_DTYPE_F16,
    MT_DTYPE_F32,
    MT_DTYPE_F64,
    MT_DTYPE_I8,
    MT_DTYPE_I16,
    MT_DTYPE_I32,
    MT_DTYPE_I64,
    MT_DTYPE_U8,
    MT_DTYPE_U16,
    MT_DTYPE_U32,
    MT_DTYPE_U64,
    MT_DTYPE_BOOL,
    MT_DTYPE_COUNT
};

/* Bytes per element of a dtype. */
size_t mt_dtype_size(enum mt_dtype dt);
/* The safetensors spelling ("F8_E4M3", "BF16", ...). */
const char *mt_dtype_name(enum mt_dtype dt);
/* Parse a safetensors dtype string; MT_ERR_FORMAT for an unknown one (no message logged). */
mt_status_t mt_dtype_parse(const char *s, enum mt_dtype *dt_out);

#ifdef __cplusplus
}
#endif

#endif /* MT_DTYPE_H */
