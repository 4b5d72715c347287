"""End-to-end numerics of the moe backward ops (`moe.*_grad`, emitted by the
vector-Jacobian products of dialects/MoE/MoEVJP.cpp): compile entry points
that call them with moec, run them through the model ABI and compare with
the float64 gradients of test/reference/moe_grad_reference.py (themselves
checked against central finite differences in test/reference).

Inputs are float32 (f16 where stated), random and nonzero, from several
seeds, with odd shapes, T = 1, experts without rows, padding rows and
capacity drops. Errors are normwise relative (max |y - ref| / max |ref|);
tolerance 1e-5 for f32 (contractions and transcendental functions in a
different order than NumPy), 1e-4 with gelu (erf polynomial) and 4e-3 for
f16. The measured maxima are printed in the terminal summary.
"""
import numpy as np
import pytest

import moe_grad_reference as g
import moe_reference as ref
import test_moe_ops as ops
from test_moe_ops import close, entry, normal, run, ttype

SEEDS = (0, 1, 2)
F32 = 1e-5
GELU = 1e-4
F16 = 4e-3


def check(report, key, actual, expected, tol=F32):
    close(report, key, actual, expected, tol, "normwise")


# ---------------------------------------------------------------------------
# moe.gate_grad
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("jitter", [False, True])
def test_gate_grad(compile_model, numerics_report, jitter):
    D, E, eps = 13, 6, 0.05
    args = [("dl", ttype([None, E])), ("x", ttype([None, D])),
            ("w", ttype([D, E]))]
    body, op = "", "  %dx, %dw, %db = moe.gate_grad %dl, %x, %w"
    if jitter:
        args.append(("seed1", ttype([1], "i64")))
        body += ops.SEED_PRELUDE
        op += " seed %%seed {jitter_eps = %s : f32}" % eps
    body += op + " : %s, %s, %s" % (ttype([None, E]), ttype([None, D]),
                                     ttype([D, E]))
    model = compile_model(entry(args, [("dx", ttype([None, D])),
                                       ("dw", ttype([D, E])),
                                       ("db", ttype([E]))], body))
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        for T in (1, 7, 33):
            inputs = {"dl": normal(rng, (T, E)), "x": normal(rng, (T, D)),
                      "w": normal(rng, (D, E))}
            u = None
            if jitter:
                key = int(rng.integers(-2 ** 63, 2 ** 63 - 1))
                inputs["seed1"] = np.array([key], np.int64)
                u = ops.jitter_multipliers(key, T, D, eps)
            out = run(model, **inputs)
            dx, dw, db = g.gate_grad(inputs["dl"], inputs["x"], inputs["w"],
                                     u)
            check(numerics_report, "moe.gate_grad input", out["dx"], dx)
            check(numerics_report, "moe.gate_grad weight", out["dw"], dw)
            check(numerics_report, "moe.gate_grad bias", out["db"], db)


# ---------------------------------------------------------------------------
# moe.token_choice_grad, moe.expert_choice_grad
# ---------------------------------------------------------------------------

TOKEN_CHOICE = {
    "softmax_top1": (8, 1, "softmax", {}),
    "softmax_top2_normalize": (8, 2, "softmax", {"normalize": True}),
    "softmax_top3_scaled": (7, 3, "softmax", {"scaling_factor": 0.5}),
    "sigmoid_normalize_scaled": (9, 4, "sigmoid",
                                 {"normalize": True, "scaling_factor": 2.5}),
}


