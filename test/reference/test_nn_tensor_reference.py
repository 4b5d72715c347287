"""Self-tests of nn_tensor_reference.py: each reference against a second,
differently written computation (Python slicing, sorted() with a key tuple,
explicit loops, Python integer arithmetic) and against the spec's examples.
Run with `python3 -m pytest test/reference -q`.
"""
import itertools
import math
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nn_tensor_reference as ref  # noqa: E402

SEEDS = [0, 1, 7]
INT_MAX = ref.INT64_MAX
INT_MIN = ref.INT64_MIN


def test_int_div_truncates_and_defines_edge_cases():
    a = np.array([7, -7, 7, -7, 5, -2147483648, 3], dtype=np.int32)
    b = np.array([2, 2, -2, -2, 0, -1, 7], dtype=np.int32)
    np.testing.assert_array_equal(ref.nn_int_div(a, b),
                                  [3, -3, -3, 3, 0, -2147483648, 0])


@pytest.mark.parametrize("seed", SEEDS)
def test_int_div_matches_c_division(seed):
    rng = np.random.default_rng(seed)
    a = rng.integers(-1000, 1000, (4, 5)).astype(np.int64)
    b = rng.integers(1, 30, (5,)).astype(np.int64) * rng.choice([-1, 1], 5)
    expected = np.array([[math.trunc(x / y) for x, y in zip(row, b)]
                         for row in a.tolist()])
    np.testing.assert_array_equal(ref.nn_int_div(a, b), expected)


def test_int_wraps():
    big = np.array([2147483647], dtype=np.int32)
    assert ref.nn_int_add(big, np.int32(1))[0] == -2147483648
    assert ref.nn_int_neg(np.array([-2147483648], np.int32))[0] == -2147483648


