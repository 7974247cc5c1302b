#!/usr/bin/env bash
# Learned routers on CLINC150 with each featuriser, then their decision time.
#
#   bash bench/router_bench.sh [OUTDIR]      # default /tmp/clinc
#
# Trains three routers (all-MiniLM-L6-v2, its static distillation, hashed n-grams) on
# CLINC150's train split, calibrates each to escalate 20 % of val and reports on
# test; then `bantam router bench` times 2,000 decisions per route (a rules route and
# the three learned routes) over 700 test prompts. Needs `bantam pull
# all-minilm:l6-v2`; BANTAM (default: the release build) is the binary measured.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-/tmp/clinc}"
bantam="${BANTAM:-${CARGO_TARGET_DIR:-target}/release/bantam}"
python3 bench/clinc150_router.py "$out"
for f in all-minilm:l6-v2 static:all-minilm:l6-v2 hashed-ngrams; do
  name="router-$(echo "$f" | tr ':' '-').json"
  echo "== --embedder $f"
  "$bantam" router train "$out/train.jsonl" --calibrate "$out/val.jsonl" --test "$out/test.jsonl" \
    --escalate 20% --embedder "$f" --out "$out/$name" | grep -v '^\[\[routes\]\]\|^name =\|^policy =\|^backends =\|^learned =\|^wrote\|^$'
done
# Every 8th test prompt (700 in all): in-scope and out-of-scope mixed as in test.
python3 - "$out" <<'PY'
import json, sys
out = sys.argv[1]
rows = [json.loads(l) for l in open(f"{out}/test.jsonl")]
with open(f"{out}/bench_prompts.jsonl", "w") as f:
    for r in rows[::8][:700]:
        f.write(json.dumps({"prompt": r["prompt"]}) + "\n")
PY
cat > "$out/bench.toml" <<TOML
[[backends]]
name = "small"
type = "local"
model = "smollm2:135m"
[[backends]]
name = "large"
type = "openai"
base_url = "http://127.0.0.1:9/v1"
model = "large"

[[routes]]
name = "rules"
backends = ["small", "large"]
default = "small"

[[routes.rules]]
backend = "large"
reason = "hard-topic"
keywords = ["contract", "legal", "diagnosis", "lawsuit"]

[[routes.rules]]
backend = "large"
reason = "long-prompt"
min_prompt_chars = 2000

[[routes.rules]]
backend = "large"
reason = "code"
regex = "(?i)\\\\b(def|fn|class|select)\\\\b"

[[routes]]
name = "minilm"
policy = "learned"
backends = ["small", "large"]
learned = { model = "$out/router-all-minilm-l6-v2.json", local = "small", escalate = "large" }

[[routes]]
name = "static"
policy = "learned"
backends = ["small", "large"]
learned = { model = "$out/router-static-all-minilm-l6-v2.json", local = "small", escalate = "large" }

[[routes]]
name = "hashed"
policy = "learned"
backends = ["small", "large"]
learned = { model = "$out/router-hashed-ngrams.json", local = "small", escalate = "large" }

[usage]
enabled = false
TOML
echo "== bantam router bench"
"$bantam" router bench --config "$out/bench.toml" --prompts "$out/bench_prompts.jsonl" --n 2000
