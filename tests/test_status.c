/* SPDX-License-Identifier: MIT */
/*
 * test_status.c - status names, mt_fail's message and return value, control bytes escaped; and
 * the other small helpers of runtime/base that messages and readers lean on: mt_size_text's
 * units, mt_json_is_int's integral reals, mt_json_kind's words and unknown keys, mt_json_text's
 * repair of bytes that are not UTF-8, mt_mem_available's source; the generator of rng.h against
 * the published splitmix64 and xoshiro256** outputs, and mt_clock_now's clock and unit.
 */
#include <config.h>

#include "runtime/base/status.h"
#include "runtime/base/clock.h"
#include "runtime/base/json_kind.h"
#include "runtime/base/json_num.h"
#include "runtime/base/json_text.h"
#include "runtime/base/mem_available.h"
#include "runtime/base/rng.h"
#include "runtime/base/size_text.h"
#include "tests/tap.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum how { WARN, TEXT, LINE, INFO, FAIL };

/* What mt_log_warn (mt_log_text, mt_log_line) writes to stderr for one message (read back
 * through a temporary file). */
static void
stderr_of(const char *name, enum how how, char *out, size_t size)
{
    const char *tmp = tap_tmpdir();
    char path[512];
    int saved;

    snprintf(path, sizeof(path), "%s/stderr.txt", tmp);
    saved = tap_stderr_to(path);
    if (how == TEXT) {
        mt_log_text(name);
    } else if (how == LINE) {
        mt_log_line("bench: disk: %s...", name);
    } else if (how == INFO) {
        mt_log_info("%s", name);
    } else if (how == FAIL) {
        mt_fail(MT_ERR_IO, 0, "%s", name);
    } else {
        mt_log_warn("name '%s' and more", name);
    }
    tap_stderr_restore(saved);
    tap_read_text(path, out, size);
    tap_rmtree(tmp);
}

/* The edges of the escaping and of the line buffers, mt_log_info's prefix, the quiet switch. */
static void
test_log_more(char *text, size_t size)
{
    static char ctl[301];
    static char want[1300];
    bool ok = true;

    mt_fail(MT_ERR_FORMAT, 0, "<\x1f\xc2\x80\xc2\x9f\x20>");
    tap_ok(strcmp(mt_last_error(), "<\\x1f\\xc2\\x80\\xc2\\x9f >") == 0,
           "the last C0 byte and the first and last C1 characters escaped, space kept: %s",
           mt_last_error());
    /* every byte a control: each takes four bytes, none is cut */
    memset(ctl, '\x01', sizeof(ctl) - 1);
    stderr_of(ctl, TEXT, text, size);
    for (size_t i = 0; i < sizeof(ctl) - 1; i++) {
        ok = ok && strncmp(text + 4 * i, "\\x01", 4) == 0;
    }
    tap_ok(ok && strcmp(text + 4 * (sizeof(ctl) - 1), "\n") == 0,
           "a line of 300 control bytes is printed whole, escaped (%zu bytes)", strlen(text));
    /* a message of exactly 1,024 bytes, one more than the first buffer holds with its NUL */
    memset(want, 'n', 1008);
    want[1008] = '\0';
    stderr_of(want, LINE, text, size);
    tap_ok(strlen(text) == 1025 && strcmp(text + 1021, "...\n") == 0,
           "a line of exactly 1,024 bytes is printed whole (%zu bytes)", strlen(text));
    stderr_of("loading", INFO, text, size);
    tap_ok(strcmp(text, "mt: loading\n") == 0, "mt_log_info's prefix: %s", text);
    tap_ok(mt_log_set_quiet(false) == true && mt_log_set_quiet(false) == false,
           "mt_log_set_quiet returns the setting before");
    stderr_of("loud", FAIL, text, size);
    tap_ok(strcmp(text, "mt: loud\n") == 0, "mt_fail prints when not quiet: %s", text);
    mt_log_set_quiet(true);
    stderr_of("hush", FAIL, text, size);
    tap_ok(text[0] == '\0' && strcmp(mt_last_error(), "hush") == 0,
           "... and not when quiet, though it keeps the message");
}

