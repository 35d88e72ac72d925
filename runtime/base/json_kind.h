/* SPDX-License-Identifier: MIT */
/*
 * json_kind.h - a JSON value's type as a message names it ("'user' must be a string, not a
 * number"), one wording for every reader of JSON that a user or a client writes; and the key of
 * an object that a reader does not know (a typo that would otherwise be ignored).
 */
#ifndef MT_JSON_KIND_H
#define MT_JSON_KIND_H

#include <jansson.h>

/* "an object", "an array", "a string", "a number", "a boolean" or "null". */
const char *mt_json_kind(const json_t *v);

/* The first key of object obj that the NULL-terminated list known lacks, else NULL. */
const char *mt_json_unknown_key(const json_t *obj, const char *const *known);

#endif /* MT_JSON_KIND_H */
