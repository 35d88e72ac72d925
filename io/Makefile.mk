# io/: io_uring reads (O_DIRECT, registered buffers), the expert source with its pinned staging
# slots and cache, the optional striped expert store, the disk benchmark. Links runtime/base only.
noinst_LIBRARIES += io/libmtio.a
io_libmtio_a_SOURCES = \
	io/read_slots.c io/read_slots.h \
	io/uring_reader.c io/uring_reader.h \
	io/io_queue.c io/io_queue.h \
	io/crc32c.c io/crc32c.h \
	io/cache_policy.c io/cache_policy.h \
	io/expert_source.c io/expert_source.h \
	io/store.c io/store.h \
	io/disk_bench.c io/disk_bench.h
