"""ort_moe_reference.py against onnxruntime's CPU com.microsoft.MoE kernel.

A grid of configurations (k 1, 2, 4; every activation the CPU kernel runs;
routing normalisation on/off; token counts 1, 7, 64; hidden sizes 8, 24, 64
with several inter sizes; biases on/off; 2-D and 3-D inputs; the legacy
weight shapes; f32 and f16; explicit activation_alpha/beta/swiglu_limit;
omitted attributes; ties) runs through an onnxruntime session and the
float64 reference. Normwise relative error max|y - ref| / max|ref|:
f32 within 1e-5 (measured 4.3e-7), f16 within 4e-3 (measured 4.5e-4).

onnxruntime's CPU kernel cannot run (checked here: session creation or the
run fails): fc3 weights or bias (any activation), swiglu with swiglu_fusion
0 or 2 (including the default 0), relu2 and geglu. Those configurations are
checked only against the reference, which is compared with a second,
differently written computation (all experts on all tokens, masked by the
routing) and with identities between the layouts (fusion 0 with fc1/fc3 =
fusion 2 with [fc1 | fc3] = fusion 1 interleaved).
"""
import math
import pathlib
import sys

import numpy as np
import pytest

ort = pytest.importorskip("onnxruntime")
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent /
                       "onnx"))

import models  # noqa: E402
import ort_moe_reference as ref  # noqa: E402

F32_TOL = 1e-5
F16_TOL = 4e-3
SIZES = [(1, 8, 12), (7, 24, 40), (64, 64, 16)]  # tokens, hidden, inter
CPU_ACTIVATIONS = ["relu", "gelu", "silu", "identity", "swiglu"]


def normwise(actual, expected):
    expected = np.asarray(expected, np.float64)
    return (np.abs(np.asarray(actual, np.float64) - expected).max() /
            np.abs(expected).max())


