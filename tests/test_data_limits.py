"""Crafted inputs against the data loaders (issue 17): each gives a DataError naming the
file and what was wrong, with bounded memory and nothing left on disk.

Peak memory is measured in a fresh subprocess, before and after the one call, so this
process's own history does not count. On Linux the measure is the process's ``VmHWM``
(peak resident set of its own address space, reset to the current size just before the
call through ``/proc/self/clear_refs``): ``resource.getrusage``'s ``ru_maxrss`` is not
usable there, because Linux carries the parent's resident size at ``fork`` over the
``exec`` (a child of this JAX-loaded process starts with a ~200 MiB "peak"). Elsewhere
``ru_maxrss`` is used. The subprocess imports ``leakage_lab.data`` without the package's
``__init__`` (no JAX), which keeps each measurement to about a second.
"""

from __future__ import annotations

import gzip
import http.server
import io
import json
import os
import struct
import subprocess
import sys
import tarfile
import textwrap
import threading
import time
from pathlib import Path

import pytest

from leakage_lab import data

MiB = 1 << 20
MNIST_TRAIN_IMAGES = 16 + 60_000 * 784  # 47,040,016 bytes: the largest file the loader expects
CIFAR10_BATCH = 10_000 * 3073  # 30,730,000 bytes
PACKAGE_DIR = Path(data.__file__).resolve().parent.parent  # the leakage_lab folder


def idx_header(type_code: int, dims) -> bytes:
    return bytes([0, 0, type_code, len(dims)]) + struct.pack(f">{len(dims)}I", *dims)


def labels_file(root: Path, n: int = 60_000) -> None:
    (root / "train-labels-idx1-ubyte").write_bytes(idx_header(0x08, (n,)) + bytes(n))


def gzip_bomb(path: Path, head: bytes, mib: int) -> None:
    """``head`` then ``mib`` MiB of zeros, as a multi-member gzip of a few hundred KiB."""
    zeros = gzip.compress(bytes(MiB), compresslevel=9)
    with open(path, "wb") as fh:
        fh.write(gzip.compress(head + bytes(MiB), compresslevel=9))
        for _ in range(mib - 1):
            fh.write(zeros)


def measure(call: str, root: Path) -> dict:
    """Runs ``call`` (an expression over ``data``, ``root``) in a fresh interpreter.

    Returns ``{"error": type name, "message": str, "growth": bytes of peak-RSS growth}``.
    """
    script = textwrap.dedent(f"""
        import json, resource, sys, types
        from pathlib import Path
        pkg = types.ModuleType("leakage_lab")
        pkg.__path__ = [{str(PACKAGE_DIR)!r}]
        sys.modules["leakage_lab"] = pkg
        from leakage_lab import data
        from leakage_lab.data import download, formats
        root = Path({str(root)!r})

        def peak():
            try:
                with open("/proc/self/status") as fh:
                    line = next(x for x in fh if x.startswith("VmHWM:"))
                return int(line.split()[1])
            except (OSError, StopIteration):
                return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

        try:
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")  # reset the peak to the current resident size
        except OSError:
            pass
        before = peak()
        try:
            {call}
            out = {{"error": None, "message": ""}}
        except BaseException as err:
            out = {{"error": type(err).__name__, "message": str(err)}}
        after = peak()
        out["growth"] = (after - before) * 1024
        print(json.dumps(out))
    """)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def check_refused(result: dict, *, names: str, says: str, expected_bytes: int) -> None:
    """DataError naming ``names`` and saying ``says``; peak RSS growth < 2x the expected size."""
    assert result["error"] == "DataError", result
    assert names in result["message"] and says in result["message"], result["message"]
    assert result["growth"] < 2 * expected_bytes, (
        f"peak RSS grew by {result['growth'] / MiB:.1f} MiB, over 2 x "
        f"{expected_bytes / MiB:.1f} MiB expected"
    )
    print(f"peak RSS growth {result['growth'] / MiB:.1f} MiB: {result['message']}")


# ----------------------------------------------------------------------------- gzip / IDX


