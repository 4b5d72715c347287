"""Finite-difference checks of the moe ops' gradients through
`moec --mode=train` (moe-autodiff and the VJPs of dialects/MoE/MoEVJP.cpp):
gradcheck.py compares every `grad.<param>` of `train_step` with central
differences of the compiled objective itself.

The loss is `moe.z_loss` of the layer's output (mean_t logsumexp_d(y)^2, a
smooth scalar of every output element, made of moe ops only), or one of the
router losses itself. (Returning the router losses next to a task loss makes
moe-autodiff add them with nn ops, whose gradients are not on this branch.)
Everything is f32: the
loss is rounded to ~1e-7 relative, which over the step 2h = 1e-2 is an
absolute error of about 1e-5 |L| in each difference, so errors are relative
to max(|gradient|, 2e-2) with a tolerance of 2e-2 (h^2 truncation is below
1e-4). The functions are piecewise smooth: a routing decision that flips, or
a ReLU pre-activation that crosses 0, within +-h makes the difference
meaningless (other seeds hit an expert-choice flip and a ReLU kink, with
errors of 1.1 and 0.4); the seed is fixed to one without. The exact checks (float64 central differences) are in
test/reference/test_moe_grad_reference.py.
"""
import numpy as np
import pytest

import gradcheck
from test_moe_ops import normal, ttype

H = 5e-3
RTOL = 2e-2
ATOL = 2e-2


def param(name, type_):
    return '%%%s: %s {moe.name = "%s", moe.role = "parameter"}' % (
        name, type_, name)


def forward(args, body, results):
    """@forward with arguments `args` (text), body lines and (name, value)
    results; the first result is the loss."""
    outs = ", ".join('tensor<f32> {moe.name = "%s"}' % n for n, _ in results)
    ret = ", ".join(v for _, v in results)
    types = ", ".join("tensor<f32>" for _ in results)
    return "func.func @forward(%s) -> (%s) {\n%s\n  return %s : %s\n}\n" % (
        ", ".join(args), outs, body, ret, types)


def run_check(compile_model, report, key, text, inputs, params,
              expected=None):
    """Gradchecks train_step; `expected` names the parameters that must get
    a gradient (all by default)."""
    model = compile_model(text, flags=("--mode=train",))
    errors = gradcheck.check(model, inputs, params, h=H, rtol=RTOL, atol=ATOL)
    expected = set(params) if expected is None else expected
    assert set(errors) == expected, (sorted(errors), sorted(expected))
    for name, error in errors.items():
        report("gradcheck %s grad.%s" % (key, name), error)


LAYERS = {
    # name: (routing attrs, activation, extras)
    "mixtral_top2_capacity": (
        "{k = 2 : i64, normalize, capacity_factor = 1.0 : f64}", "swiglu",
        ("router_bias", "shared")),
    "switch_jitter_biases": (
        "{k = 1 : i64, capacity_factor = 1.5 : f64, jitter_eps = 0.05 : f32}",
        "relu", ("seed", "expert_biases")),
    "deepseek_sigmoid_groups": (
        "{k = 2 : i64, normalize, num_groups = 2 : i64, topk_groups = 1 : i64,"
        " scaling_factor = 2.5 : f32}", "silu", ("selection_bias", "gate")),
    "expert_choice": ("{capacity_factor = 1.5 : f64}", "gelu", ()),
    # onnxruntime's com.microsoft.MoE: gpt-oss's SwiGLU with a limit that
    # clips part of both projections (30% of the routed gate and 54% of the
    # linear pre-activations, none within 0.014 of the limit), GEGLU with the
    # tanh GELU, squared ReLU.
    "gpt_oss_swiglu_limit": (
        "{k = 2 : i64, normalize, swiglu_alpha = 1.702 : f32,"
        " swiglu_beta = 1.0 : f32, swiglu_limit = 0.6 : f32}", "swiglu",
        ("router_bias", "expert_biases")),
    "geglu_tanh_shared": ("{k = 2 : i64, normalize}", "geglu_tanh",
                          ("shared",)),
    "relu2": ("{k = 1 : i64}", "relu2", ("expert_biases",)),
}


