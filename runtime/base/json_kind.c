/* SPDX-License-Identifier: MIT */
/*
 * json_kind.c - a JSON value's type in words, and keys a reader does not know (see
 * json_kind.h).
 */
#include <config.h>

#include "runtime/base/json_kind.h"

#include <string.h>

const char *
mt_json_kind(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
    case JSON_REAL:
        return "a number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    default:
        return "null";
    }
}

const char *
mt_json_unknown_key(const json_t *obj, const char *const *known)
{
    const char *key;
    json_t *v;

    json_object_foreach ((json_t *)obj, key, v) {
        const char *const *k = known;
        while (*k != NULL && strcmp(*k, key) != 0) {
            k++;
        }
        if (*k == NULL) {
            return key;
        }
    }
    return NULL;
}
