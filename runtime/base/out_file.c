/* SPDX-License-Identifier: MIT */
/*
 * out_file.c - write to a temporary file beside the destination, then rename (see out_file.h).
 */
#include <config.h>

#include "runtime/base/out_file.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void
out_file_free_(struct mt_out_file *o)
{
    free(o->path);
    free(o->target);
    free(o->tmp);
    memset(o, 0, sizeof(*o));
}

/* "<dir>/.<name>.XXXXXX" for target "<dir>/<name>". */
static char *
out_file_tmp_name_(const char *target)
{
    const char *slash = strrchr(target, '/');
    size_t dir_len = slash != NULL ? (size_t)(slash - target) + 1 : 0;
    const char *name = target + dir_len;
    size_t n = dir_len + 1 + strlen(name) + 8;
    char *tmp = malloc(n);

    if (tmp != NULL) {
        snprintf(tmp, n, "%.*s.%s.XXXXXX", (int)dir_len, target, name);
    }
    return tmp;
}

mt_status_t
mt_out_file_open(const char *path, const char *what, struct mt_out_file *o)
{
    struct stat sb;
    mode_t mask;
    int fd;

    memset(o, 0, sizeof(*o));
    o->what = what;
    o->path = strdup(path);
    if (o->path == NULL) {
        goto out_nomem;
    }
    if (stat(path, &sb) == 0 && !S_ISREG(sb.st_mode)) {
        /* /dev/stdout, a FIFO, /dev/null: nothing to rename over; write in place. */
        o->f = fopen(path, "w");
        if (o->f == NULL) {
            int err = errno;

            out_file_free_(o);
            return mt_fail(MT_ERR_IO, err, "cannot create %s '%s'", what, path);
        }
        return MT_OK;
    }
    /* A symbolic link stays; its target is replaced. */
    o->target = realpath(path, NULL);
    if (o->target == NULL) {
        o->target = strdup(path);
        if (o->target == NULL) {
            goto out_nomem;
        }
    }
    o->tmp = out_file_tmp_name_(o->target);
    if (o->tmp == NULL) {
        goto out_nomem;
    }
    fd = mkstemp(o->tmp);
    if (fd < 0) {
        int err = errno;

        out_file_free_(o);
        return mt_fail(MT_ERR_IO, err, "cannot create %s '%s'", what, path);
    }
    /* mkstemp makes 0600; give the file what fopen would have (an existing file keeps its mode). */
    mask = umask(0);
    umask(mask);
    (void)fchmod(fd, stat(o->target, &sb) == 0 ? (sb.st_mode & 07777) : (0666 & ~mask));
    o->f = fdopen(fd, "w");
    if (o->f == NULL) {
        int err = errno;

        close(fd);
        unlink(o->tmp);
        out_file_free_(o);
        return mt_fail(MT_ERR_IO, err, "cannot create %s '%s'", what, path);
    }
    return MT_OK;

out_nomem:
    out_file_free_(o);
    return mt_fail(MT_ERR_NOMEM, 0, "cannot allocate the name of %s '%s'", what, path);
}

mt_status_t
mt_out_file_commit(struct mt_out_file *o)
{
    mt_status_t st = MT_OK;
    bool failed;
    int err;

    if (o->f == NULL) { /* (its names went with the first commit) */
        return mt_fail(MT_ERR_INTERNAL, 0, "an output file committed twice, or never opened");
    }
    errno = 0;
    failed = fflush(o->f) != 0;
    err = errno;
    if (ferror(o->f) && err == 0 && o->tmp != NULL) {
        /* An fwrite larger than stdio's buffer failed before the commit, and stdio kept no
         * errno: one byte more into the temporary (deleted below) asks the OS again; a full
         * disk or a file size limit answers the same (ENOSPC, EFBIG). */
        clearerr(o->f);
        errno = 0;
        if (fputc(0, o->f) == EOF || fflush(o->f) != 0) {
            err = errno;
        }
        failed = true;
    }
    failed = ferror(o->f) || failed;
    errno = 0;
    if (fclose(o->f) != 0 && !failed) {
        failed = true;
        err = errno;
    }
    o->f = NULL;
    if (!failed && o->tmp != NULL && rename(o->tmp, o->target) != 0) {
        failed = true;
        err = errno;
    }
    if (failed) {
        if (o->tmp != NULL) {
            unlink(o->tmp);
        }
        st = mt_fail(MT_ERR_IO, err, "cannot write %s '%s'%s", o->what, o->path,
                     err == 0 ? ": write error" : "");
    }
    out_file_free_(o);
    return st;
}

void
mt_out_file_abort(struct mt_out_file *o)
{
    if (o->f != NULL) {
        fclose(o->f);
        if (o->tmp != NULL) {
            unlink(o->tmp);
        }
    }
    out_file_free_(o);
}

/* The directory of path (by device and inode) and its last component. */
static bool
out_file_dir_of_(const char *path, struct stat *dir_out, const char **name_out)
{
    const char *slash = strrchr(path, '/');
    char dir[4096];

    if (slash == NULL) {
        *name_out = path;
        return stat(".", dir_out) == 0;
    }
    if ((size_t)(slash - path) + 2 > sizeof(dir)) {
        return false;
    }
    memcpy(dir, path, (size_t)(slash - path) + 1);
    dir[slash - path + 1] = '\0';
    *name_out = slash + 1;
    return stat(dir, dir_out) == 0;
}

bool
mt_path_is_same_file(const char *a, const char *b)
{
    struct stat sa;
    struct stat sb;
    const char *na;
    const char *nb;

    if (a == NULL || b == NULL) {
        return false;
    }
    if (stat(a, &sa) == 0 && stat(b, &sb) == 0) {
        return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
    }
    /* Not both there yet: the same name in the same directory. */
    return out_file_dir_of_(a, &sa, &na) && out_file_dir_of_(b, &sb, &nb) &&
           sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino && strcmp(na, nb) == 0 &&
           na[0] != '\0';
}