@pytest.mark.parametrize("loss", ["output", "aux_loss", "z_loss"])
@pytest.mark.parametrize("name", sorted(LAYERS))
def test_layer(compile_model, numerics_report, name, loss):
    attrs, activation, extras = LAYERS[name]
    T, D, E, F = 6, 5, 4, 7
    gated = activation in ("swiglu", "geglu", "geglu_tanh")
    routing = "expert_choice" if name == "expert_choice" else "token_choice"
    score = " score sigmoid" if "sigmoid" in name else ""
    rng = np.random.default_rng(12)
    params = {"wg": normal(rng, (D, E), 0.7),
              "w1": normal(rng, (E, D, F), 0.5),
              "w2": normal(rng, (E, F, D), 0.5)}
    inputs = {"x": normal(rng, (T, D))}
    args = ['%%x: %s {moe.name = "x"}' % ttype([T, D]),
            param("wg", ttype([D, E])), param("w1", ttype([E, D, F])),
            param("w2", ttype([E, F, D]))]
    layer = ("  %%y, %%aux, %%z, %%load, %%drop = moe.layer %s %%x : %s "
             "router %%wg : %s%s" % (routing, ttype([T, D]), ttype([D, E]),
                                     score))
    tail = ""
    if "router_bias" in extras:
        params["rb"] = normal(rng, (E,), 0.3)
        args.append(param("rb", ttype([E])))
        layer += " router_bias %%rb : %s" % ttype([E])
    if "selection_bias" in extras:
        # Selection only: trainable, but its gradient is zero.
        params["sb"] = normal(rng, (E,), 0.05)
        args.append(param("sb", ttype([E])))
        layer += " selection_bias %%sb : %s" % ttype([E])
    layer += " experts %s %%w1 : %s, %%w2 : %s" % (
        activation, ttype([E, D, F]), ttype([E, F, D]))
    if gated:
        params["w3"] = normal(rng, (E, D, F), 0.5)
        args.append(param("w3", ttype([E, D, F])))
        layer += " fc3 %%w3 : %s" % ttype([E, D, F])
    if "expert_biases" in extras:
        params["b1"] = normal(rng, (E, F), 0.3)
        params["b2"] = normal(rng, (E, D), 0.3)
        args += [param("b1", ttype([E, F])), param("b2", ttype([E, D]))]
        layer += " fc1_bias %%b1 : %s fc2_bias %%b2 : %s" % (
            ttype([E, F]), ttype([E, D]))
    if "shared" in extras or "gate" in extras:
        params["s1"] = normal(rng, (D, F), 0.5)
        params["s2"] = normal(rng, (F, D), 0.5)
        args += [param("s1", ttype([D, F])), param("s2", ttype([F, D]))]
        layer += " shared_fc1 %%s1 : %s shared_fc2 %%s2 : %s" % (
            ttype([D, F]), ttype([F, D]))
        if gated:
            params["s3"] = normal(rng, (D, F), 0.5)
            args.append(param("s3", ttype([D, F])))
            layer += " shared_fc3 %%s3 : %s" % ttype([D, F])
        if "gate" in extras:
            params["sg"] = normal(rng, (D, 1), 0.5)
            args.append(param("sg", ttype([D, 1])))
            layer += " shared_gate %%sg : %s" % ttype([D, 1])
    if "seed" in extras:
        inputs["seed1"] = np.array([12345], np.int64)
        args.append('%%seed1: %s {moe.name = "seed1"}' % ttype([1], "i64"))
        tail = ("  %c0 = arith.constant 0 : index\n"
                "  %seed = tensor.extract %seed1[%c0] : tensor<1xi64>\n")
        layer += " seed %seed"
    if loss == "aux_loss" and routing == "expert_choice":
        pytest.skip("expert choice has no load-balancing loss")
    body = tail + layer + " " + attrs + "\n" + \
        "  %%loss = moe.z_loss %%y : %s" % ttype([T, D])
    value = {"output": "%loss", "aux_loss": "%aux", "z_loss": "%z"}[loss]
    # A router loss depends on the router only: the experts get no gradient.
    # A router loss depends on the router only: the experts get no gradient,
    # and the selection bias reaches only the load-balancing loss (where its
    # gradient is zero).
    router = ("wg", "rb", "sb") if loss == "aux_loss" else ("wg", "rb")
    expected = set(params) if loss == "output" else \
        {k for k in params if k in router}
    run_check(compile_model, numerics_report, "%s %s" % (name, loss),
              forward(args, body, [("loss", value)]), inputs, params,
              expected)


@pytest.mark.parametrize("loss", ["aux_loss", "z_loss"])
def test_gate_and_losses(compile_model, numerics_report, loss):
    """moe.gate with bias and jitter, then a router loss of a token-choice
    routing as the objective."""
    T, D, E, k = 7, 6, 5, 2
    rng = np.random.default_rng(3)
    params = {"w": normal(rng, (D, E), 0.7), "b": normal(rng, (E,), 0.3)}
    inputs = {"x": normal(rng, (T, D)),
              "seed1": np.array([99], np.int64)}
    args = ['%%x: %s {moe.name = "x"}' % ttype([T, D]),
            param("w", ttype([D, E])), param("b", ttype([E])),
            '%%seed1: %s {moe.name = "seed1"}' % ttype([1], "i64")]
    lt = ttype([T, E])
    body = ("  %%c0 = arith.constant 0 : index\n"
            "  %%seed = tensor.extract %%seed1[%%c0] : tensor<1xi64>\n"
            "  %%l = moe.gate %%x, %%w bias %%b seed %%seed "
            "{jitter_eps = 0.1 : f32} : %s, %s, %s\n"
            "  %%wts, %%idx, %%p = moe.token_choice softmax %%l top %d : %s\n"
            "  %%aux = moe.load_balancing_loss %%p, %%idx : %s, %s\n"
            "  %%z = moe.z_loss %%l : %s" % (
                ttype([T, D]), ttype([D, E]), ttype([E]), k, lt, lt,
                ttype([T, k], "i32"), lt))
    value = "%aux" if loss == "aux_loss" else "%z"
    run_check(compile_model, numerics_report, "gate " + loss,
              forward(args, body, [("loss", value)]), inputs, params)
