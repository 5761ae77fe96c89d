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

from collections.abc import Callable

import jax
import jax.numpy as jnp

__all__ = [
    "clip",
    "feature_statistics",
    "l2",
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


def l2(images: jax.Array) -> jax.Array:
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
