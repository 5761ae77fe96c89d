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


# --- SSIM (dm-pix) and the update-free guesses -----------------------------------------


def test_doctests():
    import doctest

    assert doctest.testmod(metrics).failed == 0


def test_ssim_identical_is_one_and_shapes():
    rng = np.random.default_rng(3)
    truth = rng.uniform(size=(3, 28, 28, 1))
    np.testing.assert_allclose(metrics.ssim(truth, truth), 1.0, atol=1e-5)
    one = metrics.ssim(truth[0], truth[0])
    assert isinstance(one, float) and one == pytest.approx(1.0, abs=1e-5)
    noisy = np.clip(truth + rng.normal(scale=0.3, size=truth.shape), 0, 1)
    values = metrics.ssim(noisy, truth)
    assert values.shape == (3,) and np.all(values < 0.9)
    # Clipped like psnr: 1.5 is shown as 1.0.
    assert metrics.ssim(np.ones((8, 8, 1)) * 1.5, np.ones((8, 8, 1))) == pytest.approx(1.0)
    # Images smaller than the 11 x 11 window still work (the window shrinks to fit).
    assert metrics.ssim(truth[0, :6, :6], truth[0, :6, :6]) == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ValueError, match="same shape"):
        metrics.ssim(truth, truth[:2])


def test_guesses_on_a_toy_set_are_the_right_means():
    # Public set: two classes of 2 x 2 images; most pixels are 0.
    public = np.zeros((4, 2, 2, 1))
    public[2, 0, 0] = 1.0
    public[3, 1, 1] = 1.0
    public_labels = [0, 0, 1, 1]
    truth = np.zeros((3, 2, 2, 1))
    g = metrics.guesses(truth, [1, 0, 7], public, public_labels)
    assert list(g) == list(metrics.GUESSES)
    np.testing.assert_array_equal(g["blank"], 0.0)
    np.testing.assert_allclose(g["pixel mean"], np.broadcast_to(public.mean(0), (3, 2, 2, 1)))
    np.testing.assert_allclose(g["label mean"][0], public[2:].mean(0))
    np.testing.assert_allclose(g["label mean"][1], public[:2].mean(0))
    np.testing.assert_allclose(g["label mean"][2], public.mean(0))  # unseen label: pixel mean
    # A white-background set has a white blank.
    assert np.all(metrics.blank_guess(truth, 1.0 - public) == 1.0)
    with pytest.raises(ValueError, match="one label per truth image"):
        metrics.guesses(truth, [0], public, public_labels)
    with pytest.raises(ValueError, match="one label per public image"):
        metrics.guesses(truth, [0, 0, 0], public, [0])


def test_label_mean_beats_pixel_mean_when_classes_differ():
    rng = np.random.default_rng(4)
    # Class 0 lights the left half, class 1 the right half, plus a little noise.
    def sample(label, n):
        x = np.zeros((n, 8, 8, 1))
        x[:, :, :4] = 1.0 - label
        x[:, :, 4:] = label
        return np.clip(x + rng.normal(scale=0.05, size=x.shape), 0, 1)

    public = np.concatenate([sample(0, 20), sample(1, 20)])
    public_labels = np.repeat([0, 1], 20)
    truth = np.concatenate([sample(0, 3), sample(1, 3)])
    labels = np.repeat([0, 1], 3)
    table = metrics.baseline_scores(truth, labels, public, public_labels,
                                    attacks={"attack": truth[::-1]})
    assert table.names() == ["blank", "pixel mean", "label mean", "attack"]
    assert table["label mean"].psnr > table["pixel mean"].psnr + 10
    assert table["label mean"].ssim > table["pixel mean"].ssim
    assert table["label mean"].rec == 1.0 and table["pixel mean"].rec == 0.0
    assert table.best_guess().name == "label mean"
    # The attack's images come back in reverse order; matching pairs them up again.
    assert table["attack"].psnr == 100.0
    assert table["attack"].psnrs.shape == (6,)
    text = str(table)
    assert "label mean" in text and "Rec@20dB" in text and "(no update)" in text
