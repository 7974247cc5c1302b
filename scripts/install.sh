#!/usr/bin/env bash
# Install a built Bantam under PREFIX (default ~/.local):
#   PREFIX/bin/bantam
#   PREFIX/lib/bantam/   llama.cpp shared libraries and every CPU-variant module
# The binary's rpath ($ORIGIN/../lib/bantam) finds them; run-time dispatch picks the
# best CPU variant on whatever machine runs it, so the tree can be copied to others.
set -euo pipefail
cd "$(dirname "$0")/.."
PREFIX=${PREFIX:-$HOME/.local}
target=${CARGO_TARGET_DIR:-target}/release
[ -x "$target/bantam" ] || cargo build --release --locked
backends=$(ls -d "$target"/build/llama-cpp-sys-2-*/out/backends 2>/dev/null | head -1)
[ -n "$backends" ] || { echo "llama.cpp backends not found under $target/build" >&2; exit 1; }
mkdir -p "$PREFIX/bin" "$PREFIX/lib/bantam"
install -m 755 "$target/bantam" "$PREFIX/bin/bantam"
for f in "$target"/lib*.so.[0-9]; do install -m 644 "$f" "$PREFIX/lib/bantam/"; done
install -m 644 "$backends"/libggml-*.so "$PREFIX/lib/bantam/"
echo "installed $PREFIX/bin/bantam"
"$PREFIX/bin/bantam" info | sed -n '4,5p'
