/* SPDX-License-Identifier: MIT */
/*
 * fault_alloc.c - an LD_PRELOAD library that makes one chosen allocation fail, so a test can
 * walk every allocation of a command and see each failure end in one message and an exit code,
 * never in a crash (test_alloc_faults.sh).
 *
 * Only allocations that moetier's own code asks for count: the caller's return address must lie
 * in the main program (every layer is linked into it statically). The C library's own buffers,
 * OpenMP's runtime and the loader are left alone: their failures are theirs to report, and
 * libgomp aborts on one by design. malloc, calloc, realloc, aligned_alloc, posix_memalign,
 * strdup and strndup are covered; each delegates to glibc's allocator (__libc_malloc and
 * friends), so free() needs no wrapper and no dlsym() runs before main.
 *
 *   MT_FAIL_ALLOC=N         the Nth counted allocation (from 1) returns NULL; the others succeed
 *   MT_FAIL_ALLOC_COUNT=F   at exit, write the number of counted allocations to file F
 *   MT_FAIL_ALLOC_SITES=F   at exit, write to file F the first allocation number of each distinct
 *                           call site (the caller and two frames above it) and the site's
 *                           hash, one site a line: a test fails each site once instead of
 *                           every allocation, and a site that many commands share once
 *   MT_FAIL_ALLOC_FIRED=F   create file F when the Nth allocation fails (a server's test knows
 *                           then which request took the fault)
 *   MT_FAIL_ALLOC_TRACE=1   print the failed allocation's call stack to stderr (addr2line -e
 *                           moetier -f turns its addresses into functions and lines)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <execinfo.h>
#include <fcntl.h>
#include <link.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern void *__libc_malloc(size_t size);
extern void *__libc_calloc(size_t n, size_t size);
extern void *__libc_realloc(void *p, size_t size);
extern void *__libc_memalign(size_t align, size_t size);

static uintptr_t prog_lo, prog_hi; /* the main program's executable segment */
static long fail_at;               /* 0: fail nothing, count only */
static int trace;

/* Distinct call sites seen by a counting run (MT_FAIL_ALLOC_SITES): an open-addressing set of
 * stack hashes, each with the number of the allocation that first reached it. */
#define SITE_SLOTS 8192
static struct site {
    uint64_t hash; /* 0: empty */
    long first;
} sites[SITE_SLOTS];
static pthread_mutex_t sites_lock = PTHREAD_MUTEX_INITIALIZER;
static const char *sites_path;
static atomic_long counted;

/* The first object dl_iterate_phdr reports is the main program. */
static int
find_program(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    (void)arg;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type == PT_LOAD && (ph->p_flags & PF_X)) {
            prog_lo = info->dlpi_addr + ph->p_vaddr;
            prog_hi = prog_lo + ph->p_memsz;
        }
    }
    return 1;
}

static void
write_counts(void)
{
    const char *path = getenv("MT_FAIL_ALLOC_COUNT");
    FILE *f;
    if (path != NULL && (f = fopen(path, "w")) != NULL) {
        fprintf(f, "%ld\n", atomic_load(&counted));
        fclose(f);
    }
    if (sites_path != NULL && (f = fopen(sites_path, "w")) != NULL) {
        pthread_mutex_lock(&sites_lock);
        for (int i = 0; i < SITE_SLOTS; i++) {
            if (sites[i].hash != 0)
                fprintf(f, "%ld %016llx\n", sites[i].first,
                        (unsigned long long)sites[i].hash);
        }
        pthread_mutex_unlock(&sites_lock);
        fclose(f);
    }
}

