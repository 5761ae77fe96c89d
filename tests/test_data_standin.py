"""The white-background FEMNIST-like stand-in and the sets' declared normalisation."""

import numpy as np
import pytest

from leakage_lab import data


@pytest.fixture(scope="module")
def standin():
    return data.load("femnist-like")


def test_standin_is_inverted_shrunk_digits(standin):
    digits = data.load("digits")
    assert standin.images.shape == digits.images.shape == (5000, 28, 28, 1)
    assert standin.images.dtype == np.float32
    np.testing.assert_array_equal(standin.labels, digits.labels)
    assert standin.class_names == digits.class_names and standin.num_classes == 10
    x = standin.images
    assert x.min() >= 0.0 and x.max() <= 1.0
    # White background: the border (outside the centred 15x15 glyph) is exactly 1.
    assert np.all(x[:, :6] == 1.0) and np.all(x[:, 22:] == 1.0)
    assert np.all(x[:, :, :6] == 1.0) and np.all(x[:, :, 22:] == 1.0)
    # Ink density like FEMNIST's (released code: mean 0.964, std 0.158); MNIST's is 0.13.
    ink = 1.0 - x.mean()
    assert 0.03 < ink < 0.045
    assert 0.14 < x.std() < 0.17
    # Dark ink where the digit is: the darkest pixel is below 0.5 in all but a few images
    # (the faintest digits, shrunk, keep only grey strokes) and below 0.6 in all.
    darkest = x.reshape(len(x), -1).min(axis=1)
    assert np.mean(darkest < 0.5) > 0.999 and np.all(darkest < 0.6)
    # Stored like the other sets: multiples of 1/255.
    np.testing.assert_allclose(x * 255, np.rint(x * 255), atol=1e-3)


def test_standin_is_deterministic_and_not_shared(standin):
    again = data.load("femnist_like")
    np.testing.assert_array_equal(again.images, standin.images)
    again.images[0] = 0.0                  # a caller's edit does not leak into the next load
    assert np.all(data.load("femnist-like").images[0, 0] == 1.0)


def test_standin_62_classes(standin):
    ds = data.load("femnist-like-62")
    assert ds.num_classes == 62 and ds.name == "femnist-like-62"
    assert ds.class_names[:3] == ("0", "1", "2") and ds.class_names[-1] == "z"
    np.testing.assert_array_equal(ds.images, standin.images)
    np.testing.assert_array_equal(ds.labels, data.load("femnist-like-62").labels)
    assert ds.labels.min() >= 0 and ds.labels.max() <= 61
    assert len(np.unique(ds.labels)) == 62
    # 50 images hold about 34 distinct labels: 62 (1 - (61/62)^50) = 34.4 expected.
    distinct = [len(np.unique(ds.labels[i:i + 50])) for i in range(0, 5000, 50)]
    assert 32 <= np.mean(distinct) <= 37
    other = data.femnist_like(num_classes=62, seed=1)
    assert not np.array_equal(other.labels, ds.labels)
    with pytest.raises(data.DataError, match="num_classes must be 10 .* or 62"):
        data.femnist_like(num_classes=47)
    with pytest.raises(data.DataError, match="single split"):
        data.load("femnist-like", split="test")


def test_normalization_declared_by_the_set(standin):
    n = standin.normalization
    assert isinstance(n, data.Normalization) and n.channels == 1
    assert n.mean[0] == pytest.approx(standin.images.mean(), abs=1e-3)
    assert n.std[0] == pytest.approx(standin.images.std(), abs=1e-3)
    assert data.load("digits").normalization.mean[0] == pytest.approx(0.131, abs=2e-3)
    z = n.normalize(standin.images[:100])
    np.testing.assert_allclose(n.denormalize(z), standin.images[:100], atol=1e-5)
    colour = data.normalization(data.load("tiny-images").images)
    assert colour.channels == 3
    with pytest.raises(data.DataError, match=r"images \[N, H, W, C\]"):
        data.normalization(np.zeros((4, 4)))
