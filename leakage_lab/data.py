"""Data sets for the labs: three small bundled sets, real-format loaders and client splits.

Three real data sets ship with the repository in ``data/`` and load offline:

* ``"digits"``: 5,000 MNIST handwritten digits, 28x28x1, 10 classes (500 each).
* ``"faces"``: 200 LFW crops, 25x25x1; label 1 = face, 0 = non-face (100 each).
* ``"tiny-images"``: 112 colour 32x32 crops of 7 public-domain / CC0 photos;
  the label is the photo the crop was cut from.

Larger sets are read from their official file formats in a local folder ``root``:

* ``"cifar10"`` / ``"cifar100"``: the *binary* versions (``cifar-10-batches-bin/``,
  ``cifar-100-binary/``, or the ``.tar.gz`` archives, read without extracting).
  CIFAR-100 uses the 100 fine labels.
* ``"mnist"``: the four IDX files, gzipped or not.
* ``"emnist"``: IDX files named ``emnist-<subset>-train-images-idx3-ubyte(.gz)``;
  images are transposed on load so that they appear upright.
* ``"femnist"``: LEAF JSON files; ``Dataset.writers`` holds one client id per writer.

``download=True`` fetches CIFAR and MNIST over HTTPS and checks their SHA-256.
Every loader returns a :class:`Dataset` with float32 images ``[N, H, W, C]`` in
``[0, 1]`` and int32 labels. Client splits (:func:`split_iid`,
:func:`split_dirichlet`, :func:`split_writers`, :func:`train_test_split`) are
driven by an explicit JAX PRNG key: the same key always gives the same split.

Example:
    >>> from leakage_lab import data
    >>> ds = data.load("digits")
    >>> ds.images.shape, ds.num_classes
    ((5000, 28, 28, 1), 10)
    >>> import jax
    >>> clients = data.split_dirichlet(
    ...     ds, num_clients=4, samples_per_client=64, alpha=0.5, key=jax.random.key(0))
    >>> [len(c) for c in clients]
    [64, 64, 64, 64]

Problems with files (missing, truncated, corrupt, wrong checksum) raise
:class:`DataError`, a ``ValueError`` whose message says what was expected.
"""

from __future__ import annotations

import gzip
import hashlib
import ipaddress
import json
import os
import sys
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import warnings
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

__all__ = [
    "BUNDLED",
    "DOWNLOADS",
    "REAL",
    "DataError",
    "Dataset",
    "dirichlet_indices",
    "fetch",
    "iid_indices",
    "load",
    "split_dirichlet",
    "split_iid",
    "split_writers",
    "subset",
    "train_test_split",
]


class DataError(ValueError):
    """A data set could not be found, read, verified or split as asked."""


# --------------------------------------------------------------------------------------
# The Dataset container
# --------------------------------------------------------------------------------------


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


def _make_dataset(
    images: np.ndarray,
    labels: np.ndarray,
    name: str,
    class_names: Sequence[str],
    writers: np.ndarray | None = None,
) -> Dataset:
    """Build a Dataset from uint8 (scaled by 1/255) or float images [N, H, W, C]."""
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


# --------------------------------------------------------------------------------------
# Bundled data sets
# --------------------------------------------------------------------------------------

# name -> (file, image shape [H, W, C], number of classes, minimum number of samples)
BUNDLED: dict[str, tuple[str, tuple[int, int, int], int, int]] = {
    "digits": ("digits.npz", (28, 28, 1), 10, 2000),
    "faces": ("faces.npz", (25, 25, 1), 2, 200),
    "tiny-images": ("tiny-images.npz", (32, 32, 3), 7, 64),
}

_REBUILD = "rebuild it with `python data/build_data.py` or restore it with git"


def _data_dir() -> Path:
    """The repository's ``data/`` folder, next to the package folder."""
    return Path(__file__).resolve().parent.parent / "data"


def _load_bundled(name: str) -> Dataset:
    file, shape, num_classes, min_n = BUNDLED[name]
    path = _data_dir() / file
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
    return _make_dataset(images, labels, name, [str(c) for c in class_names])


# --------------------------------------------------------------------------------------
# Downloads
# --------------------------------------------------------------------------------------

_CIFAR_HOST = "https://www.cs.toronto.edu/~kriz/"
# MNIST's home page often refuses direct downloads, so a widely used mirror is tried first.
_MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://yann.lecun.com/exdb/mnist/",
)

