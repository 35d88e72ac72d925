#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""What the vendors' libraries get on the GPU test machine, at the sizes of moetier's targets.

Issue 10 asks the one-token FP8 GEMV for >= 85% of the HBM read bandwidth at every matrix of
16 MB or more; issue 12 asks the CPU experts' prefill for >= 40% of the AMX BF16 rate. This
script measures what cuBLAS / cuBLASLt (through PyTorch) and oneDNN (PyTorch's CPU matmul, AMX
where the CPU has it) reach on the same machine, so a ratio of moetier's kernels can be read
against what the best-kept libraries get there, not only against the ceiling.

    python3 bench/vendor_h200.py [--gpu] [--cpu] [--threads N] [--tokens N] [--rounds N]

GPU: y = W x for one token, W of the byte size of each FP8 target matrix, as BF16 (half the
rows) through torch.mv / F.linear (cuBLAS), and as FP8 e4m3 through torch._scaled_mm
(cuBLASLt, per-tensor scales; x padded to 16 rows); timed as bench_kernels times moetier's:
one CUDA graph of launches over copies of W that together exceed 4x the 60 MB L2, replayed;
beside them the best of a few plain read kernels of PyTorch over 4 GiB (a reduction reads its
input once), the ceiling this script divides by. bench_kernels' own read kernel runs in the
same call on the same machine (bench/results/kernels-h200.md).

CPU: one routed expert at V3.2's shape (7168 -> 2048 -> 7168) over 2,048 tokens in BF16, the
weights of 8 experts rotating (704 MB, past the 300 MiB L3): gate and up, SiLU, down, as
PyTorch's matmuls (oneDNN repacks the weights on every call) and with the weights packed once
for oneDNN (torch.ops.mkldnn._linear_pointwise, where this PyTorch has it); TFLOP/s of the three
products (6 x tokens x 7168 x 2048 FLOPs an expert).
bench_cpu_experts (e) prints the AMX rate of the same machine in the same call.

Prints markdown tables; needs PyTorch (on the GPU test machine, not in CI).
"""
import argparse
import math
import os
import time

import torch

L2_BYTES = 60e6
# (out, in) of issue 10's FP8 targets of 16 MB or more, then two smaller ones for reference.
FP8_SHAPES = [(32768, 512), (24576, 1536), (7168, 16384), (18432, 7168), (7168, 18432),
              (7168, 2048), (2048, 7168)]


def graph_time(launches, reps):
    """Seconds a launch: one CUDA graph of every launch, replayed reps times."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for f in launches:
            f()
    torch.cuda.current_stream().wait_stream(stream)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for f in launches:
            f()
    graph.replay()
    torch.cuda.synchronize()
    t0, t1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    t0.record()
    for _ in range(reps):
        graph.replay()
    t1.record()
    torch.cuda.synchronize()
    return t0.elapsed_time(t1) * 1e-3 / (reps * len(launches))


def copies_for(nbytes):
    return max(2, math.ceil(4 * L2_BYTES / nbytes) + 1)


def gpu_read_ceiling():
    """GB/s of the best of PyTorch's reductions over 4 GiB (each reads its input once)."""
    x = torch.empty(4 << 30, dtype=torch.uint8, device="cuda")
    x.view(torch.int32).random_(0, 1 << 20)
    best = {}
    for name, view, fn in [("int32 sum", torch.int32, lambda v: v.sum()),
                           ("int32 amax", torch.int32, lambda v: v.amax()),
                           ("bf16 amax", torch.bfloat16, lambda v: v.amax()),
                           ("float32 sum", torch.float32, lambda v: v.sum())]:
        v = x.view(view)
        s = min(graph_time([lambda: fn(v)], 5) for _ in range(3))
        best[name] = x.numel() / s * 1e-9
    del x
    torch.cuda.empty_cache()
    return best


