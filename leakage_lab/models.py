"""The networks attacked in the labs, each a ``Model(init, apply, features, ...)``.

A model is a pair of pure functions over a parameter pytree (a dict of layers, each a
dict ``{"w": ..., "b": ...}``), batch-first NHWC images:

    >>> import jax, leakage_lab as ll
    >>> model = ll.models.lenet(num_classes=10, input_shape=(32, 32, 3))
    >>> params = model.init(jax.random.key(0))
    >>> model.apply(params, jax.numpy.zeros((2, 32, 32, 3))).shape
    (2, 10)

``features(params, images)`` returns the penultimate activations (the input of the
last dense layer): label-recovery attacks read the last layer's gradient against them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from leakage_lab import nn

__all__ = ["Model", "convnet", "lenet", "mlp"]

Params = dict[str, Any]


class Model(NamedTuple):
    """A network as pure functions.

    Attributes:
        init: ``init(key) -> params``.
        apply: ``apply(params, images [N, H, W, C]) -> logits [N, num_classes]``.
        features: ``features(params, images) -> [N, D]``, the input of the last layer.
        input_shape: ``(H, W, C)`` the network takes.
        num_classes: number of outputs.
        name: a short description, e.g. ``"lenet(32x32x3 -> 10)"``.
    """

    init: Callable[[jax.Array], Params]
    apply: Callable[[Params, jax.Array], jax.Array]
    features: Callable[[Params, jax.Array], jax.Array]
    input_shape: tuple[int, int, int]
    num_classes: int
    name: str


def check_images(images, input_shape: tuple[int, int, int], who: str) -> None:
    """Raises a ValueError unless ``images`` is ``[N, *input_shape]``."""
    shape = tuple(getattr(images, "shape", ()))
    if len(shape) != 4 or shape[1:] != tuple(input_shape):
        raise ValueError(
            f"{who} expects images of shape [N, {', '.join(map(str, input_shape))}] "
            f"(batch-first NHWC), got shape {list(shape)}."
        )


def _check_args(num_classes: int, input_shape) -> tuple[int, int, int]:
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}.")
    shape = tuple(int(s) for s in input_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"input_shape must be (H, W, C) with positive sizes, got {input_shape!r}.")
    return shape


def _finish(name, input_shape, num_classes, init, body, head) -> Model:
    """Builds a Model from ``body`` (images -> penultimate) and ``head`` (last dense layer)."""

    def features(params, images):
        check_images(images, input_shape, name)
        return body(params, images)

    def apply(params, images):
        return head(params, features(params, images))

    return Model(init, apply, features, input_shape, num_classes, name)


def lenet(num_classes: int = 10, input_shape=(32, 32, 3)) -> Model:
    """The sigmoid LeNet of Deep Leakage from Gradients (Zhu et al., NeurIPS 2019).

    Three 5x5 convolutions with 12 channels (strides 2, 2, 1, padding 2), each followed
    by a sigmoid, then one dense layer. As in the DLG code, every weight and bias is
    drawn from U(-0.5, 0.5): large weights keep the gradient informative.
    """
    input_shape = _check_args(num_classes, input_shape)
    h, w, c = input_shape
    strides = (2, 2, 1)
    for s in strides:
        h, w = nn.conv_output_size(h, 5, s, 2), nn.conv_output_size(w, 5, s, 2)
    flat = h * w * 12
    name = f"lenet({'x'.join(map(str, input_shape))} -> {num_classes})"

    def init(key):
        k = jax.random.split(key, 8)
        u = nn.uniform_init
        return {
            "conv1": {"w": u(k[0], (5, 5, c, 12), 0.5), "b": u(k[1], (12,), 0.5)},
            "conv2": {"w": u(k[2], (5, 5, 12, 12), 0.5), "b": u(k[3], (12,), 0.5)},
            "conv3": {"w": u(k[4], (5, 5, 12, 12), 0.5), "b": u(k[5], (12,), 0.5)},
            "fc": {"w": u(k[6], (flat, num_classes), 0.5), "b": u(k[7], (num_classes,), 0.5)},
        }

    def body(p, x):
        for layer, s in zip(("conv1", "conv2", "conv3"), strides, strict=True):
            x = jax.nn.sigmoid(nn.conv2d(x, p[layer]["w"], p[layer]["b"], stride=s, padding=2))
        return x.reshape(x.shape[0], -1)

    def head(p, f):
        return nn.dense(f, p["fc"]["w"], p["fc"]["b"])

    return _finish(name, input_shape, num_classes, init, body, head)


def convnet(num_classes: int = 10, input_shape=(28, 28, 1), width: int = 32) -> Model:
    """The convolutional network of Dimitrov et al. (TMLR 2022), Table 5.

    conv ``width`` 3x3 pad 1, ReLU, avg-pool 2; conv ``2*width`` 1x1 pad 1, ReLU,
    avg-pool 2; dense ``100*width/32``, ReLU; dense ``num_classes``. ``width=32`` is the
    FEMNIST network, ``width=64`` the CIFAR-100 one (64/128 channels, dense 200).
    Initialisation as PyTorch's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    """
    input_shape = _check_args(num_classes, input_shape)
    if width < 1:
        raise ValueError(f"width must be a positive int, got {width!r}.")
    h, w, c = input_shape
    h, w = nn.conv_output_size(h, 3, 1, 1) // 2, nn.conv_output_size(w, 3, 1, 1) // 2
    h, w = nn.conv_output_size(h, 1, 1, 1) // 2, nn.conv_output_size(w, 1, 1, 1) // 2
    c1, c2, hidden = width, 2 * width, 100 * width // 32
    flat = h * w * c2
    name = f"convnet({'x'.join(map(str, input_shape))} -> {num_classes}, width {width})"

    def init(key):
        k = jax.random.split(key, 8)
        u, bd = nn.uniform_init, nn.default_bound
        shapes = {
            "conv1": ((3, 3, c, c1), 9 * c),
            "conv2": ((1, 1, c1, c2), c1),
            "fc1": ((flat, hidden), flat),
            "fc2": ((hidden, num_classes), hidden),
        }
        params = {}
        for i, (layer, (shape, fan_in)) in enumerate(shapes.items()):
            params[layer] = {
                "w": u(k[2 * i], shape, bd(fan_in)),
                "b": u(k[2 * i + 1], (shape[-1],), bd(fan_in)),
            }
        return params

    def body(p, x):
        x = nn.avg_pool(jax.nn.relu(nn.conv2d(x, p["conv1"]["w"], p["conv1"]["b"], padding=1)))
        x = nn.avg_pool(jax.nn.relu(nn.conv2d(x, p["conv2"]["w"], p["conv2"]["b"], padding=1)))
        x = x.reshape(x.shape[0], -1)
        return jax.nn.relu(nn.dense(x, p["fc1"]["w"], p["fc1"]["b"]))

    def head(p, f):
        return nn.dense(f, p["fc2"]["w"], p["fc2"]["b"])

    return _finish(name, input_shape, num_classes, init, body, head)


