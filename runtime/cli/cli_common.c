/* SPDX-License-Identifier: MIT */
/*
 * cli_common.c - flag parsing, usage errors and the engine setup shared by the moetier
 * subcommands (see cli_common.h for how a subcommand uses them).
 *
 * The parsers check the characters themselves before calling strto*(), because strto*() alone
 * is lenient: it skips leading blanks, takes "0x10" as hex (base 0) or a float, reads "1e3" as
 * 1000 and wraps "-1" to 2^64 - 1 for unsigned types.
 */
#include <config.h>

#include "runtime/cli/cli_common.h"

#include "runtime/base/clock.h"
#include "runtime/cli/cli_autoplan.h"
#include "runtime/cli/cli_progress.h"
#include "cpu/isa.h"
#include "cpu/topology.h"
#include "runtime/engine/executor_cpu_team.h"
#include "runtime/engine/provider_stream.h"
#include "runtime/base/file_util.h"
#include "runtime/base/out_file.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <omp.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* "moetier NAME: " and the message, its control bytes escaped as every message's are (a bad
 * flag's value is quoted as given). */
static void
verror(const struct mt_cli *cli, const char *fmt, va_list ap)
{
    char prefix[96];

    snprintf(prefix, sizeof(prefix), "moetier %s: ", cli->name);
    mt_log_vline(prefix, fmt, ap);
}

void
mt_cli_error(const struct mt_cli *cli, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    verror(cli, fmt, ap);
    va_end(ap);
}

int
mt_cli_usage_error(const struct mt_cli *cli, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    verror(cli, fmt, ap);
    va_end(ap);
    cli->usage(stderr);
    return 2;
}

int
mt_cli_bad_option(const struct mt_cli *cli, int opt, char *const *argv)
{
    /*
     * getopt_long has moved optind past the word it complained about, except inside a cluster
     * of short options ("-xq"), where optopt is the only reliable name. A long option given a
     * value it does not take ("--help=3") also sets optopt (to 'h'), so that word is used whole.
     */
    const char *word = argv[optind - 1];
    bool long_with_value = strncmp(word, "--", 2) == 0 && strchr(word, '=') != NULL;

    if (opt == ':') {
        return mt_cli_usage_error(cli, "option '%s' needs a value", word);
    }
    if (optopt > 0 && optopt < 256 && !long_with_value) {
        return mt_cli_usage_error(cli, "unknown option '-%c'", optopt);
    }
    return mt_cli_usage_error(cli, "unknown option '%s'", word);
}

/*
 * "bad WHAT 'S'"; for a number outside [lo, hi] (below: under lo), with the range it must be in.
 * The range reads "must be >= lo" when hi is just the type's limit.
 */
static bool
bad_number(const struct mt_cli *cli, const char *what, const char *s, bool out_of_range, bool below,
           long lo, long hi)
{
    if (!out_of_range) {
        mt_cli_error(cli, "bad %s '%s'", what, s);
    } else if (below && (hi == LONG_MAX || hi == INT_MAX)) {
        mt_cli_error(cli, "bad %s '%s' (must be >= %ld)", what, s, lo);
    } else {
        mt_cli_error(cli, "bad %s '%s' (must be in %ld..%ld)", what, s, lo, hi);
    }
    return false;
}

/* An optional sign, then one or more decimal digits, then nothing. */
static bool
is_decimal_int(const char *s, bool sign_ok)
{
    if (sign_ok && (*s == '-' || *s == '+')) {
        s++;
    }
    if (*s == '\0') {
        return false;
    }
    for (; *s != '\0'; s++) {
        if (!isdigit((unsigned char)*s)) {
            return false;
        }
    }
    return true;
}

bool
mt_cli_parse_long(const struct mt_cli *cli, const char *what, const char *s, long lo, long hi,
                  long *out)
{
    long v;

    if (!is_decimal_int(s, true)) {
        return bad_number(cli, what, s, false, false, lo, hi);
    }
    errno = 0;
    v = strtol(s, NULL, 10); /* past the range of long: LONG_MIN or LONG_MAX and ERANGE */
    if (errno != 0 || v < lo || v > hi) {
        return bad_number(cli, what, s, true, v < lo || (errno != 0 && v == LONG_MIN), lo, hi);
    }
    *out = v;
    return true;
}

bool
mt_cli_parse_int(const struct mt_cli *cli, const char *what, const char *s, int lo, int hi,
                 int *out)
{
    long v;

    if (!mt_cli_parse_long(cli, what, s, lo, hi, &v)) {
        return false;
    }
    *out = (int)v;
    return true;
}

bool
mt_cli_parse_u64(const struct mt_cli *cli, const char *what, const char *s, uint64_t *out)
{
    unsigned long long v;

    if (!is_decimal_int(s, false)) {
        return bad_number(cli, what, s, false, false, 0, 0);
    }
    errno = 0;
    v = strtoull(s, NULL, 10);
    if (errno != 0) {
        return bad_number(cli, what, s, false, false, 0, 0);
    }
    *out = (uint64_t)v;
    return true;
}

