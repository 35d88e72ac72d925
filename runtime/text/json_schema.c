/* SPDX-License-Identifier: MIT */
/*
 * json_schema.c - a JSON Schema compiled to nodes, and the reader that holds a reply to them
 * (see json_schema.h).
 */
#include <config.h>

#include "runtime/text/json_schema.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum kind {
    K_ANY,     /* any JSON value: read by json_prefix */
    K_OBJECT,  /* props[first .. first + n) in order */
    K_ARRAY,   /* items of node item, min .. max of them */
    K_STRING,
    K_NUMBER,
    K_INTEGER,
    K_BOOLEAN,
    K_NULL,
    K_ENUM,    /* one of texts[first .. first + n): whole JSON texts */
    K_UNION,   /* one of alts[first .. first + n), told apart by their first byte */
    K_REF,     /* the node item ($ref) */
};

struct node {
    uint8_t kind;
    uint32_t first, n;
    uint32_t item;          /* array: the items' node; ref: the target */
    uint32_t min, max;      /* array: items */
    uint32_t need;          /* object: props[first .. first + need) hold every required one */
};

struct prop {
    char *name; /* the key as the reply writes it (no escapes: checked) */
    size_t len;
    uint32_t node;
    bool required;
};

struct text {
    char *s;
    size_t len;
};

struct mt_json_schema {
    struct node *nodes;
    uint32_t n_nodes, cap_nodes;
    struct prop *props;
    uint32_t n_props, cap_props;
    struct text *texts;
    uint32_t n_texts, cap_texts;
    uint32_t *alts;
    uint32_t n_alts, cap_alts;
    uint8_t (*firsts)[32]; /* per node: the bytes a value may begin with (a 256-bit set) */
};

/* ---- compiling ------------------------------------------------------------------------------ */

struct compiler {
    struct mt_json_schema *s;
    const json_t *root;
    bool lenient;
    int depth;              /* schemas inside schemas, now */
    const char **def_names; /* $defs compiled so far, and their nodes */
    uint32_t *def_nodes;
    uint32_t n_defs;
};

#define GROW(arr, n, cap)                                                                        \
    ((n) < (cap) || (((cap) = (cap) ? 2 * (cap) : 16),                                           \
                     (arr) = realloc((arr), (size_t)(cap) * sizeof(*(arr)))) != NULL)

static mt_status_t
new_node(struct compiler *c, uint32_t *out)
{
    struct mt_json_schema *s = c->s;

    if (s->n_nodes == MT_JSON_SCHEMA_MAX_NODES) {
        return mt_fail(MT_ERR_INVAL, 0, "schema: more than %d nodes", MT_JSON_SCHEMA_MAX_NODES);
    }
    if (!GROW(s->nodes, s->n_nodes, s->cap_nodes)) {
        return mt_fail(MT_ERR_NOMEM, 0, "schema: out of memory");
    }
    memset(&s->nodes[s->n_nodes], 0, sizeof(struct node));
    *out = s->n_nodes++;
    return MT_OK;
}

static bool
in_list(const char *key, const char *const *list)
{
    for (; *list != NULL; list++) {
        if (strcmp(key, *list) == 0) {
            return true;
        }
    }
    return false;
}

/* Keywords that only describe; keywords of the subset; keywords that limit values otherwise. */
static const char *const describing[] = {"title", "description", "default", "examples",
                                         "$schema", "$id", "$comment", "deprecated",
                                         "readOnly", "writeOnly", NULL};
static const char *const held[] = {"type", "properties", "required", "additionalProperties",
                                   "items", "minItems", "maxItems", "enum", "const", "anyOf",
                                   "oneOf", "$ref", "$defs", "definitions", NULL};
static const char *const limiting[] = {"minimum", "maximum", "exclusiveMinimum",
                                       "exclusiveMaximum", "multipleOf", "pattern", "format",
                                       "minLength", "maxLength", "uniqueItems", "minProperties",
                                       "maxProperties", "contentEncoding", "contentMediaType",
                                       NULL};

static mt_status_t compile_into(struct compiler *c, const json_t *v, uint32_t slot,
                                const char *path);

