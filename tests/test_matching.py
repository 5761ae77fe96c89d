"""MatchEpoch (Dimitrov et al., TMLR 2022, Appendix A): oracle, property and error tests."""

import itertools

import numpy as np
import pytest

from leakage_lab import matching, metrics


def _images(rng, n, shape=(6, 6, 1)):
    return rng.uniform(0.0, 1.0, (n, *shape)).astype(np.float32)


def test_recovers_known_permutations_and_averages_the_noise_away():
    rng = np.random.default_rng(0)
    truth = _images(rng, 12)
    perms = [np.arange(12)] + [rng.permutation(12) for _ in range(4)]
    noise = [0.05 * rng.standard_normal(truth.shape).astype(np.float32) for _ in perms]
    epochs = np.stack([truth[p] + z for p, z in zip(perms, noise, strict=True)])
    orders = matching.epoch_orders(epochs)
    for e, p in enumerate(perms):
        # epoch e holds truth[p]; putting it in truth's order takes the inverse of p.
        np.testing.assert_array_equal(orders[e], np.argsort(p))
    averaged = matching.match_epochs(epochs)
    assert averaged.shape == truth.shape
    # Five noisy copies averaged: the error falls by about sqrt(5) (PSNR +7 dB).
    gain = metrics.psnr(averaged, truth).mean() - metrics.psnr(epochs[0], truth).mean()
    assert gain > 5.0


def test_orders_maximise_the_total_psnr_brute_force():
    rng = np.random.default_rng(1)
    first, second = _images(rng, 5), _images(rng, 5)
    table = matching.psnr_table(first, second)
    best = max(itertools.permutations(range(5)),
               key=lambda p: sum(table[i, p[i]] for i in range(5)))
    orders = matching.epoch_orders(np.stack([first, second]))
    assert sum(table[i, orders[1][i]] for i in range(5)) == pytest.approx(
        sum(table[i, best[i]] for i in range(5)))


def test_psnr_table_agrees_with_metrics_psnr():
    rng = np.random.default_rng(2)
    a, b = _images(rng, 3), _images(rng, 4)
    table = matching.psnr_table(a, b)
    assert table.shape == (3, 4)
    for i in range(3):
        for j in range(4):
            assert table[i, j] == pytest.approx(metrics.psnr(b[j], a[i]), abs=1e-6)
    assert matching.psnr_table(a, a)[0, 0] == 100.0   # identical images: the cap


def test_one_epoch_and_a_list_of_epochs():
    rng = np.random.default_rng(3)
    x = _images(rng, 4)
    np.testing.assert_allclose(matching.match_epochs(x[None]), x)
    np.testing.assert_allclose(matching.match_epochs([x, x[::-1]]), x, atol=1e-7)


@pytest.mark.parametrize("bad", [
    np.zeros((2, 3, 4, 4)),                     # [E, N, H, W]: no channel axis
    [np.zeros((3, 4, 4, 1)), np.zeros((2, 4, 4, 1))],   # epochs of different sizes
])
def test_rejects_inconsistent_epochs(bad):
    with pytest.raises(ValueError, match=r"\[E, N, H, W, C\]"):
        matching.match_epochs(bad)
