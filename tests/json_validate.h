/* SPDX-License-Identifier: MIT */
/*
 * json_validate.h - is a JSON value an instance of a schema? A plain recursive validator over
 * jansson's trees, written apart from runtime/text/json_schema.c so that the tests and the fuzz
 * target have an independent opinion. It covers the keywords json_schema.c holds (type, and
 * lists of types, properties, required, items, minItems, maxItems, enum, const, anyOf, oneOf,
 * $ref to #/$defs or #/definitions), with json_schema.c's narrowing: no key the schema does not
 * name (as additionalProperties: false).
 */
#ifndef MT_TESTS_JSON_VALIDATE_H
#define MT_TESTS_JSON_VALIDATE_H

#include <jansson.h>
#include <stdbool.h>

/* x is an instance of sch, whose $refs point into root. */
bool json_validate(const json_t *x, const json_t *sch, const json_t *root);

#endif /* MT_TESTS_JSON_VALIDATE_H */
