#!/usr/bin/env python3
"""A mixed load against `bantam serve`: C clients for D seconds, each sending chat
(plain and streamed), completions, classifications, embeddings and a share of bad
requests, as fast as answers come. Reports requests by status, latency percentiles
per kind, whether every 429/503 carried Retry-After, and the server's RSS over time
(from /proc, so run it on the server's machine).

    bantam serve --port 8127 &
    python3 bench/load.py --url http://127.0.0.1:8127 --pid $! --clients 32 --seconds 300
"""
import argparse
import collections
import json
import random
import statistics
import threading
import time
import urllib.error
import urllib.request

M = "smollm2:135m"
E = "all-minilm:l6-v2"
BAD = [
    ("/v1/chat/completions", b"{not json"),
    ("/v1/chat/completions", json.dumps({"model": M, "messages": [], "max_tokens": 4}).encode()),
    ("/v1/chat/completions", json.dumps({"model": M, "messages": [{"role": "user", "content": "x"}], "temperature": 9}).encode()),
    ("/v1/chat/completions", json.dumps({"model": "nope:1", "messages": [{"role": "user", "content": "x"}]}).encode()),
    ("/v1/chat/completions", json.dumps({"model": M, "messages": [{"role": "user", "content": "x"}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": {"$ref": "#"}}}}).encode()),
    ("/v1/embeddings", json.dumps({"model": E, "input": [[-1]]}).encode()),
    ("/v1/classify", json.dumps({"model": M, "input": "x", "labels": ["only"]}).encode()),
]


def request(base, kind, rnd):
    q = f"Question {rnd.randint(0, 10**6)}: what is {rnd.randint(1, 99)} plus {rnd.randint(1, 99)}?"
    if kind == "chat":
        return "/v1/chat/completions", {"model": M, "messages": [{"role": "user", "content": q}], "max_tokens": 16, "temperature": 0}
    if kind == "stream":
        return "/v1/chat/completions", {"model": M, "messages": [{"role": "user", "content": q}], "max_tokens": 16, "stream": True}
    if kind == "completion":
        return "/v1/completions", {"model": M, "prompt": q, "max_tokens": 8}
    if kind == "classify":
        return "/v1/classify", {"model": M, "input": q, "labels": ["math", "weather", "other"]}
    if kind == "embed":
        return "/v1/embeddings", {"model": E, "input": [q, "another text"]}
    raise ValueError(kind)


def client(base, deadline, seed, out, lock):
    rnd = random.Random(seed)
    kinds = ["chat", "stream", "completion", "classify", "embed", "bad"]
    weights = [30, 20, 15, 15, 10, 10]
    while time.time() < deadline:
        kind = rnd.choices(kinds, weights)[0]
        if kind == "bad":
            path, data = rnd.choice(BAD)
        else:
            path, body = request(base, kind, rnd)
            data = json.dumps(body).encode()
        req = urllib.request.Request(base + path, data=data, headers={"Content-Type": "application/json"})
        t = time.time()
        status, retry = None, None
        try:
            with urllib.request.urlopen(req, timeout=300) as r:
                r.read()
                status = r.status
        except urllib.error.HTTPError as e:
            e.read()
            status, retry = e.code, e.headers.get("Retry-After")
        except Exception as e:  # connection errors count as failures
            status = f"error: {type(e).__name__}"
        with lock:
            out.append((kind, status, time.time() - t, retry))


def rss_kb(pid):
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", required=True)
    ap.add_argument("--pid", type=int, help="the server's pid (RSS over time)")
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--seconds", type=int, default=300)
    args = ap.parse_args()
    out, lock = [], threading.Lock()
    deadline = time.time() + args.seconds
    threads = [threading.Thread(target=client, args=(args.url, deadline, i, out, lock)) for i in range(args.clients)]
    for t in threads:
        t.start()
    rss = []
    while any(t.is_alive() for t in threads):
        if args.pid:
            rss.append((round(args.seconds - (deadline - time.time())), rss_kb(args.pid)))
        time.sleep(10)
    for t in threads:
        t.join()
    by_status = collections.Counter(s for _, s, _, _ in out)
    print(f"{len(out)} requests from {args.clients} clients in {args.seconds} s: " + ", ".join(f"{k}: {v}" for k, v in sorted(by_status.items(), key=str)))
    limited = [r for _, s, _, r in out if s in (429, 503)]
    print(f"429/503 with Retry-After: {sum(1 for r in limited if r)} of {len(limited)}")
    print("| kind | requests | 2xx | 4xx | 5xx/errors | p50 s | p99 s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for kind in ["chat", "stream", "completion", "classify", "embed", "bad"]:
        rows = [(s, d) for k, s, d, _ in out if k == kind]
        if not rows:
            continue
        ok = sum(1 for s, _ in rows if isinstance(s, int) and s < 300)
        c4 = sum(1 for s, _ in rows if isinstance(s, int) and 400 <= s < 500)
        bad = len(rows) - ok - c4
        ds = sorted(d for _, d in rows)
        print(f"| {kind} | {len(rows)} | {ok} | {c4} | {bad} | {statistics.median(ds):.2f} | {ds[int(0.99 * (len(ds) - 1))]:.2f} |")
    if rss:
        print("RSS MB over time: " + ", ".join(f"{t}s {kb / 1024:.0f}" for t, kb in rss if kb))


if __name__ == "__main__":
    main()
