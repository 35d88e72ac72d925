#!/bin/sh
# SPDX-License-Identifier: MIT
# test_install.sh - `make install` gives a library that programs embed: the public header
# moetier.h, libmoetier.a and moetier.pc are installed (into a scratch DESTDIR), a program using
# only them (tests/embed/embed.c) compiles with `pkg-config --cflags --libs moetier` and
# generates the same greedy tokens as `moetier run` on the golden checkpoint v32-tiny-a.
. "${MT_SRCDIR:-$(dirname "$0")/..}/tests/lib.sh"
make_tmp install
dir="$MT_TEST_DATA/golden/v32-tiny-a"
[ -f "$dir/model.safetensors" ] || bail_out "no golden checkpoint in $dir"
command -v pkg-config >/dev/null || bail_out "pkg-config is needed"
prefix=$(sed -n 's/^prefix=//p' "$MT_BUILDDIR/moetier.pc")

echo "1..4"
${MAKE:-make} -s -C "$MT_BUILDDIR" install DESTDIR="$tmp/inst" >"$tmp/log" 2>&1
ok $? "make install DESTDIR=... exits 0"
root="$tmp/inst$prefix"
[ -f "$root/include/moetier/moetier.h" ] && [ -f "$root/include/moetier/runtime/engine/session.h" ] &&
    [ -f "$root/lib/libmoetier.a" ] && [ -f "$root/lib/pkgconfig/moetier.pc" ]
ok $? "moetier.h (with the headers it includes), libmoetier.a and moetier.pc are installed"
flags=$(PKG_CONFIG_PATH="$root/lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}" pkg-config --define-variable=prefix="$root" \
        --cflags --libs moetier)
# the build's compiler and flags (a sanitizer build's objects need its runtime at link time)
${MT_CC:-cc} -std=c11 $MT_CFLAGS -o "$tmp/embed" "$MT_SRCDIR/tests/embed/embed.c" $flags \
    $MT_LDFLAGS 2>"$tmp/cc"
rc=$?
[ $rc -eq 0 ] || sed 's/^/# /' "$tmp/cc"
ok $rc "a program using only the installed header and library builds with pkg-config"
ids="0 5 17 42 7 99 3 250 12 8"
want=$("$bin" run -m "$dir" --prompt-ids "$ids" -n 6 --print-ids 2>/dev/null)
got=$("$tmp/embed" "$dir" 6 $ids 2>"$tmp/err")
[ -n "$want" ] && [ "$got" = "$want" ]
ok $? "it generates what moetier run does ('$got' = '$want')"
tap_exit
