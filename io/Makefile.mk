# io/: io_uring reader (O_DIRECT, registered buffers), pinned staging ring, expert caches.
noinst_LIBRARIES += io/libmtio.a
io_libmtio_a_SOURCES = \
	io/uring_reader.c io/uring_reader.h
