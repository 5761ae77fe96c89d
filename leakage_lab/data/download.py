"""Downloads over HTTPS with a SHA-256 check, a size cap and a deadline.

:func:`fetch` streams a URL to a temporary file beside its destination and renames it
only once the digest matches; a body larger than ``max_bytes``, a download running past
``max_seconds`` in all (however slowly the server trickles), a refused URL or a
checksum mismatch raise :class:`DataError` and leave nothing on disk. ``DOWNLOADS``
lists the official CIFAR and MNIST files with their digests, ``SIZES`` their
published sizes (each download's cap).

    >>> fetch("http://example.org/x.gz", "/tmp/x.gz", sha256=None)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    leakage_lab.data.dataset.DataError: refusing to download ...: only https:// URLs ...
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
from collections.abc import Sequence
from pathlib import Path

from leakage_lab.data.dataset import DataError
from leakage_lab.data.limits import CHUNK, MiB

__all__ = ["DEFAULT_MAX_BYTES", "DEFAULT_MAX_SECONDS", "DOWNLOADS", "SIZES", "download", "fetch"]

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

# file name -> its published size in bytes: the download's cap (a longer body cannot
# match the checksum, so it is cut off as soon as it passes this size).
SIZES: dict[str, int] = {
    "cifar-10-binary.tar.gz": 170_052_171,
    "cifar-100-binary.tar.gz": 168_513_733,
    "train-images-idx3-ubyte.gz": 9_912_422,
    "train-labels-idx1-ubyte.gz": 28_881,
    "t10k-images-idx3-ubyte.gz": 1_648_877,
    "t10k-labels-idx1-ubyte.gz": 4_542,
}

#: The cap of a download whose size is not known.
DEFAULT_MAX_BYTES = 256 * MiB
#: The most seconds one download may take in all (connecting, redirects and body).
DEFAULT_MAX_SECONDS = 1800.0


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


def _set_read_timeout(resp, seconds: float) -> None:
    """Bounds the next socket read of ``resp`` to ``seconds`` (where the socket is reachable)."""
    sock = getattr(getattr(getattr(resp, "fp", None), "raw", None), "_sock", None)
    if sock is not None:
        sock.settimeout(max(seconds, 0.01))


def fetch(
    url: str,
    dest: str | os.PathLike,
    *,
    sha256: str | None,
    timeout: float = 60.0,
    max_bytes: int | None = None,
    max_seconds: float | None = None,
) -> Path:
    """Download ``url`` to ``dest``, checking its SHA-256; nothing partial is left behind.

    The file is written to a temporary file beside ``dest`` and renamed only once
    its digest matches, so an existing ``dest`` is never damaged by a failed download.

    Args:
        url: An ``https://`` URL (``http://`` is accepted only for loopback hosts).
        dest: Where to write the file; parent folders are created.
        sha256: Expected hex SHA-256. ``None`` skips verification: the digest is
            printed and a warning says the file was not verified.
        timeout: Seconds to wait for the server on any one read.
        max_bytes: The largest body accepted (default ``DEFAULT_MAX_BYTES``): a
            ``Content-Length`` above it is refused before the body is read, and a body
            that grows past it is cut off.
        max_seconds: The most seconds the whole download may take (default
            ``DEFAULT_MAX_SECONDS``), however slowly the server sends.

    Returns:
        ``dest`` as a :class:`~pathlib.Path`.

    Raises:
        DataError: For a refused URL, a failed, oversized or overlong download, or a
            checksum mismatch.
    """
    _check_url(url)
    max_bytes = DEFAULT_MAX_BYTES if max_bytes is None else int(max_bytes)
    max_seconds = DEFAULT_MAX_SECONDS if max_seconds is None else float(max_seconds)
    deadline = time.monotonic() + max_seconds
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    digest = hashlib.sha256()
    too_slow = (f"the download of {url} took longer than its limit of {max_seconds:g} s "
                "and was stopped; nothing was kept")
    try:
        try:
            opener = urllib.request.build_opener(_SafeRedirects)
            with os.fdopen(fd, "wb") as out, opener.open(
                url, timeout=min(timeout, max_seconds)
            ) as resp:
                declared = resp.headers.get("Content-Length")
                if declared is not None and declared.strip().isdigit() \
                        and int(declared) > max_bytes:
                    raise DataError(
                        f"{url} announces {int(declared)} bytes, more than the {max_bytes} "
                        f"bytes expected for {dest.name}; nothing was downloaded"
                    )
                size = 0
                while True:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise DataError(too_slow)
                    _set_read_timeout(resp, min(timeout, remaining))
                    chunk = resp.read1(CHUNK)  # what has arrived: never waits for a full chunk
                    if not chunk:
                        break
                    size += len(chunk)
                    if size > max_bytes:
                        raise DataError(
                            f"{url} sent more than the {max_bytes} bytes expected for "
                            f"{dest.name}; the download was stopped and nothing was kept"
                        )
                    digest.update(chunk)
                    out.write(chunk)
        except DataError:
            raise
        except (urllib.error.URLError, OSError, ValueError) as err:
            if time.monotonic() >= deadline:
                raise DataError(too_slow) from err
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


def download(name: str, files: Sequence[str], root: Path) -> None:
    """Fetch ``files`` of data set ``name`` (a key of ``DOWNLOADS``) into ``root``.

    Files already there are kept. Each mirror is tried in turn; a checksum mismatch
    stops at once. Each download is capped at the file's published size (``SIZES``).
    """
    table = DOWNLOADS[name]
    for file in files:
        dest = root / file
        if dest.is_file():
            continue
        urls, digest = table[file]
        errors = []
        for url in urls:
            try:
                fetch(url, dest, sha256=digest, max_bytes=SIZES.get(file))
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