def test_gzip_bomb_behind_a_valid_header(tmp_path):
    """A 256 MiB gzip bomb whose header announces MNIST's own shape: read only that much."""
    bomb = tmp_path / "train-images-idx3-ubyte.gz"
    gzip_bomb(bomb, idx_header(0x08, (60_000, 28, 28)), 256)
    labels_file(tmp_path)
    assert bomb.stat().st_size < MiB
    before = listing(tmp_path)
    result = measure('data.load("mnist", root=root)', tmp_path)
    check_refused(result, names=str(bomb), says="longer than its header says",
                  expected_bytes=MNIST_TRAIN_IMAGES)
    assert listing(tmp_path) == before


def test_gzip_bomb_with_a_bad_header_stops_at_the_header(tmp_path):
    bomb = tmp_path / "train-images-idx3-ubyte.gz"
    gzip_bomb(bomb, b"", 512)  # 512 MiB of zeros: magic 00 00 00 00 is no IDX type
    labels_file(tmp_path)
    result = measure('data.load("mnist", root=root)', tmp_path)
    check_refused(result, names=str(bomb), says="not an IDX file", expected_bytes=4 * MiB)


@pytest.mark.parametrize(
    ("dims", "type_code", "says"),
    [
        ((0xFFFFFFFF,) * 3, 0x0E, "more than the 47040016 bytes expected"),  # > int64
        ((1_400_000, 28, 28), 0x08, "more than the 47040016 bytes expected"),  # 1.1 GB
        ((60_000, 784), 0x08, "expected an IDX array with 3 dimensions"),
    ],
)
def test_idx_header_sizes_use_python_ints(tmp_path, dims, type_code, says):
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(idx_header(type_code, dims) + bytes(2 * MiB)))
    labels_file(tmp_path)
    result = measure('data.load("mnist", root=root)', tmp_path)
    check_refused(result, names=str(path), says=says, expected_bytes=4 * MiB)


def test_idx_ndim_100(tmp_path):
    (tmp_path / "train-images-idx3-ubyte").write_bytes(bytes([0, 0, 8, 100]) + bytes(400))
    labels_file(tmp_path, 3)
    with pytest.raises(data.DataError, match=r"train-images-idx3-ubyte is not a supported IDX "
                                             r"file: it declares 100 dimensions, at most 4"):
        data.load("mnist", root=tmp_path)
    with pytest.raises(data.DataError, match="declares 100 dimensions"):
        data.parse_idx(bytes([0, 0, 8, 100]) + bytes(400))
    with pytest.raises(data.DataError, match="declares 0 dimensions"):
        data.parse_idx(bytes([0, 0, 8, 0]))
    big = idx_header(0x0E, (0xFFFFFFFF,) * 4)
    with pytest.raises(data.DataError, match="is truncated or corrupt"):
        data.parse_idx(big)  # the product overflows int64; Python ints do not


def test_oversized_plain_idx_and_cifar_files_are_refused_by_size(tmp_path):
    images = tmp_path / "train-images-idx3-ubyte"
    with open(images, "wb") as fh:  # sparse: costs no disk
        fh.truncate(MNIST_TRAIN_IMAGES + 1)
    labels_file(tmp_path)
    with pytest.raises(data.DataError, match=f"{images} is {MNIST_TRAIN_IMAGES + 1} bytes, more"):
        data.load("mnist", root=tmp_path)
    batch = tmp_path / "test_batch.bin"
    with open(batch, "wb") as fh:
        fh.truncate(CIFAR10_BATCH + 3073)
    with pytest.raises(data.DataError, match=f"{batch} is {CIFAR10_BATCH + 3073} bytes, more"):
        data.load("cifar10", root=tmp_path, split="test")


# ----------------------------------------------------------------------------- tar


