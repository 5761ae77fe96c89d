"""Tests for the Bayes-optimal adversary (Balunović et al., ICLR 2022), ``leakage_lab.bayes``.

On a tiny sigmoid LeNet (8x8x1, 4 classes), labels known. Checked: DLG's loss is the
Bayes objective under a Gaussian conditional and the uniform prior (value and gradient,
up to the factor 1/(2σ²)); the attack recovers an image through weak noise; the same key
gives the same result; σ travels as data (no recompilation); the Monte-Carlo ball
average and tempering; bad input.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from leakage_lab import attacks, bayes, defenses, distances, fl, metrics, models, priors

MODEL = models.lenet(num_classes=4, input_shape=(8, 8, 1))


@functools.cache
def problem(seed: int = 0):
    params = MODEL.init(jax.random.key(seed))
    image = np.random.default_rng(seed).uniform(size=(1, 8, 8, 1)).astype(np.float32)
    label = np.array([seed % 4])
    return params, image, label, fl.gradient(MODEL, params, image, label)


def test_dlg_is_bayes_with_gaussian_conditional_and_uniform_prior():
    params, image, label, grads = problem()
    sigma = 0.005     # small enough that the distance term dwarfs float32 rounding of the constant
    defense = defenses.gaussian(sigma)

    def nlp(x):
        return bayes.bayes_objective(MODEL, params, grads, x, defense=defense, labels=label,
                                       prior=priors.uniform)

    def dlg(x):
        return distances.l2(grads, fl.gradient(MODEL, params, x, label))

    nlp_vg, dlg_vg = jax.jit(jax.value_and_grad(nlp)), jax.jit(jax.value_and_grad(dlg))
    x = jnp.asarray(np.random.default_rng(1).uniform(size=image.shape), jnp.float32)
    const = float(nlp_vg(jnp.asarray(image))[0])        # l2 = 0 at the truth
    (value, grad), (distance, distance_grad) = nlp_vg(x), dlg_vg(x)
    np.testing.assert_allclose(float(value) - const, float(distance) / (2 * sigma**2), rtol=1e-3)
    np.testing.assert_allclose(np.asarray(grad), np.asarray(distance_grad) / (2 * sigma**2),
                               rtol=1e-3, atol=1e-3 * float(jnp.abs(grad).max()))
    assert bayes.PRIOR_WORK[0].prior is priors.uniform


@functools.cache
def attack(sigma: float = 1e-3, seed: int = 0, steps: int = 200):
    params, image, label, grads = problem()
    observed = defenses.gaussian(sigma).apply(grads, key=jax.random.key(7))
    return bayes.bayes(MODEL, params, observed, defense=defenses.gaussian(sigma), labels=label,
                       prior_weight=1e-2, steps=steps, key=jax.random.key(seed))


def test_recovers_image_through_weak_noise():
    _, image, label, _ = problem()
    res = attack()
    assert res.images.shape == image.shape and res.labels.tolist() == label.tolist()
    assert res.images.min() >= 0 and res.images.max() <= 1       # projected onto [0, 1]
    assert metrics.psnr(res.images[0], image[0]) > 25
    assert res.losses[-20:].mean() < res.losses[:20].mean()
    assert res.status == "budget" and res.steps == 200


def test_reproducible_and_no_recompilation_for_another_sigma():
    a = attack()
    params, _, label, grads = problem()
    b = bayes.bayes(MODEL, params, defenses.gaussian(1e-3).apply(grads, key=jax.random.key(7)),
                    defense=defenses.gaussian(1e-3), labels=label, prior_weight=1e-2,
                    steps=200, key=jax.random.key(0))
    np.testing.assert_array_equal(a.images, b.images)
    c = attack(sigma=2e-3)                   # σ and α are data: the compiled code is reused
    assert c.compile_seconds == 0.0


def test_best_loss_is_the_objective_at_the_returned_images():
    params, _, label, grads = problem()
    defense = defenses.prune_gaussian(0.3, 1e-3)   # shares the compiled loss of gaussian()
    observed = defense.apply(grads, key=jax.random.key(3))
    res = bayes.bayes(MODEL, params, observed, defense=defense, labels=label, prior_weight=0.5,
                      steps=200, key=jax.random.key(1))
    value = bayes.bayes_objective(MODEL, params, observed, res.images, defense=defense,
                                    labels=label, prior_weight=0.5)
    np.testing.assert_allclose(res.best_loss, float(value), rtol=1e-4)


def test_monte_carlo_ball_and_tempering():
    params, _, label, grads = problem()
    offsets = bayes.ball_offsets(jax.random.key(0), (1, 8, 8, 1), num=500, delta=0.3)
    norms = np.linalg.norm(np.asarray(offsets).reshape(500, -1), axis=1)
    assert norms.max() <= 0.3 + 1e-5 and norms.min() > 0.2    # uniform in 64-d: near the rim
    defense = defenses.gaussian(1e-2)
    res = bayes.bayes(MODEL, params, grads, defense=defense, labels=label, prior_weight=1e-2,
                      steps=20, key=jax.random.key(0), mc_samples=3, delta=0.05,
                      temper_steps=15, optimizer=attacks.adam(0.1), chunk=5)  # one compile
    assert len(res.losses) == 15 + 20 and np.isfinite(res.losses).all()
    # The returned loss is the mean over the attempt's fixed offsets.
    _, k_ball = jax.random.split(jax.random.fold_in(jax.random.key(0), 0))
    offs = bayes.ball_offsets(k_ball, (1, 8, 8, 1), num=3, delta=0.05)
    mean = np.mean([float(bayes.bayes_objective(MODEL, params, grads, res.images + u,
                                                  defense=defense, labels=label,
                                                  prior_weight=1e-2)) for u in offs])
    np.testing.assert_allclose(res.best_loss, mean, rtol=1e-4)


def test_bad_input():
    params, _, label, grads = problem()
    kw = {"labels": label, "steps": 2, "key": jax.random.key(0)}
    with pytest.raises(ValueError, match="Defense"):
        bayes.bayes(MODEL, params, grads, defense=distances.l2, **kw)
    with pytest.raises(ValueError, match="does not match"):
        bayes.bayes(MODEL, params, {"w": np.zeros(3)}, defense=defenses.gaussian(0.1), **kw)
    with pytest.raises(ValueError, match="labels"):
        bayes.bayes(MODEL, params, grads, defense=defenses.gaussian(0.1), labels=[7],
                    steps=2, key=jax.random.key(0))
    with pytest.raises(ValueError, match="mc_samples"):
        bayes.bayes(MODEL, params, grads, defense=defenses.gaussian(0.1), mc_samples=-1, **kw)


def test_gradinversion_is_tv_plus_feature_statistics_with_a_gaussian_conditional():
    model = models.lenet(num_classes=4, input_shape=(8, 8, 1))
    params = model.init(jax.random.key(0))
    rng = np.random.default_rng(0)
    public = rng.uniform(0.3, 0.7, size=(16, 8, 8, 1)).astype(np.float32)
    reading = bayes.gradinversion(model, params, public, deep_inversion_weight=1.0)
    deep = priors.feature_statistics(model, params, public)
    # The DeepInversion term is smallest on images like the public ones.
    assert float(deep(jnp.asarray(public))) < 1e-6
    noise = jnp.asarray(rng.uniform(size=(16, 8, 8, 1)).astype(np.float32))
    assert float(deep(noise)) > 10 * float(deep(jnp.asarray(public))) + 1e-6
    x = noise[:2]
    np.testing.assert_allclose(reading.prior(x),
                               priors.total_variation(x) + deep(x), rtol=1e-6)
    # Gaussian conditional: -log p is the L2 distance (scale 1) up to a constant.
    g = {"a": jnp.ones(3)}
    h = {"a": jnp.array([1.0, 2.0, 3.0])}
    diff = reading.conditional.log_prob(g, g) - reading.conditional.log_prob(g, h)
    np.testing.assert_allclose(diff, distances.l2(g, h), rtol=1e-6)
