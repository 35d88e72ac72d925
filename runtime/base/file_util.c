/* SPDX-License-Identifier: MIT */
/*
 * file_util.c - whole-file reads and JSON file load/save (see file_util.h).
 *
 * The one idea: a regular file's size is known before reading, so the buffer is sized once, with
 * one spare byte beyond the NUL so that the read which finds end-of-file needs no second buffer;
 * pipes (size unknown) grow the buffer by doubling. Either way the whole text is read before
 * parsing, so a read error is reported as one (with the OS reason), not as bad JSON.
 */
#include <config.h>

#include "runtime/base/file_util.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

mt_status_t
mt_file_read_all(const char *path, const char *what, size_t max_bytes, char **data_out,
                 size_t *len_out)
{
    struct stat sb;
    char *data;
    size_t cap = 16384;
    size_t len = 0;
    size_t n;
    mt_status_t st;
    FILE *f;

    f = fopen(path, "rb");
    if (f == NULL) {
        return mt_fail(MT_ERR_IO, errno, "cannot open %s '%s'", what, path);
    }
    if (fstat(fileno(f), &sb) == 0 && S_ISREG(sb.st_mode)) {
        if (max_bytes != 0 && (uint64_t)sb.st_size > max_bytes) {
            st = mt_fail(MT_ERR_FORMAT, 0, "%s '%s' is %lld bytes, too large (at most %zu)", what,
                         path, (long long)sb.st_size, max_bytes);
            goto out_close;
        }
        cap = (size_t)sb.st_size + 2; /* the text, the NUL, and room to find end-of-file */
    }
    data = malloc(cap);
    if (data == NULL) {
        st = mt_fail(MT_ERR_NOMEM, 0, "cannot allocate %zu bytes for %s '%s'", cap, what, path);
        goto out_close;
    }
    for (;;) {
        if (len + 1 == cap) {
            char *grown = realloc(data, 2 * cap);

            if (grown == NULL) {
                st = mt_fail(MT_ERR_NOMEM, 0, "cannot allocate %zu bytes for %s '%s'", 2 * cap,
                             what, path);
                goto out_free;
            }
            data = grown;
            cap *= 2;
        }
        n = fread(data + len, 1, cap - 1 - len, f);
        if (n == 0) {
            break;
        }
        len += n;
        if (max_bytes != 0 && len > max_bytes) {
            st = mt_fail(MT_ERR_FORMAT, 0, "%s '%s' is too large (more than %zu bytes)", what, path,
                         max_bytes);
            goto out_free;
        }
    }
    if (ferror(f)) {
        st = mt_fail(MT_ERR_IO, errno, "cannot read %s '%s'", what, path);
        goto out_free;
    }
    fclose(f);
    data[len] = '\0';
    *data_out = data;
    *len_out = len;
    return MT_OK;

out_free:
    free(data);
out_close:
    fclose(f);
    return st;
}

mt_status_t
mt_json_load_file(const char *path, const char *what, size_t flags, json_t **root_out)
{
    json_error_t jerr;
    json_t *root;
    char *text;
    size_t len;
    mt_status_t st;

    st = mt_file_read_all(path, what, 0, &text, &len);
    if (st != MT_OK) {
        return st;
    }
    root = json_loadb(text, len, flags, &jerr);
    free(text);
    if (root == NULL) {
        return mt_fail(MT_ERR_FORMAT, 0, "%s '%s' is not valid JSON: %s (line %d, column %d)", what,
                       path, jerr.text, jerr.line, jerr.column);
    }
    *root_out = root;
    return MT_OK;
}

mt_status_t
mt_json_load_versioned(const char *path, const char *what, const char *format, int version,
                       json_t **root_out)
{
    json_t *root;
    json_t *v;
    mt_status_t st;

    st = mt_json_load_file(path, what, 0, &root);
    if (st != MT_OK) {
        return st;
    }
    v = json_object_get(root, "format");
    if (!json_is_object(root) || !json_is_string(v) || strcmp(json_string_value(v), format) != 0) {
        st = mt_fail(MT_ERR_FORMAT, 0, "'%s' is not a moetier %s (no \"format\": \"%s\")", path,
                     what, format);
        goto out_decref;
    }
    v = json_object_get(root, "version");
    if (v == NULL) {
        st = mt_fail(MT_ERR_FORMAT, 0, "%s '%s': missing field 'version'", what, path);
        goto out_decref;
    }
    if (!json_is_integer(v)) {
        st = mt_fail(MT_ERR_FORMAT, 0, "%s '%s': field 'version' must be an integer", what, path);
        goto out_decref;
    }
    if (json_integer_value(v) != version) {
        st = mt_fail(MT_ERR_FORMAT, 0, "%s '%s' has version %lld, this moetier reads version %d",
                     what, path, (long long)json_integer_value(v), version);
        goto out_decref;
    }
    *root_out = root;
    return MT_OK;

out_decref:
    json_decref(root);
    return st;
}

mt_status_t
mt_json_save_file(const json_t *root, const char *path, const char *what, size_t flags)
{
    bool failed;
    int errnum;
    FILE *f;

    f = fopen(path, "w");
    if (f == NULL) {
        return mt_fail(MT_ERR_IO, errno, "cannot create %s '%s'", what, path);
    }
    errno = 0;
    failed = json_dumpf(root, f, flags) != 0 || fputc('\n', f) == EOF;
    errnum = errno;
    if (fclose(f) != 0 && !failed) {
        failed = true;
        errnum = errno;
    }
    if (failed) {
        return mt_fail(MT_ERR_IO, errnum, "cannot write %s '%s'", what, path);
    }
    return MT_OK;
}
