"""End-to-end numerics of the nn ops that ONNX graphs use to move data
around (nn.concat, slice, gather, where, compare, cast, expand, topk, iota,
trilu), of nn.reduce_mean / nn.reduce_max, of integer nn.add / sub / mul /
div / neg and of nn.reshape with several dynamic extents: one-op entry
points compiled with moec and compared with the NumPy references of
test/reference/nn_tensor_reference.py.

Data movement, comparisons, integer arithmetic and casts must be exact
(array_equal, NaN positions included): the measured error is 0 by
construction, reported as 0. reduce_mean sums in a different order than the
float64 reference (normwise, 1e-5 in f32, 4e-3 in f16); reduce_max is
exact. Shapes are odd and partly dynamic (several run-time extents per
compiled model), indices, starts and axes negative where the op allows,
several seeds.
"""
import numpy as np
import pytest

import nn_tensor_reference as ref
from test_nn_ops import normal, rel_error

SEEDS = (0, 1, 2)
MAX = ref.INT64_MAX
MIN = ref.INT64_MIN


def entry(args, results, body):
    """@forward with named arguments and results: `args` and `results` are
    (name, type) lists, `body` defines %<name> of every result."""
    params = ", ".join('%%%s: %s {moe.name = "%s"}' % (n, t, n)
                       for n, t in args)
    result_types = ", ".join('%s {moe.name = "%s"}' % (t, n)
                             for n, t in results)
    return ("func.func @forward(%s) -> (%s) {\n%s  return %s : %s\n}\n" % (
        params, result_types, body, ", ".join("%" + n for n, _ in results),
        ", ".join(t for _, t in results)))


def dims_prelude(value, type_, dims):
    """%n<d> = tensor.dim %value, d for every d in dims."""
    return "".join("  %%c%d = arith.constant %d : index\n"
                   "  %%n%d = tensor.dim %%%s, %%c%d : %s\n" % (
                       d, d, d, value, d, type_) for d in dims)


def exact(numerics_report, key, actual, expected):
    expected = np.asarray(expected)
    assert actual.dtype == expected.dtype, (key, actual.dtype, expected.dtype)
    np.testing.assert_array_equal(actual, expected, err_msg=key)
    numerics_report(key + " (exact)", 0.0)


def random_of(rng, shape, element):
    """Nonzero test data of an element type: normals for floats, both signs
    for integers, a mix for i1."""
    if element in ("f32", "f16"):
        return normal(rng, shape, ref.dtype_of(element))
    if element == "i1":
        return rng.random(shape) < 0.5
    values = rng.integers(-50, 50, shape)
    values[values == 0] = 7
    return values.astype(ref.dtype_of(element))


# ---------------------------------------------------------------------------
# nn.concat
# ---------------------------------------------------------------------------

CONCATS = [
    # (input types, axis, result type, run-time shapes per input)
    (["tensor<2x?x3xf32>", "tensor<2x?x3xf32>", "tensor<2x4x3xf32>"], 1,
     "tensor<2x?x3xf32>",
     [[(2, 1, 3), (2, 5, 3), (2, 4, 3)], [(2, 7, 3), (2, 2, 3), (2, 4, 3)]]),
    (["tensor<?x2xi1>", "tensor<?x3xi1>"], -1, "tensor<?x5xi1>",
     [[(1, 2), (1, 3)], [(6, 2), (6, 3)]]),
    (["tensor<3xi64>", "tensor<?xi64>"], 0, "tensor<?xi64>",
     [[(3,), (1,)], [(3,), (9,)]]),
    (["tensor<?x5xf16>", "tensor<?x5xf16>"], -2, "tensor<?x5xf16>",
     [[(2, 5), (3, 5)]]),
    (["tensor<?x4xi32>"], 0, "tensor<?x4xi32>", [[(3, 4)]]),
]


