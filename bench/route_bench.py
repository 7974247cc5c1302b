#!/usr/bin/env python3
"""Routing overhead: throughput through a route vs calling the local backend directly.

One `bantam serve` with a rules route `auto` (every prompt here goes to its default,
the local SmolLM2) and the cost ledger on, plus one with the ledger off. Rounds are
interleaved: route → direct → direct without ledger, each round N requests at
concurrency C (greedy, fixed max_tokens). Reports requests/s medians and ratios.

With `--learned ROUTER.json` (from `bantam router train`) the first server also has a
learned route `learned` over two backends that are both the local SmolLM2 (so every
decision, local or escalate, costs the same answer) and each round adds requests
through it.

    python3 bench/route_bench.py --rounds 5 [--learned router.json] [--home /tmp/bh] [--bantam target/release/bantam]
"""
import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import tempfile
import threading
import time


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


CONFIG = """
[[backends]]
name = "smollm2:135m"
type = "local"
model = "smollm2:135m"

[[backends]]
name = "large"
type = "openai"
model = "unused"
base_url = "http://127.0.0.1:9/v1"
price = {{ input_per_1m = 0.15, output_per_1m = 0.6 }}

[[routes]]
name = "auto"
backends = ["smollm2:135m", "large"]
[[routes.rules]]
backend = "large"
keywords = ["contract", "diagnosis", "regulation"]
[[routes.rules]]
backend = "large"
tools = true

[usage]
enabled = {ledger}
path = "{db}"
"""

LEARNED = """
[[backends]]
name = "smollm2-b"
type = "local"
model = "smollm2:135m"

[[routes]]
name = "learned"
policy = "learned"
backends = ["smollm2:135m", "smollm2-b"]
learned = {{ model = "{router}", local = "smollm2:135m", escalate = "smollm2-b" }}
"""


class Server:
    def __init__(self, args, ledger, tmp):
        self.port = free_port()
        cfg = os.path.join(tmp, f"cfg-{ledger}.toml")
        with open(cfg, "w") as f:
            f.write(CONFIG.format(ledger=str(ledger).lower(), db=os.path.join(tmp, "usage.db")))
            if ledger and args.learned:
                f.write(LEARNED.format(router=os.path.abspath(args.learned)))
        env = dict(os.environ, BANTAM_HOME=args.home)
        self.p = subprocess.Popen(
            [args.bantam, "serve", "--config", cfg, "--port", str(self.port), "--parallel", str(args.parallel),
             "--threads", str(args.threads), "--keep-alive", "0", "--preload", "smollm2:135m"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        for line in self.p.stdout:
            if "listening" in line:
                break

    def close(self):
        self.p.terminate()
        self.p.wait()


def one(port, model, i, max_tokens):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    body = json.dumps({"model": model, "temperature": 0, "max_tokens": max_tokens,
                       "messages": [{"role": "user", "content": f"Give me tip number {i} for a tidy desk."}]})
    c.request("POST", "/v1/chat/completions", body, {"content-type": "application/json"})
    r = c.getresponse()
    data = json.loads(r.read())
    assert r.status == 200, data
    return data["usage"]["completion_tokens"]


def round_rps(port, model, n, conc, max_tokens, seed):
    idx = iter(range(seed, seed + n))
    lock = threading.Lock()

    def worker():
        while True:
            with lock:
                i = next(idx, None)
            if i is None:
                return
            one(port, model, i, max_tokens)

    t = time.perf_counter()
    ts = [threading.Thread(target=worker) for _ in range(conc)]
    [x.start() for x in ts]
    [x.join() for x in ts]
    return n / (time.perf_counter() - t)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bantam", default="target/release/bantam")
    ap.add_argument("--home", default=os.environ.get("BANTAM_HOME", os.path.expanduser("~/.bantam")))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--parallel", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-tokens", type=int, default=16)
    ap.add_argument("--learned", help="a router model: also measure a learned route")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        on, off = Server(args, True, tmp), Server(args, False, tmp)
        try:
            # Warm both (first load, prefix cache of the chat template).
            round_rps(on.port, "auto", 8, args.concurrency, args.max_tokens, 10_000)
            round_rps(off.port, "smollm2:135m", 8, args.concurrency, args.max_tokens, 10_000)
            if args.learned:
                round_rps(on.port, "learned", 8, args.concurrency, args.max_tokens, 10_000)
            res = {"route": [], "direct": [], "direct_no_ledger": []}
            if args.learned:
                res["learned_route"] = []
            for r in range(args.rounds):
                seed = r * 1000
                res["route"].append(round_rps(on.port, "auto", args.n, args.concurrency, args.max_tokens, seed))
                res["direct"].append(round_rps(on.port, "smollm2:135m", args.n, args.concurrency, args.max_tokens, seed))
                res["direct_no_ledger"].append(
                    round_rps(off.port, "smollm2:135m", args.n, args.concurrency, args.max_tokens, seed))
                if args.learned:
                    res["learned_route"].append(
                        round_rps(on.port, "learned", args.n, args.concurrency, args.max_tokens, seed))
                print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.2f} req/s" for k, v in res.items()), flush=True)
        finally:
            on.close()
            off.close()
    med = {k: statistics.median(v) for k, v in res.items()}
    print()
    print(f"| mode | req/s (median of {args.rounds}) | vs direct |")
    print("|---|---:|---:|")
    for k in res:
        print(f"| {k} | {med[k]:.2f} | {med[k] / med['direct']:.3f} |")


if __name__ == "__main__":
    main()
