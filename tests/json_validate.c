/* SPDX-License-Identifier: MIT */
/*
 * json_validate.c - a schema validator for the tests (see json_validate.h): each keyword is a
 * test on the value, all must pass.
 */
#include <config.h>

#include "tests/json_validate.h"

#include <string.h>

static const json_t *
deref(const json_t *sch, const json_t *root)
{
    for (int hops = 0; hops < 64; hops++) {
        const char *ref = json_string_value(json_object_get(sch, "$ref"));
        if (ref == NULL) {
            return sch;
        }
        if (strncmp(ref, "#/$defs/", 8) == 0) {
            sch = json_object_get(json_object_get(root, "$defs"), ref + 8);
        } else if (strncmp(ref, "#/definitions/", 14) == 0) {
            sch = json_object_get(json_object_get(root, "definitions"), ref + 14);
        } else {
            return NULL;
        }
    }
    return NULL;
}

static bool
is_type(const json_t *x, const char *t)
{
    return (strcmp(t, "object") == 0 && json_is_object(x)) ||
           (strcmp(t, "array") == 0 && json_is_array(x)) ||
           (strcmp(t, "string") == 0 && json_is_string(x)) ||
           (strcmp(t, "number") == 0 && json_is_number(x)) ||
           (strcmp(t, "integer") == 0 && json_is_integer(x)) ||
           (strcmp(t, "boolean") == 0 && json_is_boolean(x)) ||
           (strcmp(t, "null") == 0 && json_is_null(x));
}

/* one of a list of schemas (anyOf, oneOf): the reader's alternatives never overlap */
static bool
one_of(const json_t *x, const json_t *list, const json_t *root)
{
    size_t i;
    const json_t *v;

    json_array_foreach (list, i, v) {
        if (json_validate(x, v, root)) {
            return true;
        }
    }
    return false;
}

bool
json_validate(const json_t *x, const json_t *sch, const json_t *root)
{
    size_t i;
    const json_t *v;
    const char *key;

    sch = deref(sch, root);
    if (sch == NULL || json_is_false(sch)) {
        return false;
    }
    if (json_is_true(sch)) {
        return true;
    }
    if (json_object_get(sch, "anyOf") != NULL && !one_of(x, json_object_get(sch, "anyOf"), root)) {
        return false;
    }
    if (json_object_get(sch, "oneOf") != NULL && !one_of(x, json_object_get(sch, "oneOf"), root)) {
        return false;
    }
    const json_t *en = json_object_get(sch, "enum");
    if (en != NULL) {
        bool found = false;
        json_array_foreach (en, i, v) {
            found = found || json_equal((json_t *)x, (json_t *)v);
        }
        if (!found) {
            return false;
        }
    }
    const json_t *cn = json_object_get(sch, "const");
    if (cn != NULL && !json_equal((json_t *)x, (json_t *)cn)) {
        return false;
    }
    const json_t *t = json_object_get(sch, "type");
    if (json_is_string(t) && !is_type(x, json_string_value(t))) {
        return false;
    }
    if (json_is_array(t)) {
        bool found = false;
        json_array_foreach (t, i, v) {
            found = found || (json_is_string(v) && is_type(x, json_string_value(v)));
        }
        if (!found) {
            return false;
        }
    }
    if (json_is_object(x) && (json_object_get(sch, "properties") != NULL ||
                              json_object_get(sch, "required") != NULL ||
                              (json_is_string(t) && strcmp(json_string_value(t), "object") == 0))) {
        const json_t *props = json_object_get(sch, "properties");
        json_object_foreach ((json_t *)x, key, v) {
            const json_t *p = json_object_get(props, key);
            if (p == NULL || !json_validate(v, p, root)) {
                return false;
            }
        }
        json_array_foreach (json_object_get(sch, "required"), i, v) {
            if (json_object_get(x, json_string_value(v)) == NULL) {
                return false;
            }
        }
    }
    if (json_is_array(x)) {
        const json_t *mn = json_object_get(sch, "minItems");
        const json_t *mx = json_object_get(sch, "maxItems");
        const json_t *items = json_object_get(sch, "items");
        if ((mn != NULL && (json_int_t)json_array_size(x) < json_integer_value(mn)) ||
            (mx != NULL && (json_int_t)json_array_size(x) > json_integer_value(mx))) {
            return false;
        }
        json_array_foreach (x, i, v) {
            if (items != NULL && !json_validate(v, items, root)) {
                return false;
            }
        }
    }
    return true;
}