def tar_claiming(path: Path, name: str, size: int) -> None:
    """A tiny .tar.gz whose one member header declares ``size`` bytes (no data follow)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        info = tarfile.TarInfo(name)
        info.size = size
        tar.addfile(info)  # header only
    path.write_bytes(gzip.compress(buf.getvalue()))


def test_tar_member_claiming_40_gib(tmp_path):
    archive = tmp_path / "cifar-10-binary.tar.gz"
    tar_claiming(archive, "cifar-10-batches-bin/test_batch.bin", 40 << 30)
    assert archive.stat().st_size < 2048
    before = listing(tmp_path)
    result = measure('data.load("cifar10", root=root, split="test")', tmp_path)
    check_refused(result, names=f"{archive}: member cifar-10-batches-bin/test_batch.bin",
                  says=f"declares {40 << 30} bytes, more than the {CIFAR10_BATCH} bytes expected",
                  expected_bytes=CIFAR10_BATCH)
    assert listing(tmp_path) == before


def test_tar_other_member_too_large_and_too_many_entries(tmp_path):
    archive = tmp_path / "cifar-10-binary.tar.gz"
    tar_claiming(archive, "cifar-10-batches-bin/readme.html", 1 << 40)
    with pytest.raises(data.DataError, match="member cifar-10-batches-bin/readme.html declares"):
        data.load("cifar10", root=tmp_path, split="test")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for i in range(100):
            tar.addfile(tarfile.TarInfo(f"empty{i}"))
    archive.write_bytes(gzip.compress(buf.getvalue()))
    with pytest.raises(data.DataError, match="more than 64 entries"):
        data.load("cifar10", root=tmp_path, split="test")


# ----------------------------------------------------------------------------- FEMNIST JSON

GOOD_X = [[0.5] * 784]

MALFORMED = {
    "top level is a list": [1, 2],
    "users is an object": {"users": {"a": 1}, "user_data": {}},
    "users is a string": {"users": "abc", "user_data": {}},
    "users holds lists": {"users": [["a"]], "user_data": {}},
    "user_data is a list": {"users": ["a"], "user_data": [1]},
    "num_samples is a string": {"users": ["a"], "num_samples": "1",
                                "user_data": {"a": {"x": GOOD_X, "y": [0]}}},
    "num_samples too short": {"users": ["a", "b"], "num_samples": [1],
                              "user_data": {"a": {"x": GOOD_X, "y": [0]}}},
    "record is a list": {"users": ["a"], "user_data": {"a": [GOOD_X, [0]]}},
    "x is an object": {"users": ["a"], "user_data": {"a": {"x": {"0": 1}, "y": [0]}}},
    "x rows are strings": {"users": ["a"], "user_data": {"a": {"x": ["abc"], "y": [0]}}},
    "x holds strings": {"users": ["a"], "user_data": {"a": {"x": [["a"] * 784], "y": [0]}}},
    "x nested deeper": {"users": ["a"], "user_data": {"a": {"x": [[[0.1]] * 784], "y": [0]}}},
    "x holds objects": {"users": ["a"], "user_data": {"a": {"x": [[{}] * 784], "y": [0]}}},
    "x is not finite": {"users": ["a"], "user_data": {"a": {"x": [[1e400] * 784], "y": [0]}}},
    "y holds floats": {"users": ["a"], "user_data": {"a": {"x": GOOD_X, "y": [0.5]}}},
    "y holds booleans": {"users": ["a"], "user_data": {"a": {"x": GOOD_X, "y": [True]}}},
    "y holds a huge int": {"users": ["a"], "user_data": {"a": {"x": GOOD_X, "y": [10**30]}}},
    "y is a number": {"users": ["a"], "user_data": {"a": {"x": GOOD_X, "y": 3}}},
    "y too long": {"users": ["a"], "user_data": {"a": {"x": GOOD_X, "y": [0, 1]}}},
    "label out of range": {"users": ["a"], "user_data": {"a": {"x": GOOD_X, "y": [62]}}},
}


@pytest.mark.parametrize("case", [*MALFORMED, "deeply nested", "not UTF-8", "NaN pixels"])
def test_malformed_femnist_json_gives_data_error(tmp_path, case):
    path = tmp_path / "all_data_0.json"
    if case == "deeply nested":
        path.write_text("[" * 100_000 + "]" * 100_000)  # RecursionError inside json
    elif case == "not UTF-8":
        path.write_bytes(b'{"users": ["\xff\xfe"]}')
    elif case == "NaN pixels":
        path.write_text('{"users": ["a"], "user_data": {"a": {"x": [[' + ", ".join(["NaN"] * 784)
                        + ']], "y": [0]}}}')
    else:
        path.write_text(json.dumps(MALFORMED[case]))
    with pytest.raises(data.DataError) as err:
        data.load("femnist", root=tmp_path)
    assert type(err.value) is data.DataError
    assert case == "label out of range" or str(path) in str(err.value), str(err.value)
    assert listing(tmp_path) == ["all_data_0.json"]


def test_oversized_femnist_json_is_refused_before_parsing(tmp_path):
    from leakage_lab.data import formats

    path = tmp_path / "all_data_0.json"
    with open(path, "wb") as fh:
        fh.truncate(formats.LEAF_MAX_BYTES + 1)
    with pytest.raises(data.DataError, match=f"{path} is {formats.LEAF_MAX_BYTES + 1} bytes"):
        data.load("femnist", root=tmp_path)


# ----------------------------------------------------------------------------- downloads


class _Crafted(http.server.BaseHTTPRequestHandler):
    """/big: 64 MiB with no Content-Length; /liar: says 2 GiB; /slow: 1 byte per 0.2 s."""

    protocol_version = "HTTP/1.0"

    def log_message(self, *args):
        pass

    def do_GET(self):
        try:
            self.send_response(200)
            if self.path == "/liar":
                self.send_header("Content-Length", str(2 << 30))
            elif self.path == "/slow":
                self.send_header("Content-Length", "1000")
            self.end_headers()
            if self.path == "/big":
                block = bytes(MiB)
                for _ in range(64):
                    self.wfile.write(block)
            elif self.path == "/slow":
                for _ in range(1000):
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    time.sleep(0.2)
        except (BrokenPipeError, ConnectionResetError):
            pass


@pytest.fixture
def crafted_server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Crafted)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def test_download_body_over_the_cap(crafted_server, tmp_path):
    dest = tmp_path / "dl" / "cifar-10-binary.tar.gz"
    call = (f"data.fetch({crafted_server + 'big'!r}, root / 'dl' / 'cifar-10-binary.tar.gz', "
            f"sha256=None, max_bytes={4 * MiB})")
    result = measure(call, tmp_path)
    check_refused(result, names=crafted_server + "big", says=f"sent more than the {4 * MiB} bytes",
                  expected_bytes=4 * MiB)
    assert listing(tmp_path) == ["dl"]  # no partial file
    with pytest.raises(data.DataError, match=f"announces {2 << 30} bytes, more than"):
        data.fetch(crafted_server + "liar", dest, sha256=None, max_bytes=4 * MiB)
    assert listing(tmp_path) == ["dl"]


def test_download_deadline_stops_a_trickling_server(crafted_server, tmp_path):
    dest = tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz"
    start = time.monotonic()
    with pytest.raises(data.DataError, match=r"took longer than its limit of 1 s"):
        data.fetch(crafted_server + "slow", dest, sha256=None, timeout=1, max_seconds=1.0)
    assert time.monotonic() - start < 3.0
    assert listing(tmp_path) == ["mnist"]


def test_downloads_are_capped_at_the_published_sizes(monkeypatch, crafted_server, tmp_path):
    from leakage_lab.data import download

    assert set(download.SIZES) == {f for files in data.DOWNLOADS.values() for f in files}
    big = ((crafted_server + "big",), None)
    monkeypatch.setitem(data.DOWNLOADS, "mnist", {"t10k-images-idx3-ubyte.gz": big,
                                                  "t10k-labels-idx1-ubyte.gz": big})
    with pytest.raises(data.DataError, match="sent more than the 1648877 bytes"):
        data.load("mnist", root=tmp_path, split="test", download=True)
    assert listing(tmp_path) == []
