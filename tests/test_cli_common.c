/* SPDX-License-Identifier: MIT */
/*
 * test_cli_common.c - the strict flag-value parsers every moetier subcommand uses, the default
 * device from $MOETIER_DEVICE, the model's text as chat writes it to a terminal or a pipe, and
 * the shared flags of run, chat and serve (mt_cli_engine_flags_parse, mt_cli_ctx).
 */
#include <config.h>

#include "runtime/cli/cli_common.h"
#include "runtime/cli/cli_report.h"
#include "runtime/model/model.h"
#include "tests/tap.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

static void
no_usage(FILE *f)
{
    (void)f;
}

static const struct mt_cli cli = {"test", no_usage};

/* mt_cli_write_model_text of in (n bytes) gives want (wn bytes), as a terminal or not. */
static void
model_text_is(const char *in, size_t n, bool tty, const char *want, size_t wn, const char *what)
{
    FILE *f = tmpfile();
    char got[256];
    size_t gn = 0;

    if (f != NULL) {
        mt_cli_write_model_text(f, in, n, tty);
        rewind(f);
        gn = fread(got, 1, sizeof(got), f);
        fclose(f);
    }
    tap_ok(f != NULL && gn == wn && memcmp(got, want, wn) == 0, "model text to a %s: %s",
           tty ? "terminal" : "pipe", what);
}

/* mt_cli_engine_flags_parse of one shared flag with value v (as getopt_long leaves it in optarg)
 * into f: its return, 0 to go on or the exit status. */
static int
flag(struct mt_cli_engine_flags *f, int opt, const char *v)
{
    static char *const argv[] = {"test", NULL};

    optarg = (char *)v;
    optind = 1;
    return mt_cli_engine_flags_parse(&cli, opt, argv, f);
}

/* The shared flags of run, chat and serve take what the README says, and refuse with exit 2
 * what it does not: each bound, each spelling, each contradiction. */
