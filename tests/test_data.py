"""Tests for leakage_lab.data: bundled sets, file formats, downloads, errors and splits."""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import io
import json
import socket
import struct
import tarfile
import threading
from pathlib import Path

import jax
import numpy as np
import pytest

from leakage_lab import data

# ----------------------------------------------------------------------------- helpers


def idx_bytes(arr: np.ndarray) -> bytes:
    arr = np.asarray(arr, dtype=np.uint8)
    return bytes([0, 0, 0x08, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()


def write_idx(path: Path, arr: np.ndarray, gz: bool) -> None:
    raw = idx_bytes(arr)
    if gz:
        path = path.with_name(path.name + ".gz")
        raw = gzip.compress(raw)
    path.write_bytes(raw)


def cifar_records(images_chw: np.ndarray, labels: np.ndarray, coarse=None) -> bytes:
    rows = []
    for i, (img, lab) in enumerate(zip(images_chw, labels, strict=True)):
        head = bytes([lab]) if coarse is None else bytes([coarse[i], lab])
        rows.append(head + img.astype(np.uint8).tobytes())
    return b"".join(rows)


def rand_u8(rng, shape):
    return rng.integers(0, 256, size=shape, dtype=np.uint8)


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep test output clean
        pass

    def do_GET(self):
        if self.path == "/redirect-away":  # a redirect to a plain-http, non-loopback host
            self.send_response(302)
            self.send_header("Location", "http://example.org/evil.bin")
            self.end_headers()
            return
        super().do_GET()


@pytest.fixture
def server(tmp_path):
    """A loopback HTTP server serving tmp_path/'served'; yields (base URL, folder)."""
    folder = tmp_path / "served"
    folder.mkdir()
    handler = functools.partial(_Quiet, directory=str(folder))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/", folder
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ----------------------------------------------------------------------------- bundled


@pytest.mark.parametrize(
    "name, shape, num_classes, min_n",
    [
        ("digits", (28, 28, 1), 10, 2000),
        ("faces", (25, 25, 1), 2, 200),
        ("tiny-images", (32, 32, 3), 7, 64),
    ],
)
def test_bundled_shapes_and_ranges(name, shape, num_classes, min_n):
    ds = data.load(name)
    assert ds.name == name
    assert ds.images.dtype == np.float32 and ds.images.shape[1:] == shape
    assert len(ds) == ds.images.shape[0] == ds.labels.shape[0] >= min_n
    assert ds.labels.dtype == np.int32
    assert 0.0 <= ds.images.min() and ds.images.max() <= 1.0 and ds.images.max() > 0.5
    assert ds.num_classes == num_classes == len(ds.class_names)
    assert set(np.unique(ds.labels)) == set(range(num_classes))  # every class present
    assert ds.writers is None


def test_bundled_details():
    digits = data.load("digits")
    assert digits.class_names == tuple("0123456789")
    assert np.all(np.bincount(digits.labels) == 500)
    faces = data.load("faces")
    assert faces.class_names == ("non-face", "face")
    assert np.all(faces.labels[:100] == 1) and np.all(faces.labels[100:] == 0)
    tiny = data.load("tiny-images")
    assert "chelsea" in tiny.class_names and len(tiny) >= 64
    assert data.load("TINY_IMAGES").name == "tiny-images"  # loose spelling accepted


def test_dataset_len_subset_replace_and_pytree():
    ds = data.load("faces")
    sub = ds.subset([0, 5, 199])
    assert len(sub) == 3 and np.array_equal(sub.labels, ds.labels[[0, 5, 199]])
    assert np.array_equal(data.subset(ds, ds.labels == 1).images, ds.images[:100])
    renamed = ds._replace(name="other")  # NamedTuple helpers still work despite __len__
    assert renamed.name == "other" and len(renamed) == 200
    assert "n=200" in repr(ds)
    leaves = jax.tree_util.tree_leaves(ds)
    assert any(leaf is ds.images for leaf in leaves)


def test_bundled_split_must_be_train():
    with pytest.raises(data.DataError, match="train_test_split"):
        data.load("digits", split="test")


# ----------------------------------------------------------------------------- IDX


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_idx_roundtrip(tmp_path, gz):
    rng = np.random.default_rng(0)
    for pre, n in (("train", 7), ("t10k", 3)):
        imgs, labs = rand_u8(rng, (n, 28, 28)), rng.integers(0, 10, n).astype(np.uint8)
        write_idx(tmp_path / f"{pre}-images-idx3-ubyte", imgs, gz)
        write_idx(tmp_path / f"{pre}-labels-idx1-ubyte", labs, gz)
        ds = data.load("mnist", root=tmp_path, split="train" if pre == "train" else "test")
        assert ds.images.shape == (n, 28, 28, 1) and ds.images.dtype == np.float32
        assert np.array_equal(np.round(ds.images[..., 0] * 255).astype(np.uint8), imgs)
        assert np.array_equal(ds.labels, labs) and ds.labels.dtype == np.int32
        assert ds.num_classes == 10


def test_emnist_is_transposed_upright(tmp_path):
    rng = np.random.default_rng(1)
    stored = rand_u8(rng, (4, 28, 28))
    labs = np.array([0, 46, 10, 36], dtype=np.uint8)
    write_idx(tmp_path / "emnist-balanced-test-images-idx3-ubyte", stored, gz=True)
    write_idx(tmp_path / "emnist-balanced-test-labels-idx1-ubyte", labs, gz=False)
    ds = data.load("emnist", root=tmp_path, split="test")
    got = np.round(ds.images[..., 0] * 255).astype(np.uint8)
    assert np.array_equal(got, stored.transpose(0, 2, 1))
    assert ds.num_classes == 47 and ds.name == "emnist-balanced"
    assert [ds.class_names[i] for i in ds.labels] == ["0", "t", "A", "a"]


def test_emnist_letters_shifted(tmp_path):
    write_idx(tmp_path / "emnist-letters-train-images-idx3-ubyte", np.zeros((2, 28, 28)), True)
    write_idx(tmp_path / "emnist-letters-train-labels-idx1-ubyte", np.array([1, 26]), True)
    ds = data.load("emnist", root=tmp_path, subset="letters")
    assert ds.labels.tolist() == [0, 25] and ds.class_names[25] == "Z"


# ----------------------------------------------------------------------------- CIFAR


def test_cifar10_folder_chw_to_hwc(tmp_path):
    rng = np.random.default_rng(2)
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    expected_imgs, expected_labs = [], []
    for i in range(1, 6):
        chw, labs = rand_u8(rng, (2, 3, 32, 32)), rng.integers(0, 10, 2).astype(np.uint8)
        (folder / f"data_batch_{i}.bin").write_bytes(cifar_records(chw, labs))
        expected_imgs.append(chw.transpose(0, 2, 3, 1))
        expected_labs.append(labs)
    ds = data.load("cifar10", root=tmp_path)
    assert ds.images.shape == (10, 32, 32, 3)
    got = np.round(ds.images * 255).astype(np.uint8)
    assert np.array_equal(got, np.concatenate(expected_imgs))
    assert np.array_equal(ds.labels, np.concatenate(expected_labs))
    # Pixel (row 3, col 5) of the green plane lands at [..., 3, 5, 1].
    assert got[0, 3, 5, 1] == expected_imgs[0][0, 3, 5, 1]
    assert ds.class_names[0] == "airplane" and ds.num_classes == 10


def test_cifar100_tar_fine_labels(tmp_path):
    rng = np.random.default_rng(3)
    chw = rand_u8(rng, (3, 3, 32, 32))
    fine, coarse = np.array([99, 0, 42], np.uint8), np.array([5, 6, 7], np.uint8)
    blob = cifar_records(chw, fine, coarse)
    with tarfile.open(tmp_path / "cifar-100-binary.tar.gz", "w:gz") as tar:
        info = tarfile.TarInfo("cifar-100-binary/test.bin")
        info.size = len(blob)
        tar.addfile(info, io.BytesIO(blob))
    ds = data.load("cifar100", root=tmp_path, split="test")
    assert ds.labels.tolist() == [99, 0, 42] and ds.num_classes == 100
    assert ds.class_names[99] == "worm" and ds.class_names[0] == "apple"
    assert np.array_equal(np.round(ds.images * 255).astype(np.uint8), chw.transpose(0, 2, 3, 1))
    with pytest.raises(data.DataError, match="missing members cifar-100-binary/train.bin"):
        data.load("cifar100", root=tmp_path, split="train")


# ----------------------------------------------------------------------------- FEMNIST


def leaf_blob(users: dict[str, tuple[np.ndarray, list[int]]]) -> dict:
    return {
        "users": list(users),
        "num_samples": [len(y) for _, y in users.values()],
        "user_data": {u: {"x": x.tolist(), "y": y} for u, (x, y) in users.items()},
    }


def test_femnist_writers_and_invert(tmp_path):
    rng = np.random.default_rng(4)
    xa, xb, xc = (rng.random((n, 784)).astype(np.float32) for n in (2, 3, 1))
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "all_data_0.json").write_text(
        json.dumps(leaf_blob({"f0001_00": (xa, [0, 61]), "f0002_11": (xb, [5, 5, 36])}))
    )
    (tmp_path / "train" / "all_data_1.json").write_text(
        json.dumps(leaf_blob({"f0003_22": (xc, [10])}))
    )
    ds = data.load("femnist", root=tmp_path)
    assert ds.images.shape == (6, 28, 28, 1) and ds.num_classes == 62
    assert np.allclose(ds.images.reshape(6, 784), np.concatenate([xa, xb, xc]))
    assert ds.labels.tolist() == [0, 61, 5, 5, 36, 10]
    assert ds.writers.tolist() == [0, 0, 1, 1, 1, 2] and ds.writers.dtype == np.int32
    assert ds.class_names[61] == "z" and ds.class_names[36] == "a"
    clients = data.split_writers(ds)
    assert [len(c) for c in clients] == [2, 3, 1]
    assert clients[1].labels.tolist() == [5, 5, 36]
    inv = data.load("femnist", root=tmp_path, invert=True)
    assert np.allclose(inv.images, 1.0 - ds.images)
    with pytest.raises(data.DataError, match="no test JSON files"):
        data.load("femnist", root=tmp_path, split="test")


def test_split_writers_needs_writers():
    with pytest.raises(data.DataError, match="no writer ids"):
        data.split_writers(data.load("faces"))


# ----------------------------------------------------------------------------- downloads


def test_fetch_ok_and_checksum_mismatch(server, tmp_path):
    base, folder = server
    payload = b"hello leakage lab" * 1000
    (folder / "file.bin").write_bytes(payload)
    dest = tmp_path / "out" / "file.bin"
    assert data.fetch(base + "file.bin", dest, sha256=sha(payload)) == dest
    assert dest.read_bytes() == payload

    wrong = "0" * 64
    other = tmp_path / "other" / "file.bin"
    with pytest.raises(data.DataError) as err:
        data.fetch(base + "file.bin", other, sha256=wrong)
    assert wrong in str(err.value) and sha(payload) in str(err.value)
    assert list(other.parent.iterdir()) == []  # no partial or temp file left

    dest.write_bytes(b"good old copy")
    with pytest.raises(data.DataError, match="kept"):
        data.fetch(base + "file.bin", dest, sha256=wrong)
    assert dest.read_bytes() == b"good old copy"
    assert [p.name for p in dest.parent.iterdir()] == ["file.bin"]


def test_fetch_unverified_warns(server, tmp_path, capsys):
    base, folder = server
    (folder / "a.txt").write_bytes(b"abc")
    with pytest.warns(UserWarning, match="without checksum verification"):
        data.fetch(base + "a.txt", tmp_path / "a.txt", sha256=None)
    assert sha(b"abc") in capsys.readouterr().err


def test_fetch_refuses_plain_http(tmp_path):
    for url in ("http://example.org/x.tar.gz", "ftp://127.0.0.1/x", "file:///etc/passwd"):
        with pytest.raises(data.DataError, match="only https"):
            data.fetch(url, tmp_path / "x", sha256=None)
    assert list(tmp_path.iterdir()) == []


def test_fetch_refuses_redirect_to_plain_http(server, tmp_path):
    base, _ = server
    with pytest.raises(data.DataError, match="only https"):
        data.fetch(base + "redirect-away", tmp_path / "r.bin", sha256=None)
    assert [p.name for p in tmp_path.iterdir()] == ["served"]


def test_fetch_unreachable_and_404(server, tmp_path):
    base, _ = server
    with pytest.raises(data.DataError, match="could not download .*404"):
        data.fetch(base + "missing.bin", tmp_path / "m.bin", sha256=None)
    url = f"http://127.0.0.1:{closed_port()}/x.bin"
    with pytest.raises(data.DataError, match="could not download"):
        data.fetch(url, tmp_path / "x.bin", sha256=None, timeout=5)
    assert [p.name for p in tmp_path.iterdir()] == ["served"]  # nothing partial left


def test_load_mnist_download(server, tmp_path, monkeypatch):
    base, folder = server
    rng = np.random.default_rng(5)
    imgs, labs = rand_u8(rng, (4, 28, 28)), np.array([3, 1, 4, 1], np.uint8)
    files = {
        "t10k-images-idx3-ubyte.gz": gzip.compress(idx_bytes(imgs)),
        "t10k-labels-idx1-ubyte.gz": gzip.compress(idx_bytes(labs)),
    }
    table = {}
    for name, blob in files.items():
        (folder / name).write_bytes(blob)
        table[name] = ((base + name,), sha(blob))
    monkeypatch.setitem(data.DOWNLOADS, "mnist", table)
    root = tmp_path / "mnist"
    ds = data.load("mnist", root=root, split="test", download=True)
    assert ds.labels.tolist() == [3, 1, 4, 1]
    assert sorted(p.name for p in root.iterdir()) == sorted(files)

    # Unreachable host: the error names the URL and says how to place the file by hand.
    dead = f"http://127.0.0.1:{closed_port()}/"
    name = "t10k-images-idx3-ubyte.gz"
    monkeypatch.setitem(data.DOWNLOADS, "mnist", {name: ((dead + name,), None)})
    with pytest.raises(data.DataError) as err:
        data.load("mnist", root=tmp_path / "empty", split="test", download=True)
    msg = str(err.value)
    assert dead + name in msg and "by hand" in msg and str(tmp_path / "empty" / name) in msg


def test_download_not_offered_for_emnist(tmp_path):
    with pytest.raises(data.DataError, match="cannot be downloaded automatically"):
        data.load("emnist", root=tmp_path, download=True)


def test_checksum_table_is_sha256():
    for files in data.DOWNLOADS.values():
        for urls, digest in files.values():
            assert all(u.startswith("https://") for u in urls)
            assert digest is None or (len(digest) == 64 and int(digest, 16) >= 0)


# ----------------------------------------------------------------------------- errors


def test_unknown_name_lists_known():
    with pytest.raises(data.DataError) as err:
        data.load("imagenet")
    for known in ("digits", "faces", "tiny-images", "cifar10", "femnist"):
        assert known in str(err.value)


def test_unknown_split():
    with pytest.raises(data.DataError, match="'train' or 'test'"):
        data.load("digits", split="val")


def test_missing_root_and_files(tmp_path):
    with pytest.raises(data.DataError, match="pass root="):
        data.load("mnist")
    with pytest.raises(data.DataError, match="does not exist"):
        data.load("cifar10", root=tmp_path / "nope")
    with pytest.raises(data.DataError) as err:
        data.load("mnist", root=tmp_path)
    assert "train-images-idx3-ubyte(.gz)" in str(err.value) and str(tmp_path) in str(err.value)
    with pytest.raises(data.DataError) as err:
        data.load("cifar10", root=tmp_path, split="test")
    assert "test_batch.bin" in str(err.value) and "cifar-10-binary.tar.gz" in str(err.value)
    with pytest.raises(data.DataError, match="emnist-byclass-train-images-idx3-ubyte"):
        data.load("emnist", root=tmp_path, subset="byclass")
    with pytest.raises(data.DataError, match="unknown EMNIST subset"):
        data.load("emnist", root=tmp_path, subset="nope")
    with pytest.raises(data.DataError, match="no train JSON files"):
        data.load("femnist", root=tmp_path)


def test_idx_bad_magic_and_truncated(tmp_path):
    good = idx_bytes(np.zeros((2, 28, 28)))
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(2)))
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"\x12\x34" + good[2:])
    with pytest.raises(data.DataError, match="not an IDX file: expected magic"):
        data.load("mnist", root=tmp_path)
    (tmp_path / "train-images-idx3-ubyte").write_bytes(good[:-10])
    with pytest.raises(data.DataError, match=r"header says shape \[2, 28, 28\]"):
        data.load("mnist", root=tmp_path)
    (tmp_path / "train-images-idx3-ubyte").unlink()
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(good)[:-20])
    with pytest.raises(data.DataError, match="damaged gzip"):
        data.load("mnist", root=tmp_path)
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(good))
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(3)))
    with pytest.raises(data.DataError, match="same N"):
        data.load("mnist", root=tmp_path)


