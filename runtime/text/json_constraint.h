/* SPDX-License-Identifier: MIT */
/*
 * json_constraint.h - make a model's reply a JSON object, token by token (the serve API's
 * response_format {"type": "json_object"}).
 *
 * The one idea: before each sample, every token whose bytes would take the reply off the JSON
 * grammar (json_prefix.h) gets the logit -inf, so the sampler can only pick one that keeps the
 * reply the start of a JSON object; once the object is closed, only the stop ids are left, so
 * the reply ends there. A reply that ends by a stop id is therefore one whole JSON object; one
 * cut by max_tokens is the start of one. The model still chooses among what the grammar allows:
 * it writes better JSON when the prompt asks for it.
 *
 * With a schema (json_schema.h) the grammar is the schema's instead: the reply is held to an
 * instance of it.
 *
 * Trying every token's bytes at every step costs one pass over the vocabulary's text (about
 * 129,280 tokens); the 256 possible first bytes are tried first, and a token whose first byte
 * cannot follow is out without a copy of the state; inside a string, where most tokens are
 * plain text, a flag computed once per token answers without reading its bytes. Added tokens
 * (the chat template's markers) are never allowed: their ids do not stand for their text.
 *
 * In thinking mode the reasoning comes first and is free: the constraint starts inactive (only
 * the stop ids are taken out, so the reply cannot end before its answer) and
 * mt_json_constraint_begin() starts the grammar where the answer begins.
 */
#ifndef MT_JSON_CONSTRAINT_H
#define MT_JSON_CONSTRAINT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "runtime/base/status.h"
#include "runtime/text/json_prefix.h"

struct mt_tokenizer;
struct mt_json_schema;

struct mt_json_constraint;

/*
 * A constraint for logits of vocab entries (the model's vocabulary; ids the tokenizer has no
 * token for are never allowed), over tok (borrowed, must outlive it). stop_ids[0..n_stop) (copied)
 * may end the reply once the object is whole. MT_ERR_NOMEM, MT_ERR_INVAL for vocab < 1.
 */
mt_status_t mt_json_constraint_create(const struct mt_tokenizer *tok, int vocab,
                                      const int32_t *stop_ids, int n_stop,
                                      struct mt_json_constraint **out);
void mt_json_constraint_destroy(struct mt_json_constraint *c);

/*
 * Start a reply: the grammar from its start when active, else after mt_json_constraint_begin;
 * held to schema (borrowed; must outlive the reply) or, when NULL, to any JSON object.
 */
void mt_json_constraint_reset(struct mt_json_constraint *c, bool active,
                              const struct mt_json_schema *schema);

/* The answer begins here (thinking mode: the reasoning ended). */
void mt_json_constraint_begin(struct mt_json_constraint *c);

/*
 * Set logits[id] = -INFINITY for every id that may not come next; returns how many ids are left
 * (0 only when the vocabulary cannot spell what the grammar needs, which a byte-level vocabulary
 * always can).
 */
size_t mt_json_constraint_mask(struct mt_json_constraint *c, float *logits);

/* The id sampled (one mask left). A stop id ends nothing here: the caller stops. */
void mt_json_constraint_accept(struct mt_json_constraint *c, int32_t id);

/* The answer so far is one whole JSON object. */
bool mt_json_constraint_complete(const struct mt_json_constraint *c);

#endif /* MT_JSON_CONSTRAINT_H */
