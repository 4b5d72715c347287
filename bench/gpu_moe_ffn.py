"""GPU benchmark of one bf16 MoE FFN layer: moec vs PyTorch vs the roofline.

One MoE FFN layer (softmax router, top-k renormalised, dropless dispatch,
SwiGLU experts, weighted combine), all in bf16, for three shapes over a
sweep of token counts T:

    mixtral       d_model 4096, d_ff 14336,   8 experts, top-2
    fine-grained  d_model 2048, d_ff   768, 128 experts, top-8
    small         d_model 1024, d_ff  2816,   8 experts, top-2

Per point it reports, all measured in one run on one GPU:

- moec: the layer written with `moe.layer` (bench/moe_layer.py's text in
  bf16), compiled once per shape by `moec --target=cuda`, timed by
  `moe-run --device=cuda --repeat --warmup --timing-json` (median invoke
  time: input upload and output download excluded);
- two PyTorch references on the same parameters and inputs, timed with CUDA
  events after warm-up (median): the eager per-expert loop (index_select,
  three matmuls, index_add_; what HF Mixtral does) and a grouped-GEMM
  version with `torch._grouped_mm` (skipped, with a note, when the installed
  torch lacks it);
- the roofline floor max(FLOPs / P, bytes / B), where P is the bf16 matmul
  rate of a large torch.matmul and B the device-to-device copy bandwidth of
  a large copy (bytes read + written), both measured at start-up:
    FLOPs = 2 T D E (router) + 3 * 2 T k D F (the three expert GEMMs over the
            T k routed rows; softmax, top-k, SiLU and combine are left out);
    bytes = 2 * (n_hit * 3 D F + D E + 2 T D): bf16 weights of the n_hit
            distinct experts that the benchmark's own inputs are routed to
            (counted from the reference router's choice), the router weight,
            the activations read and the output written.
  The JSON also holds n_hit's expectation under uniform routing,
  E (1 - (1 - k/E)^T).
- the relative error max|y_moec - y_torch| / max|y_torch|.

Output: a table per shape on stdout, `--json FILE`, and `--plot FILE` (PNG,
when matplotlib is installed): time vs tokens, log-log, one panel per shape.
Benchmarks never pass or fail: without a GPU or without PyTorch the script
prints one line saying what is missing and exits 0; only bad usage exits 2.

    python3 bench/gpu_moe_ffn.py [--shapes small,mixtral] [--tokens 1,64,4096]
"""
import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "test" / "e2e"))
sys.path.insert(0, str(ROOT / "test" / "gpu"))
from moe_layer import LAYER  # noqa: E402
from safetensors_io import write_safetensors  # noqa: E402
import cuda_device  # noqa: E402

# name: (d_model, d_ff, experts, top-k)
SHAPES = {
    "mixtral": (4096, 14336, 8, 2),
    "fine-grained": (2048, 768, 128, 8),
    "small": (1024, 2816, 8, 2),
}
TOKENS = (1, 8, 64, 512, 4096, 16384)
BF16_BYTES = 2


def layer_text(d_model, d_ff, experts, top_k):
    """The benchmarked layer in the moe dialect, all tensors bf16."""
    return LAYER.format(D=d_model, F=d_ff, E=experts,
                        K=top_k).replace("xf32>", "xbf16>")


def layer_flops(tokens, d_model, d_ff, experts, top_k):
    """Router GEMM plus the gate, up and down GEMMs of the routed rows."""
    return (2 * tokens * d_model * experts +
            3 * 2 * tokens * top_k * d_model * d_ff)


def layer_bytes(tokens, d_model, d_ff, experts, experts_hit):
    """Minimum DRAM traffic in bytes: each touched weight and activation is
    moved once."""
    return BF16_BYTES * (experts_hit * 3 * d_model * d_ff +
                         d_model * experts + 2 * tokens * d_model)


def expected_experts_hit(tokens, experts, top_k):
    """Expected number of distinct experts that T tokens hit when each picks
    k of E experts uniformly without replacement."""
    return experts * (1.0 - (1.0 - top_k / experts) ** tokens)


