"""Compiled GEMM vs OpenBLAS sgemm on the same cores, side by side.

Compiles `y = x @ w` (x: [M, K] with M dynamic, w: [K, N]) with moec for the
host CPU, runs it through the model ABI with 1 and with all threads, and
times NumPy's OpenBLAS sgemm in subprocesses pinned to the same thread
counts (OPENBLAS_NUM_THREADS must be set before NumPy loads). Prints a table
and writes JSON (--json). Numbers, never pass/fail.

    python3 bench/gemm.py [--build build] [--sizes 512x512x512,...]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "test" / "e2e"))
import moe_abi  # noqa: E402
from timing import best_time  # noqa: E402

MODEL = """
func.func @forward(%x: tensor<?x{K}xf32> {{moe.name = "x"}},
                   %w: tensor<{K}x{N}xf32> {{moe.name = "w", moe.role = "parameter"}})
    -> (tensor<?x{N}xf32> {{moe.name = "y"}}) {{
  %c0 = arith.constant 0 : index
  %m = tensor.dim %x, %c0 : tensor<?x{K}xf32>
  %e = tensor.empty(%m) : tensor<?x{N}xf32>
  %zero = arith.constant 0.0 : f32
  %z = linalg.fill ins(%zero : f32) outs(%e : tensor<?x{N}xf32>) -> tensor<?x{N}xf32>
  %y = linalg.matmul ins(%x, %w : tensor<?x{K}xf32>, tensor<{K}x{N}xf32>)
                     outs(%z : tensor<?x{N}xf32>) -> tensor<?x{N}xf32>
  return %y : tensor<?x{N}xf32>
}}
"""

OPENBLAS = """
import sys, time, numpy as np
m, k, n, reps = map(int, sys.argv[1:])
rng = np.random.default_rng(0)
x = rng.standard_normal((m, k), dtype=np.float32)
w = rng.standard_normal((k, n), dtype=np.float32)
x @ w
best = 1e9
for _ in range(reps):
    t = time.perf_counter(); x @ w; best = min(best, time.perf_counter() - t)
print(best)
"""



def openblas_time(m, k, n, threads, reps):
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads),
               OMP_NUM_THREADS=str(threads))
    out = subprocess.run([sys.executable, "-c", OPENBLAS, str(m), str(k),
                          str(n), str(reps)], env=env, check=True,
                         capture_output=True, text=True).stdout
    return float(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build", default=str(ROOT / "build"))
    parser.add_argument("--sizes", default="256x512x512,1024x512x512,"
                        "2048x1024x1024,512x4096x1024")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    moec = Path(args.build) / "bin" / "moec"
    cores = os.cpu_count() or 1
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes.split(","):
            m, k, n = map(int, size.split("x"))
            source = Path(tmp) / ("gemm_%dx%d.mlir" % (k, n))
            library = source.with_suffix(".so")
            if not library.exists():
                source.write_text(MODEL.format(K=k, N=n))
                subprocess.run([str(moec), str(source), "-o", str(library)],
                               check=True)
            rng = np.random.default_rng(1)
            x = rng.standard_normal((m, k), dtype=np.float32)
            w = rng.standard_normal((k, n), dtype=np.float32)
            flops = 2.0 * m * k * n
            row = {"m": m, "k": k, "n": n}
            for threads in sorted({1, cores}):
                model = moe_abi.Model(library, threads=threads)
                y = model.run(x=x, w=w)["y"]
                ref = x.astype(np.float64) @ w
                row["rel_error"] = float(np.abs(y - ref).max()
                                         / np.abs(ref).max())
                t = best_time(lambda: model.run(x=x, w=w), args.reps)
                row["moec_gflops_%dt" % threads] = flops / t / 1e9
                t = openblas_time(m, k, n, threads, args.reps)
                row["openblas_gflops_%dt" % threads] = flops / t / 1e9
            rows.append(row)
    keys = [key for key in rows[0] if key.endswith("gflops_1t")
            or key.endswith("gflops_%dt" % cores)]
    print("%-16s" % "M x K x N" + "".join("%20s" % key for key in keys)
          + "%12s" % "rel.err")
    for row in rows:
        print("%-16s" % ("%dx%dx%d" % (row["m"], row["k"], row["n"]))
              + "".join("%20.1f" % row[key] for key in keys)
              + "%12.1e" % row["rel_error"])
    print("(GFLOP/s, best of %d; %d cores; includes the ABI call from Python)"
          % (args.reps, cores))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