@pytest.mark.parametrize("grads", ["weights", "probs", "both"])
@pytest.mark.parametrize("name", sorted(TOKEN_CHOICE))
def test_token_choice_grad(compile_model, numerics_report, name, grads):
    E, k, score, attrs = TOKEN_CHOICE[name]
    lt, it = ttype([None, E]), ttype([None, k], "i32")
    args = [("p", lt), ("idx", it)]
    op = "  %%dl = moe.token_choice_grad %s %%p, %%idx" % score
    if grads in ("weights", "both"):
        args.append(("dw", ttype([None, k])))
        op += " weights_grad %%dw : %s" % ttype([None, k])
    if grads in ("probs", "both"):
        args.append(("dp", lt))
        op += " probs_grad %%dp : %s" % lt
    op += ops.attr_dict(attrs) + " : %s, %s" % (lt, it)
    model = compile_model(entry(args, [("dl", lt)], op))
    kw = dict(score=score, normalize=attrs.get("normalize", False),
              scaling_factor=attrs.get("scaling_factor", 1.0))
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        for T in (1, 7, 33):
            logits = normal(rng, (T, E), 2.0)
            _, idx, p = ref.moe_token_choice(logits, k, score,
                                             normalize=kw["normalize"],
                                             scaling_factor=kw[
                                                 "scaling_factor"])
            inputs = {"p": p, "idx": idx}
            dw = dp = None
            if grads in ("weights", "both"):
                inputs["dw"] = dw = normal(rng, (T, k))
            if grads in ("probs", "both"):
                inputs["dp"] = dp = normal(rng, (T, E))
            out = run(model, **inputs)["dl"]
            # The op sees the float32 probs: the reference differentiates at
            # logits whose probabilities they are (log p for softmax).
            base = np.log(p.astype(np.float64)) if score == "softmax" else \
                np.log(p / (1.0 - p.astype(np.float64)))
            expected = g.token_choice_grad(base, idx, dw, dp, **kw)
            check(numerics_report, "moe.token_choice_grad", out, expected)


@pytest.mark.parametrize("grads", ["rows", "probs", "both"])
def test_expert_choice_grad(compile_model, numerics_report, grads):
    E = 5
    args = [("p", ttype([None, E])), ("rt", ttype([None], "i32")),
            ("off", ttype([E + 1], "i32"))]
    op = "  %dl = moe.expert_choice_grad %p, %rt, %off"
    if grads in ("rows", "both"):
        args.append(("drw", ttype([None])))
        op += " row_weight_grad %%drw : %s" % ttype([None])
    if grads in ("probs", "both"):
        args.append(("dp", ttype([None, E])))
        op += " probs_grad %%dp : %s" % ttype([None, E])
    op += " : %s, %s, %s" % (ttype([None, E]), ttype([None], "i32"),
                             ttype([E + 1], "i32"))
    model = compile_model(entry(args, [("dl", ttype([None, E]))], op))
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        for T, cf in ((1, 1.0), (7, 0.5), (33, 1.5)):
            logits = normal(rng, (T, E), 2.0)
            rt, _, off, p = ref.moe_expert_choice(logits, cf)
            inputs = {"p": p, "rt": rt, "off": off}
            drw = dp = None
            if grads in ("rows", "both"):
                inputs["drw"] = drw = normal(rng, rt.shape)
            if grads in ("probs", "both"):
                inputs["dp"] = dp = normal(rng, (T, E))
            out = run(model, **inputs)["dl"]
            expected = g.expert_choice_grad(np.log(p.astype(np.float64)), rt,
                                            off, drw, dp)
            check(numerics_report, "moe.expert_choice_grad", out, expected)


# ---------------------------------------------------------------------------
# moe.dispatch_grad
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("capacity", [None, 0.5, 1.25])
def test_dispatch_grad(compile_model, numerics_report, capacity):
    E, k = 6, 2
    types = (ttype([None]), ttype([None, k], "i32"), ttype([None], "i32"),
             ttype([E + 1], "i32"))
    model = compile_model(entry(
        [("drw", types[0]), ("idx", types[1]), ("rt", types[2]),
         ("off", types[3])], [("dw", ttype([None, k]))],
        "  %%dw = moe.dispatch_grad %%drw, %%idx, %%rt, %%off"
        " : %s, %s, %s, %s" % types))
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        for T in (1, 7, 33):
            idx = np.stack([rng.choice(E, k, replace=False)
                            for _ in range(T)]).astype(np.int32)
            weights = rng.uniform(0.1, 1, (T, k)).astype(np.float32)
            rt, _, off = ref.moe_dispatch(idx, weights, E,
                                          capacity_factor=capacity)
            drw = normal(rng, rt.shape)
            out = run(model, drw=drw, idx=idx, rt=rt, off=off)["dw"]
            expected = g.dispatch_grad(drw, idx, rt, off)
            ops.same(out == 0, expected == 0, "dropped assignments")
            check(numerics_report, "moe.dispatch_grad", out, expected)


# ---------------------------------------------------------------------------
# moe.expert_ffn_grad, moe.shared_expert_grad
# ---------------------------------------------------------------------------

