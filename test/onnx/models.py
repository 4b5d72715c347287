"""ONNX models for the importer's parity tests, built with onnx.helper (no
binary fixtures).

- `moe_op_model`: one com.microsoft.MoE with every schema option;
- `transformer_block_model`: a decoder block (RMSNorm, fused QKV, rotary,
  causal attention, LayerNorm, a gated shared expert and an MoE FFN as the
  contrib op or decomposed) with symbolic batch and seq dims, for opset 13,
  18 and 20;
- `decomposed_moe_model`: an MoE FFN as exporters emit it without the contrib
  op, dense-masked or sparse (NonZero/Gather/ScatterND, as torch exports HF
  Mixtral);
- `single_op_cases`: one-node models for every op of the standard list;
- `save_with_external_data`: a model saved with its tensors in one external
  file.

Float initializers are the model's parameters; small integer constants are
initializers of type int64 or Constant nodes. `random_inputs` draws the
graph inputs for given symbolic extents; `moe_op_reference` evaluates a
`moe_op_model` with the NumPy reference (test/reference/ort_moe_reference.py).
"""
import math
import pathlib
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

_REFERENCE = pathlib.Path(__file__).resolve().parent.parent / "reference"
if str(_REFERENCE) not in sys.path:
    sys.path.insert(0, str(_REFERENCE))

import ort_moe_reference as ort_ref  # noqa: E402

MS_DOMAIN = "com.microsoft"
ELEM = {np.dtype(np.float32): TensorProto.FLOAT,
        np.dtype(np.float16): TensorProto.FLOAT16,
        np.dtype(np.int64): TensorProto.INT64,
        np.dtype(np.bool_): TensorProto.BOOL}


class Graph:
    """A small builder: nodes get unique names, values fresh names."""

    def __init__(self, opset, name="g", dtype=np.float32):
        self.opset = opset
        self.name = name
        self.dtype = dtype  # of the float constants
        self.nodes, self.initializers = [], []
        self.inputs, self.outputs = [], []
        self.uses_ms = False
        self._count = 0

    def fresh(self, hint):
        self._count += 1
        return "%s_%d" % (hint, self._count)

    def input(self, name, dtype, shape):
        self.inputs.append(helper.make_tensor_value_info(
            name, ELEM[np.dtype(dtype)], shape))
        return name

    def output(self, name, dtype, shape=None):
        self.outputs.append(helper.make_tensor_value_info(
            name, ELEM[np.dtype(dtype)], shape))

    def param(self, name, array):
        self.initializers.append(numpy_helper.from_array(np.asarray(array),
                                                         name))
        return name

    def ints(self, values, hint="c"):
        """An int64 initializer (shape, axes, indices ...)."""
        return self.param(self.fresh(hint), np.asarray(values, np.int64))

    def scalar(self, value, dtype=None, hint="k"):
        """A 0-d float Constant node (of the graph's float type)."""
        value = np.asarray(value, dtype or self.dtype)
        return self.op("Constant", [], hint=hint,
                       value=numpy_helper.from_array(value))

    def op(self, op_type, inputs, outputs=1, hint=None, name=None,
           domain=None, **attributes):
        hint = hint or op_type.lower()
        if isinstance(outputs, int):
            outs = [self.fresh(hint) for _ in range(outputs)]
        else:
            outs = list(outputs)
        if domain == MS_DOMAIN:
            self.uses_ms = True
        self.nodes.append(helper.make_node(
            op_type, list(inputs), outs, name=name or self.fresh("n_" + hint),
            domain=domain, **attributes))
        return outs[0] if len(outs) == 1 else outs

    # Ops whose form depends on the opset.
    def reduce(self, op_type, x, axes, keepdims=1, hint=None):
        if (op_type == "ReduceSum" and self.opset >= 13) or self.opset >= 18:
            return self.op(op_type, [x, self.ints(axes, "axes")], hint=hint,
                           keepdims=keepdims)
        return self.op(op_type, [x], hint=hint, axes=axes, keepdims=keepdims)

    def unsqueeze(self, x, axes):
        return self.op("Unsqueeze", [x, self.ints(axes, "axes")])

    def squeeze(self, x, axes):
        return self.op("Squeeze", [x, self.ints(axes, "axes")])

    def split(self, x, sizes, axis):
        if self.opset >= 18 and len(set(sizes)) == 1:
            return self.op("Split", [x], outputs=len(sizes), axis=axis,
                           num_outputs=len(sizes))
        return self.op("Split", [x, self.ints(sizes, "split")],
                       outputs=len(sizes), axis=axis)

    def dim(self, x, index):
        """Dimension `index` of x as a 1-element int64 tensor."""
        shape = self.op("Shape", [x], hint="shape")
        return self.unsqueeze(self.op("Gather", [shape, self.ints(index)],
                                      axis=0, hint="dim"), [0])

    def model(self, ir_version=8):
        graph = helper.make_graph(self.nodes, self.name, self.inputs,
                                  self.outputs, self.initializers)
        opsets = [helper.make_opsetid("", self.opset)]
        if self.uses_ms:
            opsets.append(helper.make_opsetid(MS_DOMAIN, 1))
        model = helper.make_model(graph, opset_imports=opsets,
                                  producer_name="moec-tests",
                                  ir_version=ir_version)
        # Outputs declared without a shape get the inferred one (symbolic
        # dims included), as exporters write them.
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
        for output, typed in zip(model.graph.output, inferred.graph.output):
            if not output.type.tensor_type.HasField("shape"):
                output.CopyFrom(typed)
        onnx.checker.check_model(model, full_check=True)
        return model


