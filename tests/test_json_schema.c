/* SPDX-License-Identifier: MIT */
/*
 * test_json_schema.c - runtime/text/json_schema.c: what a schema compiles to (and which keywords
 * it refuses, strict or lenient), instances and their every prefix accepted, each kind of
 * mistake refused at its first bad byte, and, over DeepSeek-V3.2's real vocabulary, replies
 * sampled from random logits through json_constraint.c that a separate validator
 * (tests/json_validate.c, on jansson's trees) finds to be instances of the schema; the mask with
 * the schema lets through exactly the tokens the plain rule does (feed each token's bytes).
 */
#include <config.h>

#include "runtime/text/json_constraint.h"
#include "runtime/text/json_schema.h"
#include "runtime/base/clock.h"
#include "runtime/base/rng.h"
#include "runtime/base/status.h"
#include "runtime/text/tokenizer.h"
#include "tests/json_validate.h"
#include "tests/tap.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A schema as Pydantic writes one: $defs, an optional field as anyOf [string, null], enums of
 * strings and of integers, a list of nested objects, an integer, a free value. */
static const char person_schema[] =
    "{\"$defs\": {\"Pet\": {\"type\": \"object\", \"title\": \"Pet\", \"properties\": {"
    "\"kind\": {\"enum\": [\"cat\", \"dog\", \"caterpillar\"]}, \"age\": {\"type\": \"integer\"},"
    " \"legs\": {\"enum\": [0, 4, 40]}},"
    " \"required\": [\"kind\", \"age\"], \"additionalProperties\": false}},"
    " \"type\": \"object\", \"properties\": {"
    "\"name\": {\"type\": \"string\", \"description\": \"who\"},"
    " \"nick\": {\"anyOf\": [{\"type\": \"string\"}, {\"type\": \"null\"}]},"
    " \"score\": {\"type\": \"number\"},"
    " \"pets\": {\"type\": \"array\", \"items\": {\"$ref\": \"#/$defs/Pet\"}, \"maxItems\": 2},"
    " \"ok\": {\"type\": \"boolean\"}, \"extra\": {}},"
    " \"required\": [\"name\", \"pets\"], \"additionalProperties\": false}";

static json_t *
load(const char *text)
{
    json_error_t err;
    json_t *v = json_loads(text, 0, &err);
    if (v == NULL) {
        tap_bail_out("a test schema does not parse");
    }
    return v;
}

static struct mt_json_schema *
compile(const char *text, bool lenient, mt_status_t *st)
{
    json_t *v = load(text);
    struct mt_json_schema *s = NULL;
    mt_log_set_quiet(true);
    *st = mt_json_schema_compile(v, lenient, &s);
    mt_log_set_quiet(false);
    json_decref(v);
    return s;
}

static void
check_compile(void)
{
    static const struct {
        const char *schema;
        const char *why;
        const char *says; /* in the message */
    } refused[] = {
        {"{\"type\": \"object\", \"properties\": {\"a\": {\"type\": \"integer\", \"minimum\": 0}}}",
         "a minimum (strict)", "'minimum'"},
        {"{\"type\": \"object\", \"properties\": {\"a\": {\"type\": \"string\", "
         "\"pattern\": \"x\"}}}",
         "a pattern (strict)", "'pattern'"},
        {"{\"type\": \"object\", \"allOf\": []}", "allOf", "'allOf'"},
        {"{\"type\": \"object\", \"properties\": {\"a\": {\"not\": {}}}}", "not", "'not'"},
        {"{\"type\": \"object\", \"properties\": {\"a\": {\"enum\": [1, 2.5]}}}",
         "an enum with a real number", "not a string, integer"},
        {"{\"type\": \"object\", \"properties\": {\"a\": {\"anyOf\": [{\"type\": \"string\"}, "
         "{\"enum\": [\"x\"]}]}}}", "anyOf alternatives that begin alike", "begin with '\"'"},
        {"{\"type\": \"array\"}", "a root that is not an object", "root"},
        {"{\"type\": \"object\", \"properties\": {\"a\": {\"$ref\": \"#/$defs/B\"}}}",
         "a $ref to nothing", "names no schema"},
        {"{\"type\": \"object\", \"properties\": {\"a\\\"b\": {}}}", "a key with a quote",
         "quote"},
        {"{\"type\": \"object\", \"properties\": {\"a\": {\"type\": \"date\"}}}", "an unknown type",
         "unknown type"},
        {"{\"type\": \"object\", \"required\": [\"z\"], \"properties\": {}}",
         "a required key that is no property", "names no property"},
        {"{\"type\": \"object\", \"properties\": {\"a\": {\"type\": \"array\", "
         "\"prefixItems\": []}}}",
         "prefixItems", "'prefixItems'"},
        {"{\"type\": \"object\", \"properties\": {\"a\": {\"required\": 0}}}",
         "a required that is no array, in a schema with no type", "required an array"},
    };
    for (size_t k = 0; k < sizeof(refused) / sizeof(refused[0]); k++) {
        mt_status_t st;
        struct mt_json_schema *s = compile(refused[k].schema, false, &st);
        tap_ok(st == MT_ERR_INVAL && s == NULL && strstr(mt_last_error(), refused[k].says) != NULL,
               "refused: %s (%s)", refused[k].why, mt_last_error());
    }
    mt_status_t st;
    /* 70 arrays inside each other: the compiler's recursion is bounded */
    char deep[2048] = "{\"type\": \"object\", \"properties\": {\"a\": ";
    for (int k = 0; k < 70; k++) {
        strcat(deep, "{\"type\": \"array\", \"items\": ");
    }
    strcat(deep, "{}");
    for (int k = 0; k < 70; k++) {
        strcat(deep, "}");
    }
    strcat(deep, "}}");
    struct mt_json_schema *s = compile(deep, false, &st);
    tap_ok(st == MT_ERR_INVAL && s == NULL && strstr(mt_last_error(), "nest deeper") != NULL,
           "refused: schemas nested 70 deep (%s)", mt_last_error());
    s = compile(refused[0].schema, true, &st);
    struct mt_json_schema *s2 = compile(refused[1].schema, true, &st);
    struct mt_json_schema *s3 = compile(refused[2].schema, true, &st);
    tap_ok(s != NULL && s2 != NULL && s3 == NULL,
           "lenient: minimum and pattern are left to the model, allOf still refused");
    mt_json_schema_destroy(s);
    mt_json_schema_destroy(s2);
    s = compile(person_schema, false, &st);
    tap_ok(s != NULL, "a Pydantic-like schema compiles (%s)", s == NULL ? mt_last_error() : "ok");
    mt_json_schema_destroy(s);
}