# name -> {file name: (candidate URLs, SHA-256)}. These digests are the published
# SHA-256 values of the official archives (cross-checked against several independent
# projects that pin them); they are not the MD5 sums shown on the data sets' pages.
# An entry of None would mean "not verified": fetch() then prints the digest it got.
DOWNLOADS: dict[str, dict[str, tuple[tuple[str, ...], str | None]]] = {
    "cifar10": {
        "cifar-10-binary.tar.gz": (
            (_CIFAR_HOST + "cifar-10-binary.tar.gz",),
            "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd",
        ),
    },
    "cifar100": {
        "cifar-100-binary.tar.gz": (
            (_CIFAR_HOST + "cifar-100-binary.tar.gz",),
            "58a81ae192c23a4be8b1804d68e518ed807d710a4eb253b1f2a199162a40d8ec",
        ),
    },
    "mnist": {
        f: (tuple(m + f for m in _MNIST_MIRRORS), digest)
        for f, digest in (
            (
                "train-images-idx3-ubyte.gz",
                "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
            ),
            (
                "train-labels-idx1-ubyte.gz",
                "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
            ),
            (
                "t10k-images-idx3-ubyte.gz",
                "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
            ),
            (
                "t10k-labels-idx1-ubyte.gz",
                "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
            ),
        )
    },
}

_MANUAL_SOURCES = {
    "emnist": "the NIST EMNIST page (search 'EMNIST dataset NIST'); unpack the 'gzip' "
    "archive so that files like emnist-balanced-train-images-idx3-ubyte.gz sit in root",
    "femnist": "the LEAF benchmark (github: TalwalkarLab/leaf, data/femnist); run its "
    "preprocess.sh and point root at data/femnist/data (with train/ and test/ or all_data/)",
}


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_url(url: str) -> None:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "https":
        return
    if parts.scheme == "http" and _is_loopback(parts.hostname):
        return
    raise DataError(
        f"refusing to download {url!r}: only https:// URLs are allowed "
        "(plain http:// only for a loopback host such as 127.0.0.1 or localhost)"
    )


class _SafeRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects only to URLs that pass the same https/loopback rule."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        _check_url(newurl)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def fetch(url: str, dest: str | os.PathLike, *, sha256: str | None, timeout: float = 60.0) -> Path:
    """Download ``url`` to ``dest``, checking its SHA-256; nothing partial is left behind.

    The file is written to a temporary file beside ``dest`` and renamed only once
    its digest matches, so an existing ``dest`` is never damaged by a failed download.

    Args:
        url: An ``https://`` URL (``http://`` is accepted only for loopback hosts).
        dest: Where to write the file; parent folders are created.
        sha256: Expected hex SHA-256. ``None`` skips verification: the digest is
            printed and a warning says the file was not verified.
        timeout: Seconds to wait for the server.

    Returns:
        ``dest`` as a :class:`~pathlib.Path`.

    Raises:
        DataError: For a refused URL, a failed download or a checksum mismatch.
    """
    _check_url(url)
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    digest = hashlib.sha256()
    try:
        try:
            opener = urllib.request.build_opener(_SafeRedirects)
            with os.fdopen(fd, "wb") as out, opener.open(url, timeout=timeout) as resp:
                while chunk := resp.read(1 << 20):
                    digest.update(chunk)
                    out.write(chunk)
        except DataError:
            raise
        except (urllib.error.URLError, OSError, ValueError) as err:
            raise DataError(f"could not download {url}: {err}") from err
        got = digest.hexdigest()
        if sha256 is None:
            print(f"sha256 of {url}: {got}", file=sys.stderr)
            warnings.warn(
                f"{dest.name} was downloaded without checksum verification "
                f"(no expected SHA-256 known); its sha256 is {got}",
                stacklevel=2,
            )
        elif got.lower() != sha256.lower():
            raise DataError(
                f"checksum mismatch for {url}: expected sha256 {sha256.lower()}, got {got}; "
                f"the download was discarded"
                + (f" and the existing {dest} kept" if dest.exists() else "")
            )
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def _download(name: str, files: Sequence[str], root: Path) -> None:
    """Fetch ``files`` of data set ``name`` into ``root`` (those not there yet)."""
    table = DOWNLOADS[name]
    for file in files:
        dest = root / file
        if dest.is_file():
            continue
        urls, digest = table[file]
        errors = []
        for url in urls:
            try:
                fetch(url, dest, sha256=digest)
                break
            except DataError as err:
                if "checksum mismatch" in str(err):
                    raise
                errors.append(str(err))
        else:
            raise DataError(
                f"could not download {name} file {file} ("
                + "; ".join(errors)
                + f"). Download it by hand from {' or '.join(urls)} and place it at {dest}, "
                "then call load() again without download=True"
            )


