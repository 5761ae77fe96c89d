"""Lab 05 (defenses): DP-SGD's clipping and noise; secure aggregation's pairwise masks."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from leakage_lab.checks._common import (
    _call,
    _close,
    _fail,
    _flat,
    _ok,
    _random_tree,
)
from leakage_lab.checks._guard import exercise

__all__ = ["dp_clip_and_noise", "pair_masks"]


def _per_example_tree(key: jax.Array, m: int) -> dict:
    """Per-example gradients: the leaves of a parameter-like tree with a leading axis [m]."""
    k = jax.random.split(key, m)
    return jax.tree.map(lambda *xs: jnp.stack(xs), *[_random_tree(kk) for kk in k])


def _dp_variants(per_example: dict, c: float):
    """(value, hint) for the usual slips in the noiseless DP-SGD mean, as flat vectors."""
    leaves = [np.asarray(x, np.float64) for x in jax.tree.leaves(per_example)]
    m = leaves[0].shape[0]
    flat = np.concatenate([x.reshape(m, -1) for x in leaves], axis=1)
    norms = np.linalg.norm(flat, axis=1)
    scale = np.minimum(1.0, c / norms)
    mean = flat.mean(0)
    per_leaf = np.concatenate(
        [(x.reshape(m, -1) * np.minimum(1.0, c / np.linalg.norm(x.reshape(m, -1), axis=1)
                                        )[:, None]).mean(0) for x in leaves])
    return [
        (mean, "no clipping happened: scale each example's gradient by min(1, C / ‖g_i‖)"),
        (mean * min(1.0, c / np.linalg.norm(mean)), "you clipped the MEAN gradient; DP-SGD "
                                                    "clips EACH example's gradient before "
                                                    "averaging, so that one example's "
                                                    "influence is bounded by C"),
        ((flat * (c / norms)[:, None]).mean(0), "every example was rescaled to norm C, even "
                                                "the small ones: use min(1, C / ‖g_i‖), which "
                                                "only shrinks"),
        (per_leaf, "you clipped each leaf (layer) separately: the norm ‖g_i‖ is over ALL the "
                   "leaves of one example's gradient together"),
        ((flat * scale[:, None]).sum(0), "that is the SUM of the clipped gradients; divide by "
                                         "the batch size m"),
        ((flat * (c / np.maximum(norms, c))[:, None]).mean(0) / c, "do not divide by C: the "
                                                                   "clipped gradient has norm "
                                                                   "≤ C, not ≤ 1"),
    ]


@exercise(
    forbidden=(
        "leakage_lab.privacy.clip_and_noise",
        "leakage_lab.privacy.private_gradient",
        "leakage_lab.privacy.dp_gradient",
        "leakage_lab.privacy._dp_gradient",
    ),
    allowed=("leakage_lab.trees.leaves_with_keys",),
)
def dp_clip_and_noise(fn: Callable) -> None:
    """Checks ``fn(per_example, clip_norm, noise_multiplier, key)``: one DP-SGD step (lab 05).

    Abadi et al. (ACM CCS 2016): clip each example's gradient (all its leaves together) to
    norm at most ``C``, sum, add ``N(0, σ²C² I)``, divide by the batch size ``m``:

        g = ( Σ_i g_i · min(1, C / ‖g_i‖) + N(0, σ² C² I) ) / m

    ``per_example`` is a pytree whose leaves have a leading batch axis ``[m, ...]``. The
    check compares the noiseless result (σ = 0) with ``ll.privacy.clip_and_noise``, then
    measures the noise's standard deviation on zero gradients (it must be σC/m).

    Raises:
        CheckFailed: with a hint (mean clipped instead of each example, leaves clipped
            separately, sum instead of mean, noise of the wrong size...).
    """
    from leakage_lab import privacy

    name = getattr(fn, "__name__", "your function")
    what = f"{name}(per_example, clip_norm, noise_multiplier, key)"
    for seed, (m, c) in enumerate(((4, 1.0), (3, 20.0), (5, 0.1))):
        per_example = _per_example_tree(jax.random.key(70 + seed), m)
        out = _call(fn, per_example, c, 0.0, jax.random.key(0), what=what)
        if out is None:
            _fail(f"{name} returned None: did you forget the `return` statement?")
        if jax.tree.structure(out) != jax.tree.structure(_random_tree(jax.random.key(0))):
            _fail(f"{name} must return one gradient shaped like a single example's (the same "
                  "tree, without the batch axis), got "
                  f"{jax.tree.map(lambda x: np.shape(x), out)}.")
        want = privacy.clip_and_noise(per_example, jnp.ones(m), privacy.dp_sgd(c, 0.0),
                                      key=jax.random.key(0))
        got_flat, want_flat = _flat(out), _flat(want)
        if _close(got_flat, want_flat, rtol=1e-4, atol=1e-6):
            continue
        for value, hint in _dp_variants(per_example, c):
            if _close(got_flat, value, rtol=1e-4, atol=1e-6):
                _fail(f"With σ = 0, C = {c:g} and m = {m}: {hint}.")
        _fail(f"With σ = 0, C = {c:g} and m = {m} the result differs from "
              "ll.privacy.clip_and_noise (largest difference "
              f"{np.max(np.abs(got_flat - want_flat)):.3g}). Compute ‖g_i‖ over all leaves of "
              "example i, scale by min(1, C / ‖g_i‖), sum over i, divide by m.")
    m, c, sigma = 4, 2.0, 1.5
    zeros = jax.tree.map(lambda x: jnp.zeros((m, *x.shape)),
                         {"w": jnp.zeros((100, 100)), "b": jnp.zeros((100,))})
    noisy = _flat(_call(fn, zeros, c, sigma, jax.random.key(1), what=what))
    again = _flat(_call(fn, zeros, c, sigma, jax.random.key(1), what=what))
    other = _flat(_call(fn, zeros, c, sigma, jax.random.key(2), what=what))
    std, want_std = float(np.std(noisy)), sigma * c / m
    if std == 0:
        _fail("With σ = 1.5 no noise was added: add jax.random.normal(key, shape) · σC to the "
              "sum of clipped gradients (a fresh key per leaf, e.g. jax.random.split).")
    if not np.array_equal(noisy, again):
        _fail("The same key gave different noise: draw it from the key argument with "
              "jax.random, not from numpy's global random state.")
    if np.array_equal(noisy, other):
        _fail("Two different keys gave the same noise: use the key you were given.")
    if not abs(std - want_std) < 0.05 * want_std:
        for got, hint in ((sigma * c, "the noise is added to the SUM, so after dividing by m "
                                      "its standard deviation is σC / m"),
                          (sigma / m, "the noise's standard deviation is σ·C (times C, the "
                                      "clipping norm), before dividing by m"),
                          (sigma * c / m**2, "divide the noise by m once, not twice"),
                          (sigma, "the noise is N(0, σ²C²) on the sum, then divided by m")):
            if abs(std - got) < 0.05 * got:
                _fail(f"noise standard deviation {std:.4g}, expected σC/m = {want_std:.4g}: "
                      f"{hint}.")
        _fail(f"noise standard deviation {std:.4g}, expected σC/m = {want_std:.4g}.")
    leaves = [np.ravel(x) for x in jax.tree.leaves(_call(fn, zeros, c, sigma, jax.random.key(1),
                                                        what=what))]
    if np.allclose(leaves[0][:100], leaves[1][:100]):
        _fail("Two leaves got the same noise: split the key, one per leaf.")
    _ok(f"{name}: clips each example's whole gradient, averages, and adds noise of standard "
        f"deviation σC/m (measured {std:.3f}, expected {want_std:.3f}): one DP-SGD step.")


@exercise(
    forbidden=("leakage_lab.secagg._pair_mask", "leakage_lab.secagg.pairwise_mask"),
    allowed=("leakage_lab.secagg.prg",),
)
def pair_masks(fn: Callable) -> None:
    """Checks ``fn(seed, u, v, length)``: client ``u``'s mask for the pair ``(u, v)`` (lab 05).

    Secure aggregation (Bonawitz et al., ACM CCS 2017): the two clients of a pair share a
    seed ``s_uv``; the smaller index adds ``PRG(s_uv)``, the larger subtracts it, modulo
    ``2**32`` (uint32 arithmetic), so the two terms cancel in the sum:

        term(u, v) = +PRG(s_uv)  if v > u,      -PRG(s_uv)  if v < u      (mod 2**32)

    ``ll.secagg.prg(seed, length)`` is the PRG. The check asks: do the terms of the two
    clients cancel, do they hide (look random), and are they uint32 vectors?

    Raises:
        CheckFailed: with a hint (terms that do not cancel, an all-zero mask, a wrong dtype).
    """
    from leakage_lab import secagg

    name = getattr(fn, "__name__", "your function")
    what = f"{name}(seed, u, v, length)"
    seed = secagg.random_bytes(5)(32)
    length = 1000
    a = _call(fn, seed, 1, 3, length, what=what)
    b = _call(fn, seed, 3, 1, length, what=what)
    for value, who in ((a, "u=1, v=3"), (b, "u=3, v=1")):
        if value is None:
            _fail(f"{name} returned None for {who}: did you forget the `return` statement?")
        arr = np.asarray(value)
        if arr.shape != (length,):
            _fail(f"{name}({who}) returned shape {list(arr.shape)}, expected [{length}].")
        if arr.dtype != np.uint32:
            _fail(f"{name}({who}) returned dtype {arr.dtype}: keep uint32 so that the "
                  "arithmetic wraps modulo 2**32 (np.negative on a uint32 vector is −x mod "
                  "2**32); a float or int64 mask would not cancel exactly after the wrap.")
    a, b = np.asarray(a), np.asarray(b)
    if not np.any(a):
        _fail(f"{name} returned zeros: a zero mask hides nothing. Use secagg.prg(seed, length).")
    total = a + b
    if np.any(total):
        if np.array_equal(a, b):
            _fail("Both clients ADDED the same PRG(s_uv): the terms double instead of "
                  "cancelling. The smaller index adds it, the larger subtracts it.")
        _fail("The two clients' terms do not cancel: term(u, v) + term(v, u) must be 0 "
              "modulo 2**32 (one adds PRG(seed), the other subtracts the same PRG(seed)).")
    prg = secagg.prg(seed, length)
    if not (np.array_equal(a, prg) or np.array_equal(a, np.negative(prg))):
        _fail("The terms cancel, but they are not ±PRG(seed): use secagg.prg(seed, length) "
              "so that only the two clients of the pair can compute them.")
    if np.array_equal(a, np.negative(prg)):
        _fail("The terms cancel, but the convention is reversed: the SMALLER index (u < v) "
              "adds +PRG(s_uv) and the larger subtracts it, as ll.secagg does.")
    _ok(f"{name}: the pair's terms cancel exactly modulo 2**32 and each one alone is a "
        "pseudo-random uint32 vector: the server learns nothing from one masked update.")
