# tests/: one TAP program per module, run by `make check`.
LOG_DRIVER = env AM_TAP_AWK='$(AWK)' $(SHELL) $(top_srcdir)/build-aux/tap-driver.sh
AM_TESTS_ENVIRONMENT = OMP_NUM_THREADS=2 MALLOC_PERTURB_=165 \
	MT_TEST_DATA=$(abs_top_srcdir)/tests/data MT_SRCDIR=$(abs_top_srcdir) \
	MT_BUILDDIR=$(abs_top_builddir); export OMP_NUM_THREADS MALLOC_PERTURB_ MT_TEST_DATA MT_SRCDIR MT_BUILDDIR;

noinst_LIBRARIES += tests/libmttap.a
tests_libmttap_a_SOURCES = tests/tap.c tests/tap.h
MT_TEST_LIBS = tests/libmttap.a $(MT_LIBS) $(MT_SYSLIBS)

check_PROGRAMS += tests/test_status
tests_test_status_LDADD = $(MT_TEST_LIBS)

TESTS += $(check_PROGRAMS)
EXTRA_DIST += tests/data tests/reference