static void
test_engine_flags(void)
{
    struct mt_cli_engine_flags f;

    unsetenv("MOETIER_DEVICE");
    mt_cli_engine_flags_init(&f);
    tap_ok(f.device == MT_CLI_DEVICE_AUTO && f.threads == 0 && f.plan_path == NULL &&
               !f.no_plan && f.n_store == 0 && !f.verify && !f.ref_experts && !f.kv_dtype_set,
           "flags: defaults are auto, no plan given, the team, no store");
    static const struct {
        const char *v;
        enum mt_cli_device want;
    } devs[] = {{"cpu", MT_CLI_DEVICE_CPU}, {"auto", MT_CLI_DEVICE_AUTO},
                {"gpu", MT_CLI_DEVICE_GPU}, {"cuda", MT_CLI_DEVICE_GPU}};
    for (size_t k = 0; k < sizeof(devs) / sizeof(devs[0]); k++) {
        tap_ok(flag(&f, MT_CLI_OPT_DEVICE, devs[k].v) == 0 && f.device == devs[k].want,
               "flags: --device %s", devs[k].v);
    }
    tap_ok(flag(&f, MT_CLI_OPT_DEVICE, "tpu") == 2, "flags: --device tpu refused (2)");

    /* sampling: --temperature >= 0, --top-p in (0, 1], --top-k >= 0 (0: all) */
    tap_ok(flag(&f, MT_CLI_OPT_TEMPERATURE, "0") == 0 && f.sampler.temperature == 0.0f,
           "flags: --temperature 0 (greedy)");
    tap_ok(flag(&f, MT_CLI_OPT_TEMPERATURE, "-0.1") == 2, "flags: --temperature -0.1 refused");
    tap_ok(flag(&f, MT_CLI_OPT_TOP_P, "1") == 0 && f.sampler.top_p == 1.0f,
           "flags: --top-p 1 (the closed end)");
    tap_ok(flag(&f, MT_CLI_OPT_TOP_P, "0.5") == 0 && f.sampler.top_p == 0.5f, "flags: --top-p 0.5");
    tap_ok(flag(&f, MT_CLI_OPT_TOP_P, "0") == 2, "flags: --top-p 0 refused (the open end)");
    tap_ok(flag(&f, MT_CLI_OPT_TOP_P, "1.01") == 2, "flags: --top-p 1.01 refused");
    tap_ok(flag(&f, MT_CLI_OPT_TOP_K, "0") == 0 && f.sampler.top_k == 0, "flags: --top-k 0 (all)");
    tap_ok(flag(&f, MT_CLI_OPT_TOP_K, "-1") == 2, "flags: --top-k -1 refused");
    tap_ok(flag(&f, MT_CLI_OPT_SEED, "18446744073709551615") == 0 && f.sampler.seed == UINT64_MAX,
           "flags: --seed 2^64-1");

    /* --threads in 1..4096 (the message names the range), --ctx >= 1 */
    tap_ok(flag(&f, MT_CLI_OPT_THREADS, "4096") == 0 && f.threads == 4096 &&
               flag(&f, MT_CLI_OPT_THREADS, "1") == 0 && f.threads == 1,
           "flags: --threads 1 and 4096");
    tap_ok(flag(&f, MT_CLI_OPT_THREADS, "4097") == 2 && flag(&f, MT_CLI_OPT_THREADS, "0") == 2,
           "flags: --threads 0 and 4097 refused");
    tap_ok(flag(&f, MT_CLI_OPT_CTX, "1") == 0 && f.engine.ctx == 1, "flags: --ctx 1");
    tap_ok(flag(&f, MT_CLI_OPT_CTX, "0") == 2, "flags: --ctx 0 refused");

    /* sizes: a budget of 0 is refused, a reserve of 0 is a value (keep nothing free) */
    tap_ok(flag(&f, MT_CLI_OPT_CPU_MEM, "0") == 2 && flag(&f, MT_CLI_OPT_GPU_MEM, "0") == 2,
           "flags: --cpu-mem 0 and --gpu-mem 0 refused");
    tap_ok(flag(&f, MT_CLI_OPT_CPU_MEM, "64G") == 0 && f.cpu_mem == 64ull << 30 &&
               flag(&f, MT_CLI_OPT_GPU_MEM, "20G") == 0 && f.engine.gpu_mem == 20ull << 30,
           "flags: --cpu-mem 64G, --gpu-mem 20G");
    tap_ok(!f.cpu_reserve_set && flag(&f, MT_CLI_OPT_CPU_RESERVE, "0") == 0 &&
               f.cpu_reserve_set && f.cpu_reserve == 0,
           "flags: --cpu-reserve 0 is given, not the default");
    tap_ok(flag(&f, MT_CLI_OPT_CACHE, "8G") == 0 && f.cache_bytes == 8ull << 30 &&
               flag(&f, MT_CLI_OPT_CACHE, "8X") == 2,
           "flags: --cache 8G; 8X refused");

    /* --kv-dtype f32 (or fp32), bf16, fp8, and that it was given (the GPU's default differs) */
    static const struct {
        const char *v;
        enum mt_dtype want;
    } kv[] = {{"bf16", MT_DTYPE_BF16}, {"f32", MT_DTYPE_F32}, {"fp8", MT_DTYPE_F8_E4M3},
              {"fp32", MT_DTYPE_F32}};
    for (size_t k = 0; k < sizeof(kv) / sizeof(kv[0]); k++) {
        f.kv_dtype_set = false;
        tap_ok(flag(&f, MT_CLI_OPT_KV_DTYPE, kv[k].v) == 0 && f.engine.kv_dtype == kv[k].want &&
                   f.kv_dtype_set,
               "flags: --kv-dtype %s", kv[k].v);
    }
    tap_ok(flag(&f, MT_CLI_OPT_KV_DTYPE, "fp16") == 2, "flags: --kv-dtype fp16 refused");

    /* --experts team|ref */
    tap_ok(flag(&f, MT_CLI_OPT_EXPERTS, "ref") == 0 && f.ref_experts &&
               flag(&f, MT_CLI_OPT_EXPERTS, "team") == 0 && !f.ref_experts,
           "flags: --experts ref, then team");
    tap_ok(flag(&f, MT_CLI_OPT_EXPERTS, "gpu") == 2, "flags: --experts gpu refused");
    tap_ok(flag(&f, MT_CLI_OPT_VERIFY, NULL) == 0 && f.verify, "flags: --verify");

    /* --plan and --no-plan contradict each other, in either order */
    mt_cli_engine_flags_init(&f);
    tap_ok(flag(&f, MT_CLI_OPT_PLAN, "p.json") == 0 && flag(&f, MT_CLI_OPT_NO_PLAN, NULL) == 2,
           "flags: --plan then --no-plan refused");
    mt_cli_engine_flags_init(&f);
    tap_ok(flag(&f, MT_CLI_OPT_NO_PLAN, NULL) == 0 && f.no_plan &&
               flag(&f, MT_CLI_OPT_PLAN, "p.json") == 2,
           "flags: --no-plan then --plan refused");

    /* --store: as many files as pack writes, not one more */
    mt_cli_engine_flags_init(&f);
    int taken = 0;
    while (taken < MT_IO_MAX_FILES && flag(&f, MT_CLI_OPT_STORE, "s") == 0) {
        taken++;
    }
    tap_ok(taken == MT_IO_MAX_FILES && f.n_store == MT_IO_MAX_FILES &&
               flag(&f, MT_CLI_OPT_STORE, "s") == 2,
           "flags: %d --store files taken, one more refused (took %d)", MT_IO_MAX_FILES, taken);
}