def gpu_gemv_rows(ceiling):
    rows = []
    for out, cols in FP8_SHAPES:
        nbytes = out * cols
        n = copies_for(nbytes)
        # BF16 with the same bytes: half the rows.
        wb = [torch.randn(out // 2, cols, device="cuda", dtype=torch.bfloat16) for _ in range(n)]
        xb = torch.randn(cols, device="cuda", dtype=torch.bfloat16)
        x2 = xb.view(1, cols)
        reps = max(3, int(2e9 / (nbytes * n)))
        t_mv = min(graph_time([lambda w=w: torch.mv(w, xb) for w in wb], reps) for _ in range(2))
        t_lin = min(graph_time([lambda w=w: torch.nn.functional.linear(x2, w) for w in wb], reps)
                    for _ in range(2))
        del wb
        # FP8 e4m3 through cuBLASLt: W row-major (out x in) is B = W^T column-major.
        wf = [torch.randn(out, cols, device="cuda").to(torch.float8_e4m3fn) for _ in range(n)]
        xf = torch.randn(16, cols, device="cuda").to(torch.float8_e4m3fn)
        one = torch.ones((), device="cuda")
        try:
            t_f8 = min(graph_time([lambda w=w: torch._scaled_mm(xf, w.t(), one, one,
                                                                  out_dtype=torch.bfloat16)
                                   for w in wf], reps) for _ in range(2))
        except RuntimeError as err:
            print(f"_scaled_mm {out}x{cols}: {str(err).splitlines()[0]}")
            t_f8 = float("nan")
        del wf
        torch.cuda.empty_cache()
        rows.append((out, cols, nbytes, n, t_mv, t_lin, t_f8))
    print(f"\nGPU one-token GEMV, graph over copies > 4x L2; % of the read ceiling {ceiling:.0f} GB/s\n")
    print("| FP8 shape (MB) | copies | BF16 torch.mv us (%) | BF16 F.linear us (%) "
          "| FP8 _scaled_mm, 16 rows, us (%) |")
    print("|---|---|---|---|---|")
    for out, cols, nbytes, n, t_mv, t_lin, t_f8 in rows:
        def cell(t):
            return f"{t * 1e6:.1f} ({nbytes / t * 1e-9 / ceiling * 100:.1f}%)"
        print(f"| {out}x{cols} ({nbytes / 1e6:.1f}) | {n} | {cell(t_mv)} | {cell(t_lin)} "
              f"| {cell(t_f8)} |")


def cpu_expert_rows(threads, tokens, rounds):
    torch.set_num_threads(threads)
    hidden, inter, experts = 7168, 2048, 8
    gen = torch.Generator().manual_seed(1)
    w = [[torch.randn(inter, hidden, generator=gen).to(torch.bfloat16),
          torch.randn(inter, hidden, generator=gen).to(torch.bfloat16),
          torch.randn(hidden, inter, generator=gen).to(torch.bfloat16)] for _ in range(experts)]
    x = torch.randn(tokens, hidden, generator=gen).to(torch.bfloat16)
    flops = 6.0 * tokens * hidden * inter * experts
    # oneDNN with its weights packed once (the layout its AMX kernel reads), as PyTorch's
    # compiler does for frozen linears; plain matmuls repack them on every call, as moetier's
    # kernel converts FP8 on every call.
    try:
        packed = [[torch.ops.mkldnn._reorder_linear_weight(m, tokens) for m in e] for e in w]

        def lin(a, m):
            return torch.ops.mkldnn._linear_pointwise(a, m, None, "none", [], "")

        lin(x, packed[0][0])
    except (RuntimeError, AttributeError) as err:
        print(f"packed oneDNN linear unavailable: {str(err).splitlines()[0]}")
        packed = None

    def layer(mats, mm):
        for gate, up, down in mats:
            h = torch.nn.functional.silu(mm(x, gate)) * mm(x, up)
            _ = mm(h, down)

    def plain(a, m):
        return a @ m.t()

    variants = [("matmul", w, plain)] + ([("packed", packed, lin)] if packed else [])
    for _, mats, mm in variants:
        layer(mats, mm)
    print(f"\nCPU: {experts} experts x {tokens} tokens, BF16, {threads} threads, "
          f"PyTorch {torch.__version__}, oneDNN "
          f"{'yes' if torch.backends.mkldnn.is_available() else 'no'}; "
          "TFLOP/s of the three products (SwiGLU included in the time)\n")
    print("| round | " + " | ".join(f"{v[0]} TFLOP/s" for v in variants) + " |")
    print("|---" * (len(variants) + 1) + "|")
    for r in range(rounds):
        cells = []
        for _, mats, mm in variants:
            t0 = time.perf_counter()
            layer(mats, mm)
            cells.append(f"{flops / (time.perf_counter() - t0) * 1e-12:.2f}")
        print(f"| {r + 1} | " + " | ".join(cells) + " |")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gpu", action="store_true", help="only the GPU rows")
    ap.add_argument("--cpu", action="store_true", help="only the CPU rows")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="CPU threads (all)")
    ap.add_argument("--tokens", type=int, default=2048, help="tokens an expert (2048)")
    ap.add_argument("--rounds", type=int, default=4, help="CPU rounds (4)")
    args = ap.parse_args()
    both = not args.gpu and not args.cpu
    if (args.gpu or both) and torch.cuda.is_available():
        print(f"GPU: {torch.cuda.get_device_name()}, PyTorch {torch.__version__}, "
              f"cuBLAS through PyTorch")
        reads = gpu_read_ceiling()
        print("read kernels over 4 GiB, GB/s: " +
              ", ".join(f"{k} {v:.0f}" for k, v in reads.items()))
        gpu_gemv_rows(max(reads.values()))
    if args.cpu or both:
        cpu_expert_rows(args.threads, args.tokens, args.rounds)


if __name__ == "__main__":
    main()
