"""bf16 test data: conversions between float32 and the raw 16-bit patterns
that safetensors_io and moe_abi use for bf16 (NumPy has no bfloat16), and
token rows whose routing survives bf16 rounding."""
import numpy as np

import moe_reference as ref
from test_moe_ops import normal


def from_bf16_bits(bits):
    """float32 values of raw bf16 patterns (exact)."""
    return (np.asarray(bits).astype(np.uint32) << 16).view(np.float32)


def to_bf16_bits(values):
    """Raw bf16 patterns of float32 values, rounded to nearest even."""
    return (ref.to_bfloat16(values).view(np.uint32) >> 16).astype(np.uint16)


def routable(rng, shape, router, k, scale=1.0):
    """normal(0, scale) token rows whose k-th and (k+1)-th largest router
    logits (float64 logits of the bf16-rounded rows against `router`)
    differ by at least 0.03 + |largest logit| / 32: more than bf16 rounding
    of the logits (2^-9 relative) and of the softmax probabilities (0.03
    apart is about 8 bf16 ulp) can move, so a bf16 model and a reference
    choose the same experts. Rows that miss are redrawn."""
    router = np.asarray(router, np.float64)
    x = normal(rng, shape, scale)
    while True:
        logits = ref.to_bfloat16(x).astype(np.float64) @ router
        ordered = -np.sort(-logits, axis=1)
        gap = ordered[:, k - 1] - ordered[:, k]
        redraw = gap < 0.03 + np.abs(logits).max(axis=1) / 32
        if not redraw.any():
            return x
        x[redraw] = normal(rng, (int(redraw.sum()), shape[1]), scale)
