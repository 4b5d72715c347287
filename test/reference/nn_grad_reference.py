"""Independent NumPy gradients (vector-Jacobian products) of every `nn` op.

Written from the op definitions (dialects/NN/NNOps.td, the forward
references in moe_reference.py) by calculus, not from compiler code; the
self-tests in test_nn_grad_reference.py check each one against central
finite differences of a float64 forward.

Naming: the VJP of `nn.foo` is `nn_foo_vjp(grad, *operands, **attributes)`:
`grad` is the gradient of a scalar loss with respect to the op's result,
operands are positional in ODS order and attributes are keyword arguments
with the ODS names and defaults. It returns one gradient per operand, in ODS
order (a tuple, even for one operand); integer operands (ids, targets,
positions), the cross-entropy mask and absent optional operands get None.

Everything is computed in float64: these functions are the ground truth that
compiled f32 / f16 gradients are compared with. `nn_reduce_sum` is also the
forward reference of `nn.reduce_sum`, the op gradients use to undo
broadcasting.

Where the derivative is not defined the reference picks what the backward
ops document: relu'(0) = 0; positions that a causal mask hides from every
key (seq_q > seq_kv) pass no gradient; an all-zero cross-entropy mask gives
zero gradients.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

F64 = np.float64

__all__ = [
    "nn_reduce_sum", "unbroadcast",
    "nn_add_vjp", "nn_sub_vjp", "nn_mul_vjp", "nn_div_vjp", "nn_pow_vjp",
    "unary_derivative", "nn_unary_vjp", "UNARY_FUNCTIONS",
    "nn_gelu_vjp", "nn_linear_vjp", "nn_matmul_vjp", "nn_rms_norm_vjp",
    "nn_layer_norm_vjp", "nn_softmax_vjp", "nn_embedding_vjp",
    "nn_rotary_vjp", "nn_attention_vjp", "nn_reshape_vjp",
    "nn_transpose_vjp", "nn_cross_entropy_vjp", "nn_reduce_sum_vjp",
]


def _d(x) -> np.ndarray:
    return np.asarray(x, dtype=F64)


# ---------------------------------------------------------------------------
# Reductions and broadcasting
# ---------------------------------------------------------------------------

def nn_reduce_sum(x, axes: Sequence[int], keep_dims: bool = False):
    """nn.reduce_sum: sum over `axes` (negative counts from the end); the
    summed dimensions are dropped, or kept with extent 1."""
    x = np.asarray(x)
    axes = tuple(a % x.ndim for a in axes) if x.ndim else ()
    if len(set(axes)) != len(axes):
        raise ValueError("an axis is listed twice")
    return np.sum(x, axis=axes, keepdims=keep_dims, dtype=F64)


def nn_reduce_sum_vjp(grad, x, axes: Sequence[int], keep_dims: bool = False):
    """Every summed element receives the gradient of its sum."""
    x = np.asarray(x)
    axes = sorted(a % x.ndim for a in axes)
    g = _d(grad)
    if not keep_dims:
        for a in axes:
            g = np.expand_dims(g, a)
    return (np.broadcast_to(g, x.shape).copy(),)


def nn_reduce_mean(x, axes: Sequence[int], keep_dims: bool = False):
    """nn.reduce_mean in float64: the sum over `axes` divided by the number
    of summed elements."""
    x = np.asarray(x)
    count = 1
    for a in axes:
        count *= x.shape[a % x.ndim]
    return nn_reduce_sum(x, axes, keep_dims) / count


def nn_reduce_mean_vjp(grad, x, axes: Sequence[int], keep_dims: bool = False):
    """Each averaged element receives grad / (number of averaged elements)."""
    x = np.asarray(x)
    count = 1
    for a in axes:
        count *= x.shape[a % x.ndim]
    (spread,) = nn_reduce_sum_vjp(grad, x, axes, keep_dims)
    return (spread / count,)


def unbroadcast(grad, shape) -> np.ndarray:
    """Sums a gradient of the broadcast shape back to an operand `shape`."""
    g = _d(grad)
    lead = g.ndim - len(shape)
    g = g.sum(axis=tuple(range(lead)))
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and g.shape[i] != 1)
    return g.sum(axis=axes, keepdims=True).reshape(shape)


# ---------------------------------------------------------------------------
# Elementwise
# ---------------------------------------------------------------------------

def nn_add_vjp(grad, lhs, rhs):
    return (unbroadcast(grad, np.shape(lhs)), unbroadcast(grad, np.shape(rhs)))


def nn_sub_vjp(grad, lhs, rhs):
    return (unbroadcast(grad, np.shape(lhs)),
            unbroadcast(-_d(grad), np.shape(rhs)))


def nn_mul_vjp(grad, lhs, rhs):
    g, a, b = _d(grad), _d(lhs), _d(rhs)
    return (unbroadcast(g * b, a.shape), unbroadcast(g * a, b.shape))


def nn_div_vjp(grad, lhs, rhs):
    g, a, b = _d(grad), _d(lhs), _d(rhs)
    return (unbroadcast(g / b, a.shape), unbroadcast(-g * a / (b * b), b.shape))


def nn_pow_vjp(grad, lhs, rhs):
    """d(a^b)/da = b a^(b-1), d(a^b)/db = a^b log(a) (a > 0)."""
    g, a, b = _d(grad), _d(lhs), _d(rhs)
    with np.errstate(all="ignore"):
        da = g * b * np.power(a, b - 1.0)
        db = g * np.power(a, b) * np.log(a)
    return (unbroadcast(da, a.shape), unbroadcast(db, b.shape))


_erf = np.vectorize(math.erf, otypes=[F64])
_K = math.sqrt(2.0 / math.pi)
_C = 0.044715


def _sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def unary_derivative(function: str, x) -> np.ndarray:
    """f'(x) of the elementwise function named as in nn.unary_grad."""
    x = _d(x)
    if function == "neg":
        return -np.ones_like(x)
    if function == "exp":
        return np.exp(x)
    if function == "log":
        return 1.0 / x
    if function == "sqrt":
        return 0.5 / np.sqrt(x)
    if function == "rsqrt":
        return -0.5 * x ** -1.5
    if function == "reciprocal":
        return -1.0 / (x * x)
    if function == "tanh":
        return 1.0 / np.cosh(x) ** 2
    if function == "erf":
        return 2.0 / math.sqrt(math.pi) * np.exp(-x * x)
    if function == "sigmoid":
        s = _sigmoid(x)
        return s * (1.0 - s)
    if function == "relu":
        return (x > 0).astype(F64)
    if function == "silu":
        s = _sigmoid(x)
        return s + x * s * (1.0 - s)
    if function == "gelu":
        cdf = 0.5 * (1.0 + _erf(x / math.sqrt(2.0)))
        pdf = np.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)
        return cdf + x * pdf
    if function == "gelu_tanh":
        u = _K * (x + _C * x ** 3)
        sech2 = 1.0 / np.cosh(u) ** 2
        slope = _K * (1.0 + 3.0 * _C * x * x)
        return 0.5 * (1.0 + np.tanh(u)) + 0.5 * x * sech2 * slope
    raise ValueError(f"unknown unary function {function!r}")