@pytest.mark.parametrize("case", range(len(CONCATS)))
def test_concat(compile_model, numerics_report, case):
    types, axis, result, shapes = CONCATS[case]
    names = ["x%d" % i for i in range(len(types))]
    element = result[result.rindex("x") + 1:-1]
    model = compile_model(entry(
        list(zip(names, types)), [("y", result)],
        "  %%y = nn.concat %s axis = %d : %s\n" % (
            ", ".join("%" + n for n in names), axis, ", ".join(types))))
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        for per_input in shapes:
            inputs = {n: random_of(rng, s, element)
                      for n, s in zip(names, per_input)}
            out = model.run("forward", **inputs)["y"]
            exact(numerics_report, "nn.concat " + element, out,
                  ref.nn_concat([inputs[n] for n in names], axis))


# ---------------------------------------------------------------------------
# nn.slice
# ---------------------------------------------------------------------------

SLICES = [
    # (input type, starts, ends, steps, result type, run-time shapes)
    ("tensor<?x9xf32>", [1, -7], [MAX, -1], [2, 3], "tensor<?x2xf32>",
     [(1, 9), (4, 9), (13, 9)]),
    ("tensor<?x8xf32>", [-1, 6], [MIN, -100], [-1, -2], "tensor<?x4xf32>",
     [(1, 8), (5, 8)]),
    ("tensor<?x?xf16>", [-3, 2], [100, -1], [1, 1], "tensor<?x?xf16>",
     [(2, 7), (5, 4), (6, 9)]),
    ("tensor<?xi64>", [-2], [MIN], [-1], "tensor<?xi64>", [(1,), (6,)]),
    ("tensor<?xi64>", [-20], [MIN], [-3], "tensor<?xi64>", [(2,), (7,)]),
    ("tensor<3x?xi1>", [0, 1], [3, MAX], [2, 2], "tensor<2x?xi1>",
     [(3, 2), (3, 9)]),
    ("tensor<2x?x5xi32>", [0, -4, 4], [2, 3, -6], [1, 2, -1],
     "tensor<2x?x5xi32>", [(2, 3, 5), (2, 8, 5)]),
]


@pytest.mark.parametrize("case", range(len(SLICES)))
def test_slice(compile_model, numerics_report, case):
    type_, starts, ends, steps, result, shapes = SLICES[case]
    element = type_[type_.rindex("x") + 1:-1]
    join = lambda values: ", ".join(str(v) for v in values)  # noqa: E731
    model = compile_model(entry(
        [("x", type_)], [("y", result)],
        "  %%y = nn.slice %%x starts = [%s] ends = [%s] steps = [%s] : %s\n"
        % (join(starts), join(ends), join(steps), type_)))
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        for shape in shapes:
            x = random_of(rng, shape, element)
            out = model.run("forward", x=x)["y"]
            exact(numerics_report, "nn.slice " + element, out,
                  ref.nn_slice(x, starts, ends, steps))


# ---------------------------------------------------------------------------
# nn.gather
# ---------------------------------------------------------------------------

GATHERS = [
    # (input type, index type, axis, result type, input shapes, index shape)
    ("tensor<?x6xf32>", "tensor<?x2xi64>", 1, "tensor<?x?x2xf32>",
     [(1, 6), (5, 6)], lambda s: (3, 2)),
    ("tensor<5x?xf16>", "tensor<3xi32>", 0, "tensor<3x?xf16>",
     [(5, 1), (5, 7)], lambda s: (3,)),
    ("tensor<4x?xi64>", "tensor<2x1xi32>", -1, "tensor<4x2x1xi64>",
     [(4, 3), (4, 9)], lambda s: (2, 1)),
    ("tensor<?x3xi1>", "tensor<?xi64>", -2, "tensor<?x3xi1>",
     [(2, 3), (7, 3)], lambda s: (5,)),
]


@pytest.mark.parametrize("case", range(len(GATHERS)))
def test_gather(compile_model, numerics_report, case):
    type_, index_type, axis, result, shapes, index_shape = GATHERS[case]
    element = type_[type_.rindex("x") + 1:-1]
    index_element = index_type[index_type.rindex("x") + 1:-1]
    model = compile_model(entry(
        [("x", type_), ("i", index_type)], [("y", result)],
        "  %%y = nn.gather %%x [%%i] axis = %d : %s, %s\n" % (
            axis, type_, index_type)))
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        for shape in shapes:
            x = random_of(rng, shape, element)
            extent = shape[axis]
            # In range from both ends, plus out-of-range ids (clamped).
            i = rng.integers(-extent - 2, extent + 2, index_shape(shape))
            i = i.astype(ref.dtype_of(index_element))
            out = model.run("forward", x=x, i=i)["y"]
            exact(numerics_report, "nn.gather " + element, out,
                  ref.nn_gather(x, i, axis))


