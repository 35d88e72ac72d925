/* SPDX-License-Identifier: MIT */
/*
 * test_json_prefix.c - runtime/text/json_prefix.c: whole JSON texts and their every prefix are
 * accepted, each kind of mistake is refused at its first bad byte, the bounds are MT_JSON_LIMIT,
 * a refused feed leaves the state alone, and on thousands of random texts (mutated from
 * generated ones) it agrees with jansson, an independent parser: whatever it calls whole,
 * jansson parses; whatever jansson parses, it calls whole or refuses only for a bound.
 */
#include <config.h>

#include "runtime/text/json_prefix.h"
#include "runtime/base/rng.h"
#include "tests/tap.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Feed byte by byte: the index of the first byte refused (len when none) and its verdict. */
static size_t
first_refused(const char *s, size_t len, bool object_only, enum mt_json_verdict *v,
              struct mt_json_prefix *end)
{
    struct mt_json_prefix p;

    mt_json_prefix_init(&p, object_only);
    *v = MT_JSON_OK;
    for (size_t i = 0; i < len; i++) {
        if ((*v = mt_json_prefix_feed(&p, s + i, 1)) != MT_JSON_OK) {
            return i;
        }
    }
    if (end != NULL) {
        *end = p;
    }
    return len;
}

static const char *const valid[] = {
    "{}",
    "[]",
    " { \"a\" : 1 , \"b\":[true,false,null,-0.5e+10,\"x\"] }\n",
    "{\"k\": {\"k\": {\"k\": []}}, \"\": \"\"}",
    "\"esc \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\u00e9 \\uD83D\\ude00\"",
    "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xed\x9f\xbf \xf4\x8f\xbf\xbf\"",
    "[0, -0, 1.0, 12E3, 1e-2, 0.125e+07, 123456789012345678]",
    "true",
    "null",
    "-12.5",
    "[[[[[]]]],{}]",
    "{\"a\":\"\\u0000\"}",
    "\"DEL \x7f, U+07FF \xdf\xbf, U+FFFF \xef\xbf\xbf, U+10000 \xf0\x90\x80\x80\"",
    "\"\\uDBFF\\uDFFF \\uabcd\"",
    /* a CR, a number starting with 9, an object where an array was at the same depth */
    "[9,\r\n[[1],{\"a\":-9.9e9}]]",
};

struct bad_case {
    const char *text;
    size_t at;                 /* the first byte refused */
    enum mt_json_verdict verdict;
    const char *why;
};

