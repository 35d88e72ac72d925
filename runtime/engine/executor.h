/* SPDX-License-Identifier: MIT */
/*
 * executor.h - who computes a MoE layer's routed experts: the interface between the engine's MoE
 * step and the places experts can run (the CPU reference, a NUMA-pinned CPU team, the GPU).
 *
 * The one idea: a MoE step is router -> token groups per expert -> submit each group to the
 * executor of its expert's tier -> wait for all -> weighted sum. Submit may return before the
 * work is done, so a GPU stream, a CPU team and the disk work on one layer at the same time; the
 * engine only reads the outputs after wait(). Executors are small vtables (ggml's backend idea):
 * the reference executor is a few lines over mt_cpu_swiglu, and every other one is checked against
 * it by tests/test_executors.c (the cross-backend harness).
 */
#ifndef MT_EXECUTOR_H
#define MT_EXECUTOR_H

#include <stdint.h>

#include "runtime/base/status.h"

struct mt_expert_provider;

/*
 * One routed expert's work in one layer: the m tokens routed to it, gathered. x and y are host
 * fp32 rows of the model's hidden size; y receives the expert's SwiGLU output, before the router
 * weight is applied (the engine applies it, in a fixed order, so every executor gives the same
 * sum). x and y stay valid, and y untouched by the engine, until the executor's wait() returns.
 */
struct mt_expert_task {
    int layer;
    int expert;
    int m;          /* tokens, >= 1 */
    const float *x; // [m, hidden]
    float *y;       // [m, hidden]
};

struct mt_executor_ops {
    const char *name; /* "cpu-ref", "cpu-team", "gpu", ... for messages and reports */
    /*
     * Start tasks[0..n): the executor copies what it needs of the array itself (not of the
     * buffers it points to) before returning. It gets each expert's weights from the provider
     * it was made with. MT_ERR_* with a message naming the layer and expert on failure; after a
     * failed submit the engine still calls wait().
     */
    mt_status_t (*submit)(void *self, const struct mt_expert_task *tasks, int n);
    /* Block until every submitted task is done; returns the first failure among them. */
    mt_status_t (*wait)(void *self);
    void (*destroy)(void *self);
    /*
     * Optional (NULL: not known): the mt_clock_now() moment the tasks of the last wait() were
     * done, which can be earlier than wait() returned (the GPU engine weighs its slot copies
     * against it while its host thread is still launching: engine_gpu_moe.c).
     */
    double (*done_at)(void *self);
};

/* An executor: its operations and its state. Owned by whoever created it. */
struct mt_executor {
    const struct mt_executor_ops *ops;
    void *self;
};

/* Destroy ex (NULL-safe); frees the struct too. */
void mt_executor_destroy(struct mt_executor *ex);

/*
 * The reference executor: fp32 SwiGLU (cpu/ref_moe.c) on the weights the provider hands out,
 * computed inside submit() one task after another (wait() has nothing left to do). The oracle of
 * every other executor. provider is borrowed and must outlive the executor. MT_ERR_NOMEM.
 */
mt_status_t mt_executor_ref_create(struct mt_expert_provider *provider,
                                   struct mt_executor **ex_out);

#endif /* MT_EXECUTOR_H */
