/* SPDX-License-Identifier: MIT */
/*
 * embed.c - a program that embeds moetier through its installed public header and library
 * (tests/test_install.sh builds it with pkg-config against a `make install`): it generates
 * greedy tokens from a prompt of ids and prints them, as `moetier run --print-ids` does.
 *
 * Usage: embed MODEL_DIR N ID [ID ...]
 */
#include <moetier.h>

#include <stdio.h>
#include <stdlib.h>

static bool
print_id(void *ctx, int32_t id)
{
    int *n = ctx;

    printf((*n)++ > 0 ? " %d" : "%d", id);
    return true;
}

int
main(int argc, char **argv)
{
    struct mt_model *m = NULL;
    struct mt_engine *e = NULL;
    struct mt_session *s = NULL;
    struct mt_sampler_opts so;
    struct mt_gen_opts go;
    struct mt_gen_result r;
    int32_t prompt[256];
    int n_prompt = 0;
    int printed = 0;
    int rc = 1;

    if (argc < 4 || argc - 3 > 256) {
        fprintf(stderr, "usage: embed MODEL_DIR N ID [ID ...]\n");
        return 2;
    }
    for (int i = 3; i < argc; i++) {
        prompt[n_prompt++] = (int32_t)atoi(argv[i]);
    }
    mt_sampler_opts_default(&so);
    mt_gen_opts_default(&go);
    go.max_new = atol(argv[2]);
    if (mt_model_open(argv[1], &m) == MT_OK && mt_engine_create(m, NULL, &e) == MT_OK &&
        mt_session_create(e, &so, &s) == MT_OK &&
        mt_session_generate(s, prompt, (size_t)n_prompt, &go, print_id, &printed, &r) == MT_OK) {
        printf("\n");
        rc = 0;
    } else {
        fprintf(stderr, "embed: %s\n", mt_last_error());
    }
    mt_session_destroy(s);
    mt_engine_destroy(e);
    mt_model_destroy(m);
    return rc;
}
