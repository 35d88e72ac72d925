/* SPDX-License-Identifier: MIT */
/*
 * trace.h - expert-activation traces: which routed experts the router chose, per layer, and which
 * experts follow which from one MoE layer to the next.
 *
 * `moetier run --trace FILE` records one trace; `moetier plan --trace FILE` turns it into the
 * activation probability of every expert (count / tokens seen at that layer; uniform k/E without a
 * trace), and a later prefetcher can use the transitions (layer l-1 chose a => layer l chose b).
 *
 * The one idea: the trace is keyed by *token slot*, not by time. Each slot remembers the last layer
 * it recorded and the ids chosen there; a record at a later layer adds the k x k transition pairs
 * (previous ids -> these ids), a record at the same or an earlier layer starts a new token in that
 * slot. Decode uses slot 0 (mt_trace_record); a prefill batch of T tokens records slots 0..T-1 at
 * once (mt_trace_record_batch), in layer-major order, and transitions still pair each token with
 * itself.
 *
 * Memory: counts are n_layers x n_experts; the transition matrix of a layer (n_experts^2 uint32,
 * 256 KiB for 256 experts) is allocated on that layer's first transition, so at most
 * 61 x 256 x 256 x 4 B = 16 MB for V3.2. The file stores only non-zero transitions.
 *
 * File (JSON, MT_TRACE_VERSION):
 *   {
 *     "format": "moetier-trace", "version": 1,
 *     "n_layers": 61, "n_experts": 256, "k": 8,
 *     "tokens": 1234,
 *     "layers": [
 *       { "layer": 3, "tokens": 1234,
 *         "counts": [c_0, ..., c_255],
 *         "from_layer": 2,
 *         "transitions": [a, b, n, a, b, n, ...] }
 *     ]
 *   }
 * - n_layers, n_experts, k: the model's dims (1..4096 layers, 1..65536 experts, 1 <= k <=
 *   n_experts); a trace is refused for a model with other dims.
 * - tokens: the max over layers of the tokens recorded at that layer.
 * - layers: only layers with at least one record, each once, at most 2^40 tokens; counts[e]:
 *   times expert e was chosen there, at most tokens (they sum to tokens x k).
 * - from_layer, transitions (optional): flat triples (a, b, n), n > 0: n times expert a at
 *   from_layer was followed by expert b at this layer (n < 2^32). Only non-zero pairs are
 *   stored; layer 0 has none.
 *
 * Thread-safety: a trace is not locked; the engine records from one thread (its owner).
 */
#ifndef MT_TRACE_H
#define MT_TRACE_H

#include <stdbool.h>
#include <stdint.h>

#include "runtime/base/status.h"

#define MT_TRACE_VERSION 1

struct mt_trace;

/* ---- lifecycle ---------------------------------------------------------------------------- */

/*
 * An empty trace for a model of n_layers layers (all main layers: dense ones simply never record),
 * n_experts routed experts per layer and k experts chosen per token. MT_ERR_INVAL on
 * non-positive dims, k > n_experts, n_layers > 4096 or n_experts > 65536; MT_ERR_NOMEM.
 */
mt_status_t mt_trace_create(int n_layers, int n_experts, int k, struct mt_trace **trace_out);

/* Free a trace; NULL is a no-op. */
void mt_trace_destroy(struct mt_trace *trace);

/* ---- recording ---------------------------------------------------------------------------- */

/*
 * One token (slot 0) chose expert_ids[0..k-1] at `layer`. k must equal the trace's k; ids must be
 * in [0, n_experts). MT_ERR_INVAL (nothing recorded) otherwise; MT_ERR_NOMEM when the first
 * transition matrix of a layer cannot be allocated.
 */
mt_status_t mt_trace_record(struct mt_trace *trace, int layer, const int *expert_ids, int k);

/*
 * n_tokens tokens of one batch chose expert_ids[t * k + j] at `layer`; token t uses slot t.
 * Same checks as mt_trace_record.
 */
mt_status_t mt_trace_record_batch(struct mt_trace *trace, int layer, const int *expert_ids,
                                  int n_tokens, int k);

/* ---- files -------------------------------------------------------------------------------- */

/* Write the trace as JSON (format above). MT_ERR_IO naming the path. */
mt_status_t mt_trace_save(const struct mt_trace *trace, const char *path);

/*
 * Read a trace file. MT_ERR_IO when it cannot be opened or read; MT_ERR_FORMAT when it is not
 * JSON, is not a moetier trace, has another version, or has inconsistent fields (each named in
 * the message).
 */
mt_status_t mt_trace_load(const char *path, struct mt_trace **trace_out);

/*
 * Check that a trace was recorded on a model with these dims. MT_ERR_FORMAT naming both values
 * when not; `what` names the trace in the message (e.g. its path).
 */
mt_status_t mt_trace_check_dims(const struct mt_trace *trace, const char *what, int n_layers,
                                int n_experts, int k);

/*
 * Add src's counts and transitions to dst: the trace of both runs together (`plan --trace A
 * --trace B`). MT_ERR_FORMAT (naming `what`, src's name) when the dims differ; MT_ERR_NOMEM.
 */
mt_status_t mt_trace_merge(struct mt_trace *dst, const struct mt_trace *src, const char *what);
/* ---- queries ------------------------------------------------------------------------------ */

int mt_trace_n_layers(const struct mt_trace *trace);
int mt_trace_n_experts(const struct mt_trace *trace);
int mt_trace_k(const struct mt_trace *trace);

/* Tokens recorded: at one layer, and the max over layers. 0 for a layer out of range. */
uint64_t mt_trace_layer_tokens(const struct mt_trace *trace, int layer);
uint64_t mt_trace_tokens(const struct mt_trace *trace);

/* Times `expert` was chosen at `layer` (0 out of range). */
uint64_t mt_trace_count(const struct mt_trace *trace, int layer, int expert);

/*
 * Times expert `from` at the layer before `layer` (the slot's previous recorded layer) was followed
 * by expert `to` at `layer`. 0 out of range or when none.
 */
uint64_t mt_trace_transition(const struct mt_trace *trace, int layer, int from, int to);

/* The previous layer whose choices the transitions into `layer` come from; -1 when none. */
int mt_trace_from_layer(const struct mt_trace *trace, int layer);

/*
 * Probability that a token uses `expert` at `layer`: count / layer tokens, so the probabilities
 * of a layer sum to k. A layer with no tokens gets uniform k / n_experts.
 */
double mt_trace_probability(const struct mt_trace *trace, int layer, int expert);

#endif /* MT_TRACE_H */
