#!/usr/bin/env python3
"""The PyTorch + PEFT reference for Bantam's LoRA trainer (issue 13).

Usage: peft_reference.py MODEL.gguf DUMP.safetensors OUT.safetensors

DUMP (written by the Rust test `crates/bantam-cli/tests/lora.rs`) holds the
adapters' starting values under llama.cpp's names (`blk.N.attn_q.weight.lora_a`
…), the batch (`tokens.K`, `mask.K`) and `rank`, `alpha`. This script builds the
same model in Hugging Face transformers from the GGUF's dequantized weights,
wraps it with PEFT's LoRA (same rank, alpha, targets, no dropout), loads the same
adapter values, computes the loss as Bantam does (the mean cross-entropy over
the batch's answer tokens) and its gradients, and writes `loss` and the
gradients of every `lora_A`/`lora_B` under llama.cpp's names to OUT.

llama.cpp stores LLaMA's Q and K rows permuted for its interleaved RoPE;
Hugging Face keeps them in the original order (`rotate_half`). The weights are
un-permuted on the way in, `lora_B` of Q and K likewise, and their gradients
permuted back on the way out, so the comparison is in llama.cpp's layout.
"""
import os
import sys

import numpy as np
import torch
from gguf import GGUFReader
from gguf.quants import dequantize
from safetensors.numpy import load_file, save_file


def field(reader, key):
    f = reader.fields[key]
    v = f.parts[f.data[0]]
    if f.types[0].name == "STRING":
        return bytes(v).decode()
    return v.tolist()[0]


def permute(w, n_head):
    # llama.cpp's convert_hf_to_gguf.py LlamaModel.permute
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def unpermute(w, n_head):
    return w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


TARGETS = {
    "attn_q": ("self_attn", "q_proj"),
    "attn_k": ("self_attn", "k_proj"),
    "attn_v": ("self_attn", "v_proj"),
    "attn_output": ("self_attn", "o_proj"),
    "ffn_gate": ("mlp", "gate_proj"),
    "ffn_up": ("mlp", "up_proj"),
    "ffn_down": ("mlp", "down_proj"),
}


