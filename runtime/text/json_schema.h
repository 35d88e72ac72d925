/* SPDX-License-Identifier: MIT */
/*
 * json_schema.h - hold a reply to a JSON Schema, byte by byte (the serve API's response_format
 * json_schema): which bytes may come next so that the text stays the start of an instance.
 *
 * The one idea: a schema is compiled once into a small table of nodes (object, array, string,
 * number, integer, boolean, null, enum, anyOf, $ref, any value), and reading the reply keeps a
 * stack of frames, one per open container, each saying which node it follows and where in it the
 * reply is; a scalar (or a value the schema leaves free) is read by json_prefix.h's recognizer,
 * and the byte that ends a number is read again by the frame below. The state is plain data, so
 * json_constraint.c copies it to try each token, as it does the recognizer's.
 *
 * What is held is a subset of the schema's instances, never more: an object's keys come in the
 * schema's order, each at most once, the required ones never left out, no key the schema does
 * not name (as additionalProperties: false, whatever the schema says); the alternatives of anyOf
 * (or a list of types) must begin with different bytes (a string, a number, an object, ...) so
 * that the first byte picks one; enum and const take strings, integers, booleans and null (an
 * integer, like a number, ends at the byte after it when another value could go on). Keywords that
 * only describe (title, description, default, examples, $schema, $id, $comment) are ignored.
 * A keyword that limits values in a way not held here (minimum, pattern, format, minLength,
 * uniqueItems, ...) is refused, or with lenient ignored (the reply may then break it); one that
 * shapes the instance (allOf, not, if, patternProperties, prefixItems, ...) is always refused.
 */
#ifndef MT_JSON_SCHEMA_H
#define MT_JSON_SCHEMA_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "runtime/base/status.h"
#include "runtime/text/json_prefix.h"

#define MT_JSON_SCHEMA_MAX_DEPTH 32 /* open containers a reply may nest */
#define MT_JSON_SCHEMA_MAX_NODES 4096

struct mt_json_schema;

/*
 * Compile schema (its root must be an object schema). MT_ERR_INVAL with a message naming the
 * place ("#/properties/age") and the keyword when it uses what is not held (see above);
 * MT_ERR_NOMEM.
 */
mt_status_t mt_json_schema_compile(const json_t *schema, bool lenient,
                                   struct mt_json_schema **out);
void mt_json_schema_destroy(struct mt_json_schema *s);

/* Where the reading is; plain data (copy with mt_json_schema_state_copy: only the used frames). */
struct mt_json_schema_frame {
    uint32_t node;  /* the node this container or value follows */
    uint16_t next;  /* object: the first property not yet passed; array: items so far */
    uint16_t cand;  /* object key or enum: a candidate the bytes so far match; object: the key */
    uint16_t pos;   /* ... bytes matched */
    uint8_t phase;  /* where in the node (json_schema.c) */
    uint8_t kind;   /* the node's kind */
};

struct mt_json_schema_state {
    struct mt_json_prefix sub; /* a scalar or free value being read */
    uint8_t depth;             /* frames in use */
    uint8_t top;               /* 0: before the root, 1: inside it, 2: after it */
    uint8_t ws;                /* whitespace bytes in a row */
    struct mt_json_schema_frame frames[MT_JSON_SCHEMA_MAX_DEPTH];
};

void mt_json_schema_start(struct mt_json_schema_state *st);
void mt_json_schema_state_copy(struct mt_json_schema_state *dst,
                               const struct mt_json_schema_state *src);

/* The state after len more bytes, into *after (scratch when the verdict is not MT_JSON_OK). */
enum mt_json_verdict mt_json_schema_try(const struct mt_json_schema *s,
                                        const struct mt_json_schema_state *st,
                                        const void *bytes, size_t len,
                                        struct mt_json_schema_state *after);

/* Feed len bytes; on anything but MT_JSON_OK *st is as it was (the bytes are refused whole). */
enum mt_json_verdict mt_json_schema_feed(const struct mt_json_schema *s,
                                         struct mt_json_schema_state *st, const void *bytes,
                                         size_t len);

/* The reply so far is one whole instance (trailing whitespace allowed). */
bool mt_json_schema_complete(const struct mt_json_schema_state *st);

/* Inside a string the schema leaves free, no escape or character open (any plain text may
 * follow: json_constraint.c's shortcut). */
bool mt_json_schema_in_free_string(const struct mt_json_schema_state *st);

#endif /* MT_JSON_SCHEMA_H */
