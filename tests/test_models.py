"""Tests for leakage_lab.nn (layer primitives) and leakage_lab.models (the networks).

Oracles: a direct numpy loop convolution and pooling; central finite differences in
float64 for the models' gradients. Known answers: the dense-layer sizes of the papers'
networks. Properties: init ranges, ``apply == features @ W + b``, determinism.
"""

from __future__ import annotations

import functools
import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from leakage_lab import fl, models, nn, trees

# ----------------------------------------------------------------------------- nn


def conv_loop(x, w, b, stride, padding):
    """Direct convolution (cross-correlation, as in PyTorch) of NHWC ``x`` with HWIO ``w``."""
    x = np.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    n, h, wd, _ = x.shape
    kh, kw, _, o = w.shape
    ho, wo = (h - kh) // stride + 1, (wd - kw) // stride + 1
    out = np.zeros((n, ho, wo, o))
    for i in range(ho):
        for j in range(wo):
            patch = x[:, i * stride : i * stride + kh, j * stride : j * stride + kw, :]
            out[:, i, j, :] = np.einsum("nhwc,hwco->no", patch, w)
    return out + b


def pool_loop(x, size):
    n, h, w, c = x.shape
    out = np.zeros((n, h // size, w // size, c))
    for i in range(h // size):
        for j in range(w // size):
            out[:, i, j] = x[:, i * size : (i + 1) * size, j * size : (j + 1) * size].mean((1, 2))
    return out


CONV_CASES = [(k, p, s) for k in (1, 3, 5) for p in (0, 1, 2) for s in (1, 2)]


def conv_inputs(kernel, padding, stride):
    rng = np.random.default_rng(kernel * 100 + padding * 10 + stride)
    x = rng.normal(size=(2, 7, 6, 2)).astype(np.float32)
    w = rng.normal(size=(kernel, kernel, 2, 3)).astype(np.float32)
    b = rng.normal(size=(3,)).astype(np.float32)
    return x, w, b


@functools.cache
def conv_outputs():
    """Both implementations on every case, in one compiled program (compiles dominate)."""
    inputs = {case: conv_inputs(*case) for case in CONV_CASES}

    @jax.jit
    def run(inputs):
        return {(k, p, s): (nn.conv2d(x, w, b, stride=s, padding=p),
                            nn.conv2d_im2col(x, w, b, stride=s, padding=p))
                for (k, p, s), (x, w, b) in inputs.items()}

    return jax.tree.map(np.asarray, run(inputs))


@pytest.mark.parametrize(("kernel", "padding", "stride"), CONV_CASES)
def test_conv2d_matches_loop_and_im2col(kernel, padding, stride):
    x, w, b = conv_inputs(kernel, padding, stride)
    expected = conv_loop(x.astype(np.float64), w.astype(np.float64), b, stride, padding)
    y, y2 = conv_outputs()[kernel, padding, stride]
    size = (nn.conv_output_size(7, kernel, stride, padding),
            nn.conv_output_size(6, kernel, stride, padding))
    assert y.shape == y2.shape == expected.shape == (2, *size, 3)
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(y2, expected, rtol=1e-4, atol=1e-4)


def test_conv_output_size_known_answers():
    assert nn.conv_output_size(32, 5, 2, 2) == 16
    assert nn.conv_output_size(28, 3, 1, 1) == 28
    assert nn.conv_output_size(14, 1, 1, 1) == 16
    assert nn.conv_output_size(7, 5, 2, 0) == 2


def test_conv_implementations_have_equal_gradients():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1, 6, 6, 2)).astype(np.float32)
    w = rng.normal(size=(3, 3, 2, 4)).astype(np.float32)
    b = np.zeros(4, np.float32)

    @jax.jit
    def grads(x, w):
        def g(conv):
            return jax.grad(lambda x, w: jnp.sum(jnp.sin(conv(x, w, b, stride=2, padding=1))),
                            argnums=(0, 1))(x, w)

        return g(nn.conv2d), g(nn.conv2d_im2col)

    (gx, gw), (hx, hw) = grads(x, w)
    np.testing.assert_allclose(gx, hx, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(gw, hw, rtol=1e-4, atol=1e-5)


def test_avg_pool_matches_loop():
    x = np.random.default_rng(0).normal(size=(2, 7, 5, 3)).astype(np.float32)
    y2, y3 = jax.jit(lambda x: (nn.avg_pool(x, 2), nn.avg_pool(x, 3)))(x)
    assert y2.shape == (2, 3, 2, 3) and y3.shape == (2, 2, 1, 3)  # odd borders dropped
    np.testing.assert_allclose(y2, pool_loop(x, 2), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(y3, pool_loop(x, 3), rtol=1e-5, atol=1e-6)


def test_dense_and_uniform_init():
    x, w, b = np.ones((2, 3)), np.arange(6.0).reshape(3, 2), np.array([1.0, -1.0])
    np.testing.assert_allclose(nn.dense(x, w, b), [[7.0, 8.0], [7.0, 8.0]])
    u = np.asarray(nn.uniform_init(jax.random.key(0), (1000,), 0.25))
    assert u.dtype == np.float32
    assert u.min() >= -0.25 and u.max() <= 0.25
    assert u.max() > 0.2 and u.min() < -0.2
    assert nn.default_bound(16) == 0.25


# ----------------------------------------------------------------------------- models


def shapes_of(model, n=2):
    """Parameter, logit and feature shapes by abstract evaluation (nothing is compiled)."""
    params = jax.eval_shape(model.init, jax.random.key(0))
    x = jax.ShapeDtypeStruct((n, *model.input_shape), jnp.float32)
    return (params, jax.eval_shape(model.apply, params, x).shape,
            jax.eval_shape(model.features, params, x).shape)


def test_lenet_shapes():
    for shape, classes, flat in [((32, 32, 3), 10, 8 * 8 * 12), ((28, 28, 1), 5, 7 * 7 * 12)]:
        model = models.lenet(num_classes=classes, input_shape=shape)
        params, logits, feats = shapes_of(model, 3)
        assert params["conv1"]["w"].shape == (5, 5, shape[2], 12)
        assert params["fc"]["w"].shape == (flat, classes)
        assert logits == (3, classes) and feats == (3, flat)
        assert model.input_shape == shape and model.num_classes == classes


@pytest.mark.parametrize(
    ("shape", "width", "flat", "hidden"),
    [((28, 28, 1), 32, 4096, 100), ((32, 32, 3), 32, 5184, 100), ((32, 32, 3), 64, 10368, 200)],
)
def test_convnet_dense_sizes(shape, width, flat, hidden):
    """Dimitrov et al. (TMLR 2022), Table 5: FEMNIST and CIFAR-100 networks."""
    model = models.convnet(num_classes=7, input_shape=shape, width=width)
    params, logits, feats = shapes_of(model)
    assert params["conv1"]["w"].shape == (3, 3, shape[2], width)
    assert params["conv2"]["w"].shape == (1, 1, width, 2 * width)
    assert params["fc1"]["w"].shape == (flat, hidden)
    assert params["fc2"]["w"].shape == (hidden, 7)
    assert logits == (2, 7) and feats == (2, hidden)


def test_mlp_shapes():
    model = models.mlp(num_classes=3, input_shape=(4, 5, 2), hidden=(16, 8))
    params, logits, feats = shapes_of(model, 6)
    assert [params[k]["w"].shape for k in ("fc1", "fc2", "fc3")] == [(40, 16), (16, 8), (8, 3)]
    assert logits == (6, 3) and feats == (6, 8)
    params, logits, feats = shapes_of(models.mlp(num_classes=2, input_shape=(3, 3, 1), hidden=()))
    assert params["fc1"]["w"].shape == (9, 2) and logits == (2, 2) and feats == (2, 9)


def leaves(params):
    return [(jax.tree_util.keystr(p), np.asarray(v))
            for p, v in jax.tree_util.tree_leaves_with_path(params)]


TINY = {
    "lenet": (models.lenet(4, (8, 8, 1)), "fc"),
    "convnet": (models.convnet(4, (8, 8, 1), width=4), "fc2"),
    "mlp": (models.mlp(4, (4, 4, 1), hidden=(8, 6)), "fc3"),
}


@functools.cache
def tiny_params(name: str, seed: int = 0):
    return TINY[name][0].init(jax.random.key(seed))


def test_lenet_init_is_dlg_uniform():
    for seed in (0, 1):
        for leaf, v in leaves(tiny_params("lenet", seed)):
            assert v.dtype == np.float32, leaf
            assert v.min() >= -0.5 and v.max() <= 0.5, leaf
            if v.size >= 100:  # wide enough to come near the bounds
                assert v.max() > 0.45 and v.min() < -0.45, leaf


def test_convnet_init_pytorch_default():
    params = tiny_params("convnet")  # 8x8x1 -> conv 8x8 -> pool 4 -> 1x1 pad 1: 6 -> pool 3
    fan_in = {"conv1": 9 * 1, "conv2": 4, "fc1": 3 * 3 * 8, "fc2": 12}
    assert params["fc1"]["w"].shape == (72, 12)
    for layer, fan in fan_in.items():
        bound = 1 / math.sqrt(fan)
        for part in ("w", "b"):
            v = np.asarray(params[layer][part])
            assert v.dtype == np.float32
            assert np.abs(v).max() <= bound * (1 + 1e-6), (layer, part)
        w = np.asarray(params[layer]["w"])
        if w.size >= 30:
            assert np.abs(w).max() > 0.8 * bound, layer


@pytest.mark.parametrize("name", TINY)
def test_init_is_deterministic(name):
    a, b, c = tiny_params(name), TINY[name][0].init(jax.random.key(0)), tiny_params(name, 1)
    assert jax.tree.structure(a) == jax.tree.structure(c)
    for (_, x), (_, y), (_, z) in zip(leaves(a), leaves(b), leaves(c), strict=True):
        np.testing.assert_array_equal(x, y)
        assert not np.array_equal(x, z)


@pytest.mark.parametrize("name", TINY)
def test_features_feed_last_layer(name):
    model, last = TINY[name]
    params = tiny_params(name)
    x = np.random.default_rng(1).uniform(size=(3, *model.input_shape)).astype(np.float32)
    f, logits = jax.jit(lambda p, x: (model.features(p, x), model.apply(p, x)))(params, x)
    w, b = np.asarray(params[last]["w"], np.float64), np.asarray(params[last]["b"], np.float64)
    assert f.shape == (3, w.shape[0])
    np.testing.assert_allclose(logits, np.asarray(f, np.float64) @ w + b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", TINY)
def test_loss_gradient_matches_finite_differences(name):
    """Central differences in float64 along a random direction against grad . direction."""
    model = TINY[name][0]
    labels = jnp.array([0, 3, 1])
    rng = np.random.default_rng(0)
    params = jax.tree.map(lambda v: np.asarray(v, np.float64), tiny_params(name))
    x = rng.uniform(size=(3, *model.input_shape))
    d = jax.tree.map(lambda v: rng.normal(size=v.shape), params)
    dx = rng.normal(size=x.shape)
    with jax.enable_x64(True):

        def f(p, x):
            return fl.loss(model, p, x, labels)

        @jax.jit
        def check(params, x, d, dx, h):
            gp, gx = jax.grad(f, argnums=(0, 1))(params, x)
            shift = lambda s: jax.tree.map(lambda v, e: v + s * e, params, d)  # noqa: E731
            fd_p = (f(shift(h), x) - f(shift(-h), x)) / (2 * h)
            fd_x = (f(params, x + h * dx) - f(params, x - h * dx)) / (2 * h)
            return fd_p, trees.tree_vdot(gp, d), fd_x, jnp.vdot(gx, dx), gp

        fd_p, an_p, fd_x, an_x, gp = check(params, x, d, dx, 1e-6)
        assert all(v.dtype == jnp.float64 for v in jax.tree.leaves(gp))
        assert abs(float(an_p)) > 1e-3 and abs(float(an_x)) > 1e-4
        np.testing.assert_allclose(float(fd_p), float(an_p), rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(float(fd_x), float(an_x), rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("make", [models.lenet, models.convnet, models.mlp])
def test_wrong_image_shape_names_expected_shape(make):
    model = make(num_classes=3, input_shape=(8, 8, 1))
    params = jax.eval_shape(model.init, jax.random.key(0))  # checked before any use
    for bad in (np.zeros((2, 8, 8, 3)), np.zeros((8, 8, 1)), np.zeros((2, 1, 8, 8))):
        with pytest.raises(ValueError, match=re.escape("[N, 8, 8, 1]")):
            model.apply(params, bad)
        with pytest.raises(ValueError, match=re.escape("[N, 8, 8, 1]")):
            model.features(params, bad)


@pytest.mark.parametrize("make", [models.lenet, models.convnet, models.mlp])
def test_bad_constructor_arguments(make):
    for classes in (1, 0, -3, 2.5):
        with pytest.raises(ValueError, match="num_classes"):
            make(num_classes=classes, input_shape=(8, 8, 1))
    with pytest.raises(ValueError, match="input_shape"):
        make(num_classes=3, input_shape=(8, 8))
    with pytest.raises(ValueError, match="width"):
        models.convnet(num_classes=3, width=0)


# ----------------------------------------------------------------------------- the cache


def test_equal_arguments_build_the_same_model():
    """Compiled-code caches key on the Model: equal arguments must give the same object."""
    a = models.lenet(num_classes=100, input_shape=(32, 32, 3))
    assert models.lenet(100, [32, 32, 3]) is a  # positional, list shape: same arguments
    assert models.lenet(num_classes=np.int64(100), input_shape=np.array([32, 32, 3])) is a
    assert models.lenet(num_classes=10, input_shape=(32, 32, 3)) is not a
    assert models.lenet(num_classes=100, input_shape=(28, 28, 1)) is not a
    c = models.convnet(num_classes=7, input_shape=(28, 28, 1))
    assert models.convnet(7, (28, 28, 1), 32, nn.conv2d_auto) is c
    assert models.convnet(7, (28, 28, 1), width=64) is not c
    assert models.convnet(7, (28, 28, 1), conv=nn.conv2d_im2col) is not c
    assert models.convnet(7, (28, 28, 1), conv=nn.conv2d) is not c
    m = models.mlp(num_classes=3, input_shape=(4, 5, 2), hidden=[16, 8])
    assert models.mlp(3, (4, 5, 2), (16, 8), jax.nn.relu) is m
    assert models.mlp(3, (4, 5, 2), (16, 8), activation=jax.nn.sigmoid) is not m
    assert models.mlp(3, (4, 5, 2), (16,)) is not m
    assert a == models.lenet(100, (32, 32, 3)) and hash(a) == hash(models.lenet(100, (32, 32, 3)))


def test_the_cache_is_bounded():
    models.mlp.cache_clear()
    first = models.mlp(2, (1, 1, 1), hidden=(1,))
    for h in range(2, models.CACHE_SIZE + 5):
        models.mlp(2, (1, 1, 1), hidden=(h,))
    assert models.mlp.cache_size() == models.CACHE_SIZE
    assert models.mlp(2, (1, 1, 1), hidden=(1,)) is not first  # evicted, rebuilt


def test_unhashable_or_invalid_arguments_name_what_was_expected():
    class Conv:  # a callable that defines equality but no hash
        __hash__ = None

        def __eq__(self, other):
            return True

        def __call__(self, *args, **kwargs):
            return nn.conv2d(*args, **kwargs)

    with pytest.raises(TypeError, match=r"conv=.*not hashable; expected a function like nn.conv2d"):
        models.convnet(3, (8, 8, 1), conv=Conv())
    with pytest.raises(TypeError, match="conv must be a function"):
        models.convnet(3, (8, 8, 1), conv=3)
    with pytest.raises(TypeError, match="activation must be a function"):
        models.mlp(3, (8, 8, 1), activation="relu")
    with pytest.raises(ValueError, match="hidden must be a sequence of positive ints"):
        models.mlp(3, (8, 8, 1), hidden=5)
    with pytest.raises(ValueError, match="hidden size"):
        models.mlp(3, (8, 8, 1), hidden=(4, 0))
    with pytest.raises(ValueError, match="input_shape"):
        models.lenet(3, (8.5, 8, 1))
    with pytest.raises(ValueError, match="input_shape"):
        models.lenet(3, {"h": 8})
    with pytest.raises(ValueError, match="num_classes"):
        models.lenet(True, (8, 8, 1))
    with pytest.raises(TypeError, match="unexpected keyword"):
        models.lenet(3, (8, 8, 1), width=4)
