#!/bin/sh
# SPDX-License-Identifier: MIT
# time_limit.sh - runs one test of `make check` (its LOG_COMPILER) under a time limit, so that a
# test that hangs (a lost wake-up in a thread team, a server that never answers) fails with its
# name after MT_TEST_TIMEOUT seconds instead of holding the whole run until CI gives up.
# The default, 1200 s, is over 3x the slowest test under AddressSanitizer on a 2-core machine
# (test_autoplan.sh, ~340 s); MT_TEST_TIMEOUT=0 turns the limit off. timeout(1) runs the test in
# a process group of its own and signals the whole group, so a server a test started goes too.
limit=${MT_TEST_TIMEOUT:-1200}
case $limit in
'' | *[!0-9]*)
    echo "Bail out! MT_TEST_TIMEOUT='$limit' is not a number of seconds (0: no limit)"
    exit 99
    ;;
esac
start=$(date +%s)
timeout -k 10 "$limit" "$@"
rc=$?
# 124: timeout's TERM ended it; 137: the KILL 10 s later (or another KILL: hence the clock too)
if [ "$limit" -ne 0 ] && { [ $rc -eq 124 ] || [ $rc -eq 137 ]; } &&
    [ $(($(date +%s) - start)) -ge "$limit" ]; then
    echo "Bail out! $1 ran past its time limit of $limit s (MT_TEST_TIMEOUT; 0 turns it off)"
fi
exit $rc
