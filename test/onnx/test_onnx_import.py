"""ONNX import parity: models of models.py compiled by `moec model.onnx`, run
through the model ABI and compared with onnxruntime (CPU execution
provider) on the same model, on random inputs from several seeds and odd
symbolic extents (seq 1, 5, 13; batch 1, 3).

Configurations of com.microsoft.MoE that onnxruntime's CPU kernel cannot
run (fc3, swiglu_fusion 0 and 2, relu2, geglu; see
test/reference/test_ort_moe_reference.py) are compared with the NumPy
reference test/reference/ort_moe_reference.py instead; the decomposed MoE
graphs are compared with both.

Error measures: floats normwise relative, max|y - ort| / max|ort|;
integer and boolean outputs exactly. Tolerances: f32 1e-5 (transcendental
functions, reordered sums and contractions; 1e-4 for Pow with a tensor
exponent and for whole blocks, whose residual streams sum O(10) terms of
differently rounded attention and FFN), f16 4e-3. The run prints the
worst error per model in the terminal summary.

Bad input: exit status 1, one diagnostic naming the file (and, for
unsupported operators, every op type with its node names), no traceback
or crash.
"""
import math
import re

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import models
from test_nn_ops import rel_error

SEEDS = (0, 1)
F32 = 1e-5
F16 = 4e-3
BLOCK = 1e-4
TOKENS = [{"tokens": 1}, {"tokens": 7}, {"tokens": 64}]
BATCH_SEQ = [{"batch": 1, "seq": 5, "tokens": 5},
             {"batch": 3, "seq": 1, "tokens": 3},
             {"batch": 3, "seq": 13, "tokens": 39}]


def run_ort(model, inputs):
    source = model if isinstance(model, str) else model.SerializeToString()
    session = ort.InferenceSession(source, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, inputs)))


def compare(numerics_report, key, actual, expected, tol):
    """Every expected output against the compiled one."""
    for name, want in expected.items():
        assert name in actual, "output %s missing (got %s)" % (
            name, sorted(actual))
        got = actual[name]
        assert got.shape == want.shape, (name, got.shape, want.shape)
        if want.dtype.kind in "biu":
            assert got.dtype == want.dtype, (name, got.dtype, want.dtype)
            np.testing.assert_array_equal(got, want, err_msg=key + " " + name)
            continue
        assert got.dtype == want.dtype or want.dtype == np.float64, (
            name, got.dtype, want.dtype)
        if want.size == 0:
            continue
        err = rel_error(got, want, "normwise")
        numerics_report(key, err)
        assert err <= tol, "%s/%s: normwise error %.3g > %.3g" % (
            key, name, err, tol)


def assert_parameter_names(model, params):
    """Parameters are named after initializers: a fused SwiGLU fc1 splits
    into NAME.gate and NAME.linear, and the per-expert weights of a
    decomposed MoE FFN (PREFIX.<e>.SUFFIX) are stacked into PREFIX.SUFFIX."""
    names = {t.name for t in model.graph.initializer}
    names |= {n + suffix for n in names for suffix in (".gate", ".linear")}
    names |= {re.sub(r"\.\d+\.", ".", n) for n in names}
    assert set(params) <= names, set(params) - names


def check_against_ort(compile_onnx, numerics_report, key, model, extents,
                      tol, ranges=None, seeds=SEEDS, reference=None):
    """Compile once, run every extent and seed; also compare with
    `reference(model, inputs)` -> {name: float64 array} if given."""
    compiled, params = compile_onnx(model)
    assert_parameter_names(model, params)
    for extent in extents:
        for seed in seeds:
            inputs = models.random_inputs(model, extent, seed, ranges)
            actual = compiled.run("forward", **inputs, **params)
            compare(numerics_report, key, actual, run_ort(model, inputs), tol)
            if reference is not None:
                compare(numerics_report, key + " vs reference", actual,
                        reference(model, inputs), tol)


