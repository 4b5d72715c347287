"""End-to-end tests of `moe-raise-decomposed`: MoE FFNs spelled out in plain
nn ops, as the ONNX importer produces them from exporters without an MoE
op, compile into moe ops and compute what the dense graph computes.

Each case builds the decomposed graph (router linear, softmax, top-k,
optional renormalisation, per expert a masked routing weight, a dense FFN
and a weighted term, and a sum over the experts in some association),
checks that `moec --compile-to=graph` raised it (moe.expert_ffn present,
nn.topk gone), then runs the compiled model on several seeds and token
counts and compares with the NumPy reference of the dense graph
(test/reference/decomposed_moe_reference.py) by the normwise relative error
max|y - ref| / max|ref|. The measured maxima are printed in the terminal
summary (`raise_decomposed ...`).
"""
import subprocess

import numpy as np
import pytest

import decomposed_moe_reference as dec

SEEDS = (0, 1, 2)
TOKENS = (1, 7, 33)
# Contractions in f32 against a float64 reference (and erf/exp in libm).
TOLERANCE = 1e-5
D, F = 16, 24


def ttype(shape, element="f32"):
    return "tensor<%s%s>" % ("".join(
        ("?" if d is None else str(d)) + "x" for d in shape), element)


class Graph:
    """The decomposed MoE FFN as MLIR text (an entry point @forward)."""

    def __init__(self, E, k, activation, normalize, mask="where",
                 spelled_silu=False, bias=False, rank3=False, order="chain",
                 zero_init=False, swap=False, opaque_zero=False):
        self.E, self.k, self.activation = E, k, activation
        self.normalize, self.bias = normalize, bias
        self.lead = (2, None) if rank3 else (None,)
        self.axis = len(self.lead)
        self.args = []
        self.lines = []
        self.mask, self.spelled_silu, self.swap = mask, spelled_silu, swap
        x = self.arg("x", self.lead + (D,))
        wr = self.arg("wr", (D, E))
        vals, idx, weights = self.router(x, wr)
        terms = [self.term(e, x, weights, idx) for e in range(E)]
        if opaque_zero:
            # An input that the test sets to zeros, added between the terms:
            # the same function, but no add completes a sum of experts only,
            # so the graph stays in plain ops.
            terms[0] = self.op("t0r", "nn.add %s, %s : %s, %s" % (
                terms[0], self.arg("r", self.lead + (D,)), self.t(D),
                self.t(D)))
        self.output = self.accumulate(terms, order, zero_init)

    # -- helpers ----------------------------------------------------------
    def t(self, *last, element="f32"):
        return ttype(self.lead + last, element)

    def arg(self, name, shape):
        self.args.append((name, shape))
        return "%" + name

    def op(self, name, text):
        self.lines.append("  %%%s = %s" % (name, text))
        return "%" + name

    def linear(self, name, x, w, w_shape, b=None):
        if b is None:
            return self.op(name, "nn.linear %s, %s : %s, %s" % (
                x, w, self.t(w_shape[0]), ttype(w_shape)))
        return self.op(name, "nn.linear %s, %s bias %s : %s, %s, %s" % (
            x, w, b, self.t(w_shape[0]), ttype(w_shape), ttype(w_shape[1:])))

    def mul(self, name, a, ta, b, tb):
        if self.swap:
            a, ta, b, tb = b, tb, a, ta
        return self.op(name, "nn.mul %s, %s : %s, %s" % (a, b, ta, tb))

    # -- pieces -----------------------------------------------------------
    def router(self, x, wr):
        E, k, ax = self.E, self.k, self.axis
        logits = self.linear("logits", x, wr, (D, E))
        probs = self.op("probs", "nn.softmax %s {axis = %d : i64} : %s" % (
            logits, ax, self.t(E)))
        self.lines.append("  %%vals, %%idx = nn.topk %s top %d {axis = %d : i64}"
                          " : %s" % (probs, k, ax, self.t(E)))
        vals, idx, weights = "%vals", "%idx", "%vals"
        if self.normalize:
            total = self.op("total", "nn.reduce_sum %s [%d] {keep_dims} : %s" % (
                vals, ax, self.t(k)))
            weights = self.op("wts", "nn.div %s, %s : %s, %s" % (
                vals, total, self.t(k), self.t(1)))
        self.op("zero", "arith.constant dense<0.0> : tensor<f32>")
        return vals, idx, weights

    def term(self, e, x, weights, idx):
        k, ax = self.k, self.axis
        c = self.op("c%d" % e, "arith.constant dense<%d> : tensor<i64>" % e)
        eq = self.op("eq%d" % e, "nn.compare eq %s, %s : %s, tensor<i64>" % (
            idx, c, self.t(k, element="i64")))
        if self.mask == "where":
            masked = self.op("m%d" % e, "nn.where %s, %s, %%zero : %s, %s, "
                             "tensor<f32>" % (eq, weights, self.t(k, element="i1"),
                                              self.t(k)))
        else:
            as_float = self.op("f%d" % e, "nn.cast %s : %s -> %s" % (
                eq, self.t(k, element="i1"), self.t(k)))
            masked = self.mul("m%d" % e, as_float, self.t(k), weights, self.t(k))
        scale = self.op("s%d" % e, "nn.reduce_sum %s [%d] {keep_dims} : %s" % (
            masked, ax, self.t(k)))
        y = self.ffn(e, x)
        return self.mul("t%d" % e, scale, self.t(1), y, self.t(D))

    def expert_linear(self, e, which, x, shape, bias_len):
        w = self.arg("w%d_%d" % (which, e), shape)
        b = self.arg("b%d_%d" % (which, e), (bias_len,)) if self.bias else None
        return self.linear("h%d_%d" % (which, e), x, w, shape, b)

    def silu(self, name, h):
        if not self.spelled_silu:
            return self.op(name, "nn.silu %s : %s" % (h, self.t(F)))
        g = self.op(name + "_sig", "nn.sigmoid %s : %s" % (h, self.t(F)))
        return self.mul(name, h, self.t(F), g, self.t(F))

    def ffn(self, e, x):
        act = self.activation
        h = self.expert_linear(e, 1, x, (D, F), F)
        name = "a%d" % e
        if act == "relu":
            a = self.op(name, "nn.relu %s : %s" % (h, self.t(F)))
        elif act in ("gelu", "geglu"):
            a = self.op(name, "nn.gelu %s : %s" % (h, self.t(F)))
        elif act == "gelu_tanh":
            a = self.op(name, "nn.gelu %s approximate = tanh : %s" % (
                h, self.t(F)))
        else:
            a = self.silu(name, h)
        if act in dec.GATED:
            up = self.expert_linear(e, 3, x, (D, F), F)
            a = self.mul("g%d" % e, a, self.t(F), up, self.t(F))
        return self.expert_linear(e, 2, a, (F, D), D)

    def accumulate(self, terms, order, zero_init):
        T = self.t(D)
        adds = [0]

        def add(a, b):
            adds[0] += 1
            return self.op("acc%d" % adds[0], "nn.add %s, %s : %s, %s" % (
                a, b, T if a != "%zero" else "tensor<f32>", T))

        if order == "tree":
            level = list(terms)
            while len(level) > 1:
                level = [add(level[i], level[i + 1]) if i + 1 < len(level)
                         else level[i] for i in range(0, len(level), 2)]
            total = level[0]
        else:
            ordered = terms[::-1] if order == "reverse" else terms
            total = add("%zero", ordered[0]) if zero_init else ordered[0]
            for term in ordered[1:]:
                total = add(total, term)
        return total

    # -- output -----------------------------------------------------------
    def text(self):
        params = ", ".join('%%%s: %s {moe.name = "%s"}' % (n, ttype(s), n)
                           for n, s in self.args)
        return ("func.func @forward(%s) -> (%s {moe.name = \"y\"}) {\n%s\n"
                "  return %s : %s\n}\n" % (params, self.t(D), "\n".join(
                    self.lines), self.output, self.t(D)))

    def inputs(self, rng, tokens, ties=False):
        """Random nonzero inputs by argument name; token rows `tokens`. With
        `ties`, the router's second half of columns repeats the first, so
        that every token's probabilities tie in pairs."""
        values = {}
        for name, shape in self.args:
            concrete = tuple(tokens if d is None else d for d in shape)
            if name == "r":
                values[name] = np.zeros(concrete, np.float32)
                continue
            scale = 1.0 if name == "x" else 1.0 / np.sqrt(shape[0])
            value = rng.standard_normal(concrete) * scale
            values[name] = np.where(np.abs(value) < 1e-3, 1e-3,
                                    value).astype(np.float32)
        if ties:
            half = self.E // 2
            values["wr"][:, half:] = values["wr"][:, :half]
        return values

    def reference(self, values):
        experts = []
        for e in range(self.E):
            expert = {}
            for which, name in ((1, "fc1"), (2, "fc2"), (3, "fc3")):
                if "w%d_%d" % (which, e) in values:
                    expert[name] = values["w%d_%d" % (which, e)]
                if "b%d_%d" % (which, e) in values:
                    expert[name + "_bias"] = values["b%d_%d" % (which, e)]
            experts.append(expert)
        return dec.decomposed_moe(values["x"], values["wr"], experts, k=self.k,
                                  activation=self.activation,
                                  normalize=self.normalize)