def run_ort(model, inputs):
    session = ort.InferenceSession(model.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    return session.run(None, inputs)[0]


def compare(dtype=np.float32, tokens=7, seed=0, **options):
    """Builds a moe_op_model, runs it in onnxruntime and the reference;
    returns the normwise error."""
    options.setdefault("router", "input")
    options.setdefault("experts", 8)
    rank = options.get("rank", 2)
    model = models.moe_op_model(dtype=dtype, seed=seed, **options)
    extents = ({"tokens": tokens} if rank == 2 else
               {"batch": 1, "seq": tokens, "tokens": tokens})
    inputs = models.random_inputs(model, extents, seed + 100)
    actual = run_ort(model, inputs)
    assert actual.dtype == dtype
    assert actual.shape == inputs["x"].shape
    return normwise(actual, models.moe_op_reference(model, inputs))


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("normalize", [0, 1])
@pytest.mark.parametrize("activation", CPU_ACTIVATIONS)
@pytest.mark.parametrize("k", [1, 2, 4])
def test_grid_f32(k, activation, normalize, bias):
    fusion = 1 if activation == "swiglu" else None
    for index, (tokens, hidden, inter) in enumerate(SIZES):
        for seed in (0, 1):
            err = compare(tokens=tokens, hidden=hidden, inter=inter, k=k,
                          activation_type=activation, swiglu_fusion=fusion,
                          normalize_routing_weights=normalize,
                          fc1_bias=bias, fc2_bias=bias, rank=2 + index % 2,
                          seed=seed)
            assert err < F32_TOL, (tokens, hidden, inter, seed, err)


@pytest.mark.parametrize("activation", CPU_ACTIVATIONS)
def test_grid_f16(activation):
    fusion = 1 if activation == "swiglu" else None
    for tokens, hidden, inter in SIZES:
        for k in (1, 2, 4):
            err = compare(np.float16, tokens=tokens, hidden=hidden,
                          inter=inter, k=k, activation_type=activation,
                          swiglu_fusion=fusion, normalize_routing_weights=1,
                          fc1_bias=True, fc2_bias=True)
            assert err < F16_TOL, (tokens, hidden, inter, k, err)


@pytest.mark.parametrize("hidden,inter,activation", [
    (8, 12, "relu"), (24, 8, "silu"), (16, 16, "swiglu"), (8, 20, "swiglu"),
    (24, 40, "gelu")])
def test_legacy_layout(hidden, inter, activation):
    """Legacy shapes are recognised as moe_helper.h does and read as the
    same memory (not transposed)."""
    fusion = 1 if activation == "swiglu" else None
    fused = fusion is not None
    fc1_rows = 2 * inter if fused else inter
    legacy, _ = ref.weight_layout(hidden, (8, hidden, fc1_rows),
                                  (8, inter, hidden), fused)
    assert legacy
    for tokens in (1, 7, 64):
        err = compare(tokens=tokens, hidden=hidden, inter=inter, k=2,
                      activation_type=activation, swiglu_fusion=fusion,
                      legacy=True, fc1_bias=True)
        assert err < F32_TOL, (tokens, err)


def test_layout_detection_matches_helper():
    # Equal sizes are the current layout unless fused fc1 has H rows.
    assert ref.weight_layout(8, (4, 8, 8), (4, 8, 8), False) == (False, 8)
    assert ref.weight_layout(8, (4, 16, 8), (4, 8, 8), True) == (False, 8)
    assert ref.weight_layout(8, (4, 8, 16), (4, 8, 8), True) == (True, 8)
    assert ref.weight_layout(8, (4, 12, 8), (4, 8, 12), False) == (False, 12)
    assert ref.weight_layout(8, (4, 8, 12), (4, 12, 8), False) == (True, 12)


def test_router_in_graph_and_3d():
    for rank in (2, 3):
        err = compare(tokens=13, rank=rank, router="matmul", k=2,
                      activation_type="silu", normalize_routing_weights=1)
        assert err < F32_TOL


def test_explicit_swiglu_parameters():
    for limit in (0.5, 3.0, None):
        err = compare(tokens=64, hidden=24, inter=40, k=2,
                      activation_type="swiglu", swiglu_fusion=1,
                      activation_alpha=1.702, activation_beta=1.0,
                      swiglu_limit=limit, fc1_bias=True)
        assert err < F32_TOL, (limit, err)


def test_defaults():
    """Omitted k, activation_type, normalisation, alpha, beta and limit
    behave as the reference's defaults (k=1, relu, no normalisation; for
    swiglu alpha 1, beta 0, no clamp)."""
    model = models.moe_op_model(router="input", k=None, activation_type=None,
                                experts=8)
    inputs = models.random_inputs(model, {"tokens": 7}, 3)
    assert normwise(run_ort(model, inputs),
                    ref.ort_moe(inputs["x"], inputs["router_logits"],
                                *[models.initializers(model)[n] for n in
                                  ("fc1_experts_weights",
                                   "fc2_experts_weights")])) < F32_TOL
    assert compare(k=2, activation_type="swiglu", swiglu_fusion=1) < F32_TOL


def test_ties_go_to_the_larger_expert_index():
    model = models.moe_op_model(router="input", k=2, experts=4)
    inputs = models.random_inputs(model, {"tokens": 5}, 4)
    inputs["router_logits"][:] = 0.0
    inputs["router_logits"][1, :2] = 1.0
    expected = models.moe_op_reference(model, inputs)
    assert normwise(run_ort(model, inputs), expected) < F32_TOL
    experts, _ = ref.route(inputs["router_logits"], 2)
    assert experts[0].tolist() == [3, 2]
    assert experts[1].tolist() == [1, 0]


def test_sparse_mixer_is_ignored_by_the_cpu_kernel():
    assert compare(k=2, use_sparse_mixer=1, activation_type="relu") < F32_TOL


UNSUPPORTED = [
    dict(activation_type="silu", fc3=True),
    dict(activation_type="relu", fc3=True, fc3_bias=True),
    dict(activation_type="swiglu", swiglu_fusion=0, fc3=True),
    dict(activation_type="swiglu", swiglu_fusion=2),
    dict(activation_type="swiglu"),
    dict(activation_type="relu2"),
    dict(activation_type="geglu", swiglu_fusion=1),
    dict(activation_type="geglu", swiglu_fusion=2),
]


@pytest.mark.parametrize("options", UNSUPPORTED, ids=str)
def test_cpu_kernel_rejects(options):
    supported, _ = ref.ort_cpu_supports(**options)
    assert not supported
    model = models.moe_op_model(router="input", k=2, **options)
    inputs = models.random_inputs(model, {"tokens": 3}, 0)
    with pytest.raises(Exception):
        run_ort(model, inputs)


# ---------------------------------------------------------------------------
# Configurations onnxruntime's CPU kernel cannot run: reference only.
# ---------------------------------------------------------------------------

def dense_moe(x, logits, gate_up, down, k, normalize, act):
    """Every expert on every token, combined with a routing mask: a second,
    vectorised computation. gate_up(x) -> [E, T, I] activations' input is
    left to `act`; down [E, H, I]."""
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    # Rank with ties to the larger index: sort descending by (p, index).
    order = np.lexsort((-np.arange(probs.shape[1])[None, :].repeat(
        len(probs), 0), -probs), axis=-1)[:, :k]
    mask = np.zeros_like(probs)
    np.put_along_axis(mask, order, np.take_along_axis(probs, order, -1), -1)
    if normalize:
        mask /= mask.sum(-1, keepdims=True)
    hidden = act(*gate_up(x))                     # [E, T, I]
    outputs = np.einsum("eti,ehi->eth", hidden, down)
    return np.einsum("te,eth->th", mask, outputs)


def random_case(seed, tokens=9, hidden=12, inter=10, experts=6):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((tokens, hidden))
    logits = rng.standard_normal((tokens, experts))
    w1, w3 = (rng.standard_normal((experts, inter, hidden)) / 3 for _ in "13")
    w2 = rng.standard_normal((experts, hidden, inter)) / 3
    b1, b3 = (rng.standard_normal((experts, inter)) / 4 for _ in "13")
    return x, logits, w1, w2, w3, b1, b3


def silu(v):
    return v / (1 + np.exp(-v))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fc3_gated_and_swiglu_layouts(seed):
    x, logits, w1, w2, w3, b1, b3 = random_case(seed)
    for k, normalize in ((1, 0), (2, 1), (4, 0)):
        def gate_up(rows):
            return (np.einsum("eih,th->eti", w1, rows) + b1[:, None],
                    np.einsum("eih,th->eti", w3, rows) + b3[:, None])

        # silu with fc3: Mixtral's silu(x W1) * (x W3).
        expected = dense_moe(x, logits, gate_up, w2, k, normalize,
                             lambda g, u: silu(g) * u)
        got = ref.ort_moe(x, logits, w1, w2, b1, None, w3, b3, k=k,
                          activation_type="silu",
                          normalize_routing_weights=normalize)
        assert normwise(got, expected) < 1e-12
        # swiglu with alpha/beta/limit: fusion 0, 2 and 1 agree.
        alpha, beta, limit = 1.702, 1.0, 1.5
        expected = dense_moe(
            x, logits, gate_up, w2, k, normalize,
            lambda g, u: (np.minimum(g, limit) * 0.5 * (1 + np.tanh(
                0.5 * alpha * np.minimum(g, limit)))) *
            (np.clip(u, -limit, limit) + beta))
        swiglu = dict(k=k, activation_type="swiglu", activation_alpha=alpha,
                      activation_beta=beta, swiglu_limit=limit,
                      normalize_routing_weights=normalize)
        unfused = ref.ort_moe(x, logits, w1, w2, b1, None, w3, b3,
                              swiglu_fusion=0, **swiglu)
        concatenated = ref.ort_moe(
            x, logits, np.concatenate([w1, w3], 1), w2,
            np.concatenate([b1, b3], 1), swiglu_fusion=2, **swiglu)
        interleaved_w = np.stack([w1, w3], 2).reshape(w1.shape[0], -1,
                                                      w1.shape[2])
        interleaved_b = np.stack([b1, b3], 2).reshape(b1.shape[0], -1)
        interleaved = ref.ort_moe(x, logits, interleaved_w, w2,
                                  interleaved_b, swiglu_fusion=1, **swiglu)
        for got in (unfused, concatenated, interleaved):
            assert normwise(got, expected) < 1e-12


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_relu2_and_geglu(seed):
    x, logits, w1, w2, w3, b1, b3 = random_case(seed)

    def gate_up(rows):
        return (np.einsum("eih,th->eti", w1, rows) + b1[:, None],
                np.einsum("eih,th->eti", w3, rows) + b3[:, None])

    expected = dense_moe(x, logits, gate_up, w2, 2, 1,
                         lambda g, _: np.where(g > 0, g * g, 0.0))
    got = ref.ort_moe(x, logits, w1, w2, b1, k=2, activation_type="relu2",
                      normalize_routing_weights=1)
    assert normwise(got, expected) < 1e-12

    def gelu_tanh(v):
        return v * 0.5 * (1 + np.tanh(math.sqrt(2 / math.pi) *
                                      (v + 0.044715 * v * v * v)))

    expected = dense_moe(x, logits, gate_up, w2, 2, 0,
                         lambda g, u: gelu_tanh(g) * u)
    got = ref.ort_moe(x, logits, np.concatenate([w1, w3], 1), w2,
                      np.concatenate([b1, b3], 1), k=2,
                      activation_type="geglu", swiglu_fusion=2)
    assert normwise(got, expected) < 1e-12