static const struct bad_case bad[] = {
    {"{,}", 1, MT_JSON_BAD, "a comma with nothing before it"},
    {"{\"a\" 1}", 5, MT_JSON_BAD, "a key without its colon"},
    {"{\"a\":1,}", 7, MT_JSON_BAD, "a trailing comma in an object"},
    {"[1,]", 3, MT_JSON_BAD, "a trailing comma in an array"},
    {"[1}", 2, MT_JSON_BAD, "an array closed by }"},
    {"{\"a\":1]", 6, MT_JSON_BAD, "an object closed by ]"},
    {"{1:2}", 1, MT_JSON_BAD, "a number as a key"},
    {"[01]", 2, MT_JSON_BAD, "a leading zero"},
    {"[1.]", 3, MT_JSON_BAD, "a dot without digits"},
    {"[.5]", 1, MT_JSON_BAD, "a fraction without its integer"},
    {"[1e]", 3, MT_JSON_BAD, "an exponent without digits"},
    {"[-]", 2, MT_JSON_BAD, "a minus alone"},
    {"[+1]", 1, MT_JSON_BAD, "a plus sign"},
    {"[tru]", 4, MT_JSON_BAD, "a cut literal"},
    {"[True]", 1, MT_JSON_BAD, "a capitalised literal"},
    {"[\"a\nb\"]", 3, MT_JSON_BAD, "a raw newline in a string"},
    {"[\"\\x\"]", 3, MT_JSON_BAD, "an unknown escape"},
    {"[\"\\u12g4\"]", 6, MT_JSON_BAD, "a bad hex digit"},
    {"[\"\\udc00\"]", 7, MT_JSON_BAD, "a lone low surrogate"},
    {"[\"\\ud800x\"]", 8, MT_JSON_BAD, "a high surrogate without its low one"},
    {"[\"\\ud800\\u0041\"]", 13, MT_JSON_BAD, "a high surrogate and a non-surrogate"},
    {"[\"\xc0\xaf\"]", 2, MT_JSON_BAD, "an overlong two-byte form"},
    {"[\"\xe0\x80\xaf\"]", 3, MT_JSON_BAD, "an overlong three-byte form"},
    {"[\"\xed\xa0\x80\"]", 3, MT_JSON_BAD, "a surrogate in UTF-8"},
    {"[\"\xf4\x90\x80\x80\"]", 3, MT_JSON_BAD, "a code point above U+10FFFF"},
    {"[\"\x80\"]", 2, MT_JSON_BAD, "a stray continuation byte"},
    {"[\"\xc3(\"]", 3, MT_JSON_BAD, "a cut two-byte character"},
    {"[\"\x1f\"]", 2, MT_JSON_BAD, "a raw 0x1f (the last control byte) in a string"},
    {"[\"\xf0\x8f\xbf\xbf\"]", 3, MT_JSON_BAD, "an overlong four-byte form"},
    {"[\"\xf5\x80\x80\x80\"]", 2, MT_JSON_BAD, "a lead byte 0xf5 (only above U+10FFFF)"},
    {"[\"\xff\"]", 2, MT_JSON_BAD, "a byte 0xff"},
    {"{} {}", 3, MT_JSON_BAD, "a second top-level value"},
    {"1 2", 2, MT_JSON_BAD, "a second top-level number"},
    {"[1 2]", 3, MT_JSON_BAD, "two values without a comma"},
    {"[1234567890123456789]", 19, MT_JSON_LIMIT, "a 19-digit integer"},
    {"[-1234567890123456789]", 20, MT_JSON_LIMIT, "a 19-digit negative integer"},
    {"[-01]", 3, MT_JSON_BAD, "a leading zero after a minus"},
    {"[1.5.2]", 4, MT_JSON_BAD, "a second dot"},
    {"[1e5e3]", 4, MT_JSON_BAD, "a second exponent"},
    {"[1e123]", 5, MT_JSON_LIMIT, "a 3-digit exponent"},
};

static void
check_valid(void)
{
    int bad_prefix = 0, bad_whole = 0;

    for (size_t k = 0; k < sizeof(valid) / sizeof(valid[0]); k++) {
        const char *s = valid[k];
        size_t len = strlen(s);
        enum mt_json_verdict v;
        struct mt_json_prefix end;
        if (first_refused(s, len, false, &v, &end) != len || !mt_json_prefix_complete(&end)) {
            tap_diag("not whole: %s", s);
            bad_whole++;
        }
        /* every proper prefix of a container or string is the start of JSON, and not whole */
        for (size_t i = 0; i < len && (s[0] == '{' || s[0] == '[' || s[0] == '"'); i++) {
            struct mt_json_prefix p;
            mt_json_prefix_init(&p, false);
            if (mt_json_prefix_feed(&p, s, i) != MT_JSON_OK || mt_json_prefix_complete(&p)) {
                tap_diag("prefix %zu of %s", i, s);
                bad_prefix++;
            }
        }
    }
    tap_ok(bad_whole == 0, "%zu valid texts are accepted and whole",
           sizeof(valid) / sizeof(valid[0]));
    tap_ok(bad_prefix == 0, "... and each proper prefix is accepted, not whole");
}

static void
check_bad(void)
{
    for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
        enum mt_json_verdict v;
        size_t at = first_refused(bad[k].text, strlen(bad[k].text), false, &v, NULL);
        tap_ok(at == bad[k].at && v == bad[k].verdict, "%s: refused at byte %zu (%s), got %zu (%d)",
               bad[k].why, bad[k].at, bad[k].verdict == MT_JSON_LIMIT ? "limit" : "bad", at,
               (int)v);
    }
}