# --------------------------------------------------------------------------------------
# Helpers for files in a root folder
# --------------------------------------------------------------------------------------


def _require_root(name: str, root: str | os.PathLike | None, expected: str) -> Path:
    if root is None:
        raise DataError(f"{name} is not bundled: pass root=<folder> holding {expected}")
    path = Path(root).expanduser()
    if not path.is_dir():
        raise DataError(
            f"{name}: root folder {path} does not exist (expected it to hold {expected})"
        )
    return path


def _read_maybe_gzip(path: Path) -> bytes:
    """Read a file, decompressing it if it starts with the gzip magic bytes."""
    raw = path.read_bytes()
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as err:
        raise DataError(f"{path} is a damaged gzip file ({err}); download it again") from err


# --------------------------------------------------------------------------------------
# IDX (MNIST, EMNIST)
# --------------------------------------------------------------------------------------

_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def parse_idx(buf: bytes, source: str = "<bytes>") -> np.ndarray:
    """Decode an IDX file (the MNIST format) held in ``buf``.

    Args:
        buf: The whole (uncompressed) file.
        source: Name used in error messages.

    Returns:
        The array with the shape given in the header.

    Raises:
        DataError: If the magic number is wrong or the size disagrees with the header.
    """
    if len(buf) < 4 or buf[0] != 0 or buf[1] != 0 or buf[2] not in _IDX_TYPES:
        raise DataError(
            f"{source} is not an IDX file: expected magic bytes 00 00 <type> <ndim> with "
            f"type one of {sorted(hex(t) for t in _IDX_TYPES)}, got {buf[:4].hex(' ')!r}"
        )
    dtype = np.dtype(_IDX_TYPES[buf[2]])
    ndim = buf[3]
    header = 4 + 4 * ndim
    if len(buf) < header:
        raise DataError(
            f"{source} is truncated: the header needs {header} bytes, file has {len(buf)}"
        )
    dims = tuple(int(d) for d in np.frombuffer(buf, dtype=">u4", count=ndim, offset=4))
    expected = header + int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(buf) != expected:
        raise DataError(
            f"{source} is truncated or corrupt: header says shape {list(dims)} "
            f"({expected} bytes in all), file has {len(buf)} bytes"
        )
    array = np.frombuffer(buf, dtype=dtype, offset=header).reshape(dims)
    return array.astype(dtype.newbyteorder("="))


def _find_idx(root: Path, stem: str) -> Path | None:
    """``root/stem`` or ``root/stem.gz``; also accepts '.idx3-ubyte' for '-idx3-ubyte'."""
    alt = stem.replace("-idx", ".idx")
    for name in (stem, stem + ".gz", alt, alt + ".gz"):
        if (root / name).is_file():
            return root / name
    return None


def _load_idx_pair(
    name: str, root: Path, images_stem: str, labels_stem: str, download: bool
) -> tuple[np.ndarray, np.ndarray]:
    paths = [_find_idx(root, images_stem), _find_idx(root, labels_stem)]
    if None in paths and download:
        _download(name, [images_stem + ".gz", labels_stem + ".gz"], root)
        paths = [_find_idx(root, images_stem), _find_idx(root, labels_stem)]
    if None in paths:
        missing = [s for s, p in zip((images_stem, labels_stem), paths, strict=True) if p is None]
        hint = (
            "pass download=True to fetch them"
            if name in DOWNLOADS
            else f"get them from {_MANUAL_SOURCES[name.split('-')[0]]}"
        )
        raise DataError(
            f"{name}: missing {', '.join(m + '(.gz)' for m in missing)} in {root}; "
            f"expected files {images_stem}(.gz) and {labels_stem}(.gz) there; {hint}"
        )
    images = parse_idx(_read_maybe_gzip(paths[0]), str(paths[0]))
    labels = parse_idx(_read_maybe_gzip(paths[1]), str(paths[1]))
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        raise DataError(
            f"{name}: expected images [N, H, W] and labels [N] with the same N, got "
            f"{list(images.shape)} in {paths[0].name} and {list(labels.shape)} in {paths[1].name}"
        )
    return images, labels