def _weights(rng, shape, fan_in, dtype):
    """Random weights scaled to keep activations O(1), never zero."""
    w = rng.standard_normal(shape) / math.sqrt(fan_in)
    w[w == 0] = 0.01
    return w.astype(dtype)


# ---------------------------------------------------------------------------
# com.microsoft.MoE
# ---------------------------------------------------------------------------

MOE_ATTRIBUTES = ("k", "activation_type", "normalize_routing_weights",
                  "use_sparse_mixer", "swiglu_fusion", "activation_alpha",
                  "activation_beta", "swiglu_limit")


def moe_op_model(hidden=8, inter=12, experts=4, k=2, activation_type="relu",
                 normalize_routing_weights=None, use_sparse_mixer=None,
                 swiglu_fusion=None, activation_alpha=None,
                 activation_beta=None, swiglu_limit=None, fc1_bias=False,
                 fc2_bias=False, fc3=False, fc3_bias=False, legacy=False,
                 rank=2, router="matmul", dtype=np.float32, seed=0,
                 opset=18):
    """x [tokens, H] or [batch, seq, H] -> com.microsoft.MoE -> y.

    router="matmul": logits = x @ router_weight in the graph (reshaped to
    [N, E] for a 3-D input); router="input": logits are the graph input
    router_logits [N, E]. Attributes left None are omitted (the schema
    defaults apply). legacy=True stores the weights in onnxruntime's legacy
    shapes (same memory, see ort_moe_reference). The expert weights are the
    initializers fc1_experts_weights ... named as the op's inputs."""
    rng = np.random.default_rng(seed)
    g = Graph(opset, "moe_op", dtype)
    shape = ["tokens", hidden] if rank == 2 else ["batch", "seq", hidden]
    x = g.input("x", dtype, shape)
    if router == "input":
        logits = g.input("router_logits", dtype, ["tokens", experts])
    else:
        w = g.param("router_weight",
                    _weights(rng, (hidden, experts), 1.0, dtype))
        logits = g.op("MatMul", [x, w], hint="router_logits")
        if rank == 3:
            logits = g.op("Reshape", [logits, g.ints([-1, experts])],
                          hint="router_logits_2d")
    gated = activation_type in ort_ref.GATED
    fused = gated and swiglu_fusion in (1, 2)
    rows = 2 * inter if fused else inter
    shapes = {"fc1": (experts, rows, hidden), "fc2": (experts, hidden, inter),
              "fc3": (experts, inter, hidden)}
    if legacy:
        shapes = {"fc1": (experts, hidden, rows),
                  "fc2": (experts, inter, hidden),
                  "fc3": (experts, hidden, inter)}
    fan_in = {"fc1": hidden, "fc2": inter, "fc3": hidden}
    names = {}
    for fc, present in (("fc1", True), ("fc2", True), ("fc3", fc3)):
        if present:
            names[fc + "_w"] = g.param(
                fc + "_experts_weights",
                _weights(rng, shapes[fc], fan_in[fc], dtype))
    for fc, present, size in (("fc1", fc1_bias, rows),
                              ("fc2", fc2_bias, hidden),
                              ("fc3", fc3_bias, inter)):
        if present:
            names[fc + "_b"] = g.param(
                fc + "_experts_bias",
                (0.1 * rng.standard_normal((experts, size))).astype(dtype))
    inputs = [x, logits] + [names.get(key, "") for key in
                            ("fc1_w", "fc1_b", "fc2_w", "fc2_b", "fc3_w",
                             "fc3_b")]
    while inputs[-1] == "":
        inputs.pop()
    given = dict(k=k, activation_type=activation_type,
                 normalize_routing_weights=normalize_routing_weights,
                 use_sparse_mixer=use_sparse_mixer,
                 swiglu_fusion=swiglu_fusion,
                 activation_alpha=activation_alpha,
                 activation_beta=activation_beta, swiglu_limit=swiglu_limit)
    attributes = {key: value for key, value in given.items()
                  if value is not None}
    g.op("MoE", inputs, outputs=["y"], domain=MS_DOMAIN, name="moe",
         **attributes)
    g.output("y", dtype, shape)
    return g.model()


def initializers(model):
    return {t.name: numpy_helper.to_array(t)
            for t in model.graph.initializer}


def _node_attributes(node):
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def moe_op_reference(model, inputs):
    """The float64 reference result of a `moe_op_model` on `inputs`."""
    params = initializers(model)
    node = next(n for n in model.graph.node if n.op_type == "MoE")
    attributes = _node_attributes(node)
    if isinstance(attributes.get("activation_type"), bytes):
        attributes["activation_type"] = attributes["activation_type"].decode()
    x = inputs["x"].astype(np.float64)
    if "router_logits" in inputs:
        logits = inputs["router_logits"].astype(np.float64)
    else:
        logits = (x @ params["router_weight"].astype(np.float64)).reshape(
            -1, params["router_weight"].shape[1])
    operands = [params.get(name) if name else None for name in node.input[2:]]
    operands += [None] * (6 - len(operands))
    fc1, fc1_b, fc2, fc2_b, fc3, fc3_b = [
        None if a is None else a.astype(np.float64) for a in operands]
    return ort_ref.ort_moe(x, logits, fc1, fc2, fc1_b, fc2_b, fc3, fc3_b,
                           **attributes)