static void
check_bounds(void)
{
    char buf[512];
    enum mt_json_verdict v;
    struct mt_json_prefix end;

    /* depth: 64 open arrays, closed again, fit; a 65th is a limit */
    memset(buf, '[', MT_JSON_MAX_DEPTH);
    memset(buf + MT_JSON_MAX_DEPTH, ']', MT_JSON_MAX_DEPTH);
    size_t n = 2 * MT_JSON_MAX_DEPTH;
    tap_ok(first_refused(buf, n, false, &v, &end) == n && mt_json_prefix_complete(&end),
           "%d nested arrays are whole", MT_JSON_MAX_DEPTH);
    memset(buf, '[', MT_JSON_MAX_DEPTH + 1);
    tap_ok(first_refused(buf, MT_JSON_MAX_DEPTH + 1, false, &v, NULL) == MT_JSON_MAX_DEPTH &&
           v == MT_JSON_LIMIT, "a %dth is a limit", MT_JSON_MAX_DEPTH + 1);

    /* whitespace: a run of 64 fits, 65 is a limit; a run starts again after a token */
    n = (size_t)snprintf(buf, sizeof(buf), "{%*s\"a\":%*s1}", MT_JSON_MAX_WS, "",
                         MT_JSON_MAX_WS, "");
    tap_ok(first_refused(buf, n, true, &v, &end) == n && mt_json_prefix_complete(&end),
           "runs of %d whitespace bytes fit", MT_JSON_MAX_WS);
    n = (size_t)snprintf(buf, sizeof(buf), "{%*s}", MT_JSON_MAX_WS + 1, "");
    tap_ok(first_refused(buf, n, true, &v, NULL) == MT_JSON_MAX_WS + 1 && v == MT_JSON_LIMIT,
           "a run of %d is a limit", MT_JSON_MAX_WS + 1);

    /* numbers: the longest of each part fit, one more digit is a limit */
    const char *fits = "[-123456789012345678.12345678901234567890123456789012e-99]";
    tap_ok(first_refused(fits, strlen(fits), false, &v, &end) == strlen(fits) &&
           mt_json_prefix_complete(&end), "18 integer, 32 fraction, 2 exponent digits fit");
    const char *frac = "[0.123456789012345678901234567890123]";
    tap_ok(first_refused(frac, strlen(frac), false, &v, NULL) == 35 && v == MT_JSON_LIMIT,
           "a 33rd fraction digit is a limit");
}

static void
check_object_only_and_state(void)
{
    struct mt_json_prefix p;
    enum mt_json_verdict v;

    tap_ok(first_refused("[1]", 3, true, &v, NULL) == 0 && v == MT_JSON_BAD &&
           first_refused("\"s\"", 3, true, &v, NULL) == 0 &&
           first_refused("\n {}", 4, true, &v, NULL) == 4,
           "object_only: an array or a string at the top is refused, leading whitespace not");

    mt_json_prefix_init(&p, true);
    bool ok = mt_json_prefix_feed(&p, "{\"a\":", 5) == MT_JSON_OK &&
              mt_json_prefix_feed(&p, "1x", 2) == MT_JSON_BAD &&
              mt_json_prefix_feed(&p, "\"\\ud8", 5) == MT_JSON_OK &&
              mt_json_prefix_feed(&p, "00\"", 3) == MT_JSON_BAD && /* the low one is due */
              mt_json_prefix_feed(&p, "00\\udfff\"}", 10) == MT_JSON_OK &&
              mt_json_prefix_complete(&p);
    tap_ok(ok, "a refused feed leaves the state as it was (tokens tried on the real state)");

    mt_json_prefix_init(&p, false);
    ok = mt_json_prefix_feed(&p, "12", 2) == MT_JSON_OK && mt_json_prefix_complete(&p) &&
         mt_json_prefix_feed(&p, "3.", 2) == MT_JSON_OK && !mt_json_prefix_complete(&p) &&
         mt_json_prefix_feed(&p, "5 ", 2) == MT_JSON_OK && mt_json_prefix_complete(&p);
    tap_ok(ok, "a top-level number is whole wherever it could end");

    /* ... and only there: not after a minus, an 'e', its sign, or inside a literal */
    static const struct {
        const char *text;
        bool whole;
    } ends[] = {
        {"0", true}, {"1e5", true}, {"-", false}, {"1e", false}, {"1e+", false}, {"tru", false},
    };
    ok = true;
    for (size_t k = 0; k < sizeof(ends) / sizeof(ends[0]); k++) {
        mt_json_prefix_init(&p, false);
        if (mt_json_prefix_feed(&p, ends[k].text, strlen(ends[k].text)) != MT_JSON_OK ||
            mt_json_prefix_complete(&p) != ends[k].whole) {
            tap_diag("complete after %s: want %d", ends[k].text, (int)ends[k].whole);
            ok = false;
        }
    }
    tap_ok(ok, "a top-level 0 and 1e5 are whole; -, 1e, 1e+ and tru are not");

    /* in_string: inside a string (a key too), not inside an escape or a character */
    static const struct {
        const char *text;
        bool in;
    } at[] = {
        {"[\"ab", true},     {"{\"k", true},    {"[\"\\n", true}, {"[\"a\\", false},
        {"[\"\\u00", false}, {"[\"\xc3", false}, {"[\"a\"", false}, {"[1", false},
    };
    ok = true;
    for (size_t k = 0; k < sizeof(at) / sizeof(at[0]); k++) {
        mt_json_prefix_init(&p, false);
        if (mt_json_prefix_feed(&p, at[k].text, strlen(at[k].text)) != MT_JSON_OK ||
            mt_json_prefix_in_string(&p) != at[k].in) {
            tap_diag("in_string after %s: want %d", at[k].text, (int)at[k].in);
            ok = false;
        }
    }
    tap_ok(ok, "in_string: inside a string or key, not in an escape, a character or after it");
}

