"""End-to-end numerics of every fine-grained moe op and of whole moe.layer
ops: compile a small entry point with moec (so convert-moe-to-linalg and the
rest of the pipeline run), execute it through the model ABI (moe_abi.py) and
compare with the NumPy references of test/reference/moe_reference.py.

Entry points name their arguments and results (`moe.name`) and use dynamic
token counts (`?`) where the op allows, so one compiled model runs on
T = 1, 7, 33, 257 and several seeds. Inputs are random and nonzero.

What is compared:

- routing decisions and row plans (indices, row_token, offsets, the set of
  dropped assignments, counters) must match exactly;
- floating-point results by the relative error measures of test_nn_ops.py:
  elementwise (|y - ref| / max(|ref|, 1e-3 max|ref|)) for values that are
  computed elementwise (probs, routing weights, permuted rows) and normwise
  (max|y - ref| / max|ref|) for results of sums (matmuls, FFNs, combine,
  losses).

Tolerances (f32): 1e-6 for copies and IEEE arithmetic done as numpy does it
(row weights of the plan, combine's row-order sums); 1e-5 for exp / sigmoid
/ softmax (libm vs numpy SIMD, a few ulp) and for contractions (summation
order); gelu: 1e-4 elementwise (see test_nn_ops.py), 1e-5 normwise after a
matmul; f16: 4e-3.

The jitter of moe.gate is reproduced exactly by `jitter_multipliers`, the
formula documented in passes/ConvertMoEToLinalg.cpp. Jitter is a training
regulariser: models with it are compiled with `--routing=train`, since
`forward` routes as in evaluation (no jitter) by default.

The measured maxima are printed in the terminal summary.
"""
import subprocess

import numpy as np
import pytest

import moe_reference as ref

SEEDS = (0, 1, 2)
TOKENS = (1, 7, 33, 257)
EXACT = 1e-6
F32 = 1e-5
GELU = 1e-4
F16 = 4e-3


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------

def ttype(shape, element="f32"):
    dims = "x".join("?" if d is None else str(d) for d in shape)
    return "tensor<%s%s%s>" % (dims, "x" if dims else "", element)


def entry(args, results, body):
    """An entry point @forward. args: [(name, type)]; results: [(name,
    type)]; body: MLIR lines using %name for the arguments and defining
    %name for every result."""
    params = ", ".join('%%%s: %s {moe.name = "%s"}' % (n, t, n)
                       for n, t in args)
    outs = ", ".join('%s {moe.name = "%s"}' % (t, n) for n, t in results)
    ret = ", ".join("%" + n for n, _ in results)
    types = ", ".join(t for _, t in results)
    return ("func.func @forward(%s) -> (%s) {\n%s\n  return %s : %s\n}\n" %
            (params, outs, body, ret, types))


def normal(rng, shape, scale=1.0):
    """Normal values, nudged away from exact zero."""
    x = rng.standard_normal(shape) * scale
    x = np.where(np.abs(x) < 1e-3, 1e-3, x)
    return x.astype(np.float32)


def rel_error(actual, expected, measure):
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    assert np.isfinite(actual).all() and np.isfinite(expected).all()
    if expected.size == 0:
        return 0.0
    diff = np.abs(actual - expected)
    scale = np.abs(expected)
    top = max(scale.max(), 1e-30)
    if measure == "normwise":
        return float(diff.max() / top)
    return float((diff / np.maximum(scale, 1e-3 * top)).max())


def close(report, key, actual, expected, tol, measure="elementwise"):
    err = rel_error(actual, expected, measure)
    report("%s (%s)" % (key, measure), err)
    assert err <= tol, "%s: %s relative error %.3g > %.3g" % (
        key, measure, err, tol)


def same(actual, expected, what):
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, (what, actual.shape,
                                            expected.shape)
    mismatch = np.argwhere(actual != expected)
    assert mismatch.size == 0, "%s differs at %s: %s vs %s" % (
        what, mismatch[:5].tolist(), actual[tuple(mismatch[0])],
        expected[tuple(mismatch[0])])


def run(model, **inputs):
    """model.run("forward") that also checks the inputs were not written."""
    saved = {k: np.array(v, copy=True) for k, v in inputs.items()}
    out = model.run("forward", **inputs)
    for k, v in saved.items():
        assert np.array_equal(np.asarray(inputs[k]), v, equal_nan=True), \
            "input %r was modified" % k
    return out


# Keeps the router jitter in forward (evaluation routing drops it).
TRAIN_ROUTING = ("--routing=train",)


