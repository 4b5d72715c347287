"""What of bench/gpu_moe_ffn.py runs without a GPU: its FLOP and byte
counts against hand-computed values, the expected number of distinct experts
against a simulation, the benchmarked bf16 layers compiled by moec for the
CPU and (the small shape) run by moe-run against the NumPy MoE reference,
the one-line report when PyTorch or the GPU is missing, and bad usage."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import moe_reference as ref
from bf16_inputs import from_bf16_bits, routable
from safetensors_io import read_safetensors
from test_moe_ops import rel_error

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))
import gpu_moe_ffn as bench  # noqa: E402

BF16 = 2e-2


def test_flop_and_byte_counts():
    # Mixtral, one token hitting its 2 experts: router 2*4096*8, experts
    # 3 GEMMs * 2 FLOP * 2 rows * 4096 * 14336.
    assert bench.layer_flops(1, 4096, 14336, 8, 2) == 65536 + 704643072
    # 2 experts * 3 matrices * 4096*14336 + router 4096*8 + x and y 2*4096
    # elements, 2 bytes each.
    assert bench.layer_bytes(1, 4096, 14336, 8, 2) == \
        2 * (352321536 + 32768 + 8192)
    # Fine-grained, 4096 tokens hitting all 128 experts.
    assert bench.layer_flops(4096, 2048, 768, 128, 8) == \
        2 * 4096 * 2048 * 128 + 6 * 4096 * 8 * 2048 * 768
    assert bench.layer_bytes(4096, 2048, 768, 128, 128) == \
        2 * (128 * 3 * 2048 * 768 + 2048 * 128 + 2 * 4096 * 2048)


def test_roofline_takes_the_slower_bound():
    # 1e12 FLOP at 1e15 FLOP/s is 1 ms; 4e9 bytes at 2e12 B/s is 2 ms.
    assert bench.roofline_ms(1e12, 4e9, 1e15, 2e12) == pytest.approx(2.0)
    assert bench.roofline_ms(1e12, 1e9, 1e15, 2e12) == pytest.approx(1.0)


@pytest.mark.parametrize("tokens,experts,k", [(1, 8, 2), (3, 8, 2),
                                              (4, 128, 8), (40, 128, 8)])
def test_expected_experts_hit(tokens, experts, k):
    # Each token's k experts: the k smallest of E uniform draws.
    rng = np.random.default_rng(0)
    trials = 4000
    chosen = np.argsort(rng.random((trials, tokens, experts)),
                        axis=-1)[..., :k].reshape(trials, -1)
    touched = np.zeros((trials, experts), bool)
    np.put_along_axis(touched, chosen, True, axis=1)
    hit = touched.sum(axis=1).mean()
    expected = bench.expected_experts_hit(tokens, experts, k)
    assert expected == pytest.approx(hit, rel=0.01)
    if tokens == 1:
        assert expected == k


def run_script(*args):
    return subprocess.run([sys.executable, str(BENCH / "gpu_moe_ffn.py"),
                           *args], capture_output=True, text=True,
                          timeout=120)


def test_missing_gpu_or_torch_is_one_line():
    if bench.missing_requirement(0) is None:
        pytest.skip("PyTorch and a GPU are present: the benchmark would run")
    proc = run_script("--shapes", "small", "--tokens", "1")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "gpu_moe_ffn: nothing measured: "), proc.stdout
    assert proc.stderr == ""


@pytest.mark.parametrize("args,message", [
    (("--shapes", "mixtral,llama"), "unknown shape(s) llama"),
    (("--shapes", ""), "unknown shape(s) (none given)"),
    (("--tokens", "1,0"), "at least 1"),
    (("--tokens", "1,x"), "comma-separated integers"),
    (("--repeat", "0"), "--repeat must be at least 1"),
    (("--frobnicate",), "unrecognized arguments"),
])
def test_bad_usage_exits_2(args, message):
    proc = run_script(*args)
    assert proc.returncode == 2, (proc.returncode, proc.stdout)
    assert message in proc.stderr, proc.stderr


def compile_layer(moec_path, tmp_path, shape):
    source = tmp_path / "layer.mlir"
    source.write_text(bench.layer_text(*bench.SHAPES[shape]))
    library = tmp_path / "layer.so"
    proc = subprocess.run([str(moec_path), str(source), "-o", str(library)],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr
    return library


@pytest.mark.parametrize("shape", ["mixtral", "fine-grained"])
def test_layer_compiles_for_the_cpu(moec_path, tmp_path, shape):
    compile_layer(moec_path, tmp_path, shape)


def test_small_layer_on_the_cpu_matches_the_reference(moec_path, tmp_path,
                                                      numerics_report):
    """The small shape in bf16 through moe-run on the CPU, with moe-run's
    seeded parameters, on 7 tokens whose routing bf16 rounding cannot flip,
    against the float64 reference on the same bf16 values."""
    library = compile_layer(moec_path, tmp_path, "small")
    moe_run = moec_path.parent / "moe-run"
    params_file = tmp_path / "params.safetensors"
    subprocess.run([str(moe_run), str(library), "--seed", "3", "--dim",
                    "tokens=1", "--save-params", str(params_file)],
                   check=True, capture_output=True, timeout=300)
    params = {name: from_bf16_bits(bits).astype(np.float64)
              for name, bits in read_safetensors(params_file).items()}
    d_model, _, _, top_k = bench.SHAPES["small"]
    x = ref.to_bfloat16(routable(np.random.default_rng(5), (7, d_model),
                                 params["router"], top_k, 3.0))
    np.save(tmp_path / "x.npy", x)
    subprocess.run([str(moe_run), str(library), "--params", str(params_file),
                    "--input", "x=%s" % (tmp_path / "x.npy"),
                    "--output-dir", str(tmp_path / "out")],
                   check=True, capture_output=True, timeout=300)
    y = np.load(tmp_path / "out" / "y.npy")
    expected = ref.moe_layer(x.astype(np.float64), params["router"],
                             params["w1"], params["w2"], fc3=params["w3"],
                             routing="token_choice", activation="swiglu",
                             k=top_k, normalize=True)[0]
    error = rel_error(y, expected, "normwise")
    numerics_report("bench gpu_moe_ffn small layer bf16 on the CPU", error)
    assert error <= BF16, error
