"""Self-tests of the NumPy references in moe_reference.py.

Each reference is checked against a second, differently written computation
(explicit loops vs vectorised code, float64 vs float32, complex numbers for
RoPE, dense per-token composition for the layer) and against invariants of the
spec. Run with `python3 -m pytest test/reference -q`.
"""

import math
import os
import sys
import time

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import moe_reference as ref  # noqa: E402

SEEDS = [0, 1, 7, 123]
F32 = np.float32


def rnd(rng, *shape, scale=1.0):
    """Random normal float32, never exactly zero."""
    a = (rng.standard_normal(shape) * scale).astype(F32)
    a[a == 0] = F32(0.125)
    return a


def close(a, b, rtol=1e-5, atol=1e-6):
    np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64),
                               rtol=rtol, atol=atol)


# ===========================================================================
# nn: elementwise
# ===========================================================================

BIN_SHAPES = [((3, 5), (5,)), ((2, 1, 4), (3, 1)), ((1,), (2, 3)), ((4, 1, 1, 3), (2, 3))]


@pytest.mark.parametrize("seed", SEEDS[:2])
@pytest.mark.parametrize("shapes", BIN_SHAPES)
@pytest.mark.parametrize("op,fn", [
    ("add", lambda a, b: a + b), ("sub", lambda a, b: a - b),
    ("mul", lambda a, b: a * b), ("div", lambda a, b: a / b),
    ("pow", lambda a, b: a ** b)])
def test_binary_broadcast_vs_loops(seed, shapes, op, fn):
    rng = np.random.default_rng(seed)
    a, b = rnd(rng, *shapes[0]), rnd(rng, *shapes[1])
    if op == "pow":
        a = np.abs(a) + F32(0.5)
    got = getattr(ref, "nn_" + op)(a, b)
    # explicit broadcasting by index arithmetic
    rank = max(a.ndim, b.ndim)
    sa = (1,) * (rank - a.ndim) + a.shape
    sb = (1,) * (rank - b.ndim) + b.shape
    out_shape = tuple(max(x, y) for x, y in zip(sa, sb))
    assert got.shape == out_shape and got.dtype == F32
    a2, b2 = a.reshape(sa), b.reshape(sb)
    for pos in np.ndindex(*out_shape):
        ia = tuple(p if n > 1 else 0 for p, n in zip(pos, sa))
        ib = tuple(p if n > 1 else 0 for p, n in zip(pos, sb))
        want = fn(float(a2[ia]), float(b2[ib]))
        assert math.isclose(float(got[pos]), want, rel_tol=1e-6, abs_tol=1e-6)


UNARY = [
    ("neg", lambda v: -v, None), ("exp", math.exp, None),
    ("log", math.log, "pos"), ("sqrt", math.sqrt, "pos"),
    ("rsqrt", lambda v: 1 / math.sqrt(v), "pos"), ("reciprocal", lambda v: 1 / v, None),
    ("tanh", math.tanh, None), ("erf", math.erf, None),
    ("sigmoid", lambda v: 1 / (1 + math.exp(-v)), None),
    ("relu", lambda v: max(v, 0.0), None),
    ("silu", lambda v: v / (1 + math.exp(-v)), None),
]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("name,fn,domain", UNARY)
def test_unary_vs_math(seed, name, fn, domain):
    rng = np.random.default_rng(seed)
    x = rnd(rng, 3, 7, 5, scale=2.0)
    if domain == "pos":
        x = np.abs(x) + F32(1e-3)
    got = getattr(ref, "nn_" + name)(x)
    assert got.shape == x.shape and got.dtype == F32
    want = np.vectorize(lambda v: fn(float(v)))(x)
    close(got, want, rtol=3e-6, atol=1e-7)


def test_erf_known_values_and_independent_series():
    vals = {0.0: 0.0, 0.5: 0.5204998778130465, 1.0: 0.8427007929497149,
            2.0: 0.9953222650189527, -1.5: -0.9661051464753108, 4.0: 0.9999999845827421}
    for v, e in vals.items():
        assert abs(float(ref.erf(np.float32(v))) - e) < 1e-7
    # Maclaurin series in float64 for |x| <= 2
    x = np.linspace(-2, 2, 101)
    series = np.zeros_like(x)
    for n in range(60):
        series += (-1) ** n * x ** (2 * n + 1) / (math.factorial(n) * (2 * n + 1))
    close(ref.erf(x), 2 / math.sqrt(math.pi) * series, rtol=1e-6, atol=1e-7)


def test_sigmoid_saturates_without_nan():
    x = np.array([-1e4, -100, -88.8, 0, 88.8, 100, 1e4], F32)
    s = ref.nn_sigmoid(x)
    assert np.all(np.isfinite(s)) and s[0] == 0 and s[-1] == 1 and s[3] == 0.5
    close(s, 0.5 * (1 + np.tanh(x.astype(np.float64) / 2)), atol=1e-7)


@pytest.mark.parametrize("seed", SEEDS)
def test_gelu_exact_and_tanh(seed):
    rng = np.random.default_rng(seed)
    x = rnd(rng, 4, 33, scale=3.0)
    exact = ref.nn_gelu(x)
    want = np.vectorize(lambda v: 0.5 * v * math.erfc(-v / math.sqrt(2)))(x.astype(np.float64))
    close(exact, want, rtol=1e-6, atol=1e-7)
    tanh = ref.nn_gelu(x, approximate="tanh")
    want_t = np.vectorize(lambda v: 0.5 * v * (1 + math.tanh(math.sqrt(2 / math.pi) * (v + 0.044715 * v ** 3))))(x.astype(np.float64))
    close(tanh, want_t, rtol=1e-5, atol=1e-6)
    assert np.max(np.abs(exact - tanh)) < 1e-3       # the approximation is close


# ===========================================================================
# nn: linear algebra, normalisation, softmax, embedding
# ===========================================================================

