/* SPDX-License-Identifier: MIT */
/* json_text.c - any C string as a JSON string (json_text.h). */
#include <config.h>

#include "runtime/base/json_text.h"

#include <stdlib.h>
#include <string.h>

json_t *
mt_json_text(const char *s)
{
    return mt_json_text_bytes(s, strlen(s), "?");
}

json_t *
mt_json_text_bytes(const char *s, size_t n, const char *bad)
{
    size_t o = 0;
    size_t nb = strlen(bad);
    json_t *j = json_stringn(s, n);
    char *buf;

    if (j != NULL) {
        return j;
    }
    buf = malloc(n * (nb > 1 ? nb : 1) + 1);
    if (buf == NULL) {
        return NULL;
    }
    /* jansson (json_stringn) judges whether the bytes of one character are whole and valid */
    for (size_t i = 0; i < n;) {
        unsigned char ch = (unsigned char)s[i];
        size_t len = ch < 0x80 ? 1 : ch >= 0xf0 ? 4 : ch >= 0xe0 ? 3 : 2;
        json_t *one = i + len <= n ? json_stringn(s + i, len) : NULL;

        if (one != NULL) {
            memcpy(buf + o, s + i, len);
            o += len;
            i += len;
            json_decref(one);
        } else {
            memcpy(buf + o, bad, nb);
            o += nb;
            i++;
        }
    }
    buf[o] = '\0';
    j = json_stringn(buf, o);
    free(buf);
    return j;
}
