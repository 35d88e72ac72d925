/* SPDX-License-Identifier: MIT */
/*
 * json_kind.h - a JSON value's type as a message names it ("'user' must be a string, not a
 * number"), one wording for every reader of JSON that a user or a client writes.
 */
#ifndef MT_JSON_KIND_H
#define MT_JSON_KIND_H

#include <jansson.h>

/* "an object", "an array", "a string", "a number", "a boolean" or "null". */
const char *mt_json_kind(const json_t *v);

#endif /* MT_JSON_KIND_H */