def ffn_operands(rng, activation, biases, E, D, F, Dout, element="f32"):
    """(names and types of the weight operands, the op's operand text,
    values) for an expert_ffn_grad with E experts (E = None: a shared
    expert)."""
    lead = [] if E is None else [E]
    gated = activation in g.GATED
    specs = [("fc1", lead + [D, F]), ("fc2", lead + [F, Dout])]
    if gated:
        specs.append(("fc3", lead + [D, F]))
    if biases:
        specs += [("fc1_bias", lead + [F]), ("fc2_bias", lead + [Dout])]
        if gated:
            specs.append(("fc3_bias", lead + [F]))
    values = {n: normal(rng, s, 0.4) for n, s in specs}
    text = "".join(" %s %%%s : %s" % (n, n, ttype(s, element))
                   for n, s in specs[2:])
    return [(n, ttype(s, element)) for n, s in specs], text, values


@pytest.mark.parametrize("activation", ["relu", "gelu", "gelu_tanh", "silu",
                                        "swiglu", "geglu", "identity", "relu2",
                                        "geglu_tanh"])
@pytest.mark.parametrize("biases", [False, True])
def test_expert_ffn_grad(compile_model, numerics_report, activation, biases):
    E, D, F, Dout = 4, 9, 14, 7
    rng = np.random.default_rng(0)
    weights, text, _ = ffn_operands(rng, activation, biases, E, D, F, Dout)
    names = [n for n, _ in weights]
    xt, ot = ttype([None, D]), ttype([E + 1], "i32")
    results = [("dx", xt)] + [("d_" + n, t) for n, t in weights]
    op = "  %%dx, %s = moe.expert_ffn_grad %s %%dy, %%xs, %%off, %%fc1, " \
         "%%fc2%s : %s, %s, %s, %s, %s" % (
             ", ".join("%d_" + n for n in names), activation, text,
             ttype([None, Dout]), xt, ot, weights[0][1], weights[1][1])
    model = compile_model(entry(
        [("dy", ttype([None, Dout])), ("xs", xt), ("off", ot)] + weights,
        results, op))
    tol = GELU if "gelu" in activation or activation == "geglu" else F32
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        for R in (1, 8, 37):
            _, off = ops.random_plan(rng, 1, E, R,
                                     empty_experts=(seed % E,))
            _, _, values = ffn_operands(rng, activation, biases, E, D, F,
                                        Dout)
            inputs = {"dy": normal(rng, (R, Dout)), "xs": normal(rng, (R, D)),
                      "off": off, **values}
            out = run(model, **inputs)
            expected = g.expert_ffn_grad(inputs["dy"], inputs["xs"], off,
                                         activation=activation, **values)
            # Rows past offsets[E] get no gradient.
            assert not out["dx"][off[E]:].any()
            check(numerics_report, "moe.expert_ffn_grad input", out["dx"],
                  expected["input"], tol)
            for n in names:
                check(numerics_report, "moe.expert_ffn_grad " + n,
                      out["d_" + n], expected[n], tol)


@pytest.mark.parametrize("element", ["f32", "f16"])
@pytest.mark.parametrize("name", sorted(ops.SWIGLU_PARAMETERS))
def test_expert_ffn_grad_swiglu_parameters(compile_model, numerics_report,
                                           name, element):
    """SwiGLU with alpha, beta and a limit that clips part of both
    projections; the clamp passes no gradient where it clips."""
    params = ops.SWIGLU_PARAMETERS[name]
    E, D, F, Dout = 3, 11, 14, 5
    rng = np.random.default_rng(0)
    weights, text, _ = ffn_operands(rng, "swiglu", True, E, D, F, Dout,
                                    element)
    names = [n for n, _ in weights]
    t = lambda shape: ttype(shape, element)  # noqa: E731
    xt, ot = t([None, D]), ttype([E + 1], "i32")
    results = [("dx", xt)] + [("d_" + n, ty) for n, ty in weights]
    op = "  %%dx, %s = moe.expert_ffn_grad swiglu %%dy, %%xs, %%off, %%fc1, " \
         "%%fc2%s %s : %s, %s, %s, %s, %s" % (
             ", ".join("%d_" + n for n in names), text,
             ops.swiglu_attrs(params), t([None, Dout]), xt, ot,
             weights[0][1], weights[1][1])
    model = compile_model(entry(
        [("dy", t([None, Dout])), ("xs", xt), ("off", ot)] + weights,
        results, op))
    tol = F16 if element == "f16" else F32
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        for R in (1, 8, 37):
            _, off = ops.random_plan(rng, 1, E, R,
                                     empty_experts=(seed % E,))
            _, _, values = ffn_operands(rng, "swiglu", True, E, D, F, Dout)
            inputs = {"dy": normal(rng, (R, Dout)), "xs": normal(rng, (R, D)),
                      **values}
            if element == "f16":
                inputs = {k: ref.to_float16(v).astype(np.float16)
                          for k, v in inputs.items()}
            inputs["off"] = off
            out = run(model, **inputs)
            grad_inputs = {k: v for k, v in inputs.items()
                           if k not in ("dy", "xs", "off")}
            expected = g.expert_ffn_grad(inputs["dy"], inputs["xs"], off,
                                         activation="swiglu", **grad_inputs,
                                         **params)
            assert not out["dx"][off[E]:].astype(np.float32).any()
            key = "moe.expert_ffn_grad swiglu %s %s" % (name, element)
            check(numerics_report, key + " input", out["dx"],
                  expected["input"], tol)
            for n in names:
                check(numerics_report, key + " " + n, out["d_" + n],
                      expected[n], tol)


