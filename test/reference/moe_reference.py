"""Independent NumPy reference implementation of the `nn` and `moe` dialects.

Written from the op specifications only (the ODS descriptions in
dialects/NN/NNOps.td, dialects/MoE/MoEDialect.td, dialects/MoE/MoEOps.td, the
capacity formulas documented in dialects/MoE/MoEUtils.h, the design notes in
docs/dialects/{nn,moe}.md and the `moe-decompose-layer` description in
passes/Passes.td), never from compiler code. End-to-end tests compare the
compiled code against these functions.

Naming: the op `nn.foo` is `nn_foo`, `moe.bar` is `moe_bar` (see `OPS`).
Operands are positional in ODS order; attributes are keyword arguments with the
ODS names and defaults. Results are returned in ODS order (a tuple when the op
has several).

Numerics
--------
* Floating-point operands are converted to float32, which is the compute type
  and the result type. Elementwise arithmetic, reductions, matmuls and routing
  scores are evaluated in float32 (numpy float32 arithmetic / float32 BLAS), as
  the ops compute "in the model's type". Transcendental functions whose numpy
  float32 implementation is not available (erf) are evaluated in float64 and
  rounded to float32, and RoPE angles are formed in float64 before rounding
  cos/sin to float32 (a reference should not add error of its own there).
* For f16 / bf16 models, round the inputs with `to_float16` / `to_bfloat16`,
  run the reference (float32 compute) and compare with a looser tolerance;
  routing decisions on near-ties may then legitimately differ.
* Routing indices and row plans are int32 (`np.int32`), counters int64,
  losses 0-d float32 arrays.
* Attributes declared F32Attr (epsilon, theta, scale, scaling_factor,
  jitter_eps) are rounded to float32 first, as the IR stores them; the
  capacity factors are F64Attr and are used as Python floats (IEEE double),
  exactly as in MoEUtils.h.

Routing, dispatch and combine are written as explicit loops on purpose: they
are the ground truth. They stay fast enough for T ~ 4096, E ~ 64, k ~ 8.
"""

from __future__ import annotations

import math
from typing import Dict, Iterable, List, Optional, Sequence, Set, Tuple

import numpy as np

F32 = np.float32
I32 = np.int32
I64 = np.int64

__all__ = [
    # helpers
    "to_float16", "to_bfloat16", "erf", "jitter_uniform",
    "token_choice_capacity", "token_choice_rows", "expert_choice_capacity",
    "capacity_never_drops",
    # nn
    "nn_add", "nn_sub", "nn_mul", "nn_div", "nn_pow", "nn_neg", "nn_exp",
    "nn_log", "nn_sqrt", "nn_rsqrt", "nn_reciprocal", "nn_tanh", "nn_erf",
    "nn_sigmoid", "nn_relu", "nn_silu", "nn_gelu", "nn_linear", "nn_matmul",
    "nn_rms_norm", "nn_layer_norm", "nn_softmax", "nn_embedding", "nn_rotary",
    "nn_attention", "nn_reshape", "nn_transpose", "nn_cross_entropy",
    # moe
    "moe_gate", "moe_token_choice", "moe_expert_choice", "moe_dispatch",
    "moe_dispatch_kept", "moe_dropped_assignments", "moe_permute",
    "moe_expert_ffn", "moe_combine", "moe_shared_expert",
    "moe_load_balancing_loss", "moe_z_loss", "moe_routing_stats", "moe_layer",
    "OPS",
]


# ---------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------

def _f(x) -> np.ndarray:
    """Float operand -> float32 array (the compute type)."""
    return np.asarray(x, dtype=F32)


def _i(x) -> np.ndarray:
    """Integer operand -> int64 array (indices are compared as integers)."""
    a = np.asarray(x)
    if a.dtype.kind not in "iu":
        raise TypeError(f"expected an integer tensor, got dtype {a.dtype}")
    return a.astype(I64)


def _scalar_f32(value) -> np.ndarray:
    """A 0-d float32 tensor."""
    return np.asarray(value, dtype=F32).reshape(())


def to_float16(x) -> np.ndarray:
    """Round to IEEE half precision and return as float32."""
    return np.asarray(x, dtype=F32).astype(np.float16).astype(F32)


def to_bfloat16(x) -> np.ndarray:
    """Round to bfloat16 (round to nearest, ties to even) and return as float32."""
    a = np.ascontiguousarray(np.asarray(x, dtype=F32))
    bits = a.view(np.uint32).astype(np.uint64)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
    out = rounded.astype(np.uint32).view(F32).copy()
    nan = np.isnan(a)
    out[nan] = np.nan
    return out


_erf64 = np.frompyfunc(math.erf, 1, 1)


def erf(x) -> np.ndarray:
    """erf evaluated in float64 with `math.erf` (correctly rounded to ~1 ulp of
    double), returned as float32."""
    a = np.asarray(x, dtype=np.float64)
    return np.asarray(_erf64(a), dtype=np.float64).astype(F32).reshape(a.shape)


def jitter_uniform(shape, jitter_eps: float, rng: np.random.Generator) -> np.ndarray:
    """Multipliers u ~ Uniform(1 - eps, 1 + eps) for `moe_gate(jitter_u=...)`.

    The compiler's counter-based generator keyed by `seed` is implementation
    defined, so the reference takes the multipliers as an explicit argument;
    this helper only draws some from a numpy generator for tests that check
    the arithmetic (or statistics) rather than the exact random stream.
    """
    eps = float(F32(jitter_eps))
    return rng.uniform(1.0 - eps, 1.0 + eps, size=shape).astype(F32)


# ---------------------------------------------------------------------------
# Capacity arithmetic (MoEUtils.h; MoEOps.td moe.dispatch / moe.expert_choice)
# ---------------------------------------------------------------------------