# ---------------------------------------------------------------------------
# Single ops
# ---------------------------------------------------------------------------

CASES = models.single_op_cases()
LOOSE = {"Pow_tensor": 1e-4}


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_single_op(compile_onnx, numerics_report, case):
    f16 = any(v.type.tensor_type.elem_type == TensorProto.FLOAT16
              for v in list(case.model.graph.input) +
              list(case.model.graph.output))
    tol = F16 if f16 else LOOSE.get(case.name, F32)
    check_against_ort(compile_onnx, numerics_report, case.name, case.model,
                      case.extents, tol, case.ranges)


# ---------------------------------------------------------------------------
# com.microsoft.MoE
# ---------------------------------------------------------------------------

CPU_ACTIVATIONS = ["relu", "gelu", "silu", "identity", "swiglu"]
SIZES = [(8, 12), (24, 40), (64, 16)]  # hidden, inter


def moe_key(options):
    return "MoE " + " ".join("%s=%s" % kv for kv in sorted(options.items())
                             if kv[0] not in ("hidden", "inter", "seed"))


def moe_extents(rank):
    return TOKENS if rank == 2 else BATCH_SEQ


@pytest.mark.parametrize("normalize", [0, 1])
@pytest.mark.parametrize("activation", CPU_ACTIVATIONS)
@pytest.mark.parametrize("k", [1, 2, 4])
def test_moe_op(compile_onnx, numerics_report, k, activation, normalize):
    # The sizes alternate 2-D/3-D inputs and biases on/off, so that every
    # (k, activation, normalisation) sees both of each.
    for index, (hidden, inter) in enumerate(SIZES):
        rank = 2 + index % 2
        bias = index % 2 == normalize
        options = dict(hidden=hidden, inter=inter, experts=8, k=k,
                       activation_type=activation,
                       normalize_routing_weights=normalize,
                       swiglu_fusion=1 if activation == "swiglu" else None,
                       fc1_bias=bias, fc2_bias=bias, rank=rank, seed=index)
        check_against_ort(compile_onnx, numerics_report, moe_key(options),
                          models.moe_op_model(**options), moe_extents(rank),
                          F32)


MOE_VARIANTS = {
    "router_input": dict(router="input", k=2, activation_type="silu"),
    "router_input_3d": dict(router="input", rank=3, k=2,
                            activation_type="relu"),
    "defaults": dict(k=None, activation_type=None),
    "swiglu_params": dict(k=2, activation_type="swiglu", swiglu_fusion=1,
                          activation_alpha=1.702, activation_beta=1.0,
                          swiglu_limit=0.8, fc1_bias=True, fc2_bias=True),
    "legacy_relu": dict(k=2, legacy=True, hidden=8, inter=12),
    "legacy_swiglu_square": dict(k=2, legacy=True, hidden=16, inter=16,
                                 activation_type="swiglu", swiglu_fusion=1),
    "legacy_swiglu": dict(k=2, legacy=True, hidden=8, inter=20,
                          activation_type="swiglu", swiglu_fusion=1,
                          fc1_bias=True),
    "k_equals_e": dict(k=4, experts=4, activation_type="gelu"),
    "one_expert": dict(k=1, experts=1, activation_type="relu"),
}


@pytest.mark.parametrize("name", sorted(MOE_VARIANTS))
def test_moe_op_variants(compile_onnx, numerics_report, name):
    options = MOE_VARIANTS[name]
    check_against_ort(compile_onnx, numerics_report, "MoE " + name,
                      models.moe_op_model(**options),
                      moe_extents(options.get("rank", 2)), F32)


def test_moe_op_ties(compile_onnx, numerics_report):
    """Equal router probabilities go to the larger expert index, as
    onnxruntime's CPU kernel sorts (probability, index) pairs."""
    model = models.moe_op_model(router="input", k=2, experts=4)
    compiled, params = compile_onnx(model)
    inputs = models.random_inputs(model, {"tokens": 5}, 4)
    inputs["router_logits"][:] = 0.0
    inputs["router_logits"][1, :2] = 1.0
    inputs["router_logits"][2, 1:3] = -1.0
    compare(numerics_report, "MoE ties", compiled.run("forward", **inputs,
                                                      **params),
            run_ort(model, inputs), F32)


