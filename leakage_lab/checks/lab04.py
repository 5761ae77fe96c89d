"""Lab 04 (the Bayes-optimal adversary): the conditionals p(g | x) of two defenses.

Balunović et al. (ICLR 2022): an attack is a (prior, conditional) pair; these checks
cover the exact conditionals of Gaussian noise and of pruning + Laplacian noise.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import numpy as np

from leakage_lab.checks._common import (
    _HALF_LOG_2PI,
    _call,
    _close,
    _fail,
    _flat,
    _grad_or_hint,
    _ok,
    _random_tree,
    _scalar,
)
from leakage_lab.checks._guard import exercise

__all__ = ["gaussian_neg_log_likelihood", "prune_laplace_log_prob"]


def _gaussian_nll_variants(g: np.ndarray, c: np.ndarray, sigma: float, first: int):
    """(value, hint) for the usual slips in -log N(g; c, σ² I)."""
    sq, n = float(np.sum((g - c) ** 2)), g.size
    const = n * (np.log(sigma) + _HALF_LOG_2PI)
    right = sq / (2 * sigma**2) + const
    sq1 = float(np.sum((g[:first] - c[:first]) ** 2))
    return [
        (-right, "the sign is flipped: you returned the log-LIKELIHOOD; the negative "
                 "log-likelihood is  +‖g − g'‖² / (2σ²) + constant"),
        (sq / (2 * sigma**2), "the quadratic term is right, but the normalising constant is "
                              "missing: add n·(log σ + ½·log 2π), n = number of coordinates "
                              "(it does not move the attack, but it is part of −log p)"),
        (sq / sigma**2 + const, "the factor is 1/(2σ²), not 1/σ²"),
        (sq / (2 * sigma) + const, "divide by 2σ² (sigma SQUARED), not 2σ"),
        (sq / 2 + const, "you forgot to divide the squared distance by σ²"),
        (np.sqrt(sq) / (2 * sigma**2) + const, "use the SQUARED distance ‖g − g'‖², not the norm"),
        (sq / (2 * sigma**2) + n * np.log(sigma), "the constant per coordinate is "
                                                   "log σ + ½·log(2π); the ½·log(2π) is missing"),
        (sq / (2 * sigma**2) + n * (np.log(sigma) + 2 * _HALF_LOG_2PI),
         "the constant per coordinate is log σ + ½·log(2π), not log σ + log(2π)"),
        (sq / (2 * sigma**2) + n * (2 * np.log(sigma) + _HALF_LOG_2PI),
         "the constant per coordinate is log σ (= ½·log σ²), not log σ²"),
        (right / n, "that is a MEAN over coordinates: the coordinates are independent, so "
                    "their log-densities ADD: sum over all coordinates of all leaves"),
        (sq1 / (2 * sigma**2) + first * (np.log(sigma) + _HALF_LOG_2PI),
         "only the first leaf was counted: sum over EVERY leaf of the tree "
         "(jax.tree.leaves(observed))"),
    ]


@exercise(
    forbidden=(
        "leakage_lab.defenses._log_prob",
        "leakage_lab.defenses._noise_logpdf",
        "leakage_lab.defenses._gaussian_logpdf",
        "leakage_lab.distances.l2",
        "leakage_lab.trees.tree_vdot",
    ),
    allowed=(),
)
def gaussian_neg_log_likelihood(fn: Callable) -> None:
    """Checks ``fn(observed, candidate, sigma) = -log N(observed; candidate, σ² I)`` (lab 04).

    The exact negative log-density of additive Gaussian noise, summed over every
    coordinate of every leaf,

        ‖g − g'‖² / (2σ²)  +  n · (log σ + ½ log 2π),

    which must equal ``-ll.defenses.gaussian(sigma).log_prob(observed, candidate)``: the
    squared L2 distance of DLG (Zhu et al., NeurIPS 2019) rescaled, plus a constant.

    Args:
        fn: the learner's function.

    Raises:
        CheckFailed: with a hint (the sign, the 2σ² factor, the constant, one leaf only...).
    """
    from leakage_lab import defenses

    name = getattr(fn, "__name__", "your function")
    what = f"{name}(observed, candidate, sigma)"
    for seed, sigma in ((0, 0.5), (1, 0.05), (2, 2.0)):
        k1, k2 = jax.random.split(jax.random.key(40 + seed))
        candidate = _random_tree(k1)
        observed = jax.tree.map(lambda a, b, s=sigma: a + s * b, candidate, _random_tree(k2))
        got = _scalar(_call(fn, observed, candidate, sigma, what=what), what)
        want = -float(defenses.gaussian(sigma).log_prob(observed, candidate))
        if _close(got, want, rtol=1e-4, atol=1e-3):
            continue
        g, c = _flat(observed), _flat(candidate)
        first = jax.tree.leaves(observed)[0].size
        for value, hint in _gaussian_nll_variants(g, c, sigma, first):
            if _close(got, value, rtol=1e-4, atol=1e-3):
                _fail(f"{name} returned {got:.5g} with σ = {sigma:g} where {want:.5g} was "
                      f"expected: {hint}.")
        _fail(f"{name} returned {got:.5g} with σ = {sigma:g} where {want:.5g} was expected. "
              "Write −log p(g | g') = Σ_i [(g_i − g'_i)² / (2σ²) + log σ + ½·log(2π)], the sum "
              "over every coordinate of every leaf.")
    tree = _random_tree(jax.random.key(50))
    _grad_or_hint(lambda c: fn(tree, c, 0.5), _random_tree(jax.random.key(51)), lambda err: (
        f"JAX could not differentiate {name} under jit ({type(err).__name__}): use "
        "jax.numpy and jax.tree.leaves, no float() or np. on the values."))
    _ok(f"{name}: equals −ll.defenses.gaussian(σ).log_prob for σ = 0.5, 0.05 and 2, and JAX "
        "can differentiate it. Up to the constant it is ll.distances.l2 / (2σ²): DLG.")


def _prune_laplace_variants(g: np.ndarray, c: np.ndarray, p: float, b: float):
    """(value, hint) for the usual slips in the prune + Laplace log-likelihood."""
    pruned = g == 0
    lap = -np.abs(g - c) / b - np.log(2 * b)
    lp, lk = np.log(p), np.log1p(-p)

    def total(pruned_score, kept_score):
        return float(np.sum(np.where(pruned, pruned_score, kept_score)))

    right = total(lp, lk + lap)
    return [
        (-right, "the sign is flipped: return the log-likelihood log p(g | g'), not its negative"),
        (float(np.sum(lk + lap)), "every coordinate was scored as kept: an EXACT zero in the "
                                  "observation was pruned and scores log p, whatever g' is"),
        (float(np.sum(lap)), "every coordinate was scored as kept and log(1 − p) is missing: "
                             "zeros in the observation were pruned (score log p); the others "
                             "score log(1 − p) + the Laplace log-density"),
        (total(0.0, lk + lap), "a pruned coordinate scores log p (the chance it was pruned), "
                               "not 0"),
        (total(lp + lap, lk + lap), "a pruned coordinate carries no information about g': it "
                                    "scores log p only, with no Laplace term"),
        (total(lp, lap), "the kept coordinates miss log(1 − p), the chance of being kept"),
        (total(lk, lp + lap), "p and 1 − p are swapped: pruned coordinates score log p, kept "
                              "ones log(1 − p) + the Laplace log-density"),
        (total(lp, lk - np.abs(g - c) / b), "the Laplace density's normaliser is missing: "
                                            "log Laplace(g; g', b) = −|g − g'| / b − log(2b)"),
        (total(lp, lk - np.abs(g - c) / b - np.log(b)), "the normaliser is log(2b), not log b"),
        (total(lp, lk - np.abs(g - c) * b - np.log(2 * b)), "divide |g − g'| by the scale b, "
                                                            "don't multiply"),
        (total(lp, lk - (g - c) ** 2 / (2 * b**2) - np.log(b) - _HALF_LOG_2PI),
         "that is a Gaussian density; the Laplace one is −|g − g'| / b − log(2b)"),
        (total(lp, lk - (g - c) / b - np.log(2 * b)), "take the ABSOLUTE value |g − g'|"),
    ]


@exercise(
    forbidden=(
        "leakage_lab.defenses._log_prob",
        "leakage_lab.defenses._noise_logpdf",
        "leakage_lab.defenses._laplace_logpdf",
    ),
    allowed=(),
)
def prune_laplace_log_prob(fn: Callable) -> None:
    """Checks ``fn(observed, clean, p, scale)``: the prune + Laplace log-likelihood (lab 04).

    Under the library's convention (``leakage_lab.defenses``), an exact 0 in the
    observation was pruned (probability ``p``, no information about ``clean``); any other
    coordinate was kept and received Laplacian noise of scale ``b``:

        log p(g | g') = Σ_{g_i = 0} log p  +  Σ_{g_i ≠ 0} [log(1 − p) − |g_i − g'_i| / b − log 2b]

    It must equal ``ll.defenses.prune_laplace(p, scale).log_prob(observed, clean)``.

    Args:
        fn: the learner's function.

    Raises:
        CheckFailed: with a hint (zeros treated as kept, a missing log p or log(1 − p), the
            normaliser, p and 1 − p swapped...).
    """
    from leakage_lab import defenses

    name = getattr(fn, "__name__", "your function")
    what = f"{name}(observed, clean, p, scale)"
    for seed, (p, b) in enumerate(((0.3, 0.1), (0.7, 0.5), (0.5, 0.02))):
        k1, k2 = jax.random.split(jax.random.key(60 + seed))
        clean = _random_tree(k1)
        defense = defenses.prune_laplace(p, b)
        observed = defense.apply(clean, key=k2)
        got = _scalar(_call(fn, observed, clean, p, b, what=what), what)
        want = float(defense.log_prob(observed, clean))
        if _close(got, want, rtol=1e-4, atol=1e-3):
            continue
        g, c = _flat(observed), _flat(clean)
        for value, hint in _prune_laplace_variants(g, c, p, b):
            if _close(got, value, rtol=1e-4, atol=1e-3):
                _fail(f"{name} returned {got:.5g} with p = {p:g}, b = {b:g} where {want:.5g} "
                      f"was expected: {hint}.")
        if np.isnan(got):
            _fail(f"{name} returned nan: compute both branches with jnp.where(observed == 0, "
                  "log p, log(1 − p) + ...) rather than dividing by a mask.")
        _fail(f"{name} returned {got:.5g} with p = {p:g}, b = {b:g} where {want:.5g} was "
              "expected. Per coordinate: log p if observed == 0, else log(1 − p) − |g − g'| / b "
              "− log(2b); then sum over every coordinate of every leaf.")
    _ok(f"{name}: equals ll.defenses.prune_laplace(p, b).log_prob for three (p, b) pairs. "
        "Note that the pruned coordinates' log p does not depend on the image: pruning only "
        "removes terms from the attack's loss.")
