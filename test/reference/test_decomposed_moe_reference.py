"""Self-tests of decomposed_moe_reference.py: the dense, plain-op MoE FFN
must equal the sparse moe.layer reference of moe_reference.py (a differently
written computation: permute, grouped FFN, combine) on the same weights, and
its top-k must break ties towards the lower expert index."""

import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import decomposed_moe_reference as dec  # noqa: E402
import moe_reference as ref  # noqa: E402


def rnd(rng, *shape):
    a = rng.standard_normal(shape).astype(np.float32)
    a[a == 0] = np.float32(0.125)
    return a


def random_experts(rng, E, D, F, activation, bias):
    experts = []
    for _ in range(E):
        expert = {"fc1": rnd(rng, D, F) * 0.3, "fc2": rnd(rng, F, D) * 0.3}
        if activation in dec.GATED:
            expert["fc3"] = rnd(rng, D, F) * 0.3
        if bias:
            expert["fc1_bias"] = rnd(rng, F) * 0.1
            expert["fc2_bias"] = rnd(rng, D) * 0.1
            if activation in dec.GATED:
                expert["fc3_bias"] = rnd(rng, F) * 0.1
        experts.append(expert)
    return experts


def stacked(experts, name):
    if name not in experts[0]:
        return None
    return np.stack([expert[name] for expert in experts])


@pytest.mark.parametrize("activation", dec.ACTIVATIONS)
@pytest.mark.parametrize("E,k", [(4, 1), (4, 2), (8, 2)])
@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("seed", [0, 1])
def test_matches_sparse_layer(activation, E, k, normalize, seed):
    rng = np.random.default_rng(seed)
    T, D, F = 13, 8, 12
    x = rnd(rng, T, D)
    wr = rnd(rng, D, E)
    experts = random_experts(rng, E, D, F, activation, bias=seed == 1)
    dense = dec.decomposed_moe(x, wr, experts, k=k, activation=activation,
                               normalize=normalize)
    sparse = ref.moe_layer(
        x, wr, stacked(experts, "fc1"), stacked(experts, "fc2"),
        routing="token_choice", activation=activation, k=k,
        normalize=normalize, fc3=stacked(experts, "fc3"),
        fc1_bias=stacked(experts, "fc1_bias"),
        fc2_bias=stacked(experts, "fc2_bias"),
        fc3_bias=stacked(experts, "fc3_bias"))[0]
    err = np.abs(dense - sparse).max() / np.abs(sparse).max()
    assert err < 1e-5, err


def test_rank3_tokens_match_flattened():
    rng = np.random.default_rng(3)
    x = rnd(rng, 2, 5, 8)
    wr = rnd(rng, 8, 4)
    experts = random_experts(rng, 4, 8, 6, "silu", bias=False)
    out = dec.decomposed_moe(x, wr, experts, k=2, activation="silu",
                             normalize=True)
    flat = dec.decomposed_moe(x.reshape(10, 8), wr, experts, k=2,
                              activation="silu", normalize=True)
    np.testing.assert_array_equal(out.reshape(10, 8), flat)


def test_ties_go_to_the_lower_expert():
    # Equal router columns give equal probabilities: experts 1 and 3 tie
    # above experts 0 and 2.
    x = np.ones((3, 2), np.float32)
    wr = np.array([[0.0, 1.0, 0.5, 1.0], [0.0, 1.0, 0.5, 1.0]], np.float32)
    values, indices = dec.router(x, wr, k=2, normalize=False)
    np.testing.assert_array_equal(indices, [[1, 3]] * 3)
    _, top1 = dec.router(x, wr, k=1, normalize=False)
    np.testing.assert_array_equal(top1, [[1]] * 3)
    np.testing.assert_array_equal(values[:, 0], values[:, 1])
