"""Defenses: what a client does to its update before sending it, and how likely each result is.

A defense is a mechanism ``p(g | x)``: the client computes its clean gradient ``g'`` and
sends a random ``g ~ p(g | g')`` instead (Balunović et al., ICLR 2022). Each one here is
a :class:`Defense`, a pair of pure functions:

- ``apply(grads, *, key)``: draws a defended update (one key split per leaf);
- ``log_prob(observed, clean)``: the exact ``log p(observed | clean)``, normalising
  constants included, summed over every coordinate of every leaf.

The Bayes-optimal adversary (``leakage_lab.bayes``) maximises ``log_prob`` plus a log
prior, so it exploits the structure of the noise; the distance attacks do not.

Pruning and pruning + noise use one convention: **a coordinate that is exactly 0 in the
observation was pruned** (noise on a kept coordinate is exactly 0 with probability 0).
Pruned coordinates carry no information about the input; they contribute ``log p``
whatever the clean gradient is. Kept coordinates contribute ``log(1 - p)`` plus the
noise density. A noise-free kept coordinate (pure pruning, or σ = 0) would be a point
mass, ``log_prob = -inf`` everywhere but at the truth, which no attack can optimise; it
is scored instead as Gaussian noise of a small standard deviation ``width`` (default
:data:`POINT_MASS_WIDTH`), a smooth surrogate that tends to the point mass as ``width``
goes to 0.

    >>> import jax, jax.numpy as jnp
    >>> d = gaussian(0.1)
    >>> g = {"w": jnp.zeros(3)}
    >>> noisy = d.apply(g, key=jax.random.key(0))
    >>> bool(d.log_prob(noisy, g) < 10)
    True

Each ``apply``/``log_prob`` is a ``functools.partial`` of a module-level function with
numeric keyword parameters (σ, scale, p, width): an attack passes those numbers as data,
so changing σ does not recompile the attack.

A defense also names its **matched distance**, the distance for ``attacks.reconstruct``
that exploits its structure (``None`` when there is none beyond the noise, and a plain
distance or the Bayes attack applies): :func:`kept_distance` for pruning, which compares
only the coordinates the observation kept, and :func:`ignore_layers` for :func:`soteria`,
which drops the one layer that defense touches (Balunović et al., ICLR 2022).

    >>> prune(0.5).matched_distance.__name__
    'kept_cosine'
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from leakage_lab import distances, trees

__all__ = [
    "POINT_MASS_WIDTH",
    "Defense",
    "from_distance",
    "gaussian",
    "ignore_layers",
    "kept_distance",
    "laplace",
    "prune",
    "prune_gaussian",
    "prune_laplace",
    "soteria",
    "soteria_scores",
]

POINT_MASS_WIDTH = 1e-3
"""Standard deviation of the Gaussian that stands in for a noise-free coordinate."""

_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


class Defense(NamedTuple):
    """A randomised defense ``p(g | x)`` as a pair of pure functions.

    Attributes:
        apply: ``apply(grads, *, key) -> defended grads`` (same tree as ``grads``).
        log_prob: ``log_prob(observed, clean) -> scalar``, the exact
            ``log p(observed | clean)`` summed over all coordinates.
        name: a short description, e.g. ``"gaussian(sigma=0.01)"``.
        matched_distance: the distance (``(observed, candidate) -> scalar``) that the
            strongest distance attack on this defense uses, e.g. :func:`kept_distance`
            for pruning; ``None`` when the defense has no structure to exploit beyond
            its noise (use a plain distance, or ``log_prob`` in the Bayes attack).
    """

    apply: Callable
    log_prob: Callable
    name: str
    matched_distance: Callable | None = None


# ---------------------------------------------------------------------------------------
# The pieces, written to the equations. ``leaf`` functions act on one array.


def _gaussian_logpdf(x, mean, sigma):
    """``log N(x; mean, σ²) = -(x - mean)² / (2σ²) - log σ - log √(2π)``, elementwise."""
    return -((x - mean) ** 2) / (2.0 * sigma**2) - jnp.log(sigma) - _LOG_SQRT_2PI


def _laplace_logpdf(x, mean, scale):
    """``log Laplace(x; mean, b) = -|x - mean| / b - log(2b)``, elementwise."""
    return -jnp.abs(x - mean) / scale - jnp.log(2.0 * scale)


def _noise_logpdf(x, mean, sigma, width, laplacian):
    """The kept coordinates' density; a zero noise level becomes the point-mass surrogate."""
    if laplacian:
        return jnp.where(sigma > 0, _laplace_logpdf(x, mean, jnp.where(sigma > 0, sigma, 1.0)),
                         _gaussian_logpdf(x, mean, width))
    return _gaussian_logpdf(x, mean, jnp.where(sigma > 0, sigma, width))


