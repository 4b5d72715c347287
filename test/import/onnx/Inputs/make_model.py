"""Writes the small ONNX models that the importer's lit tests check.

    python3 make_model.py NAME OUT.onnx

Models are built here, at test time, with the onnx helper: the repository
holds no binary fixtures.
"""
import sys

import numpy as np
from onnx import TensorProto, helper, numpy_helper, save_model

F = TensorProto.FLOAT
I64 = TensorProto.INT64


def weight(name, shape, seed=0):
    rng = np.random.default_rng(seed)
    return numpy_helper.from_array(
        rng.standard_normal(shape).astype(np.float32), name)


def ints(name, values):
    return numpy_helper.from_array(np.array(values, dtype=np.int64), name)


def model(nodes, inputs, outputs, initializers, opset=18, ms=False):
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializers)
    opsets = [helper.make_opsetid("", opset)]
    if ms:
        opsets.append(helper.make_opsetid("com.microsoft", 1))
    return helper.make_model(graph, opset_imports=opsets)


def attention_shapes():
    """Heads split with a shape computed from Shape/Gather/Concat: the
    sequence length stays symbolic."""
    nodes = [
        helper.make_node("MatMul", ["x", "wq"], ["q"], name="proj"),
        helper.make_node("Shape", ["x"], ["shape"], name="shape"),
        helper.make_node("Gather", ["shape", "zero"], ["batch"], name="batch"),
        helper.make_node("Gather", ["shape", "one"], ["seq"], name="seq"),
        helper.make_node("Unsqueeze", ["batch", "axis0"], ["b1"], name="b1"),
        helper.make_node("Unsqueeze", ["seq", "axis0"], ["s1"], name="s1"),
        helper.make_node("Concat", ["b1", "s1", "heads"], ["target"],
                         name="target", axis=0),
        helper.make_node("Reshape", ["q", "target"], ["q4"], name="split"),
        helper.make_node("Transpose", ["q4"], ["qt"], name="heads_first",
                         perm=[0, 2, 1, 3]),
        helper.make_node("Softmax", ["qt"], ["y"], name="softmax", axis=-1),
    ]
    return model(
        nodes,
        [helper.make_tensor_value_info("x", F, ["batch", "seq", 64])],
        [helper.make_tensor_value_info("y", F, ["batch", 4, "seq", 32])],
        [weight("wq", [64, 128]), ints("zero", 0), ints("one", 1),
         ints("axis0", [0]), ints("heads", [4, 32])])


def microsoft_moe():
    """com.microsoft.MoE, SwiGLU with interleaved fused fc1 and clamping."""
    experts, hidden, inter = 4, 16, 24
    nodes = [
        helper.make_node("MatMul", ["x", "router"], ["logits"], name="route"),
        helper.make_node(
            "MoE", ["x", "logits", "fc1", "fc1_bias", "fc2"], ["y"],
            name="moe", domain="com.microsoft", k=2,
            activation_type="swiglu", swiglu_fusion=1,
            normalize_routing_weights=1, activation_alpha=1.702,
            activation_beta=1.0, swiglu_limit=7.0),
    ]
    return model(
        nodes,
        [helper.make_tensor_value_info("x", F, ["tokens", hidden])],
        [helper.make_tensor_value_info("y", F, ["tokens", hidden])],
        [weight("router", [hidden, experts]),
         weight("fc1", [experts, 2 * inter, hidden], 1),
         weight("fc1_bias", [experts, 2 * inter], 2),
         weight("fc2", [experts, hidden, inter], 3)], ms=True)


def unsupported():
    """Three unsupported operators, one of them twice."""
    nodes = [
        helper.make_node("Relu", ["x"], ["a"], name="relu"),
        helper.make_node("NonZero", ["a"], ["nz"], name="nz0"),
        helper.make_node("Mod", ["x", "x"], ["m"], name="mod", fmod=1),
        helper.make_node("NonZero", ["m"], ["nz1"], name="nz1"),
        helper.make_node("Foo", ["x"], ["f"], name="foo", domain="custom"),
    ]
    return model(
        nodes, [helper.make_tensor_value_info("x", F, [4])],
        [helper.make_tensor_value_info(n, F, None)
         for n in ("nz", "nz1", "f")], [])


def qmoe():
    node = helper.make_node("QMoE", ["x", "r", "w1", "s1", "w2", "s2"], ["y"],
                            name="experts", domain="com.microsoft", k=1,
                            expert_weight_bits=8)
    return model([node], [helper.make_tensor_value_info(n, F, [4, 8])
                          for n in ("x", "r", "w1", "s1", "w2", "s2")],
                 [helper.make_tensor_value_info("y", F, [4, 8])], [], ms=True)


def old_opset():
    node = helper.make_node("Relu", ["x"], ["y"], name="relu")
    return model([node], [helper.make_tensor_value_info("x", F, [4])],
                 [helper.make_tensor_value_info("y", F, [4])], [], opset=12)


if __name__ == "__main__":
    save_model(globals()[sys.argv[1]](), sys.argv[2])
