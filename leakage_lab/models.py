"""The networks attacked in the labs, each a ``Model(init, apply, features, ...)``.

A model is a pair of pure functions over a parameter pytree (a dict of layers, each a
dict ``{"w": ..., "b": ...}``), batch-first NHWC images:

    >>> import jax, leakage_lab as ll
    >>> model = ll.models.lenet(num_classes=10, input_shape=(32, 32, 3))
    >>> params = model.init(jax.random.key(0))
    >>> model.apply(params, jax.numpy.zeros((2, 32, 32, 3))).shape
    (2, 10)

Equal arguments build the same ``Model`` object, so code compiled for a model (every
attack's loss is cached on it) is reused when a lab cell re-runs:

    >>> ll.models.lenet(10, [32, 32, 3]) is model
    True
    >>> ll.models.lenet(num_classes=100, input_shape=(32, 32, 3)) is model
    False

``normalization=`` (every builder) puts the data's input normalisation inside the network:
its first operation is ``(x - mean) / std`` per channel, so clients feed it pixels in
[0, 1] and attacks that see the model (``attacks.fedavg``) know it. Give ``(mean, std)``,
a ``data.Normalization`` or a ``data.Dataset`` (its declared ``ds.normalization``):

    >>> ll.models.mlp(10, (28, 28, 1), normalization=((0.5,), (0.25,))).name
    'mlp(28x28x1 -> 256-10, normalised)'

Built with ``normalization=ll.data.load("femnist-like")``, the network takes that set's
mean 0.9623 and std 0.1514.

``features(params, images)`` returns the penultimate activations (the input of the
last dense layer): label-recovery attacks read the last layer's gradient against them.

``apply_with_taps(params, images, taps)`` opens up the dense layers ``dense_layers``: it
adds ``taps[l]`` (shape ``[N, out]``, normally zeros) to the pre-activation of each dense
layer ``l`` and also returns each one's input ``a_l``. Differentiating the loss with
respect to a zero tap gives ``δ_l``, the gradient at that pre-activation, and the layer's
weight gradient is then ``a_lᵀ δ_l``: attacks use this to compare gradients without
forming the (large) weight gradients of the dense layers.
"""

from __future__ import annotations