/* mt_cli_ctx: --ctx where given, else 8,192 or the run's need where more; never past the
 * model's max_position_embeddings (cli_common.h, README's --ctx). */
static void
test_ctx(void)
{
    struct mt_cli_engine_flags f;
    struct mt_model_config cfg;

    memset(&cfg, 0, sizeof(cfg));
    cfg.max_position_embeddings = 163840;
    mt_cli_engine_flags_init(&f);
    tap_ok(mt_cli_ctx(&f, &cfg) == 8192, "ctx: 8192 by default");
    f.ctx_need = 100;
    tap_ok(mt_cli_ctx(&f, &cfg) == 8192, "ctx: 8192 where the run needs less");
    f.ctx_need = 20000;
    tap_ok(mt_cli_ctx(&f, &cfg) == 20000, "ctx: the run's need where more than 8192");
    f.ctx_need = 200000;
    tap_ok(mt_cli_ctx(&f, &cfg) == 163840, "ctx: never past max_position_embeddings");
    f.engine.ctx = 1;
    tap_ok(mt_cli_ctx(&f, &cfg) == 1, "ctx: --ctx 1 is 1, whatever the run needs");
    f.engine.ctx = 300000;
    tap_ok(mt_cli_ctx(&f, &cfg) == 163840, "ctx: --ctx past max_position_embeddings is capped");
    cfg.max_position_embeddings = 256;
    f.engine.ctx = 0;
    f.ctx_need = 0;
    tap_ok(mt_cli_ctx(&f, &cfg) == 256, "ctx: a model of 256 positions gets 256, not 8192");
}

/* The number at a dotted path of the run report j ("decode.tiers.gpu.seconds"), NAN if absent. */
static json_t *
report_at(json_t *j, const char *path)
{
    char key[64];

    while (j != NULL && *path != '\0') {
        size_t n = strcspn(path, ".");

        snprintf(key, sizeof(key), "%.*s", (int)n, path);
        j = json_object_get(j, key);
        path += path[n] == '.' ? n + 1 : n;
    }
    return j;
}

static double
report_num(json_t *j, const char *path)
{
    json_t *v = report_at(j, path);

    return json_is_number(v) ? json_number_value(v) : NAN;
}

static bool
near(double a, double b)
{
    return fabs(a - b) <= 1e-7 * fmax(fabs(a), fabs(b));
}

/* r written by mt_cli_report_save_json and read back (NULL: not written or not JSON). */
static json_t *
report_saved(const struct mt_cli_report *r)
{
    char path[600];

    snprintf(path, sizeof(path), "%s/r.json", tap_tmpdir());
    if (mt_cli_report_save_json(r, path) != MT_OK) {
        return NULL;
    }
    return json_load_file(path, 0, NULL);
}

/* The report's text into buf: mt_cli_report_print_line (chat --verbose) or the whole of it. */
static void
report_text(const struct mt_cli_report *r, bool one_line, char *buf, size_t size)
{
    FILE *f = tmpfile();
    size_t n = 0;

    if (f != NULL) {
        if (one_line) {
            mt_cli_report_print_line(r, f);
        } else {
            mt_cli_report_print(r, f);
        }
        rewind(f);
        n = fread(buf, 1, size - 1, f);
        fclose(f);
    }
    buf[n] = '\0';
}

/*
 * The run report's numbers where a CPU run cannot put them (test_run_report.sh runs the CPU
 * engine): a rate of exactly 0 is a number and one over nothing null (the CPU engine makes no
 * prefetch guesses; the first streamed expert of each layer is always prefetched, a hit unless
 * a read fault races the acquire), and the GPU engine's tier seconds: its DRAM-PCIe experts
 * share the GPU tier's time where they were copied into slots, the host's where there were no
 * slot copies. The counters are made up: the report reads nothing else of a run without a plan
 * (a model that is not loaded has no sizes: the FLOPs are 0).
 */