/* mt_size_text(bytes) is want. */
static void
size_is(uint64_t bytes, const char *want)
{
    const char *got = mt_size_text(bytes).s;

    tap_ok(strcmp(got, want) == 0, "mt_size_text(%llu) is '%s': '%s'", (unsigned long long)bytes,
           want, got);
}

/* size_text.h: GiB with two decimals from 1 GiB up, MiB from 1 MiB, else KiB; binary units. */
static void
test_size_text(void)
{
    size_is(1ull << 30, "1.00 GiB");
    size_is((24ull << 30) - (16ull << 20), "23.98 GiB"); /* 24 - 1/64 GiB */
    size_is(512ull << 20, "512.0 MiB");
    size_is(1ull << 20, "1.0 MiB");
    size_is((4ull << 20) + (512ull << 10), "4.5 MiB");
    size_is((1ull << 20) - 1024, "1023.0 KiB");
    size_is(512ull << 10, "512.0 KiB");
    size_is(1536, "1.5 KiB");
}

/* json_num.h: a JSON integer, or a real with an integral value of magnitude below 2^53. */
static void
test_json_is_int(void)
{
    static const struct {
        double x;
        bool is_int;
    } reals[] = {
        {256.0, true},
        {-3.0, true},
        {256.5, false},
        {9007199254740991.0, true}, /* 2^53 - 1 */
        {-9007199254740991.0, true},
        {9007199254740992.0, false}, /* 2^53: not below it */
        {-9007199254740992.0, false},
        {1e300, false},
        {-1e300, false},
    };
    long long out;
    json_t *v;

    for (size_t i = 0; i < sizeof(reals) / sizeof(reals[0]); i++) {
        v = json_real(reals[i].x);
        out = 7;
        bool got = mt_json_is_int(v, &out);
        tap_ok(got == reals[i].is_int && (!got || out == (long long)reals[i].x),
               "real %.17g is %san integer (got %d, %lld)", reals[i].x,
               reals[i].is_int ? "" : "not ", (int)got, out);
        json_decref(v);
    }
    v = json_integer(-42);
    tap_ok(mt_json_is_int(v, &out) && out == -42, "integer -42 is an integer");
    json_decref(v);
    v = json_string("1");
    tap_ok(!mt_json_is_int(v, &out) && !mt_json_is_int(NULL, &out), "a string, NULL: not integers");
    json_decref(v);
}

/* json_kind.h: each type in the words messages use; the first key a reader does not know. */
static void
test_json_kind(void)
{
    static const char *const known[] = {"model", "stream", NULL};
    static const char *const none[] = {NULL};
    json_t *v[] = {json_object(), json_array(), json_string("s"), json_integer(3),
                   json_real(0.5), json_true(),  json_false(),     json_null()};
    static const char *const want[] = {"an object", "an array", "a string", "a number",
                                       "a number",  "a boolean", "a boolean", "null"};
    int bad = -1;

    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        if (bad < 0 && strcmp(mt_json_kind(v[i]), want[i]) != 0) {
            bad = (int)i;
        }
    }
    tap_ok(bad < 0, "mt_json_kind: object, array, string, integer and real numbers, booleans, "
           "null (first bad %d: '%s')", bad, bad < 0 ? "" : mt_json_kind(v[bad]));
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        json_decref(v[i]);
    }

    json_t *obj = json_pack("{s:s, s:b}", "model", "m", "stream", 1);
    const char *k1 = mt_json_unknown_key(obj, known);
    json_object_set_new(obj, "strem", json_true()); /* a typo of a known key */
    const char *k2 = mt_json_unknown_key(obj, known);
    const char *k3 = mt_json_unknown_key(obj, none);
    tap_ok(k1 == NULL && k2 != NULL && strcmp(k2, "strem") == 0 && k3 != NULL,
           "mt_json_unknown_key: none among known keys (%s), the typo named (%s), any key "
           "when none is known (%s)", k1 ? k1 : "NULL", k2 ? k2 : "NULL", k3 ? k3 : "NULL");
    json_decref(obj);
}

/* Whether JSON string j holds exactly the n bytes want (and then drop j). */
static bool
json_text_is(json_t *j, const char *want, size_t n)
{
    bool ok = j != NULL && json_string_length(j) == n && memcmp(json_string_value(j), want, n) == 0;

    if (!ok) {
        tap_diag("got '%s' (%zu bytes), want '%.*s' (%zu)", j ? json_string_value(j) : "NULL",
                 j ? json_string_length(j) : 0, (int)n, want, n);
    }
    json_decref(j);
    return ok;
}