@pytest.mark.parametrize("seed", SEEDS)
def test_linear_vs_loops(seed):
    rng = np.random.default_rng(seed)
    x, w, b = rnd(rng, 2, 3, 5), rnd(rng, 5, 7), rnd(rng, 7)
    got = ref.nn_linear(x, w, b)
    want = np.zeros((2, 3, 7))
    for i, j, o in np.ndindex(2, 3, 7):
        want[i, j, o] = sum(float(x[i, j, c]) * float(w[c, o]) for c in range(5)) + float(b[o])
    close(got, want, rtol=1e-5, atol=1e-5)
    close(ref.nn_linear(x, w), want - b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("seed", SEEDS[:2])
@pytest.mark.parametrize("ta", [False, True])
@pytest.mark.parametrize("tb", [False, True])
@pytest.mark.parametrize("bshapes", [((), ()), ((3,), ()), ((2, 1), (3,)), ((1,), (4,))])
def test_matmul_transposes_and_broadcast(seed, ta, tb, bshapes):
    rng = np.random.default_rng(seed)
    M, K, N = 3, 5, 2
    a = rnd(rng, *bshapes[0], *((K, M) if ta else (M, K)))
    b = rnd(rng, *bshapes[1], *((N, K) if tb else (K, N)))
    got = ref.nn_matmul(a, b, transpose_lhs=ta, transpose_rhs=tb)
    batch = np.broadcast_shapes(bshapes[0], bshapes[1])
    assert got.shape == batch + (M, N)
    ab = np.broadcast_to(a, batch + a.shape[-2:])
    bb = np.broadcast_to(b, batch + b.shape[-2:])
    for bi in np.ndindex(*batch):
        A = ab[bi].T if ta else ab[bi]
        B = bb[bi].T if tb else bb[bi]
        want = [[sum(float(A[m, c]) * float(B[c, n]) for c in range(K)) for n in range(N)]
                for m in range(M)]
        close(got[bi], want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("seed", SEEDS)
def test_rms_norm_vs_loop(seed):
    rng = np.random.default_rng(seed)
    x, g = rnd(rng, 2, 5, 12, scale=3), rnd(rng, 12)
    got = ref.nn_rms_norm(x, g, epsilon=1e-6)
    for pos in np.ndindex(2, 5):
        row = x[pos].astype(np.float64)
        want = row / math.sqrt(sum(v * v for v in row) / len(row) + float(F32(1e-6))) * g
        close(got[pos], want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("seed", SEEDS)
def test_layer_norm_vs_loop(seed):
    rng = np.random.default_rng(seed)
    x, g, b = rnd(rng, 3, 4, 10, scale=2) + 5, rnd(rng, 10), rnd(rng, 10)
    got = ref.nn_layer_norm(x, g, b)
    for pos in np.ndindex(3, 4):
        row = x[pos].astype(np.float64)
        mu = sum(row) / len(row)
        var = sum((v - mu) ** 2 for v in row) / len(row)
        want = (row - mu) / math.sqrt(var + float(F32(1e-5))) * g + b
        close(got[pos], want, rtol=1e-4, atol=1e-5)
    plain = ref.nn_layer_norm(x, np.ones(10, F32), epsilon=0.0)
    close(plain.mean(-1), 0, atol=1e-5)
    close(plain.var(-1), 1, rtol=1e-4)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("axis", [0, 1, -1, -2])
def test_softmax(seed, axis):
    rng = np.random.default_rng(seed)
    x = rnd(rng, 3, 5, 7, scale=4)
    p = ref.nn_softmax(x, axis=axis)
    close(p.sum(axis=axis), 1, rtol=1e-6)
    assert np.all(p > 0)
    big = ref.nn_softmax(x + F32(1000), axis=axis)      # no overflow; equal up to rounding of x + 1000
    assert np.all(np.isfinite(big))
    close(big, p, rtol=0, atol=2e-4)
    xm = np.moveaxis(x.astype(np.float64), axis, -1)
    want = np.zeros_like(xm)
    for pos in np.ndindex(*xm.shape[:-1]):
        e = [math.exp(v) for v in xm[pos]]
        want[pos] = [v / sum(e) for v in e]
    close(np.moveaxis(p, axis, -1), want, rtol=1e-5, atol=1e-7)


def test_embedding():
    rng = np.random.default_rng(3)
    table = rnd(rng, 11, 4)
    ids = rng.integers(0, 11, size=(2, 5)).astype(np.int32)
    got = ref.nn_embedding(table, ids)
    assert got.shape == (2, 5, 4)
    for i, j in np.ndindex(2, 5):
        assert np.array_equal(got[i, j], table[ids[i, j]])
    with pytest.raises(IndexError):
        ref.nn_embedding(table, np.array([11], np.int64))


# ===========================================================================
# nn: rotary, attention
# ===========================================================================

def rotary_complex(x, pos, theta, rd, interleaved):
    """RoPE as complex multiplication by exp(i * angle), in float64."""
    x = x.astype(np.float64)
    b, s, h, hd = x.shape
    half = rd // 2
    freqs = np.array([theta ** (-2.0 * i / rd) for i in range(half)])
    pos = np.broadcast_to(np.asarray(pos, np.float64).reshape(-1, s), (b, s))
    out = x.copy()
    for bi, si, hi in np.ndindex(b, s, h):
        v = x[bi, si, hi]
        if interleaved:
            z = v[0:rd:2] + 1j * v[1:rd:2]
        else:
            z = v[:half] + 1j * v[half:rd]
        z = z * np.exp(1j * pos[bi, si] * freqs)
        if interleaved:
            out[bi, si, hi, 0:rd:2], out[bi, si, hi, 1:rd:2] = z.real, z.imag
        else:
            out[bi, si, hi, :half], out[bi, si, hi, half:rd] = z.real, z.imag
    return out


@pytest.mark.parametrize("seed", SEEDS[:3])
@pytest.mark.parametrize("interleaved", [False, True])
@pytest.mark.parametrize("rotary_dim", [0, 6, 16])
@pytest.mark.parametrize("pos_kind", ["none", "seq", "batch_seq"])
def test_rotary_vs_complex(seed, interleaved, rotary_dim, pos_kind):
    rng = np.random.default_rng(seed)
    b, s, h, hd = 2, 5, 3, 16
    x = rnd(rng, b, s, h, hd)
    theta = 500000.0 if seed % 2 else 10000.0
    if pos_kind == "none":
        pos, arg = np.arange(s), None
    elif pos_kind == "seq":
        pos = rng.integers(0, 4000, size=s).astype(np.int32)
        arg = pos
    else:
        pos = rng.integers(0, 4000, size=(b, s)).astype(np.int64)
        arg = pos
    got = ref.nn_rotary(x, arg, theta=theta, rotary_dim=rotary_dim, interleaved=interleaved)
    rd = hd if rotary_dim == 0 else rotary_dim
    want = rotary_complex(x, pos, theta, rd, interleaved)
    close(got, want, rtol=1e-5, atol=2e-6)
    assert np.array_equal(got[..., rd:], x[..., rd:])                # pass-through
    close(np.linalg.norm(got, axis=-1), np.linalg.norm(x, axis=-1), rtol=1e-5)


def test_rotary_identity_at_zero_and_relative():
    rng = np.random.default_rng(5)
    x = rnd(rng, 1, 1, 2, 8)
    assert np.allclose(ref.nn_rotary(x, np.array([0], np.int32)), x)
    q, k = rnd(rng, 1, 1, 1, 8), rnd(rng, 1, 1, 1, 8)
    dots = []
    for m, n in [(3, 1), (10, 8), (102, 100)]:
        rq = ref.nn_rotary(q, np.array([m], np.int32))
        rk = ref.nn_rotary(k, np.array([n], np.int32))
        dots.append(float(np.sum(rq.astype(np.float64) * rk)))
    assert np.allclose(dots, dots[0], rtol=1e-5, atol=1e-5)          # depends on m - n only


def attention_loops(q, k, v, causal, scale):
    q, k, v = (a.astype(np.float64) for a in (q, k, v))
    b, sq, h, hd = q.shape
    skv, hkv = k.shape[1], k.shape[2]
    sc = scale if scale != 0 else 1 / math.sqrt(hd)
    out = np.zeros(q.shape)
    for bi in range(b):
        for hi in range(h):
            kvh = hi // (h // hkv)
            for i in range(sq):
                keys = [j for j in range(skv) if not causal or j <= i + skv - sq]
                if not keys:
                    continue
                s = [sc * float(np.dot(q[bi, i, hi], k[bi, j, kvh])) for j in keys]
                m = max(s)
                e = [math.exp(val - m) for val in s]
                z = sum(e)
                for w, j in zip(e, keys):
                    out[bi, i, hi] += w / z * v[bi, j, kvh]
    return out


@pytest.mark.parametrize("seed", SEEDS[:3])
@pytest.mark.parametrize("heads,kv_heads", [(4, 4), (6, 2), (3, 1)])
@pytest.mark.parametrize("sq,skv", [(5, 5), (3, 7), (1, 6), (6, 4)])
@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("scale", [0.0, 0.3])
def test_attention_vs_loops(seed, heads, kv_heads, sq, skv, causal, scale):
    rng = np.random.default_rng(seed)
    hd = 5
    q = rnd(rng, 2, sq, heads, hd)
    k = rnd(rng, 2, skv, kv_heads, hd)
    v = rnd(rng, 2, skv, kv_heads, hd)
    got = ref.nn_attention(q, k, v, causal=causal, scale=scale)
    assert got.shape == q.shape and got.dtype == F32
    close(got, attention_loops(q, k, v, causal, scale), rtol=1e-5, atol=1e-6)


def test_attention_causal_alignment_decoding():
    """One query against a cache sees all keys; its result equals the last
    row of full causal attention."""
    rng = np.random.default_rng(9)
    q, k, v = rnd(rng, 1, 6, 2, 4), rnd(rng, 1, 6, 2, 4), rnd(rng, 1, 6, 2, 4)
    full = ref.nn_attention(q, k, v)
    last = ref.nn_attention(q[:, -1:], k, v)
    close(last[:, 0], full[:, -1], rtol=1e-5, atol=1e-6)
    first = ref.nn_attention(q[:, :1], k[:, :1], v[:, :1])
    close(first, v[:, :1], rtol=1e-6)            # sees exactly one key


def test_reshape_transpose():
    x = np.arange(24, dtype=F32).reshape(2, 3, 4)
    assert ref.nn_reshape(x, (-1, 4)).shape == (6, 4)
    assert np.array_equal(ref.nn_reshape(x, (4, 6)).ravel(), x.ravel())
    t = ref.nn_transpose(x, [2, 0, 1])
    assert t.shape == (4, 2, 3)
    for i, j, l in np.ndindex(2, 3, 4):
        assert t[l, i, j] == x[i, j, l]


@pytest.mark.parametrize("seed", SEEDS)
def test_cross_entropy(seed):
    rng = np.random.default_rng(seed)
    logits = rnd(rng, 2, 5, 9, scale=3)
    tg = rng.integers(0, 9, size=(2, 5)).astype(np.int32)
    mask = (rng.random((2, 5)) > 0.4).astype(F32)
    mask[0, 0] = 1
    losses = np.zeros((2, 5))
    for i, j in np.ndindex(2, 5):
        row = logits[i, j].astype(np.float64)
        losses[i, j] = math.log(sum(math.exp(v) for v in row)) - row[tg[i, j]]
    close(ref.nn_cross_entropy(logits, tg), losses.mean(), rtol=1e-5)
    close(ref.nn_cross_entropy(logits, tg, mask), (losses * mask).sum() / mask.sum(), rtol=1e-5)
    half = np.full((2, 5), 0.05, F32)                       # sum(mask) < 1 -> divide by 1
    close(ref.nn_cross_entropy(logits, tg, half), (losses * 0.05).sum(), rtol=1e-5)
    assert ref.nn_cross_entropy(logits, tg, np.zeros((2, 5), F32)) == 0
    uni = ref.nn_cross_entropy(np.ones((3, 9), F32), np.array([0, 4, 8]))
    close(uni, math.log(9), rtol=1e-6)
    assert uni.shape == () and uni.dtype == F32


# ===========================================================================
# moe: capacity arithmetic
# ===========================================================================

@pytest.mark.parametrize("T,k,E,cf,C,R", [
    (40, 1, 4, 1.25, 13, 40), (10, 2, 4, 1.25, 7, 20), (100, 1, 8, 0.5, 7, 56),
    (64, 2, 8, 1.0, 16, 128), (7, 1, 3, 1.0, 3, 7), (8, 2, 8, 0.1, 1, 8),
])
def test_capacity_hand_values(T, k, E, cf, C, R):
    assert ref.token_choice_capacity(cf, T, k, E) == C
    assert ref.token_choice_rows(T, k, E, cf) == R
    assert ref.token_choice_rows(T, k, E, None) == T * k


def test_capacity_double_precision_order():
    # 1.1 * 50 = 55.00000000000001 in double, so C = 56 (not the decimal 55)
    assert ref.token_choice_capacity(1.1, 50, 1, 1) == 56
    assert ref.token_choice_capacity(1.1, 50, 2, 2) == 56
    # ((1.1 * 50) * 3) = 165.00000000000003 -> 166, whereas 1.1 * (50 * 3) -> 165
    assert ref.token_choice_capacity(1.1, 50, 3, 1) == 166
    assert math.ceil(1.1 * (50 * 3)) == 165
    assert ref.expert_choice_capacity(2.0, 10, 4) == 5
    assert ref.expert_choice_capacity(8.0, 10, 4) == 10       # min(T, ...)
    assert ref.token_choice_capacity(math.inf, 10, 2, 4) == 2 ** 63 - 1
    assert ref.token_choice_capacity(math.inf, 0, 2, 4) == 2 ** 63 - 1      # inf * 0 = NaN
    assert ref.token_choice_rows(10, 2, 4, math.inf) == 20
    assert ref.expert_choice_capacity(math.inf, 10, 4) == 10
    assert ref.capacity_never_drops(4.0, 2, 8) and not ref.capacity_never_drops(3.9, 2, 8)


# ===========================================================================
# moe: gate
# ===========================================================================

@pytest.mark.parametrize("seed", SEEDS)
def test_gate(seed):
    rng = np.random.default_rng(seed)
    x, w, b = rnd(rng, 13, 6), rnd(rng, 6, 5), rnd(rng, 5)
    close(ref.moe_gate(x, w, b), x.astype(np.float64) @ w + b, rtol=1e-5, atol=1e-5)
    close(ref.moe_gate(x, w), x.astype(np.float64) @ w, rtol=1e-5, atol=1e-5)
    u = ref.jitter_uniform(x.shape, 0.01, rng)
    assert np.all(u >= 0.99 - 1e-7) and np.all(u <= 1.01 + 1e-7)
    close(ref.moe_gate(x, w, b, jitter_eps=0.01, jitter_u=u),
          (x.astype(np.float64) * u) @ w + b, rtol=1e-5, atol=1e-5)
    # a seed (u) with jitter_eps = 0 has no effect
    assert np.array_equal(ref.moe_gate(x, w, b, 0.0, u), ref.moe_gate(x, w, b))
    with pytest.raises(ValueError):
        ref.moe_gate(x, w, jitter_eps=0.01, jitter_u=np.full(x.shape, 1.5, F32))


# ===========================================================================
# moe: token choice
# ===========================================================================

def token_choice_vectorised(logits, k, score, bias, normalize, G, kg, sf):
    probs = ref.nn_softmax(logits) if score == "softmax" else ref.nn_sigmoid(logits)
    sel = (probs + bias).astype(F32) if bias is not None else probs
    T, E = sel.shape
    eligible = np.ones((T, E), bool)
    if G > 1:
        S = E // G
        grouped = np.sort(sel.reshape(T, G, S), axis=-1)[..., ::-1]
        gscore = grouped[..., 0] + grouped[..., 1] if S > 1 else grouped[..., 0]
        top_groups = np.argsort(-gscore, axis=-1, kind="stable")[:, :kg]
        gmask = np.zeros((T, G), bool)
        np.put_along_axis(gmask, top_groups, True, axis=-1)
        eligible = np.repeat(gmask, S, axis=1)
    masked = np.where(eligible, sel, -np.inf)
    idx = np.argsort(-masked, axis=-1, kind="stable")[:, :k]
    w = np.take_along_axis(probs, idx, axis=-1).astype(np.float64)
    if normalize:
        w = w / w.sum(-1, keepdims=True)
    return w * float(F32(sf)), idx, probs


TC_CASES = [
    # T, E, k, score, bias, normalize, G, kg, sf
    (37, 8, 2, "softmax", False, True, 1, 1, 1.0),
    (29, 8, 1, "softmax", False, False, 1, 1, 1.0),
    (50, 16, 4, "sigmoid", True, True, 4, 2, 2.5),
    (33, 12, 3, "softmax", True, False, 3, 2, 1.0),
    (41, 6, 2, "sigmoid", False, False, 6, 3, 0.5),   # one expert per group
    (19, 9, 9, "softmax", False, True, 1, 1, 1.0),    # k = E
    (23, 64, 8, "sigmoid", True, True, 8, 4, 2.5),    # DeepSeek-V3 shape
]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("case", TC_CASES)
@pytest.mark.parametrize("ties", [False, True])
def test_token_choice_vs_vectorised(seed, case, ties):
    T, E, k, score, has_bias, normalize, G, kg, sf = case
    rng = np.random.default_rng(seed)
    if ties:   # few distinct values: many exact ties between experts and groups
        logits = rng.integers(-2, 3, size=(T, E)).astype(F32)
        bias = (rng.integers(-1, 2, size=E) * 0.25).astype(F32) if has_bias else None
    else:
        logits = rnd(rng, T, E, scale=2)
        bias = rnd(rng, E, scale=0.1) if has_bias else None
    w, idx, p = ref.moe_token_choice(logits, k, score, bias, normalize, G, kg, sf)
    assert w.shape == (T, k) and w.dtype == F32
    assert idx.shape == (T, k) and idx.dtype == np.int32
    assert p.shape == (T, E) and p.dtype == F32
    w2, idx2, p2 = token_choice_vectorised(logits, k, score, bias, normalize, G, kg, sf)
    assert np.array_equal(idx, idx2)
    close(p, p2, rtol=0, atol=0)
    close(w, w2, rtol=1e-6, atol=1e-7)
    for t in range(T):
        assert len(set(idx[t].tolist())) == k                           # distinct
        sel = p[t] + (bias if bias is not None else 0)
        s = sel[idx[t]]
        assert np.all(s[:-1] >= s[1:])                                  # best first
        for j in range(k - 1):                                          # ties -> lower index
            if s[j] == s[j + 1]:
                assert idx[t, j] < idx[t, j + 1]
    if score == "softmax":
        close(p.sum(-1), 1, rtol=1e-6)
    if normalize:
        close(w.sum(-1), float(F32(sf)), rtol=1e-6)
    else:
        close(w, np.take_along_axis(p, idx, -1) * float(F32(sf)), rtol=1e-6)


def test_token_choice_groups_by_hand():
    # 4 experts, 2 groups {0,1} {2,3}; sigmoid probs.  Group 0: best 0.9 + 0.0..;
    # group 1 wins by the sum of its two best even though expert 0 is the best.
    p = np.array([[0.9, 0.05, 0.6, 0.5]], np.float64)
    logits = np.log(p / (1 - p)).astype(F32)
    w, idx, probs = ref.moe_token_choice(logits, 2, "sigmoid", None, False, 2, 1)
    assert idx.tolist() == [[2, 3]]
    w, idx, _ = ref.moe_token_choice(logits, 2, "sigmoid", None, False, 2, 2)
    assert idx.tolist() == [[0, 2]]
    # selection bias changes the choice but never the weights
    bias = np.array([0, 0, 0, 0.5], F32)
    w, idx, probs = ref.moe_token_choice(logits, 1, "sigmoid", bias)
    assert idx.tolist() == [[3]] and np.isclose(w[0, 0], probs[0, 3])
    # groups of one expert: group score = the expert's own score
    w, idx, _ = ref.moe_token_choice(logits, 2, "sigmoid", None, False, 4, 2)
    assert idx.tolist() == [[0, 2]]


def test_token_choice_all_tied():
    logits = np.zeros((3, 6), F32) + F32(0.5)
    w, idx, p = ref.moe_token_choice(logits, 3, "softmax", normalize=True)
    assert idx.tolist() == [[0, 1, 2]] * 3
    close(w, 1 / 3, rtol=1e-6)


def sparse_mixer_logits(rng, T, E):
    """Logits where several experts of most tokens lie within a few percent
    of the best or second best (so SparseMixer's softmaxes have more than one
    member), with negative, positive and mixed-sign rows."""
    logits = rnd(rng, T, E, scale=2.0)
    for t in range(T):
        order = np.argsort(-logits[t])
        for rank in (0, 1):
            top = logits[t, order[rank]]
            for e in rng.choice(order[2:], 2, replace=False):
                logits[t, e] = top - abs(top) * rng.uniform(0.0, 0.05) - 1e-3
    return logits


def sparse_mixer_vectorised(logits):
    """SparseMixer top-2 with whole-row numpy operations (float64 sums)."""
    x = logits.astype(np.float64)
    order = np.argsort(-logits, axis=1, kind="stable")[:, :2]
    weights = np.zeros(order.shape)
    for j in range(2):
        m = np.take_along_axis(x, order[:, j:j + 1], axis=1)
        member = (m - x) <= 0.02 * np.maximum(np.abs(x), m)
        if j == 1:
            np.put_along_axis(member, order[:, :1], False, axis=1)
        weights[:, j] = 1.0 / np.where(member, np.exp(x - m), 0.0).sum(axis=1)
    return weights, order


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("E", [8, 16, 5])
def test_sparse_mixer_vs_vectorised(seed, E):
    rng = np.random.default_rng(seed)
    logits = sparse_mixer_logits(rng, 40, E)
    w, idx, p = ref.moe_token_choice(logits, 2, "sparse_mixer")
    want_w, want_idx = sparse_mixer_vectorised(logits)
    assert np.array_equal(idx, want_idx)
    close(w, want_w, rtol=1e-6)
    close(p, ref.nn_softmax(logits), rtol=0, atol=0)
    # Some tokens have several experts in a pick's softmax.
    assert (w < 0.9).any() and (w == 1).any()
    scaled, _, _ = ref.moe_token_choice(logits, 2, "sparse_mixer",
                                        scaling_factor=2.0)
    close(scaled, 2 * w, rtol=1e-7)


def test_sparse_mixer_by_hand():
    # m0 = 1: 0.995 and 0.99 lie within 2% (0.02 * max(|x|, 1)), 0.5 does
    # not; m1 = 0.995 without expert 0: 0.99 within 0.0199, 0.5 not.
    logits = np.array([[1.0, 0.995, 0.5, 0.99, -3.0]], F32)
    w, idx, _ = ref.moe_token_choice(logits, 2, "sparse_mixer")
    assert idx.tolist() == [[0, 1]]
    close(w[0, 0], 1 / (1 + math.exp(-0.005) + math.exp(-0.01)), rtol=1e-6)
    close(w[0, 1], 1 / (1 + math.exp(-0.005)), rtol=1e-6)
    # Ties go to the lower index; a tied second pick shares its softmax.
    w, idx, _ = ref.moe_token_choice(np.array([[3.0, 2.0, 3.0, 2.0]], F32), 2,
                                     "sparse_mixer")
    assert idx.tolist() == [[0, 2]]
    close(w, [[0.5, 1.0]], rtol=1e-7)
    for bad in (dict(k=1), dict(k=2, normalize=True),
                dict(k=2, bias=np.zeros(5, F32)), dict(k=4, num_groups=5)):
        with pytest.raises(ValueError):
            ref.moe_token_choice(logits, score="sparse_mixer", **bad)


# ===========================================================================
# moe: expert choice
# ===========================================================================

@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("T,E,cf", [(37, 8, 2.0), (16, 4, 1.0), (10, 3, 0.3), (9, 5, 20.0), (64, 7, 1.25)])
@pytest.mark.parametrize("ties", [False, True])
def test_expert_choice_vs_vectorised(seed, T, E, cf, ties):
    rng = np.random.default_rng(seed)
    logits = (rng.integers(-2, 2, size=(T, E)).astype(F32) if ties else rnd(rng, T, E))
    rt, rw, off, p = ref.moe_expert_choice(logits, cf)
    C = min(T, math.ceil(cf * T / E))
    assert rt.dtype == np.int32 and off.dtype == np.int32 and rw.dtype == F32
    assert rt.shape == (E * C,) and off.tolist() == [e * C for e in range(E + 1)]
    assert np.array_equal(p, ref.nn_softmax(logits))
    for e in range(E):
        want = np.sort(np.argsort(-p[:, e], kind="stable")[:C])
        seg = rt[e * C:(e + 1) * C]
        assert np.array_equal(seg, want)
        assert np.all(np.diff(seg) > 0)
        assert np.array_equal(rw[e * C:(e + 1) * C], p[seg, e])
        # every chosen token scores >= every unchosen one
        unchosen = np.setdiff1d(np.arange(T), seg)
        if unchosen.size:
            assert p[seg, e].min() >= p[unchosen, e].max()


# ===========================================================================
# moe: dispatch
# ===========================================================================

def dispatch_vectorised(idx, w, E, cf, bp):
    """GShard-style: one-hot masks and cumulative sums per choice rank."""
    T, k = idx.shape
    kept = np.ones((T, k), bool)
    if cf is not None:
        C = math.ceil(((cf * T) * k) / E)
        order = np.argsort(-w[:, 0], kind="stable") if bp else np.arange(T)
        load = np.zeros(E, np.int64)
        for j in range(k):
            onehot = np.eye(E, dtype=np.int64)[idx[order, j]]        # [T, E] priority order
            pos = np.cumsum(onehot, axis=0) - 1 + load               # slot in the expert
            keep = ((pos < C) & (onehot == 1)).any(axis=1)
            kept[order, j] = keep
            load = np.minimum(load + onehot.sum(0), C)
    tt, jj = np.nonzero(kept)
    ee = idx[tt, jj]
    perm = np.lexsort((jj, tt, ee))
    R = T * k if cf is None else min(T * k, E * math.ceil(((cf * T) * k) / E))
    rt = np.full(R, -1)
    rw = np.zeros(R, F32)
    rt[:len(perm)] = tt[perm]
    rw[:len(perm)] = w[tt[perm], jj[perm]]
    off = np.concatenate([[0], np.cumsum(np.bincount(ee, minlength=E))])
    return rt, rw, off, kept


def make_routing(rng, T, E, k, skew, unused, tie_weights):
    """Random distinct top-k indices (some experts possibly never chosen) and
    positive weights (optionally with many ties in weights[:, 0])."""
    experts = np.arange(E)
    if unused:
        experts = rng.choice(E, size=max(k, E - unused), replace=False)
    pref = rng.random(len(experts)) ** skew
    idx = np.zeros((T, k), np.int32)
    for t in range(T):
        idx[t] = rng.choice(experts, size=k, replace=False, p=pref / pref.sum())
    if tie_weights:
        w = (rng.integers(1, 4, size=(T, k)) / 4).astype(F32)
    else:
        w = (rng.random((T, k)) + 0.01).astype(F32)
    return idx, w


DISPATCH_CASES = [
    # T, E, k, cf, skew, unused experts, tied weights
    (40, 4, 1, 1.25, 1, 0, False),
    (10, 4, 2, 1.25, 1, 0, True),
    (100, 8, 1, 0.5, 3, 0, False),
    (37, 8, 2, 1.0, 4, 3, True),
    (53, 16, 4, 1.1, 2, 5, False),
    (29, 6, 3, 0.7, 5, 2, True),
    (31, 8, 2, None, 3, 4, False),
    (17, 5, 5, 1.0, 1, 0, True),
    (64, 8, 2, 4.0, 2, 0, False),       # capacity never reached
    (13, 7, 2, 0.05, 2, 0, True),       # C = 1
]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("case", DISPATCH_CASES)
@pytest.mark.parametrize("bp", [False, True])
def test_dispatch_vs_vectorised_and_invariants(seed, case, bp):
    T, E, k, cf, skew, unused, tie = case
    rng = np.random.default_rng(seed)
    idx, w = make_routing(rng, T, E, k, skew, unused, tie)
    rt, rw, off = ref.moe_dispatch(idx, w, E, cf, bp)
    rt2, rw2, off2, kept2 = dispatch_vectorised(idx, w, E, cf, bp)
    assert rt.dtype == np.int32 and off.dtype == np.int32 and rw.dtype == F32
    assert np.array_equal(rt, rt2) and np.array_equal(rw, rw2) and np.array_equal(off, off2)
    kept = ref.moe_dispatch_kept(idx, w, E, cf, bp)
    assert np.array_equal(kept, kept2)
    dropped = ref.moe_dropped_assignments(idx, w, E, cf, bp)
    assert dropped == {(int(t), int(j)) for t, j in zip(*np.nonzero(~kept))}

    R = ref.token_choice_rows(T, k, E, cf)
    C = T if cf is None else ref.token_choice_capacity(cf, T, k, E)
    used = int(off[E])
    assert rt.shape == (R,) and off.shape == (E + 1,) and off[0] == 0
    assert np.all(np.diff(off) >= 0)                                   # monotone
    assert np.all(np.diff(off) <= C)                                   # capacity
    assert np.all(rt[used:] == -1) and np.all(rw[used:] == 0)          # padding
    assert np.all(rt[:used] >= 0)
    assert used == T * k - len(dropped)
    # every kept assignment exactly once, dropped never
    rows = {}
    for e in range(E):
        seg = rt[off[e]:off[e + 1]]
        assert np.all(np.diff(seg) > 0)                                # token order
        for r in range(off[e], off[e + 1]):
            t = int(rt[r])
            js = [j for j in range(k) if idx[t, j] == e]
            assert len(js) == 1
            rows[(t, js[0])] = rows.get((t, js[0]), 0) + 1
            assert rw[r] == w[t, js[0]]
    assert set(rows) == {(t, j) for t in range(T) for j in range(k)} - dropped
    assert all(c == 1 for c in rows.values())
    # priority: a dropped assignment found its expert full of higher-priority ones
    order = list(range(T)) if not bp else sorted(range(T), key=lambda t: (-float(w[t, 0]), t))
    rank_of = {t: i for i, t in enumerate(order)}
    for (t, j) in dropped:
        e = idx[t, j]
        holders = [(tt, jj) for (tt, jj) in rows if idx[tt, jj] == e]
        assert len(holders) == C
        assert all((jj, rank_of[tt]) < (j, rank_of[t]) for tt, jj in holders)
    if cf is None or ref.capacity_never_drops(cf, k, E):
        assert not dropped and used == R == T * k


def test_dispatch_experts_without_tokens_and_hand_case():
    idx = np.array([[0], [0], [0], [3], [0]], np.int32)
    w = np.array([[0.1], [0.9], [0.5], [0.7], [0.9]], F32)
    # T=5, k=1, E=4, cf=1.0 -> C = ceil(5/4) = 2, R = min(5, 8) = 5
    rt, rw, off = ref.moe_dispatch(idx, w, 4, 1.0)
    assert off.tolist() == [0, 2, 2, 2, 3]
    assert rt.tolist() == [0, 1, 3, -1, -1]
    assert ref.moe_dropped_assignments(idx, w, 4, 1.0) == {(2, 0), (4, 0)}
    rt, rw, off = ref.moe_dispatch(idx, w, 4, 1.0, batch_prioritized=True)
    assert rt.tolist() == [1, 4, 3, -1, -1]         # 0.9 (t1), 0.9 (t4): tie -> t1 first
    assert rw.tolist() == [np.float32(0.9), np.float32(0.9), np.float32(0.7), 0, 0]
    assert ref.moe_dropped_assignments(idx, w, 4, 1.0, True) == {(0, 0), (2, 0)}


def test_dispatch_rank_priority():
    # second choices never displace first choices
    idx = np.array([[1, 0], [0, 1], [0, 1]], np.int32)
    w = np.ones((3, 2), F32)
    # T=3, k=2, E=2, cf=0.5 -> C = ceil(1.5) = 2, R = 4
    kept = ref.moe_dispatch_kept(idx, w, 2, 0.5)
    assert kept.tolist() == [[True, False], [True, True], [True, False]]
    rt, rw, off = ref.moe_dispatch(idx, w, 2, 0.5)
    assert off.tolist() == [0, 2, 4] and rt.tolist() == [1, 2, 0, 1]


def test_dispatch_speed_large():
    rng = np.random.default_rng(0)
    T, E, k = 4096, 64, 8
    logits = rnd(rng, T, E)
    t0 = time.time()
    w, idx, p = ref.moe_token_choice(logits, k, "sigmoid", rnd(rng, E, scale=0.01),
                                     True, 8, 4, 2.5)
    rt, rw, off = ref.moe_dispatch(idx, w, E, 1.0, batch_prioritized=True)
    ref.moe_expert_choice(logits, 2.0)
    ref.moe_combine(ref.moe_permute(rnd(rng, T, 16), rt), rt, rw, np.zeros((T, 16), F32))
    assert time.time() - t0 < 30
    assert off[E] <= T * k


# ===========================================================================
# moe: permute, expert FFN, combine, shared expert
# ===========================================================================

@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("k", [1, 2, 3])
def test_permute_combine_roundtrip(seed, k):
    rng = np.random.default_rng(seed)
    T, E, D = 21, 6, 5
    x = rnd(rng, T, D)
    idx, w = make_routing(rng, T, E, k, 2, 1, False)
    rt, rw, off = ref.moe_dispatch(idx, w, E)
    xs = ref.moe_permute(x, rt)
    for r in range(len(rt)):
        assert np.array_equal(xs[r], x[rt[r]])
    y = ref.moe_combine(xs, rt, np.ones_like(rw), np.zeros_like(x))
    close(y, k * x.astype(np.float64), rtol=1e-6)
    # with capacity: padding rows of permute are zero; combine == np.add.at
    rt, rw, off = ref.moe_dispatch(idx, w, E, 0.6)
    xs = ref.moe_permute(x, rt)
    assert np.all(xs[rt < 0] == 0)
    init = rnd(rng, T, D)
    want = init.astype(np.float64).copy()
    sel = rt >= 0
    np.add.at(want, rt[sel], rw[sel, None].astype(np.float64) * xs[sel])
    close(ref.moe_combine(xs, rt, rw, init), want, rtol=1e-5, atol=1e-6)


GATED = ("swiglu", "geglu", "geglu_tanh")


def ffn_rowwise(x, e, fc1, fc2, act, fc3=None, b1=None, b2=None, b3=None,
                alpha=1.0, beta=0.0, limit=None):
    """One row through expert e, written with float64 per-row vector ops;
    alpha, beta, limit are swiglu's parameters, applied elementwise."""
    x = x.astype(np.float64)
    h = x @ fc1[e] + (0 if b1 is None else b1[e])
    erf = np.vectorize(math.erf)
    a = {"relu": lambda v: np.maximum(v, 0),
         "relu2": lambda v: np.where(v > 0, v * v, 0.0),
         "identity": lambda v: v,
         "gelu": lambda v: 0.5 * v * (1 + erf(v / math.sqrt(2))),
         "gelu_tanh": lambda v: 0.5 * v * (1 + np.tanh(math.sqrt(2 / math.pi) * (v + 0.044715 * v ** 3))),
         "silu": lambda v: v / (1 + np.exp(-v))}
    a["swiglu"] = lambda v: v / (1 + np.exp(-alpha * v))
    a["geglu"], a["geglu_tanh"] = a["gelu"], a["gelu_tanh"]
    if act in GATED:
        lin = x @ fc3[e] + (0 if b3 is None else b3[e])
        if limit is not None:
            h = np.array([min(v, limit) for v in h])
            lin = np.array([max(-limit, min(v, limit)) for v in lin])
        h = a[act](h) * (lin + beta)
    else:
        h = a[act](h)
    return h @ fc2[e] + (0 if b2 is None else b2[e])


def expert_ffn_case(rng, E, D, F, Dout, act, biases):
    counts = rng.integers(0, 5, size=E)
    counts[1] = 0                                   # an expert with no rows
    R = int(counts.sum()) + 3                       # 3 padding rows
    off = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    x = rnd(rng, R, D)
    fc1, fc2 = rnd(rng, E, D, F, scale=0.5), rnd(rng, E, F, Dout, scale=0.5)
    gated = act in GATED
    fc3 = rnd(rng, E, D, F, scale=0.5) if gated else None
    b1 = rnd(rng, E, F) if biases else None
    b2 = rnd(rng, E, Dout) if biases else None
    b3 = rnd(rng, E, F) if biases and gated else None
    return x, off, (fc1, fc2, fc3, b1, b2, b3)


def check_rows(got, x, off, weights, act, **swiglu):
    E = len(off) - 1
    for r in range(len(x)):
        e = int(np.searchsorted(off, r, side="right")) - 1
        if r >= off[E]:
            assert np.all(got[r] == 0)
        else:
            close(got[r], ffn_rowwise(x[r], e, act=act, fc1=weights[0],
                                      fc2=weights[1], fc3=weights[2],
                                      b1=weights[3], b2=weights[4],
                                      b3=weights[5], **swiglu),
                  rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("seed", SEEDS[:3])
@pytest.mark.parametrize("act", ["relu", "gelu", "gelu_tanh", "silu", "swiglu", "geglu",
                                 "identity", "relu2", "geglu_tanh"])
@pytest.mark.parametrize("biases", [False, True])
def test_expert_ffn_vs_rowwise(seed, act, biases):
    rng = np.random.default_rng(seed)
    E, D, F, Dout = 5, 6, 7, 4
    x, off, w = expert_ffn_case(rng, E, D, F, Dout, act, biases)
    got = ref.moe_expert_ffn(x, off, w[0], w[1], act, *w[2:])
    assert got.shape == (len(x), Dout) and got.dtype == F32
    check_rows(got, x, off, w, act)
    gated = act in GATED
    with pytest.raises(ValueError):
        ref.moe_expert_ffn(x, off, w[0], w[1], act, None if gated else rnd(rng, E, D, F))


@pytest.mark.parametrize("seed", SEEDS[:3])
@pytest.mark.parametrize("alpha,beta,limit", [(1.702, 1.0, 0.8), (1.0, 0.0, 0.3),
                                              (0.5, -0.25, None)])
def test_expert_ffn_swiglu_parameters_vs_rowwise(seed, alpha, beta, limit):
    rng = np.random.default_rng(seed)
    E, D, F, Dout = 4, 6, 9, 5
    x, off, w = expert_ffn_case(rng, E, D, F, Dout, "swiglu", True)
    got = ref.moe_expert_ffn(x, off, w[0], w[1], "swiglu", *w[2:],
                             swiglu_alpha=alpha, swiglu_beta=beta,
                             swiglu_limit=limit)
    check_rows(got, x, off, w, "swiglu", alpha=alpha, beta=beta, limit=limit)
    if limit is not None:
        # The clamp binds on this data: the result differs from no clamp.
        free = ref.moe_expert_ffn(x, off, w[0], w[1], "swiglu", *w[2:],
                                  swiglu_alpha=alpha, swiglu_beta=beta)
        assert np.abs(free - got).max() > 1e-3
    for bad in (dict(swiglu_alpha=2.0), dict(swiglu_limit=1.0)):
        with pytest.raises(ValueError):
            ref.moe_expert_ffn(x, off, w[0], w[1], "geglu", *w[2:], **bad)
    with pytest.raises(ValueError):
        ref.moe_expert_ffn(x, off, w[0], w[1], "swiglu", *w[2:], swiglu_limit=0.0)


@pytest.mark.parametrize("seed", SEEDS[:2])
@pytest.mark.parametrize("act", ["gelu_tanh", "swiglu"])
@pytest.mark.parametrize("gate", [False, True])
def test_shared_expert(seed, act, gate):
    rng = np.random.default_rng(seed)
    T, D, F = 9, 6, 10
    x = rnd(rng, T, D)
    s1, s2 = rnd(rng, D, F), rnd(rng, F, D)
    s3 = rnd(rng, D, F) if act == "swiglu" else None
    g = rnd(rng, D, 1) if gate else None
    got = ref.moe_shared_expert(x, s1, s2, act, s3, g)
    for t in range(T):
        want = ffn_rowwise(x[t], 0, s1[None], s2[None], act, None if s3 is None else s3[None])
        if gate:
            want = want / (1 + math.exp(-float(x[t].astype(np.float64) @ g[:, 0])))
        close(got[t], want, rtol=1e-4, atol=1e-5)


# ===========================================================================
# moe: losses and statistics
# ===========================================================================

@pytest.mark.parametrize("seed", SEEDS)
def test_load_balancing_loss(seed):
    rng = np.random.default_rng(seed)
    T, E, k = 24, 8, 2
    probs = ref.nn_softmax(rnd(rng, T, E, scale=2))
    # perfectly uniform assignment counts -> loss == 1 for any softmax probs
    idx = np.array([[(2 * t) % E, (2 * t + 1) % E] for t in range(T)], np.int32)
    close(ref.moe_load_balancing_loss(probs, idx), 1.0, rtol=1e-6)
    close(ref.moe_load_balancing_loss(np.full((T, E), 1 / E, F32), idx), 1.0, rtol=1e-6)
    # collapse: everything to expert 0 with probs concentrated there -> about E
    pc = ref.nn_softmax(np.tile(np.array([20] + [0] * (E - 1), F32), (T, 1)))
    close(ref.moe_load_balancing_loss(pc, np.zeros((T, 1), np.int32)), E, rtol=1e-6)
    # vs loops
    idx, _ = make_routing(rng, T, E, k, 3, 2, False)
    f = [sum(1 for t in range(T) for j in range(k) if idx[t, j] == e) / (T * k) for e in range(E)]
    P = [sum(float(probs[t, e]) for t in range(T)) / T for e in range(E)]
    want = E * sum(fe * pe for fe, pe in zip(f, P))
    got = ref.moe_load_balancing_loss(probs, idx)
    assert got.shape == () and got.dtype == F32
    close(got, want, rtol=1e-6)


@pytest.mark.parametrize("seed", SEEDS)
def test_z_loss(seed):
    rng = np.random.default_rng(seed)
    lg = rnd(rng, 17, 6, scale=5)
    want = sum(math.log(sum(math.exp(float(v)) for v in row)) ** 2 for row in lg) / 17
    got = ref.moe_z_loss(lg)
    assert got.shape == () and got.dtype == F32
    close(got, want, rtol=1e-6)
    close(ref.moe_z_loss(np.full((3, 4), 1000, F32)), (1000 + math.log(4)) ** 2, rtol=1e-6)


@pytest.mark.parametrize("seed", SEEDS)
def test_routing_stats(seed):
    rng = np.random.default_rng(seed)
    T, E, k = 30, 8, 2
    idx, w = make_routing(rng, T, E, k, 4, 3, False)
    rt, rw, off = ref.moe_dispatch(idx, w, E, 0.8)
    load, dropped = ref.moe_routing_stats(off, idx)
    assert load.dtype == np.int64 and dropped.dtype == np.int64 and dropped.shape == ()
    assert np.array_equal(load, np.bincount(idx.ravel(), minlength=E))
    assert int(dropped) == len(ref.moe_dropped_assignments(idx, w, E, 0.8))
    load2, dropped2 = ref.moe_routing_stats(off)
    assert np.array_equal(load2, np.diff(off)) and int(dropped2) == 0
    _, d0 = ref.moe_routing_stats(ref.moe_dispatch(idx, w, E)[2], idx)
    assert int(d0) == 0


# ===========================================================================
# moe.layer
# ===========================================================================

def layer_dense(x, p, routing, act, k=1, cf=None, bp=False, **tc):
    """The layer written per token: out[t] = shared(x)[t] + sum over kept
    assignments of weight * FFN_e(x[t]), every expert evaluated densely."""
    E = p["router"].shape[1]
    logits = x.astype(np.float64) @ p["router"] + (0 if p.get("rbias") is None else p["rbias"])
    logits = logits.astype(F32)
    FF = [np.stack([ffn_rowwise(x[t], e, p["fc1"], p["fc2"], act, p.get("fc3"), p.get("b1"),
                                p.get("b2"), p.get("b3")) for t in range(len(x))])
          for e in range(E)]
    out = np.zeros((len(x), p["fc2"].shape[2]))
    if p.get("s1") is not None:
        for t in range(len(x)):
            s = ffn_rowwise(x[t], 0, p["s1"][None], p["s2"][None], act,
                            None if p.get("s3") is None else p["s3"][None])
            if p.get("sg") is not None:
                s = s / (1 + math.exp(-float(x[t].astype(np.float64) @ p["sg"][:, 0])))
            out[t] += s
    if routing == "token_choice":
        w, idx, probs = token_choice_vectorised(logits, k, tc.get("score", "softmax"),
                                                p.get("sbias"), tc.get("normalize", False),
                                                tc.get("num_groups", 1), tc.get("topk_groups", 1),
                                                tc.get("scaling_factor", 1.0))
        _, _, _, kept = dispatch_vectorised(idx, w.astype(F32), E, cf, bp)
        for t, j in zip(*np.nonzero(kept)):
            out[t] += w[t, j] * FF[idx[t, j]][t]
        return out, int((~kept).sum()), np.bincount(idx.ravel(), minlength=E)
    probs = ref.nn_softmax(logits)
    C = min(len(x), math.ceil(cf * len(x) / E))
    for e in range(E):
        for t in np.argsort(-probs[:, e], kind="stable")[:C]:
            out[t] += probs[t, e] * FF[e][t]
    return out, 0, np.full(E, C)


def layer_params(rng, D, E, F, act, shared, biases):
    gated = act in ("swiglu", "geglu")
    p = {"router": rnd(rng, D, E), "fc1": rnd(rng, E, D, F, scale=0.4),
         "fc2": rnd(rng, E, F, D, scale=0.4),
         "fc3": rnd(rng, E, D, F, scale=0.4) if gated else None}
    if biases:
        p.update(rbias=rnd(rng, E, scale=0.1), b1=rnd(rng, E, F, scale=0.1),
                 b2=rnd(rng, E, D, scale=0.1), b3=rnd(rng, E, F, scale=0.1) if gated else None)
    if shared:
        p.update(s1=rnd(rng, D, 2 * F, scale=0.4), s2=rnd(rng, 2 * F, D, scale=0.4),
                 s3=rnd(rng, D, 2 * F, scale=0.4) if gated else None, sg=rnd(rng, D, 1))
    return p


def call_layer(x, p, **kw):
    return ref.moe_layer(x, p["router"], p["fc1"], p["fc2"], fc3=p.get("fc3"),
                         router_bias=p.get("rbias"), selection_bias=p.get("sbias"),
                         fc1_bias=p.get("b1"), fc2_bias=p.get("b2"), fc3_bias=p.get("b3"),
                         shared_fc1=p.get("s1"), shared_fc2=p.get("s2"),
                         shared_fc3=p.get("s3"), shared_gate=p.get("sg"),
                         return_intermediates=True, **kw)


LAYER_CASES = [
    # activation, shared, biases, k, cf, bp, extra token-choice attrs
    ("swiglu", False, False, 2, None, False, dict(normalize=True)),                 # Mixtral
    ("gelu", True, True, 1, 1.25, False, {}),                                       # Switch
    ("silu", True, False, 2, 0.8, True, dict(normalize=True)),
    ("geglu", False, True, 4, 1.0, False, dict(score="sigmoid", normalize=True, num_groups=4,
                                                topk_groups=2, scaling_factor=2.5)),  # DeepSeek-like
    ("relu", False, False, 1, 0.5, True, {}),
]


@pytest.mark.parametrize("seed", SEEDS[:3])
@pytest.mark.parametrize("case", LAYER_CASES)
def test_layer_token_choice_vs_dense(seed, case):
    act, shared, biases, k, cf, bp, tc = case
    rng = np.random.default_rng(seed)
    T, D, E, F = 27, 6, 8, 5
    x = rnd(rng, T, D)
    p = layer_params(rng, D, E, F, act, shared, biases)
    if tc.get("score") == "sigmoid":
        p["sbias"] = rnd(rng, E, scale=0.05)
    out, aux, z, load, dropped, inter = call_layer(
        x, p, routing="token_choice", activation=act, k=k, capacity_factor=cf,
        batch_prioritized=bp, **tc)
    want, want_dropped, want_load = layer_dense(x, p, "token_choice", act, k, cf, bp, **tc)
    close(out, want, rtol=1e-4, atol=1e-5)
    assert int(dropped) == want_dropped == len(inter["dropped_set"])
    assert np.array_equal(load, want_load)
    close(aux, ref.moe_load_balancing_loss(inter["probs"], inter["indices"]), rtol=0, atol=0)
    close(z, ref.moe_z_loss(inter["logits"]), rtol=0, atol=0)
    if cf is None:
        assert want_dropped == 0


@pytest.mark.parametrize("seed", SEEDS[:3])
@pytest.mark.parametrize("act,shared,cf", [("swiglu", True, 2.0), ("gelu_tanh", False, 1.0),
                                            ("silu", False, 0.3)])
def test_layer_expert_choice_vs_dense(seed, act, shared, cf):
    rng = np.random.default_rng(seed)
    T, D, E, F = 19, 5, 4, 6
    x = rnd(rng, T, D)
    p = layer_params(rng, D, E, F, act, shared, True)
    out, aux, z, load, dropped, inter = call_layer(x, p, routing="expert_choice",
                                                   activation=act, capacity_factor=cf)
    want, _, want_load = layer_dense(x, p, "expert_choice", act, cf=cf)
    close(out, want, rtol=1e-4, atol=1e-5)
    assert float(aux) == 0 and aux.dtype == F32 and int(dropped) == 0
    assert np.array_equal(load, want_load)
    close(z, ref.moe_z_loss(inter["logits"]), rtol=0, atol=0)


def test_layer_jitter_is_gate_input():
    rng = np.random.default_rng(11)
    T, D, E, F = 12, 4, 4, 3
    x = rnd(rng, T, D)
    p = layer_params(rng, D, E, F, "relu", False, False)
    u = ref.jitter_uniform((T, D), 0.1, rng)
    a = call_layer(x, p, routing="token_choice", activation="relu", k=2,
                   jitter_eps=0.1, jitter_u=u)
    b = call_layer(x * u, p, routing="token_choice", activation="relu", k=2)
    assert np.array_equal(a[5]["logits"], b[5]["logits"])
    assert np.array_equal(a[5]["indices"], b[5]["indices"])


def test_ops_table_complete():
    ops = {"add", "sub", "mul", "div", "pow", "neg", "exp", "log", "sqrt", "rsqrt",
           "reciprocal", "tanh", "erf", "sigmoid", "relu", "silu", "gelu", "linear",
           "matmul", "rms_norm", "layer_norm", "softmax", "embedding", "rotary",
           "attention", "reshape", "transpose", "cross_entropy"}
    moe = {"gate", "token_choice", "expert_choice", "dispatch", "permute", "expert_ffn",
           "combine", "shared_expert", "load_balancing_loss", "z_loss", "routing_stats", "layer"}
    assert set(ref.OPS) == {"nn." + o for o in ops} | {"moe." + o for o in moe}


def test_bfloat16_rounding():
    x = np.array([1.0, 1.00390625, 1.005859375, -3.14159265, 65504.0, np.inf], F32)
    b = ref.to_bfloat16(x)
    assert b[0] == 1.0 and b[1] == 1.0          # exactly halfway -> even
    assert b[2] == 1.0078125                     # above halfway -> up
    assert b[3] == -3.140625 and b[5] == np.inf
    assert np.all(b.view(np.uint32) & 0xFFFF == 0)