def roofline_ms(flops, nbytes, peak_flops, peak_bytes_per_s):
    return 1e3 * max(flops / peak_flops, nbytes / peak_bytes_per_s)


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build", default=str(ROOT / "build"),
                        help="build directory with bin/moec and bin/moe-run")
    parser.add_argument("--shapes", default=",".join(SHAPES),
                        help="comma-separated subset of: " + ", ".join(SHAPES))
    parser.add_argument("--tokens", default=",".join(map(str, TOKENS)),
                        help="comma-separated token counts")
    parser.add_argument("--repeat", type=int, default=20,
                        help="timed calls per point")
    parser.add_argument("--warmup", type=int, default=5,
                        help="untimed calls before them")
    parser.add_argument("--device", type=int, default=0,
                        help="CUDA device index")
    parser.add_argument("--gpu-arch", help="passed to moec (e.g. sm_90)")
    parser.add_argument("--skip-moec", action="store_true",
                        help="only the PyTorch references and the floor")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir",
                        help="keep models, parameters and inputs here "
                             "(default: a temporary directory)")
    parser.add_argument("--json", default="gpu_moe_ffn.json")
    parser.add_argument("--plot", default="gpu_moe_ffn.png")
    args = parser.parse_args(argv)
    shapes = [s for s in args.shapes.split(",") if s]
    unknown = [s for s in shapes if s not in SHAPES]
    if unknown or not shapes:
        parser.error("--shapes: unknown shape(s) %s; choose from %s" % (
            ", ".join(unknown) or "(none given)", ", ".join(SHAPES)))
    try:
        tokens = [int(t) for t in args.tokens.split(",") if t]
    except ValueError:
        parser.error("--tokens: expected comma-separated integers, got %r" %
                     args.tokens)
    if not tokens or min(tokens) < 1:
        parser.error("--tokens: token counts must be at least 1")
    if args.repeat < 1 or args.warmup < 0:
        parser.error("--repeat must be at least 1 and --warmup at least 0")
    args.shapes, args.tokens = shapes, sorted(set(tokens))
    return args


def missing_requirement(device):
    """One line naming what this machine lacks to run the benchmark, or
    None."""
    missing = []
    try:
        import torch
    except ImportError as error:
        torch = None
        missing.append("PyTorch is not installed (%s)" % error)
    found, reason = cuda_device.probe()
    if not found:
        missing.append(reason)
    if missing:
        return "; ".join(missing)
    if not torch.cuda.is_available():
        return "torch %s cannot use the GPU (built without CUDA?)" % (
            torch.__version__)
    if device >= torch.cuda.device_count():
        return "no CUDA device %d (torch sees %d)" % (
            device, torch.cuda.device_count())
    return None


# ---------------------------------------------------------------------------
# PyTorch side (imported lazily: the module must load without torch)
# ---------------------------------------------------------------------------