static mt_status_t
unsupported(const char *path, const char *what)
{
    return mt_fail(MT_ERR_INVAL, 0, "schema at %s: %s is not supported (held: type, properties, "
                   "required, additionalProperties false, items, minItems, maxItems, enum and "
                   "const of strings, integers, booleans and null, anyOf of alternatives that "
                   "begin differently, $ref to $defs)", path, what);
}

/* Compile a sub-schema into a new node. */
static mt_status_t
compile_new(struct compiler *c, const json_t *v, const char *path, uint32_t *out)
{
    mt_status_t st = new_node(c, out);
    return st != MT_OK ? st : compile_into(c, v, *out, path);
}

/* "#/$defs/NAME" or "#/definitions/NAME": its node, compiled on first use (recursion allowed). */
static mt_status_t
compile_ref(struct compiler *c, const char *ref, const char *path, uint32_t *out)
{
    const char *name = NULL;
    const char *group = NULL;

    if (strncmp(ref, "#/$defs/", 8) == 0) {
        name = ref + 8;
        group = "$defs";
    } else if (strncmp(ref, "#/definitions/", 14) == 0) {
        name = ref + 14;
        group = "definitions";
    }
    const json_t *def = name != NULL ? json_object_get(json_object_get(c->root, group), name)
                                     : NULL;
    if (def == NULL || strchr(name, '/') != NULL || strchr(name, '~') != NULL) {
        return mt_fail(MT_ERR_INVAL, 0, "schema at %s: $ref '%.80s' names no schema under "
                       "#/$defs or #/definitions", path, ref);
    }
    for (uint32_t i = 0; i < c->n_defs; i++) {
        if (c->def_names[i] == name || strcmp(c->def_names[i], name) == 0) {
            *out = c->def_nodes[i];
            return MT_OK;
        }
    }
    const char **names = realloc(c->def_names, (c->n_defs + 1) * sizeof(*names));
    if (names != NULL) {
        c->def_names = names;
    }
    uint32_t *nodes = names != NULL ? realloc(c->def_nodes, (c->n_defs + 1) * sizeof(*nodes))
                                    : NULL;
    if (nodes == NULL) {
        return mt_fail(MT_ERR_NOMEM, 0, "schema: out of memory");
    }
    c->def_nodes = nodes;
    mt_status_t st = new_node(c, out);
    if (st != MT_OK) {
        return st;
    }
    c->def_names[c->n_defs] = name;
    c->def_nodes[c->n_defs++] = *out;
    char sub[256];
    snprintf(sub, sizeof(sub), "#/%s/%s", group, name);
    return compile_into(c, def, *out, sub);
}

/* The compact JSON text of an enum value. */
static mt_status_t
add_text(struct compiler *c, const json_t *v, const char *path)
{
    struct mt_json_schema *s = c->s;

    /* an integer's text is exact; a real's (0.1 -> "0.10000000000000001") would not be the
     * text a model writes */
    if (!json_is_string(v) && !json_is_integer(v) && !json_is_boolean(v) && !json_is_null(v)) {
        return unsupported(path, "an enum or const value that is not a string, integer, boolean "
                                 "or null");
    }
    if (!GROW(s->texts, s->n_texts, s->cap_texts)) {
        return mt_fail(MT_ERR_NOMEM, 0, "schema: out of memory");
    }
    char *t = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    if (t == NULL) {
        return mt_fail(MT_ERR_NOMEM, 0, "schema: out of memory");
    }
    s->texts[s->n_texts++] = (struct text){t, strlen(t)};
    return MT_OK;
}