static void
report_checks(void)
{
    struct mt_model model;
    struct mt_cli_engine e;
    struct mt_cli_report r;
    struct mt_engine_stats *d = &r.decode.eng;
    char text[4096];
    json_t *j;

    memset(&model, 0, sizeof(model));
    memset(&e, 0, sizeof(e));
    memset(&r, 0, sizeof(r));
    model.dir = (char *)"model";
    e.model = &model;
    r.e = &e;
    r.gpu = true;
    r.split = true;
    /* prefill: 8 guesses, none right; 5 streamed experts acquired, all misses; a GPU idle */
    r.prefill.tokens = 4;
    r.prefill.seconds = 2;
    r.prefill.eng.forwards = 1;
    r.prefill.eng.tokens = 4;
    r.prefill.eng.forward_s = 1;
    r.prefill.eng.tier_s[MT_TIER_DRAM_CPU] = 0.5;
    r.prefill.eng.prefetch_guessed = 8;
    r.prefill.have_io = true;
    r.prefill.io.misses = 5;
    r.prefill.io.prefetches = 7;
    r.prefill.io.read_errors = 3; /* two read again, the third failed the run */
    r.prefill.io.retries = 2;
    /* decode: no guesses, no acquires; the GPU's 0.4 s over its 1000 bytes and the 3000 copied
       into slots, the CPU team's 0.2 s over DRAM-CPU's 1000 bytes and NVMe's 1000 */
    r.decode.tokens = 2;
    r.decode.seconds = 1;
    d->forwards = 2;
    d->tokens = 2;
    d->forward_s = 1;
    d->slot_copies = 3;
    d->tier_s[MT_TIER_GPU] = 0.4;
    d->tier_s[MT_TIER_DRAM_CPU] = 0.2;
    d->expert_bytes[MT_TIER_GPU] = 1000;
    d->expert_bytes[MT_TIER_DRAM_PCIE] = 3000;
    d->expert_bytes[MT_TIER_DRAM_CPU] = 1000;
    d->expert_bytes[MT_TIER_NVME] = 1000;
    r.decode.have_io = true;
    j = report_saved(&r);
    tap_ok(j != NULL && json_is_real(report_at(j, "prefill.stream.hit_rate")) &&
               report_num(j, "prefill.stream.hit_rate") == 0 &&
               json_is_real(report_at(j, "prefill.prefetch.hit_rate")) &&
               report_num(j, "prefill.prefetch.hit_rate") == 0 &&
               json_is_real(report_at(j, "prefill.gpu_busy")) &&
               report_num(j, "prefill.gpu_busy") == 0,
           "report: hit rates of 0 (5 misses, 8 wrong guesses) and GPU busy 0 are numbers: "
           "stream %g, prefetch %g, GPU %g", report_num(j, "prefill.stream.hit_rate"),
           report_num(j, "prefill.prefetch.hit_rate"), report_num(j, "prefill.gpu_busy"));
    tap_ok(j != NULL && report_num(j, "prefill.stream.prefetches") == 7 &&
               report_num(j, "prefill.stream.read_errors") == 3 &&
               report_num(j, "prefill.stream.retries") == 2,
           "report: the stream's prefetches, read errors and retries: %g %g %g",
           report_num(j, "prefill.stream.prefetches"), report_num(j, "prefill.stream.read_errors"),
           report_num(j, "prefill.stream.retries"));
    tap_ok(j != NULL && json_is_null(report_at(j, "decode.stream.hit_rate")) &&
               json_is_null(report_at(j, "decode.prefetch.hit_rate")) &&
               report_num(j, "decode.stream.misses") == 0,
           "report: hit rates over no acquires and no guesses are null");
    tap_ok(j != NULL && near(report_num(j, "decode.tiers.gpu.seconds"), 0.1) &&
               near(report_num(j, "decode.tiers.dram-pcie.seconds"), 0.3) &&
               near(report_num(j, "decode.tiers.dram-cpu.seconds"), 0.1) &&
               near(report_num(j, "decode.tiers.nvme.seconds"), 0.1) &&
               near(report_num(j, "decode.tiers.dram-pcie.ms_per_token"), 150) &&
               near(report_num(j, "decode.gpu_busy"), 0.4) &&
               near(report_num(j, "decode.cpu_busy"), 0.2),
           "report: GPU engine with slot copies: GPU 0.4 s split with DRAM-PCIe by bytes, CPU "
           "0.2 s with NVMe: %g %g %g %g s, GPU busy %g, CPU %g",
           report_num(j, "decode.tiers.gpu.seconds"),
           report_num(j, "decode.tiers.dram-pcie.seconds"),
           report_num(j, "decode.tiers.dram-cpu.seconds"),
           report_num(j, "decode.tiers.nvme.seconds"), report_num(j, "decode.gpu_busy"),
           report_num(j, "decode.cpu_busy"));
    json_decref(j);
    /* the text: chat --verbose's line of the decode (ms per token of each tier), and with nothing
       decoded the prefill's, whose rates of 0 are printed as such, not as no rate at all */
    report_text(&r, true, text, sizeof(text));
    tap_ok(strcmp(text, "mt: decode 2.00 tok/s; ms/token gpu 50.00 dram-cpu 50.00 dram-pcie "
                        "150.00 nvme 50.00; CPU busy 0.20, GPU busy 0.40\n") == 0,
           "report: the one line of the decode: %s", tap_one_line(text, strlen(text)));
    r.decode.tokens = 0;
    report_text(&r, true, text, sizeof(text));
    tap_ok(strstr(text, "mt: prefill 2.00 tok/s;") == text &&
               strstr(text, "; cache hits 0.00, NVMe 0.00 GB/s; prefetch 0.00\n") != NULL,
           "report: the one line of a prefill of zero hit rates: %s",
           tap_one_line(text, strlen(text)));
    report_text(&r, false, text, sizeof(text));
    tap_ok(strstr(text, "\nmt: report: streamed experts: cache hits 0.00 of 5 acquires,") != NULL &&
               strstr(text, "; prefetch guesses 0.00 right\n") != NULL,
           "report: the text of a prefill of zero hit rates: %s",
           tap_one_line(text, strlen(text)));
    r.decode.tokens = 2;
    /* no slot copies (the device GEMV refused the experts): DRAM-PCIe is the CPU team's */
    d->slot_copies = 0;
    j = report_saved(&r);
    tap_ok(j != NULL && near(report_num(j, "decode.tiers.gpu.seconds"), 0.4) &&
               near(report_num(j, "decode.tiers.dram-cpu.seconds"), 0.04) &&
               near(report_num(j, "decode.tiers.dram-pcie.seconds"), 0.12) &&
               near(report_num(j, "decode.tiers.nvme.seconds"), 0.04),
           "report: GPU engine without slot copies: DRAM-PCIe shares the CPU's 0.2 s: "
           "%g %g %g %g s", report_num(j, "decode.tiers.gpu.seconds"),
           report_num(j, "decode.tiers.dram-cpu.seconds"),
           report_num(j, "decode.tiers.dram-pcie.seconds"),
           report_num(j, "decode.tiers.nvme.seconds"));
    json_decref(j);
    /* the CPU engine: one team for every tier, GPU-tier experts included; no GPU to be busy */
    r.gpu = false;
    j = report_saved(&r);
    tap_ok(j != NULL && json_is_null(report_at(j, "decode.gpu_busy")) &&
               near(report_num(j, "decode.cpu_busy"), 0.6) &&
               near(report_num(j, "decode.tiers.gpu.seconds"), 0.4) &&
               near(report_num(j, "decode.tiers.dram-pcie.seconds"), 0.12),
           "report: CPU engine: GPU busy null, CPU busy 0.6 of all tiers: %g",
           report_num(j, "decode.cpu_busy"));
    json_decref(j);
}

