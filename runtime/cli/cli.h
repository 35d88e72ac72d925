/* SPDX-License-Identifier: MIT */
/*
 * cli.h - the moetier subcommands. Each takes the arguments after its name (argv[0] is the
 * subcommand) and returns the process exit status: 0 success, 1 failure, 2 usage error.
 */
#ifndef MT_CLI_H
#define MT_CLI_H

int mt_cli_tokenize(int argc, char **argv); /* runtime/cli_tokenize.c */
int mt_cli_run(int argc, char **argv);      /* runtime/cli_run.c */
int mt_cli_inspect(int argc, char **argv);  /* runtime/cli_inspect.c */
int mt_cli_synth(int argc, char **argv);    /* runtime/cli_synth.c */
int mt_cli_plan(int argc, char **argv);     /* runtime/cli_plan.c */
int mt_cli_bench(int argc, char **argv);    /* runtime/cli_bench.c */
int mt_cli_chat(int argc, char **argv);     /* runtime/cli_chat.c */
int mt_cli_pack(int argc, char **argv);     /* runtime/cli/cli_pack.c */
int mt_cli_serve(int argc, char **argv);    /* runtime/cli/cli_serve.c */




#endif /* MT_CLI_H */