bool
mt_cli_parse_double(const struct mt_cli *cli, const char *what, const char *s, double *out)
{
    char *end;
    double v;

    /* a leading blank, "inf", "nan" and hex floats are not numbers here */
    if (!(isdigit((unsigned char)*s) || *s == '-' || *s == '+' || *s == '.') ||
        strpbrk(s, "xX") != NULL) {
        return bad_number(cli, what, s, false, false, 0, 0);
    }
    errno = 0;
    v = strtod(s, &end);
    if (end == s || *end != '\0' || errno != 0 || !isfinite(v)) {
        return bad_number(cli, what, s, false, false, 0, 0);
    }
    *out = v;
    return true;
}

bool
mt_cli_parse_float(const struct mt_cli *cli, const char *what, const char *s, float *out)
{
    double v;

    if (!mt_cli_parse_double(cli, what, s, &v)) {
        return false;
    }
    if (fabs(v) > FLT_MAX) {
        return bad_number(cli, what, s, false, false, 0, 0);
    }
    *out = (float)v;
    return true;
}

/* Digits of a size's fraction taken at most: "0.5G" needs 1, 2^-40 exactly 40. */
#define SIZE_FRACTION_DIGITS 64

/*
 * floor(0.DIGITS x 2^shift), exactly: the decimal fraction doubled shift times, the carry out of
 * its first digit each time one more bit of the result. (A double summing the digits rounded
 * 0.99999999999999999999G up to a whole 1G; a fraction of a byte is dropped.) digits is used up.
 */
static uint64_t
fraction_bits(char *digits, size_t n, int shift)
{
    uint64_t part = 0;

    for (int s = 0; s < shift; s++) {
        int carry = 0;
        for (size_t i = n; i-- > 0;) {
            int d = 2 * digits[i] + carry;
            digits[i] = (char)(d % 10);
            carry = d / 10;
        }
        part = 2 * part + (uint64_t)carry;
    }
    return part;
}

bool
mt_cli_parse_size(const struct mt_cli *cli, const char *what, const char *example, const char *s,
                  uint64_t *out)
{
    char *p;
    unsigned long long whole;
    char frac[SIZE_FRACTION_DIGITS]; /* the fraction's digits, 0-9 */
    size_t n_frac = 0;
    int shift = 0;
    uint64_t v;

    if (!isdigit((unsigned char)*s)) {
        goto bad;
    }
    errno = 0;
    whole = strtoull(s, &p, 10);
    if (errno != 0) {
        goto bad;
    }
    bool fraction = *p == '.';
    if (fraction) {
        const char *f = ++p;
        for (; isdigit((unsigned char)*p); p++) {
            if (n_frac == sizeof(frac)) {
                goto bad; /* more digits than anyone means */
            }
            frac[n_frac++] = (char)(*p - '0');
        }
        if (p == f) {
            goto bad; /* "5." */
        }
    }
    switch (*p) {
    case 'K':
    case 'k':
        shift = 10;
        break;
    case 'M':
    case 'm':
        shift = 20;
        break;
    case 'G':
    case 'g':
        shift = 30;
        break;
    case 'T':
    case 't':
        shift = 40;
        break;
    default:
        break;
    }
    /* the rest of the unit in any case, as people write it: 24G, 24GB, 24gb, 24GiB, 24gib;
       B is bytes wherever it stands (no one gives a memory budget in bits) */
    if (shift > 0) {
        p++;
        if (*p == 'i' || *p == 'I') {
            p++;
        }
    }
    if (*p == 'B' || *p == 'b') {
        p++;
    }
    if (fraction && shift == 0 && *p == '\0') { /* "1.5": the unit forgotten, not 1 byte */
        mt_cli_error(cli, "bad %s '%s': a fraction of a byte (a unit missing? e.g. %s)", what, s,
                     example);
        return false;
    }
    if (*p != '\0' || whole > (UINT64_MAX >> shift)) {
        goto bad;
    }
    v = (uint64_t)whole << shift;
    uint64_t part = fraction_bits(frac, n_frac, shift);
    if (part > UINT64_MAX - v) {
        goto bad;
    }
    v += part;
    *out = v;
    return true;

bad:
    mt_cli_error(cli, "bad %s '%s' (e.g. %s)", what, s, example);
    return false;
}

