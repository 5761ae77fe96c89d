"""DP-SGD (Abadi et al., ACM CCS 2016) for the simulated clients, with its privacy budget.

Each local step clips every example's gradient to norm at most ``clip_norm``, sums the
clipped gradients, adds Gaussian noise of standard deviation
``noise_multiplier * clip_norm`` to every coordinate, and divides by the batch size:

    g = ( Σ_i clip(∇θ L(x_i), C) + N(0, σ² C² I) ) / m

Pass a :class:`DPSGD` as ``dp=`` to ``fl.client_update``, ``fl.client_steps`` or
``fl.train``. :func:`epsilon` reads the resulting (ε, δ) guarantee off the RDP accountant
of the ``dp_accounting`` library.
"""

from __future__ import annotations

import functools
import logging
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from leakage_lab import objective, trees
from leakage_lab._validate import check_batch

__all__ = ["DPSGD", "clip_and_noise", "dp_gradient", "dp_sgd", "epsilon", "private_gradient"]


class DPSGD(NamedTuple):
    """DP-SGD's two knobs: the per-example clipping norm C and the noise multiplier σ."""

    clip_norm: float
    noise_multiplier: float


def dp_sgd(clip_norm: float, noise_multiplier: float) -> DPSGD:
    """Validated DP-SGD settings: ``clip_norm > 0``, ``noise_multiplier >= 0`` (both finite)."""
    if not (clip_norm > 0 and math.isfinite(clip_norm)):
        raise ValueError(f"clip_norm must be > 0, got {clip_norm}.")
    if not (noise_multiplier >= 0 and math.isfinite(noise_multiplier)):
        raise ValueError(f"noise_multiplier must be >= 0, got {noise_multiplier}.")
    return DPSGD(float(clip_norm), float(noise_multiplier))


def clip_and_noise(per_example, mask, dp: DPSGD, *, key: jax.Array):
    """The privatised mean gradient of one batch.

    Args:
        per_example: gradients with a leading batch axis (one per example slot).
        mask: ``[m]``, 1 for real examples and 0 for empty slots (they contribute nothing).
        dp: the clipping norm and noise multiplier.
        key: PRNG key for the noise; split per leaf.
    """
    leaves, treedef, keys = trees.leaves_with_keys(per_example, key)
    norms = jnp.sqrt(sum(jnp.sum(x.reshape(x.shape[0], -1) ** 2, axis=1) for x in leaves))
    factor = mask * jnp.minimum(1.0, dp.clip_norm / jnp.maximum(norms, 1e-12))
    count = jnp.maximum(jnp.sum(mask), 1.0)
    noisy = [
        (jnp.tensordot(factor, x, axes=1)
         + dp.noise_multiplier * dp.clip_norm * jax.random.normal(k, x.shape[1:], x.dtype))
        / count
        for x, k in zip(leaves, keys, strict=True)
    ]
    return jax.tree.unflatten(treedef, noisy)


def dp_gradient(model, params, images, labels, dp: DPSGD, *, key: jax.Array):
    """What a FedSGD client running DP-SGD sends: its batch's privatised mean gradient.

    ``g = (Σ_i clip(∇θ L(x_i), C) + N(0, σ² C² I)) / m`` over the ``m`` examples; with
    ``clip_norm`` huge and ``noise_multiplier = 0`` it is ``fl.gradient``.
    """
    check_batch(model, images, labels, "privacy.dp_gradient")
    return _dp_gradient(model, params, jnp.asarray(images), jnp.asarray(labels), dp, key)


def private_gradient(model, params, images, labels, mask, *, dp: DPSGD, key: jax.Array):
    """DP-SGD's gradient of one batch (slots with ``mask == 0`` are empty):
    per-example gradients, clipped, summed, noised, averaged. The gradient of one
    DP-SGD step of ``fl.client_update(..., dp=...)`` (``objective.sgd_step``)."""
    per_example = objective.per_example_gradients(model, params, images, labels)
    return clip_and_noise(per_example, mask, dp, key=key)


@functools.partial(jax.jit, static_argnums=0)
def _dp_gradient(model, params, images, labels, dp, key):
    return private_gradient(model, params, images, labels,
                            jnp.ones(images.shape[0], jnp.float32), dp=dp, key=key)


def epsilon(dp: DPSGD, *, sampling_rate: float, steps: int, delta: float) -> float:
    """ε of (ε, δ)-DP after ``steps`` DP-SGD steps at ``sampling_rate`` (RDP accountant).

    The accountant assumes each step samples every example independently with
    probability ``sampling_rate`` (Poisson sampling). The simulated clients shuffle and
    split into batches of ``m`` instead; ``m / N`` is the usual stand-in for the rate,
    and the result should be read as that approximation.
    """
    import dp_accounting
    from dp_accounting.rdp import rdp_privacy_accountant

    if not 0 < sampling_rate <= 1:
        raise ValueError(f"sampling_rate must be in (0, 1], got {sampling_rate}.")
    if not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1), got {delta}.")
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}.")
    if steps == 0:
        return 0.0  # nothing was released about this client
    if dp.noise_multiplier == 0:
        return float("inf")
    event = dp_accounting.SelfComposedDpEvent(
        dp_accounting.PoissonSampledDpEvent(
            sampling_rate, dp_accounting.GaussianDpEvent(dp.noise_multiplier)),
        int(steps))
    accountant = rdp_privacy_accountant.RdpAccountant()
    # For small σ the accountant drops the few fractional orders whose series does not
    # converge, logging one warning per order and step count; the ε is still valid.
    absl_logger = logging.getLogger("absl")
    level = absl_logger.level
    absl_logger.setLevel(logging.ERROR)
    try:
        accountant.compose(event)
        return float(accountant.get_epsilon(delta))
    finally:
        absl_logger.setLevel(level)
