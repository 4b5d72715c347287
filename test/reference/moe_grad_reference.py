"""Float64 NumPy gradients (vector-Jacobian products) of the moe ops.

Written from the op descriptions (dialects/MoE/MoEOps.td) and calculus, not
from compiler code. Each `<op>_grad` takes the gradients of the op's results
and returns the gradients of its floating-point operands; each `<op>_fwd` is
the float64 forward it differentiates, with routing decisions (indices, row
plans) passed in fixed: they are piecewise constant and pass no gradient.
test_moe_grad_reference.py checks every gradient against central finite
differences of the forward, and the forwards against moe_reference.py.
"""
import numpy as np

F64 = np.float64


def _d(x):
    return None if x is None else np.asarray(x, dtype=F64)


# ---------------------------------------------------------------------------
# Scores and activations
# ---------------------------------------------------------------------------

def softmax(x):
    x = _d(x)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-_d(x)))


def probs_fwd(logits, score):
    return softmax(logits) if score == "softmax" else sigmoid(logits)


def probs_grad(logits, dp, score):
    """d logits from d probs."""
    p = probs_fwd(logits, score)
    if score == "softmax":
        return p * (dp - (dp * p).sum(axis=-1, keepdims=True))
    return dp * p * (1.0 - p)


def _erf(x):
    from math import erf
    return np.vectorize(erf)(x)


def act(z, activation):
    if activation == "relu":
        return np.maximum(z, 0.0)
    if activation == "relu2":
        return np.maximum(z, 0.0) ** 2
    if activation == "identity":
        return z
    if activation in ("silu", "swiglu"):
        return z * sigmoid(z)
    if activation in ("gelu", "geglu"):
        return 0.5 * z * (1.0 + _erf(z / np.sqrt(2.0)))
    if activation in ("gelu_tanh", "geglu_tanh"):
        c = np.sqrt(2.0 / np.pi)
        return 0.5 * z * (1.0 + np.tanh(c * (z + 0.044715 * z ** 3)))
    raise ValueError(activation)


def act_grad(z, activation):
    """d act / dz."""
    if activation == "relu":
        return (z > 0).astype(F64)
    if activation == "relu2":
        return 2.0 * np.maximum(z, 0.0)
    if activation == "identity":
        return np.ones_like(z)
    if activation in ("silu", "swiglu"):
        s = sigmoid(z)
        return s + z * s * (1.0 - s)
    if activation in ("gelu", "geglu"):
        cdf = 0.5 * (1.0 + _erf(z / np.sqrt(2.0)))
        return cdf + z * np.exp(-0.5 * z * z) / np.sqrt(2.0 * np.pi)
    if activation in ("gelu_tanh", "geglu_tanh"):
        c, a = np.sqrt(2.0 / np.pi), 0.044715
        t = np.tanh(c * (z + a * z ** 3))
        return 0.5 * (1.0 + t) + 0.5 * z * (1.0 - t * t) * c * (1.0 + 3 * a * z * z)
    raise ValueError(activation)


GATED = ("swiglu", "geglu", "geglu_tanh")


def gate_act(z1, activation, alpha=1.0, limit=None):
    """(a, da/dz1): the activated gate projection of a gated activation. For
    swiglu a = G sigmoid(alpha G) with G = min(z1, limit), whose derivative
    is 0 where the limit clips z1."""
    if activation != "swiglu":
        return act(z1, activation), act_grad(z1, activation)
    g = z1 if limit is None else np.minimum(z1, limit)
    s = sigmoid(alpha * g)
    da = s + alpha * g * s * (1.0 - s)
    if limit is not None:
        da = np.where(z1 > limit, 0.0, da)
    return g * s, da


def gate_factor(z3, beta=0.0, limit=None):
    """(f, df/dz3) for the factor f = clamp(z3, -limit, limit) + beta that
    multiplies the activated gate (z3 itself by default)."""
    if limit is None:
        return z3 + beta, np.ones_like(z3)
    return (np.clip(z3, -limit, limit) + beta,
            (np.abs(z3) <= limit).astype(F64))


# ---------------------------------------------------------------------------
# moe.gate: logits = (x * u) @ w + b
# ---------------------------------------------------------------------------

def gate_fwd(x, w, b=None, u=None):
    xu = _d(x) if u is None else _d(x) * _d(u)
    out = xu @ _d(w)
    return out if b is None else out + _d(b)


def gate_grad(dl, x, w, u=None):
    """-> (d input, d weight, d bias)."""
    dl, x, w = _d(dl), _d(x), _d(w)
    u = np.ones_like(x) if u is None else _d(u)
    return (dl @ w.T) * u, (x * u).T @ dl, dl.sum(axis=0)


