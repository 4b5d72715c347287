"""Independent NumPy reference of onnxruntime's `com.microsoft.MoE` contrib op.

Written from the op's schema in the installed onnxruntime (its doc string and
attribute/input descriptions) and from the behaviour of onnxruntime's CPU
kernel, each point below checked empirically against the installed
onnxruntime (see test_ort_moe_reference.py); computed in float64 throughout.

Semantics
---------
* Routing: softmax over all E router logits of a token, then the k largest
  probabilities. Ties go to the LARGER expert index (the CPU kernel sorts
  (probability, index) pairs in descending order). With
  normalize_routing_weights=1 the k selected probabilities are divided by
  their sum. Every selected expert contributes (softmax is positive).
* Expert FFN: fc1 (+ fc1 bias), activation, fc2 (+ fc2 bias);
  out[t] = sum over the k choices of weight * FFN_e(x[t]).
* Weight layouts: the current layout is fc1 [E, F*I, H], fc2 [E, H, I],
  fc3 [E, I, H] (F = 2 for fused gated activations, else 1), i.e. y = W @ x.
  The legacy layout is recognised by shape exactly as moe_helper.h does:
  I = fc2.shape[1] * fc2.shape[2] / H; legacy when (H != I and
  fc2.shape[1] == I) or (H == I, fused swiglu and fc1.shape[1] == H).
  Legacy tensors (fc1 [E, H, F*I], fc2 [E, I, H], fc3 [E, H, I]) hold the
  SAME memory as the current layout: the legacy shape is a relabelling, not a
  transpose (moe_helper.h: "legacy shape does not match column major memory
  layout"; the CPU kernel indexes both identically, verified). The
  reference therefore reshapes legacy weights to the current shape.
* Activations: relu; gelu = tanh approximation
  0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) (the CPU kernel's, verified:
  exact-erf GELU differs by 2e-4); silu = x sigmoid(x); identity; relu2 =
  relu(x)^2; swiglu = G sigmoid(alpha G) (L + beta) with G = min(g, limit),
  L = clip(l, -limit, limit); geglu = gelu_tanh(g) * l (alpha, beta and
  limit do not apply).
  Defaults (verified): activation_alpha 1.0, activation_beta 0.0,
  swiglu_limit +inf, swiglu_fusion 0, activation_type relu, k 1.
* Gate/linear placement: swiglu_fusion=1 interleaves them on each fc1 row as
  [g0, l0, g1, l1, ...] (gate at even positions, verified); swiglu_fusion=2
  concatenates [g | l]; swiglu_fusion=0 takes g from fc1 and l from fc3.
  For the non-gated activations an fc3 makes the FFN gated as in Mixtral:
  act(fc1 x + b1) * (fc3 x + b3) (the schema's "FC1 and FC3" form, which the
  CUDA kernel implements; onnxruntime's CPU kernel rejects any fc3).
* use_sparse_mixer: the CPU kernel accepts it (k must be 2) and ignores it:
  its output equals plain top-2 routing (verified). The reference does the
  same.
* A 3-D input [B, S, H] is B*S token rows; router_probs is [B*S, E].

f16: onnxruntime rounds intermediate values (fc1 output, activation) to f16;
compare the float64 reference on f16-rounded operands with a 4e-3 normwise
tolerance.
"""

from __future__ import annotations

import math
import numpy as np

ACTIVATIONS = ("relu", "gelu", "silu", "identity", "swiglu", "relu2", "geglu")
GATED = ("swiglu", "geglu")

__all__ = ["ACTIVATIONS", "GATED", "route", "weight_layout", "ort_moe",
           "ort_cpu_supports", "gelu_tanh"]


def gelu_tanh(x):
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) *
                                    (x + 0.044715 * x ** 3)))


def route(router_logits, k, normalize_routing_weights=0):
    """(experts [T, k] int64, weights [T, k] float64) of every token."""
    logits = np.asarray(router_logits, np.float64)
    num_tokens, num_experts = logits.shape
    if not 1 <= k <= num_experts:
        raise ValueError("k=%d must be in [1, %d]" % (k, num_experts))
    experts = np.zeros((num_tokens, k), np.int64)
    weights = np.zeros((num_tokens, k), np.float64)
    for t in range(num_tokens):
        shifted = np.exp(logits[t] - logits[t].max())
        probs = shifted / shifted.sum()
        ranked = sorted(range(num_experts), key=lambda e: (probs[e], e),
                        reverse=True)[:k]
        experts[t] = ranked
        weights[t] = probs[ranked]
        if normalize_routing_weights:
            weights[t] /= weights[t].sum()
    return experts, weights


def weight_layout(hidden, fc1_shape, fc2_shape, fused):
    """(legacy, inter_size) as onnxruntime's moe_helper.h decides them."""
    inter = fc2_shape[1] * fc2_shape[2] // hidden
    legacy = ((hidden != inter and fc2_shape[1] == inter) or
              (hidden == inter and fused and fc1_shape[1] == hidden))
    return legacy, inter