# ---------------------------------------------------------------------------
# Decomposed MoE FFN
# ---------------------------------------------------------------------------

def _activation(g, x, activation):
    if activation == "relu":
        return g.op("Relu", [x])
    if activation == "silu":
        return g.op("Mul", [x, g.op("Sigmoid", [x])], hint="silu")
    if activation == "gelu":
        if g.opset >= 20:
            return g.op("Gelu", [x])
        half = g.op("Mul", [x, g.scalar(0.5)])
        erf = g.op("Erf", [g.op("Div", [x, g.scalar(math.sqrt(2.0))])])
        return g.op("Mul", [half, g.op("Add", [erf, g.scalar(1.0)])],
                    hint="gelu")
    if activation == "gelu_tanh":
        cube = g.op("Pow", [x, g.scalar(3.0)])
        inner = g.op("Add", [x, g.op("Mul", [cube, g.scalar(0.044715)])])
        t = g.op("Tanh", [g.op("Mul", [inner,
                                       g.scalar(math.sqrt(2 / math.pi))])])
        return g.op("Mul", [g.op("Mul", [x, g.scalar(0.5)]),
                            g.op("Add", [t, g.scalar(1.0)])], hint="gelu_t")
    raise ValueError(activation)


def _expert_ffn(g, x, e, activation, params):
    """FFN of expert e on rows x; swiglu = silu(x Wg) * (x Wu)."""
    up = g.op("MatMul", [x, params["w1"][e]], hint="fc1_e%d" % e)
    if activation == "swiglu":
        gate = g.op("MatMul", [x, params["w3"][e]], hint="gate_e%d" % e)
        hidden = g.op("Mul", [_activation(g, gate, "silu"), up])
    else:
        hidden = _activation(g, up, activation)
    return g.op("MatMul", [hidden, params["w2"][e]], hint="fc2_e%d" % e)


def moe_ffn_subgraph(g, x, hidden, inter, experts, k, activation, normalize,
                     form, rng, dtype, prefix="moe"):
    """The MoE FFN of rows x [N, H] as exporters unroll it; returns the
    output value [N, H].

    form: "where" (w_e = ReduceSum(Where(Equal(idx, e), vals, 0))), "cast"
    (w_e = ReduceSum(Mul(Cast(Equal(idx, e)), vals))), "sparse" (per
    expert NonZero / Gather of its rows / ScatterND with reduction add, as
    torch exports index_add_) or "sparse_elements" (ScatterElements with
    reduction add instead of ScatterND)."""
    router = g.param(prefix + ".router", _weights(rng, (hidden, experts),
                                                  1.0, dtype))
    params = {"w1": [], "w2": [], "w3": []}
    for e in range(experts):
        params["w1"].append(g.param("%s.experts.%d.w1" % (prefix, e),
                                    _weights(rng, (hidden, inter), hidden,
                                             dtype)))
        params["w2"].append(g.param("%s.experts.%d.w2" % (prefix, e),
                                    _weights(rng, (inter, hidden), inter,
                                             dtype)))
        if activation == "swiglu":
            params["w3"].append(g.param("%s.experts.%d.w3" % (prefix, e),
                                        _weights(rng, (hidden, inter),
                                                 hidden, dtype)))
    logits = g.op("MatMul", [x, router], hint="router_logits")
    probs = g.op("Softmax", [logits], axis=-1, hint="router_probs")
    values, indices = g.op("TopK", [probs, g.ints([k], "k")], outputs=2,
                           axis=-1, largest=1, sorted=1, hint="topk")
    if normalize:
        total = g.reduce("ReduceSum", values, [-1], keepdims=1)
        values = g.op("Div", [values, total], hint="topk_norm")
    out = None
    sparse = form in ("sparse", "sparse_elements")
    if sparse:
        out = g.op("Mul", [x, g.scalar(0.0)], hint="acc0")
    for e in range(experts):
        hit = g.op("Equal", [indices, g.ints(e, "expert")], hint="hit_e%d" % e)
        if sparse:
            where = g.op("NonZero", [hit], hint="nz_e%d" % e)  # [2, M]
            rows = g.op("Gather", [where, g.ints(0)], axis=0, hint="rows")
            chosen = g.op("GatherND", [values, g.op("Transpose", [where],
                                                    perm=[1, 0])])
            picked = g.op("Gather", [x, rows], axis=0, hint="x_e%d" % e)
            y = _expert_ffn(g, picked, e, activation, params)
            y = g.op("Mul", [y, g.unsqueeze(chosen, [-1])])
            if form == "sparse":
                out = g.op("ScatterND", [out, g.unsqueeze(rows, [-1]), y],
                           reduction="add", hint="acc")
            else:
                targets = g.op("Expand", [g.unsqueeze(rows, [-1]),
                                          g.op("Shape", [y])])
                out = g.op("ScatterElements", [out, targets, y], axis=0,
                           reduction="add", hint="acc")
            continue
        if form == "where":
            masked = g.op("Where", [hit, values, g.scalar(0.0)])
        else:
            masked = g.op("Mul", [g.op("Cast", [hit], to=ELEM[
                np.dtype(dtype)]), values])
        weight = g.reduce("ReduceSum", masked, [-1], keepdims=1)
        y = g.op("Mul", [weight, _expert_ffn(g, x, e, activation, params)])
        out = y if out is None else g.op("Add", [out, y], hint="acc")
    return out


