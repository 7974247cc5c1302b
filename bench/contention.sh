#!/usr/bin/env bash
# What llama.cpp's spinning worker threads cost when other work competes for the
# cores: `bantam bench` (prefill and decode tok/s) with 1 thread and with one per
# core, on a quiet machine and beside 1 and 2 busy processes (each a busy loop, what
# a compiler or a second model does to a core).
#
#   bash bench/contention.sh [MODEL]      # default smollm2:135m; ~5 minutes
#
# Writes a markdown table to stdout. Each run is cut off after 300 s.
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-smollm2:135m}
bantam="${CARGO_TARGET_DIR:-target}/release/bantam"
cores=$(nproc)
busy_pids=()
stop_busy() { for p in "${busy_pids[@]}"; do kill "$p" 2>/dev/null || true; done; busy_pids=(); }
trap stop_busy EXIT
echo "| busy processes | threads | prefill tok/s | decode tok/s | wall s |"
echo "|---:|---:|---:|---:|---:|"
for busy in 0 1 "$cores"; do
  for ((i = 0; i < busy; i++)); do
    python3 -c 'while True: pass' & busy_pids+=($!)
  done
  sleep 1
  for threads in 1 "$cores"; do
    t0=$(date +%s.%N)
    out=$(timeout 300 "$bantam" bench "$model" --threads "$threads" --flash-attention off \
      --reps 3 --prompt-tokens 128 --gen-tokens 32 2>/dev/null || echo "timed out")
    t1=$(date +%s.%N)
    pp=$(echo "$out" | awk '/^flash attention off/ {print $6}')
    tg=$(echo "$out" | awk '/^flash attention off/ {print $10}')
    printf "| %s | %s | %s | %s | %.1f |\n" "$busy" "$threads" "${pp:-–}" "${tg:-–}" "$(echo "$t1 - $t0" | bc)"
  done
  stop_busy
done
