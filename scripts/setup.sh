#!/usr/bin/env bash
# Install what building and testing Bantam needs on Debian/Ubuntu, if missing:
# cmake and clang/libclang (llama.cpp and its bindings), curl (tests), and the
# official `openai` Python package (tests drive the server with it) and `jsonschema`
# (tests validate structured outputs independently of the server).
set -euo pipefail
need=()
for p in cmake clang libclang-dev curl; do
  dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]}" >&2
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
python3 -c 'import openai' 2>/dev/null || python3 -m pip install -q --disable-pip-version-check 'openai==3.54.0'
python3 -c 'import jsonschema' 2>/dev/null || python3 -m pip install -q --disable-pip-version-check 'jsonschema>=4.18'
