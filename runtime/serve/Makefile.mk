# runtime/serve/: the HTTP server of `moetier serve` (on libmicrohttpd): OpenAI JSON mapping,
# metrics, routes and the request queue, and the chat page built into the binary. Its own library,
# linked by the moetier binary and the serve tests only.
noinst_LIBRARIES += runtime/serve/libmtserve.a
runtime_serve_libmtserve_a_SOURCES = \
	runtime/serve/openai.c runtime/serve/openai.h \
	runtime/serve/guard.c runtime/serve/guard.h \
	runtime/serve/deadline.c runtime/serve/deadline.h \
	runtime/serve/metrics.c runtime/serve/metrics.h \
	runtime/serve/server.c runtime/serve/server.h
nodist_runtime_serve_libmtserve_a_SOURCES = runtime/serve/chat_page.c
MT_SERVE_LIBS = runtime/serve/libmtserve.a

# The chat page as a C array (od + awk: no xxd needed).
runtime/serve/chat_page.c: $(srcdir)/runtime/serve/chat_page.html $(srcdir)/runtime/serve/embed.sh
	$(AM_V_GEN)$(MKDIR_P) runtime/serve && \
	$(SHELL) $(srcdir)/runtime/serve/embed.sh $(srcdir)/runtime/serve/chat_page.html \
		mt_serve_chat_page > $@-t && mv $@-t $@
CLEANFILES += runtime/serve/chat_page.c
EXTRA_DIST += runtime/serve/chat_page.html runtime/serve/embed.sh
