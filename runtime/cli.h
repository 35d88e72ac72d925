/* SPDX-License-Identifier: MIT */
/*
 * cli.h - the moetier subcommands. Each takes the arguments after its name (argv[0] is the
 * subcommand) and returns the process exit status: 0 success, 1 failure, 2 usage error.
 */
#ifndef MT_CLI_H
#define MT_CLI_H




#endif /* MT_CLI_H */
