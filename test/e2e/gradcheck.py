"""Finite-difference checks of the gradients that `moec --mode=train`
computes.

A model compiled in train mode has an entry ``train_step`` that returns the
objective ``loss`` and ``grad.<name>`` for each trainable parameter. This
module evaluates the same ``train_step`` at perturbed parameters and compares
central differences with the compiled gradients, so the reference is the
forward computation itself, not our backward code. Routing decisions (top-k,
capacity) are piecewise constant: keep ``h`` small enough not to flip them.

Usage from a test::

    model = compile_model(TEXT, flags=("--mode=train",))
    errors = gradcheck.check(model, inputs={...}, params={...}, h=1e-6,
                             rtol=1e-6, atol=1e-9)

``check`` raises AssertionError naming the parameter and element when a
gradient disagrees, and returns the maximum relative error per parameter.
"""
import numpy as np


def _loss(model, inputs, params):
    out = model.run("train_step", **inputs, **params)
    return float(np.asarray(out["loss"], dtype=np.float64))


def _relative_error(analytic, numeric, atol):
    return abs(analytic - numeric) / max(abs(analytic), abs(numeric), atol)


def check(model, inputs, params, *, h, rtol, atol, max_elements=24,
          directions=3, seed=0):
    """Compares every ``grad.<name>`` of ``train_step`` with central
    differences: all elements of parameters with at most ``max_elements``
    elements, otherwise ``max_elements`` random elements plus ``directions``
    random directional derivatives. Returns {name: max relative error}."""
    rng = np.random.default_rng(seed)
    params = {name: np.array(value) for name, value in params.items()}
    out = model.run("train_step", **inputs, **params)
    grads = {key[len("grad."):]: np.asarray(value, dtype=np.float64)
             for key, value in out.items() if key.startswith("grad.")}
    errors = {}
    for name, grad in grads.items():
        base = params[name]
        assert grad.shape == base.shape, (name, grad.shape, base.shape)

        def loss_at(delta):
            shifted = dict(params)
            shifted[name] = (base.astype(np.float64) + delta).astype(base.dtype)
            return _loss(model, inputs, shifted)

        worst = 0.0
        if base.size <= max_elements:
            elements = range(base.size)
        else:
            elements = rng.choice(base.size, size=max_elements, replace=False)
        for flat in elements:
            delta = np.zeros(base.shape)
            delta.flat[flat] = h
            numeric = (loss_at(delta) - loss_at(-delta)) / (2 * h)
            analytic = float(grad.flat[flat])
            error = _relative_error(analytic, numeric, atol)
            assert error <= rtol, (
                "grad.%s[%s]: compiled %.9g, finite difference %.9g "
                "(relative error %.3g > %.3g)" %
                (name, np.unravel_index(flat, base.shape), analytic, numeric,
                 error, rtol))
            worst = max(worst, error)
        if base.size > max_elements:
            for _ in range(directions):
                direction = rng.standard_normal(base.shape)
                direction /= np.linalg.norm(direction)
                numeric = (loss_at(h * direction) -
                           loss_at(-h * direction)) / (2 * h)
                analytic = float(np.sum(grad * direction))
                error = _relative_error(analytic, numeric, atol)
                assert error <= rtol, (
                    "grad.%s along a random direction: compiled %.9g, finite "
                    "difference %.9g (relative error %.3g > %.3g)" %
                    (name, analytic, numeric, error, rtol))
                worst = max(worst, error)
        errors[name] = worst
    return errors
