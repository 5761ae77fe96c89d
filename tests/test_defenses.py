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


# ----- matched distances and Soteria (Sun et al., CVPR 2021) ---------------------------

SMALL = None


def _small():
    """DLG's sigmoid LeNet on 14x14 digits, at initialisation, and two images."""
    global SMALL
    if SMALL is None:
        import leakage_lab as ll

        ds = ll.data.load("digits")
        model = ll.models.lenet(num_classes=10, input_shape=(14, 14, 1))
        params = model.init(jax.random.key(1))
        x = jnp.asarray(ds.images[[0, 7], ::2, ::2])
        SMALL = model, params, x, ds.labels[[0, 7]]
    return SMALL


def test_matched_distances_are_attached():
    assert defenses.prune(0.5).matched_distance is defenses.kept_distance()
    assert defenses.prune_gaussian(0.5, 0.1).matched_distance is defenses.kept_distance()
    assert defenses.gaussian(0.1).matched_distance is None
    assert defenses.prune(0.0).matched_distance is None      # nothing pruned, nothing to skip
    assert defenses.from_distance(distances.l1).matched_distance is distances.l1


def test_ignore_layers():
    g, h = tree(40, 0), tree(40, 1)
    two = {"a": g["a"], "b": h["a"]}
    other = {"a": g["a"], "b": g["a"]}
    d = defenses.ignore_layers(distances.l2, "b")
    assert float(d(two, other)) == 0.0
    assert float(distances.l2(two, other)) > 0
    assert d is defenses.ignore_layers(distances.l2, ["b"])
    with pytest.raises(ValueError, match="not in the update"):
        defenses.ignore_layers(distances.l2, "c")(two, other)
    with pytest.raises(ValueError, match="no layer"):
        defenses.ignore_layers(distances.l2, ["a", "b"])(two, other)
    with pytest.raises(ValueError, match="at least one"):
        defenses.ignore_layers(distances.l2, [])


def test_soteria_scores_match_finite_differences():
    model, params, x, _ = _small()
    scores = np.asarray(defenses.soteria_scores(model, params, x[:1]))
    r = np.asarray(model.features(params, x[:1]))[0]
    assert scores.shape == r.shape
    # Oracle for one live feature: |r_i| / ||∂r_i/∂x|| with the gradient by central differences.
    i = int(np.argmax(np.abs(r)))
    eps = 1e-2
    flat = np.asarray(x[:1], np.float64).ravel()
    grad = np.zeros_like(flat)
    for j in range(flat.size):
        up, down = flat.copy(), flat.copy()
        up[j] += eps
        down[j] -= eps
        f = [np.asarray(model.features(params, jnp.asarray(v.reshape(x[:1].shape),
                                                          jnp.float32)))[0, i]
             for v in (up, down)]
        grad[j] = (f[0] - f[1]) / (2 * eps)
    np.testing.assert_allclose(scores[i], abs(r[i]) / np.linalg.norm(grad), rtol=2e-2)
    # A batch sums its examples' scores.
    both = np.asarray(defenses.soteria_scores(model, params, x))
    one_each = sum(np.asarray(defenses.soteria_scores(model, params, x[k:k + 1])) for k in (0, 1))
    np.testing.assert_allclose(both, one_each, rtol=1e-4, atol=1e-6)


def test_soteria_changes_only_the_defended_layer():
    import leakage_lab as ll

    model, params, x, y = _small()
    g = ll.fl.gradient(model, params, x, y)
    d = defenses.soteria(model, params, x, fraction=0.5)
    out = d.apply(g, key=KEY)
    layer = list(params)[-1]
    for name in params:
        for k in params[name]:
            if (name, k) != (layer, "w"):
                np.testing.assert_array_equal(np.asarray(out[name][k]), np.asarray(g[name][k]))
    w, w0 = np.asarray(out[layer]["w"]), np.asarray(g[layer]["w"])
    zero_rows = np.all(w == 0, axis=1)
    d_features = w.shape[0]
    assert zero_rows.sum() >= round(0.5 * d_features)          # pruned rows (+ dead features)
    np.testing.assert_array_equal(w[~zero_rows], w0[~zero_rows])
    # The pruned rows are the highest-scoring features.
    scores = np.asarray(defenses.soteria_scores(model, params, x))
    pruned = np.argsort(-scores, kind="stable")[: round(0.5 * d_features)]
    assert np.all(w[pruned] == 0)
    assert d.matched_distance.__name__ == f"cosine_without_{layer}"
    # Nothing pruned: nothing changes; a bad fraction or layer is refused.
    same = defenses.soteria(model, params, x, fraction=0.0).apply(g, key=KEY)
    np.testing.assert_array_equal(np.asarray(same[layer]["w"]), w0)
    with pytest.raises(ValueError, match="fraction"):
        defenses.soteria(model, params, x, fraction=1.0)
    with pytest.raises(ValueError, match="features"):
        defenses.soteria(model, params, x, fraction=0.5, layer="conv1")
    with pytest.raises(ValueError, match="not a layer"):
        defenses.soteria(model, params, x, fraction=0.5, layer="nope")


