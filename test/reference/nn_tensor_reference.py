"""NumPy references for the nn ops that ONNX graphs use to move data around
(nn.concat, slice, gather, where, compare, cast, expand, topk, iota, trilu),
the reductions nn.reduce_mean / nn.reduce_max, and the integer forms of
nn.add / sub / mul / div / neg.

Written from the op descriptions in dialects/NN/NNOps.td and, for nn.slice,
nn.gather, nn.cast and nn.topk, from the ONNX operator specification
(Slice-13, Gather-13, Cast-21, TopK-11), not from compiler code. Conventions
follow moe_reference.py: operands positional in ODS order, attributes as
keyword arguments with the ODS names and defaults; results keep the
operand's dtype (float16 stays float16) unless the op converts.
"""
from typing import Sequence

import numpy as np

INT64_MAX = np.iinfo(np.int64).max
INT64_MIN = np.iinfo(np.int64).min

_DTYPES = {"f32": np.float32, "f16": np.float16, "i1": np.bool_,
           "i32": np.int32, "i64": np.int64}


def dtype_of(element: str):
    """The NumPy dtype of an MLIR element type name (f32, f16, i1, i32, i64)."""
    return _DTYPES[element]


# ---------------------------------------------------------------------------
# Integer arithmetic
# ---------------------------------------------------------------------------

def nn_int_add(lhs, rhs):
    """Wrapping two's-complement addition (NumPy integer arithmetic wraps)."""
    with np.errstate(over="ignore"):
        return np.add(lhs, rhs)


def nn_int_sub(lhs, rhs):
    with np.errstate(over="ignore"):
        return np.subtract(lhs, rhs)


def nn_int_mul(lhs, rhs):
    with np.errstate(over="ignore"):
        return np.multiply(lhs, rhs)


def nn_int_neg(x):
    with np.errstate(over="ignore"):
        return np.negative(x)


def nn_int_div(lhs, rhs):
    """Division truncating toward zero, element by element in Python integers
    (which do not overflow): x / 0 = 0, INT_MIN / -1 wraps to INT_MIN."""
    lhs, rhs = np.broadcast_arrays(np.asarray(lhs), np.asarray(rhs))
    dtype = lhs.dtype
    bits = np.iinfo(dtype).bits
    out = np.empty(lhs.shape, dtype=dtype)
    for index in np.ndindex(lhs.shape):
        a, b = int(lhs[index]), int(rhs[index])
        if b == 0:
            q = 0
        else:
            q = abs(a) // abs(b)
            if (a < 0) != (b < 0):
                q = -q
        q &= (1 << bits) - 1  # wrap into the type
        if q >= 1 << (bits - 1):
            q -= 1 << bits
        out[index] = q
    return out


# ---------------------------------------------------------------------------
# Reductions
# ---------------------------------------------------------------------------

def nn_reduce_mean(x, axes: Sequence[int], keep_dims: bool = False):
    """Mean over `axes`, accumulated in float64, in x's dtype."""
    x = np.asarray(x)
    mean = np.mean(x.astype(np.float64), axis=tuple(axes), keepdims=keep_dims)
    return np.asarray(mean).astype(x.dtype)


def nn_reduce_max(x, axes: Sequence[int], keep_dims: bool = False):
    """Maximum over `axes`; a NaN in a slice makes it NaN (np.max does)."""
    x = np.asarray(x)
    return np.asarray(np.max(x, axis=tuple(axes), keepdims=keep_dims))


# ---------------------------------------------------------------------------
# Tensor manipulation
# ---------------------------------------------------------------------------

def nn_concat(inputs, axis: int):
    return np.concatenate([np.asarray(x) for x in inputs], axis=axis)


def onnx_slice_indices(extent: int, start: int, end: int, step: int):
    """The indices an ONNX Slice takes from a dimension of `extent`, from the
    spec's wording: negative start/end count from the end; start is clamped
    to [0, extent] (positive step) or [0, extent - 1] (negative step), end to
    [0, extent] or [-1, extent - 1]; then start, start + step, ... up to but
    excluding end."""
    assert step != 0
    if start < 0:
        start += extent
    if end < 0:
        end += extent
    if step > 0:
        start = min(max(start, 0), extent)
        end = min(max(end, 0), extent)
    else:
        start = min(max(start, 0), extent - 1)
        end = min(max(end, -1), extent - 1)
    indices = []
    i = start
    while (i < end) if step > 0 else (i > end):
        indices.append(i)
        i += step
    return indices


