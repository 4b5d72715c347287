#!/usr/bin/env bash
# The main job on the bundled example: builds moe-opt and runs the compiler's
# graph phase on the tiny MoE language model (examples/tiny_moe_lm.mlir):
# each coarse moe.layer is decomposed into routing, dispatch, grouped expert
# FFN and combine ops, then canonicalised. Sets up a fresh machine by itself.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/setup.sh
cmake -S . -B build -G Ninja >/dev/null
cmake --build build --target moe-opt
model="${1:-examples/tiny_moe_lm.mlir}"
echo "== $model after moe-decompose-layer, canonicalize, cse"
build/bin/moe-opt "$model" --moe-decompose-layer --canonicalize --cse
