"""Tests for leakage_lab.labels: iDLG's sign rule and Geng et al.'s label counts.

Known answers: iDLG on every single-sample gradient (untrained sigmoid LeNet, untrained
and trained ReLU mlp); Eq. 2 is exact for one image repeated with different labels;
hand-worked largest-remainder rounding. Properties: counts are non-negative and sum to
N, the same key gives the same counts. Errors: bad num_samples, no penultimate
activations, mismatched gradient trees.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _helpers import numpy_init

from leakage_lab import data, fl, labels, models


@functools.cache
def digits():
    return data.load("digits")


def sample(n, seed):
    ds = digits()
    idx = np.random.default_rng(seed).choice(len(ds), n, replace=False)
    return ds.images[idx], ds.labels[idx]


def single_gradients(model, params, images, targets):
    """One single-sample gradient per image, as a list of pytrees."""
    g = fl.per_example_gradients(model, params, images, targets)
    return [jax.tree.map(lambda a, i=i: a[i], g) for i in range(len(targets))]


LENET = models.lenet(num_classes=10, input_shape=(28, 28, 1))
CONVNET = models.convnet(num_classes=10, input_shape=(28, 28, 1))


MLP = models.mlp(num_classes=10, input_shape=(28, 28, 1), hidden=(32,))


def trained_mlp():
    """A ReLU mlp after five epochs of SGD on 1,000 digits (~85% accuracy, ~1 s)."""
    images, targets = sample(1000, seed=1)
    return fl.client_update(MLP, numpy_init(MLP, 1), images, targets, lr=0.2,
                            epochs=5, batch_size=50, key=jax.random.key(2))


# --------------------------------------------------------------------------------------
# last_layer
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("model, name", [
    (LENET, "fc"),
    (CONVNET, "fc2"),
    (models.mlp(num_classes=10, input_shape=(6, 6, 1), hidden=(32, 16)), "fc3"),
    # hidden layers of the last layer's shape are told apart by evaluating them
    (models.mlp(num_classes=4, input_shape=(2, 2, 1), hidden=(4, 4, 4)), "fc4"),
])
def test_last_layer_finds_the_head(model, name):
    assert labels.last_layer(model, numpy_init(model, 0)) == name


# --------------------------------------------------------------------------------------
# iDLG
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", [LENET, CONVNET], ids=["sigmoid-lenet", "relu-convnet"])
def test_idlg_recovers_every_label_on_untrained_networks(model):
    params = numpy_init(model, 3)
    images, targets = sample(100, seed=4)
    for g, y in zip(single_gradients(model, params, images, targets), targets, strict=True):
        for use_bias in (True, False):
            got = labels.idlg(model, params, g, use_bias=use_bias)
            assert got.shape == (1,) and got.dtype == jnp.int32
            assert int(got[0]) == int(y)


def test_idlg_recovers_every_label_on_a_trained_network():
    params = trained_mlp()
    images, targets = sample(100, seed=5)
    assert fl.accuracy(MLP, params, *sample(500, seed=6)) > 0.7
    for g, y in zip(single_gradients(MLP, params, images, targets), targets, strict=True):
        assert int(labels.idlg(MLP, params, g)[0]) == int(y)
        assert int(labels.idlg(MLP, params, g, use_bias=False)[0]) == int(y)


def test_idlg_bias_rule_needs_no_sign_of_the_activations():
    model = models.mlp(num_classes=5, input_shape=(4, 4, 1), hidden=(8,), activation=jnp.tanh)
    params = numpy_init(model, 0)
    rng = np.random.default_rng(0)
    images = rng.uniform(size=(50, 4, 4, 1)).astype(np.float32)
    targets = (np.arange(50) % 5).astype(np.int32)
    for g, y in zip(single_gradients(model, params, images, targets), targets, strict=True):
        assert int(labels.idlg(model, params, g)[0]) == int(y)


# --------------------------------------------------------------------------------------
# Geng et al.'s counts
# --------------------------------------------------------------------------------------


def test_geng_estimate_is_exact_for_a_repeated_image():
    # All samples share O_i and p_i, and the dummy statistics are measured on the image
    # itself: Eq. 2 then holds with equality.
    params = numpy_init(CONVNET, 7)
    image = digits().images[0]
    targets = np.array([0, 0, 1, 3, 3, 3, 9], np.int32)
    images = np.repeat(image[None], len(targets), axis=0)
    g = fl.gradient(CONVNET, params, images, targets)
    res = labels.batch_counts(CONVNET, params, g, num_samples=len(targets),
                              key=jax.random.key(0), dummy_images=image[None])
    want = np.bincount(targets, minlength=10)
    np.testing.assert_allclose(np.asarray(res.raw), want, atol=1e-3)
    np.testing.assert_array_equal(np.asarray(res.counts), want)


def test_batch_counts_on_an_untrained_convnet():
    params = numpy_init(CONVNET, 8)
    errors = []
    for seed in range(5):
        images, targets = sample(8, seed=100 + seed)
        g = fl.gradient(CONVNET, params, images, targets)
        res = labels.batch_counts(CONVNET, params, g, num_samples=8, key=jax.random.key(seed))
        counts = np.asarray(res.counts)
        assert counts.dtype == np.int32 and counts.shape == (10,)
        assert counts.min() >= 0 and counts.sum() == 8
        assert res.raw.shape == (10,) and res.p_mean.shape == (10,) and res.o_mean.shape == ()
        errors.append(np.abs(counts - np.bincount(targets, minlength=10)).sum())
    assert np.mean(errors) <= 1.0


def test_batch_counts_is_reproducible():
    params = numpy_init(CONVNET, 9)
    images, targets = sample(4, seed=10)
    g = fl.gradient(CONVNET, params, images, targets)
    a = labels.batch_counts(CONVNET, params, g, num_samples=4, key=jax.random.key(1))
    b = labels.batch_counts(CONVNET, params, g, num_samples=4, key=jax.random.key(1))
    np.testing.assert_array_equal(np.asarray(a.raw), np.asarray(b.raw))


def test_round_counts_largest_remainder():
    # clipped [2.6, 1.2, 0, 0.2] sums to 4: floors [2, 1, 0, 0], the one left goes to 0.
    np.testing.assert_array_equal(labels.round_counts([2.6, 1.2, -0.5, 0.2], 4), [3, 1, 0, 0])
    # estimates summing to more than N are scaled down first: shares [1.5, 1.5, 3];
    # of equal remainders the lower class gets the sample
    np.testing.assert_array_equal(labels.round_counts([2.0, 2.0, 4.0], 6), [2, 1, 3])
    np.testing.assert_array_equal(labels.round_counts([-1.0, -2.0], 3).sum(), 3)
    rng = np.random.default_rng(0)
    for n in (1, 5, 32):
        c = labels.round_counts(rng.normal(size=10) * n, n)
        assert c.sum() == n and c.min() >= 0


def test_counts_to_labels():
    np.testing.assert_array_equal(labels.counts_to_labels([2, 0, 1]), [0, 0, 2])
    np.testing.assert_array_equal(labels.counts_to_labels(np.array([0.0, 3.0])), [1, 1, 1])
    assert labels.counts_to_labels([1, 1]).dtype == jnp.int32


# --------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------


def test_errors():
    params = numpy_init(CONVNET, 0)
    images, targets = sample(2, seed=0)
    g = fl.gradient(CONVNET, params, images, targets)
    key = jax.random.key(0)
    for n in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="num_samples must be an int >= 1"):
            labels.batch_counts(CONVNET, params, g, num_samples=n, key=key)
    with pytest.raises(ValueError, match="num_dummy"):
        labels.batch_counts(CONVNET, params, g, num_samples=2, key=key, num_dummy=0)
    with pytest.raises(ValueError, match=r"expects images \[N >= 1, 28, 28, 1\]"):
        labels.batch_counts(CONVNET, params, g, num_samples=2, key=key,
                            dummy_images=np.zeros((3, 32, 32, 3)))
    blind = CONVNET._replace(features=None)
    with pytest.raises(ValueError, match="penultimate activations"):
        labels.batch_counts(blind, params, g, num_samples=2, key=key)
    with pytest.raises(ValueError, match="penultimate activations"):
        labels.idlg(blind, params, g)
    broken = {k: v for k, v in g.items() if k != "fc1"}
    with pytest.raises(ValueError, match="does not match the params tree"):
        labels.idlg(CONVNET, params, broken)
    with pytest.raises(ValueError, match="does not match the params tree"):
        labels.batch_counts(CONVNET, params, broken, num_samples=2, key=key)
    with pytest.raises(ValueError, match="non-negative"):
        labels.counts_to_labels([2, -1])
    with pytest.raises(ValueError, match="integer counts"):
        labels.counts_to_labels([0.5, 1.5])
    with pytest.raises(ValueError, match="one per class"):
        labels.counts_to_labels([])
    with pytest.raises(ValueError, match="no dense layer"):
        labels.last_layer(CONVNET._replace(num_classes=7), params)
