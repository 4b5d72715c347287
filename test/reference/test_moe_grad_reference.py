"""Checks the float64 gradients of moe_grad_reference.py against central
finite differences of its forwards, and the forwards against the float32
spec implementations of moe_reference.py.

Every check forms the scalar L = sum(cotangent * f(inputs)) with a random
cotangent and compares dL/dinput from the gradient function with central
differences (step 1e-6) by max |a - b| / max |b|. Routing decisions are
piecewise constant: only continuous inputs are perturbed, and tokens whose
selection changes under a perturbation (near-ties) are detected explicitly
and excluded.
"""
import numpy as np
import pytest

import moe_grad_reference as g
import moe_reference as ref

SEEDS = (0, 1, 2)
FD_TOL = 1e-6
ACTIVATIONS = ("relu", "gelu", "gelu_tanh", "silu", "swiglu", "geglu",
               "identity", "relu2", "geglu_tanh")


def normal(rng, shape, scale=1.0):
    x = rng.standard_normal(shape) * scale
    return np.where(np.abs(x) < 1e-3, 1e-3, x)


def rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    if b.size == 0:
        return 0.0
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))


def check_fd(f, x, analytic, tol=FD_TOL):
    err = rel(analytic, g.central_difference(f, x))
    assert err < tol, err
    return err


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("jitter", [False, True])
def test_gate(seed, jitter):
    rng = np.random.default_rng(seed)
    T, D, E = 5, 7, 4
    x, w, b = normal(rng, (T, D)), normal(rng, (D, E)), normal(rng, (E,))
    u = 1 + 0.1 * rng.uniform(-1, 1, (T, D)) if jitter else None
    cot = normal(rng, (T, E))
    dx, dw, db = g.gate_grad(cot, x, w, u)
    check_fd(lambda v: (cot * g.gate_fwd(v, w, b, u)).sum(), x, dx)
    check_fd(lambda v: (cot * g.gate_fwd(x, v, b, u)).sum(), w, dw)
    check_fd(lambda v: (cot * g.gate_fwd(x, w, v, u)).sum(), b, db)
    np.testing.assert_allclose(
        g.gate_fwd(x, w, b, u),
        ref.moe_gate(x, w, b, 0.1 if jitter else 0.0, u), rtol=1e-5,
        atol=1e-5)


TOKEN_CHOICE = {
    "switch_top1": (8, 1, "softmax", False, {}),
    "mixtral_top2_normalize": (8, 2, "softmax", False, {"normalize": True}),
    "top3_bias_scaled": (6, 3, "softmax", True, {"scaling_factor": 0.5}),
    "deepseek_groups": (8, 3, "sigmoid", True,
                        {"normalize": True, "num_groups": 4,
                         "topk_groups": 2, "scaling_factor": 2.5}),
}


def stable_tokens(select, logits, eps=1e-6):
    """Tokens whose routing does not change when any logit of the token
    moves by +-eps (the points the finite differences evaluate)."""
    base = select(logits)
    keep = []
    for t in range(logits.shape[0]):
        ok = True
        for e in range(logits.shape[1]):
            for step in (eps, -eps):
                moved = logits.copy()
                moved[t, e] += step
                if not np.array_equal(select(moved), base):
                    ok = False
        keep.append(ok)
    return np.array(keep)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("name", sorted(TOKEN_CHOICE))
