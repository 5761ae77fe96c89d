"""Reconstruction quality: PSNR, MSE, and batch scores after optimal matching.

Images are compared in [0, 1]; reconstructions are clipped to that range first, as a
viewer would see them.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy.optimize import linear_sum_assignment

__all__ = ["BatchScore", "match", "mse", "psnr", "psnr_table", "score_batch"]


def _pair(recon, truth):
    recon = np.clip(np.asarray(recon, np.float64), 0.0, 1.0)
    truth = np.asarray(truth, np.float64)
    if recon.shape != truth.shape:
        raise ValueError(
            f"Reconstruction and truth must have the same shape, got {list(recon.shape)} "
            f"and {list(truth.shape)}."
        )
    return recon, truth


def mse(recon, truth):
    """Mean squared error per image: a float for one image [H, W, C], an array for [N, H, W, C]."""
    recon, truth = _pair(recon, truth)
    axes = tuple(range(recon.ndim - 3, recon.ndim)) if recon.ndim >= 3 else None
    return np.mean((recon - truth) ** 2, axis=axes)


def psnr(recon, truth, *, max_value: float = 1.0, cap: float = 100.0):
    """Peak signal-to-noise ratio ``10 log10(max^2 / MSE)`` in dB, per image.

    A float for one image ``[H, W, C]``, an array ``[N]`` for a batch. An exact copy
    would be infinite; it is capped at ``cap`` dB.
    """
    err = mse(recon, truth)
    with np.errstate(divide="ignore"):
        value = 10.0 * np.log10(max_value**2 / np.asarray(err))
    value = np.minimum(value, cap)
    return float(value) if np.ndim(value) == 0 else value


def psnr_table(a, b, *, cap: float = 100.0) -> np.ndarray:
    """``table[i, j] = PSNR(a[i], b[j])`` in dB for two batches ``[N, ...]``, values in [0, 1].

    The images are clipped to [0, 1] first (as a viewer sees them); identical images get
    ``cap`` dB instead of infinity. The one PSNR pairing: :func:`match` and MatchEpoch
    (``matching.epoch_orders``) both use it.

        >>> import numpy as np
        >>> psnr_table(np.zeros((1, 2)), np.array([[0.0, 0.0], [0.1, 0.1]])).round(1).tolist()
        [[100.0, 20.0]]
    """
    a = np.clip(np.asarray(a, np.float64), 0.0, 1.0).reshape(len(a), -1)
    b = np.clip(np.asarray(b, np.float64), 0.0, 1.0).reshape(len(b), -1)
    # ||a_i - b_j||² = ||a_i||² + ||b_j||² - 2 <a_i, b_j>, for all pairs at once.
    sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    err = np.maximum(sq, 0.0) / a.shape[1]
    with np.errstate(divide="ignore"):
        return np.minimum(-10.0 * np.log10(err), cap)


def match(recon, truth) -> np.ndarray:
    """Order of ``recon`` that best matches ``truth``: the assignment maximising total PSNR.

    Returns ``order`` with ``recon[order][i]`` paired to ``truth[i]``; solved by
    ``scipy.optimize.linear_sum_assignment`` on the pairwise PSNR matrix
    (:func:`psnr_table`, reconstructions clipped to [0, 1]).
    """
    recon, truth = _pair(recon, truth)
    rows, cols = linear_sum_assignment(-psnr_table(truth, recon))
    return cols[np.argsort(rows)]


class BatchScore(NamedTuple):
    """Quality of a batch reconstruction after matching.

    Attributes:
        psnr: PSNR of each truth image with its matched reconstruction, ``[N]``.
        mean_psnr: their mean.
        rec: share of images with PSNR above ``threshold`` (Rec%, as a fraction).
        order: the matching, ``recon[order][i]`` pairs with ``truth[i]``.
        threshold: the PSNR threshold in dB.
    """

    psnr: np.ndarray
    mean_psnr: float
    rec: float
    order: np.ndarray
    threshold: float


def score_batch(recon, truth, *, threshold: float = 20.0) -> BatchScore:
    """Matches ``recon`` to ``truth`` and reports mean PSNR and Rec% (PSNR > threshold)."""
    recon = np.asarray(recon)
    order = match(recon, truth)
    values = np.atleast_1d(psnr(recon[order], truth))
    return BatchScore(values, float(values.mean()), float(np.mean(values > threshold)), order,
                      threshold)
