#!/usr/bin/env bash
# Installs every system and Python dependency of moec on Debian 12.
# Idempotent: when everything is present it only checks and returns (about a
# second). Run as root (CI and the development machines are root) or with sudo.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

# LLVM/MLIR 22 (compiler, lit, FileCheck), lld 22 (in-process linking),
# protobuf + ONNX (ONNX importer), fmt, GoogleTest, SentencePiece (tokenizer).
packages=(
  build-essential cmake ninja-build git python3 python3-pip
  llvm-22-dev libmlir-22-dev mlir-22-tools llvm-22-tools liblld-22-dev lld-22
  libprotobuf-dev protobuf-compiler libonnx-dev python3-onnx
  libfmt-dev libgtest-dev libgmock-dev libsentencepiece-dev
)

missing=()
for p in "${packages[@]}"; do
  status="$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)"
  [[ "$status" == "install ok installed" ]] || missing+=("$p")
done

if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  sudo_cmd=()
  [[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Python packages for the references and tests, into the python3 on PATH.
if ! python3 "$here/check_python_deps.py" "$here/requirements.txt" 2>/dev/null; then
  echo "setup: installing Python packages from scripts/requirements.txt"
  python3 -m pip install --quiet --disable-pip-version-check \
    -r "$here/requirements.txt"
fi

echo "setup: all dependencies present"
