/* SPDX-License-Identifier: MIT */
/*
 * json_prefix.c - RFC 8259's grammar as a pushdown automaton over bytes (see json_prefix.h).
 *
 * Each state names what may come next. A value ends (a string's quote, a literal's last letter,
 * a container's closer, the byte after a number) in value_done(): inside a container the next
 * thing is a comma or the closer (S_AFTER), at the top level nothing but whitespace (S_DONE).
 * A number has no closer of its own: the first byte that cannot extend it ends it, and is then
 * read again in the state after the number.
 */
#include <config.h>

#include "runtime/text/json_prefix.h"

enum {
    S_START,         /* the top-level value */
    S_VALUE,         /* a value (after ':' or an array's ',') */
    S_ARRAY_FIRST,   /* a value or ']' (after '[') */
    S_OBJECT_FIRST,  /* a key or '}' (after '{') */
    S_KEY,           /* a key (after an object's ',') */
    S_COLON,         /* ':' after a key */
    S_AFTER,         /* ',' or the closer, after a value in a container */
    S_DONE,          /* after the top-level value: whitespace only */
    S_STRING,        /* inside a string (a key when F_KEY) */
    S_ESCAPE,        /* after '\' */
    S_HEX,           /* in \uXXXX: count digits read, hex so far */
    S_LOW_BACKSLASH, /* a high surrogate was escaped: '\' of its low one */
    S_LOW_U,         /* ... and its 'u' */
    S_UTF8,          /* inside a multi-byte character: count bytes left, next in [lo, hi] */
    S_LITERAL,       /* true, false or null: lo says which, count letters matched */
    S_MINUS,         /* after a number's '-' */
    S_ZERO,          /* the integer part is 0 */
    S_INT,           /* integer digits (count) */
    S_DOT,           /* after '.' */
    S_FRAC,          /* fraction digits (count) */
    S_EXP,           /* after 'e' or 'E' */
    S_EXP_SIGN,      /* after the exponent's sign */
    S_EXP_DIGITS,    /* exponent digits (count) */
};

enum {
    F_KEY = 1,         /* the string is an object's key */
    F_LOW = 2,         /* this \u escape must be a low surrogate */
    F_OBJECT_ONLY = 4, /* the top-level value must be an object */
};

#define MAX_INT_DIGITS 18  /* < 2^63: an int64 holds it */
#define MAX_FRAC_DIGITS 32 /* more than a double keeps */
#define MAX_EXP_DIGITS 2   /* with 18 digits: |x| < 1e117, a finite double */

static const char *const literals[] = {"true", "false", "null"};

void
mt_json_prefix_init(struct mt_json_prefix *p, bool object_only)
{
    *p = (struct mt_json_prefix){.state = S_START, .flags = object_only ? F_OBJECT_ONLY : 0};
}

