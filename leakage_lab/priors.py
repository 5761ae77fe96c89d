"""Image priors: what an attacker believes natural images look like.

Each prior is ``prior(images [N, H, W, C]) -> scalar``, a *penalty* to minimise: small
for plausible images, large for implausible ones. An attack adds ``weight * prior(x)``
to its gradient distance, as Inverting Gradients does (Geiping et al., NeurIPS 2020):

    x* = argmin_x  d(∇θ L(x, y), g)  +  α · TV(x)

In the Bayesian reading (Balunović et al., ICLR 2022) the penalty is a negative
log-prior, ``-log p(x)`` up to a constant and a scale.

    >>> import jax.numpy as jnp, leakage_lab as ll
    >>> float(ll.priors.total_variation(jnp.full((1, 4, 4, 3), 0.5)))
    0.0
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from leakage_lab.distances import mean_squared

__all__ = [
    "clip",
    "conv_max",
    "distance_to_grey",
    "epoch_invariant",
    "epoch_mean",
    "feature_statistics",
    "total_variation",
    "total_variation_isotropic",
    "total_variation_squared",
    "uniform",
]


def _differences(images: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Neighbour differences ``x[i+1, j] - x[i, j]`` (vertical), ``x[i, j+1] - x[i, j]``."""
    return images[:, 1:, :, :] - images[:, :-1, :, :], images[:, :, 1:, :] - images[:, :, :-1, :]


def total_variation(images: jax.Array) -> jax.Array:
    """Anisotropic total variation, as in Geiping et al.'s released code (NeurIPS 2020).

    ``TV(x) = mean |x[i+1, j] - x[i, j]|  +  mean |x[i, j+1] - x[i, j]|``

    Each mean runs over the batch, all neighbour pairs in that direction and the
    channels. Zero for a constant image; 2 for a 0/1 checkerboard. It favours piecewise
    constant images with sharp edges.
    """
    dy, dx = _differences(images)
    return jnp.mean(jnp.abs(dy)) + jnp.mean(jnp.abs(dx))


def total_variation_isotropic(images: jax.Array, eps: float = 1e-8) -> jax.Array:
    """Isotropic total variation (Rudin, Osher and Fatemi, Physica D 1992).

    ``TV(x) = mean_{i,j} sqrt((x[i+1, j] - x[i, j])² + (x[i, j+1] - x[i, j])² + eps)``

    over the pixels that have both neighbours (all but the last row and column). The
    small ``eps`` keeps the gradient finite where the image is flat; it adds about
    ``sqrt(eps)`` to the value.
    """
    dy, dx = _differences(images)
    return jnp.mean(jnp.sqrt(dy[:, :, :-1] ** 2 + dx[:, :-1, :] ** 2 + eps))


def total_variation_squared(images: jax.Array) -> jax.Array:
    """Squared ("L2") total variation: a smoothness penalty.

    ``S(x) = mean (x[i+1, j] - x[i, j])²  +  mean (x[i, j+1] - x[i, j])²``

    Unlike :func:`total_variation` it punishes sharp edges heavily and blurs them.
    """
    dy, dx = _differences(images)
    return jnp.mean(dy**2) + jnp.mean(dx**2)


def distance_to_grey(images: jax.Array) -> jax.Array:
    """Squared distance to mid-grey: ``mean (x - 0.5)²``.

    A Gaussian prior centred on the middle of the [0, 1] box; it pulls stray pixels
    back towards grey.
    """
    return jnp.mean((images - 0.5) ** 2)


def clip(images: jax.Array) -> jax.Array:
    """Box penalty: ``mean (relu(x - 1)² + relu(-x)²)``, zero inside [0, 1].

    A soft version of clamping the image to [0, 1]; use it where a hard projection
    is not possible (e.g. with a line-search optimiser).
    """
    return jnp.mean(jax.nn.relu(images - 1.0) ** 2 + jax.nn.relu(-images) ** 2)


def uniform(images: jax.Array) -> jax.Array:
    """The uniform prior (no preference, as in DLG): always 0."""
    return jnp.zeros((), images.dtype)