/* ------------------------------------------------------------------------------------------ */
/* random texts against jansson */

struct text {
    char *p;
    size_t n, cap;
};

static void
put(struct text *t, const char *s, size_t len)
{
    if (t->n + len + 1 > t->cap) {
        t->cap = (t->n + len + 1) * 2;
        t->p = realloc(t->p, t->cap);
        if (t->p == NULL) {
            tap_bail_out("out of memory");
        }
    }
    memcpy(t->p + t->n, s, len);
    t->n += len;
    t->p[t->n] = '\0';
}

static void
puts_(struct text *t, const char *s)
{
    put(t, s, strlen(s));
}

static void
put_ws(struct text *t, struct mt_rng *r)
{
    static const char *const ws[] = {"", "", "", " ", "\n  ", "\t", "\r\n"};
    puts_(t, ws[mt_rng_next(r) % 7]);
}

/* A random JSON value; pieces chosen to reach every state (escapes, UTF-8, exponents). */
static void
gen_value(struct text *t, struct mt_rng *r, int depth)
{
    static const char *const atoms[] = {
        "0", "-0", "7", "-12.5", "1e9", "2.5E-3", "123456789012345678", "0.5e+1", "true",
        "false", "null", "\"\"", "\"plain\"", "\"\\n\\t\\\"\\\\\\/\"", "\"\\u00e9\\uD834\\uDD1E\"",
        "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"", "\"\\u0000\"",
    };
    unsigned k = mt_rng_next(r) % (depth > 6 ? 17u : 21u);
    if (k < 17) {
        puts_(t, atoms[k]);
        return;
    }
    bool array = k < 19;
    int n = (int)(mt_rng_next(r) % 4);
    puts_(t, array ? "[" : "{");
    for (int i = 0; i < n; i++) {
        put_ws(t, r);
        if (i > 0) {
            puts_(t, ",");
            put_ws(t, r);
        }
        if (!array) {
            puts_(t, (mt_rng_next(r) & 1) ? "\"k\"" : "\"\xc3\xa9\\u0041\"");
            put_ws(t, r);
            puts_(t, ":");
            put_ws(t, r);
        }
        gen_value(t, r, depth + 1);
    }
    put_ws(t, r);
    puts_(t, array ? "]" : "}");
}

