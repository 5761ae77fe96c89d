"""Small helpers for parameter and gradient pytrees: structure checks and arithmetic."""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = [
    "check_matching",
    "leaves_with_keys",
    "tree_add",
    "tree_scale",
    "tree_sub",
    "tree_sum",
    "tree_vdot",
]


def _describe(tree) -> dict[str, tuple[int, ...]]:
    leaves = jax.tree_util.tree_leaves_with_path(tree)
    return {jax.tree_util.keystr(path): tuple(jnp.shape(leaf)) for path, leaf in leaves}


def check_matching(tree, reference, *, name: str = "gradient", reference_name: str = "params"):
    """Raises a ValueError unless ``tree`` has the structure and leaf shapes of ``reference``.

    The message names the first leaves that differ, e.g. a gradient computed for another
    model, or a layer missing from it.
    """
    got, want = _describe(tree), _describe(reference)
    if got == want:
        return
    missing = [k for k in want if k not in got]
    extra = [k for k in got if k not in want]
    shapes = [
        f"{k}: expected {want[k]}, got {got[k]}" for k in want if k in got and got[k] != want[k]
    ]
    parts = []
    if missing:
        parts.append(f"missing leaves {missing[:4]}")
    if extra:
        parts.append(f"unexpected leaves {extra[:4]}")
    if shapes:
        parts.append("shape mismatch " + "; ".join(shapes[:4]))
    raise ValueError(
        f"The {name} tree does not match the {reference_name} tree: " + ", ".join(parts)
        + f". Expected leaves {list(want)[:6]}{' ...' if len(want) > 6 else ''}."
    )


def tree_vdot(a, b) -> jax.Array:
    """Sum over all leaves of the elementwise product: <a, b>."""
    return sum(jnp.vdot(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))


def tree_sum(tree) -> jax.Array:
    """Sum of all entries of all leaves."""
    return sum(jnp.sum(x) for x in jax.tree.leaves(tree))


def tree_sub(a, b):
    return jax.tree.map(jnp.subtract, a, b)


def tree_add(a, b):
    return jax.tree.map(jnp.add, a, b)


def tree_scale(tree, s):
    return jax.tree.map(lambda x: s * x, tree)


def leaves_with_keys(tree, key: jax.Array):
    """``(leaves, treedef, keys)``: the leaves of ``tree`` with one independent key each."""
    leaves, treedef = jax.tree.flatten(tree)
    return leaves, treedef, list(jax.random.split(key, max(len(leaves), 1)))[: len(leaves)]