# ---------------------------------------------------------------------------
# moe.token_choice with fixed indices
# ---------------------------------------------------------------------------

def select_experts(logits, k, score="softmax", bias=None, num_groups=1,
                   topk_groups=1):
    """Top-k selection of the spec (selection scores probs + bias, groups
    scored by their two best, ties to the lower index), in float64."""
    s = probs_fwd(logits, score)
    if bias is not None:
        s = s + _d(bias)
    T, E = s.shape
    out = np.zeros((T, k), np.int32)
    for t in range(T):
        eligible = np.ones(E, bool)
        if num_groups > 1:
            size = E // num_groups
            gs = [np.sort(s[t, g * size:(g + 1) * size])[::-1][:2].sum()
                  for g in range(num_groups)]
            order = sorted(range(num_groups), key=lambda g: (-gs[g], g))
            eligible[:] = False
            for g in order[:topk_groups]:
                eligible[g * size:(g + 1) * size] = True
        cands = sorted(np.flatnonzero(eligible), key=lambda e: (-s[t, e], e))
        out[t] = cands[:k]
    return out


def token_choice_fwd(logits, indices, score="softmax", normalize=False,
                     scaling_factor=1.0):
    """(weights [T, k], probs [T, E]) for fixed indices."""
    p = probs_fwd(logits, score)
    w = np.take_along_axis(p, np.asarray(indices, np.int64), axis=1)
    if normalize:
        w = w / w.sum(axis=1, keepdims=True)
    return w * scaling_factor, p


def token_choice_grad(logits, indices, dw=None, dp=None, score="softmax",
                      normalize=False, scaling_factor=1.0):
    """d logits from d weights and d probs (either may be None)."""
    logits = _d(logits)
    p = probs_fwd(logits, score)
    idx = np.asarray(indices, np.int64)
    total = np.zeros_like(p) if dp is None else _d(dp).copy()
    if dw is not None:
        dw = _d(dw) * scaling_factor
        sel = np.take_along_axis(p, idx, axis=1)
        if normalize:
            # w = sel / S: d sel_i = dw_i / S - sum_j dw_j sel_j / S^2.
            S = sel.sum(axis=1, keepdims=True)
            dsel = dw / S - (dw * sel).sum(axis=1, keepdims=True) / S ** 2
        else:
            dsel = dw
        for t in range(p.shape[0]):
            for j in range(idx.shape[1]):
                total[t, idx[t, j]] += dsel[t, j]
    return probs_grad(logits, total, score)


# ---------------------------------------------------------------------------
# moe.expert_choice with a fixed plan
# ---------------------------------------------------------------------------

def expert_choice_select(logits, capacity_factor):
    """(row_token, offsets) of the spec in float64: each expert's top
    C = min(T, ceil(cf * T / E)) tokens, in increasing token order."""
    import math
    p = softmax(logits)
    T, E = p.shape
    C = min(T, math.ceil((capacity_factor * T) / E))
    rows = []
    for e in range(E):
        chosen = sorted(sorted(range(T), key=lambda t: (-p[t, e], t))[:C])
        rows += chosen
    return np.array(rows, np.int32), np.arange(E + 1, dtype=np.int32) * C


def _row_experts(offsets, rows):
    expert = np.full(rows, -1, np.int64)
    for e in range(len(offsets) - 1):
        expert[offsets[e]:offsets[e + 1]] = e
    return expert


def expert_choice_fwd(logits, row_token, offsets):
    """(row_weight [R], probs) for a fixed plan."""
    p = softmax(logits)
    expert = _row_experts(offsets, len(row_token))
    rw = np.array([p[t, e] if t >= 0 and e >= 0 else 0.0
                   for t, e in zip(row_token, expert)])
    return rw, p


def expert_choice_grad(logits, row_token, offsets, drw=None, dp=None):
    p = softmax(logits)
    total = np.zeros_like(p) if dp is None else _d(dp).copy()
    if drw is not None:
        expert = _row_experts(offsets, len(row_token))
        for r, (t, e) in enumerate(zip(row_token, expert)):
            if t >= 0 and e >= 0:
                total[t, e] += drw[r]
    return probs_grad(logits, total, "softmax")


# ---------------------------------------------------------------------------
# moe.dispatch (weights -> row_weight for a fixed plan), permute, combine
# ---------------------------------------------------------------------------

def dispatch_fwd(weights, indices, row_token, offsets):
    """row_weight [R] of a fixed plan: the weight of the choice j of token
    row_token[r] with indices[t, j] == the row's expert."""
    weights = _d(weights)
    expert = _row_experts(offsets, len(row_token))
    rw = np.zeros(len(row_token))
    for r, (t, e) in enumerate(zip(row_token, expert)):
        if t >= 0 and e >= 0:
            (j,) = np.flatnonzero(np.asarray(indices[t]) == e)
            rw[r] = weights[t, j]
    return rw


