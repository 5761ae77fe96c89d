"""Gradient-leakage attacks. Each one is a loss over dummy inputs, run on ``engine.minimize``.

Deep Leakage from Gradients (Zhu et al., NeurIPS 2019) optimises a dummy image x' and a
dummy soft label y' so that their gradient matches the observed one:

    x*, y* = argmin_{x', y'} || ∇θ CE(f(x'; θ), softmax(y')) - ∇θ L(x, y) ||²
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from leakage_lab import distances, trees
from leakage_lab.engine import AttackResult, minimize
from leakage_lab.fl import cross_entropy
from leakage_lab.models import Model

__all__ = ["AttackResult", "dlg", "lbfgs"]


@functools.cache
def lbfgs(learning_rate: float | None = None,
          memory_size: int = 100) -> optax.GradientTransformation:
    """L-BFGS with a zoom line search (strong Wolfe conditions), as DLG used it.

    Without a line search L-BFGS stalls on DLG's loss; the line search makes every step
    a descent step. Cached, so that repeated attacks reuse the compiled code.
    """
    return optax.lbfgs(learning_rate=learning_rate, memory_size=memory_size)


@functools.cache
def adam(learning_rate: float = 0.1) -> optax.GradientTransformation:
    """Adam with the given rate (cached, so repeated attacks reuse the compiled code)."""
    return optax.adam(learning_rate)


def check_shape(model: Model, shape, who: str) -> tuple[int, int, int, int]:
    shape = tuple(int(s) for s in shape)
    if len(shape) != 4 or shape[1:] != tuple(model.input_shape) or shape[0] < 1:
        raise ValueError(
            f"{who}: shape must be [N, {', '.join(map(str, model.input_shape))}] for "
            f"{model.name}, got {list(shape)}."
        )
    return shape


@functools.cache
def _dlg_loss(model: Model, distance: Callable, known_labels: bool):
    """The DLG objective for ``model``; cached so the engine reuses its compiled code."""

    def loss(variables, data):
        x = variables["images"]
        y = data["labels"] if known_labels else jax.nn.softmax(variables["label_logits"])

        def train_loss(p):
            return jnp.mean(cross_entropy(model.apply(p, x), y))

        return distance(data["grads"], jax.grad(train_loss)(data["params"]))

    return loss


def dlg(model: Model, params, grads, *, shape=None, steps: int = 300, key: jax.Array,
        labels=None, optimizer: optax.GradientTransformation | None = None,
        distance: Callable = distances.l2, tol: float = 0.0, xtol: float = 4e-5,
        restarts: int = 1, chunk: int = 25, callback: Callable | None = None) -> AttackResult:
    """Deep Leakage from Gradients (Zhu et al., NeurIPS 2019).

    Starts from a random image (grey plus a little noise) and a random soft label and
    minimises the squared L2 distance between their gradient and the observed ``grads``
    with L-BFGS. It stops when the image has settled (``xtol``), or the step budget is
    spent.

    Args:
        model, params: the network and the weights at which ``grads`` was computed.
        grads: the observed update (a pytree shaped like ``params``).
        shape: ``[N, H, W, C]`` of the dummy batch; default one image of the model's size.
        steps: optimiser steps per attempt (for L-BFGS: outer iterations, each with a
            line search of a few gradient evaluations).
        key: PRNG key for the random starts.
        labels: known class indices ``[N]``; then only the image is optimised (iDLG-style).
        optimizer: an optax transformation; default ``lbfgs()``. ``adam(0.1)`` also works.
        distance: gradient distance, default squared L2 (DLG's).
        tol: stop an attempt once the distance is this small.
        xtol: stop an attempt once the image moves by at most this much per step (RMS
            over pixels, measured over 25 steps). On tiny-images the default stops
            after a median of about 1,000 steps, once the image is within ~30 dB.
        restarts: attempts from fresh random starts while the loss stays above ``tol``;
            the attempt with the lowest loss wins (the truth is never consulted).
        chunk: steps per jitted chunk; ``callback(frame)`` runs between chunks.

    Returns:
        An ``AttackResult``; ``labels`` holds the recovered label distribution.
    """
    shape = check_shape(model, shape if shape is not None else (1, *model.input_shape), "dlg")
    trees.check_matching(grads, params)
    if labels is not None:
        labels = jnp.asarray(labels)
        if labels.shape != (shape[0],):
            raise ValueError(f"dlg: labels must have shape [{shape[0]}], got {list(labels.shape)}.")
        if int(labels.min()) < 0 or int(labels.max()) >= model.num_classes:
            raise ValueError(f"dlg: labels must lie in [0, {model.num_classes - 1}], "
                             f"got {np.asarray(labels).tolist()}.")
    optimizer = optimizer if optimizer is not None else lbfgs()
    loss_fn = _dlg_loss(model, distance, labels is not None)
    data = {"grads": grads, "params": params}
    if labels is not None:
        data["labels"] = labels

    best = None
    for attempt in range(max(1, restarts)):
        k_img, k_lab = jax.random.split(jax.random.fold_in(key, attempt))
        variables = {"images": 0.5 + 0.05 * jax.random.normal(k_img, shape)}
        if labels is None:
            variables["label_logits"] = jax.random.normal(k_lab, (shape[0], model.num_classes))
        out = minimize(loss_fn, variables, data, optimizer, steps=steps, chunk=chunk, tol=tol,
                       xtol=xtol, callback=callback)
        if best is None or out.best_loss < best.best_loss:
            best = out
        if out.status == "converged" and out.best_loss <= tol:
            break
    v = best.variables
    found = (np.asarray(jax.nn.softmax(v["label_logits"])) if labels is None
             else np.asarray(labels))
    return AttackResult(np.asarray(v["images"]), found, best.losses, best.best_loss,
                        best.best_step, best.steps, best.status, best.message, best.frames,
                        best.seconds, best.compile_seconds)
