/* SPDX-License-Identifier: MIT */
/* test_status.c - status names and mt_fail's message and return value. */
#include <config.h>

#include "runtime/base/status.h"
#include "tests/tap.h"

#include <errno.h>
#include <string.h>

int
main(void)
{
    mt_status_t st;

    tap_plan(5);
    mt_log_set_quiet(true);
    st = mt_fail(MT_ERR_IO, ENOENT, "cannot open weights '%s'", "/x/y");
    tap_ok(st == MT_ERR_IO, "mt_fail returns the status it was given");
    tap_ok(strcmp(mt_last_error(), "cannot open weights '/x/y': No such file or directory") == 0,
           "message carries object and OS reason: %s", mt_last_error());
    st = mt_fail(MT_ERR_FORMAT, 0, "bad %d", 3);
    tap_ok(strcmp(mt_last_error(), "bad 3") == 0, "errnum 0 adds no reason");
    tap_ok(strcmp(mt_status_str(MT_ERR_NOMEM), "out of memory") == 0, "status names");
    tap_ok(strcmp(mt_status_str((mt_status_t)42), "unknown status") == 0, "unknown status name");
    return tap_done();
}