def dispatch_grad(drw, indices, row_token, offsets):
    expert = _row_experts(offsets, len(row_token))
    dw = np.zeros(np.asarray(indices).shape)
    for r, (t, e) in enumerate(zip(row_token, expert)):
        if t >= 0 and e >= 0:
            (j,) = np.flatnonzero(np.asarray(indices[t]) == e)
            dw[t, j] += drw[r]
    return dw


def permute_fwd(x, row_token):
    x = _d(x)
    return np.stack([x[t] if t >= 0 else np.zeros(x.shape[1])
                     for t in row_token]) if len(row_token) else \
        np.zeros((0, x.shape[1]))


def permute_grad(dxs, row_token, tokens):
    dx = np.zeros((tokens, dxs.shape[1]))
    for r, t in enumerate(row_token):
        if t >= 0:
            dx[t] += dxs[r]
    return dx


def combine_fwd(x, row_token, row_weight, init):
    out = _d(init).copy()
    for r, t in enumerate(row_token):
        if t >= 0:
            out[t] += row_weight[r] * _d(x)[r]
    return out


def combine_grad(dy, x, row_token, row_weight):
    """-> (d input, d row_weight, d init)."""
    dy, x = _d(dy), _d(x)
    dx = np.zeros_like(x)
    drw = np.zeros(len(row_token))
    for r, t in enumerate(row_token):
        if t >= 0:
            dx[r] = row_weight[r] * dy[t]
            drw[r] = x[r] @ dy[t]
    return dx, drw, dy.copy()


# ---------------------------------------------------------------------------
# FFNs
# ---------------------------------------------------------------------------

def ffn_fwd(x, w1, w2, activation, w3=None, b1=None, b2=None, b3=None,
            swiglu_alpha=1.0, swiglu_beta=0.0, swiglu_limit=None):
    z1 = _d(x) @ _d(w1) + (0 if b1 is None else _d(b1))
    if w3 is not None:
        z3 = _d(x) @ _d(w3) + (0 if b3 is None else _d(b3))
        a, _ = gate_act(z1, activation, swiglu_alpha, swiglu_limit)
        h = a * gate_factor(z3, swiglu_beta, swiglu_limit)[0]
    else:
        h = act(z1, activation)
    return h @ _d(w2) + (0 if b2 is None else _d(b2))


def ffn_grad(dy, x, w1, w2, activation, w3=None, b1=None, b3=None,
             swiglu_alpha=1.0, swiglu_beta=0.0, swiglu_limit=None):
    """-> dict of d x, d w1, d w2, d w3, d b1, d b2, d b3."""
    dy, x, w1, w2 = _d(dy), _d(x), _d(w1), _d(w2)
    z1 = x @ w1 + (0 if b1 is None else _d(b1))
    dh = dy @ w2.T
    g = {}
    if w3 is not None:
        z3 = x @ _d(w3) + (0 if b3 is None else _d(b3))
        a, da = gate_act(z1, activation, swiglu_alpha, swiglu_limit)
        f, df = gate_factor(z3, swiglu_beta, swiglu_limit)
        h = a * f
        dz1 = dh * f * da
        dz3 = dh * a * df
        g["x"] = dz1 @ w1.T + dz3 @ _d(w3).T
        g["w3"], g["b3"] = x.T @ dz3, dz3.sum(axis=0)
    else:
        h = act(z1, activation)
        dz1 = dh * act_grad(z1, activation)
        g["x"] = dz1 @ w1.T
    g["w1"], g["b1"] = x.T @ dz1, dz1.sum(axis=0)
    g["w2"], g["b2"] = h.T @ dy, dy.sum(axis=0)
    return g


def expert_ffn_fwd(x, offsets, fc1, fc2, activation, fc3=None, fc1_bias=None,
                   fc2_bias=None, fc3_bias=None, **swiglu):
    """`swiglu`: the swiglu_alpha / swiglu_beta / swiglu_limit of swiglu."""
    x = _d(x)
    out = np.zeros((x.shape[0], np.shape(fc2)[2]))
    pick = lambda v, e: None if v is None else _d(v)[e]  # noqa: E731
    for e in range(len(offsets) - 1):
        lo, hi = offsets[e], offsets[e + 1]
        if hi > lo:
            out[lo:hi] = ffn_fwd(x[lo:hi], fc1[e], fc2[e], activation,
                                 pick(fc3, e), pick(fc1_bias, e),
                                 pick(fc2_bias, e), pick(fc3_bias, e),
                                 **swiglu)
    return out


