"""Deep Leakage from Gradients (Zhu et al., NeurIPS 2019).

The attacker sees the update ``g = ∇θ L(x, y)`` of one batch and optimises a dummy image
``x'`` and a dummy soft label ``y' = softmax(u)`` so that their gradient matches it:

    x*, u* = argmin_{x', u}  || ∇θ CE(f(x'; θ), softmax(u)) - g ||²

with L-BFGS. :func:`dlg_objective` is that distance; :func:`dlg` runs it on the engine's
restart loop (``engine.run_attack``). With the labels known (e.g. from the iDLG rule,
``labels.idlg``) only the image is optimised.

    >>> import jax, jax.numpy as jnp
    >>> from leakage_lab import models, objective
    >>> model = models.mlp(num_classes=3, input_shape=(2, 2, 1), hidden=(4,))
    >>> params = model.init(jax.random.key(0))
    >>> x, y = jnp.full((1, 2, 2, 1), 0.3), jnp.array([1])
    >>> g = objective.candidate_gradient(model, params, x, y)
    >>> float(dlg_objective(model, params, g, x, y))   # zero at the truth
    0.0
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import numpy as np
import optax

from leakage_lab import distances, engine, optimizers
from leakage_lab._validate import check_labels, check_matching, check_shape
from leakage_lab.objective import candidate_gradient

__all__ = ["dlg", "dlg_objective", "grey_noise"]


def dlg_objective(model, params, update, images, labels, *,
                  distance: Callable = distances.l2) -> jax.Array:
    """DLG's loss ``D(g, ∇θ CE(f(x'; θ), y'))``, by default ``||∇θ L(x', y') - g||²``.

    Args:
        model, params: the network and the weights at which ``update`` was computed.
        update: the observed update ``g`` (a tree shaped like ``params``).
        images: the candidate images ``x'`` ``[N, H, W, C]``.
        labels: class indices ``[N]`` or label distributions ``[N, K]`` (``softmax(u)``).
        distance: ``D(observed, candidate)`` over update trees (``distances.l2``).
    """
    return distance(update, candidate_gradient(model, params, images, labels))


def grey_noise(key: jax.Array, shape) -> jax.Array:
    """DLG's start: mid-grey plus a little Gaussian noise, ``0.5 + 0.05 · N(0, 1)``."""
    return 0.5 + 0.05 * jax.random.normal(key, shape)


@functools.lru_cache(maxsize=32)
def _loss(model, distance: Callable, known_labels: bool):
    """:func:`dlg_objective` over the engine's variables; cached so compiled code is reused."""

    def loss(variables, data):
        y = data["labels"] if known_labels else jax.nn.softmax(variables["label_logits"])
        return dlg_objective(model, data["params"], data["update"], variables["images"], y,
                             distance=distance)

    return loss


def dlg(model, params, update, *, shape=None, steps: int = 4000, key: jax.Array,
        labels=None, optimizer: optax.GradientTransformation | None = None,
        distance: Callable = distances.l2, tol: float = 0.0, xtol: float = 4e-5,
        restarts: int = 1, init: Callable = grey_noise, chunk: int = 25,
        callback: Callable | None = None) -> engine.AttackResult:
    """Deep Leakage from Gradients (Zhu et al., NeurIPS 2019).

    Starts from ``init`` (grey plus a little noise) and a random soft label and
    minimises :func:`dlg_objective` with L-BFGS. It stops when the image has settled
    (``xtol``), the loss reaches ``tol``, or the step budget is spent. With the default
    budget it stops by itself: on the bundled tiny-images DLG needs about 900-1,500
    L-BFGS steps before the image settles (within ~30 dB of the truth).

    Args:
        model, params: the network and the weights at which ``update`` was computed.
        update: the observed update (a pytree shaped like ``params``).
        shape: ``[N, H, W, C]`` of the dummy batch; default one image of the model's size.
        steps: optimiser steps per attempt, at most (for L-BFGS: outer iterations, each
            with a line search of a few gradient evaluations).
        key: PRNG key; attempt ``i`` starts from ``init(split(fold_in(key, i))[0], shape)``
            (``engine.run_attack``), its label logits from another fold of that key.
        labels: known class indices ``[N]``; then only the image is optimised (iDLG-style).
        optimizer: an optax transformation; default ``optimizers.lbfgs()``.
            ``optimizers.adam(0.1)`` also works.
        distance: gradient distance, default squared L2 (DLG's).
        tol: stop an attempt once the distance is this small.
        xtol: stop an attempt once the image moves by at most this much per step (RMS
            over pixels, measured over 25 steps).
        restarts: attempts from fresh random starts while the loss stays above ``tol``;
            the attempt with the lowest loss wins (the truth is never consulted).
        init: ``init(key, shape) -> images``; default :func:`grey_noise`.
        chunk: steps per jitted chunk; ``callback(frame)`` runs between chunks.

    Returns:
        An ``engine.AttackResult``; ``labels`` holds int class indices ``[N]`` and, when
        the labels were optimised, ``soft_labels`` the recovered distributions ``[N, K]``.
    """
    shape = check_shape(model, shape if shape is not None else (1, *model.input_shape), "dlg")
    check_matching(update, params, name="update")
    if labels is not None:
        labels = check_labels(model, labels, "dlg", n=shape[0])
    optimizer = optimizer if optimizer is not None else optimizers.lbfgs()
    loss_fn = _loss(model, distance, labels is not None)
    data = {"update": update, "params": params}
    if labels is not None:
        data["labels"] = labels

    def attempt(images, key):
        variables = {"images": images}
        if labels is None:
            variables["label_logits"] = jax.random.normal(key, (shape[0], model.num_classes))
        return engine.minimize(loss_fn, variables, data, optimizer, steps=steps, chunk=chunk,
                               tol=tol, xtol=xtol, callback=callback)

    best, index = engine.run_attack(attempt, init=init, shape=shape, key=key,
                                    restarts=restarts, who="dlg", tol=tol)
    if labels is not None:
        return engine.attack_result(best, labels, attempt=index)
    soft = np.asarray(jax.nn.softmax(best.variables["label_logits"]))
    return engine.attack_result(best, soft.argmax(axis=-1), soft_labels=soft, attempt=index)
