"""Gradient compression as a defense, and the attack distances matched to each scheme.

Clients often compress their update before sending it, to save bandwidth. Compression
throws information away, so it is sometimes offered as a privacy defense. Each scheme
here is a :class:`~leakage_lab.defenses.Defense` (``apply(grads, *, key)``):

- :func:`quantize`: each leaf rounded to ``2**bits`` levels, stochastically (unbiased);
- :func:`sign`: SignSGD (Bernstein et al., ICML 2018), the sign scaled by ``mean |g|``;
- :func:`top_k`: the largest coordinates of the whole update kept, the rest zeroed
  (Lin et al., ICLR 2018, deep gradient compression).

The strongest sensible attack on a compressed update compares like with like:

- :func:`kept_distance` compares only the coordinates the observation kept (non-zero),
  for top-k and random pruning (``defenses.prune``, Zhu et al., NeurIPS 2019);
- :func:`sign_distance` compares the observed signs with a smooth sign (``tanh``) of
  the candidate, so that the distance is differentiable;
- quantisation keeps magnitudes and directions, so the plain distances apply directly
  (``distances.cosine``, as in Inverting Gradients), or the Gaussian approximation of
  ``quantize(...).log_prob`` in the Bayes attack.

Each scheme carries its matched distance as ``Defense.matched_distance``, so the
strongest sensible attack on a compressed update is

    attacks.reconstruct(model, params, observed, labels=..., distance=d.matched_distance)

    >>> import jax, jax.numpy as jnp
    >>> g = {"w": jnp.array([3.0, -1.0, 0.5, -0.5])}
    >>> top_k(0.5).apply(g, key=jax.random.key(0))["w"].tolist()
    [3.0, -1.0, 0.0, 0.0]
    >>> sign().apply(g, key=jax.random.key(0))["w"].tolist()
    [1.25, -1.25, 1.25, -1.25]

The distance constructors are cached: the same arguments give the same function object,
so attacks (which cache compiled code by function identity) do not recompile.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp

from leakage_lab import distances, trees
from leakage_lab.defenses import POINT_MASS_WIDTH, Defense, kept_distance

__all__ = ["kept_distance", "quantize", "sign", "sign_distance", "top_k"]

_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


def _no_log_prob(observed, clean, *, scheme, distance):
    raise NotImplementedError(
        f"{scheme} is deterministic given the clean update, so it has no useful density "
        f"(a point mass). Attack it with a matched distance instead: "
        f"compression.{distance}.")


# ---------------------------------------------------------------------------------------
# Quantisation.


def _step(max_abs, bits):
    """Spacing of the ``2**bits`` levels over ``[-m, m]``: ``Δ = 2m / (2**bits - 1)``."""
    return 2.0 * max_abs / (2.0**bits - 1.0)


def _quantize_leaf(leaf, key, bits):
    """``q = -m + Δ (floor(u) + b)``, ``u = (g + m) / Δ``, ``b ~ Bernoulli(u - floor(u))``.

    Stochastic rounding: ``E[q] = g`` exactly. A leaf of zeros stays zeros.
    """
    leaf = jnp.asarray(leaf)
    m = jnp.max(jnp.abs(leaf)) if leaf.size else jnp.zeros((), leaf.dtype)
    step = _step(m, bits)
    safe_step = jnp.where(step > 0, step, 1.0)
    u = (leaf + m) / safe_step
    low = jnp.floor(u)
    up = jax.random.uniform(key, leaf.shape, leaf.dtype) < (u - low)
    level = jnp.clip(low + up, 0.0, 2.0**bits - 1.0)
    return jnp.where(step > 0, -m + safe_step * level, jnp.zeros_like(leaf)).astype(leaf.dtype)


def _quantize_apply(grads, *, key, bits):
    leaves, treedef, keys = trees.leaves_with_keys(grads, key)
    out = [_quantize_leaf(leaf, k, bits) for leaf, k in zip(leaves, keys, strict=True)]
    return jax.tree.unflatten(treedef, out)


def _quantize_log_prob(observed, clean, *, bits):
    """Gaussian approximation: ``sum_i log N(g_i; g'_i, (Δ/2)²)``, ``Δ`` per leaf.

    The rounding error of one coordinate has variance ``f (1 - f) Δ² <= Δ²/4`` (``f`` its
    fractional position between two levels), so ``σ = Δ/2`` is its largest standard
    deviation. ``Δ`` is read from the observation: its largest ``|g_i|`` is ``m`` exactly.
    A leaf of zeros uses the point-mass surrogate width.
    """
    trees.check_matching(observed, clean, name="observed gradient", reference_name="clean gradient")
    total = jnp.zeros((), jnp.float32)
    for obs, cln in zip(jax.tree.leaves(observed), jax.tree.leaves(clean), strict=True):
        m = jnp.max(jnp.abs(obs)) if obs.size else jnp.zeros(())
        sigma = jnp.where(m > 0, _step(m, bits) / 2.0, POINT_MASS_WIDTH)
        total = total + jnp.sum(-((obs - cln) ** 2) / (2.0 * sigma**2) - jnp.log(sigma)
                                - _LOG_SQRT_2PI)
    return total


def quantize(bits: int) -> Defense:
    """Uniform stochastic quantisation of each leaf to ``2**bits`` levels over ``[-m, m]``.

    ``m = max |g|`` of the leaf (sent along, as in QSGD-style schemes); the levels are
    ``-m + kΔ``, ``Δ = 2m / (2**bits - 1)``, and each coordinate rounds up or down with
    the probabilities that make it unbiased. ``bits`` runs from 1 (two levels, ``±m``)
    to 32. Its ``matched_distance`` is plain cosine: directions survive.
    ``log_prob`` is a Gaussian approximation of the rounding error (see
    :func:`_quantize_log_prob`), not the exact (discrete) law.
    """
    if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= 32:
        raise ValueError(f"quantize: bits must be an integer from 1 to 32 (a float32 "
                         f"coordinate has 32), got {bits!r}.")
    return Defense(apply=functools.partial(_quantize_apply, bits=bits),
                   log_prob=functools.partial(_quantize_log_prob, bits=bits),
                   name=f"quantize(bits={bits})", matched_distance=distances.cosine)


# ---------------------------------------------------------------------------------------
# SignSGD.


def _sign_apply(grads, *, key):
    """``g_l = mean(|g'_l|) sign(g'_l)`` per leaf ``l`` (``sign(0) = 0``).

    Scaling by the leaf's mean magnitude keeps the update's L1 norm per leaf, so it can
    still be used as a step; the attack sees only the signs (and one number per leaf).
    """
    del key
    return jax.tree.map(lambda g: jnp.mean(jnp.abs(g)) * jnp.sign(g), grads)


def sign() -> Defense:
    """SignSGD (Bernstein et al., ICML 2018): each coordinate's sign, times its leaf's ``mean |g|``.

    Deterministic (``key`` is accepted and unused); attack it with :func:`sign_distance`.
    """
    return Defense(apply=_sign_apply,
                   log_prob=functools.partial(_no_log_prob, scheme="sign()",
                                              distance="sign_distance()"),
                   name="sign()", matched_distance=sign_distance())


# ---------------------------------------------------------------------------------------
# Global top-k sparsification.


def _top_k_count(fraction: float | None, count: int | None, n: int) -> int:
    """``k``: the given count, or ``ceil(fraction · n)`` (at least 1 for a non-empty update)."""
    if count is not None:
        if count > n:
            raise ValueError(f"top_k: k={count} coordinates asked for, but the update has only "
                             f"{n} parameters; give k <= {n} (or a fraction).")
        return count
    return min(n, max(1, math.ceil(fraction * n - 1e-9))) if n else 0


def _top_k_apply(grads, *, key, fraction, count):
    """Keep the ``k`` largest ``|g_i|`` over the whole update, zero the rest.

    Ties go to the coordinate that comes first (leaf order, then row-major order), so
    exactly ``k`` coordinates are kept, deterministically. ``key`` is unused.
    """
    del key
    leaves, treedef = jax.tree.flatten(grads)
    leaves = [jnp.asarray(leaf) for leaf in leaves]
    flat = jnp.concatenate([jnp.abs(leaf).ravel().astype(jnp.float32) for leaf in leaves]
                           + [jnp.zeros((0,), jnp.float32)])
    k = _top_k_count(fraction, count, flat.size)
    _, index = jax.lax.top_k(flat, k)
    keep = jnp.zeros(flat.shape, bool).at[index].set(True)
    out, start = [], 0
    for leaf in leaves:
        mask = keep[start:start + leaf.size].reshape(leaf.shape)
        out.append(jnp.where(mask, leaf, jnp.zeros_like(leaf)))
        start += leaf.size
    return jax.tree.unflatten(treedef, out)


def top_k(fraction: float | None = None, *, k: int | None = None) -> Defense:
    """Global top-k sparsification (Lin et al., ICLR 2018): keep the ``k`` largest coordinates.

    Give either ``fraction``, for ``k = ceil(fraction · n)`` with ``n`` the number of
    coordinates of every leaf together, or the count ``k`` itself (checked against ``n``
    when the update arrives). The kept ones are the largest in magnitude over the whole
    update. Deterministic; attack it with :func:`kept_distance` (its ``matched_distance``).
    """
    if (fraction is None) == (k is None):
        raise ValueError(f"top_k: give either fraction or k, got fraction={fraction!r}, "
                         f"k={k!r}.")
    if k is not None:
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"top_k: k must be an integer >= 1, got {k!r}.")
        label = f"k={k}"
    else:
        fraction = float(fraction)
        if not 0.0 < fraction <= 1.0:
            raise ValueError(f"top_k: fraction must be in (0, 1], got {fraction}.")
        label = f"fraction={fraction:g}"
    return Defense(apply=functools.partial(_top_k_apply, fraction=fraction, count=k),
                   log_prob=functools.partial(_no_log_prob, scheme=f"top_k({label})",
                                              distance="kept_distance()"),
                   name=f"top_k({label})", matched_distance=kept_distance())


# ---------------------------------------------------------------------------------------
# Matched attack distances.


@functools.lru_cache(maxsize=64)
def _sign_distance(temperature: float, eps: float) -> Callable:
    def sign_dist(observed, candidate) -> jax.Array:
        total, count = jnp.zeros((), jnp.float32), 0
        for obs, cand in zip(jax.tree.leaves(observed), jax.tree.leaves(candidate),
                             strict=True):
            tau = temperature * jax.lax.stop_gradient(jnp.mean(jnp.abs(cand))) + eps
            total = total + jnp.sum((jnp.sign(obs) - jnp.tanh(cand / tau)) ** 2)
            count += obs.size
        return total / max(count, 1)

    sign_dist.__name__ = f"sign_distance_t{temperature:g}"
    return sign_dist


def sign_distance(temperature: float = 0.1, *, eps: float = 1e-12) -> Callable:
    """``D(g, g') = mean_i (sign g_i - tanh(g'_i / τ_l))²``, ``τ_l = t · mean |g'_l|``.

    A smooth surrogate of "the candidate's signs disagree with the observed ones", for
    SignSGD. ``τ_l`` is set per leaf from the candidate's own scale (with a stop-gradient),
    so the distance is blind to the candidate's magnitude, as the sign update is; a
    smaller ``temperature`` ``t`` makes ``tanh`` closer to ``sign`` but its gradient
    sparser. Observed zeros (``sign 0 = 0``) ask the candidate to be small there.
    Values lie in ``[0, 4]``; the same arguments return the same function object.
    """
    temperature = float(temperature)
    if not (temperature > 0 and math.isfinite(temperature)):
        raise ValueError(f"sign_distance: temperature must be a finite number > 0, "
                         f"got {temperature}.")
    return _sign_distance(temperature, float(eps))