def cuda_times_ms(torch, fn, repeat, warmup):
    """Times of `repeat` calls of fn() in ms, from CUDA events around each
    call, after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeat):
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return times


def cuda_time_ms(torch, fn, repeat, warmup):
    return float(np.median(cuda_times_ms(torch, fn, repeat, warmup)))


def measure_peaks(torch):
    """(bf16 matmul FLOP/s, copy bytes/s): the best of 10 calls of an
    8192^3 bf16 GEMM and of a 1 GiB device-to-device copy (1 GiB read plus
    1 GiB written)."""
    n = 8192
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    c = torch.empty(n, n, device="cuda", dtype=torch.bfloat16)
    matmul_ms = min(cuda_times_ms(torch, lambda: torch.matmul(a, b, out=c),
                                  10, 3))
    del a, b, c
    src = torch.empty(1 << 29, device="cuda", dtype=torch.bfloat16).normal_()
    dst = torch.empty_like(src)
    copy_ms = min(cuda_times_ms(torch, lambda: dst.copy_(src), 10, 3))
    copied = 2 * src.numel() * src.element_size()
    del src, dst
    torch.cuda.empty_cache()
    return 2.0 * n ** 3 / (matmul_ms * 1e-3), copied / (copy_ms * 1e-3)


def route(torch, x, router, top_k):
    """Softmax over the experts in f32, top-k, renormalised: the routing
    of moe.layer token_choice {normalize}."""
    probs = torch.softmax(torch.matmul(x, router).float(), dim=-1)
    weights, experts = torch.topk(probs, top_k, dim=-1)
    return weights / weights.sum(-1, keepdim=True), experts


def eager_loop(torch, x, p, top_k):
    """Per-expert loop as in HF Mixtral: select each expert's tokens, run its
    SwiGLU FFN, scatter-add the weighted result."""
    weights, experts = route(torch, x, p["router"], top_k)
    y = torch.zeros_like(x)
    for e in range(p["w1"].shape[0]):
        token, slot = torch.nonzero(experts == e, as_tuple=True)
        if token.numel() == 0:
            continue
        h = x.index_select(0, token)
        act = torch.nn.functional.silu(h @ p["w1"][e]) * (h @ p["w3"][e])
        out = (act @ p["w2"][e]) * weights[token, slot, None].to(x.dtype)
        y.index_add_(0, token, out)
    return y


def grouped(torch, x, p, top_k):
    """Sort the T k routed rows by expert and run each projection as one
    torch._grouped_mm over the experts' row segments; no host sync."""
    weights, experts = route(torch, x, p["router"], top_k)
    flat = experts.reshape(-1)
    order = torch.argsort(flat, stable=True)
    token = order // top_k
    ends = torch.cumsum(torch.bincount(flat, minlength=p["w1"].shape[0]),
                        0).to(torch.int32)
    h = x.index_select(0, token)
    gate = torch._grouped_mm(h, p["w1"], offs=ends)
    up = torch._grouped_mm(h, p["w3"], offs=ends)
    out = torch._grouped_mm(torch.nn.functional.silu(gate) * up, p["w2"],
                            offs=ends)
    out = out * weights.reshape(-1)[order, None].to(x.dtype)
    return torch.zeros_like(x).index_add_(0, token, out)


def make_parameters(torch, shape, seed):
    """bf16 weights, scaled so that activations stay O(1)."""
    d_model, d_ff, experts, _ = shape
    gen = torch.Generator(device="cuda").manual_seed(seed)

    def normal(dims, fan_in):
        return (torch.randn(dims, device="cuda", generator=gen) *
                fan_in ** -0.5).to(torch.bfloat16)
    return {"router": normal((d_model, experts), d_model),
            "w1": normal((experts, d_model, d_ff), d_model),
            "w2": normal((experts, d_ff, d_model), d_ff),
            "w3": normal((experts, d_model, d_ff), d_model)}


def save_bf16(torch, path, tensors):
    write_safetensors(path, {name: value.view(torch.int16).cpu().numpy()
                             .view(np.uint16)
                             for name, value in tensors.items()},
                      bf16=set(tensors))


# ---------------------------------------------------------------------------
# moec side
# ---------------------------------------------------------------------------

def compile_layer(args, shape, workdir):
    """Path of the compiled CUDA model, or (None, one-line reason)."""
    source = workdir / "layer.mlir"
    source.write_text(layer_text(*shape))
    library = workdir / "layer_cuda.so"
    command = [str(Path(args.build) / "bin" / "moec"), str(source),
               "--target=cuda", "-o", str(library)]
    if args.gpu_arch:
        command.append("--gpu-arch=" + args.gpu_arch)
    try:
        proc = subprocess.run(command, capture_output=True, text=True,
                              timeout=1800)
    except (OSError, subprocess.TimeoutExpired) as error:
        return None, "moec did not run: %s" % error
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        return None, "moec --target=cuda failed: %s" % (
            lines[0] if lines else "exit %d" % proc.returncode)
    return library, None


