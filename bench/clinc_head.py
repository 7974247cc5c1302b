#!/usr/bin/env python3
"""A classifier model on CLINC150 with 20 training examples per intent (issue 13):
in-scope accuracy on the 4,500 test queries, and out-of-scope recall on the 1,000
out-of-scope test queries when `min_confidence` turns low-confidence answers into
"no label".

    python3 bench/clinc_head.py ../shared/data/clinc150/clinc150_data_full.json [--features F] [--bantam PATH]

Writes its files to /tmp/clinc_head and prints a table; the model is installed as
clinc150:head20 (remove it with `bantam rm clinc150:head20`).
"""
import argparse
import json
import random
import subprocess
import time
from collections import defaultdict
from pathlib import Path


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("data")
    ap.add_argument("--features", default="auto")
    ap.add_argument("--bantam", default="target/release/bantam")
    ap.add_argument("--per-intent", type=int, default=20)
    a = ap.parse_args()
    d = json.load(open(a.data))
    out = Path("/tmp/clinc_head")
    out.mkdir(exist_ok=True)
    by = defaultdict(list)
    for text, intent in d["train"]:
        by[intent].append(text)
    rng = random.Random(150)
    train = []
    for intent in sorted(by):
        texts = sorted(by[intent])
        rng.shuffle(texts)
        train += [{"input": t, "expected": intent} for t in texts[: a.per_intent]]
    rng.shuffle(train)
    (out / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in train))
    test = [{"input": t, "expected": i} for t, i in d["test"]] + [
        {"input": t, "expected": None} for t, _ in d["oos_test"]
    ]
    (out / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in test))
    t0 = time.time()
    tune = subprocess.run(
        [a.bantam, "tune", "classify", str(out / "train.jsonl"), "--out", "clinc150:head20", "--features", a.features],
        capture_output=True, text=True, check=True)
    tune_s = time.time() - t0
    print(tune.stdout)
    t0 = time.time()
    subprocess.run(
        [a.bantam, "classify", "clinc150:head20", "--input", str(out / "test.jsonl"), "--field", "input", "--output", str(out / "pred.jsonl")],
        capture_output=True, text=True, check=True)
    classify_s = time.time() - t0
    preds = [json.loads(l) for l in (out / "pred.jsonl").read_text().splitlines() if l.strip()]
    assert len(preds) == len(test), (len(preds), len(test))
    print(f"trained in {tune_s:.1f} s; classified {len(test)} texts in {classify_s:.1f} s ({len(test) / classify_s:.0f}/s)\n")
    print("| min_confidence | in-scope accuracy | in-scope answered | out-of-scope recall |")
    print("|---:|---:|---:|---:|")
    for t in [0.0, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]:
        ins = [(p, r) for p, r in zip(preds, test) if r["expected"] is not None]
        oos = [p for p, r in zip(preds, test) if r["expected"] is None]
        label = lambda p: p["label"] if p["confidence"] >= t else None
        acc = sum(label(p) == r["expected"] for p, r in ins) / len(ins)
        answered = sum(label(p) is not None for p, _ in ins) / len(ins)
        rec = sum(label(p) is None for p in oos) / len(oos)
        print(f"| {t:.1f} | {acc * 100:.1f} % | {answered * 100:.1f} % | {rec * 100:.1f} % |")


if __name__ == "__main__":
    main()