UNARY_FUNCTIONS = ("neg", "exp", "log", "sqrt", "rsqrt", "reciprocal", "tanh",
                   "erf", "sigmoid", "relu", "silu", "gelu", "gelu_tanh")


def nn_unary_vjp(function: str, grad, x):
    """VJP of the unary op `nn.<function>` (and nn.unary_grad itself)."""
    return (_d(grad) * unary_derivative(function, x),)


def nn_gelu_vjp(grad, x, approximate: str = "none"):
    return nn_unary_vjp("gelu" if approximate == "none" else "gelu_tanh",
                        grad, x)


# ---------------------------------------------------------------------------
# Linear algebra
# ---------------------------------------------------------------------------

def nn_linear_vjp(grad, x, weight, bias=None):
    g, x, w = _d(grad), _d(x), _d(weight)
    rows_x = x.reshape(-1, x.shape[-1])
    rows_g = g.reshape(-1, g.shape[-1])
    dx = (g @ w.T).reshape(x.shape)
    dw = rows_x.T @ rows_g
    db = None if bias is None else rows_g.sum(axis=0)
    return (dx, dw, db)


def nn_matmul_vjp(grad, lhs, rhs, transpose_lhs: bool = False,
                  transpose_rhs: bool = False):
    """With A = op(lhs), B = op(rhs): dA = dC B^T, dB = A^T dC, summed over
    the batch dimensions each operand was broadcast along."""
    g, a, b = _d(grad), _d(lhs), _d(rhs)
    A = np.swapaxes(a, -1, -2) if transpose_lhs else a
    B = np.swapaxes(b, -1, -2) if transpose_rhs else b
    dA = np.matmul(g, np.swapaxes(B, -1, -2))
    dB = np.matmul(np.swapaxes(A, -1, -2), g)
    if transpose_lhs:
        dA = np.swapaxes(dA, -1, -2)
    if transpose_rhs:
        dB = np.swapaxes(dB, -1, -2)
    return (unbroadcast(dA, a.shape), unbroadcast(dB, b.shape))