/* Feed byte by byte: the first byte refused (len when none); *end the state after all. */
static size_t
first_refused(const struct mt_json_schema *s, const char *text, enum mt_json_verdict *v,
              struct mt_json_schema_state *end)
{
    struct mt_json_schema_state st;
    size_t len = strlen(text);

    mt_json_schema_start(&st);
    *v = MT_JSON_OK;
    for (size_t i = 0; i < len; i++) {
        if ((*v = mt_json_schema_feed(s, &st, text + i, 1)) != MT_JSON_OK) {
            return i;
        }
    }
    mt_json_schema_state_copy(end, &st);
    return len;
}

static void
check_instances(void)
{
    mt_status_t st;
    struct mt_json_schema *s = compile(person_schema, false, &st);
    static const char *const good[] = {
        "{\"name\": \"Ann\", \"pets\": []}",
        "{\"name\":\"\",\"nick\":null,\"score\":-1.5e3,\"pets\":[{\"kind\":\"cat\",\"age\":3}],"
        "\"ok\":true,\"extra\":{\"any\":[1,\"x\",null]}}",
        " {\n  \"name\": \"caf\xc3\xa9 \\\"q\\\"\",\n  \"nick\": \"x\",\n  \"pets\": [\n    "
        "{\"kind\": "
        "\"caterpillar\", \"age\": 0},\n    {\"kind\": \"dog\", \"age\": -12}\n  ],\n  "
        "\"extra\": 7\n} ",
    };
    int bad_whole = 0, bad_prefix = 0;
    for (size_t k = 0; s != NULL && k < sizeof(good) / sizeof(good[0]); k++) {
        enum mt_json_verdict v;
        struct mt_json_schema_state end;
        size_t len = strlen(good[k]);
        if (first_refused(s, good[k], &v, &end) != len || !mt_json_schema_complete(&end)) {
            tap_diag("refused at %zu: %s", first_refused(s, good[k], &v, &end), good[k]);
            bad_whole++;
        }
        for (size_t i = 0; i < len; i++) {
            struct mt_json_schema_state p;
            mt_json_schema_start(&p);
            /* a prefix that ends after the closing brace (trailing space) is whole already */
            if (mt_json_schema_feed(s, &p, good[k], i) != MT_JSON_OK ||
                (mt_json_schema_complete(&p) && strchr(good[k] + i, '}') != NULL)) {
                bad_prefix++;
            }
        }
    }
    tap_ok(s != NULL && bad_whole == 0, "%zu instances are accepted and whole",
           sizeof(good) / sizeof(good[0]));
    tap_ok(s != NULL && bad_prefix == 0, "... and each prefix is accepted, not whole");

    static const struct {
        const char *text;
        size_t at;
        const char *why;
    } bad[] = {
        {"{\"pets\": []}", 2, "a required key left out (name comes first)"},
        {"{\"name\": \"a\"}", 12, "the object closed before a required key"},
        {"{\"name\": \"a\", \"pets\": [], \"name\": \"b\"}", 27, "a key given twice"},
        {"{\"name\": \"a\", \"pets\": [], \"nick\": \"b\"}", 27, "a key out of the schema's order"},
        {"{\"name\": \"a\", \"colour\": 1}", 15, "a key the schema does not name"},
        {"{\"name\": 5}", 9, "a number for a string"},
        {"{\"name\": \"a\", \"nick\": 5}", 22, "a number where anyOf has string or null"},
        {"{\"name\": \"a\", \"pets\": [{\"kind\": \"cow\"}]}", 34, "a value outside the enum"},
        {"{\"name\": \"a\", \"pets\": [{\"kind\": \"cat\", \"age\": 1.5}]}", 47,
         "a fraction for an integer"},
        {"{\"name\": \"a\", \"pets\": [{\"kind\": \"cat\", \"age\": 1e3}]}", 47,
         "an exponent for an integer"},
        {"{\"name\": \"a\", \"pets\": [{\"kind\": \"cat\", \"age\": 1}, {\"kind\": \"cat\", "
         "\"age\": 2},"
         " {", 75, "a third item where maxItems is 2 (its comma)"},
        {"{\"name\": \"a\", \"pets\": [],}", 25, "a trailing comma"},
        {"{\"name\": \"a\", \"pets\": [], \"ok\": 1}", 32, "a number for a boolean"},
        {"[]", 0, "an array for the root object"},
        {"{\"name\": \"a\", \"pets\": []} x", 26, "text after the object"},
    };
    for (size_t k = 0; s != NULL && k < sizeof(bad) / sizeof(bad[0]); k++) {
        enum mt_json_verdict v;
        struct mt_json_schema_state end;
        size_t at = first_refused(s, bad[k].text, &v, &end);
        tap_ok(at == bad[k].at && v == MT_JSON_BAD, "refused: %s, at byte %zu (got %zu)",
               bad[k].why, bad[k].at, at);
    }

    /* arrays with minItems; an optional key between two required ones */
    mt_json_schema_destroy(s);
    s = compile("{\"type\": \"object\", \"properties\": {\"a\": {\"type\": \"integer\"}, \"b\": "
                "{\"type\": \"string\"}, \"c\": {\"type\": \"array\", \"minItems\": 2, \"items\": "
                "{\"type\": \"null\"}}}, \"required\": [\"a\", \"c\"]}", false, &st);
    enum mt_json_verdict v;
    struct mt_json_schema_state end;
    bool ok = s != NULL && first_refused(s, "{\"a\":1,\"c\":[null,null]}", &v, &end) == 23 &&
              mt_json_schema_complete(&end) &&
              first_refused(s, "{\"a\":1,\"b\":\"\",\"c\":[null,null,null]}", &v, &end) == 35 &&
              first_refused(s, "{\"a\":1,\"c\":[null]}", &v, &end) == 16 &&
              first_refused(s, "{\"a\":1,\"c\":[]}", &v, &end) == 12;
    tap_ok(ok, "an optional key may be skipped, a required one not; minItems 2 holds");
    mt_json_schema_destroy(s);

    /* an integer enum: 1 ends at the byte after it, since 12 could go on from it */
    s = compile("{\"type\": \"object\", \"properties\": {\"a\": {\"enum\": [1, 12, -3, \"x\"]}, "
                "\"b\": {\"const\": 7}}, \"required\": [\"a\", \"b\"]}", false, &st);
    ok = s != NULL && first_refused(s, "{\"a\":12,\"b\":7}", &v, &end) == 14 &&
         mt_json_schema_complete(&end) &&
         first_refused(s, "{\"a\":1 ,\"b\":7}", &v, &end) == 14 &&
         mt_json_schema_complete(&end) &&
         first_refused(s, "{\"a\": -3, \"b\": 7 }", &v, &end) == 18 &&
         first_refused(s, "{\"a\":\"x\",\"b\":7}", &v, &end) == 15 &&
         first_refused(s, "{\"a\":123", &v, &end) == 7 && v == MT_JSON_BAD &&
         first_refused(s, "{\"a\":2", &v, &end) == 5 &&
         first_refused(s, "{\"a\":1,\"b\":70", &v, &end) == 12;
    tap_ok(ok, "integer enums and const: 12 and 1 both (1 ends at the byte after it), not 123, "
           "2 or 70 (%s)", s == NULL ? mt_last_error() : "ok");
    mt_json_schema_destroy(s);

    /* recursion through $ref: a tree */
    s = compile("{\"$defs\": {\"T\": {\"type\": \"object\", \"properties\": {\"v\": {\"type\": "
                "\"integer\"}, \"kids\": {\"type\": \"array\", \"items\": {\"$ref\": "
                "\"#/$defs/T\"}}},"
                " \"required\": [\"v\", \"kids\"]}}, \"$ref\": \"#/$defs/T\"}", false, &st);
    const char *tree = "{\"v\":1,\"kids\":[{\"v\":2,\"kids\":[]},{\"v\":3,\"kids\":[{\"v\":4,"
                       "\"kids\":[]}]}]}";
    ok = s != NULL && first_refused(s, tree, &v, &end) == strlen(tree) &&
         mt_json_schema_complete(&end);
    tap_ok(ok, "a recursive schema ($ref to itself): a tree of three levels (%s)",
           s == NULL ? mt_last_error() : "ok");
    mt_json_schema_destroy(s);

    /* no type: items makes an array, required (or properties) an object with only the keys
     * it names (a fuzzer found "required" alone read as any value, wider than the schema) */
    s = compile("{\"type\": \"object\", \"properties\": {\"a\": {\"items\": {\"type\": "
                "\"string\"}}, \"b\": {\"required\": []}}}", false, &st);
    ok = s != NULL && first_refused(s, "{\"a\":[\"x\"],\"b\":{}}", &v, &end) == 18 &&
         mt_json_schema_complete(&end) &&
         first_refused(s, "{\"a\":[1]}", &v, &end) == 6 &&
         first_refused(s, "{\"a\":\"x\"}", &v, &end) == 5 &&
         first_refused(s, "{\"b\":{\"z\":1}}", &v, &end) == 6 &&
         first_refused(s, "{\"b\":7}", &v, &end) == 5;
    tap_ok(ok, "no type: items holds an array of its items, required an object of no other "
           "keys (%s)", s == NULL ? mt_last_error() : "ok");
    mt_json_schema_destroy(s);
}

