"""Tests for leakage_lab.analytic: a dense layer's input from its gradients.

Known answers: an image through an MLP's first layer, the penultimate features through
a convnet's last layer, both from float32 gradients; a synthetic batch gradient in
which only the recovered sample touches its class. Errors: zero bias gradient, shape
mismatch, bad labels.
"""

from __future__ import annotations

import numpy as np
import pytest
from _helpers import numpy_init

from leakage_lab import analytic, data, fl, models

DS = data.load("digits")


def relative_error(got, want):
    want = np.asarray(want, np.float64).ravel()
    return np.linalg.norm(np.asarray(got).ravel() - want) / np.linalg.norm(want)


def test_first_layer_of_an_mlp_gives_the_image():
    model = models.mlp(num_classes=10, input_shape=(28, 28, 1), hidden=(64,))
    params = numpy_init(model, 0)
    for i in (0, 1, 2):
        image, label = DS.images[i : i + 1], DS.labels[i : i + 1]
        g = fl.gradient(model, params, image, label)  # float32 throughout
        x = analytic.analytic_fc(g["fc1"]["w"], g["fc1"]["b"])
        assert x.shape == (28 * 28,)
        assert relative_error(x, image) < 1e-5
        np.testing.assert_allclose(x.reshape(28, 28, 1), image[0], atol=1e-5)


def test_last_layer_of_a_convnet_gives_the_features():
    model = models.convnet(num_classes=10, input_shape=(28, 28, 1))
    params = numpy_init(model, 1)
    image, label = DS.images[3:4], DS.labels[3:4]
    g = fl.gradient(model, params, image, label)
    f = model.features(params, image)[0]
    x = analytic.analytic_fc(g["fc2"]["w"], g["fc2"]["b"])
    assert relative_error(x, f) < 1e-5
    # one sample: the batch version reads the same features off the label's column
    rec = analytic.analytic_fc_batch(g["fc2"]["w"], g["fc2"]["b"], label)
    assert rec.classes.tolist() == [int(label[0])] and rec.indices.tolist() == [0]
    assert relative_error(rec.inputs[0], f) < 1e-5


def test_columns_without_signal_are_ignored():
    x = np.array([1.0, -2.0, 3.0])
    db = np.array([0.0, 0.5, 1e-30, -0.25])
    np.testing.assert_allclose(analytic.analytic_fc(np.outer(x, db), db), x, rtol=1e-12)


def test_batch_known_answer_when_others_leave_the_class_alone():
    # Synthetic last-layer gradient of N = 4 samples where p_ij = 0 for every sample i
    # that is not of class j: each unique class then gives its sample's input exactly.
    rng = np.random.default_rng(0)
    n, d, k = 4, 6, 5
    f = rng.uniform(size=(n, d))
    y = np.array([2, 0, 2, 4])
    p = np.zeros((n, k))
    p[np.arange(n), y] = rng.uniform(0.2, 0.9, size=n)  # the rest of the mass on class 1
    p[:, 1] = 1 - p.sum(axis=1)
    delta = p - np.eye(k)[y]
    dw, db = f.T @ delta / n, delta.mean(axis=0)
    rec = analytic.analytic_fc_batch(dw, db, y)
    assert rec.classes.tolist() == [0, 4] and rec.indices.tolist() == [1, 3]
    np.testing.assert_allclose(rec.inputs, f[[1, 3]], rtol=1e-12)
    empty = analytic.analytic_fc_batch(dw, db, np.array([2, 2, 0, 0]))
    assert empty.inputs.shape == (0, d) and empty.classes.size == 0


def test_errors():
    with pytest.raises(ValueError, match="cannot be recovered"):
        analytic.analytic_fc(np.ones((3, 2)), np.zeros(2))
    with pytest.raises(ValueError, match="cannot be recovered"):
        analytic.analytic_fc(np.ones((3, 2)), np.full(2, 1e-6), eps=1e-3)
    with pytest.raises(ValueError, match=r"weight_grad shape \[3, 2\] and bias_grad shape \[3\]"):
        analytic.analytic_fc(np.ones((3, 2)), np.ones(3))
    with pytest.raises(ValueError, match=r"weight_grad shape \[6\]"):
        analytic.analytic_fc(np.ones(6), np.ones(3))
    with pytest.raises(ValueError, match="NaN"):
        analytic.analytic_fc(np.full((3, 2), np.nan), np.ones(2))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 1\]"):
        analytic.analytic_fc_batch(np.ones((3, 2)), np.ones(2), np.array([0, 2]))
    with pytest.raises(ValueError, match="integer labels"):
        analytic.analytic_fc_batch(np.ones((3, 2)), np.ones(2), np.array([0.0, 1.0]))
