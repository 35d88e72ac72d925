#define MT_SYNTH_SRC_TOKENIZER_DIR "/work/main/tests/data/tokenizer"
#define MT_SYNTH_PKGDATA_TOKENIZER_DIR "/usr/local/share/moetier/tokenizer"
