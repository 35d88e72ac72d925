#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""make_golden.py - golden data for moetier from HF transformers' DeepseekV32ForCausalLM.

The oracle is code nobody on this project wrote: transformers (5.17 on the GPU machine). This script
builds small DeepSeek-V3.2 models with fixed seeds, saves them as bf16 safetensors with
save_pretrained, loads them back with from_pretrained in float32 (eager attention, CPU), and writes
what the C engine is tested against (layout in tests/reference/README.md):

  <out>/golden/<name>/{config.json, model.safetensors, golden.json, logits_<i>.f32, indexer_topk.json}
  <out>/hf-bf16/{config.json, model.safetensors, ...}     (a copy of the first model)

A second, independent float32 forward pass written from tests/reference/HF_NOTES.md (ref_forward
below) runs on the same weights; golden.json records how far it is from HF. A small difference
(~1e-5) means HF_NOTES.md describes what HF computes.

With --checkpoint DIR --name NAME it instead makes golden data for an existing checkpoint (e.g. an
FP8 one from `moetier synth`): FP8 weights are dequantized blockwise (W * weight_scale_inv per
128x128 block) into float32 and run through the same pipeline.

Usage (GPU machine, repository root):
  python3 tests/reference/make_golden.py --out $OUT/data [--src-dump $OUT/hf_src]
