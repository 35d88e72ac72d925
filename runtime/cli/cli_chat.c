/* SPDX-License-Identifier: MIT */
/*
 * cli_chat.c - `moetier chat`: an interactive, multi-turn conversation with the model (the CPU or
 * the GPU engine, as --device decides).
 *
 * The one idea: the conversation is kept as messages (text), and every turn re-encodes the whole
 * of it with mt_chat_encode(), the model's own prompt format; the KV cache is then reused for the
 * longest prefix it shares with that encoding. The generation session (engine/session.h) does
 * that: it feeds only the new suffix when the cache is a prefix of the new prompt (chat mode, when
 * the reply re-tokenizes to the ids that were generated), and otherwise cuts the cache back to
 * the shared prefix before feeding the rest. The second case is normal in thinking mode: the
 * encoding drops earlier turns' reasoning and turns their <think> into </think> (see chat.h).
 * Either way the model sees exactly the canonical prompt.
 *
 * Input is one line per user message; lines starting with '/' are commands (/help). The prompt
 * "> ", the banner and command feedback go to stderr, and only when stdin is a terminal; stdout
 * carries the replies alone (streamed token by token through the tokenizer's streaming decoder,
 * one reply per turn, ended by a newline), so piping lines in gives a scriptable transcript.
 * In thinking mode the reasoning is printed first, dimmed on a terminal or between "<think>" and
 * "</think>" otherwise, then the answer. Both go into the history, and the encoder drops the
 * reasoning of earlier turns, as the format says. Ids the tokenizer does not know (padding rows
 * of the embedding) print as "<id>" and are left out of the history. Messages keep their lengths:
 * a NUL byte in a reply (or a line) stays in the history, so the next prompt holds it whole.
 *
 * Ctrl-C (SIGINT) during a reply stops it after the token being computed: the reply so far is
 * printed, ended by a newline, and kept in the conversation as the assistant's message (as a
 * reply cut by -n is), so the next turn's prompt holds it and the session reuses its cache. At
 * the prompt, Ctrl-C drops the line being typed; a second Ctrl-C in a row (or Ctrl-D) leaves.
 * When stdin is not a terminal, Ctrl-C while waiting for input leaves at once. For tests,
 * MT_CHAT_SIGINT_AFTER=N sends the process a SIGINT after the N-th token of the first reply,
 * and MT_CHAT_COLD=1 runs every turn's whole prompt (no cache reuse), the reference that a run
 * with reuse must match token for token.
 *
 * Exit status: 0 at end of input (Ctrl-D, /quit or /exit, Ctrl-C at the prompt), 1 when the
 * model cannot be loaded or any turn failed (too long a conversation, an engine error) or stdin
 * could not be read, 2 usage error.
 */
#include <config.h>

#include "runtime/cli/cli.h"
#include "runtime/cli/cli_common.h"
#include "runtime/cli/cli_report.h"
#include "runtime/engine/session.h"

#include "runtime/text/chat.h"
#include "runtime/engine/engine.h"
#include "runtime/model/model.h"
#include "runtime/text/sampler.h"
#include "runtime/base/status.h"
#include "runtime/text/tokenizer.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#define CHAT_DIM "\033[2m"
#define CHAT_RESET "\033[0m"

