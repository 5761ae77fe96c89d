"""The three small data sets that ship inside the package, in ``leakage_lab/data/files/``.

* ``"digits"``: 5,000 MNIST handwritten digits, 28x28x1, 10 classes (500 each).
* ``"faces"``: 200 LFW crops, 25x25x1; label 1 = face, 0 = non-face (100 each).
* ``"tiny-images"``: 112 colour 32x32 crops of 7 public-domain / CC0 photos;
  the label is the photo the crop was cut from.

``files/README.md`` names each source and its licence; ``files/build_data.py``
rebuilt them. The files are package data, so a wheel (``pip install .``) has them too:

    >>> from leakage_lab.data import bundled
    >>> sorted(p.name for p in bundled.data_dir().glob("*.npz"))
    ['digits.npz', 'faces.npz', 'tiny-images.npz']
"""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

import numpy as np

from leakage_lab.data.dataset import DataError, Dataset, make_dataset

__all__ = ["BUNDLED", "data_dir", "load_bundled"]

# name -> (file, image shape [H, W, C], number of classes, minimum number of samples)
BUNDLED: dict[str, tuple[str, tuple[int, int, int], int, int]] = {
    "digits": ("digits.npz", (28, 28, 1), 10, 2000),
    "faces": ("faces.npz", (25, 25, 1), 2, 200),
    "tiny-images": ("tiny-images.npz", (32, 32, 3), 7, 64),
}

_REBUILD = (
    "rebuild it with `python leakage_lab/data/files/build_data.py` (in a clone), "
    "restore it with git, or reinstall leakage-lab"
)


def data_dir() -> Path:
    """The folder holding the bundled ``.npz`` files (inside the installed package)."""
    return Path(__file__).resolve().parent / "files"


def load_bundled(name: str) -> Dataset:
    """Load the bundled set ``name`` (a key of :data:`BUNDLED`), checking what it holds."""
    file, shape, num_classes, min_n = BUNDLED[name]
    path = data_dir() / file
    if not path.is_file():
        raise DataError(f"bundled data set {name!r} not found: expected {path}; {_REBUILD}")
    try:
        with np.load(path, allow_pickle=False) as z:
            images, labels, class_names = z["images"], z["labels"], z["class_names"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error) as err:
        raise DataError(
            f"bundled file {path} is damaged ({type(err).__name__}: {err}); it should hold "
            f"arrays 'images', 'labels' and 'class_names'; {_REBUILD}"
        ) from err
    problems = []
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != shape:
        problems.append(
            f"images uint8 [N, {', '.join(map(str, shape))}], got "
            f"{images.dtype} {list(images.shape)}"
        )
    elif images.shape[0] < min_n:
        problems.append(f"at least {min_n} images, got {images.shape[0]}")
    if labels.ndim != 1 or labels.shape[0] != images.shape[0] or labels.dtype.kind not in "iu":
        problems.append(
            f"integer labels [{images.shape[0]}], got {labels.dtype} {list(labels.shape)}"
        )
    elif labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        problems.append(f"labels in [0, {num_classes}), got [{labels.min()}, {labels.max()}]")
    if class_names.dtype.kind != "U" or class_names.shape != (num_classes,):
        problems.append(
            f"{num_classes} class names (unicode), got {class_names.dtype} "
            f"{list(class_names.shape)}"
        )
    if problems:
        raise DataError(
            f"bundled file {path} is damaged: expected {'; '.join(problems)}; {_REBUILD}"
        )
    return make_dataset(images, labels, name, [str(c) for c in class_names])
