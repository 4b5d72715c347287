"""End-to-end numerics of every nn op: compile a one-op entry point with moec
(so convert-nn-to-linalg and the rest of the pipeline run), execute it through
the model ABI and compare with the NumPy references of
test/reference/moe_reference.py.

Every case is one entry point with named arguments (`moe.name`) and, where
the op allows, dynamic extents (`?`), so that one compiled model runs on
several shapes (sequence lengths 1, 5, 13 ...) and seeds. Inputs are random
and nonzero (masks aside).

Error measures (both relative):

- elementwise, for pointwise ops: max |y - ref| / max(|ref|, 1e-3 max|ref|),
  the relative error of each element, floored at a thousandth of the output's
  scale so that a result that is 0 (relu) or crosses 0 is not divided by ~0;
- normwise, for ops that sum terms (matmul, linear, norms, rotary's
  a cos - b sin, attention, the loss): max |y - ref| / max|ref|. A sum that
  cancels to a small value carries the rounding error of its large terms,
  whatever the order of evaluation (and moec contracts a*b + c into FMAs),
  so its own relative error says nothing about the lowering.

Tolerances (f32):

- 1e-6 where the compiled code does what numpy does, operation for
  operation (IEEE add, sub, mul, div, sqrt, max, copies): measured 0.
- 1e-5 for transcendental functions (exp, log, tanh, pow, erf, sin/cos of
  the RoPE angle), where libm, upstream's polynomial erf (a few ulp) and
  numpy's SIMD kernels or math.erf differ by a few ulp, and for reductions
  and contractions, whose summation order differs from numpy's pairwise /
  BLAS order.
- gelu: 1e-4. Both forms compute 1 + erf(.) or 1 + tanh(.) in f32, as the
  op's formulas state; for x < -3 the sum cancels, and one ulp of erf or
  tanh near -1 (6e-8) becomes up to ~1e-4 of the result. (The reference
  evaluates exact GELU in f64, tanh GELU with numpy's f32 tanh.)
- f16: 4e-3, a few half-precision ulps (2^-11 = 4.9e-4 relative rounding of
  the result, plus rounded inputs of intermediate steps).

The measured maxima are printed in the terminal summary.
"""
import numpy as np
import pytest

import moe_reference as ref

SEEDS = (0, 1, 2)
F32_EXACT = 1e-6
F32 = 1e-5
F16 = 4e-3
GELU = 1e-4


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------

def entry(args, result, op, prelude=""):
    """An entry point @forward with named arguments and one named result.

    args: list of (name, type); result: the result type; op: the nn op,
    using %name for the arguments and producing %r; prelude: lines before it.
    """
    params = ", ".join('%%%s: %s {moe.name = "%s"}' % (n, t, n)
                       for n, t in args)
    return ('func.func @forward(%s) -> (%s {moe.name = "y"}) {\n'
            "%s"
            "  %%r = %s\n"
            "  return %%r : %s\n"
            "}\n" % (params, result, prelude, op, result))


# moe_abi.Model.run passes inputs through np.ascontiguousarray, which makes
# 0-d arrays 1-d, so a 0-d operand is passed as tensor<1x...> and reshaped
# to 0-d inside the entry point.
def scalar_prelude(name, element):
    return ("  %%%s0 = nn.reshape %%%s : tensor<1x%s> -> tensor<%s>\n" %
            (name, name, element, element))


def normal(rng, shape, dtype=np.float32):
    """Standard normal values, nudged away from exact zero."""
    x = rng.standard_normal(shape)
    x = np.where(np.abs(x) < 1e-3, 1e-3, x)
    return x.astype(dtype)


def positive(rng, shape, low=0.1, high=3.0):
    return rng.uniform(low, high, shape).astype(np.float32)


def away_from_zero(rng, shape):
    sign = np.where(rng.random(shape) < 0.5, -1.0, 1.0)
    return (sign * rng.uniform(0.1, 3.0, shape)).astype(np.float32)


