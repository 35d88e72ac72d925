/* SPDX-License-Identifier: MIT */
/*
 * file_util.c - whole-file reads and JSON file load/save (see file_util.h).
 *
 * The one idea: an input is opened O_NONBLOCK and must be a regular file before anything is read,
 * so a FIFO, a device (/dev/zero) or a directory fails at once instead of hanging or filling
 * memory. A regular file's size is then known, so it is checked against the cap and the buffer is
 * sized once, with one spare byte that shows a file which grew after the fstat. The whole text is
 * read before parsing, so a read error is reported as one (with the OS reason), not as bad JSON.
 */
#include <config.h>

#include "runtime/base/file_util.h"
#include "runtime/base/file_kind.h"

#include "runtime/base/json_num.h"
#include "runtime/base/out_file.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

mt_status_t
mt_file_open_input(const char *path, const char *what, int *fd_out, uint64_t *size_out)
{
    struct stat sb;
    int flags;
    int fd;
    mt_status_t st;

    /* O_NONBLOCK only for the open: on a FIFO without a writer a blocking open never returns. */
    fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        return mt_fail(MT_ERR_IO, errno, "cannot open %s '%s'", what, path);
    }
    if (fstat(fd, &sb) != 0) {
        st = mt_fail(MT_ERR_IO, errno, "cannot stat %s '%s'", what, path);
        goto out_close;
    }
    if (!S_ISREG(sb.st_mode)) {
        /* a pipe or a terminal may be what a flag meant to read as stdin: say how where it can */
        bool stream = S_ISFIFO(sb.st_mode) || S_ISCHR(sb.st_mode) || S_ISSOCK(sb.st_mode);
        st = mt_fail(MT_ERR_IO, 0,
                     "%s '%s' is %s, not a regular file (moetier reads inputs from files; save "
                     "the data to a file and pass that%s)",
                     what, path, mt_file_kind_str(sb.st_mode),
                     stream ? ", or pass '-' to read stdin where the flag takes it" : "");
        goto out_close;
    }
    flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) != 0) {
        st = mt_fail(MT_ERR_IO, errno, "cannot clear O_NONBLOCK on %s '%s'", what, path);
        goto out_close;
    }
    *fd_out = fd;
    *size_out = (uint64_t)sb.st_size;
    return MT_OK;

out_close:
    close(fd);
    return st;
}

mt_status_t
mt_file_read_all(const char *path, const char *what, size_t max_bytes, char **data_out,
                 size_t *len_out)
{
    uint64_t size;
    char *data;
    size_t len = 0;
    size_t want;
    int fd;
    mt_status_t st;

    if (max_bytes == 0) {
        max_bytes = MT_FILE_MAX_DEFAULT;
    }
    st = mt_file_open_input(path, what, &fd, &size);
    if (st != MT_OK) {
        return st;
    }
    if (size > max_bytes) {
        st = mt_fail(MT_ERR_FORMAT, 0,
                     "%s '%s' is %" PRIu64 " bytes, too large for a %s (at most %zu; is it the "
                     "right file?)",
                     what, path, size, what, max_bytes);
        goto out_close;
    }
    /* The text, one byte to see a file that grew since the fstat, and the NUL. */
    want = (size_t)size + 1;
    data = malloc(want + 1);
    if (data == NULL) {
        st = mt_fail(MT_ERR_NOMEM, 0, "cannot allocate %zu bytes for %s '%s'", want + 1, what,
                     path);
        goto out_close;
    }
    while (len < want) {
        ssize_t r = read(fd, data + len, want - len);

        if (r < 0) {
            if (errno == EINTR) {
                continue;
            }
            st = mt_fail(MT_ERR_IO, errno, "cannot read %s '%s'", what, path);
            goto out_free;
        }
        if (r == 0) {
            break;
        }
        len += (size_t)r;
    }
    if (len > size) {
        st = mt_fail(MT_ERR_IO, 0,
                     "%s '%s' grew while it was being read (is something writing it?)", what,
                     path);
        goto out_free;
    }
    close(fd);
    data[len] = '\0';
    *data_out = data;
    *len_out = len;
    return MT_OK;

out_free:
    free(data);
out_close:
    close(fd);
    return st;
}

mt_status_t
mt_json_parse(const char *text, size_t len, const char *what, json_t **root_out)
{
    json_error_t jerr;
    json_t *root;

    root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        return mt_fail(MT_ERR_FORMAT, 0, "%s is not valid JSON: %s (line %d, column %d)", what,
                       jerr.text, jerr.line, jerr.column);
    }
    *root_out = root;
    return MT_OK;
}

mt_status_t
mt_json_load_file(const char *path, const char *what, size_t max_bytes, json_t **root_out)
{
    json_error_t jerr;
    json_t *root;
    char *text;
    size_t len;
    mt_status_t st;

    st = mt_file_read_all(path, what, max_bytes, &text, &len);
    if (st != MT_OK) {
        return st;
    }
    root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
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
    long long got = 0;
    mt_status_t st;

    st = mt_json_load_file(path, what, MT_FILE_MAX_MOETIER, &root);
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
    /* 1.0 is version 1, as in hardware profiles: JSON tools may rewrite 1 as 1.0 (json_num.h) */
    if (!mt_json_is_int(v, &got)) {
        st = mt_fail(MT_ERR_FORMAT, 0, "%s '%s': field 'version' must be an integer", what, path);
        goto out_decref;
    }
    if (got != version) {
        st = mt_fail(MT_ERR_FORMAT, 0, "%s '%s' has version %lld, this moetier reads version %d",
                     what, path, got, version);
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
    struct mt_out_file o;
    mt_status_t st;

    if ((st = mt_out_file_open(path, what, &o)) != MT_OK) {
        return st;
    }
    if (json_dumpf(root, o.f, flags) != 0 || fputc('\n', o.f) == EOF) {
        int err = errno;

        mt_out_file_abort(&o);
        return mt_fail(MT_ERR_IO, err, "cannot write %s '%s'", what, path);
    }
    return mt_out_file_commit(&o);
}
