"""Decoders for the real data sets' own file formats, each with a size limit.

* IDX (MNIST, EMNIST): ``00 00 <type> <ndim>``, ``ndim`` big-endian uint32 sizes, data.
* CIFAR binary: records of label byte(s) then 3,072 pixel bytes (R, G, B planes),
  in plain files or inside the ``.tar.gz`` archive (read without extracting).
* LEAF JSON (FEMNIST): ``{"users": [...], "num_samples": [...], "user_data":
  {user: {"x": [[784 floats], ...], "y": [ints]}}}``.

Loaders never unpickle. Every reader takes the largest size its file may have (the
loaders pass the real data set's published sizes) and refuses anything larger before
reading it; gzip is decompressed as a stream and the IDX header is checked as soon as
its bytes arrive (see :mod:`leakage_lab.data.limits`).

    >>> import numpy as np
    >>> blob = bytes([0, 0, 0x08, 2, 0, 0, 0, 2, 0, 0, 0, 3]) + bytes(range(6))
    >>> parse_idx(blob).tolist()
    [[0, 1, 2], [3, 4, 5]]
    >>> parse_idx(bytes([0, 0, 0x08, 100]))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    leakage_lab.data.dataset.DataError: ... it declares 100 dimensions, at most 4 are expected
"""

from __future__ import annotations

import io
import json
import math
import os
import struct
import tarfile
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from leakage_lab.data.dataset import DataError
from leakage_lab.data.limits import (
    MiB,
    check_file_size,
    expect_end,
    open_stream,
    read_exactly,
)

__all__ = [
    "IDX_MAX_NDIM",
    "LEAF_MAX_BYTES",
    "parse_cifar",
    "parse_idx",
    "read_cifar_file",
    "read_idx",
    "read_leaf_json",
    "read_tar_members",
]

# --------------------------------------------------------------------------------------
# IDX
# --------------------------------------------------------------------------------------

IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
#: The most dimensions an IDX file may declare (MNIST images have 3, labels 1).
IDX_MAX_NDIM = 4


def _idx_magic(head: bytes, source: str) -> tuple[np.dtype, int]:
    """The dtype and ndim declared by the 4 magic bytes ``head``."""
    if len(head) < 4 or head[0] != 0 or head[1] != 0 or head[2] not in IDX_TYPES:
        raise DataError(
            f"{source} is not an IDX file: expected magic bytes 00 00 <type> <ndim> with "
            f"type one of {sorted(hex(t) for t in IDX_TYPES)}, got {bytes(head[:4]).hex(' ')!r}"
        )
    ndim = head[3]
    if not 1 <= ndim <= IDX_MAX_NDIM:
        raise DataError(
            f"{source} is not a supported IDX file: it declares {ndim} dimensions, "
            f"at most {IDX_MAX_NDIM} are expected"
        )
    return np.dtype(IDX_TYPES[head[2]]), ndim


def _idx_total(dims: tuple[int, ...], dtype: np.dtype, source: str, max_bytes: int | None,
               ndim: int | None) -> int:
    """The file size the header announces (Python ints: no overflow), checked."""
    if ndim is not None and len(dims) != ndim:
        raise DataError(
            f"{source}: expected an IDX array with {ndim} dimensions, the header says "
            f"shape {list(dims)}"
        )
    total = 4 + 4 * len(dims) + math.prod(dims) * dtype.itemsize
    if max_bytes is not None and total > max_bytes:
        raise DataError(
            f"{source}: the header says shape {list(dims)} ({total} bytes in all), more than "
            f"the {max_bytes} bytes expected for this file; it is damaged or crafted"
        )
    return total


def parse_idx(buf: bytes, source: str = "<bytes>", *, max_bytes: int | None = None,
              ndim: int | None = None) -> np.ndarray:
    """Decode an IDX file (the MNIST format) held in ``buf``.

    Args:
        buf: The whole (uncompressed) file.
        source: Name used in error messages.
        max_bytes: The largest file size accepted (``None``: any).
        ndim: The number of dimensions expected (``None``: any from 1 to 4).

    Returns:
        The array with the shape given in the header.

    Raises:
        DataError: If the magic number is wrong, ``ndim`` is outside 1..4, or the size
            disagrees with the header.
    """
    dtype, nd = _idx_magic(buf[:4], source)
    header = 4 + 4 * nd
    if len(buf) < header:
        raise DataError(
            f"{source} is truncated: the header needs {header} bytes, file has {len(buf)}"
        )
    dims = struct.unpack(f">{nd}I", buf[4:header])
    expected = _idx_total(dims, dtype, source, max_bytes, ndim)
    if len(buf) != expected:
        raise DataError(
            f"{source} is truncated or corrupt: header says shape {list(dims)} "
            f"({expected} bytes in all), file has {len(buf)} bytes"
        )
    array = np.frombuffer(buf, dtype=dtype, offset=header).reshape(dims)
    return array.astype(dtype.newbyteorder("="), copy=False)