def token_choice_capacity(factor: float, tokens: int, k: int, experts: int) -> int:
    """C = ceil(((factor * T) * k) / E) in double precision, in that order.

    As in MoEUtils.h, a value that is not below 2^63 (an infinite factor, or
    NaN from inf * 0 tokens) gives INT64_MAX, a capacity that cannot bind.
    """
    slots = ((float(factor) * float(tokens)) * float(k)) / float(experts)
    if not slots < 2.0 ** 63:
        return 2 ** 63 - 1
    return int(math.ceil(slots))


def token_choice_rows(tokens: int, k: int, experts: int,
                      capacity_factor: Optional[float]) -> int:
    """R = T * k when dropless, else min(T * k, E * C)."""
    if capacity_factor is None:
        return tokens * k
    return min(tokens * k,
               experts * token_choice_capacity(capacity_factor, tokens, k, experts))


def expert_choice_capacity(factor: float, tokens: int, experts: int) -> int:
    """C = min(T, ceil((factor * T) / E)) in double precision."""
    return min(tokens, token_choice_capacity(factor, tokens, 1, experts))


def capacity_never_drops(factor: float, k: int, experts: int) -> bool:
    """factor * k >= E implies C >= T, so no assignment can be dropped."""
    return float(factor) * float(k) >= float(experts)


# ---------------------------------------------------------------------------
# nn: elementwise (NNOps.td NN_BinaryOp / NN_UnaryOp / NN_GeluOp)
# ---------------------------------------------------------------------------

def nn_add(lhs, rhs):
    """nn.add: lhs + rhs elementwise with numpy broadcasting."""
    return np.add(_f(lhs), _f(rhs))


def nn_sub(lhs, rhs):
    """nn.sub: lhs - rhs elementwise with numpy broadcasting."""
    return np.subtract(_f(lhs), _f(rhs))


def nn_mul(lhs, rhs):
    """nn.mul: lhs * rhs elementwise with numpy broadcasting."""
    return np.multiply(_f(lhs), _f(rhs))


def nn_div(lhs, rhs):
    """nn.div: lhs / rhs elementwise with numpy broadcasting (IEEE division)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.divide(_f(lhs), _f(rhs))


def nn_pow(lhs, rhs):
    """nn.pow: lhs ^ rhs elementwise with numpy broadcasting (IEEE pow: a
    negative base with a non-integral exponent gives NaN)."""
    with np.errstate(all="ignore"):
        return np.power(_f(lhs), _f(rhs))


def nn_neg(x):
    """nn.neg: -x."""
    return np.negative(_f(x))


def nn_exp(x):
    """nn.exp: exp(x)."""
    with np.errstate(over="ignore"):
        return np.exp(_f(x))


def nn_log(x):
    """nn.log: log(x) (log(0) = -inf, log(<0) = NaN)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log(_f(x))


def nn_sqrt(x):
    """nn.sqrt: sqrt(x)."""
    with np.errstate(invalid="ignore"):
        return np.sqrt(_f(x))