def rel_error(actual, expected, measure):
    """The error measures of the module docstring."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    finite = np.isfinite(expected)
    assert np.array_equal(np.isfinite(actual), finite), \
        "non-finite values differ"
    assert np.array_equal(actual[~finite], expected[~finite])
    diff = np.abs(actual - expected)[finite]
    scale = np.abs(expected[finite])
    top = max(scale.max(initial=0.0), 1e-30)
    if measure == "normwise":
        return float(diff.max(initial=0.0) / top)
    return float((diff / np.maximum(scale, 1e-3 * top)).max(initial=0.0))


def check(numerics_report, key, model, inputs, expected, tol, dtype=None,
          measure="elementwise"):
    out = model.run("forward", **inputs)["y"]
    if dtype is not None:
        assert out.dtype == dtype, out.dtype
    err = rel_error(out, expected, measure)
    numerics_report("%s (%s)" % (key, measure), err)
    assert err <= tol, "%s: %s relative error %.3g > %.3g" % (
        key, measure, err, tol)
    return out


# ---------------------------------------------------------------------------
# Elementwise
# ---------------------------------------------------------------------------

BINARY_SHAPES = [
    # (lhs type, rhs type, result type, runtime lhs shapes, rhs shape fn)
    ("tensor<?x5x7xf32>", "tensor<?x5x7xf32>", "tensor<?x5x7xf32>",
     [(3, 5, 7), (1, 5, 7), (13, 5, 7)], lambda s: s),
    ("tensor<?x1x7xf32>", "tensor<5x7xf32>", "tensor<?x5x7xf32>",
     [(3, 1, 7), (1, 1, 7)], lambda s: (5, 7)),
    ("tensor<13x1xf32>", "tensor<1x?xf32>", "tensor<13x?xf32>",
     [(13, 1)], lambda s: (1, 5)),
    ("tensor<3x5x7xf32>", "tensor<f32>", "tensor<3x5x7xf32>",
     [(3, 5, 7)], lambda s: (1,)),
]


@pytest.mark.parametrize("op", ["add", "sub", "mul", "div", "pow"])
@pytest.mark.parametrize("shape", range(len(BINARY_SHAPES)))
def test_binary(compile_model, numerics_report, op, shape):
    lhs_t, rhs_t, res_t, lhs_shapes, rhs_shape = BINARY_SHAPES[shape]
    if rhs_t == "tensor<f32>":
        text = entry([("a", lhs_t), ("b", "tensor<1xf32>")], res_t,
                     "nn.%s %%a, %%b0 : %s, %s" % (op, lhs_t, rhs_t),
                     scalar_prelude("b", "f32"))
    else:
        text = entry([("a", lhs_t), ("b", rhs_t)], res_t,
                     "nn.%s %%a, %%b : %s, %s" % (op, lhs_t, rhs_t))
    model = compile_model(text)
    reference = getattr(ref, "nn_" + op)
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        for s in lhs_shapes:
            if op == "pow":
                a, b = positive(rng, s), normal(rng, rhs_shape(s))
            elif op == "div":
                a, b = normal(rng, s), away_from_zero(rng, rhs_shape(s))
            else:
                a, b = normal(rng, s), normal(rng, rhs_shape(s))
            tol = F32 if op == "pow" else F32_EXACT
            check(numerics_report, "nn." + op, model, {"a": a, "b": b},
                  reference(a, b), tol)


UNARY = {
    # op: (input generator, tolerance)
    "neg": (normal, F32_EXACT),
    "exp": (normal, F32),
    "log": (positive, F32),
    "sqrt": (positive, F32_EXACT),
    "rsqrt": (positive, F32_EXACT),
    "reciprocal": (away_from_zero, F32_EXACT),
    "tanh": (normal, F32),
    "erf": (normal, F32),
    "sigmoid": (normal, F32),
    "relu": (normal, F32_EXACT),
    "silu": (normal, F32),
}


def _unary_inputs(rng, generator, shape):
    x = generator(rng, shape)
    if generator is normal:
        x = (x * 3).astype(np.float32)  # reach the saturating tails
    return x


@pytest.mark.parametrize("op", sorted(UNARY))
def test_unary(compile_model, numerics_report, op):
    generator, tol = UNARY[op]
    model = compile_model(entry(
        [("x", "tensor<?x5x7xf32>")], "tensor<?x5x7xf32>",
        "nn.%s %%x : tensor<?x5x7xf32>" % op))
    reference = getattr(ref, "nn_" + op)
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        for rows in (3, 1, 13):
            x = _unary_inputs(rng, generator, (rows, 5, 7))
            check(numerics_report, "nn." + op, model, {"x": x}, reference(x),
                  tol)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu(compile_model, numerics_report, approximate):
    model = compile_model(entry(
        [("x", "tensor<?x13xf32>")], "tensor<?x13xf32>",
        "nn.gelu %%x approximate = %s : tensor<?x13xf32>" % approximate))
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        for rows in (1, 7):
            x = (normal(rng, (rows, 13)) * 3).astype(np.float32)
            check(numerics_report, "nn.gelu " + approximate, model, {"x": x},
                  ref.nn_gelu(x, approximate=approximate), GELU)


def test_unary_f16(compile_model, numerics_report):
    model = compile_model(entry([("x", "tensor<?x7xf16>")], "tensor<?x7xf16>",
                                "nn.silu %x : tensor<?x7xf16>"))
    for seed in SEEDS:
        x = normal(np.random.default_rng(seed), (5, 7), np.float16)
        check(numerics_report, "nn.silu f16", model, {"x": x},
              ref.nn_silu(x.astype(np.float32)), F16, np.float16)


def test_binary_f16(compile_model, numerics_report):
    model = compile_model(entry(
        [("a", "tensor<?x7xf16>"), ("b", "tensor<7xf16>")], "tensor<?x7xf16>",
        "nn.mul %a, %b : tensor<?x7xf16>, tensor<7xf16>"))
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        a, b = normal(rng, (3, 7), np.float16), normal(rng, (7,), np.float16)
        check(numerics_report, "nn.mul f16", model, {"a": a, "b": b},
              ref.nn_mul(a, b), F16, np.float16)


# ---------------------------------------------------------------------------
# Linear algebra
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("x_t,x_shapes,bias", [
    ("tensor<2x?x6xf32>", [(2, 1, 6), (2, 13, 6)], True),
    ("tensor<?x6xf32>", [(1, 6), (5, 6)], False),
    ("tensor<6xf32>", [(6,)], True),
])
def test_linear(compile_model, numerics_report, x_t, x_shapes, bias):
    res_t = x_t.replace("6xf32>", "5xf32>")
    args = [("x", x_t), ("w", "tensor<6x5xf32>")]
    op = "nn.linear %x, %w"
    types = "%s, tensor<6x5xf32>" % x_t
    if bias:
        args.append(("b", "tensor<5xf32>"))
        op += " bias %b"
        types += ", tensor<5xf32>"
    model = compile_model(entry(args, res_t, op + " : " + types))
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        for s in x_shapes:
            inputs = {"x": normal(rng, s), "w": normal(rng, (6, 5))}
            if bias:
                inputs["b"] = normal(rng, (5,))
            check(numerics_report, "nn.linear", model, inputs,
                  ref.nn_linear(inputs["x"], inputs["w"], inputs.get("b")),
                  F32, measure="normwise")


def test_linear_f16(compile_model, numerics_report):
    model = compile_model(entry(
        [("x", "tensor<?x6xf16>"), ("w", "tensor<6x5xf16>"),
         ("b", "tensor<5xf16>")], "tensor<?x5xf16>",
        "nn.linear %x, %w bias %b : tensor<?x6xf16>, tensor<6x5xf16>, "
        "tensor<5xf16>"))
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        x, w = normal(rng, (4, 6), np.float16), normal(rng, (6, 5), np.float16)
        b = normal(rng, (5,), np.float16)
        check(numerics_report, "nn.linear f16", model,
              {"x": x, "w": w, "b": b}, ref.nn_linear(x, w, b), F16,
              np.float16, measure="normwise")


MATMULS = [
    # (lhs type, rhs type, attrs, result type, [(lhs shape, rhs shape)])
    ("tensor<?x7xf32>", "tensor<7x5xf32>", "", "tensor<?x5xf32>",
     [((1, 7), (7, 5)), ((13, 7), (7, 5))]),
    ("tensor<3x?x6xf32>", "tensor<6x5xf32>", "", "tensor<3x?x5xf32>",
     [((3, 13, 6), (6, 5))]),
    ("tensor<3x?x6xf32>", "tensor<3x6x5xf32>", "", "tensor<3x?x5xf32>",
     [((3, 1, 6), (3, 6, 5)), ((3, 13, 6), (3, 6, 5))]),
    ("tensor<2x3x?x6xf32>", "tensor<3x5x6xf32>", "{transpose_rhs}",
     "tensor<2x3x?x5xf32>", [((2, 3, 7, 6), (3, 5, 6))]),
    ("tensor<3x6x?xf32>", "tensor<3x6x5xf32>", "{transpose_lhs}",
     "tensor<3x?x5xf32>", [((3, 6, 13), (3, 6, 5))]),
    ("tensor<1x6x?xf32>", "tensor<4x5x6xf32>",
     "{transpose_lhs, transpose_rhs}", "tensor<4x?x5xf32>",
     [((1, 6, 13), (4, 5, 6))]),
    ("tensor<1x?x6xf32>", "tensor<4x6x5xf32>", "", "tensor<4x?x5xf32>",
     [((1, 13, 6), (4, 6, 5))]),
    ("tensor<?x7xf32>", "tensor<3x7x5xf32>", "", "tensor<3x?x5xf32>",
     [((9, 7), (3, 7, 5))]),
    ("tensor<3x?x6xf32>", "tensor<5x6xf32>", "{transpose_rhs}",
     "tensor<3x?x5xf32>", [((3, 13, 6), (5, 6))]),
    ("tensor<6x?xf32>", "tensor<5x6xf32>", "{transpose_lhs, transpose_rhs}",
     "tensor<?x5xf32>", [((6, 9), (5, 6)), ((6, 1), (5, 6))]),
]


@pytest.mark.parametrize("case", range(len(MATMULS)))
def test_matmul(compile_model, numerics_report, case):
    lhs_t, rhs_t, attrs, res_t, shapes = MATMULS[case]
    model = compile_model(entry(
        [("a", lhs_t), ("b", rhs_t)], res_t,
        "nn.matmul %%a, %%b %s : %s, %s" % (attrs, lhs_t, rhs_t)))
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        for a_shape, b_shape in shapes:
            a, b = normal(rng, a_shape), normal(rng, b_shape)
            check(numerics_report, "nn.matmul", model, {"a": a, "b": b},
                  ref.nn_matmul(a, b, transpose_lhs="transpose_lhs" in attrs,
                                transpose_rhs="transpose_rhs" in attrs), F32,
                  measure="normwise")


def test_matmul_f16(compile_model, numerics_report):
    model = compile_model(entry(
        [("a", "tensor<2x?x8xf16>"), ("b", "tensor<2x5x8xf16>")],
        "tensor<2x?x5xf16>",
        "nn.matmul %a, %b {transpose_rhs} : tensor<2x?x8xf16>, "
        "tensor<2x5x8xf16>"))
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        a = normal(rng, (2, 3, 8), np.float16)
        b = normal(rng, (2, 5, 8), np.float16)
        check(numerics_report, "nn.matmul f16", model, {"a": a, "b": b},
              ref.nn_matmul(a, b, transpose_rhs=True), F16, np.float16,
              measure="normwise")


# ---------------------------------------------------------------------------
# Normalisation, softmax, embedding
# ---------------------------------------------------------------------------

def test_rms_norm(compile_model, numerics_report):
    model = compile_model(entry(
        [("x", "tensor<?x5x7xf32>"), ("g", "tensor<7xf32>")],
        "tensor<?x5x7xf32>",
        "nn.rms_norm %x, %g {epsilon = 1.0e-05 : f32} : tensor<?x5x7xf32>, "
        "tensor<7xf32>"))
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        for rows in (3, 1, 13):
            x, g = normal(rng, (rows, 5, 7)), normal(rng, (7,))
            check(numerics_report, "nn.rms_norm", model, {"x": x, "g": g},
                  ref.nn_rms_norm(x, g, epsilon=1e-5), F32,
                  measure="normwise")


def test_rms_norm_f16(compile_model, numerics_report):
    model = compile_model(entry(
        [("x", "tensor<?x13xf16>"), ("g", "tensor<13xf16>")],
        "tensor<?x13xf16>",
        "nn.rms_norm %x, %g : tensor<?x13xf16>, tensor<13xf16>"))
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        x, g = normal(rng, (3, 13), np.float16), normal(rng, (13,), np.float16)
        check(numerics_report, "nn.rms_norm f16", model, {"x": x, "g": g},
              ref.nn_rms_norm(x, g), F16, np.float16, measure="normwise")


@pytest.mark.parametrize("bias", [True, False])
def test_layer_norm(compile_model, numerics_report, bias):
    args = [("x", "tensor<2x?x13xf32>"), ("g", "tensor<13xf32>")]
    op, types = "nn.layer_norm %x, %g", "tensor<2x?x13xf32>, tensor<13xf32>"
    if bias:
        args.append(("b", "tensor<13xf32>"))
        op += " bias %b"
        types += ", tensor<13xf32>"
    model = compile_model(entry(args, "tensor<2x?x13xf32>",
                                op + " : " + types))
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        for seq in (1, 5):
            # An offset mean checks the two-pass variance.
            x = (normal(rng, (2, seq, 13)) + 4).astype(np.float32)
            inputs = {"x": x, "g": normal(rng, (13,))}
            if bias:
                inputs["b"] = normal(rng, (13,))
            check(numerics_report, "nn.layer_norm", model, inputs,
                  ref.nn_layer_norm(x, inputs["g"], inputs.get("b")), F32,
                  measure="normwise")


@pytest.mark.parametrize("axis", [-1, 1, 0])
def test_softmax(compile_model, numerics_report, axis):
    model = compile_model(entry(
        [("x", "tensor<?x5x7xf32>")], "tensor<?x5x7xf32>",
        "nn.softmax %%x {axis = %d : i64} : tensor<?x5x7xf32>" % axis))
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        for rows in (3, 1, 13):
            # Large logits: without the max subtraction exp would overflow.
            x = (normal(rng, (rows, 5, 7)) * 40).astype(np.float32)
            check(numerics_report, "nn.softmax", model, {"x": x},
                  ref.nn_softmax(x, axis=axis), F32)


def test_softmax_f16(compile_model, numerics_report):
    model = compile_model(entry([("x", "tensor<?x9xf16>")], "tensor<?x9xf16>",
                                "nn.softmax %x : tensor<?x9xf16>"))
    for seed in SEEDS:
        x = normal(np.random.default_rng(seed), (4, 9), np.float16)
        check(numerics_report, "nn.softmax f16", model, {"x": x},
              ref.nn_softmax(x), F16, np.float16)


@pytest.mark.parametrize("ids_t,id_dtype,shapes", [
    ("tensor<2x?xi32>", np.int32, [(2, 1), (2, 13)]),
    ("tensor<?xi64>", np.int64, [(5,)]),
])
def test_embedding(compile_model, numerics_report, ids_t, id_dtype, shapes):
    res_t = ids_t.replace("xi32>", "x7xf32>").replace("xi64>", "x7xf32>")
    model = compile_model(entry(
        [("table", "tensor<11x7xf32>"), ("ids", ids_t)], res_t,
        "nn.embedding %%table, %%ids : tensor<11x7xf32>, %s" % ids_t))
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        for s in shapes:
            table = normal(rng, (11, 7))
            ids = rng.integers(0, 11, s).astype(id_dtype)
            check(numerics_report, "nn.embedding", model,
                  {"table": table, "ids": ids}, ref.nn_embedding(table, ids),
                  F32_EXACT)


# ---------------------------------------------------------------------------
# Attention
# ---------------------------------------------------------------------------

ROTARY = [
    # (input type, positions type or None, attrs, reference kwargs,
    #  runtime input shapes)
    ("tensor<2x?x3x8xf32>", None, "", {}, [(2, 1, 3, 8), (2, 13, 3, 8)]),
    ("tensor<1x?x2x8xf32>", "tensor<?xi32>", "theta = 500000.0 : f32",
     {"theta": 500000.0}, [(1, 13, 2, 8)]),
    ("tensor<2x?x2x8xf32>", "tensor<2x?xi64>", "", {}, [(2, 5, 2, 8)]),
    ("tensor<2x?x3x8xf32>", None, "interleaved", {"interleaved": True},
     [(2, 13, 3, 8)]),
    ("tensor<1x?x2x10xf32>", "tensor<?xi32>", "rotary_dim = 4 : i64",
     {"rotary_dim": 4}, [(1, 7, 2, 10)]),
    ("tensor<1x?x2x10xf32>", None, "rotary_dim = 6 : i64, interleaved",
     {"rotary_dim": 6, "interleaved": True}, [(1, 7, 2, 10)]),
    ("tensor<1x?x2x?xf32>", None, "", {}, [(1, 5, 2, 6), (1, 3, 2, 12)]),
]


@pytest.mark.parametrize("case", range(len(ROTARY)))
def test_rotary(compile_model, numerics_report, case):
    x_t, pos_t, attrs, kwargs, shapes = ROTARY[case]
    args = [("x", x_t)]
    op = "nn.rotary %x"
    types = x_t
    if pos_t:
        args.append(("pos", pos_t))
        op += " positions %pos"
        types += ", " + pos_t
    if attrs:
        op += " {%s}" % attrs
    model = compile_model(entry(args, x_t, op + " : " + types))
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        for s in shapes:
            inputs = {"x": normal(rng, s)}
            positions = None
            if pos_t:
                pshape = (s[1],) if pos_t.count("x") == 1 else (s[0], s[1])
                dtype = np.int32 if "i32" in pos_t else np.int64
                positions = rng.integers(0, 200, pshape).astype(dtype)
                inputs["pos"] = positions
            check(numerics_report, "nn.rotary", model, inputs,
                  ref.nn_rotary(inputs["x"], positions, **kwargs), F32,
                  measure="normwise")


ATTENTION = [
    # (q, k, v, result types, attrs, reference kwargs, [(q, k, v shapes)])
    ("tensor<2x?x4x8xf32>", "tensor<2x?x2x8xf32>", "tensor<2x?x2x6xf32>",
     "tensor<2x?x4x6xf32>", "", {}, [((2, 5, 4, 8), (2, 5, 2, 8), (2, 5, 2, 6)),
          ((2, 1, 4, 8), (2, 13, 2, 8), (2, 13, 2, 6)),
          ((2, 13, 4, 8), (2, 13, 2, 8), (2, 13, 2, 6)),
          # seq_q > seq_kv: the first rows see no key and give 0.
          ((2, 7, 4, 8), (2, 3, 2, 8), (2, 3, 2, 6))]),
    ("tensor<1x?x3x8xf32>", "tensor<1x?x1x8xf32>", "tensor<1x?x1x8xf32>",
     "tensor<1x?x3x8xf32>", "causal = false, scale = 0.25 : f32", {"causal": False, "scale": 0.25},
     [((1, 5, 3, 8), (1, 9, 1, 8), (1, 9, 1, 8))]),
    ("tensor<?x?x2x?xf32>", "tensor<?x?x2x?xf32>", "tensor<?x?x2x?xf32>",
     "tensor<?x?x2x?xf32>", "", {}, [((1, 6, 2, 12), (1, 6, 2, 12), (1, 6, 2, 12)),
          ((3, 4, 2, 5), (3, 4, 2, 5), (3, 4, 2, 7))]),
]


@pytest.mark.parametrize("case", range(len(ATTENTION)))
def test_attention(compile_model, numerics_report, case):
    q_t, k_t, v_t, res_t, attrs, kwargs, shapes = ATTENTION[case]
    op = "nn.attention %q, %k, %v"
    if attrs:
        op += " {%s}" % attrs
    model = compile_model(entry(
        [("q", q_t), ("k", k_t), ("v", v_t)], res_t,
        op + " : %s, %s, %s" % (q_t, k_t, v_t)))
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        for qs, ks, vs in shapes:
            q, k, v = normal(rng, qs), normal(rng, ks), normal(rng, vs)
            expected = ref.nn_attention(q, k, v, **kwargs)
            out = check(numerics_report, "nn.attention", model,
                        {"q": q, "k": k, "v": v}, expected, F32,
                        measure="normwise")
            assert np.all(np.isfinite(out))


def test_attention_f16(compile_model, numerics_report):
    model = compile_model(entry(
        [("q", "tensor<1x?x2x8xf16>"), ("k", "tensor<1x?x1x8xf16>"),
         ("v", "tensor<1x?x1x8xf16>")], "tensor<1x?x2x8xf16>",
        "nn.attention %q, %k, %v : tensor<1x?x2x8xf16>, tensor<1x?x1x8xf16>, "
        "tensor<1x?x1x8xf16>"))
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        q = normal(rng, (1, 6, 2, 8), np.float16)
        k = normal(rng, (1, 6, 1, 8), np.float16)
        v = normal(rng, (1, 6, 1, 8), np.float16)
        check(numerics_report, "nn.attention f16", model,
              {"q": q, "k": k, "v": v}, ref.nn_attention(q, k, v), F16,
              np.float16, measure="normwise")


# ---------------------------------------------------------------------------
# Shapes and loss
# ---------------------------------------------------------------------------

RESHAPES = [
    # (input type, result type, runtime input shapes)
    ("tensor<2x?x6xf32>", "tensor<?x6xf32>", [(2, 1, 6), (2, 13, 6)]),
    ("tensor<?x12xf32>", "tensor<?x3x4xf32>", [(1, 12), (5, 12)]),
    ("tensor<2x?x6xf32>", "tensor<3x?x4xf32>", [(2, 1, 6), (2, 13, 6)]),
    ("tensor<?x5x7xf32>", "tensor<?xf32>", [(3, 5, 7)]),
    ("tensor<?xf32>", "tensor<5x?x7xf32>", [(35,), (105,)]),
    ("tensor<6x4xf32>", "tensor<?x8xf32>", [(6, 4)]),
    ("tensor<3x5x7xf32>", "tensor<7x15xf32>", [(3, 5, 7)]),
    ("tensor<1x1xf32>", "tensor<f32>", [(1, 1)]),
    ("tensor<1x1xf32>", "tensor<1x1x1xf32>", [(1, 1)]),
]


@pytest.mark.parametrize("case", range(len(RESHAPES)))
@pytest.mark.parametrize("returned", ["consumed", "returned"])
def test_reshape(compile_model, numerics_report, case, returned):
    """The reshaped tensor is either consumed by nn.neg (a new buffer) or
    returned as it is (a view of the argument)."""
    x_t, res_t, shapes = RESHAPES[case]
    reshape = "nn.reshape %%x : %s -> %s" % (x_t, res_t)
    if returned == "returned":
        model = compile_model(entry([("x", x_t)], res_t, reshape))
    else:
        model = compile_model(entry([("x", x_t)], res_t,
                                    "nn.neg %%v : %s" % res_t,
                                    "  %%v = %s\n" % reshape))
    dims = res_t[len("tensor<"):-1].split("x")[:-1]
    shape = [-1 if d == "?" else int(d) for d in dims]
    sign = -1 if returned == "consumed" else 1
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        for s in shapes:
            x = normal(rng, s)
            check(numerics_report, "nn.reshape", model, {"x": x},
                  sign * ref.nn_reshape(x, shape), 0.0)


@pytest.mark.parametrize("x_t,perm,res_t,shapes", [
    ("tensor<?x5x7xf32>", [2, 0, 1], "tensor<7x?x5xf32>",
     [(3, 5, 7), (1, 5, 7)]),
    ("tensor<2x?x3x4xf32>", [0, 2, 1, 3], "tensor<2x3x?x4xf32>",
     [(2, 13, 3, 4)]),
])
def test_transpose(compile_model, numerics_report, x_t, perm, res_t, shapes):
    model = compile_model(entry(
        [("x", x_t)], res_t,
        "nn.transpose %%x [%s] : %s" % (", ".join(map(str, perm)), x_t)))
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        for s in shapes:
            x = normal(rng, s)
            check(numerics_report, "nn.transpose", model, {"x": x},
                  ref.nn_transpose(x, perm), 0.0)


@pytest.mark.parametrize("mask", ["none", "binary", "weights", "zeros"])
def test_cross_entropy(compile_model, numerics_report, mask):
    args = [("logits", "tensor<2x?x11xf32>"), ("t", "tensor<2x?xi32>")]
    op = "nn.cross_entropy %logits, %t"
    types = "tensor<2x?x11xf32>, tensor<2x?xi32>"
    if mask != "none":
        args.append(("m", "tensor<2x?xf32>"))
        op += " mask %m"
        types += ", tensor<2x?xf32>"
    model = compile_model(entry(args, "tensor<f32>", op + " : " + types))
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        for seq in (1, 13):
            logits = (normal(rng, (2, seq, 11)) * 5).astype(np.float32)
            targets = rng.integers(0, 11, (2, seq)).astype(np.int32)
            inputs = {"logits": logits, "t": targets}
            m = None
            if mask == "binary":
                m = (rng.random((2, seq)) < 0.6).astype(np.float32)
            elif mask == "weights":
                m = rng.uniform(0.1, 1.0, (2, seq)).astype(np.float32)
            elif mask == "zeros":
                m = np.zeros((2, seq), np.float32)
            if m is not None:
                inputs["m"] = m
            check(numerics_report, "nn.cross_entropy", model, inputs,
                  ref.nn_cross_entropy(logits, targets, m), F32)


def test_cross_entropy_single_position(compile_model, numerics_report):
    model = compile_model(entry(
        [("logits", "tensor<?xf32>"), ("t", "tensor<1xi64>")], "tensor<f32>",
        "nn.cross_entropy %logits, %t0 : tensor<?xf32>, tensor<i64>",
        "  %t0 = tensor.collapse_shape %t [] : tensor<1xi64> into "
        "tensor<i64>\n"))
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        logits = normal(rng, (13,))
        target = rng.integers(0, 13, (1,)).astype(np.int64)
        check(numerics_report, "nn.cross_entropy", model,
              {"logits": logits, "t": target},
              ref.nn_cross_entropy(logits, target[0]), F32)


def test_every_nn_op_is_covered():
    """Each nn op of the reference has an end-to-end test above."""
    tested = {"nn_" + op for op in ["add", "sub", "mul", "div", "pow"]}
    tested |= {"nn_" + op for op in UNARY}
    tested |= {"nn_gelu", "nn_linear", "nn_matmul", "nn_rms_norm",
               "nn_layer_norm", "nn_softmax", "nn_embedding", "nn_rotary",
               "nn_attention", "nn_reshape", "nn_transpose",
               "nn_cross_entropy"}
    every = {name for name in ref.__all__ if name.startswith("nn_")}
    assert every == tested, sorted(every ^ tested)
