"""Distances between an observed update and a candidate's, over whole pytrees.

Each is ``distance(observed, candidate) -> scalar`` and reads like its formula; an
attack minimises it over the candidate input. The sums run over every leaf (layer).

:func:`per_layer` and :func:`layer_weighted` apply a distance layer by layer (one
layer = one top-level entry of the parameter dict, e.g. ``{"w": ..., "b": ...}``), so
that some layers can count more than others.

:func:`cosine` and :func:`l2` depend on the two updates only through three inner
products, ``<g, g'>``, ``<g', g'>`` and ``<g, g>``; :func:`from_inner_products` gives
them in that form, which lets an attack compute the products without forming ``g'``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp

from leakage_lab.trees import tree_vdot

__all__ = ["cosine", "from_inner_products", "l1", "l2", "layer_weighted", "mean_absolute",
           "mean_squared", "per_layer"]


def l2(observed, candidate) -> jax.Array:
    """Squared Euclidean distance ``sum_l ||g_l - g'_l||^2`` (Zhu et al., NeurIPS 2019)."""
    pairs = zip(jax.tree.leaves(observed), jax.tree.leaves(candidate), strict=True)
    return sum(jnp.sum((a - b) ** 2) for a, b in pairs)


def l1(observed, candidate) -> jax.Array:
    """Manhattan distance ``sum_l ||g_l - g'_l||_1``."""
    pairs = zip(jax.tree.leaves(observed), jax.tree.leaves(candidate), strict=True)
    return sum(jnp.sum(jnp.abs(a - b)) for a, b in pairs)


def cosine(observed, candidate, eps: float = 1e-12) -> jax.Array:
    """One minus the cosine similarity of the two updates, taken over all layers at once.

    ``1 - <g, g'> / (||g|| ||g'||)`` (Geiping et al., NeurIPS 2020): blind to the
    update's magnitude, so only its direction has to be matched.
    """
    dot = tree_vdot(observed, candidate)
    norms = jnp.sqrt(tree_vdot(observed, observed)) * jnp.sqrt(tree_vdot(candidate, candidate))
    return 1.0 - dot / (norms + eps)


def mean_squared(a: jax.Array, b: jax.Array) -> jax.Array:
    """``D(a, b) = mean((a - b)²)``: the squared difference per entry, for two arrays.

    FedAvg's epoch order-invariant prior compares two epochs' summaries with it
    (Dimitrov et al., TMLR 2022): a mean over the entries, so that its weight does not
    grow with the image size (a sum over a 28x28 mean image would be 784 times larger).

        >>> import numpy as np
        >>> float(mean_squared(np.array([0.0, 1.0]), np.array([1.0, 1.0])))
        0.5
    """
    return jnp.mean((a - b) ** 2)


def mean_absolute(a: jax.Array, b: jax.Array) -> jax.Array:
    """``D(a, b) = mean(|a - b|)``: the absolute difference per entry, for two arrays."""
    return jnp.mean(jnp.abs(a - b))


def _l2_from_inner_products(dot, candidate_sq, observed_sq) -> jax.Array:
    """``||g - g'||² = <g, g> - 2 <g, g'> + <g', g'>``."""
    return observed_sq - 2.0 * dot + candidate_sq


def _cosine_from_inner_products(dot, candidate_sq, observed_sq, eps: float = 1e-12):
    """``1 - <g, g'> / (||g|| ||g'||)``, with the same ``eps`` as :func:`cosine`."""
    return 1.0 - dot / (jnp.sqrt(observed_sq) * jnp.sqrt(candidate_sq) + eps)


_INNER_PRODUCT_FORMS = {cosine: _cosine_from_inner_products, l2: _l2_from_inner_products}


