"""Lab 01 (DLG): the squared L2 gradient distance of Zhu et al. (NeurIPS 2019)."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from leakage_lab import distances
from leakage_lab.checks._common import (
    CheckFailed,
    _call,
    _close,
    _fail,
    _leafwise,
    _ok,
    _random_tree,
    _scalar,
    _trees_close,
)
from leakage_lab.checks._guard import exercise

__all__ = ["gradient_distance"]


@exercise(
    forbidden=(
        "leakage_lab.distances.l2",
        "leakage_lab.distances._l2_from_inner_products",
        "leakage_lab.trees.tree_vdot",
    ),
    allowed=(),
)
def gradient_distance(fn: Callable) -> None:
    """Checks an implementation of DLG's gradient distance (lab 01).

    ``fn(observed, candidate)`` should return the squared L2 distance summed over all
    leaves of two pytrees, ``sum_l sum_i (g_l[i] - g'_l[i])**2``, like
    ``ll.distances.l2``, as a scalar that JAX can differentiate.

    Args:
        fn: the learner's distance function.

    Raises:
        CheckFailed: with a hint naming the likely mistake (not subtracting, a sign
            error, only one layer summed, no square, a square root, a mean...).
    """
    name = getattr(fn, "__name__", "your function")
    what = f"{name}(observed, candidate)"
    a = _random_tree(jax.random.key(0))
    b = _random_tree(jax.random.key(1))

    # 1. Identical trees are at distance zero.
    same = _scalar(_call(fn, a, a, what=what), what)
    if not abs(same) < 1e-6:
        _fail(
            f"{name} gives {same:.4g} for two identical trees, but the distance of a tree to "
            "itself must be 0: did you subtract (observed - candidate) before squaring?"
        )

    got = _scalar(_call(fn, a, b, what=what), what)
    want = float(distances.l2(a, b))
    if not _close(got, want):
        l2_leaves = _leafwise(a, b, lambda x, y: jnp.sum((x - y) ** 2))
        diff_sums = _leafwise(a, b, lambda x, y: jnp.sum(x - y))
        hints = [
            (-want, "exactly minus the right value: a sign error. The attack minimises the "
                    "distance, so with the wrong sign it would push the gradients apart"),
            (l2_leaves[0], "only the first leaf counts: sum over all leaves (every layer's "
                           "weights and biases), e.g. loop over zip(jax.tree.leaves(observed), "
                           "jax.tree.leaves(candidate)) and add up"),
            (l2_leaves[-1], "only the last leaf counts: did you overwrite the total inside "
                            "the loop (total = ...) instead of accumulating (total += ...)?"),
            (float(distances.l1(a, b)), "that is the sum of |observed - candidate| (an L1 "
                                        "distance): square the differences instead"),
            (sum(diff_sums), "that is the sum of the raw differences, where positive and "
                             "negative ones cancel: square each difference before summing"),
            (float(np.sqrt(want)), "that is the square root (the Euclidean norm): DLG "
                                   "minimises the squared distance, so drop the sqrt"),
            (sum(_leafwise(a, b, lambda x, y: jnp.mean((x - y) ** 2))),
             "that is a mean per leaf: sum over the entries instead (jnp.sum, not jnp.mean)"),
            (want / sum(np.size(x) for x in jax.tree.leaves(a)),
             "that is the mean over all entries: sum instead of averaging"),
            (sum(_leafwise(a, b, lambda x, y: jnp.sum(x**2 - y**2))),
             "you subtracted the squares (x**2 - y**2) instead of squaring the difference "
             "(x - y)**2"),
            (sum(d**2 for d in diff_sums),
             "you squared the sum of each leaf's differences: square each difference "
             "first, then sum"),
        ]
        for value, hint in hints:
            if _close(got, value):
                _fail(f"{name} returned {got:.4g} where {want:.4g} was expected: {hint}.")
        if got < 0:
            _fail(
                f"{name} returned {got:.4g} < 0 for two different trees. A distance is never "
                "negative, and the attack minimises it: look for a sign error, and square "
                "the difference (observed - candidate)**2."
            )
        _fail(
            f"{name} returned {got:.4g} on two random trees where {want:.4g} was expected: "
            "compute the sum over leaves l of sum((observed_l - candidate_l)**2)."
        )

    # 2. Other pairs, including trees of very different scale.
    for seed, scale in ((2, 0.01), (3, 10.0)):
        c = _random_tree(jax.random.key(seed), scale)
        got, want = _scalar(_call(fn, a, c, what=what), what), float(distances.l2(a, c))
        if not _close(got, want):
            _fail(f"{name} agrees on one pair of trees but returns {got:.4g} instead of "
                  f"{want:.4g} on another: is something hard-coded?")

    # 3. The attack differentiates it under jit: it must be written with jax.numpy.
    try:
        grad = jax.jit(jax.grad(lambda cand: fn(a, cand)))(b)
    except CheckFailed:
        raise
    except Exception as err:  # noqa: BLE001
        _fail(
            f"JAX could not differentiate {name} under jit ({type(err).__name__}). Use "
            "jax.numpy (jnp.sum, not np.sum), and no float() or .item() on the values."
        )
    expected = jax.tree.map(lambda x, y: 2.0 * (y - x), a, b)
    if not _trees_close(grad, expected):
        _fail(f"{name} has the right values, but its gradient is wrong: did you stop the "
              "gradient (jax.lax.stop_gradient) or round something?")
    _ok(f"{name}: matches ll.distances.l2 on 3 random pytrees, and JAX can differentiate it.")