/* Records allocation n's call stack (its three innermost frames in moetier's code) as a site. */
static void
note_site(long n)
{
    void *frames[8];
    int depth = backtrace(frames, 8), first = 0;
    while (first < depth && ((uintptr_t)frames[first] < prog_lo ||
                             (uintptr_t)frames[first] >= prog_hi))
        first++; /* this library's own frames */
    /* FNV-1a over the return addresses as offsets into the program, so that every run of it
     * (whatever address the loader chose) names a site alike */
    uint64_t h = 1469598103934665603ull;
    for (int i = first; i < depth && i < first + 3; i++) {
        uintptr_t a = (uintptr_t)frames[i];
        if (a < prog_lo || a >= prog_hi)
            break;
        h ^= (uint64_t)(a - prog_lo);
        h *= 1099511628211ull;
    }
    h |= 1;
    pthread_mutex_lock(&sites_lock);
    for (uint64_t i = h % SITE_SLOTS, probes = 0; probes < SITE_SLOTS;
         i = (i + 1) % SITE_SLOTS, probes++) {
        if (sites[i].hash == h)
            break;
        if (sites[i].hash == 0) {
            sites[i].hash = h;
            sites[i].first = n;
            break;
        }
    }
    pthread_mutex_unlock(&sites_lock);
}

__attribute__((constructor)) static void
fault_alloc_init(void)
{
    const char *s = getenv("MT_FAIL_ALLOC");
    fail_at = s != NULL ? atol(s) : 0;
    trace = getenv("MT_FAIL_ALLOC_TRACE") != NULL;
    sites_path = getenv("MT_FAIL_ALLOC_SITES");
    dl_iterate_phdr(find_program, NULL);
    if (sites_path != NULL) {
        void *warm[1];
        backtrace(warm, 1); /* loads the unwinder now, not inside the first allocation */
    }
    atexit(write_counts);
}

/* True when this allocation, asked for from address `caller`, is the one to fail. */
static int
should_fail(void *caller)
{
    uintptr_t a = (uintptr_t)caller;
    if (a < prog_lo || a >= prog_hi)
        return 0;
    long n = atomic_fetch_add(&counted, 1) + 1;
    if (sites_path != NULL)
        note_site(n);
    if (n != fail_at)
        return 0;
    const char *fired = getenv("MT_FAIL_ALLOC_FIRED");
    if (fired != NULL) {
        int fd = open(fired, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        if (fd >= 0)
            close(fd);
    }
    if (trace) {
        void *frames[32];
        int depth = backtrace(frames, 32);
        fprintf(stderr, "fault_alloc: allocation %ld fails here:\n", n);
        backtrace_symbols_fd(frames, depth, 2);
    }
    return 1;
}

#define CALLER __builtin_extract_return_addr(__builtin_return_address(0))

void *
malloc(size_t size)
{
    if (should_fail(CALLER)) {
        errno = ENOMEM;
        return NULL;
    }
    return __libc_malloc(size);
}

void *
calloc(size_t n, size_t size)
{
    if (should_fail(CALLER)) {
        errno = ENOMEM;
        return NULL;
    }
    return __libc_calloc(n, size);
}

void *
realloc(void *p, size_t size)
{
    if (should_fail(CALLER)) {
        errno = ENOMEM;
        return NULL;
    }
    return __libc_realloc(p, size);
}

void *
aligned_alloc(size_t align, size_t size)
{
    if (should_fail(CALLER)) {
        errno = ENOMEM;
        return NULL;
    }
    return __libc_memalign(align, size);
}

int
posix_memalign(void **out, size_t align, size_t size)
{
    if (should_fail(CALLER))
        return ENOMEM;
    void *p = __libc_memalign(align, size);
    if (p == NULL)
        return ENOMEM;
    *out = p;
    return 0;
}

char *
strdup(const char *s)
{
    if (should_fail(CALLER)) {
        errno = ENOMEM;
        return NULL;
    }
    size_t n = strlen(s) + 1;
    char *d = __libc_malloc(n);
    if (d != NULL)
        memcpy(d, s, n);
    return d;
}

char *
strndup(const char *s, size_t max)
{
    if (should_fail(CALLER)) {
        errno = ENOMEM;
        return NULL;
    }
    size_t n = strnlen(s, max);
    char *d = __libc_malloc(n + 1);
    if (d != NULL) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}
