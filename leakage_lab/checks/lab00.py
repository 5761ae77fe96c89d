"""Lab 00 (federated learning primer): FedAvg's server step, the weighted mean."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import numpy as np

from leakage_lab.checks._common import (
    _call,
    _close,
    _fail,
    _ok,
    _pairs,
    _random_tree,
    _trees_close,
)
from leakage_lab.checks._guard import exercise

__all__ = ["fedavg_average"]


def _average_of(trees: Sequence, weights: Sequence[float]):
    def mean(*leaves):
        return sum(w * x for w, x in zip(weights, leaves, strict=True))

    return jax.tree.map(mean, *trees)


@exercise(
    forbidden=("leakage_lab.fl.average",),
    allowed=(),
)
def fedavg_average(fn: Callable) -> None:
    """Checks an implementation of FedAvg's server step (lab 00).

    ``fn(client_params, sizes)`` gets a list of client weight pytrees and how many
    samples each client holds, and should return their weighted mean
    ``sum_k (n_k / n) θ_k`` with ``n = sum_k n_k`` (McMahan et al., AISTATS 2017),
    a pytree shaped like each ``θ_k``.

    Args:
        fn: the learner's averaging function.

    Raises:
        CheckFailed: with a hint naming the likely mistake (sizes ignored, weights not
            normalised, inverted weights, only one leaf averaged, wrong structure...).
    """
    name = getattr(fn, "__name__", "your function")
    what = f"{name}(client_params, sizes)"
    trees = [_random_tree(jax.random.key(10 + k)) for k in range(3)]
    sizes = [100, 300, 50]
    total = sum(sizes)
    want = _average_of(trees, [n / total for n in sizes])

    got = _call(fn, trees, list(sizes), what=what)
    if got is None:
        _fail(f"{name} returned None: did you forget the `return` statement?")
    if jax.tree.structure(got) != jax.tree.structure(want):
        _fail(
            f"{name} should return one pytree shaped like each client's weights (a dict "
            f"with layers 'conv' and 'fc'), got {type(got).__name__} with structure "
            f"{jax.tree.structure(got)}. Combine the clients leaf by leaf, e.g. "
            "jax.tree.map(lambda *leaves: ..., *client_params)."
        )
    shapes = [np.shape(x) for x in jax.tree.leaves(got)]
    if shapes != [np.shape(x) for x in jax.tree.leaves(want)]:
        _fail(f"{name} returned leaves of shapes {shapes}; each must keep its layer's shape.")

    if not _trees_close(got, want):
        def matches(weights):
            return _trees_close(got, _average_of(trees, weights))

        right = [_close(g, w) for g, w in _pairs(got, want)]
        if any(right):
            wrong = [i for i, ok in enumerate(right) if not ok]
            _fail(f"{name} gets some leaves right but not leaves {wrong} (in jax.tree.leaves "
                  "order): apply the same weighted mean to every leaf of the tree.")
        k = len(trees)
        patterns = [
            ([1 / k] * k, "that is the plain mean, which ignores the sizes: a client with "
                          "300 samples must count 3 times as much as one with 100. Weight "
                          "client k by n_k / n"),
            ([float(n) for n in sizes], "the weights are the raw sizes n_k, which sum to "
                                        f"{total}, not 1: divide by the total n = sum(sizes)"),
            ([1.0] * k, "that is the sum of the clients' weights: divide by the total so the "
                        "weights n_k / n add up to 1"),
            ([(1 / n) / sum(1 / m for m in sizes) for n in sizes],
             "the weights are inverted: the client with the most samples must get the "
             "largest weight, n_k / n"),
            ([n / total / k for n in sizes], "you divided by the number of clients as well: "
                                             "the weights n_k / n already sum to 1"),
        ]
        for weights, hint in patterns:
            if matches(weights):
                _fail(f"{name} did not return the weighted mean: {hint}.")
        _fail(
            f"{name} does not return the weighted mean sum_k (n_k / n) θ_k on three random "
            f"clients with sizes {sizes}: check the weights (they should be "
            f"{[round(n / total, 3) for n in sizes]}) and that each leaf is combined."
        )

    # Averaging identical clients changes nothing, whatever the sizes.
    same = _call(fn, [trees[0]] * 2, [7, 1], what=what)
    if not _trees_close(same, trees[0]):
        _fail(f"{name} changes the weights when every client sends the same ones: the "
              "weights of the mean must add up to 1.")
    # Works for any number of clients (not only three).
    two = _call(fn, trees[:2], [1, 3], what=what)
    ref2 = _average_of(trees[:2], [0.25, 0.75])
    if not _trees_close(two, ref2):
        _fail(f"{name} is right for three clients but wrong for two: is the number of "
              "clients hard-coded?")
    _ok(f"{name}: the weighted mean of the clients' weights, leaf by leaf, for any "
        "number of clients.")