/* Feed the bytes one at a time from a fresh state (NUL bytes too): the verdict of the first that
 * is refused, and at *at its index (len when none). */
static enum mt_json_verdict
feed_bytes(const struct mt_json_schema *s, const char *bytes, size_t len, size_t *at)
{
    struct mt_json_schema_state st;
    enum mt_json_verdict v = MT_JSON_OK;

    mt_json_schema_start(&st);
    for (*at = 0; *at < len && (v = mt_json_schema_feed(s, &st, bytes + *at, 1)) == MT_JSON_OK;
         (*at)++) {
    }
    return v;
}

/* The edges of the compiler's checks and of the reader's bounds. */
static void
check_edges(void)
{
    static const struct {
        const char *schema;
        const char *why;
        const char *says;
    } refused[] = {
        {"{\"$defs\": {\"A/B\": {\"type\": \"object\"}}, \"type\": \"object\", \"properties\": "
         "{\"a\": {\"$ref\": \"#/$defs/A/B\"}}}",
         "a $ref through a '/' (a JSON pointer: A then B, not the key \"A/B\")", "names no schema"},
        {"{\"type\": \"object\", \"properties\": {\"a\\u001fb\": {}}}",
         "a key with the control character 0x1f", "control character"},
        {"{\"type\": \"object\", \"properties\": {\"a\": {\"type\": \"array\", \"minItems\": -1}}}",
         "minItems -1", "minItems and maxItems"},
        {"{\"type\": \"object\", \"properties\": {\"a\": {\"type\": \"array\", "
         "\"maxItems\": 65536}}}",
         "maxItems 65536", "minItems and maxItems"},
        {"{\"$defs\": {\"S\": {\"type\": \"string\"}}, \"$ref\": \"#/$defs/S\"}",
         "a root $ref to a string schema", "root"},
        {"{\"$defs\": {\"A\": {\"$ref\": \"#/$defs/A\"}}, \"type\": \"object\", \"properties\": "
         "{\"a\": {\"$ref\": \"#/$defs/A\"}}}",
         "a $ref to itself and nothing else", "too deep"},
    };
    mt_status_t st;
    for (size_t k = 0; k < sizeof(refused) / sizeof(refused[0]); k++) {
        struct mt_json_schema *s = compile(refused[k].schema, false, &st);
        tap_ok(st == MT_ERR_INVAL && s == NULL && strstr(mt_last_error(), refused[k].says) != NULL,
               "refused: %s (%s)", refused[k].why, mt_last_error());
        mt_json_schema_destroy(s);
    }

    /* additionalProperties true or {} is held as false (a reply names only the schema's keys) */
    static const char *const extras[] = {"true", "{}"};
    for (int k = 0; k < 2; k++) {
        char text[256];
        snprintf(text, sizeof(text), "{\"type\": \"object\", \"properties\": {\"a\": {}}, "
                 "\"additionalProperties\": %s}", extras[k]);
        struct mt_json_schema *s = compile(text, false, &st);
        size_t at;
        tap_ok(s != NULL && feed_bytes(s, "{\"a\":1}", 7, &at) == MT_JSON_OK &&
                   feed_bytes(s, "{\"b\":1}", 7, &at) == MT_JSON_BAD && at == 2,
               "additionalProperties %s compiles, and other keys are still refused", extras[k]);
        mt_json_schema_destroy(s);
    }

    /* minItems = maxItems: exactly that many; maxItems 0: only []; a $ref to a $ref to a $ref */
    struct mt_json_schema *s = compile(
        "{\"$defs\": {\"A\": {\"$ref\": \"#/$defs/B\"}, \"B\": {\"$ref\": \"#/$defs/C\"}, \"C\": "
        "{\"type\": \"object\", \"properties\": {\"two\": {\"type\": \"array\", \"minItems\": 2, "
        "\"maxItems\": 2}, \"none\": {\"type\": \"array\", \"maxItems\": 0}, \"n\": {\"type\": "
        "\"integer\"}, \"e\": {\"enum\": [1, 12]}}}}, \"$ref\": \"#/$defs/A\"}",
        false, &st);
    size_t at;
    bool ok = s != NULL;
    ok = ok && feed_bytes(s, "{\"two\":[1,2]}", 13, &at) == MT_JSON_OK;
    ok = ok && feed_bytes(s, "{\"two\":[1]", 10, &at) == MT_JSON_BAD && at == 9;
    ok = ok && feed_bytes(s, "{\"two\":[1,2,", 12, &at) == MT_JSON_BAD && at == 11;
    tap_ok(ok, "through three $refs: minItems = maxItems = 2 holds exactly two items (%s)",
           s == NULL ? mt_last_error() : "ok");
    ok = s != NULL && feed_bytes(s, "{\"none\":[]}", 11, &at) == MT_JSON_OK &&
         feed_bytes(s, "{\"none\":[1", 10, &at) == MT_JSON_BAD && at == 9;
    tap_ok(ok, "maxItems 0: [] only, the first item refused");
    ok = s != NULL && feed_bytes(s, "{\"n\":1E3", 8, &at) == MT_JSON_BAD && at == 6 &&
         feed_bytes(s, "{\"n\":-0}", 8, &at) == MT_JSON_OK;
    tap_ok(ok, "an integer: 1E3 refused at the E (as 1e3 and 1.5 are)");
    ok = s != NULL && feed_bytes(s, "{\"n\":1,\"e\":1}", 13, &at) == MT_JSON_OK &&
         feed_bytes(s, "{\"n\":1,\"e\":1,", 13, &at) == MT_JSON_BAD && at == 12;
    tap_ok(ok, "a comma after the schema's last key is refused at the comma, not a byte later");
    ok = s != NULL && feed_bytes(s, "{\"e\":1\0", 7, &at) == MT_JSON_BAD && at == 6 &&
         feed_bytes(s, "{\"e\":12\0", 8, &at) == MT_JSON_BAD && at == 7;
    tap_ok(ok, "a NUL byte after an enum's number is refused (no text goes on with it)");

    /* a refused byte leaves the state as it was; the next good byte goes on from there */
    struct mt_json_schema_state one, two;
    mt_json_schema_start(&one);
    ok = s != NULL && mt_json_schema_feed(s, &one, "{\"n\":", 5) == MT_JSON_OK &&
         mt_json_schema_feed(s, &one, "1,\"z", 4) == MT_JSON_BAD &&
         mt_json_schema_feed(s, &one, "5}", 2) == MT_JSON_OK && mt_json_schema_complete(&one);
    tap_ok(ok, "bytes refused (the last of four) do not change the state");

    /* whitespace before the root: MT_JSON_MAX_WS bytes, then the limit */
    char ws[MT_JSON_MAX_WS + 2];
    memset(ws, ' ', sizeof(ws));
    mt_json_schema_start(&two);
    ok = s != NULL && mt_json_schema_feed(s, &two, ws, MT_JSON_MAX_WS) == MT_JSON_OK &&
         mt_json_schema_feed(s, &two, ws, 1) == MT_JSON_LIMIT &&
         mt_json_schema_feed(s, &two, "{}", 2) == MT_JSON_OK && mt_json_schema_complete(&two);
    tap_ok(ok, "%d spaces before the root are taken, one more is the whitespace limit",
           MT_JSON_MAX_WS);
    mt_json_schema_destroy(s);

    /* an array with no maxItems takes many items */
    s = compile("{\"type\": \"object\", \"properties\": {\"a\": {\"type\": \"array\"}}}",
                false, &st);
    size_t cap = 8 + 2 * 1000 + 2;
    char *many = malloc(cap), *p = many;
    p += sprintf(p, "{\"a\":[");
    for (int k = 0; k < 1000; k++) {
        p += sprintf(p, "%s0", k ? "," : "");
    }
    p += sprintf(p, "]}");
    ok = s != NULL && feed_bytes(s, many, (size_t)(p - many), &at) == MT_JSON_OK;
    tap_ok(ok, "an array without maxItems: 1,000 items taken");
    free(many);
    mt_json_schema_destroy(s);

    /* a reply nests at most MT_JSON_SCHEMA_MAX_DEPTH containers, even where the schema recurses */
    s = compile("{\"$defs\": {\"T\": {\"type\": \"object\", \"properties\": {\"k\": {\"$ref\": "
                "\"#/$defs/T\"}}}}, \"$ref\": \"#/$defs/T\"}", false, &st);
    char deep[6 * (MT_JSON_SCHEMA_MAX_DEPTH + 1)] = "";
    for (int k = 0; k < MT_JSON_SCHEMA_MAX_DEPTH + 1; k++) {
        strcat(deep, k ? "\"k\":{" : "{");
    }
    ok = s != NULL && feed_bytes(s, deep, strlen(deep), &at) == MT_JSON_LIMIT &&
         at == strlen(deep) - 1;
    tap_ok(ok, "%d objects inside each other are read, the next is the depth limit",
           MT_JSON_SCHEMA_MAX_DEPTH);
    mt_json_schema_destroy(s);

    /* the compiler's own limits: nodes, key length; empty enum and anyOf; #/definitions */
    size_t big = 64 + 12 * (MT_JSON_SCHEMA_MAX_NODES + 1);
    char *text = malloc(big);
    for (int extra = 0; extra < 2; extra++) {
        p = text + sprintf(text, "{\"type\": \"object\", \"properties\": {");
        for (int k = 0; k < MT_JSON_SCHEMA_MAX_NODES - 1 + extra; k++) {
            p += sprintf(p, "%s\"p%d\":{}", k ? "," : "", k);
        }
        sprintf(p, "}}");
        s = compile(text, false, &st);
        tap_ok(extra ? s == NULL && strstr(mt_last_error(), "nodes") != NULL : s != NULL,
               "%d nodes (an object of %d properties) %s", MT_JSON_SCHEMA_MAX_NODES + extra,
               MT_JSON_SCHEMA_MAX_NODES - 1 + extra, extra ? "refused" : "compile");
        mt_json_schema_destroy(s);
    }
    free(text);
    text = malloc(UINT16_MAX + 128);
    for (int extra = 0; extra < 2; extra++) {
        p = text + sprintf(text, "{\"type\": \"object\", \"properties\": {\"");
        memset(p, 'k', UINT16_MAX + extra);
        sprintf(p + UINT16_MAX + extra, "\": {}}}");
        s = compile(text, false, &st);
        tap_ok(extra ? s == NULL && strstr(mt_last_error(), "too long") != NULL : s != NULL,
               "a key of %d bytes %s", UINT16_MAX + extra, extra ? "refused" : "compiles");
        mt_json_schema_destroy(s);
    }
    free(text);
    s = compile("{\"type\": \"object\", \"properties\": {\"a\": {\"enum\": []}}}", false, &st);
    tap_ok(s == NULL && strstr(mt_last_error(), "non-empty") != NULL, "refused: an empty enum");
    s = compile("{\"type\": \"object\", \"properties\": {\"a\": {\"anyOf\": []}}}", false, &st);
    tap_ok(s == NULL && strstr(mt_last_error(), "non-empty") != NULL, "refused: an empty anyOf");
    s = compile("{\"definitions\": {\"D\": {\"type\": \"boolean\"}}, \"type\": \"object\", "
                "\"properties\": {\"a\": {\"$ref\": \"#/definitions/D\"}}}", false, &st);
    ok = s != NULL && feed_bytes(s, "{\"a\":true}", 10, &at) == MT_JSON_OK &&
         feed_bytes(s, "{\"a\":1}", 7, &at) == MT_JSON_BAD && at == 5;
    tap_ok(ok, "a $ref to #/definitions (older Pydantic) holds its schema (%s)",
           s == NULL ? mt_last_error() : "ok");
    mt_json_schema_destroy(s);
}