/* Break the text a little: change, drop, double or insert a byte, often a structural one. */
static void
mutate(struct text *t, struct mt_rng *r)
{
    static const char pool[] = "{}[]\":,\\ -+.eE0123456789tfnulrasu\x80\xc3\xed\xf4\x01";
    int edits = (int)(mt_rng_next(r) % 3);
    for (int e = 0; e < edits && t->n > 0; e++) {
        size_t at = mt_rng_next(r) % t->n;
        char c = pool[mt_rng_next(r) % (sizeof(pool) - 1)];
        switch (mt_rng_next(r) % 4) {
        case 0:
            t->p[at] = c;
            break;
        case 1:
            memmove(t->p + at, t->p + at + 1, t->n - at);
            t->n--;
            break;
        default: {
            char one[2] = {c, 0};
            struct text tail = {0};
            put(&tail, t->p + at, t->n - at);
            t->n = at;
            put(t, one, 1);
            put(t, tail.p, tail.n);
            free(tail.p);
            break;
        }
        }
    }
}

static void
check_against_jansson(void)
{
    struct mt_rng r;
    int rounds = 30000, parsed = 0, whole = 0;
    int we_accept_jansson_refuses = 0, jansson_accepts_we_refuse = 0, prefix_refused = 0;
    int split_differs = 0;

    mt_rng_init(&r, 20261205);
    for (int i = 0; i < rounds; i++) {
        struct text t = {0};
        put_ws(&t, &r);
        gen_value(&t, &r, 0);
        put_ws(&t, &r);
        if (i % 4 != 0) {
            mutate(&t, &r);
        }
        json_error_t err;
        json_t *j = json_loadb(t.p, t.n, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
        enum mt_json_verdict v;
        struct mt_json_prefix end;
        size_t at = first_refused(t.p, t.n, false, &v, &end);
        bool ours = at == t.n && mt_json_prefix_complete(&end);
        parsed += j != NULL;
        whole += ours;
        /* jansson's own limit, not JSON's: a key may not hold \u0000 */
        if (ours && j == NULL && strstr(err.text, "NUL byte in object key") == NULL) {
            if (we_accept_jansson_refuses++ < 3) {
                tap_diag("we call whole, jansson refuses (%s): %s", err.text, t.p);
            }
        }
        if (j != NULL && !ours && v != MT_JSON_LIMIT) {
            if (jansson_accepts_we_refuse++ < 3) {
                tap_diag("jansson parses, we refuse at %zu: %s", at, t.p);
            }
        }
        /* whatever jansson parses, every prefix of it is the start of JSON (or past a bound) */
        if (j != NULL && at < t.n && v != MT_JSON_LIMIT) {
            prefix_refused++;
        }
        /* fed in two pieces at a random cut: the same verdict as byte by byte */
        size_t cut = t.n > 0 ? mt_rng_next(&r) % (t.n + 1) : 0;
        struct mt_json_prefix p;
        mt_json_prefix_init(&p, false);
        enum mt_json_verdict v1 = mt_json_prefix_feed(&p, t.p, cut);
        enum mt_json_verdict v2 = v1 == MT_JSON_OK ? mt_json_prefix_feed(&p, t.p + cut, t.n - cut)
                                                   : v1;
        bool whole2 = v1 == MT_JSON_OK && v2 == MT_JSON_OK && mt_json_prefix_complete(&p);
        if (whole2 != ours || (v2 != MT_JSON_OK) != (at < t.n)) {
            split_differs++;
        }
        json_decref(j);
        free(t.p);
    }
    tap_diag("%d random texts: jansson parses %d, we call %d whole", rounds, parsed, whole);
    tap_ok(parsed > rounds / 8 && parsed < rounds - rounds / 8,
           "the random texts are a mix of JSON (%d) and not (%d)", parsed, rounds - parsed);
    tap_ok(we_accept_jansson_refuses == 0, "what we call whole, jansson parses (%d not)",
           we_accept_jansson_refuses);
    tap_ok(jansson_accepts_we_refuse == 0 && prefix_refused == 0,
           "what jansson parses, we call whole or refuse only for a bound (%d, %d not)",
           jansson_accepts_we_refuse, prefix_refused);
    tap_ok(split_differs == 0, "a feed in two pieces = a feed byte by byte (%d differ)",
           split_differs);
}

int
main(void)
{
    tap_plan(0);
    check_valid();
    check_bad();
    check_bounds();
    check_object_only_and_state();
    check_against_jansson();
    return tap_done();
}