def test_cifar_bad_record_size(tmp_path):
    (tmp_path / "test_batch.bin").write_bytes(b"\x00" * (3073 * 2 + 5))
    with pytest.raises(data.DataError, match="not a positive multiple of the 3073-byte record"):
        data.load("cifar10", root=tmp_path, split="test")
    (tmp_path / "test.bin").write_bytes(b"\x00" * 3073)
    with pytest.raises(data.DataError, match="3074-byte record"):
        data.load("cifar100", root=tmp_path, split="test")
    (tmp_path / "test_batch.bin").write_bytes(b"\x0b" + b"\x00" * 3072)  # label 11 of 10
    with pytest.raises(data.DataError, match=r"labels must lie in \[0, 10\)"):
        data.load("cifar10", root=tmp_path, split="test")
    (tmp_path / "test_batch.bin").unlink()
    (tmp_path / "cifar-10-binary.tar.gz").write_bytes(b"\x1f\x8b garbage")
    with pytest.raises(data.DataError, match="damaged archive"):
        data.load("cifar10", root=tmp_path, split="test")


def test_femnist_bad_json(tmp_path):
    (tmp_path / "all_data_0.json").write_text('{"users": ["a"], "user_data": {')
    with pytest.raises(data.DataError, match="not valid JSON"):
        data.load("femnist", root=tmp_path)
    (tmp_path / "all_data_0.json").write_text(json.dumps({"users": ["a"]}))
    with pytest.raises(data.DataError, match="'users', 'num_samples' and 'user_data'"):
        data.load("femnist", root=tmp_path)
    blob = leaf_blob({"a": (np.zeros((1, 784)), [0])})
    del blob["user_data"]["a"]["y"]
    (tmp_path / "all_data_0.json").write_text(json.dumps(blob))
    with pytest.raises(data.DataError, match="keys 'x' and 'y'"):
        data.load("femnist", root=tmp_path)
    blob = leaf_blob({"a": (np.zeros((1, 100)), [0])})
    (tmp_path / "all_data_0.json").write_text(json.dumps(blob))
    with pytest.raises(data.DataError, match=r"x of shape \[n, 784\]"):
        data.load("femnist", root=tmp_path)
    blob = leaf_blob({"a": (np.zeros((1, 784)), [0])})
    blob["num_samples"] = [2]
    (tmp_path / "all_data_0.json").write_text(json.dumps(blob))
    with pytest.raises(data.DataError, match="num_samples says 2"):
        data.load("femnist", root=tmp_path)


