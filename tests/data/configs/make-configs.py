#!/usr/bin/env python3
# make-configs.py - writes the config.json variants that tests/test_config.c reads.
#
# transformers5-v3.2.json: the real DeepSeek-V3.2 config in the layout transformers 5 writes
#   (rope_parameters incl. rope_theta, mlp_layer_types, dtype, layer_types, head_dim, qk_head_dim).
# bad-*.json: the real config with one impossible or mistyped field; the second part of each name
#   in BAD below is the text the error message must contain.
# Run from this directory: python3 make-configs.py
import copy
import json

real = json.load(open("../deepseek-v3.2/config.json"))


def write(name, cfg):
    with open(name, "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")


t5 = {k: v for k, v in real.items() if k not in ("rope_scaling", "rope_theta", "torch_dtype")}
t5.update({
    "dtype": "bfloat16",
    "head_dim": 64,
    "layer_types": ["deepseek_sparse_attention"] * 61,
    "mlp_bias": False,
    "mlp_layer_types": ["dense"] * 3 + ["sparse"] * 58,
    "pad_token_id": None,
    "qk_head_dim": 192,
    "rope_parameters": {"beta_fast": 32.0, "beta_slow": 1.0, "factor": 40.0, "mscale": 1.0,
                        "mscale_all_dim": 1.0, "original_max_position_embeddings": 4096,
                        "rope_theta": 10000.0, "rope_type": "yarn", "type": "yarn"},
    "transformers_version": "5.17.0",
})
write("transformers5-v3.2.json", t5)


def bad(name, edit, base=real):
    cfg = copy.deepcopy(base)
    edit(cfg)
    write("bad-%s.json" % name, cfg)


def setter(key, value):
    return lambda c: c.__setitem__(key, value)


BAD = [
    ("n-group", setter("n_group", 7)),
    ("topk-group", setter("topk_group", 9)),
    ("experts-per-tok", setter("num_experts_per_tok", 129)),
    ("rope-odd", setter("qk_rope_head_dim", 63)),
    ("index-head-dim", setter("index_head_dim", 32)),
    ("index-head-dim-pow2", setter("index_head_dim", 96)),
    ("shared-experts-zero", setter("n_shared_experts", 0)),
    ("q-lora-null", setter("q_lora_rank", None)),
    ("kv-lora-zero", setter("kv_lora_rank", 0)),
    ("first-k", setter("first_k_dense_replace", 62)),
    ("layers", setter("num_hidden_layers", 300)),
    ("scoring", setter("scoring_func", "tanh")),
    ("topk-method", setter("topk_method", "magic")),
    ("rope-factor", lambda c: c["rope_scaling"].__setitem__("factor", 0.5)),
    ("type-string", setter("hidden_size", "7168")),
    ("type-bool", setter("norm_topk_prob", 1)),
    ("type-rope", setter("rope_scaling", "yarn")),
    ("type-float", setter("vocab_size", 129280.0)),
    ("negative", setter("hidden_size", -1)),
    ("quant", lambda c: c["quantization_config"].__setitem__("quant_method", "awq")),
    ("block", lambda c: c["quantization_config"].__setitem__("weight_block_size", [64, 64])),
    ("dtype", setter("torch_dtype", "int8")),
    ("model-type", setter("model_type", "deepseek_v3")),
]
for name, edit in BAD:
    bad(name, edit)
bad("mlp-layer-types", lambda c: c.__setitem__("mlp_layer_types", c["mlp_layer_types"][:60]), t5)
bad("mlp-layer-value", lambda c: c["mlp_layer_types"].__setitem__(5, "moe"), t5)
bad("rope-params-type", lambda c: c["rope_parameters"].__setitem__("factor", "40"), t5)
with open("bad-json.json", "w") as f:
    f.write(json.dumps(real, indent=2)[:500])
