"""Defenses: what a client does to its update before sending it, and how likely each result is.

A defense is a mechanism ``p(g | x)``: the client computes its clean gradient ``g'`` and
sends a random ``g ~ p(g | g')`` instead (Balunović et al., ICLR 2022). Each one here is
a :class:`Defense`, a pair of pure functions:

- ``apply(grads, *, key)``: draws a defended update (one key split per leaf);
- ``log_prob(observed, clean)``: the exact ``log p(observed | clean)``, normalising
  constants included, summed over every coordinate of every leaf.

The Bayes-optimal adversary (``leakage_lab.bayes``) maximises ``log_prob`` plus a log
prior, so it exploits the structure of the noise; the distance attacks do not.

Pruning and pruning + noise use one convention: **a coordinate that is exactly 0 in the
observation was pruned** (noise on a kept coordinate is exactly 0 with probability 0).
Pruned coordinates carry no information about the input; they contribute ``log p``
whatever the clean gradient is. Kept coordinates contribute ``log(1 - p)`` plus the
noise density. A noise-free kept coordinate (pure pruning, or σ = 0) would be a point
mass, ``log_prob = -inf`` everywhere but at the truth, which no attack can optimise; it
is scored instead as Gaussian noise of a small standard deviation ``width`` (default
:data:`POINT_MASS_WIDTH`), a smooth surrogate that tends to the point mass as ``width``
goes to 0.

    >>> import jax, jax.numpy as jnp
    >>> d = gaussian(0.1)
    >>> g = {"w": jnp.zeros(3)}
    >>> noisy = d.apply(g, key=jax.random.key(0))
    >>> bool(d.log_prob(noisy, g) < 10)
    True

Each ``apply``/``log_prob`` is a ``functools.partial`` of a module-level function with
numeric keyword parameters (σ, scale, p, width): an attack passes those numbers as data,
so changing σ does not recompile the attack.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from leakage_lab import trees

__all__ = [
    "POINT_MASS_WIDTH",
    "Defense",
    "from_distance",
    "gaussian",
    "laplace",
    "prune",
    "prune_gaussian",
    "prune_laplace",
]

POINT_MASS_WIDTH = 1e-3
"""Standard deviation of the Gaussian that stands in for a noise-free coordinate."""

_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


class Defense(NamedTuple):
    """A randomised defense ``p(g | x)`` as a pair of pure functions.

    Attributes:
        apply: ``apply(grads, *, key) -> defended grads`` (same tree as ``grads``).
        log_prob: ``log_prob(observed, clean) -> scalar``, the exact
            ``log p(observed | clean)`` summed over all coordinates.
        name: a short description, e.g. ``"gaussian(sigma=0.01)"``.
    """

    apply: Callable
    log_prob: Callable
    name: str


# ---------------------------------------------------------------------------------------
# The pieces, written to the equations. ``leaf`` functions act on one array.


def _gaussian_logpdf(x, mean, sigma):
    """``log N(x; mean, σ²) = -(x - mean)² / (2σ²) - log σ - log √(2π)``, elementwise."""
    return -((x - mean) ** 2) / (2.0 * sigma**2) - jnp.log(sigma) - _LOG_SQRT_2PI


def _laplace_logpdf(x, mean, scale):
    """``log Laplace(x; mean, b) = -|x - mean| / b - log(2b)``, elementwise."""
    return -jnp.abs(x - mean) / scale - jnp.log(2.0 * scale)


def _noise_logpdf(x, mean, sigma, width, laplacian):
    """The kept coordinates' density; a zero noise level becomes the point-mass surrogate."""
    if laplacian:
        return jnp.where(sigma > 0, _laplace_logpdf(x, mean, jnp.where(sigma > 0, sigma, 1.0)),
                         _gaussian_logpdf(x, mean, width))
    return _gaussian_logpdf(x, mean, jnp.where(sigma > 0, sigma, width))


def _apply(grads, *, key, p, sigma, laplacian):
    """Prune each coordinate with probability ``p``, then add noise to the kept ones.

    ``g_i = m_i (g'_i + σ ε_i)`` with ``m_i ~ Bernoulli(1 - p)`` and ``ε_i ~ N(0, 1)``
    (or the unit Laplace distribution, so that ``σ`` is its scale ``b``).
    """
    leaves, treedef, keys = trees.leaves_with_keys(grads, key)
    out = []
    for leaf, k in zip(leaves, keys, strict=True):
        k_mask, k_noise = jax.random.split(k)
        leaf = jnp.asarray(leaf)
        draw = jax.random.laplace if laplacian else jax.random.normal
        noisy = leaf + sigma * draw(k_noise, leaf.shape, leaf.dtype)
        kept = jax.random.uniform(k_mask, leaf.shape) >= p
        out.append(jnp.where(kept, noisy, jnp.zeros_like(noisy)).astype(leaf.dtype))
    return jax.tree.unflatten(treedef, out)


def _log_prob(observed, clean, *, p, sigma, width, laplacian):
    """``log p(g | g') = sum_i [g_i = 0] log p + [g_i ≠ 0] (log(1 - p) + log q(g_i | g'_i))``.

    ``q`` is the noise density centred on the clean coordinate. With ``p = 0`` every
    coordinate counts as kept (the ``log p`` branch is never taken).
    """
    trees.check_matching(observed, clean, name="observed gradient", reference_name="clean gradient")
    total = jnp.zeros((), jnp.float32)
    log_p = jnp.log(jnp.where(p > 0, p, 1.0))
    log_keep = jnp.log1p(-p)
    pairs = zip(jax.tree.leaves(observed), jax.tree.leaves(clean), strict=True)
    for obs, cln in pairs:
        pruned = (obs == 0) & (p > 0)
        kept = log_keep + _noise_logpdf(obs, cln, sigma, width, laplacian)
        total = total + jnp.sum(jnp.where(pruned, log_p, kept))
    return total


