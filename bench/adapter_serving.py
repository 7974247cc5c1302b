#!/usr/bin/env python3
"""Adapters served beside their base: what a context per adapter costs.

    python3 bench/adapter_serving.py URL BASE ADAPTER_A ADAPTER_B [requests_per_model] [max_tokens]

Sends the same greedy chat requests (all at once) two ways and reports wall time
and tokens/s: (1) 3×N requests to the base alone — one engine, its parallel slots
decoding together; (2) N each to the base and two adapters — three engines (one
context each, the weights shared), each decoding its own requests. The ratio is
what serving adapters side by side costs against batching the same load on one model.
"""
import json
import sys
import threading
import time
import urllib.request

url, base, a, b = sys.argv[1:5]
n = int(sys.argv[5]) if len(sys.argv) > 5 else 2
max_tokens = int(sys.argv[6]) if len(sys.argv) > 6 else 64
QUESTIONS = ["What is the largest ocean?", "How do I bake bread?", "Explain gravity.",
             "Who wrote Hamlet?", "Why is the sky blue?", "Name a famous painter."]


def ask(model, q, out, i):
    body = json.dumps({"model": model, "temperature": 0, "max_tokens": max_tokens,
                       "messages": [{"role": "user", "content": q}]}).encode()
    req = urllib.request.Request(url + "/v1/chat/completions", body, {"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as r:
        out[i] = json.load(r)["usage"]["completion_tokens"]


def run(models):
    out = [0] * len(models)
    ts = [threading.Thread(target=ask, args=(m, QUESTIONS[i % len(QUESTIONS)], out, i)) for i, m in enumerate(models)]
    t = time.time()
    for th in ts:
        th.start()
    for th in ts:
        th.join()
    return time.time() - t, sum(out)


# Warm: load every engine once.
run([base, a, b])
for label, models in (("base only", [base] * (3 * n)), ("base + 2 adapters", [base, a, b] * n)):
    secs, toks = run(models)
    print(f"| {label} | {len(models)} | {toks} | {secs:.2f} | {toks / secs:.1f} |")
