"""Lab 07 (FedAvg label counts): RecLabels' interpolated estimate (Dimitrov et al., Sec. 4.5)."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from leakage_lab.checks._common import (
    _call,
    _close,
    _fail,
    _ok,
)
from leakage_lab.checks._guard import exercise

__all__ = ["fedavg_label_counts"]


def _interpolated_counts(column_sums, server, client, num_samples, epochs, batch_size,
                         t=None, per_step_size=None):
    """Reference and variants of the RecLabels estimate (real-valued, before rounding)."""
    from leakage_lab import labels as lab

    steps = epochs * (num_samples // batch_size)
    if t is None:
        p, o = lab.interpolate(server, client, steps)
        p, o = np.asarray(p, np.float64), np.asarray(o, np.float64)
    else:
        p = ((1 - t)[:, None] * np.asarray(server.p_mean, np.float64)
             + t[:, None] * np.asarray(client.p_mean, np.float64))
        o = (1 - t) * float(server.o_mean) + t * float(client.o_mean)
    n = batch_size if per_step_size is None else per_step_size
    delta = np.asarray(column_sums, np.float64)
    return (n * p - n * delta[None, :] / o[:, None]).sum(axis=0) / epochs, p, o


def _counts_case(seed: int, num_classes: int = 5):
    from leakage_lab import labels as lab

    k = jax.random.split(jax.random.key(100 + seed), 3)
    server = lab.DummyStatistics(jax.nn.softmax(jax.random.normal(k[0], (num_classes,))),
                                 jnp.asarray(2.0 + seed))
    client = lab.DummyStatistics(jax.nn.softmax(2 * jax.random.normal(k[1], (num_classes,))),
                                 jnp.asarray(7.0 + seed))
    column_sums = 0.1 * jax.random.normal(k[2], (num_classes,))
    return column_sums, server, client


@exercise(
    forbidden=("leakage_lab.labels.interpolate", "leakage_lab.labels.fedavg_counts"),
    allowed=("leakage_lab.labels.geng_estimate", "leakage_lab.labels.DummyStatistics"),
)
def fedavg_label_counts(fn: Callable) -> None:
    """Checks ``fn(column_sums, server, client, num_samples, epochs, batch_size)`` (lab 07).

    RecLabels of Dimitrov et al. (TMLR 2022, Sec. 4.5), before rounding. ``server`` and
    ``client`` are ``ll.labels.DummyStatistics`` (``p_mean [K]``, ``o_mean``) measured at
    θs and θc; ``column_sums`` ``[K]`` are the column sums Δ_k of the last layer's
    average update ``(θs − θc) / (η U)``. With ``U = E · N/m`` local steps (m divides N)
    and ``t_i = (i − 1)/U`` for step ``i = 1..U``:

        p̃_i = (1 − t_i) p̃^s + t_i p̃^c,   Õ_i = (1 − t_i) Õ^s + t_i Õ^c
        λ̃_k = (1/E) Σ_i [ m p̃_{k,i} − m Δ_k / Õ_i ]

    It must equal the ``raw`` estimate of ``ll.labels.fedavg_counts`` (whose statistics
    come from ``ll.labels.interpolate``).

    Raises:
        CheckFailed: with a hint (statistics at θs or θc only, interpolation off by one
            step, the 1/E missing, Õ averaged before dividing, a sign...).
    """
    name = getattr(fn, "__name__", "your function")
    what = f"{name}(column_sums, server, client, num_samples, epochs, batch_size)"
    for case, (n, epochs, m) in enumerate(((12, 2, 4), (10, 2, 5))):
        column_sums, server, client = _counts_case(case)
        want, p, o = _interpolated_counts(column_sums, server, client, n, epochs, m)
        got = _call(fn, column_sums, server, client, n, epochs, m, what=what)
        if got is None:
            _fail(f"{name} returned None: did you forget the `return` statement?")
        got = np.asarray(got, np.float64)
        if got.shape != want.shape:
            _fail(f"{name} returned shape {list(got.shape)}, expected one estimate per class, "
                  f"[{want.size}]: sum the per-step estimates over the steps (axis 0).")
        if _close(got, want, rtol=1e-4, atol=1e-4):
            continue
        if case == 1:
            _fail(f"{name} is right for one client but not for another (N = {n}, E = "
                  f"{epochs}, m = {m}): is a size hard-coded?")
        for value, hint in _count_variants(column_sums, server, client, n, epochs, m):
            if _close(got, value, rtol=1e-4, atol=1e-4):
                _fail(f"{name} returned {np.round(got, 3).tolist()} where "
                      f"{np.round(want, 3).tolist()} was expected: {hint}.")
        _fail(f"{name} returned {np.round(got, 3).tolist()} where {np.round(want, 3).tolist()} "
              f"was expected (N = {n}, E = {epochs}, m = {m}). Per step i = 1..U: t = (i − 1)/U, "
              "interpolate p̃ and Õ, take m p̃ − m Δ / Õ; sum over the steps and divide by E.")
    _ok(f"{name}: the interpolated label counts of ll.labels.fedavg_counts, for two clients.")


def _count_variants(column_sums, server, client, n, epochs, m):
    """(estimate, hint) for the usual slips in the interpolated label counts."""
    want, p, o = _interpolated_counts(column_sums, server, client, n, epochs, m)
    steps = epochs * (n // m)
    i = np.arange(1, steps + 1, dtype=np.float64)
    delta = np.asarray(column_sums, np.float64)

    def variant(**kw):
        return _interpolated_counts(column_sums, server, client, n, epochs, m, **kw)[0]

    return [
        (np.round(want), "that is the rounded estimate: return the real-valued λ̃ "
                         "(ll.labels.round_counts rounds it later)"),
        (variant(t=np.zeros(steps)), "every step used the statistics at θs (that is "
                                     "\"Geng et al. θs\"): interpolate from θs to θc "
                                     "over the U steps"),
        (variant(t=np.ones(steps)), "every step used the statistics at θc (\"Geng et al. "
                                    "θc\"): interpolate from θs to θc over the U steps"),
        (variant(t=i / steps), "off by one step: step i's gradient is taken at the weights "
                               "after i − 1 steps, so t_i = (i − 1)/U runs from 0 to "
                               "(U − 1)/U, not from 1/U to 1"),
        (want * epochs, "E times too large: each image is counted once per epoch, so "
                        "divide the sum over the U steps by E"),
        (want * epochs / steps, "you averaged over the U steps, which counts one batch of "
                                "m images: sum over the steps and divide by E"),
        (variant(per_step_size=n), f"{n // m} times too large: each step holds one batch "
                                   "of m images, so use m (not N) in the per-step "
                                   "estimate"),
        (n * p.mean(axis=0) - n * delta / o.mean(), "you averaged Õ over the steps before "
                                                    "dividing: apply Eq. 2 at every step, "
                                                    "so it is the mean of 1/Õ_i that "
                                                    "counts"),
        ((m * p + m * delta[None] / o[:, None]).sum(axis=0) / epochs,
         "the sign of the Δ term is flipped: λ̃ = m p̃ − m Δ / Õ"),
    ]
