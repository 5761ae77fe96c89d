"""Tests for leakage_lab.metrics: PSNR and MSE known answers, matching against a known
permutation (the oracle), batch scores, and shape errors."""

from __future__ import annotations

import numpy as np
import pytest

from leakage_lab import metrics


def test_psnr_constant_error_known_answer():
    truth = np.full((4, 4, 3), 0.5)
    assert metrics.psnr(truth + 0.1, truth) == pytest.approx(20.0, abs=1e-9)
    assert metrics.psnr(truth - 0.01, truth) == pytest.approx(40.0, abs=1e-9)
    assert metrics.mse(truth + 0.1, truth) == pytest.approx(0.01)
    # max_value scales the peak: 10 log10(4 / 0.01) = 26.02 dB.
    assert metrics.psnr(truth + 0.1, truth, max_value=2.0) == pytest.approx(
        10 * np.log10(400.0))


def test_psnr_identical_is_capped():
    truth = np.random.default_rng(0).uniform(size=(5, 5, 1))
    assert metrics.psnr(truth, truth) == 100.0
    assert metrics.psnr(truth, truth, cap=60.0) == 60.0
    assert isinstance(metrics.psnr(truth, truth), float)


def test_reconstruction_is_clipped_to_unit_range():
    truth = np.ones((3, 3, 1))
    assert metrics.psnr(truth + 0.5, truth) == 100.0  # 1.5 is shown as 1.0
    assert metrics.mse(np.full((3, 3, 1), -1.0), np.zeros((3, 3, 1))) == 0.0


def test_psnr_and_mse_per_image_for_batches():
    truth = np.full((3, 4, 4, 1), 0.5)
    recon = truth + np.array([0.1, 0.01, 0.0])[:, None, None, None]
    values = metrics.psnr(recon, truth)
    assert isinstance(values, np.ndarray) and values.shape == (3,)
    np.testing.assert_allclose(values, [20.0, 40.0, 100.0], atol=1e-9)
    np.testing.assert_allclose(metrics.mse(recon, truth), [0.01, 1e-4, 0.0], atol=1e-15)
    assert metrics.psnr(recon[:1], truth[:1]).shape == (1,)


def test_match_recovers_a_permutation():
    rng = np.random.default_rng(1)
    truth = rng.uniform(size=(6, 4, 4, 3))
    perm = rng.permutation(6)
    recon = truth[perm] + rng.normal(scale=0.02, size=truth.shape)
    order = metrics.match(recon, truth)
    np.testing.assert_array_equal(perm[order], np.arange(6))  # recon[order][i] is truth[i]
    np.testing.assert_array_equal(order, np.argsort(perm))


def test_score_batch_known_answer():
    rng = np.random.default_rng(2)
    truth = rng.uniform(0.3, 0.7, size=(4, 4, 4, 1))
    errors = np.array([0.2, 0.01, 0.2, 0.001])  # 13.98, 40, 13.98, 60 dB
    noisy = truth + errors[:, None, None, None]
    perm = np.array([2, 0, 3, 1])
    score = metrics.score_batch(noisy[perm], truth)
    expected = 10 * np.log10(1 / errors**2)
    np.testing.assert_allclose(score.psnr, expected, rtol=1e-9)
    assert score.mean_psnr == pytest.approx(expected.mean())
    assert score.rec == pytest.approx(0.5)  # two of four above 20 dB
    assert score.threshold == 20.0
    np.testing.assert_array_equal(score.order, np.argsort(perm))
    assert metrics.score_batch(noisy[perm], truth, threshold=10.0).rec == 1.0
    assert metrics.score_batch(noisy[perm], truth, threshold=50.0).rec == 0.25


def test_shape_mismatch_raises():
    a, b = np.zeros((2, 4, 4, 1)), np.zeros((3, 4, 4, 1))
    for fn in (metrics.psnr, metrics.mse, metrics.match, metrics.score_batch):
        with pytest.raises(ValueError, match="same shape"):
            fn(a, b)
    with pytest.raises(ValueError, match=r"\[4, 4, 1\] and \[4, 4, 3\]"):
        metrics.psnr(np.zeros((4, 4, 1)), np.zeros((4, 4, 3)))