# ---------------------------------------------------------------------------
# Normalisation, softmax, embedding
# ---------------------------------------------------------------------------

def nn_rms_norm_vjp(grad, x, weight, epsilon: float = 1.0e-6):
    """y = x r w with r = (mean(x^2) + eps)^(-1/2); dr/dx = -r^3 x / n."""
    g, x, w = _d(grad), _d(x), _d(weight)
    n = x.shape[-1]
    eps = float(np.float32(epsilon))
    r = 1.0 / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps)
    gw = g * w
    dx = gw * r - x * r ** 3 * np.sum(gw * x, axis=-1, keepdims=True) / n
    dw = np.sum((g * x * r).reshape(-1, n), axis=0)
    return (dx, dw)


def nn_layer_norm_vjp(grad, x, weight, bias=None, epsilon: float = 1.0e-5):
    g, x, w = _d(grad), _d(x), _d(weight)
    n = x.shape[-1]
    eps = float(np.float32(epsilon))
    mu = np.mean(x, axis=-1, keepdims=True)
    var = np.mean((x - mu) ** 2, axis=-1, keepdims=True)
    r = 1.0 / np.sqrt(var + eps)
    xhat = (x - mu) * r
    gw = g * w
    dx = r * (gw - gw.mean(axis=-1, keepdims=True)
              - xhat * (gw * xhat).mean(axis=-1, keepdims=True))
    dw = np.sum((g * xhat).reshape(-1, n), axis=0)
    db = None if bias is None else np.sum(g.reshape(-1, n), axis=0)
    return (dx, dw, db)


def nn_softmax_vjp(grad, x, axis: int = -1):
    """dx = y (g - sum(g y)) along the axis."""
    g, x = _d(grad), _d(x)
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    y = e / e.sum(axis=axis, keepdims=True)
    return (y * (g - np.sum(g * y, axis=axis, keepdims=True)),)


def nn_embedding_vjp(grad, table, ids):
    """Rows of `grad` added into the rows their ids selected (ids clamped to
    [0, vocab) as the lowering reads them)."""
    g = _d(grad)
    t = np.asarray(table)
    i = np.clip(np.asarray(ids, dtype=np.int64), 0, t.shape[0] - 1)
    dt = np.zeros(t.shape, dtype=F64)
    np.add.at(dt, i.reshape(-1), g.reshape(-1, t.shape[1]))
    return (dt, None)


# ---------------------------------------------------------------------------
# Attention
# ---------------------------------------------------------------------------

