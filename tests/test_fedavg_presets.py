"""FedAvg attack: the normalised working space and the presets (issue 16, items 2 and 4)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _helpers import small_client

from leakage_lab import attacks, data, distances, fedavg, fl, models, optimizers

SHAPE = (4, 4, 1)
MODEL = models.mlp(num_classes=3, input_shape=SHAPE, hidden=(8,))
LR = 0.5
NORM = ((0.9,), (0.1,))


@pytest.fixture(scope="module")
def setup():
    params, images, y = small_client(MODEL)
    theta_c = fl.client_update(MODEL, params, images, y, lr=LR, epochs=2, batch_size=3,
                               key=jax.random.key(1))
    return params, images, y, theta_c


def _zeros(key, shape):
    return jnp.zeros(shape)


def test_unknown_preset_lists_the_valid_ones(setup):
    params, _, y, theta_c = setup
    with pytest.raises(ValueError, match=r"unknown preset 'paper2'.*'paper', 'released-code'"):
        attacks.fedavg(MODEL, params, theta_c, label_counts=np.bincount(y), lr=LR, epochs=2,
                       batch_size=3, key=jax.random.key(0), preset="paper2")
    assert set(fedavg.PRESETS) == {"paper", "released-code"}


def test_normalization_must_match_the_channels(setup):
    params, _, y, theta_c = setup
    kw = dict(label_counts=np.bincount(y), lr=LR, epochs=2, batch_size=3, steps=1,
              key=jax.random.key(0))
    with pytest.raises(ValueError, match=r"normalization has 3 channel\(s\).*have 1; "
                                         r"expected 1 mean"):
        attacks.fedavg(MODEL, params, theta_c, normalization=((0.5,) * 3, (0.2,) * 3), **kw)
    with pytest.raises(ValueError, match="normalization has 3 channel"):
        attacks.fedavg(MODEL, params, theta_c,
                       normalization=data.normalization(data.load("tiny-images").images), **kw)
    with pytest.raises(ValueError, match="stds > 0"):
        attacks.fedavg(MODEL, params, theta_c, normalization=((0.5,), (0.0,)), **kw)
    with pytest.raises(ValueError, match=r"\(mean, std\) per channel"):
        attacks.fedavg(MODEL, params, theta_c, normalization=0.5, **kw)


def test_results_are_pixels_and_the_box_acts_on_pixels(setup):
    params, _, y, theta_c = setup
    kw = dict(label_counts=np.bincount(y), lr=LR, epochs=2, batch_size=3, steps=2,
              key=jax.random.key(0), init=_zeros, optimizer=optax.sgd(0.0))
    # Variables stay at 0 in the normalised space: the pixels are the mean.
    res = attacks.fedavg(MODEL, params, theta_c, normalization=NORM, **kw)
    np.testing.assert_allclose(res.images, 0.9, atol=1e-6)
    np.testing.assert_allclose(res.epoch_images, 0.9, atol=1e-6)
    np.testing.assert_allclose(res.frames[-1].images, 0.9, atol=1e-6)
    # project acts on the pixels: mean 2 is outside [0, 1], unit_box brings it to 1.
    res = attacks.fedavg(MODEL, params, theta_c, normalization=((2.0,), (0.5,)),
                         project=optimizers.unit_box, **kw)
    np.testing.assert_allclose(res.images, 1.0, atol=1e-6)
    # A Dataset gives its declared normalisation.
    ds = data.load("femnist-like")
    res = attacks.fedavg(MODEL, params, theta_c, normalization=ds, **kw)
    np.testing.assert_allclose(res.images, ds.normalization.mean[0], atol=1e-5)


def test_objective_in_the_normalised_space(setup):
    # E = 1, one batch: the client's true normalised images give the observed update
    # exactly, and the box penalty is zero because their pixels lie in [0, 1] (the
    # normalised values do not).
    params, images, y, _ = setup
    norm = data.Normalization(*NORM)
    z = norm.normalize(images)
    assert z.min() < -1.0
    theta_c = fl.client_update(MODEL, params, z, y, lr=LR, epochs=1, batch_size=6,
                               key=jax.random.key(0))
    target = jax.tree.map(lambda s, t: (s - t) / LR, params, theta_c)
    x = jnp.asarray(z)[None, None, None]

    def loss(normalization):
        return float(fedavg.fedavg_objective(
            MODEL, params, target, x, jnp.asarray(y)[None, None], jnp.ones((1, 1, 6)), lr=LR,
            layout=fedavg.per_batch(1, 1), tv_weight=0.0, clip_weight=1.0,
            normalization=normalization))

    assert loss(norm) == pytest.approx(0.0, abs=1e-5)
    assert loss(None) > 1.0       # read as pixels, the same values are far outside [0, 1]


def test_released_code_preset(setup):
    params, _, y, theta_c = setup
    kw = dict(label_counts=np.bincount(y), lr=LR, epochs=2, batch_size=3,
              key=jax.random.key(0), preset="released-code")
    # Its distance: squared L2 per layer, weights e^0 ... e^-3 first -> last, divided by B.
    rng = np.random.default_rng(1)
    g = jax.tree.map(lambda a: jnp.asarray(rng.normal(size=a.shape), jnp.float32), params)
    h = jax.tree.map(jnp.zeros_like, params)
    d = fedavg._layer_l2(tuple(params), 2)
    expected = (distances.l2(g["fc1"], h["fc1"]) + math.exp(-3) * distances.l2(g["fc2"], h["fc2"]))
    assert float(d(g, h)) == pytest.approx(float(expected) / 2, rel=1e-5)
    # The factor on L_sim ramps 1 -> 2 over the steps (variables frozen, no penalties).
    frozen = attacks.fedavg(MODEL, params, theta_c, steps=5, init=_zeros,
                            optimizer=optax.sgd(0.0), invariant_weight=0.0, tv_weight=0.0,
                            clip_weight=0.0, **kw)
    np.testing.assert_allclose(frozen.losses / frozen.losses[0], [1, 1.25, 1.5, 1.75, 2],
                               rtol=1e-5)
    # The last iterate, 400 steps by default (here overridden), N(0, 1) start.
    res = attacks.fedavg(MODEL, params, theta_c, steps=6, chunk=3, **kw)
    assert res.steps == 6 and res.best_step == 5
    assert res.best_loss == pytest.approx(float(res.losses[-1]))
    assert fedavg.PRESETS["released-code"]["steps"] == 400
    assert fedavg.PRESETS["released-code"]["invariant_weight"] == 1000.0
    start = attacks.fedavg(MODEL, params, theta_c, steps=1, optimizer=optax.sgd(0.0),
                           **kw).epoch_images
    assert start.min() < -0.5 and start.max() > 1.5      # N(0, 1), not U(0, 1)


def test_explicit_keywords_override_the_preset(setup):
    params, _, y, theta_c = setup
    kw = dict(label_counts=np.bincount(y), lr=LR, epochs=2, batch_size=3,
              key=jax.random.key(0))
    base = attacks.fedavg(MODEL, params, theta_c, steps=4, **kw)
    paper = attacks.fedavg(MODEL, params, theta_c, steps=4, preset="paper", **kw)
    np.testing.assert_array_equal(base.losses, paper.losses)       # "paper" is the default
    cosine = attacks.fedavg(MODEL, params, theta_c, steps=4, preset="released-code",
                            distance=distances.cosine, invariant_weight=1.0, keep="best",
                            init=jax.random.uniform,
                            optimizer=optimizers.staircase_adam(0.4, 0.995, 10), **kw)
    # Only the ramp of the released code is left: the first step's loss is the same.
    assert float(cosine.losses[0]) == pytest.approx(float(paper.losses[0]), rel=1e-5)
    with pytest.raises(ValueError, match="keep must be 'best' or 'last'"):
        attacks.fedavg(MODEL, params, theta_c, steps=1, keep="first", **kw)