static void
chat_usage(FILE *f)
{
    fprintf(f,
            "usage: moetier chat -m DIR [options]\n\n"
            "Talk with the model, one line per message (CPU or GPU engine); the KV\n"
            "cache is kept across turns. Commands: /help, /reset (forget the\n"
            "conversation), /quit or /exit; Ctrl-D (end of input) leaves, Ctrl-C stops\n"
            "a reply. A line that starts with // is a message, sent less one slash.\n\n"
            "  -m, --model DIR          checkpoint directory (config.json, safetensors,\n"
            "                           tokenizer.json)\n"
            "      --kv-dtype f32|bf16|fp8  latent cache dtype (default f32 on cpu, bf16 on\n"
            "                           gpu; fp8: DeepSeek's 656-byte layout, for long contexts)\n"
            "      --ctx N              positions the conversation may reach, which the KV\n"
            "                           cache and the placement are sized for (default 8192)\n"
            "      --debug-sync         gpu: synchronize after every kernel (MT_DEBUG_SYNC=1)\n"
            "      --think              thinking mode: the model reasons first (dimmed)\n"
            "      --system TEXT        system prompt, kept across /reset\n"
            "  -n N                     most tokens per reply (default 512)\n"
            "      --temperature T      0 = greedy (default 1, DeepSeek's recommendation)\n"
            "      --top-p P            nucleus sampling mass in (0, 1] (default 0.95)\n"
            "      --top-k K            keep the K most likely tokens (default 0 = all)\n"
            "      --seed S             sampling seed (default 0)\n"
            "      --threads N          threads of the OpenMP ops and of the routed-expert\n"
            "                           team (default: OMP_NUM_THREADS or all CPUs for\n"
            "                           OpenMP, one a physical core for the team)\n"
            "      --experts KIND       who computes routed experts: team (SIMD kernels on\n"
            "                           pinned threads, default) or ref (fp32 reference)\n"
            "  -v, --verbose            per-turn prefill and decode tok/s on stderr; the\n"
            "                           device, the plan in one screen at start\n"
            "  -h, --help               this text\n");
    mt_cli_placement_usage(f);
    fprintf(f,
            "stdout carries only the replies; the prompt \"> \" and messages go to\n"
            "stderr. Exit status: 0, or 1 when a turn failed.\n");
}

static const struct mt_cli cli = {"chat", chat_usage};

static void
chat_help(void)
{
    fprintf(stderr, "commands:\n"
                    "  /help    this list\n"
                    "  /reset   forget the conversation and the KV cache (the system prompt "
                    "stays)\n"
                    "  /quit    leave (so do /exit and Ctrl-D, end of input)\n"
                    "any other line is a message to the model; one that starts with // is sent\n"
                    "less one slash (//usr/bin/env: ... sends /usr/bin/env: ...); Ctrl-C stops\n"
                    "a reply\n");
}

static volatile sig_atomic_t interrupted;
static long sigint_after = -1; /* MT_CHAT_SIGINT_AFTER: raise SIGINT after this many tokens */

static void
on_sigint(int sig)
{
    (void)sig;
    interrupted = 1;
}

/* A growing array of token ids. */
struct idvec {
    int32_t *v;
    size_t n;
    size_t cap;
};

static mt_status_t
idvec_push(struct idvec *a, const int32_t *ids, size_t n)
{
    if (a->n + n > a->cap) {
        size_t cap = a->cap ? a->cap : 256;
        while (cap < a->n + n) {
            cap *= 2;
        }
        int32_t *nv = realloc(a->v, cap * sizeof(*nv));
        if (nv == NULL) {
            return mt_fail(MT_ERR_NOMEM, 0, "cannot grow a token list to %zu ids", cap);
        }
        a->v = nv;
        a->cap = cap;
    }
    memcpy(a->v + a->n, ids, n * sizeof(*ids));
    a->n += n;
    return MT_OK;
}

struct chat {
    struct mt_cli_engine eng; /* owned: the model, its engine and the session */
    struct mt_tokenizer *tok; /* owned */
    struct mt_chat_msg *msgs; /* owned, with every content/reasoning string */
    size_t n_msgs;
    size_t cap_msgs;
    size_t n_fixed;     /* leading messages /reset keeps (the system prompt) */
    bool thinking;
    bool tty_out; /* stdout is a terminal: drop control characters from the model's text (C0, C1) */
    bool color;   /* ... and NO_COLOR is not set: dim the reasoning */
    bool verbose; /* per-turn speeds on stderr */
    bool gpu;     /* --device gpu (the report's busy fractions) */
    bool cold;    /* MT_CHAT_COLD: no cache reuse across turns (tests) */
    long max_new;
    int32_t eos;       /* config.json's eos_token_id */
    int32_t eos_tok;   /* the tokenizer's, usually the same; -1 if none */
    int32_t think_end; /* id of "</think>" or -1 */
    int turn;
    int out_errno; /* why writing stdout first failed (flush_out), 0 while it has not */
};

/* fflush(stdout), keeping the first failure's errno: the report at the end of the chat comes
 * when stdio no longer knows why (ferror only says that a write failed). */
static void
flush_out(struct chat *c)
{
    if (fflush(stdout) != 0 && c->out_errno == 0) {
        c->out_errno = errno != 0 ? errno : EIO;
    }
}

