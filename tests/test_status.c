/* SPDX-License-Identifier: MIT */
/* test_status.c - status names, mt_fail's message and return value, control bytes escaped. */
#include <config.h>

#include "runtime/base/status.h"
#include "tests/tap.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum how { WARN, TEXT, LINE };

/* What mt_log_warn (mt_log_text, mt_log_line) writes to stderr for one message (read back
 * through a temporary file). */
static void
stderr_of(const char *name, enum how how, char *out, size_t size)
{
    FILE *tmp = tmpfile();
    int saved = dup(2);
    size_t n = 0;

    out[0] = 0;
    if (tmp == NULL || saved < 0) {
        return;
    }
    fflush(stderr);
    dup2(fileno(tmp), 2);
    if (how == TEXT) {
        mt_log_text(name);
    } else if (how == LINE) {
        mt_log_line("bench: disk: %s...", name);
    } else {
        mt_log_warn("name '%s' and more", name);
    }
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    rewind(tmp);
    n = fread(out, 1, size - 1, tmp);
    out[n] = 0;
    fclose(tmp);
}

int
main(void)
{
    mt_status_t st;

    static char big[3000], text[8192];

    tap_plan(13);
    mt_log_set_quiet(true);
    st = mt_fail(MT_ERR_IO, ENOENT, "cannot open weights '%s'", "/x/y");
    tap_ok(st == MT_ERR_IO, "mt_fail returns the status it was given");
    tap_ok(strcmp(mt_last_error(), "cannot open weights '/x/y': No such file or directory") == 0,
           "message carries object and OS reason: %s", mt_last_error());
    st = mt_fail(MT_ERR_FORMAT, 0, "bad %d", 3);
    tap_ok(strcmp(mt_last_error(), "bad 3") == 0, "errnum 0 adds no reason");
    tap_ok(strcmp(mt_status_str(MT_ERR_NOMEM), "out of memory") == 0, "status names");
    tap_ok(strcmp(mt_status_str((mt_status_t)42), "unknown status") == 0, "unknown status name");
    /* a name from a file or a request may hold any byte: none reaches the terminal raw */
    mt_fail(MT_ERR_FORMAT, 0, "vocab entry \"%s\"", "a\x1b[31mb\ncd\x7f\xc3\xa9");
    tap_ok(strcmp(mt_last_error(), "vocab entry \"a\\x1b[31mb\\x0acd\\x7f\xc3\xa9\"") == 0,
           "control bytes written as \\xNN, UTF-8 kept: %s", mt_last_error());
    memset(big, '\x01', sizeof(big) - 1);
    big[sizeof(big) - 1] = 0;
    mt_fail(MT_ERR_FORMAT, 0, "%s", big);
    size_t n = strlen(mt_last_error());
    tap_ok(n > 1000 && n < 1024 && n % 4 == 0 && strncmp(mt_last_error() + n - 4, "\\x01", 4) == 0,
           "a long message is cut between escapes (%zu bytes)", n);
    stderr_of("x\ry\tz", WARN, text, sizeof(text));
    tap_ok(strcmp(text, "mt: warning: name 'x\\x0dy\\x09z' and more\n") == 0,
           "a warning escapes them too: %s", text);
    mt_log_set_quiet(false);
    mt_fail(MT_ERR_FORMAT, 0, "q\bq");
    tap_ok(strcmp(mt_last_error(), "q\\x08q") == 0, "and so does a printed error: %s",
           mt_last_error());
    mt_log_set_quiet(true);
    mt_fail(MT_ERR_FORMAT, 0, "a\xc2\x9b""b\xc2\xa0");
    tap_ok(strcmp(mt_last_error(), "a\\xc2\\x9bb\xc2\xa0") == 0,
           "a C1 control (U+009B, CSI) escaped, a no-break space (U+00A0) kept: %s",
           mt_last_error());
    static char long_name[5001];
    memset(long_name, 'n', 5000);
    stderr_of(long_name, WARN, text, sizeof(text));
    tap_ok(strlen(text) == strlen("mt: warning: name '' and more\n") + 5000,
           "a warning longer than any buffer is printed whole (%zu bytes)", strlen(text));
    stderr_of("MHD says\x1b[2J hi\n", TEXT, text, sizeof(text));
    tap_ok(strcmp(text, "MHD says\\x1b[2J hi\n") == 0,
           "another library's line: as it is, its control bytes escaped, its newline kept: %s",
           text);
    stderr_of("/mnt/\x1b]0;title\x07nvme", LINE, text, sizeof(text));
    tap_ok(strcmp(text, "bench: disk: /mnt/\\x1b]0;title\\x07nvme...\n") == 0,
           "a command's own line with a path in it: no prefix, the path's control bytes "
           "escaped: %s", text);
    return tap_done();
}