/* The keyword lists, each keyword of them: describing ones compile strict; limiting ones are
 * refused strict with the keyword named, and left to the model when lenient; the refusals of
 * what the subset cannot hold; the compiler's nesting limit at its edge. */
static void
check_keywords(void)
{
    static const char *const describing[] = {"title", "description", "default", "examples",
                                             "$schema", "$id", "$comment", "deprecated",
                                             "readOnly", "writeOnly"};
    static const char *const limiting[] = {"minimum", "maximum", "exclusiveMinimum",
                                           "exclusiveMaximum", "multipleOf", "pattern", "format",
                                           "minLength", "maxLength", "uniqueItems",
                                           "minProperties", "maxProperties", "contentEncoding",
                                           "contentMediaType"};
    mt_status_t st;
    char text[256];
    int bad = 0;

    for (size_t k = 0; k < sizeof(describing) / sizeof(describing[0]); k++) {
        snprintf(text, sizeof(text), "{\"type\": \"object\", \"properties\": {\"a\": {\"type\": "
                 "\"string\", \"%s\": \"x\"}}}", describing[k]);
        struct mt_json_schema *s = compile(text, false, &st);
        if (s == NULL) {
            tap_diag("strict, %s: %s", describing[k], mt_last_error());
            bad++;
        }
        mt_json_schema_destroy(s);
    }
    tap_ok(bad == 0, "each of %zu describing keywords compiles strict (%d refused)",
           sizeof(describing) / sizeof(describing[0]), bad);
    bad = 0;
    for (size_t k = 0; k < sizeof(limiting) / sizeof(limiting[0]); k++) {
        char says[64];
        snprintf(text, sizeof(text), "{\"type\": \"object\", \"properties\": {\"a\": {\"type\": "
                 "\"string\", \"%s\": 1}}}", limiting[k]);
        snprintf(says, sizeof(says), "'%s' is not supported", limiting[k]);
        struct mt_json_schema *s = compile(text, false, &st);
        bool strict_ok = s == NULL && st == MT_ERR_INVAL && strstr(mt_last_error(), says) != NULL;
        struct mt_json_schema *l = compile(text, true, &st);
        if (!strict_ok || l == NULL) {
            tap_diag("%s: strict %s, lenient %s", limiting[k], strict_ok ? "refused" : "wrong",
                     l == NULL ? mt_last_error() : "compiles");
            bad++;
        }
        mt_json_schema_destroy(s);
        mt_json_schema_destroy(l);
    }
    tap_ok(bad == 0, "each of %zu limiting keywords is refused strict by name, compiles lenient "
           "(%d wrong)", sizeof(limiting) / sizeof(limiting[0]), bad);

    static const struct {
        const char *schema;
        const char *why;
        const char *says;
    } refused[] = {
        /* "~1" is a JSON pointer's '/': not read as the key's own text */
        {"{\"$defs\": {\"A~1B\": {\"type\": \"object\"}}, \"type\": \"object\", \"properties\": "
         "{\"a\": {\"$ref\": \"#/$defs/A~1B\"}}}",
         "a $ref with a '~' (a JSON pointer escape)", "names no schema"},
        /* the group's name must end at its '/': "#/definitionsD" is no pointer into it */
        {"{\"definitions\": {\"D\": {\"type\": \"object\"}}, \"type\": \"object\", "
         "\"properties\": {\"a\": {\"$ref\": \"#/definitions_D\"}}}",
         "a $ref to '#/definitions_D'", "names no schema"},
        {"{\"type\": \"object\", \"properties\": {\"a\\\\b\": {}}}", "a key with a backslash",
         "backslash"},
        {"{\"type\": \"object\", \"properties\": {}, \"additionalProperties\": {\"type\": "
         "\"string\"}}",
         "additionalProperties with a schema", "additionalProperties with a schema"},
        {"{\"type\": \"object\", \"properties\": {\"a\": {\"$ref\": 5}}}", "a $ref that is no "
         "string", "$ref must be a string"},
        {"{\"type\": \"object\", \"properties\": {\"a\": {\"type\": \"array\", \"minItems\": 3, "
         "\"maxItems\": 2}}}",
         "minItems 3 above maxItems 2", "minItems and maxItems"},
        {"{\"type\": \"object\", \"properties\": {\"a\": {\"type\": \"array\", "
         "\"minItems\": \"1\"}}}",
         "minItems a string", "minItems and maxItems"},
        {"{\"type\": \"object\", \"properties\": {\"a\": {\"type\": \"array\", "
         "\"maxItems\": 2.5}}}",
         "maxItems a real", "minItems and maxItems"},
        {"{\"type\": \"object\", \"properties\": {\"a\": {\"enum\": [1.5, 2]}}}",
         "an enum whose bad value is not its last", "not a string, integer"},
    };
    for (size_t k = 0; k < sizeof(refused) / sizeof(refused[0]); k++) {
        struct mt_json_schema *s = compile(refused[k].schema, false, &st);
        tap_ok(st == MT_ERR_INVAL && s == NULL && strstr(mt_last_error(), refused[k].says) != NULL,
               "refused: %s (%s)", refused[k].why, mt_last_error());
        mt_json_schema_destroy(s);
    }

    /* maxItems at its top (65535) compiles; enums of booleans and null hold their texts; a
     * boolean may be false, a free value null; minItems or maxItems alone make an array */
    struct mt_json_schema *s = compile(
        "{\"type\": \"object\", \"properties\": {\"a\": {\"type\": \"array\", \"maxItems\": "
        "65535}, \"b\": {\"enum\": [true, null]}, \"c\": {\"type\": \"boolean\"}, \"d\": {}, "
        "\"e\": {\"minItems\": 1}, \"f\": {\"maxItems\": 1}}}",
        false, &st);
    size_t at;
    bool ok = s != NULL && feed_bytes(s, "{\"b\":true}", 10, &at) == MT_JSON_OK &&
              feed_bytes(s, "{\"b\":null}", 10, &at) == MT_JSON_OK &&
              feed_bytes(s, "{\"b\":false}", 11, &at) == MT_JSON_BAD && at == 5;
    tap_ok(ok, "maxItems 65535 compiles; enum [true, null]: true and null, not false (%s)",
           s == NULL ? mt_last_error() : "ok");
    ok = s != NULL && feed_bytes(s, "{\"c\":false}", 11, &at) == MT_JSON_OK &&
         feed_bytes(s, "{\"d\":null}", 10, &at) == MT_JSON_OK;
    tap_ok(ok, "a boolean may be false, a value of {} null");
    ok = s != NULL && feed_bytes(s, "{\"e\":[1]}", 9, &at) == MT_JSON_OK &&
         feed_bytes(s, "{\"e\":1}", 7, &at) == MT_JSON_BAD && at == 5 &&
         feed_bytes(s, "{\"f\":[1,", 8, &at) == MT_JSON_BAD && at == 7 &&
         feed_bytes(s, "{\"f\":\"x\"}", 9, &at) == MT_JSON_BAD && at == 5;
    tap_ok(ok, "no type: minItems alone holds an array of at least one, maxItems alone one of "
           "at most one");
    ok = s != NULL && feed_bytes(s, "{\"a\":[1,]", 9, &at) == MT_JSON_BAD && at == 8 &&
         feed_bytes(s, "{\r\n\"a\":\r\n[1]\r\n}", 15, &at) == MT_JSON_OK;
    tap_ok(ok, "an array's trailing comma is refused at the ']'; CR LF between tokens is taken");
    /* whitespace: MT_JSON_MAX_WS in a row before the root and between each two tokens (the
     * count starts again at each token), one more is the limit */
    char ws[MT_JSON_MAX_WS + 1];
    memset(ws, ' ', sizeof(ws));
    struct mt_json_schema_state w;
    mt_json_schema_start(&w);
    ok = s != NULL && mt_json_schema_feed(s, &w, ws, MT_JSON_MAX_WS) == MT_JSON_OK &&
         mt_json_schema_feed(s, &w, "{", 1) == MT_JSON_OK &&
         mt_json_schema_feed(s, &w, ws, MT_JSON_MAX_WS) == MT_JSON_OK &&
         mt_json_schema_feed(s, &w, "\"d\":", 4) == MT_JSON_OK &&
         mt_json_schema_feed(s, &w, ws, MT_JSON_MAX_WS) == MT_JSON_OK &&
         mt_json_schema_feed(s, &w, "1}", 2) == MT_JSON_OK && mt_json_schema_complete(&w);
    mt_json_schema_start(&w);
    ok = ok && mt_json_schema_feed(s, &w, "{", 1) == MT_JSON_OK &&
         mt_json_schema_feed(s, &w, ws, MT_JSON_MAX_WS + 1) == MT_JSON_LIMIT;
    tap_ok(ok, "%d spaces before the root and between each two tokens are taken; %d after '{' "
           "are the limit", MT_JSON_MAX_WS, MT_JSON_MAX_WS + 1);
    mt_json_schema_destroy(s);

    /* nesting: root, a, then arrays; 62 arrays are the deepest the compiler takes, 63 refused */
    for (int n = 62; n <= 63; n++) {
        char deep[2048] = "{\"type\": \"object\", \"properties\": {\"a\": ";
        for (int k = 0; k < n; k++) {
            strcat(deep, "{\"type\": \"array\", \"items\": ");
        }
        strcat(deep, "{}");
        for (int k = 0; k < n; k++) {
            strcat(deep, "}");
        }
        strcat(deep, "}}");
        s = compile(deep, false, &st);
        tap_ok(n == 62 ? s != NULL : s == NULL && strstr(mt_last_error(), "nest deeper") != NULL,
               "%d arrays inside each other %s (%s)", n, n == 62 ? "compile" : "are refused",
               s == NULL ? mt_last_error() : "ok");
        mt_json_schema_destroy(s);
    }
}