@pytest.mark.parametrize("activation", CPU_ACTIVATIONS)
def test_moe_op_f16(compile_onnx, numerics_report, activation):
    model = models.moe_op_model(
        hidden=24, inter=40, experts=8, k=2, activation_type=activation,
        swiglu_fusion=1 if activation == "swiglu" else None,
        normalize_routing_weights=1, fc1_bias=True, fc2_bias=True,
        dtype=np.float16)
    check_against_ort(compile_onnx, numerics_report, "MoE f16 " + activation,
                      model, TOKENS, F16)


REFERENCE_ONLY = {
    "silu_fc3": dict(activation_type="silu", fc3=True, fc3_bias=True,
                     fc1_bias=True),
    "swiglu_fusion0": dict(activation_type="swiglu", swiglu_fusion=0,
                           fc3=True, fc1_bias=True, fc3_bias=True),
    "swiglu_fusion2": dict(activation_type="swiglu", swiglu_fusion=2,
                           swiglu_limit=1.0, activation_alpha=1.702,
                           activation_beta=1.0, fc1_bias=True),
    "swiglu_default_fusion_fc3": dict(activation_type="swiglu", fc3=True),
    "relu2": dict(activation_type="relu2", fc2_bias=True),
    "geglu_fusion1": dict(activation_type="geglu", swiglu_fusion=1),
    "geglu_fusion2": dict(activation_type="geglu", swiglu_fusion=2,
                          fc1_bias=True),
}


@pytest.mark.parametrize("name", sorted(REFERENCE_ONLY))
def test_moe_op_reference_only(compile_onnx, numerics_report, name):
    """Configurations onnxruntime's CPU kernel rejects: the reference."""
    options = dict(REFERENCE_ONLY[name], k=2, experts=8, hidden=24, inter=40,
                   normalize_routing_weights=1)
    assert not models.ort_ref.ort_cpu_supports(**options)[0]
    model = models.moe_op_model(**options)
    compiled, params = compile_onnx(model)
    for extent in TOKENS:
        for seed in SEEDS:
            inputs = models.random_inputs(model, extent, seed)
            actual = compiled.run("forward", **inputs, **params)
            compare(numerics_report, "MoE %s vs reference" % name, actual,
                    {"y": models.moe_op_reference(model, inputs)}, F32)


# ---------------------------------------------------------------------------
# Decomposed MoE and decoder blocks
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("rank", [2, 3])
@pytest.mark.parametrize("activation", ["relu", "gelu_tanh", "silu",
                                        "swiglu", "gelu"])
@pytest.mark.parametrize("form", ["where", "cast", "sparse",
                                  "sparse_elements"])
def test_decomposed_moe(compile_onnx, numerics_report, form, activation,
                        rank):
    options = dict(hidden=8, experts=4, k=2, activation=activation,
                   normalize=rank == 2)
    model = models.decomposed_moe_model(form=form, rank=rank, **options)
    reference = None
    if activation != "gelu":  # the contrib op's gelu is the tanh form
        def reference(m, inputs):
            return {"y": models.decomposed_moe_reference(m, inputs,
                                                         **options)}
    check_against_ort(compile_onnx, numerics_report,
                      "decomposed MoE %s %s" % (form, activation), model,
                      moe_extents(rank), F32, reference=reference)


def test_decomposed_moe_f16(compile_onnx, numerics_report):
    # onnxruntime's CPU ScatterND has no f16 reduction: the dense form only.
    model = models.decomposed_moe_model(form="where", rank=3,
                                        dtype=np.float16)
    check_against_ort(compile_onnx, numerics_report, "decomposed MoE f16",
                      model, BATCH_SEQ, F16)


