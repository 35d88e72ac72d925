# bench/: benchmark programs (never run by make check) and bench/results/.
EXTRA_DIST += bench/results
