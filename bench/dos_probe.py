#!/usr/bin/env python3
"""Requests that used to stall `bantam serve` (issue 15), with another client polling
/health every 50 ms meanwhile: each case's status codes and wall time, and /health's
latency while it ran.

    bantam serve --port 8126 &
    python3 bench/dos_probe.py http://127.0.0.1:8126
"""
import json, sys, threading, time, urllib.request, urllib.error, statistics
base = sys.argv[1]
def post(path, body, timeout=600):
    req = urllib.request.Request(base + path, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    t = time.time()
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, time.time() - t
    except urllib.error.HTTPError as e:
        return e.code, time.time() - t
    except Exception as e:
        return repr(e)[:80], time.time() - t
def health_probe(stop, out):
    while not stop.is_set():
        t = time.time()
        try:
            urllib.request.urlopen(base + "/health", timeout=60).read()
            out.append(time.time() - t)
        except Exception:
            out.append(60.0)
        time.sleep(0.05)
def run(name, bodies):
    stop = threading.Event(); lat = []
    h = threading.Thread(target=health_probe, args=(stop, lat)); h.start()
    res = [None] * len(bodies)
    def one(i, path, b): res[i] = post(path, b)
    ts = [threading.Thread(target=one, args=(i, p, b)) for i, (p, b) in enumerate(bodies)]
    t0 = time.time()
    for t in ts: t.start()
    for t in ts: t.join()
    wall = time.time() - t0
    stop.set(); h.join()
    lat.sort()
    p99 = lat[min(len(lat) - 1, int(0.99 * len(lat)))] if lat else None
    print(f"{name:45} results {[r[0] for r in res]} wall {wall:5.2f}s  /health n={len(lat)} p50 {statistics.median(lat)*1000:.1f} ms p99 {p99*1000:.1f} ms max {lat[-1]*1000:.1f} ms", flush=True)
msgs = lambda n: [{"role": "user" if i % 2 == 0 else "assistant", "content": f"m{i}"} for i in range(n)]
M = "smollm2:135m"
run("warm-up chat", [("/v1/chat/completions", {"model": M, "messages": msgs(1), "max_tokens": 2})])
run("2 x 4000 messages", [("/v1/chat/completions", {"model": M, "messages": msgs(4000), "max_tokens": 2})] * 2)
run("2 x 100k messages (refused)", [("/v1/chat/completions", {"model": M, "messages": msgs(100000), "max_tokens": 2})] * 2)
run("20 MB summarize", [("/v1/summarize", {"model": M, "input": "Some words here. " * 1200000})])
run("2 MB completion prompt", [("/v1/completions", {"model": M, "prompt": "word " * 400000, "max_tokens": 2})])
