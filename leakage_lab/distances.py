"""Distances between an observed update and a candidate's, over whole pytrees.

Each is ``distance(observed, candidate) -> scalar`` and reads like its formula; an
attack minimises it over the candidate input. The sums run over every leaf (layer).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from leakage_lab.trees import tree_vdot

__all__ = ["cosine", "l1", "l2"]


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