def run_moec(args, library, params, x_file, workdir):
    """(median invoke ms, y as float32) or raises RuntimeError."""
    timing = workdir / "timing.json"
    out = workdir / "out"
    command = [str(Path(args.build) / "bin" / "moe-run"), str(library),
               "--device=cuda:%d" % args.device, "--params", str(params),
               "--input", "x=%s" % x_file, "--repeat", str(args.repeat),
               "--warmup", str(args.warmup), "--timing-json", str(timing),
               "--output-dir", str(out)]
    proc = subprocess.run(command, capture_output=True, text=True,
                          timeout=1800)
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines()
        raise RuntimeError("moe-run failed: %s" % (
            lines[0] if lines else "exit %d" % proc.returncode))
    report = json.loads(timing.read_text())
    return float(report["invoke_ms"]["median"]), np.load(out / "y.npy")


# ---------------------------------------------------------------------------


def relative_error(actual, expected):
    expected = np.asarray(expected, np.float64)
    return float(np.abs(np.asarray(actual, np.float64) - expected).max() /
                 max(np.abs(expected).max(), 1e-30))


def percent(floor, time):
    return None if time is None else 100.0 * floor / time


def bench_shape(torch, args, name, peaks, workdir):
    shape = SHAPES[name]
    d_model, d_ff, experts, top_k = shape
    params = make_parameters(torch, shape, args.seed)
    param_file = workdir / "params.safetensors"
    library, moec_note = None, "skipped (--skip-moec)"
    if not args.skip_moec:
        save_bf16(torch, param_file, params)
        library, moec_note = compile_layer(args, shape, workdir)
    has_grouped = hasattr(torch, "_grouped_mm")
    grouped_note = None if has_grouped else (
        "torch %s has no torch._grouped_mm" % torch.__version__)
    rows = []
    gen = torch.Generator(device="cuda").manual_seed(args.seed + 1)
    for tokens in args.tokens:
        x = torch.randn((tokens, d_model), device="cuda",
                        generator=gen).to(torch.bfloat16)
        with torch.no_grad():
            reference = eager_loop(torch, x, params, top_k)
            hit = int(torch.unique(route(torch, x, params["router"],
                                         top_k)[1]).numel())
            loop_ms = cuda_time_ms(torch, lambda: eager_loop(
                torch, x, params, top_k), args.repeat, args.warmup)
            grouped_ms = None
            if has_grouped:
                try:
                    grouped_ms = cuda_time_ms(torch, lambda: grouped(
                        torch, x, params, top_k), args.repeat, args.warmup)
                except RuntimeError as error:
                    grouped_note = "torch._grouped_mm failed: %s" % (
                        str(error).splitlines()[0])
        flops = layer_flops(tokens, d_model, d_ff, experts, top_k)
        nbytes = layer_bytes(tokens, d_model, d_ff, experts, hit)
        floor = roofline_ms(flops, nbytes, *peaks)
        moec_ms = error = None
        if library is not None:
            x_file = workdir / ("x_%d.npy" % tokens)
            np.save(x_file, x.float().cpu().numpy())
            torch.cuda.empty_cache()
            try:
                moec_ms, y = run_moec(args, library, param_file, x_file,
                                      workdir)
                error = relative_error(y, reference.float().cpu().numpy())
            except (RuntimeError, OSError, subprocess.TimeoutExpired,
                    ValueError, KeyError) as failure:
                moec_note = str(failure)
        rows.append({
            "tokens": tokens, "flops": flops, "bytes": nbytes,
            "experts_hit": hit,
            "experts_hit_uniform": expected_experts_hit(tokens, experts,
                                                        top_k),
            "floor_ms": floor,
            "bound": "compute" if flops / peaks[0] >= nbytes / peaks[1]
                     else "memory",
            "moec_ms": moec_ms, "torch_loop_ms": loop_ms,
            "torch_grouped_mm_ms": grouped_ms,
            "moec_pct_of_floor": percent(floor, moec_ms),
            "torch_loop_pct_of_floor": percent(floor, loop_ms),
            "torch_grouped_mm_pct_of_floor": percent(floor, grouped_ms),
            "moec_rel_error": error})
    del params
    torch.cuda.empty_cache()
    return {"shape": name, "d_model": d_model, "d_ff": d_ff,
            "experts": experts, "top_k": top_k, "rows": rows,
            "moec_note": None if library is not None and all(
                r["moec_ms"] is not None for r in rows) else moec_note,
            "grouped_mm_note": grouped_note}