def test_damaged_bundled_file(tmp_path, monkeypatch):
    monkeypatch.setattr(data.bundled, "data_dir", lambda: tmp_path)
    with pytest.raises(data.DataError, match="not found.*build_data.py"):
        data.load("faces")
    (tmp_path / "faces.npz").write_bytes(b"PK\x03\x04 this is not a zip")
    with pytest.raises(data.DataError, match="damaged.*'images', 'labels' and 'class_names'"):
        data.load("faces")
    np.savez_compressed(
        tmp_path / "faces.npz",
        images=np.zeros((200, 24, 25, 1), np.uint8),
        labels=np.zeros(200, np.uint8),
        class_names=np.array(["non-face", "face"]),
    )
    with pytest.raises(data.DataError, match=r"images uint8 \[N, 25, 25, 1\], got uint8"):
        data.load("faces")


# ----------------------------------------------------------------------------- splits


@pytest.fixture(scope="module")
def digits():
    return data.load("digits")


def test_split_iid(digits):
    key = jax.random.key(0)
    a = data.iid_indices(len(digits), num_clients=5, samples_per_client=100, key=key)
    b = data.iid_indices(len(digits), num_clients=5, samples_per_client=100, key=key)
    c = data.iid_indices(len(digits), num_clients=5, samples_per_client=100, key=jax.random.key(1))
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c, strict=True))
    assert len(np.unique(np.concatenate(a))) == 500  # disjoint
    clients = data.split_iid(digits, num_clients=5, samples_per_client=100, key=key)
    assert [len(cl) for cl in clients] == [100] * 5
    assert np.array_equal(clients[2].labels, digits.labels[a[2]])
    raw_key = jax.random.PRNGKey(7)  # raw uint32 keys and int seeds work too
    assert len(data.split_iid(digits, num_clients=2, samples_per_client=3, key=raw_key)[0]) == 3
    assert len(data.split_iid(digits, num_clients=2, samples_per_client=3, key=7)[1]) == 3