def nn_rotary_vjp(grad, x, positions=None, theta: float = 10000.0,
                  rotary_dim: int = 0, interleaved: bool = False,
                  inverse: bool = False):
    """A pair (a, b) maps through R = [[c, -s], [s, c]] (R^T with
    `inverse`); the VJP applies the transpose, R^T (R)."""
    g = _d(grad)
    _, seq, _, head_dim = g.shape
    rd = head_dim if rotary_dim == 0 else rotary_dim
    half = rd // 2
    if positions is None:
        pos = np.arange(seq, dtype=F64)[None, :]
    else:
        pos = np.asarray(positions, dtype=F64)
        pos = pos[None, :] if pos.ndim == 1 else pos
    freq = float(np.float32(theta)) ** (-2.0 * np.arange(half) / rd)
    angle = pos[:, :, None, None] * freq
    c, s = np.cos(angle), np.sin(angle)
    if inverse:
        s = -s
    if interleaved:
        first, second = slice(0, rd, 2), slice(1, rd, 2)
    else:
        first, second = slice(0, half), slice(half, rd)
    ga, gb = g[..., first], g[..., second]
    dx = g.copy()
    dx[..., first] = c * ga + s * gb
    dx[..., second] = -s * ga + c * gb
    return (dx, None)


def nn_attention_vjp(grad, query, key, value, causal: bool = True,
                     scale: float = 0.0):
    """Per (batch, query head) with its kv head h // group:
    P = softmax(S), S = q k^T * scale + mask; dV += P^T dO, dP = dO V^T,
    dS = P * (dP - rowsum(P * dP)), dQ = scale dS K, dK += scale dS^T Q."""
    g, q, k, v = _d(grad), _d(query), _d(key), _d(value)
    batch, sq, heads, hd = q.shape
    skv, kv_heads = k.shape[1], k.shape[2]
    group = heads // kv_heads
    sc = float(np.float32(scale)) or 1.0 / math.sqrt(hd)
    i = np.arange(sq)[:, None]
    j = np.arange(skv)[None, :]
    visible = (j <= i + (skv - sq)) if causal else np.ones((sq, skv), bool)
    dq, dk, dv = np.zeros_like(q), np.zeros_like(k), np.zeros_like(v)
    for b in range(batch):
        for h in range(heads):
            kh = h // group
            Q, K, V, dO = q[b, :, h], k[b, :, kh], v[b, :, kh], g[b, :, h]
            S = np.where(visible, Q @ K.T * sc, -np.inf)
            P = np.zeros_like(S)
            seen = visible.any(axis=1)
            m = S[seen].max(axis=1, keepdims=True)
            E = np.exp(S[seen] - m)
            P[seen] = E / E.sum(axis=1, keepdims=True)
            dv[b, :, kh] += P.T @ dO
            dP = dO @ V.T
            dS = P * (dP - np.sum(P * dP, axis=1, keepdims=True))
            dq[b, :, h] = sc * dS @ K
            dk[b, :, kh] += sc * dS.T @ Q
    return (dq, dk, dv)


# ---------------------------------------------------------------------------
# Shape, loss
# ---------------------------------------------------------------------------

def nn_reshape_vjp(grad, x):
    return (_d(grad).reshape(np.shape(x)),)


def nn_transpose_vjp(grad, x, permutation: Sequence[int]):
    return (np.transpose(_d(grad), np.argsort(permutation)),)


def nn_cross_entropy_vjp(grad, logits, targets, mask=None):
    """loss = sum(mask * (lse - logit[target])) / max(sum(mask), 1), so
    d logits = grad * mask / max(sum(mask), 1) * (softmax - onehot)."""
    g, z = float(np.asarray(grad, dtype=F64)), _d(logits)
    t = np.clip(np.asarray(targets, dtype=np.int64), 0, z.shape[-1] - 1)
    m = np.ones(t.shape) if mask is None else _d(mask)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    p = e / e.sum(axis=-1, keepdims=True)
    onehot = np.zeros_like(z)
    np.put_along_axis(onehot, t[..., None], 1.0, axis=-1)
    weight = g * m / max(m.sum(), 1.0)
    return (weight[..., None] * (p - onehot), None, None)