def main():
    gguf_path, dump_path, out_path = sys.argv[1:4]
    torch.manual_seed(0)
    reader = GGUFReader(gguf_path)
    arch = field(reader, "general.architecture")
    if arch not in ("llama", "qwen2"):
        raise SystemExit(f"reference supports llama and qwen2, not {arch}")
    g = lambda k: field(reader, f"{arch}.{k}")
    weights = {t.name: dequantize(t.data, t.tensor_type).astype(np.float32) for t in reader.tensors}
    n_head, n_kv = g("attention.head_count"), g("attention.head_count_kv")
    n_embd, n_layer = g("embedding_length"), g("block_count")
    permuted = arch == "llama"

    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    tied = "output.weight" not in weights
    common = dict(
        vocab_size=weights["token_embd.weight"].shape[0],
        hidden_size=n_embd,
        intermediate_size=weights["blk.0.ffn_up.weight"].shape[0],
        num_hidden_layers=n_layer,
        num_attention_heads=n_head,
        num_key_value_heads=n_kv,
        rms_norm_eps=float(g("attention.layer_norm_rms_epsilon")),
        rope_theta=float(g("rope.freq_base")),
        max_position_embeddings=int(g("context_length")),
        tie_word_embeddings=tied,
        attn_implementation="eager",
        torch_dtype=torch.float32,
    )
    if arch == "llama":
        model = LlamaForCausalLM(LlamaConfig(**common))
    else:
        model = Qwen2ForCausalLM(Qwen2Config(**common))
    sd = {"model.embed_tokens.weight": weights["token_embd.weight"], "model.norm.weight": weights["output_norm.weight"]}
    if not tied:
        sd["lm_head.weight"] = weights["output.weight"]
    for i in range(n_layer):
        p, q = f"blk.{i}.", f"model.layers.{i}."
        wq, wk = weights[p + "attn_q.weight"], weights[p + "attn_k.weight"]
        if permuted:
            wq, wk = unpermute(wq, n_head), unpermute(wk, n_kv)
        sd[q + "self_attn.q_proj.weight"] = wq
        sd[q + "self_attn.k_proj.weight"] = wk
        sd[q + "self_attn.v_proj.weight"] = weights[p + "attn_v.weight"]
        sd[q + "self_attn.o_proj.weight"] = weights[p + "attn_output.weight"]
        for b, hf in (("attn_q.bias", "q_proj.bias"), ("attn_k.bias", "k_proj.bias"), ("attn_v.bias", "v_proj.bias")):
            if p + b in weights:
                sd[q + "self_attn." + hf] = weights[p + b]
        sd[q + "mlp.gate_proj.weight"] = weights[p + "ffn_gate.weight"]
        sd[q + "mlp.up_proj.weight"] = weights[p + "ffn_up.weight"]
        sd[q + "mlp.down_proj.weight"] = weights[p + "ffn_down.weight"]
        sd[q + "input_layernorm.weight"] = weights[p + "attn_norm.weight"]
        sd[q + "post_attention_layernorm.weight"] = weights[p + "ffn_norm.weight"]
    missing, unexpected = model.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in sd.items()}, strict=False)
    missing = [m for m in missing if not (tied and m == "lm_head.weight") and "rotary" not in m]
    if missing or unexpected:
        raise SystemExit(f"state dict mismatch: missing {missing}, unexpected {unexpected}")
    model.eval()

    dump = load_file(dump_path)
    rank, alpha = int(dump["rank"][0]), float(dump["alpha"][0])
    adapted = sorted({k.split(".")[2] for k in dump if k.startswith("blk.")})

    from peft import LoraConfig, get_peft_model

    cfg = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=0.0, bias="none",
                     target_modules=[TARGETS[t][1] for t in adapted])
    model = get_peft_model(model, cfg)
    # BANTAM_REF_DTYPE=float64 runs the reference in double precision, to tell
    # float32 rounding (which both sides have) from a difference in the maths.
    if os.environ.get("BANTAM_REF_DTYPE") == "float64":
        model = model.double()
    layers = model.base_model.model.model.layers
    params = {}
    with torch.no_grad():
        for i in range(n_layer):
            for t in adapted:
                mod = getattr(getattr(layers[i], TARGETS[t][0]), TARGETS[t][1])
                a = dump[f"blk.{i}.{t}.weight.lora_a"]
                b = dump[f"blk.{i}.{t}.weight.lora_b"]
                if permuted and t in ("attn_q", "attn_k"):
                    b = unpermute(b, n_head if t == "attn_q" else n_kv)
                mod.lora_A["default"].weight.copy_(torch.from_numpy(np.ascontiguousarray(a)))
                mod.lora_B["default"].weight.copy_(torch.from_numpy(np.ascontiguousarray(b)))
                params[(i, t)] = mod

    n_ex = len([k for k in dump if k.startswith("tokens.")])
    total = sum(int(dump[f"mask.{k}"][1:].sum()) for k in range(n_ex))
    loss = torch.zeros((), dtype=next(model.parameters()).dtype)
    for k in range(n_ex):
        ids = torch.from_numpy(dump[f"tokens.{k}"].astype(np.int64))[None, :]
        mask = torch.from_numpy(dump[f"mask.{k}"].astype(bool))
        logits = model(input_ids=ids).logits[0]
        logp = torch.log_softmax(logits[:-1], dim=-1)
        tgt = ids[0, 1:]
        nll = -logp.gather(1, tgt[:, None])[:, 0]
        loss = loss + (nll * mask[1:].float()).sum()
    loss = loss / total
    loss.backward()

    out = {"loss": np.array([loss.item()], dtype=np.float64)}
    for (i, t), mod in params.items():
        ga = mod.lora_A["default"].weight.grad.numpy()
        gb = mod.lora_B["default"].weight.grad.numpy()
        if permuted and t in ("attn_q", "attn_k"):
            gb = permute(gb, n_head if t == "attn_q" else n_kv)
        out[f"blk.{i}.{t}.weight.lora_a"] = np.ascontiguousarray(ga, dtype=np.float32)
        out[f"blk.{i}.{t}.weight.lora_b"] = np.ascontiguousarray(gb, dtype=np.float32)
    save_file(out, out_path)
    print(f"reference: loss {loss.item():.6f} over {total} answer tokens, {len(params)} adapted layers")


if __name__ == "__main__":
    main()
