"""The self-checks of lab 04 accept right answers and explain wrong ones."""

import jax
import jax.numpy as jnp
import pytest

import leakage_lab as ll
from leakage_lab.checks import CheckFailed


def _leaves(*trees):
    return zip(*(jax.tree.leaves(t) for t in trees), strict=True)


def gaussian_nll(observed, candidate, sigma):
    return sum(jnp.sum((g - c) ** 2 / (2 * sigma**2) + jnp.log(sigma)
                       + 0.5 * jnp.log(2 * jnp.pi)) for g, c in _leaves(observed, candidate))


def prune_laplace(observed, clean, p, scale):
    return sum(jnp.sum(jnp.where(g == 0, jnp.log(p),
                                 jnp.log1p(-p) - jnp.abs(g - c) / scale - jnp.log(2 * scale)))
               for g, c in _leaves(observed, clean))


def test_gaussian_accepts_right_answer_and_the_library(capsys):
    ll.checks.gaussian_neg_log_likelihood(gaussian_nll)
    library = lambda g, c, s: -ll.defenses.gaussian(s).log_prob(g, c)  # noqa: E731
    ll.checks.gaussian_neg_log_likelihood.__wrapped__(library)  # unguarded: it agrees
    assert capsys.readouterr().out.count("✓") == 2
    with pytest.raises(CheckFailed, match="write it yourself"):  # but it is no answer
        ll.checks.gaussian_neg_log_likelihood(library)


def _l2(g, c):  # written out: the guard refuses ll.distances.l2 in this exercise
    return sum(jnp.sum((a - b) ** 2) for a, b in _leaves(g, c))


def _size(tree):
    return sum(x.size for x in jax.tree.leaves(tree))


def _const(tree, s):
    return _size(tree) * (jnp.log(s) + 0.5 * jnp.log(2 * jnp.pi))


@pytest.mark.parametrize(("fn", "hint"), [
    (lambda g, c, s: -gaussian_nll(g, c, s), "sign"),
    (lambda g, c, s: _l2(g, c) / (2 * s**2), "constant is missing"),
    (lambda g, c, s: _l2(g, c) / s**2 + _const(g, s), "1/\\(2σ²\\)"),
    (lambda g, c, s: _l2(g, c) / (2 * s) + _const(g, s), "SQUARED"),
    (lambda g, c, s: gaussian_nll(g, c, s) / _size(g), "MEAN"),
    (lambda g, c, s: gaussian_nll(jax.tree.leaves(g)[:1], jax.tree.leaves(c)[:1], s),
     "first leaf"),
    (lambda g, c, s: None, "return"),
    (lambda g, c, s: jnp.zeros(3), "single number"),
    (lambda g, c, s: 1.0, "expected"),
])
def test_gaussian_hints(fn, hint):
    with pytest.raises(CheckFailed, match=hint):
        ll.checks.gaussian_neg_log_likelihood(fn)


def test_prune_laplace_accepts_right_answer_and_the_library(capsys):
    ll.checks.prune_laplace_log_prob(prune_laplace)
    library = lambda g, c, p, b: ll.defenses.prune_laplace(p, b).log_prob(g, c)  # noqa: E731
    ll.checks.prune_laplace_log_prob.__wrapped__(library)  # unguarded: it agrees
    assert capsys.readouterr().out.count("✓") == 2
    with pytest.raises(CheckFailed, match="write it yourself"):  # but it is no answer
        ll.checks.prune_laplace_log_prob(library)


def _per_coordinate(score):
    def fn(observed, clean, p, b):
        return sum(jnp.sum(score(g, c, p, b)) for g, c in _leaves(observed, clean))

    return fn


def _lap(g, c, b):
    return -jnp.abs(g - c) / b - jnp.log(2 * b)


@pytest.mark.parametrize(("fn", "hint"), [
    (lambda *a: -prune_laplace(*a), "sign"),
    (_per_coordinate(lambda g, c, p, b: jnp.log1p(-p) + _lap(g, c, b)), "EXACT zero"),
    (_per_coordinate(lambda g, c, p, b: jnp.where(g == 0, 0.0, jnp.log1p(-p) + _lap(g, c, b))),
     "not 0"),
    (_per_coordinate(lambda g, c, p, b: jnp.where(g == 0, jnp.log(p), _lap(g, c, b))),
     "miss log\\(1 − p\\)"),
    (_per_coordinate(lambda g, c, p, b: jnp.where(g == 0, jnp.log1p(-p),
                                                  jnp.log(p) + _lap(g, c, b))), "swapped"),
    (_per_coordinate(lambda g, c, p, b: jnp.where(g == 0, jnp.log(p),
                                                  jnp.log1p(-p) - jnp.abs(g - c) / b)),
     "normaliser"),
    (_per_coordinate(lambda g, c, p, b: jnp.where(
        g == 0, jnp.log(p), jnp.log1p(-p) - (g - c) ** 2 / (2 * b**2) - jnp.log(b)
        - 0.5 * jnp.log(2 * jnp.pi))), "Gaussian"),
    (lambda *a: 0.0, "expected"),
])
def test_prune_laplace_hints(fn, hint):
    with pytest.raises(CheckFailed, match=hint):
        ll.checks.prune_laplace_log_prob(fn)


def test_prune_laplace_reports_errors_in_learner_code():
    def broken(*args):
        raise ValueError("nope")

    with pytest.raises(CheckFailed, match="ValueError: nope"):
        ll.checks.prune_laplace_log_prob(broken)
