# runtime/text/: tokenizer, V3.2 chat encoding, sampler, log-probabilities, JSON mode.
runtime_libmtruntime_a_SOURCES += \
	runtime/text/tokenizer.c runtime/text/tokenizer.h \
	runtime/text/chat.c runtime/text/chat.h \
	runtime/text/chat_parse.c \
	runtime/text/json_constraint.c runtime/text/json_constraint.h \
	runtime/text/json_prefix.c runtime/text/json_prefix.h \
	runtime/text/json_schema.c runtime/text/json_schema.h \
	runtime/text/logprob.c runtime/text/logprob.h \
	runtime/text/sampler.c runtime/text/sampler.h