static mt_status_t
compile_object(struct compiler *c, const json_t *v, uint32_t slot, const char *path)
{
    struct mt_json_schema *s = c->s;
    const json_t *props = json_object_get(v, "properties");
    const json_t *req = json_object_get(v, "required");
    const json_t *extra = json_object_get(v, "additionalProperties");
    const char *key;
    const json_t *sub;
    size_t i;
    uint32_t first;

    if ((props != NULL && !json_is_object(props)) || (req != NULL && !json_is_array(req))) {
        return mt_fail(MT_ERR_INVAL, 0, "schema at %s: properties must be an object and "
                       "required an array", path);
    }
    if (extra != NULL && !json_is_false(extra) && !json_is_true(extra) &&
        !(json_is_object(extra) && json_object_size(extra) == 0)) {
        return unsupported(path, "additionalProperties with a schema");
    }
    json_array_foreach (req, i, sub) {
        if (!json_is_string(sub) || json_object_get(props, json_string_value(sub)) == NULL) {
            return mt_fail(MT_ERR_INVAL, 0, "schema at %s: required[%zu] names no property",
                           path, i);
        }
    }
    /* the properties' slots first (contiguous), then their nodes */
    first = s->n_props;
    json_object_foreach ((json_t *)props, key, sub) {
        size_t len = strlen(key);
        for (size_t k = 0; k < len; k++) {
            if (key[k] == '"' || key[k] == '\\' || (unsigned char)key[k] < 0x20) {
                return unsupported(path, "a property name with a quote, backslash or control "
                                         "character");
            }
        }
        if (len > UINT16_MAX || s->n_props - first >= UINT16_MAX ||
            !GROW(s->props, s->n_props, s->cap_props)) {
            return mt_fail(MT_ERR_NOMEM, 0, "schema at %s: too many or too long properties",
                           path);
        }
        char *name = strdup(key);
        if (name == NULL) {
            return mt_fail(MT_ERR_NOMEM, 0, "schema: out of memory");
        }
        bool required = false;
        json_array_foreach (req, i, sub) {
            required = required || strcmp(json_string_value(sub), key) == 0;
        }
        s->props[s->n_props++] = (struct prop){name, len, 0, required};
    }
    uint32_t n = s->n_props - first;
    uint32_t need = 0;
    for (uint32_t k = 0; k < n; k++) {
        need = s->props[first + k].required ? k + 1 : need;
    }
    s->nodes[slot].kind = K_OBJECT;
    s->nodes[slot].first = first;
    s->nodes[slot].n = n;
    s->nodes[slot].need = need;
    for (uint32_t k = 0; k < n; k++) {
        char sub_path[512];
        const char *name = s->props[first + k].name;
        snprintf(sub_path, sizeof(sub_path), "%s/properties/%.200s", path, name);
        uint32_t node;
        mt_status_t st = compile_new(c, json_object_get(props, name), sub_path, &node);
        if (st != MT_OK) {
            return st;
        }
        c->s->props[first + k].node = node;
    }
    return MT_OK;
}

#define MAX_SCHEMA_NESTING 64 /* schemas inside schemas (the compiler recurses) */

static mt_status_t compile_node(struct compiler *c, const json_t *v, uint32_t slot,
                                const char *path);

/* One schema into node slot, with the nesting counted. */
static mt_status_t
compile_into(struct compiler *c, const json_t *v, uint32_t slot, const char *path)
{
    if (c->depth == MAX_SCHEMA_NESTING) {
        return mt_fail(MT_ERR_INVAL, 0, "schema at %s: schemas nest deeper than %d", path,
                       MAX_SCHEMA_NESTING);
    }
    c->depth++;
    mt_status_t st = compile_node(c, v, slot, path);
    c->depth--;
    return st;
}

