"""Self-tests of nn_grad_reference.py: every VJP against central finite
differences of a float64 forward, on random inputs (several seeds, odd
shapes).

The float64 forwards below are written once more from the op definitions;
each is first checked against the float32 forward of moe_reference.py, so
the finite differences differentiate the op the spec defines. The loss is
sum(forward(operands) * cotangent) for a random cotangent, whose gradient
with respect to each operand is the VJP of that cotangent.

    python3 -m pytest test/reference -q -p no:cacheprovider
"""
import math

import numpy as np
import pytest

import moe_reference as ref
import nn_grad_reference as grad_ref

SEEDS = (0, 1, 2)
H = 1e-6
RTOL = 1e-6
F64 = np.float64


def normal(rng, shape):
    x = rng.standard_normal(shape)
    return np.where(np.abs(x) < 1e-2, 1e-2, x)


def positive(rng, shape):
    return rng.uniform(0.3, 3.0, shape)


def central_differences(loss, x, h=H):
    """d loss / d x for every element of x (float64)."""
    x = np.array(x, dtype=F64)
    out = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        saved = x[index]
        x[index] = saved + h
        plus = loss(x)
        x[index] = saved - h
        minus = loss(x)
        x[index] = saved
        out[index] = (plus - minus) / (2 * h)
    return out


def check_vjp(forward, vjp, operands, differentiable, rng, attrs=None,
              rtol=RTOL):
    """Compares vjp(cotangent, *operands) with finite differences of
    sum(forward(*operands) * cotangent) for the operands whose index is in
    `differentiable`, and checks that the others get None."""
    attrs = attrs or {}
    y = forward(*operands, **attrs)
    cotangent = normal(rng, np.shape(y))
    grads = vjp(cotangent, *operands, **attrs)
    # Absent optional operands (trailing) get None.
    assert len(grads) >= len(operands)
    assert all(g is None for g in grads[len(operands):])
    for i, operand in enumerate(operands):
        if i not in differentiable:
            assert grads[i] is None, i
            continue

        def loss(value, i=i):
            args = list(operands)
            args[i] = value
            return float(np.sum(forward(*args, **attrs) * cotangent))

        numeric = central_differences(loss, operand)
        analytic = np.asarray(grads[i])
        assert analytic.shape == np.shape(operand), (i, analytic.shape)
        scale = max(np.abs(numeric).max(), 1e-3)
        error = np.abs(analytic - numeric).max() / scale
        assert error <= rtol, "operand %d: relative error %.3g" % (i, error)


def check_forward(forward64, forward32, operands, attrs=None, rtol=2e-5):
    """The float64 forward computes the op of moe_reference.py."""
    attrs = attrs or {}
    expected = np.asarray(forward32(*operands, **attrs), dtype=F64)
    actual = forward64(*operands, **attrs)
    scale = max(np.abs(expected).max(), 1e-6)
    assert np.abs(actual - expected).max() / scale <= rtol


# ---------------------------------------------------------------------------
# float64 forwards
# ---------------------------------------------------------------------------

_erf = np.vectorize(math.erf, otypes=[F64])

UNARY64 = {
    "neg": lambda x: -x,
    "exp": np.exp,
    "log": np.log,
    "sqrt": np.sqrt,
    "rsqrt": lambda x: 1.0 / np.sqrt(x),
    "reciprocal": lambda x: 1.0 / x,
    "tanh": np.tanh,
    "erf": _erf,
    "sigmoid": lambda x: 1.0 / (1.0 + np.exp(-x)),
    "relu": lambda x: np.maximum(x, 0.0),
    "silu": lambda x: x / (1.0 + np.exp(-x)),
    "gelu": lambda x: 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0))),
    "gelu_tanh": lambda x: 0.5 * x * (1.0 + np.tanh(
        math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3))),
}
UNARY32 = {name: getattr(ref, "nn_" + name) for name in UNARY64
            if not name.startswith("gelu")}
UNARY32["gelu"] = ref.nn_gelu
UNARY32["gelu_tanh"] = lambda x: ref.nn_gelu(x, approximate="tanh")
# Domains on which each function is smooth.
UNARY_INPUT = {"log": positive, "sqrt": positive, "rsqrt": positive,
               "reciprocal": positive}


def linear64(x, w, b=None):
    y = x @ w
    return y if b is None else y + b