def nn_slice(x, starts: Sequence[int], ends: Sequence[int],
             steps: Sequence[int]):
    x = np.asarray(x)
    assert len(starts) == len(ends) == len(steps) == x.ndim
    for axis, (start, end, step) in enumerate(zip(starts, ends, steps)):
        indices = onnx_slice_indices(x.shape[axis], start, end, step)
        x = np.take(x, np.asarray(indices, dtype=np.int64), axis=axis)
    return x


def nn_gather(x, indices, axis: int):
    """np.take with negative indices counting from the end and out-of-range
    indices clamped to the axis."""
    x = np.asarray(x)
    extent = x.shape[axis]
    indices = np.asarray(indices).astype(np.int64)
    indices = np.where(indices < 0, indices + extent, indices)
    return np.take(x, np.clip(indices, 0, extent - 1), axis=axis)


def nn_where(condition, true_value, false_value):
    return np.where(np.asarray(condition, dtype=bool), true_value, false_value)


_COMPARE = {"eq": np.equal, "ne": np.not_equal, "lt": np.less,
            "le": np.less_equal, "gt": np.greater, "ge": np.greater_equal}


def nn_compare(predicate: str, lhs, rhs):
    """NumPy comparisons: NaN compares false except with ne; bool False <
    True."""
    with np.errstate(invalid="ignore"):
        return _COMPARE[predicate](np.asarray(lhs), np.asarray(rhs))


def _float_to_int(x, dtype):
    """Truncation toward zero, saturating at the integer range; NaN -> 0."""
    info = np.iinfo(dtype)
    x = np.asarray(x, dtype=np.float64)
    out = np.zeros(x.shape, dtype=dtype)
    finite_in_range = (x > info.min - 1.0) & (x < info.max + 1.0)
    # info.max + 1 is 2^(n-1), exact in float64; trunc of anything below it
    # fits the type.
    out[finite_in_range] = np.trunc(x[finite_in_range]).astype(dtype)
    out[x >= info.max + 1.0] = info.max
    out[x <= info.min - 1.0] = info.min
    return out


def nn_cast(x, element: str):
    """ONNX Cast to `element` (f32, f16, i1, i32, i64)."""
    x = np.asarray(x)
    target = dtype_of(element)
    if target is np.bool_:
        return x != 0
    if np.issubdtype(target, np.integer):
        if np.issubdtype(x.dtype, np.floating):
            return _float_to_int(x, target)
        # Sign extension or two's-complement truncation; bool is 0 / 1.
        return x.astype(np.int64).astype(target)
    with np.errstate(over="ignore"):  # beyond the f16 range: infinity
        return x.astype(target)


def nn_expand(x, shape: Sequence[int]):
    return np.broadcast_to(np.asarray(x), tuple(shape)).copy()


def nn_topk(x, k: int, axis: int = -1, largest: bool = True):
    """(values, indices) by a stable lexicographic sort per row: NaN ranks
    above every number, equal values keep index order."""
    x = np.asarray(x)
    moved = np.moveaxis(x, axis, -1)
    rows = moved.reshape(-1, moved.shape[-1]).astype(np.float64)
    picks = np.empty((rows.shape[0], k), dtype=np.int64)
    for r, row in enumerate(rows):
        nan = np.isnan(row)
        filled = np.where(nan, 0.0, row)
        if largest:
            # Primary key last: NaN first, then larger values.
            order = np.lexsort((-filled, ~nan))
        else:
            order = np.lexsort((filled, nan))
        picks[r] = order[:k]
    picks = picks.reshape(moved.shape[:-1] + (k,))
    values = np.take_along_axis(moved, picks, axis=-1)
    return np.moveaxis(values, -1, axis), np.moveaxis(picks, -1, axis)


def nn_iota(n: int, element: str):
    return np.arange(n, dtype=np.int64).astype(dtype_of(element))


def nn_trilu(x, diagonal: int = 0, upper: bool = False):
    x = np.asarray(x)
    return np.triu(x, diagonal) if upper else np.tril(x, diagonal)
