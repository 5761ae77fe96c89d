"""Reading untrusted files with byte caps, so that a crafted file fails early and cheaply.

Every reader in :mod:`leakage_lab.data.formats` knows how large its file can be (the
published size of the real data set) and reads through these helpers: the file's size
is checked before it is opened, gzip is decompressed as a stream (never whole), and
exactly as many bytes as the header announces are read into one preallocated buffer.
A file that is larger, smaller or longer than it says raises :class:`DataError` naming
the file; memory never exceeds the expected size (plus a 1 MiB chunk).

    >>> import gzip, io
    >>> stream = io.BytesIO(b"abcdef")
    >>> bytes(read_exactly(stream, 4, "<bytes>"))
    b'abcd'
    >>> read_exactly(stream, 4, "<bytes>")
    Traceback (most recent call last):
    ...
    leakage_lab.data.dataset.DataError: <bytes> is truncated: expected 4 more bytes, got 2
"""

from __future__ import annotations

import contextlib
import gzip
import os
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from leakage_lab.data.dataset import DataError

__all__ = [
    "CHUNK",
    "GZIP_MAGIC",
    "MiB",
    "check_file_size",
    "expect_end",
    "open_stream",
    "read_exactly",
]

MiB = 1 << 20
CHUNK = MiB
GZIP_MAGIC = b"\x1f\x8b"

#: What a damaged compressed stream raises while being read.
STREAM_ERRORS = (EOFError, OSError, zlib.error)


def is_gzip(path: Path) -> bool:
    """Whether ``path`` starts with the gzip magic bytes."""
    with open(path, "rb") as fh:
        return fh.read(2) == GZIP_MAGIC


def check_file_size(path: Path, max_bytes: int, *, compressed: bool = False) -> int:
    """The size of ``path`` on disk; a DataError if it exceeds ``max_bytes``.

    ``compressed``: ``max_bytes`` is the *decompressed* limit; gzip can grow
    incompressible data by a little (at most ~0.1 % plus a header), so that much is allowed.
    """
    size = os.stat(path).st_size
    limit = max_bytes + max_bytes // 500 + 1024 if compressed else max_bytes
    if size > limit:
        raise DataError(
            f"{path} is {size} bytes, more than the {limit} bytes expected for this file; "
            "it is not the file the loader expects (or it is damaged)"
        )
    return size


@contextlib.contextmanager
def open_stream(path: Path, max_bytes: int) -> Iterator[tuple[BinaryIO, bool]]:
    """Opens ``path`` for streamed reading, decompressing gzip on the fly.

    Yields ``(stream, gzipped)``. The file's size on disk is checked against
    ``max_bytes`` (the largest the *decompressed* content may be) first. Errors of
    the gzip stream while reading become a DataError saying the file is damaged.
    """
    path = Path(path)
    gz = is_gzip(path)
    check_file_size(path, max_bytes, compressed=gz)
    with open(path, "rb") as raw:
        stream = gzip.GzipFile(fileobj=raw, mode="rb") if gz else raw
        try:
            yield stream, gz
        except DataError:
            raise
        except STREAM_ERRORS as err:
            what = "a damaged gzip file" if gz else "a file that could not be read"
            raise DataError(f"{path} is {what} ({err}); download it again") from err
        finally:
            stream.close()


def read_exactly(stream: BinaryIO, n: int, source: str) -> bytearray:
    """Reads exactly ``n`` bytes of ``stream`` into one buffer, a chunk at a time."""
    buf = bytearray(n)
    view = memoryview(buf)
    pos = 0
    while pos < n:
        got = stream.readinto(view[pos : min(n, pos + CHUNK)])
        if not got:
            view.release()
            raise DataError(f"{source} is truncated: expected {n} more bytes, got {pos}")
        pos += got
    view.release()
    return buf


def expect_end(stream: BinaryIO, source: str, what: str) -> None:
    """A DataError unless ``stream`` is exhausted (reads at most one byte)."""
    if stream.read(1):
        raise DataError(f"{source} is longer than {what}; it is damaged or not this kind of file")
