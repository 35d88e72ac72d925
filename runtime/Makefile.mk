# runtime/: the engine, formats, planner and the moetier CLI.
noinst_LIBRARIES += runtime/libmtruntime.a
runtime_libmtruntime_a_SOURCES = \
	runtime/hwprofile.c runtime/hwprofile.h \
	runtime/svg.c runtime/svg.h \
	runtime/safetensors.c runtime/safetensors.h \
	runtime/config.c runtime/config.h \
	runtime/model.c runtime/model.h \
	runtime/status.c runtime/status.h \
	runtime/engine.c runtime/engine.h \
	runtime/sampler.c runtime/sampler.h \
	runtime/tokenizer.c runtime/tokenizer.h \
	runtime/chat.c runtime/chat.h \
	runtime/trace.c runtime/trace.h \
	runtime/planner.c runtime/planner.h runtime/plan_file.c
runtime_libmtruntime_a_SOURCES += runtime/file_util.c runtime/file_util.h

bin_PROGRAMS += moetier
moetier_SOURCES = runtime/main.c runtime/cli.h
moetier_SOURCES += runtime/cli_common.c runtime/cli_common.h
moetier_SOURCES += runtime/cli_synth.c
moetier_SOURCES += runtime/cli_tokenize.c
moetier_SOURCES += runtime/cli_inspect.c
moetier_SOURCES += runtime/cli_run.c
moetier_SOURCES += runtime/cli_plan.c
moetier_SOURCES += runtime/cli_bench.c
moetier_SOURCES += runtime/cli_chat.c
moetier_LDADD = $(MT_LIBS) $(MT_SYSLIBS)

# synth: random checkpoints in the HF layout. synth_paths.h tells it where DeepSeek's tokenizer
# files are (the source tree, then the copy `make install` puts in $(pkgdatadir)/tokenizer).
runtime_libmtruntime_a_SOURCES += runtime/synth.c runtime/synth.h
runtime/synth_paths.h: Makefile
	$(AM_V_GEN)$(MKDIR_P) runtime && { \
	  echo '#define MT_SYNTH_SRC_TOKENIZER_DIR "$(abs_top_srcdir)/tests/data/tokenizer"'; \
	  echo '#define MT_SYNTH_PKGDATA_TOKENIZER_DIR "$(pkgdatadir)/tokenizer"'; } > $@-t && mv $@-t $@
runtime/synth.$(OBJEXT): runtime/synth_paths.h
CLEANFILES += runtime/synth_paths.h
synthtokenizerdir = $(pkgdatadir)/tokenizer
dist_synthtokenizer_DATA = tests/data/tokenizer/tokenizer.json \
	tests/data/tokenizer/tokenizer_config.json