static mt_status_t
compile_node(struct compiler *c, const json_t *v, uint32_t slot, const char *path)
{
    struct mt_json_schema *s = c->s;
    const char *key;
    const json_t *sub;
    char sub_path[512];
    mt_status_t st;

    if (json_is_true(v) || (json_is_object(v) && json_object_size(v) == 0)) {
        s->nodes[slot].kind = K_ANY;
        return MT_OK;
    }
    if (!json_is_object(v)) {
        return mt_fail(MT_ERR_INVAL, 0, "schema at %s: a schema must be an object", path);
    }
    json_object_foreach ((json_t *)v, key, sub) {
        if (in_list(key, describing) || in_list(key, held)) {
            continue;
        }
        if (!(c->lenient && in_list(key, limiting))) {
            char what[96];
            snprintf(what, sizeof(what), "'%.60s'", key);
            return unsupported(path, what);
        }
    }
    const json_t *ref = json_object_get(v, "$ref");
    const json_t *any = json_object_get(v, "anyOf");
    const json_t *one = json_object_get(v, "oneOf");
    const json_t *en = json_object_get(v, "enum");
    const json_t *cn = json_object_get(v, "const");
    const json_t *type = json_object_get(v, "type");

    if (ref != NULL) {
        uint32_t target;
        if (!json_is_string(ref)) {
            return mt_fail(MT_ERR_INVAL, 0, "schema at %s: $ref must be a string", path);
        }
        if ((st = compile_ref(c, json_string_value(ref), path, &target)) != MT_OK) {
            return st;
        }
        s->nodes[slot].kind = K_REF;
        s->nodes[slot].item = target;
        return MT_OK;
    }
    if (en != NULL || cn != NULL) {
        size_t i;
        s->nodes[slot].kind = K_ENUM;
        s->nodes[slot].first = s->n_texts;
        if (cn != NULL) {
            st = add_text(c, cn, path);
        } else if (!json_is_array(en) || json_array_size(en) == 0) {
            st = mt_fail(MT_ERR_INVAL, 0, "schema at %s: enum must be a non-empty array", path);
        } else {
            st = MT_OK;
            json_array_foreach (en, i, sub) {
                if (st == MT_OK) {
                    st = add_text(c, sub, path);
                }
            }
        }
        s->nodes[slot].n = s->n_texts - s->nodes[slot].first;
        return st;
    }
    if (any != NULL || one != NULL || json_is_array(type)) {
        const json_t *list = any != NULL ? any : one != NULL ? one : type;
        size_t i;
        if (!json_is_array(list) || json_array_size(list) == 0) {
            return mt_fail(MT_ERR_INVAL, 0, "schema at %s: anyOf, oneOf and a list of types "
                           "must be non-empty arrays", path);
        }
        uint32_t first = s->n_alts;
        size_t n = json_array_size(list);
        for (i = 0; i < n; i++) { /* the slots first (contiguous), then their nodes */
            if (!GROW(s->alts, s->n_alts, s->cap_alts)) {
                return mt_fail(MT_ERR_NOMEM, 0, "schema: out of memory");
            }
            s->alts[s->n_alts++] = 0;
        }
        s->nodes[slot].kind = K_UNION;
        s->nodes[slot].first = first;
        s->nodes[slot].n = (uint32_t)n;
        json_array_foreach (list, i, sub) {
            uint32_t node;
            snprintf(sub_path, sizeof(sub_path), "%s/%s/%zu", path,
                     list == type ? "type" : any != NULL ? "anyOf" : "oneOf", i);
            if (list == type) { /* {"type": [A, B]}: each as {"type": A} with the rest */
                json_t *copy = json_copy((json_t *)v);
                if (copy == NULL || json_object_set((json_t *)copy, "type", (json_t *)sub) != 0) {
                    json_decref(copy);
                    return mt_fail(MT_ERR_NOMEM, 0, "schema: out of memory");
                }
                st = compile_new(c, copy, sub_path, &node);
                json_decref(copy);
            } else {
                st = compile_new(c, sub, sub_path, &node);
            }
            if (st != MT_OK) {
                return st;
            }
            s->alts[first + i] = node;
        }
        return MT_OK;
    }
    const char *t = json_string_value(type);
    if (type == NULL) {
        /* no type: an object where properties or required speak of one, an array where
         * items, minItems or maxItems do (a reply then takes only that kind: narrower than the
         * schema, never wider), else any value */
        if (json_object_get(v, "properties") != NULL || json_object_get(v, "required") != NULL) {
            t = "object";
        } else if (json_object_get(v, "items") != NULL || json_object_get(v, "minItems") != NULL ||
                   json_object_get(v, "maxItems") != NULL) {
            t = "array";
        } else {
            s->nodes[slot].kind = K_ANY;
            return MT_OK;
        }
    }
    if (t == NULL) {
        return mt_fail(MT_ERR_INVAL, 0, "schema at %s: type must be a string or an array", path);
    }
    if (strcmp(t, "object") == 0) {
        return compile_object(c, v, slot, path);
    }
    if (strcmp(t, "array") == 0) {
        const json_t *items = json_object_get(v, "items");
        const json_t *mn = json_object_get(v, "minItems");
        const json_t *mx = json_object_get(v, "maxItems");
        json_int_t lo = json_is_integer(mn) ? json_integer_value(mn) : 0;
        json_int_t hi = json_is_integer(mx) ? json_integer_value(mx) : UINT16_MAX;
        if ((mn != NULL && !json_is_integer(mn)) || (mx != NULL && !json_is_integer(mx)) ||
            lo < 0 || hi < lo || hi > UINT16_MAX) {
            return mt_fail(MT_ERR_INVAL, 0, "schema at %s: minItems and maxItems must be "
                           "integers with 0 <= minItems <= maxItems <= %d", path, UINT16_MAX);
        }
        uint32_t node;
        snprintf(sub_path, sizeof(sub_path), "%s/items", path);
        if ((st = compile_new(c, items != NULL ? items : json_true(), sub_path, &node)) !=
            MT_OK) {
            return st;
        }
        s->nodes[slot] = (struct node){.kind = K_ARRAY, .item = node, .min = (uint32_t)lo,
                                       .max = (uint32_t)hi};
        return MT_OK;
    }
    static const char *const scalars[] = {"string", "number", "integer", "boolean", "null"};
    static const uint8_t kinds[] = {K_STRING, K_NUMBER, K_INTEGER, K_BOOLEAN, K_NULL};
    for (int i = 0; i < 5; i++) {
        if (strcmp(t, scalars[i]) == 0) {
            s->nodes[slot].kind = kinds[i];
            return MT_OK;
        }
    }
    return mt_fail(MT_ERR_INVAL, 0, "schema at %s: unknown type '%.40s'", path, t);
}