static void
msg_free(struct mt_chat_msg *m)
{
    free((char *)m->content);
    free((char *)m->reasoning);
}

/* Append a message with copies of content and reasoning (either may be NULL). */
static mt_status_t
chat_add(struct chat *c, enum mt_chat_role role, const char *content, size_t content_len,
         const char *reasoning, size_t reasoning_len)
{
    struct mt_chat_msg m = {.role = role};
    char *ct = NULL;
    char *rs = NULL;

    if (c->n_msgs == c->cap_msgs) {
        size_t cap = c->cap_msgs ? 2 * c->cap_msgs : 16;
        struct mt_chat_msg *nm = realloc(c->msgs, cap * sizeof(*nm));
        if (nm == NULL) {
            return mt_fail(MT_ERR_NOMEM, 0, "cannot grow the conversation to %zu messages", cap);
        }
        c->msgs = nm;
        c->cap_msgs = cap;
    }
    ct = malloc(content_len + 1);
    if (ct == NULL) {
        return mt_fail(MT_ERR_NOMEM, 0, "cannot copy a message of %zu bytes", content_len);
    }
    memcpy(ct, content != NULL ? content : "", content_len);
    ct[content_len] = '\0';
    if (reasoning != NULL) {
        rs = malloc(reasoning_len + 1);
        if (rs == NULL) {
            free(ct);
            return mt_fail(MT_ERR_NOMEM, 0, "cannot copy a reasoning of %zu bytes", reasoning_len);
        }
        memcpy(rs, reasoning, reasoning_len);
        rs[reasoning_len] = '\0';
    }
    m.content = ct;
    m.content_len = content_len; /* a reply may hold a NUL byte: the prompt keeps all of it */
    m.reasoning = rs;
    m.reasoning_len = reasoning_len;
    c->msgs[c->n_msgs++] = m;
    return MT_OK;
}

static void
chat_drop_last(struct chat *c)
{
    msg_free(&c->msgs[--c->n_msgs]);
}

/* /reset: forget the conversation (but the system prompt) and the engine's sequence. */
static void
chat_reset(struct chat *c)
{
    while (c->n_msgs > c->n_fixed) {
        chat_drop_last(c);
    }
    mt_session_reset(c->eng.session);
}

/* Write generated text to stdout: on a terminal without its control characters (C0 and C1). */
static void
put_text(const struct chat *c, const char *text, size_t len)
{
    mt_cli_write_model_text(stdout, text, len, c->tty_out);
}

/*
 * Print what the streaming decoder gives for one generated id ("<id>" for a padding row). Fails
 * only without memory for the decoder's buffer.
 */
static mt_status_t
print_token(struct chat *c, struct mt_detok *d, int32_t id)
{
    const char *text;
    size_t len;
    size_t tl;
    mt_status_t st;

    if (mt_tokenizer_token_bytes(c->tok, id, &tl) == NULL) {
        printf("<%d>", id);
        return MT_OK;
    }
    if ((st = mt_detok_push(d, id, &text, &len)) == MT_OK) {
        put_text(c, text, len);
    }
    return st;
}

static mt_status_t
flush_detok(struct chat *c, struct mt_detok *d)
{
    const char *text;
    size_t len;
    mt_status_t st;

    if ((st = mt_detok_flush(d, &text, &len)) == MT_OK) {
        put_text(c, text, len);
    }
    return st;
}

/* The text of ids that are tokens (padding rows the model may sample have none): malloc'ed. */
static mt_status_t
decode_valid(struct chat *c, const int32_t *ids, size_t n, char **text_out, size_t *len_out)
{
    int32_t *keep = malloc((n ? n : 1) * sizeof(*keep));
    size_t k = 0;
    size_t tl;
    mt_status_t st;

    if (keep == NULL) {
        return mt_fail(MT_ERR_NOMEM, 0, "cannot decode a reply of %zu tokens", n);
    }
    for (size_t i = 0; i < n; i++) {
        if (mt_tokenizer_token_bytes(c->tok, ids[i], &tl) != NULL) {
            keep[k++] = ids[i];
        }
    }
    st = mt_tokenizer_decode(c->tok, keep, k, text_out, len_out);
    free(keep);
    return st;
}