def read_idx(path: str | os.PathLike, *, max_bytes: int, ndim: int | None = None) -> np.ndarray:
    """Read an IDX file, gzipped or not, holding at most ``max_bytes`` (uncompressed).

    The header is checked as soon as its bytes are decompressed, so a file announcing
    more than ``max_bytes`` (or the wrong number of dimensions) is refused before its
    data are read, and a gzip stream that goes on past the announced size is refused
    after one more byte. Peak memory is the announced size plus one 1 MiB chunk.
    """
    path = Path(path)
    source = str(path)
    with open_stream(path, max_bytes) as (stream, _):
        dtype, nd = _idx_magic(stream.read(4), source)
        raw_dims = stream.read(4 * nd)
        if len(raw_dims) != 4 * nd:
            raise DataError(f"{source} is truncated: the header needs {4 + 4 * nd} bytes")
        dims = struct.unpack(f">{nd}I", raw_dims)
        total = _idx_total(dims, dtype, source, max_bytes, ndim)
        try:
            body = read_exactly(stream, total - 4 - 4 * nd, source)
        except DataError as err:
            raise DataError(
                f"{source} is truncated or corrupt: header says shape {list(dims)} "
                f"({total} bytes in all), the file ends before that ({err})"
            ) from None
        expect_end(stream, source, f"its header says (shape {list(dims)}, {total} bytes)")
    array = np.frombuffer(body, dtype=dtype).reshape(dims)
    return array.astype(dtype.newbyteorder("="), copy=False)


# --------------------------------------------------------------------------------------
# CIFAR binary
# --------------------------------------------------------------------------------------

CIFAR_PIXELS = 3 * 32 * 32