static bool
is_id_separator(char c)
{
    return c == ',' || c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* Up to EXCERPT_BYTES bytes of s[0..n) for a message, each byte that is not printable ASCII as
 * \xNN: a binary file given as ids must not write raw bytes to the terminal. */
#define EXCERPT_BYTES 40
#define EXCERPT_SIZE (4 * EXCERPT_BYTES + 1) /* every byte as \xNN, and the NUL */

static const char *
excerpt(const char *s, size_t n, char out[static EXCERPT_SIZE])
{
    size_t o = 0;

    for (size_t i = 0; i < n && i < EXCERPT_BYTES; i++) {
        unsigned char c = (unsigned char)s[i];
        o += (size_t)snprintf(out + o, EXCERPT_SIZE - o, c >= 0x20 && c < 0x7f ? "%c" : "\\x%02x",
                              c);
    }
    out[o] = '\0';
    return out;
}

bool
mt_cli_parse_ids(const struct mt_cli *cli, const char *what, const char *s, size_t len,
                 int32_t **ids_out, size_t *n_out)
{
    int32_t *ids = malloc(sizeof(*ids));
    size_t n = 0, cap = 1, i = 0, comma_at = 0;
    bool comma = false; /* a comma was seen since the last id (at comma_at) */

    if (ids == NULL) {
        mt_cli_error(cli, "out of memory for the ids of %s", what);
        return false;
    }
    while (i < len) {
        if (s[i] == ',') {
            /* a comma separates two ids: one with nothing before it leaves an item empty */
            if (n == 0 || comma) {
                char q[EXCERPT_SIZE];
                mt_cli_error(cli, "empty item %zu in %s at offset %zu: '%s' (commas must "
                             "separate ids; '1,,2' or a leading comma is refused)",
                             n + 1, what, i, excerpt(s, len, q));
                free(ids);
                return false;
            }
            comma = true;
            comma_at = i++;
            continue;
        }
        if (is_id_separator(s[i])) {
            i++;
            continue;
        }
        comma = false;
        size_t start = i, digits;
        int64_t v = 0;
        bool neg = s[i] == '-';
        i += neg;
        for (digits = i; i < len && isdigit((unsigned char)s[i]) && v <= INT32_MAX; i++) {
            v = 10 * v + (s[i] - '0');
        }
        v = neg ? -v : v;
        if (i == digits || v < INT32_MIN || v > INT32_MAX || (i < len && !is_id_separator(s[i]))) {
            while (i < len && !is_id_separator(s[i])) {
                i++;
            }
            const char *nul = memchr(s + start, 0, i - start);
            char q[EXCERPT_SIZE];
            if (nul != NULL) {
                mt_cli_error(cli, "bad token id in %s: a NUL byte at offset %zu", what,
                             (size_t)(nul - s));
            } else {
                mt_cli_error(cli, "bad token id '%s' in %s at offset %zu",
                             excerpt(s + start, i - start, q), what, start);
            }
            free(ids);
            return false;
        }
        if (n == cap) {
            int32_t *ni = realloc(ids, 2 * cap * sizeof(*ni));
            if (ni == NULL) {
                mt_cli_error(cli, "out of memory for %zu ids of %s", 2 * cap, what);
                free(ids);
                return false;
            }
            ids = ni;
            cap *= 2;
        }
        ids[n++] = (int32_t)v;
    }
    if (comma) {
        /* the end of the input, where the comma is: its start says nothing of it */
        size_t from = comma_at + 1 > EXCERPT_BYTES ? comma_at + 1 - EXCERPT_BYTES : 0;
        char q[EXCERPT_SIZE];

        mt_cli_error(cli, "empty item %zu in %s: a comma at offset %zu ends it ('%s%s'; drop the "
                     "last comma)", n + 1, what, comma_at, from > 0 ? "..." : "",
                     excerpt(s + from, comma_at + 1 - from, q));
        free(ids);
        return false;
    }
    *ids_out = ids;
    *n_out = n;
    return true;
}

/* All of stream f (stdin), read until its end (a pipe has no size to ask for in advance), or
 * NULL with errno EFBIG past max bytes (`yes |` must not fill memory). */
static char *
read_stream(FILE *f, size_t max, size_t *len_p)
{
    size_t cap = 1 << 16, len = 0, got;
    char *buf = malloc(cap);

    if (buf == NULL) {
        return NULL;
    }
    while ((got = fread(buf + len, 1, cap - len - 1, f)) > 0) {
        len += got;
        if (len > max) {
            free(buf);
            errno = EFBIG;
            return NULL;
        }
        if (cap - len - 1 == 0) {
            char *nb = realloc(buf, cap * 2);
            if (nb == NULL) {
                free(buf);
                return NULL;
            }
            buf = nb;
            cap *= 2;
        }
    }
    if (ferror(f)) { /* e.g. stdin is a directory: EISDIR, not an empty text */
        free(buf);
        return NULL;
    }
    buf[len] = 0;
    *len_p = len;
    return buf;
}

bool
mt_cli_read_input(const struct mt_cli *cli, const char *what, const char *path, char **buf_out,
                  size_t *len_out)
{
    if (strcmp(path, "-") == 0) {
        errno = 0;
        *buf_out = read_stream(stdin, MT_FILE_MAX_DEFAULT, len_out);
        if (*buf_out == NULL && errno == EFBIG) {
            mt_cli_error(cli, "cannot read stdin (%s): more than %zu MiB", what,
                         MT_FILE_MAX_DEFAULT >> 20);
            return false;
        }
        if (*buf_out == NULL) {
            mt_cli_error(cli, "cannot read stdin (%s): %s", what,
                         errno != 0 ? strerror(errno) : "out of memory");
            return false;
        }
        return true;
    }
    return mt_file_read_all(path, what, MT_FILE_MAX_DEFAULT, buf_out, len_out) == MT_OK;
}

bool
mt_cli_flush_stdout(const struct mt_cli *cli)
{
    errno = 0;
    if (fflush(stdout) != 0 || ferror(stdout)) {
        mt_cli_error(cli, "cannot write to stdout: %s",
                     errno != 0 ? strerror(errno) : "write error");
        return false;
    }
    return true;
}

void
mt_cli_write_model_text(FILE *f, const char *text, size_t len, bool tty)
{
    const unsigned char *p = (const unsigned char *)text;

    if (!tty) {
        fwrite(text, 1, len, f);
        return;
    }
    for (size_t i = 0; i < len; i++) {
        if (p[i] == 0xc2 && i + 1 < len && p[i + 1] >= 0x80 && p[i + 1] <= 0x9f) {
            i++; /* a C1 control: both of its bytes */
        } else if ((p[i] >= 0x20 && p[i] != 0x7f) || p[i] == '\n' || p[i] == '\t') {
            putc(p[i], f);
        }
    }
}

bool
mt_cli_output_is_input(const struct mt_cli *cli, const char *out_flag, const char *out,
                       const char *in_flag, const char *in)
{
    if (!mt_path_is_same_file(out, in)) {
        return false;
    }
    mt_cli_error(cli, "%s '%s' is the %s input; refusing to overwrite an input (write to another "
                 "file)", out_flag, out, in_flag);
    return true;
}

/* Whether name is a file that loading a model reads (its config, weights or tokenizer). */
static bool
is_model_file_name(const char *name)
{
    static const char *const exact[] = {"config.json", "tokenizer.json", "tokenizer_config.json",
                                        "generation_config.json"};
    size_t n = strlen(name);

    for (size_t i = 0; i < sizeof(exact) / sizeof(exact[0]); i++) {
        if (strcmp(name, exact[i]) == 0) {
            return true;
        }
    }
    return (n > 12 && strcmp(name + n - 12, ".safetensors") == 0) ||
           (n > 23 && strcmp(name + n - 23, ".safetensors.index.json") == 0);
}

bool
mt_cli_output_is_model_file(const struct mt_cli *cli, const char *out_flag, const char *out,
                            const char *dir)
{
    struct stat so;
    struct dirent *de;
    DIR *d;
    bool hit = false;

    if (out == NULL || dir == NULL || stat(out, &so) != 0 || !S_ISREG(so.st_mode)) {
        return false;
    }
    d = opendir(dir);
    if (d == NULL) {
        return false; /* not a directory we can read: opening the model will say why */
    }
    /*
     * By identity, not by name: the output may reach a model file through a symbolic link (-o
     * link-to-shard), a hard link, or the other way round (a Hugging Face cache, whose
     * snapshots/REV/NAME.safetensors are links to ../../blobs/HASH: -o blobs/HASH is a shard). So
     * each file of the directory that loading reads is stat'ed, links followed, and compared by
     * device and inode with what the output names, links followed too.
     */
    while (!hit && (de = readdir(d)) != NULL) {
        struct stat sm;

        hit = is_model_file_name(de->d_name) && fstatat(dirfd(d), de->d_name, &sm, 0) == 0 &&
              sm.st_dev == so.st_dev && sm.st_ino == so.st_ino;
        if (hit) {
            mt_cli_error(cli, "%s '%s' is a file of the model in '%s' ('%s'); refusing to "
                         "overwrite it (write to another file)", out_flag, out, dir, de->d_name);
        }
    }
    closedir(d);
    return hit;
}

bool
mt_cli_outputs_clash(const struct mt_cli *cli, const char *flag_a, const char *a,
                     const char *flag_b, const char *b)
{
    if (a == NULL || b == NULL || (strcmp(a, b) != 0 && !mt_path_is_same_file(a, b))) {
        return false;
    }
    mt_cli_error(cli, "%s and %s name the same file '%s'; give each its own", flag_a, flag_b, a);
    return true;
}

double
mt_cli_tok_per_s(double n, double s)
{
    return n > 0 ? n / (s > 0 ? s : 1e-9) : 0.0;
}

/* ---- run and chat ------------------------------------------------------------------------- */

void
mt_cli_placement_usage(FILE *f)
{
    fprintf(f,
            "      --device auto|cpu|gpu  where to run (default auto: the GPU engine when a\n"
            "                           CUDA device is present, else the CPU; $MOETIER_DEVICE\n"
            "                           sets the default); one line says which\n"
            "      --gpu-mem SIZE       GPU memory to use (default: free minus max(512M, 5%%))\n"
            "      --cpu-mem SIZE       DRAM to use (default: MemAvailable)\n"
            "      --cpu-reserve SIZE   DRAM a plan keeps free for staging, OS (default 4G)\n"
            "      --plan FILE          place routed experts as the plan says (moetier plan -o),\n"
            "                           after checking it against the model, the budgets and\n"
            "                           the free memory; experts on NVMe stream via io_uring\n"
            "      --hw PROFILE         the hardware profile to plan with (default: this host's\n"
            "                           cached one, else a quick bench (up to a minute), cached\n"
            "                           in $MOETIER_CACHE_DIR, $XDG_CACHE_HOME/moetier or\n"
            "                           ~/.cache/moetier)\n"
            "      --no-plan            no planning: every routed expert on the engine's own\n"
            "                           device (DRAM on the CPU, GPU memory on the GPU), or\n"
            "                           with --store every one streamed from the store\n"
            "      --store FILE         stream experts from a `moetier pack` store (repeat per\n"
            "                           file; without --plan every routed expert streams)\n"
            "      --cache SIZE         DRAM for streamed experts (default: what the plan leaves\n"
            "                           of --cpu-mem, at least 2 x k experts; 4 slots without)\n"
            "      --verify             read every streamed expert twice from the shards and\n"
            "                           compare (a store's CRCs are always checked)\n"
            "  Without --plan, the experts stay where they all fit (DRAM on the CPU, the GPU on\n"
            "  the GPU) when they do; otherwise moetier plans GPU, DRAM and NVMe from a profile\n"
            "  of this machine. One line says where they went; -v prints the whole plan.\n");
}

void
mt_cli_engine_flags_init(struct mt_cli_engine_flags *f)
{
    const char *dev = getenv("MOETIER_DEVICE");

    memset(f, 0, sizeof(*f));
    f->device_from = "--device";
    mt_sampler_opts_default(&f->sampler);
    mt_engine_opts_default(&f->engine);
    /* $MOETIER_DEVICE sets the default (the test suite runs on the CPU unless a test asks); it
       takes what --device takes, and a typo is said, not silently taken for auto */
    if (dev == NULL || dev[0] == '\0' || strcmp(dev, "auto") == 0) {
        return;
    }
    if (strcmp(dev, "cpu") == 0) {
        f->device = MT_CLI_DEVICE_CPU;
        f->device_from = "MOETIER_DEVICE";
    } else if (strcmp(dev, "gpu") == 0 || strcmp(dev, "cuda") == 0) {
        f->device = MT_CLI_DEVICE_GPU;
        f->device_from = "MOETIER_DEVICE";
    } else {
        mt_log_warn("MOETIER_DEVICE='%s' is not auto, cpu or gpu: ignored (auto)", dev);
    }
}

int
mt_cli_engine_flags_parse(const struct mt_cli *cli, int opt, char *const *argv,
                          struct mt_cli_engine_flags *f)
{
    struct mt_sampler_opts *so = &f->sampler;

    switch (opt) {
    case MT_CLI_OPT_DEVICE:
        f->device_from = "--device";
        if (strcmp(optarg, "auto") == 0) {
            f->device = MT_CLI_DEVICE_AUTO;
            return 0;
        }
        if (strcmp(optarg, "cpu") == 0) {
            f->device = MT_CLI_DEVICE_CPU;
            return 0;
        }
        if (strcmp(optarg, "gpu") == 0 || strcmp(optarg, "cuda") == 0) {
            f->device = MT_CLI_DEVICE_GPU;
            return 0;
        }
        mt_cli_error(cli, "unknown device '%s' (auto, cpu or gpu)", optarg);
        return 2;
    case MT_CLI_OPT_HW:
        f->hw_path = optarg;
        return 0;
    case MT_CLI_OPT_NO_PLAN:
        if (f->plan_path != NULL) {
            mt_cli_error(cli, "--no-plan and --plan '%s' contradict each other: give one",
                         f->plan_path);
            return 2;
        }
        f->no_plan = true;
        return 0;
    case MT_CLI_OPT_CPU_MEM:
        if (!mt_cli_parse_size(cli, "--cpu-mem", "64G", optarg, &f->cpu_mem)) {
            return 2;
        }
        if (f->cpu_mem == 0) {
            mt_cli_error(cli, "--cpu-mem must be more than 0");
            return 2;
        }
        return 0;
    case MT_CLI_OPT_CPU_RESERVE:
        f->cpu_reserve_set = true;
        return mt_cli_parse_size(cli, "--cpu-reserve", "4G", optarg, &f->cpu_reserve) ? 0 : 2;
    case MT_CLI_OPT_GPU_MEM:
        if (!mt_cli_parse_size(cli, "--gpu-mem", "20G", optarg, &f->engine.gpu_mem)) {
            return 2;
        }
        if (f->engine.gpu_mem == 0) {
            mt_cli_error(cli, "--gpu-mem must be more than 0");
            return 2;
        }
        return 0;
    case MT_CLI_OPT_DEBUG_SYNC:
        f->engine.debug_sync = true;
        return 0;
    case MT_CLI_OPT_KV_DTYPE:
        if (strcmp(optarg, "f32") == 0 || strcmp(optarg, "fp32") == 0) {
            f->engine.kv_dtype = MT_DTYPE_F32;
        } else if (strcmp(optarg, "bf16") == 0) {
            f->engine.kv_dtype = MT_DTYPE_BF16;
        } else if (strcmp(optarg, "fp8") == 0) {
            f->engine.kv_dtype = MT_DTYPE_F8_E4M3;
        } else {
            mt_cli_error(cli, "unknown --kv-dtype '%s' (f32, bf16 or fp8)", optarg);
            return 2;
        }
        f->kv_dtype_set = true;
        return 0;
    case MT_CLI_OPT_CTX: {
        int ctx;
        if (!mt_cli_parse_int(cli, "--ctx", optarg, 1, INT_MAX, &ctx)) {
            return 2;
        }
        f->engine.ctx = ctx;
        return 0;
    }
    case MT_CLI_OPT_TEMPERATURE:
        if (!mt_cli_parse_float(cli, "--temperature", optarg, &so->temperature)) {
            return 2;
        }
        if (!(so->temperature >= 0.0f)) {
            mt_cli_error(cli, "--temperature must be >= 0 (0: greedy)");
            return 2;
        }
        return 0;
    case MT_CLI_OPT_TOP_P:
        if (!mt_cli_parse_float(cli, "--top-p", optarg, &so->top_p)) {
            return 2;
        }
        if (!(so->top_p > 0.0f && so->top_p <= 1.0f)) {
            mt_cli_error(cli, "--top-p must be in (0, 1]");
            return 2;
        }
        return 0;
    case MT_CLI_OPT_TOP_K:
        return mt_cli_parse_int(cli, "--top-k", optarg, 0, INT_MAX, &so->top_k) ? 0 : 2;
    case MT_CLI_OPT_SEED:
        return mt_cli_parse_u64(cli, "--seed", optarg, &so->seed) ? 0 : 2;
    case MT_CLI_OPT_THREADS:
        return mt_cli_parse_int(cli, "--threads", optarg, 1, 4096, &f->threads) ? 0 : 2;
    case MT_CLI_OPT_PLAN:
        if (f->no_plan) {
            mt_cli_error(cli, "--plan '%s' and --no-plan contradict each other: give one", optarg);
            return 2;
        }
        f->plan_path = optarg;
        return 0;
    case MT_CLI_OPT_STORE:
        if (f->n_store == (int)(sizeof(f->store) / sizeof(f->store[0]))) {
            mt_cli_error(cli, "at most %d --store files (as many as pack writes)", f->n_store);
            return 2;
        }
        f->store[f->n_store++] = optarg;
        return 0;
    case MT_CLI_OPT_VERIFY:
        f->verify = true;
        return 0;
    case MT_CLI_OPT_CACHE:
        return mt_cli_parse_size(cli, "--cache", "8G", optarg, &f->cache_bytes) ? 0 : 2;
    case MT_CLI_OPT_EXPERTS:
        if (strcmp(optarg, "ref") != 0 && strcmp(optarg, "team") != 0) {
            mt_cli_error(cli, "unknown expert executor '%s' (team or ref)", optarg);
            return 2;
        }
        f->ref_experts = strcmp(optarg, "ref") == 0;
        return 0;
    default:
        return mt_cli_bad_option(cli, opt, argv);
    }
}

void
mt_cli_engine_report_stream(const struct mt_cli_engine *e)
{
    struct mt_io_source_stats s;

    if (e->stream == NULL) {
        return;
    }
    mt_io_source_stats(mt_expert_provider_stream_source(e->stream), &s);
    fprintf(stderr, "mt: streamed experts: %llu read (%.1f MiB at %.2f GB/s), %llu hits, %llu "
            "still loading, %llu misses; %.3f s waiting for reads; cache %u slot%s, peak "
            "%.1f MiB%s\n", (unsigned long long)s.experts_read, (double)s.bytes_read / (1 << 20),
            s.gbps, (unsigned long long)s.hits, (unsigned long long)s.late_hits,
            (unsigned long long)s.misses, s.stall_s, s.n_slots,
            s.n_slots == 1 ? "" : "s", (double)s.peak_used_bytes / (1 << 20),
            s.verify_failures ? "; VERIFY FAILURES" : "");
}

/*
 * Routed experts on a pinned team with the SIMD kernels, for every host tier. The team has
 * --threads threads (capped at the physical cores), else one per core.
 */
static mt_status_t
engine_team(struct mt_cli_engine *e, int threads, bool gpu, bool report)
{
    struct mt_cpu_topo topo;
    enum mt_cpu_level level;
    mt_status_t st;

    if ((st = mt_cpu_topo_query(&topo)) != MT_OK || (st = mt_cpu_level_select(&level)) != MT_OK) {
        return st;
    }
    if (threads <= 0 || threads > topo.cores) {
        int asked = threads;
        /* beside the GPU engine one core stays free for the thread that drives the GPU: a team
         * thread pinned there would slow the whole team (its rows finish last) */
        threads = gpu && topo.cores > 1 ? topo.cores - 1 : topo.cores;
        if (asked > 0) {
            mt_log_warn("--threads %d is more than the %d cores: the routed experts run on %d "
                        "threads, one a core (two on one core share its memory bandwidth and "
                        "the slower sets the pace)", asked, topo.cores, threads);
        }
    }
    if ((st = mt_cpu_team_create(-1, threads, &e->team)) != MT_OK ||
        (st = mt_executor_cpu_team_create(mt_engine_provider(e->engine), e->team,
                                          &e->experts)) != MT_OK) {
        return st;
    }
    mt_engine_set_executor(e->engine, MT_TIER_DRAM_CPU, e->experts);
    mt_engine_set_executor(e->engine, MT_TIER_DRAM_PCIE, e->experts);
    mt_engine_set_executor(e->engine, MT_TIER_NVME, e->experts);
    mt_engine_set_executor(e->engine, MT_TIER_GPU, e->experts);
    /* the engine's copies and sums of a MoE layer on the same team (MT_HOST_TEAM=0: on the
       engine thread alone, for measurements) */
    const char *ht = getenv("MT_HOST_TEAM");
    if (ht == NULL || strcmp(ht, "0") != 0) {
        mt_engine_set_host_team(e->engine, e->team);
    }
    if (report) {
        int n = mt_cpu_team_size(e->team);
        mt_log_info("routed experts: %s kernels on %d thread%s, %s (of %d core%s, %d NUMA "
                    "node%s)", mt_cpu_level_name(level), n, n == 1 ? "" : "s",
                    mt_cpu_team_bound(e->team) ? "each pinned to a core" : "not pinned",
                    topo.cores, topo.cores == 1 ? "" : "s", topo.n_nodes,
                    topo.n_nodes == 1 ? "" : "s");
    }
    return MT_OK;
}

bool
mt_cli_peek_config(const char *dir, struct mt_model_config *cfg)
{
    char path[4096];
    mt_status_t st;

    if (snprintf(path, sizeof(path), "%s/config.json", dir) >= (int)sizeof(path)) {
        return false;
    }
    mt_log_set_quiet(true);
    st = mt_config_load(path, cfg);
    mt_log_set_quiet(false);
    return st == MT_OK;
}

void
mt_cli_warn_no_bos(const struct mt_tokenizer *tok, const char *dir)
{
    if (tok != NULL && mt_tokenizer_bos(tok) < 0) {
        mt_log_warn("model '%s' names no BOS token (no bos_token in tokenizer_config.json, no "
                    "bos_token_id in config.json that is a token, no %s in tokenizer.json): "
                    "no BOS is prepended to the prompt",
                    dir, MT_TOKENIZER_BOS_TEXT);
    }
}

bool
mt_cli_check_output(const struct mt_cli *cli, const char *what, const char *path)
{
    char dir[4096];
    const char *slash = strrchr(path, '/');
    const char *why = NULL;
    struct stat sb;

    if (path[0] == '\0') {
        mt_cli_error(cli, "%s needs a file name (got an empty one)", what);
        return false;
    }
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        mt_cli_error(cli, "cannot write %s '%s': it is a directory (name a file in it)", what,
                     path);
        return false;
    }

    if (slash == NULL) {
        snprintf(dir, sizeof(dir), ".");
    } else {
        snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path > 0 ? slash - path : 1), path);
    }
    if (access(path, F_OK) == 0) {
        if (access(path, W_OK) != 0) {
            why = strerror(errno);
        }
    } else if (access(dir, W_OK | X_OK) != 0) {
        why = strerror(errno);
    }
    if (why != NULL) {
        mt_cli_error(cli, "cannot write %s '%s': %s", what, path, why);
        return false;
    }
    return true;
}

