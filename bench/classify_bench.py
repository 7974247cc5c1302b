#!/usr/bin/env python3
"""Classification throughput: Bantam's `POST /v1/classify` vs one chat completion per
query through llama.cpp's `llama-server`, on BANKING77 (77 intent labels).

    bash bench/build-llama-server.sh          # once: builds the reference
    python3 bench/classify_bench.py --model-path ~/models/smollm2-135m.gguf

Both servers load the same GGUF file with the same threads and flash-attention
setting. Bantam is given the file path as the model name (`--preload PATH`; requests
use the same path). Bantam gets the texts in batches of --batch with the label list
and answers with a label per text; it is timed once with the batches sent one after
another and once with --concurrency batches in flight. llama-server gets one
`/v1/chat/completions` per text (temperature 0, max_tokens 16, a system prompt
listing every label), --concurrency requests in flight; its answer is normalised
(first line, lower case, outer punctuation and quotes stripped, spaces to
underscores) and compared with the expected category normalised the same way.

Prints a markdown table (method, items, seconds, items/s, accuracy) and the
Bantam/llama-server items/s ratios. Only the Python standard library is used.
"""

import argparse
import csv
import http.client
import json
import os
import queue
import socket
import string
import subprocess
import sys
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def post_json(port, path, body, timeout=600):
    """POST JSON, return the decoded JSON answer; retries while a server answers 503 (loading)."""
    payload = json.dumps(body)
    while True:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        try:
            conn.request("POST", path, payload, {"Content-Type": "application/json"})
            resp = conn.getresponse()
            data = resp.read()
        finally:
            conn.close()
        if resp.status == 503:
            time.sleep(0.05)
            continue
        if resp.status != 200:
            raise RuntimeError(f"POST {path}: HTTP {resp.status} {data[:300]!r}")
        return json.loads(data)


class Server:
    """One server process: `bantam serve` or `llama-server` on the same GGUF."""

    def __init__(self, kind, args, port):
        self.kind, self.port = kind, port
        if kind == "bantam":
            cmd = [args.bantam, "serve", "--port", str(port), "--parallel", str(args.bantam_parallel),
                   "--threads", str(args.threads), "--ctx-size", str(args.ctx), "--keep-alive", "0",
                   "--flash-attention", args.fa, "--preload", args.gguf]
            env = dict(os.environ, BANTAM_HOME=args.home)
            # A path ending in .gguf is a model name for Bantam's resolver.
            self.model = args.gguf
        else:
            cmd = [args.llama_server, "-m", args.gguf, "--port", str(port), "-t", str(args.threads),
                   "-tb", str(args.threads), "-np", str(args.concurrency), "-c", str(args.ctx * args.concurrency),
                   "-fa", args.fa, "--no-webui"]
            # Its shared libraries and CPU variants sit next to it.
            env = dict(os.environ, LD_LIBRARY_PATH=os.path.dirname(os.path.abspath(args.llama_server)))
            self.model = "model"
        self.log = open(os.path.join(args.log_dir, f"{kind}.log"), "wb") if args.log_dir else subprocess.DEVNULL
        self.proc = subprocess.Popen(cmd, env=env, stdout=self.log, stderr=self.log)

    def wait_ready(self, limit=600):
        """Wait for the port, then for /health to answer 200 (llama-server: 503 while loading;
        Bantam: accepts connections while it preloads, answers once the model is in)."""
        deadline = time.monotonic() + limit
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.kind} exited with {self.proc.returncode}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.kind} not ready after {limit}s")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=max(1.0, deadline - time.monotonic()))
                conn.request("GET", "/health")
                resp = conn.getresponse()
                resp.read()
                conn.close()
                if resp.status == 200:
                    return
            except (OSError, http.client.HTTPException):
                pass
            time.sleep(0.05)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.log is not subprocess.DEVNULL:
            self.log.close()