def fmt(value, spec):
    return "-" if value is None else spec % value


def print_table(result):
    print("\n%s: d_model %d, d_ff %d, %d experts, top-%d, bf16" % (
        result["shape"], result["d_model"], result["d_ff"],
        result["experts"], result["top_k"]))
    print("%7s %10s %10s %10s %10s %7s %8s %8s %8s %9s" % (
        "tokens", "floor ms", "moec ms", "loop ms", "grpmm ms", "bound",
        "moec %", "loop %", "grpmm %", "moec err"))
    for r in result["rows"]:
        print("%7d %10.4f %10s %10s %10s %7s %8s %8s %8s %9s" % (
            r["tokens"], r["floor_ms"], fmt(r["moec_ms"], "%.4f"),
            fmt(r["torch_loop_ms"], "%.4f"),
            fmt(r["torch_grouped_mm_ms"], "%.4f"), r["bound"],
            fmt(r["moec_pct_of_floor"], "%.1f"),
            fmt(r["torch_loop_pct_of_floor"], "%.1f"),
            fmt(r["torch_grouped_mm_pct_of_floor"], "%.1f"),
            fmt(r["moec_rel_error"], "%.2e")))
    for key in ("moec_note", "grouped_mm_note"):
        if result[key]:
            print("  note: %s" % result[key])


def plot(results, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, axes = plt.subplots(1, len(results), figsize=(5 * len(results), 4),
                             squeeze=False)
    for ax, result in zip(axes[0], results):
        tokens = [r["tokens"] for r in result["rows"]]
        for key, label, style in (
                ("moec_ms", "moec --target=cuda", "o-"),
                ("torch_loop_ms", "PyTorch eager loop", "s--"),
                ("torch_grouped_mm_ms", "PyTorch _grouped_mm", "^--"),
                ("floor_ms", "roofline floor", "k:")):
            points = [(t, r[key]) for t, r in zip(tokens, result["rows"])
                      if r[key] is not None]
            if points:
                ax.loglog(*zip(*points), style, label=label)
        ax.set_title("%s (%dx%d, %d experts, top-%d)" % (
            result["shape"], result["d_model"], result["d_ff"],
            result["experts"], result["top_k"]))
        ax.set_xlabel("tokens")
        ax.set_ylabel("time per layer call (ms)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return True


def main(argv=None):
    args = parse_args(argv)
    missing = missing_requirement(args.device)
    if missing:
        print("gpu_moe_ffn: nothing measured: %s" % missing)
        return 0
    import torch
    torch.cuda.set_device(args.device)
    peak_flops, peak_bw = measure_peaks(torch)
    device = torch.cuda.get_device_name(args.device)
    print("%s, torch %s: bf16 matmul %.0f TFLOP/s, copy %.0f GB/s "
          "(read + written)" % (device, torch.__version__, peak_flops / 1e12,
                                peak_bw / 1e9))
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.shapes:
            workdir = Path(args.workdir or tmp) / name
            workdir.mkdir(parents=True, exist_ok=True)
            results.append(bench_shape(torch, args, name,
                                       (peak_flops, peak_bw), workdir))
            print_table(results[-1])
    Path(args.json).write_text(json.dumps(
        {"device": device, "torch": torch.__version__,
         "peak_bf16_matmul_flops": peak_flops,
         "peak_copy_bytes_per_s": peak_bw,
         "repeat": args.repeat, "warmup": args.warmup,
         "timing": "median; moec: moe-run invoke time (no upload/download); "
                   "torch: CUDA events around each call",
         "shapes": results}, indent=2))
    if plot(results, args.plot):
        print("wrote %s and %s" % (args.json, args.plot))
    else:
        print("wrote %s (matplotlib missing: no plot)" % args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