"""
import argparse
import json
import math
import os
import shutil
import sys
import tempfile

import torch
import torch.nn.functional as F

import transformers
from transformers import DeepseekV32Config, DeepseekV32ForCausalLM

N_GREEDY = 20

YARN_A = {"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0,
          "original_max_position_embeddings": 64, "beta_fast": 32.0, "beta_slow": 1.0,
          "mscale": 1.0, "mscale_all_dim": 1.0}
YARN_B = {"rope_type": "yarn", "rope_theta": 20000.0, "factor": 2.0,
          "original_max_position_embeddings": 64, "beta_fast": 32.0, "beta_slow": 1.0,
          "mscale": 0.707, "mscale_all_dim": 0.707}

# Model A: 2 dense + 2 MoE layers, 3 heads, 16 experts in 4 groups (keep 2, top-4), YaRN x4,
# index_topk 8 with prompts of 24..40 tokens. All tensors bf16 exactly as save_pretrained writes.
# Model B: other shapes, 1 dense + 2 MoE, 8 experts in 2 groups, v_head != qk_nope, rope 8, and the
# dtype mix of DeepSeek's real checkpoint (norms, k_norm, e_score_correction_bias in F32).
MODELS = [
    {
        "name": "v32-tiny-a", "seed": 1001, "prompt_lens": [24, 33, 40], "f32_norms": False,
        "lm_head_std": 0.25, "embed_std": 0.5,
        "config": dict(
            vocab_size=512, hidden_size=64, intermediate_size=128, moe_intermediate_size=32,
            num_hidden_layers=4, first_k_dense_replace=2, num_attention_heads=3,
            num_key_value_heads=3, q_lora_rank=48, kv_lora_rank=32, qk_nope_head_dim=16,
            qk_rope_head_dim=16, v_head_dim=16, n_routed_experts=16, n_shared_experts=1,
            num_experts_per_tok=4, n_group=4, topk_group=2, routed_scaling_factor=2.5,
            norm_topk_prob=True, index_n_heads=16, index_head_dim=32, index_topk=8,
            max_position_embeddings=256, rope_parameters=YARN_A, rms_norm_eps=1e-6,
            initializer_range=0.08, tie_word_embeddings=False, bos_token_id=0, eos_token_id=1),
    },
    {
        "name": "v32-tiny-b", "seed": 2002, "prompt_lens": [28, 37], "f32_norms": True,
        "lm_head_std": 0.2, "embed_std": 0.5,
        "config": dict(
            vocab_size=384, hidden_size=96, intermediate_size=160, moe_intermediate_size=48,
            num_hidden_layers=3, first_k_dense_replace=1,
            mlp_layer_types=["dense", "sparse", "sparse"], num_attention_heads=4,
            num_key_value_heads=4, q_lora_rank=64, kv_lora_rank=48, qk_nope_head_dim=24,
            qk_rope_head_dim=8, v_head_dim=32, n_routed_experts=8, n_shared_experts=1,
            num_experts_per_tok=2, n_group=2, topk_group=1, routed_scaling_factor=1.5,
            norm_topk_prob=True, index_n_heads=16, index_head_dim=16, index_topk=12,
            max_position_embeddings=128, rope_parameters=YARN_B, rms_norm_eps=1e-6,
            initializer_range=0.07, tie_word_embeddings=False, bos_token_id=0, eos_token_id=1),
    },
]


def log(*a):
    print(*a, flush=True)


# ------------------------------------------------------------------------------------------------
# Independent reference forward (float32), written from HF_NOTES.md / spec section 2.

def yarn_inv_freq(rp, dim):
    base = float(rp.get("rope_theta", 10000.0))
    inv = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim))
    if rp.get("rope_type", rp.get("type", "default")) != "yarn":
        return inv, 1.0
    f = float(rp["factor"])
    orig = float(rp["original_max_position_embeddings"])
    bf, bs = float(rp.get("beta_fast") or 32), float(rp.get("beta_slow") or 1)

    def cdim(r):
        return dim * math.log(orig / (r * 2 * math.pi)) / (2 * math.log(base))
    lo, hi = max(math.floor(cdim(bf)), 0), min(math.ceil(cdim(bs)), dim - 1)
    if lo == hi:
        hi += 0.001
    ramp = ((torch.arange(dim // 2, dtype=torch.float64) - lo) / (hi - lo)).clamp(0, 1)
    inv = inv / f * ramp + inv * (1 - ramp)

    def ms(s, m):
        return 1.0 if s <= 1 else 0.1 * m * math.log(s) + 1.0
    m, mad = rp.get("mscale"), rp.get("mscale_all_dim")
    att = ms(f, m) / ms(f, mad) if (m and mad) else ms(f, 1.0)
    return inv, att


def softmax_scale(cfg):
    d = cfg["qk_nope_head_dim"] + cfg["qk_rope_head_dim"]
    s = d ** -0.5
    rp = cfg["rope_parameters"]
    if rp.get("rope_type", "default") != "default" and rp.get("mscale_all_dim"):
        f = float(rp["factor"])
        if f > 1:
            m = 0.1 * float(rp["mscale_all_dim"]) * math.log(f) + 1.0
            s *= m * m
    return s


def rms(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def expert_weights(sd, pre, e, inter):
    g = sd.get(f"{pre}.experts.{e}.gate_proj.weight")
    if g is not None:
        return g, sd[f"{pre}.experts.{e}.up_proj.weight"], sd[f"{pre}.experts.{e}.down_proj.weight"]
    gu = sd[f"{pre}.experts.gate_up_proj"][e]
    return gu[:inter], gu[inter:], sd[f"{pre}.experts.down_proj"][e]


def ref_forward(sd, cfg, ids, rel_gap=False):
    """Returns (logits [T,V], per-layer selected sets, per-layer min top-k boundary gap).

    The gap is score[k-1] - score[k] of the sorted valid scores of a row (rows with more than
    index_topk keys only); with rel_gap it is divided by the std of that row's valid scores."""
    T = len(ids)
    H, dn, dr, dv = (cfg["num_attention_heads"], cfg["qk_nope_head_dim"], cfg["qk_rope_head_dim"],
                     cfg["v_head_dim"])
    kvr, nI, dI, topk = cfg["kv_lora_rank"], cfg["index_n_heads"], cfg["index_head_dim"], cfg["index_topk"]
    eps = cfg["rms_norm_eps"]
    inv, att = yarn_inv_freq(cfg["rope_parameters"], dr)
    ang = torch.arange(T, dtype=torch.float64)[:, None] * inv[None, :]
    cs, sn = (ang.cos() * att).float(), (ang.sin() * att).float()   # [T, dr/2]
    scale = softmax_scale(cfg)
    types = cfg["mlp_layer_types"]

    def rope_inter(x):   # pairs (2i, 2i+1), in place layout
        c = cs.view(T, *([1] * (x.dim() - 2)), -1)
        s = sn.view(T, *([1] * (x.dim() - 2)), -1)
        x1, x2 = x[..., 0::2], x[..., 1::2]
        y = torch.empty_like(x)
        y[..., 0::2] = x1 * c - x2 * s
        y[..., 1::2] = x2 * c + x1 * s
        return y

    def rope_neox(x):    # pairs (i, i + dr/2)
        c = cs.view(T, *([1] * (x.dim() - 2)), -1)
        s = sn.view(T, *([1] * (x.dim() - 2)), -1)
        h = dr // 2
        x1, x2 = x[..., :h], x[..., h:]
        return torch.cat([x1 * c - x2 * s, x2 * c + x1 * s], -1)

    h = sd["model.embed_tokens.weight"][torch.tensor(ids)]
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    sel_all, gaps = [], []
    for L in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{L}"
        a = f"{p}.self_attn"
        x = rms(h, sd[f"{p}.input_layernorm.weight"], eps)
        qr = rms(x @ sd[f"{a}.q_a_proj.weight"].T, sd[f"{a}.q_a_layernorm.weight"], 1e-6)
        q = (qr @ sd[f"{a}.q_b_proj.weight"].T).view(T, H, dn + dr)
        qn, qp = q[..., :dn], rope_inter(q[..., dn:])
        kv = x @ sd[f"{a}.kv_a_proj_with_mqa.weight"].T
        c = rms(kv[:, :kvr], sd[f"{a}.kv_a_layernorm.weight"], 1e-6)
        kp = rope_inter(kv[:, kvr:])
        kvb = sd[f"{a}.kv_b_proj.weight"].view(H, dn + dv, kvr)
        kn = torch.einsum("tc,hdc->thd", c, kvb[:, :dn])
        v = torch.einsum("tc,hdc->thd", c, kvb[:, dn:])
        sc = (torch.einsum("thd,shd->hts", qn, kn) + torch.einsum("thd,sd->hts", qp, kp)) * scale
        # lightning indexer
        i = f"{a}.indexer"
        qI = (qr @ sd[f"{i}.wq_b.weight"].T).view(T, nI, dI)
        qI = torch.cat([rope_neox(qI[..., :dr]), qI[..., dr:]], -1)
        kI = F.layer_norm(x @ sd[f"{i}.wk.weight"].T, (dI,), sd[f"{i}.k_norm.weight"],
                          sd[f"{i}.k_norm.bias"], 1e-6)
        kI = torch.cat([rope_neox(kI[..., :dr]), kI[..., dr:]], -1)
        w = (x @ sd[f"{i}.weights_proj.weight"].T) * nI ** -0.5
        I = torch.einsum("th,ths->ts", w, torch.relu(torch.einsum("thd,sd->ths", qI, kI) * dI ** -0.5))
        I = I.masked_fill(~causal, float("-inf"))
        keep = torch.zeros(T, T, dtype=torch.bool)
        sel_rows, gmin = [], float("inf")
        for t in range(T):
            k = min(topk, t + 1)
            vals, idx = I[t, :t + 1].sort(descending=True)
            keep[t, idx[:k]] = True
            sel_rows.append(sorted(idx[:k].tolist()))
            if t + 1 > topk:
                gap = float(vals[k - 1] - vals[k])
                if rel_gap:
                    gap /= max(float(vals.std()), 1e-30)
                gmin = min(gmin, gap)
        sel_all.append(sel_rows)
        gaps.append(gmin if math.isfinite(gmin) else None)   # None: no row had > topk keys
        sc = sc.masked_fill(~keep[None], float("-inf"))
        o = torch.einsum("hts,shd->thd", sc.softmax(-1), v).reshape(T, H * dv)
        h = h + o @ sd[f"{a}.o_proj.weight"].T
        # FFN
        x = rms(h, sd[f"{p}.post_attention_layernorm.weight"], eps)
        m = f"{p}.mlp"

        def swiglu(x, g, u, d):
            return (F.silu(x @ g.T) * (x @ u.T)) @ d.T
        if types[L] == "sparse":
            E, G, tg, K = (cfg["n_routed_experts"], cfg["n_group"], cfg["topk_group"],
                           cfg["num_experts_per_tok"])
            s = torch.sigmoid(x @ sd[f"{m}.gate.weight"].T)
            b = s + sd[f"{m}.gate.e_score_correction_bias"]
            gs = b.view(T, G, E // G).topk(2, -1).values.sum(-1)
            gk = gs.topk(tg, -1).indices
            gmask = torch.zeros(T, G, dtype=torch.bool).scatter(1, gk, True)
            b = b.masked_fill(~gmask.repeat_interleave(E // G, 1), float("-inf"))
            idx = b.topk(K, -1).indices
            wt = s.gather(1, idx)
            if cfg["norm_topk_prob"]:
                wt = wt / wt.sum(-1, keepdim=True)
            wt = wt * cfg["routed_scaling_factor"]
            y = torch.zeros_like(x)
            for t in range(T):
                for j in range(K):
                    g, u, d = expert_weights(sd, m, int(idx[t, j]), cfg["moe_intermediate_size"])
                    y[t] += wt[t, j] * swiglu(x[t:t + 1], g, u, d)[0]
            y = y + swiglu(x, sd[f"{m}.shared_experts.gate_proj.weight"],
                           sd[f"{m}.shared_experts.up_proj.weight"],
                           sd[f"{m}.shared_experts.down_proj.weight"])
        else:
            y = swiglu(x, sd[f"{m}.gate_proj.weight"], sd[f"{m}.up_proj.weight"],
                       sd[f"{m}.down_proj.weight"])
        h = h + y
    h = rms(h, sd["model.norm.weight"], eps)
    return h @ sd["lm_head.weight"].T, sel_all, gaps


# ------------------------------------------------------------------------------------------------
# HF side

def load_sd(d):
    from safetensors.torch import load_file
    sd = {}
    for f in sorted(os.listdir(d)):
        if f.endswith(".safetensors"):
            sd.update(load_file(os.path.join(d, f)))
    return sd


def describe_sd(sd):
    out = {}
    for k, v in sorted(sd.items()):
        out[k] = [str(v.dtype).replace("torch.", ""), list(v.shape)]
    return out


def perturb(model, spec, gen):
    """Non-trivial norms, LayerNorm bias, router bias, larger lm_head/embedding."""
    with torch.no_grad():
        for name, mod in model.named_modules():
            cls = type(mod).__name__
            if cls.endswith("RMSNorm"):
                mod.weight.copy_(1.0 + 0.2 * torch.randn(mod.weight.shape, generator=gen))
            elif isinstance(mod, torch.nn.LayerNorm):
                mod.weight.copy_(1.0 + 0.2 * torch.randn(mod.weight.shape, generator=gen))
                mod.bias.copy_(0.1 * torch.randn(mod.bias.shape, generator=gen))
            elif cls.endswith("TopkRouter"):
                mod.e_score_correction_bias.copy_(
                    0.1 * torch.randn(mod.e_score_correction_bias.shape, generator=gen))
        model.lm_head.weight.copy_(spec["lm_head_std"] *
                                   torch.randn(model.lm_head.weight.shape, generator=gen))
        emb = model.model.embed_tokens.weight
        emb.copy_(spec["embed_std"] * torch.randn(emb.shape, generator=gen))


def set_eager(model):
    try:
        model.set_attn_implementation("eager")
    except Exception:  # noqa: BLE001
        model.config._attn_implementation = "eager"


def greedy(model, ids, n):
    """Manual greedy loop through the KV cache (HF's decode path). Returns ids, step logits."""
    with torch.no_grad():
        out = model(input_ids=torch.tensor([ids]), use_cache=True)
        pkv = out.past_key_values
        last = out.logits[0, -1]
        toks, step_logits = [], []
        for _ in range(n):
            nxt = int(last.argmax())
            toks.append(nxt)
            step_logits.append(last.clone())
            out = model(input_ids=torch.tensor([[nxt]]), past_key_values=pkv, use_cache=True)
            pkv = out.past_key_values
            last = out.logits[0, -1]
    return toks, torch.stack(step_logits)


def hf_load(d):
    m = DeepseekV32ForCausalLM.from_pretrained(d, dtype=torch.float32, attn_implementation="eager")
    m.eval()
    return m


def split_experts_to_per_expert(sd, cfg):
    """Fused gate_up_proj/down_proj [E,...] -> per-expert tensors (DeepSeek's on-disk names)."""
    out = {}
    inter = cfg["moe_intermediate_size"]
    for k, v in sd.items():
        if k.endswith("mlp.experts.gate_up_proj"):
            pre = k[: -len("gate_up_proj")]
            for e in range(v.shape[0]):
                out[f"{pre}{e}.gate_proj.weight"] = v[e, :inter].contiguous()
                out[f"{pre}{e}.up_proj.weight"] = v[e, inter:].contiguous()
        elif k.endswith("mlp.experts.down_proj"):
            pre = k[: -len("down_proj")]
            for e in range(v.shape[0]):
                out[f"{pre}{e}.down_proj.weight"] = v[e].contiguous()
        else:
            out[k] = v
    return out


def golden_for_dir(name, d, cfg, prompts, outdir, extra):
    """Load checkpoint dir d with HF (fp32, eager), write golden files into outdir."""
    m = hf_load(d)
    sd = {k: v.float() for k, v in load_sd(d).items()}
    info = dict(extra)
    info["attn_implementation"] = getattr(m.config, "_attn_implementation", None)
    rot = m.model.rotary_emb
    info["hf_rope_inv_freq"] = [float(x) for x in rot.inv_freq]
    info["hf_rope_attention_scaling"] = float(rot.attention_scaling)
    info["hf_softmax_scale"] = float(m.model.layers[0].self_attn.scaling)
    inv, att = yarn_inv_freq(cfg["rope_parameters"], cfg["qk_rope_head_dim"])
    info["notes_rope_inv_freq_max_abs_diff"] = float((inv.float() - rot.inv_freq.float()).abs().max())
    info["notes_softmax_scale"] = softmax_scale(cfg)
    log(f"[{name}] attn={info['attn_implementation']} inv_freq={info['hf_rope_inv_freq']}")
    log(f"[{name}] attention_scaling={info['hf_rope_attention_scaling']} softmax_scale="
        f"{info['hf_softmax_scale']} (notes {info['notes_softmax_scale']}) inv_freq diff "
        f"{info['notes_rope_inv_freq_max_abs_diff']:.3g}")

    # hook every indexer to capture its top-k output
    captured = {}

    def mk_hook(L):
        def hook(mod, args, out):
            captured[L] = out
        return hook
    hooks = [lay.self_attn.indexer.register_forward_hook(mk_hook(L))
             for L, lay in enumerate(m.model.layers)]
    # residual stream: embedding output and the output of every decoder layer
    resid = {}

    def mk_rhook(i):
        def hook(mod, args, out):
            resid[i] = (out[0] if isinstance(out, tuple) else out).detach()
        return hook
    hooks.append(m.model.embed_tokens.register_forward_hook(mk_rhook(0)))
    hooks += [lay.register_forward_hook(mk_rhook(L + 1)) for L, lay in enumerate(m.model.layers)]

    V = cfg["vocab_size"]
    entries, topk_file = [], []
    for pi, prompt in enumerate(prompts):
        toks, step_logits = greedy(m, prompt, N_GREEDY)
        full = prompt + toks
        captured.clear()
        resid.clear()
        with torch.no_grad():
            logits = m(input_ids=torch.tensor([full]), use_cache=False).logits[0].float()
        hs = torch.stack([resid[i][0].float() for i in range(cfg["num_hidden_layers"] + 1)])
        T = len(prompt)
        dec_diff = float((logits[T - 1:T - 1 + N_GREEDY] - step_logits).abs().max())
        argmax_ok = [int(x) for x in logits[T - 1:T - 1 + N_GREEDY].argmax(-1)] == toks
        top2 = logits.topk(2, -1).values
        margins = (top2[:, 0] - top2[:, 1])
        # HF's selected sets (drop masked future positions that fill rows with < topk keys)
        hf_sel = []
        for L in range(cfg["num_hidden_layers"]):
            o = captured.get(L)
            if torch.is_tensor(o) and not o.is_floating_point() and o.dim() == 3:
                rows = [sorted(j for j in o[0, t].tolist() if 0 <= j <= t) for t in range(len(full))]
                hf_sel.append(rows)
            else:
                hf_sel.append(None)
                log(f"[{name}] indexer layer {L} output type {type(o)} "
                    f"{getattr(o, 'dtype', None)} {getattr(o, 'shape', None)}")
        # independent reference forward
        try:
            with torch.no_grad():
                rlog, rsel, gaps = ref_forward(sd, cfg, full, rel_gap=True)
            ref_diff = float((rlog - logits).abs().max())
            sel_mismatch = sum(1 for L in range(len(rsel)) if hf_sel[L] is not None
                               for t in range(len(full)) if rsel[L][t] != hf_sel[L][t])
        except Exception:  # noqa: BLE001
            import traceback
            traceback.print_exc()
            ref_diff, sel_mismatch = float("nan"), -1
            rsel, gaps = [None] * cfg["num_hidden_layers"], []
        fn = f"logits_{pi}.f32"
        logits.contiguous().numpy().astype("<f4").tofile(os.path.join(outdir, fn))
        hfn = f"hidden_{pi}.f32"
        hs.contiguous().numpy().astype("<f4").tofile(os.path.join(outdir, hfn))
        ent = {
            "prompt": prompt, "greedy": toks, "ids": full, "logits_file": fn,
            "rows": len(full), "cols": V,
            "hidden_file": hfn, "hidden_shape": list(hs.shape),
            "logits_absmax": float(logits.abs().max()), "logits_std": float(logits.std()),
            "min_top1_margin_prompt": float(margins[:T].min()),
            "min_top1_margin_greedy": float(margins[T - 1:T - 1 + N_GREEDY].min()),
            "decode_vs_prefill_max_abs_diff": dec_diff,
            "prefill_argmax_matches_greedy": argmax_ok,
            "ref_forward_max_abs_diff": ref_diff,
            "ref_vs_hf_indexer_row_mismatches": sel_mismatch,
            "indexer_min_rel_boundary_gap_per_layer": gaps,
            "distinct_greedy_tokens": len(set(toks)),
        }
        entries.append(ent)
        topk_file.append({"ids": full, "selected": [s if s is not None else r
                                                   for s, r in zip(hf_sel, rsel)]})
        log(f"[{name}] prompt {pi}: T={T} greedy={toks}")
        log(f"[{name}]   logits std {ent['logits_std']:.3f} absmax {ent['logits_absmax']:.3f} "
            f"min margin prompt {ent['min_top1_margin_prompt']:.2e} greedy "
            f"{ent['min_top1_margin_greedy']:.2e} decode/prefill {dec_diff:.2e} argmax_ok {argmax_ok}")
        log(f"[{name}]   ref_forward diff {ref_diff:.3e} indexer mismatches {sel_mismatch} "
            f"gaps {[('%.2e' % g) if g is not None else '-' for g in gaps]}")
        # cross-check with generate()
        try:
            with torch.no_grad():
                g = m.generate(torch.tensor([prompt]), do_sample=False, max_new_tokens=N_GREEDY,
                               eos_token_id=None, pad_token_id=0)
            gen = g[0, T:].tolist()
            ent["generate_matches_greedy"] = gen == toks[:len(gen)]
            log(f"[{name}]   generate() {gen} match {ent['generate_matches_greedy']}")
        except Exception as e:  # noqa: BLE001
            log(f"[{name}]   generate() failed: {e!r}")
    for hk in hooks:
        hk.remove()
    info["greedy"] = [e["greedy"] for e in entries]
    info["logits_files"] = [e["logits_file"] for e in entries]
    info["sequences"] = entries
    with open(os.path.join(outdir, "golden.json"), "w") as f:
        json.dump(info, f, indent=1, allow_nan=False)
    with open(os.path.join(outdir, "indexer_topk.json"), "w") as f:
        json.dump({"note": "per sequence, per layer, per row t: sorted key positions s<=t the "
                   "HF indexer selected (full-sequence prefill, no cache)", "sequences": topk_file},
                  f, separators=(",", ":"))
    return info


def build_and_save(spec, tmp):
    cfgd = spec["config"]
    seed = spec["seed"]
    # Try a few seeds; keep the one whose probe (prompt 0 + greedy) has varied greedy tokens and
    # the widest indexer top-k boundary gap (relative to the score spread), so that selection is
    # not decided by rounding.
    best = None
    for s in range(seed, seed + 4):
        torch.manual_seed(s)
        config = DeepseekV32Config(**cfgd)
        model = DeepseekV32ForCausalLM(config)
        perturb(model, spec, torch.Generator().manual_seed(s + 7))
        model.eval()
        model = model.to(torch.bfloat16).float()
        set_eager(model)
        g = torch.Generator().manual_seed(s + 99)
        ids = torch.randint(3, cfgd["vocab_size"], (spec["prompt_lens"][0],), generator=g).tolist()
        toks, _ = greedy(model, ids, N_GREEDY)
        cfgx = dict(cfgd)
        cfgx["mlp_layer_types"] = config.mlp_layer_types
        sd = {k: v.float() for k, v in model.state_dict().items()}
        with torch.no_grad():
            _, _, gaps = ref_forward(sd, cfgx, ids + toks, rel_gap=True)
        mg = min([g for g in gaps if g is not None] or [float("inf")])
        score = mg if len(set(toks)) >= 12 else -1.0
        log(f"[{spec['name']}] seed {s} probe greedy {toks} distinct {len(set(toks))} "
            f"min rel gap {mg:.3e}")
        if best is None or score > best[0]:
            best = (score, s, model)
    _, seed, model = best
    log(f"[{spec['name']}] chose seed {seed}")
    model = model.to(torch.bfloat16)
    if spec["f32_norms"]:
        with torch.no_grad():
            for name, mod in model.named_modules():
                cls = type(mod).__name__
                if cls.endswith("RMSNorm") or isinstance(mod, torch.nn.LayerNorm):
                    for p in mod.parameters(recurse=False):
                        p.data = p.data.float()
                elif cls.endswith("TopkRouter"):
                    mod.e_score_correction_bias.data = mod.e_score_correction_bias.data.float()
    d = os.path.join(tmp, spec["name"] + "-saved")
    model.save_pretrained(d)
    log(f"[{spec['name']}] save_pretrained wrote: {sorted(os.listdir(d))}")
    return d, seed


def run_model(spec, out, tmp, first):
    name = spec["name"]
    saved, seed = build_and_save(spec, tmp)
    sd = load_sd(saved)
    desc = describe_sd(sd)
    fused = any(k.endswith("experts.gate_up_proj") for k in sd)
    log(f"[{name}] save_pretrained expert layout: {'FUSED 3D' if fused else 'per-expert'}; "
        f"{len(sd)} tensors; dtypes {sorted(set(v[0] for v in desc.values()))}")
    for k in list(desc)[:60]:
        log(f"    {k} {desc[k]}")
    with open(os.path.join(saved, "config.json")) as f:
        cfg_saved = json.load(f)
    log(f"[{name}] saved config.json: {json.dumps(cfg_saved, sort_keys=True)}")
    outdir = os.path.join(out, "golden", name)
    os.makedirs(outdir, exist_ok=True)
    for f in os.listdir(saved):
        shutil.copy(os.path.join(saved, f), outdir)
        os.chmod(os.path.join(outdir, f), 0o644)
    if fused:
        # DeepSeek's checkpoint is per-expert; write that and check HF loads it identically.
        from safetensors.torch import save_file
        os.remove(os.path.join(outdir, "model.safetensors"))
        save_file(split_experts_to_per_expert(sd, cfg_saved),
                  os.path.join(outdir, "model.safetensors"), metadata={"format": "pt"})
        log(f"[{name}] rewrote per-expert model.safetensors")
    cfg = dict(cfg_saved)
    cfg.setdefault("mlp_layer_types", DeepseekV32Config(**spec["config"]).mlp_layer_types)
    g = torch.Generator().manual_seed(seed + 99)
    prompts = [torch.randint(3, cfg["vocab_size"], (n,), generator=g).tolist()
               for n in spec["prompt_lens"]]
    extra = {"model": name, "seed": seed, "transformers_version": transformers.__version__,
             "torch_version": torch.__version__, "compute_dtype": "float32", "device": "cpu",
             "save_pretrained_expert_layout": "fused" if fused else "per-expert",
             "n_greedy": N_GREEDY, "prompts": prompts}
    info = golden_for_dir(name, outdir, cfg, prompts, outdir, extra)
    if fused:   # also compare against the fused (as-saved) load
        m2 = hf_load(saved)
        with torch.no_grad():
            l2 = m2(input_ids=torch.tensor([info["sequences"][0]["ids"]])).logits[0]
        ref = torch.from_numpy(__import__("numpy").fromfile(
            os.path.join(outdir, "logits_0.f32"), dtype="<f4")).view(l2.shape)
        log(f"[{name}] fused-load vs per-expert-load logits max diff {float((l2 - ref).abs().max()):.3e}")
    if first:
        hb = os.path.join(out, "hf-bf16")
        os.makedirs(hb, exist_ok=True)
        for f in os.listdir(saved):
            shutil.copy(os.path.join(saved, f), hb)
            os.chmod(os.path.join(hb, f), 0o644)
        if fused:
            shutil.copy(os.path.join(outdir, "model.safetensors"), hb)
        with open(os.path.join(hb, "tensors.json"), "w") as f:
            json.dump(describe_sd(load_sd(hb)), f, indent=0)


def dequant_checkpoint(src, dst):
    """FP8 (e4m3 + weight_scale_inv [ceil(o/128), ceil(i/128)]) -> float32 safetensors in dst."""
    from safetensors.torch import save_file
    sd = load_sd(src)
    with open(os.path.join(src, "config.json")) as f:
        cfg = json.load(f)
    qc = cfg.pop("quantization_config", None) or {}
    bs = qc.get("weight_block_size", [128, 128])
    nl = cfg["num_hidden_layers"]
    out, dropped = {}, 0
    for k, v in sd.items():
        if k.endswith(".weight_scale_inv"):
            continue
        parts = k.split(".")
        if len(parts) > 2 and parts[1] == "layers" and int(parts[2]) >= nl:
            dropped += 1          # MTP layer(s): HF only skips the literal model.layers.61
            continue
        if v.dtype == torch.float8_e4m3fn:
            s = sd[k[: -len("weight")] + "weight_scale_inv"].float()
            o, i = v.shape
            full = s.repeat_interleave(bs[0], 0)[:o].repeat_interleave(bs[1], 1)[:, :i]
            out[k] = v.float() * full
        else:
            out[k] = v.float()
    os.makedirs(dst, exist_ok=True)
    save_file(out, os.path.join(dst, "model.safetensors"), metadata={"format": "pt"})
    log(f"dequantized {len(out)} tensors (FP8 block {bs}), dropped {dropped} MTP tensors")
    cfg["dtype"] = "float32"
    cfg.pop("torch_dtype", None)
    with open(os.path.join(dst, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    return cfg


def sha256_files(d):
    import hashlib
    out = {}
    for f in sorted(os.listdir(d)):
        if f.endswith(".safetensors") or f == "config.json":
            h = hashlib.sha256()
            with open(os.path.join(d, f), "rb") as fh:
                for blk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(blk)
            out[f] = h.hexdigest()
    return out


def run_checkpoint(src, name, out, tmp, plens, seed, source_cmd):
    outdir = os.path.join(out, "golden", name)
    os.makedirs(outdir, exist_ok=True)
    deq = os.path.join(tmp, name + "-deq")
    raw = dequant_checkpoint(src, deq)
    m = hf_load(deq)
    rp = dict(m.config.rope_parameters or {})
    log(f"[{name}] HF rope_parameters from the checkpoint's config.json: {rp}")
    legacy = raw.get("rope_scaling") or {}
    if legacy and rp.get("rope_type") != legacy.get("type", legacy.get("rope_type")):
        # HF did not take DeepSeek's legacy rope_scaling: spell it the transformers-5 way.
        log(f"[{name}] WARNING: rope_scaling {legacy} not applied by HF; rewriting as rope_parameters")
        raw["rope_parameters"] = dict(legacy, rope_type=legacy.get("type", legacy.get("rope_type")),
                                      rope_theta=raw.get("rope_theta", 10000.0))
        raw["rope_parameters"].pop("type", None)
        with open(os.path.join(deq, "config.json"), "w") as f:
            json.dump(raw, f, indent=1)
        m = hf_load(deq)
        log(f"[{name}] HF rope_parameters now: {m.config.rope_parameters}")
    cfg = m.config.to_dict()
    cfg.setdefault("mlp_layer_types", m.config.mlp_layer_types)
    g = torch.Generator().manual_seed(seed)
    prompts = [torch.randint(3, cfg["vocab_size"], (n,), generator=g).tolist() for n in plens]
    extra = {"model": name, "source_checkpoint": os.path.basename(os.path.normpath(src)),
             "hf_rope_parameters": dict(m.config.rope_parameters),
             "transformers_version": transformers.__version__, "torch_version": torch.__version__,
             "compute_dtype": "float32", "device": "cpu", "n_greedy": N_GREEDY,
             "prompts": prompts, "fp8_dequantized_by": "make_golden.py (W * scale per block)",
             "source_command": source_cmd, "source_files_sha256": sha256_files(src)}
    info = golden_for_dir(name, deq, cfg, prompts, outdir, extra)
    # cross-check: transformers' own FP8 dequantization, if it loads
    try:
        from transformers import FineGrainedFP8Config
        m2 = DeepseekV32ForCausalLM.from_pretrained(
            src, quantization_config=FineGrainedFP8Config(dequantize=True), dtype=torch.float32,
            attn_implementation="eager")
        with torch.no_grad():
            l2 = m2(input_ids=torch.tensor([info["sequences"][0]["ids"]])).logits[0].float()
        import numpy as np
        ref = torch.from_numpy(np.fromfile(os.path.join(outdir, "logits_0.f32"), dtype="<f4")).view(l2.shape)
        d = float((l2 - ref).abs().max())
        log(f"[{name}] FineGrainedFP8Config(dequantize=True) vs manual dequant: max diff {d:.3e}")
        info["hf_fp8_dequantize_max_abs_diff"] = d
        with open(os.path.join(outdir, "golden.json"), "w") as f:
            json.dump(info, f, indent=1, allow_nan=False)
    except Exception as e:  # noqa: BLE001
        log(f"[{name}] FineGrainedFP8Config cross-check failed: {e!r}")


def dump_sources(dst):
    import transformers.models.deepseek_v32.modeling_deepseek_v32 as mm
    import transformers.models.deepseek_v32.configuration_deepseek_v32 as mc
    import transformers.modeling_rope_utils as ru
    os.makedirs(dst, exist_ok=True)
    files = [mm.__file__, mc.__file__, ru.__file__]
    try:
        import transformers.conversion_mapping as cm
        files.append(cm.__file__)
    except Exception:  # noqa: BLE001
        pass
    for f in files:
        shutil.copy(f, dst)
    log(f"dumped {files}")


def main():
    global N_GREEDY
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--src-dump")
    ap.add_argument("--only", help="comma-separated model names")
    ap.add_argument("--checkpoint", help="existing checkpoint dir (bf16 or fp8)")
    ap.add_argument("--name", help="golden name for --checkpoint")
    ap.add_argument("--prompt-lens", default="24,37")
    ap.add_argument("--seed", type=int, default=4242)
    ap.add_argument("--n-greedy", type=int, default=N_GREEDY, help="greedy steps per prompt")
    ap.add_argument("--source-cmd", help="how the checkpoint was made (recorded in golden.json)")
    ap.add_argument("--also-models", action="store_true",
                    help="with --checkpoint: also (re)make the built-in models")
    args = ap.parse_args()
    N_GREEDY = args.n_greedy
    torch.set_num_threads(min(8, os.cpu_count() or 1))
    log(f"transformers {transformers.__version__} torch {torch.__version__}")
    if args.src_dump:
        dump_sources(args.src_dump)
    tmp = tempfile.mkdtemp(prefix="golden-")
    if args.checkpoint:
        try:
            run_checkpoint(args.checkpoint, args.name, args.out, tmp,
                           [int(x) for x in args.prompt_lens.split(",")], args.seed, args.source_cmd)
        except Exception:  # noqa: BLE001
            import traceback
            traceback.print_exc()
            log(f"[{args.name}] FAILED")
        if not args.also_models:
            return
    only = set(args.only.split(",")) if args.only else None
    first = True
    for spec in MODELS:
        if only and spec["name"] not in only:
            continue
        try:
            run_model(spec, args.out, tmp, first)
        except Exception:  # noqa: BLE001
            import traceback
            traceback.print_exc()
            log(f"[{spec['name']}] FAILED")
        first = False


if __name__ == "__main__":
    sys.exit(main())
