/* SPDX-License-Identifier: MIT */
/*
 * json_num.c - integral JSON numbers (see json_num.h).
 */
#include <config.h>

#include "runtime/base/json_num.h"

#include <math.h>

#define JSON_NUM_EXACT 9007199254740992.0 /* 2^53: every integer below it is a double exactly */

bool
mt_json_is_int(const json_t *v, long long *out)
{
    double x;

    if (json_is_integer(v)) {
        *out = (long long)json_integer_value(v);
        return true;
    }
    if (!json_is_real(v)) {
        return false;
    }
    x = json_real_value(v);
    if (!(fabs(x) < JSON_NUM_EXACT) || x != floor(x)) {
        return false;
    }
    *out = (long long)x;
    return true;
}