static void
set_bit(uint8_t *set, unsigned b)
{
    set[b >> 3] |= (uint8_t)(1u << (b & 7));
}

static bool
has_bit(const uint8_t *set, unsigned b)
{
    return (set[b >> 3] >> (b & 7)) & 1;
}

static void
set_bytes(uint8_t *set, const char *bytes)
{
    for (; *bytes != '\0'; bytes++) {
        set_bit(set, (unsigned char)*bytes);
    }
}

/* The bytes a value of node i may begin with; depth guards a loop of bare $refs. */
static mt_status_t
first_bytes(struct mt_json_schema *s, uint32_t i, int depth, uint8_t *set)
{
    const struct node *n = &s->nodes[i];

    if (depth > 64) {
        return mt_fail(MT_ERR_INVAL, 0, "schema: $refs or anyOfs nest too deep (a loop?)");
    }
    switch (n->kind) {
    case K_ANY:
        set_bytes(set, "{[\"-0123456789tfn");
        break;
    case K_OBJECT:
        set_bytes(set, "{");
        break;
    case K_ARRAY:
        set_bytes(set, "[");
        break;
    case K_STRING:
        set_bytes(set, "\"");
        break;
    case K_NUMBER:
    case K_INTEGER:
        set_bytes(set, "-0123456789");
        break;
    case K_BOOLEAN:
        set_bytes(set, "tf");
        break;
    case K_NULL:
        set_bytes(set, "n");
        break;
    case K_ENUM:
        for (uint32_t k = 0; k < n->n; k++) {
            set_bit(set, (unsigned char)s->texts[n->first + k].s[0]);
        }
        break;
    case K_REF:
        return first_bytes(s, n->item, depth + 1, set);
    case K_UNION:
        for (uint32_t k = 0; k < n->n; k++) {
            uint8_t one[32] = {0};
            mt_status_t st = first_bytes(s, s->alts[n->first + k], depth + 1, one);
            if (st != MT_OK) {
                return st;
            }
            for (int b = 0; b < 256; b++) {
                if (has_bit(one, (unsigned)b) && has_bit(set, (unsigned)b)) {
                    return mt_fail(MT_ERR_INVAL, 0, "schema: anyOf alternatives that may both "
                                   "begin with '%c' are not supported (the first byte must "
                                   "pick one: a string, a number, an object, ...)", b);
                }
            }
            for (int b = 0; b < 32; b++) {
                set[b] |= one[b];
            }
        }
        break;
    }
    return MT_OK;
}

void
mt_json_schema_destroy(struct mt_json_schema *s)
{
    if (s == NULL) {
        return;
    }
    for (uint32_t i = 0; i < s->n_props; i++) {
        free(s->props[i].name);
    }
    for (uint32_t i = 0; i < s->n_texts; i++) {
        free(s->texts[i].s);
    }
    free(s->nodes);
    free(s->props);
    free(s->texts);
    free(s->alts);
    free(s->firsts);
    free(s);
}