def test_split_dirichlet_determinism_and_disjointness(digits):
    kw = dict(num_clients=8, samples_per_client=200, alpha=0.3)
    a = data.dirichlet_indices(digits.labels, 10, key=jax.random.key(3), **kw)
    b = data.dirichlet_indices(digits.labels, 10, key=jax.random.key(3), **kw)
    c = data.dirichlet_indices(digits.labels, 10, key=jax.random.key(4), **kw)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c, strict=True))
    assert [len(x) for x in a] == [200] * 8
    assert len(np.unique(np.concatenate(a))) == 1600
    clients = data.split_dirichlet(digits, key=jax.random.key(3), **kw)
    assert [len(cl) for cl in clients] == [200] * 8
    assert np.array_equal(clients[0].labels, digits.labels[a[0]])


def test_split_dirichlet_runs_out_of_classes(digits):
    # 10 clients x 500 = all 5,000 samples: classes run out and the fallback fills in.
    idx = data.dirichlet_indices(
        digits.labels, 10, num_clients=10, samples_per_client=500, alpha=0.1, key=0
    )
    assert [len(x) for x in idx] == [500] * 10
    assert len(np.unique(np.concatenate(idx))) == 5000


def test_split_dirichlet_skew(digits):
    def classes_per_client(alpha):
        clients = data.split_dirichlet(
            digits, num_clients=10, samples_per_client=100, alpha=alpha, key=jax.random.key(9)
        )
        shares = np.stack([np.bincount(c.labels, minlength=10) / 100 for c in clients])
        return (shares >= 0.05).sum(axis=1), shares.max(axis=1)

    few, top_small = classes_per_client(0.05)
    many, top_large = classes_per_client(1000.0)
    assert few.mean() <= 3 and top_small.mean() >= 0.6
    assert many.min() >= 8 and top_large.max() <= 0.25


