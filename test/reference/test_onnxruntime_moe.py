"""The expert activations of moe_reference.py against onnxruntime's
`com.microsoft.MoE` contrib op (CPU), an implementation that is not ours:
relu, gelu (onnxruntime's is the tanh approximation, our gelu_tanh), silu,
identity and SwiGLU with and without its alpha / beta / limit. (relu2 and
GEGLU exist in onnxruntime's CUDA kernel only.)

onnxruntime takes the router logits and `W^T` layouts: fc1 is [E, F, D]
(for SwiGLU [E, 2F, D] with the gate and linear rows interleaved,
`swiglu_fusion = 1`), fc2 [E, D, F]. Errors are max |a - b| / max |b|.
"""
import numpy as np
import pytest

import moe_reference as ref

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

SEEDS = (0, 1, 2)
TOL = 2e-5


def ort_moe(x, logits, fc1, fc2, fc1_bias, fc2_bias, k, normalize, attrs):
    T, D = x.shape
    E = logits.shape[1]
    inits = {"fc1": fc1, "fc2": fc2, "fc1_bias": fc1_bias, "fc2_bias": fc2_bias}
    node = helper.make_node(
        "MoE", ["x", "logits", "fc1", "fc1_bias", "fc2", "fc2_bias"], ["y"],
        domain="com.microsoft", k=k, normalize_routing_weights=int(normalize),
        **attrs)
    graph = helper.make_graph(
        [node], "moe",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [T, D]),
         helper.make_tensor_value_info("logits", TensorProto.FLOAT, [T, E])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [T, D])],
        [numpy_helper.from_array(v, n) for n, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[
        helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
    session = ort.InferenceSession(model.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x, "logits": logits})[0]


CASES = {
    # name: (our activation, onnxruntime attributes, our swiglu parameters)
    "relu": ("relu", dict(activation_type="relu"), {}),
    "gelu": ("gelu_tanh", dict(activation_type="gelu"), {}),
    "silu": ("silu", dict(activation_type="silu"), {}),
    "identity": ("identity", dict(activation_type="identity"), {}),
    "swiglu": ("swiglu", dict(activation_type="swiglu", swiglu_fusion=1), {}),
    "swiglu_gpt_oss": (
        "swiglu",
        dict(activation_type="swiglu", swiglu_fusion=1, activation_alpha=1.702,
             activation_beta=1.0, swiglu_limit=0.9),
        dict(swiglu_alpha=1.702, swiglu_beta=1.0, swiglu_limit=0.9)),
}


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("name", sorted(CASES))
def test_expert_activations_vs_onnxruntime(seed, normalize, name):
    activation, attrs, swiglu = CASES[name]
    rng = np.random.default_rng(seed)
    T, D, F, E, k = 13, 6, 5, 4, 2
    x = rng.standard_normal((T, D)).astype(np.float32)
    router = rng.standard_normal((D, E)).astype(np.float32)
    fc1 = (rng.standard_normal((E, D, F)) * 0.5).astype(np.float32)
    fc2 = (rng.standard_normal((E, F, D)) * 0.5).astype(np.float32)
    b1 = (rng.standard_normal((E, F)) * 0.3).astype(np.float32)
    b2 = (rng.standard_normal((E, D)) * 0.3).astype(np.float32)
    ours = dict(fc1_bias=b1, fc2_bias=b2)
    gated = activation == "swiglu"
    if gated:
        fc3 = (rng.standard_normal((E, D, F)) * 0.5).astype(np.float32)
        b3 = (rng.standard_normal((E, F)) * 0.3).astype(np.float32)
        ours.update(fc3=fc3, fc3_bias=b3)
        # Interleaved rows: gate j, then linear j.
        ort_fc1 = np.stack([fc1, fc3], axis=3).reshape(E, D, 2 * F)
        ort_b1 = np.stack([b1, b3], axis=2).reshape(E, 2 * F)
    else:
        ort_fc1, ort_b1 = fc1, b1
    out, _, _, _, _, inter = ref.moe_layer(
        x, router, fc1, fc2, routing="token_choice", activation=activation,
        k=k, normalize=normalize, return_intermediates=True, **ours, **swiglu)
    if swiglu.get("swiglu_limit") is not None:
        # The limit clips some of the rows' pre-activations.
        rows = inter["permuted"]
        off = inter["offsets"]
        z = np.concatenate([rows[off[e]:off[e + 1]] @ fc1[e] + b1[e]
                            for e in range(E)])
        assert (z > swiglu["swiglu_limit"]).any()
    got = ort_moe(x, inter["logits"],
                  np.ascontiguousarray(ort_fc1.transpose(0, 2, 1)),
                  np.ascontiguousarray(fc2.transpose(0, 2, 1)), ort_b1, b2, k,
                  normalize, attrs)
    error = np.abs(got - out).max() / np.abs(out).max()
    assert error < TOL, error