static uint32_t
resolve(const struct mt_json_schema *s, uint32_t i)
{
    for (int hops = 0; s->nodes[i].kind == K_REF && hops < 64; hops++) {
        i = s->nodes[i].item;
    }
    return i;
}

mt_status_t
mt_json_schema_compile(const json_t *schema, bool lenient, struct mt_json_schema **out)
{
    struct compiler c = {.root = schema, .lenient = lenient};
    uint32_t root;
    mt_status_t st;

    c.s = calloc(1, sizeof(*c.s));
    if (c.s == NULL) {
        return mt_fail(MT_ERR_NOMEM, 0, "schema: out of memory");
    }
    st = compile_new(&c, schema, "#", &root);
    if (st == MT_OK && (c.s->firsts = calloc(c.s->n_nodes, 32)) == NULL) {
        st = mt_fail(MT_ERR_NOMEM, 0, "schema: out of memory");
    }
    for (uint32_t i = 0; st == MT_OK && i < c.s->n_nodes; i++) {
        st = first_bytes(c.s, i, 0, c.s->firsts[i]);
    }
    if (st == MT_OK && c.s->nodes[resolve(c.s, root)].kind != K_OBJECT) {
        st = mt_fail(MT_ERR_INVAL, 0, "schema at #: the root must be an object schema (type "
                     "\"object\" with properties)");
    }
    free(c.def_names);
    free(c.def_nodes);
    if (st != MT_OK) {
        mt_json_schema_destroy(c.s);
        return st;
    }
    *out = c.s; /* root is node 0 */
    return MT_OK;
}

/* ---- reading a reply ------------------------------------------------------------------------ */

enum phase {
    P_VALUE,       /* a scalar or free value: st->sub reads it */
    P_ENUM,        /* an enum's text: cand, pos */
    O_START,       /* after '{' */
    O_KEY,         /* in a key: cand, pos */
    O_COLON,
    O_VALUE,       /* after ':' (cand: the key) */
    O_AFTER,       /* after a value */
    O_NEXT,        /* after ',' */
    A_START,       /* after '[' */
    A_AFTER,       /* after an item */
    A_ITEM,        /* after ',' */
};

void
mt_json_schema_start(struct mt_json_schema_state *st)
{
    memset(st, 0, offsetof(struct mt_json_schema_state, frames));
}

void
mt_json_schema_state_copy(struct mt_json_schema_state *dst,
                          const struct mt_json_schema_state *src)
{
    memcpy(dst, src, offsetof(struct mt_json_schema_state, frames) +
                         src->depth * sizeof(struct mt_json_schema_frame));
}