def matmul64(a, b, transpose_lhs=False, transpose_rhs=False):
    if transpose_lhs:
        a = np.swapaxes(a, -1, -2)
    if transpose_rhs:
        b = np.swapaxes(b, -1, -2)
    return np.matmul(a, b)


def rms_norm64(x, w, epsilon=1e-6):
    eps = float(np.float32(epsilon))
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def layer_norm64(x, w, b=None, epsilon=1e-5):
    eps = float(np.float32(epsilon))
    mu = x.mean(axis=-1, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=-1, keepdims=True)
    y = (x - mu) / np.sqrt(var + eps) * w
    return y if b is None else y + b


def softmax64(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def embedding64(table, ids):
    return table[np.asarray(ids)]


def rotary64(x, positions=None, theta=10000.0, rotary_dim=0,
             interleaved=False, inverse=False):
    _, seq, _, head_dim = x.shape
    rd = head_dim if rotary_dim == 0 else rotary_dim
    half = rd // 2
    pos = (np.arange(seq, dtype=F64)[None, :] if positions is None else
           np.atleast_2d(np.asarray(positions, dtype=F64)))
    angle = pos[:, :, None, None] * (
        float(np.float32(theta)) ** (-2.0 * np.arange(half) / rd))
    if inverse:
        angle = -angle
    c, s = np.cos(angle), np.sin(angle)
    first, second = ((slice(0, rd, 2), slice(1, rd, 2)) if interleaved else
                     (slice(0, half), slice(half, rd)))
    a, b = x[..., first], x[..., second]
    y = x.copy()
    y[..., first] = a * c - b * s
    y[..., second] = a * s + b * c
    return y


def attention64(q, k, v, causal=True, scale=0.0):
    batch, sq, heads, hd = q.shape
    skv, kv_heads = k.shape[1], k.shape[2]
    sc = float(np.float32(scale)) or 1.0 / math.sqrt(hd)
    out = np.zeros(q.shape[:3] + (v.shape[3],))
    for b in range(batch):
        for h in range(heads):
            kh = h // (heads // kv_heads)
            for i in range(sq):
                last = i + skv - sq if causal else skv - 1
                if last < 0:
                    continue
                s = k[b, :last + 1, kh] @ q[b, i, h] * sc
                p = np.exp(s - s.max())
                out[b, i, h] = (p / p.sum()) @ v[b, :last + 1, kh]
    return out


def cross_entropy64(logits, targets, mask=None):
    m = np.ones(np.shape(targets)) if mask is None else mask
    top = logits.max(axis=-1, keepdims=True)
    lse = np.log(np.exp(logits - top).sum(axis=-1)) + top[..., 0]
    picked = np.take_along_axis(logits, np.asarray(targets)[..., None],
                                axis=-1)[..., 0]
    return np.sum(m * (lse - picked)) / max(np.sum(m), 1.0)


# ---------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------

BINARY = {
    "add": (np.add, ref.nn_add, grad_ref.nn_add_vjp),
    "sub": (np.subtract, ref.nn_sub, grad_ref.nn_sub_vjp),
    "mul": (np.multiply, ref.nn_mul, grad_ref.nn_mul_vjp),
    "div": (np.divide, ref.nn_div, grad_ref.nn_div_vjp),
    "pow": (np.power, ref.nn_pow, grad_ref.nn_pow_vjp),
}
BROADCAST_SHAPES = [((3, 5), (3, 5)), ((2, 1, 5), (3, 5)), ((5,), (2, 3, 1)),
                    ((), (3, 2))]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("shapes", BROADCAST_SHAPES)
@pytest.mark.parametrize("op", sorted(BINARY))
def test_binary(op, shapes, seed):
    rng = np.random.default_rng(seed)
    forward, forward32, vjp = BINARY[op]
    lhs = positive(rng, shapes[0]) if op == "pow" else normal(rng, shapes[0])
    rhs = positive(rng, shapes[1]) if op == "div" else normal(rng, shapes[1])
    check_forward(forward, forward32, (lhs, rhs))
    check_vjp(forward, vjp, (lhs, rhs), {0, 1}, rng)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("function", grad_ref.UNARY_FUNCTIONS)
def test_unary(function, seed):
    rng = np.random.default_rng(seed)
    x = UNARY_INPUT.get(function, normal)(rng, (3, 7))
    forward = UNARY64[function]
    check_forward(forward, UNARY32[function], (x,), rtol=1e-4)
    check_vjp(forward, lambda g, x: grad_ref.nn_unary_vjp(function, g, x),
              (x,), {0}, rng)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_attribute(approximate):
    rng = np.random.default_rng(0)
    x = normal(rng, (2, 5))
    forward = UNARY64["gelu" if approximate == "none" else "gelu_tanh"]
    check_vjp(lambda x, approximate: forward(x), grad_ref.nn_gelu_vjp, (x,),
              {0}, rng, {"approximate": approximate})


def test_relu_derivative_at_zero_is_zero():
    assert grad_ref.unary_derivative("relu", np.array([0.0]))[0] == 0.0


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("x_shape", [(5,), (3, 5), (2, 3, 5)])
@pytest.mark.parametrize("bias", [False, True])
def test_linear(x_shape, bias, seed):
    rng = np.random.default_rng(seed)
    operands = [normal(rng, x_shape), normal(rng, (5, 3))]
    if bias:
        operands.append(normal(rng, (3,)))
    check_forward(linear64, ref.nn_linear, operands)
    check_vjp(linear64, grad_ref.nn_linear_vjp, operands,
              set(range(len(operands))), rng)


MATMUL_CASES = [((4, 3), (3, 5)), ((2, 4, 3), (3, 5)), ((2, 4, 3), (2, 3, 5)),
                ((1, 4, 3), (3, 3, 5)), ((2, 1, 4, 3), (3, 3, 5))]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("shapes", MATMUL_CASES)
@pytest.mark.parametrize("transpose_lhs", [False, True])
@pytest.mark.parametrize("transpose_rhs", [False, True])
def test_matmul(shapes, transpose_lhs, transpose_rhs, seed):
    rng = np.random.default_rng(seed)
    a_shape, b_shape = list(shapes[0]), list(shapes[1])
    if transpose_lhs:
        a_shape[-2:] = a_shape[-1], a_shape[-2]
    if transpose_rhs:
        b_shape[-2:] = b_shape[-1], b_shape[-2]
    operands = (normal(rng, a_shape), normal(rng, b_shape))
    attrs = {"transpose_lhs": transpose_lhs, "transpose_rhs": transpose_rhs}
    check_forward(matmul64, ref.nn_matmul, operands, attrs)
    check_vjp(matmul64, grad_ref.nn_matmul_vjp, operands, {0, 1}, rng, attrs)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("shape", [(7,), (3, 7), (2, 3, 5)])
def test_rms_norm(shape, seed):
    rng = np.random.default_rng(seed)
    operands = (normal(rng, shape), normal(rng, shape[-1:]))
    attrs = {"epsilon": 1e-5}
    check_forward(rms_norm64, ref.nn_rms_norm, operands, attrs)
    check_vjp(rms_norm64, grad_ref.nn_rms_norm_vjp, operands, {0, 1}, rng,
              attrs)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("shape", [(7,), (3, 7), (2, 3, 5)])
@pytest.mark.parametrize("bias", [False, True])
def test_layer_norm(shape, bias, seed):
    rng = np.random.default_rng(seed)
    operands = [normal(rng, shape), normal(rng, shape[-1:])]
    if bias:
        operands.append(normal(rng, shape[-1:]))
    check_forward(layer_norm64, ref.nn_layer_norm, operands)
    check_vjp(layer_norm64, grad_ref.nn_layer_norm_vjp, operands,
              set(range(len(operands))), rng)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("axis", [-1, 0, 1])
def test_softmax(axis, seed):
    rng = np.random.default_rng(seed)
    x = normal(rng, (3, 5, 2))
    check_forward(softmax64, ref.nn_softmax, (x,), {"axis": axis})
    check_vjp(softmax64, grad_ref.nn_softmax_vjp, (x,), {0}, rng,
              {"axis": axis})


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("ids_shape", [(), (5,), (2, 3)])
def test_embedding(ids_shape, seed):
    rng = np.random.default_rng(seed)
    table = normal(rng, (7, 3))
    # Repeated ids: their gradient rows add up.
    ids = rng.integers(0, 4, ids_shape).astype(np.int32)
    check_forward(embedding64, ref.nn_embedding, (table, ids))
    check_vjp(embedding64, grad_ref.nn_embedding_vjp, (table, ids), {0}, rng)


ROTARY_CASES = [
    {}, {"interleaved": True}, {"rotary_dim": 4}, {"theta": 500.0},
    {"rotary_dim": 4, "interleaved": True, "inverse": True}, {"inverse": True},
]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("attrs", ROTARY_CASES)
@pytest.mark.parametrize("positions", [None, "seq", "batch"])
def test_rotary(attrs, positions, seed):
    rng = np.random.default_rng(seed)
    x = normal(rng, (2, 3, 2, 6))
    pos = {None: None, "seq": rng.integers(0, 50, (3,)),
           "batch": rng.integers(0, 50, (2, 3))}[positions]
    operands = (x, pos)
    if not attrs.get("inverse"):
        check_forward(rotary64, ref.nn_rotary, operands, attrs)
    check_vjp(rotary64, grad_ref.nn_rotary_vjp, operands, {0}, rng, attrs)


ATTENTION_CASES = [
    # (q shape, kv shape, attrs)
    ((1, 4, 2, 3), (1, 4, 2, 3), {}),
    ((2, 3, 4, 3), (2, 5, 2, 3), {}),            # GQA, seq_q < seq_kv
    ((1, 5, 3, 2), (1, 3, 1, 2), {}),            # MQA, rows that see nothing
    ((2, 3, 2, 3), (2, 4, 1, 3), {"causal": False, "scale": 0.3}),
]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("case", range(len(ATTENTION_CASES)))
def test_attention(case, seed):
    rng = np.random.default_rng(seed)
    q_shape, kv_shape, attrs = ATTENTION_CASES[case]
    operands = (normal(rng, q_shape), normal(rng, kv_shape),
                normal(rng, kv_shape))
    check_forward(attention64, ref.nn_attention, operands, attrs)
    check_vjp(attention64, grad_ref.nn_attention_vjp, operands, {0, 1, 2},
              rng, attrs)


@pytest.mark.parametrize("seed", SEEDS)
def test_reshape_transpose(seed):
    rng = np.random.default_rng(seed)
    x = normal(rng, (2, 3, 4))
    check_vjp(lambda x: x.reshape(6, 4),
              lambda g, x: grad_ref.nn_reshape_vjp(g, x), (x,), {0}, rng)
    perm = (2, 0, 1)
    check_vjp(lambda x: np.transpose(x, perm),
              lambda g, x: grad_ref.nn_transpose_vjp(g, x, perm), (x,), {0},
              rng)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("keep_dims", [False, True])
@pytest.mark.parametrize("axes", [(0,), (-1,), (0, 2), (), (0, 1, 2)])
def test_reduce_sum(axes, keep_dims, seed):
    rng = np.random.default_rng(seed)
    x = normal(rng, (2, 3, 4))
    attrs = {"axes": axes, "keep_dims": keep_dims}
    expected = x
    for axis in sorted((a % 3 for a in axes), reverse=True):
        expected = expected.sum(axis=axis, keepdims=keep_dims)
    np.testing.assert_allclose(grad_ref.nn_reduce_sum(x, **attrs), expected,
                               rtol=1e-12)
    check_vjp(grad_ref.nn_reduce_sum, grad_ref.nn_reduce_sum_vjp, (x,), {0},
              rng, attrs)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("keep_dims", [False, True])
@pytest.mark.parametrize("axes", [(0,), (-1,), (0, 2), (0, 1, 2)])
def test_reduce_mean(axes, keep_dims, seed):
    rng = np.random.default_rng(seed)
    x = normal(rng, (2, 3, 4))
    attrs = {"axes": axes, "keep_dims": keep_dims}
    expected = np.mean(x, axis=tuple(axes), keepdims=keep_dims)
    np.testing.assert_allclose(grad_ref.nn_reduce_mean(x, **attrs), expected,
                               rtol=1e-12)
    check_vjp(grad_ref.nn_reduce_mean, grad_ref.nn_reduce_mean_vjp, (x,), {0},
              rng, attrs)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("mask", [None, "random", "zeros"])
def test_cross_entropy(mask, seed):
    rng = np.random.default_rng(seed)
    logits = normal(rng, (2, 3, 5))
    targets = rng.integers(0, 5, (2, 3)).astype(np.int32)
    m = {None: None, "random": (rng.random((2, 3)) < 0.6).astype(F64),
         "zeros": np.zeros((2, 3))}[mask]
    operands = (logits, targets, m)
    check_forward(cross_entropy64, ref.nn_cross_entropy, operands)
    check_vjp(lambda *a: np.asarray(cross_entropy64(*a)),
              lambda g, *a: grad_ref.nn_cross_entropy_vjp(g, *a), operands,
              {0}, rng)
    if mask == "zeros":
        dz = grad_ref.nn_cross_entropy_vjp(1.0, *operands)[0]
        assert np.all(dz == 0)