def decomposed_moe_model(hidden=8, inter=12, experts=4, k=2,
                         activation="silu", normalize=True, form="where",
                         rank=2, dtype=np.float32, seed=0, opset=18):
    """x [tokens, H] (or [batch, seq, H]) -> unrolled MoE FFN -> y."""
    rng = np.random.default_rng(seed)
    g = Graph(opset, "decomposed_moe_" + form, dtype)
    shape = ["tokens", hidden] if rank == 2 else ["batch", "seq", hidden]
    x = g.input("x", dtype, shape)
    rows = x if rank == 2 else g.op("Reshape", [x, g.ints([-1, hidden])])
    y = moe_ffn_subgraph(g, rows, hidden, inter, experts, k, activation,
                         normalize, form, rng, dtype)
    if rank == 3:
        y = g.op("Reshape", [y, g.op("Shape", [x])])
    g.op("Identity", [y], outputs=["y"])
    g.output("y", dtype, shape)
    return g.model()


def decomposed_moe_reference(model, inputs, hidden, experts, k, activation,
                             normalize):
    """The decomposed MoE through the contrib-op reference: the expert
    weights re-laid-out into com.microsoft.MoE's layout (a second check that
    both forms compute the same function). The contrib op's gelu is the tanh
    form: "gelu_tanh" maps to it; the erf "gelu" has no counterpart."""
    params = {n: a.astype(np.float64) for n, a in initializers(model).items()}
    x = inputs["x"].astype(np.float64)
    rows = x.reshape(-1, hidden)
    logits = rows @ params["moe.router"]
    w1 = np.stack([params["moe.experts.%d.w1" % e].T for e in range(experts)])
    w2 = np.stack([params["moe.experts.%d.w2" % e].T for e in range(experts)])
    if activation == "swiglu":
        gate = np.stack([params["moe.experts.%d.w3" % e].T
                         for e in range(experts)])
        # swiglu_fusion=2: [gate | linear]; alpha 1, beta 0 is silu(g) * l.
        y = ort_ref.ort_moe(rows, logits, np.concatenate([gate, w1], axis=1),
                            w2, k=k, activation_type="swiglu",
                            swiglu_fusion=2,
                            normalize_routing_weights=int(normalize))
    else:
        contrib = {"relu": "relu", "silu": "silu", "gelu_tanh": "gelu"}
        y = ort_ref.ort_moe(rows, logits, w1, w2, k=k,
                            activation_type=contrib[activation],
                            normalize_routing_weights=int(normalize))
    return y.reshape(x.shape)


# ---------------------------------------------------------------------------
# Decoder block
# ---------------------------------------------------------------------------

def _rms_norm(g, x, weight, eps=1e-5):
    square = g.op("Pow", [x, g.scalar(2.0)], hint="sq")
    mean = g.reduce("ReduceMean", square, [-1], keepdims=1, hint="ms")
    inv = g.op("Reciprocal", [g.op("Sqrt", [g.op("Add", [mean,
                                                         g.scalar(eps)])])])
    return g.op("Mul", [g.op("Mul", [x, inv]), weight], hint="rms")


def _layer_norm(g, x, scale, bias, eps=1e-5):
    if g.opset >= 17:
        return g.op("LayerNormalization", [x, scale, bias], axis=-1,
                    epsilon=eps, hint="ln")
    mean = g.reduce("ReduceMean", x, [-1], keepdims=1, hint="mean")
    centred = g.op("Sub", [x, mean], hint="centred")
    var = g.reduce("ReduceMean", g.op("Mul", [centred, centred]), [-1],
                   keepdims=1, hint="var")
    norm = g.op("Div", [centred, g.op("Sqrt", [g.op("Add", [
        var, g.scalar(eps)])])])
    return g.op("Add", [g.op("Mul", [norm, scale]), bias], hint="ln")


def _rotate_half(g, x, half):
    first = g.op("Slice", [x, g.ints([0]), g.ints([half]), g.ints([-1])])
    second = g.op("Slice", [x, g.ints([half]), g.ints([2 ** 62]),
                            g.ints([-1])])
    return g.op("Concat", [g.op("Neg", [second]), first], axis=-1)


def _causal_mask(g, scores, seq):
    """True where key j is after query i (to be set to -inf)."""
    if g.opset >= 14:
        square = g.op("Concat", [seq, seq], axis=0, hint="sxs")
        ones = g.op("ConstantOfShape", [square], value=numpy_helper.from_array(
            np.array([1.0], np.float32)))
        lower = g.op("Trilu", [ones], upper=0, hint="tril")
        masked = g.op("Equal", [lower, g.scalar(0.0, np.float32)],
                      hint="future")
    else:
        count = g.squeeze(seq, [0])
        positions = g.op("Range", [g.ints(0), count, g.ints(1)], hint="pos")
        masked = g.op("Less", [g.unsqueeze(positions, [1]),
                               g.unsqueeze(positions, [0])], hint="future")
    return g.op("Expand", [masked, g.op("Shape", [scores])], hint="mask")