/* What the session's token callback needs to stream a reply and split its reasoning off. */
struct reply {
    struct chat *c;
    struct mt_detok detok;
    struct idvec gen;       /* generated ids (a stop id is not among them) */
    size_t n_reasoning;     /* gen.v[0..n_reasoning) is reasoning (thinking mode) */
    size_t answer_at;       /* gen.v[answer_at..) is the answer (after </think>) */
    bool in_reasoning;
    mt_status_t st;         /* a failure inside the callback */
    struct mt_cli_report *report; /* --verbose: told where prefill ends; NULL otherwise */
};

/* Stream one generated id; false stops the reply (Ctrl-C, or no memory to keep it). */
static bool
reply_token(void *ctx, int32_t next)
{
    struct reply *r = ctx;
    struct chat *c = r->c;

    if (r->gen.n == 0 && r->report != NULL) {
        mt_cli_report_prefill_done(r->report);
    }
    if (r->in_reasoning && next == c->think_end) {
        r->in_reasoning = false;
        r->n_reasoning = r->gen.n;
        r->answer_at = r->gen.n + 1;
        r->st = flush_detok(c, &r->detok);
        fputs(c->color ? CHAT_RESET "\n" : "</think>\n", stdout);
    } else {
        r->st = print_token(c, &r->detok, next);
    }
    flush_out(c);
    if (r->st == MT_OK) {
        r->st = idvec_push(&r->gen, &next, 1);
    }
    if (sigint_after >= 0 && (long)r->gen.n == sigint_after) {
        sigint_after = -1; /* the test hook: a real signal, through the real handler */
        raise(SIGINT);
    }
    return r->st == MT_OK && !interrupted;
}

/*
 * One turn: add the user's line, encode the conversation, generate the reply through the session
 * (which reuses the cached prefix), and add the reply to the conversation. On failure the
 * conversation is as before the turn.
 */