def load_data(path, n, spread):
    with open(path, newline="") as f:
        rows = [(r["text"], r["category"]) for r in csv.DictReader(f)]
    labels = sorted({c for _, c in rows})
    if spread and n < len(rows):
        # Evenly spaced rows: the file is grouped by category, so its first rows cover few labels.
        rows = [rows[i * len(rows) // n] for i in range(n)]
    else:
        rows = rows[:n]
    return rows, labels


def run_pool(n_workers, jobs, work):
    """Run work(job) for every job on n_workers threads; returns (results in job order, seconds)."""
    q = queue.Queue()
    for i, job in enumerate(jobs):
        q.put((i, job))
    results = [None] * len(jobs)
    errors = []

    def worker():
        while not errors:
            try:
                i, job = q.get_nowait()
            except queue.Empty:
                return
            try:
                results[i] = work(job)
            except Exception as e:  # noqa: BLE001 - reported after the run
                errors.append(e)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(max(1, n_workers))]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    secs = time.perf_counter() - t0
    if errors:
        raise errors[0]
    return results, secs


# ---------------------------------------------------------------- Bantam

def classify_batch(server, labels, texts):
    r = post_json(server.port, "/v1/classify", {"model": server.model, "input": texts, "labels": labels})
    data = sorted(r["data"], key=lambda d: d["index"])
    if [d["index"] for d in data] != list(range(len(texts))):
        raise RuntimeError(f"/v1/classify: expected indices 0..{len(texts) - 1}, got {[d['index'] for d in data]}")
    for d in data:
        if d["label"] not in labels:
            raise RuntimeError(f"/v1/classify: label {d['label']!r} is not one of the labels sent")
    return [d["label"] for d in data], r.get("usage", {})


def bench_bantam(args, rows, labels):
    texts = [t for t, _ in rows]
    batches = [texts[i:i + args.batch] for i in range(0, len(texts), args.batch)]
    out = []
    s = Server("bantam", args, free_port())
    try:
        t0 = time.perf_counter()
        s.wait_ready()
        load_s = time.perf_counter() - t0
        classify_batch(s, labels, texts[:1])  # warm-up
        for workers, mode in ((1, "sequential"), (args.concurrency, f"{args.concurrency} concurrent")):
            results, secs = run_pool(workers, batches, lambda b: classify_batch(s, labels, b))
            predicted = [label for labels_, _ in results for label in labels_]
            usage = {}
            for _, u in results:
                for k, v in u.items():
                    if isinstance(v, (int, float)):
                        usage[k] = usage.get(k, 0) + v
            correct = sum(p == c for p, (_, c) in zip(predicted, rows))
            out.append({
                "method": f"bantam /v1/classify, batch {args.batch}, {mode}",
                "server": "bantam", "concurrency": workers, "items": len(rows), "seconds": secs,
                "items_per_s": len(rows) / secs, "accuracy": correct / len(rows), "usage": usage,
                "load_s": load_s,
            })
            print(f"{out[-1]['method']}: {secs:.2f}s, accuracy {correct}/{len(rows)}", file=sys.stderr)
    finally:
        s.stop()
    return out


# ---------------------------------------------------------------- llama-server

STRIP = string.punctuation.replace("_", "") + string.whitespace + "\u201c\u201d\u2018\u2019`\u00ab\u00bb"


def normalise(answer):
    text = answer.strip().lower()
    text = text.splitlines()[0] if text else ""
    text = text.strip(STRIP)
    return "_".join(text.replace("-", " ").split())


def chat_one(server, system, text):
    r = post_json(server.port, "/v1/chat/completions", {
        "model": server.model,
        "messages": [{"role": "system", "content": system}, {"role": "user", "content": text}],
        "temperature": 0,
        "max_tokens": 16,
    })
    return r["choices"][0]["message"].get("content") or "", r.get("usage", {})


def bench_llama(args, rows, labels):
    system = ("Classify the customer message into exactly one of these labels: " + ", ".join(labels)
              + ". Answer with the label only.")
    s = Server("llama-server", args, free_port())
    try:
        t0 = time.perf_counter()
        s.wait_ready()
        load_s = time.perf_counter() - t0
        chat_one(s, system, rows[0][0])  # warm-up (also caches the system prompt in one slot)
        results, secs = run_pool(args.concurrency, [t for t, _ in rows], lambda t: chat_one(s, system, t))
    finally:
        s.stop()
    known = {normalise(l) for l in labels}
    answers = [normalise(a) for a, _ in results]
    correct = sum(a == normalise(c) for a, (_, c) in zip(answers, rows))
    usage = {}
    for _, u in results:
        for k, v in u.items():
            if isinstance(v, (int, float)):
                usage[k] = usage.get(k, 0) + v
    res = {
        "method": f"llama-server chat/completions, 1 per item, {args.concurrency} concurrent",
        "server": "llama-server", "concurrency": args.concurrency, "items": len(rows), "seconds": secs,
        "items_per_s": len(rows) / secs, "accuracy": correct / len(rows), "usage": usage, "load_s": load_s,
        "not_a_label": sum(a not in known for a in answers),
        "sample_answers": [a for a, _ in results[:5]],
    }
    print(f"{res['method']}: {secs:.2f}s, accuracy {correct}/{len(rows)}, {res['not_a_label']} answers not a label",
          file=sys.stderr)
    return [res]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-path", required=True, help="GGUF file served by both servers")
    ap.add_argument("--bantam", default=os.path.join(os.environ.get("CARGO_TARGET_DIR", "target"), "release", "bantam"))
    ap.add_argument("--llama-server", default=os.path.expanduser("~/.cache/bantam-bench/llama-server/bin/llama-server"))
    ap.add_argument("--home", default=os.environ.get("BANTAM_HOME", os.path.expanduser("~/.bantam")),
                    help="BANTAM_HOME for `bantam serve` (the GGUF is not imported into it)")
    ap.add_argument("--data", default=os.path.normpath(os.path.join(REPO, "..", "shared", "data", "banking77", "banking77_test.csv")))
    ap.add_argument("--n", type=int, default=500, help="items: the first N rows of the CSV")
    ap.add_argument("--spread", action="store_true", help="take N evenly spaced rows instead of the first N "
                    "(the file is grouped by category, so the first 500 rows cover 13 of the 77 labels)")
    ap.add_argument("--batch", type=int, default=16, help="texts per /v1/classify request")
    ap.add_argument("--concurrency", type=int, default=4, help="requests in flight (and llama-server slots)")
    ap.add_argument("--bantam-parallel", type=int, help="`bantam serve --parallel` (default: --concurrency)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ctx", type=int, default=4096, help="context per slot")
    ap.add_argument("--fa", choices=["on", "off"], default="off", help="flash attention for both servers")
    ap.add_argument("--only", choices=["bantam", "llama-server"], help="run one server only")
    ap.add_argument("--log-dir", help="write each server's stdout/stderr here")
    ap.add_argument("--json-out", help="also write the results here")
    args = ap.parse_args()
    args.gguf = os.path.abspath(os.path.expanduser(args.model_path))
    if not args.gguf.endswith(".gguf") or not os.path.isfile(args.gguf):
        # Bantam takes a path as a model name only when it ends in .gguf and is a file.
        ap.error(f"--model-path must be an existing .gguf file: {args.gguf}")
    if args.bantam_parallel is None:
        args.bantam_parallel = args.concurrency
    if args.log_dir:
        os.makedirs(args.log_dir, exist_ok=True)
    rows, labels = load_data(args.data, args.n, args.spread)
    print(f"{len(rows)} items, {len(set(c for _, c in rows))} distinct categories, {len(labels)} labels", file=sys.stderr)

    results = []
    if args.only in (None, "bantam"):
        results += bench_bantam(args, rows, labels)
    if args.only in (None, "llama-server"):
        results += bench_llama(args, rows, labels)

    print(f"\nModel {os.path.basename(args.gguf)}, {args.threads} threads, flash attention {args.fa}, "
          f"{len(rows)} BANKING77 items, {len(labels)} labels\n")
    print("| method | items | seconds | items/s | accuracy |")
    print("|---|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['method']} | {r['items']} | {r['seconds']:.2f} | {r['items_per_s']:.2f} | {r['accuracy']:.1%} |")
    ratios = {}
    llama = [r for r in results if r["server"] == "llama-server"]
    if llama:
        print()
        for r in results:
            if r["server"] == "bantam":
                ratios[r["method"]] = r["items_per_s"] / llama[0]["items_per_s"]
                print(f"bantam/llama-server items/s ({r['method']}): {ratios[r['method']]:.2f}x")
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump({"args": vars(args), "labels": len(labels), "results": results, "ratios": ratios}, f, indent=1)


if __name__ == "__main__":
    main()