# (E, k, activation, normalize, options): every activation, both masks, with
# and without renormalisation, E 4 and 8, k 1 and 2, both operand orders,
# three association orders, biases and rank-3 tokens.
CASES = [
    (4, 1, "relu", False, {}),
    (4, 2, "relu", True, {"mask": "cast", "order": "tree"}),
    (8, 2, "gelu", True, {"swap": True, "zero_init": True}),
    (8, 1, "gelu", False, {"mask": "cast", "order": "reverse"}),
    (4, 2, "gelu_tanh", False, {"bias": True}),
    (4, 2, "silu", True, {"spelled_silu": True}),
    (8, 2, "silu", False, {"spelled_silu": True, "swap": True,
                           "mask": "cast"}),
    (4, 1, "swiglu", True, {"order": "tree", "bias": True}),
    (8, 2, "swiglu", True, {"swap": True, "spelled_silu": True}),
    (4, 2, "geglu", False, {"mask": "cast", "zero_init": True}),
    (4, 2, "swiglu", True, {"rank3": True}),
]


def case_id(case):
    E, k, activation, normalize, options = case
    return "E%d-k%d-%s%s%s" % (E, k, activation, "-norm" if normalize else "",
                               "".join("-" + key if value is True else
                                       "-%s=%s" % (key, value)
                                       for key, value in sorted(
                                           options.items())))


