"""Inverting Gradients (Geiping et al., NeurIPS 2020): images from a gradient, labels known.

The attacker knows the labels ``y``, matches the *direction* of the observed update
``g`` and adds an image prior, over images in the box [0, 1]:

    x* = argmin_{x' ∈ [0,1]^n}  1 - <∇θ L(x', y), g> / (||∇θ L(x', y)|| ||g||)  +  α TV(x')

with Adam on the sign of the gradient and a projection onto the box after each step.
:func:`inverting_objective` is that loss (any distance and prior);
:func:`reconstruct` runs it on the engine's restart loop (``engine.run_attack``).

    >>> import jax, jax.numpy as jnp
    >>> from leakage_lab import models, objective
    >>> net = models.mlp(num_classes=2, input_shape=(3, 3, 1), hidden=(5,))
    >>> w = net.init(jax.random.key(1))
    >>> flat = jnp.full((1, 3, 3, 1), 0.5)                       # a flat image: TV = 0
    >>> update = objective.candidate_gradient(net, w, flat, jnp.array([0]))
    >>> round(float(inverting_objective(net, w, update, flat, jnp.array([0]))), 5)
    0.0
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from leakage_lab import distances, engine, optimizers, priors, trees
from leakage_lab._validate import check_labels, check_matching, check_shape
from leakage_lab.fast_dense import gradient_inner_products
from leakage_lab.objective import candidate_gradient

__all__ = ["can_factor", "inverting_objective", "reconstruct"]


def inverting_objective(model, params, update, images, labels, *,
                        distance: Callable = distances.cosine,
                        prior: Callable = priors.total_variation, prior_weight=1e-4,
                        factored: bool = False) -> jax.Array:
    """``D(g, ∇θ L(x', y)) + α · prior(x')``: Inverting Gradients' loss.

    Args:
        model, params: the network and the weights at which ``update`` was computed.
        update: the observed update ``g`` (a tree shaped like ``params``).
        images: the candidate images ``x'`` ``[N, H, W, C]``.
        labels: the known class indices ``[N]``.
        distance: ``D(observed, candidate)``; the paper's is ``distances.cosine``.
        prior: ``prior(images) -> scalar``; the paper's is ``priors.total_variation``.
        prior_weight: α.
        factored: compute ``D`` through ``fast_dense.gradient_inner_products``, which
            never forms the candidate's dense-layer weight gradients (only for
            ``distances.cosine`` and ``distances.l2``): the same value to float32
            rounding.
    """
    if factored:
        form = distances.from_inner_products(distance)
        dot, square = gradient_inner_products(model, params, images, labels, update)
        match = form(dot, square, trees.tree_vdot(update, update))
    else:
        match = distance(update, candidate_gradient(model, params, images, labels))
    return match + prior_weight * prior(images)


def can_factor(model, distance: Callable) -> bool:
    """Whether ``inverting_objective(..., factored=True)`` works for this model and distance."""
    return (distances.from_inner_products(distance) is not None
            and model.apply_with_taps is not None)


@functools.lru_cache(maxsize=32)
def _loss(model, distance: Callable, prior: Callable, factored: bool):
    """:func:`inverting_objective` over the engine's variables; cached for compiled reuse."""

    def loss(variables, data):
        return inverting_objective(model, data["params"], data["update"], variables["images"],
                                   data["labels"], distance=distance, prior=prior,
                                   prior_weight=data["prior_weight"], factored=factored)

    return loss


