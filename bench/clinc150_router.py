#!/usr/bin/env python3
"""CLINC150 as router training data: in-scope queries → "local", out-of-scope → "escalate".

    python3 bench/clinc150_router.py OUTDIR      # writes train/val/test.jsonl

The learned router is trained on train (15,000 in-scope + 100 out-of-scope), its
threshold calibrated on val (3,000 + 100) and reported on test (4,500 + 1,000).
"""
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "..", "shared", "data", "clinc150", "clinc150_data_full.json")


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "clinc150-router"
    os.makedirs(out, exist_ok=True)
    d = json.load(open(os.environ.get("CLINC150", DATA)))
    for split in ("train", "val", "test"):
        rows = [(t, "local") for t, _ in d[split]] + [(t, "escalate") for t, _ in d["oos_" + split]]
        path = os.path.join(out, split + ".jsonl")
        with open(path, "w") as f:
            for t, label in rows:
                f.write(json.dumps({"prompt": t, "label": label}) + "\n")
        esc = sum(1 for _, l in rows if l == "escalate")
        print(f"{path}: {len(rows)} prompts, {esc} escalate")


if __name__ == "__main__":
    main()