def _apply(grads, *, key, p, sigma, laplacian):
    """Prune each coordinate with probability ``p``, then add noise to the kept ones.

    ``g_i = m_i (g'_i + σ ε_i)`` with ``m_i ~ Bernoulli(1 - p)`` and ``ε_i ~ N(0, 1)``
    (or the unit Laplace distribution, so that ``σ`` is its scale ``b``).
    """
    leaves, treedef, keys = trees.leaves_with_keys(grads, key)
    out = []
    for leaf, k in zip(leaves, keys, strict=True):
        k_mask, k_noise = jax.random.split(k)
        leaf = jnp.asarray(leaf)
        draw = jax.random.laplace if laplacian else jax.random.normal
        noisy = leaf + sigma * draw(k_noise, leaf.shape, leaf.dtype)
        kept = jax.random.uniform(k_mask, leaf.shape) >= p
        out.append(jnp.where(kept, noisy, jnp.zeros_like(noisy)).astype(leaf.dtype))
    return jax.tree.unflatten(treedef, out)


def _log_prob(observed, clean, *, p, sigma, width, laplacian):
    """``log p(g | g') = sum_i [g_i = 0] log p + [g_i ≠ 0] (log(1 - p) + log q(g_i | g'_i))``.

    ``q`` is the noise density centred on the clean coordinate. With ``p = 0`` every
    coordinate counts as kept (the ``log p`` branch is never taken).
    """
    trees.check_matching(observed, clean, name="observed gradient", reference_name="clean gradient")
    total = jnp.zeros((), jnp.float32)
    log_p = jnp.log(jnp.where(p > 0, p, 1.0))
    log_keep = jnp.log1p(-p)
    pairs = zip(jax.tree.leaves(observed), jax.tree.leaves(clean), strict=True)
    for obs, cln in pairs:
        pruned = (obs == 0) & (p > 0)
        kept = log_keep + _noise_logpdf(obs, cln, sigma, width, laplacian)
        total = total + jnp.sum(jnp.where(pruned, log_p, kept))
    return total


def _distance_log_prob(observed, clean, *, distance, scale):
    """``log p(g | g') = -distance(g, g') / scale`` (unnormalised)."""
    return -distance(observed, clean) / scale


def _never(grads, *, key):
    raise NotImplementedError(
        "This conditional was made from a distance (from_distance); it has a log_prob but "
        "no sampler. Use gaussian(), laplace() or prune*() to defend an update.")


# ---------------------------------------------------------------------------------------
# Constructors.