/* Whether any routed expert is placed on a host tier (DRAM or NVMe): the CPU team computes it. */
static bool
has_host_experts(const struct mt_model_config *cfg, const uint8_t *tiers)
{
    for (int l = 0; l < cfg->num_hidden_layers; l++) {
        for (int x = 0; x < cfg->n_routed_experts && cfg->layer_is_moe[l]; x++) {
            uint8_t t = tiers[(size_t)l * cfg->n_routed_experts + x];
            if (t == MT_TIER_DRAM_CPU || t == MT_TIER_NVME) {
                return true;
            }
        }
    }
    return false;
}

int64_t
mt_cli_ctx(const struct mt_cli_engine_flags *f, const struct mt_model_config *cfg)
{
    int64_t max = cfg->max_position_embeddings;

    if (f->engine.ctx > 0) {
        return MT_MIN(f->engine.ctx, max);
    }
    return MT_MIN(MT_MAX((int64_t)8192, f->ctx_need), max);
}

mt_status_t
mt_cli_engine_init(struct mt_cli_engine *e, const char *dir, const struct mt_cli_engine_flags *f,
                   bool trace)
{
    struct mt_engine_opts eo = f->engine;
    struct mt_cli_progress progress = {0};
    mt_status_t st;

    memset(e, 0, sizeof(*e));
    if (f->threads > 0) {
        /* more OpenMP threads than CPUs only take turns on them */
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        int omp = cpus > 0 && f->threads > cpus ? (int)cpus : f->threads;
        if (omp < f->threads) {
            mt_log_warn("--threads %d is more than the %d CPUs online: OpenMP's parts run %d "
                        "threads", f->threads, omp, omp);
        }
        omp_set_num_threads(omp);
    }
    if ((st = mt_cli_device_pick(f->device, f->device_from, f->report, &eo.device)) != MT_OK) {
        return st;
    }
    e->device = eo.device;
    bool gpu = eo.device == MT_DEVICE_GPU;
    if (!gpu && (eo.gpu_mem > 0 || eo.debug_sync)) {
        mt_log_warn("%s applies to the GPU engine, and this run is on the CPU: ignored",
                    eo.gpu_mem > 0 ? (eo.debug_sync ? "--gpu-mem (and --debug-sync)" : "--gpu-mem")
                                   : "--debug-sync");
    }
    if (gpu && !f->kv_dtype_set) {
        eo.kv_dtype = MT_DTYPE_BF16; /* the GPU's default latent cache */
    }
    /* The CPU engine's experts always run on the team (unless --experts ref), so a MOETIER_ISA
     * this CPU cannot honour is said now, not after minutes of loading. Beside the GPU the team
     * exists only where the placement leaves experts on the host, known after loading. */
    if (!gpu && !f->ref_experts) {
        enum mt_cpu_level level;
        if ((st = mt_cpu_level_select(&level)) != MT_OK) {
            return st;
        }
    }
    st = mt_model_open(dir, &e->model);
    if (st != MT_OK) {
        goto fail;
    }
    /* the context the placement budgets memory for, on either engine */
    eo.ctx = mt_cli_ctx(f, &e->model->cfg);
    if (trace) {
        const struct mt_model_config *cfg = &e->model->cfg;
        st = mt_trace_create(cfg->num_hidden_layers, cfg->n_routed_experts,
                             cfg->num_experts_per_tok, &e->trace);
        if (st != MT_OK) {
            goto fail;
        }
        eo.trace = e->trace;
    }
    /* --plan, --no-plan or the automatic placement; experts on NVMe get the stream provider */
    if ((st = mt_cli_placement(e, f, eo.device, &eo)) != MT_OK) {
        goto fail;
    }
    if (e->stream == NULL && (f->verify || f->cache_bytes > 0)) {
        mt_log_warn("%s applies to streamed experts, and this run streams none (they stream "
                    "with --store, or with a plan that puts experts on NVMe)",
                    f->verify ? "--verify" : "--cache");
    }
    /* the bar covers the engine's own reads and a plan's DRAM experts read right after */
    mt_cli_progress_start(&progress, e->model, mt_cli_placement_load_bytes(e, &eo),
                          f->report);
    st = mt_engine_create(e->model, &eo, &e->engine);
    if (st == MT_OK && e->plan != NULL) {
        /* a plan's DRAM experts are read now, so the first tokens cost what later ones do */
        uint64_t bytes = 0;
        double t0 = mt_clock_now();
        st = mt_engine_preload_experts(e->engine, &bytes);
        if (st == MT_OK && f->report) {
            mt_log_info("read the plan's DRAM experts: %.2f GB in %.1f s", (double)bytes / 1e9,
                        mt_clock_now() - t0);
        }
    }
    mt_cli_progress_finish(&progress, st == MT_OK);
    if (st != MT_OK) {
        goto fail;
    }
    e->vocab = mt_engine_vocab(e->engine);
    /* the team computes the host tiers' experts; beside the GPU only where some are there (a
     * plan's, or those the GPU engine moved to DRAM because they did not fit --gpu-mem) */
    if (!f->ref_experts && (!gpu || has_host_experts(&e->model->cfg, mt_engine_tiers(e->engine))) &&
        (st = engine_team(e, f->threads, gpu, f->report)) != MT_OK) {
        goto fail;
    }
    st = mt_session_create(e->engine, &f->sampler, &e->session);
    if (st != MT_OK) {
        goto fail;
    }
    return MT_OK;

fail:
    mt_cli_engine_fini(e);
    return st;
}

void
mt_cli_engine_fini(struct mt_cli_engine *e)
{
    mt_session_destroy(e->session);
    mt_executor_destroy(e->experts); /* it borrows the engine's provider */
    mt_cpu_team_destroy(e->team);
    mt_engine_destroy(e->engine);
    mt_expert_provider_destroy(e->stream); /* the engine borrowed it */
    free(e->uniform_tiers);
    mt_plan_destroy(e->plan);
    mt_trace_destroy(e->trace);
    mt_model_destroy(e->model);
    memset(e, 0, sizeof(*e));
}