static bool
is_ws(unsigned c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static bool
is_digit(unsigned c)
{
    return c >= '0' && c <= '9';
}

static int
hex_value(unsigned c)
{
    if (is_digit(c)) {
        return (int)(c - '0');
    }
    c |= 0x20; /* lower case */
    return c >= 'a' && c <= 'f' ? (int)(c - 'a' + 10) : -1;
}

static enum mt_json_verdict
value_done(struct mt_json_prefix *p)
{
    p->state = p->depth == 0 ? S_DONE : S_AFTER;
    return MT_JSON_OK;
}

static enum mt_json_verdict
open_container(struct mt_json_prefix *p, bool array)
{
    if (p->depth == MT_JSON_MAX_DEPTH) {
        return MT_JSON_LIMIT;
    }
    uint64_t bit = (uint64_t)1 << p->depth;
    p->arrays = array ? p->arrays | bit : p->arrays & ~bit;
    p->depth++;
    p->state = array ? S_ARRAY_FIRST : S_OBJECT_FIRST;
    return MT_JSON_OK;
}

static bool
top_is_array(const struct mt_json_prefix *p)
{
    return (p->arrays >> (p->depth - 1)) & 1;
}

static enum mt_json_verdict
close_container(struct mt_json_prefix *p)
{
    p->depth--;
    return value_done(p);
}

/* The first byte of a value. */
static enum mt_json_verdict
begin_value(struct mt_json_prefix *p, unsigned c)
{
    p->count = 0;
    switch (c) {
    case '{':
        return open_container(p, false);
    case '[':
        return open_container(p, true);
    case '"':
        p->state = S_STRING;
        return MT_JSON_OK;
    case '-':
        p->state = S_MINUS;
        return MT_JSON_OK;
    case '0':
        p->state = S_ZERO;
        return MT_JSON_OK;
    case 't':
    case 'f':
    case 'n':
        p->state = S_LITERAL;
        p->lo = c == 't' ? 0 : c == 'f' ? 1 : 2;
        p->count = 1;
        return MT_JSON_OK;
    default:
        if (c >= '1' && c <= '9') {
            p->state = S_INT;
            p->count = 1;
            return MT_JSON_OK;
        }
        return MT_JSON_BAD;
    }
}

/* A byte inside a string, outside escapes. */
static enum mt_json_verdict
string_byte(struct mt_json_prefix *p, unsigned c)
{
    if (c == '"') {
        if (p->flags & F_KEY) {
            p->flags &= (uint8_t)~F_KEY;
            p->state = S_COLON;
            return MT_JSON_OK;
        }
        return value_done(p);
    }
    if (c == '\\') {
        p->state = S_ESCAPE;
        return MT_JSON_OK;
    }
    if (c < 0x20) {
        return MT_JSON_BAD; /* control bytes must be escaped */
    }
    if (c < 0x80) {
        return MT_JSON_OK;
    }
    /* the lead byte of a multi-byte character: how many follow, and the first one's range (the
     * narrow ones rule out overlong forms, surrogates and code points above U+10FFFF) */
    p->lo = 0x80;
    p->hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf) {
        p->count = 1;
    } else if (c >= 0xe0 && c <= 0xef) {
        p->count = 2;
        p->lo = c == 0xe0 ? 0xa0 : 0x80;
        p->hi = c == 0xed ? 0x9f : 0xbf;
    } else if (c >= 0xf0 && c <= 0xf4) {
        p->count = 3;
        p->lo = c == 0xf0 ? 0x90 : 0x80;
        p->hi = c == 0xf4 ? 0x8f : 0xbf;
    } else {
        return MT_JSON_BAD; /* a continuation byte, 0xc0, 0xc1 or 0xf5-0xff */
    }
    p->state = S_UTF8;
    return MT_JSON_OK;
}

/* The fourth hex digit of a \u escape: the code unit is whole. */
static enum mt_json_verdict
escape_done(struct mt_json_prefix *p)
{
    bool high = p->hex >= 0xd800 && p->hex <= 0xdbff;
    bool low = p->hex >= 0xdc00 && p->hex <= 0xdfff;

    if (p->flags & F_LOW) {
        if (!low) {
            return MT_JSON_BAD;
        }
        p->flags &= (uint8_t)~F_LOW;
        p->state = S_STRING;
    } else if (low) {
        return MT_JSON_BAD; /* a low surrogate with no high one before it */
    } else {
        p->state = high ? S_LOW_BACKSLASH : S_STRING;
    }
    return MT_JSON_OK;
}

/* A number's next byte; a byte that cannot extend it ends it (*ended). */
static enum mt_json_verdict
number_byte(struct mt_json_prefix *p, unsigned c, bool *ended)
{
    bool digit = is_digit(c);

    *ended = false;
    switch (p->state) {
    case S_MINUS:
        if (!digit) {
            return MT_JSON_BAD;
        }
        p->state = c == '0' ? S_ZERO : S_INT;
        p->count = 1;
        return MT_JSON_OK;
    case S_DOT:
    case S_EXP_SIGN:
        if (!digit) {
            return MT_JSON_BAD;
        }
        p->state = p->state == S_DOT ? S_FRAC : S_EXP_DIGITS;
        p->count = 1;
        return MT_JSON_OK;
    case S_EXP:
        if (c == '+' || c == '-') {
            p->state = S_EXP_SIGN;
            return MT_JSON_OK;
        }
        if (!digit) {
            return MT_JSON_BAD;
        }
        p->state = S_EXP_DIGITS;
        p->count = 1;
        return MT_JSON_OK;
    default: /* S_ZERO, S_INT, S_FRAC, S_EXP_DIGITS: the number could end here */
        break;
    }
    if (digit && p->state != S_ZERO) {
        int max = p->state == S_INT ? MAX_INT_DIGITS
                  : p->state == S_FRAC ? MAX_FRAC_DIGITS : MAX_EXP_DIGITS;
        if (p->count == max) {
            return MT_JSON_LIMIT;
        }
        p->count++;
        return MT_JSON_OK;
    }
    if (digit) {
        return MT_JSON_BAD; /* a leading zero */
    }
    if (c == '.' && (p->state == S_ZERO || p->state == S_INT)) {
        p->state = S_DOT;
        return MT_JSON_OK;
    }
    if ((c == 'e' || c == 'E') && p->state != S_EXP_DIGITS) {
        p->state = S_EXP;
        return MT_JSON_OK;
    }
    *ended = true;
    return value_done(p);
}

