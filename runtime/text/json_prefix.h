/* SPDX-License-Identifier: MIT */
/*
 * json_prefix.h - is this text the start of a JSON text? A byte-at-a-time recognizer for the
 * serve API's JSON mode (response_format json_object): the reply may only grow along it.
 *
 * The one idea: JSON (RFC 8259) is a context-free language with one stack, the open containers,
 * so a few bytes of state (the containers as bits, where in the grammar, a counter) say whether
 * any continuation can still make a whole JSON text. Feeding bytes either keeps that true
 * (MT_JSON_OK) or breaks it; the state is small enough that a caller copies it to try a token
 * and throws the copy away (json_constraint.c does that for every token of the vocabulary at
 * every step).
 *
 * Strict, so that every parser accepts what it lets through: UTF-8 is checked inside strings (no
 * overlong forms, no surrogates, nothing above U+10FFFF), \u escapes must pair their surrogates,
 * no control byte inside a string. Bounded, so that a model cannot run forever inside one token
 * and every number is a finite double: at most MT_JSON_MAX_DEPTH open containers, integer parts
 * of at most 18 digits (fit in int64), fractions of at most 32 digits, exponents of at most 2
 * digits, at most MT_JSON_MAX_WS whitespace bytes in a row. Going past a bound is MT_JSON_LIMIT,
 * apart from MT_JSON_BAD (not JSON at all). Object keys may repeat: the grammar does not remember
 * them (RFC 8259 allows repeats; parsers keep the last).
 */
#ifndef MT_JSON_PREFIX_H
#define MT_JSON_PREFIX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MT_JSON_MAX_DEPTH 64 /* open arrays and objects: one bit each in a uint64_t */
#define MT_JSON_MAX_WS 64    /* whitespace bytes in a row (pretty-printing at depth 30 fits) */

enum mt_json_verdict {
    MT_JSON_OK,    /* still the start of some JSON text */
    MT_JSON_BAD,   /* no continuation makes it JSON */
    MT_JSON_LIMIT, /* JSON, but past one of the bounds above */
};

/* The state; plain data, copy it freely. */
struct mt_json_prefix {
    uint64_t arrays; /* bit d: the container at depth d + 1 is an array (else an object) */
    uint16_t hex;    /* a \u escape: the code unit so far */
    uint8_t depth;   /* open containers */
    uint8_t state;   /* where in the grammar (json_prefix.c's enum) */
    uint8_t count;   /* the state's counter: digits, literal position, bytes or hex digits */
    uint8_t lo, hi;  /* UTF-8: the range of the next continuation byte; a literal: which one */
    uint8_t ws;      /* whitespace bytes in a row */
    uint8_t flags;   /* in a key, a low surrogate due, top level must be an object */
};

/* The empty text. object_only: the top-level value must be an object (OpenAI's JSON mode). */
void mt_json_prefix_init(struct mt_json_prefix *p, bool object_only);

/*
 * Feed len bytes. MT_JSON_OK: *p now holds the longer text. Otherwise *p is as it was (the bytes
 * are refused whole, so a caller can try a token's bytes on the real state).
 */
enum mt_json_verdict mt_json_prefix_feed(struct mt_json_prefix *p, const void *bytes,
                                         size_t len);

/*
 * The text so far is one whole JSON text (trailing whitespace allowed). A top-level number is
 * whole as soon as it could end (more digits may still follow); an object or array once closed.
 */
bool mt_json_prefix_complete(const struct mt_json_prefix *p);

/* Inside a string, no escape or multi-byte character open: any text without '"', '\\', control
 * bytes or broken UTF-8 may follow (json_constraint.c's shortcut). */
bool mt_json_prefix_in_string(const struct mt_json_prefix *p);

#endif /* MT_JSON_PREFIX_H */
