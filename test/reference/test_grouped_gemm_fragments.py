"""A NumPy model of the tensor-core grouped GEMM kernel's index arithmetic
(passes/MoELowering/GroupedGemm.cpp), run against the mma.sync m16n8k16
fragment tables of the PTX ISA ("Matrix Fragments for mma.m16n8k16 with
floating point type"), which are transcribed here in the ISA's own terms
(element a_i, b_i, c_i of a lane).

The kernel cannot run on a machine without a GPU; this model checks, for
grouped problems of odd shapes, that the kernel's tiling, expert passes,
shared-memory word layout, fragment reads and epilogue, as written in
GroupedGemm.cpp and copied below, compute out[r] = lhs[r] @ W[e(r)] with
zeros on padding rows, that every output element is stored exactly once,
that fragment reads touch only words the copy wrote (shared memory starts
as NaN), that the tables cover each element once, and that the hi / lo
split of an f32 lhs keeps the product close to the f32 product. Run with `python3 -m pytest test/reference -q`.
"""
import math
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from moe_reference import to_bfloat16, to_float16  # noqa: E402

# --- PTX ISA tables: lane -> elements -------------------------------------
# Each takes lane numbers (an array) and an element number i.


def ptx_a(lane, i):
    """(row, col) of element a_i (i = 0..7) of `lane` in the 16 x 16 A."""
    group, thread_in_group = lane >> 2, lane % 4
    row = group if (0 <= i < 2 or 4 <= i < 6) else group + 8
    col = thread_in_group * 2 + (i & 1) + (8 if i >= 4 else 0)
    return row, col


def ptx_b(lane, i):
    """(row, col) of element b_i (i = 0..3) of `lane` in the 16 x 8 B."""
    group, thread_in_group = lane >> 2, lane % 4
    row = thread_in_group * 2 + (i & 1) + (8 if i >= 2 else 0)
    return row, group


def ptx_c(lane, i):
    """(row, col) of element c_i (i = 0..3) of `lane` in the 16 x 8 C/D."""
    group, thread_in_group = lane >> 2, lane % 4
    row = group if i < 2 else group + 8
    return row, thread_in_group * 2 + (i & 1)


LANES = np.arange(32)


def element_map(table, elements):
    """Row and column index arrays [32, elements] of a table."""
    pairs = [table(LANES, i) for i in range(elements)]
    return (np.stack([row for row, _ in pairs], axis=1),
            np.stack([col for _, col in pairs], axis=1))


A_MAP, B_MAP, C_MAP = (element_map(ptx_a, 8), element_map(ptx_b, 4),
                       element_map(ptx_c, 4))


def test_ptx_tables_cover_each_element_once():
    for (rows, cols), shape in [(A_MAP, (16, 16)), (B_MAP, (16, 8)),
                                (C_MAP, (16, 8))]:
        count = np.zeros(shape, dtype=int)
        np.add.at(count, (rows, cols), 1)
        assert (count == 1).all()


def gather(element_map, shape, registers):
    """The matrix whose elements the 32 lanes hold: registers[lane, i] is
    element i."""
    matrix = np.zeros(shape)
    matrix[element_map] = registers
    return matrix


def mma_m16n8k16(a, b, c):
    """D = A @ B + C as mma.sync computes it, from per-lane registers:
    a [32, 4 words, 2 halves] (a_0 .. a_7 in order: word j holds a_2j in its
    low half), b [32, 2, 2], c [32, 4]; returns D's registers [32, 4]."""
    d = (gather(A_MAP, (16, 16), a.reshape(32, 8)) @
         gather(B_MAP, (16, 8), b.reshape(32, 4)) + gather(C_MAP, (16, 8), c))
    return d[C_MAP]


# --- The kernel (GroupedGemm.cpp), transcribed -----------------------------

TILE, WARP_TILE, THREADS, STEP_K = 64, 32, 128, 32
WORDS, ROW_WORDS = STEP_K // 2, STEP_K // 2 + 4
TILES_M, TILES_N = 2, 4