def test_soteria_log_prob_ignores_pruned_rows():
    import leakage_lab as ll

    model, params, x, y = _small()
    g = ll.fl.gradient(model, params, x, y)
    d = defenses.soteria(model, params, x, fraction=0.5)
    obs = d.apply(g, key=KEY)
    layer = list(params)[-1]
    zero_rows = np.all(np.asarray(obs[layer]["w"]) == 0, axis=1)
    moved = {**g, layer: {**g[layer], "w": jnp.where(zero_rows[:, None], g[layer]["w"] + 3.0,
                                                      g[layer]["w"])}}
    np.testing.assert_allclose(float(d.log_prob(obs, moved)), float(d.log_prob(obs, g)),
                               rtol=1e-6)
    elsewhere = jax.tree.map(lambda v: v + 0.01, g)
    assert float(d.log_prob(obs, elsewhere)) < float(d.log_prob(obs, g))


def test_soteria_inside_fl_train_per_client():
    import leakage_lab as ll

    model, params, x, y = _small()
    clients = [(x[:1], y[:1]), (x[1:], y[1:])]
    kw = dict(rounds=1, clients_per_round=2, lr=0.1, epochs=1, batch_size=1,
              key=jax.random.key(0))
    plain = ll.fl.train(model, params, clients, **kw)
    seen = []

    def make(m, p, images, labels):
        seen.append(images.shape[0])
        return defenses.soteria(m, p, images, fraction=0.9)

    defended = ll.fl.train(model, params, clients, defense=make, **kw)
    assert seen == [1, 1]
    layer = list(params)[-1]
    for name in params:
        same = np.allclose(np.asarray(defended.params[name]["w"]),
                           np.asarray(plain.params[name]["w"]))
        assert same == (name != layer), name


def test_soteria_break_beats_the_naive_attack():
    """Balunović et al. (ICLR 2022): leaving out the defended layer recovers the image."""
    import leakage_lab as ll

    model, params, x, y = _small()
    gains = []
    for k in (0, 1):
        g = ll.fl.gradient(model, params, x[k:k + 1], y[k:k + 1])
        d = defenses.soteria(model, params, x[k:k + 1], fraction=0.8)
        obs = d.apply(g, key=KEY)
        psnr = {}
        for name, dist in (("naive", distances.cosine), ("break", d.matched_distance)):
            res = ll.attacks.reconstruct(model, params, obs, labels=y[k:k + 1], distance=dist,
                                         steps=200, key=jax.random.key(0))
            psnr[name] = ll.metrics.psnr(res.images[0], x[k])
        gains.append(psnr["break"] - psnr["naive"])
        assert psnr["break"] > 20, psnr
    assert min(gains) > 5, gains


def test_kept_distance_zero_rows_reads_a_dense_layers_zero_inputs():
    # A dense layer's weight gradient a δᵀ: the input a = (0, 1, 2) zeroes row 0 exactly.
    a, delta = jnp.array([0.0, 1.0, 2.0]), jnp.arange(1.0, 65.0)
    clean = {"w": jnp.outer(a, delta)}
    observed = defenses.prune(0.5).apply(clean, key=jax.random.key(0))
    assert bool(jnp.all(observed["w"][0] == 0)) and bool(jnp.any(observed["w"][1:] != 0))
    wrong = {"w": jnp.outer(jnp.array([1.0, 1.0, 2.0]), delta)}   # a background pixel lit
    plain, rows = defenses.kept_distance(), defenses.kept_distance(zero_rows=True)
    assert float(plain(observed, wrong)) < 1e-6       # the plain mask cannot see it
    assert float(rows(observed, wrong)) > 1e-3        # the row rule does
    assert float(rows(observed, clean)) < 1e-6
    assert rows is defenses.kept_distance(distances.cosine, zero_rows=True)
    assert rows.__name__ == "kept_rows_cosine"