def _activate(h, gate_linear, activation_type, alpha, beta, limit):
    """The activation of fc1's output h; gate_linear is (g, l) when gated."""
    if activation_type == "relu":
        return np.maximum(h, 0.0)
    if activation_type == "gelu":
        return gelu_tanh(h)
    if activation_type == "silu":
        return h / (1.0 + np.exp(-h))
    if activation_type == "identity":
        return h
    if activation_type == "relu2":
        return np.maximum(h, 0.0) ** 2
    gate, linear = gate_linear
    if activation_type == "geglu":
        return gelu_tanh(gate) * linear
    gate = np.minimum(gate, limit)
    linear = np.clip(linear, -limit, limit)
    return gate / (1.0 + np.exp(-alpha * gate)) * (linear + beta)


def ort_moe(x, router_logits, fc1, fc2, fc1_bias=None, fc2_bias=None,
            fc3=None, fc3_bias=None, *, k=1, activation_type="relu",
            normalize_routing_weights=0, use_sparse_mixer=0, swiglu_fusion=0,
            activation_alpha=1.0, activation_beta=0.0,
            swiglu_limit=math.inf):
    """com.microsoft.MoE: float64 result with the shape of x."""
    if activation_type not in ACTIVATIONS:
        raise ValueError("unknown activation_type %r" % activation_type)
    if use_sparse_mixer and k != 2:
        raise ValueError("use_sparse_mixer requires k=2")
    gated = activation_type in GATED
    fused = gated and swiglu_fusion in (1, 2)
    if gated and not fused and (activation_type == "geglu" or fc3 is None):
        raise ValueError("%s with swiglu_fusion=%d needs %s" %
                         (activation_type, swiglu_fusion,
                          "fc3" if activation_type == "swiglu"
                          else "a fused fc1 (swiglu_fusion 1 or 2)"))
    x = np.asarray(x, np.float64)
    tokens = x.reshape(-1, x.shape[-1])
    hidden = tokens.shape[1]
    num_experts = fc1.shape[0]
    legacy, inter = weight_layout(hidden, fc1.shape, fc2.shape, fused)
    fc1_rows = 2 * inter if fused else inter
    expected = {"fc1": (hidden, fc1_rows) if legacy else (fc1_rows, hidden),
                "fc2": (inter, hidden) if legacy else (hidden, inter),
                "fc3": (hidden, inter) if legacy else (inter, hidden)}
    for name, w in (("fc1", fc1), ("fc2", fc2), ("fc3", fc3)):
        if w is not None and tuple(w.shape) != (num_experts,) + expected[name]:
            raise ValueError("%s has shape %s, expected %s" %
                             (name, tuple(w.shape),
                              (num_experts,) + expected[name]))
    # Both layouts store the same memory order: a reshape reads either.
    w1 = np.asarray(fc1, np.float64).reshape(num_experts, fc1_rows, hidden)
    w2 = np.asarray(fc2, np.float64).reshape(num_experts, hidden, inter)
    w3 = (None if fc3 is None else
          np.asarray(fc3, np.float64).reshape(num_experts, inter, hidden))

    def bias(b, e, n):
        return 0.0 if b is None else np.asarray(b, np.float64)[e].reshape(n)

    experts, weights = route(router_logits, k, normalize_routing_weights)
    out = np.zeros_like(tokens)
    for t in range(tokens.shape[0]):
        for e, weight in zip(experts[t], weights[t]):
            h = w1[e] @ tokens[t] + bias(fc1_bias, e, fc1_rows)
            third = (None if w3 is None else
                     w3[e] @ tokens[t] + bias(fc3_bias, e, inter))
            if fused and swiglu_fusion == 1:
                gate_linear = (h[0::2], h[1::2])
            elif fused:
                gate_linear = (h[:inter], h[inter:])
            else:
                gate_linear = (h, third)
            a = _activate(h, gate_linear, activation_type, activation_alpha,
                          activation_beta, swiglu_limit)
            if third is not None and not gated:
                a = a * third
            out[t] += weight * (w2[e] @ a + bias(fc2_bias, e, hidden))
    return out.reshape(x.shape)


def ort_cpu_supports(activation_type="relu", swiglu_fusion=0, fc3=False,
                     **_):
    """Whether onnxruntime's CPU kernel runs this configuration, and why
    not: it rejects fc3/fc3 bias, swiglu with swiglu_fusion != 1, relu2 and
    geglu (verified on the installed onnxruntime)."""
    if fc3:
        return False, "FC3 is not implemented for CPU MoE"
    if activation_type in ("relu2", "geglu"):
        return False, "unsupported MoE activation type %s" % activation_type
    if activation_type == "swiglu" and swiglu_fusion != 1:
        return False, "CPU MoE only supports interleaved SwiGLU"
    return True, ""

