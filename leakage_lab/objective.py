"""The training objective every client minimises and every attack differentiates.

A client with a batch ``(X, Y)`` and weights θ computes the mean cross-entropy

    L(θ; X, Y) = (1/N) sum_i CE(f(x_i; θ), y_i),   CE(z, y) = -sum_k y_k log softmax(z)_k

and sends ``∇θ L`` (FedSGD) or takes local steps ``θ ← θ - η ∇θ L`` (FedAvg). An attack
computes the same gradient for its candidate images (:func:`candidate_gradient`) and
compares it with what was observed. The functions here are pure and un-jitted: the
simulation (``leakage_lab.fl``) and the attacks jit at their outermost loop.

    >>> import jax.numpy as jnp
    >>> float(cross_entropy(jnp.zeros((1, 4)), jnp.array([2]))[0])   # log 4
    1.3862943649291992
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["candidate_gradient", "cross_entropy", "loss", "masked_gradient", "masked_loss",
           "per_example_gradients", "sgd_step"]


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Per-example cross-entropy ``-sum_k y_k log softmax(logits)_k``.

    ``labels`` is either int class indices ``[N]`` or label distributions ``[N, K]``
    (DLG optimises such a soft label).
    """
    logp = jax.nn.log_softmax(logits)
    if labels.ndim == logits.ndim:
        return -jnp.sum(labels * logp, axis=-1)
    return -jnp.take_along_axis(logp, labels[:, None].astype(jnp.int32), axis=-1)[:, 0]


def loss(model, params, images, labels) -> jax.Array:
    """Mean cross-entropy of ``model`` on a batch: ``L(θ; X, Y)``."""
    return jnp.mean(cross_entropy(model.apply(params, images), labels))


def masked_loss(model, params, images, labels, mask) -> jax.Array:
    """Mean cross-entropy over the batch slots with ``mask == 1`` (a short last batch)."""
    ce = cross_entropy(model.apply(params, images), labels)
    return jnp.sum(mask * ce) / jnp.sum(mask)


def per_example_gradients(model, params, images, labels):
    """``∇θ CE(f(x_i; θ), y_i)`` for every example: leaves get a leading batch axis.

    Their mean over the batch is ``∇θ L(θ; X, Y)``. Un-jitted and unchecked (see
    ``fl.per_example_gradients`` for the checked, jitted front door).
    """
    def one(x, y):
        return jax.grad(loss, argnums=1)(model, params, x[None], y[None])

    return jax.vmap(one)(images, labels)


def masked_gradient(model, params, images, labels, mask):
    """``∇θ`` of :func:`masked_loss`: the plain SGD gradient of one batch."""
    return jax.grad(masked_loss, argnums=1)(model, params, images, labels, mask)


def sgd_step(model, params, images, labels, mask, lr, *, gradient=None):
    """One local SGD step of a FedAvg client (Dimitrov et al., TMLR 2022, Algorithm 1):

        θ ← θ - η ∇θ (1/|b|) sum_{i ∈ b} CE(f(x_i; θ), y_i)

    over the batch slots with ``mask == 1``. Used by ``fl.client_update`` and by the
    attack's simulated client (``fedavg.simulate``), so both take the same step.
    ``gradient(model, params, images, labels, mask)`` replaces the batch gradient (default
    :func:`masked_gradient`), e.g. DP-SGD's clipped and noised one
    (``privacy.private_gradient``).
    """
    g = (gradient or masked_gradient)(model, params, images, labels, mask)
    return jax.tree.map(lambda p, d: p - lr * d, params, g)


def candidate_gradient(model, params, images, labels):
    """The update a client holding ``(images, labels)`` would send: ``∇θ L(θ; X, Y)``.

    The attacks compare it with the observed update and differentiate the comparison
    with respect to ``images`` (a second derivative of the network).
    """
    return jax.grad(loss, argnums=1)(model, params, images, labels)
