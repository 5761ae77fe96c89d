"""The factored dense-layer path: compare gradients without forming dense weight gradients.

For a dense layer ``z = a W + b`` with inputs ``a [N, in]`` and pre-activation gradients
``δ = ∂L/∂z [N, out]`` the weight gradient is the outer product ``aᵀδ``, so for an
observed weight gradient ``G``

    <G, aᵀδ> = sum (a G) ⊙ δ          ||aᵀδ||² = sum (a aᵀ) ⊙ (δ δᵀ)

and the bias gradient is ``sum_n δ_n``. The cosine and L2 distances need only these
inner products (``distances.from_inner_products``), so an attack that differentiates
them with respect to the images never runs the second-order backward pass through
``aᵀδ``: for the first dense layer of the CIFAR convnet of Dimitrov et al. (TMLR 2022)
that is a 10368 x 200 matrix per step. ``inverting.inverting_objective(...,
factored=True)`` uses it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from leakage_lab import objective, trees

__all__ = ["gradient_inner_products"]


def gradient_inner_products(model, params, images, labels, update):
    """``(<g, g'>, <g', g'>)`` for the candidate's update ``g' = ∇θ L(images, labels)``.

    Equal to ``trees.tree_vdot(update, g')`` and ``trees.tree_vdot(g', g')`` with
    ``g' = objective.candidate_gradient(...)``, but the weight gradients of the model's
    dense layers (``model.dense_layers``) are never formed (see the module docstring).
    ``δ`` is the gradient of the loss with respect to a zero tap added to ``z``
    (``model.apply_with_taps``).
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
        return jnp.mean(objective.cross_entropy(logits, labels)), inputs

    (g_rest, deltas), inputs = jax.grad(tapped_loss, argnums=(0, 1), has_aux=True)(rest, taps)
    update_rest = {name: update[name] for name in rest}
    dot = trees.tree_vdot(update_rest, g_rest)
    square = trees.tree_vdot(g_rest, g_rest)
    for layer in dense:
        a, delta = inputs[layer], deltas[layer]
        bias = jnp.sum(delta, axis=0)
        dot = dot + jnp.vdot(a @ update[layer]["w"], delta) + jnp.vdot(update[layer]["b"], bias)
        square = square + jnp.sum((a @ a.T) * (delta @ delta.T)) + jnp.vdot(bias, bias)
    return dot, square
