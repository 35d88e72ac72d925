# runtime/synth/: random checkpoints in the HF layout (synth.c) and their tokenizer files
# (synth_tokenizer.c: the tiny preset's trained BPE, or DeepSeek's, copied). synth_paths.h tells
# it where DeepSeek's tokenizer files are (the source tree, then the copy `make install` puts in
# $(pkgdatadir)/tokenizer).
runtime_libmtruntime_a_SOURCES += runtime/synth/synth.c runtime/synth/synth.h \
	runtime/synth/synth_tokenizer.c runtime/synth/synth_tokenizer.h
runtime/synth/synth_paths.h: Makefile
	$(AM_V_GEN)$(MKDIR_P) runtime/synth && { \
	  echo '#define MT_SYNTH_SRC_TOKENIZER_DIR "$(abs_top_srcdir)/tests/data/tokenizer"'; \
	  echo '#define MT_SYNTH_PKGDATA_TOKENIZER_DIR "$(pkgdatadir)/tokenizer"'; } > $@-t && mv $@-t $@
runtime/synth/synth.$(OBJEXT): runtime/synth/synth_paths.h
CLEANFILES += runtime/synth/synth_paths.h
synthtokenizerdir = $(pkgdatadir)/tokenizer
dist_synthtokenizer_DATA = tests/data/tokenizer/tokenizer.json \
	tests/data/tokenizer/tokenizer_config.json