static mt_status_t
chat_turn(struct chat *c, const char *line, size_t line_len)
{
    int32_t *ids = NULL;
    size_t n_ids = 0;
    struct mt_cli_report report;
    struct reply r = {.c = c, .in_reasoning = c->thinking, .report = c->verbose ? &report : NULL};
    int32_t stop_ids[2] = {c->eos, c->eos_tok};
    struct mt_gen_opts go;
    struct mt_gen_result res;
    char *answer = NULL;
    char *reasoning = NULL;
    size_t answer_len = 0;
    size_t reasoning_len = 0;
    int64_t max_pos = mt_engine_max_pos(c->eng.engine);
    mt_status_t st;

    st = chat_add(c, MT_CHAT_USER, line, line_len, NULL, 0);
    if (st != MT_OK) {
        return st;
    }
    st = mt_chat_encode(c->tok, c->msgs, c->n_msgs, c->thinking, &ids, &n_ids);
    if (st != MT_OK) {
        goto out_drop_user;
    }
    if ((int64_t)n_ids >= max_pos) {
        /* the limit is --ctx where it is below the model's positions: say which, and that
           --ctx can be raised, not that the model itself holds so few */
        int64_t model_max = c->eng.model->cfg.max_position_embeddings;
        bool by_ctx = max_pos < model_max;
        char limit[128];

        if (by_ctx) {
            snprintf(limit, sizeof(limit), "--ctx's %lld positions (the model's are %lld)",
                     (long long)max_pos, (long long)model_max);
        } else {
            snprintf(limit, sizeof(limit), "the model's %lld positions", (long long)max_pos);
        }
        if (c->n_msgs == c->n_fixed + 1) {
            st = mt_fail(MT_ERR_INVAL, 0,
                         "the message is %zu tokens in the prompt format, and %s must also hold "
                         "the reply; send a shorter one%s",
                         n_ids, limit, by_ctx ? " or raise --ctx" : "");
        } else {
            st = mt_fail(MT_ERR_INVAL, 0,
                         "the conversation is %zu tokens with this message, and %s must also "
                         "hold the reply; /reset starts a new one%s",
                         n_ids, limit, by_ctx ? " (or raise --ctx)" : "");
        }
        goto out_free_ids;
    }
    interrupted = 0;
    mt_detok_init(&r.detok, c->tok);
    if (c->thinking) {
        fputs(c->color ? CHAT_DIM : "<think>", stdout);
    }
    mt_gen_opts_default(&go);
    go.max_new = c->max_new;
    go.stop_ids = stop_ids;
    go.n_stop_ids = c->eos_tok >= 0 ? 2 : 1;
    if (c->verbose) {
        mt_cli_report_begin(&report, &c->eng, NULL, c->gpu);
    }
    if (c->cold) {
        mt_session_reset(c->eng.session);
    }
    st = mt_session_generate(c->eng.session, ids, n_ids, &go, reply_token, &r, &res);
    if (st == MT_OK) {
        st = r.st;
    }
    if (st == MT_OK) {
        st = flush_detok(c, &r.detok);
    }
    mt_detok_fini(&r.detok);
    if (r.in_reasoning) {
        r.n_reasoning = r.gen.n;
        r.answer_at = r.gen.n;
        fputs(c->color ? CHAT_RESET : "</think>", stdout);
    }
    fputs("\n", stdout);
    flush_out(c);
    if (st != MT_OK) {
        mt_session_reset(c->eng.session);
        goto out_free_gen;
    }
    if (interrupted) {
        fprintf(stderr, "[stopped]\n");
    } else if (res.stop == MT_STOP_CONTEXT) {
        fprintf(stderr, "mt: the context is full (%lld tokens); /reset starts a new one\n",
                (long long)max_pos);
    } else if (res.stop == MT_STOP_LENGTH && c->thinking && r.in_reasoning) {
        fprintf(stderr, "mt: the reasoning used all %ld tokens of the reply (-n)\n", c->max_new);
    }
    interrupted = 0;

    st = decode_valid(c, r.gen.v + r.answer_at, r.gen.n - r.answer_at, &answer, &answer_len);
    if (st != MT_OK) {
        goto out_free_gen;
    }
    if (c->thinking) {
        st = decode_valid(c, r.gen.v, r.n_reasoning, &reasoning, &reasoning_len);
        if (st != MT_OK) {
            goto out_free_answer;
        }
    }
    st = chat_add(c, MT_CHAT_ASSISTANT, answer, answer_len, reasoning, reasoning_len);
    if (st != MT_OK) {
        goto out_free_reasoning;
    }
    c->turn++;
    if (c->verbose) {
        size_t fed = res.n_prompt - res.n_reused;
        fprintf(stderr,
                "mt: turn %d: %zu prompt tokens, %zu reused from the cache; prefill %zu tokens "
                "in %.3f s (%.2f tok/s); decode %ld tokens in %.3f s (%.2f tok/s)\n",
                c->turn, n_ids, res.n_reused, fed, res.prefill_s,
                mt_cli_tok_per_s((double)fed, res.prefill_s), res.n_decoded, res.decode_s,
                mt_cli_tok_per_s((double)res.n_decoded, res.decode_s));
        mt_cli_report_end(&report, &res);
        mt_cli_report_print_line(&report, stderr);
    }
    free(reasoning);
    free(answer);
    free(r.gen.v);
    free(ids);
    return MT_OK;

out_free_reasoning:
    free(reasoning);
out_free_answer:
    free(answer);
out_free_gen:
    free(r.gen.v);
out_free_ids:
    free(ids);
out_drop_user:
    chat_drop_last(c);
    return st;
}

/*
 * Read one line into *buf (without its newline), *len_out bytes: a NUL byte read is part of the
 * line. Returns false at end of input.
 */
static bool
read_line(bool interactive, char **buf, size_t *cap, size_t *len_out)
{
    bool cancelled = false; /* a Ctrl-C at this prompt already */

    for (;;) {
        if (interactive) {
            fputs("> ", stderr);
        }
        errno = 0;
        ssize_t len = getline(buf, cap, stdin);
        if (len < 0) {
            if (errno == EINTR && interactive && !cancelled) {
                /* Ctrl-C at the prompt drops the line, as a shell does; a second one leaves */
                clearerr(stdin);
                interrupted = 0;
                cancelled = true;
                fputs("\n(Ctrl-C again or Ctrl-D to leave)\n", stderr);
                continue;
            }
            if (errno == EINTR) {
                clearerr(stdin); /* leaving on Ctrl-C is not a read error */
            }
            return false;
        }
        while (len > 0 && ((*buf)[len - 1] == '\n' || (*buf)[len - 1] == '\r')) {
            (*buf)[--len] = '\0';
        }
        *len_out = (size_t)len;
        return true;
    }
}

static bool
is_blank(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (s[i] != ' ' && s[i] != '\t') {
            return false;
        }
    }
    return true;
}

