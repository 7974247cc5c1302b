#!/usr/bin/env python3
"""What `per_second` pricing charges a local model: engine time vs wall time.

Starts `bantam serve --parallel 4` with SmolLM2, sends 2×C chat requests at
concurrency C (C = 1, then 4) and compares, per run: the elapsed time of the whole
run (what the machine was actually busy for), the sum of the requests' latencies
(what charging each request its wall-clock time would bill), and the sum of
`usage.compute_ms` (what Bantam bills: each request's share of the batched steps).

    python3 bench/compute_share.py [--home /tmp/bh] [--bantam target/release/bantam]
"""
import argparse
import concurrent.futures as cf
import json
import os
import socket
import subprocess
import time
import urllib.request


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--home", default=os.environ.get("BANTAM_HOME"))
    ap.add_argument("--bantam", default="target/release/bantam")
    ap.add_argument("--model", default="smollm2:135m")
    ap.add_argument("--max-tokens", type=int, default=48)
    a = ap.parse_args()
    port = free_port()
    env = dict(os.environ)
    if a.home:
        env["BANTAM_HOME"] = a.home
    srv = subprocess.Popen(
        [a.bantam, "serve", "--port", str(port), "--parallel", "4", "--preload", a.model],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except Exception:
                time.sleep(0.2)

        def ask(i):
            body = json.dumps({"model": a.model, "max_tokens": a.max_tokens, "temperature": 0,
                               "messages": [{"role": "user", "content": f"Write a short poem about the number {i}."}]}).encode()
            t = time.time()
            r = json.load(urllib.request.urlopen(urllib.request.Request(url, body), timeout=300))
            return time.time() - t, r["usage"]["compute_ms"] / 1e3

        print("concurrency  requests  elapsed s  sum of latencies s  sum of compute_ms s  latency/elapsed  compute/elapsed")
        for c in (1, 4):
            t0 = time.time()
            with cf.ThreadPoolExecutor(c) as ex:
                res = list(ex.map(ask, range(2 * c)))
            wall = time.time() - t0
            lat = sum(r[0] for r in res)
            comp = sum(r[1] for r in res)
            print(f"{c:>11} {len(res):>9} {wall:>10.2f} {lat:>19.2f} {comp:>20.2f} {lat / wall:>16.2f} {comp / wall:>16.2f}")
    finally:
        srv.terminate()
        srv.wait()


if __name__ == "__main__":
    main()
