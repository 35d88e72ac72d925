/* SPDX-License-Identifier: MIT */
/* dtype.c - names and sizes of the element types, spelled as safetensors spells them. */
#include <config.h>

#include "runtime/base/dtype.h"

#include <string.h>

static const struct {
    const char *name;
    size_t size;
} dtype_table[MT_DTYPE_COUNT] = {
    [MT_DTYPE_F8_E4M3] = {"F8_E4M3", 1}, [MT_DTYPE_F8_E5M2] = {"F8_E5M2", 1},
    [MT_DTYPE_BF16] = {"BF16", 2},       [MT_DTYPE_F16] = {"F16", 2},
    [MT_DTYPE_F32] = {"F32", 4},         [MT_DTYPE_F64] = {"F64", 8},
    [MT_DTYPE_I8] = {"I8", 1},           [MT_DTYPE_I16] = {"I16", 2},
    [MT_DTYPE_I32] = {"I32", 4},         [MT_DTYPE_I64] = {"I64", 8},
    [MT_DTYPE_U8] = {"U8", 1},           [MT_DTYPE_U16] = {"U16", 2},
    [MT_DTYPE_U32] = {"U32", 4},         [MT_DTYPE_U64] = {"U64", 8},
    [MT_DTYPE_BOOL] = {"BOOL", 1},
};

size_t
mt_dtype_size(enum mt_dtype dt)
{
    if ((unsigned)dt >= MT_DTYPE_COUNT) {
        return 0;
    }
    return dtype_table[dt].size;
}

const char *
mt_dtype_name(enum mt_dtype dt)
{
    if ((unsigned)dt >= MT_DTYPE_COUNT) {
        return "invalid";
    }
    return dtype_table[dt].name;
}

mt_status_t
mt_dtype_parse(const char *s, enum mt_dtype *dt_out)
{
    for (int i = 0; i < MT_DTYPE_COUNT; i++) {
        if (strcmp(s, dtype_table[i].name) == 0) {
            *dt_out = (enum mt_dtype)i;
            return MT_OK;
        }
    }
    return MT_ERR_FORMAT;
}