def mlp(num_classes: int = 10, input_shape=(28, 28, 1), hidden=(256,),
        activation: Callable = jax.nn.relu) -> Model:
    """A multi-layer perceptron: flatten, then dense layers ``fc1 ... fcL``.

    The first dense layer sees the flattened image itself, so its gradients reveal the
    image exactly (Geiping et al., NeurIPS 2020; see ``attacks.analytic_fc``).
    """
    input_shape = _check_args(num_classes, input_shape)
    sizes = [int(jnp.prod(jnp.array(input_shape))), *map(int, hidden), num_classes]
    layers = [f"fc{i + 1}" for i in range(len(sizes) - 1)]
    name = f"mlp({'x'.join(map(str, input_shape))} -> {'-'.join(map(str, sizes[1:]))})"

    def init(key):
        keys = jax.random.split(key, 2 * len(layers))
        params = {}
        for i, layer in enumerate(layers):
            bound = nn.default_bound(sizes[i])
            params[layer] = {
                "w": nn.uniform_init(keys[2 * i], (sizes[i], sizes[i + 1]), bound),
                "b": nn.uniform_init(keys[2 * i + 1], (sizes[i + 1],), bound),
            }
        return params

    def body(p, x):
        x = x.reshape(x.shape[0], -1)
        for layer in layers[:-1]:
            x = activation(nn.dense(x, p[layer]["w"], p[layer]["b"]))
        return x

    def head(p, f):
        return nn.dense(f, p[layers[-1]]["w"], p[layers[-1]]["b"])

    return _finish(name, input_shape, num_classes, init, body, head)