int
main(void)
{
    long l = 0;
    int i = 0;
    uint64_t u = 0;
    double d = 0;

    tap_plan(0);
    /* the parsers print their message on stderr: keep the TAP stream readable */
    if (freopen("/dev/null", "w", stderr) == NULL) {
        return 1;
    }
    tap_ok(mt_cli_parse_long(&cli, "n", "42", 0, 100, &l) && l == 42, "long: 42");
    tap_ok(mt_cli_parse_long(&cli, "n", "-7", -10, 10, &l) && l == -7, "long: -7");
    tap_ok(!mt_cli_parse_long(&cli, "n", "1e3", 0, 10000, &l), "long: '1e3' refused");
    tap_ok(!mt_cli_parse_long(&cli, "n", "0x10", 0, 100, &l), "long: '0x10' refused");
    tap_ok(!mt_cli_parse_long(&cli, "n", " 5", 0, 100, &l), "long: ' 5' refused");
    tap_ok(!mt_cli_parse_long(&cli, "n", "5x", 0, 100, &l), "long: '5x' refused");
    tap_ok(!mt_cli_parse_long(&cli, "n", "", 0, 100, &l), "long: empty refused");
    tap_ok(!mt_cli_parse_long(&cli, "n", "101", 0, 100, &l), "long: out of range refused");
    tap_ok(!mt_cli_parse_long(&cli, "n", "99999999999999999999", 0, 100, &l),
           "long: overflow refused");
    tap_ok(mt_cli_parse_int(&cli, "n", "010", 0, 100, &i) && i == 10, "int: '010' is decimal 10");
    tap_ok(mt_cli_parse_u64(&cli, "seed", "18446744073709551615", &u) && u == UINT64_MAX,
           "u64: 2^64-1");
    tap_ok(!mt_cli_parse_u64(&cli, "seed", "-1", &u), "u64: '-1' refused");
    tap_ok(mt_cli_parse_double(&cli, "t", "0.7", &d) && d == 0.7, "double: 0.7");
    tap_ok(!mt_cli_parse_double(&cli, "t", "nan", &d), "double: nan refused");
    tap_ok(!mt_cli_parse_double(&cli, "t", "inf", &d), "double: inf refused");
    tap_ok(!mt_cli_parse_double(&cli, "t", "hot", &d), "double: 'hot' refused");
    /* the whole range of long is a range like any other: past it is refused, not clamped */
    tap_ok(!mt_cli_parse_long(&cli, "n", "99999999999999999999", 0, LONG_MAX, &l),
           "long: past LONG_MAX refused, also where hi is LONG_MAX");
    tap_ok(!mt_cli_parse_long(&cli, "n", "-99999999999999999999", LONG_MIN, 0, &l),
           "long: past LONG_MIN refused, also where lo is LONG_MIN");
    tap_ok(mt_cli_parse_long(&cli, "n", "100", 0, 100, &l) && l == 100 &&
               mt_cli_parse_long(&cli, "n", "-10", -10, 10, &l) && l == -10,
           "long: both ends of [lo, hi] are in it");
    tap_ok(!mt_cli_parse_u64(&cli, "seed", "18446744073709551616", &u), "u64: 2^64 refused");
    tap_ok(mt_cli_parse_double(&cli, "t", ".5", &d) && d == 0.5, "double: '.5'");
    tap_ok(mt_cli_parse_double(&cli, "t", "1e3", &d) && d == 1000.0, "double: '1e3' is 1000");
    tap_ok(!mt_cli_parse_double(&cli, "t", "0x10", &d), "double: hex '0x10' refused");
    tap_ok(!mt_cli_parse_double(&cli, "t", "1,5", &d), "double: '1,5' refused, not 1");
    float fl = 0;
    tap_ok(mt_cli_parse_float(&cli, "t", "3e38", &fl) && fl == 3e38f, "float: 3e38");
    tap_ok(!mt_cli_parse_float(&cli, "t", "1e39", &fl) &&
               !mt_cli_parse_float(&cli, "t", "-1e39", &fl),
           "float: past FLT_MAX refused (finite as a double, not as a float)");
    tap_ok(mt_cli_parse_size(&cli, "--gpu-mem", "24G", "24G", &u) && u == 24ull << 30,
           "size: 24G");
    tap_ok(mt_cli_parse_size(&cli, "--gpu-mem", "24G", "1.5G", &u) && u == 3ull << 29,
           "size: 1.5G");
    tap_ok(mt_cli_parse_size(&cli, "--gpu-mem", "24G", "512MiB", &u) && u == 512ull << 20,
           "size: 512MiB");
    tap_ok(mt_cli_parse_size(&cli, "--gpu-mem", "24G", "4096", &u) && u == 4096, "size: 4096");
    tap_ok(!mt_cli_parse_size(&cli, "--gpu-mem", "24G", "-4096", &u), "size: negative refused");
    tap_ok(!mt_cli_parse_size(&cli, "--gpu-mem", "24G", "24X", &u), "size: unknown suffix refused");
    tap_ok(!mt_cli_parse_size(&cli, "--gpu-mem", "24G", "0x10", &u), "size: hex refused");
    tap_ok(!mt_cli_parse_size(&cli, "--gpu-reserve", "1.5G", "1.5", &u),
           "size: '1.5' (no unit) refused, not 1 byte");
    tap_ok(mt_cli_parse_size(&cli, "--gpu-mem", "24G", "24GB", &u) && u == 24ull << 30,
           "size: 24GB is 24 GiB, as documented");
    /* the unit in any case, as the README says ("however written") */
    static const char *const spellings[] = {"24gb", "24gib", "24GIB", "24Gib", "24gB", "24Gi"};
    for (size_t k = 0; k < sizeof(spellings) / sizeof(spellings[0]); k++) {
        tap_ok(mt_cli_parse_size(&cli, "--gpu-mem", "24G", spellings[k], &u) && u == 24ull << 30,
               "size: %s is 24 GiB", spellings[k]);
    }
    tap_ok(mt_cli_parse_size(&cli, "--gpu-mem", "24G", "24mb", &u) && u == 24ull << 20,
           "size: 24mb is 24 MiB");
    tap_ok(mt_cli_parse_size(&cli, "--gpu-mem", "24G", "4096b", &u) && u == 4096,
           "size: 4096b is 4096 bytes");
    tap_ok(!mt_cli_parse_size(&cli, "--gpu-mem", "24G", "24gbb", &u), "size: '24gbb' refused");
    tap_ok(!mt_cli_parse_size(&cli, "--gpu-mem", "24G", "24i", &u), "size: '24i' refused");

    /* every suffix of the README's "K, M, G, T", either case; a fraction of each */
    static const struct {
        const char *s;
        uint64_t want;
    } sizes[] = {{"4K", 4ull << 10},
                 {"4k", 4ull << 10},
                 {"2T", 2ull << 40},
                 {"2t", 2ull << 40},
                 {"2TiB", 2ull << 40},
                 {"0.5K", 512},
                 {"1.25G", 5ull << 28},
                 {"0.125M", 1ull << 17},
                 {"17179869183G", ((1ull << 34) - 1) << 30}, /* the largest whole G */
                 /* a fraction of a byte is dropped, exactly: never rounded up to the next one */
                 {"0.99999999999999999999G", (1ull << 30) - 1},
                 {"1.99999999999999999999K", 2047},
                 {"0.0000000000009094947017729282379150390625T", 1}, /* 2^-40 T: 1 byte */
                 {"0.000000000000909494701772928237915039062T", 0}}; /* a hair less */
    for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
        u = 0;
        bool parsed = mt_cli_parse_size(&cli, "--gpu-mem", "24G", sizes[k].s, &u);
        tap_ok(parsed && u == sizes[k].want,
               "size: %s is %llu bytes (got %llu)", sizes[k].s, (unsigned long long)sizes[k].want,
               (unsigned long long)u);
    }
    /* past 2^64 - 1 bytes is refused, never wrapped to a small budget */
    static const char *const too_big[] = {"18446744073709551616", "99999999999999999999",
                                          "17179869184G", "16777216T"};
    for (size_t k = 0; k < sizeof(too_big) / sizeof(too_big[0]); k++) {
        tap_ok(!mt_cli_parse_size(&cli, "--gpu-mem", "24G", too_big[k], &u),
               "size: %s (2^64 or more) refused", too_big[k]);
    }
    u = 0;
    bool parsed = mt_cli_parse_size(&cli, "--gpu-mem", "24G", "17179869183.99999999999999999999G",
                                    &u);
    tap_ok(!parsed || u >= ((1ull << 34) - 1) << 30,
           "size: a fraction that rounds up to the next 2^64 does not wrap (got %llu)",
           (unsigned long long)u);
    tap_ok(!mt_cli_parse_size(&cli, "--gpu-mem", "24G", "5.G", &u), "size: '5.G' refused");
    char digits64[80], digits65[80];
    snprintf(digits64, sizeof(digits64), "1.%064dG", 1); /* 64 digits, the last a 1 */
    snprintf(digits65, sizeof(digits65), "1.%065dG", 1);
    tap_ok(mt_cli_parse_size(&cli, "--gpu-mem", "24G", digits64, &u) && u == 1ull << 30 &&
               !mt_cli_parse_size(&cli, "--gpu-mem", "24G", digits65, &u),
           "size: a fraction of 64 digits taken, of 65 refused");

    /* id lists: commas and/or whitespace between ids; each id strictly decimal in int32 */
    int32_t *ids = NULL;
    size_t n = 0;
    static const char list[] = " 0,5, 17\n-3\t2147483647 ,\n-2147483648\n";
    tap_ok(mt_cli_parse_ids(&cli, "ids", list, strlen(list), &ids, &n) && n == 6 && ids[0] == 0 &&
               ids[1] == 5 && ids[2] == 17 && ids[3] == -3 && ids[4] == INT32_MAX &&
               ids[5] == INT32_MIN,
           "ids: separators and the int32 range (%zu ids)", n);
    free(ids);
    ids = NULL;
    tap_ok(mt_cli_parse_ids(&cli, "ids", "", 0, &ids, &n) && n == 0 && ids != NULL,
           "ids: an empty list is no ids");
    free(ids);
    static const char *const bad_ids[] = {"5-3",        "0x10",        "+5",
                                          "1e3",        "12a",         "-",
                                          "2147483648", "-2147483649", "99999999999999999999"};
    for (size_t k = 0; k < sizeof(bad_ids) / sizeof(bad_ids[0]); k++) {
        char buf[64];
        snprintf(buf, sizeof(buf), "1,%s,2", bad_ids[k]);
        ids = NULL;
        tap_ok(!mt_cli_parse_ids(&cli, "ids", buf, strlen(buf), &ids, &n) && ids == NULL,
               "ids: '%s' refused", bad_ids[k]);
    }
    tap_ok(!mt_cli_parse_ids(&cli, "ids", "1 2\0 3", 6, &ids, &n), "ids: a NUL byte refused");
    /* a file written on Windows: CR LF between ids */
    ids = NULL;
    tap_ok(mt_cli_parse_ids(&cli, "ids", "1\r\n2\r\n", 6, &ids, &n) && n == 2 && ids[0] == 1 &&
               ids[1] == 2,
           "ids: CR LF separates ids (%zu ids)", n);
    free(ids);
    /* an id of more digits than int64_t holds is refused, not wrapped: 2^64 + 1 is not 1 */
    ids = NULL;
    tap_ok(!mt_cli_parse_ids(&cli, "ids", "18446744073709551617", 20, &ids, &n) && ids == NULL,
           "ids: 18446744073709551617 (2^64 + 1) refused");
    /* an empty item is a typo, not "no id": '1,,2' is refused, naming the item */
    static const char *const empty_items[] = {"1,,2", "1, ,2", ",1", "1,2,", ","};
    for (size_t k = 0; k < sizeof(empty_items) / sizeof(empty_items[0]); k++) {
        ids = NULL;
        tap_ok(!mt_cli_parse_ids(&cli, "--prompt-ids", empty_items[k], strlen(empty_items[k]),
                                 &ids, &n) &&
                   ids == NULL,
               "ids: '%s' (an empty item) refused", empty_items[k]);
    }

    /* $MOETIER_DEVICE takes what --device takes; anything else leaves auto */
    static const struct {
        const char *v;
        enum mt_cli_device want;
    } devs[] = {{"cpu", MT_CLI_DEVICE_CPU},   {"gpu", MT_CLI_DEVICE_GPU},
                {"cuda", MT_CLI_DEVICE_GPU},  {"auto", MT_CLI_DEVICE_AUTO},
                {"gpux", MT_CLI_DEVICE_AUTO}, {"", MT_CLI_DEVICE_AUTO}};
    for (size_t k = 0; k < sizeof(devs) / sizeof(devs[0]); k++) {
        struct mt_cli_engine_flags f;

        setenv("MOETIER_DEVICE", devs[k].v, 1);
        mt_cli_engine_flags_init(&f);
        tap_ok(f.device == devs[k].want, "MOETIER_DEVICE='%s' gives device %d", devs[k].v,
               (int)f.device);
    }
    unsetenv("MOETIER_DEVICE");

    /* escape injection: a terminal gets no control character, C0 or C1; a pipe gets every byte */