def test_gather_scalar_index(compile_model, numerics_report):
    """A 0-d index (the last token of a sequence) drops the dimension."""
    model = compile_model(entry(
        [("x", "tensor<2x?x5xf32>"), ("i", "tensor<1xi64>")],
        [("y", "tensor<2x5xf32>")],
        "  %i0 = nn.reshape %i : tensor<1xi64> -> tensor<i64>\n"
        "  %y = nn.gather %x [%i0] axis = 1 : tensor<2x?x5xf32>, "
        "tensor<i64>\n"))
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        x = normal(rng, (2, 4 + seed, 5))
        for index in (-1, 0, 2):
            i = np.array([index], np.int64)
            out = model.run("forward", x=x, i=i)["y"]
            exact(numerics_report, "nn.gather f32", out,
                  ref.nn_gather(x, np.int64(index), 1))


# ---------------------------------------------------------------------------
# nn.where, nn.compare
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("element", ["f32", "f16", "i64", "i1"])
def test_where(compile_model, numerics_report, element):
    c_t, t_t = "tensor<?x1xi1>", "tensor<?x4x%s>" % element
    f_t, r_t = "tensor<4x%s>" % element, "tensor<?x4x%s>" % element
    model = compile_model(entry(
        [("c", c_t), ("t", t_t), ("f", f_t)], [("y", r_t)],
        "  %%y = nn.where %%c, %%t, %%f : %s, %s, %s\n" % (c_t, t_t, f_t)))
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        for rows in (1, 6):
            c = rng.random((rows, 1)) < 0.5
            t = random_of(rng, (rows, 4), element)
            f = random_of(rng, (4,), element)
            out = model.run("forward", c=c, t=t, f=f)["y"]
            exact(numerics_report, "nn.where " + element, out,
                  ref.nn_where(c, t, f))


PREDICATES = ["eq", "ne", "lt", "le", "gt", "ge"]


@pytest.mark.parametrize("element", ["f32", "f16", "i64", "i32", "i1"])
@pytest.mark.parametrize("predicate", PREDICATES)
def test_compare(compile_model, numerics_report, predicate, element):
    a_t, b_t = "tensor<?x5x%s>" % element, "tensor<5x%s>" % element
    model = compile_model(entry(
        [("a", a_t), ("b", b_t)], [("y", "tensor<?x5xi1>")],
        "  %%y = nn.compare %s %%a, %%b : %s, %s\n" % (predicate, a_t, b_t)))
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        for rows in (1, 7):
            a = random_of(rng, (rows, 5), element)
            b = random_of(rng, (5,), element)
            a[0, :2] = b[:2]  # ties
            if element in ("f32", "f16"):
                a[-1, 3] = b[4] = np.nan
            out = model.run("forward", a=a, b=b)["y"]
            exact(numerics_report, "nn.compare " + element, out,
                  ref.nn_compare(predicate, a, b))


# ---------------------------------------------------------------------------
# nn.cast
# ---------------------------------------------------------------------------

ELEMENTS = ["f32", "f16", "i1", "i32", "i64"]