BLOCKS = [(13, "op"), (13, "where"), (18, "op"), (18, "where"),
          (18, "cast"), (18, "sparse"), (20, "op"), (20, "where")]


@pytest.mark.parametrize("opset,moe", BLOCKS,
                         ids=["opset%d-%s" % b for b in BLOCKS])
def test_transformer_block(compile_onnx, numerics_report, opset, moe):
    model = models.transformer_block_model(opset=opset, moe=moe)
    check_against_ort(compile_onnx, numerics_report,
                      "decoder block opset %d %s" % (opset, moe), model,
                      BATCH_SEQ, BLOCK, seeds=(0, 1, 2))


def test_transformer_block_gelu_tanh_f16(compile_onnx, numerics_report):
    model = models.transformer_block_model(
        opset=18, shared_activation="gelu_tanh", dtype=np.float16)
    check_against_ort(compile_onnx, numerics_report,
                      "decoder block f16 gelu_tanh", model, BATCH_SEQ, F16)


def test_external_data(compile_onnx, numerics_report, tmp_path):
    model = models.transformer_block_model(opset=18, moe="op")
    path = models.save_with_external_data(model, tmp_path / "block.onnx")
    assert (tmp_path / "weights.bin").stat().st_size > 0
    compiled, params = compile_onnx(path)
    expected_params = models.initializers(model)
    for name, value in params.items():
        if name in expected_params and value.shape == \
                expected_params[name].shape:
            np.testing.assert_array_equal(value, expected_params[name])
    for extent in BATCH_SEQ:
        inputs = models.random_inputs(model, extent, 5)
        compare(numerics_report, "decoder block external data",
                compiled.run("forward", **inputs, **params),
                run_ort(str(path), inputs), BLOCK)


def test_interface(compile_onnx):
    """forward takes the graph inputs (names, dtypes, symbolic dims) and
    the float initializers as parameters, and returns the graph outputs."""
    model = models.moe_op_model(rank=3, router="matmul")
    compiled, params = compile_onnx(model)
    args = {a.name: a for a in compiled.args("forward")}
    assert args["x"].role == "input"
    assert args["x"].dtype == np.float32
    assert args["x"].shape == [-1, -1, 8]
    assert args["y"].role == "output"
    for name in params:
        assert args[name].role == "parameter", name
    assert set(params) == {"router_weight", "fc1_experts_weights",
                           "fc2_experts_weights"}


# ---------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------

def moec_fails(compile_onnx, source, tmp_path):
    proc = compile_onnx.run(source, tmp_path / "out" / "model.so")
    message = proc.stderr
    assert proc.returncode == 1, (proc.returncode, message)
    assert "Traceback" not in message and "Stack dump" not in message, \
        message
    lines = [line for line in message.splitlines() if line.strip()]
    assert len(lines) == 1, message
    assert source.name in message, message
    return message


def raw_model(nodes, inputs, outputs, initializers=(), opsets=(("", 18),)):
    graph = helper.make_graph(nodes, "bad", inputs, outputs,
                              list(initializers))
    return helper.make_model(graph, opset_imports=[
        helper.make_opsetid(d, v) for d, v in opsets])


def tensor(name, shape=None):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def test_unsupported_operators_listed_once(compile_onnx, tmp_path):
    nodes = [helper.make_node("Det", ["x"], ["d0"], name="det0"),
             helper.make_node("Det", ["x"], ["d1"], name="det1"),
             helper.make_node("Hardmax", ["x"], ["h"], name="hm"),
             helper.make_node("Add", ["d0", "d1"], ["y"], name="add")]
    path = tmp_path / "unsupported.onnx"
    onnx.save_model(raw_model(nodes, [tensor("x", [3, 3])],
                              [tensor("y", []), tensor("h", [3, 3])]), path)
    message = moec_fails(compile_onnx, path, tmp_path)
    for text in ("Det", "det0", "det1", "Hardmax", "hm"):
        assert re.search(r"\b%s\b" % text, message), (text, message)