import functools
import inspect
import math
import operator
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from leakage_lab import nn
from leakage_lab.data.dataset import Normalization

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
        dense_layers: the names of the dense layers ``x @ w + b`` (params entries
            ``{"w": [in, out], "b": [out]}``) that ``apply_with_taps`` opens up, in
            forward order; ``()`` when the model has no ``apply_with_taps``.
        apply_with_taps: ``apply_with_taps(params, images, taps) -> (logits, inputs)``
            or ``None``. ``taps`` maps every name in ``dense_layers`` to an array
            ``[N, out]`` added to that layer's pre-activation ``a @ w + b``; ``inputs``
            maps the same names to the layers' inputs ``a`` ``[N, in]``. With zero taps
            the logits equal ``apply(params, images)``.
        normalization: the input normalisation the network applies to its pixel input as
            its first operation, ``(x - mean) / std`` per channel (a
            ``data.Normalization``), or ``None``: the network takes its input as it is.
    """

    init: Callable[[jax.Array], Params]
    apply: Callable[[Params, jax.Array], jax.Array]
    features: Callable[[Params, jax.Array], jax.Array]
    input_shape: tuple[int, int, int]
    num_classes: int
    name: str
    dense_layers: tuple[str, ...] = ()
    apply_with_taps: Callable[[Params, jax.Array, dict], tuple[jax.Array, dict]] | None = None
    normalization: Normalization | None = None


def check_images(images, input_shape: tuple[int, int, int], who: str) -> None:
    """Raises a ValueError unless ``images`` is ``[N, *input_shape]``."""
    shape = tuple(getattr(images, "shape", ()))
    if len(shape) != 4 or shape[1:] != tuple(input_shape):
        raise ValueError(
            f"{who} expects images of shape [N, {', '.join(map(str, input_shape))}] "
            f"(batch-first NHWC), got shape {list(shape)}."
        )


def _check_int(value, what: str, minimum: int) -> int:
    """``value`` as a Python int ``>= minimum`` (numpy integers accepted), else a ValueError."""
    if isinstance(value, bool):
        raise ValueError(f"{what} must be an int >= {minimum}, got {value!r}.")
    try:
        value = operator.index(value)
    except TypeError:
        raise ValueError(f"{what} must be an int >= {minimum}, got {value!r}.") from None
    if value < minimum:
        raise ValueError(f"{what} must be an int >= {minimum}, got {value!r}.")
    return value


def _check_args(num_classes: int, input_shape) -> tuple[int, int, int]:
    """The normalised ``input_shape`` (a tuple of 3 positive ints); checks ``num_classes``."""
    _check_int(num_classes, "num_classes", 2)
    try:
        shape = tuple(operator.index(s) for s in input_shape)
    except TypeError:
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"input_shape must be (H, W, C) with positive int sizes, "
                         f"got {input_shape!r}.")
    return shape


def as_normalization(normalization, channels: int, who: str,
                     where: str = "the model's images have") -> Normalization | None:
    """``None``, a ``(mean, std)`` pair, a ``data.Normalization`` or a ``data.Dataset``
    (its declared ``normalization``) -> a checked ``Normalization`` of float tuples (hashable)
    or ``None``. Raises a ValueError unless there is one finite mean and one std > 0 for
    each of the ``channels`` channels; ``where`` names what holds them in the message."""
    if normalization is None:
        return None
    declared = getattr(normalization, "normalization", None)
    if isinstance(declared, Normalization):
        normalization = declared
    try:
        mean, std = normalization
        mean = np.atleast_1d(np.asarray(mean, np.float64))
        std = np.atleast_1d(np.asarray(std, np.float64))
    except (TypeError, ValueError) as err:
        raise ValueError(f"{who}: normalization must be (mean, std) per channel, a "
                         f"data.Normalization or a data.Dataset, got {normalization!r}."
                         ) from err
    if mean.ndim != 1 or std.ndim != 1 or len(mean) != len(std):
        raise ValueError(f"{who}: normalization must give one mean and one std per channel, "
                         f"got mean {mean.tolist()} and std {std.tolist()}.")
    if len(mean) != channels:
        raise ValueError(f"{who}: the normalization has {len(mean)} channel(s) (mean "
                         f"{mean.tolist()}, std {std.tolist()}), but {where} {channels}; "
                         f"expected {channels} mean(s) and std(s).")
    if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(std)) and np.all(std > 0)):
        raise ValueError(f"{who}: normalization needs finite means and stds > 0, got mean "
                         f"{mean.tolist()}, std {std.tolist()}.")
    return Normalization(tuple(float(v) for v in mean), tuple(float(v) for v in std))


# ------------------------------------------------------------------ the builders' cache

#: How many models each builder keeps (least recently used ones are dropped first).
CACHE_SIZE = 32


def _cached(normalise: Callable[[dict], dict]):
    """Makes a builder return the same ``Model`` object for equal arguments.

    Every compiled-code cache in the library (losses, attacks) is keyed on the ``Model``;
    re-running a lab's ``model = ll.models.lenet(...)`` cell must not recompile. The
    arguments are bound to the builder's signature (defaults filled in) and passed
    through ``normalise``, which validates them and returns canonical, hashable values
    (e.g. ``input_shape`` as a tuple of ints); functions such as ``conv=`` or
    ``activation=`` compare by identity. At most ``CACHE_SIZE`` models per builder are
    kept; ``builder.cache_clear()`` empties the cache.
    """

    def decorate(builder):
        signature = inspect.signature(builder)
        cache: OrderedDict[tuple, Model] = OrderedDict()
        lock = threading.Lock()

        @functools.wraps(builder)
        def cached(*args, **kwargs):
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            arguments = normalise(dict(bound.arguments))
            for name, value in arguments.items():
                if not isinstance(value, Hashable) or not _hashable(value):
                    raise TypeError(
                        f"{builder.__name__}: argument {name}={value!r} is not hashable; "
                        f"expected {_EXPECTED.get(name, 'a hashable value')}."
                    )
            key = tuple((name, type(value), value) for name, value in arguments.items())
            with lock:
                model = cache.get(key)
                if model is not None:
                    cache.move_to_end(key)
                    return model
            model = builder(**arguments)
            with lock:
                model = cache.setdefault(key, model)
                cache.move_to_end(key)
                while len(cache) > CACHE_SIZE:
                    cache.popitem(last=False)
            return model

        cached.cache_clear = cache.clear
        cached.cache_size = lambda: len(cache)
        return cached

    return decorate


_EXPECTED = {
    "conv": "a function like nn.conv2d (compared by identity)",
    "activation": "a function like jax.nn.relu (compared by identity)",
    "hidden": "a sequence of positive ints",
}


def _hashable(value) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def _normalise_common(args: dict, who: str) -> dict:
    args["input_shape"] = _check_args(args["num_classes"], args["input_shape"])
    args["num_classes"] = operator.index(args["num_classes"])
    args["normalization"] = as_normalization(args["normalization"], args["input_shape"][-1],
                                             who, where="input_shape has")
    return args


def _normalise_lenet(args: dict) -> dict:
    return _normalise_common(args, "models.lenet")


def _normalise_convnet(args: dict) -> dict:
    args = _normalise_common(args, "models.convnet")
    args["width"] = _check_int(args["width"], "width", 1)
    if not callable(args["conv"]):
        raise TypeError(f"convnet: conv must be {_EXPECTED['conv']}, got {args['conv']!r}.")
    return args


def _normalise_mlp(args: dict) -> dict:
    args = _normalise_common(args, "models.mlp")
    hidden = args["hidden"]
    try:
        args["hidden"] = tuple(_check_int(h, "each hidden size", 1) for h in hidden)
    except TypeError:
        raise ValueError(f"hidden must be {_EXPECTED['hidden']}, got {hidden!r}.") from None
    if not callable(args["activation"]):
        raise TypeError(f"mlp: activation must be {_EXPECTED['activation']}, "
                        f"got {args['activation']!r}.")
    return args


def _dense(p: Params, layer: str, x: jax.Array) -> jax.Array:
    """The dense layer ``layer`` of ``p`` applied to ``x``."""
    return nn.dense(x, p[layer]["w"], p[layer]["b"])


def _check_taps(taps, params, dense_layers, n: int, who: str) -> None:
    if not isinstance(taps, dict) or set(taps) != set(dense_layers):
        got = sorted(taps) if isinstance(taps, dict) else type(taps).__name__
        raise ValueError(f"{who}.apply_with_taps expects taps for the dense layers "
                         f"{list(dense_layers)}, got {got}.")
    for layer in dense_layers:
        want = (n, params[layer]["b"].shape[-1])
        if tuple(jnp.shape(taps[layer])) != want:
            raise ValueError(f"{who}.apply_with_taps: the tap of {layer!r} must have shape "
                             f"{list(want)}, got {list(jnp.shape(taps[layer]))}.")


def _finish(name, input_shape, num_classes, init, body, head, dense_layers,
            normalization: Normalization | None = None) -> Model:
    """Builds a Model from ``body`` (images -> penultimate) and ``head`` (last dense layer).

    Both take ``dense(p, layer, x)``, the function to apply their dense layers with:
    plain for ``apply`` and ``features``, tapped for ``apply_with_taps``. With a
    ``normalization``, the images are normalised before ``body`` and ``name`` says so.
    """
    dense_layers = tuple(dense_layers)
    if normalization is not None:
        name = f"{name[:-1]}, normalised)"

    def normalise(images):
        if normalization is None:
            return images
        return ((images - jnp.asarray(normalization.mean, images.dtype))
                / jnp.asarray(normalization.std, images.dtype))

    def features(params, images):
        check_images(images, input_shape, name)
        return body(params, normalise(images), _dense)

    def apply(params, images):
        return head(params, features(params, images), _dense)

    def apply_with_taps(params, images, taps):
        check_images(images, input_shape, name)
        _check_taps(taps, params, dense_layers, images.shape[0], name)
        inputs = {}

        def tapped(p, layer, x):
            inputs[layer] = x
            return _dense(p, layer, x) + taps[layer]

        return head(params, body(params, normalise(images), tapped), tapped), inputs

    return Model(init, apply, features, input_shape, num_classes, name, dense_layers,
                 apply_with_taps, normalization)


@_cached(_normalise_lenet)
def lenet(num_classes: int = 10, input_shape=(32, 32, 3), normalization=None) -> Model:
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

    def body(p, x, dense):
        for layer, s in zip(("conv1", "conv2", "conv3"), strides, strict=True):
            x = jax.nn.sigmoid(nn.conv2d(x, p[layer]["w"], p[layer]["b"], stride=s, padding=2))
        return x.reshape(x.shape[0], -1)

    def head(p, f, dense):
        return dense(p, "fc", f)

    return _finish(name, input_shape, num_classes, init, body, head, ("fc",), normalization)


@_cached(_normalise_convnet)
def convnet(num_classes: int = 10, input_shape=(28, 28, 1), width: int = 32,
            conv: Callable = nn.conv2d_auto, normalization=None) -> Model:
    """The convolutional network of Dimitrov et al. (TMLR 2022), Table 5.

    conv ``width`` 3x3 pad 1, ReLU, avg-pool 2; conv ``2*width`` 1x1 pad 1, ReLU,
    avg-pool 2; dense ``100*width/32``, ReLU; dense ``num_classes``. ``width=32`` is the
    FEMNIST network, ``width=64`` the CIFAR-100 one (64/128 channels, dense 200).
    Initialisation as PyTorch's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).

    ``conv`` computes the 3x3 convolution (same signature as ``nn.conv2d``). The default,
    ``nn.conv2d_auto``, is the faster path for the backend: matrix products over patches
    (``nn.conv2d_im2col``) on a CPU, where they made the FedAvg attack's simulation
    (``attacks.fedavg``) about twice as fast as XLA's convolution on one core, and XLA's
    convolution (``nn.conv2d``) on a GPU or TPU. Both give the same network to float32
    rounding.
    """
    input_shape = _check_args(num_classes, input_shape)
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

    def body(p, x, dense):
        x = nn.avg_pool(jax.nn.relu(conv(x, p["conv1"]["w"], p["conv1"]["b"], padding=1)))
        x = nn.avg_pool(jax.nn.relu(nn.conv2d(x, p["conv2"]["w"], p["conv2"]["b"], padding=1)))
        x = x.reshape(x.shape[0], -1)
        return jax.nn.relu(dense(p, "fc1", x))

    def head(p, f, dense):
        return dense(p, "fc2", f)

    return _finish(name, input_shape, num_classes, init, body, head, ("fc1", "fc2"),
                   normalization)


@_cached(_normalise_mlp)
def mlp(num_classes: int = 10, input_shape=(28, 28, 1), hidden=(256,),
        activation: Callable = jax.nn.relu, normalization=None) -> Model:
    """A multi-layer perceptron: flatten, then dense layers ``fc1 ... fcL``.

    The first dense layer sees the flattened image itself, so its gradients reveal the
    image exactly (Geiping et al., NeurIPS 2020; see ``attacks.analytic_fc``).
    """
    input_shape = _check_args(num_classes, input_shape)
    sizes = [math.prod(input_shape), *map(int, hidden), num_classes]
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

    def body(p, x, dense):
        x = x.reshape(x.shape[0], -1)
        for layer in layers[:-1]:
            x = activation(dense(p, layer, x))
        return x

    def head(p, f, dense):
        return dense(p, layers[-1], f)

    return _finish(name, input_shape, num_classes, init, body, head, layers, normalization)
