"""End-to-end numerics of the gradients of the nn ops.

Two parts:

1. The backward ops (`nn.unary_grad`, `nn.reduce_sum`, `nn.rms_norm_grad`,
   `nn.layer_norm_grad`, `nn.embedding_grad`, `nn.attention_grad`,
   `nn.cross_entropy_grad`, `nn.rotary {inverse}`), compiled directly with
   moec (default mode) and compared with the float64 NumPy VJPs of
   test/reference/nn_grad_reference.py, in f32 and f16. (The nn dialect has
   no f64: its float types are f32, f16 and bf16.)
2. Every nn op differentiated by `moec --mode=train` (moe-autodiff and the
   ops' buildVJP): a forward whose loss is sum(op(params) * c) for a random
   cotangent input c. train_step's `grad.<param>` is compared with the NumPy
   VJP of c (tight) and, independently of any backward code, with central
   differences of the compiled forward (test/e2e/gradcheck.py; f32 loss, so
   loose).

Error measure: normwise relative, max |g - ref| / max |ref| (gradients are
sums of many terms; see test_nn_ops.py). Tolerances: f32 1e-5 (the
compiled code computes in f32, the reference in float64, and reductions sum
in another order); f16 4e-3, a few ulps of 2^-11 (the backward ops compute
in f32 on f16 inputs and round each result once).
Finite differences of the f32 forward: h = 1e-2 and agreement within 2e-2
relative to max(|compiled|, |difference|, 1e-2) (measured: below 1e-2). The loss (~5) rounds to
~5e-7, so a difference quotient carries ~5e-5 of noise: gradients below
~1e-2 are compared in absolute terms (1e-4). The measured maxima are printed
in the terminal summary.
"""
import numpy as np
import pytest

import gradcheck
import nn_grad_reference as grad_ref

SEEDS = (0, 1, 2)
F32 = 1e-5
F16 = 4e-3
FD_H = 1e-2
FD_RTOL = 2e-2
FD_ATOL = 1e-2

TYPES = {np.float32: "f32", np.float16: "f16"}


def tensor_type(shape, element):
    dims = "".join("%sx" % ("?" if d is None else d) for d in shape)
    return "tensor<%s%s>" % (dims, element)


def entry(args, results, body):
    """@forward with named arguments (name, type[, role]) and named results
    (name, type); `body` defines %<name> for every result."""
    params = []
    for arg in args:
        name, type_ = arg[0], arg[1]
        role = ', moe.role = "%s"' % arg[2] if len(arg) > 2 else ""
        params.append('%%%s: %s {moe.name = "%s"%s}' % (name, type_, name,
                                                        role))
    result_types = ", ".join('%s {moe.name = "%s"}' % (t, n)
                             for n, t in results)
    return ("func.func @forward(%s) -> (%s) {\n%s"
            "  return %s : %s\n}\n" % (
                ", ".join(params), result_types, body,
                ", ".join("%" + n for n, _ in results),
                ", ".join(t for _, t in results)))


def normal(rng, shape, dtype=np.float32):
    x = rng.standard_normal(shape)
    return np.where(np.abs(x) < 1e-2, 1e-2, x).astype(dtype)


def positive(rng, shape, dtype=np.float32):
    return rng.uniform(0.3, 3.0, shape).astype(dtype)


def normwise(actual, expected):
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    assert np.all(np.isfinite(actual)), "non-finite gradient"
    return float(np.abs(actual - expected).max(initial=0.0) /
                 max(np.abs(expected).max(initial=0.0), 1e-30))


def compare(numerics_report, key, actual, expected, tol):
    err = normwise(actual, expected)
    numerics_report(key + " (normwise)", err)
    assert err <= tol, "%s: relative error %.3g > %.3g" % (key, err, tol)


def tolerance(dtype):
    return F32 if dtype == np.float32 else F16


# ---------------------------------------------------------------------------
# 1. Backward ops, default mode
# ---------------------------------------------------------------------------

