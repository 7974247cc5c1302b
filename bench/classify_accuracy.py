"""BANKING77 accuracy of Bantam's /v1/classify, per model.

    bantam serve --port 8112 &
    python3 bench/classify_accuracy.py 500 smollm2:135m qwen2.5-coder:0.5b
    python3 bench/classify_accuracy.py --base http://127.0.0.1:8112 --scoring exact 100 qwen2.5-coder:0.5b

Takes N items spread evenly over the test file (it is grouped by category), all 77
labels, zero-shot; prints one JSON line per model (accuracy, items/s — the latter
only meaningful when nothing else runs on the machine).
"""

import argparse
import csv
import json
import os
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "..", "shared", "data", "banking77", "banking77_test.csv")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("n", type=int)
    ap.add_argument("models", nargs="+")
    ap.add_argument("--base", default="http://127.0.0.1:8112")
    ap.add_argument("--data", default=DATA)
    ap.add_argument("--scoring", default="greedy", choices=["greedy", "exact"])
    ap.add_argument("--batch", type=int, default=50)
    a = ap.parse_args()
    rows = list(csv.DictReader(open(a.data)))
    labels = sorted({r["category"] for r in rows})
    step = len(rows) / a.n
    sample = [rows[int(i * step)] for i in range(a.n)]

    def post(body):
        req = urllib.request.Request(
            a.base + "/v1/classify", data=json.dumps(body).encode(), headers={"content-type": "application/json"}
        )
        return json.load(urllib.request.urlopen(req, timeout=3600))

    for m in a.models:
        post({"model": m, "input": ["warm up"], "labels": labels})  # load + cache the prefix
        t = time.time()
        preds = []
        for i in range(0, a.n, a.batch):
            d = post({"model": m, "input": [r["text"] for r in sample[i : i + a.batch]], "labels": labels, "scoring": a.scoring})
            preds += [x["label"] for x in d["data"]]
        dt = time.time() - t
        acc = sum(p == r["category"] for p, r in zip(preds, sample)) / a.n
        print(json.dumps({"model": m, "scoring": a.scoring, "items": a.n, "seconds": round(dt, 1),
                          "items_per_s": round(a.n / dt, 2), "accuracy": round(acc, 4)}), flush=True)


if __name__ == "__main__":
    main()
