#!/usr/bin/env python3
"""Split BANKING77 (shared/data/banking77/banking77_test.csv, 3,080 rows) into
2,000 training and 1,080 test rows, stratified by intent, with a fixed seed, as JSONL
{"input": text, "expected": intent} — the split issue 13's goals are measured on.

    python3 bench/banking77_split.py ../shared/data/banking77/banking77_test.csv OUTDIR

Writes OUTDIR/train.jsonl and OUTDIR/test.jsonl and prints their sha256.
"""
import csv
import hashlib
import json
import random
import sys
from collections import defaultdict
from pathlib import Path

TRAIN = 2000
SEED = 77


def main():
    src, out = Path(sys.argv[1]), Path(sys.argv[2])
    rows = list(csv.DictReader(src.open(encoding="utf-8")))
    by = defaultdict(list)
    for r in rows:
        by[r["category"]].append(r["text"])
    rng = random.Random(SEED)
    n = len(rows)
    # Largest-remainder allocation of the training rows to the intents.
    quota = {k: len(v) * TRAIN / n for k, v in by.items()}
    take = {k: int(q) for k, q in quota.items()}
    for k in sorted(by, key=lambda k: quota[k] - take[k], reverse=True)[: TRAIN - sum(take.values())]:
        take[k] += 1
    train, test = [], []
    for k in sorted(by):
        texts = sorted(by[k])
        rng.shuffle(texts)
        train += [{"input": t, "expected": k} for t in texts[: take[k]]]
        test += [{"input": t, "expected": k} for t in texts[take[k]:]]
    rng.shuffle(train)
    rng.shuffle(test)
    out.mkdir(parents=True, exist_ok=True)
    for name, part in (("train", train), ("test", test)):
        p = out / f"{name}.jsonl"
        p.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in part), encoding="utf-8")
        print(f"{p}: {len(part)} rows, sha256 {hashlib.sha256(p.read_bytes()).hexdigest()}")


if __name__ == "__main__":
    main()
