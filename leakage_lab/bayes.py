"""The Bayes-optimal adversary (Balunović et al., ICLR 2022).

An adversary ``f`` maps an observed update ``g`` to an input; its risk is the chance of
missing the true input by more than ``δ``:

    R(f) = P(||x - f(g)||₂ > δ) = 1 - E_g ∫_{B(f(g), δ)} p(x | g) dx

so the optimal adversary returns the centre of the δ-ball of highest posterior mass,

    f*(g) = argmax_{x₀} log ∫_{B(x₀, δ)} p(g | x) p(x) dx.

By Jensen's inequality the objective is bounded below,

    log ∫_{B(x₀, δ)} p(g | x) p(x) dx  ≥  log |B| + E_{x ~ U(B(x₀, δ))} [log p(g | x) + log p(x)],

and :func:`bayes` maximises the bound (the tractable approximation of the paper) by
gradient descent on its negative,

    loss(x) = -w · log p(g | ∇θ L(x, y))  +  α · prior(x)

where ``log p(g | ·)`` is the defense's exact ``log_prob`` (``leakage_lab.defenses``),
``prior`` a penalty read as ``-log p(x) / α`` (``leakage_lab.priors``), ``w`` the
likelihood weight (1, or smaller while tempering) and the average over the ball is a
Monte-Carlo mean (``mc_samples``). Prior attacks are this adversary with other choices
of prior and conditional:

=====================================  =======================  ===========================
attack                                 prior ``p(x)``           conditional ``p(g | x)``
=====================================  =======================  ===========================
DLG (Zhu et al., NeurIPS 2019)         uniform                  Gaussian: ``l2 / (2σ²)``
Inverting Gradients (Geiping et al.,   total variation          "cosine": ``cosine``
NeurIPS 2020)
GradInversion (Yin et al., CVPR 2021)  TV + DeepInversion (BN)  Gaussian: ``l2 / (2σ²)``
Bayes (Balunović et al., ICLR 2022)    TV (here)                the defense's ``log_prob``
=====================================  =======================  ===========================

(the conditional column gives ``-log p(g | x)`` up to a constant).

In code, :data:`PRIOR_WORK` holds the first two rows as ``(prior, conditional)`` pairs
that :func:`bayes` runs, and :func:`gradinversion` builds the third for a given
network and set of public images (its prior depends on both);
``defenses.from_distance(distances.l2)`` is exactly ``defenses.gaussian(σ = 1/√2)`` up
to a constant.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from leakage_lab import defenses, distances, engine, optimizers, priors
from leakage_lab._validate import check_int, check_labels, check_matching, check_shape
from leakage_lab.engine import AttackResult
from leakage_lab.models import Model
from leakage_lab.objective import candidate_gradient

__all__ = ["PRIOR_WORK", "Reading", "ball_offsets", "bayes", "bayes_objective",
           "gradinversion", "neg_log_posterior"]


class Reading(NamedTuple):
    """A prior attack read as a Bayesian adversary: the prior and conditional it assumes."""

    attack: str
    prior: Callable
    conditional: defenses.Defense


PRIOR_WORK = (
    Reading("DLG (Zhu et al., NeurIPS 2019)", priors.uniform,
            defenses.from_distance(distances.l2)),
    Reading("Inverting Gradients (Geiping et al., NeurIPS 2020)", priors.total_variation,
            defenses.from_distance(distances.cosine)),
)


def gradinversion(model: Model, params, reference_images, *,
                  deep_inversion_weight: float = 1.0) -> Reading:
    """GradInversion (Yin et al., CVPR 2021) read as a Bayesian adversary.

    Prior: total variation plus ``deep_inversion_weight`` times the DeepInversion-style
    feature-statistics term (:func:`leakage_lab.priors.feature_statistics`, statistics
    from ``reference_images``); conditional: Gaussian, i.e. the L2 distance.
    """
    deep_inversion = priors.feature_statistics(model, params, reference_images)

    def prior(images):
        return priors.total_variation(images) + deep_inversion_weight * deep_inversion(images)

    return Reading("GradInversion (Yin et al., CVPR 2021)", prior,
                   defenses.from_distance(distances.l2))


# ---------------------------------------------------------------------------------------
# The objective.


def _parts(log_prob: Callable):
    """Splits a ``functools.partial`` log-density into (function, static keywords, numbers).

    The numbers (σ, scale, p, width) travel as data, so that an attack under another σ
    reuses the compiled code; anything else is part of the cache key.
    """
    if isinstance(log_prob, functools.partial) and not log_prob.args:
        kw = log_prob.keywords
        numbers = {k: v for k, v in kw.items()
                   if isinstance(v, int | float) and not isinstance(v, bool)}
        static = tuple(sorted((k, v) for k, v in kw.items() if k not in numbers))
        return log_prob.func, static, {k: jnp.asarray(v, jnp.float32) for k, v in numbers.items()}
    return log_prob, (), {}


def bayes_objective(model: Model, params, update, images, labels, *, defense,
                    prior: Callable = priors.total_variation, prior_weight=1.0,
                    likelihood_weight=1.0) -> jax.Array:
    """The Bayes attack's loss at ``images``: ``-w · log p(g | ∇θ L(x, y)) + α · prior(x)``.

    Up to a constant in ``x`` (``log p(g)``, the prior's normaliser) this is
    ``-log p(x | g)`` at ``w = 1``. Under ``defenses.gaussian(σ)`` with ``priors.uniform``
    it is ``distances.l2(g, ∇θ L(x, y)) / (2σ²)`` plus a constant: DLG's loss, rescaled.

    Args:
        model, params: the network and the weights at which ``update`` was computed.
        update: the observed (defended) update ``g``.
        images: the candidate ``x`` ``[N, H, W, C]``.
        labels: the known class indices ``[N]``.
        defense: the conditional ``p(g | ·)``: a ``defenses.Defense`` (its ``log_prob``
            is used) or a ``log_prob(observed, clean)`` function.
        prior: a penalty read as ``-log p(x) / α``; prior_weight: α.
        likelihood_weight: ``w`` (1, or smaller while tempering).
    """
    log_prob = getattr(defense, "log_prob", defense)
    candidate = candidate_gradient(model, params, images, labels)
    return -likelihood_weight * log_prob(update, candidate) + prior_weight * prior(images)


def neg_log_posterior(model: Model, params, update, images, *, defense: defenses.Defense,
                      labels, prior: Callable = priors.total_variation,
                      prior_weight: float = 1.0) -> jax.Array:
    """:func:`bayes_objective` with its inputs checked (the name lab 04 uses)."""
    check_matching(update, params, name="update")
    labels = check_labels(model, labels, "neg_log_posterior")
    return bayes_objective(model, params, update, jnp.asarray(images), labels, defense=defense,
                           prior=prior, prior_weight=prior_weight)


@functools.lru_cache(maxsize=32)
def _loss(model: Model, density: Callable, static: tuple, prior: Callable,
          monte_carlo: bool):
    """:func:`bayes_objective`, averaged over the ball's offsets, over the engine's variables.

    Cached per (model, density, prior), so the engine reuses its compiled code; σ, α and
    ``w`` come in through ``data``.
    """

    def at(x, data):
        log_prob = functools.partial(density, **dict(static), **data["defense"])
        return bayes_objective(model, data["params"], data["update"], x, data["labels"],
                               defense=log_prob, prior=prior,
                               prior_weight=data["prior_weight"],
                               likelihood_weight=data["likelihood_weight"])

    def loss(variables, data):
        x = variables["images"]
        if not monte_carlo:
            return at(x, data)
        # E_{u ∈ B(0, δ)} [loss(x + u)] over the fixed offsets drawn for this attempt.
        return jnp.mean(jax.lax.map(lambda u: at(x + u, data), data["offsets"]))

    return loss


def ball_offsets(key: jax.Array, shape, *, num: int, delta: float) -> jax.Array:
    """``num`` points drawn uniformly from the L2 ball of radius ``delta`` in image space.

    ``u = δ · r^{1/n} · z / ||z||`` with ``z ~ N(0, I_n)``, ``r ~ U(0, 1)`` and ``n`` the
    number of pixels of one batch: the ball is over the whole batch, as ``||x - x₀||₂``
    in the risk. Returns ``[num, *shape]``.
    """
    k_dir, k_rad = jax.random.split(key)
    z = jax.random.normal(k_dir, (num, *shape))
    flat = z.reshape(num, -1)
    n = flat.shape[1]
    radius = delta * jax.random.uniform(k_rad, (num, 1)) ** (1.0 / n)
    return (radius * flat / jnp.linalg.norm(flat, axis=1, keepdims=True)).reshape(z.shape)


# ---------------------------------------------------------------------------------------
# The attack.


def bayes(model: Model, params, update, *, defense: defenses.Defense, labels, shape=None,
          prior: Callable = priors.total_variation, prior_weight: float = 1.0,
          steps: int = 1000, key: jax.Array, restarts: int = 1, mc_samples: int = 0,
          delta: float = 0.1, temper_steps: int = 0, temper_start: float = 0.01,
          optimizer: optax.GradientTransformation | None = None,
          init: Callable = jax.random.uniform, project: Callable | None = optimizers.unit_box,
          chunk: int = 50, callback: Callable | None = None) -> AttackResult:
    """The Bayes-optimal adversary (Balunović et al., ICLR 2022), labels known.

    Maximises ``log p(g | x) + log p(x)`` over images ``x`` in [0, 1], i.e. minimises

        -w · defense.log_prob(update, ∇θ L(x, labels))  +  prior_weight · prior(x)

    with the same engine, optimiser and projection as ``attacks.reconstruct`` (Adam on
    the gradient's sign with step decay, then ``clip(x, 0, 1)``). The defense's exact
    log-density replaces the hand-picked distance: under Gaussian noise it is L2 (so
    ``bayes`` and L2 coincide up to the weight's scale), under Laplacian noise it is L1,
    and under pruning the zero coordinates drop out of the loss.

    Minimises :func:`bayes_objective` on the engine's restart loop (``engine.run_attack``).

    Args:
        model, params: the network and the weights at which ``update`` was computed.
        update: the defended update the server saw (a tree shaped like ``params``).
        defense: the defense that produced it (only ``defense.log_prob`` is used), or a
            conditional from ``defenses.from_distance``.
        labels: the known class indices ``[N]``.
        shape: ``[N, H, W, C]``; default ``[N, *model.input_shape]``.
        prior: a penalty ``prior(images) -> scalar``, read as ``-log p(x) / prior_weight``.
        prior_weight: its weight α. The log-likelihood is a *sum* over all coordinates of
            the update (thousands of terms, scaled by 1/σ²), so α lives on a different
            scale from ``reconstruct``'s (where the cosine distance is at most 2): tune it.
        steps: optimiser steps per attempt at full likelihood weight.
        key: PRNG key; attempt ``i`` starts from ``init(split(fold_in(key, i))[0], shape)`` and
            draws its Monte-Carlo offsets from another fold of that key
            (``engine.run_attack``: the same start as ``dlg`` and ``reconstruct``).
        restarts: attempts from fresh starts; the lowest final loss wins.
        mc_samples: 0 (default) optimises the point objective; ``M > 0`` averages it
            over ``M`` offsets drawn uniformly from the L2 ball of radius ``delta``
            (:func:`ball_offsets`): the Monte-Carlo form of the paper's Jensen bound.
            The offsets are drawn once per attempt and kept fixed (reproducible, and the
            engine's state needs no key); each step costs ``M`` gradient evaluations.
        delta: the ball's radius (L2 over the whole batch, pixels in [0, 1]).
        temper_steps: 0 (default) for none; otherwise the attack first runs three
            phases of ``temper_steps // 3`` steps each with the likelihood weighted by
            ``w`` rising geometrically from ``temper_start`` towards 1 (the prior shapes
            the image before the data term dominates), then ``steps`` steps at ``w = 1``.
            Each phase restarts the optimiser from the previous phase's best images; the
            returned loss and best iterate are those of the last phase.
        optimizer: an optax transformation; default ``optimizers.signed_adam(0.1, steps)``.
        init: ``init(key, shape) -> images``; default uniform noise in [0, 1].
        project: ``project(images) -> images`` after every step; default
            ``optimizers.unit_box``.
        chunk: steps per jitted chunk; ``callback(frame)`` runs between chunks.

    Returns:
        An ``AttackResult``; ``labels`` holds the given labels, ``losses`` the losses of
        all phases one after the other.

    Example: DLG is the Bayes adversary with a uniform prior and a Gaussian conditional::

        res = bayes(model, params, grads, defense=defenses.from_distance(distances.l2),
                    prior=priors.uniform, labels=y, key=key)
    """
    labels = check_labels(model, labels, "bayes")
    n = labels.shape[0]
    shape = check_shape(model, shape if shape is not None else (n, *model.input_shape), "bayes")
    labels = check_labels(model, labels, "bayes", n=shape[0])
    check_matching(update, params, name="update")
    if not isinstance(defense, defenses.Defense):
        raise ValueError(f"bayes: defense must be a leakage_lab.defenses.Defense (e.g. "
                         f"defenses.gaussian(0.01)), got {type(defense).__name__}.")
    mc_samples = check_int(mc_samples, "mc_samples", "bayes", minimum=0)
    temper_steps = check_int(temper_steps, "temper_steps", "bayes", minimum=0)
    if not delta >= 0 or not 0 < temper_start <= 1:
        raise ValueError(f"bayes: need delta >= 0 and 0 < temper_start <= 1, got "
                         f"delta={delta}, temper_start={temper_start}.")
    density, static, numbers = _parts(defense.log_prob)
    monte_carlo = mc_samples > 0
    loss_fn = _loss(model, density, static, prior, monte_carlo)
    data = {"update": update, "params": params, "labels": labels, "defense": numbers,
            "prior_weight": jnp.asarray(prior_weight, jnp.float32)}
    phase = temper_steps // 3
    weights = [temper_start ** (1 - i / 3) for i in range(3)] if phase > 0 else []
    projection = None if project is None else optimizers.on_images(project)

    def attempt(images, key):
        if monte_carlo:
            data["offsets"] = ball_offsets(key, shape, num=mc_samples, delta=delta)
        losses, out, seconds, compile_seconds = [], None, 0.0, 0.0
        for w, budget in [*zip(weights, [phase] * len(weights), strict=True), (1.0, steps)]:
            opt = optimizer if optimizer is not None else optimizers.signed_adam(0.1, budget)
            out = engine.minimize(loss_fn, {"images": images},
                                  {**data, "likelihood_weight": jnp.asarray(w, jnp.float32)},
                                  opt, steps=budget, chunk=chunk, project=projection,
                                  callback=callback,
                                  tol=-math.inf)   # a log-density can be positive: no target
            losses.append(out.losses)
            seconds += out.seconds
            compile_seconds += out.compile_seconds
            images = out.variables["images"]
        return out._replace(losses=np.concatenate(losses), seconds=seconds,
                            compile_seconds=compile_seconds)

    best, index = engine.run_attack(attempt, init=init, shape=shape, key=key,
                                    restarts=restarts, who="bayes")
    return engine.attack_result(best, labels, attempt=index)