/* json_text.h: every whole UTF-8 character kept, each byte that begins none written as bad. */
static void
test_json_text(void)
{
    /* valid text as it is: 1, 2, 3 and 4-byte characters */
    tap_ok(json_text_is(mt_json_text("a\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80"),
                        "a\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 10),
           "mt_json_text keeps valid UTF-8 (1- to 4-byte characters)");
    /* a lone continuation byte, a stray 0x80 and 0xff: one '?' each; the 4-byte character after
     * them is still read whole, so the loop steps one byte after a bad one, not a character */
    tap_ok(json_text_is(mt_json_text("\x80x\xff\xf0\x9f\x98\x80"), "?x?\xf0\x9f\x98\x80", 7),
           "bytes that begin no character become '?', the characters after them kept");
    /* a 4-byte character cut after 3 bytes (a path cut to a buffer): 3 bad bytes; and a
     * 3-byte character that ends the text exactly is whole (the text is bad before it, so it
     * is judged a character at a time) */
    tap_ok(json_text_is(mt_json_text("ab\xf0\x9f\x98"), "ab???", 5) &&
               json_text_is(mt_json_text("\xff""ab\xe2\x82\xac"), "?ab\xe2\x82\xac", 6),
           "a character cut at the end is '?' a byte; one ending the text exactly is kept");
    /* a 4-byte lead byte followed by a 3-byte character: the lead is bad, the 3 bytes kept */
    tap_ok(json_text_is(mt_json_text("\xf0\xe2\x82\xac"), "?\xe2\x82\xac", 4),
           "a lead byte without its character is '?', the whole character after it kept");
    /* NUL bytes kept; bad as U+FFFD (3 bytes a bad byte) */
    tap_ok(json_text_is(mt_json_text_bytes("a\0b\xfe", 4, "\xef\xbf\xbd"), "a\0b\xef\xbf\xbd", 6),
           "mt_json_text_bytes keeps NUL bytes and writes a bad byte as U+FFFD");
}

/* MemAvailable (kB) of /proc/meminfo, read here with fscanf; 0 when absent. */
static unsigned long long
meminfo_kib(void)
{
    FILE *f = fopen("/proc/meminfo", "r");
    char key[64];
    unsigned long long v;
    unsigned long long kib = 0;

    while (f != NULL && fscanf(f, "%63s %llu kB", key, &v) == 2) {
        if (strcmp(key, "MemAvailable:") == 0) {
            kib = v;
        }
    }
    if (f != NULL) {
        fclose(f);
    }
    return kib;
}

/* mem_available.h: MemAvailable in bytes; MT_MEM_AVAILABLE=bytes stands in for it. */
static void
test_mem_available(void)
{
    unsigned long long before;
    unsigned long long after;
    uint64_t got;

    setenv("MT_MEM_AVAILABLE", "123456789", 1);
    tap_ok(mt_mem_available() == 123456789, "MT_MEM_AVAILABLE stands in for MemAvailable");
    setenv("MT_MEM_AVAILABLE", "", 1);
    before = meminfo_kib();
    got = mt_mem_available();
    after = meminfo_kib();
    unsetenv("MT_MEM_AVAILABLE");
    if (before == 0) {
        tap_ok(got == 0, "no MemAvailable in /proc/meminfo: 0");
        return;
    }
    /* it moves while other jobs run: between the two readings, 64 MiB either side */
    tap_ok(got % 1024 == 0 && got + (64ull << 20) >= (before < after ? before : after) * 1024 &&
               got <= (before > after ? before : after) * 1024 + (64ull << 20),
           "an empty MT_MEM_AVAILABLE is unset: MemAvailable %llu..%llu kB, in bytes %llu", before,
           after, (unsigned long long)got);
}

/*
 * rng.h: runs are repeatable only if the generator is exactly xoshiro256** seeded by
 * splitmix64. splitmix64 from 0 and xoshiro256** from the state {1, 2, 3, 4} give their
 * authors' reference outputs; from seed 7 (its 4 splitmix64 outputs), uniform is the top 53
 * bits of the first output over 2^53, and below(n) the high word of output x n, also for n
 * past 2^32 (3,008,953,082 of 2^32 + 5; of 2^63 the second output's top 63 bits); below(1) is
 * always 0.
 */
static void
test_rng(void)
{
    static const uint64_t xo_want[4] = {11520, 0, 1509978240, 1215971899390074240ull};
    struct mt_rng r = {{1, 2, 3, 4}};
    uint64_t state = 0;
    uint64_t sm0 = mt_rng_splitmix64(&state);
    uint64_t sm1 = mt_rng_splitmix64(&state);
    int bad = -1;
    double u;
    uint64_t b1;
    uint64_t b2;
    uint64_t b3;
    uint64_t ones = 0;
    bool seeded = true;

    tap_ok(sm0 == 0xe220a8397b1dcdafull && sm1 == 0x6e789e6aa1b965f4ull &&
               state == 2 * 0x9e3779b97f4a7c15ull,
           "splitmix64 from 0: %016llx %016llx (want e220a8397b1dcdaf 6e789e6aa1b965f4)",
           (unsigned long long)sm0, (unsigned long long)sm1);
    for (int i = 0; i < 4; i++) {
        uint64_t v = mt_rng_next(&r);

        if (bad < 0 && v != xo_want[i]) {
            bad = i;
        }
    }
    tap_ok(bad < 0, "xoshiro256** from {1, 2, 3, 4}: the reference outputs (first wrong: %d)",
           bad);
    mt_rng_init(&r, 7);
    state = 7;
    for (int i = 0; i < 4; i++) {
        seeded = seeded && r.s[i] == mt_rng_splitmix64(&state);
    }
    tap_ok(seeded, "seed 7: the state is splitmix64's first 4 outputs from 7");
    u = mt_rng_uniform(&r);
    mt_rng_init(&r, 7);
    b1 = mt_rng_below(&r, (1ull << 32) + 5);
    b2 = mt_rng_below(&r, 1ull << 63);
    b3 = mt_rng_below(&r, 3);
    for (int i = 0; i < 1000; i++) {
        ones |= mt_rng_below(&r, 1);
    }
    tap_ok(u == 0x1.66b1f5ee9df2ep-1 && b1 == 3008953082ull &&
               b2 == 2571026295167391337ull && b3 == 2 && ones == 0,
           "seed 7: uniform %a (want 0x1.66b1f5ee9df2ep-1), below 2^32 + 5: %llu, 2^63: %llu, "
           "3: %llu (want 3008953082, 2571026295167391337, 2), below 1 never above 0 (%llu)", u,
           (unsigned long long)b1, (unsigned long long)b2, (unsigned long long)b3,
           (unsigned long long)ones);
}

/* clock.h: seconds of CLOCK_MONOTONIC, read between two readings of that clock. */
static void
test_clock(void)
{
    struct timespec a;
    struct timespec b;
    double now;

    clock_gettime(CLOCK_MONOTONIC, &a);
    now = mt_clock_now();
    clock_gettime(CLOCK_MONOTONIC, &b);
    tap_ok(now >= (double)a.tv_sec + (double)a.tv_nsec * 1e-9 - 1e-6 &&
               now <= (double)b.tv_sec + (double)b.tv_nsec * 1e-9 + 1e-6,
           "mt_clock_now %.9f lies between two CLOCK_MONOTONIC readings %lld.%09ld, %lld.%09ld",
           now, (long long)a.tv_sec, a.tv_nsec, (long long)b.tv_sec, b.tv_nsec);
}

int
main(void)
{
    mt_status_t st;

    static char big[3000], text[8192];

    tap_plan(13 + 7 + 8 + 11 + 2 + 2 + 5 + 4 + 1);
    mt_log_set_quiet(true);
    st = mt_fail(MT_ERR_IO, ENOENT, "cannot open weights '%s'", "/x/y");
    tap_ok(st == MT_ERR_IO, "mt_fail returns the status it was given");
    tap_ok(strcmp(mt_last_error(), "cannot open weights '/x/y': No such file or directory") == 0,
           "message carries object and OS reason: %s", mt_last_error());
    st = mt_fail(MT_ERR_FORMAT, 0, "bad %d", 3);
    tap_ok(strcmp(mt_last_error(), "bad 3") == 0, "errnum 0 adds no reason");
    /* every name, each its own: messages and the CLI's exit reports print them */
    static const struct {
        mt_status_t st;
        const char *name;
    } names[] = {
        {MT_OK, "success"},
        {MT_ERR_NOMEM, "out of memory"},
        {MT_ERR_INVAL, "invalid argument"},
        {MT_ERR_IO, "input/output error"},
        {MT_ERR_CUDA, "CUDA error"},
        {MT_ERR_FORMAT, "malformed file"},
        {MT_ERR_UNSUPPORTED, "not supported here"},
        {MT_ERR_INTERNAL, "internal error"},
    };
    int bad_name = -1;
    for (int i = 0; i < (int)(sizeof(names) / sizeof(names[0])); i++) {
        if (bad_name < 0 && strcmp(mt_status_str(names[i].st), names[i].name) != 0) {
            bad_name = i;
        }
    }
    tap_ok(bad_name < 0, "status names (first bad: status %d is '%s')",
           bad_name < 0 ? 0 : (int)names[bad_name].st,
           bad_name < 0 ? "" : mt_status_str(names[bad_name].st));
    tap_ok(strcmp(mt_status_str((mt_status_t)42), "unknown status") == 0, "unknown status name");
    /* a name from a file or a request may hold any byte: none reaches the terminal raw */
    mt_fail(MT_ERR_FORMAT, 0, "vocab entry \"%s\"", "a\x1b[31mb\ncd\x7f\xc3\xa9");
    tap_ok(strcmp(mt_last_error(), "vocab entry \"a\\x1b[31mb\\x0acd\\x7f\xc3\xa9\"") == 0,
           "control bytes written as \\xNN, UTF-8 kept: %s", mt_last_error());
    memset(big, '\x01', sizeof(big) - 1);
    big[sizeof(big) - 1] = 0;
    mt_fail(MT_ERR_FORMAT, 0, "%s", big);
    size_t n = strlen(mt_last_error());
    tap_ok(n > 1000 && n < 1024 && n % 4 == 0 && strncmp(mt_last_error() + n - 4, "\\x01", 4) == 0,
           "a long message is cut between escapes (%zu bytes)", n);
    stderr_of("x\ry\tz", WARN, text, sizeof(text));
    tap_ok(strcmp(text, "mt: warning: name 'x\\x0dy\\x09z' and more\n") == 0,
           "a warning escapes them too: %s", text);
    mt_log_set_quiet(false);
    mt_fail(MT_ERR_FORMAT, 0, "q\bq");
    tap_ok(strcmp(mt_last_error(), "q\\x08q") == 0, "and so does a printed error: %s",
           mt_last_error());
    mt_log_set_quiet(true);
    mt_fail(MT_ERR_FORMAT, 0, "a\xc2\x9b""b\xc2\xa0");
    tap_ok(strcmp(mt_last_error(), "a\\xc2\\x9bb\xc2\xa0") == 0,
           "a C1 control (U+009B, CSI) escaped, a no-break space (U+00A0) kept: %s",
           mt_last_error());
    static char long_name[5001];
    memset(long_name, 'n', 5000);
    stderr_of(long_name, WARN, text, sizeof(text));
    tap_ok(strlen(text) == strlen("mt: warning: name '' and more\n") + 5000,
           "a warning longer than any buffer is printed whole (%zu bytes)", strlen(text));
    stderr_of("MHD says\x1b[2J hi\n", TEXT, text, sizeof(text));
    tap_ok(strcmp(text, "MHD says\\x1b[2J hi\n") == 0,
           "another library's line: as it is, its control bytes escaped, its newline kept: %s",
           text);
    stderr_of("/mnt/\x1b]0;title\x07nvme", LINE, text, sizeof(text));
    tap_ok(strcmp(text, "bench: disk: /mnt/\\x1b]0;title\\x07nvme...\n") == 0,
           "a command's own line with a path in it: no prefix, the path's control bytes "
           "escaped: %s", text);
    test_log_more(text, sizeof(text));
    test_size_text();
    test_json_is_int();
    test_json_kind();
    test_json_text();
    test_mem_available();
    test_rng();
    test_clock();
    return tap_done();
}