static enum mt_json_verdict
step(struct mt_json_prefix *p, unsigned c)
{
    bool ended;

again:
    if (p->state <= S_DONE && is_ws(c)) { /* between tokens */
        return ++p->ws > MT_JSON_MAX_WS ? MT_JSON_LIMIT : MT_JSON_OK;
    }
    p->ws = 0;
    switch (p->state) {
    case S_START:
        if ((p->flags & F_OBJECT_ONLY) && c != '{') {
            return MT_JSON_BAD;
        }
        return begin_value(p, c);
    case S_ARRAY_FIRST:
        if (c == ']') {
            return close_container(p);
        }
        return begin_value(p, c);
    case S_VALUE:
        return begin_value(p, c);
    case S_OBJECT_FIRST:
        if (c == '}') {
            return close_container(p);
        }
        /* fall through */
    case S_KEY:
        if (c != '"') {
            return MT_JSON_BAD;
        }
        p->state = S_STRING;
        p->flags |= F_KEY;
        return MT_JSON_OK;
    case S_COLON:
        if (c != ':') {
            return MT_JSON_BAD;
        }
        p->state = S_VALUE;
        return MT_JSON_OK;
    case S_AFTER:
        if (c == ',') {
            p->state = top_is_array(p) ? S_VALUE : S_KEY;
            return MT_JSON_OK;
        }
        if (c == (top_is_array(p) ? ']' : '}')) {
            return close_container(p);
        }
        return MT_JSON_BAD;
    case S_DONE:
        return MT_JSON_BAD;
    case S_STRING:
        return string_byte(p, c);
    case S_ESCAPE:
        if (c == 'u') {
            p->state = S_HEX;
            p->count = 0;
            p->hex = 0;
            return MT_JSON_OK;
        }
        if (c == '"' || c == '\\' || c == '/' || c == 'b' || c == 'f' || c == 'n' || c == 'r' ||
            c == 't') {
            p->state = S_STRING;
            return MT_JSON_OK;
        }
        return MT_JSON_BAD;
    case S_HEX: {
        int v = hex_value(c);
        if (v < 0) {
            return MT_JSON_BAD;
        }
        p->hex = (uint16_t)(p->hex << 4 | (unsigned)v);
        return ++p->count == 4 ? escape_done(p) : MT_JSON_OK;
    }
    case S_LOW_BACKSLASH:
        if (c != '\\') {
            return MT_JSON_BAD;
        }
        p->state = S_LOW_U;
        return MT_JSON_OK;
    case S_LOW_U:
        if (c != 'u') {
            return MT_JSON_BAD;
        }
        p->state = S_HEX;
        p->flags |= F_LOW;
        p->count = 0;
        p->hex = 0;
        return MT_JSON_OK;
    case S_UTF8:
        if (c < p->lo || c > p->hi) {
            return MT_JSON_BAD;
        }
        p->lo = 0x80;
        p->hi = 0xbf;
        if (--p->count == 0) {
            p->state = S_STRING;
        }
        return MT_JSON_OK;
    case S_LITERAL: {
        const char *lit = literals[p->lo];
        if (c != (unsigned char)lit[p->count]) {
            return MT_JSON_BAD;
        }
        return lit[++p->count] == '\0' ? value_done(p) : MT_JSON_OK;
    }
    default: { /* a number */
        enum mt_json_verdict v = number_byte(p, c, &ended);
        if (v == MT_JSON_OK && ended) {
            goto again; /* c comes after the number */
        }
        return v;
    }
    }
}

enum mt_json_verdict
mt_json_prefix_feed(struct mt_json_prefix *p, const void *bytes, size_t len)
{
    struct mt_json_prefix q = *p;
    const unsigned char *b = bytes;

    for (size_t i = 0; i < len; i++) {
        enum mt_json_verdict v = step(&q, b[i]);
        if (v != MT_JSON_OK) {
            return v;
        }
    }
    *p = q;
    return MT_JSON_OK;
}

bool
mt_json_prefix_complete(const struct mt_json_prefix *p)
{
    if (p->state == S_DONE) {
        return true;
    }
    return p->depth == 0 && (p->state == S_ZERO || p->state == S_INT || p->state == S_FRAC ||
                             p->state == S_EXP_DIGITS);
}

bool
mt_json_prefix_in_string(const struct mt_json_prefix *p)
{
    return p->state == S_STRING;
}
