"""com.microsoft.MoE from ONNX: moec vs onnxruntime (CPU) on the same file.

Builds an ONNX model holding one onnxruntime `com.microsoft.MoE` contrib op
(test/onnx/models.py `moe_op_model`: a Mixtral-like layer of SwiGLU experts,
top-k routing with renormalised weights, router logits from an in-graph
MatMul or a graph input), compiles it with `moec model.onnx -o model.so`
(which writes the parameters to model.safetensors), runs it through the model
ABI (test/e2e/moe_abi.py) and, in the same run and at the same thread count,
runs the same file with onnxruntime's CPU execution provider. Prints a table
(median times, speedup, GFLOP/s, normwise error between the two outputs) and
writes JSON and a PNG plot of time vs tokens. Numbers, never pass/fail.

    python3 bench/onnx_moe.py [--hidden 512 --inter 1792 --tokens 1,16,128,512]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "test" / "e2e"))
sys.path.insert(0, str(ROOT / "test" / "onnx"))
import models  # noqa: E402
import moe_abi  # noqa: E402
from safetensors_io import read_safetensors  # noqa: E402
from timing import median_time  # noqa: E402

# Expert GEMMs per routed token: gate, up and down for SwiGLU, fc1 and fc2
# for SiLU.
GEMMS = {"swiglu": 3, "silu": 2}


def ort_session(path, threads):
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options,
                                providers=["CPUExecutionProvider"])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build", default=os.environ.get(
        "MOEC_BUILD_DIR", str(ROOT / "build")))
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--inter", type=int, default=1792)
    parser.add_argument("--experts", type=int, default=8)
    parser.add_argument("--top-k", type=int, default=2)
    parser.add_argument("--activation", choices=sorted(GEMMS),
                        default="swiglu")
    parser.add_argument("--router", choices=["matmul", "input"],
                        default="matmul")
    parser.add_argument("--tokens", default="1,16,128,512")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--json", default=str(ROOT / "bench" / "results" /
                                              "onnx_moe.json"))
    parser.add_argument("--plot", help="PNG path (default: --json's, .png)")
    args = parser.parse_args()
    H, I, E, K = args.hidden, args.inter, args.experts, args.top_k
    json_path = Path(args.json)
    plot_path = Path(args.plot) if args.plot else json_path.with_suffix(".png")
    token_counts = [int(t) for t in args.tokens.split(",")]
    thread_counts = [int(t) for t in args.threads.split(",")]

    # swiglu_fusion=1 (gate and linear interleaved in fc1) is the SwiGLU
    # layout onnxruntime's CPU kernel runs; alpha 1, beta 0 make it Mixtral's
    # silu(x Wg) * (x Wu).
    model = models.moe_op_model(
        hidden=H, inter=I, experts=E, k=K, activation_type=args.activation,
        swiglu_fusion=1 if args.activation == "swiglu" else None,
        normalize_routing_weights=1, router=args.router)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "model.onnx"
        onnx.save(model, str(source))
        library = Path(tmp) / "model.so"
        subprocess.run([str(Path(args.build) / "bin" / "moec"), str(source),
                        "-o", str(library)], check=True)
        params = read_safetensors(Path(tmp) / "model.safetensors")
        inputs = {tokens: models.random_inputs(model, {"tokens": tokens}, 0)
                  for tokens in token_counts}
        for threads in thread_counts:
            compiled = moe_abi.Model(library, threads=threads)
            # All moec timings first: onnxruntime's pool threads keep
            # spinning for a while after each run and would steal the cores.
            ours = {}
            for tokens, feed in inputs.items():
                y = compiled.run("forward", **feed, **params)["y"]
                ours[tokens] = (y, median_time(
                    lambda: compiled.run("forward", **feed, **params),
                    args.reps))
            session = ort_session(source, threads)
            for tokens, feed in inputs.items():
                y, t_ours = ours[tokens]
                (want,) = session.run(None, feed)
                t_ort = median_time(lambda: session.run(None, feed),
                                    args.reps)
                flops = 2.0 * tokens * K * GEMMS[args.activation] * H * I
                rows.append({
                    "tokens": tokens, "threads": threads,
                    "moec_ms": t_ours * 1e3, "onnxruntime_ms": t_ort * 1e3,
                    "speedup": t_ort / t_ours,
                    "moec_gflops": flops / t_ours / 1e9,
                    "onnxruntime_gflops": flops / t_ort / 1e9,
                    "rel_error": float(np.abs(y - want).max()
                                       / np.abs(want).max())})
            del session

    print("com.microsoft.MoE hidden=%d inter=%d experts=%d top-%d %s, "
          "router %s, f32; onnxruntime %s" % (H, I, E, K, args.activation,
                                              args.router, ort.__version__))
    print("%7s %7s %9s %9s %8s %10s %10s %9s" % (
        "tokens", "threads", "moec ms", "ORT ms", "speedup", "moec GF/s",
        "ORT GF/s", "rel.err"))
    for row in rows:
        print("%7d %7d %9.3f %9.3f %7.2fx %10.1f %10.1f %9.1e" % (
            row["tokens"], row["threads"], row["moec_ms"],
            row["onnxruntime_ms"], row["speedup"], row["moec_gflops"],
            row["onnxruntime_gflops"], row["rel_error"]))
    print("(median of %d after 2 warm-up calls; speedup = ORT time / moec "
          "time; rel.err = max|moec - ORT| / max|ORT|; moec includes the "
          "ABI call from Python)" % args.reps)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(
        {"hidden": H, "inter": I, "experts": E, "top_k": K,
         "activation": args.activation, "router": args.router,
         "onnxruntime": ort.__version__, "reps": args.reps, "rows": rows},
        indent=2))
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("wrote %s (matplotlib missing: no plot)" % json_path)
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    for threads, color in zip(thread_counts, ["C0", "C1", "C2", "C3"]):
        mine = [row for row in rows if row["threads"] == threads]
        tokens = [row["tokens"] for row in mine]
        ax.loglog(tokens, [row["moec_ms"] for row in mine], "o-",
                  color=color, label="moec, %d thread(s)" % threads)
        ax.loglog(tokens, [row["onnxruntime_ms"] for row in mine], "s--",
                  color=color, label="onnxruntime, %d thread(s)" % threads)
    ax.set_xlabel("tokens per call")
    ax.set_ylabel("time per call (ms)")
    ax.set_title("com.microsoft.MoE %dx%d, %d experts, top-%d" % (H, I, E, K))
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(plot_path, dpi=120)
    print("wrote %s and %s" % (json_path, plot_path))


if __name__ == "__main__":
    main()