@pytest.mark.parametrize("seed", SEEDS)
def test_reductions_vs_loops(seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((3, 4, 5)).astype(np.float32)
    mean = ref.nn_reduce_mean(x, [0, 2], keep_dims=True)
    mx = ref.nn_reduce_max(x, [-1])
    assert mean.shape == (1, 4, 1) and mx.shape == (3, 4)
    for j in range(4):
        values = [float(x[i, j, k]) for i in range(3) for k in range(5)]
        assert abs(mean[0, j, 0] - math.fsum(values) / 15) < 1e-6
    for i, j in itertools.product(range(3), range(4)):
        assert mx[i, j] == max(x[i, j, :].tolist())
    x[1, 2, 3] = np.nan
    assert np.isnan(ref.nn_reduce_max(x, [2])[1, 2])


# The ONNX Slice examples (onnx/docs/Operators.md, Slice).
def test_slice_onnx_examples():
    data = np.array([[1, 2, 3, 4], [5, 6, 7, 8]])
    np.testing.assert_array_equal(
        ref.nn_slice(data, [1, 0], [2, 3], [1, 2]), [[5, 7]])
    np.testing.assert_array_equal(
        ref.nn_slice(data, [0, 1], [-1, 1000], [1, 1]), [[2, 3, 4]])
    # slice_neg_steps: starts [20, 10, 4] ends [0, 0, 1] steps [-1, -3, -2]
    # on a 20x10x5 tensor gives 19x3x2.
    x = np.arange(1000).reshape(20, 10, 5)
    assert ref.nn_slice(x, [20, 10, 4], [0, 0, 1], [-1, -3, -2]).shape == \
        (19, 3, 2)


@pytest.mark.parametrize("seed", SEEDS)
def test_slice_vs_python_slicing(seed):
    """Python's slice agrees with ONNX except for a negative step with a
    start before the first element (Python: empty; ONNX: clamped to 0)."""
    rng = np.random.default_rng(seed)
    values = [-12, -7, -3, -1, 0, 1, 2, 5, 9, 13, INT_MAX, INT_MIN]
    for extent in (0, 1, 4, 7):
        items = list(range(extent))
        for start, end in itertools.product(values, values):
            for step in (1, 2, 3, -1, -2, -5):
                if step < 0 and start < -extent:
                    continue
                got = ref.onnx_slice_indices(extent, start, end, step)
                assert got == items[start:end:step], (extent, start, end, step)
    x = rng.standard_normal((5, 6)).astype(np.float32)
    np.testing.assert_array_equal(ref.nn_slice(x, [4, -2], [-6, 0], [-2, -1]),
                                  x[4::-2, -2:0:-1])


def test_slice_negative_step_clamps_start():
    assert ref.onnx_slice_indices(4, -10, INT_MIN, -1) == [0]
    assert ref.onnx_slice_indices(0, -1, INT_MIN, -1) == []


@pytest.mark.parametrize("seed", SEEDS)
def test_gather_vs_loops(seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((3, 5, 2)).astype(np.float32)
    indices = np.array([[0, -1], [7, -9], [2, 4]], dtype=np.int64)
    got = ref.nn_gather(x, indices, axis=1)
    assert got.shape == (3, 3, 2, 2)
    for a, i, j, c in itertools.product(range(3), range(3), range(2),
                                        range(2)):
        index = int(indices[i, j])
        index = index + 5 if index < 0 else index
        index = min(max(index, 0), 4)
        assert got[a, i, j, c] == x[a, index, c]


def test_where_compare_cast_expand():
    c = np.array([[True], [False]])
    np.testing.assert_array_equal(ref.nn_where(c, np.array([1, 2]), 9),
                                  [[1, 2], [9, 9]])
    nan = np.array([np.nan, 1.0], np.float32)
    one = np.float32(1.0)
    assert ref.nn_compare("ne", nan, one).tolist() == [True, False]
    for predicate in ("eq", "lt", "le", "gt", "ge"):
        assert not ref.nn_compare(predicate, nan, one)[0]
    assert ref.nn_compare("lt", np.array([False]), np.array([True]))[0]
    x = np.array([np.nan, np.inf, -np.inf, 3e9, -3e9, 2.9, -2.9, 2147483520.0],
                 np.float32)
    np.testing.assert_array_equal(
        ref.nn_cast(x, "i32"),
        [0, 2147483647, -2147483648, 2147483647, -2147483648, 2, -2,
         2147483520])
    np.testing.assert_array_equal(
        ref.nn_cast(np.array([1e19, -1e19, 9.2233715e18], np.float32), "i64"),
        [ref.INT64_MAX, ref.INT64_MIN, 9223371487098961920])
    np.testing.assert_array_equal(ref.nn_cast(x, "i1"), [True] * 8)
    np.testing.assert_array_equal(
        ref.nn_cast(np.array([2**40 + 5, -3], np.int64), "i32"), [5, -3])
    np.testing.assert_array_equal(ref.nn_cast(np.array([True, False]), "f32"),
                                  [1.0, 0.0])
    assert ref.nn_expand(np.array([[1], [2]]), (3, 2, 4)).shape == (3, 2, 4)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("largest", [True, False])
def test_topk_vs_sorted(seed, largest):
    rng = np.random.default_rng(seed)
    x = rng.integers(-3, 4, (4, 9)).astype(np.float32)  # many ties
    x[1, 3] = x[2, 0] = x[2, 5] = np.nan
    x[3, 2] = np.inf
    for axis, k in ((1, 4), (0, 2), (-1, 9)):
        values, indices = ref.nn_topk(x, k, axis=axis, largest=largest)
        moved = np.moveaxis(x, axis, -1)
        for row in np.ndindex(moved.shape[:-1]):
            items = moved[row].tolist()

            def key(i):
                v = items[i]
                if math.isnan(v):
                    return (0 if largest else 1, 0.0, i)
                return (1 if largest else 0, -v if largest else v, i)

            expected = sorted(range(len(items)), key=key)[:k]
            got = np.moveaxis(indices, axis, -1)[row].tolist()
            assert got == expected
            np.testing.assert_array_equal(
                np.moveaxis(values, axis, -1)[row], moved[row][expected])


def test_iota_trilu():
    np.testing.assert_array_equal(ref.nn_iota(4, "f16"), [0, 1, 2, 3])
    x = np.ones((2, 3, 4), np.float32)
    lower = ref.nn_trilu(x, diagonal=1)
    upper = ref.nn_trilu(x, diagonal=-1, upper=True)
    for b, i, j in itertools.product(range(2), range(3), range(4)):
        assert lower[b, i, j] == (1 if j - i <= 1 else 0)
        assert upper[b, i, j] == (1 if j - i >= -1 else 0)