static bool
is_ws(unsigned c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* The top frame's value is whole: pop it, and the frame below moves on. */
static void
value_done(struct mt_json_schema_state *st)
{
    st->depth--;
    if (st->depth == 0) {
        st->top = 2;
        return;
    }
    struct mt_json_schema_frame *f = &st->frames[st->depth - 1];
    if (f->kind == K_OBJECT) {
        f->phase = O_AFTER;
    } else {
        f->next++;
        f->phase = A_AFTER;
    }
}

/* Enum values: one that matches the bytes so far is all of them (f->pos bytes). */
static bool
enum_whole(const struct text *texts, uint32_t n, const struct mt_json_schema_frame *f)
{
    for (uint32_t k = f->cand; k < n; k++) {
        if (texts[k].len == f->pos && memcmp(texts[k].s, texts[f->cand].s, f->pos) == 0) {
            return true;
        }
    }
    return false;
}

/* ... and one goes on past them (only numbers do: a string or literal ends by itself). */
static bool
enum_longer(const struct text *texts, uint32_t n, const struct mt_json_schema_frame *f)
{
    for (uint32_t k = f->cand; k < n; k++) {
        if (texts[k].len > f->pos && memcmp(texts[k].s, texts[f->cand].s, f->pos) == 0) {
            return true;
        }
    }
    return false;
}

/* The value of node i, whose first byte is c: a frame for it (after the union's pick). */
static enum mt_json_verdict
begin_value(const struct mt_json_schema *s, struct mt_json_schema_state *st, uint32_t i,
            unsigned c)
{
    i = resolve(s, i);
    if (!has_bit(s->firsts[i], c)) {
        return MT_JSON_BAD;
    }
    if (s->nodes[i].kind == K_UNION) {
        const struct node *u = &s->nodes[i];
        for (uint32_t k = 0; k < u->n; k++) {
            if (has_bit(s->firsts[s->alts[u->first + k]], c)) {
                return begin_value(s, st, s->alts[u->first + k], c);
            }
        }
        return MT_JSON_BAD;
    }
    if (st->depth == MT_JSON_SCHEMA_MAX_DEPTH) {
        return MT_JSON_LIMIT;
    }
    const struct node *n = &s->nodes[i];
    struct mt_json_schema_frame *f = &st->frames[st->depth++];
    *f = (struct mt_json_schema_frame){.node = i, .kind = n->kind};
    switch (n->kind) {
    case K_OBJECT:
        f->phase = O_START;
        return MT_JSON_OK;
    case K_ARRAY:
        f->phase = A_START;
        return MT_JSON_OK;
    case K_ENUM:
        f->phase = P_ENUM;
        for (uint32_t k = 0; k < n->n; k++) {
            if ((unsigned char)s->texts[n->first + k].s[0] == c) {
                f->cand = (uint16_t)k;
                f->pos = 1;
                break;
            }
        }
        const struct text *texts = s->texts + n->first;
        if (enum_whole(texts, n->n, f) && !enum_longer(texts, n->n, f)) {
            value_done(st); /* a one-digit number no other value goes on from */
        }
        return MT_JSON_OK;
    default: /* a scalar or any value: the recognizer reads it */
        f->phase = P_VALUE;
        mt_json_prefix_init(&st->sub, false);
        return mt_json_prefix_feed(&st->sub, &c, 1) == MT_JSON_OK ? MT_JSON_OK : MT_JSON_BAD;
    }
}

/* Object keys: the candidates are props next .. (the first required one at or after next). */
static uint32_t
key_window_end(const struct mt_json_schema *s, const struct node *n, uint32_t next)
{
    for (uint32_t k = next; k < n->n; k++) {
        if (s->props[n->first + k].required) {
            return k + 1;
        }
    }
    return n->n;
}

/* A byte of a key: the first candidate at or after cand that matches so far and then c. */
static enum mt_json_verdict
key_byte(const struct mt_json_schema *s, struct mt_json_schema_frame *f, unsigned c)
{
    const struct node *n = &s->nodes[f->node];
    const struct prop *props = s->props + n->first;
    const struct prop *now = &props[f->cand];
    uint32_t end = key_window_end(s, n, f->next);

    for (uint32_t k = f->cand; k < end; k++) {
        const struct prop *p = &props[k];
        if (p->len < f->pos || memcmp(p->name, now->name, f->pos) != 0) {
            continue;
        }
        if (c == '"' && p->len == f->pos) {
            f->cand = (uint16_t)k;
            f->next = (uint16_t)(k + 1);
            f->phase = O_COLON;
            return MT_JSON_OK;
        }
        if (c != '"' && p->len > f->pos && (unsigned char)p->name[f->pos] == c) {
            f->cand = (uint16_t)k;
            f->pos++;
            return MT_JSON_OK;
        }
    }
    return MT_JSON_BAD;
}

static enum mt_json_verdict
step(const struct mt_json_schema *s, struct mt_json_schema_state *st, unsigned c)
{
again:
    if (st->top == 0 || st->top == 2) {
        if (is_ws(c)) {
            return ++st->ws > MT_JSON_MAX_WS ? MT_JSON_LIMIT : MT_JSON_OK;
        }
        if (st->top == 2) {
            return MT_JSON_BAD;
        }
        st->ws = 0;
        st->top = 1;
        return begin_value(s, st, 0, c);
    }
    struct mt_json_schema_frame *f = &st->frames[st->depth - 1];
    const struct node *n = &s->nodes[f->node];
    if (f->phase == P_VALUE) {
        if (f->kind == K_INTEGER && (c == '.' || c == 'e' || c == 'E')) {
            return MT_JSON_BAD;
        }
        enum mt_json_verdict v = mt_json_prefix_feed(&st->sub, &c, 1);
        if (v == MT_JSON_BAD && mt_json_prefix_complete(&st->sub)) {
            value_done(st); /* c comes after the value */
            st->ws = 0;
            goto again;
        }
        return v;
    }
    if (f->phase == P_ENUM) {
        const struct text *texts = s->texts + n->first;
        for (uint32_t k = f->cand; k < n->n; k++) {
            const struct text *t = &texts[k];
            if (t->len > f->pos && memcmp(t->s, texts[f->cand].s, f->pos) == 0 &&
                (unsigned char)t->s[f->pos] == c) {
                f->cand = (uint16_t)k;
                f->pos++;
                if (enum_whole(texts, n->n, f) && !enum_longer(texts, n->n, f)) {
                    value_done(st); /* a string or literal ends here; so does a number no
                                       other value goes on from */
                }
                return MT_JSON_OK;
            }
        }
        if (enum_whole(texts, n->n, f)) { /* a number ("1" of 1 and 12): c comes after it */
            value_done(st);
            st->ws = 0;
            goto again;
        }
        return MT_JSON_BAD;
    }
    if (f->phase == O_KEY) {
        return key_byte(s, f, c);
    }
    if (is_ws(c)) { /* between the tokens of a container */
        return ++st->ws > MT_JSON_MAX_WS ? MT_JSON_LIMIT : MT_JSON_OK;
    }
    st->ws = 0;
    switch (f->phase) {
    case O_START:
    case O_NEXT:
        if (c == '"' && f->next < n->n) {
            f->phase = O_KEY;
            f->cand = f->next;
            f->pos = 0;
            return MT_JSON_OK;
        }
        if (c == '}' && f->phase == O_START && f->next >= n->need) {
            value_done(st);
            return MT_JSON_OK;
        }
        return MT_JSON_BAD;
    case O_COLON:
        if (c != ':') {
            return MT_JSON_BAD;
        }
        f->phase = O_VALUE;
        return MT_JSON_OK;
    case O_VALUE:
        return begin_value(s, st, s->props[n->first + f->cand].node, c);
    case O_AFTER:
        if (c == ',' && f->next < n->n) {
            f->phase = O_NEXT;
            return MT_JSON_OK;
        }
        if (c == '}' && f->next >= n->need) {
            value_done(st);
            return MT_JSON_OK;
        }
        return MT_JSON_BAD;
    case A_START:
    case A_ITEM:
        if (c == ']' && f->phase == A_START && n->min == 0) {
            value_done(st);
            return MT_JSON_OK;
        }
        if (f->next >= n->max) {
            return MT_JSON_BAD;
        }
        return begin_value(s, st, n->item, c);
    case A_AFTER:
        if (c == ',' && f->next < n->max) {
            f->phase = A_ITEM;
            return MT_JSON_OK;
        }
        if (c == ']' && f->next >= n->min) {
            value_done(st);
            return MT_JSON_OK;
        }
        return MT_JSON_BAD;
    default:
        return MT_JSON_BAD;
    }
}

enum mt_json_verdict
mt_json_schema_try(const struct mt_json_schema *s, const struct mt_json_schema_state *st,
                   const void *bytes, size_t len, struct mt_json_schema_state *after)
{
    const unsigned char *b = bytes;

    mt_json_schema_state_copy(after, st);
    for (size_t i = 0; i < len; i++) {
        enum mt_json_verdict v = step(s, after, b[i]);
        if (v != MT_JSON_OK) {
            return v;
        }
    }
    return MT_JSON_OK;
}

enum mt_json_verdict
mt_json_schema_feed(const struct mt_json_schema *s, struct mt_json_schema_state *st,
                    const void *bytes, size_t len)
{
    struct mt_json_schema_state t;
    enum mt_json_verdict v = mt_json_schema_try(s, st, bytes, len, &t);

    if (v == MT_JSON_OK) {
        mt_json_schema_state_copy(st, &t);
    }
    return v;
}

bool
mt_json_schema_complete(const struct mt_json_schema_state *st)
{
    return st->top == 2;
}

bool
mt_json_schema_in_free_string(const struct mt_json_schema_state *st)
{
    return st->top == 1 && st->depth > 0 && st->frames[st->depth - 1].phase == P_VALUE &&
           mt_json_prefix_in_string(&st->sub);
}
