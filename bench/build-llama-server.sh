#!/usr/bin/env bash
# Build llama.cpp's own `llama-server` from the same llama.cpp sources Bantam links,
# as the reference for bench/serve_bench.py.
#
# The llama.cpp engine sources (src/, ggml/, include/) come from the
# llama-cpp-sys-2 crate Bantam builds with (Cargo.lock pins it). That crate ships no
# server front-end, so tools/server (and what it includes) is taken from the
# llama-cpp-python sdist on PyPI, whose vendored llama.cpp is a few days older and
# has the same API. The inference engine being compared is therefore identical; only
# the HTTP layer differs. Built with clang and the same run-time CPU dispatch
# (GGML_BACKEND_DL + GGML_CPU_ALL_VARIANTS) as Bantam.
#
# Output: $OUT/bin/llama-server (default OUT=~/.cache/bantam-bench/llama-server).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$HOME/.cache/bantam-bench/llama-server}
PYVER=${LLAMA_CPP_PYTHON_VERSION:-0.3.36}
if [ -x "$OUT/bin/llama-server" ]; then echo "$OUT/bin/llama-server"; exit 0; fi
sysver=$(grep -A1 'name = "llama-cpp-sys-2"' Cargo.lock | sed -n 's/version = "\(.*\)"/\1/p')
crate=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/llama-cpp-sys-2-"$sysver"/llama.cpp | head -1)
[ -d "$crate" ] || { echo "llama-cpp-sys-2 $sysver sources not found; run cargo fetch first" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 -m pip download --no-deps --no-binary :all: -q -d "$work" "llama-cpp-python==$PYVER"
tar xzf "$work"/llama_cpp_python-"$PYVER".tar.gz -C "$work"
py="$work/llama_cpp_python-$PYVER/vendor/llama.cpp"
src="$work/llama.cpp"
cp -r "$py" "$src"
# The engine (model code, kernels, public API): exactly the crate's sources. The
# server's helper library (common/) stays the sdist's, matching its server code.
for d in src ggml include; do rm -rf "${src:?}/$d"; cp -r "$crate/$d" "$src/$d"; done
cmake -S "$src" -B "$work/build" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
  -DGGML_NATIVE=OFF -DGGML_BACKEND_DL=ON -DGGML_CPU_ALL_VARIANTS=ON -DBUILD_SHARED_LIBS=ON \
  -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
  -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DCMAKE_INSTALL_PREFIX="$OUT" > "$work/cmake.log"
cmake --build "$work/build" --target llama-server llama-bench -j "$(nproc)" > "$work/build.log" 2>&1 || { tail -40 "$work/build.log"; exit 1; }
mkdir -p "$OUT/bin"
cp -a "$work"/build/bin/* "$OUT/bin/"
echo "$OUT/bin/llama-server"