def reconstruct(model, params, update, *, labels, shape=None,
                distance: Callable = distances.cosine,
                prior: Callable = priors.total_variation, prior_weight: float = 1e-4,
                optimizer: optax.GradientTransformation | None = None, steps: int = 1000,
                key: jax.Array, restarts: int = 1, init: Callable = jax.random.uniform,
                keep: str = "last", project: Callable | None = optimizers.unit_box,
                chunk: int = 50, callback: Callable | None = None,
                factored: bool | None = None) -> engine.AttackResult:
    """Inverting Gradients (Geiping et al., NeurIPS 2020): images from a gradient, labels known.

    Minimises :func:`inverting_objective` over images ``x'`` in [0, 1]:

        distance(update, ∇θ L(x', labels))  +  prior_weight · prior(x')

    where ``L`` is the mean cross-entropy at ``params``. The defaults are the paper's:
    cosine distance, anisotropic total variation with weight 1e-4, Adam on the sign of
    the gradient (rate 0.1, decayed ×0.1 at 3/8, 5/8 and 7/8 of the steps, see
    ``optimizers.signed_adam``) and a projection onto [0, 1] after every step. It runs
    all ``steps`` (no stop rule: the sign step never settles).

    Args:
        model, params: the network and the weights at which ``update`` was computed.
        update: the observed update (a pytree shaped like ``params``).
        labels: the known class indices ``[N]``, one per image (e.g. from the iDLG
            rule); label counts must be expanded into indices first.
        shape: ``[N, H, W, C]`` of the reconstruction; default ``[N, *model.input_shape]``.
        distance: ``(observed, candidate) -> scalar`` over gradient trees.
        prior: ``prior(images) -> scalar`` penalty (see ``leakage_lab.priors``).
        prior_weight: the prior's weight α.
        optimizer: an optax transformation; default ``optimizers.signed_adam(0.1, steps)``.
            Line-search optimisers need ``project=None``.
        steps: optimiser steps per attempt.
        key: PRNG key; attempt ``i`` starts from ``init(split(fold_in(key, i))[0], shape)``
            (``engine.run_attack``).
        restarts: attempts from fresh random starts; the one with the lowest attack
            loss at its returned iterate wins (the truth is never consulted).
        keep: ``"last"`` (default) returns where each attempt ended, as the recipe of
            Geiping et al. does; ``"best"`` the lowest-loss iterate. With the decayed
            sign step the loss often dips at a poor image during the first phase
            (e.g. 1e-4 at 22 dB) and ends higher at a far better one (2e-3 at 36 dB):
            over 5 photos × 3 seeds, ``"best"`` reached 30 dB in 8 of 15 runs and
            ``"last"`` in 14 (``benchmarks/inverting_gradients.py``).
        init: ``init(key, shape) -> images``; default uniform noise in [0, 1].
        project: ``project(images) -> images`` after every step; default
            ``optimizers.unit_box``, ``None`` for no projection.
        chunk: steps per jitted chunk; ``callback(frame)`` runs between chunks.
        factored: compare gradients through ``fast_dense.gradient_inner_products``,
            which never forms the candidate's dense-layer weight gradients: the same
            loss (to float32 rounding) at a fraction of the cost when the dense layers
            are large. ``None`` (default) does so whenever it can (:func:`can_factor`);
            ``True`` insists (and fails if it cannot), ``False`` forms the whole gradient.

    Returns:
        An ``engine.AttackResult``; ``labels`` holds the given labels.
    """
    labels = check_labels(model, labels, "reconstruct")
    n = labels.shape[0]
    shape = check_shape(model, shape if shape is not None else (n, *model.input_shape),
                        "reconstruct")
    labels = check_labels(model, labels, "reconstruct", n=shape[0])
    check_matching(update, params, name="update")
    optimizer = optimizer if optimizer is not None else optimizers.signed_adam(0.1, steps)
    possible = can_factor(model, distance)
    if factored and not possible:
        raise ValueError(
            f"reconstruct: factored=True needs the distance to be distances.cosine or "
            f"distances.l2 (got {getattr(distance, '__name__', distance)!r}) and a model "
            f"with apply_with_taps ({model.name} has "
            f"{'one' if model.apply_with_taps is not None else 'none'}).")
    loss_fn = _loss(model, distance, prior, bool(possible and factored is not False))
    data = {"update": update, "params": params, "labels": labels,
            "prior_weight": jnp.asarray(prior_weight, jnp.float32)}
    projection = None if project is None else optimizers.on_images(project)

    def attempt(images, key):
        del key   # nothing else is drawn
        return engine.minimize(loss_fn, {"images": images}, data, optimizer, steps=steps,
                               chunk=chunk, project=projection, callback=callback, keep=keep)

    best, index = engine.run_attack(attempt, init=init, shape=shape, key=key,
                                    restarts=restarts, who="reconstruct")
    return engine.attack_result(best, labels, attempt=index)
