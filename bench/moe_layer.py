"""MoE layer throughput: compiled model vs a NumPy/OpenBLAS implementation.

Compiles one Mixtral-style MoE FFN layer (top-2 of E SwiGLU experts,
renormalised, dropless) with moec, runs it through the model ABI on all
cores over a sweep of token counts, and times in the same run a NumPy
implementation that routes with vectorised NumPy and runs each expert's
GEMMs through OpenBLAS (the usual eager "loop over experts"). Checks that
both agree, prints a table of tokens/s, and writes JSON and a PNG plot.

    python3 bench/moe_layer.py [--d-model 512 --d-ff 1024 --experts 8 --top-k 2]
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

LAYER = """
func.func @forward(
    %x: tensor<?x{D}xf32> {{moe.name = "x", moe.dims = ["tokens", ""]}},
    %router: tensor<{D}x{E}xf32> {{moe.name = "router", moe.role = "parameter"}},
    %w1: tensor<{E}x{D}x{F}xf32> {{moe.name = "w1", moe.role = "parameter"}},
    %w2: tensor<{E}x{F}x{D}xf32> {{moe.name = "w2", moe.role = "parameter"}},
    %w3: tensor<{E}x{D}x{F}xf32> {{moe.name = "w3", moe.role = "parameter"}})
    -> (tensor<?x{D}xf32> {{moe.name = "y", moe.dims = ["tokens", ""]}}) {{
  %y, %aux, %z, %load, %dropped = moe.layer token_choice %x : tensor<?x{D}xf32>
      router %router : tensor<{D}x{E}xf32>
      experts swiglu %w1 : tensor<{E}x{D}x{F}xf32>, %w2 : tensor<{E}x{F}x{D}xf32>
      fc3 %w3 : tensor<{E}x{D}x{F}xf32>
      {{k = {K} : i64, normalize}}
  return %y : tensor<?x{D}xf32>
}}
"""


def numpy_layer(x, router, w1, w2, w3, k):
    logits = x @ router
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    top = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    weights = np.take_along_axis(probs, top, 1)
    weights /= weights.sum(1, keepdims=True)
    y = np.zeros_like(x)
    for e in range(router.shape[1]):
        token, slot = np.nonzero(top == e)
        if token.size == 0:
            continue
        h = x[token]
        gate = h @ w1[e]
        act = gate / (1.0 + np.exp(-gate)) * (h @ w3[e])
        y[token] += weights[token, slot, None] * (act @ w2[e])
    return y



def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build", default=str(ROOT / "build"))
    parser.add_argument("--d-model", type=int, default=512)
    parser.add_argument("--d-ff", type=int, default=1024)
    parser.add_argument("--experts", type=int, default=8)
    parser.add_argument("--top-k", type=int, default=2)
    parser.add_argument("--tokens", default="1,8,64,256,1024,2048")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--json", default="moe_layer.json")
    parser.add_argument("--plot", default="moe_layer.png")
    args = parser.parse_args()
    D, F, E, K = args.d_model, args.d_ff, args.experts, args.top_k
    threads = os.cpu_count() or 1

    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "layer.mlir"
        source.write_text(LAYER.format(D=D, F=F, E=E, K=K))
        library = Path(tmp) / "layer.so"
        subprocess.run([str(Path(args.build) / "bin" / "moec"), str(source),
                        "-o", str(library)], check=True)
        model = moe_abi.Model(library, threads=threads)
        rng = np.random.default_rng(0)
        # float32 scales: a float64 one would promote the weights, and every
        # call would then pay for converting them back.
        params = {
            "router": rng.standard_normal((D, E), dtype=np.float32),
            "w1": rng.standard_normal((E, D, F), dtype=np.float32)
                  * np.float32(D ** -0.5),
            "w2": rng.standard_normal((E, F, D), dtype=np.float32)
                  * np.float32(F ** -0.5),
            "w3": rng.standard_normal((E, D, F), dtype=np.float32)
                  * np.float32(D ** -0.5),
        }
        assert all(p.dtype == np.float32 for p in params.values())
        # All moec timings first: OpenBLAS worker threads keep spinning for a
        # while after each NumPy matmul and would steal the cores.
        sweep = [(tokens, rng.standard_normal((tokens, D), dtype=np.float32))
                 for tokens in map(int, args.tokens.split(","))]
        ours = {tokens: (model.run(x=x, **params)["y"],
                         best_time(lambda: model.run(x=x, **params), args.reps))
                for tokens, x in sweep}
        rows = []
        for tokens, x in sweep:
            y, t_ours = ours[tokens]
            ref = numpy_layer(x, params["router"], params["w1"],
                              params["w2"], params["w3"], K)
            error = float(np.abs(y - ref).max() / np.abs(ref).max())
            t_ref = best_time(lambda: numpy_layer(
                x, params["router"], params["w1"], params["w2"],
                params["w3"], K), args.reps)
            flops = tokens * (2 * D * E + K * 3 * 2 * D * F)
            rows.append({"tokens": tokens, "moec_s": t_ours, "numpy_s": t_ref,
                         "moec_tokens_per_s": tokens / t_ours,
                         "numpy_tokens_per_s": tokens / t_ref,
                         "moec_gflops": flops / t_ours / 1e9,
                         "numpy_gflops": flops / t_ref / 1e9,
                         "rel_error": error})

    print("MoE layer d_model=%d d_ff=%d experts=%d top-%d, f32, %d threads"
          % (D, F, E, K, threads))
    print("%8s %14s %14s %10s %10s %10s" % ("tokens", "moec tok/s",
          "numpy tok/s", "moec GF/s", "numpy GF/s", "rel.err"))
    for row in rows:
        print("%8d %14.0f %14.0f %10.1f %10.1f %10.1e" % (
            row["tokens"], row["moec_tokens_per_s"],
            row["numpy_tokens_per_s"], row["moec_gflops"],
            row["numpy_gflops"], row["rel_error"]))
    Path(args.json).write_text(json.dumps(
        {"d_model": D, "d_ff": F, "experts": E, "top_k": K,
         "threads": threads, "rows": rows}, indent=2))
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(6, 4))
        tokens = [row["tokens"] for row in rows]
        ax.loglog(tokens, [r["moec_tokens_per_s"] for r in rows], "o-",
                  label="moec")
        ax.loglog(tokens, [r["numpy_tokens_per_s"] for r in rows], "s--",
                  label="NumPy + OpenBLAS, loop over experts")
        ax.set_xlabel("tokens per call")
        ax.set_ylabel("tokens / s")
        ax.set_title("MoE layer %dx%d, %d experts, top-%d" % (D, F, E, K))
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(args.plot, dpi=120)
        print("wrote %s and %s" % (args.json, args.plot))
    except ImportError:
        print("wrote %s (matplotlib missing: no plot)" % args.json)


if __name__ == "__main__":
    main()