def nn_rsqrt(x):
    """nn.rsqrt: 1 / sqrt(x)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return F32(1) / np.sqrt(_f(x))


def nn_reciprocal(x):
    """nn.reciprocal: 1 / x."""
    with np.errstate(divide="ignore"):
        return F32(1) / _f(x)


def nn_tanh(x):
    """nn.tanh: tanh(x)."""
    return np.tanh(_f(x))


def nn_erf(x):
    """nn.erf: erf(x) (float64 math.erf, rounded to float32)."""
    return erf(x)


def nn_sigmoid(x):
    """nn.sigmoid: 1 / (1 + exp(-x)); saturates to 0 / 1 without NaN."""
    with np.errstate(over="ignore"):
        return F32(1) / (F32(1) + np.exp(-_f(x)))


def nn_relu(x):
    """nn.relu: max(x, 0)."""
    return np.maximum(_f(x), F32(0))


def nn_silu(x):
    """nn.silu: x * sigmoid(x)."""
    x = _f(x)
    return x * nn_sigmoid(x)


_SQRT_2_OVER_PI = F32(math.sqrt(2.0 / math.pi))
_GELU_C = F32(0.044715)
_INV_SQRT2 = 1.0 / math.sqrt(2.0)


def nn_gelu(x, approximate: str = "none"):
    """nn.gelu: x * Phi(x) with Phi the standard normal CDF
    (= 0.5 * x * (1 + erf(x / sqrt(2)))); with approximate = "tanh":
    0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3))).

    The exact form evaluates Phi in float64 and rounds x * Phi(x) to float32.
    """
    x = _f(x)
    if approximate == "none":
        x64 = x.astype(np.float64)
        phi = 0.5 * (1.0 + np.asarray(_erf64(x64 * _INV_SQRT2), dtype=np.float64)
                     .reshape(x.shape))
        return (x64 * phi).astype(F32)
    if approximate == "tanh":
        inner = _SQRT_2_OVER_PI * (x + _GELU_C * x * x * x)
        return F32(0.5) * x * (F32(1) + np.tanh(inner))
    raise ValueError(f"unknown gelu approximation {approximate!r}")


# ---------------------------------------------------------------------------
# nn: linear algebra
# ---------------------------------------------------------------------------

def nn_linear(x, weight, bias=None):
    """nn.linear: [..., in] @ weight [in, out] (+ bias [out]) -> [..., out]."""
    x, w = _f(x), _f(weight)
    if x.shape[-1] != w.shape[0]:
        raise ValueError(f"input {x.shape} and weight {w.shape} disagree")
    y = np.matmul(x, w)
    if bias is not None:
        y = y + _f(bias)
    return y.astype(F32)


def nn_matmul(lhs, rhs, transpose_lhs: bool = False, transpose_rhs: bool = False):
    """nn.matmul: [..., M, K] x [..., K, N] -> [..., M, N]; transpose_* swap the
    last two dims of that operand first; batch dims broadcast as in numpy."""
    a, b = _f(lhs), _f(rhs)
    if a.ndim < 2 or b.ndim < 2:
        raise ValueError("nn.matmul operands must have rank >= 2")
    if transpose_lhs:
        a = np.swapaxes(a, -1, -2)
    if transpose_rhs:
        b = np.swapaxes(b, -1, -2)
    return np.matmul(a, b).astype(F32)


# ---------------------------------------------------------------------------
# nn: normalisation, softmax, embedding
# ---------------------------------------------------------------------------

def nn_rms_norm(x, weight, epsilon: float = 1.0e-6):
    """nn.rms_norm: x / sqrt(mean(x^2, axis=-1) + epsilon) * weight."""
    x, w = _f(x), _f(weight)
    ms = np.mean(x * x, axis=-1, keepdims=True, dtype=F32)
    return (x / np.sqrt(ms + F32(epsilon)) * w).astype(F32)


def nn_layer_norm(x, weight, bias=None, epsilon: float = 1.0e-5):
    """nn.layer_norm: (x - mean) / sqrt(var + epsilon) * weight (+ bias), mean
    and biased variance over the last dimension."""
    x, w = _f(x), _f(weight)
    mean = np.mean(x, axis=-1, keepdims=True, dtype=F32)
    d = x - mean
    var = np.mean(d * d, axis=-1, keepdims=True, dtype=F32)
    y = d / np.sqrt(var + F32(epsilon)) * w
    if bias is not None:
        y = y + _f(bias)
    return y.astype(F32)


def nn_softmax(x, axis: int = -1):
    """nn.softmax: exp(x - max(x)) / sum(exp(x - max(x))) along `axis`
    (negative axes count from the end)."""
    x = _f(x)
    m = np.max(x, axis=axis, keepdims=True)
    e = np.exp(x - m)
    return (e / np.sum(e, axis=axis, keepdims=True, dtype=F32)).astype(F32)


def nn_embedding(table, ids):
    """nn.embedding: table[ids] for `table` [vocab, d] and integer `ids` of any
    shape S -> S x [d]. Out-of-range ids are undefined behaviour in the
    spec; the reference rejects them."""
    t, i = _f(table), _i(ids)
    if i.size and (i.min() < 0 or i.max() >= t.shape[0]):
        raise IndexError("nn.embedding id outside [0, vocab) is undefined behaviour")
    return t[i]


# ---------------------------------------------------------------------------
# nn: attention
# ---------------------------------------------------------------------------

def nn_rotary(x, positions=None, theta: float = 10000.0, rotary_dim: int = 0,
              interleaved: bool = False):
    """nn.rotary (RoPE) for `x` [batch, seq, heads, head_dim].

    Pair i (0 <= i < rotary_dim/2) is rotated by angle
    position * theta^(-2i / rotary_dim); the pair is (i, i + rotary_dim/2)
    (rotate-half, GPT-NeoX / Llama) or (2i, 2i + 1) with `interleaved`
    (GPT-J). Rotation is the usual counter-clockwise one:
    (a, b) -> (a cos - b sin, a sin + b cos). Features past rotary_dim pass
    through; rotary_dim = 0 means head_dim. `positions` is [seq] or
    [batch, seq] (integers), default 0 .. seq-1.
    """
    x = _f(x)
    if x.ndim != 4:
        raise ValueError("nn.rotary input must be [batch, seq, heads, head_dim]")
    b, s, h, hd = x.shape
    rd = hd if rotary_dim == 0 else int(rotary_dim)
    if rd <= 0 or rd > hd or rd % 2:
        raise ValueError(f"invalid rotary_dim {rotary_dim} for head_dim {hd}")
    half = rd // 2
    if positions is None:
        pos = np.arange(s, dtype=np.float64)[None, :]           # [1, s]
    else:
        p = _i(positions)
        if p.shape == (s,):
            pos = p.astype(np.float64)[None, :]
        elif p.shape == (b, s):
            pos = p.astype(np.float64)
        else:
            raise ValueError(f"positions shape {p.shape} is neither [seq] nor [batch, seq]")
    th = float(F32(theta))
    inv_freq = th ** (-(2.0 * np.arange(half, dtype=np.float64)) / rd)   # [half]
    ang = pos[:, :, None, None] * inv_freq                                  # [b|1, s, 1, half]
    cos = np.cos(ang).astype(F32)
    sin = np.sin(ang).astype(F32)
    out = x.copy()
    if interleaved:
        a = x[..., 0:rd:2]
        bb = x[..., 1:rd:2]
        out[..., 0:rd:2] = a * cos - bb * sin
        out[..., 1:rd:2] = a * sin + bb * cos
    else:
        a = x[..., :half]
        bb = x[..., half:rd]
        out[..., :half] = a * cos - bb * sin
        out[..., half:rd] = a * sin + bb * cos
    return out


def nn_attention(query, key, value, causal: bool = True, scale: float = 0.0):
    """nn.attention: softmax(q k^T * scale + mask) v per head.

    q [batch, seq_q, heads, hd], k/v [batch, seq_kv, kv_heads, hd]; query head
    h reads kv head h // (heads // kv_heads). With `causal` query i sees keys
    j <= i + seq_kv - seq_q (mask aligned to the end). scale == 0 means
    1/sqrt(head_dim).

    A query that sees no key at all (causal with seq_q > seq_kv, rows
    i < seq_q - seq_kv) is not covered by the spec; the reference returns
    zeros for it (FlashAttention's convention) -- see README.
    """
    q, k, v = _f(query), _f(key), _f(value)
    bq, sq, hq, hd = q.shape
    bk, skv, hkv, hdk = k.shape
    if v.shape[:3] != k.shape[:3] or bq != bk or hd != hdk or hq % hkv:
        raise ValueError(f"bad attention shapes q{q.shape} k{k.shape} v{v.shape}")
    sc = F32(scale)
    if sc == 0:
        sc = F32(1.0 / math.sqrt(hd))
    group = hq // hkv
    kh = np.repeat(k, group, axis=2)          # kv head h // group for query head h
    vh = np.repeat(v, group, axis=2)
    qt = np.transpose(q, (0, 2, 1, 3))        # [b, h, sq, hd]
    kt = np.transpose(kh, (0, 2, 1, 3))
    vt = np.transpose(vh, (0, 2, 1, 3))
    s = np.matmul(qt, np.swapaxes(kt, -1, -2)) * sc          # [b, h, sq, skv]
    if causal:
        i = np.arange(sq)[:, None]
        j = np.arange(skv)[None, :]
        allowed = j <= i + (skv - sq)
    else:
        allowed = np.ones((sq, skv), dtype=bool)
    s = np.where(allowed, s, F32(-np.inf))
    m = np.max(s, axis=-1, keepdims=True)
    m = np.where(np.isfinite(m), m, F32(0))
    e = np.where(allowed, np.exp(s - m), F32(0)).astype(F32)
    den = np.sum(e, axis=-1, keepdims=True, dtype=F32)
    p = np.divide(e, den, out=np.zeros_like(e), where=den > 0)
    o = np.matmul(p, vt)                                         # [b, h, sq, hd]
    return np.transpose(o, (0, 2, 1, 3)).astype(F32)


# ---------------------------------------------------------------------------
# nn: shape, loss
# ---------------------------------------------------------------------------

def nn_reshape(x, shape: Sequence[int]):
    """nn.reshape: row-major reshape (one extent may be -1 for the dynamic one)."""
    return np.reshape(np.asarray(x), tuple(shape), order="C")


def nn_transpose(x, permutation: Sequence[int]):
    """nn.transpose: result dim i is input dim permutation[i]."""
    return np.transpose(np.asarray(x), tuple(permutation))


def nn_cross_entropy(logits, targets, mask=None):
    """nn.cross_entropy: per position loss = logsumexp(logits) - logits[target];
    result (0-d float32) = sum(mask * loss) / max(sum(mask), 1); no mask means
    a mask of ones."""
    lg, tg = _f(logits), _i(targets)
    if lg.shape[:-1] != tg.shape:
        raise ValueError(f"targets {tg.shape} vs logits {lg.shape}")
    if tg.size and (tg.min() < 0 or tg.max() >= lg.shape[-1]):
        raise IndexError("target outside [0, vocab)")
    m = np.max(lg, axis=-1, keepdims=True)
    lse = (m + np.log(np.sum(np.exp(lg - m), axis=-1, keepdims=True, dtype=F32)))[..., 0]
    picked = np.take_along_axis(lg, tg[..., None], axis=-1)[..., 0]
    loss = (lse - picked).astype(F32)
    mk = np.ones_like(loss) if mask is None else _f(mask)
    if mk.shape != tg.shape:
        raise ValueError(f"mask {mk.shape} vs targets {tg.shape}")
    num = np.sum(mk * loss, dtype=F32)
    den = np.maximum(np.sum(mk, dtype=F32), F32(1))
    return _scalar_f32(num / den)


# ---------------------------------------------------------------------------
# moe: routing
# ---------------------------------------------------------------------------

def moe_gate(x, weight, bias=None, jitter_eps: float = 0.0, jitter_u=None):
    """moe.gate: logits = (x * u) @ weight (+ bias), x [T, D], weight [D, E].

    `u` is 1 unless jitter_eps > 0 and a seed is given, in which case the
    compiler draws u ~ Uniform(1 - eps, 1 + eps) elementwise ([T, D]) from an
    implementation-defined counter-based generator. The reference therefore
    takes the multipliers explicitly: pass `jitter_u` ([T, D], or anything
    broadcastable) to model "seed present"; `jitter_u=None` models "no seed".
    With jitter_eps == 0 a given `jitter_u` is ignored (the seed has no effect).
    """
    x, w = _f(x), _f(weight)
    if x.ndim != 2 or w.ndim != 2 or x.shape[1] != w.shape[0]:
        raise ValueError(f"moe.gate shapes x{x.shape} weight{w.shape}")
    eps = F32(jitter_eps)
    if eps > 0 and jitter_u is not None:
        u = _f(jitter_u)
        if np.any(u < F32(1) - eps) or np.any(u > F32(1) + eps):
            raise ValueError("jitter multipliers outside [1 - eps, 1 + eps]")
        x = x * u
    y = np.matmul(x, w)
    if bias is not None:
        y = y + _f(bias)
    return y.astype(F32)


def _probs(logits: np.ndarray, score: str) -> np.ndarray:
    if score in ("softmax", "sparse_mixer"):
        return nn_softmax(logits, axis=-1)
    if score == "sigmoid":
        return nn_sigmoid(logits)
    raise ValueError(f"unknown score function {score!r}")


SPARSE_MIXER_EPS = F32(0.01)


def _sparse_mixer_weights(row: np.ndarray, picks: List[int]) -> List[np.float32]:
    """SparseMixer's weights for one token's logits `row` and its two picks
    (written from onnxruntime's CUDA kernel sparse_mixer_top2): for pick j
    with logit m, the experts e whose logit x is within a relative 2 * eps
    of it, i.e. not (m - x > 2 * eps * max(|x|, m)), form a softmax, and the
    pick's weight is its share exp(0) / sum exp(x - m); the second pick's
    softmax leaves out the first pick. All float32, summed in expert order.
    (The kernel seeds its arg-max with -1, so it differs when the best or
    second best logit is below -1; this is the top-2 it means.)"""
    weights = []
    for j, pick in enumerate(picks):
        m = F32(row[pick])
        total = F32(0)
        for e, x in enumerate(row):
            if j == 1 and e == picks[0]:
                continue
            factor = max(F32(abs(x)), m)
            if not F32(m - x) > F32(F32(2) * SPARSE_MIXER_EPS) * factor:
                total = F32(total + np.exp(F32(x - m)))
        weights.append(F32(F32(1) / total))
    return weights


def moe_token_choice(logits, k: int, score: str = "softmax", bias=None,
                     normalize: bool = False, num_groups: int = 1,
                     topk_groups: int = 1, scaling_factor: float = 1.0):
    """moe.token_choice: every token picks k experts. Returns
    (weights [T, k] float32, indices [T, k] int32, probs [T, E] float32).

    1. probs = softmax(logits) over experts, or sigmoid(logits).
    2. selection scores sel = probs + bias (bias [E] optional; selection only).
    3. num_groups = G > 1: experts form G equal contiguous groups
       (experts g*E/G .. (g+1)*E/G - 1); group score = sum of its two best
       selection scores (float32 add; the single score when E/G == 1); the
       topk_groups best groups (ties to the lower group index) stay eligible.
    4. indices = the k eligible experts with the highest sel, best first,
       ties to the lower expert index.
    5. weights = probs[t, indices], divided by their float32 sum (summed best
       first) when normalize, then multiplied by scaling_factor (f32).

    score = "sparse_mixer" (onnxruntime's use_sparse_mixer, Phi-3.5-MoE;
    k = 2, no bias, groups or normalize) ranks the logits themselves and
    replaces step 5: see _sparse_mixer_weights. probs = softmax(logits).
    """
    lg = _f(logits)
    if lg.ndim != 2:
        raise ValueError("logits must be [T, E]")
    T, E = lg.shape
    k = int(k)
    G = int(num_groups)
    if k <= 0 or G <= 0 or E % G:
        raise ValueError(f"invalid k={k} / num_groups={G} for E={E}")
    S = E // G
    kg = int(topk_groups) if G > 1 else G
    if not 1 <= kg <= G:
        raise ValueError(f"invalid topk_groups={topk_groups} for num_groups={G}")
    if k > kg * S:
        raise ValueError(f"k={k} exceeds the {kg * S} eligible experts")
    if score == "sparse_mixer" and (k != 2 or bias is not None or G != 1 or
                                    normalize):
        raise ValueError("sparse_mixer needs k = 2 and takes no bias, groups "
                         "or normalize")
    probs = _probs(lg, score)
    if score == "sparse_mixer":
        sel = lg
    else:
        sel = probs + _f(bias) if bias is not None else probs
    sel = sel.astype(F32)
    sf = F32(scaling_factor)

    weights = np.zeros((T, k), dtype=F32)
    indices = np.zeros((T, k), dtype=I32)
    for t in range(T):
        row = sel[t]
        # 3. group-limited eligibility
        if G > 1:
            gscores = []
            for g in range(G):
                members = sorted((float(row[e]) for e in range(g * S, (g + 1) * S)),
                                 reverse=True)
                if S == 1:
                    gs = F32(members[0])
                else:
                    gs = F32(members[0]) + F32(members[1])
                gscores.append((-float(gs), g))
            kept_groups = [g for _, g in sorted(gscores)[:kg]]
            eligible = [e for g in sorted(kept_groups) for e in range(g * S, (g + 1) * S)]
        else:
            eligible = list(range(E))
        # 4. top-k, best first, ties to the lower index
        ranked = sorted(eligible, key=lambda e: (-float(row[e]), e))[:k]
        # 5. weights
        if score == "sparse_mixer":
            w = _sparse_mixer_weights(lg[t], ranked)
        else:
            w = [F32(probs[t, e]) for e in ranked]
        if normalize:
            s = F32(0)
            for v in w:
                s = F32(s + v)
            w = [F32(v / s) for v in w]
        for j, e in enumerate(ranked):
            indices[t, j] = e
            weights[t, j] = F32(w[j] * sf)
    return weights, indices, probs


def moe_expert_choice(logits, capacity_factor: float):
    """moe.expert_choice: each expert picks its C best tokens.

    probs = softmax(logits) [T, E]; C = min(T, ceil((cf * T) / E)) (double);
    expert e takes the C tokens with the highest probs[:, e], ties to the lower
    token index. Row plan: R = E * C, offsets[e] = e * C, rows of one expert in
    increasing token order, row_weight = probs[token, e].
    Returns (row_token [R] int32, row_weight [R] f32, offsets [E+1] int32,
    probs [T, E] f32).
    """
    lg = _f(logits)
    T, E = lg.shape
    probs = nn_softmax(lg, axis=-1)
    C = expert_choice_capacity(capacity_factor, T, E)
    row_token = np.zeros(E * C, dtype=I32)
    row_weight = np.zeros(E * C, dtype=F32)
    offsets = np.zeros(E + 1, dtype=I32)
    for e in range(E):
        col = probs[:, e]
        # best first, ties to the lower token index; keep C; then token order
        chosen = sorted(sorted(range(T), key=lambda t: (-float(col[t]), t))[:C])
        for c, t in enumerate(chosen):
            row_token[e * C + c] = t
            row_weight[e * C + c] = col[t]
        offsets[e + 1] = (e + 1) * C
    return row_token, row_weight, offsets, probs


# ---------------------------------------------------------------------------
# moe: dispatch
# ---------------------------------------------------------------------------

def _priority_tokens(weights: np.ndarray, batch_prioritized: bool) -> List[int]:
    T = weights.shape[0]
    if not batch_prioritized:
        return list(range(T))
    top1 = weights[:, 0]
    return sorted(range(T), key=lambda t: (-float(top1[t]), t))


def moe_dispatch_kept(indices, weights, num_experts: int,
                      capacity_factor: Optional[float] = None,
                      batch_prioritized: bool = False) -> np.ndarray:
    """Boolean [T, k] mask of the (token, choice) assignments moe.dispatch keeps.

    Assignments are visited in priority order: choice rank j = 0, 1, ..., and
    within one rank tokens in increasing order, or with batch_prioritized by
    decreasing weights[t, 0] (ties to the lower token index). An assignment to
    expert e is kept iff e has kept fewer than C assignments so far. Dropless
    (capacity_factor None) keeps everything.
    """
    idx = _i(indices)
    w = _f(weights)
    if idx.ndim != 2 or idx.shape != w.shape:
        raise ValueError(f"indices {idx.shape} / weights {w.shape} must both be [T, k]")
    T, k = idx.shape
    E = int(num_experts)
    if idx.size and (idx.min() < 0 or idx.max() >= E):
        raise ValueError("indices must lie in [0, num_experts)")
    kept = np.zeros((T, k), dtype=bool)
    if capacity_factor is None:
        kept[:] = True
        return kept
    C = token_choice_capacity(capacity_factor, T, k, E)
    load = [0] * E
    order = _priority_tokens(w, batch_prioritized)
    for j in range(k):
        for t in order:
            e = int(idx[t, j])
            if load[e] < C:
                load[e] += 1
                kept[t, j] = True
    return kept


def moe_dropped_assignments(indices, weights, num_experts: int,
                            capacity_factor: Optional[float] = None,
                            batch_prioritized: bool = False) -> Set[Tuple[int, int]]:
    """The set of (token, choice) pairs that moe.dispatch drops (no row)."""
    kept = moe_dispatch_kept(indices, weights, num_experts, capacity_factor,
                             batch_prioritized)
    return {(int(t), int(j)) for t, j in zip(*np.nonzero(~kept))}


def moe_dispatch(indices, weights, num_experts: int,
                 capacity_factor: Optional[float] = None,
                 batch_prioritized: bool = False):
    """moe.dispatch: token-choice routing -> row plan.

    Returns (row_token [R] int32, row_weight [R] f32, offsets [E+1] int32) with
    R = T*k (dropless) or min(T*k, E*C), C = ceil(((cf*T)*k)/E) in double.
    Rows offsets[e] .. offsets[e+1] are expert e's kept assignments in
    increasing token order (the same token twice -- duplicate indices, which
    token_choice never produces -- in increasing choice rank); row_weight is
    weights[t, j]; rows past offsets[E] have token -1 and weight 0.
    """
    idx = _i(indices)
    w = _f(weights)
    kept = moe_dispatch_kept(idx, w, num_experts, capacity_factor, batch_prioritized)
    T, k = idx.shape
    E = int(num_experts)
    R = token_choice_rows(T, k, E, capacity_factor)
    per_expert: List[List[Tuple[int, int]]] = [[] for _ in range(E)]
    for t in range(T):                 # token order, then choice rank
        for j in range(k):
            if kept[t, j]:
                per_expert[int(idx[t, j])].append((t, j))
    row_token = np.full(R, -1, dtype=I32)
    row_weight = np.zeros(R, dtype=F32)
    offsets = np.zeros(E + 1, dtype=I32)
    r = 0
    for e in range(E):
        for t, j in per_expert[e]:
            row_token[r] = t
            row_weight[r] = w[t, j]
            r += 1
        offsets[e + 1] = r
    assert r <= R
    return row_token, row_weight, offsets


# ---------------------------------------------------------------------------
# moe: permute, experts, combine
# ---------------------------------------------------------------------------

def moe_permute(x, row_token):
    """moe.permute: result[r] = x[row_token[r]], zero rows where row_token == -1."""
    x, rt = _f(x), _i(row_token)
    out = np.zeros((rt.shape[0], x.shape[1]), dtype=F32)
    for r in range(rt.shape[0]):
        if rt[r] >= 0:
            out[r] = x[rt[r]]
    return out


_ACTIVATIONS = ("relu", "gelu", "gelu_tanh", "silu", "swiglu", "geglu",
                "identity", "relu2", "geglu_tanh")
_GATED = ("swiglu", "geglu", "geglu_tanh")


def _act(h: np.ndarray, activation: str) -> np.ndarray:
    if activation == "relu":
        return nn_relu(h)
    if activation == "relu2":
        r = nn_relu(h)
        return (r * r).astype(F32)
    if activation == "identity":
        return h
    if activation in ("gelu", "geglu"):
        return nn_gelu(h, "none")
    if activation in ("gelu_tanh", "geglu_tanh"):
        return nn_gelu(h, "tanh")
    if activation in ("silu", "swiglu"):
        return nn_silu(h)
    raise ValueError(f"unknown activation {activation!r}")


def _swiglu(g, lin, alpha: float, beta: float, limit: Optional[float]):
    """onnxruntime's SwiGLU: G = min(g, limit), L = clamp(lin, -limit, limit),
    G * sigmoid(alpha * G) * (L + beta); no clamp when limit is None."""
    g, lin = _f(g), _f(lin)
    if limit is not None:
        g = np.minimum(g, F32(limit))
        lin = np.clip(lin, F32(-limit), F32(limit))
    return (g * nn_sigmoid(F32(alpha) * g) * (lin + F32(beta))).astype(F32)


def _check_swiglu_parameters(activation, alpha, beta, limit):
    if activation != "swiglu" and (alpha != 1.0 or beta != 0.0 or
                                   limit is not None):
        raise ValueError(f"SwiGLU parameters with activation {activation!r}")
    if limit is not None and not limit > 0:
        raise ValueError(f"swiglu_limit must be positive, got {limit}")


def _ffn(x, w1, w2, activation, w3=None, b1=None, b2=None, b3=None,
         swiglu_alpha: float = 1.0, swiglu_beta: float = 0.0,
         swiglu_limit: Optional[float] = None):
    """The FFN of one expert on rows x [n, D]."""
    if activation not in _ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}")
    _check_swiglu_parameters(activation, swiglu_alpha, swiglu_beta,
                             swiglu_limit)
    gated = activation in _GATED
    if gated and w3 is None:
        raise ValueError(f"{activation} needs fc3")
    if not gated and (w3 is not None or b3 is not None):
        raise ValueError(f"{activation} must not have fc3")
    h = np.matmul(x, w1)
    if b1 is not None:
        h = h + b1
    h = h.astype(F32)
    if gated:
        lin = np.matmul(x, w3)
        if b3 is not None:
            lin = lin + b3
        if activation == "swiglu":
            h = _swiglu(h, lin, swiglu_alpha, swiglu_beta, swiglu_limit)
        else:
            h = _act(h, activation) * lin
    else:
        h = _act(h, activation)
    y = np.matmul(h.astype(F32), w2)
    if b2 is not None:
        y = y + b2
    return y.astype(F32)


def moe_expert_ffn(x, offsets, fc1, fc2, activation: str, fc3=None,
                   fc1_bias=None, fc2_bias=None, fc3_bias=None,
                   swiglu_alpha: float = 1.0, swiglu_beta: float = 0.0,
                   swiglu_limit: Optional[float] = None):
    """moe.expert_ffn: for each expert e, rows offsets[e] .. offsets[e+1] of
    x [R, D] go through g = x @ fc1[e] + fc1_bias[e], l = x @ fc3[e] + b3[e],
        h = act(g)          relu/relu2 (relu^2)/gelu/gelu_tanh/silu/identity
        h = act(g) * l      geglu (exact gelu) / geglu_tanh (tanh gelu)
        h = G * sigmoid(alpha * G) * (L + beta)                 swiglu
            G = min(g, limit), L = clamp(l, -limit, limit)
        y = h @ fc2[e] + fc2_bias[e]
    fc1/fc3 [E, D, F], fc2 [E, F, D_out], biases [E, F] / [E, D_out], all
    optional except fc1, fc2 (fc3 required for the gated activations,
    forbidden otherwise). swiglu_alpha/beta/limit (defaults 1, 0, None = no
    clamp: plain silu(g) * l) are allowed with swiglu only. Rows past
    offsets[E] are zero. Result [R, D_out].
    """
    x, off = _f(x), _i(offsets)
    w1, w2 = _f(fc1), _f(fc2)
    w3 = None if fc3 is None else _f(fc3)
    b1 = None if fc1_bias is None else _f(fc1_bias)
    b2 = None if fc2_bias is None else _f(fc2_bias)
    b3 = None if fc3_bias is None else _f(fc3_bias)
    E = w1.shape[0]
    if off.shape != (E + 1,):
        raise ValueError(f"offsets {off.shape} must be [E + 1] = [{E + 1}]")
    if off[0] != 0 or np.any(np.diff(off) < 0) or off[E] > x.shape[0]:
        raise ValueError(f"offsets {off.tolist()} are not a row plan over {x.shape[0]} rows")
    out = np.zeros((x.shape[0], w2.shape[2]), dtype=F32)
    for e in range(E):
        lo, hi = int(off[e]), int(off[e + 1])
        if hi == lo:
            continue
        out[lo:hi] = _ffn(x[lo:hi], w1[e], w2[e], activation,
                          None if w3 is None else w3[e],
                          None if b1 is None else b1[e],
                          None if b2 is None else b2[e],
                          None if b3 is None else b3[e],
                          swiglu_alpha, swiglu_beta, swiglu_limit)
    return out


def moe_combine(x, row_token, row_weight, init):
    """moe.combine: result = init, then for r = 0, 1, ... in row order
    result[row_token[r]] += row_weight[r] * x[r] for rows with row_token >= 0
    (float32 product, float32 accumulation in row order)."""
    x, rt, rw = _f(x), _i(row_token), _f(row_weight)
    out = _f(init).copy()
    for r in range(rt.shape[0]):
        t = rt[r]
        if t >= 0:
            out[t] = out[t] + rw[r] * x[r]
    return out


def moe_shared_expert(x, fc1, fc2, activation: str, fc3=None, gate=None):
    """moe.shared_expert: the expert FFN with one expert on every token
    (fc1, fc3 [D, F], fc2 [F, D_out]; no biases); with `gate` [D, 1] the
    output row t is scaled by sigmoid(x[t] @ gate)."""
    x = _f(x)
    y = _ffn(x, _f(fc1), _f(fc2), activation, None if fc3 is None else _f(fc3))
    if gate is not None:
        g = nn_sigmoid(np.matmul(x, _f(gate)))       # [T, 1]
        y = y * g
    return y.astype(F32)


# ---------------------------------------------------------------------------
# moe: losses and statistics
# ---------------------------------------------------------------------------

def moe_load_balancing_loss(probs, indices):
    """moe.load_balancing_loss: E * sum_e f_e * P_e (0-d f32), f_e = fraction
    of the T*k entries of indices equal to e (before capacity), P_e =
    mean_t probs[t, e]. T = 0 gives 0 (the spec leaves 0/0 open)."""
    p, idx = _f(probs), _i(indices)
    T, E = p.shape
    n = idx.size
    if n == 0 or T == 0:
        return _scalar_f32(0.0)
    counts = [0] * E
    for v in idx.reshape(-1):
        counts[int(v)] += 1
    f = np.asarray(counts, dtype=F32) / F32(n)
    P = np.mean(p, axis=0, dtype=F32)
    return _scalar_f32(F32(E) * np.sum(f * P, dtype=F32))


def moe_z_loss(logits):
    """moe.z_loss: mean_t (logsumexp_e logits[t, e])^2 (0-d f32)."""
    lg = _f(logits)
    if lg.shape[0] == 0:
        return _scalar_f32(0.0)
    m = np.max(lg, axis=-1, keepdims=True)
    lse = (m + np.log(np.sum(np.exp(lg - m), axis=-1, keepdims=True, dtype=F32)))[:, 0]
    return _scalar_f32(np.mean(lse * lse, dtype=F32))


def moe_routing_stats(offsets, indices=None):
    """moe.routing_stats -> (tokens_per_expert [E] int64, dropped 0-d int64).

    With indices: tokens_per_expert[e] = number of entries of indices equal to
    e (before capacity) and dropped = indices.size - offsets[E]. Without:
    tokens_per_expert = offsets[e+1] - offsets[e] and dropped = 0.
    """
    off = _i(offsets)
    E = off.shape[0] - 1
    if indices is None:
        tpe = np.asarray([off[e + 1] - off[e] for e in range(E)], dtype=I64)
        return tpe, np.asarray(0, dtype=I64)
    idx = _i(indices)
    counts = [0] * E
    for v in idx.reshape(-1):
        counts[int(v)] += 1
    return (np.asarray(counts, dtype=I64),
            np.asarray(int(idx.size) - int(off[E]), dtype=I64))


# ---------------------------------------------------------------------------
# moe.layer (composition of passes/Passes.td moe-decompose-layer)
# ---------------------------------------------------------------------------

def moe_layer(x, router_weight, fc1, fc2, *, routing: str, activation: str,
              router_bias=None, selection_bias=None, fc3=None, fc1_bias=None,
              fc2_bias=None, fc3_bias=None, shared_fc1=None, shared_fc2=None,
              shared_fc3=None, shared_gate=None, jitter_eps: float = 0.0,
              jitter_u=None, score: str = "softmax", k: int = 1,
              normalize: bool = False, num_groups: int = 1, topk_groups: int = 1,
              scaling_factor: float = 1.0,
              capacity_factor: Optional[float] = None,
              batch_prioritized: bool = False,
              swiglu_alpha: float = 1.0, swiglu_beta: float = 0.0,
              swiglu_limit: Optional[float] = None,
              return_intermediates: bool = False):
    """moe.layer, composed exactly as `moe-decompose-layer` rewrites it:

        logits = moe.gate(x, router_weight, router_bias, jitter)
        token_choice: w, idx, p = moe.token_choice(logits, ...selection_bias...)
                      rt, rw, off = moe.dispatch(idx, w, E, capacity_factor, bp)
        expert_choice: rt, rw, off, p = moe.expert_choice(logits, capacity_factor)
        xs = moe.permute(x, rt); ys = moe.expert_ffn(xs, off, ...)
        acc = moe.shared_expert(x, ...) if shared_fc1 else zeros
        out = moe.combine(ys, rt, rw, into=acc)
        aux = moe.load_balancing_loss(p, idx)   (0 for expert choice)
        z = moe.z_loss(logits)
        load, dropped = moe.routing_stats(off, idx)  (no indices for expert choice)

    Returns (output, aux_loss, z_loss, tokens_per_expert, dropped), plus a dict
    of intermediates when return_intermediates. `jitter_u` models the seed (see
    moe_gate). For expert choice, k/score/normalize/groups/scaling_factor/
    selection_bias/batch_prioritized are not used (expert_choice always uses
    softmax). swiglu_alpha/beta/limit are the experts' SwiGLU parameters (see
    moe_expert_ffn); the shared expert has none, so they exclude one.
    """
    x = _f(x)
    E = _f(router_weight).shape[1]
    logits = moe_gate(x, router_weight, router_bias, jitter_eps, jitter_u)
    inter: Dict[str, object] = {"logits": logits}
    if routing == "token_choice":
        w, idx, p = moe_token_choice(logits, k, score, selection_bias, normalize,
                                     num_groups, topk_groups, scaling_factor)
        rt, rw, off = moe_dispatch(idx, w, E, capacity_factor, batch_prioritized)
        inter.update(weights=w, indices=idx, probs=p,
                     dropped_set=moe_dropped_assignments(idx, w, E, capacity_factor,
                                                         batch_prioritized))
    elif routing == "expert_choice":
        if capacity_factor is None:
            raise ValueError("expert_choice needs a capacity_factor")
        rt, rw, off, p = moe_expert_choice(logits, capacity_factor)
        idx = None
        inter.update(probs=p)
    else:
        raise ValueError(f"unknown routing {routing!r}")
    inter.update(row_token=rt, row_weight=rw, offsets=off)
    xs = moe_permute(x, rt)
    ys = moe_expert_ffn(xs, off, fc1, fc2, activation, fc3, fc1_bias, fc2_bias,
                        fc3_bias, swiglu_alpha, swiglu_beta, swiglu_limit)
    if shared_fc1 is not None:
        if shared_fc2 is None:
            raise ValueError("shared_fc1 without shared_fc2")
        if swiglu_alpha != 1.0 or swiglu_beta != 0.0 or swiglu_limit is not None:
            raise ValueError("SwiGLU parameters with a shared expert")
        acc = moe_shared_expert(x, shared_fc1, shared_fc2, activation, shared_fc3,
                                shared_gate)
    else:
        acc = np.zeros((x.shape[0], _f(fc2).shape[2]), dtype=F32)
    inter.update(permuted=xs, expert_out=ys, init=acc)
    out = moe_combine(ys, rt, rw, acc)
    if idx is not None:
        aux = moe_load_balancing_loss(p, idx)
    else:
        aux = _scalar_f32(0.0)
    z = moe_z_loss(logits)
    load, dropped = moe_routing_stats(off, idx)
    result = (out, aux, z, load, dropped)
    if return_intermediates:
        return result + (inter,)
    return result


OPS = {
    "nn.add": nn_add, "nn.sub": nn_sub, "nn.mul": nn_mul, "nn.div": nn_div,
    "nn.pow": nn_pow, "nn.neg": nn_neg, "nn.exp": nn_exp, "nn.log": nn_log,
    "nn.sqrt": nn_sqrt, "nn.rsqrt": nn_rsqrt, "nn.reciprocal": nn_reciprocal,
    "nn.tanh": nn_tanh, "nn.erf": nn_erf, "nn.sigmoid": nn_sigmoid,
    "nn.relu": nn_relu, "nn.silu": nn_silu, "nn.gelu": nn_gelu,
    "nn.linear": nn_linear, "nn.matmul": nn_matmul, "nn.rms_norm": nn_rms_norm,
    "nn.layer_norm": nn_layer_norm, "nn.softmax": nn_softmax,
    "nn.embedding": nn_embedding, "nn.rotary": nn_rotary,
    "nn.attention": nn_attention, "nn.reshape": nn_reshape,
    "nn.transpose": nn_transpose, "nn.cross_entropy": nn_cross_entropy,
    "moe.gate": moe_gate, "moe.token_choice": moe_token_choice,
    "moe.expert_choice": moe_expert_choice, "moe.dispatch": moe_dispatch,
    "moe.permute": moe_permute, "moe.expert_ffn": moe_expert_ffn,
    "moe.combine": moe_combine, "moe.shared_expert": moe_shared_expert,
    "moe.load_balancing_loss": moe_load_balancing_loss,
    "moe.z_loss": moe_z_loss, "moe.routing_stats": moe_routing_stats,
    "moe.layer": moe_layer,
}
