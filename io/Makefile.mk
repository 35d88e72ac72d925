# io/: io_uring reader (O_DIRECT, registered buffers), pinned staging ring, expert caches.