_MNIST_STEMS = {"train": "train", "test": "t10k"}


def _load_mnist(root, split, download) -> Dataset:
    pre = _MNIST_STEMS[split]
    if download and root is not None:
        Path(root).expanduser().mkdir(parents=True, exist_ok=True)
    root = _require_root(
        "mnist", root, f"{pre}-images-idx3-ubyte(.gz) and {pre}-labels-idx1-ubyte(.gz)"
    )
    images, labels = _load_idx_pair(
        "mnist", root, f"{pre}-images-idx3-ubyte", f"{pre}-labels-idx1-ubyte", download
    )
    return _make_dataset(
        images.astype(np.uint8)[..., None], labels, "mnist", [str(d) for d in range(10)]
    )


_DIGITS = "0123456789"
_UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_LOWER = "abcdefghijklmnopqrstuvwxyz"
_EMNIST_CLASSES = {
    "byclass": _DIGITS + _UPPER + _LOWER,
    "bymerge": _DIGITS + _UPPER + "abdefghnqrt",
    "balanced": _DIGITS + _UPPER + "abdefghnqrt",
    "digits": _DIGITS,
    "mnist": _DIGITS,
    "letters": _UPPER,  # stored as 1..26 (upper and lower case merged); shifted to 0..25
}


def _load_emnist(root, split, subset_name) -> Dataset:
    if subset_name not in _EMNIST_CLASSES:
        raise DataError(
            f"unknown EMNIST subset {subset_name!r}; known: {', '.join(sorted(_EMNIST_CLASSES))}"
        )
    stem = f"emnist-{subset_name}-{split}"
    root = _require_root(
        "emnist", root, f"{stem}-images-idx3-ubyte(.gz) and {stem}-labels-idx1-ubyte(.gz)"
    )
    images, labels = _load_idx_pair(
        f"emnist-{subset_name}",
        root,
        f"{stem}-images-idx3-ubyte",
        f"{stem}-labels-idx1-ubyte",
        download=False,
    )
    labels = labels.astype(np.int64)
    if subset_name == "letters":
        labels = labels - 1
    # EMNIST stores each image transposed (column-major); swap H and W to make it upright.
    images = np.ascontiguousarray(images.astype(np.uint8).transpose(0, 2, 1))[..., None]
    return _make_dataset(
        images, labels, f"emnist-{subset_name}", list(_EMNIST_CLASSES[subset_name])
    )


# --------------------------------------------------------------------------------------
# CIFAR binary
# --------------------------------------------------------------------------------------

