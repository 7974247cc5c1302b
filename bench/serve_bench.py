#!/usr/bin/env python3
"""Side-by-side serving benchmark: `bantam serve` vs llama.cpp's `llama-server`.

Same GGUF, same threads, same slots and context per slot, interleaved rounds,
medians reported with Bantam/llama-server ratios. Only the Python standard library
is used, so the client costs the same for both servers.

    bash bench/build-llama-server.sh          # once: builds the reference
    python3 bench/serve_bench.py --rounds 3   # prints a markdown table
    python3 bench/serve_bench.py --baseline OLD/bantam   # against an earlier build instead

Metrics (each round starts both servers from scratch):
  cold_start_s     process start -> first streamed token of a short request
  prefill_tok_s    prompt tokens / time to first token, 512-token prompts never seen before
  decode_tok_s     single stream, tokens 2..N of a 128-token answer / their time
  ttft_short_ms    time to first token of a short chat-sized prompt (fresh)
  ttft_chat_ms     time to first content token of a short chat message (fresh, through
                   the model's chat template)
  agg8_tok_s       8 concurrent streams x 128 tokens: all tokens / wall time
  ttft_prefix_ms   time to first token when a 500-token prefix was seen before
"""

import argparse
import http.client
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import threading
import time

WORDS = (
    "time person year way day thing man world life hand part child eye woman place work week case point "
    "government company number group problem fact river mountain city ocean forest garden window kitchen "
    "market school doctor teacher engine signal report system memory network machine answer question"
).split()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def text_of(n_words, seed):
    rnd = random.Random(seed)
    return " ".join(rnd.choice(WORDS) for _ in range(n_words))


