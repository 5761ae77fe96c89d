"""Data sets for the labs: three small bundled sets, real-format loaders and client splits.

Three real data sets ship inside the package (:mod:`~leakage_lab.data.bundled`) and
load offline: ``"digits"`` (MNIST, 28x28x1), ``"faces"`` (LFW, 25x25x1) and
``"tiny-images"`` (32x32 photo crops). ``"femnist-like"`` (and ``"femnist-like-62"``,
relabelled from 62 classes) is a white-background stand-in for FEMNIST built from the
digits at load time (:mod:`~leakage_lab.data.standin`). Larger sets are read from their
official file formats in a local folder ``root`` (:mod:`~leakage_lab.data.real`): ``"cifar10"``,
``"cifar100"``, ``"mnist"``, ``"emnist"``, ``"femnist"``.

The package, one concept per module:

* :mod:`~leakage_lab.data.dataset`: the :class:`Dataset` container and :class:`DataError`;
* :mod:`~leakage_lab.data.bundled`: the bundled sets (files in ``data/files/``, with
  their sources and licences in ``files/README.md``);
* :mod:`~leakage_lab.data.standin`: the white-background FEMNIST-like stand-in;
* :mod:`~leakage_lab.data.formats`: the CIFAR binary, IDX and LEAF JSON decoders;
* :mod:`~leakage_lab.data.limits`: byte caps and streamed reading for untrusted files;
* :mod:`~leakage_lab.data.download`: HTTPS downloads with SHA-256, size cap and deadline;
* :mod:`~leakage_lab.data.real`: finding and loading the real sets' files in ``root``;
* :mod:`~leakage_lab.data.partition`: client splits (IID, Dirichlet, writers) and
  train/test splits, each driven by an explicit PRNG key.

Every loader returns a :class:`Dataset` with float32 images ``[N, H, W, C]`` in
``[0, 1]`` and int32 labels; ``ds.normalization`` is its declared input normalisation
(:class:`Normalization`, the per-channel mean and std of its images):

    >>> from leakage_lab import data
    >>> ds = data.load("digits")
    >>> ds.images.shape, ds.num_classes
    ((5000, 28, 28, 1), 10)
    >>> import jax
    >>> clients = data.split_dirichlet(
    ...     ds, num_clients=4, samples_per_client=64, alpha=0.5, key=jax.random.key(0))
    >>> [len(c) for c in clients]
    [64, 64, 64, 64]

Problems with files (missing, truncated, corrupt, crafted, oversized, wrong checksum)
raise :class:`DataError`, a ``ValueError`` whose message names the file and says what
was expected.
"""

from __future__ import annotations

import os

from leakage_lab.data.bundled import BUNDLED, load_bundled
from leakage_lab.data.dataset import DataError, Dataset, Normalization, normalization, subset
from leakage_lab.data.download import DOWNLOADS, SIZES, fetch
from leakage_lab.data.formats import parse_cifar, parse_idx
from leakage_lab.data.partition import (
    dirichlet_indices,
    iid_indices,
    split_dirichlet,
    split_iid,
    split_writers,
    train_test_split,
)
from leakage_lab.data.real import (
    MANUAL_SOURCES,
    REAL,
    load_cifar,
    load_emnist,
    load_femnist,
    load_mnist,
)
from leakage_lab.data.standin import STANDINS, femnist_like

__all__ = [
    "BUNDLED",
    "DOWNLOADS",
    "REAL",
    "SIZES",
    "DataError",
    "Dataset",
    "Normalization",
    "STANDINS",
    "dirichlet_indices",
    "femnist_like",
    "fetch",
    "iid_indices",
    "load",
    "normalization",
    "parse_cifar",
    "parse_idx",
    "split_dirichlet",
    "split_iid",
    "split_writers",
    "subset",
    "train_test_split",
]


def _canonical(name: str) -> str:
    key = name.strip().lower().replace("_", "-")
    aliases = {"tinyimages": "tiny-images", "cifar-10": "cifar10", "cifar-100": "cifar100"}
    return aliases.get(key, key)


def load(
    name: str,
    *,
    root: str | os.PathLike | None = None,
    download: bool = False,
    split: str = "train",
    subset: str = "balanced",
    invert: bool = False,
) -> Dataset:
    """Load a data set by name.

    Args:
        name: A bundled set (``"digits"``, ``"faces"``, ``"tiny-images"``), the
            white-background stand-in ``"femnist-like"`` (10 classes) or
            ``"femnist-like-62"`` (relabelled from FEMNIST's 62 classes), or a real
            set read from ``root`` (``"cifar10"``, ``"cifar100"``, ``"mnist"``,
            ``"emnist"``, ``"femnist"``).
        root: Folder holding the real set's files (ignored for bundled sets).
        download: Fetch missing CIFAR/MNIST files into ``root`` over HTTPS, with
            SHA-256 verification. EMNIST and FEMNIST must be placed by hand.
        split: ``"train"`` or ``"test"``. Bundled sets only have ``"train"``
            (use :func:`train_test_split`). For FEMNIST, ``root/<split>/*.json`` is
            read when that folder exists, otherwise all JSON in ``root/all_data`` or
            ``root`` counts as ``"train"``.
        subset: EMNIST subset: ``"balanced"`` (47 classes), ``"byclass"`` (62),
            ``"bymerge"``, ``"digits"``, ``"letters"`` (labels shifted to 0..25) or
            ``"mnist"``.
        invert: FEMNIST only. LEAF stores white background (1.0) with dark ink, unlike
            MNIST; ``invert=True`` returns ``1 - x`` (ink bright on black).

    Returns:
        A :class:`Dataset` with float32 images ``[N, H, W, C]`` in ``[0, 1]``.

    Raises:
        DataError: Unknown name or split; missing, truncated, corrupt or oversized
            files; failed download or checksum mismatch.
    """
    key = _canonical(name)
    if split not in ("train", "test"):
        raise DataError(f"unknown split {split!r}; expected 'train' or 'test'")
    if key in BUNDLED:
        if split != "train":
            raise DataError(
                f"bundled data set {key!r} has a single split ('train'); "
                "use train_test_split() to hold out a test set"
            )
        return load_bundled(key)
    if key in STANDINS:
        if split != "train":
            raise DataError(
                f"the stand-in {key!r} has a single split ('train'); "
                "use train_test_split() to hold out a test set"
            )
        return femnist_like(num_classes=STANDINS[key])
    if key in ("cifar10", "cifar100"):
        return load_cifar(key, root, split, download)
    if key == "mnist":
        return load_mnist(root, split, download)
    if key in ("emnist", "femnist"):
        if download:
            raise DataError(
                f"{key} cannot be downloaded automatically; get it from {MANUAL_SOURCES[key]}"
            )
        if key == "emnist":
            return load_emnist(root, split, subset)
        return load_femnist(root, split, invert)
    raise DataError(
        f"unknown data set {name!r}; known: bundled {', '.join(BUNDLED)}; "
        f"stand-ins {', '.join(STANDINS)}; "
        f"from files {', '.join(REAL)}"
    )