def _check(name: str, value: float, *, probability: bool = False) -> float:
    value = float(value)
    if probability:
        if not 0.0 <= value < 1.0:
            raise ValueError(f"{name} must be a pruning probability in [0, 1), got {value}. "
                             "(p = 1 would send nothing.)")
    elif not (value >= 0.0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a finite number >= 0 (0 for no noise), got {value}.")
    return value


def _make(name: str, p: float, sigma: float, laplacian: bool, width: float) -> Defense:
    return Defense(
        apply=functools.partial(_apply, p=p, sigma=sigma, laplacian=laplacian),
        log_prob=functools.partial(_log_prob, p=p, sigma=sigma, width=width,
                                   laplacian=laplacian),
        name=name,
        matched_distance=kept_distance() if p > 0 else None,
    )


def gaussian(sigma: float, *, width: float = POINT_MASS_WIDTH) -> Defense:
    """Additive Gaussian noise: ``g = g' + σ ε``, ``ε ~ N(0, I)``.

    ``log p(g | g') = sum_i -(g_i - g'_i)² / (2σ²) - log σ - log √(2π)``: the squared L2
    distance of DLG (Zhu et al., NeurIPS 2019) divided by ``2σ²``, plus a constant. With
    ``σ = 0`` the update is sent as is and ``log_prob`` uses the point-mass surrogate.
    """
    sigma = _check("gaussian: sigma", sigma)
    return _make(f"gaussian(sigma={sigma:g})", 0.0, sigma, False, _check("width", width))


def laplace(scale: float, *, width: float = POINT_MASS_WIDTH) -> Defense:
    """Additive Laplacian noise: ``g = g' + b ε``, ``ε ~ Laplace(0, 1)`` (variance ``2b²``).

    ``log p(g | g') = sum_i -|g_i - g'_i| / b - log(2b)``: the L1 distance over ``b``.
    """
    scale = _check("laplace: scale", scale)
    return _make(f"laplace(scale={scale:g})", 0.0, scale, True, _check("width", width))


def prune(p: float, *, width: float = POINT_MASS_WIDTH) -> Defense:
    """Random pruning: each coordinate is independently set to 0 with probability ``p``.

    Kept coordinates are sent exactly; ``log_prob`` scores them with the point-mass
    surrogate (Gaussian of std ``width``) and the zeros with ``log p``. Zhu et al.
    (NeurIPS 2019) proposed it against DLG; as a compression it sends ``1 - p`` of the
    update. Attack it with :func:`kept_distance` (its ``matched_distance``).
    """
    p = _check("prune: p", p, probability=True)
    return _make(f"prune(p={p:g})", p, 0.0, False, _check("width", width))


def prune_gaussian(p: float, sigma: float, *, width: float = POINT_MASS_WIDTH) -> Defense:
    """Random pruning with probability ``p``, then Gaussian noise ``σ`` on the kept coordinates.

    Pruned coordinates stay exactly 0, so the observation shows which ones were pruned
    (Balunović et al., ICLR 2022, "prune + Gaussian").
    """
    p = _check("prune_gaussian: p", p, probability=True)
    sigma = _check("prune_gaussian: sigma", sigma)
    return _make(f"prune_gaussian(p={p:g}, sigma={sigma:g})", p, sigma, False,
                 _check("width", width))


def prune_laplace(p: float, scale: float, *, width: float = POINT_MASS_WIDTH) -> Defense:
    """Random pruning with probability ``p``, then Laplacian noise ``b`` on the kept coordinates."""
    p = _check("prune_laplace: p", p, probability=True)
    scale = _check("prune_laplace: scale", scale)
    return _make(f"prune_laplace(p={p:g}, scale={scale:g})", p, scale, True,
                 _check("width", width))


def from_distance(distance: Callable, *, scale: float = 1.0) -> Defense:
    """The conditional that a distance-based attack assumes: ``p(g | g') ∝ exp(-d(g, g') / s)``.

    It makes the prior-work attacks special cases of ``bayes``: with ``distances.l2`` it
    is :func:`gaussian` with ``σ² = scale / 2`` (DLG), with ``distances.l1`` it is
    :func:`laplace` with ``b = scale``, with ``distances.cosine`` an (improper) density on
    the update's direction (Inverting Gradients). Only ``log_prob`` is defined, without
    its normalising constant; ``apply`` raises.
    """
    scale = float(scale)
    if not scale > 0:
        raise ValueError(f"from_distance: scale must be > 0, got {scale}.")
    name = getattr(distance, "__name__", "distance")
    return Defense(apply=_never,
                   log_prob=functools.partial(_distance_log_prob, distance=distance,
                                              scale=scale),
                   name=f"from_distance({name}, scale={scale:g})", matched_distance=distance)


# ---------------------------------------------------------------------------------------
# Matched distances: compare only what the defense left informative.


def kept_distance(base_distance: Callable = distances.cosine, *,
                  zero_rows: bool = False) -> Callable:
    """``D(g, g') = d(g, m ⊙ g')`` with ``m_i = [g_i ≠ 0]`` read from the observation.

    For pruning and top-k: the zeros of the observation say nothing about the candidate's
    value there, so the candidate is masked to the kept coordinates before ``d`` (default
    ``distances.cosine``). With no zeros in the observation it is ``d`` itself. The same
    ``d`` returns the same function object (attacks reuse their compiled code).

    Limitation: a coordinate whose *clean* gradient is exactly 0 looks pruned too, so it
    constrains nothing. On a network whose first dense layer sees the raw image (an MLP)
    every black background pixel gives exact zeros there, and this distance leaves the
    background free; convolutions spread every pixel over many coordinates and do not
    have the problem.

    ``zero_rows=True`` reads that case from the mask's own distribution: a dense layer's
    weight gradient is ``a δᵀ``, so an input ``a_i = 0`` zeroes a whole row (the last
    axis), while random pruning zeroes a row of ``n`` kept-or-not coordinates only with
    probability ``p^n`` (``0.5^64 ≈ 5e-20``, ``0.9^64 ≈ 1e-3``); top-k zeroes it when
    ``|a_i|`` is small. So a leaf's all-zero rows count as observed zeros, and the
    candidate must be zero there too (``m_i = [g_i ≠ 0] ∨ [row of g_i all 0]``).

        >>> import jax.numpy as jnp
        >>> d = kept_distance(zero_rows=True)
        >>> observed = {"w": jnp.array([[0.0, 0.0], [1.0, 0.0]])}
        >>> float(d(observed, {"w": jnp.array([[0.0, 0.0], [2.0, 5.0]])})) < 1e-6
        True
        >>> float(d(observed, {"w": jnp.array([[3.0, 0.0], [2.0, 5.0]])})) > 0.1
        True
    """
    return _kept_distance(base_distance, bool(zero_rows))


def _kept_mask(observed: jax.Array, zero_rows: bool) -> jax.Array:
    mask = observed != 0
    if zero_rows and observed.ndim >= 2:
        mask = mask | jnp.all(observed == 0, axis=-1, keepdims=True)
    return mask


@functools.lru_cache(maxsize=64)
def _kept_distance(base_distance: Callable, zero_rows: bool = False) -> Callable:
    def kept(observed, candidate) -> jax.Array:
        masked = jax.tree.map(
            lambda o, c: jnp.where(_kept_mask(o, zero_rows), c, jnp.zeros_like(c)),
            observed, candidate)
        return base_distance(observed, masked)

    prefix = "kept_rows_" if zero_rows else "kept_"
    kept.__name__ = f"{prefix}{getattr(base_distance, '__name__', 'distance')}"
    return kept


def ignore_layers(distance: Callable, layers) -> Callable:
    """``D(g, g') = d(g_{-L}, g'_{-L})``: the distance over every layer but those in ``L``.

    The attack Balunović et al. (ICLR 2022) use against a defense that perturbs one
    layer only (:func:`soteria`): the other layers' gradients still carry the input, so
    the defended layer is simply left out. A layer is a top-level key of the parameter
    dict. The same arguments return the same function object.

        >>> import numpy as np
        >>> g = {"conv": {"w": np.ones(2)}, "fc": {"w": np.zeros(2)}}
        >>> h = {"conv": {"w": np.ones(2)}, "fc": {"w": np.ones(2)}}
        >>> float(ignore_layers(distances.l2, ["fc"])(g, h))
        0.0
    """
    if isinstance(layers, str):
        layers = (layers,)
    layers = tuple(sorted(str(layer) for layer in layers))
    if not layers:
        raise ValueError("ignore_layers needs at least one layer name to leave out, got none.")
    return _ignore_layers(distance, layers)


@functools.lru_cache(maxsize=64)
def _ignore_layers(distance: Callable, layers: tuple[str, ...]) -> Callable:
    def ignoring(observed, candidate) -> jax.Array:
        missing = [layer for layer in layers if layer not in observed]
        if missing:
            raise ValueError(f"ignore_layers: layers {missing} are not in the update, whose "
                             f"layers are {sorted(observed)}.")
        rest = [layer for layer in observed if layer not in layers]
        if not rest:
            raise ValueError(f"ignore_layers: leaving out {list(layers)} leaves no layer to "
                             "compare.")
        return distance({k: observed[k] for k in rest}, {k: candidate[k] for k in rest})

    ignoring.__name__ = f"{getattr(distance, '__name__', 'distance')}_without_{'_'.join(layers)}"
    return ignoring


# ---------------------------------------------------------------------------------------
# Soteria (Sun et al., CVPR 2021): prune the representation layer's most revealing rows.


@functools.partial(jax.jit, static_argnums=0)
def _soteria_scores(model, params, images):
    def one(x):
        def representation(z):
            return model.features(params, z[None])[0]

        r = representation(x)
        jac = jax.jacrev(representation)(x)                      # [D, H, W, C]
        slope = jnp.sqrt(jnp.sum(jac.reshape(jac.shape[0], -1) ** 2, axis=1))
        return jnp.abs(r) / jnp.maximum(slope, 1e-12)

    return jnp.sum(jax.vmap(one)(images), axis=0)


def soteria_scores(model, params, images) -> jax.Array:
    """Soteria's per-feature score ``ρ_i = Σ_n |r_{n,i}| / ‖∂r_{n,i} / ∂x_n‖``, shape ``[D]``.

    ``r = model.features(params, x)`` is the representation (the input of the last
    dense layer). Removing feature ``i`` (setting ``r_i`` to 0) moves the input that
    explains the representation by about ``|r_i| / ‖∇x r_i‖`` (a first-order step), so a
    large ``ρ_i`` marks a feature whose removal makes a reconstruction from ``r`` far from
    ``x`` while changing ``r`` little (Sun et al., CVPR 2021). Over a batch, the examples'
    ratios are summed. A dead feature (``r_i = 0``) scores 0.
    """
    from leakage_lab.models import check_images

    check_images(images, model.input_shape, "soteria_scores")
    return _soteria_scores(model, params, jnp.asarray(images, jnp.float32))


def _row_mask(keep, leaf):
    return keep.reshape(keep.shape + (1,) * (leaf.ndim - 1))


def _soteria_apply(grads, *, key, layer, keep):
    """``g_layer.w[i, :] = 0`` for every pruned feature ``i``; everything else unchanged."""
    del key
    if not isinstance(grads, dict) or layer not in grads or "w" not in grads[layer]:
        raise ValueError(f"soteria: the update must be a dict of layers with {layer!r}: "
                         f"{{'w': ...}}, got layers "
                         f"{sorted(grads) if isinstance(grads, dict) else type(grads).__name__}.")
    w = jnp.asarray(grads[layer]["w"])
    if w.shape[0] != keep.shape[0]:
        raise ValueError(f"soteria: the mask is for {keep.shape[0]} features, but "
                         f"{layer}.w has shape {list(w.shape)}; was it built for another model?")
    pruned_w = jnp.where(_row_mask(keep, w), w, jnp.zeros_like(w))
    return {**grads, layer: {**grads[layer], "w": pruned_w}}


def _soteria_log_prob(observed, clean, *, layer, width):
    """Point-mass surrogate on every coordinate, except the pruned rows (all-zero rows of
    ``layer.w`` in the observation), which carry no information and score 0."""
    trees.check_matching(observed, clean, name="observed gradient", reference_name="clean gradient")

    def surrogate(obs, cln):
        return _gaussian_logpdf(obs, cln, width)

    w_obs, w_cln = observed[layer]["w"], clean[layer]["w"]
    rest_obs = {**observed, layer: {k: v for k, v in observed[layer].items() if k != "w"}}
    rest_cln = {**clean, layer: {k: v for k, v in clean[layer].items() if k != "w"}}
    total = sum((jnp.sum(surrogate(o, c)) for o, c in zip(jax.tree.leaves(rest_obs),
                                                       jax.tree.leaves(rest_cln), strict=True)),
                jnp.zeros((), jnp.float32))
    pruned = jnp.all(w_obs.reshape(w_obs.shape[0], -1) == 0, axis=1)
    return total + jnp.sum(jnp.where(_row_mask(pruned, w_obs), 0.0, surrogate(w_obs, w_cln)))


def soteria(model, params, images, *, fraction: float, layer: str | None = None,
            width: float = POINT_MASS_WIDTH) -> Defense:
    """Soteria (Sun et al., CVPR 2021): the client prunes its representation layer's gradient.

    The client scores each feature of its representation ``r = model.features(x)`` by
    ``ρ_i = |r_i| / ‖∂r_i / ∂x‖`` (:func:`soteria_scores`), and zeroes the gradient rows
    of the layer that reads ``r`` (the last dense layer) for the ``round(fraction · D)``
    features with the largest ``ρ_i``:

        g_layer.w[i, :] = 0   for the pruned features i;   every other leaf unchanged.

    Since ``∂L/∂W[i, :] = r_i · ∂L/∂logits``, those rows are where the representation is
    written into the gradient. Only that one layer is perturbed, which is its weakness:
    Balunović et al. (ICLR 2022) break it by leaving the layer out of the attack
    (:func:`ignore_layers`, the ``matched_distance``), or by a Bayes attack whose
    conditional ignores the pruned rows (``log_prob``).

    Unlike noise, the mask depends on the client's data, so the defense is built from
    ``images``; it is deterministic given them (``apply`` ignores its key). In
    ``fl.train`` pass a function that builds it per client, e.g.
    ``defense=lambda m, p, x, y: defenses.soteria(m, p, x, fraction=0.8)``.

    Args:
        model, params: the network and the weights at which the update is computed.
        images: the client's images ``[N, H, W, C]`` (the batch behind the update).
        fraction: share of the ``D`` features pruned, in ``[0, 1)``.
        layer: the defended layer (its ``w`` has ``D`` rows); default the last layer.
        width: the point-mass surrogate's standard deviation for ``log_prob``.
    """
    fraction = _check("soteria: fraction", fraction, probability=True)
    layer = list(params)[-1] if layer is None else str(layer)
    if layer not in params or "w" not in params[layer]:
        raise ValueError(f"soteria: layer {layer!r} is not a layer with a weight 'w'; the "
                         f"model's layers are {list(params)}.")
    scores = soteria_scores(model, params, images)
    d = int(scores.shape[0])
    if params[layer]["w"].shape[0] != d:
        raise ValueError(f"soteria: layer {layer!r} has weights {list(params[layer]['w'].shape)}"
                         f", but the representation has {d} features: pick the layer that "
                         "reads model.features (the last dense layer).")
    pruned = jnp.argsort(-scores, stable=True)[: int(round(fraction * d))]
    keep = jnp.ones(d, bool).at[pruned].set(False)
    return Defense(apply=functools.partial(_soteria_apply, layer=layer, keep=keep),
                   log_prob=functools.partial(_soteria_log_prob, layer=layer,
                                              width=_check("width", width)),
                   name=f"soteria(fraction={fraction:g}, layer={layer})",
                   matched_distance=ignore_layers(distances.cosine, (layer,)))
