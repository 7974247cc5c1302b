#!/usr/bin/env python3
"""Time to first token for short fresh prompts, Bantam vs llama-server, many samples.

One server runs at a time (a co-located idle llama-server keeps its worker threads
polling and slows whatever runs next to it). Uses serve_bench.py's server wrapper.

    python3 bench/ttft_bench.py --rounds 2 --prompts 12 [--chat]
"""

import argparse
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import serve_bench as sb  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--prompts", type=int, default=12)
    ap.add_argument("--words", type=int, default=30)
    ap.add_argument("--home", default=os.environ.get("BANTAM_HOME", os.path.expanduser("~/.bantam")))
    ap.add_argument("--model", default="smollm2:135m")
    ap.add_argument("--chat", action="store_true", help="short chat messages (through the chat template) instead of completions")
    ap.add_argument("--parallel", type=int, default=8, help="slots of each server")
    args = ap.parse_args()
    args.bantam = os.path.join(os.environ.get("CARGO_TARGET_DIR", "target"), "release", "bantam")
    args.llama_server = os.path.expanduser("~/.cache/bantam-bench/llama-server/bin/llama-server")
    args.threads, args.ctx = 2, 4096
    import json
    import subprocess

    m = json.loads(subprocess.run([args.bantam, "show", args.model, "--json"], env=dict(os.environ, BANTAM_HOME=args.home),
                                  capture_output=True, text=True, check=True).stdout)
    args.gguf = os.path.join(args.home, "blobs", "sha256-" + m["digest"].split(":")[1])
    args.fa = m.get("options", {}).get("flash_attention", "off")
    res = {}
    for rnd in range(args.rounds):
        for kind in ["bantam", "llama-server"] if rnd % 2 == 0 else ["llama-server", "bantam"]:
            s = sb.Server(kind, args, sb.free_port())
            s.wait_port()
            ask = s.chat if args.chat else s.stream
            ask("Hello", 2)
            for i in range(args.prompts):
                t, times, _ = ask(sb.text_of(args.words, seed=1000 + rnd * 100 + i), 1)
                res.setdefault(kind, []).append((times[0] - t) * 1000)
            s.stop()
    for kind, v in res.items():
        print(f"{kind}: median TTFT {statistics.median(v):.1f} ms over {len(v)} prompts")


if __name__ == "__main__":
    main()
