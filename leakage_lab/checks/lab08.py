"""Lab 08 (attacking FedAvg): MatchEpoch, matching reconstructions across epochs."""

from __future__ import annotations

from collections.abc import Callable

import jax
import numpy as np

from leakage_lab.checks._common import (
    _call,
    _close,
    _fail,
    _ok,
)
from leakage_lab.checks._guard import exercise

__all__ = ["match_epochs"]


def _epoch_copies(seed: int, num: int = 6, epochs: int = 4, noise: float = 0.05):
    """Truth images and E noisy copies of them, each epoch in its own random order."""
    k = jax.random.split(jax.random.key(110 + seed), epochs + 1)
    truth = np.asarray(jax.random.uniform(k[0], (num, 4, 4, 1)))
    copies = []
    for e in range(epochs):
        order = np.arange(num) if e == 0 else np.asarray(jax.random.permutation(k[e + 1], num))
        noisy = truth[order] + noise * np.asarray(jax.random.normal(k[e + 1], truth.shape))
        copies.append(noisy)
    return truth, np.stack(copies)


def _match_variants(copies: np.ndarray):
    """(average, hint) for the usual slips in MatchEpoch."""
    from scipy.optimize import linear_sum_assignment

    from leakage_lab import matching

    def reordered(pick):
        return np.mean([copies[0]] + [pick(copies[0], copies[e])
                                      for e in range(1, len(copies))], axis=0)

    def maximised(first, other):
        rows, cols = linear_sum_assignment(matching.psnr_table(first, other))
        return other[cols[np.argsort(rows)]]

    def inverse(first, other):
        rows, cols = linear_sum_assignment(-matching.psnr_table(first, other))
        return other[np.argsort(cols[np.argsort(rows)])]

    return [
        (copies.mean(axis=0), "the epochs were averaged without matching: epoch e holds "
                              "the images in ITS OWN order, so reorder every epoch to the "
                              "first epoch's order before averaging"),
        (copies[0], "that is the first epoch alone: average the matched images of all E "
                    "epochs"),
        (reordered(maximised), "the assignment MAXIMISED the cost: linear_sum_assignment "
                               "minimises, and PSNR is a similarity, so pass −PSNR"),
        (reordered(inverse), "the permutation was applied the wrong way round: with "
                             "rows, cols = linear_sum_assignment(−M) for M[i, j] = "
                             "PSNR(first[i], other[j]), the image matched to first[i] "
                             "is other[cols[i]]"),
    ]


@exercise(
    forbidden=(
        "leakage_lab.matching.match_epochs",
        "leakage_lab.matching.epoch_orders",
        "leakage_lab.metrics.match",
    ),
    allowed=("leakage_lab.matching.psnr_table",),
)
def match_epochs(fn: Callable) -> None:
    """Checks ``fn(epoch_images)``: MatchEpoch (lab 08).

    ``epoch_images`` ``[E, N, H, W, C]`` holds one reconstruction of the client's N
    images per epoch, each epoch in its own order. ``fn`` should put every epoch into the
    first epoch's order by the linear sum assignment that maximises the total PSNR
    (``scipy.optimize.linear_sum_assignment``; ``ll.matching.psnr_table`` gives the
    PSNR of all pairs) and return the average over the epochs, ``[N, H, W, C]``, equal to
    ``ll.matching.match_epochs`` (Dimitrov et al., TMLR 2022, Algorithm 3).

    Raises:
        CheckFailed: with a hint (no matching, a maximised cost, the permutation applied
            the wrong way round, epochs not averaged...).
    """
    from leakage_lab import matching

    name = getattr(fn, "__name__", "your function")
    for case in range(2):
        truth, copies = _epoch_copies(case, num=6 + 2 * case, epochs=4 + case)
        want = matching.match_epochs(copies)
        got = _call(fn, copies.copy(), what=f"{name}(epoch_images)")
        if got is None:
            _fail(f"{name} returned None: did you forget the `return` statement?")
        got = np.asarray(got, np.float64)
        if got.shape == copies.shape:
            _fail(f"{name} returned all E epochs ({list(got.shape)}), expected one image per "
                  f"client image, {list(want.shape)}: average the matched epochs (axis 0).")
        if got.shape != want.shape:
            _fail(f"{name} returned shape {list(got.shape)}, expected {list(want.shape)} "
                  "(one averaged image per client image, in the first epoch's order).")
        if _close(got, want, rtol=1e-4, atol=1e-5):
            continue
        if case == 1:
            _fail(f"{name} is right for one set of epochs but not for another: is N or E "
                  "hard-coded?")
        for value, hint in _match_variants(copies):
            if _close(got, value, rtol=1e-4, atol=1e-5):
                _fail(f"{name} does not return the matched average: {hint}.")
        errors = np.sqrt(np.mean((got - truth) ** 2)), np.sqrt(np.mean((want - truth) ** 2))
        _fail(f"{name} does not match ll.matching.match_epochs (RMS error against the truth "
              f"{errors[0]:.3f}, where matching and averaging reaches {errors[1]:.3f}): for "
              "every epoch e > 1, solve the assignment on M[i, j] = PSNR(epoch_1[i], "
              "epoch_e[j]), reorder epoch e, then average over the epochs.")
    _ok(f"{name}: the same matched average as ll.matching.match_epochs on two sets of noisy, "
        "shuffled epochs.")
