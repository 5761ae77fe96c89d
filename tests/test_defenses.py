"""Tests for leakage_lab.defenses: noise and pruning mechanisms with exact log-densities.

Property tests (σ = 0 or p = 0 changes nothing; samples have the stated moments; the
same key gives the same sample, another key another), oracle tests (``log_prob`` equals
the sum of ``scipy.stats`` log-densities, with the pruning convention: zeros score
``log p``, kept coordinates ``log(1 - p)`` plus the noise density) and bad input.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from leakage_lab import defenses, distances

KEY = jax.random.key(0)


def tree(n: int = 4000, seed: int = 0):
    rng = np.random.default_rng(seed)
    return {"a": {"w": rng.normal(size=(n // 4, 2)).astype(np.float32),
                  "b": rng.normal(size=(n // 2,)).astype(np.float32)}}


def flat(t) -> np.ndarray:
    return np.concatenate([np.ravel(x) for x in jax.tree.leaves(t)]).astype(np.float64)


@pytest.mark.parametrize("defense", [defenses.gaussian(0.0), defenses.laplace(0.0),
                                     defenses.prune(0.0), defenses.prune_gaussian(0.0, 0.0),
                                     defenses.prune_laplace(0.0, 0.0)])
def test_zero_strength_changes_nothing(defense):
    g = tree()
    out = defense.apply(g, key=KEY)
    assert jax.tree.structure(out) == jax.tree.structure(g)
    np.testing.assert_array_equal(flat(out), flat(g))


def test_gaussian_moments_and_keys():
    g = tree(40000)
    noise = flat(defenses.gaussian(0.3).apply(g, key=KEY)) - flat(g)
    assert abs(noise.mean()) < 0.01 and abs(noise.std() - 0.3) < 0.01
    again = flat(defenses.gaussian(0.3).apply(g, key=KEY)) - flat(g)
    np.testing.assert_array_equal(noise, again)
    other = flat(defenses.gaussian(0.3).apply(g, key=jax.random.key(1))) - flat(g)
    assert not np.allclose(noise, other)
    # One key per leaf: the two leaves' noise is not the same sequence.
    leaves = [np.ravel(x) for x in jax.tree.leaves(defenses.gaussian(1.0).apply(
        {"u": np.zeros(100, np.float32), "v": np.zeros(100, np.float32)}, key=KEY))]
    assert not np.allclose(leaves[0], leaves[1])


def test_laplace_moments():
    g = tree(40000)
    noise = flat(defenses.laplace(0.2).apply(g, key=KEY)) - flat(g)
    assert abs(noise.mean()) < 0.01
    assert abs(np.mean(np.abs(noise)) - 0.2) < 0.01        # E|ε| = b
    assert abs(noise.var() - 2 * 0.2**2) < 0.01             # Var = 2b²


@pytest.mark.parametrize("make", [lambda: defenses.prune(0.3),
                                  lambda: defenses.prune_gaussian(0.3, 0.1),
                                  lambda: defenses.prune_laplace(0.3, 0.1)])
def test_prune_fraction_and_kept_noise(make):
    g = tree(40000)
    out = flat(make().apply(g, key=KEY))
    zero = out == 0
    assert abs(zero.mean() - 0.3) < 0.01
    if make().name.startswith("prune("):
        np.testing.assert_array_equal(out[~zero], flat(g)[~zero])
    else:
        noise = out[~zero] - flat(g)[~zero]
        assert abs(noise.std() - 0.1 * (np.sqrt(2) if "laplace" in make().name else 1)) < 0.005


def test_log_prob_matches_scipy():
    g, h = tree(400, 0), tree(400, 1)
    x, m = flat(g), flat(h)
    np.testing.assert_allclose(float(defenses.gaussian(0.5).log_prob(g, h)),
                               stats.norm.logpdf(x, m, 0.5).sum(), rtol=1e-5)
    np.testing.assert_allclose(float(defenses.laplace(0.5).log_prob(g, h)),
                               stats.laplace.logpdf(x, m, 0.5).sum(), rtol=1e-5)
    # Pure pruning: kept coordinates are scored by the point-mass surrogate N(g', width²).
    np.testing.assert_allclose(float(defenses.prune(0.2, width=0.5).log_prob(g, h)),
                               (np.log(0.8) + stats.norm.logpdf(x, m, 0.5)).sum(), rtol=1e-5)


@pytest.mark.parametrize("laplacian", [False, True])
def test_pruned_log_prob_convention(laplacian):
    clean = tree(400, 1)
    d = defenses.prune_laplace(0.4, 0.3) if laplacian else defenses.prune_gaussian(0.4, 0.3)
    obs = d.apply(clean, key=KEY)
    x, m = flat(obs), flat(clean)
    zero = x == 0
    assert zero.any() and (~zero).any()
    dist = stats.laplace if laplacian else stats.norm
    expected = zero.sum() * np.log(0.4) + (np.log(0.6) + dist.logpdf(x[~zero], m[~zero], 0.3)).sum()
    np.testing.assert_allclose(float(d.log_prob(obs, clean)), expected, rtol=1e-5)
    # Pruned coordinates carry no information: the clean value there does not matter.
    moved = jax.tree.map(lambda c, o: jnp.where(o == 0, c + 5.0, c), clean, obs)
    np.testing.assert_allclose(float(d.log_prob(obs, moved)), expected, rtol=1e-5)


def test_gaussian_is_scaled_l2():
    g, h, k = tree(400, 0), tree(400, 1), tree(400, 2)
    sigma = 0.7
    lp = defenses.gaussian(sigma).log_prob
    const = float(lp(g, g))
    np.testing.assert_allclose(float(lp(g, h)), const - float(distances.l2(g, h)) / (2 * sigma**2),
                               rtol=1e-5)
    # from_distance(l2, scale) is gaussian(σ² = scale / 2) up to a constant.
    fd = defenses.from_distance(distances.l2, scale=2 * sigma**2).log_prob
    np.testing.assert_allclose(float(lp(g, h) - lp(g, k)), float(fd(g, h) - fd(g, k)), rtol=1e-4)
    with pytest.raises(NotImplementedError, match="no sampler"):
        defenses.from_distance(distances.l2).apply(g, key=KEY)


def test_log_prob_is_differentiable_in_clean():
    g, h = tree(40, 0), tree(40, 1)
    for d in (defenses.gaussian(0.3), defenses.prune_laplace(0.5, 0.3), defenses.prune(0.5)):
        grad = jax.grad(lambda c, d=d: d.log_prob(d.apply(g, key=KEY), c))(h)
        assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(grad))


def test_bad_input():
    for bad in (lambda: defenses.gaussian(-0.1), lambda: defenses.laplace(-1.0),
                lambda: defenses.prune(1.0), lambda: defenses.prune(-0.1),
                lambda: defenses.prune_gaussian(0.5, -1), lambda: defenses.prune_laplace(1.2, 0.1),
                lambda: defenses.gaussian(float("nan")), lambda: defenses.from_distance(
                    distances.l2, scale=0.0)):
        with pytest.raises(ValueError):
            bad()
    with pytest.raises(ValueError, match="does not match"):
        defenses.gaussian(0.1).log_prob({"w": np.zeros(3)}, {"w": np.zeros(4)})
    with pytest.raises(ValueError, match="does not match"):
        defenses.gaussian(0.1).log_prob({"w": np.zeros(3)}, {"v": np.zeros(3)})