_CIFAR10_CLASSES = (
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
_CIFAR100_CLASSES = tuple(
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

# name -> (folder, archive, {split: files}, label bytes per record, class names)
_CIFAR = {
    "cifar10": (
        "cifar-10-batches-bin",
        "cifar-10-binary.tar.gz",
        {"train": [f"data_batch_{i}.bin" for i in range(1, 6)], "test": ["test_batch.bin"]},
        1,
        _CIFAR10_CLASSES,
    ),
    "cifar100": (
        "cifar-100-binary",
        "cifar-100-binary.tar.gz",
        {"train": ["train.bin"], "test": ["test.bin"]},
        2,
        _CIFAR100_CLASSES,
    ),
}


def parse_cifar(
    buf: bytes, label_bytes: int, source: str = "<bytes>"
) -> tuple[np.ndarray, np.ndarray]:
    """Decode CIFAR binary records: label byte(s) then 3072 pixel bytes (R, G, B planes).

    Args:
        buf: Concatenated records.
        label_bytes: 1 for CIFAR-10; 2 for CIFAR-100 (coarse, fine), of which the
            fine label is returned.
        source: Name used in error messages.

    Returns:
        ``(images, labels)``: uint8 ``[N, 32, 32, 3]`` (HWC) and ``[N]``.
    """
    record = label_bytes + 3 * 32 * 32
    if len(buf) == 0 or len(buf) % record:
        raise DataError(
            f"{source} is truncated or not a CIFAR binary file: its size {len(buf)} is not "
            f"a positive multiple of the {record}-byte record "
            f"({label_bytes} label byte(s) + 3072 pixels)"
        )
    rows = np.frombuffer(buf, dtype=np.uint8).reshape(-1, record)
    labels = rows[:, label_bytes - 1].copy()
    images = rows[:, label_bytes:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels


def _load_cifar(name, root, split, download) -> Dataset:
    folder, archive, splits, label_bytes, classes = _CIFAR[name]
    files = splits[split]
    expected = (
        f"{folder}/ with {', '.join(files)} (or those files directly, or the archive {archive})"
    )
    if download and root is not None:
        Path(root).expanduser().mkdir(parents=True, exist_ok=True)
    root = _require_root(name, root, expected)
    blobs: list[tuple[str, bytes]] = []
    for base in (root / folder, root):
        if all((base / f).is_file() for f in files):
            blobs = [(str(base / f), (base / f).read_bytes()) for f in files]
            break
    if not blobs:
        if not (root / archive).is_file() and download:
            _download(name, [archive], root)
        if not (root / archive).is_file():
            hint = "pass download=True to fetch it" if not download else ""
            raise DataError(
                f"{name}: no CIFAR files in {root}; expected {expected}; {hint}".rstrip("; ")
            )
        blobs = _read_tar_members(root / archive, [f"{folder}/{f}" for f in files])
    parts = [parse_cifar(b, label_bytes, src) for src, b in blobs]
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    return _make_dataset(images, labels, name, classes)


def _read_tar_members(path: Path, members: Sequence[str]) -> list[tuple[str, bytes]]:
    found: dict[str, bytes] = {}
    try:
        with tarfile.open(path, "r:*") as tar:
            for info in tar:
                if info.name in members and info.isfile():
                    handle = tar.extractfile(info)
                    found[info.name] = handle.read() if handle else b""
    except (tarfile.TarError, EOFError, OSError, zlib.error) as err:
        raise DataError(
            f"{path} is a damaged archive ({err}); delete it and download it again"
        ) from err
    missing = [m for m in members if m not in found]
    if missing:
        raise DataError(f"{path} is incomplete: missing members {', '.join(missing)}")
    return [(f"{path}:{m}", found[m]) for m in members]


# --------------------------------------------------------------------------------------
# FEMNIST (LEAF JSON)
# --------------------------------------------------------------------------------------

_FEMNIST_CLASSES = _DIGITS + _UPPER + _LOWER


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


def _load_femnist(root, split, invert) -> Dataset:
    expected = (
        "LEAF JSON files (train/*.json and test/*.json, or all_data/*.json, or *.json directly)"
    )
    root = _require_root("femnist", root, expected)
    files = _femnist_files(root, split)
    if not files:
        raise DataError(
            f"femnist: no {split} JSON files in {root}; expected {expected}; "
            f"get them from {_MANUAL_SOURCES['femnist']}"
        )
    xs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    ws: list[np.ndarray] = []
    writer_ids: dict[str, int] = {}
    for path in files:
        try:
            with open(path, encoding="utf-8") as fh:
                blob = json.load(fh)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise DataError(f"{path} is not valid JSON ({err}); it may be truncated") from err
        if not isinstance(blob, dict) or not {"users", "user_data"} <= blob.keys():
            keys = sorted(blob) if isinstance(blob, dict) else type(blob).__name__
            raise DataError(
                f"{path}: expected a LEAF JSON object with keys 'users', "
                f"'num_samples' and 'user_data', got {keys}"
            )
        counts = blob.get("num_samples")
        for i, user in enumerate(blob["users"]):
            record = blob["user_data"].get(user)
            if not isinstance(record, dict) or "x" not in record or "y" not in record:
                raise DataError(f"{path}: user_data[{user!r}] must have keys 'x' and 'y'")
            try:
                x = np.asarray(record["x"], dtype=np.float32)
                y = np.asarray(record["y"], dtype=np.int64)
            except (TypeError, ValueError) as err:
                raise DataError(f"{path}: user {user!r} has malformed x/y ({err})") from err
            if x.ndim != 2 or x.shape[1] != 784 or y.shape != (x.shape[0],):
                raise DataError(
                    f"{path}: user {user!r} should have x of shape [n, 784] and y "
                    f"of shape [n], got {list(x.shape)} and {list(y.shape)}"
                )
            if counts is not None and i < len(counts) and counts[i] != len(y):
                raise DataError(
                    f"{path}: num_samples says {counts[i]} for user {user!r} but it has {len(y)}"
                )
            if x.size and (x.min() < 0 or x.max() > 1):
                raise DataError(f"{path}: user {user!r} has pixel values outside [0, 1]")
            wid = writer_ids.setdefault(user, len(writer_ids))
            xs.append(x)
            ys.append(y)
            ws.append(np.full(len(y), wid, dtype=np.int32))
    images = np.concatenate(xs).reshape(-1, 28, 28, 1) if xs else np.zeros((0, 28, 28, 1))
    if invert:
        images = 1.0 - images
    return _make_dataset(
        images.astype(np.float32),
        np.concatenate(ys),
        "femnist",
        list(_FEMNIST_CLASSES),
        writers=np.concatenate(ws),
    )


# --------------------------------------------------------------------------------------
# load()
# --------------------------------------------------------------------------------------

REAL = ("cifar10", "cifar100", "mnist", "emnist", "femnist")


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
        name: A bundled set (``"digits"``, ``"faces"``, ``"tiny-images"``) or a real
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
        DataError: Unknown name or split; missing, truncated or corrupt files;
            failed download or checksum mismatch.
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
        return _load_bundled(key)
    if key in ("cifar10", "cifar100"):
        return _load_cifar(key, root, split, download)
    if key == "mnist":
        return _load_mnist(root, split, download)
    if key in ("emnist", "femnist"):
        if download:
            raise DataError(
                f"{key} cannot be downloaded automatically; get it from {_MANUAL_SOURCES[key]}"
            )
        if key == "emnist":
            return _load_emnist(root, split, subset)
        return _load_femnist(root, split, invert)
    raise DataError(
        f"unknown data set {name!r}; known: bundled {', '.join(BUNDLED)}; "
        f"from files {', '.join(REAL)}"
    )


# --------------------------------------------------------------------------------------
# Keyed splits
# --------------------------------------------------------------------------------------


def _rng(key: Any) -> np.random.Generator:
    """A numpy Generator seeded from a JAX PRNG key (typed or raw uint32[2]) or an int.

    The randomness is drawn with ``jax.random`` from ``key``, so one key always gives
    one split; an int ``s`` is shorthand for ``jax.random.key(s)``.
    """
    import jax

    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        key = jax.random.key(int(key))
    if key is None:
        raise DataError("a PRNG key is required, e.g. key=jax.random.key(0)")
    bits = jax.random.bits(key, (4,), dtype=np.uint32)
    return np.random.default_rng(np.asarray(bits, dtype=np.uint32))


def _check_sizes(n: int, num_clients: int, samples_per_client: int) -> None:
    if num_clients < 1 or samples_per_client < 1:
        raise DataError(
            f"num_clients and samples_per_client must be >= 1, got {num_clients} "
            f"and {samples_per_client}"
        )
    if num_clients * samples_per_client > n:
        raise DataError(
            f"cannot give {num_clients} clients {samples_per_client} disjoint samples each: "
            f"that needs {num_clients * samples_per_client} samples but the data set has {n}"
        )


def iid_indices(n: int, *, num_clients: int, samples_per_client: int, key: Any) -> list[np.ndarray]:
    """Disjoint, uniformly random index sets of equal size (sorted within each client)."""
    _check_sizes(n, num_clients, samples_per_client)
    perm = _rng(key).permutation(n)[: num_clients * samples_per_client]
    return [np.sort(p) for p in perm.reshape(num_clients, samples_per_client)]


def split_iid(ds: Dataset, *, num_clients: int, samples_per_client: int, key: Any) -> list[Dataset]:
    """Split ``ds`` into ``num_clients`` disjoint IID clients of ``samples_per_client`` each.

    Args:
        ds: The data set.
        num_clients: Number of clients.
        samples_per_client: Samples per client; ``num_clients * samples_per_client``
            must not exceed ``len(ds)``.
        key: JAX PRNG key (or int seed); the same key gives the same split.

    Returns:
        One :class:`Dataset` per client (use :func:`iid_indices` for the indices).
    """
    idx = iid_indices(
        len(ds), num_clients=num_clients, samples_per_client=samples_per_client, key=key
    )
    return [subset(ds, i) for i in idx]


def dirichlet_indices(
    labels: np.ndarray,
    num_classes: int,
    *,
    num_clients: int,
    samples_per_client: int,
    alpha: float,
    key: Any,
) -> list[np.ndarray]:
    """Disjoint label-skewed index sets; see :func:`split_dirichlet`."""
    labels = np.asarray(labels)
    _check_sizes(len(labels), num_clients, samples_per_client)
    if not alpha > 0:
        raise DataError(f"alpha must be > 0, got {alpha}")
    rng = _rng(key)
    pools = [list(rng.permutation(np.flatnonzero(labels == c))) for c in range(num_classes)]
    present = np.array([len(p) > 0 for p in pools])
    out = []
    for _ in range(num_clients):
        p = np.zeros(num_classes)
        p[present] = rng.dirichlet(np.full(int(present.sum()), float(alpha)))
        if not np.isfinite(p).all() or p.sum() <= 0:  # guard against underflow
            p = np.zeros(num_classes)
            p[rng.choice(np.flatnonzero(present))] = 1.0
        want = rng.multinomial(samples_per_client, p / p.sum())
        take: list[int] = []
        for c in range(num_classes):
            k = min(int(want[c]), len(pools[c]))
            take.extend(pools[c][:k])
            del pools[c][:k]
        # Classes that ran out: fill from the remaining classes, most-preferred first.
        for c in np.argsort(-p, kind="stable"):
            short = samples_per_client - len(take)
            if short == 0:
                break
            k = min(short, len(pools[c]))
            take.extend(pools[c][:k])
            del pools[c][:k]
        out.append(np.sort(np.asarray(take, dtype=np.intp)))
    return out


def split_dirichlet(
    ds: Dataset, *, num_clients: int, samples_per_client: int, alpha: float, key: Any
) -> list[Dataset]:
    """Split ``ds`` into disjoint label-skewed clients (Dirichlet class proportions).

    Each client draws class proportions ``p ~ Dirichlet(alpha * 1)`` and then
    ``samples_per_client`` labels from ``Multinomial(p)``; samples are taken without
    replacement from what is left of each class, so clients never share a sample.
    When a class runs out, the shortfall is filled from the client's other classes
    in decreasing order of ``p`` (so very late clients can be less skewed than
    asked). Small ``alpha`` (e.g. 0.1) gives a few classes per client; large
    ``alpha`` (e.g. 100) gives near-uniform classes.

    Args:
        ds: The data set.
        num_clients: Number of clients.
        samples_per_client: Samples per client (``num_clients * samples_per_client <= len(ds)``).
        alpha: Dirichlet concentration, > 0.
        key: JAX PRNG key (or int seed); the same key gives the same split.

    Returns:
        One :class:`Dataset` per client (use :func:`dirichlet_indices` for the indices).
    """
    idx = dirichlet_indices(
        ds.labels,
        ds.num_classes,
        num_clients=num_clients,
        samples_per_client=samples_per_client,
        alpha=alpha,
        key=key,
    )
    return [subset(ds, i) for i in idx]


def split_writers(ds: Dataset) -> list[Dataset]:
    """One client per writer (FEMNIST), in increasing writer id.

    Raises:
        DataError: If ``ds.writers`` is ``None``.
    """
    if ds.writers is None:
        raise DataError(
            f"{ds.name} has no writer ids (Dataset.writers is None); "
            "split_writers needs FEMNIST (load('femnist', root=...))"
        )
    return [subset(ds, np.flatnonzero(ds.writers == w)) for w in np.unique(ds.writers)]


def train_test_split(ds: Dataset, *, test_fraction: float, key: Any) -> tuple[Dataset, Dataset]:
    """Randomly split ``ds`` into disjoint train and test sets.

    Args:
        ds: The data set.
        test_fraction: Fraction of samples (rounded) for the test set, in (0, 1).
        key: JAX PRNG key (or int seed).

    Returns:
        ``(train, test)``, each keeping the original sample order.
    """
    if not 0 < test_fraction < 1:
        raise DataError(f"test_fraction must lie in (0, 1), got {test_fraction}")
    n = len(ds)
    n_test = round(n * test_fraction)
    if n_test < 1 or n_test >= n:
        raise DataError(
            f"test_fraction={test_fraction} of {n} samples leaves an empty train or test set"
        )
    perm = _rng(key).permutation(n)
    return subset(ds, np.sort(perm[n_test:])), subset(ds, np.sort(perm[:n_test]))
