# runtime/: the engine, formats, planner and the moetier CLI.
noinst_LIBRARIES += runtime/libmtruntime.a
runtime_libmtruntime_a_SOURCES = \
	runtime/status.c runtime/status.h

bin_PROGRAMS += moetier
moetier_SOURCES = runtime/main.c runtime/cli.h
moetier_LDADD = $(MT_LIBS) $(MT_SYSLIBS)
