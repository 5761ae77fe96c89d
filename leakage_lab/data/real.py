"""The real data sets, read from their official files in a folder ``root``.

* ``"cifar10"`` / ``"cifar100"``: the *binary* versions (``cifar-10-batches-bin/``,
  ``cifar-100-binary/``, or the ``.tar.gz`` archives, read without extracting).
  CIFAR-100 uses the 100 fine labels.
* ``"mnist"``: the four IDX files, gzipped or not.
* ``"emnist"``: IDX files named ``emnist-<subset>-train-images-idx3-ubyte(.gz)``;
  images are transposed on load so that they appear upright.
* ``"femnist"``: LEAF JSON files; ``Dataset.writers`` holds one client id per writer.

Each file may be at most as large as the real data set's (the published sample
counts below); a larger, crafted or damaged file raises :class:`DataError`.

    >>> from leakage_lab.data import real
    >>> real.MNIST_COUNTS["train"], real.idx_limits(60_000)
    (60000, (47040016, 60008))
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from leakage_lab.data import download as dl
from leakage_lab.data import formats
from leakage_lab.data.dataset import DataError, Dataset, make_dataset
from leakage_lab.data.limits import MiB

__all__ = ["MANUAL_SOURCES", "REAL", "load_cifar", "load_emnist", "load_femnist", "load_mnist"]

REAL = ("cifar10", "cifar100", "mnist", "emnist", "femnist")

MANUAL_SOURCES = {
    "emnist": "the NIST EMNIST page (search 'EMNIST dataset NIST'); unpack the 'gzip' "
    "archive so that files like emnist-balanced-train-images-idx3-ubyte.gz sit in root",
    "femnist": "the LEAF benchmark (github: TalwalkarLab/leaf, data/femnist); run its "
    "preprocess.sh and point root at data/femnist/data (with train/ and test/ or all_data/)",
}


def require_root(name: str, root: str | os.PathLike | None, expected: str) -> Path:
    """``root`` as a Path; a DataError saying what it should hold if it is missing."""
    if root is None:
        raise DataError(f"{name} is not bundled: pass root=<folder> holding {expected}")
    path = Path(root).expanduser()
    if not path.is_dir():
        raise DataError(
            f"{name}: root folder {path} does not exist (expected it to hold {expected})"
        )
    return path


# --------------------------------------------------------------------------------------
# IDX sets (MNIST, EMNIST)
# --------------------------------------------------------------------------------------

MNIST_COUNTS = {"train": 60_000, "test": 10_000}
# EMNIST subset -> (train, test) sample counts (Cohen et al., 2017).
EMNIST_COUNTS = {
    "byclass": (697_932, 116_323),
    "bymerge": (697_932, 116_323),
    "balanced": (112_800, 18_800),
    "letters": (124_800, 20_800),
    "digits": (240_000, 40_000),
    "mnist": (60_000, 10_000),
}


def idx_limits(count: int, pixels: int = 28 * 28) -> tuple[int, int]:
    """The largest images and labels IDX files of ``count`` samples: ``(images, labels)``."""
    return 16 + count * pixels, 8 + count


def _find_idx(root: Path, stem: str) -> Path | None:
    """``root/stem`` or ``root/stem.gz``; also accepts '.idx3-ubyte' for '-idx3-ubyte'."""
    alt = stem.replace("-idx", ".idx")
    for name in (stem, stem + ".gz", alt, alt + ".gz"):
        if (root / name).is_file():
            return root / name
    return None


def _load_idx_pair(
    name: str, root: Path, images_stem: str, labels_stem: str, download: bool, count: int
) -> tuple[np.ndarray, np.ndarray]:
    paths = [_find_idx(root, images_stem), _find_idx(root, labels_stem)]
    if None in paths and download:
        dl.download(name, [images_stem + ".gz", labels_stem + ".gz"], root)
        paths = [_find_idx(root, images_stem), _find_idx(root, labels_stem)]
    if None in paths:
        missing = [s for s, p in zip((images_stem, labels_stem), paths, strict=True) if p is None]
        hint = (
            "pass download=True to fetch them"
            if name in dl.DOWNLOADS
            else f"get them from {MANUAL_SOURCES[name.split('-')[0]]}"
        )
        raise DataError(
            f"{name}: missing {', '.join(m + '(.gz)' for m in missing)} in {root}; "
            f"expected files {images_stem}(.gz) and {labels_stem}(.gz) there; {hint}"
        )
    max_images, max_labels = idx_limits(count)
    images = formats.read_idx(paths[0], max_bytes=max_images, ndim=3)
    labels = formats.read_idx(paths[1], max_bytes=max_labels, ndim=1)
    if images.shape[0] != labels.shape[0]:
        raise DataError(
            f"{name}: expected images [N, H, W] and labels [N] with the same N, got "
            f"{list(images.shape)} in {paths[0].name} and {list(labels.shape)} in {paths[1].name}"
        )
    return images, labels


_MNIST_STEMS = {"train": "train", "test": "t10k"}


def load_mnist(root, split: str, download: bool) -> Dataset:
    """MNIST from its four IDX files in ``root`` (fetched when ``download``)."""
    pre = _MNIST_STEMS[split]
    if download and root is not None:
        Path(root).expanduser().mkdir(parents=True, exist_ok=True)
    root = require_root(
        "mnist", root, f"{pre}-images-idx3-ubyte(.gz) and {pre}-labels-idx1-ubyte(.gz)"
    )
    images, labels = _load_idx_pair(
        "mnist", root, f"{pre}-images-idx3-ubyte", f"{pre}-labels-idx1-ubyte", download,
        MNIST_COUNTS[split],
    )
    return make_dataset(
        images.astype(np.uint8, copy=False)[..., None], labels, "mnist",
        [str(d) for d in range(10)],
    )


DIGITS = "0123456789"
UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
LOWER = "abcdefghijklmnopqrstuvwxyz"
EMNIST_CLASSES = {
    "byclass": DIGITS + UPPER + LOWER,
    "bymerge": DIGITS + UPPER + "abdefghnqrt",
    "balanced": DIGITS + UPPER + "abdefghnqrt",
    "digits": DIGITS,
    "mnist": DIGITS,
    "letters": UPPER,  # stored as 1..26 (upper and lower case merged); shifted to 0..25
}


def load_emnist(root, split: str, subset_name: str) -> Dataset:
    """One EMNIST subset from its IDX files in ``root``, images made upright."""
    if subset_name not in EMNIST_CLASSES:
        raise DataError(
            f"unknown EMNIST subset {subset_name!r}; known: {', '.join(sorted(EMNIST_CLASSES))}"
        )
    stem = f"emnist-{subset_name}-{split}"
    root = require_root(
        "emnist", root, f"{stem}-images-idx3-ubyte(.gz) and {stem}-labels-idx1-ubyte(.gz)"
    )
    images, labels = _load_idx_pair(
        f"emnist-{subset_name}",
        root,
        f"{stem}-images-idx3-ubyte",
        f"{stem}-labels-idx1-ubyte",
        download=False,
        count=EMNIST_COUNTS[subset_name][split == "test"],
    )
    labels = labels.astype(np.int64)
    if subset_name == "letters":
        labels = labels - 1
    # EMNIST stores each image transposed (column-major); swap H and W to make it upright.
    images = np.ascontiguousarray(images.astype(np.uint8, copy=False).transpose(0, 2, 1))
    return make_dataset(
        images[..., None], labels, f"emnist-{subset_name}", list(EMNIST_CLASSES[subset_name])
    )


# --------------------------------------------------------------------------------------
# CIFAR binary
# --------------------------------------------------------------------------------------

CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
CIFAR100_CLASSES = tuple(
    """
apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus
butterfly camel can castle caterpillar cattle chair chimpanzee clock cloud cockroach couch
crab crocodile cup dinosaur dolphin elephant flatfish forest fox girl hamster house kangaroo
keyboard lamp lawn_mower leopard lion lizard lobster man maple_tree motorcycle mountain mouse
mushroom oak_tree orange orchid otter palm_tree pear pickup_truck pine_tree plain plate poppy
porcupine possum rabbit raccoon ray road rocket rose sea seal shark shrew skunk skyscraper
snail snake spider squirrel streetcar sunflower sweet_pepper table tank telephone television
tiger tractor train trout tulip turtle wardrobe whale willow_tree wolf woman worm
""".split()
)

# name -> (folder, archive, {split: {file: records}}, label bytes per record, class names)
CIFAR = {
    "cifar10": (
        "cifar-10-batches-bin",
        "cifar-10-binary.tar.gz",
        {
            "train": {f"data_batch_{i}.bin": 10_000 for i in range(1, 6)},
            "test": {"test_batch.bin": 10_000},
        },
        1,
        CIFAR10_CLASSES,
    ),
    "cifar100": (
        "cifar-100-binary",
        "cifar-100-binary.tar.gz",
        {"train": {"train.bin": 50_000}, "test": {"test.bin": 10_000}},
        2,
        CIFAR100_CLASSES,
    ),
}


def load_cifar(name: str, root, split: str, download: bool) -> Dataset:
    """CIFAR-10 or CIFAR-100 (binary version) from a folder or the archive in ``root``."""
    folder, archive, splits, label_bytes, classes = CIFAR[name]
    files = splits[split]
    record = label_bytes + formats.CIFAR_PIXELS
    expected = (
        f"{folder}/ with {', '.join(files)} (or those files directly, or the archive {archive})"
    )
    if download and root is not None:
        Path(root).expanduser().mkdir(parents=True, exist_ok=True)
    root = require_root(name, root, expected)
    parts: list[tuple[np.ndarray, np.ndarray]] = []
    for base in (root / folder, root):
        if all((base / f).is_file() for f in files):
            parts = [formats.read_cifar_file(base / f, label_bytes, max_records=n)
                     for f, n in files.items()]
            break
    if not parts:
        if not (root / archive).is_file() and download:
            dl.download(name, [archive], root)
        if not (root / archive).is_file():
            hint = "pass download=True to fetch it" if not download else ""
            raise DataError(
                f"{name}: no CIFAR files in {root}; expected {expected}; {hint}".rstrip("; ")
            )
        members = {f"{folder}/{f}": n * record for f, n in files.items()}
        largest = max(n for table in splits.values() for n in table.values()) * record
        blobs = formats.read_tar_members(
            root / archive, members,
            max_archive_bytes=dl.SIZES.get(archive, 0) * 5 // 4 + MiB,  # re-packed copies too
            max_other_bytes=largest,
        )
        parts = [formats.parse_cifar(blobs[m], label_bytes, f"{root / archive}:{m}")
                 for m in members]
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    return make_dataset(images, labels, name, classes)


# --------------------------------------------------------------------------------------
# FEMNIST (LEAF JSON)
# --------------------------------------------------------------------------------------

FEMNIST_CLASSES = DIGITS + UPPER + LOWER


def _femnist_files(root: Path, split: str) -> list[Path]:
    if (root / split).is_dir():
        return sorted((root / split).glob("*.json"))
    if split == "test":
        return []
    for base in (root / "all_data", root):
        files = sorted(base.glob("*.json"))
        if files:
            return files
    return []


def load_femnist(root, split: str, invert: bool) -> Dataset:
    """FEMNIST from LEAF JSON files in ``root``; one writer id per LEAF user."""
    expected = (
        "LEAF JSON files (train/*.json and test/*.json, or all_data/*.json, or *.json directly)"
    )
    root = require_root("femnist", root, expected)
    files = _femnist_files(root, split)
    if not files:
        raise DataError(
            f"femnist: no {split} JSON files in {root}; expected {expected}; "
            f"get them from {MANUAL_SOURCES['femnist']}"
        )
    xs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    ws: list[np.ndarray] = []
    writer_ids: dict[str, int] = {}
    for path in files:
        for user, x, y in formats.read_leaf_json(path):
            wid = writer_ids.setdefault(user, len(writer_ids))
            xs.append(x)
            ys.append(y)
            ws.append(np.full(len(y), wid, dtype=np.int32))
    images = np.concatenate(xs).reshape(-1, 28, 28, 1) if xs else np.zeros((0, 28, 28, 1))
    if invert:
        images = 1.0 - images
    labels = np.concatenate(ys) if ys else np.zeros(0, np.int64)
    writers = np.concatenate(ws) if ws else np.zeros(0, np.int32)
    return make_dataset(
        images.astype(np.float32), labels, "femnist", list(FEMNIST_CLASSES), writers=writers
    )