def from_inner_products(distance: Callable) -> Callable | None:
    """``distance`` written over inner products, or ``None`` if it cannot be.

    Returns ``form(dot, candidate_sq, observed_sq) -> scalar`` with ``dot = <g, g'>``,
    ``candidate_sq = <g', g'>`` and ``observed_sq = <g, g>`` (sums over all layers), such
    that ``form(...) == distance(g, g')``; known for :func:`cosine` and :func:`l2`.

    For a dense layer the candidate's weight gradient is an outer product ``aᵀδ``
    (inputs ``a [N, in]``, pre-activation gradients ``δ [N, out]``), and both products
    can be taken without forming it: ``<G, aᵀδ> = sum (a G) ⊙ δ`` and
    ``||aᵀδ||² = sum (a aᵀ) ⊙ (δ δᵀ)`` (see ``fast_dense.gradient_inner_products``).
    The expanded :func:`l2` subtracts nearly equal numbers close to a perfect match, so
    there it is accurate to about ``1e-7 · <g, g>`` in float32, not to ``1e-7 · l2``.

        >>> import numpy as np
        >>> g, h = {"w": np.array([3.0, 4.0])}, {"w": np.array([0.0, 1.0])}
        >>> float(from_inner_products(l2)(4.0, 1.0, 25.0)), float(l2(g, h))
        (18.0, 18.0)
    """
    return _INNER_PRODUCT_FORMS.get(distance)


def _check_layers(observed, candidate, who: str) -> None:
    if not isinstance(observed, Mapping) or not isinstance(candidate, Mapping):
        raise ValueError(f"{who} needs dicts of layers (as the models' params), got "
                         f"{type(observed).__name__} and {type(candidate).__name__}.")
    if set(observed) != set(candidate):
        raise ValueError(f"{who}: the two updates have different layers: "
                         f"{sorted(observed)} and {sorted(candidate)}.")


def per_layer(distance: Callable, observed, candidate) -> dict[str, jax.Array]:
    """The distance of each layer on its own: ``{l: d(g_l, g'_l)}``.

    A layer is a top-level entry of the parameter dict (its weight and bias together).
    With ``l2`` or ``l1`` the values add up to the distance over the whole update;
    with ``cosine`` they are per-layer angles, which do not.

        >>> import numpy as np
        >>> g = {"fc1": {"w": np.ones(2)}, "fc2": {"w": np.zeros(1)}}
        >>> h = {"fc1": {"w": np.zeros(2)}, "fc2": {"w": np.ones(1)}}
        >>> {k: float(v) for k, v in per_layer(l2, g, h).items()}
        {'fc1': 2.0, 'fc2': 1.0}
    """
    _check_layers(observed, candidate, "per_layer")
    return {layer: distance(observed[layer], candidate[layer]) for layer in observed}


@functools.lru_cache(maxsize=64)
def _layer_weighted(distance: Callable, weights: tuple[tuple[str, float], ...]) -> Callable:
    def weighted(observed, candidate) -> jax.Array:
        _check_layers(observed, candidate, "layer_weighted")
        named = [layer for layer, _ in weights]
        if set(named) != set(observed):
            raise ValueError(f"layer_weighted: weights are for layers {named}, but the "
                             f"update has layers {sorted(observed)}; give one per layer.")
        return sum(w * distance(observed[layer], candidate[layer]) for layer, w in weights)

    name = getattr(distance, "__name__", "d")
    weighted.__doc__ = f"sum_l w_l {name}(g_l, g'_l) with w = {dict(weights)}."
    return weighted


def layer_weighted(distance: Callable, weights: Mapping[str, float]) -> Callable:
    """A distance that weighs each layer: ``D(g, g') = sum_l w_l d(g_l, g'_l)``.

    ``weights`` maps each layer name (a top-level key of the parameters) to ``w_l``.
    Emphasising the first layers, whose gradients carry the most about the input, is
    one option of Geiping et al.'s released code (NeurIPS 2020); Dimitrov et al. (TMLR
    2022) weigh the layers of an L2 distance. The same (distance, weights) gives the
    same function object, so attacks reuse their compiled code.

        >>> import numpy as np
        >>> g = {"fc1": {"w": np.ones(2)}, "fc2": {"w": np.zeros(1)}}
        >>> h = {"fc1": {"w": np.zeros(2)}, "fc2": {"w": np.ones(1)}}
        >>> float(layer_weighted(l2, {"fc1": 1.0, "fc2": 10.0})(g, h))
        12.0
    """
    items = tuple(sorted((str(layer), float(w)) for layer, w in weights.items()))
    return _layer_weighted(distance, items)
