#!/bin/sh
# SPDX-License-Identifier: MIT
# test_nocuda.sh - a build without CUDA (configure --without-cuda, or a machine with no nvcc)
# compiles: every host source with an `#ifdef MT_HAVE_CUDA` branch is checked by the build's C
# compiler against a copy of config.h that lacks MT_HAVE_CUDA. A CUDA build compiles only the
# other branch, so a broken stub (a duplicated definition, a field of a struct that only CUDA
# builds define) would otherwise show only on a CPU-only machine.
. "${MT_SRCDIR:-$(dirname "$0")/..}/tests/lib.sh"
make_tmp nocuda
[ -f "$MT_BUILDDIR/config.h" ] || bail_out "no config.h in $MT_BUILDDIR"
sed '/MT_HAVE_CUDA/d' "$MT_BUILDDIR/config.h" >"$tmp/config.h"
files=$(cd "$MT_SRCDIR" && grep -l 'MT_HAVE_CUDA' runtime/*/*.c | sort)
[ -n "$files" ] || bail_out "no source under $MT_SRCDIR/runtime tests MT_HAVE_CUDA"

echo "1..$(echo "$files" | wc -l)"
for f in $files; do
    ${MT_CC:-cc} -std=c11 $MT_CFLAGS -fsyntax-only -I"$tmp" -I"$MT_SRCDIR" \
        "$MT_SRCDIR/$f" >"$tmp/cc" 2>&1
    rc=$?
    [ $rc -eq 0 ] || head -20 "$tmp/cc" | sed 's/^/# /'
    ok $rc "$f compiles without CUDA"
done
tap_exit
