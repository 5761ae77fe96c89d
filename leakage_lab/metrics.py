"""Reconstruction quality: PSNR, SSIM, MSE, batch scores after optimal matching, and the
update-free guesses every score is shown beside.

Images are compared in [0, 1]; reconstructions are clipped to that range first, as a
viewer would see them.

An attack leaks only what it recovers beyond what the attacker could guess *without* the
update. :func:`guesses` gives those guesses (a blank image, the public pixel mean, each
label's public mean image) and :func:`baseline_scores` scores them, and optionally the
attack's reconstructions, in one table.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import NamedTuple

import numpy as np
from scipy.optimize import linear_sum_assignment

__all__ = [
    "BatchScore",
    "GUESSES",
    "Score",
    "ScoreTable",
    "baseline_scores",
    "blank_guess",
    "guesses",
    "label_mean_guess",
    "match",
    "mse",
    "pixel_mean_guess",
    "psnr",
    "psnr_table",
    "score_batch",
    "ssim",
]


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


# --------------------------------------------------------------------------------------
# SSIM (from dm-pix, the JAX image library)
# --------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=8)
def _ssim_fn(filter_size: int):
    import dm_pix
    import jax

    return jax.jit(lambda a, b: dm_pix.ssim(a, b, max_val=1.0, filter_size=filter_size))


def ssim(recon, truth, *, filter_size: int = 11):
    """Structural similarity (Wang et al., IEEE TIP 2004) per image, computed by ``dm_pix.ssim``.

    With local means ``mu``, variances ``sigma^2`` and covariance ``sigma_xy`` taken under an
    11 x 11 Gaussian window (sigma 1.5), and ``c1 = (0.01)^2``, ``c2 = (0.03)^2`` for images
    in [0, 1]::

        SSIM(x, y) = mean over windows of
                        (2 mu_x mu_y + c1)(2 sigma_xy + c2)
                     ----------------------------------------------------
                     (mu_x^2 + mu_y^2 + c1)(sigma_x^2 + sigma_y^2 + c2)

    1 for identical images, about 0 for unrelated ones (it can dip below 0). Unlike PSNR it
    rewards getting the *structure* (edges, strokes) right, so it agrees better with the eye
    when a reconstruction is legible but offset in brightness. The reconstruction is clipped
    to [0, 1] first, as for :func:`psnr`; images smaller than the window use a window as
    large as the image. A float for one image ``[H, W, C]``, an array ``[N]`` for a batch.

        >>> import numpy as np
        >>> x = np.random.default_rng(0).uniform(size=(16, 16, 1))
        >>> round(ssim(x, x), 6)
        1.0
    """
    recon, truth = _pair(recon, truth)
    if recon.ndim not in (3, 4):
        raise ValueError(
            f"ssim expects images [H, W, C] or [N, H, W, C], got shape {list(recon.shape)}.")
    size = int(min(filter_size, recon.shape[-3], recon.shape[-2]))
    value = np.asarray(_ssim_fn(size)(recon.astype(np.float32), truth.astype(np.float32)),
                       np.float64)
    return float(value) if value.ndim == 0 else value


# --------------------------------------------------------------------------------------
# The update-free guesses
# --------------------------------------------------------------------------------------

GUESSES = ("blank", "pixel mean", "label mean")
"""The names of the update-free guesses, in the order :func:`guesses` returns them."""


def _public(public_images, public_labels=None):
    images = np.asarray(public_images, np.float64)
    if images.ndim != 4 or len(images) == 0:
        raise ValueError(
            f"public_images must be a non-empty batch [N, H, W, C], got shape "
            f"{list(images.shape)}.")
    if public_labels is None:
        return images, None
    labels = np.asarray(public_labels).reshape(-1)
    if len(labels) != len(images):
        raise ValueError(
            f"public_labels must have one label per public image: {len(images)} images, "
            f"{len(labels)} labels.")
    return images, labels.astype(np.int64)


def _target_shape(truth, public):
    truth = np.asarray(truth)
    if truth.ndim == 3:
        truth = truth[None]
    if truth.ndim != 4 or truth.shape[1:] != public.shape[1:]:
        raise ValueError(
            f"truth must be images [N, H, W, C] shaped like the public images "
            f"{list(public.shape[1:])}, "
            f"got shape {list(np.asarray(truth).shape)}.")
    return truth.shape


def blank_guess(truth, public_images):
    """The blank image: every pixel the public data's most common value (per channel).

    ``b_c = argmax_v #{public pixels of channel c equal to v}`` (values rounded to 1/255), so
    0 (black) for the bundled digits and 1 (white) for a white-background set. One copy per
    image of ``truth``, shape ``[N, H, W, C]``.
    """
    public, _ = _public(public_images)
    n, h, w, c = _target_shape(truth, public)
    levels = np.clip(np.rint(public * 255.0), 0, 255).astype(np.int64).reshape(-1, c)
    mode = np.array([np.bincount(levels[:, k], minlength=256).argmax() for k in range(c)]) / 255.0
    return np.broadcast_to(mode, (n, h, w, c)).astype(np.float32)


def pixel_mean_guess(truth, public_images):
    """The public pixel mean ``x_bar = (1/M) sum_j x_j`` over all public images, one copy per
    image of ``truth`` (``[N, H, W, C]``): the best guess, in mean squared error, with no label."""
    public, _ = _public(public_images)
    n = _target_shape(truth, public)[0]
    return np.broadcast_to(public.mean(0), (n,) + public.shape[1:]).astype(np.float32)


def label_mean_guess(truth, labels, public_images, public_labels):
    """Each image's label mean: ``x_bar_y = mean of the public images with label y``.

    ``labels`` are the labels the attacker has for the targets (recovered from the update,
    e.g. by ``ll.labels.idlg`` or Geng et al.'s counts, or simply known). A label with no
    public image falls back to the pixel mean. Shape ``[N, H, W, C]``, aligned with ``truth``.
    """
    public, plabels = _public(public_images, public_labels)
    n = _target_shape(truth, public)[0]
    labels = np.asarray(labels).reshape(-1).astype(np.int64)
    if len(labels) != n:
        raise ValueError(f"labels must have one label per truth image: {n} images, "
                         f"{len(labels)} labels.")
    overall = public.mean(0)
    out = np.empty((n,) + public.shape[1:], np.float32)
    for i, y in enumerate(labels):
        members = public[plabels == y]
        out[i] = members.mean(0) if len(members) else overall
    return out


def guesses(truth, labels, public_images, public_labels) -> dict[str, np.ndarray]:
    """The attacker's update-free guesses for each image of ``truth``.

    Returns ``{"blank": ..., "pixel mean": ..., "label mean": ...}`` (the order of
    :data:`GUESSES`), each ``[N, H, W, C]`` aligned with ``truth``: see :func:`blank_guess`,
    :func:`pixel_mean_guess` and :func:`label_mean_guess`. ``truth`` gives only the number
    and shape of the images; ``public_images``/``public_labels`` are data the attacker could
    have, e.g. a slice of the data set disjoint from the targets.

        >>> import numpy as np
        >>> public = np.array([0.0, 0.0, 0.2, 0.6]).reshape(4, 1, 1, 1)
        >>> g = guesses(np.zeros((2, 1, 1, 1)), [1, 0], public, [0, 0, 1, 1])
        >>> {k: v.ravel().astype(float).round(2).tolist() for k, v in g.items()}
        {'blank': [0.0, 0.0], 'pixel mean': [0.2, 0.2], 'label mean': [0.4, 0.0]}
    """
    return {
        "blank": blank_guess(truth, public_images),
        "pixel mean": pixel_mean_guess(truth, public_images),
        "label mean": label_mean_guess(truth, labels, public_images, public_labels),
    }


class Score(NamedTuple):
    """One row of a :class:`ScoreTable`.

    Attributes:
        name: the guess or attack.
        psnr: mean PSNR in dB over the images.
        ssim: mean SSIM.
        rec: share of images above the PSNR threshold (Rec%, as a fraction).
        psnrs: PSNR of each image, ``[N]``.
        ssims: SSIM of each image, ``[N]``.
    """

    name: str
    psnr: float
    ssim: float
    rec: float
    psnrs: np.ndarray
    ssims: np.ndarray


class ScoreTable:
    """Mean PSNR, SSIM and Rec% per guess or attack; prints as a small text table.

    Index it by name (``table["label mean"].psnr``), iterate over its :class:`Score` rows,
    or call :meth:`best_guess` for the strongest update-free guess.
    """

    def __init__(self, rows, threshold: float):
        self.rows = list(rows)
        self.threshold = float(threshold)

    def __getitem__(self, name: str) -> Score:
        for row in self.rows:
            if row.name == name:
                return row
        raise KeyError(f"no row {name!r}; rows: {[r.name for r in self.rows]}")

    def __iter__(self):
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def names(self) -> list[str]:
        return [r.name for r in self.rows]

    def best_guess(self) -> Score:
        """The update-free guess with the highest mean PSNR."""
        return max((r for r in self.rows if r.name in GUESSES), key=lambda r: r.psnr)

    def __str__(self) -> str:
        width = max(12, *(len(r.name) for r in self.rows))
        head = f"{'':<{width}}  {'PSNR dB':>8}  {'SSIM':>6}  {f'Rec@{self.threshold:g}dB':>10}"
        lines = [head]
        for r in self.rows:
            tag = "  (no update)" if r.name in GUESSES else ""
            lines.append(f"{r.name:<{width}}  {r.psnr:>8.1f}  {r.ssim:>6.3f}  "
                         f"{100 * r.rec:>9.0f}%{tag}")
        return "\n".join(lines)

    __repr__ = __str__


def _row(name, recon, truth, threshold) -> Score:
    p = np.atleast_1d(psnr(recon, truth))
    q = np.atleast_1d(ssim(recon, truth))
    return Score(name, float(p.mean()), float(q.mean()), float(np.mean(p > threshold)), p, q)


def baseline_scores(truth, labels, public_images, public_labels, *,
                    attacks: Mapping[str, object] | None = None, threshold: float = 20.0,
                    match_attacks: bool = True) -> ScoreTable:
    """Scores the update-free guesses, and optionally attacks, against ``truth`` in one table.

    For each guess ``g`` of :func:`guesses`: mean PSNR, mean SSIM and Rec% (share of images
    with PSNR > ``threshold``). ``attacks`` maps a name to reconstructions ``[N, H, W, C]``
    (or one image ``[H, W, C]``); they are scored the same way, after the optimal matching of
    :func:`score_batch` when ``match_attacks`` (a batch attack returns images in any order).
    An attack that does not beat the best guess leaks nothing the attacker did not know.

        >>> import numpy as np
        >>> public = np.array([0.0, 0.0, 0.2, 0.6]).reshape(4, 1, 1, 1) * np.ones((1, 4, 4, 1))
        >>> truth = np.full((1, 4, 4, 1), 0.4)
        >>> table = baseline_scores(truth, [1], public, [0, 0, 1, 1], attacks={"attack": truth})
        >>> table.names(), round(table["label mean"].psnr), round(table["attack"].psnr)
        (['blank', 'pixel mean', 'label mean', 'attack'], 100, 100)
    """
    truth4 = np.asarray(truth, np.float32)
    if truth4.ndim == 3:
        truth4 = truth4[None]
    rows = [_row(name, g, truth4, threshold)
            for name, g in guesses(truth4, labels, public_images, public_labels).items()]
    for name, recon in (attacks or {}).items():
        recon = np.asarray(recon, np.float32)
        if recon.ndim == 3:
            recon = recon[None]
        if match_attacks and len(recon) > 1:
            recon = recon[match(recon, truth4)]
        rows.append(_row(name, recon, truth4, threshold))
    return ScoreTable(rows, threshold)
