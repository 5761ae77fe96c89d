"""Lab 10 (capstone): your defense keeps the protocol; your attack reads what it keeps."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from leakage_lab.checks._common import (
    _call,
    _fail,
    _flat,
    _ok,
    _random_tree,
    _scalar,
)
from leakage_lab.checks._guard import exercise

__all__ = ["capstone_attack_distance", "capstone_defense"]


def _mlp_like(key: jax.Array) -> dict:
    """An update shaped like a small MLP's (the capstone's network, smaller)."""
    k = jax.random.split(key, 4)
    return {"fc1": {"w": 0.1 * jax.random.normal(k[0], (16, 8)),
                    "b": 0.1 * jax.random.normal(k[1], (8,))},
            "fc2": {"w": 0.1 * jax.random.normal(k[2], (8, 3)),
                    "b": 0.1 * jax.random.normal(k[3], (3,))}}


@exercise(
    forbidden=(
        "leakage_lab.defenses._apply",
        "leakage_lab.defenses._soteria_apply",
        "leakage_lab.compression._top_k_apply",
        "leakage_lab.compression._quantize_apply",
        "leakage_lab.compression._sign_apply",
        "leakage_lab.privacy.clip_and_noise",
    ),
    allowed=("leakage_lab.trees.leaves_with_keys", "leakage_lab.trees.tree_scale"),
)
def capstone_defense(fn: Callable) -> None:
    """Checks ``fn(update, key) -> update``: a defense ``ll.capstone.evaluate`` can run (lab 10).

    On two updates it has not seen (a two-layer tree and an MLP-shaped one) the defense
    must return the same tree with the same shapes, float and finite numbers; the same key
    must give the same result (randomness from the key, not numpy's global state); and it
    must change what is sent, by more than a rescaling (cosine attacks ignore the
    update's scale). The library's own defenses are the leaderboard to beat, so the check
    runs with their samplers switched off: write yours yourself.

    Raises:
        CheckFailed: with a hint (None returned, another tree, shapes changed, NaN, the
            identity, a mere rescaling, an all-zero update, randomness not from the key).
    """
    from leakage_lab import capstone

    name = getattr(fn, "__name__", "your defense")
    what = f"{name}(update, key)"
    for i, update in enumerate((_random_tree(jax.random.key(101)), _mlp_like(jax.random.key(7)))):
        key = jax.random.key(200 + i)
        out = _call(fn, update, key, what=what)
        if out is None:
            _fail(f"{what} returned None: did you forget the `return` statement?")
        try:
            capstone.check_defense(lambda u, k, out=out: out, update, key=key, name=name)
        except (TypeError, ValueError) as err:
            _fail(str(err))
        again = _call(fn, update, key, what=what)
        if not np.array_equal(_flat(out), _flat(again)):
            _fail(f"{what} gave two different results for the same key: draw every random "
                  "number from `key` (jax.random.split(key, ...), then jax.random.normal...), "
                  "never from numpy's or Python's global random state, so that an evaluation "
                  "can be repeated.")
        sent, clean = _flat(out), _flat(update)
        if np.array_equal(sent, clean):
            _fail(f"{what} returned the update unchanged: the server would see the exact "
                  "gradient (lab 01). A defense must change what is sent.")
        if not np.any(sent):
            _fail(f"{what} sends only zeros: nothing leaks, but the server learns nothing "
                  "either (accuracy stays at chance). Keep some signal.")
        scale = float(sent @ clean / (clean @ clean))
        if np.allclose(sent, scale * clean, rtol=1e-5, atol=1e-7):
            _fail(f"{what} only rescales the update (by {scale:.3g}): the cosine attack of "
                  "lab 03 ignores the scale, so it leaks exactly as much as no defense. "
                  "Change its direction: noise, clipping per example, sparsification...")
    _ok(f"{name}: keeps the update's tree, shapes and finite numbers, is reproducible from "
        "its key, and changes more than the scale. Now see what ll.capstone.evaluate says.")


def _scrambled(tree, key):
    """Every leaf times its own random sign and a scale in [0.1, 10] (the classmate's idea)."""
    leaves, treedef = jax.tree.flatten(tree)
    keys = jax.random.split(key, len(leaves))
    out = []
    for leaf, k in zip(leaves, keys, strict=True):
        k1, k2 = jax.random.split(k)
        sign = jnp.where(jax.random.bernoulli(k1), 1.0, -1.0)
        out.append(sign * 10.0 ** jax.random.uniform(k2, (), minval=-1.0, maxval=1.0) * leaf)
    return jax.tree.unflatten(treedef, out)


@exercise(
    forbidden=("leakage_lab.capstone.unsigned_leaf_cosine",),
    allowed=("leakage_lab.distances.cosine", "leakage_lab.distances.per_layer",
             "leakage_lab.trees.tree_vdot"),
)
def capstone_attack_distance(fn: Callable) -> None:
    """Checks ``fn(observed, candidate) -> scalar``: a distance that sees through ``scramble``.

    ``ll.capstone.scramble`` multiplies each leaf by its own random scale (a classmate's
    variant might flip signs too). A distance that breaks both must (1) be a single
    number, (2) be smallest when the candidate matches the observation, (3) not change
    when any leaf of the candidate is multiplied by a nonzero number (any sign), (4) grow
    for a candidate pointing elsewhere, and
    (5) be differentiable by JAX (the attack follows its gradient).

    Raises:
        CheckFailed: with a hint (global cosine, signs not ignored, an array instead of a
            number, not differentiable...).
    """
    name = getattr(fn, "__name__", "your distance")
    what = f"{name}(observed, candidate)"
    observed = _random_tree(jax.random.key(31))
    other = _random_tree(jax.random.key(32))
    same = _scalar(_call(fn, observed, observed, what=what), what)
    if not np.isfinite(same):
        _fail(f"{what} is {same} when the candidate equals the observation: guard the "
              "divisions by a norm with a small eps.")
    for trial in range(3):
        scrambled = _scrambled(observed, jax.random.key(40 + trial))
        value = _scalar(_call(fn, observed, scrambled, what=what), what)
        if abs(value - same) > 1e-3 * max(1.0, abs(same)):
            flipped = jax.tree.map(lambda x: -x, observed)
            v_flip = _scalar(_call(fn, observed, flipped, what=what), what)
            if abs(v_flip - same) > 1e-3 * max(1.0, abs(same)):
                _fail(f"{what} changes when the candidate's leaves change sign ({same:.4g} "
                      f"for the observation itself, {v_flip:.4g} for its negative): a "
                      "classmate's defense may flip a leaf's sign as well as scale it, so "
                      "ignore signs too, e.g. 1 − cos² per leaf instead of 1 − cos.")
            _fail(f"{what} changes when each leaf is rescaled by its own factor ({same:.4g} vs "
                  f"{value:.4g}): a cosine over the whole update mixes the leaves' scales. "
                  "Compare leaf by leaf (jax.tree.leaves) and add the leaves' terms.")
    far = _scalar(_call(fn, observed, other, what=what), what)
    if not far > same + 1e-3:
        _fail(f"{what} is {far:.4g} for an unrelated candidate and {same:.4g} for the "
              "observation itself: it must be smallest at a match, or the attack has "
              "nothing to follow.")
    try:
        grads = jax.grad(lambda c: fn(observed, c))(other)
    except Exception as err:  # noqa: BLE001 - any failure to differentiate becomes the hint
        _fail(f"JAX cannot differentiate {what} with respect to the candidate "
              f"({type(err).__name__}: {err}). Use jax.numpy only, no numpy or float().")
    flat = _flat(grads)
    if not np.all(np.isfinite(flat)) or not np.any(flat):
        _fail(f"The gradient of {what} with respect to the candidate is "
              f"{'zero' if np.all(np.isfinite(flat)) else 'not finite'}: the attack cannot "
              "follow it (avoid jnp.sign, rounding or abs at 0 on the path to the result).")
    _ok(f"{name}: a number, smallest at a match, blind to each leaf's sign and scale, and "
        "differentiable: scramble hides nothing from it.")