def test_expert_ffn_grad_frozen_experts(compile_model, numerics_report):
    """Only the input gradient is used (frozen experts): the weight
    gradients are not computed, and the input gradient is unchanged."""
    E, D, F = 3, 8, 12
    types = (ttype([None, D]), ttype([None, D]), ttype([E + 1], "i32"),
             ttype([E, D, F]), ttype([E, F, D]))
    model = compile_model(entry(
        [("dy", types[0]), ("xs", types[1]), ("off", types[2]),
         ("fc1", types[3]), ("fc2", types[4]), ("fc3", types[3])],
        [("dx", types[1])],
        "  %%dx, %%d1, %%d2, %%d3 = moe.expert_ffn_grad swiglu %%dy, %%xs, "
        "%%off, %%fc1, %%fc2 fc3 %%fc3 : %s : %s, %s, %s, %s, %s" % (
            types[3], *types)))
    rng = np.random.default_rng(4)
    R = 21
    _, off = ops.random_plan(rng, 1, E, R)
    inputs = {"dy": normal(rng, (R, D)), "xs": normal(rng, (R, D)),
              "off": off, "fc1": normal(rng, (E, D, F), 0.4),
              "fc2": normal(rng, (E, F, D), 0.4),
              "fc3": normal(rng, (E, D, F), 0.4)}
    out = run(model, **inputs)["dx"]
    expected = g.expert_ffn_grad(inputs["dy"], inputs["xs"], off, inputs["fc1"],
                                 inputs["fc2"], "swiglu", inputs["fc3"])
    check(numerics_report, "moe.expert_ffn_grad input (frozen)", out,
          expected["input"])


def test_expert_ffn_grad_f16(compile_model, numerics_report):
    E, D, F = 3, 8, 16
    t16 = lambda shape: ttype(shape, "f16")  # noqa: E731
    types = (t16([None, D]), t16([None, D]), ttype([E + 1], "i32"),
             t16([E, D, F]), t16([E, F, D]))
    model = compile_model(entry(
        [("dy", types[0]), ("xs", types[1]), ("off", types[2]),
         ("fc1", types[3]), ("fc2", types[4]), ("fc3", types[3])],
        [("dx", types[1]), ("d1", types[3]), ("d2", types[4]),
         ("d3", types[3])],
        "  %%dx, %%d1, %%d2, %%d3 = moe.expert_ffn_grad swiglu %%dy, %%xs, "
        "%%off, %%fc1, %%fc2 fc3 %%fc3 : %s : %s, %s, %s, %s, %s" % (
            types[3], *types)))
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        R = 19
        _, off = ops.random_plan(rng, 1, E, R)
        inputs = {"dy": normal(rng, (R, D)), "xs": normal(rng, (R, D)),
                  "fc1": normal(rng, (E, D, F), 0.4),
                  "fc2": normal(rng, (E, F, D), 0.4),
                  "fc3": normal(rng, (E, D, F), 0.4)}
        inputs = {k: ref.to_float16(v).astype(np.float16)
                  for k, v in inputs.items()}
        inputs["off"] = off
        out = run(model, **inputs)
        expected = g.expert_ffn_grad(inputs["dy"], inputs["xs"], off,
                                     inputs["fc1"], inputs["fc2"], "swiglu",
                                     inputs["fc3"])
        assert out["dx"].dtype == np.float16
        for name, key in (("dx", "input"), ("d1", "fc1"), ("d2", "fc2"),
                          ("d3", "fc3")):
            check(numerics_report, "moe.expert_ffn_grad f16", out[name],
                  expected[key], F16)