def transformer_block_model(opset=18, moe="op", hidden=16, heads=2,
                            inter=24, experts=4, k=2, max_seq=32,
                            shared_activation="gelu", dtype=np.float32,
                            seed=0):
    """One pre-norm decoder block over x [batch, seq, hidden]:

        h = x + Attention(RMSNorm(x))    (fused QKV Gemm + Split, rotary,
                                          causal mask, Softmax)
        n = LayerNorm(h)
        y = h + MoE(n) + Sigmoid(n wg) * SharedFFN(n)

    moe: "op" (com.microsoft.MoE, silu experts), or a decomposed form of
    `moe_ffn_subgraph` ("where", "cast", "sparse"; silu experts).
    shared_activation: "gelu" (Erf below opset 20, the Gelu op from 20) or
    "gelu_tanh" (Tanh). Opset 13 uses the attribute forms and decomposes
    LayerNormalization; opset < 14 builds the mask with Range/Less instead
    of Trilu."""
    rng = np.random.default_rng(seed)
    head_dim = hidden // heads
    g = Graph(opset, "decoder_block_%s" % moe, dtype)
    x = g.input("x", dtype, ["batch", "seq", hidden])
    batch, seq = g.dim(x, 0), g.dim(x, 1)

    # Attention.
    normed = _rms_norm(g, x, g.param("attn_norm.weight",
                                     1.0 + 0.1 * rng.standard_normal(
                                         hidden).astype(dtype)))
    rows = g.op("Reshape", [normed, g.ints([-1, hidden])], hint="rows")
    qkv = g.op("Gemm", [rows, g.param("attn.qkv.weight", _weights(
        rng, (3 * hidden, hidden), hidden, dtype)), g.param(
        "attn.qkv.bias", (0.1 * rng.standard_normal(3 * hidden)).astype(
            dtype))], transB=1, hint="qkv")
    qkv = g.op("Reshape", [qkv, g.op("Concat", [batch, seq,
                                               g.ints([3 * hidden])],
                                     axis=0)], hint="qkv3")
    q, key, v = g.split(qkv, [hidden] * 3, axis=-1)
    heads_shape = g.op("Concat", [batch, seq, g.ints([heads, head_dim])],
                       axis=0, hint="heads_shape")

    def to_heads(t):
        return g.op("Transpose", [g.op("Reshape", [t, heads_shape])],
                    perm=[0, 2, 1, 3])

    q, key, v = to_heads(q), to_heads(key), to_heads(v)
    angles = (np.arange(max_seq)[:, None] /
              10000.0 ** (np.arange(0, head_dim, 2) / head_dim))
    angles = np.concatenate([angles, angles], axis=1)
    cos = g.op("Slice", [g.param("rope.cos", np.cos(angles).astype(dtype)),
                         g.ints([0]), seq, g.ints([0])], hint="cos")
    sin = g.op("Slice", [g.param("rope.sin", np.sin(angles).astype(dtype)),
                         g.ints([0]), seq, g.ints([0])], hint="sin")

    def rope(t):
        return g.op("Add", [g.op("Mul", [t, cos]), g.op(
            "Mul", [_rotate_half(g, t, head_dim // 2), sin])], hint="rope")

    q, key = rope(q), rope(key)
    scores = g.op("MatMul", [q, g.op("Transpose", [key], perm=[0, 1, 3, 2])])
    scores = g.op("Div", [scores, g.scalar(math.sqrt(head_dim))],
                  hint="scores")
    scores = g.op("Sub", [scores, g.reduce("ReduceMax", scores, [-1],
                                           keepdims=1)], hint="shifted")
    masked = g.op("Where", [_causal_mask(g, scores, seq),
                            g.scalar(-np.inf), scores])
    attn = g.op("MatMul", [g.op("Softmax", [masked], axis=-1), v])
    attn = g.op("Reshape", [g.op("Transpose", [attn], perm=[0, 2, 1, 3]),
                            g.op("Concat", [batch, seq, g.ints([hidden])],
                                 axis=0)], hint="attn")
    attn = g.op("MatMul", [attn, g.param("attn.out.weight", _weights(
        rng, (hidden, hidden), hidden, dtype))], hint="attn_out")
    h = g.op("Add", [x, attn], hint="resid1")

    # FFN: MoE plus a gated shared expert.
    n = _layer_norm(g, h, g.param("ffn_norm.weight", (1.0 + 0.1 * (
        rng.standard_normal(hidden))).astype(dtype)), g.param(
        "ffn_norm.bias", (0.1 * rng.standard_normal(hidden)).astype(dtype)))
    if moe == "op":
        router = g.param("moe.router", _weights(rng, (hidden, experts), 1.0,
                                                dtype))
        logits = g.op("Reshape", [g.op("MatMul", [n, router]),
                                  g.ints([-1, experts])], hint="logits")
        fc1 = g.param("moe.fc1", _weights(rng, (experts, inter, hidden),
                                          hidden, dtype))
        fc2 = g.param("moe.fc2", _weights(rng, (experts, hidden, inter),
                                          inter, dtype))
        routed = g.op("MoE", [n, logits, fc1, "", fc2], domain=MS_DOMAIN,
                      k=k, activation_type="silu",
                      normalize_routing_weights=1, hint="moe")
    else:
        flat = g.op("Reshape", [n, g.ints([-1, hidden])], hint="ffn_rows")
        routed = moe_ffn_subgraph(g, flat, hidden, inter, experts, k, "silu",
                                  True, moe, rng, dtype)
        routed = g.op("Reshape", [routed, g.op("Shape", [n])], hint="moe")
    up = g.op("MatMul", [n, g.param("shared.up", _weights(
        rng, (hidden, inter), hidden, dtype))])
    shared = g.op("MatMul", [_activation(g, up, shared_activation), g.param(
        "shared.down", _weights(rng, (inter, hidden), inter, dtype))])
    gate = g.op("Sigmoid", [g.op("MatMul", [n, g.param(
        "shared.gate", _weights(rng, (hidden, 1), hidden, dtype))])])
    ffn = g.op("Add", [routed, g.op("Mul", [gate, shared])], hint="ffn")
    g.op("Add", [h, ffn], outputs=["y"])
    g.output("y", dtype, ["batch", "seq", hidden])
    return g.model()


# ---------------------------------------------------------------------------
# Single-op models
# ---------------------------------------------------------------------------

class Case:
    """A one-node model run at each of `extents` (symbolic dim values);
    `ranges` as for `random_inputs`."""

    def __init__(self, name, model, extents=({},), ranges=None):
        self.name, self.model = name, model
        self.extents = list(extents)
        self.ranges = ranges or {}


def _one(op_type, inputs, outputs, opset=18, params=(), attributes=None,
         constants=(), order=None):
    """inputs/outputs: [(name, dtype, shape)]; params: [(name, array)]
    initializers; constants: [(name, array)] int64 initializers; order: the
    node's operand names if not inputs, params, constants in turn."""
    g = Graph(opset, op_type.lower())
    for name, dtype, shape in inputs:
        g.input(name, dtype, shape)
    for name, array in list(params) + list(constants):
        g.param(name, array)
    names = order or ([n for n, _, _ in inputs] + [n for n, _ in params] +
                      [n for n, _ in constants])
    g.op(op_type, names, outputs=[n for n, _, _ in outputs], name="node",
         **(attributes or {}))
    for name, dtype, shape in outputs:
        g.output(name, dtype, shape)
    return g.model()


F32, F16, I64, BOOL = np.float32, np.float16, np.int64, np.bool_
SEQS = [{"seq": 1}, {"seq": 5}, {"seq": 13}]
BATCH_SEQ = [{"batch": 1, "seq": 5}, {"batch": 3, "seq": 1},
             {"batch": 3, "seq": 13}]
POSITIVE = (0.5, 3.0)


def single_op_cases():
    rng = np.random.default_rng(1234)
    cases = []

    def add(name, *args, extents=SEQS, ranges=None, **kwargs):
        cases.append(Case(name, _one(*args, **kwargs), extents, ranges))

    bsd = ["batch", "seq", 8]
    # Elementwise binary with broadcasting.
    for op in ("Add", "Sub", "Mul", "Div"):
        add(op, op, [("a", F32, bsd), ("b", F32, [8])],
            [("y", F32, bsd)], extents=BATCH_SEQ,
            ranges={"b": POSITIVE} if op == "Div" else None)
        add(op + "_column", op, [("a", F32, ["seq", 1]),
                                 ("b", F32, [1, 6])], [("y", F32, None)],
            ranges={"b": POSITIVE} if op == "Div" else None)
    add("Add_f16", "Add", [("a", F16, ["seq", 8]), ("b", F16, ["seq", 8])],
        [("y", F16, ["seq", 8])])
    add("Pow_scalar", "Pow", [("a", F32, ["seq", 8])], [("y", F32, None)],
        params=[("e", np.array(2.0, F32))])
    add("Pow_tensor", "Pow", [("a", F32, ["seq", 8]), ("b", F32, [8])],
        [("y", F32, None)], ranges={"a": POSITIVE, "b": (-2.0, 2.0)})
    for op in ("Sqrt", "Reciprocal"):
        add(op, op, [("x", F32, ["seq", 8])], [("y", F32, None)],
            ranges={"x": POSITIVE})
    for op in ("Neg", "Sigmoid", "Tanh", "Erf", "Relu"):
        add(op, op, [("x", F32, bsd)], [("y", F32, None)],
            extents=BATCH_SEQ)
    for approximate in ("none", "tanh"):
        add("Gelu_" + approximate, "Gelu", [("x", F32, ["seq", 8])],
            [("y", F32, None)], opset=20,
            attributes={"approximate": approximate})
    # Reductions: opset 13 (axes attribute, ReduceSum axes input) and 18.
    for op in ("ReduceMean", "ReduceSum", "ReduceMax"):
        for opset in (13, 18):
            for axes, keepdims in (([-1], 1), ([1], 0), ([0, 2], 1)):
                attributes = {"keepdims": keepdims}
                constants = ()
                if op == "ReduceSum" or opset >= 18:
                    constants = [("axes", np.array(axes, I64))]
                else:
                    attributes["axes"] = axes
                add("%s_o%d_axes%s_k%d" % (op, opset, "_".join(map(str, axes)),
                                            keepdims), op,
                    [("x", F32, bsd)], [("y", F32, None)], opset=opset,
                    attributes=attributes, constants=constants,
                    extents=BATCH_SEQ)
        add(op + "_all", op, [("x", F32, bsd)], [("y", F32, None)],
            attributes={"keepdims": 0}, extents=BATCH_SEQ)
    for axis in (-1, 1):
        add("Softmax_axis%d" % axis, "Softmax", [("x", F32, bsd)],
            [("y", F32, None)], attributes={"axis": axis}, extents=BATCH_SEQ)
    scale = (1 + 0.1 * rng.standard_normal(8)).astype(F32)
    bias = (0.1 * rng.standard_normal(8)).astype(F32)
    add("LayerNormalization", "LayerNormalization", [("x", F32, bsd)],
        [("y", F32, None)], params=[("scale", scale), ("bias", bias)],
        attributes={"axis": -1, "epsilon": 1e-5}, extents=BATCH_SEQ)
    add("LayerNormalization_nobias", "LayerNormalization",
        [("x", F32, ["seq", 8])], [("y", F32, None)],
        params=[("scale", scale)], attributes={"axis": -1})
    # Shapes and data movement.
    table = rng.standard_normal((10, 6)).astype(F32)
    add("Gather_axis0", "Gather", [("ids", I64, ["seq"])],
        [("y", F32, None)], params=[("table", table)],
        attributes={"axis": 0}, order=["table", "ids"],
        ranges={"ids": (-10, 10)})
    add("Gather_axis1_neg", "Gather", [("x", F32, ["seq", 6])],
        [("y", F32, None)], constants=[("ids", np.array([[-1, 0], [2, -3]],
                                                        I64))],
        attributes={"axis": 1})
    add("Gather_scalar", "Gather", [("x", F32, ["seq", 6])],
        [("y", F32, None)], constants=[("ids", np.array(-2, I64))],
        attributes={"axis": 1})
    add("Reshape_zero_minus1", "Reshape", [("x", F32, bsd)],
        [("y", F32, None)], constants=[("shape", np.array([0, -1, 2], I64))],
        extents=BATCH_SEQ)
    add("Reshape_flatten", "Reshape", [("x", F32, bsd)],
        [("y", F32, None)], constants=[("shape", np.array([-1, 8], I64))],
        extents=BATCH_SEQ)
    add("Transpose", "Transpose", [("x", F32, bsd)], [("y", F32, None)],
        attributes={"perm": [2, 0, 1]}, extents=BATCH_SEQ)
    add("Transpose_default", "Transpose", [("x", F32, bsd)],
        [("y", F32, None)], extents=BATCH_SEQ)
    add("Unsqueeze", "Unsqueeze", [("x", F32, ["seq", 8])],
        [("y", F32, None)], constants=[("axes", np.array([0, -1], I64))])
    add("Squeeze", "Squeeze", [("x", F32, ["seq", 1, 8])],
        [("y", F32, None)], constants=[("axes", np.array([-2], I64))])
    add("Concat_last", "Concat", [("a", F32, ["seq", 3]),
                                  ("b", F32, ["seq", 5]),
                                  ("c", F32, ["seq", 1])],
        [("y", F32, None)], attributes={"axis": -1})
    add("Concat_first", "Concat", [("a", F32, ["seq", 4]),
                                   ("b", F32, [2, 4])],
        [("y", F32, None)], attributes={"axis": 0})
    slices = {
        "neg_starts": ([-3], [2 ** 62], [1], [1]),
        "omitted_axes": ([1, 0], [-1, 4], None, None),
        "step2": ([0], [8], [1], [2]),
        "reverse": ([-1], [-2 ** 62], [1], [-1]),
        "clamped": ([-100], [100], [0], [1]),
    }
    for label, (starts, ends, axes, steps) in slices.items():
        constants = [("starts", np.array(starts, I64)),
                     ("ends", np.array(ends, I64))]
        if axes is not None:
            constants.append(("axes", np.array(axes, I64)))
        if steps is not None:
            constants.append(("steps", np.array(steps, I64)))
        add("Slice_" + label, "Slice", [("x", F32, ["seq", 8])],
            [("y", F32, None)], constants=constants)
    add("Split_equal_o18", "Split", [("x", F32, ["seq", 9])],
        [("a", F32, None), ("b", F32, None), ("c", F32, None)],
        attributes={"axis": -1, "num_outputs": 3})
    add("Split_sizes_o13", "Split", [("x", F32, ["seq", 9])],
        [("a", F32, None), ("b", F32, None)], opset=13,
        constants=[("split", np.array([2, 7], I64))],
        attributes={"axis": 1})
    add("Where", "Where", [("c", BOOL, ["seq", 1]), ("a", F32, ["seq", 6]),
                           ("b", F32, [6])], [("y", F32, None)])
    for src, dst in ((F32, F16), (F16, F32), (F32, I64), (I64, F32),
                     (BOOL, F32), (F32, BOOL)):
        add("Cast_%s_%s" % (np.dtype(src).name, np.dtype(dst).name), "Cast",
            [("x", src, ["seq", 6])], [("y", dst, None)],
            attributes={"to": ELEM[np.dtype(dst)]},
            ranges={"x": (-20, 20)} if src in (F32, F16) else None)
    add("Expand_up", "Expand", [("x", F32, ["seq", 1])], [("y", F32, None)],
        constants=[("shape", np.array([2, 1, 5], I64))])
    add("Expand_both", "Expand", [("x", F32, [3, 1])], [("y", F32, None)],
        constants=[("shape", np.array([1, 4], I64))])
    add("Shape", "Shape", [("x", F32, bsd)], [("y", I64, None)],
        extents=BATCH_SEQ)
    add("Shape_slice", "Shape", [("x", F32, bsd)], [("y", I64, None)],
        attributes={"start": 1, "end": -1}, extents=BATCH_SEQ)
    add("ConstantOfShape", "ConstantOfShape", [], [("y", F32, None)],
        constants=[("shape", np.array([3, 4], I64))],
        attributes={"value": numpy_helper.from_array(np.array([1.5], F32))})
    add("Constant", "Constant", [], [("y", F32, None)],
        attributes={"value": numpy_helper.from_array(
            rng.standard_normal((2, 3)).astype(F32))})
    add("Constant_ints", "Constant", [], [("y", I64, None)],
        attributes={"value_ints": [3, -1, 4]})
    add("Equal_i64", "Equal", [("a", I64, ["seq", 4]), ("b", I64, [4])],
        [("y", BOOL, None)], ranges={"a": (0, 3), "b": (0, 3)})
    add("Equal_f32", "Equal", [("a", F32, ["seq", 4])], [("y", BOOL, None)],
        params=[("b", np.array([0.0], F32))], ranges={"a": [-1.0, 0.0, 1.0]})
    add("Less", "Less", [("a", F32, ["seq", 4]), ("b", F32, ["seq", 1])],
        [("y", BOOL, None)])
    for largest in (1, 0):
        add("TopK_largest%d" % largest, "TopK", [("x", F32, ["seq", 8])],
            [("values", F32, None), ("indices", I64, None)],
            constants=[("k", np.array([3], I64))],
            attributes={"axis": -1, "largest": largest, "sorted": 1})
    add("TopK_axis0", "TopK", [("x", F32, [6, "seq"])],
        [("values", F32, None), ("indices", I64, None)],
        constants=[("k", np.array([2], I64))], attributes={"axis": 0})
    add("Range_i64", "Range", [], [("y", I64, None)],
        constants=[("start", np.array(2, I64)), ("limit", np.array(-7, I64)),
                   ("delta", np.array(-3, I64))])
    add("Range_f32", "Range", [], [("y", F32, None)],
        params=[("start", np.array(0.5, F32)), ("limit", np.array(3.0, F32)),
                ("delta", np.array(0.75, F32))])
    for upper in (0, 1):
        for k in (0, 1, -1):
            add("Trilu_upper%d_k%d" % (upper, k), "Trilu",
                [("x", F32, ["batch", "seq", 5])], [("y", F32, None)],
                constants=[("k", np.array(k, I64))],
                attributes={"upper": upper}, extents=BATCH_SEQ)
    add("MatMul_2d", "MatMul", [("a", F32, ["seq", 8]), ("b", F32, [8, 5])],
        [("y", F32, None)])
    add("MatMul_3d_2d", "MatMul", [("a", F32, bsd)], [("y", F32, None)],
        params=[("w", rng.standard_normal((8, 5)).astype(F32))],
        extents=BATCH_SEQ)
    add("MatMul_batched", "MatMul", [("a", F32, ["batch", 2, "seq", 4]),
                                     ("b", F32, ["batch", 2, 4, "seq"])],
        [("y", F32, None)], extents=BATCH_SEQ)
    add("Gemm", "Gemm", [("a", F32, ["seq", 8])], [("y", F32, None)],
        params=[("b", rng.standard_normal((5, 8)).astype(F32)),
                ("c", rng.standard_normal(5).astype(F32))],
        attributes={"transB": 1, "alpha": 0.5, "beta": 2.0})
    add("Gemm_transA", "Gemm", [("a", F32, [8, "seq"]),
                                ("b", F32, [8, 3])], [("y", F32, None)],
        attributes={"transA": 1})
    return cases


# ---------------------------------------------------------------------------
# Inputs, external data
# ---------------------------------------------------------------------------

NP_OF = {TensorProto.FLOAT: np.float32, TensorProto.FLOAT16: np.float16,
         TensorProto.INT64: np.int64, TensorProto.BOOL: np.bool_}


def input_shapes(model, extents):
    shapes = {}
    for value in model.graph.input:
        dims = value.type.tensor_type.shape.dim
        shapes[value.name] = tuple(
            extents[d.dim_param] if d.dim_param else d.dim_value
            for d in dims)
    return shapes


def random_inputs(model, extents, seed, ranges=None):
    """Random graph inputs (nonzero floats) for the symbolic extents.

    ranges maps an input name to (low, high): floats uniform, ints in
    [low, high); or to a list of the values to draw from."""
    rng = np.random.default_rng(seed)
    ranges = ranges or {}
    inputs = {}
    shapes = input_shapes(model, extents)
    for value in model.graph.input:
        shape = shapes[value.name]
        dtype = NP_OF[value.type.tensor_type.elem_type]
        low_high = ranges.get(value.name)
        if isinstance(low_high, list):
            array = rng.choice(low_high, shape)
        elif dtype == np.bool_:
            array = rng.random(shape) < 0.5
        elif dtype == np.int64:
            low, high = low_high or (-5, 5)
            array = rng.integers(low, high, shape)
        elif low_high:
            array = rng.uniform(*low_high, shape)
        else:
            array = rng.standard_normal(shape)
            array[array == 0] = 0.5
        inputs[value.name] = np.asarray(array, dtype)
    return inputs


def save_with_external_data(model, path, location="weights.bin"):
    """Saves `model` to `path` with every initializer of 64 bytes or more
    (the weights) in one external file `location` next to it, as exporters
    do; returns the path. (onnxruntime needs small integer initializers such
    as axes inline for its shape inference.)"""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    onnx.save_model(model, str(path), save_as_external_data=True,
                    all_tensors_to_one_file=True, location=location,
                    size_threshold=64)
    return path
