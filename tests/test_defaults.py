"""Defaults that succeed: every attack, called with only its required arguments on the
bundled data, reaches its own stop rule or its documented quality (issue 13, item 3);
and equal models share compiled code (item 2).

Each test is one attack at its defaults, so these are the slowest tests of the attacks;
they use the smallest bundled problem that shows the point.
"""

import jax
import numpy as np
import pytest

import leakage_lab as ll

DIGITS = ll.data.load("digits")


@pytest.fixture(scope="module")
def mlp_problem():
    model = ll.models.mlp(num_classes=10, input_shape=(28, 28, 1))
    params = model.init(jax.random.key(0))
    x, y = DIGITS.images[:1], DIGITS.labels[:1]
    return model, params, x, y, ll.fl.gradient(model, params, x, y)


def test_dlg_default_steps_reach_the_stop_rule_and_30_db():
    # DLG needs ~900-1,500 L-BFGS steps before the image settles: the default budget
    # (4,000) lets it stop by itself.
    tiny = ll.data.load("tiny-images")
    model = ll.models.lenet(num_classes=100, input_shape=(32, 32, 3))
    params = model.init(jax.random.key(0))
    x, y = tiny.images[3:4], tiny.labels[3:4]
    update = ll.fl.gradient(model, params, x, y)
    res = ll.attacks.dlg(model, params, update, key=jax.random.key(0))
    assert res.status == "converged" and res.steps < 4000
    assert ll.metrics.psnr(res.images[0], x[0]) >= 30.0
    assert res.labels.tolist() == y.tolist() and res.soft_labels.shape == (1, 100)
    # Item 2: the same builder arguments give the same model, so a second attack (a lab
    # cell re-run) reuses the compiled code.
    again = ll.models.lenet(num_classes=100, input_shape=(32, 32, 3))
    second = ll.attacks.dlg(again, params, update, key=jax.random.key(1), steps=25)
    assert second.compile_seconds == 0.0


def test_reconstruct_defaults_recover_a_digit(mlp_problem):
    model, params, x, y, update = mlp_problem
    res = ll.attacks.reconstruct(model, params, update, labels=y, key=jax.random.key(0))
    assert res.steps == 1000                    # no stop rule: it runs its budget
    assert ll.metrics.psnr(res.images[0], x[0]) >= 30.0


def test_bayes_defaults_recover_a_digit_through_weak_noise(mlp_problem):
    model, params, x, y, update = mlp_problem
    defense = ll.defenses.gaussian(sigma=1e-3)
    observed = defense.apply(update, key=jax.random.key(1))
    res = ll.attacks.bayes(model, params, observed, defense=defense, labels=y,
                           key=jax.random.key(0))
    assert res.steps == 1000
    assert ll.metrics.psnr(res.images[0], x[0]) >= 25.0


def test_fedavg_defaults_beat_the_update_free_guesses():
    model = ll.models.mlp(num_classes=10, input_shape=(28, 28, 1))
    params = model.init(jax.random.key(0))
    x, y = DIGITS.images[:4], DIGITS.labels[:4]
    client = dict(lr=0.1, epochs=2, batch_size=2)
    update = ll.fl.client_update(model, params, x, y, key=jax.random.key(1), **client)
    res = ll.attacks.fedavg(model, params, update, label_counts=np.bincount(y, minlength=10),
                            key=jax.random.key(0), **client)
    assert res.steps == 200 and res.epoch_images.shape == (2, 4, 28, 28, 1)
    score = ll.metrics.score_batch(res.images, x).mean_psnr
    pixel_mean = np.broadcast_to(DIGITS.images[100:].mean(axis=0), x.shape)
    assert score > ll.metrics.score_batch(pixel_mean, x).mean_psnr + 3.0
