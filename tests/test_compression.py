"""Compression defenses (quantize, sign, top_k) and their matched attack distances."""

import doctest
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from leakage_lab import compression, defenses, distances
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


@pytest.mark.parametrize(("make", "message"), [
    (lambda: quantize(0), "from 1 to 32"), (lambda: quantize(33), "from 1 to 32"),
    (lambda: quantize(2.5), "integer"), (lambda: quantize(True), "integer"),
    (lambda: top_k(0.0), "fraction"), (lambda: top_k(1.5), "fraction"),
    (lambda: top_k(), "either"), (lambda: top_k(0.1, k=3), "either"),
    (lambda: top_k(k=0), "k must be"), (lambda: sign_distance(0.0), "temperature")])
def test_validation(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_quantize_32_bits_is_accepted():
    g = _grads()
    assert _rel_err(quantize(32).apply(g, key=jax.random.key(0)), g) < 1e-6


def test_top_k_by_count_and_k_larger_than_the_parameter_count():
    g = _grads()
    n = sum(x.size for x in jax.tree.leaves(g))
    by_count = top_k(k=7).apply(g, key=None)
    assert sum(int(jnp.sum(x != 0)) for x in jax.tree.leaves(by_count)) == 7
    assert top_k(k=n).apply(g, key=None)["fc"]["w"].tolist() == g["fc"]["w"].tolist()
    with pytest.raises(ValueError, match=f"only {n} parameters"):
        top_k(k=n + 1).apply(g, key=None)


def test_every_scheme_names_its_matched_distance():
    assert quantize(8).matched_distance is distances.cosine
    assert sign().matched_distance is sign_distance()
    assert top_k(0.1).matched_distance is kept_distance()
    assert defenses.prune(0.5).matched_distance is kept_distance()
    assert compression.kept_distance is defenses.kept_distance


@pytest.mark.parametrize("make", [lambda: quantize(8), sign, lambda: top_k(0.01),
                                  lambda: top_k(k=5)])
def test_compressions_run_inside_fl_train(make):
    """The server receives θs + C(θc - θs): exactly C's output for the deterministic schemes."""
    import leakage_lab as ll

    model = ll.models.mlp(num_classes=3, input_shape=(4, 4, 1), hidden=(8,))
    params = model.init(jax.random.key(0))
    x = np.random.default_rng(0).uniform(size=(6, 4, 4, 1)).astype(np.float32)
    y = np.array([0, 1, 2, 0, 1, 2])
    kw = dict(rounds=1, clients_per_round=1, lr=0.5, epochs=1, batch_size=6,
              key=jax.random.key(1))
    plain = ll.fl.train(model, params, [(x, y)], **kw).params
    sent = ll.fl.train(model, params, [(x, y)], defense=make(), **kw).params
    update = jax.tree.map(lambda a, b: a - b, plain, params)
    got = jax.tree.map(lambda a, b: a - b, sent, params)
    if make().name.startswith("quantize"):  # every leaf on its own grid -m + kΔ, Δ = 2m/255
        for leaf, orig in zip(jax.tree.leaves(got), jax.tree.leaves(update), strict=True):
            m = float(jnp.max(jnp.abs(orig)))
            level = (np.asarray(leaf, np.float64) + m) / (2 * m / 255)
            np.testing.assert_allclose(level, np.round(level), atol=1e-2)
        assert 0 < _rel_err(got, update) < 0.05
        return
    want = make().apply(update, key=None)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)


# ----- the matched attack beats the naive one -----------------------------------------

_ATTACK = {}


def _attack_case():
    """DLG's sigmoid LeNet on 14x14 digits at initialisation, two single-image updates."""
    if not _ATTACK:
        import leakage_lab as ll

        ds = ll.data.load("digits")
        model = ll.models.lenet(num_classes=10, input_shape=(14, 14, 1))
        params = model.init(jax.random.key(1))
        _ATTACK.update(ll=ll, model=model, params=params,
                       images=jnp.asarray(ds.images[[0, 7], ::2, ::2]), labels=ds.labels[[0, 7]])
    return _ATTACK


def _psnr_of(observed, distance, k):
    c = _attack_case()
    res = c["ll"].attacks.reconstruct(c["model"], c["params"], observed,
                                      labels=c["labels"][k:k + 1], distance=distance,
                                      steps=200, key=jax.random.key(0))
    return c["ll"].metrics.psnr(res.images[0], c["images"][k])


def _clean(k):
    c = _attack_case()
    return c["ll"].fl.gradient(c["model"], c["params"], c["images"][k:k + 1],
                               c["labels"][k:k + 1])


def test_8bit_quantisation_leaks_like_the_plain_update():
    """"8-bit: essentially no privacy gain": cosine on the quantised update still succeeds."""
    g = _clean(0)
    plain = _psnr_of(g, distances.cosine, 0)
    q8 = _psnr_of(quantize(8).apply(g, key=jax.random.key(3)), quantize(8).matched_distance, 0)
    assert plain > 30 and q8 > 30, (plain, q8)


@pytest.mark.parametrize("make", [sign, lambda: top_k(0.1), lambda: defenses.prune(0.5)])
def test_matched_attack_beats_the_naive_one(make):
    """Plain cosine tries to match the zeros (top-k, pruning) or the flat magnitudes (sign);
    the matched distance compares only what the scheme kept, and recovers the image."""
    d = make()
    observed = d.apply(_clean(0), key=jax.random.key(3))
    naive = _psnr_of(observed, distances.cosine, 0)
    matched = _psnr_of(observed, d.matched_distance, 0)
    assert matched > 20 and matched > naive + 10, (d.name, naive, matched)