def test_split_size_errors(digits):
    with pytest.raises(data.DataError, match="needs 6000 samples but the data set has 5000"):
        data.split_iid(digits, num_clients=6, samples_per_client=1000, key=0)
    with pytest.raises(data.DataError, match="needs 5001 samples"):
        data.split_dirichlet(digits, num_clients=1, samples_per_client=5001, alpha=1.0, key=0)
    with pytest.raises(data.DataError, match="alpha must be > 0"):
        data.split_dirichlet(digits, num_clients=1, samples_per_client=5, alpha=0.0, key=0)


def test_train_test_split(digits):
    train, test = data.train_test_split(digits, test_fraction=0.2, key=jax.random.key(0))
    assert len(train) == 4000 and len(test) == 1000
    again, _ = data.train_test_split(digits, test_fraction=0.2, key=jax.random.key(0))
    assert np.array_equal(train.labels, again.labels) and np.array_equal(train.images, again.images)
    with pytest.raises(data.DataError, match=r"test_fraction must lie in \(0, 1\)"):
        data.train_test_split(digits, test_fraction=1.0, key=0)


def test_bundled_files_are_package_data():
    """A wheel (``pip install .``, not ``-e``) must carry the bundled sets and their licences."""
    import fnmatch

    from leakage_lab.data import bundled

    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

    folder = bundled.data_dir()
    assert folder.parent == Path(data.__file__).parent  # inside the package, not the clone
    config = tomllib.loads((folder.parents[2] / "pyproject.toml").read_text())["tool"]
    globs = config["setuptools"]["package-data"]["leakage_lab.data"]
    assert config["setuptools"]["packages"]["find"]["include"] == ["leakage_lab*"]
    for name in [file for file, *_ in bundled.BUNDLED.values()] + ["README.md"]:
        assert (folder / name).is_file(), name
        assert any(fnmatch.fnmatch(f"files/{name}", g) for g in globs), name