def feature_statistics(model, params, reference_images) -> Callable:
    """A DeepInversion-style prior: features should look like those of natural images.

    GradInversion (Yin et al., CVPR 2021) adds to its gradient distance a DeepInversion
    term that pulls the batch-norm statistics of the candidate's feature maps towards the
    network's running statistics. The networks here have no batch norm, so the reference
    statistics come from a few public ``reference_images`` instead: the mean ``μ`` and
    variance ``v`` of every penultimate unit (``model.features``). The penalty is

        ``R(x) = mean_u (μ_u(x) - μ_u)²  +  mean_u (v_u(x) - v_u)²``

    with the candidate's statistics taken over its batch (for one image only the mean
    term acts). Returns ``prior(images) -> scalar``.
    """
    if model.features is None:
        raise ValueError(f"feature_statistics needs {model.name}'s penultimate features.")
    reference = model.features(params, jnp.asarray(reference_images))
    mean, var = jnp.mean(reference, axis=0), jnp.var(reference, axis=0)

    def deep_inversion(images: jax.Array) -> jax.Array:
        f = model.features(params, images)
        mean_gap = jnp.mean((jnp.mean(f, axis=0) - mean) ** 2)
        var_gap = jnp.mean((jnp.var(f, axis=0) - var) ** 2)
        return mean_gap + var_gap

    return deep_inversion


# ---------------------------------------------------------------------------------------
# FedAvg's epoch order-invariant prior (Dimitrov et al., TMLR 2022, Eq. 3): the attack
# holds one copy of the client's images per epoch, in a different order each time.


def epoch_mean(images: jax.Array) -> jax.Array:
    """``g(X) = (1/N) sum_i x_i``: the mean image of an epoch (the paper's FEMNIST choice)."""
    return jnp.mean(images, axis=0)


@functools.lru_cache(maxsize=32)
def _conv_max(seed: int, filters: int, channels: int):
    w = jax.random.normal(jax.random.key(seed), (3, 3, channels, filters)) \
        / math.sqrt(9 * channels)
    w = np.asarray(w)

    def g(images: jax.Array) -> jax.Array:
        y = jax.lax.conv_general_dilated(images, jnp.asarray(w), (1, 1), "SAME",
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return jnp.max(y, axis=0)

    g.__doc__ = (f"g(X) = max_i conv(x_i): pixelwise maximum over an epoch of a fixed random "
                 f"3x3 convolution with {filters} filters (seed {seed}).")
    return g


def conv_max(*, key: jax.Array, channels: int, filters: int = 96) -> Callable:
    """``g(X) = max_i conv_W(x_i)``: the pixelwise maximum, over an epoch's images, of one
    fixed random 3x3 convolution with ``filters`` output channels, stride 1 (the paper's
    CIFAR-100 choice, after Li et al., 2022). ``W ~ N(0, 1/(9·channels))`` drawn from
    ``key``; ``channels`` is the images' channel count. The same key gives the same
    function object (so attacks reuse their compiled code)."""
    seed = int(jax.random.randint(key, (), 0, 2**31 - 1))
    return _conv_max(seed, int(filters), int(channels))


def epoch_invariant(epoch_images: jax.Array, g: Callable = epoch_mean,
                    distance: Callable = mean_squared) -> jax.Array:
    """Eq. 3 of Dimitrov et al. (TMLR 2022): ``(1/E²) sum_{e1,e2} D(g(X̃_e1), g(X̃_e2))``.

    ``epoch_images`` is ``[E, N, H, W, C]``: the images of every epoch. Zero when every
    epoch holds the same images in any order. ``g``: :func:`epoch_mean` or :func:`conv_max`;
    ``D``: ``distances.mean_squared`` or ``distances.mean_absolute``.
    """
    summaries = jax.vmap(g)(epoch_images)
    pairs = jax.vmap(lambda a: jax.vmap(lambda b: distance(a, b))(summaries))(summaries)
    return jnp.mean(pairs)
