"""Compression defenses (quantize, sign, top_k) and their matched attack distances."""

import doctest
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from leakage_lab import compression, distances
from leakage_lab.compression import kept_distance, quantize, sign, sign_distance, top_k


def _grads(seed=0):
    k1, k2 = jax.random.split(jax.random.key(seed))
    return {"fc": {"w": jax.random.normal(k1, (8, 5)), "b": 0.1 * jax.random.normal(k2, (5,))}}


def _rel_err(a, b):
    diff = sum(float(jnp.sum((x - y) ** 2)) for x, y in zip(jax.tree.leaves(a),
                                                            jax.tree.leaves(b), strict=True))
    norm = sum(float(jnp.sum(y**2)) for y in jax.tree.leaves(b))
    return math.sqrt(diff / norm)


def test_doctests():
    assert doctest.testmod(compression).failed == 0


def test_quantize_8bit_nearly_lossless():
    g = _grads()
    q = quantize(8).apply(g, key=jax.random.key(1))
    assert jax.tree.structure(q) == jax.tree.structure(g)
    assert _rel_err(q, g) < 0.01


def test_quantize_unbiased():
    g = _grads()
    apply = jax.jit(jax.vmap(lambda k: quantize(2).apply(g, key=k)))
    draws = apply(jax.random.split(jax.random.key(2), 4000))
    mean = jax.tree.map(lambda d: d.mean(0), draws)
    # Single draws are far off (4 levels), the mean is close.
    assert _rel_err(quantize(2).apply(g, key=jax.random.key(3)), g) > 0.1
    assert _rel_err(mean, g) < 0.02


def test_quantize_one_bit_two_levels():
    g = _grads()
    q = quantize(1).apply(g, key=jax.random.key(4))
    for leaf, orig in zip(jax.tree.leaves(q), jax.tree.leaves(g), strict=True):
        m = float(jnp.max(jnp.abs(orig)))
        np.testing.assert_allclose(np.unique(np.abs(np.asarray(leaf))), [m], rtol=1e-6)
    assert quantize(1).apply({"w": jnp.zeros(3)}, key=jax.random.key(0))["w"].tolist() == [0] * 3


def test_quantize_log_prob_prefers_truth():
    g = _grads()
    d = quantize(4)
    q = d.apply(g, key=jax.random.key(5))
    far = jax.tree.map(lambda x: x + 1.0, g)
    assert bool(jnp.isfinite(d.log_prob(q, g)))
    assert float(d.log_prob(q, g)) > float(d.log_prob(q, far))


def test_sign_values_are_plus_minus_scale():
    g = _grads()
    s = sign().apply(g, key=jax.random.key(0))
    for leaf, orig in zip(jax.tree.leaves(s), jax.tree.leaves(g), strict=True):
        scale = float(jnp.mean(jnp.abs(orig)))
        np.testing.assert_allclose(np.abs(np.asarray(leaf)), scale, rtol=1e-6)
        np.testing.assert_array_equal(np.sign(leaf), np.sign(orig))
    with pytest.raises(NotImplementedError, match="sign_distance"):
        sign().log_prob(s, g)


@pytest.mark.parametrize("fraction", [0.01, 0.1, 0.37, 1.0])
def test_top_k_keeps_the_largest(fraction):
    g = _grads()
    t = top_k(fraction).apply(g, key=None)
    flat_g = np.concatenate([np.ravel(x) for x in jax.tree.leaves(g)])
    flat_t = np.concatenate([np.ravel(x) for x in jax.tree.leaves(t)])
    k = math.ceil(fraction * flat_g.size)
    kept = flat_t != 0
    assert kept.sum() == k
    np.testing.assert_array_equal(flat_t[kept], flat_g[kept])
    if k < flat_g.size:
        assert np.abs(flat_g[kept]).min() >= np.abs(flat_g[~kept]).max()


def test_top_k_ties_deterministic():
    t = top_k(0.5).apply({"a": jnp.ones(2), "b": jnp.ones(2)}, key=jax.random.key(0))
    assert t["a"].tolist() == [1.0, 1.0] and t["b"].tolist() == [0.0, 0.0]
    with pytest.raises(NotImplementedError, match="kept_distance"):
        top_k(0.5).log_prob(t, t)


def test_kept_distance_ignores_dropped_coordinates():
    g = _grads()
    obs = top_k(0.2).apply(g, key=None)
    cand = _grads(seed=1)
    changed = jax.tree.map(lambda o, c: jnp.where(o == 0, c + 5.0, c), obs, cand)
    d = kept_distance()
    np.testing.assert_allclose(float(d(obs, cand)), float(d(obs, changed)), rtol=1e-6)
    assert float(d(obs, g)) < 1e-5  # the truth matches on the kept coordinates
    # Nothing zero: it is the base distance.
    for base in (distances.cosine, distances.l2):
        np.testing.assert_allclose(float(kept_distance(base)(g, cand)),
                                   float(base(g, cand)), rtol=1e-6)
    assert kept_distance() is kept_distance(base_distance=distances.cosine)


def test_sign_distance():
    g = _grads()
    obs = sign().apply(g, key=None)
    d = sign_distance()
    same = jax.tree.map(lambda x: 100.0 * jnp.sign(x), g)
    flipped = jax.tree.map(lambda x: -x, g)
    assert float(d(obs, same)) < 1e-3
    assert float(d(obs, flipped)) > 1.0
    assert float(d(obs, flipped)) > float(d(obs, g))
    grad = jax.grad(lambda c: d(obs, c))(g)
    assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(grad))
    assert sign_distance(0.1) is sign_distance(temperature=0.1)


@pytest.mark.parametrize("make", [lambda: quantize(0), lambda: quantize(2.5),
                                  lambda: quantize(True), lambda: top_k(0.0),
                                  lambda: top_k(1.5), lambda: sign_distance(0.0)])
def test_validation(make):
    with pytest.raises(ValueError):
        make()
