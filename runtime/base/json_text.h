/* SPDX-License-Identifier: MIT */
/*
 * json_text.h - any C string as a JSON string.
 *
 * The one idea: jansson refuses text that is not UTF-8 (json_string returns NULL), and the
 * strings moetier writes into its JSON files are often paths: any bytes on Linux, or cut to a
 * buffer inside a character. One such string made a whole file unwritable ("cannot build plan
 * JSON" after the work was done), so labels go through mt_json_text, which keeps every whole
 * UTF-8 character and writes each other byte as '?'.
 */
#ifndef MT_JSON_TEXT_H
#define MT_JSON_TEXT_H

#include <jansson.h>

#include <stddef.h>

/* s as a new JSON string, bytes that begin no whole UTF-8 character as '?'; NULL: no memory. */
json_t *mt_json_text(const char *s);

/* n bytes of s (NUL bytes kept: JSON writes them as \u0000), each byte that begins no whole
 * character written as the text bad ("?", or "\xEF\xBF\xBD" for U+FFFD as a decoder shows it). */
json_t *mt_json_text_bytes(const char *s, size_t n, const char *bad);

#endif /* MT_JSON_TEXT_H */