#define T(s) s, sizeof(s) - 1
    model_text_is(T("a\x1b[31mb\x07\x7f\r\n\tc\x1b]0;title\x07"), true, T("a[31mb\n\tc]0;title"),
                  "C0 controls and DEL dropped, newline and tab kept");
    model_text_is(T("x\xc2\x9b"
                    "2Jy\xc2\x85z\xc2\x80\xc2\x9f\xc2\x9d"
                    "0;t\xc2\x9c!"),
                  true, T("x2Jyz0;t!"),
                  "C1 controls (UTF-8 C2 80..C2 9F: CSI, NEL, OSC, ST) dropped");
    model_text_is(T("\xc2\xa0\xc2\xbf\xc3\xa9\xc4\x80\xe2\x80\x9b\xef\xbf\xbd\xe4\xb8\xad"), true,
                  T("\xc2\xa0\xc2\xbf\xc3\xa9\xc4\x80\xe2\x80\x9b\xef\xbf\xbd\xe4\xb8\xad"),
                  "other characters kept, also those with continuation bytes 80..9F");
    model_text_is(T("a\x1b[2J\xc2\x9b\x00\r\xc2\x85"), false, T("a\x1b[2J\xc2\x9b\x00\r\xc2\x85"),
                  "every byte as the model wrote it");
