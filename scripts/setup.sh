#!/usr/bin/env bash
# Install what building and testing Bantam needs on Debian/Ubuntu, if missing:
# cmake and clang/libclang (llama.cpp and its bindings), curl (tests), chromium and
# fonts-dejavu-core (the eval HTML report is rendered headless in a test), and the
# official `openai` Python package (tests drive the server with it), schemathesis
# (in ~/.cache/bantam/schemathesis: fuzzes the API against /openapi.json), `jsonschema`
# (tests validate structured outputs independently of the server), and sacrebleu,
# scikit-learn and rouge-score (the references the evaluation metrics are compared
# with), and torch + transformers + peft + gguf (in ~/.cache/bantam/torch-ref: the
# reference the LoRA trainer's gradients are compared with).
set -euo pipefail
need=()
for p in cmake clang libclang-dev curl chromium fonts-dejavu-core; do
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
# Reference implementations the evaluation metrics are checked against.
python3 -c 'import sacrebleu, sklearn, rouge_score' 2>/dev/null || python3 -m pip install -q --disable-pip-version-check 'sacrebleu>=2.4' 'scikit-learn>=1.3' 'rouge-score>=0.1.2'
# schemathesis fuzzes the server against its own OpenAPI document (tests/contract.rs);
# it has many dependencies, so it lives in its own virtual environment.
st_env="$HOME/.cache/bantam/schemathesis"
if ! "$st_env/bin/st" --version 2>/dev/null | grep -q '4.32.5'; then
  rm -rf "$st_env"
  python3 -m venv "$st_env"
  "$st_env/bin/pip" install -q --disable-pip-version-check 'schemathesis==4.32.5'
fi
# The PyTorch + PEFT reference of the LoRA trainer (tests/lora.rs runs
# scripts/peft_reference.py): torch from PyPI brings its CUDA libraries (~5 GB
# installed, about a minute here); its own environment, kept between runs.
torch_env="$HOME/.cache/bantam/torch-ref"
torch_pins='torch==2.15.0 transformers==5.24.0 peft==0.21.2 gguf==0.19.0 safetensors==0.8.0 numpy'
if [ "$(cat "$torch_env/.pins" 2>/dev/null)" != "$torch_pins" ]; then
  rm -rf "$torch_env"
  python3 -m venv "$torch_env"
  # shellcheck disable=SC2086
  "$torch_env/bin/pip" install -q --disable-pip-version-check $torch_pins
  echo "$torch_pins" > "$torch_env/.pins"
fi
# The all-MiniLM-L6-v2 reference (tests/python/minilm_reference.py): HF tokenizers and a numpy forward pass.
python3 -c 'import numpy, safetensors, tokenizers' 2>/dev/null || python3 -m pip install -q --disable-pip-version-check numpy 'safetensors>=0.4' 'tokenizers>=0.15'