class Server:
    def __init__(self, kind, args, port):
        self.kind, self.port = kind, port
        if kind in ("bantam", "baseline"):
            binary = args.bantam if kind == "bantam" else args.baseline
            cmd = [binary, "serve", "--port", str(port), "--parallel", str(args.parallel), "--threads", str(args.threads),
                   "--ctx-size", str(args.ctx), "--keep-alive", "0", "--flash-attention", args.fa]
            env = dict(os.environ, BANTAM_HOME=args.home)
            self.model = args.model
        else:
            cmd = [args.llama_server, "-m", args.gguf, "--port", str(port), "-t", str(args.threads), "-tb", str(args.threads),
                   "-np", str(args.parallel), "-c", str(args.ctx * args.parallel), "-fa", args.fa, "--no-webui"]
            # Its shared libraries and CPU variants sit next to it.
            env = dict(os.environ, LD_LIBRARY_PATH=os.path.dirname(os.path.abspath(args.llama_server)))
            self.model = "model"
        self.t0 = time.perf_counter()
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def wait_port(self):
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.05).close()
                return
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"{self.kind} exited with {self.proc.returncode}")
                time.sleep(0.005)

    def stream(self, prompt, max_tokens, timeout=600):
        """Stream a completion; returns (t_send, [t_token...], usage)."""
        body = {"model": self.model, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0,
                "stream": True, "ignore_eos": True, "stream_options": {"include_usage": True}}
        return self._stream("/v1/completions", body, timeout)

    def chat(self, user, max_tokens, timeout=600):
        """Stream a chat completion of one user message (the model's chat template
        around it); returns (t_send, [t_content_chunk...], usage)."""
        body = {"model": self.model, "messages": [{"role": "user", "content": user}], "max_tokens": max_tokens,
                "temperature": 0, "stream": True, "ignore_eos": True, "stream_options": {"include_usage": True}}
        return self._stream("/v1/chat/completions", body, timeout)

    def _stream(self, path, body, timeout):
        while True:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
            t_send = time.perf_counter()
            conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
            resp = conn.getresponse()
            if resp.status == 503:  # llama-server still loading
                resp.read()
                conn.close()
                time.sleep(0.005)
                continue
            if resp.status != 200:
                raise RuntimeError(f"{self.kind}: HTTP {resp.status} {resp.read()[:200]!r}")
            break
        times, usage = [], None
        for raw in resp:
            line = raw.decode().strip()
            if not line.startswith("data: "):
                continue
            data = line[6:]
            if data == "[DONE]":
                break
            chunk = json.loads(data)
            if chunk.get("usage"):
                usage = chunk["usage"]
            for ch in chunk.get("choices", []):
                if ch.get("text") or (ch.get("delta") or {}).get("content"):
                    times.append(time.perf_counter())
        conn.close()
        return t_send, times, usage

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def measure(kind, args, rnd):
    port = free_port()
    s = Server(kind, args, port)
    out = {}
    try:
        s.wait_port()
        _, times, _ = s.stream("Hello, my name is", 4)
        out["cold_start_s"] = times[0] - s.t0
        # Prefill: fresh 512-token prompts (random words never repeat a prefix).
        vals = []
        for i in range(3):
            prompt = text_of(480, seed=rnd * 1000 + i)
            t, times, usage = s.stream(prompt, 1)
            vals.append(usage["prompt_tokens"] / (times[0] - t))
        out["prefill_tok_s"] = statistics.median(vals)
        out["prompt_tokens"] = usage["prompt_tokens"]
        # Single-stream decode.
        vals = []
        for i in range(3):
            _, times, _ = s.stream(text_of(8, seed=rnd * 1000 + 100 + i), args.tokens)
            vals.append((len(times) - 1) / (times[-1] - times[0]))
        out["decode_tok_s"] = statistics.median(vals)
        # Short-prompt TTFT.
        vals = []
        for i in range(5):
            t, times, _ = s.stream(text_of(30, seed=rnd * 1000 + 200 + i), 1)
            vals.append((times[0] - t) * 1000)
        out["ttft_short_ms"] = statistics.median(vals)
        # Short chat TTFT: a fresh user message inside the model's chat template.
        vals = []
        for i in range(5):
            t, times, _ = s.chat(text_of(20, seed=rnd * 1000 + 250 + i), 1)
            vals.append((times[0] - t) * 1000)
        out["ttft_chat_ms"] = statistics.median(vals)
        # Aggregate over 8 concurrent streams.
        results = [None] * 8

        def one(i):
            results[i] = s.stream(text_of(12, seed=rnd * 1000 + 300 + i), args.tokens)

        t0 = time.perf_counter()
        threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        wall = time.perf_counter() - t0
        out["agg8_tok_s"] = sum(len(r[1]) for r in results) / wall
        # Shared 500-token prefix: warm once, then new questions after it.
        prefix = text_of(470, seed=rnd * 1000 + 400)
        s.stream(prefix + " Question: what is first?", 1)
        vals = []
        for i in range(3):
            t, times, _ = s.stream(prefix + f" Question: {text_of(6, seed=rnd * 1000 + 500 + i)}?", 1)
            vals.append((times[0] - t) * 1000)
        out["ttft_prefix_ms"] = statistics.median(vals)
    finally:
        s.stop()
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bantam", default=os.path.join(os.environ.get("CARGO_TARGET_DIR", "target"), "release", "bantam"))
    ap.add_argument("--llama-server", default=os.path.expanduser("~/.cache/bantam-bench/llama-server/bin/llama-server"))
    ap.add_argument("--home", default=os.environ.get("BANTAM_HOME", os.path.expanduser("~/.bantam")))
    ap.add_argument("--model", default="smollm2:135m")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--parallel", type=int, default=8)
    ap.add_argument("--ctx", type=int, default=4096, help="context per slot")
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--fa", choices=["on", "off"], help="flash attention for both servers (default: the model's stored choice)")
    ap.add_argument("--json", help="also write raw results here")
    ap.add_argument("--baseline", help="compare with this (earlier) bantam binary instead of llama-server")
    args = ap.parse_args()
    show = subprocess.run([args.bantam, "show", args.model, "--json"], env=dict(os.environ, BANTAM_HOME=args.home),
                          capture_output=True, text=True, check=True)
    manifest = json.loads(show.stdout)
    digest = manifest["digest"].split(":")[1]
    args.fa = args.fa or manifest.get("options", {}).get("flash_attention", "off")
    args.gguf = os.path.join(args.home, "blobs", f"sha256-{digest}")
    ref = "baseline" if args.baseline else "llama-server"
    runs = {"bantam": [], ref: []}
    for r in range(args.rounds):
        order = ["bantam", ref] if r % 2 == 0 else [ref, "bantam"]
        for kind in order:
            res = measure(kind, args, r)
            runs[kind].append(res)
            print(f"round {r + 1} {kind}: " + ", ".join(f"{k}={v:.3g}" for k, v in res.items()), file=sys.stderr)
    metrics = [
        ("prefill_tok_s", "prefill tok/s (512-token prompt)", True),
        ("decode_tok_s", f"decode tok/s (1 stream, {args.tokens} tokens)", True),
        ("ttft_short_ms", "time to first token, short prompt (ms)", False),
        ("ttft_chat_ms", "time to first token, short chat message (ms)", False),
        ("agg8_tok_s", f"aggregate tok/s, 8 streams x {args.tokens}", True),
        ("ttft_prefix_ms", "TTFT with a cached 500-token prefix (ms)", False),
        ("cold_start_s", "cold start: process start -> first token (s)", False),
    ]
    med = {k: {m: statistics.median(x[m] for x in v) for m, _, _ in metrics} for k, v in runs.items()}
    print(f"\nModel {args.model}, {args.threads} threads, {args.parallel} slots x {args.ctx} ctx, flash attention {args.fa}, {args.rounds} interleaved rounds (medians)\n")
    print(f"| metric | bantam | {ref} | ratio (higher is better for Bantam) |")
    print("|---|---:|---:|---:|")
    for m, label, higher in metrics:
        b, l = med["bantam"][m], med[ref][m]
        ratio = b / l if higher else l / b
        print(f"| {label} | {b:.3g} | {l:.3g} | {ratio:.2f}x |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": {k: v for k, v in vars(args).items()}, "runs": runs, "medians": med}, f, indent=1)


if __name__ == "__main__":
    main()