def expert_ffn_grad(dy, x, offsets, fc1, fc2, activation, fc3=None,
                    fc1_bias=None, fc2_bias=None, fc3_bias=None, **swiglu):
    """-> dict: input, fc1, fc2, fc3, fc1_bias, fc2_bias, fc3_bias.
    `swiglu` as in expert_ffn_fwd."""
    dy, x = _d(dy), _d(x)
    E = len(offsets) - 1
    g = {"input": np.zeros_like(x), "fc1": np.zeros(np.shape(fc1)),
         "fc2": np.zeros(np.shape(fc2)), "fc1_bias": np.zeros(np.shape(fc1)[::2]),
         "fc2_bias": np.zeros((E, np.shape(fc2)[2]))}
    if fc3 is not None:
        g["fc3"] = np.zeros(np.shape(fc3))
        g["fc3_bias"] = np.zeros(np.shape(fc3)[::2])
    pick = lambda v, e: None if v is None else _d(v)[e]  # noqa: E731
    for e in range(E):
        lo, hi = offsets[e], offsets[e + 1]
        if hi == lo:
            continue
        ge = ffn_grad(dy[lo:hi], x[lo:hi], fc1[e], fc2[e], activation,
                      pick(fc3, e), pick(fc1_bias, e), pick(fc3_bias, e),
                      **swiglu)
        g["input"][lo:hi] = ge["x"]
        for name, key in (("fc1", "w1"), ("fc2", "w2"), ("fc3", "w3"),
                          ("fc1_bias", "b1"), ("fc2_bias", "b2"),
                          ("fc3_bias", "b3")):
            if name in g:
                g[name][e] = ge[key]
    return g


def shared_expert_fwd(x, fc1, fc2, activation, fc3=None, gate=None):
    y = ffn_fwd(x, fc1, fc2, activation, fc3)
    if gate is not None:
        y = y * sigmoid(_d(x) @ _d(gate))
    return y


def shared_expert_grad(dy, x, fc1, fc2, activation, fc3=None, gate=None):
    """-> dict: input, fc1, fc2, fc3, gate."""
    dy, x = _d(dy), _d(x)
    if gate is None:
        g = ffn_grad(dy, x, fc1, fc2, activation, fc3)
        return {"input": g["x"], "fc1": g["w1"], "fc2": g["w2"],
                "fc3": g.get("w3")}
    z = x @ _d(gate)
    s = sigmoid(z)
    f = ffn_fwd(x, fc1, fc2, activation, fc3)
    g = ffn_grad(dy * s, x, fc1, fc2, activation, fc3)
    dz = (dy * f).sum(axis=1, keepdims=True) * s * (1.0 - s)
    return {"input": g["x"] + dz @ _d(gate).T, "fc1": g["w1"],
            "fc2": g["w2"], "fc3": g.get("w3"), "gate": x.T @ dz}


# ---------------------------------------------------------------------------
# Router losses
# ---------------------------------------------------------------------------

def load_balancing_loss_fwd(probs, indices):
    probs = _d(probs)
    T, E = probs.shape
    n = np.asarray(indices).size
    if T == 0 or n == 0:
        return 0.0
    f = np.bincount(np.asarray(indices).ravel(), minlength=E)[:E] / n
    return E * float((f * probs.mean(axis=0)).sum())


def load_balancing_loss_grad(dloss, probs, indices):
    T, E = np.shape(probs)
    n = np.asarray(indices).size
    if T == 0 or n == 0:
        return np.zeros((T, E))
    f = np.bincount(np.asarray(indices).ravel(), minlength=E)[:E] / n
    return np.broadcast_to(dloss * E * f / T, (T, E)).copy()


def z_loss_fwd(logits):
    logits = _d(logits)
    if logits.shape[0] == 0:
        return 0.0
    m = logits.max(axis=1)
    lse = m + np.log(np.exp(logits - m[:, None]).sum(axis=1))
    return float((lse ** 2).mean())


def z_loss_grad(dloss, logits):
    logits = _d(logits)
    T = logits.shape[0]
    m = logits.max(axis=1)
    lse = m + np.log(np.exp(logits - m[:, None]).sum(axis=1))
    return dloss * 2.0 * lse[:, None] * softmax(logits) / max(T, 1)


# ---------------------------------------------------------------------------
# Finite differences
# ---------------------------------------------------------------------------

def central_difference(f, x, eps=1e-6):
    """The gradient of the scalar function `f` at `x` by central
    differences (float64, step `eps`)."""
    x = _d(x).copy()
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + eps
        hi = f(x)
        x[i] = old - eps
        lo = f(x)
        x[i] = old
        g[i] = (hi - lo) / (2 * eps)
    return g
