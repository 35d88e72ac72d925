# runtime/text/: tokenizer, V3.2 chat encoding, sampler.
runtime_libmtruntime_a_SOURCES += \
	runtime/text/tokenizer.c runtime/text/tokenizer.h \
	runtime/text/chat.c runtime/text/chat.h \
	runtime/text/chat_parse.c \
	runtime/text/sampler.c runtime/text/sampler.h
