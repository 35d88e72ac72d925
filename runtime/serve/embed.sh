#!/bin/sh
# SPDX-License-Identifier: MIT
# embed.sh FILE NAME: write a C file that defines `const char NAME[]` (FILE's bytes, then a NUL)
# and `const size_t NAME_len` (FILE's size), so a static file is built into the binary. Uses od
# and awk only (POSIX), so the build needs no xxd.
set -e
file=$1
name=$2
printf '/* generated from %s by runtime/serve/embed.sh: do not edit */\n' "$(basename "$file")"
printf '#include <stddef.h>\n\nconst char %s[] = {\n' "$name"
od -An -v -tu1 "$file" | awk '{ for (i = 1; i <= NF; i++) { v = $i; if (v > 127) v -= 256; printf "%d,", v; if (++n % 24 == 0) printf "\n" } }'
printf '0};\nconst size_t %s_len = sizeof(%s) - 1;\n' "$name" "$name"
