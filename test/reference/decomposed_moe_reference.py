"""NumPy reference of a token-choice MoE FFN as ONNX exporters spell it out
in plain ops (the graphs that `moe-raise-decomposed` recognises).

Written from the ONNX operator semantics (MatMul, Softmax, TopK, ReduceSum,
Div, Equal, Where / Cast, Mul, Add), not from compiler code: every expert
runs densely on every token and its output is weighted by the token's
routing weight for that expert, which is 0 unless the expert is among the
token's top k.

Numerics: the router (logits, softmax, top-k, renormalisation) is evaluated
in float32 as the model computes it, so that the top-k decisions are the
model's; the expert FFNs and the weighted sum are evaluated in float64 and
rounded to float32 at the end (a reference should add no error of its own).
TopK breaks ties towards the lower index, as ONNX specifies.
"""

from __future__ import annotations

import math
from typing import Dict, List, Optional

import numpy as np

ACTIVATIONS = ("relu", "gelu", "gelu_tanh", "silu", "swiglu", "geglu")
GATED = ("swiglu", "geglu")

_erf = np.vectorize(math.erf, otypes=[np.float64])


def _gelu(h: np.ndarray) -> np.ndarray:
    return 0.5 * h * (1.0 + _erf(h / math.sqrt(2.0)))


def _gelu_tanh(h: np.ndarray) -> np.ndarray:
    c = math.sqrt(2.0 / math.pi)
    return 0.5 * h * (1.0 + np.tanh(c * (h + 0.044715 * h ** 3)))


def _silu(h: np.ndarray) -> np.ndarray:
    return h / (1.0 + np.exp(-h))


def router(x, router_weight, *, k: int, normalize: bool, router_bias=None):
    """The routing of every token (rows of x, [..., D]) in float32:
    (weights [..., k], indices [..., k] int64, best first)."""
    x = np.asarray(x, dtype=np.float32)
    logits = np.matmul(x, np.asarray(router_weight, dtype=np.float32))
    if router_bias is not None:
        logits = logits + np.asarray(router_bias, dtype=np.float32)
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    probs = (shifted / shifted.sum(axis=-1, keepdims=True)).astype(np.float32)
    # A stable sort of the negated scores keeps equal scores in index order.
    order = np.argsort(-probs, axis=-1, kind="stable")[..., :k]
    values = np.take_along_axis(probs, order, axis=-1)
    if normalize:
        values = (values / values.sum(axis=-1, keepdims=True)).astype(
            np.float32)
    return values, order.astype(np.int64)


def expert_ffn(x, expert: Dict[str, np.ndarray], activation: str):
    """One expert's FFN on every row of x, in float64. `expert` holds fc1
    [D, F], fc2 [F, Dout], fc3 [D, F] (gated activations) and optional
    fc1_bias, fc2_bias, fc3_bias."""
    x = np.asarray(x, dtype=np.float64)

    def project(name, value):
        out = value @ np.asarray(expert[name], dtype=np.float64)
        bias = expert.get(name + "_bias")
        return out if bias is None else out + np.asarray(bias, np.float64)

    h = project("fc1", x)
    if activation == "relu":
        a = np.maximum(h, 0.0)
    elif activation == "gelu":
        a = _gelu(h)
    elif activation == "gelu_tanh":
        a = _gelu_tanh(h)
    elif activation == "silu":
        a = _silu(h)
    elif activation == "swiglu":
        a = _silu(h) * project("fc3", x)
    elif activation == "geglu":
        a = _gelu(h) * project("fc3", x)
    else:
        raise ValueError("unknown activation %r" % activation)
    return project("fc2", a)


def decomposed_moe(x, router_weight, experts: List[Dict[str, np.ndarray]], *,
                   k: int, activation: str, normalize: bool,
                   router_bias: Optional[np.ndarray] = None) -> np.ndarray:
    """sum over experts e of (sum_j weights[..., j] * (indices[..., j] == e))
    * ffn_e(x), for x [..., D]; returns [..., Dout] float32."""
    weights, indices = router(x, router_weight, k=k, normalize=normalize,
                              router_bias=router_bias)
    out = 0.0
    for e, expert in enumerate(experts):
        scale = np.where(indices == e, weights, 0.0).sum(axis=-1,
                                                         keepdims=True)
        out = out + scale.astype(np.float64) * expert_ffn(x, expert,
                                                          activation)
    return np.asarray(out, dtype=np.float64).astype(np.float32)