def cast_input(rng, element, to):
    """Values that exercise the conversion: fractions of both signs, NaN,
    infinities and out-of-range magnitudes for floats; wide values that
    truncate for integers (small enough for f16 to hold exactly when the
    target is f16)."""
    shape = (3, 9)
    if element in ("f32", "f16"):
        scale = 60000.0 if element == "f16" else 3e10
        x = rng.uniform(-1, 1, shape) * scale
        x[0, :6] = [np.nan, np.inf, -np.inf, 2.5, -2.5, 0.0]
        x[1, :2] = [0.9, -0.9]
        if element == "f32":
            x[1, 2:4] = [2147483520.0, -2147483648.0]
            x[2, :3] = [9.3e18, -9.3e18, 1e19]
        return x.astype(ref.dtype_of(element))
    if element == "i1":
        return rng.random(shape) < 0.5
    if to == "f16":
        bound = 2048
    elif element == "i64":
        bound = 2**62
    else:
        bound = 2**31
    x = rng.integers(-bound, bound, shape, dtype=np.int64)
    x[0, :3] = [0, 1, -1]
    return x.astype(ref.dtype_of(element))


@pytest.mark.parametrize("to", ELEMENTS)
@pytest.mark.parametrize("element", ELEMENTS)
def test_cast(compile_model, numerics_report, element, to):
    x_t, y_t = "tensor<?x9x%s>" % element, "tensor<?x9x%s>" % to
    model = compile_model(entry(
        [("x", x_t)], [("y", y_t)],
        "  %%y = nn.cast %%x : %s -> %s\n" % (x_t, y_t)))
    for seed in SEEDS:
        x = cast_input(np.random.default_rng(seed), element, to)
        out = model.run("forward", x=x)["y"]
        exact(numerics_report, "nn.cast %s->%s" % (element, to), out,
              ref.nn_cast(x, to))


# ---------------------------------------------------------------------------
# nn.expand, nn.iota, nn.trilu
# ---------------------------------------------------------------------------

def test_expand(compile_model, numerics_report):
    """A row stretched to a run-time batch, a column to a run-time width,
    and a scalar (ONNX ConstantOfShape) to a run-time matrix."""
    text = entry(
        [("row", "tensor<1x4xf32>"), ("col", "tensor<?x1xi1>"),
         ("s", "tensor<1xf16>"), ("like", "tensor<?x?xf32>")],
        [("a", "tensor<?x3x4xf32>"), ("b", "tensor<?x?xi1>"),
         ("c", "tensor<?x?xf16>")],
        dims_prelude("like", "tensor<?x?xf32>", (0, 1)) +
        "  %k0 = arith.constant 0 : index\n"
        "  %rows = tensor.dim %col, %k0 : tensor<?x1xi1>\n"
        "  %s0 = nn.reshape %s : tensor<1xf16> -> tensor<f16>\n"
        "  %a = nn.expand %row [%n0] : tensor<1x4xf32> -> tensor<?x3x4xf32>\n"
        "  %b = nn.expand %col [%rows, %n1] : tensor<?x1xi1> -> "
        "tensor<?x?xi1>\n"
        "  %c = nn.expand %s0 [%n0, %n1] : tensor<f16> -> tensor<?x?xf16>\n")
    model = compile_model(text)
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        for shape in ((1, 1), (5, 3), (2, 7)):
            row, col = normal(rng, (1, 4)), rng.random((shape[0] + 1, 1)) < .5
            s = normal(rng, (1,), np.float16)
            like = normal(rng, shape)
            out = model.run("forward", row=row, col=col, s=s, like=like)
            exact(numerics_report, "nn.expand f32", out["a"],
                  ref.nn_expand(row, (shape[0], 3, 4)))
            exact(numerics_report, "nn.expand i1", out["b"],
                  ref.nn_expand(col, (shape[0] + 1, shape[1])))
            exact(numerics_report, "nn.expand f16", out["c"],
                  ref.nn_expand(s.reshape(()), shape))


@pytest.mark.parametrize("element", ["i64", "i32", "f32", "f16"])
def test_iota(compile_model, numerics_report, element):
    model = compile_model(entry(
        [("x", "tensor<?xf32>")], [("y", "tensor<?x%s>" % element)],
        dims_prelude("x", "tensor<?xf32>", (0,)) +
        "  %%y = nn.iota [%%n0] : tensor<?x%s>\n" % element))
    for n in (1, 5, 300):
        out = model.run("forward", x=np.ones(n, np.float32))["y"]
        exact(numerics_report, "nn.iota " + element, out,
              ref.nn_iota(n, element))