def test_token_choice(seed, name):
    E, k, score, has_bias, attrs = TOKEN_CHOICE[name]
    rng = np.random.default_rng(seed)
    T = 9
    logits = normal(rng, (T, E), 1.5)
    bias = normal(rng, (E,), 0.3) if has_bias else None
    groups = dict(num_groups=attrs.get("num_groups", 1),
                  topk_groups=attrs.get("topk_groups", 1))
    select = lambda lg: g.select_experts(lg, k, score, bias, **groups)  # noqa
    idx = select(logits)
    same = ref.moe_token_choice(logits.astype(np.float32), k, score,
                                None if bias is None else
                                bias.astype(np.float32), **groups,
                                normalize=attrs.get("normalize", False),
                                scaling_factor=attrs.get("scaling_factor",
                                                         1.0))
    np.testing.assert_array_equal(idx, same[1])
    kw = dict(score=score, normalize=attrs.get("normalize", False),
              scaling_factor=attrs.get("scaling_factor", 1.0))
    w, p = g.token_choice_fwd(logits, idx, **kw)
    np.testing.assert_allclose(w, same[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(p, same[2], rtol=1e-5, atol=1e-6)

    keep = stable_tokens(select, logits)
    cw, cp = normal(rng, (T, k)), normal(rng, (T, E))
    for dw, dp in ((cw, None), (None, cp), (cw, cp)):
        analytic = g.token_choice_grad(logits, idx, dw, dp, **kw)

        def loss(lg):
            ww, pp = g.token_choice_fwd(lg, idx, **kw)
            return ((0 if dw is None else (dw * ww).sum()) +
                    (0 if dp is None else (dp * pp).sum()))
        numeric = g.central_difference(loss, logits)
        assert rel(analytic[keep], numeric[keep]) < FD_TOL


def test_near_ties_are_detected():
    """Two experts 1e-7 apart in one token: a step of 1e-6 reorders them,
    and stable_tokens flags exactly that token."""
    logits = np.array([[0.3, 0.3 + 1e-7, -1.0, 0.5], [2.0, 0.0, -1.0, 0.5]])
    select = lambda lg: g.select_experts(lg, 2)  # noqa: E731
    assert stable_tokens(select, logits).tolist() == [False, True]


@pytest.mark.parametrize("seed", SEEDS)
def test_expert_choice(seed):
    rng = np.random.default_rng(seed)
    T, E, cf = 10, 4, 1.5
    logits = normal(rng, (T, E), 1.5)
    rt, off = g.expert_choice_select(logits, cf)
    spec = ref.moe_expert_choice(logits.astype(np.float32), cf)
    np.testing.assert_array_equal(rt, spec[0])
    np.testing.assert_array_equal(off, spec[2])
    rw, p = g.expert_choice_fwd(logits, rt, off)
    np.testing.assert_allclose(rw, spec[1], rtol=1e-5)
    select = lambda lg: g.expert_choice_select(lg, cf)[0]  # noqa: E731
    # A token is stable when no perturbation of its logits changes the plan.
    keep = stable_tokens(select, logits)
    crw, cp = normal(rng, rt.shape), normal(rng, (T, E))
    for drw, dp in ((crw, None), (None, cp), (crw, cp)):
        analytic = g.expert_choice_grad(logits, rt, off, drw, dp)

        def loss(lg):
            rr, pp = g.expert_choice_fwd(lg, rt, off)
            return ((0 if drw is None else (drw * rr).sum()) +
                    (0 if dp is None else (dp * pp).sum()))
        assert rel(analytic[keep], g.central_difference(loss, logits)[keep]) \
            < FD_TOL


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("capacity", [None, 0.6])
def test_dispatch(seed, capacity):
    rng = np.random.default_rng(seed)
    T, k, E = 11, 2, 4
    idx = np.stack([rng.choice(E, k, replace=False) for _ in range(T)])
    weights = rng.uniform(0.1, 1.0, (T, k))
    rt, rw, off = ref.moe_dispatch(idx.astype(np.int32),
                                   weights.astype(np.float32), E,
                                   capacity_factor=capacity)
    np.testing.assert_allclose(g.dispatch_fwd(weights, idx, rt, off), rw,
                               rtol=1e-6)
    cot = normal(rng, rt.shape)
    dw = g.dispatch_grad(cot, idx, rt, off)
    check_fd(lambda v: (cot * g.dispatch_fwd(v, idx, rt, off)).sum(),
             weights, dw)
    if capacity is not None:
        # Dropped assignments get no gradient.
        for t, j in ref.moe_dropped_assignments(idx, weights, E,
                                                capacity_factor=capacity):
            assert dw[t, j] == 0


@pytest.mark.parametrize("seed", SEEDS)
def test_permute_combine(seed):
    rng = np.random.default_rng(seed)
    T, D, R = 6, 5, 14
    rt = rng.integers(-1, T, R).astype(np.int32)
    x, ys = normal(rng, (T, D)), normal(rng, (R, D))
    rw, init = normal(rng, (R,)), normal(rng, (T, D))
    cp, cc = normal(rng, (R, D)), normal(rng, (T, D))
    np.testing.assert_allclose(g.permute_fwd(x, rt), ref.moe_permute(x, rt),
                               rtol=1e-6)
    check_fd(lambda v: (cp * g.permute_fwd(v, rt)).sum(), x,
             g.permute_grad(cp, rt, T))
    np.testing.assert_allclose(g.combine_fwd(ys, rt, rw, init),
                               ref.moe_combine(ys, rt, rw, init), rtol=1e-5,
                               atol=1e-5)
    dys, drw, dinit = g.combine_grad(cc, ys, rt, rw)
    check_fd(lambda v: (cc * g.combine_fwd(v, rt, rw, init)).sum(), ys, dys)
    check_fd(lambda v: (cc * g.combine_fwd(ys, rt, v, init)).sum(), rw, drw)
    check_fd(lambda v: (cc * g.combine_fwd(ys, rt, rw, v)).sum(), init, dinit)


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("biases", [False, True])
def test_expert_ffn(activation, biases):
    rng = np.random.default_rng(7)
    E, D, F, Dout, R = 3, 4, 5, 3, 9
    # Expert 1 has no rows; rows past offsets[E] are padding.
    off = np.array([0, 4, 4, 7], np.int32)
    gated = activation in g.GATED
    ops = dict(fc1=normal(rng, (E, D, F), 0.5),
               fc2=normal(rng, (E, F, Dout), 0.5))
    if gated:
        ops["fc3"] = normal(rng, (E, D, F), 0.5)
    if biases:
        ops["fc1_bias"] = normal(rng, (E, F), 0.3)
        ops["fc2_bias"] = normal(rng, (E, Dout), 0.3)
        if gated:
            ops["fc3_bias"] = normal(rng, (E, F), 0.3)
    x = normal(rng, (R, D))
    cot = normal(rng, (R, Dout))
    np.testing.assert_allclose(
        g.expert_ffn_fwd(x, off, activation=activation, **ops),
        ref.moe_expert_ffn(x, off, activation=activation, **ops), rtol=1e-4,
        atol=1e-5)
    grads = g.expert_ffn_grad(cot, x, off, activation=activation, **ops)
    check_fd(lambda v: (cot * g.expert_ffn_fwd(v, off, activation=activation,
                                               **ops)).sum(), x,
             grads["input"])
    for name in ops:
        def loss(v, name=name):
            return (cot * g.expert_ffn_fwd(x, off, activation=activation,
                                           **{**ops, name: v})).sum()
        check_fd(loss, ops[name], grads[name])


SWIGLU_PARAMETERS = {
    "gpt_oss": dict(swiglu_alpha=1.702, swiglu_beta=1.0, swiglu_limit=0.7),
    "limit_only": dict(swiglu_limit=0.45),
    "alpha_beta": dict(swiglu_alpha=0.6, swiglu_beta=-0.4),
}


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("name", sorted(SWIGLU_PARAMETERS))
def test_expert_ffn_swiglu_parameters(seed, name):
    """SwiGLU with alpha, beta and a limit that clips part of both
    projections (where the clamp passes no gradient)."""
    swiglu = SWIGLU_PARAMETERS[name]
    rng = np.random.default_rng(20 + seed)
    E, D, F, Dout, R = 3, 5, 6, 4, 10
    off = np.array([0, 3, 3, 8], np.int32)
    ops = dict(fc1=normal(rng, (E, D, F), 0.5), fc2=normal(rng, (E, F, Dout), 0.5),
               fc3=normal(rng, (E, D, F), 0.5), fc1_bias=normal(rng, (E, F), 0.3),
               fc2_bias=normal(rng, (E, Dout), 0.3),
               fc3_bias=normal(rng, (E, F), 0.3))
    x, cot = normal(rng, (R, D)), normal(rng, (R, Dout))
    limit = swiglu.get("swiglu_limit")
    if limit is not None:
        # The clamp is active on both projections, and no pre-activation
        # sits on a kink within the difference step.
        z1, z3 = [np.concatenate([x[off[e]:off[e + 1]] @ ops[w][e] + ops[b][e]
                                  for e in range(E)])
                  for w, b in (("fc1", "fc1_bias"), ("fc3", "fc3_bias"))]
        assert (z1 > limit).any() and (np.abs(z3) > limit).any()
        assert np.abs(z1 - limit).min() > 1e-4
        assert np.abs(np.abs(z3) - limit).min() > 1e-4
    np.testing.assert_allclose(
        g.expert_ffn_fwd(x, off, activation="swiglu", **ops, **swiglu),
        ref.moe_expert_ffn(x, off, activation="swiglu", **ops, **swiglu),
        rtol=1e-4, atol=1e-5)
    grads = g.expert_ffn_grad(cot, x, off, activation="swiglu", **ops, **swiglu)
    check_fd(lambda v: (cot * g.expert_ffn_fwd(v, off, activation="swiglu",
                                               **ops, **swiglu)).sum(), x,
             grads["input"])
    for name in ops:
        def loss(v, name=name):
            return (cot * g.expert_ffn_fwd(x, off, activation="swiglu",
                                           **{**ops, name: v}, **swiglu)).sum()
        check_fd(loss, ops[name], grads[name])


def test_swiglu_parameter_defaults_are_plain_swiglu():
    rng = np.random.default_rng(5)
    E, D, F = 2, 3, 4
    off = np.array([0, 2, 5], np.int32)
    ops = dict(fc1=normal(rng, (E, D, F)), fc2=normal(rng, (E, F, D)),
               fc3=normal(rng, (E, D, F)))
    x = normal(rng, (5, D))
    plain = g.expert_ffn_fwd(x, off, activation="swiglu", **ops)
    explicit = g.expert_ffn_fwd(x, off, activation="swiglu", **ops,
                                swiglu_alpha=1.0, swiglu_beta=0.0,
                                swiglu_limit=None)
    assert np.array_equal(plain, explicit)
    # A limit beyond every pre-activation changes nothing.
    far = g.expert_ffn_fwd(x, off, activation="swiglu", **ops,
                           swiglu_limit=1e6)
    np.testing.assert_allclose(far, plain, rtol=1e-12)


@pytest.mark.parametrize("activation", ["silu", "swiglu", "gelu_tanh"])
@pytest.mark.parametrize("gated_output", [False, True])
def test_shared_expert(activation, gated_output):
    rng = np.random.default_rng(3)
    T, D, F, Dout = 5, 4, 6, 3
    ops = dict(fc1=normal(rng, (D, F), 0.5), fc2=normal(rng, (F, Dout), 0.5))
    if activation in g.GATED:
        ops["fc3"] = normal(rng, (D, F), 0.5)
    if gated_output:
        ops["gate"] = normal(rng, (D, 1))
    x, cot = normal(rng, (T, D)), normal(rng, (T, Dout))
    np.testing.assert_allclose(
        g.shared_expert_fwd(x, activation=activation, **ops),
        ref.moe_shared_expert(x, activation=activation, **ops), rtol=1e-4,
        atol=1e-5)
    grads = g.shared_expert_grad(cot, x, activation=activation, **ops)
    check_fd(lambda v: (cot * g.shared_expert_fwd(v, activation=activation,
                                                  **ops)).sum(), x,
             grads["input"])
    for name in ops:
        def loss(v, name=name):
            return (cot * g.shared_expert_fwd(x, activation=activation,
                                              **{**ops, name: v})).sum()
        check_fd(loss, ops[name], grads[name])


@pytest.mark.parametrize("seed", SEEDS)
def test_router_losses(seed):
    rng = np.random.default_rng(seed)
    T, E, k = 7, 5, 2
    logits = normal(rng, (T, E), 2.0)
    probs = g.softmax(logits)
    idx = np.stack([rng.choice(E, k, replace=False) for _ in range(T)])
    assert abs(g.load_balancing_loss_fwd(probs, idx) -
               float(ref.moe_load_balancing_loss(probs, idx))) < 1e-5
    check_fd(lambda v: 1.7 * g.load_balancing_loss_fwd(v, idx), probs,
             g.load_balancing_loss_grad(1.7, probs, idx))
    assert abs(g.z_loss_fwd(logits) - float(ref.moe_z_loss(logits))) < 1e-4
    check_fd(lambda v: 0.6 * g.z_loss_fwd(v), logits,
             g.z_loss_grad(0.6, logits))