/* Whether the line's first len bytes are the command name (a NUL byte in them never is). */
static bool
is_command(const char *line, size_t len, const char *name)
{
    return len == strlen(name) && memcmp(line, name, len) == 0;
}

enum {
    OPT_THINK = 256,
    OPT_SYSTEM,
};

/* Whether a --system of n tokens leaves room in a context of max_pos positions; else says so. */
static bool
system_fits(const struct mt_cli *cli, size_t n, int64_t max_pos)
{
    if ((int64_t)n < max_pos) {
        return true;
    }
    mt_cli_error(cli, "--system is %zu tokens in the prompt format, and the context holds %lld "
                 "positions, which must also hold the conversation; give a shorter one (or "
                 "raise --ctx)", n, (long long)max_pos);
    return false;
}

int
mt_cli_chat(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"model", required_argument, NULL, 'm'},
        {"think", no_argument, NULL, OPT_THINK},
        {"system", required_argument, NULL, OPT_SYSTEM},
        MT_CLI_ENGINE_LONGOPTS,
        {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct chat c = {.max_new = 512, .eos_tok = -1, .think_end = -1};
    const char *dir = NULL;
    const char *system = NULL;
    struct mt_cli_engine_flags ef;
    int opt;
    int rc;

    mt_cli_engine_flags_init(&ef);
    /* DeepSeek's recommendation for V3.2 (model card, "local deployment") */
    ef.sampler.temperature = 1.0f;
    ef.sampler.top_p = 0.95f;
    optind = 1;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":m:n:vh", longopts, NULL)) != -1) {
        switch (opt) {
        case 'm':
            dir = optarg;
            break;
        case 'n':
            if (!mt_cli_parse_long(&cli, "token count -n", optarg, 1, INT_MAX, &c.max_new)) {
                return 2;
            }
            break;
        case 'v':
            c.verbose = true;
            break;
        case 'h':
            chat_usage(stdout);
            return 0;
        case OPT_THINK:
            c.thinking = true;
            break;
        case OPT_SYSTEM:
            system = optarg;
            break;
        default:
            /* the shared flags (--temperature, --threads, ...) or a bad option */
            if ((rc = mt_cli_engine_flags_parse(&cli, opt, argv, &ef)) != 0) {
                return rc;
            }
            break;
        }
    }
    if (optind < argc) {
        return mt_cli_usage_error(&cli, "unexpected argument '%s' (messages come on stdin)",
                                  argv[optind]);
    }
    if (dir == NULL) {
        return mt_cli_usage_error(&cli, "need -m DIR");
    }

    bool interactive = isatty(STDIN_FILENO);
    c.tty_out = isatty(STDOUT_FILENO);
    c.color = c.tty_out && getenv("NO_COLOR") == NULL;
    bool failed = false;
    char *line = NULL;
    size_t line_cap = 0;
    size_t line_len = 0;
    struct sigaction old_sa;
    bool have_old_sa = false;

    if (interactive) {
        mt_log_line("loading %s ...", dir);
    }
    rc = 1;
    /* the tokenizer first: a missing or broken one fails before the weights load */
    if (mt_tokenizer_load(dir, &c.tok) != MT_OK) {
        char tpath[4096];
        snprintf(tpath, sizeof(tpath), "%s/tokenizer.json", dir);
        if (access(dir, F_OK) == 0 && access(tpath, F_OK) != 0) {
            mt_cli_error(&cli, "the model directory needs its tokenizer.json");
        }
        goto out;
    }
    mt_cli_warn_no_bos(c.tok, dir);
    /* --system against the model's positions before the weights load: a system prompt that
     * fills the context would fail every message, each blamed */
    size_t n_system = 0;
    if (system != NULL) {
        int32_t *ids = NULL;
        struct mt_model_config cfg;

        if (chat_add(&c, MT_CHAT_SYSTEM, system, strlen(system), NULL, 0) != MT_OK) {
            goto out;
        }
        c.n_fixed = 1;
        if (mt_chat_encode(c.tok, c.msgs, c.n_msgs, c.thinking, &ids, &n_system) != MT_OK) {
            goto out;
        }
        free(ids);
        if (mt_cli_peek_config(dir, &cfg) &&
            !system_fits(&cli, n_system, cfg.max_position_embeddings)) {
            goto out;
        }
    }
    ef.report = c.verbose || interactive;
    ef.verbose = c.verbose;
    if (mt_cli_engine_init(&c.eng, dir, &ef, false) != MT_OK) {
        goto out;
    }
    c.gpu = c.eng.device == MT_DEVICE_GPU; /* --device auto decides in the init */
    c.eos = c.eng.model->cfg.eos_token_id;
    c.eos_tok = mt_tokenizer_eos(c.tok);
    if (c.thinking) {
        c.think_end = mt_tokenizer_token_id(c.tok, "</think>");
        if (c.think_end < 0) {
            mt_log_warn("the tokenizer has no </think> token; the reasoning and the answer "
                        "will not be told apart");
        }
    }
    /* the context the engine holds (--ctx may be shorter than the model's) */
    if (system != NULL && !system_fits(&cli, n_system, mt_engine_max_pos(c.eng.engine))) {
        goto out;
    }
    {
        /* no SA_RESTART: Ctrl-C interrupts the read at the prompt */
        struct sigaction sa;
        const char *hook = getenv("MT_CHAT_SIGINT_AFTER");
        memset(&sa, 0, sizeof(sa));
        sa.sa_handler = on_sigint;
        sigemptyset(&sa.sa_mask);
        have_old_sa = sigaction(SIGINT, &sa, &old_sa) == 0;
        if (hook != NULL && hook[0] != '\0') {
            sigint_after = strtol(hook, NULL, 10);
        }
        c.cold = getenv("MT_CHAT_COLD") != NULL && strcmp(getenv("MT_CHAT_COLD"), "1") == 0;
    }
    if (interactive) {
        fprintf(stderr,
                "moetier chat: %s mode, up to %ld tokens a reply, context %lld tokens. "
                "/help for commands, Ctrl-D to leave.\n",
                c.thinking ? "thinking" : "chat", c.max_new,
                (long long)mt_engine_max_pos(c.eng.engine));
    }

    while (read_line(interactive, &line, &line_cap, &line_len)) {
        if (is_blank(line, line_len)) {
            continue;
        }
        /* "/x" is a command; "//x" is the message "/x" (a path, say), one slash removed */
        const char *msg = line;
        size_t msg_len = line_len;
        if (line[0] == '/' && (line_len < 2 || line[1] != '/')) {
            size_t n = line_len; /* the command without trailing blanks: "/quit " is /quit */
            while (n > 0 && (line[n - 1] == ' ' || line[n - 1] == '\t')) {
                n--;
            }
            if (is_command(line, n, "/quit") || is_command(line, n, "/exit")) {
                break;
            } else if (is_command(line, n, "/reset")) {
                chat_reset(&c);
                if (interactive) {
                    fprintf(stderr, "[conversation cleared]\n");
                }
            } else if (is_command(line, n, "/help")) {
                chat_help();
            } else {
                mt_cli_error(&cli, "unknown command '%.*s' (/help lists them; a line that starts "
                             "with // is sent as a message, less one slash)", (int)n, line);
            }
            continue;
        }
        if (line[0] == '/') {
            msg++, msg_len--;
        }
        if (chat_turn(&c, msg, msg_len) != MT_OK) {
            failed = true;
        }
        if (ferror(stdout)) {
            break; /* nobody can read the replies: reported below */
        }
    }
    if (ferror(stdin)) { /* a read error (stdin a directory: EISDIR) is not the end of input */
        mt_cli_error(&cli, "cannot read stdin: %s", strerror(errno));
        failed = true;
    }
    flush_out(&c);
    if (c.out_errno != 0) {
        mt_cli_error(&cli, "cannot write to stdout: %s", strerror(c.out_errno));
        failed = true;
    } else if (!mt_cli_flush_stdout(&cli)) {
        failed = true;
    }
    if (interactive) {
        fputs("\n", stderr);
    }
    rc = failed ? 1 : 0;

out:
    if (have_old_sa) {
        sigaction(SIGINT, &old_sa, NULL);
    }
    free(line);
    for (size_t i = 0; i < c.n_msgs; i++) {
        msg_free(&c.msgs[i]);
    }
    free(c.msgs);
    mt_tokenizer_destroy(c.tok);
    mt_cli_engine_fini(&c.eng);
    return rc;
}
