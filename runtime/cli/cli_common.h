/* SPDX-License-Identifier: MIT */
/*
 * cli_common.h - what the moetier subcommands (runtime/cli_*.c) share: strict parsers for flag
 * values, the usage-error messages, the sampling and engine flags of `run` and `chat`, and the
 * step that opens a model and builds its engine.
 *
 * The one idea: a subcommand describes itself once, as a struct mt_cli (its name and the function
 * that prints its --help text), and every message about its command line goes through that, so
 * all commands word their errors alike and exit alike (cli.h: 0 success, 1 failure, 2 usage):
 *
 *     moetier run: bad --top-k 'x'                        a value that is not a number
 *     moetier run: bad --threads '0' (must be in 1..4096)   a number out of range
 *     moetier run: unknown option '--bogus'               then the usage text on stderr
 *     moetier run: option '-m' needs a value              then the usage text on stderr
 *
 * The parsers are strict: the whole argument must be the number, in decimal, so a typo never
 * quietly becomes another value. Integers are an optional sign and digits ("1e3", "0x10", " 5",
 * "5x" are errors); reals must be finite and not hexadecimal; sizes are a decimal number with
 * an optional binary suffix ("4096", "24G", "1.5G", "512MiB"). Each prints one message naming
 * the flag and returns false; the caller then returns 2.
 *
 * A subcommand's getopt loop then reads (optstring starting with ':', so that a missing value
 * is told apart from an unknown option):
 *
 *     static const struct mt_cli cli = {"run", run_usage};
 *     optind = 1;
 *     opterr = 0;
 *     while ((opt = getopt_long(argc, argv, ":m:n:h", longopts, NULL)) != -1) {
 *         switch (opt) {
 *         case 'n':
 *             if (!mt_cli_parse_long(&cli, "token count -n", optarg, 0, INT_MAX, &n)) {
 *                 return 2;
 *             }
 *             break;
 *         ...
 *         default:
 *             return mt_cli_bad_option(&cli, opt, argv);
 *         }
 *     }
 *
 * `run` and `chat` share their sampling and engine flags (--temperature, --top-p, --top-k,
 * --seed, --threads, --device): MT_CLI_ENGINE_LONGOPTS goes into their option tables, and their
 * default case hands every other opt to mt_cli_engine_flags_parse(), which parses those into a
 * struct mt_cli_engine_flags or reports a bad option. mt_cli_engine_init() then opens the model
 * and builds the engine and sampler from those flags.
 */
#ifndef MT_CLI_COMMON_H
#define MT_CLI_COMMON_H

#include "io/expert_source.h"
#include "runtime/engine/engine.h"
#include "runtime/engine/session.h"
#include "runtime/model/model.h"
#include "runtime/plan/planner.h"
#include "runtime/text/sampler.h"
#include "runtime/text/tokenizer.h"
#include "runtime/base/status.h"
#include "runtime/plan/trace.h"

#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

/* A subcommand, as its messages name it. */
struct mt_cli {
    const char *name;       /* "run": messages start "moetier run: " */
    void (*usage)(FILE *f); /* prints the --help text */
};