def jitter_multipliers(seed, tokens, features, eps):
    """The multipliers u [T, D] that moe.gate draws for `seed` (the formula
    of passes/ConvertMoEToLinalg.cpp: splitmix64's finaliser of
    seed + i * golden, top 24 bits)."""
    i = np.arange(tokens * features, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = np.uint64(seed % 2 ** 64) + i * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    uniform = (z >> np.uint64(40)).astype(np.float32) * np.float32(2.0 ** -24)
    eps = np.float32(eps)
    u = np.float32(1) + eps * (np.float32(2) * uniform - np.float32(1))
    return u.reshape(tokens, features)


def kept_from_plan(indices, row_token, offsets):
    """(token, choice) pairs that have a row in the plan (indices distinct
    per token)."""
    kept = set()
    for e in range(len(offsets) - 1):
        tokens = set(int(t) for t in row_token[offsets[e]:offsets[e + 1]])
        for t in tokens:
            for j in np.nonzero(indices[t] == e)[0]:
                kept.add((t, int(j)))
    return kept


# moe_abi.Model.run passes inputs through np.ascontiguousarray, which turns a
# 0-d array into a 1-d one, so the i64 seed travels as tensor<1xi64>.
SEED_PRELUDE = ("  %c0 = arith.constant 0 : index\n"
                "  %seed = tensor.extract %seed1[%c0] : tensor<1xi64>\n")


# ---------------------------------------------------------------------------
# moe.gate
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("jitter", [False, True])
def test_gate(compile_model, numerics_report, bias, jitter):
    D, E, eps = 24, 8, 0.05
    args = [("x", ttype([None, D])), ("w", ttype([D, E]))]
    op = "  %logits = moe.gate %x, %w"
    types = [ttype([None, D]), ttype([D, E])]
    body = ""
    if bias:
        args.append(("b", ttype([E])))
        op += " bias %b"
        types.append(ttype([E]))
    if jitter:
        args.append(("seed1", ttype([1], "i64")))
        body += SEED_PRELUDE
        op += " seed %%seed {jitter_eps = %s : f32}" % eps
    body += op + " : " + ", ".join(types)
    model = compile_model(entry(args, [("logits", ttype([None, E]))], body),
                          flags=TRAIN_ROUTING if jitter else ())
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        for T in TOKENS:
            inputs = {"x": normal(rng, (T, D)), "w": normal(rng, (D, E))}
            u = None
            if bias:
                inputs["b"] = normal(rng, (E,))
            if jitter:
                key = int(rng.integers(-2 ** 63, 2 ** 63 - 1))
                inputs["seed1"] = np.array([key], dtype=np.int64)
                u = jitter_multipliers(key, T, D, eps)
            out = run(model, **inputs)["logits"]
            expected = ref.moe_gate(inputs["x"], inputs["w"], inputs.get("b"),
                                    jitter_eps=eps if jitter else 0.0,
                                    jitter_u=u)
            close(numerics_report, "moe.gate", out, expected, F32,
                  "normwise")


def test_gate_jitter_statistics(compile_model):
    """The multipliers are spread over [1 - eps, 1 + eps] and change with
    the seed (checked through x = identity rows)."""
    D, eps = 16, 0.25
    body = SEED_PRELUDE + (
        "  %%logits = moe.gate %%x, %%w seed %%seed {jitter_eps = %s : f32}"
        " : %s, %s" % (eps, ttype([None, D]), ttype([D, D])))
    model = compile_model(entry(
        [("x", ttype([None, D])), ("w", ttype([D, D])),
         ("seed1", ttype([1], "i64"))],
        [("logits", ttype([None, D]))], body), flags=TRAIN_ROUTING)
    T = 512
    x = np.ones((T, D), np.float32)
    w = np.eye(D, dtype=np.float32)
    u1 = run(model, x=x, w=w, seed1=np.array([7], np.int64))["logits"]
    u2 = run(model, x=x, w=w, seed1=np.array([8], np.int64))["logits"]
    same(u1, jitter_multipliers(7, T, D, eps), "jitter multipliers")
    assert u1.min() >= np.float32(1) - np.float32(eps)
    assert u1.max() <= np.float32(1) + np.float32(eps)
    assert abs(float(u1.mean()) - 1.0) < 0.01
    assert abs(float(u1.std()) - eps / np.sqrt(3)) < 0.01
    assert np.mean(u1 == u2) < 0.01


# ---------------------------------------------------------------------------
# moe.token_choice
# ---------------------------------------------------------------------------

TOKEN_CHOICE = {
    # name: (E, k, score, bias, attrs dict)
    "switch_top1": (8, 1, "softmax", False, {}),
    "mixtral_top2_normalize": (8, 2, "softmax", False, {"normalize": True}),
    "top3_bias_scaled": (16, 3, "softmax", True, {"scaling_factor": 0.5}),
    "deepseek_groups": (32, 8, "sigmoid", True,
                        {"normalize": True, "num_groups": 8,
                         "topk_groups": 4, "scaling_factor": 2.5}),
    "groups_softmax": (12, 3, "softmax", False,
                       {"num_groups": 4, "topk_groups": 2}),
    "groups_of_one": (8, 2, "sigmoid", True,
                      {"num_groups": 8, "topk_groups": 3,
                       "normalize": True}),
    "sigmoid_all_experts": (6, 6, "sigmoid", False, {"normalize": True}),
}


def attr_dict(attrs):
    parts = []
    for key, value in attrs.items():
        if value is True:
            parts.append(key)
        elif isinstance(value, float):
            parts.append("%s = %r : f32" % (key, value))
        else:
            parts.append("%s = %d : i64" % (key, value))
    return " {%s}" % ", ".join(parts) if parts else ""


def token_choice_model(compile_model, E, k, score, bias, attrs,
                       element="f32", tokens=None):
    lt = ttype([tokens, E], element)
    args = [("logits", lt)]
    op = "  %%w, %%idx, %%p = moe.token_choice %s %%logits top %d" % (score,
                                                                    k)
    types = lt
    if bias:
        args.append(("bias", ttype([E], element)))
        op += " bias %bias"
        types += ", " + ttype([E], element)
    body = op + attr_dict(attrs) + " : " + types
    return compile_model(entry(
        args, [("w", ttype([tokens, k], element)),
               ("idx", ttype([tokens, k], "i32")), ("p", lt)], body))


def run_token_choice(report, model, E, k, score, bias, attrs, logits,
                     bias_value, key, tol=F32, element=np.float32):
    inputs = {"logits": logits.astype(element)}
    if bias:
        inputs["bias"] = bias_value.astype(element)
    out = run(model, **inputs)
    w, idx, p = ref.moe_token_choice(
        inputs["logits"].astype(np.float32), k, score,
        None if not bias else inputs["bias"].astype(np.float32),
        normalize=attrs.get("normalize", False),
        num_groups=attrs.get("num_groups", 1),
        topk_groups=attrs.get("topk_groups", 1),
        scaling_factor=attrs.get("scaling_factor", 1.0))
    same(out["idx"], idx, key + " indices")
    close(report, key + " weights", out["w"], w, tol)
    close(report, key + " probs", out["p"], p, tol)
    return out


@pytest.mark.parametrize("name", sorted(TOKEN_CHOICE))
def test_token_choice(compile_model, numerics_report, name):
    E, k, score, bias, attrs = TOKEN_CHOICE[name]
    model = token_choice_model(compile_model, E, k, score, bias, attrs)
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        for T in TOKENS:
            run_token_choice(numerics_report, model, E, k, score, bias, attrs,
                             normal(rng, (T, E), 2.0),
                             normal(rng, (E,), 0.3), "moe.token_choice")


def test_token_choice_ties(compile_model, numerics_report):
    """Equal scores go to the lower expert index, equal group scores to the
    lower group (logits on a coarse grid make many exact ties)."""
    E, k, attrs = 16, 4, {"num_groups": 4, "topk_groups": 2}
    model = token_choice_model(compile_model, E, k, "softmax", False, attrs)
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        logits = rng.integers(-2, 2, (33, E)).astype(np.float32) + 0.5
        run_token_choice(numerics_report, model, E, k, "softmax", False,
                         attrs, logits, None, "moe.token_choice")


def test_token_choice_static_tokens(compile_model, numerics_report):
    E, k, attrs = 8, 2, {"normalize": True}
    model = token_choice_model(compile_model, E, k, "softmax", True, attrs,
                               tokens=33)
    rng = np.random.default_rng(5)
    run_token_choice(numerics_report, model, E, k, "softmax", True, attrs,
                     normal(rng, (33, E)), normal(rng, (E,), 0.1),
                     "moe.token_choice")


def test_token_choice_f16(compile_model, numerics_report):
    E, k, attrs = 8, 2, {"normalize": True}
    model = token_choice_model(compile_model, E, k, "softmax", False, attrs,
                               element="f16")
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        logits = ref.to_float16(normal(rng, (33, E), 2.0))
        out = run_token_choice(numerics_report, model, E, k, "softmax",
                               False, attrs, logits, None,
                               "moe.token_choice f16", tol=F16,
                               element=np.float16)
        assert out["w"].dtype == np.float16


def sparse_mixer_logits(rng, T, E):
    """Logits where two other experts of each token lie within 5% of its
    best and of its second best logit, so that SparseMixer's softmaxes often
    have several members; rows of either sign."""
    logits = normal(rng, (T, E), 2.0)
    for t in range(T):
        order = np.argsort(-logits[t])
        for rank in (0, 1):
            top = logits[t, order[rank]]
            for e in rng.choice(order[2:], min(2, E - 2), replace=False):
                logits[t, e] = top - abs(top) * rng.uniform(0.0, 0.05) - 1e-3
    return logits


@pytest.mark.parametrize("element", ["f32", "f16"])
@pytest.mark.parametrize("E", [8, 16, 5])
def test_token_choice_sparse_mixer(compile_model, numerics_report, E,
                                   element):
    """Phi-3.5-MoE's SparseMixer top-2 against the reference written from
    onnxruntime's CUDA kernel (onnxruntime's CPU MoE ignores
    use_sparse_mixer)."""
    attrs = {"scaling_factor": 0.75} if E == 5 else {}
    model = token_choice_model(compile_model, E, 2, "sparse_mixer", False,
                               attrs, element=element)
    dtype = np.float16 if element == "f16" else np.float32
    shared = 0
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        for T in TOKENS:
            logits = sparse_mixer_logits(rng, T, E)
            if element == "f16":
                logits = ref.to_float16(logits)
            out = run_token_choice(
                numerics_report, model, E, 2, "sparse_mixer", False, attrs,
                logits, None, "moe.token_choice sparse_mixer " + element,
                tol=F16 if element == "f16" else F32, element=dtype)
            shared += int((out["w"].astype(np.float32) <
                           0.9 * attrs.get("scaling_factor", 1.0)).sum())
    # Many picks share their softmax with other experts.
    assert shared > 100


# ---------------------------------------------------------------------------
# moe.expert_choice
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("factor", [0.5, 1.0, 2.0, 3.7, 100.0])
def test_expert_choice(compile_model, numerics_report, factor):
    E = 8
    lt = ttype([None, E])
    body = ("  %%rt, %%rw, %%off, %%p = moe.expert_choice %%logits "
            "{capacity_factor = %r : f64} : %s" % (factor, lt))
    model = compile_model(entry(
        [("logits", lt)],
        [("rt", ttype([None], "i32")), ("rw", ttype([None])),
         ("off", ttype([E + 1], "i32")), ("p", lt)], body))
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        for T in TOKENS:
            logits = normal(rng, (T, E), 2.0)
            if seed == 2:
                # Duplicated tokens: exact ties go to the lower token.
                logits[T // 2:] = logits[:T - T // 2]
            out = run(model, logits=logits)
            rt, rw, off, p = ref.moe_expert_choice(logits, factor)
            same(out["rt"], rt, "row_token")
            same(out["off"], off, "offsets")
            close(numerics_report, "moe.expert_choice row_weight", out["rw"],
                  rw, F32)
            close(numerics_report, "moe.expert_choice probs", out["p"], p,
                  F32)


def test_expert_choice_static(compile_model, numerics_report):
    T, E, factor = 33, 4, 1.3
    C = ref.expert_choice_capacity(factor, T, E)
    lt = ttype([T, E])
    body = ("  %%rt, %%rw, %%off, %%p = moe.expert_choice %%logits "
            "{capacity_factor = %r : f64} : %s" % (factor, lt))
    model = compile_model(entry(
        [("logits", lt)],
        [("rt", ttype([E * C], "i32")), ("rw", ttype([E * C])),
         ("off", ttype([E + 1], "i32")), ("p", lt)], body))
    rng = np.random.default_rng(3)
    logits = normal(rng, (T, E))
    out = run(model, logits=logits)
    rt, rw, off, p = ref.moe_expert_choice(logits, factor)
    same(out["rt"], rt, "row_token")
    same(out["off"], off, "offsets")
    close(numerics_report, "moe.expert_choice row_weight", out["rw"], rw, F32)


# ---------------------------------------------------------------------------
# moe.dispatch
# ---------------------------------------------------------------------------

DISPATCH = {
    # name: (E, k, capacity_factor, batch_prioritized)
    "dropless_top2": (8, 2, None, False),
    "switch_cf1": (8, 1, 1.0, False),
    "switch_cf1_bpr": (8, 1, 1.0, True),
    "top2_cf1.25_bpr": (8, 2, 1.25, True),
    "top2_cf0.5": (8, 2, 0.5, False),
    "top3_cf0.3_bpr": (16, 3, 0.3, True),
    "top2_cf1.1": (6, 2, 1.1, False),
}


def dispatch_model(compile_model, E, k, factor, bpr, tokens=None):
    attrs = ["num_experts = %d : i64" % E]
    if factor is not None:
        attrs.append("capacity_factor = %r : f64" % factor)
    if bpr:
        attrs.append("batch_prioritized")
    it, wt = ttype([tokens, k], "i32"), ttype([tokens, k])
    rows = None
    if tokens is not None:
        rows = ref.token_choice_rows(tokens, k, E, factor)
    body = ("  %%rt, %%rw, %%off = moe.dispatch %%idx, %%w {%s} : %s, %s\n"
            "  %%load, %%dropped = moe.routing_stats %%off indices %%idx : %s"
            " : %s" % (", ".join(attrs), it, wt, it, ttype([E + 1], "i32")))
    return compile_model(entry(
        [("idx", it), ("w", wt)],
        [("rt", ttype([rows], "i32")), ("rw", ttype([rows])),
         ("off", ttype([E + 1], "i32")), ("load", ttype([E], "i64")),
         ("dropped", ttype([], "i64"))], body))


def routing_inputs(rng, T, E, k, ties=False):
    """Token-choice routing of random logits, skewed so that some experts
    are popular and the last one never chosen."""
    logits = normal(rng, (T, E), 1.5)
    logits[:, :2] += 1.0
    logits[:, -1] = -30.0
    weights, indices, _ = ref.moe_token_choice(logits, k, "softmax")
    if ties:
        # Few distinct top-1 weights (and a -0.0 vs 0.0 pair) to exercise
        # the batch-priority tie break.
        weights[:, 0] = np.round(weights[:, 0] * 4) / 4
        if T > 3:
            weights[1, 0], weights[3, 0] = -0.0, 0.0
    return indices, weights


def check_dispatch(report, out, indices, weights, E, factor, bpr, key):
    rt, rw, off = ref.moe_dispatch(indices, weights, E, factor, bpr)
    same(out["off"], off, key + " offsets")
    same(out["rt"], rt, key + " row_token")
    close(report, key + " row_weight", out["rw"], rw, EXACT)
    dropped = ref.moe_dropped_assignments(indices, weights, E, factor, bpr)
    T, k = indices.shape
    all_pairs = {(t, j) for t in range(T) for j in range(k)}
    if all(len(set(row)) == k for row in indices.tolist()):
        assert all_pairs - kept_from_plan(indices, out["rt"],
                                          out["off"]) == dropped
    load, count = ref.moe_routing_stats(off, indices)
    same(out["load"], load, key + " tokens_per_expert")
    same(out["dropped"], count, key + " dropped")
    assert int(out["dropped"]) == len(dropped)


@pytest.mark.parametrize("name", sorted(DISPATCH))
def test_dispatch(compile_model, numerics_report, name):
    E, k, factor, bpr = DISPATCH[name]
    model = dispatch_model(compile_model, E, k, factor, bpr)
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        for T in TOKENS:
            indices, weights = routing_inputs(rng, T, E, k, ties=seed == 1)
            out = run(model, idx=indices, w=weights)
            check_dispatch(numerics_report, out, indices, weights, E, factor,
                           bpr, "moe.dispatch")


def test_dispatch_static_tokens(compile_model, numerics_report):
    E, k, factor, T = 8, 2, 0.75, 33
    model = dispatch_model(compile_model, E, k, factor, True, tokens=T)
    rng = np.random.default_rng(4)
    indices, weights = routing_inputs(rng, T, E, k, ties=True)
    out = run(model, idx=indices, w=weights)
    check_dispatch(numerics_report, out, indices, weights, E, factor, True,
                   "moe.dispatch")


def test_dispatch_duplicate_indices(compile_model, numerics_report):
    """Random indices and weights of any sign. A token may pick an expert
    twice: the spec requires distinct experts (as top-k guarantees), so this
    only checks that the lowering agrees with the reference's documented
    choice (two assignments, rows in choice-rank order)."""
    E, k = 5, 3
    for factor, bpr in [(None, False), (0.6, True), (0.9, False)]:
        model = dispatch_model(compile_model, E, k, factor, bpr)
        for seed in SEEDS:
            rng = np.random.default_rng(seed)
            for T in TOKENS:
                indices = rng.integers(0, E, (T, k)).astype(np.int32)
                weights = normal(rng, (T, k))
                out = run(model, idx=indices, w=weights)
                check_dispatch(numerics_report, out, indices, weights, E,
                               factor, bpr, "moe.dispatch")


# ---------------------------------------------------------------------------
# moe.permute, moe.expert_ffn, moe.combine, moe.shared_expert
# ---------------------------------------------------------------------------

def random_plan(rng, T, E, R, empty_experts=(1,)):
    """A row plan over R rows: offsets with some empty experts and padding
    rows past offsets[E]; rows of an expert are increasing tokens."""
    used = int(rng.integers(max(R - 3, 0), R + 1))
    cuts = np.sort(rng.integers(0, used + 1, E - 1))
    offsets = np.concatenate([[0], cuts, [used]]).astype(np.int32)
    for e in empty_experts:
        if e < E:
            offsets[e + 1] = offsets[e]
    offsets = np.maximum.accumulate(offsets)
    offsets[E] = used
    row_token = np.full(R, -1, np.int32)
    for e in range(E):
        n = offsets[e + 1] - offsets[e]
        row_token[offsets[e]:offsets[e + 1]] = np.sort(
            rng.choice(T, n, replace=n > T))
    return row_token, offsets


def test_permute(compile_model, numerics_report):
    D = 12
    body = ("  %%xs = moe.permute %%x, %%rt : %s, %s" %
            (ttype([None, D]), ttype([None], "i32")))
    model = compile_model(entry(
        [("x", ttype([None, D])), ("rt", ttype([None], "i32"))],
        [("xs", ttype([None, D]))], body))
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        for T in TOKENS:
            x = normal(rng, (T, D))
            R = 2 * T + 1
            rt = rng.integers(-1, T, R).astype(np.int32)
            out = run(model, x=x, rt=rt)["xs"]
            close(numerics_report, "moe.permute", out,
                  ref.moe_permute(x, rt), 0.0)


ACTIVATIONS = ["relu", "gelu", "gelu_tanh", "silu", "swiglu", "geglu",
               "identity", "relu2", "geglu_tanh"]
GATED = ("swiglu", "geglu", "geglu_tanh")


def ffn_tolerance(activation):
    return F32


@pytest.mark.parametrize("biases", [False, True])
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_expert_ffn(compile_model, numerics_report, activation, biases):
    E, D, F, Dout = 4, 16, 24, 12
    gated = activation in GATED
    xt = ttype([None, D])
    args = [("xs", xt), ("off", ttype([E + 1], "i32")),
            ("fc1", ttype([E, D, F])), ("fc2", ttype([E, F, Dout]))]
    op = "  %%ys = moe.expert_ffn %s %%xs, %%off, %%fc1, %%fc2" % activation
    if gated:
        args.append(("fc3", ttype([E, D, F])))
        op += " fc3 %%fc3 : %s" % ttype([E, D, F])
    if biases:
        args += [("b1", ttype([E, F])), ("b2", ttype([E, Dout]))]
        op += " fc1_bias %%b1 : %s fc2_bias %%b2 : %s" % (ttype([E, F]),
                                                         ttype([E, Dout]))
        if gated:
            args.append(("b3", ttype([E, F])))
            op += " fc3_bias %%b3 : %s" % ttype([E, F])
    op += " : %s, %s, %s, %s" % (xt, ttype([E + 1], "i32"),
                                  ttype([E, D, F]), ttype([E, F, Dout]))
    model = compile_model(entry(args, [("ys", ttype([None, Dout]))], op))
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        for R in (1, 7, 33, 257):
            _, off = random_plan(rng, 1, E, R, empty_experts=(seed % E,))
            inputs = {"xs": normal(rng, (R, D)), "off": off,
                      "fc1": normal(rng, (E, D, F), 0.3),
                      "fc2": normal(rng, (E, F, Dout), 0.3)}
            if gated:
                inputs["fc3"] = normal(rng, (E, D, F), 0.3)
            if biases:
                inputs["b1"] = normal(rng, (E, F), 0.3)
                inputs["b2"] = normal(rng, (E, Dout), 0.3)
                if gated:
                    inputs["b3"] = normal(rng, (E, F), 0.3)
            out = run(model, **inputs)["ys"]
            expected = ref.moe_expert_ffn(
                inputs["xs"], off, inputs["fc1"], inputs["fc2"], activation,
                inputs.get("fc3"), inputs.get("b1"), inputs.get("b2"),
                inputs.get("b3"))
            # Rows past offsets[E] must be exactly zero.
            assert not out[off[E]:].any()
            close(numerics_report, "moe.expert_ffn " + activation, out,
                  expected, ffn_tolerance(activation), "normwise")


def test_expert_ffn_f16(compile_model, numerics_report):
    E, D, F = 3, 16, 32
    t16 = lambda shape: ttype(shape, "f16")  # noqa: E731
    op = ("  %%ys = moe.expert_ffn swiglu %%xs, %%off, %%fc1, %%fc2 fc3 %%fc3"
          " : %s : %s, %s, %s, %s" % (t16([E, D, F]), t16([None, D]),
                                       ttype([E + 1], "i32"), t16([E, D, F]),
                                       t16([E, F, D])))
    model = compile_model(entry(
        [("xs", t16([None, D])), ("off", ttype([E + 1], "i32")),
         ("fc1", t16([E, D, F])), ("fc2", t16([E, F, D])),
         ("fc3", t16([E, D, F]))], [("ys", t16([None, D]))], op))
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        R = 33
        _, off = random_plan(rng, 1, E, R)
        inputs = {"xs": normal(rng, (R, D)), "off": off,
                  "fc1": normal(rng, (E, D, F), 0.3),
                  "fc2": normal(rng, (E, F, D), 0.3),
                  "fc3": normal(rng, (E, D, F), 0.3)}
        inputs = {k: (ref.to_float16(v).astype(np.float16)
                      if v.dtype == np.float32 else v)
                  for k, v in inputs.items()}
        out = run(model, **inputs)["ys"]
        assert out.dtype == np.float16
        expected = ref.moe_expert_ffn(inputs["xs"], off, inputs["fc1"],
                                      inputs["fc2"], "swiglu", inputs["fc3"])
        close(numerics_report, "moe.expert_ffn f16", out, expected, F16,
              "normwise")


# SwiGLU's parameters as onnxruntime's com.microsoft.MoE has them; the limits
# clip part of both projections of these inputs.
SWIGLU_PARAMETERS = {
    "gpt_oss": {"swiglu_alpha": 1.702, "swiglu_beta": 1.0,
                "swiglu_limit": 0.7},
    "limit": {"swiglu_limit": 0.4},
    "alpha_beta": {"swiglu_alpha": 0.75, "swiglu_beta": -0.5},
}


def swiglu_attrs(params):
    return "{%s}" % ", ".join("%s = %r : f32" % kv
                              for kv in sorted(params.items()))


@pytest.mark.parametrize("element", ["f32", "f16"])
@pytest.mark.parametrize("name", sorted(SWIGLU_PARAMETERS))
def test_expert_ffn_swiglu_parameters(compile_model, numerics_report, name,
                                      element):
    params = SWIGLU_PARAMETERS[name]
    E, D, F, Dout = 3, 13, 18, 7
    t = lambda shape: ttype(shape, element)  # noqa: E731
    ot = ttype([E + 1], "i32")
    op = ("  %%ys = moe.expert_ffn swiglu %%xs, %%off, %%fc1, %%fc2 fc3 %%fc3"
          " : %s fc1_bias %%b1 : %s fc3_bias %%b3 : %s %s : %s, %s, %s, %s" % (
              t([E, D, F]), t([E, F]), t([E, F]), swiglu_attrs(params),
              t([None, D]), ot, t([E, D, F]), t([E, F, Dout])))
    model = compile_model(entry(
        [("xs", t([None, D])), ("off", ot), ("fc1", t([E, D, F])),
         ("fc2", t([E, F, Dout])), ("fc3", t([E, D, F])), ("b1", t([E, F])),
         ("b3", t([E, F]))], [("ys", t([None, Dout]))], op))
    limit = params.get("swiglu_limit")
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        for R in (1, 7, 33, 257):
            _, off = random_plan(rng, 1, E, R, empty_experts=(seed % E,))
            inputs = {"xs": normal(rng, (R, D)), "off": off,
                      "fc1": normal(rng, (E, D, F), 0.3),
                      "fc2": normal(rng, (E, F, Dout), 0.3),
                      "fc3": normal(rng, (E, D, F), 0.3),
                      "b1": normal(rng, (E, F), 0.3),
                      "b3": normal(rng, (E, F), 0.3)}
            if element == "f16":
                inputs = {k: (ref.to_float16(v).astype(np.float16)
                              if v.dtype == np.float32 else v)
                          for k, v in inputs.items()}
            out = run(model, **inputs)["ys"]
            assert out.dtype == np.dtype(np.float16 if element == "f16"
                                         else np.float32)
            expected = ref.moe_expert_ffn(
                inputs["xs"], off, inputs["fc1"], inputs["fc2"], "swiglu",
                inputs["fc3"], inputs["b1"], None, inputs["b3"], **params)
            if limit is not None and R > 30:
                free = ref.moe_expert_ffn(
                    inputs["xs"], off, inputs["fc1"], inputs["fc2"], "swiglu",
                    inputs["fc3"], inputs["b1"], None, inputs["b3"],
                    swiglu_alpha=params.get("swiglu_alpha", 1.0),
                    swiglu_beta=params.get("swiglu_beta", 0.0))
                assert np.abs(free - expected).max() > 1e-2, "limit unused"
            assert not out[off[E]:].astype(np.float32).any()
            close(numerics_report,
                  "moe.expert_ffn swiglu %s %s" % (name, element), out,
                  expected, F16 if element == "f16" else F32, "normwise")


def test_combine(compile_model, numerics_report):
    D = 10
    types = (ttype([None, D]), ttype([None], "i32"), ttype([None]),
             ttype([None, D]))
    body = "  %%y = moe.combine %%ys, %%rt, %%rw into %%init : %s, %s, %s, %s" \
        % types
    model = compile_model(entry(
        [("ys", types[0]), ("rt", types[1]), ("rw", types[2]),
         ("init", types[3])], [("y", ttype([None, D]))], body))
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        for T in TOKENS:
            R = 3 * T + 2
            rt = rng.integers(-1, T, R).astype(np.int32)
            inputs = {"ys": normal(rng, (R, D)), "rt": rt,
                      "rw": normal(rng, (R,)), "init": normal(rng, (T, D))}
            expected = ref.moe_combine(inputs["ys"], rt, inputs["rw"],
                                       inputs["init"])
            out = run(model, **inputs)["y"]
            # Same products and row-order f32 sums as the reference.
            close(numerics_report, "moe.combine", out, expected, EXACT,
                  "normwise")


@pytest.mark.parametrize("gate", [False, True])
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_shared_expert(compile_model, numerics_report, activation, gate):
    D, F, Dout = 16, 40, 16
    gated = activation in GATED
    xt = ttype([None, D])
    args = [("x", xt), ("s1", ttype([D, F])), ("s2", ttype([F, Dout]))]
    op = "  %%y = moe.shared_expert %s %%x, %%s1, %%s2" % activation
    if gated:
        args.append(("s3", ttype([D, F])))
        op += " fc3 %%s3 : %s" % ttype([D, F])
    if gate:
        args.append(("g", ttype([D, 1])))
        op += " gate %%g : %s" % ttype([D, 1])
    op += " : %s, %s, %s" % (xt, ttype([D, F]), ttype([F, Dout]))
    model = compile_model(entry(args, [("y", ttype([None, Dout]))], op))
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        for T in TOKENS:
            inputs = {"x": normal(rng, (T, D)), "s1": normal(rng, (D, F), 0.3),
                      "s2": normal(rng, (F, Dout), 0.3)}
            if gated:
                inputs["s3"] = normal(rng, (D, F), 0.3)
            if gate:
                inputs["g"] = normal(rng, (D, 1), 0.3)
            out = run(model, **inputs)["y"]
            expected = ref.moe_shared_expert(
                inputs["x"], inputs["s1"], inputs["s2"], activation,
                inputs.get("s3"), inputs.get("g"))
            close(numerics_report, "moe.shared_expert " + activation, out,
                  expected, F32, "normwise")


# ---------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------

def test_losses(compile_model, numerics_report):
    E, k = 8, 2
    pt, it = ttype([None, E]), ttype([None, k], "i32")
    body = ("  %%aux = moe.load_balancing_loss %%p, %%idx : %s, %s\n"
            "  %%z = moe.z_loss %%logits : %s" % (pt, it, pt))
    model = compile_model(entry(
        [("p", pt), ("idx", it), ("logits", pt)],
        [("aux", ttype([])), ("z", ttype([]))], body))
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        for T in TOKENS:
            logits = normal(rng, (T, E), 3.0)
            _, idx, p = ref.moe_token_choice(logits, k)
            out = run(model, p=p, idx=idx, logits=logits)
            close(numerics_report, "moe.load_balancing_loss", out["aux"],
                  ref.moe_load_balancing_loss(p, idx), F32, "normwise")
            close(numerics_report, "moe.z_loss", out["z"],
                  ref.moe_z_loss(logits), F32, "normwise")


def test_routing_stats_without_indices(compile_model):
    E = 6
    ot = ttype([E + 1], "i32")
    body = "  %%load, %%dropped = moe.routing_stats %%off : %s" % ot
    model = compile_model(entry(
        [("off", ot)], [("load", ttype([E], "i64")),
                        ("dropped", ttype([], "i64"))], body))
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        _, off = random_plan(rng, 10, E, 40)
        out = run(model, off=off)
        load, dropped = ref.moe_routing_stats(off)
        same(out["load"], load, "tokens_per_expert")
        same(out["dropped"], dropped, "dropped")


# ---------------------------------------------------------------------------
# Dynamic expert counts, dynamic k, empty token sets
# ---------------------------------------------------------------------------

def test_dynamic_experts(compile_model, numerics_report):
    """E (and k for dispatch) known only at run time: group sizes,
    capacities and row counts are computed in the IR."""
    k, G, kg = 2, 2, 1
    lt, it, wt = ttype([None, None]), ttype([None, None], "i32"), \
        ttype([None, None])
    body = (
        "  %%w, %%idx, %%p = moe.token_choice softmax %%logits top %d "
        "{normalize, num_groups = %d : i64, topk_groups = %d : i64} : %s\n"
        "  %%ert, %%erw, %%eoff, %%ep = moe.expert_choice %%logits "
        "{capacity_factor = 1.5 : f64} : %s\n"
        "  %%aux = moe.load_balancing_loss %%p, %%idx : %s, %s\n"
        "  %%load, %%dropped = moe.routing_stats %%eoff : %s\n"
        "  %%rt, %%rw, %%off = moe.dispatch %%didx, %%dw "
        "{num_experts = 6 : i64, capacity_factor = 0.7 : f64, "
        "batch_prioritized} : %s, %s"
        % (k, G, kg, lt, lt, lt, ttype([None, k], "i32"),
           ttype([None], "i32"), it, wt))
    model = compile_model(entry(
        [("logits", lt), ("didx", it), ("dw", wt)],
        [("w", ttype([None, k])), ("idx", ttype([None, k], "i32")),
         ("ert", ttype([None], "i32")), ("erw", ttype([None])),
         ("eoff", ttype([None], "i32")), ("aux", ttype([])),
         ("load", ttype([None], "i64")), ("rt", ttype([None], "i32")),
         ("rw", ttype([None])), ("off", ttype([7], "i32"))], body))
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        for T, E, dk in [(7, 4, 1), (33, 6, 3), (257, 10, 2), (1, 4, 4)]:
            logits = normal(rng, (T, E), 2.0)
            didx = rng.integers(0, 6, (T, dk)).astype(np.int32)
            dw = normal(rng, (T, dk))
            out = run(model, logits=logits, didx=didx, dw=dw)
            w, idx, p = ref.moe_token_choice(logits, k, normalize=True,
                                             num_groups=G, topk_groups=kg)
            same(out["idx"], idx, "indices")
            close(numerics_report, "moe.token_choice weights", out["w"], w,
                  F32)
            rt, rw, off, _ = ref.moe_expert_choice(logits, 1.5)
            same(out["ert"], rt, "expert_choice row_token")
            same(out["eoff"], off, "expert_choice offsets")
            close(numerics_report, "moe.expert_choice row_weight",
                  out["erw"], rw, F32)
            close(numerics_report, "moe.load_balancing_loss", out["aux"],
                  ref.moe_load_balancing_loss(p, idx), F32, "normwise")
            same(out["load"], ref.moe_routing_stats(off)[0],
                 "tokens_per_expert")
            rt, rw, off = ref.moe_dispatch(didx, dw, 6, 0.7, True)
            same(out["off"], off, "dispatch offsets")
            same(out["rt"], rt, "dispatch row_token")
            same(out["rw"], rw, "dispatch row_weight")


def test_no_tokens(compile_model):
    """T = 0: empty plans, zero losses."""
    E, k = 4, 2
    lt, it = ttype([None, E]), ttype([None, k], "i32")
    body = (
        "  %%w, %%idx, %%p = moe.token_choice softmax %%logits top %d : %s\n"
        "  %%rt, %%rw, %%off = moe.dispatch %%idx, %%w {num_experts = %d : "
        "i64, capacity_factor = 1.0 : f64} : %s, %s\n"
        "  %%ert, %%erw, %%eoff, %%ep = moe.expert_choice %%logits "
        "{capacity_factor = 2.0 : f64} : %s\n"
        "  %%aux = moe.load_balancing_loss %%p, %%idx : %s, %s\n"
        "  %%z = moe.z_loss %%logits : %s"
        % (k, lt, E, it, ttype([None, k]), lt, lt, it, lt))
    # (Empty results are left out: moe_abi.Model cannot read back a
    # zero-size output.)
    model = compile_model(entry(
        [("logits", lt)],
        [("off", ttype([E + 1], "i32")), ("eoff", ttype([E + 1], "i32")),
         ("aux", ttype([])), ("z", ttype([]))], body))
    out = run(model, logits=np.zeros((0, E), np.float32))
    same(out["off"], np.zeros(E + 1, np.int32), "offsets")
    same(out["eoff"], np.zeros(E + 1, np.int32), "expert_choice offsets")
    assert float(out["aux"]) == 0.0 and float(out["z"]) == 0.0


def test_bf16_compiles(compile_model, moec_path, tmp_path):
    """bf16 layers compile to an object file and link into model.so (bf16
    rounding is expanded into integer ops, so no compiler-rt builtin is
    needed). The ctypes client has no bf16 dtype, so they are not run."""
    text = layer_text("token_choice", "geglu", 8, 2, {"shared": True},
                      {"normalize": True, "capacity_factor": 0.5})
    source = tmp_path / "bf16.mlir"
    source.write_text(text.replace("xf32>", "xbf16>"))
    proc = subprocess.run([str(moec_path), str(source), "--emit=obj", "-o",
                           str(tmp_path / "bf16.o")],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    compile_model(text.replace("xf32>", "xbf16>"))


# ---------------------------------------------------------------------------
# Whole layers through the full pipeline (moe-decompose-layer first)
# ---------------------------------------------------------------------------

LAYERS = {
    # name: (routing, activation, E, k, options, attrs)
    "token_choice_shared": ("token_choice", "swiglu", 8, 2,
                            {"shared": True, "shared_gate": True},
                            {"normalize": True}),
    "switch_capacity": ("token_choice", "relu", 4, 1,
                        {"router_bias": True, "expert_biases": True,
                         "jitter": 0.01},
                        {"capacity_factor": 1.0, "batch_prioritized": True}),
    "expert_choice": ("expert_choice", "gelu", 8, 1, {},
                      {"capacity_factor": 2.0}),
    "deepseek": ("token_choice", "swiglu", 16, 4,
                 {"selection_bias": True, "shared": True},
                 {"score": "sigmoid", "normalize": True, "num_groups": 4,
                  "topk_groups": 2, "scaling_factor": 2.5}),
    "capacity_top2_geglu": ("token_choice", "geglu", 8, 2,
                            {"expert_biases": True},
                            {"capacity_factor": 0.75}),
    # gpt-oss as onnxruntime's com.microsoft.MoE describes it.
    "gpt_oss_swiglu": ("token_choice", "swiglu", 8, 4,
                       {"router_bias": True, "expert_biases": True},
                       {"normalize": True, "swiglu_alpha": 1.702,
                        "swiglu_beta": 1.0, "swiglu_limit": 0.9}),
    "phi_geglu_tanh": ("token_choice", "geglu_tanh", 4, 2, {"shared": True},
                       {"normalize": True}),
    "relu2_capacity": ("token_choice", "relu2", 6, 2,
                       {"expert_biases": True}, {"capacity_factor": 1.0}),
    "identity": ("token_choice", "identity", 4, 1, {}, {}),
    # Phi-3.5-MoE: SparseMixer top-2 of 16 SwiGLU experts.
    "phi_sparse_mixer": ("token_choice", "swiglu", 16, 2, {},
                         {"score": "sparse_mixer"}),
}


def layer_text(routing, activation, E, k, options, attrs, D=16, F=32, S=24):
    gated = activation in GATED
    xt = ttype([None, D])
    args = [("x", xt), ("wg", ttype([D, E]))]
    op = "moe.layer %s %%x : %s router %%wg : %s" % (routing, xt,
                                                     ttype([D, E]))
    if attrs.get("score"):
        op += " score %s" % attrs["score"]
    if options.get("router_bias"):
        args.append(("bg", ttype([E])))
        op += " router_bias %%bg : %s" % ttype([E])
    if options.get("selection_bias"):
        args.append(("sb", ttype([E])))
        op += " selection_bias %%sb : %s" % ttype([E])
    args += [("w1", ttype([E, D, F])), ("w2", ttype([E, F, D]))]
    op += " experts %s %%w1 : %s, %%w2 : %s" % (activation, ttype([E, D, F]),
                                               ttype([E, F, D]))
    if gated:
        args.append(("w3", ttype([E, D, F])))
        op += " fc3 %%w3 : %s" % ttype([E, D, F])
    if options.get("expert_biases"):
        args += [("b1", ttype([E, F])), ("b2", ttype([E, D]))]
        op += " fc1_bias %%b1 : %s fc2_bias %%b2 : %s" % (ttype([E, F]),
                                                         ttype([E, D]))
    if options.get("shared"):
        args += [("s1", ttype([D, S])), ("s2", ttype([S, D]))]
        op += " shared_fc1 %%s1 : %s shared_fc2 %%s2 : %s" % (ttype([D, S]),
                                                             ttype([S, D]))
        if gated:
            args.append(("s3", ttype([D, S])))
            op += " shared_fc3 %%s3 : %s" % ttype([D, S])
        if options.get("shared_gate"):
            args.append(("sg", ttype([D, 1])))
            op += " shared_gate %%sg : %s" % ttype([D, 1])
    body = ""
    parts = []
    if options.get("jitter"):
        args.append(("seed1", ttype([1], "i64")))
        body += SEED_PRELUDE
        op += " seed %seed"
        parts.append("jitter_eps = %r : f32" % options["jitter"])
    if routing == "token_choice":
        parts.append("k = %d : i64" % k)
    for key, value in attrs.items():
        if key == "score":
            continue
        if value is True:
            parts.append(key)
        elif key == "capacity_factor":
            parts.append("%s = %r : f64" % (key, value))
        elif isinstance(value, float):
            parts.append("%s = %r : f32" % (key, value))
        else:
            parts.append("%s = %d : i64" % (key, value))
    if parts:
        op += " {%s}" % ", ".join(parts)
    body += "  %y, %aux, %z, %load, %dropped = " + op
    results = [("y", xt), ("aux", ttype([])), ("z", ttype([])),
               ("load", ttype([E], "i64")), ("dropped", ttype([], "i64"))]
    return entry(args, results, body)


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_layer(compile_model, numerics_report, name):
    routing, activation, E, k, options, attrs = LAYERS[name]
    D, F, S = 16, 32, 24
    model = compile_model(layer_text(routing, activation, E, k, options,
                                     attrs, D, F, S),
                          flags=TRAIN_ROUTING if options.get("jitter") else ())
    gated = activation in GATED
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        for T in TOKENS:
            inputs = {"x": normal(rng, (T, D)),
                      "wg": normal(rng, (D, E), 0.5),
                      "w1": normal(rng, (E, D, F), 0.3),
                      "w2": normal(rng, (E, F, D), 0.3)}
            kwargs = {}
            if gated:
                inputs["w3"] = normal(rng, (E, D, F), 0.3)
                kwargs["fc3"] = inputs["w3"]
            if options.get("router_bias"):
                inputs["bg"] = normal(rng, (E,), 0.3)
                kwargs["router_bias"] = inputs["bg"]
            if options.get("selection_bias"):
                inputs["sb"] = normal(rng, (E,), 0.1)
                kwargs["selection_bias"] = inputs["sb"]
            if options.get("expert_biases"):
                inputs["b1"] = normal(rng, (E, F), 0.3)
                inputs["b2"] = normal(rng, (E, D), 0.3)
                kwargs.update(fc1_bias=inputs["b1"], fc2_bias=inputs["b2"])
            if options.get("shared"):
                inputs["s1"] = normal(rng, (D, S), 0.3)
                inputs["s2"] = normal(rng, (S, D), 0.3)
                kwargs.update(shared_fc1=inputs["s1"],
                              shared_fc2=inputs["s2"])
                if gated:
                    inputs["s3"] = normal(rng, (D, S), 0.3)
                    kwargs["shared_fc3"] = inputs["s3"]
                if options.get("shared_gate"):
                    inputs["sg"] = normal(rng, (D, 1), 0.3)
                    kwargs["shared_gate"] = inputs["sg"]
            if options.get("jitter"):
                key = int(rng.integers(0, 2 ** 62))
                inputs["seed1"] = np.array([key], np.int64)
                kwargs["jitter_eps"] = options["jitter"]
                kwargs["jitter_u"] = jitter_multipliers(key, T, D,
                                                        options["jitter"])
            for key in ("score", "normalize", "num_groups", "topk_groups",
                        "scaling_factor", "capacity_factor",
                        "batch_prioritized", "swiglu_alpha", "swiglu_beta",
                        "swiglu_limit"):
                if key in attrs:
                    kwargs[key] = attrs[key]
            if routing == "token_choice":
                kwargs["k"] = k
            expected = ref.moe_layer(inputs["x"], inputs["wg"], inputs["w1"],
                                     inputs["w2"], routing=routing,
                                     activation=activation, **kwargs)
            out = run(model, **inputs)
            key = "moe.layer " + name
            same(out["load"], expected[3], key + " tokens_per_expert")
            same(out["dropped"], expected[4], key + " dropped")
            close(numerics_report, key + " output", out["y"], expected[0],
                  F32, "normwise")
            close(numerics_report, key + " aux_loss", out["aux"], expected[1],
                  F32, "normwise")
            close(numerics_report, key + " z_loss", out["z"], expected[2],
                  F32, "normwise")
