/* SPDX-License-Identifier: MIT */
/*
 * main.c - the moetier command: dispatch to a subcommand (runtime/cli/cli_*.c).
 *
 * The one idea: a command whose output was cut short has failed, whatever it returned. stdout is
 * buffered, so a full disk or a closed pipe often shows only when the buffer is flushed at exit;
 * main therefore flushes and closes stdout itself after every command and turns a failure there
 * into one message and exit status 1 (commands that stream, run, chat and tokenize, also check
 * as they go).
 */
#include <config.h>

#include "runtime/cli/cli.h"
#include "runtime/base/status.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

struct subcommand {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *summary;
};

static const struct subcommand subcommands[] = {
    /* one line per subcommand, in the order --help lists them */
    {"inspect", mt_cli_inspect, "architecture, sizes and bytes per token of a checkpoint"},
    {"tokenize", mt_cli_tokenize, "text to token ids and back (tokenizer.json)"},
    {"synth", mt_cli_synth, "write a random test checkpoint in the HF layout"},
    {"run", mt_cli_run, "generate from a prompt (CPU or GPU engine)"},
    {"chat", mt_cli_chat, "interactive multi-turn chat (CPU or GPU engine)"},
    {"serve", mt_cli_serve, "OpenAI-compatible HTTP server and chat page on localhost"},
    {"bench", mt_cli_bench, "measure the memory tiers (GPU, PCIe, DRAM, CPU, disks)"},
    {"plan", mt_cli_plan, "place experts on GPU, DRAM and NVMe; predict tok/s"},
    {"pack", mt_cli_pack, "copy routed experts into a striped expert store (optional)"},
    {NULL, NULL, NULL},
};

static void
usage(FILE *f)
{
    fprintf(f, "usage: moetier <command> [options]\n"
               "       moetier <command> --help    (or moetier help <command>)\n"
               "       moetier --version\n\n"
               "DeepSeek-V3.2 on one workstation: GPU attention, experts placed across GPU, DRAM\n"
               "and NVMe.\n\n"
               "commands:\n");
    for (size_t i = 0; subcommands[i].name != NULL; i++) {
        fprintf(f, "  %-10s %s\n", subcommands[i].name, subcommands[i].summary);
    }
}

/*
 * Flush and close stdout; when that or any earlier write to it failed, say so and return 1, else
 * rc. A command that already failed (rc != 0) has said why, so its status stands unremarked.
 */
static int
close_stdout(const char *cmd, int rc)
{
    int err = 0;
    bool failed;

    errno = 0;
    failed = fflush(stdout) != 0;
    err = errno;
    failed = ferror(stdout) || failed;
    errno = 0;
    if (fclose(stdout) != 0) {
        failed = true;
        err = err != 0 ? err : errno;
    }
    if (failed && rc == 0) {
        fprintf(stderr, "moetier%s%s: cannot write to stdout: %s (output is incomplete)\n",
                cmd != NULL ? " " : "", cmd != NULL ? cmd : "",
                err != 0 ? strerror(err) : "write error");
        return 1;
    }
    return rc;
}

static int
run_command(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "help") == 0 && argc >= 3) { /* help COMMAND: COMMAND --help */
        for (size_t i = 0; subcommands[i].name != NULL; i++) {
            if (strcmp(argv[2], subcommands[i].name) == 0) {
                char *args[] = {argv[2], "--help", NULL};
                return subcommands[i].fn(2, args);
            }
        }
        mt_log_line("moetier: no command '%s' to help with (see moetier --help)", argv[2]);
        return 2;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "-V") == 0) {
#ifdef MT_HAVE_CUDA
        printf("moetier %s (CUDA kernels built)\n", PACKAGE_VERSION);
#else
        printf("moetier %s (built without CUDA)\n", PACKAGE_VERSION);
#endif
        return 0;
    }
    for (size_t i = 0; subcommands[i].name != NULL; i++) {
        if (strcmp(argv[1], subcommands[i].name) == 0) {
            return subcommands[i].fn(argc - 1, argv + 1);
        }
    }
    mt_log_line("moetier: unknown command '%s' (see moetier --help)", argv[1]);
    return 2;
}

int
main(int argc, char **argv)
{
    const char *cmd = NULL;

    /* A standard stream started closed (`<&-`) would be the next file opened: chat would read
     * a weight file as its input, a message could land in an output. /dev/null holds its place:
     * a closed stdin reads as empty, a closed stderr drops the messages; a closed stdout would
     * drop the command's output unseen, so that is refused. */
    bool out_closed = false;
    for (int fd = 0; fd <= 2; fd++) {
        if (fcntl(fd, F_GETFD) < 0 && errno == EBADF) {
            out_closed = out_closed || fd == 1;
            if (open("/dev/null", fd == 0 ? O_RDONLY : O_WRONLY) != fd) {
                return 1;
            }
        }
    }
    if (out_closed) {
        fprintf(stderr, "moetier: stdout is closed (>&-), so the output would be lost; send it to "
                "/dev/null to discard it\n");
        return 1;
    }

    for (size_t i = 0; argc >= 2 && subcommands[i].name != NULL; i++) {
        if (strcmp(argv[1], subcommands[i].name) == 0) {
            cmd = subcommands[i].name;
        }
    }
    return close_stdout(cmd, run_command(argc, argv));
}