def compile_to_graph(moec_path, tmp_path, text):
    source = tmp_path / "model.mlir"
    source.write_text(text)
    proc = subprocess.run([str(moec_path), str(source), "--compile-to=graph"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_raised_and_matches_dense_reference(case, compile_model, moec_path,
                                            tmp_path, numerics_report):
    E, k, activation, normalize, options = case
    graph = Graph(E, k, activation, normalize, **options)
    text = graph.text()

    ir = compile_to_graph(moec_path, tmp_path, text)
    assert "moe.expert_ffn %s" % activation in ir, ir
    assert "moe.token_choice softmax" in ir and "nn.topk" not in ir, ir

    model = compile_model(text)
    for seed in SEEDS:
        for tokens in TOKENS:
            rng = np.random.default_rng(seed * 1000 + tokens)
            values = graph.inputs(rng, tokens)
            actual = model.run("forward", **values)["y"]
            expected = graph.reference(values)
            assert actual.shape == expected.shape
            err = normwise(actual, expected)
            numerics_report("raise_decomposed %s (normwise)" % case_id(case),
                            err)
            assert err <= TOLERANCE, (seed, tokens, err)


def normwise(actual, expected):
    return float(np.abs(actual.astype(np.float64) - expected).max() /
                 np.abs(expected).max())


# Raised and plain-op compilations of one function, on random inputs and on
# routers whose probabilities tie in pairs: moe.token_choice must pick the
# experts nn.topk picks (ties to the lower index).
AGREEMENT_CASES = [
    (4, 1, "relu", False, {}),
    (4, 2, "silu", True, {"mask": "cast"}),
    (8, 2, "swiglu", True, {}),
]


@pytest.mark.parametrize("case", AGREEMENT_CASES, ids=case_id)
def test_raised_agrees_with_plain_ops(case, compile_model, moec_path,
                                      tmp_path, numerics_report):
    E, k, activation, normalize, options = case
    raised = Graph(E, k, activation, normalize, **options)
    plain = Graph(E, k, activation, normalize, opaque_zero=True, **options)
    ir = compile_to_graph(moec_path, tmp_path, plain.text())
    assert "nn.topk" in ir and "moe.expert_ffn" not in ir, ir
    raised_model = compile_model(raised.text())
    plain_model = compile_model(plain.text())
    for seed in SEEDS:
        for ties in (False, True):
            rng = np.random.default_rng(seed)
            values = plain.inputs(rng, 33, ties=ties)
            if ties:
                probs, _ = dec.router(values["x"], values["wr"], k=E,
                                      normalize=False)
                assert np.array_equal(probs[:, 0::2], probs[:, 1::2])
            expected = plain.reference(values)
            from_plain = plain_model.run("forward", **values)["y"]
            del values["r"]
            from_raised = raised_model.run("forward", **values)["y"]
            key = "raise_decomposed %s%s" % (case_id(case),
                                             " ties" if ties else "")
            for what, actual in (("raised", from_raised),
                                 ("plain", from_plain)):
                err = normwise(actual, expected)
                numerics_report("%s %s vs reference (normwise)" % (key, what),
                                err)
                assert err <= TOLERANCE, (what, seed, ties, err)
            err = normwise(from_raised, from_plain.astype(np.float64))
            numerics_report("%s raised vs plain (normwise)" % key, err)
            assert err <= TOLERANCE, (seed, ties, err)


def test_mismatched_expert_is_left_alone(moec_path, tmp_path):
    """One expert with another activation: the graph stays in plain ops."""
    graph = Graph(4, 2, "relu", True)
    text = graph.text().replace("%a2 = nn.relu", "%a2 = nn.silu", 1)
    ir = compile_to_graph(moec_path, tmp_path, text)
    assert "nn.topk" in ir and "moe.expert_ffn" not in ir, ir
