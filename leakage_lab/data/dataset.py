"""The in-memory container every loader returns, and the error every loader raises.

A :class:`Dataset` holds float32 images ``[N, H, W, C]`` in ``[0, 1]`` and int32 labels:

    >>> import numpy as np
    >>> from leakage_lab.data.dataset import make_dataset
    >>> ds = make_dataset(np.zeros((3, 2, 2, 1), np.uint8), [0, 1, 1], "toy", ["a", "b"])
    >>> len(ds), ds.num_classes, ds.subset([0, 2]).labels.tolist()
    (3, 2, [0, 1])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

__all__ = ["DataError", "Dataset", "Normalization", "make_dataset", "normalization", "subset"]


class DataError(ValueError):
    """A data set could not be found, read, verified or split as asked."""


class Normalization(NamedTuple):
    """A per-channel input normalisation ``z = (x - mean) / std``, as a data pipeline feeds
    a network.

        >>> n = Normalization((0.5,), (0.25,))
        >>> float(n.normalize(np.ones((1, 1, 1, 1)))[0, 0, 0, 0]), n.channels
        (2.0, 1)
    """

    mean: tuple[float, ...]
    std: tuple[float, ...]

    @property
    def channels(self) -> int:
        return len(self.mean)

    def normalize(self, images):
        """``(x - mean) / std`` over the last (channel) axis."""
        return (images - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)

    def denormalize(self, z):
        """``z * std + mean``: back to pixels."""
        return z * np.asarray(self.std, np.float32) + np.asarray(self.mean, np.float32)


def normalization(images) -> Normalization:
    """The per-channel mean and std of ``images [N, H, W, C]`` (e.g. public data)."""
    x = np.asarray(images, np.float64)
    if x.ndim != 4 or x.shape[0] == 0:
        raise DataError(f"normalization needs images [N, H, W, C] with N >= 1, got shape "
                        f"{list(x.shape)}")
    mean = x.mean(axis=(0, 1, 2))
    std = np.maximum(x.std(axis=(0, 1, 2)), 1e-6)
    return Normalization(tuple(round(float(v), 4) for v in mean),
                         tuple(round(float(v), 4) for v in std))


class Dataset(NamedTuple):
    """An image-classification data set held in memory.

    Attributes:
        images: float32 ``[N, H, W, C]`` with values in ``[0, 1]``.
        labels: int32 ``[N]`` with values in ``[0, num_classes)``.
        num_classes: Number of classes.
        name: Name of the data set, e.g. ``"digits"`` or ``"emnist-balanced"``.
        class_names: One readable name per class (``"0"`` .. ``"9"`` for digits).
        writers: int32 ``[N]`` writer/client id per sample (FEMNIST), else ``None``.

    ``len(ds)`` is the number of samples (not the number of fields), and
    ``ds.subset(idx)`` takes the samples at ``idx``.
    """

    images: np.ndarray
    labels: np.ndarray
    num_classes: int
    name: str
    class_names: tuple[str, ...]
    writers: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __repr__(self) -> str:
        writers = "" if self.writers is None else f", writers={len(np.unique(self.writers))}"
        return (
            f"Dataset(name={self.name!r}, n={len(self)}, shape={tuple(self.images.shape[1:])}, "
            f"num_classes={self.num_classes}{writers})"
        )

    def subset(self, indices: Any) -> Dataset:
        """The samples at ``indices`` (an int array or a boolean mask)."""
        return subset(self, indices)

    @property
    def normalization(self) -> Normalization:
        """The set's declared input normalisation: the per-channel mean and std of its
        images (rounded to 4 digits), e.g. ``mean 0.1313, std 0.3086`` for ``"digits"``
        and ``0.9623, 0.1514`` for ``"femnist-like"``. Build the network with it
        (``models.convnet(..., normalization=ds)``: it normalises its pixel input, and
        ``attacks.fedavg`` takes the normalisation from the network)."""
        return normalization(self.images)


def _dataset_make(cls, iterable):
    # NamedTuple's own ``_make`` (used by ``_replace``) checks ``len(result)``, which
    # our ``__len__`` redefines as the number of samples; count the fields instead.
    result = tuple.__new__(cls, iterable)
    if tuple.__len__(result) != len(cls._fields):
        raise TypeError(f"Expected {len(cls._fields)} arguments, got {tuple.__len__(result)}")
    return result


Dataset._make = classmethod(_dataset_make)  # type: ignore[assignment]


def subset(ds: Dataset, indices: Any) -> Dataset:
    """Take the samples of ``ds`` at ``indices`` (an int array or a boolean mask).

    Args:
        ds: The data set.
        indices: Integer indices or a boolean mask of length ``len(ds)``.

    Returns:
        A new :class:`Dataset` with the same classes and copies of the selected rows.
    """
    idx = np.asarray(indices)
    if idx.dtype == bool:
        if idx.shape != (len(ds),):
            raise DataError(f"boolean mask must have shape ({len(ds)},), got {idx.shape}")
    elif idx.size and not np.issubdtype(idx.dtype, np.integer):
        raise DataError(f"indices must be integers or a boolean mask, got dtype {idx.dtype}")
    else:
        idx = idx.astype(np.intp, copy=False)
    writers = None if ds.writers is None else ds.writers[idx]
    return ds._replace(images=ds.images[idx], labels=ds.labels[idx], writers=writers)


def make_dataset(
    images: np.ndarray,
    labels: np.ndarray,
    name: str,
    class_names: Sequence[str],
    writers: np.ndarray | None = None,
) -> Dataset:
    """Build a Dataset from uint8 (scaled by 1/255) or float images ``[N, H, W, C]``."""
    if images.dtype == np.uint8:
        imgs = images.astype(np.float32)
        imgs *= np.float32(1.0 / 255.0)
    else:
        imgs = np.asarray(images, dtype=np.float32)
    labels = np.asarray(labels).astype(np.int32)
    num_classes = len(class_names)
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(
            f"{name}: labels must lie in [0, {num_classes}), found "
            f"[{labels.min()}, {labels.max()}]; the file is corrupt or of another kind"
        )
    if writers is not None:
        writers = np.asarray(writers).astype(np.int32)
    return Dataset(imgs, labels, num_classes, name, tuple(str(c) for c in class_names), writers)
