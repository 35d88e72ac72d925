/* SPDX-License-Identifier: MIT */
/*
 * json_num.h - integers in JSON as moetier reads them: 256 and 256.0 are the same integer.
 *
 * The one idea: JSON has one number type; the integer/real split is jansson's, made from how the
 * number was spelled. Tools that write every number as a double (Python's json with floats,
 * spreadsheets, jq arithmetic) turn 256 into 256.0, which means the same thing. So wherever
 * moetier wants an integer it accepts a real whose value is integral and exactly representable
 * (|x| < 2^53), and refuses 256.5 or 1e300 as what they are: not integers.
 */
#ifndef MT_JSON_NUM_H
#define MT_JSON_NUM_H

#include <jansson.h>
#include <stdbool.h>

/*
 * Whether v is an integer: a JSON integer, or a real with an integral value below 2^53 in
 * magnitude. When it is, *out is set. NULL v: false.
 */
bool mt_json_is_int(const json_t *v, long long *out);

#endif /* MT_JSON_NUM_H */