@pytest.mark.parametrize("diagonal", [-1, 0, 2])
@pytest.mark.parametrize("upper", [False, True])
@pytest.mark.parametrize("element", ["f32", "i1", "i64", "f16"])
def test_trilu(compile_model, numerics_report, diagonal, upper, element):
    type_ = "tensor<2x?x?x%s>" % element
    attrs = "{diagonal = %d : i64%s}" % (diagonal, ", upper" if upper else "")
    model = compile_model(entry(
        [("x", type_)], [("y", type_)],
        "  %%y = nn.trilu %%x %s : %s\n" % (attrs, type_)))
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        for shape in ((2, 1, 1), (2, 4, 6), (2, 7, 3)):
            x = random_of(rng, shape, element)
            out = model.run("forward", x=x)["y"]
            exact(numerics_report, "nn.trilu " + element, out,
                  ref.nn_trilu(x, diagonal, upper))


# ---------------------------------------------------------------------------
# nn.topk
# ---------------------------------------------------------------------------

TOPKS = [
    # (input type, k, axis, largest, run-time shapes, values)
    ("tensor<?x256xf32>", 8, -1, True, [(1, 256), (7, 256), (33, 256)],
     "normal"),
    ("tensor<?x64xf32>", 2, 1, True, [(5, 64)], "ties"),
    ("tensor<?x16xf32>", 4, -1, False, [(3, 16), (9, 16)], "nan"),
    ("tensor<?x16xf32>", 5, -1, True, [(3, 16), (9, 16)], "nan"),
    ("tensor<9x?xf32>", 3, 0, False, [(9, 1), (9, 6)], "ties"),
    ("tensor<?x3x8xf16>", 1, -1, True, [(2, 3, 8), (5, 3, 8)], "normal"),
    ("tensor<?x3x8xf16>", 8, -1, False, [(4, 3, 8)], "ties"),
]


