/* SPDX-License-Identifier: MIT */
/*
 * fuzz_safetensors.c - libFuzzer target: an arbitrary byte string as a whole safetensors file.
 *
 * The one idea: the input goes through mt_st_image_parse(), i.e. the same 8-byte length checks and
 * the same mt_st_header_parse() that files on disk go through, and whatever it accepts must satisfy
 * the invariants readers rely on (every tensor inside the image, byte count = elements * dtype
 * size, the tensors tiling the data section exactly); a violation traps, so libFuzzer reports it
 * as a crash. Build and run: tests/fuzz/run.sh.
 *
 * fuzz-sources: runtime/model/safetensors.c runtime/base/file_util.c runtime/base/dtype.c
 * fuzz-sources: runtime/base/status.c runtime/base/out_file.c runtime/base/json_num.c
 */
#include <config.h>

#include "runtime/model/safetensors.h"
#include "runtime/base/status.h"

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct mt_st_tensor *ts = NULL;
    uint64_t covered = 0;
    uint64_t hlen = 0;
    size_t n = 0;

    mt_log_set_quiet(true);
    if (mt_st_image_parse(data, size, "fuzz-input", &ts, &n) == MT_OK) {
        for (size_t i = 0; i < n; i++) {
            const struct mt_st_tensor *t = &ts[i];
            uint64_t nelem = 1;

            for (int d = 0; d < t->ndim; d++) {
                nelem *= (uint64_t)t->shape[d];
            }
            if (t->name == NULL || t->ndim < 0 || t->ndim > MT_ST_MAX_DIMS || t->nelem != nelem ||
                t->nbytes != t->nelem * mt_dtype_size(t->dtype) || t->offset < 8 ||
                t->offset > size || t->nbytes > size - t->offset) {
                __builtin_trap();
            }
            covered += t->nbytes;
        }
        /* no hole, no overlap, no trailing byte: the data section is exactly the tensors */
        for (int i = 7; i >= 0; i--) {
            hlen = hlen << 8 | data[i];
        }
        if (covered != size - 8 - hlen) {
            __builtin_trap();
        }
    } else if (n != 0) {
        __builtin_trap();
    }
    mt_st_tensors_destroy(ts, n);
    return 0;
}
