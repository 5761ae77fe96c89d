"""``"femnist-like"``: a white-background, FEMNIST-like stand-in built from the bundled digits.

FEMNIST (LEAF's handwritten characters) stores dark ink on a white background, and its
characters are thin strokes in a large frame: the released code of Dimitrov et al. (TMLR
2022) normalises it with mean 0.964 and std 0.158, so only about 3.6 % of a FEMNIST image
is ink. The bundled MNIST digits are bright ink on black with 13 % ink. The stand-in:

1. shrinks each 28x28 digit to 15x15 (linear, antialiased) and centres it in an empty
   28x28 frame (thinner strokes, more background, as FEMNIST's characters);
2. inverts the polarity, ``x -> 1 - x`` (dark ink on white, as LEAF stores FEMNIST);
3. rounds to 1/255 (as the other bundled sets, stored as uint8).

Its pixel mean is 0.962 and std 0.151 (FEMNIST: 0.964, 0.158). ``num_classes=62``
relabels every image with a class drawn uniformly from FEMNIST's 62 (``0-9A-Za-z``) with
a fixed seed: the images stay digits, but 50 images then hold about 34 distinct labels
(``62 (1 - (61/62)^50)``), closer to a FEMNIST writer's many classes than the digits'
10. The labels no longer say anything about the image.

It stands in for FEMNIST's *pixel statistics* (white background, ink density, a
background-dominated PSNR) and, with 62 classes, for its label diversity. It does not stand
in for FEMNIST's characters (letters, writers' styles, 128x128 scans downsampled), for
its writer split (there are no writers here), or for a trained network's use of labels.

    >>> from leakage_lab import data
    >>> ds = data.load("femnist-like")
    >>> ds.images.shape, ds.num_classes, round(float(ds.images.mean()), 3)
    ((5000, 28, 28, 1), 10, 0.962)
    >>> data.load("femnist-like-62").num_classes
    62
"""

from __future__ import annotations

import functools

import numpy as np

from leakage_lab.data.bundled import load_bundled
from leakage_lab.data.dataset import DataError, Dataset, make_dataset

__all__ = ["FEMNIST_CLASSES", "STANDINS", "femnist_like"]

FEMNIST_CLASSES = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
GLYPH = 15          # the digit's side after shrinking, in pixels
RELABEL_SEED = 62   # the fixed seed of the 62-class relabelling
STANDINS = {"femnist-like": 10, "femnist-like-62": 62}


@functools.lru_cache(maxsize=1)
def _images_uint8() -> np.ndarray:
    import jax  # only here: building the stand-in resizes with jax.image

    digits = load_bundled("digits").images
    n, h, w, c = digits.shape
    small = np.asarray(jax.image.resize(digits, (n, GLYPH, GLYPH, c), "linear",
                                        antialias=True), np.float64)
    frame = np.zeros((n, h, w, c))
    top, left = (h - GLYPH) // 2, (w - GLYPH) // 2
    frame[:, top:top + GLYPH, left:left + GLYPH] = np.clip(small, 0.0, 1.0)
    out = np.rint((1.0 - frame) * 255.0).astype(np.uint8)
    out.setflags(write=False)
    return out


def femnist_like(*, num_classes: int = 10, seed: int = RELABEL_SEED) -> Dataset:
    """The white-background stand-in (see the module docstring), 5,000 x 28x28x1.

    Args:
        num_classes: 10 (the digits' own labels) or 62 (every image relabelled with a
            class drawn uniformly from ``0-9A-Za-z`` by ``np.random.default_rng(seed)``).
        seed: the relabelling's seed (only with 62 classes); the default is fixed, so
            every call gives the same labels.

    Returns:
        A :class:`Dataset` named ``"femnist-like"`` or ``"femnist-like-62"``, images in
        ``[0, 1]`` with white (1.0) background.
    """
    if num_classes not in (10, 62):
        raise DataError(f"femnist-like: num_classes must be 10 (the digits' labels) or 62 "
                        f"(FEMNIST's classes, relabelled at random), got {num_classes!r}")
    digits = load_bundled("digits")
    images = _images_uint8().copy()
    if num_classes == 10:
        return make_dataset(images, digits.labels, "femnist-like", digits.class_names)
    labels = np.random.default_rng(seed).integers(0, 62, size=len(digits))
    return make_dataset(images, labels, "femnist-like-62", list(FEMNIST_CLASSES))