def topk_input(rng, shape, kind, dtype):
    if kind == "normal":
        return normal(rng, shape, dtype)
    # Few distinct values: many ties, decided by the lower index.
    x = rng.integers(-3, 4, shape).astype(dtype) + dtype(0.5)
    if kind == "nan":
        flat = x.reshape(-1)
        flat[rng.choice(flat.size, max(1, flat.size // 6), replace=False)] = \
            np.nan
        flat[0] = np.inf
    return x


@pytest.mark.parametrize("case", range(len(TOPKS)))
def test_topk(compile_model, numerics_report, case):
    type_, k, axis, largest, shapes, kind = TOPKS[case]
    element = type_[type_.rindex("x") + 1:-1]
    dims = type_[len("tensor<"):type_.rindex("x")].split("x")
    dims[axis] = str(k)
    values_t = "tensor<%sx%s>" % ("x".join(dims), element)
    indices_t = "tensor<%sxi64>" % "x".join(dims)
    model = compile_model(entry(
        [("x", type_)], [("values", values_t), ("indices", indices_t)],
        "  %%values, %%indices = nn.topk %%x top %d {axis = %d : i64, "
        "largest = %s} : %s\n" % (k, axis, "true" if largest else "false",
                                  type_)))
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        for shape in shapes:
            x = topk_input(rng, shape, kind, ref.dtype_of(element))
            out = model.run("forward", x=x)
            values, indices = ref.nn_topk(x, k, axis, largest)
            key = "nn.topk %s %s" % (element, kind)
            exact(numerics_report, key, out["indices"], indices)
            exact(numerics_report, key, out["values"], values)


# ---------------------------------------------------------------------------
# Reductions
# ---------------------------------------------------------------------------

REDUCTIONS = [
    # (axes, keep_dims)
    ([-1], False), ([0, 2], True), ([1], True), ([0, 1, 2], False),
]


@pytest.mark.parametrize("element", ["f32", "f16"])
@pytest.mark.parametrize("axes,keep_dims", REDUCTIONS)
@pytest.mark.parametrize("op", ["reduce_mean", "reduce_max"])
def test_reductions(compile_model, numerics_report, op, axes, keep_dims,
                    element):
    type_ = "tensor<?x5x7x%s>" % element
    dtype = ref.dtype_of(element)
    reference = getattr(ref, "nn_" + op)
    # The first dimension is dynamic unless reduced.
    reduced = [a % 3 for a in axes]
    dims = []
    for d, extent in enumerate(("?", "5", "7")):
        if d not in reduced:
            dims.append(extent)
        elif keep_dims:
            dims.append("1")
    result = "tensor<%s%s>" % ("".join(x + "x" for x in dims), element)
    model = compile_model(entry(
        [("x", type_)], [("y", result)],
        "  %%y = nn.%s %%x [%s]%s : %s\n" % (
            op, ", ".join(str(a) for a in axes),
            " {keep_dims}" if keep_dims else "", type_)))
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        for rows in (3, 1, 13):
            x = normal(rng, (rows, 5, 7), dtype)
            if op == "reduce_max" and seed == 1:
                x[0, 2, 3] = np.nan
            out = model.run("forward", x=x)["y"]
            expected = reference(x, axes, keep_dims)
            if op == "reduce_max":
                exact(numerics_report, "nn.reduce_max " + element, out,
                      expected)
                continue
            tol = 1e-5 if element == "f32" else 4e-3
            exact_mean = reference(x.astype(np.float64), axes, keep_dims)
            err = rel_error(out, exact_mean, "normwise")
            numerics_report("nn.reduce_mean %s (normwise)" % element, err)
            assert err <= tol, err
            assert out.dtype == dtype


# ---------------------------------------------------------------------------
# Integer arithmetic, reshape with several dynamic extents
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("element", ["i32", "i64"])
@pytest.mark.parametrize("op", ["add", "sub", "mul", "div"])
def test_integer_binary(compile_model, numerics_report, op, element):
    a_t, b_t = "tensor<?x6x%s>" % element, "tensor<6x%s>" % element
    model = compile_model(entry(
        [("a", a_t), ("b", b_t)], [("y", a_t), ("z", a_t)],
        "  %%y = nn.%s %%a, %%b : %s, %s\n"
        "  %%z = nn.neg %%y : %s\n" % (op, a_t, b_t, a_t)))
    dtype = ref.dtype_of(element)
    info = np.iinfo(dtype)
    reference = getattr(ref, "nn_int_" + op)
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        for rows in (1, 4):
            a = rng.integers(info.min, info.max, (rows, 6), dtype=dtype)
            a[0, :3] = [info.min, info.max, -7]
            b = rng.integers(-100, 100, (6,)).astype(dtype)
            # Zero, -1 (INT_MIN / -1 wraps), signs that truncate.
            b[:3] = [0, -1, 2]
            out = model.run("forward", a=a, b=b)
            y = reference(a, b)
            exact(numerics_report, "nn.%s %s" % (op, element), out["y"], y)
            exact(numerics_report, "nn.neg " + element, out["z"],
                  ref.nn_int_neg(y))


def test_reshape_dynamic_sizes(compile_model, numerics_report):
    """[B*S, 12] -> [B, S, 3, 4] with B and S only known at run time, and
    back to [B*S*3, 4] through a static middle."""
    text = entry(
        [("x", "tensor<?x12xf32>"), ("like", "tensor<?x?xi1>")],
        [("y", "tensor<?x?x3x4xf32>"), ("z", "tensor<?x4xf32>")],
        dims_prelude("like", "tensor<?x?xi1>", (0, 1)) +
        "  %y = nn.reshape %x [%n0, %n1] : tensor<?x12xf32> -> "
        "tensor<?x?x3x4xf32>\n"
        "  %z = nn.reshape %y : tensor<?x?x3x4xf32> -> tensor<?x4xf32>\n")
    model = compile_model(text)
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        for b, s in ((1, 1), (2, 5), (3, 2)):
            x = normal(rng, (b * s, 12))
            out = model.run("forward", x=x, like=np.zeros((b, s), bool))
            exact(numerics_report, "nn.reshape dynamic_sizes", out["y"],
                  x.reshape(b, s, 3, 4))
            exact(numerics_report, "nn.reshape dynamic_sizes", out["z"],
                  x.reshape(-1, 4))