UNARY_INPUT = {"log": positive, "sqrt": positive, "rsqrt": positive,
               "reciprocal": positive}


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("function", grad_ref.UNARY_FUNCTIONS)
def test_unary_grad(compile_model, numerics_report, function, dtype):
    t = tensor_type((None, 7), TYPES[dtype])
    model = compile_model(entry(
        [("g", t), ("x", t)], [("dx", t)],
        "  %%dx = nn.unary_grad %s %%g, %%x : %s\n" % (function, t)))
    for seed, rows in zip(SEEDS, (1, 5, 13)):
        rng = np.random.default_rng(seed)
        g = normal(rng, (rows, 7), dtype)
        x = UNARY_INPUT.get(function, normal)(rng, (rows, 7), dtype)
        out = model.run("forward", g=g, x=x)["dx"]
        assert out.dtype == dtype
        expected = grad_ref.nn_unary_vjp(function, g, x)[0]
        compare(numerics_report, "unary_grad %s %s" % (function, TYPES[dtype]),
                out, expected, tolerance(dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("axes,keep_dims", [([0], False), ([-1], True),
                                            ([0, 2], False), ([0, 1, 2], False),
                                            ([1], True)])
def test_reduce_sum(compile_model, numerics_report, axes, keep_dims, dtype):
    shape = (2, None, 5)
    t = tensor_type(shape, TYPES[dtype])
    summed = [a % 3 for a in axes]
    if keep_dims:
        result = [1 if i in summed else d for i, d in enumerate(shape)]
    else:
        result = [d for i, d in enumerate(shape) if i not in summed]
    rt = tensor_type(result, TYPES[dtype])
    model = compile_model(entry(
        [("x", t)], [("y", rt)],
        "  %%y = nn.reduce_sum %%x [%s]%s : %s\n" % (
            ", ".join(map(str, axes)), " {keep_dims}" if keep_dims else "", t)))
    for seed, seq in zip(SEEDS, (1, 4, 11)):
        x = normal(np.random.default_rng(seed), (2, seq, 5), dtype)
        out = model.run("forward", x=x)["y"]
        expected = grad_ref.nn_reduce_sum(x.astype(np.float64), axes,
                                          keep_dims)
        compare(numerics_report, "reduce_sum %s" % TYPES[dtype],
                out.reshape(expected.shape), expected, tolerance(dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_rms_norm_grad(compile_model, numerics_report, dtype):
    e = TYPES[dtype]
    t, w = tensor_type((2, None, 24), e), tensor_type((24,), e)
    model = compile_model(entry(
        [("g", t), ("x", t), ("w", w)], [("dx", t), ("dw", w)],
        "  %%dx, %%dw = nn.rms_norm_grad %%g, %%x, %%w"
        " {epsilon = 1.0e-05 : f32} : %s, %s\n" % (t, w)))
    for seed, seq in zip(SEEDS, (1, 5, 13)):
        rng = np.random.default_rng(seed)
        g = normal(rng, (2, seq, 24), dtype)
        x = normal(rng, (2, seq, 24), dtype)
        wv = normal(rng, (24,), dtype)
        out = model.run("forward", g=g, x=x, w=wv)
        dx, dw = grad_ref.nn_rms_norm_vjp(g, x, wv, epsilon=1e-5)
        compare(numerics_report, "rms_norm_grad dx " + e, out["dx"], dx,
                tolerance(dtype))
        compare(numerics_report, "rms_norm_grad dw " + e, out["dw"], dw,
                tolerance(dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_layer_norm_grad(compile_model, numerics_report, dtype):
    e = TYPES[dtype]
    t, w = tensor_type((None, 24), e), tensor_type((24,), e)
    model = compile_model(entry(
        [("g", t), ("x", t), ("w", w)], [("dx", t), ("dw", w), ("db", w)],
        "  %%dx, %%dw, %%db = nn.layer_norm_grad %%g, %%x, %%w : %s, %s\n" %
        (t, w)))
    for seed, rows in zip(SEEDS, (1, 6, 17)):
        rng = np.random.default_rng(seed)
        g, x = normal(rng, (rows, 24), dtype), normal(rng, (rows, 24), dtype)
        x = (x + np.asarray(2.0, dtype)).astype(dtype)   # a nonzero mean
        wv = normal(rng, (24,), dtype)
        out = model.run("forward", g=g, x=x, w=wv)
        # Any bias: it does not enter the gradients, only asks for db.
        dx, dw, db = grad_ref.nn_layer_norm_vjp(g, x, wv, bias=wv)
        for name, expected in (("dx", dx), ("dw", dw), ("db", db)):
            compare(numerics_report, "layer_norm_grad %s %s" % (name, e),
                    out[name], expected, tolerance(dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("ids_shape", [(), (None,), (2, None)])
def test_embedding_grad(compile_model, numerics_report, ids_shape, dtype):
    e = TYPES[dtype]
    gt = tensor_type(ids_shape + (6,), e)
    it = tensor_type(ids_shape, "i32")
    tt = tensor_type((11, 6), e)
    model = compile_model(entry(
        [("g", gt), ("ids", it), ("table", tt)], [("dt", tt)],
        "  %%dt = nn.embedding_grad %%g, %%ids, %%table : %s, %s, %s\n" %
        (gt, it, tt)))
    for seed, n in zip(SEEDS, (1, 7, 25)):
        rng = np.random.default_rng(seed)
        shape = tuple(n if d is None else d for d in ids_shape)
        # Few distinct ids, so rows accumulate several gradient rows.
        ids = rng.integers(0, 5, shape).astype(np.int32)
        g = normal(rng, shape + (6,), dtype)
        table = normal(rng, (11, 6), dtype)
        out = model.run("forward", g=g, ids=ids, table=table)["dt"]
        compare(numerics_report, "embedding_grad " + e, out,
                grad_ref.nn_embedding_vjp(g, table, ids)[0], tolerance(dtype))


ATTENTION_CASES = [
    # (heads, kv_heads, head_dim, attributes, (seq_q, seq_kv) pairs)
    (4, 2, 8, "", [(1, 1), (5, 5), (3, 7)]),
    (3, 1, 4, "", [(6, 2), (4, 4)]),           # MQA; queries that see no key
    (2, 2, 8, " {causal = false, scale = 0.3 : f32}", [(3, 5), (1, 4)]),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("case", range(len(ATTENTION_CASES)))
def test_attention_grad(compile_model, numerics_report, case, dtype):
    heads, kv_heads, head_dim, attrs, seqs = ATTENTION_CASES[case]
    e = TYPES[dtype]
    qt = tensor_type((2, None, heads, head_dim), e)
    kt = tensor_type((2, None, kv_heads, head_dim), e)
    model = compile_model(entry(
        [("g", qt), ("q", qt), ("k", kt), ("v", kt)],
        [("dq", qt), ("dk", kt), ("dv", kt)],
        "  %%dq, %%dk, %%dv = nn.attention_grad %%g, %%q, %%k, %%v%s"
        " : %s, %s, %s, %s\n" % (attrs, qt, qt, kt, kt)))
    causal = "causal = false" not in attrs
    scale = 0.3 if "scale" in attrs else 0.0
    for seed, (sq, skv) in zip(SEEDS * 2, seqs):
        rng = np.random.default_rng(seed)
        g = normal(rng, (2, sq, heads, head_dim), dtype)
        q = normal(rng, (2, sq, heads, head_dim), dtype)
        k = normal(rng, (2, skv, kv_heads, head_dim), dtype)
        v = normal(rng, (2, skv, kv_heads, head_dim), dtype)
        out = model.run("forward", g=g, q=q, k=k, v=v)
        expected = grad_ref.nn_attention_vjp(g, q, k, v, causal=causal,
                                             scale=scale)
        for name, ex in zip(("dq", "dk", "dv"), expected):
            compare(numerics_report, "attention_grad %s %s" % (name, e),
                    out[name], ex, tolerance(dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("mask", [None, "random", "zeros"])
def test_cross_entropy_grad(compile_model, numerics_report, mask, dtype):
    e = TYPES[dtype]
    lt, tt = tensor_type((2, None, 9), e), tensor_type((2, None), "i32")
    mt, st = tensor_type((2, None), e), tensor_type((1,), e)
    args = [("g", st), ("logits", lt), ("t", tt)]
    mask_text = ""
    if mask:
        args.append(("m", mt))
        mask_text = " mask %m"
    body = ("  %%g0 = nn.reshape %%g : %s -> %s\n"
            "  %%dl = nn.cross_entropy_grad %%g0, %%logits, %%t%s"
            " : %s, %s, %s%s\n"
            % (st, tensor_type((), e), mask_text, tensor_type((), e), lt, tt,
               ", " + mt if mask else ""))
    model = compile_model(entry(args, [("dl", lt)], body))
    for seed, seq in zip(SEEDS, (1, 4, 10)):
        rng = np.random.default_rng(seed)
        logits = normal(rng, (2, seq, 9), dtype) * np.asarray(3, dtype)
        targets = rng.integers(0, 9, (2, seq)).astype(np.int32)
        seed_grad = np.array([1.7], dtype)
        inputs = dict(g=seed_grad, logits=logits, t=targets)
        m = None
        if mask:
            m = ((rng.random((2, seq)) < 0.6) if mask == "random" else
                 np.zeros((2, seq))).astype(dtype)
            inputs["m"] = m
        out = model.run("forward", **inputs)["dl"]
        expected = grad_ref.nn_cross_entropy_vjp(seed_grad[0], logits,
                                                 targets, m)[0]
        if mask == "zeros":
            assert np.all(out == 0), "an all-zero mask must give zeros"
            continue
        compare(numerics_report, "cross_entropy_grad " + e, out, expected,
                tolerance(dtype))


@pytest.mark.parametrize("attrs", [
    "", " {interleaved}", " {rotary_dim = 4 : i64, theta = 500.0 : f32}"])
def test_rotary_inverse(compile_model, numerics_report, attrs):
    """nn.rotary {inverse} is the VJP of nn.rotary."""
    t, pt = tensor_type((2, None, 3, 8), "f32"), tensor_type((2, None), "i32")
    inverse = attrs.replace("}", ", inverse}") if attrs else " {inverse}"
    model = compile_model(entry(
        [("x", t), ("pos", pt)], [("y", t)],
        "  %%y = nn.rotary %%x positions %%pos%s : %s, %s\n" % (inverse, t,
                                                                 pt)))
    kwargs = {"interleaved": "interleaved" in attrs}
    if "rotary_dim" in attrs:
        kwargs.update(rotary_dim=4, theta=500.0)
    for seed, seq in zip(SEEDS, (1, 5, 9)):
        rng = np.random.default_rng(seed)
        x = normal(rng, (2, seq, 3, 8))
        pos = rng.integers(0, 100, (2, seq)).astype(np.int32)
        out = model.run("forward", x=x, pos=pos)["y"]
        expected = grad_ref.nn_rotary_vjp(x, x, pos, **kwargs)[0]
        compare(numerics_report, "rotary inverse", out, expected, F32)


# ---------------------------------------------------------------------------
# 2. Every nn op through moec --mode=train
# ---------------------------------------------------------------------------

class Case:
    """One op under moe-autodiff: `args` are (name, shape, kind) with kind
    "param" (trainable), "input" or "ids"; `op` computes %y from them;
    `vjp(c, values)` returns {param: expected gradient} from the reference."""

    def __init__(self, name, args, op, y_shape, vjp, make=None):
        self.name, self.args, self.op = name, args, op
        self.y_shape, self.vjp, self.make = y_shape, vjp, make or {}

    def text(self):
        args = []
        for name, shape, kind in self.args:
            element = "i32" if kind == "ids" else "f32"
            role = ("parameter",) if kind == "param" else ()
            args.append((name, tensor_type(shape, element)) + role)
        yt = tensor_type(self.y_shape, "f32")
        args.append(("c", yt))
        axes = ", ".join(str(i) for i in range(len(self.y_shape)))
        body = ("  %%y = %s\n"
                "  %%p = nn.mul %%y, %%c : %s, %s\n"
                "  %%loss = nn.reduce_sum %%p [%s] : %s\n" % (
                    self.op, yt, yt, axes, yt))
        return entry(args, [("loss", "tensor<f32>")], body)

    def values(self, rng):
        values = {}
        for name, shape, kind in self.args:
            maker = self.make.get(name)
            if maker is not None:
                values[name] = maker(rng, shape)
            else:
                values[name] = normal(rng, shape)
        values["c"] = normal(rng, self.y_shape)
        return values


def unary_case(function):
    op = ("nn.gelu %x approximate = tanh : tensor<3x5xf32>"
          if function == "gelu_tanh" else
          "nn.%s %%x : tensor<3x5xf32>" % function)
    return Case(function, [("x", (3, 5), "param")], op, (3, 5),
                lambda c, v: {"x": grad_ref.nn_unary_vjp(function, c,
                                                         v["x"])[0]},
                {"x": UNARY_INPUT.get(function, normal)})


def binary_case(name):
    vjp = getattr(grad_ref, "nn_%s_vjp" % name)
    make = {"a": positive} if name == "pow" else {}
    if name == "div":
        make = {"b": positive}
    return Case(
        name, [("a", (2, 1, 5), "param"), ("b", (3, 5), "param")],
        "nn.%s %%a, %%b : tensor<2x1x5xf32>, tensor<3x5xf32>" % name,
        (2, 3, 5),
        lambda c, v: dict(zip("ab", vjp(c, v["a"], v["b"]))), make)


TRAIN_CASES = [binary_case(n) for n in ("add", "sub", "mul", "div", "pow")]
TRAIN_CASES += [unary_case(f) for f in grad_ref.UNARY_FUNCTIONS]
TRAIN_CASES += [
    Case("linear",
         [("x", (2, 3, 4), "param"), ("w", (4, 5), "param"),
          ("b", (5,), "param")],
         "nn.linear %x, %w bias %b : tensor<2x3x4xf32>, tensor<4x5xf32>, "
         "tensor<5xf32>", (2, 3, 5),
         lambda c, v: dict(zip("xwb", grad_ref.nn_linear_vjp(
             c, v["x"], v["w"], v["b"])))),
    Case("linear_vector",
         [("x", (4,), "param"), ("w", (4, 3), "param")],
         "nn.linear %x, %w : tensor<4xf32>, tensor<4x3xf32>", (3,),
         lambda c, v: dict(zip("xw", grad_ref.nn_linear_vjp(
             c, v["x"], v["w"])))),
    Case("matmul_shared_rhs",
         [("a", (2, 3, 4), "param"), ("b", (5, 4), "param")],
         "nn.matmul %a, %b {transpose_rhs} : tensor<2x3x4xf32>, "
         "tensor<5x4xf32>", (2, 3, 5),
         lambda c, v: dict(zip("ab", grad_ref.nn_matmul_vjp(
             c, v["a"], v["b"], transpose_rhs=True)))),
    Case("matmul_batched_transposed",
         [("a", (2, 4, 3), "param"), ("b", (1, 5, 4), "param")],
         "nn.matmul %a, %b {transpose_lhs, transpose_rhs} : "
         "tensor<2x4x3xf32>, tensor<1x5x4xf32>", (2, 3, 5),
         lambda c, v: dict(zip("ab", grad_ref.nn_matmul_vjp(
             c, v["a"], v["b"], transpose_lhs=True, transpose_rhs=True)))),
    Case("matmul_broadcast_lhs",
         [("a", (3, 4), "param"), ("b", (2, 4, 5), "param")],
         "nn.matmul %a, %b : tensor<3x4xf32>, tensor<2x4x5xf32>", (2, 3, 5),
         lambda c, v: dict(zip("ab", grad_ref.nn_matmul_vjp(
             c, v["a"], v["b"])))),
    Case("rms_norm",
         [("x", (2, 3, 6), "param"), ("w", (6,), "param")],
         "nn.rms_norm %x, %w : tensor<2x3x6xf32>, tensor<6xf32>", (2, 3, 6),
         lambda c, v: dict(zip("xw", grad_ref.nn_rms_norm_vjp(
             c, v["x"], v["w"])))),
    Case("layer_norm",
         [("x", (4, 6), "param"), ("w", (6,), "param"), ("b", (6,), "param")],
         "nn.layer_norm %x, %w bias %b : tensor<4x6xf32>, tensor<6xf32>, "
         "tensor<6xf32>", (4, 6),
         lambda c, v: dict(zip("xwb", grad_ref.nn_layer_norm_vjp(
             c, v["x"], v["w"], v["b"])))),
    Case("softmax",
         [("x", (3, 4, 5), "param")],
         "nn.softmax %x {axis = 1 : i64} : tensor<3x4x5xf32>", (3, 4, 5),
         lambda c, v: {"x": grad_ref.nn_softmax_vjp(c, v["x"], axis=1)[0]}),
    Case("embedding",
         [("table", (7, 4), "param"), ("ids", (2, 5), "ids")],
         "nn.embedding %table, %ids : tensor<7x4xf32>, tensor<2x5xi32>",
         (2, 5, 4),
         lambda c, v: {"table": grad_ref.nn_embedding_vjp(
             c, v["table"], v["ids"])[0]},
         {"ids": lambda rng, s: rng.integers(0, 7, s).astype(np.int32)}),
    Case("rotary",
         [("x", (2, 3, 2, 6), "param"), ("pos", (2, 3), "ids")],
         "nn.rotary %x positions %pos {interleaved, rotary_dim = 4 : i64} : "
         "tensor<2x3x2x6xf32>, tensor<2x3xi32>", (2, 3, 2, 6),
         lambda c, v: {"x": grad_ref.nn_rotary_vjp(
             c, v["x"], v["pos"], rotary_dim=4, interleaved=True)[0]},
         {"pos": lambda rng, s: rng.integers(0, 40, s).astype(np.int32)}),
    Case("attention",
         [("q", (1, 4, 4, 3), "param"), ("k", (1, 5, 2, 3), "param"),
          ("v", (1, 5, 2, 3), "param")],
         "nn.attention %q, %k, %v : tensor<1x4x4x3xf32>, tensor<1x5x2x3xf32>, "
         "tensor<1x5x2x3xf32>", (1, 4, 4, 3),
         lambda c, v: dict(zip("qkv", grad_ref.nn_attention_vjp(
             c, v["q"], v["k"], v["v"])))),
    Case("reshape",
         [("x", (2, 3, 4), "param")],
         "nn.reshape %x : tensor<2x3x4xf32> -> tensor<6x4xf32>", (6, 4),
         lambda c, v: {"x": grad_ref.nn_reshape_vjp(c, v["x"])[0]}),
    Case("transpose",
         [("x", (2, 3, 4), "param")],
         "nn.transpose %x [2, 0, 1] : tensor<2x3x4xf32>", (4, 2, 3),
         lambda c, v: {"x": grad_ref.nn_transpose_vjp(c, v["x"],
                                                      (2, 0, 1))[0]}),
    Case("reduce_sum",
         [("x", (2, 3, 4), "param")],
         "nn.reduce_sum %x [1] {keep_dims} : tensor<2x3x4xf32>", (2, 1, 4),
         lambda c, v: {"x": grad_ref.nn_reduce_sum_vjp(
             c, v["x"], [1], keep_dims=True)[0]}),
    Case("reduce_mean",
         [("x", (2, 3, 4), "param")],
         "nn.reduce_mean %x [0, -1] : tensor<2x3x4xf32>", (3,),
         lambda c, v: {"x": grad_ref.nn_reduce_mean_vjp(
             c, v["x"], [0, -1])[0]}),
]


@pytest.mark.parametrize("case", TRAIN_CASES, ids=lambda case: case.name)
def test_train_step(compile_model, numerics_report, case):
    model = compile_model(case.text(), flags=("--mode=train",))
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        values = case.values(rng)
        params = {name: values[name] for name, _, kind in case.args
                  if kind == "param"}
        inputs = {name: value for name, value in values.items()
                  if name not in params}
        out = model.run("train_step", **inputs, **params)
        expected = case.vjp(values["c"].astype(np.float64), values)
        for name in params:
            compare(numerics_report, "train_step %s grad.%s" % (case.name,
                                                                name),
                    out["grad." + name], expected[name], F32)
        errors = gradcheck.check(model, inputs, params, h=FD_H,
                                 rtol=FD_RTOL, atol=FD_ATOL, seed=seed)
        for name, error in errors.items():
            numerics_report("finite differences %s grad.%s" % (case.name,
                                                               name), error)


def test_cross_entropy_train_step(compile_model, numerics_report):
    """The loss itself: logits and a mask from the inputs."""
    text = entry(
        [("z", "tensor<2x3x6xf32>", "parameter"), ("t", "tensor<2x3xi32>"),
         ("m", "tensor<2x3xf32>")],
        [("loss", "tensor<f32>")],
        "  %loss = nn.cross_entropy %z, %t mask %m : tensor<2x3x6xf32>, "
        "tensor<2x3xi32>, tensor<2x3xf32>\n")
    model = compile_model(text, flags=("--mode=train",))
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        z = normal(rng, (2, 3, 6))
        t = rng.integers(0, 6, (2, 3)).astype(np.int32)
        m = (rng.random((2, 3)) < 0.7).astype(np.float32)
        m[0, 0] = 1.0
        out = model.run("train_step", z=z, t=t, m=m)
        compare(numerics_report, "train_step cross_entropy grad.z",
                out["grad.z"],
                grad_ref.nn_cross_entropy_vjp(1.0, z, t, m)[0], F32)
        errors = gradcheck.check(model, {"t": t, "m": m}, {"z": z}, h=FD_H,
                                 rtol=FD_RTOL, atol=FD_ATOL, seed=seed)
        numerics_report("finite differences cross_entropy grad.z",
                        errors["z"])


def test_dynamic_reshape_and_mean_train_step(compile_model, numerics_report):
    """Several dynamic extents: the reshape's gradient is reshaped back with
    the input's extents; reduce_mean divides by a run-time count."""
    text = entry(
        [("x", "tensor<?x?x4xf32>", "parameter"), ("c", "tensor<?x4xf32>")],
        [("loss", "tensor<f32>")],
        "  %y = nn.reshape %x : tensor<?x?x4xf32> -> tensor<?x4xf32>\n"
        "  %p = nn.mul %y, %c : tensor<?x4xf32>, tensor<?x4xf32>\n"
        "  %loss = nn.reduce_mean %p [0, 1] : tensor<?x4xf32>\n")
    model = compile_model(text, flags=("--mode=train",))
    for seed, shape in zip(SEEDS, ((2, 3, 4), (1, 5, 4), (3, 1, 4))):
        rng = np.random.default_rng(seed)
        x = normal(rng, shape)
        c = normal(rng, (shape[0] * shape[1], 4))
        out = model.run("train_step", x=x, c=c)
        (d_p,) = grad_ref.nn_reduce_mean_vjp(1.0, c, [0, 1])
        expected = grad_ref.nn_reshape_vjp(d_p * c, x)[0]
        compare(numerics_report, "train_step dynamic reshape+mean grad.x",
                out["grad.x"], expected, F32)
        errors = gradcheck.check(model, {"c": c}, {"x": x}, h=FD_H,
                                 rtol=FD_RTOL, atol=FD_ATOL, seed=seed)
        numerics_report("finite differences dynamic reshape+mean grad.x",
                        errors["x"])