/* "moetier NAME: <message>\n" on stderr. */
void mt_cli_error(const struct mt_cli *cli, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* mt_cli_error(), then the usage text on stderr. Returns 2, the usage-error exit status. */
int mt_cli_usage_error(const struct mt_cli *cli, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/*
 * What getopt_long returned that the command does not take: ':' (a value is missing) or '?' (an
 * unknown option, or a value given to a flag that takes none). Prints "unknown option '...'" or
 * "option '...' needs a value" and the usage text. Returns 2.
 */
int mt_cli_bad_option(const struct mt_cli *cli, int opt, char *const *argv);

/*
 * Strict number parsers: s must be the whole number, within [lo, hi]. On failure they print
 * "bad WHAT 'S'" (plus the range when s is a number outside it) and return false. WHAT names
 * the flag as the user knows it ("--ctx", "top-k", "token count -n").
 */
bool mt_cli_parse_long(const struct mt_cli *cli, const char *what, const char *s, long lo, long hi,
                       long *out);
bool mt_cli_parse_int(const struct mt_cli *cli, const char *what, const char *s, int lo, int hi,
                      int *out);
/* An unsigned 64-bit number (a seed): digits only, any value up to 2^64 - 1. */
bool mt_cli_parse_u64(const struct mt_cli *cli, const char *what, const char *s, uint64_t *out);
/* A finite real number ("0.7", "-1", "1e3"); the caller checks the range. */
bool mt_cli_parse_double(const struct mt_cli *cli, const char *what, const char *s, double *out);
bool mt_cli_parse_float(const struct mt_cli *cli, const char *what, const char *s, float *out);

/*
 * A byte count: a decimal number, optionally with a fraction, then optionally K, M, G or T
 * (powers of 1024, either case, optionally followed by "i" and/or "B"), or "B" alone: "4096",
 * "24G", "1.5G", "512MiB", "4GB". A fraction of a byte is dropped. On failure prints
 * "bad WHAT 'S' (e.g. EXAMPLE)" and returns false.
 */
bool mt_cli_parse_size(const struct mt_cli *cli, const char *what, const char *example,
                       const char *s, uint64_t *out);

/*
 * A list of token ids in s[0..len): decimal numbers, each an optional '-' and digits within the
 * range of int32_t, separated by commas and/or whitespace ("0,5,17", "0 5 17\n", "0, 5"), as
 * `moetier tokenize` prints them and `run --prompt-ids` takes them. Whether an id is in the
 * vocabulary is for the caller to check. *ids_out is malloc'ed (also for no ids: free it). On a
 * bad id or a NUL byte prints "bad token id 'X' in WHAT" and returns false; an empty item (two
 * commas with only whitespace between, a leading or a trailing comma) prints "empty item N in
 * WHAT ..." and returns false.
 */
bool mt_cli_parse_ids(const struct mt_cli *cli, const char *what, const char *s, size_t len,
                      int32_t **ids_out, size_t *n_out);

/*
 * The text a command reads as its input: all of FILE, or of stdin where path is "-". A file must
 * be a regular one (stdin may be a pipe); either of at most MT_FILE_MAX_DEFAULT bytes
 * (file_util.h).
 * *buf_out is NUL-terminated (the NUL not counted in *len_out) and malloc'ed. On failure prints
 * "cannot read stdin (WHAT): REASON" (for a file, file_util.h's messages) and returns false.
 */
bool mt_cli_read_input(const struct mt_cli *cli, const char *what, const char *path, char **buf_out,
                       size_t *len_out);

/*
 * Flush stdout; if anything written to it failed (a full disk, a closed pipe), print "cannot
 * write to stdout: REASON" and return false: a command's output must not be lost silently.
 */
bool mt_cli_flush_stdout(const struct mt_cli *cli);

/*
 * Write len bytes of the model's text to f. On a terminal (tty true), drop what the terminal
 * would obey rather than show, so generated text cannot move the cursor, retitle the window or
 * change colours: the C0 controls but newline and tab (ESC begins every escape sequence), DEL,
 * and the C1 controls U+0080..U+009F, in UTF-8 C2 80..C2 9F (U+009B is CSI, which terminals may
 * take for ESC [). Anywhere else (a pipe, a file) the bytes go out exactly. text holds whole
 * UTF-8 characters, as the streaming decoder gives them, so a C1 control never comes cut in two.
 */
void mt_cli_write_model_text(FILE *f, const char *text, size_t len, bool tty);

/*
 * Whether the output file `out` (given by flag out_flag) is the input file `in` (flag in_flag):
 * the same file by device and inode, however spelled. If so, print "<out_flag> '<out>' is the
 * <in_flag> input; refusing to overwrite an input (write to another file)" and return true.
 * NULL out or in: false.
 */
bool mt_cli_output_is_input(const struct mt_cli *cli, const char *out_flag, const char *out,
                            const char *in_flag, const char *in);

/*
 * Whether the output `out` is an existing file of the model directory `dir` that loading the
 * model reads (config.json, a tokenizer file, *.safetensors or their index), as the same file
 * (device and inode, links followed on both sides), however it is reached: by its name, a
 * symbolic or hard link to it, or the target of a link in dir (a Hugging Face cache's blob). If
 * so, print "<out_flag> '<out>' is a file of the model in '<dir>' ('<name>'); refusing to
 * overwrite it" and return true. NULL out or dir, or an output that does not exist yet: false.
 */
bool mt_cli_output_is_model_file(const struct mt_cli *cli, const char *out_flag, const char *out,
                                 const char *dir);

/*
 * Whether two outputs name the same file (by name, or as mt_path_is_same_file sees it); if so,
 * print "<flag_a> and <flag_b> name the same file '<a>'" and return true. NULL: false.
 */
bool mt_cli_outputs_clash(const struct mt_cli *cli, const char *flag_a, const char *a,
                          const char *flag_b, const char *b);

/* n tokens in s seconds as tok/s; 0 when n is 0. */
double mt_cli_tok_per_s(double n, double s);

/* ---- run and chat: sampling and engine flags, and the engine they build ------------------ */

/* getopt_long values of the shared flags; a command's own long-only values stay below 0x1000. */
enum {
    MT_CLI_OPT_DEVICE = 0x1000,
    MT_CLI_OPT_TEMPERATURE,
    MT_CLI_OPT_TOP_P,
    MT_CLI_OPT_TOP_K,
    MT_CLI_OPT_SEED,
    MT_CLI_OPT_THREADS,
    MT_CLI_OPT_PLAN,
    MT_CLI_OPT_EXPERTS,
    MT_CLI_OPT_STORE,
    MT_CLI_OPT_VERIFY,
    MT_CLI_OPT_CACHE,
    MT_CLI_OPT_GPU_MEM,
    MT_CLI_OPT_DEBUG_SYNC,
    MT_CLI_OPT_KV_DTYPE,
    MT_CLI_OPT_CTX,
    MT_CLI_OPT_HW,
    MT_CLI_OPT_CPU_MEM,
    MT_CLI_OPT_CPU_RESERVE,
    MT_CLI_OPT_NO_PLAN,
};

/* The shared flags' entries of a struct option table. */
#define MT_CLI_ENGINE_LONGOPTS                                                                     \
    {"device", required_argument, NULL, MT_CLI_OPT_DEVICE},                                        \
        {"temperature", required_argument, NULL, MT_CLI_OPT_TEMPERATURE},                          \
        {"top-p", required_argument, NULL, MT_CLI_OPT_TOP_P},                                      \
        {"top-k", required_argument, NULL, MT_CLI_OPT_TOP_K},                                      \
        {"seed", required_argument, NULL, MT_CLI_OPT_SEED},                                        \
        {"threads", required_argument, NULL, MT_CLI_OPT_THREADS},                                  \
        {"plan", required_argument, NULL, MT_CLI_OPT_PLAN},                                        \
        {"experts", required_argument, NULL, MT_CLI_OPT_EXPERTS},                                  \
        {"store", required_argument, NULL, MT_CLI_OPT_STORE},                                      \
        {"verify", no_argument, NULL, MT_CLI_OPT_VERIFY},                                          \
        {"cache", required_argument, NULL, MT_CLI_OPT_CACHE},                                      \
        {"gpu-mem", required_argument, NULL, MT_CLI_OPT_GPU_MEM},                                  \
        {"debug-sync", no_argument, NULL, MT_CLI_OPT_DEBUG_SYNC},                                  \
        {"kv-dtype", required_argument, NULL, MT_CLI_OPT_KV_DTYPE},                                \
        {"ctx", required_argument, NULL, MT_CLI_OPT_CTX},                                          \
        {"hw", required_argument, NULL, MT_CLI_OPT_HW},                                            \
        {"cpu-mem", required_argument, NULL, MT_CLI_OPT_CPU_MEM},                                  \
        {"cpu-reserve", required_argument, NULL, MT_CLI_OPT_CPU_RESERVE},                          \
        {"no-plan", no_argument, NULL, MT_CLI_OPT_NO_PLAN}

/*
 * --device: auto (the default, or $MOETIER_DEVICE when set) takes the GPU engine when a CUDA
 * device is present, else the CPU engine.
 */
enum mt_cli_device {
    MT_CLI_DEVICE_AUTO = 0,
    MT_CLI_DEVICE_CPU,
    MT_CLI_DEVICE_GPU,
};

struct mt_cli_engine_flags {
    struct mt_sampler_opts sampler; /* --temperature, --top-p, --top-k, --seed */
    struct mt_engine_opts engine;   /* defaults; run sets indexer and attention itself */
    int threads;                    /* --threads: OpenMP's and the expert team's; 0: OpenMP
                                       by OMP_NUM_THREADS or all CPUs, the team one a core */
    enum mt_cli_device device;      /* --device (engine.device is set from it at init) */
    const char *device_from;        /* what set device: "--device" or "MOETIER_DEVICE" */
    const char *plan_path;          /* --plan; NULL: the automatic placement (cli_autoplan.h) */
    bool no_plan;                   /* --no-plan: every routed expert in DRAM, no planning */
    const char *hw_path;            /* --hw: the profile to plan with; NULL: cached or measured */
    uint64_t cpu_mem;               /* --cpu-mem: DRAM budget; 0: MemAvailable */
    uint64_t cpu_reserve;           /* --cpu-reserve: DRAM the plan keeps free (default 4 GiB) */
    bool cpu_reserve_set;           /* --cpu-reserve given (0 is a value: keep nothing free) */
    bool verbose;                   /* -v: the plan in one screen at start */
    bool ref_experts;               /* --experts ref: the fp32 reference executor */
    bool report;                    /* say on stderr the device, where the experts went and
                                       who computes them (run, serve; chat -v) */
    /* --store FILE (repeatable): streamed experts from a pack; as many as pack writes */
    const char *store[MT_IO_MAX_FILES];
    int n_store;
    bool verify;                    /* --verify: CRCs (store) or a second read (shards) */
    uint64_t cache_bytes;           /* --cache: DRAM slots for streamed experts (0: default) */
    bool kv_dtype_set;              /* --kv-dtype given (else f32 on the CPU, bf16 on the GPU) */
    int64_t ctx_need;               /* run: its prompt's tokens + -n (0: not known) */
};

/*
 * The positions a session may reach (the GPU engine's caches hold them from the start, the CPU
 * engine's grow up to them): --ctx where given, else 8,192 or, where the run says it needs more
 * (ctx_need: a long prompt), that many, so `run` with a long prompt needs no --ctx; never more
 * than the model's max_position_embeddings. The automatic placement budgets the caches for the
 * same number.
 */
int64_t mt_cli_ctx(const struct mt_cli_engine_flags *f, const struct mt_model_config *cfg);

/*
 * The --help lines of the placement flags run, chat and serve share (--device, --gpu-mem,
 * --cpu-mem, --cpu-reserve, --plan, --hw, --no-plan, --store, --cache, --verify), in the
 * column layout of their usage texts.
 */
void mt_cli_placement_usage(FILE *f);

/* Greedy sampling, the engine's defaults, OpenMP's thread count. */
void mt_cli_engine_flags_init(struct mt_cli_engine_flags *f);

/*
 * Take one getopt_long result the command itself did not handle: a shared flag (MT_CLI_OPT_*,
 * value in optarg) goes into f; anything else is a bad option (mt_cli_bad_option). Returns 0 to
 * go on, else the exit status: 2 for a bad value or option, 1 for a device not built yet.
 */
int mt_cli_engine_flags_parse(const struct mt_cli *cli, int opt, char *const *argv,
                              struct mt_cli_engine_flags *f);

/* A model, its engine and a generation session over it. */
struct mt_cli_engine {
    enum mt_device device;      /* the engine's device (--device auto resolved) */
    struct mt_model *model;     /* owned */
    struct mt_trace *trace;     /* owned; NULL unless asked for */
    struct mt_plan *plan;       /* owned; NULL when no plan was needed or wanted */
    struct mt_expert_provider *stream; /* owned: streamed experts (plan NVMe tier), or NULL */
    uint8_t *uniform_tiers;     /* owned: all NVMe (--store without a plan), or NULL */
    struct mt_engine *engine;   /* owned */
    struct mt_cpu_team *team;   /* owned: pinned threads for the routed experts, or NULL */
    struct mt_executor *experts; /* owned: the CPU-team executor, or NULL (reference) */
    struct mt_session *session; /* owned: sampling, prefix reuse, stop rules */
    int vocab;                  /* the engine's logits per position */
};

/*
 * Open the checkpoint in dir and build its engine and session from f, after applying --threads;
 * with --plan, the plan is checked against the model and its tiers place the routed experts
 * (one line on stderr says where they went). Routed experts run on a pinned CPU team with the
 * SIMD kernels (one line says which and how many threads), or on the fp32 reference with
 * --experts ref. With trace, also create an expert-activation trace
 * sized for the model, which the engine records into. On failure the reason has been printed
 * (mt_fail) and nothing is held.
 */
mt_status_t mt_cli_engine_init(struct mt_cli_engine *e, const char *dir,
                               const struct mt_cli_engine_flags *f, bool trace);

/*
 * DIR/config.json loaded quietly, to check the input against the model before the weights load
 * (minutes on the full model). Returns false where it does not load: the engine's load says why.
 */
bool mt_cli_peek_config(const char *dir, struct mt_model_config *cfg);

/*
 * One warning where the tokenizer of the model in dir has no BOS (mt_tokenizer_bos() -1): the
 * prompts a command builds from text then start without one, which the model was not trained
 * on. Nothing otherwise.
 */
void mt_cli_warn_no_bos(const struct mt_tokenizer *tok, const char *dir);

/*
 * An output file named by flag `what` must be writable before a long run starts: its directory
 * writable, and the file itself if it exists. Prints "cannot write WHAT 'PATH': REASON" and
 * returns false otherwise. Nothing is created.
 */
bool mt_cli_check_output(const struct mt_cli *cli, const char *what, const char *path);

/*
 * One line on stderr with the streamed experts' counters (reads, GB/s, cache hits, stall time),
 * when experts were streamed.
 */
void mt_cli_engine_report_stream(const struct mt_cli_engine *e);

/* Release what mt_cli_engine_init() built (a zeroed struct is fine). */
void mt_cli_engine_fini(struct mt_cli_engine *e);

#endif /* MT_CLI_COMMON_H */