#define VOCAB 129280

/* Walks through the constraint with the schema, from random logits; each that ends must be an
 * instance. Also the mask against the plain rule at each step of the first walks. */
static void
check_walks(void)
{
    struct mt_tokenizer *tok = NULL;
    struct mt_json_constraint *c = NULL;
    mt_status_t st;
    struct mt_json_schema *s = compile(person_schema, false, &st);
    json_t *root = load(person_schema);
    float *logits = malloc(VOCAB * sizeof(float));
    float *bonus = calloc(VOCAB, sizeof(float));
    char *text = malloc(1 << 16);
    int32_t eos;
    int n_walks = 40, ended = 0, instances = 0, mask_wrong = 0, mask_checks = 0, shown = 0;
    int steps = 0;
    double mask_s = 0;

    if (s == NULL || logits == NULL || bonus == NULL || text == NULL ||
        mt_tokenizer_load(tap_data_path("tokenizer"), &tok) != MT_OK) {
        tap_bail_out("cannot set up the walks");
    }
    eos = mt_tokenizer_eos(tok);
    if (mt_json_constraint_create(tok, VOCAB, &eos, 1, &c) != MT_OK) {
        tap_bail_out("cannot create the constraint");
    }
    for (int32_t id = 0; id < VOCAB; id++) { /* close strings, arrays and objects often */
        size_t len;
        const char *b = mt_tokenizer_token_bytes(tok, id, &len);
        for (size_t i = 0; b != NULL && i < len; i++) {
            bonus[id] = b[i] == '"' || b[i] == ']' || b[i] == '}' ? 2.5f : bonus[id];
        }
    }
    struct mt_rng r;
    mt_rng_init(&r, 11);
    for (int w = 0; w < n_walks; w++) {
        size_t n = 0;
        bool stop = false;
        struct mt_json_schema_state ref;
        mt_json_schema_start(&ref);
        mt_json_constraint_reset(c, true, s);
        for (int step = 0; step < 300 && !stop; step++) {
            for (int i = 0; i < VOCAB; i++) {
                logits[i] = (float)mt_rng_uniform(&r) * 3.0f + bonus[i];
            }
            logits[eos] = 10.0f;
            double t0 = mt_clock_now();
            mt_json_constraint_mask(c, logits);
            mask_s += mt_clock_now() - t0;
            steps++;
            if (w < 3) { /* the mask = the plain rule: every token's bytes fed */
                for (int32_t id = 0; id < VOCAB; id++) {
                    size_t len;
                    const char *b = mt_tokenizer_token_bytes(tok, id, &len);
                    struct mt_json_schema_state t;
                    bool rule = id == eos ? mt_json_schema_complete(&ref)
                                : b != NULL && len > 0 && !mt_tokenizer_is_added(tok, id) &&
                                      !mt_json_schema_complete(&ref) &&
                                      mt_json_schema_try(s, &ref, b, len, &t) == MT_JSON_OK;
                    mask_wrong += rule != (logits[id] != -INFINITY);
                }
                mask_checks++;
            }
            int32_t best = 0;
            for (int32_t i = 1; i < VOCAB; i++) {
                best = logits[i] > logits[best] ? i : best;
            }
            if (logits[best] == -INFINITY) {
                break;
            }
            if (best == eos) {
                stop = true;
                break;
            }
            mt_json_constraint_accept(c, best);
            size_t len;
            const char *b = mt_tokenizer_token_bytes(tok, best, &len);
            mt_json_schema_feed(s, &ref, b, len);
            if (n + len < (1 << 16)) {
                memcpy(text + n, b, len);
                n += len;
            }
        }
        if (stop) {
            ended++;
            json_error_t err;
            json_t *x = json_loadb(text, n, 0, &err);
            if (x != NULL && json_validate(x, root, root)) {
                instances++;
                if (n > 60 && shown++ < 2) {
                    tap_diag("walk %d: %s", w, tap_one_line(text, n));
                }
            } else {
                tap_diag("walk %d is no instance (%s): %s", w, x ? "schema" : err.text,
                         tap_one_line(text, n));
            }
            json_decref(x);
        }
    }
    tap_diag("%d steps: %.2f ms per mask of %d ids with the schema", steps,
             1e3 * mask_s / steps, VOCAB);
    tap_ok(mask_wrong == 0 && mask_checks > 0,
           "with the schema, the mask = the plain rule at %d steps (%d ids differ)", mask_checks,
           mask_wrong);
    tap_ok(ended >= n_walks / 2, "%d of %d walks ended by the stop id", ended, n_walks);
    tap_ok(instances == ended, "each is an instance of the schema to the validator (%d of %d)",
           instances, ended);
    mt_json_constraint_destroy(c);
    mt_tokenizer_destroy(tok);
    mt_json_schema_destroy(s);
    json_decref(root);
    free(logits);
    free(bonus);
    free(text);
}

int
main(void)
{
    tap_plan(0);
    check_compile();
    check_instances();
    check_edges();
    check_keywords();
    check_walks();
    return tap_done();
}