@pytest.mark.parametrize("activation", ["silu", "swiglu", "relu2",
                                        "identity", "geglu_tanh"])
@pytest.mark.parametrize("gate", [False, True])
def test_shared_expert_grad(compile_model, numerics_report, activation, gate):
    D, F, Dout = 10, 12, 6
    gated = activation in g.GATED
    specs = [("fc1", [D, F]), ("fc2", [F, Dout])]
    if gated:
        specs.append(("fc3", [D, F]))
    if gate:
        specs.append(("gate", [D, 1]))
    names = [n for n, _ in specs]
    xt = ttype([None, D])
    text = "".join(" %s %%%s : %s" % (n, n, ttype(s)) for n, s in specs[2:])
    op = "  %%dx, %s = moe.shared_expert_grad %s %%dy, %%x, %%fc1, %%fc2%s" \
         " : %s, %s, %s, %s" % (", ".join("%d_" + n for n in names),
                                activation, text, ttype([None, Dout]), xt,
                                ttype([D, F]), ttype([F, Dout]))
    model = compile_model(entry(
        [("dy", ttype([None, Dout])), ("x", xt)] +
        [(n, ttype(s)) for n, s in specs],
        [("dx", xt)] + [("d_" + n, ttype(s)) for n, s in specs], op))
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        for T in (1, 7, 33):
            values = {n: normal(rng, s, 0.4) for n, s in specs}
            inputs = {"dy": normal(rng, (T, Dout)), "x": normal(rng, (T, D)),
                      **values}
            out = run(model, **inputs)
            expected = g.shared_expert_grad(inputs["dy"], inputs["x"],
                                            activation=activation, **values)
            check(numerics_report, "moe.shared_expert_grad input", out["dx"],
                  expected["input"])
            for n in names:
                check(numerics_report, "moe.shared_expert_grad " + n,
                      out["d_" + n], expected[n])


# ---------------------------------------------------------------------------
# moe.combine_grad
# ---------------------------------------------------------------------------

def test_combine_grad(compile_model, numerics_report):
    D = 11
    types = (ttype([None, D]), ttype([None, D]), ttype([None], "i32"),
             ttype([None]))
    model = compile_model(entry(
        [("dy", types[0]), ("ys", types[1]), ("rt", types[2]),
         ("rw", types[3])], [("dys", types[1]), ("drw", types[3])],
        "  %%dys, %%drw = moe.combine_grad %%dy, %%ys, %%rt, %%rw"
        " : %s, %s, %s, %s" % types))
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        for T in (1, 7, 33):
            R = 2 * T + 3
            rt = rng.integers(-1, T, R).astype(np.int32)
            inputs = {"dy": normal(rng, (T, D)), "ys": normal(rng, (R, D)),
                      "rt": rt, "rw": normal(rng, (R,))}
            out = run(model, **inputs)
            dys, drw, _ = g.combine_grad(inputs["dy"], inputs["ys"], rt,
                                         inputs["rw"])
            check(numerics_report, "moe.combine_grad input", out["dys"], dys)
            check(numerics_report, "moe.combine_grad row_weight", out["drw"],
                  drw)


# ---------------------------------------------------------------------------
# Router losses
# ---------------------------------------------------------------------------

def test_router_loss_grads(compile_model, numerics_report):
    E, k = 7, 2
    pt, it, st = ttype([None, E]), ttype([None, k], "i32"), ttype([], "f32")
    model = compile_model(entry(
        [("g", st), ("p", pt), ("idx", it), ("logits", pt)],
        [("dp", pt), ("dl", pt)],
        "  %%dp = moe.load_balancing_loss_grad %%g, %%p, %%idx : %s, %s, %s\n"
        "  %%dl = moe.z_loss_grad %%g, %%logits : %s, %s" % (st, pt, it, st,
                                                            pt)))
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        for T in (1, 7, 33):
            logits = normal(rng, (T, E), 2.0)
            _, idx, p = ref.moe_token_choice(logits, k, "softmax")
            scale = np.array(rng.uniform(0.5, 2.0), np.float32)
            out = run(model, g=scale, p=p, idx=idx, logits=logits)
            check(numerics_report, "moe.load_balancing_loss_grad", out["dp"],
                  g.load_balancing_loss_grad(float(scale), p, idx))
            check(numerics_report, "moe.z_loss_grad", out["dl"],
                  g.z_loss_grad(float(scale), logits))