def kernel_model(lhs, weights, offsets, transposed, round_operand):
    """The kernel's output and the number of stores of each element.
    round_operand rounds to the weights' type; an lhs that is not already
    of that type is split into hi / lo."""
    rows, depth = lhs.shape
    experts = weights.shape[0]
    columns = weights.shape[1] if transposed else weights.shape[2]
    # Elementwise hi = T(x), lo = T(x - hi), as the copy computes them.
    lhs_high = round_operand(lhs)
    lhs_low = round_operand(lhs - lhs_high)
    split = not np.array_equal(lhs_high, lhs)
    out = np.full((rows, columns), np.nan)
    stores = np.zeros((rows, columns), dtype=int)

    for block_x in range(max(math.ceil(rows / TILE), 1)):
        for block_y in range(max(math.ceil(columns / TILE), 1)):
            tile_row, tile_column = block_x * TILE, block_y * TILE
            acc = np.zeros((THREADS, TILES_M * TILES_N * 4))
            for e in range(experts):
                lo = min(max(int(offsets[e]), 0), rows)
                hi = min(max(int(offsets[e + 1]), lo), rows)
                first, end = max(lo, tile_row), min(hi, tile_row + TILE)
                if not first < end:
                    continue
                for stage in range(math.ceil(depth / STEP_K)):
                    k0 = stage * STEP_K
                    lhs_hi = np.full((TILE, ROW_WORDS, 2), np.nan)
                    lhs_lo = np.full((TILE, ROW_WORDS, 2), np.nan)
                    weight_words = np.full((TILE, ROW_WORDS, 2), np.nan)
                    for i in range(TILE * WORDS // THREADS):
                        word = np.arange(THREADS) + i * THREADS
                        row, pair = word // WORDS, word % WORDS
                        r = tile_row + row
                        for j in range(2):
                            k = k0 + 2 * pair + j
                            inside = (first <= r) & (r < end) & (k < depth)
                            rc, kc = np.minimum(r, rows - 1), np.minimum(
                                k, depth - 1)
                            lhs_hi[row, pair, j] = np.where(
                                inside, lhs_high[rc, kc], 0.0)
                            lhs_lo[row, pair, j] = np.where(
                                inside, lhs_low[rc, kc], 0.0)
                        if transposed:
                            column, pair = word // WORDS, word % WORDS
                        else:
                            column, pair = word % TILE, word // TILE
                        n = tile_column + column
                        for j in range(2):
                            k = k0 + 2 * pair + j
                            inside = (n < columns) & (k < depth)
                            nc, kc = np.minimum(n, columns - 1), np.minimum(
                                k, depth - 1)
                            value = (weights[e, nc, kc] if transposed else
                                     weights[e, kc, nc])
                            weight_words[column, pair, j] = np.where(
                                inside, value, 0.0)
                    group, quad = LANES // 4, LANES % 4
                    for k_word in range(0, WORDS, 8):
                        for warp in range(4):
                            warp_row = (warp // 2) * WARP_TILE
                            warp_column = (warp % 2) * WARP_TILE

                            def a_fragment(words, row_offset):
                                return np.stack([
                                    words[warp_row + row_offset + group +
                                          8 * (i % 2),
                                          quad + k_word + 4 * (i // 2)]
                                    for i in range(4)], axis=1)

                            b_regs = [np.stack([
                                weight_words[warp_column + ni * 8 + group,
                                             quad + k_word + 4 * i]
                                for i in range(2)], axis=1)
                                for ni in range(TILES_N)]
                            for mi in range(TILES_M):
                                terms = [a_fragment(lhs_hi, mi * 16)]
                                if split:
                                    terms.append(a_fragment(lhs_lo, mi * 16))
                                for ni in range(TILES_N):
                                    at = 4 * (mi * TILES_N + ni)
                                    of_warp = slice(32 * warp, 32 * warp + 32)
                                    for a in terms:
                                        acc[of_warp, at:at + 4] = mma_m16n8k16(
                                            a, b_regs[ni],
                                            acc[of_warp, at:at + 4])
            for thread in range(THREADS):
                warp, lane = thread // 32, thread % 32
                group, quad = lane // 4, lane % 4
                warp_row = (warp // 2) * WARP_TILE
                warp_column = (warp % 2) * WARP_TILE
                for mi in range(TILES_M):
                    for ni in range(TILES_N):
                        for i in range(4):
                            r = tile_row + warp_row + group + mi * 16 + 8 * (
                                i // 2)
                            n = (tile_column + warp_column + 2 * quad +
                                 ni * 8 + i % 2)
                            if r < rows and n < columns:
                                out[r, n] = acc[thread,
                                                4 * (mi * TILES_N + ni) + i]
                                stores[r, n] += 1
    return out, stores


def grouped_reference(lhs, weights, offsets, transposed):
    """out[r] = lhs[r] @ W_e for offsets[e] <= r < offsets[e + 1] (float64,
    a loop over experts), zero elsewhere."""
    rows = lhs.shape[0]
    columns = weights.shape[1] if transposed else weights.shape[2]
    out = np.zeros((rows, columns))
    for e in range(weights.shape[0]):
        w = weights[e].T if transposed else weights[e]
        lo, hi = int(offsets[e]), int(offsets[e + 1])
        out[lo:hi] = lhs[lo:hi].astype(np.float64) @ w.astype(np.float64)
    return out


# (rows, K, N, segment sizes): tiles with several experts, an expert over
# several tiles, an empty expert, padding rows past offsets[E], K and N not
# multiples of the tiles, K odd (a half-filled word).
SHAPES = [
    (70, 45, 67, [30, 0, 25]),
    (130, 33, 20, [5, 100, 3, 2]),
    (17, 16, 8, [17]),
    (9, 7, 65, [4, 2]),
]


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("transposed", [False, True])
@pytest.mark.parametrize("round_operand", [to_bfloat16, to_float16])
def test_kernel_model_computes_grouped_product(seed, shape, transposed,
                                               round_operand):
    rows, depth, columns, sizes = shape
    rng = np.random.default_rng(seed)
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int32)
    lhs = round_operand(rng.standard_normal((rows, depth)))
    w_shape = (len(sizes), columns, depth) if transposed else (
        len(sizes), depth, columns)
    weights = round_operand(rng.standard_normal(w_shape))
    out, stores = kernel_model(lhs, weights, offsets, transposed,
                               round_operand)
    assert (stores == 1).all()
    expected = grouped_reference(lhs, weights, offsets, transposed)
    assert (out[offsets[-1]:] == 0).all()
    error = np.abs(out - expected).max() / np.abs(expected).max()
    assert error < 1e-12


@pytest.mark.parametrize("seed", [0, 1])
def test_split_f32_lhs_keeps_f32_accuracy(seed):
    rows, depth, columns, sizes = SHAPES[0]
    rng = np.random.default_rng(seed)
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int32)
    lhs = rng.standard_normal((rows, depth)).astype(np.float32)
    weights = to_bfloat16(rng.standard_normal((len(sizes), depth, columns)))
    out, stores = kernel_model(lhs, weights, offsets, False, to_bfloat16)
    assert (stores == 1).all()
    expected = grouped_reference(lhs, weights, offsets, False)
    error = np.abs(out - expected).max() / np.abs(expected).max()
    rounded = grouped_reference(to_bfloat16(lhs), weights, offsets, False)
    rounding_error = np.abs(rounded - expected).max() / np.abs(expected).max()
    # hi + lo holds 16 of x's 24 significant bits (measured ~2.5e-6);
    # rounding x to bf16 alone gives ~1.5e-3.
    assert error < 2e-5 < 1e-3 < rounding_error


def test_clamped_offsets_past_rows():
    """Offsets beyond R are clamped to R, as on the CPU."""
    rng = np.random.default_rng(3)
    lhs = to_bfloat16(rng.standard_normal((20, 16)))
    weights = to_bfloat16(rng.standard_normal((2, 16, 8)))
    offsets = np.array([0, 12, 40], dtype=np.int32)
    out, stores = kernel_model(lhs, weights, offsets, False, to_bfloat16)
    assert (stores == 1).all()
    expected = grouped_reference(lhs, weights, np.array([0, 12, 20]), False)
    assert np.abs(out - expected).max() <= 1e-12 * np.abs(expected).max()
