"""Layer primitives for the models: plain functions on arrays, written for clarity.

``conv2d`` uses XLA's convolution, except for 1x1 kernels, which are a plain matrix
product. ``conv2d_im2col`` computes any convolution as one matrix product over image
patches ("im2col"); on a 2-core CPU it runs a little faster in the second-order
gradients that gradient-matching attacks need, but it compiles more than twice as
slowly (measured on the DLG LeNet: 1.3 vs 1.5 ms per L-BFGS step, 5.2 vs 2.2 s to compile).
``conv2d_auto`` picks, when it is traced, the faster of the two for the backend the
computation runs on: ``conv2d_im2col`` on a CPU, ``conv2d`` (XLA's convolution, which
GPUs and TPUs run natively) elsewhere. ``models.convnet`` uses it by default.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax import lax

__all__ = [
    "avg_pool",
    "conv2d",
    "conv2d_auto",
    "conv2d_im2col",
    "conv_output_size",
    "dense",
    "uniform_init",
]


def conv_output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """Spatial size after a convolution, as in PyTorch: ``(size + 2p - k) // s + 1``."""
    return (size + 2 * padding - kernel) // stride + 1


def conv2d(x: jax.Array, w: jax.Array, b: jax.Array, *, stride: int = 1, padding: int = 0):
    """2-D convolution of NHWC images ``x`` with an HWIO kernel ``w``, plus bias ``b``."""
    if w.shape[:2] == (1, 1):
        return _conv1x1(x, w, b, stride, padding)
    y = lax.conv_general_dilated(
        x, w, (stride, stride), [(padding, padding)] * 2,
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
    )
    return y + b


def _conv1x1(x, w, b, stride: int, padding: int):
    """A 1x1 convolution as a matrix product. The zero padding's outputs are the bias
    alone, so the product runs on the image only and its result is padded (the same
    numbers as padding first, with fewer multiplications: a quarter fewer for the
    14x14 maps of ``models.convnet``)."""
    if not padding:
        return x[:, ::stride, ::stride] @ w[0, 0] + b
    _, h, wd, _ = x.shape
    ho = conv_output_size(h, 1, stride, padding)
    wo = conv_output_size(wd, 1, stride, padding)
    first = -(-padding // stride)            # outputs before the first image row/column
    y = x[:, first * stride - padding::stride, first * stride - padding::stride]
    y = y[:, :ho - first, :wo - first] @ w[0, 0]
    y = jnp.pad(y, ((0, 0), (first, ho - first - y.shape[1]),
                    (first, wo - first - y.shape[2]), (0, 0)))
    return y + b


def conv2d_im2col(x: jax.Array, w: jax.Array, b: jax.Array, *, stride: int = 1,
                  padding: int = 0):
    """The same convolution as one matrix product: ``patches @ w.reshape(kh*kw*C, O)``.

    Every output pixel is the dot product of one ``kh x kw x C`` patch with the kernel.
    """
    kh, kw, c, o = w.shape
    if padding:
        x = jnp.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    _, h, wd, _ = x.shape
    ho = conv_output_size(h, kh, stride, 0)
    wo = conv_output_size(wd, kw, stride, 0)
    patches = jnp.concatenate(
        [
            x[:, i : i + stride * (ho - 1) + 1 : stride, j : j + stride * (wo - 1) + 1 : stride]
            for i in range(kh)
            for j in range(kw)
        ],
        axis=-1,
    )
    return patches @ w.reshape(kh * kw * c, o) + b


def conv2d_auto(x: jax.Array, w: jax.Array, b: jax.Array, *, stride: int = 1,
                padding: int = 0):
    """The same convolution, computed the fastest way for the backend: :func:`conv2d_im2col`
    on a CPU, :func:`conv2d` elsewhere (chosen when traced, from ``jax.default_backend()``).

    The two agree to float32 rounding (about 1e-6 relative). On one CPU core the im2col
    path made one step of the FedAvg attack (E = 10, m = 5, N = 50, ``models.convnet``)
    about twice as fast as XLA's convolution (``benchmarks/fedavg.py --setting speed``).
    """
    conv = conv2d_im2col if jax.default_backend() == "cpu" else conv2d
    return conv(x, w, b, stride=stride, padding=padding)


def avg_pool(x: jax.Array, size: int = 2) -> jax.Array:
    """Non-overlapping average pooling of NHWC images; odd borders are dropped (PyTorch)."""
    n, h, w, c = x.shape
    h2, w2 = h // size, w // size
    x = x[:, : h2 * size, : w2 * size]
    return x.reshape(n, h2, size, w2, size, c).mean(axis=(2, 4))


def dense(x: jax.Array, w: jax.Array, b: jax.Array) -> jax.Array:
    """Fully connected layer ``x @ w + b`` with ``w`` of shape ``[in, out]``."""
    return x @ w + b


def uniform_init(key: jax.Array, shape: tuple[int, ...], bound: float) -> jax.Array:
    """Samples U(-bound, bound), float32."""
    return jax.random.uniform(key, shape, jnp.float32, -bound, bound)


def default_bound(fan_in: int) -> float:
    """PyTorch's default bound for weights and biases of conv and dense layers: 1/sqrt(fan_in)."""
    return 1.0 / math.sqrt(fan_in)
