#!/usr/bin/env bash
# The main job: instruction-tunes the tiny MoE language model
# (examples/tiny_moe_lm.mlir) on the CPU. Generates the FLAN-style mixture,
# compiles the model with `moec --mode=train`, trains it with moe-train
# (progress bar, held-out evaluation, checkpoint) and plots the log. Sets up
# a fresh machine by itself. STEPS=N changes the length of the run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/setup.sh
cmake -S . -B build -G Ninja >/dev/null
cmake --build build --target moec moe-train

out=build/example
steps=${STEPS:-600}
mkdir -p "$out"
echo "== generating the instruction mixture in $out/data"
python3 examples/instruct/make_flan_mixture.py --out "$out/data"

echo "== moec examples/tiny_moe_lm.mlir --mode=train -o $out/tiny_moe_lm.so"
build/bin/moec examples/tiny_moe_lm.mlir --mode=train -o "$out/tiny_moe_lm.so"

echo "== moe-train: $steps steps; held-in (valid) and held-out tasks evaluated every 200"
rm -f "$out/train_log.jsonl"
build/bin/moe-train "$out/tiny_moe_lm.so" \
  --data "$out/data/train.jsonl" \
  --eval "$out/data/valid.jsonl" --eval "$out/data/held_out.jsonl" \
  --steps "$steps" --eval-every 200 --eval-examples 48 \
  --log "$out/train_log.jsonl" --checkpoint "$out/checkpoint.safetensors" \
  --save "$out/tuned.safetensors"

python3 - "$out/train_log.jsonl" <<'PY'
import json, sys
records = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
steps = [r for r in records if not r.get("eval")]
evals = [r for r in records if r.get("eval")]
first = sum(r["task_loss"] for r in steps[:10]) / len(steps[:10])
last = sum(r["task_loss"] for r in steps[-10:]) / len(steps[-10:])
print("task loss: %.3f (first 10 steps) -> %.3f (last 10 steps)" % (first, last))
for e in evals:
    print("%-8s @ step %d: loss %.3f, exact match %.1f%%"
          % (e["eval_set"], e["step"], e["eval_loss"], 100 * e["exact_match"]))
PY
python3 scripts/plot-training.py "$out/train_log.jsonl" -o "$out/training.png"