#undef T

    /* two outputs clash by name too, before either exists (cli_common.h: "by name, or as
       mt_path_is_same_file sees it"), and not when the names differ */
    tap_ok(mt_cli_outputs_clash(&cli, "--json", "no/such/dir/x.json", "--trace",
                                "no/such/dir/x.json"),
           "outputs: one name given twice clashes, though its directory does not exist");
    tap_ok(!mt_cli_outputs_clash(&cli, "--json", "no/such/dir/x.json", "--trace",
                                 "no/such/dir/y.json") &&
               !mt_cli_outputs_clash(&cli, "--json", NULL, "--trace", "no/such/dir/y.json"),
           "outputs: two names, or one output, do not clash");
    /* tok/s: n / s, 0 for no tokens, and finite for a time too short to measure */
    tap_ok(mt_cli_tok_per_s(10, 2) == 5.0 && mt_cli_tok_per_s(0, 0) == 0.0 &&
               isfinite(mt_cli_tok_per_s(3, 0)) && mt_cli_tok_per_s(3, 0) > 0,
           "tok/s: 10 in 2 s is 5; 0 tokens 0; 3 tokens in 0 s finite (%g)",
           mt_cli_tok_per_s(3, 0));
    test_engine_flags();
    test_ctx();
    report_checks();
    return tap_done();
}