def _check_records(size: int, label_bytes: int, source: str) -> int:
    """The CIFAR record size; a DataError unless ``size`` is a positive multiple of it."""
    record = label_bytes + CIFAR_PIXELS
    if size == 0 or size % record:
        raise DataError(
            f"{source} is truncated or not a CIFAR binary file: its size {size} is not "
            f"a positive multiple of the {record}-byte record "
            f"({label_bytes} label byte(s) + 3072 pixels)"
        )
    return record


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
    record = _check_records(len(buf), label_bytes, source)
    rows = np.frombuffer(buf, dtype=np.uint8).reshape(-1, record)
    labels = rows[:, label_bytes - 1].copy()
    images = rows[:, label_bytes:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels


def read_cifar_file(path: str | os.PathLike, label_bytes: int, *, max_records: int
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Read a CIFAR binary file of at most ``max_records`` records (size checked first)."""
    path = Path(path)
    size = check_file_size(path, max_records * (label_bytes + CIFAR_PIXELS))
    _check_records(size, label_bytes, str(path))
    return parse_cifar(path.read_bytes(), label_bytes, str(path))


def read_tar_members(
    path: str | os.PathLike,
    members: Mapping[str, int],
    *,
    max_archive_bytes: int,
    max_other_bytes: int | None = None,
    max_entries: int = 64,
) -> dict[str, bytearray]:
    """Read the regular-file ``members`` of a (compressed) tar archive, without extracting.

    Args:
        path: The archive.
        members: Member name -> the largest size it may have. Each member's declared
            size is checked *before* it is read.
        max_archive_bytes: The largest the archive file itself may be.
        max_other_bytes: The largest any other member may declare (the reader
            decompresses through it to skip it); default the largest of ``members``.
        max_entries: The most archive entries examined.

    Returns:
        Member name -> its bytes. Symlinks, folders and ``../`` names are never read.
    """
    path = Path(path)
    check_file_size(path, max_archive_bytes)
    max_other = max(members.values()) if max_other_bytes is None else max_other_bytes
    found: dict[str, bytearray] = {}
    try:
        with tarfile.open(path, "r:*") as tar:
            for count, info in enumerate(tar, start=1):
                if count > max_entries:
                    raise DataError(
                        f"{path} has more than {max_entries} entries; the data set's archive "
                        "has a handful, so it is not the expected archive"
                    )
                limit = members.get(info.name, max_other)
                if info.size > limit:
                    raise DataError(
                        f"{path}: member {info.name} declares {info.size} bytes, more than "
                        f"the {limit} bytes expected; the archive is damaged or crafted"
                    )
                if info.name in members and info.isfile():
                    handle = tar.extractfile(info)
                    found[info.name] = read_exactly(handle, info.size, f"{path}:{info.name}")
                    if len(found) == len(members):
                        break
    except DataError:
        raise
    except (tarfile.TarError, EOFError, OSError, zlib.error) as err:
        raise DataError(
            f"{path} is a damaged archive ({err}); delete it and download it again"
        ) from err
    missing = [m for m in members if m not in found]
    if missing:
        raise DataError(f"{path} is incomplete: missing members {', '.join(missing)}")
    return found


# --------------------------------------------------------------------------------------
# LEAF JSON (FEMNIST)
# --------------------------------------------------------------------------------------

#: The largest LEAF JSON file read (LEAF's FEMNIST files are ~100-200 MB each).
LEAF_MAX_BYTES = 512 * MiB


def _leaf_error(path: Path, what: str) -> DataError:
    return DataError(
        f"{path}: {what}; expected a LEAF JSON object {{'users': [str], 'num_samples': [int], "
        "'user_data': {user: {'x': [[784 numbers in [0, 1]], ...], 'y': [int, ...]}}}"
    )


def _kind(value: Any) -> str:
    return type(value).__name__


def read_leaf_json(path: str | os.PathLike, *, max_bytes: int = LEAF_MAX_BYTES,
                   pixels: int = 784) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Read one LEAF JSON file: ``(user, x float32 [n, pixels], y int64 [n])`` per user.

    Every type is checked, so a malformed file raises a DataError naming the file
    and the entry at fault (never an AttributeError, TypeError or RecursionError).
    """
    path = Path(path)
    check_file_size(path, max_bytes)
    try:
        with open(path, "rb") as fh:
            blob = json.load(io.TextIOWrapper(fh, encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"{path} is not valid JSON ({err}); it may be truncated") from err
    except RecursionError:
        raise DataError(f"{path} is not a LEAF file: its JSON is nested too deeply") from None
    if not isinstance(blob, dict) or not {"users", "user_data"} <= blob.keys():
        keys = sorted(map(str, blob)) if isinstance(blob, dict) else _kind(blob)
        raise DataError(
            f"{path}: expected a LEAF JSON object with keys 'users', "
            f"'num_samples' and 'user_data', got {keys}"
        )
    users, user_data, counts = blob["users"], blob["user_data"], blob.get("num_samples")
    if not isinstance(users, list) or not all(isinstance(u, str) for u in users):
        raise _leaf_error(path, f"'users' must be a list of strings, got {_kind(users)}")
    if not isinstance(user_data, dict):
        raise _leaf_error(path, f"'user_data' must be an object, got {_kind(user_data)}")
    if counts is not None and not (
        isinstance(counts, list) and len(counts) == len(users)
        and all(isinstance(c, int) and not isinstance(c, bool) for c in counts)
    ):
        raise _leaf_error(path, "'num_samples' must be a list of ints, one per user")
    out = []
    for i, user in enumerate(users):
        record = user_data.get(user)
        if not isinstance(record, dict) or "x" not in record or "y" not in record:
            raise DataError(f"{path}: user_data[{user!r}] must have keys 'x' and 'y'")
        x, y = record["x"], record["y"]
        if not isinstance(x, list) or not isinstance(y, list):
            raise _leaf_error(path, f"user {user!r}: 'x' and 'y' must be lists, got "
                                    f"{_kind(x)} and {_kind(y)}")
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in y):
            raise _leaf_error(path, f"user {user!r}: every label in 'y' must be an int")
        if not all(isinstance(row, list) and len(row) == pixels for row in x):
            bad = next(row for row in x if not (isinstance(row, list) and len(row) == pixels))
            got = f"a list of {len(bad)}" if isinstance(bad, list) else _kind(bad)
            raise DataError(
                f"{path}: user {user!r} should have x of shape [n, {pixels}] and y of shape "
                f"[n]; a row of x is {got}"
            )
        try:
            xa = np.array(x, dtype=np.float32)
            ya = np.array(y, dtype=np.int64)
        except (TypeError, ValueError, OverflowError) as err:
            raise DataError(f"{path}: user {user!r} has malformed x/y ({err})") from err
        if not x:
            xa = xa.reshape(0, pixels)
        if xa.ndim != 2 or ya.shape != (xa.shape[0],):
            raise DataError(
                f"{path}: user {user!r} should have x of shape [n, {pixels}] and y "
                f"of shape [n], got {list(xa.shape)} and {list(ya.shape)}"
            )
        if counts is not None and counts[i] != len(ya):
            raise DataError(
                f"{path}: num_samples says {counts[i]} for user {user!r} but it has {len(ya)}"
            )
        if xa.size and not (np.isfinite(xa).all() and xa.min() >= 0 and xa.max() <= 1):
            raise DataError(f"{path}: user {user!r} has pixel values outside [0, 1]")
        out.append((user, xa, ya))
    return out