def test_garbage_bytes(compile_onnx, tmp_path):
    path = tmp_path / "garbage.onnx"
    path.write_bytes(np.random.default_rng(0).bytes(1000))
    moec_fails(compile_onnx, path, tmp_path)


def test_truncated_file(compile_onnx, tmp_path):
    data = models.transformer_block_model().SerializeToString()
    path = tmp_path / "truncated.onnx"
    path.write_bytes(data[:len(data) // 2])
    moec_fails(compile_onnx, path, tmp_path)


def test_missing_external_data(compile_onnx, tmp_path):
    path = models.save_with_external_data(models.moe_op_model(),
                                          tmp_path / "external.onnx")
    (tmp_path / "weights.bin").unlink()
    message = moec_fails(compile_onnx, path, tmp_path)
    assert "weights.bin" in message, message


def test_short_external_data(compile_onnx, tmp_path):
    path = models.save_with_external_data(models.moe_op_model(),
                                          tmp_path / "short.onnx")
    weights = tmp_path / "weights.bin"
    weights.write_bytes(weights.read_bytes()[:-64])
    message = moec_fails(compile_onnx, path, tmp_path)
    assert "weights.bin" in message, message


def test_bad_initializer_size(compile_onnx, tmp_path):
    weight = numpy_helper.from_array(np.ones((4, 4), np.float32), "w")
    weight.raw_data = weight.raw_data[:-4]
    nodes = [helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")]
    path = tmp_path / "bad_size.onnx"
    onnx.save_model(raw_model(nodes, [tensor("x", ["n", 4])],
                              [tensor("y", ["n", 4])], [weight]), path)
    message = moec_fails(compile_onnx, path, tmp_path)
    assert re.search(r"\bw\b", message.replace(str(path), "")), message


def test_undefined_value(compile_onnx, tmp_path):
    nodes = [helper.make_node("Add", ["x", "nowhere"], ["y"], name="add")]
    path = tmp_path / "undefined.onnx"
    onnx.save_model(raw_model(nodes, [tensor("x", [2])], [tensor("y", [2])]),
                    path)
    message = moec_fails(compile_onnx, path, tmp_path)
    assert "nowhere" in message, message


def test_qmoe_not_supported(compile_onnx, tmp_path):
    hidden, inter, experts = 8, 16, 4
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.integers(0, 255, (experts, inter,
                                                      hidden // 2),
                                             dtype=np.uint8), "fc1"),
        numpy_helper.from_array(np.ones((experts, inter), np.float16),
                                "fc1_scales"),
        numpy_helper.from_array(rng.integers(0, 255, (experts, hidden,
                                                      inter // 2),
                                             dtype=np.uint8), "fc2"),
        numpy_helper.from_array(np.ones((experts, hidden), np.float16),
                                "fc2_scales")]
    node = helper.make_node("QMoE", ["x", "r", "fc1", "fc1_scales", "",
                                     "fc2", "fc2_scales"], ["y"],
                            name="qmoe", domain=models.MS_DOMAIN, k=2,
                            activation_type="relu", expert_weight_bits=4)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT16, ["t", hidden])
    r = helper.make_tensor_value_info("r", TensorProto.FLOAT16,
                                      ["t", experts])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT16, ["t", hidden])
    path = tmp_path / "qmoe.onnx"
    onnx.save_model(raw_model([node], [x, r], [y], inits,
                              opsets=(("", 18), (models.MS_DOMAIN, 1))),
                    path)
    message = moec_fails(compile_onnx, path, tmp_path)
    assert "QMoE" in message and "not supported" in message, message


def test_reference_tolerance_is_meaningful():
    """A wrong gelu (erf instead of the tanh form) is caught at F32."""
    x = np.linspace(-4, 4, 101)
    exact = 0.5 * x * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))
    assert rel_error(exact, models.ort_ref.gelu_tanh(x), "normwise") > F32
