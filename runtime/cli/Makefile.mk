# runtime/cli/: the moetier commands, one file each, on shared flag parsers (cli_common).
bin_PROGRAMS += moetier
moetier_SOURCES = runtime/cli/main.c runtime/cli/cli.h \
	runtime/cli/cli_common.c runtime/cli/cli_common.h \
	runtime/cli/cli_autoplan.c runtime/cli/cli_autoplan.h \
	runtime/cli/cli_progress.c runtime/cli/cli_progress.h \
	runtime/cli/cli_synth.c \
	runtime/cli/cli_tokenize.c \
	runtime/cli/cli_inspect.c \
	runtime/cli/cli_run.c runtime/cli/cli_report.c runtime/cli/cli_report.h \
	runtime/cli/cli_plan.c \
	runtime/cli/cli_bench.c \
	runtime/cli/cli_chat.c \
	runtime/cli/cli_pack.c \
	runtime/cli/cli_serve.c
# serve's library and libmicrohttpd: only this binary (and the serve tests) link them
moetier_LDADD = $(MT_SERVE_LIBS) $(MT_LIBS) $(MT_SYSLIBS) $(MHD_LIBS)
