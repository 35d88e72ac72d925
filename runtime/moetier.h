/* SPDX-License-Identifier: MIT */
/*
 * moetier.h - the public API of moetier, for programs that embed it (link with
 * `pkg-config --cflags --libs moetier`).
 *
 * The one idea: a program opens a checkpoint (mt_model_open), builds an engine over it
 * (mt_engine_create: where each routed expert lives is a plan's business, see engine.h), and
 * generates through a session (mt_session_generate), which reuses the cached prefix of whatever
 * it generated before. Text goes in and out through the tokenizer and the chat encoder. Every
 * function returns an mt_status_t; mt_last_error() holds the message of the last failure.
 *
 *     struct mt_model *m;
 *     struct mt_engine *e;
 *     struct mt_session *s;
 *     struct mt_sampler_opts so;
 *     struct mt_gen_result r;
 *     int32_t prompt[] = {0, 5, 17};
 *
 *     mt_sampler_opts_default(&so);
 *     if (mt_model_open(dir, &m) != MT_OK || mt_engine_create(m, NULL, &e) != MT_OK ||
 *         mt_session_create(e, &so, &s) != MT_OK ||
 *         mt_session_generate(s, prompt, 3, NULL, on_token, ctx, &r) != MT_OK) {
 *         fprintf(stderr, "%s\n", mt_last_error());
 *     }
 *     mt_session_destroy(s);
 *     mt_engine_destroy(e);
 *     mt_model_destroy(m);
 */
#ifndef MOETIER_H
#define MOETIER_H

#include "runtime/base/dtype.h"
#include "runtime/base/status.h"
#include "runtime/engine/engine.h"
#include "runtime/engine/executor.h"
#include "runtime/engine/expert_provider.h"
#include "runtime/engine/session.h"
#include "runtime/model/model.h"
#include "runtime/plan/planner.h"
#include "runtime/text/chat.h"
#include "runtime/text/sampler.h"
#include "runtime/text/tokenizer.h"

#endif /* MOETIER_H */
