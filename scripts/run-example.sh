#!/usr/bin/env bash
# The main job on the bundled example: compiles the tiny MoE language model
# (examples/tiny_moe_lm.mlir) with moec into a shared library and runs its
# forward pass with moe-run on a byte-level encoding of a sentence, with
# random parameters from a fixed seed. Sets up a fresh machine by itself.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/setup.sh
cmake -S . -B build -G Ninja >/dev/null
cmake --build build --target moec moe-run

out=build/example
mkdir -p "$out"
echo "== moec examples/tiny_moe_lm.mlir -o $out/tiny_moe_lm.so"
build/bin/moec examples/tiny_moe_lm.mlir -o "$out/tiny_moe_lm.so"

# Two sequences of bytes; the model predicts each next byte.
python3 - "$out" <<'PY'
import sys
import numpy as np
out = sys.argv[1]
texts = [b"Mixture-of-Experts models route each token to a few experts.",
         b"Instruction tuning helps sparse models more than dense ones!!"]
seq = min(len(t) for t in texts) - 1
data = np.array([list(t[:seq + 1]) for t in texts], dtype=np.int32)
np.save(f"{out}/tokens.npy", data[:, :-1])
np.save(f"{out}/targets.npy", data[:, 1:])
np.save(f"{out}/mask.npy", np.ones((2, seq), dtype=np.float32))
PY

echo "== moe-run (random parameters, seed 0)"
build/bin/moe-run "$out/tiny_moe_lm.so" --seed 0 \
  --input tokens="$out/tokens.npy" --input targets="$out/targets.npy" \
  --input mask="$out/mask.npy" --output-dir "$out/outputs"
