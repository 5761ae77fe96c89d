"""Gradient-leakage attacks. Each one is a loss over dummy inputs, run on ``engine.minimize``.

Deep Leakage from Gradients (Zhu et al., NeurIPS 2019) optimises a dummy image x' and a
dummy soft label y' so that their gradient matches the observed one:

    x*, y* = argmin_{x', y'} || ∇θ CE(f(x'; θ), softmax(y')) - ∇θ L(x, y) ||²

Inverting Gradients (Geiping et al., NeurIPS 2020) knows the labels, matches the
gradient's direction and adds an image prior, over images in the box [0, 1]:

    x* = argmin_{x' ∈ [0,1]^n} 1 - <∇θ L(x', y), g> / (||∇θ L(x', y)|| ||g||) + α TV(x')
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from leakage_lab import distances, fl, priors, trees
from leakage_lab.analytic import analytic_fc, analytic_fc_batch
from leakage_lab.engine import AttackResult, attack_result, minimize
from leakage_lab.models import Model

__all__ = [
    "AttackResult",
    "adam",
    "analytic_fc",
    "analytic_fc_batch",
    "bayes",
    "candidate_gradient",
    "dlg",
    "gradient_inner_products",
    "lbfgs",
    "reconstruct",
    "signed_adam",
    "unit_box",
]


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


def candidate_gradient(model: Model, params, images, labels):
    """The update a client holding ``(images, labels)`` would send: ∇θ of the mean CE.

    The attacks compare it with the observed update and differentiate the comparison
    with respect to ``images`` (a second derivative of the network).
    """
    return jax.grad(fl.loss, argnums=1)(model, params, images, labels)


def gradient_inner_products(model: Model, params, images, labels, observed):
    """``(<g, g'>, <g', g'>)`` for the candidate's update ``g' = ∇θ L(images, labels)``.

    Equal to ``trees.tree_vdot(observed, g')`` and ``trees.tree_vdot(g', g')`` with
    ``g' = candidate_gradient(...)``, but the weight gradients of the model's dense
    layers (``model.dense_layers``) are never formed. For a dense layer ``z = a W + b``
    with inputs ``a [N, in]`` and pre-activation gradients ``δ = ∂L/∂z [N, out]`` the
    weight gradient is ``aᵀδ``, so

        <G, aᵀδ> = sum (a G) ⊙ δ          ||aᵀδ||² = sum (a aᵀ) ⊙ (δ δᵀ)

    and the bias gradient is ``sum_n δ_n``. ``δ`` is the gradient of the loss with
    respect to a zero tap added to ``z`` (``model.apply_with_taps``). An attack that
    differentiates these products with respect to the images then never runs the
    second-order backward pass through ``aᵀδ``: for the first dense layer of the CIFAR
    convnet of Dimitrov et al. (TMLR 2022) that is a 10368 x 200 matrix per step.
    Used by :func:`reconstruct` for the :func:`distances.cosine` and
    :func:`distances.l2` distances (see :func:`distances.from_inner_products`).
    """
    if model.apply_with_taps is None:
        raise ValueError(f"gradient_inner_products needs a model with apply_with_taps; "
                         f"{model.name} has none.")
    dense = model.dense_layers
    for layer in dense:
        if set(params[layer]) != {"w", "b"} or jnp.ndim(params[layer]["w"]) != 2:
            raise ValueError(f"gradient_inner_products: dense layer {layer!r} of {model.name} "
                             f"must be {{'w': [in, out], 'b': [out]}}, got "
                             f"{jax.tree.map(jnp.shape, params[layer])}.")
    rest = {name: layer for name, layer in params.items() if name not in dense}
    n = images.shape[0]
    taps = {layer: jnp.zeros((n, params[layer]["b"].shape[-1]), images.dtype)
            for layer in dense}

    def tapped_loss(rest, taps):
        logits, inputs = model.apply_with_taps({**params, **rest}, images, taps)
        return jnp.mean(fl.cross_entropy(logits, labels)), inputs

    (g_rest, deltas), inputs = jax.grad(tapped_loss, argnums=(0, 1), has_aux=True)(rest, taps)
    observed_rest = {name: observed[name] for name in rest}
    dot = trees.tree_vdot(observed_rest, g_rest)
    square = trees.tree_vdot(g_rest, g_rest)
    for layer in dense:
        a, delta = inputs[layer], deltas[layer]
        bias = jnp.sum(delta, axis=0)
        dot = dot + jnp.vdot(a @ observed[layer]["w"], delta) + jnp.vdot(observed[layer]["b"], bias)
        square = square + jnp.sum((a @ a.T) * (delta @ delta.T)) + jnp.vdot(bias, bias)
    return dot, square


@functools.cache
def _dlg_loss(model: Model, distance: Callable, known_labels: bool):
    """The DLG objective for ``model``; cached so the engine reuses its compiled code."""

    def loss(variables, data):
        x = variables["images"]
        y = data["labels"] if known_labels else jax.nn.softmax(variables["label_logits"])
        return distance(data["grads"], candidate_gradient(model, data["params"], x, y))

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
        labels = _check_labels(model, labels, "dlg")
        if labels.shape != (shape[0],):
            raise ValueError(f"dlg: labels must have shape [{shape[0]}], got {list(labels.shape)}.")
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
    return attack_result(best, found)


# ---------------------------------------------------------------------------------------
# Inverting Gradients (Geiping et al., NeurIPS 2020)


@functools.cache
def signed_adam(learning_rate: float = 0.1, steps: int = 1000) -> optax.GradientTransformation:
    """Adam fed with the *sign* of the gradient, with step decay: Geiping et al.'s optimiser.

    ``update = Adam(sign(∇x loss))``, as in the fast gradient sign method of adversarial
    attacks. The rate starts at ``learning_rate`` and is multiplied by 0.1 after 3/8,
    5/8 and 7/8 of ``steps``. Cached, so repeated attacks reuse the compiled code.
    """
    decay = {int(steps * f): 0.1 for f in (3 / 8, 5 / 8, 7 / 8)}
    schedule = optax.piecewise_constant_schedule(learning_rate, decay)
    return optax.chain(optax.scale_by_sign(), optax.adam(schedule))


def unit_box(images: jax.Array) -> jax.Array:
    """Projection onto the box of valid images: ``clip(x, 0, 1)``."""
    return jnp.clip(images, 0.0, 1.0)


@functools.cache
def _on_images(project: Callable) -> Callable:
    """The engine projects the variables; the attack's ``project`` maps images to images."""

    def project_variables(variables):
        return {**variables, "images": project(variables["images"])}

    return project_variables


@functools.cache
def _inverting_loss(model: Model, distance: Callable, prior: Callable):
    """``distance(g, ∇θ L(x', y)) + α prior(x')``; cached so the engine reuses its code."""

    def loss(variables, data):
        x = variables["images"]
        candidate = candidate_gradient(model, data["params"], x, data["labels"])
        return distance(data["grads"], candidate) + data["prior_weight"] * prior(x)

    return loss


@functools.cache
def _factored_inverting_loss(model: Model, distance: Callable, prior: Callable):
    """The same loss as :func:`_inverting_loss`, through :func:`gradient_inner_products`."""
    form = distances.from_inner_products(distance)

    def loss(variables, data):
        x = variables["images"]
        dot, square = gradient_inner_products(model, data["params"], x, data["labels"],
                                              data["grads"])
        return form(dot, square, data["grads_square"]) + data["prior_weight"] * prior(x)

    return loss


def _check_labels(model: Model, labels, who: str) -> jax.Array:
    lab = np.asarray(labels)
    if lab.ndim != 1 or lab.size == 0:
        raise ValueError(
            f"{who}: labels must be class indices of shape [N], one per image, got shape "
            f"{list(lab.shape)}. (Label counts can be turned into indices first.)")
    if not np.issubdtype(lab.dtype, np.integer):
        raise ValueError(f"{who}: labels must be integer class indices, got dtype {lab.dtype}.")
    if lab.min() < 0 or lab.max() >= model.num_classes:
        bad = lab[(lab < 0) | (lab >= model.num_classes)]
        raise ValueError(f"{who}: labels must lie in [0, {model.num_classes - 1}] for "
                         f"{model.name}, got {bad[:5].tolist()}.")
    return jnp.asarray(lab, jnp.int32)


def reconstruct(model: Model, params, grads, *, labels, shape=None,
                distance: Callable = distances.cosine,
                prior: Callable = priors.total_variation, prior_weight: float = 1e-4,
                optimizer: optax.GradientTransformation | None = None, steps: int = 1000,
                key: jax.Array, restarts: int = 1, init: Callable = jax.random.uniform,
                project: Callable | None = unit_box, chunk: int = 50,
                callback: Callable | None = None,
                factored: bool | None = None) -> AttackResult:
    """Inverting Gradients (Geiping et al., NeurIPS 2020): images from a gradient, labels known.

    Minimises, over images ``x'`` in [0, 1],

        distance(grads, ∇θ L(x', labels))  +  prior_weight · prior(x')

    where ``L`` is the mean cross-entropy at ``params``. The defaults are the paper's:
    cosine distance, anisotropic total variation with weight 1e-4, Adam on the sign of
    the gradient (rate 0.1, decayed ×0.1 at 3/8, 5/8 and 7/8 of the steps, see
    :func:`signed_adam`) and a projection onto [0, 1] after every step.

    Args:
        model, params: the network and the weights at which ``grads`` was computed.
        grads: the observed update (a pytree shaped like ``params``).
        labels: the known class indices ``[N]``, one per image (e.g. from the iDLG
            rule); label counts must be expanded into indices first.
        shape: ``[N, H, W, C]`` of the reconstruction; default ``[N, *model.input_shape]``.
        distance: ``(observed, candidate) -> scalar`` over gradient trees.
        prior: ``prior(images) -> scalar`` penalty (see ``leakage_lab.priors``).
        prior_weight: the prior's weight α.
        optimizer: an optax transformation; default ``signed_adam(0.1, steps)``.
            Line-search optimisers need ``project=None``.
        steps: optimiser steps per attempt.
        key: PRNG key; attempt ``i`` starts from ``init(fold_in(key, i), shape)``.
        restarts: attempts from fresh random starts; the one with the lowest attack
            loss wins (the truth is never consulted).
        init: ``init(key, shape) -> images``; default uniform noise in [0, 1].
        project: ``project(images) -> images`` after every step; default
            :func:`unit_box`, ``None`` for no projection.
        chunk: steps per jitted chunk; ``callback(frame)`` runs between chunks.
        factored: compare gradients through :func:`gradient_inner_products`, which never
            forms the candidate's dense-layer weight gradients: the same loss (to float32
            rounding) at a fraction of the cost when the dense layers are large. ``None``
            (default) does so whenever it can: the distance is :func:`distances.cosine`
            or :func:`distances.l2` and the model has ``apply_with_taps``. ``True``
            insists (and fails if it cannot), ``False`` forms the whole gradient.

    Returns:
        An ``AttackResult``; ``labels`` holds the given labels.
    """
    labels = _check_labels(model, labels, "reconstruct")
    n = labels.shape[0]
    shape = check_shape(model, shape if shape is not None else (n, *model.input_shape),
                        "reconstruct")
    if shape[0] != n:
        raise ValueError(f"reconstruct: {n} labels were given for a batch of {shape[0]} "
                         f"images (shape {list(shape)}); give one label per image.")
    trees.check_matching(grads, params)
    if restarts < 1:
        raise ValueError(f"reconstruct: restarts must be >= 1, got {restarts}.")
    optimizer = optimizer if optimizer is not None else signed_adam(0.1, steps)
    can_factor = (distances.from_inner_products(distance) is not None
                  and model.apply_with_taps is not None)
    if factored and not can_factor:
        raise ValueError(
            f"reconstruct: factored=True needs the distance to be distances.cosine or "
            f"distances.l2 (got {getattr(distance, '__name__', distance)!r}) and a model "
            f"with apply_with_taps ({model.name} has "
            f"{'one' if model.apply_with_taps is not None else 'none'}).")
    data = {"grads": grads, "params": params, "labels": labels,
            "prior_weight": jnp.asarray(prior_weight, jnp.float32)}
    if can_factor and factored is not False:
        loss_fn = _factored_inverting_loss(model, distance, prior)
        data["grads_square"] = trees.tree_vdot(grads, grads)
    else:
        loss_fn = _inverting_loss(model, distance, prior)

    best = None
    for attempt in range(restarts):
        images = init(jax.random.fold_in(key, attempt), shape)
        if tuple(images.shape) != shape:
            raise ValueError(f"reconstruct: init returned shape {list(images.shape)}, "
                             f"expected {list(shape)}.")
        out = minimize(loss_fn, {"images": jnp.asarray(images, jnp.float32)}, data, optimizer,
                       steps=steps, chunk=chunk, tol=0.0, xtol=0.0,
                       project=None if project is None else _on_images(project),
                       callback=callback)
        if best is None or out.best_loss < best.best_loss:
            best = out
    return attack_result(best, labels)


# The Bayes attack builds on the helpers above, so it is imported last.
from leakage_lab.bayes import bayes  # noqa: E402
from leakage_lab.fedavg import FedAvgResult, fedavg  # noqa: E402, F401