def _distance_log_prob(observed, clean, *, distance, scale):
    """``log p(g | g') = -distance(g, g') / scale`` (unnormalised)."""
    return -distance(observed, clean) / scale


def _never(grads, *, key):
    raise NotImplementedError(
        "This conditional was made from a distance (from_distance); it has a log_prob but "
        "no sampler. Use gaussian(), laplace() or prune*() to defend an update.")


# ---------------------------------------------------------------------------------------
# Constructors.


def _check(name: str, value: float, *, probability: bool = False) -> float:
    value = float(value)
    if probability:
        if not 0.0 <= value < 1.0:
            raise ValueError(f"{name} must be a pruning probability in [0, 1), got {value}. "
                             "(p = 1 would send nothing.)")
    elif not (value >= 0.0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a finite number >= 0 (0 for no noise), got {value}.")
    return value


def _make(name: str, p: float, sigma: float, laplacian: bool, width: float) -> Defense:
    return Defense(
        apply=functools.partial(_apply, p=p, sigma=sigma, laplacian=laplacian),
        log_prob=functools.partial(_log_prob, p=p, sigma=sigma, width=width,
                                   laplacian=laplacian),
        name=name,
    )


def gaussian(sigma: float, *, width: float = POINT_MASS_WIDTH) -> Defense:
    """Additive Gaussian noise: ``g = g' + σ ε``, ``ε ~ N(0, I)``.

    ``log p(g | g') = sum_i -(g_i - g'_i)² / (2σ²) - log σ - log √(2π)``: the squared L2
    distance of DLG (Zhu et al., NeurIPS 2019) divided by ``2σ²``, plus a constant. With
    ``σ = 0`` the update is sent as is and ``log_prob`` uses the point-mass surrogate.
    """
    sigma = _check("gaussian: sigma", sigma)
    return _make(f"gaussian(sigma={sigma:g})", 0.0, sigma, False, _check("width", width))


def laplace(scale: float, *, width: float = POINT_MASS_WIDTH) -> Defense:
    """Additive Laplacian noise: ``g = g' + b ε``, ``ε ~ Laplace(0, 1)`` (variance ``2b²``).

    ``log p(g | g') = sum_i -|g_i - g'_i| / b - log(2b)``: the L1 distance over ``b``.
    """
    scale = _check("laplace: scale", scale)
    return _make(f"laplace(scale={scale:g})", 0.0, scale, True, _check("width", width))


def prune(p: float, *, width: float = POINT_MASS_WIDTH) -> Defense:
    """Random pruning: each coordinate is independently set to 0 with probability ``p``.

    Kept coordinates are sent exactly; ``log_prob`` scores them with the point-mass
    surrogate (Gaussian of std ``width``) and the zeros with ``log p``.
    """
    p = _check("prune: p", p, probability=True)
    return _make(f"prune(p={p:g})", p, 0.0, False, _check("width", width))


def prune_gaussian(p: float, sigma: float, *, width: float = POINT_MASS_WIDTH) -> Defense:
    """Random pruning with probability ``p``, then Gaussian noise ``σ`` on the kept coordinates.

    Pruned coordinates stay exactly 0, so the observation shows which ones were pruned
    (Balunović et al., ICLR 2022, "prune + Gaussian").
    """
    p = _check("prune_gaussian: p", p, probability=True)
    sigma = _check("prune_gaussian: sigma", sigma)
    return _make(f"prune_gaussian(p={p:g}, sigma={sigma:g})", p, sigma, False,
                 _check("width", width))


def prune_laplace(p: float, scale: float, *, width: float = POINT_MASS_WIDTH) -> Defense:
    """Random pruning with probability ``p``, then Laplacian noise ``b`` on the kept coordinates."""
    p = _check("prune_laplace: p", p, probability=True)
    scale = _check("prune_laplace: scale", scale)
    return _make(f"prune_laplace(p={p:g}, scale={scale:g})", p, scale, True,
                 _check("width", width))


def from_distance(distance: Callable, *, scale: float = 1.0) -> Defense:
    """The conditional that a distance-based attack assumes: ``p(g | g') ∝ exp(-d(g, g') / s)``.

    It makes the prior-work attacks special cases of ``bayes``: with ``distances.l2`` it
    is :func:`gaussian` with ``σ² = scale / 2`` (DLG), with ``distances.l1`` it is
    :func:`laplace` with ``b = scale``, with ``distances.cosine`` an (improper) density on
    the update's direction (Inverting Gradients). Only ``log_prob`` is defined, without
    its normalising constant; ``apply`` raises.
    """
    scale = float(scale)
    if not scale > 0:
        raise ValueError(f"from_distance: scale must be > 0, got {scale}.")
    name = getattr(distance, "__name__", "distance")
    return Defense(apply=_never,
                   log_prob=functools.partial(_distance_log_prob, distance=distance,
                                              scale=scale),
                   name=f"from_distance({name}, scale={scale:g})")
