"""Attacking FedAvg: data from a client's weights after many local steps.

Dimitrov et al. ("Data Leakage in Federated Averaging", TMLR 2022, Algorithm 2). A FedAvg
client runs ``U = E · B`` local SGD steps (E epochs of ``B = ceil(N/m)`` batches of m
images, Algorithm 1, ``fl.client_update``) and sends back only its final weights θc. The
attack turns them into the average update and simulates the client on dummy images:

    ∇̄θc = (θs - θc) / (η U)                              what the server sees
    θ̃c  = SimUpdate(X̃, Ỹ)                               the client's U steps on X̃
    ∇̄θ̃  = (θs - θ̃c) / (η U)

    X̃* = argmin_X̃  L_sim(∇̄θc, ∇̄θ̃)  +  λ_inv L_inv(X̃)  +  λ_TV TV(X̃)  +  λ_clip R_clip(X̃)

and differentiates through all U local steps (a ``lax.scan``). The labels Ỹ come from
label counts (known, or ``labels.fedavg_counts``), split once at random into batches
(RandOrder); the same split is used in every epoch. The *method* decides how the
optimisation variables X̃ enter the simulation (the paper's Sec. 5.1):

* :func:`per_batch` ("Ours"): one variable per (epoch, batch), ``E·N`` images in all.
  Each epoch holds its own copy of the client's images; the epoch order-invariant
  prior ``L_inv`` ties the copies together, and :func:`matching.match_epochs`
  (MatchEpoch) averages them at the end.
* :func:`shared` (Geiping et al., NeurIPS 2020): one variable per batch, the same in
  every epoch, as if the client kept its batches.
* :func:`fedsgd_epoch`: one variable per epoch; each simulated epoch is one step on all
  N images (B = 1) at rate B·η.
* :func:`fedsgd` (Geng et al., 2021): no simulation; the average update is matched by one
  gradient of all N images at θs, as in FedSGD.

The prior (the paper's Eq. 3) compares an order-invariant summary ``g`` of every epoch's
images: ``L_inv = (1/E²) sum_{e1, e2} D(g(X̃_e1), g(X̃_e2))``, with ``g`` = ``priors.epoch_mean``
(the paper's FEMNIST choice) or ``priors.conv_max`` (max over a fixed random 3x3
convolution with 96 filters, its CIFAR-100 choice) and ``D`` = ``distances.mean_squared``
or ``distances.mean_absolute`` (``priors.epoch_invariant``). :func:`fedavg_objective`
is the whole loss; :func:`fedavg` runs it on the engine's restart loop.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from leakage_lab import distances, engine, matching, objective, optimizers, priors
from leakage_lab._validate import check_int, check_matching
from leakage_lab.data.dataset import Normalization
from leakage_lab.engine import AttackResult
from leakage_lab.models import Model, as_normalization
from leakage_lab.priors import epoch_invariant, epoch_mean

__all__ = [
    "PRESETS",
    "FedAvgResult",
    "Layout",
    "client_mesh",
    "fedavg",
    "fedavg_objective",
    "fedsgd",
    "fedsgd_epoch",
    "paper_input",
    "per_batch",
    "shared",
    "simulate",
]


# ---------------------------------------------------------------------------------------
# Methods: how the optimisation variables enter the simulated client


class Layout(NamedTuple):
    """How a method lays out its variables and simulates the client.

    The variables are images ``[copies, steps_per_epoch, batch, H, W, C]``; simulated
    epoch ``e`` (of ``epochs``) takes its step ``s`` on ``variables[e % copies, s]``.

    Attributes:
        copies: distinct copies of the client's images among the variables (E or 1).
        steps_per_epoch: simulated local steps per epoch (B, or 1 for a whole-data step).
        epochs: simulated epochs (E, or 1 for FedSGD).
        rate: the simulated steps use the learning rate ``rate · η`` (B for a whole-data
            step that stands for an epoch of B client steps, else 1).
        prior: whether the epoch order-invariant prior ties the copies together.
    """

    copies: int
    steps_per_epoch: int
    epochs: int
    rate: int = 1
    prior: bool = True


def per_batch(epochs: int, batches: int) -> Layout:
    """"Ours" (Dimitrov et al., TMLR 2022, Sec. 4.3): one variable ``X̃_{e,b}`` per
    (epoch, batch). ``E·N`` images; the client's ``U = E·B`` steps are simulated."""
    return Layout(epochs, batches, epochs)


def shared(epochs: int, batches: int) -> Layout:
    """"Shared" (Geiping et al., NeurIPS 2020): one variable ``X̃_b`` per batch, used in
    every epoch, as if the client's batches did not change between epochs."""
    return Layout(1, batches, epochs)


def fedsgd_epoch(epochs: int, batches: int) -> Layout:
    """"FedSGD-Epoch": one variable ``X̃_e`` per epoch; each simulated epoch is a single
    step on all N images (``B = 1``) at rate ``B·η``, so that it moves the weights as far
    as the client's B steps do. No batches to match, so no prior (as in the paper); the
    copies are merged by MatchEpoch."""
    return Layout(epochs, 1, epochs, batches, prior=False)


def fedsgd(epochs: int, batches: int) -> Layout:
    """"FedSGD" (Geng et al., 2021): no simulation. One gradient of all N images at θs is
    matched with the average update ``(θs - θc) / (η U)``."""
    del epochs, batches
    return Layout(1, 1, 1)


# ---------------------------------------------------------------------------------------
# SimUpdate


def simulate(model: Model, theta_s, images, labels, mask, *, lr, layout: Layout):
    """SimUpdate: the client's local SGD on the attacker's variables; returns θ̃c.

    Step ``(e, s)`` is ``θ ← θ - r η ∇θ CE(f(X̃[e % copies, s]; θ), Ỹ[s])`` (mean over the
    batch's real slots, ``mask``), for ``e < layout.epochs`` and ``s <
    layout.steps_per_epoch``, as a ``lax.scan`` over the local steps.

    Args:
        model: the network.
        theta_s: the starting weights.
        images: ``[copies, S, n, H, W, C]``; ``copies`` must divide ``layout.epochs``
            (epoch ``e`` uses copy ``e % copies``).
        labels, mask: ``[S, n]``, the attacker's split, the same in every epoch (mask 0
            marks an empty slot of a short last batch); or ``[epochs, S, n]``, one split
            per epoch (e.g. the client's true one, from ``fl.client_steps``).
        lr: the client's learning rate η.
        layout: the method's :class:`Layout` (its ``rate`` is r above).

    Returns:
        The simulated client weights θ̃c, a tree like ``theta_s``.
    """
    copies, steps = images.shape[:2]
    if layout.epochs % copies or steps != layout.steps_per_epoch:
        raise ValueError(f"fedavg.simulate: images [copies={copies}, S={steps}, ...] do not "
                         f"fit {layout}.")
    reps = layout.epochs // copies
    rate = lr * layout.rate
    xs = jnp.broadcast_to(images[None], (reps, *images.shape))
    xs = xs.reshape(layout.epochs * steps, *images.shape[2:])
    if jnp.ndim(labels) == 2:
        labels = jnp.broadcast_to(labels, (layout.epochs, *jnp.shape(labels)))
        mask = jnp.broadcast_to(mask, (layout.epochs, *jnp.shape(mask)))
    ys = jnp.reshape(labels, (-1, jnp.shape(labels)[-1]))
    ms = jnp.reshape(mask, (-1, jnp.shape(mask)[-1]))

    def step(params, batch):
        x, y, m = batch
        return objective.sgd_step(model, params, x, y, m, rate), None

    final, _ = jax.lax.scan(step, theta_s, (xs, ys, ms))
    return final


# ---------------------------------------------------------------------------------------
# The attack


FedAvgResult = AttackResult   # the one result type; FedAvg fills its optional fields


def _valid_slots(mask: np.ndarray) -> np.ndarray:
    return np.flatnonzero(np.asarray(mask).reshape(-1) > 0)


@functools.lru_cache(maxsize=32)
def _epoch_view(valid: tuple[int, ...]):
    """``variables -> [clients, copies, N, H, W, C]``: the real images of every copy."""
    idx = np.asarray(valid)

    def view(images):
        c, k, s, n = images.shape[:4]
        flat = images.reshape(c, k, s * n, *images.shape[4:])
        return flat[:, :, idx]

    return view


@functools.lru_cache(maxsize=32)
def _first_copy(valid: tuple[int, ...]):
    view = _epoch_view(valid)

    def to_images(variables):
        x = view(variables["images"])[:, 0]
        return x.reshape(-1, *x.shape[2:])

    return to_images


def _over_clients(fn: Callable, clients):
    """``fn`` on every client (leading axis): all at once (vmap) on a GPU or TPU; one after
    the other on a CPU, where vmap would turn the clients' convolutions into grouped
    convolutions, which are slow there."""
    if jax.tree.leaves(clients)[0].shape[0] == 1:
        return jax.tree.map(lambda t: t[None], fn(jax.tree.map(lambda a: a[0], clients)))
    if jax.default_backend() == "cpu":
        return jax.lax.map(fn, clients)
    return jax.vmap(fn)(clients)


CLIENTS_AXIS = "clients"


@functools.lru_cache(maxsize=8)
def client_mesh(devices: int | None = None) -> jax.sharding.Mesh:
    """A one-axis :class:`jax.sharding.Mesh` (axis ``"clients"``) over the first ``devices``
    local devices (default: all). ``independent=True`` shards the clients over it."""
    local = jax.local_devices()
    n = len(local) if devices is None else int(devices)
    if not 1 <= n <= len(local):
        raise ValueError(f"client_mesh: devices must be between 1 and the {len(local)} local "
                         f"devices, got {devices!r}.")
    return jax.sharding.Mesh(np.asarray(local[:n]), (CLIENTS_AXIS,))


def _sharded_over_clients(fn: Callable, clients, shared, mesh: jax.sharding.Mesh):
    """``fn(client, shared)`` for every client, the clients split over ``mesh``'s devices
    (``shard_map``; the leading axis must be a multiple of the device count). Each device
    runs its share with :func:`_over_clients`; ``shared`` is replicated."""
    spec = jax.sharding.PartitionSpec(CLIENTS_AXIS)

    def local(clients_, shared_):
        return _over_clients(lambda c: fn(c, shared_), clients_)

    # check_vma=False: with the check on (jax 0.10), the clients' losses came out different
    # from the unsharded ones (1.88 vs 2.00 for four clients on four CPU devices, no
    # padding); without it they agree (tests/test_fedavg_sharding.py).
    mapped = jax.shard_map(local, mesh=mesh, in_specs=(spec, jax.sharding.PartitionSpec()),
                           out_specs=spec, check_vma=False)
    return mapped(clients, shared)


def _pixels(x, normalization: Normalization | None):
    """Working space -> pixels: ``x · std + mean`` (identity without a normalisation)."""
    if normalization is None:
        return x
    return (x * jnp.asarray(normalization.std, x.dtype)
            + jnp.asarray(normalization.mean, x.dtype))


def _working(x, normalization: Normalization | None):
    """Pixels -> working space: ``(x - mean) / std``."""
    if normalization is None:
        return x
    return ((x - jnp.asarray(normalization.mean, x.dtype))
            / jnp.asarray(normalization.std, x.dtype))


def fedavg_objective(model: Model, theta_s, update, images, labels, mask, *, lr,
                     layout: Layout, valid=None, independent: bool = False,
                     distance: Callable = distances.cosine,
                     invariant: Callable = epoch_mean,
                     invariant_distance: Callable = distances.mean_squared,
                     invariant_weight=1000.0, tv_weight=1e-3, clip_weight=2.0,
                     normalization: Normalization | None = None, distance_scale=1.0,
                     client_weights=None, mesh: jax.sharding.Mesh | None = None) -> jax.Array:
    """Algorithm 2, line 9 of Dimitrov et al. (TMLR 2022), for all clients:

        s · L_sim(∇̄θc, ∇̄θ̃)  +  λ_inv L_inv(X̃)  +  λ_TV TV(X̃)  +  λ_clip R_clip(pixels(X̃))

    with ``∇̄θ̃ = (θs - θ̃c) / (η U)`` from the simulated client (:func:`simulate`).

    Args:
        model, theta_s: the network and the weights the server sent.
        update: the observed average update ``∇̄θc = (θs - θc) / (η U)``; with
            ``independent``, stacked over the clients (leading axis).
        images: the variables ``[clients, copies, S, n, H, W, C]``, in the working space:
            what the network is fed (normalised images when ``normalization`` is given).
        labels, mask: ``[clients, S, n]``, the attacker's split (mask 0: empty slot).
        lr: η; layout: the method's :class:`Layout`.
        valid: the indices of the real slots among ``S · n`` (default all).
        independent: the clients' updates were observed one by one: the loss is the sum
            of their separate losses; otherwise the simulated weights are averaged and
            compared with the observed average.
        distance: ``L_sim``; invariant, invariant_distance: ``g`` and ``D`` of the
            epoch order-invariant prior (``priors.epoch_invariant``), on the variables.
        invariant_weight, tv_weight, clip_weight: λ_inv, λ_TV, λ_clip.
        normalization: ``data.Normalization`` of the network's input, or ``None`` (the
            network is fed pixels). The box penalty ``R_clip`` is taken on the pixels
            ``X̃ · std + mean``; TV and the prior on the variables.
        distance_scale: ``s``, a factor on ``L_sim`` (the released code's ramp).
        client_weights: with ``independent``, ``[clients]`` weights of the clients'
            losses (0 for padding); default all 1.
        mesh: with ``independent``, a mesh (axis ``"clients"``) to split the clients over
            (``shard_map``); the number of clients must be a multiple of its size.
    """
    x = images
    valid = tuple(range(x.shape[2] * x.shape[3])) if valid is None else tuple(valid)
    local_steps = layout.rate * layout.epochs * layout.steps_per_epoch
    view = _epoch_view(valid)

    def penalties(xs, per_image, reduce, weights):
        value = 0.0
        if layout.copies > 1 and layout.prior:
            value += weights["inv"] * reduce(
                jax.vmap(lambda e: epoch_invariant(e, invariant, invariant_distance))(view(xs)))
        flat = xs.reshape(-1, *xs.shape[4:])   # TV and the box penalty are image means
        value += per_image * weights["tv"] * priors.total_variation(flat)
        value += per_image * weights["clip"] * priors.clip(_pixels(flat, normalization))
        return value

    weights = {"inv": invariant_weight, "tv": tv_weight, "clip": clip_weight}
    if independent:
        def one_client(client, shared):
            client_images, client_labels, client_mask, client_update = client
            theta = simulate(model, shared["theta_s"], client_images, client_labels,
                             client_mask, lr=shared["lr"], layout=layout)
            simulated = jax.tree.map(lambda s, t: (s - t) / (shared["lr"] * local_steps),
                                     shared["theta_s"], theta)
            value = shared["s"] * distance(client_update, simulated)
            return value + penalties(client_images[None], 1, jnp.sum, shared["w"])

        clients = (x, labels, mask, update)
        shared = {"theta_s": theta_s, "lr": jnp.asarray(lr, jnp.float32),
                  "s": jnp.asarray(distance_scale, jnp.float32),
                  "w": jax.tree.map(lambda v: jnp.asarray(v, jnp.float32), weights)}
        if mesh is None:
            per_client = _over_clients(lambda c: one_client(c, shared), clients)
        else:
            per_client = _sharded_over_clients(one_client, clients, shared, mesh)
        if client_weights is not None:
            per_client = per_client * client_weights
        return jnp.sum(per_client)

    def one_client(client):
        client_images, client_labels, client_mask = client
        return simulate(model, theta_s, client_images, client_labels, client_mask, lr=lr,
                        layout=layout)

    thetas = _over_clients(one_client, (x, labels, mask))
    theta = jax.tree.map(lambda t: jnp.mean(t, axis=0), thetas)
    simulated = jax.tree.map(lambda s, t: (s - t) / (lr * local_steps), theta_s, theta)
    return distance_scale * distance(update, simulated) + penalties(x, 1, jnp.mean, weights)


@functools.lru_cache(maxsize=32)
def _loss(model: Model, layout: Layout, distance: Callable, invariant: Callable,
          invariant_distance: Callable, valid: tuple[int, ...], independent: bool,
          normalization: Normalization | None = None, ramp: tuple[float, int] | None = None,
          mesh: jax.sharding.Mesh | None = None):
    """:func:`fedavg_objective` over the engine's variables; cached for compiled reuse.

    ``ramp = (end, steps)``: ``L_sim`` is scaled by a factor that grows linearly from 1 at
    step 0 to ``end`` at step ``steps - 1``; the step is counted in ``variables["step"]``
    (advanced by :func:`_count_steps`, never by the optimiser)."""

    def loss(variables, data):
        factor = 1.0
        if ramp is not None:
            end, steps = ramp
            t = jax.lax.stop_gradient(variables["step"])
            factor = 1.0 + (end - 1.0) * jnp.minimum(t / max(steps - 1, 1), 1.0)
        return fedavg_objective(
            model, data["theta_s"], data["target"], variables["images"], data["labels"],
            data["mask"], lr=data["lr"], layout=layout, valid=valid, independent=independent,
            distance=distance, invariant=invariant, invariant_distance=invariant_distance,
            invariant_weight=data["invariant_weight"], tv_weight=data["tv_weight"],
            clip_weight=data["clip_weight"], normalization=normalization,
            distance_scale=factor, client_weights=data.get("client_weights"), mesh=mesh)

    return loss


@functools.lru_cache(maxsize=32)
def _count_steps(project: Callable | None, normalization: Normalization | None):
    """The engine's ``project``: ``project`` on the pixels (if any), and the step count +1."""

    def after_step(variables):
        out = dict(variables)
        if project is not None:
            out["images"] = _working(project(_pixels(variables["images"], normalization)),
                                     normalization)
        if "step" in variables:
            out["step"] = variables["step"] + 1.0
        return out

    return after_step


@functools.lru_cache(maxsize=32)
def _first_copy_pixels(valid: tuple[int, ...], normalization: Normalization | None):
    first = _first_copy(valid)
    return lambda variables: _pixels(first(variables), normalization)


def _as_counts(model: Model, label_counts, num_samples, who: str) -> np.ndarray:
    counts = getattr(label_counts, "counts", label_counts)
    c = np.asarray(counts)
    if c.ndim == 1:
        c = c[None]
    if c.ndim != 2 or c.shape[1] != model.num_classes:
        raise ValueError(
            f"{who}: label_counts must be counts [K={model.num_classes}] for one client (or "
            f"[clients, {model.num_classes}]), got shape {list(np.shape(counts))}.")
    if not np.issubdtype(c.dtype, np.integer):
        if not np.all(np.isfinite(c)) or not np.all(c == np.round(c)):
            raise ValueError(f"{who}: label_counts must be integers, got {c.tolist()}; "
                             "round them first (labels.round_counts).")
        c = c.astype(np.int64)
    if np.any(c < 0):
        raise ValueError(f"{who}: label_counts must be non-negative, got {c.tolist()}.")
    sums = c.sum(axis=1)
    if np.any(sums != sums[0]) or sums[0] < 1:
        raise ValueError(f"{who}: every client's label counts must sum to the same N >= 1, "
                         f"got sums {sums.tolist()}.")
    if num_samples is not None and int(sums[0]) != int(num_samples):
        raise ValueError(f"{who}: the label counts sum to {int(sums[0])}, but num_samples="
                         f"{num_samples}; the counts must add up to the client's N.")
    return c


def _working_space(model: Model, normalization, who: str):
    """``(norm, model)``: the attack's working space and the network it simulates.

    An explicit ``normalization`` (checked against the model's channels) is that of a
    network fed normalised inputs: the model is used as it is. With ``None``, the model's
    own ``model.normalization`` (or pixels, without one); the network, which normalises
    its pixel input itself, is then fed ``pixels(z)`` (:func:`_fed_working`)."""
    explicit = as_normalization(normalization, model.input_shape[-1], who)
    carried = model.normalization
    if carried is None:
        return explicit, model
    if explicit is not None and explicit != carried:
        raise ValueError(
            f"{who}: the model normalises its input itself (mean {list(carried.mean)}, std "
            f"{list(carried.std)}), but normalization= gives another one (mean "
            f"{list(explicit.mean)}, std {list(explicit.std)}); leave normalization=None to "
            "use the model's, or give a model built without normalization= for a network fed "
            "normalised inputs.")
    return carried, _fed_working(model)


@functools.lru_cache(maxsize=32)
def _fed_working(model: Model) -> Model:
    """``model`` (which normalises its pixel input) as a network of the working space ``z``:
    it is fed ``pixels(z) = z · std + mean``, which it normalises back to ``z`` (up to
    rounding). Cached, so that the attack's compiled loss is reused."""
    norm = model.normalization

    def apply(params, z):
        return model.apply(params, _pixels(z, norm))

    def features(params, z):
        return model.features(params, _pixels(z, norm))

    taps = None
    if model.apply_with_taps is not None:
        def taps(params, z, t):
            return model.apply_with_taps(params, _pixels(z, norm), t)

    return model._replace(apply=apply, features=features, apply_with_taps=taps,
                          normalization=None)


# ---------------------------------------------------------------------------------------
# Presets


def _layer_l2(layers: tuple[str, ...], batches: int) -> Callable:
    """The released code's ``l2`` metric: ``sum_l e^(-3 l/(L-1)) ||g_l - g'_l||² / B``, the
    layers in forward order (first weight 1, last e^-3)."""
    count = len(layers)
    weights = {name: math.exp(-3.0 * i / max(count - 1, 1)) / batches
               for i, name in enumerate(layers)}
    return distances.layer_weighted(distances.l2, weights)


@functools.lru_cache(maxsize=8)
def _smooth_adam(learning_rate: float = 0.4, decay: float = 0.995, every: int = 10):
    """Adam whose rate decays smoothly: ``rate · decay^(step / every)``."""
    return optax.adam(optax.exponential_decay(learning_rate, every, decay, staircase=False))


PRESETS: dict[str, dict[str, Any]] = {
    "paper": dict(steps=200, distance="cosine", invariant_weight=1.0, ramp=None,
                  optimizer=("staircase", 0.4, 0.995, 10), keep="best", restarts=1,
                  init="auto"),
    "released-code": dict(steps=400, distance="layer-l2", invariant_weight=1000.0,
                          ramp=2.0, optimizer=("smooth", 0.4, 0.995, 10), keep="last",
                          restarts=1, init="normal"),
}
"""The settings each ``preset`` of :func:`fedavg` fills in (explicit keywords override)."""


def _check_preset(preset: str, who: str) -> dict[str, Any]:
    if preset not in PRESETS:
        raise ValueError(f"{who}: unknown preset {preset!r}; valid presets: "
                         f"{', '.join(repr(p) for p in PRESETS)}.")
    return PRESETS[preset]


def fedavg(model: Model, theta_s, update, *, label_counts, lr: float, epochs: int,
           batch_size: int, steps: int | None = None, key: jax.Array,
           preset: str = "paper",
           method: Callable[[int, int], Layout] = per_batch,
           distance: Callable | None = None, invariant: Callable = epoch_mean,
           invariant_distance: Callable = distances.mean_squared,
           invariant_weight: float | None = None,
           tv_weight: float = 1e-3, clip_weight: float = 2.0,
           optimizer: optax.GradientTransformation | None = None,
           init: Callable | None = None, project: Callable | None = None,
           normalization=None, keep: str | None = None,
           num_samples: int | None = None, local_steps: int | None = None,
           independent: bool = False, devices: int | None = None,
           restarts: int | None = None, chunk: int = 25,
           callback: Callable | None = None) -> AttackResult:
    """The attack of Dimitrov et al. (TMLR 2022, Algorithm 2) on FedAvg client weights.

    Minimises over dummy images X̃ (laid out by ``method``)

        s · L_sim(∇̄θc, ∇̄θ̃) + λ_inv L_inv(X̃) + λ_TV TV(X̃) + λ_clip R_clip(pixels(X̃))

    where ``∇̄θc = (θs - θc)/(η U)`` is the observed average update, ``∇̄θ̃`` the same for
    the simulated client (:func:`simulate`, differentiated end to end through its local
    steps), ``L_inv`` the epoch order-invariant prior (``priors.epoch_invariant``),
    ``TV`` the anisotropic total variation, ``R_clip = mean(relu(x-1)² + relu(-x)²)``
    (``priors.clip``, a box penalty after Geng et al.) and ``s`` 1, or the released
    code's ramp. The result is matched and averaged over epochs by MatchEpoch
    (``matching.match_epochs``).

    **The working space.** The attack works where the network works, in the data's
    normalisation ``z = (x - mean) / std`` per channel. By default (``normalization=None``)
    it takes it from the network: the server distributes the network together with its
    input preprocessing (as the released code of Dimitrov et al. does), so a model built
    with ``normalization=`` carries it, e.g.

        ds = ll.data.load("femnist-like")
        model = ll.models.convnet(ds.num_classes, (28, 28, 1), normalization=ds)

    normalises its pixel input itself (``model.normalization``, the set's declared
    ``ds.normalization``), and the clients feed it pixels in [0, 1] as every lab does. The
    variables X̃ are then the normalised images z, start from N(0, 1) there, and the
    network is fed the pixels ``z · std + mean``; the box penalty and ``project`` act on
    those pixels, TV and the prior on z. The results are pixels. A model without a
    normalisation is attacked in pixel space (the variables are the pixels). The released
    code works this way (FEMNIST: mean 0.964, std 0.158); on a white background it matters
    (see ``benchmarks/fedavg_paper_scale.py``).

    An explicit ``normalization=`` (``(mean, std)``, a ``data.Normalization`` or a
    ``data.Dataset``, its ``ds.normalization``) describes a network built without one
    whose client fed it normalised images, ``ds.normalization.normalize(x)``: the same
    working space, but the network is fed z itself. Giving a normalisation that differs
    from the model's own is an error.

    **Presets** (``preset=``; every keyword given explicitly overrides its preset value):

    * ``"paper"`` (default): the paper's text (App. B.2, FEMNIST): cosine ``L_sim``,
      ``s = 1``, 200 steps of Adam at 0.4 decayed by 0.995 every 10 steps (staircase,
      ``optimizers.staircase_adam``), the lowest-loss iterate, one attempt; the start is
      U(0, 1) without a normalisation and N(0, 1) in the normalised space with one;
      λ_inv = 1, not the paper's 1000 (on the bundled digits 1000 freezes the images with
      the cosine: 7.2 dB against 13.2 dB without the prior on one client at E = 10, m = 5,
      N = 50; weights up to about 3 act as no prior).
    * ``"released-code"``: the authors' public FEMNIST scripts (``--att_metric l2``), as
      far as the library can express them: ``L_sim`` the squared L2 distance of each
      layer's update weighted ``e^0, e^-1/…, e^-3`` from the first to the last layer
      (``e^(-3 l/(L-1))``, layers in the order of ``theta_s``), divided by B; ``s`` ramped
      linearly from 1 at the first step to 2 at the last; 400 steps of Adam at 0.4 with a
      smooth exponential decay (``0.4 · 0.995^(t/10)``); the last iterate; one attempt;
      the start N(0, 1) (in the normalised space with a normalisation);
      λ_inv = 1000, the weight that belongs to that L2 on normalised images.

    What the preset does not change (facts about the released code that are data or
    network choices, not attack settings): it feeds 28×28×1 images to a network whose
    second convolution is 3×3 SAME (first dense layer 3,136 wide, not Table 5's 5,184),
    uses flax's default initialisation with one fixed key for every client, and takes a
    LEAF writer's first 50 images as a client.

    The labels: ``label_counts`` (known, or estimated with ``labels.fedavg_counts``) are
    expanded into N labels, shuffled once with ``key`` and cut into ``B = ceil(N/m)``
    batches (the last one may be smaller); the same split is used in every epoch.

    Aggregated clients (the paper's App. C.5): give ``label_counts`` as
    ``[clients, K]``, one row per client, all with the same N; ``update`` is then the
    plain average of the clients' weights. Every client is simulated on its own
    variables and the simulated weights are averaged before they are compared.

    **Many clients, many devices:** with ``independent=True``, ``update`` is a list of C
    clients' own weights (each seen by the server) and ``label_counts`` has C rows; the C
    attacks run in one optimisation whose loss is the sum of theirs (Adam treats every
    pixel on its own, so each client's images follow their own attack; only the best
    step is chosen on the sum). The clients are split over ``devices`` local devices
    (default all; ``jax.sharding`` mesh axis ``"clients"``, ``jax.shard_map``), padded
    to a multiple of the device count with copies of the first client that weigh 0;
    on each device its clients run in parallel (vmap) on a GPU or TPU and one after the
    other on a CPU.

    Args:
        model: the attacked network.
        theta_s: the weights the server sent (a pytree).
        update: what the client sent back, its weights θc (same tree as ``theta_s``);
            with ``independent``, a list of such trees, one per client.
        label_counts: int ``[K]`` counts per class (a ``labels.LabelCounts`` works too),
            or ``[clients, K]`` for an aggregate of several clients (or, with
            ``independent``, for the clients of ``update``).
        lr: the client's learning rate η.
        epochs: the client's local epochs E.
        batch_size: the client's batch size m.
        steps: attack optimisation steps (preset: 200 / 400).
        key: PRNG key: the label split and the initial images (attempt ``i`` starts from
            ``init(split(fold_in(key, i))[0], shape)``, ``engine.run_attack``).
        preset: ``"paper"`` or ``"released-code"`` (above).
        method: the variable layout, ``method(E, B) -> Layout``: :func:`per_batch`
            (default, "Ours"), :func:`shared`, :func:`fedsgd_epoch` or :func:`fedsgd`.
        distance: ``L_sim(observed, simulated)`` over update trees; ``distances.cosine``
            (the paper's), ``distances.l2`` or ``distances.layer_weighted(...)``.
        invariant: the order-invariant summary ``g(images [N, H, W, C])``:
            ``priors.epoch_mean`` or ``priors.conv_max``. Used by :func:`per_batch`,
            whose copies need tying.
        invariant_distance: ``D(a, b)``: ``distances.mean_squared`` or
            ``distances.mean_absolute``.
        invariant_weight: λ_inv; 0 gives "Ours (no prior)" (preset: 1 / 1000).
        tv_weight: λ_TV.
        clip_weight: λ_clip.
        optimizer: an optax transformation (preset: staircase / smooth decayed Adam).
        init: ``init(key, shape) -> images`` in the working space, the random start
            (preset: U(0, 1), or N(0, 1) with a normalisation / for "released-code").
        project: optional ``project(pixels) -> pixels`` after every step (e.g.
            ``optimizers.unit_box``); applied to the pixels; the paper uses none.
        normalization: ``None`` (default): the model's own ``model.normalization``, or
            pixels without one; else the input normalisation of a network fed normalised
            images (above).
        keep: ``"best"`` (lowest loss) or ``"last"`` iterate (preset: best / last).
        num_samples: the client's N, if known separately; checked against the counts.
        local_steps: the number of local steps U the server was told, if any; checked
            against ``E · ceil(N/m)``.
        independent: attack the separate updates in ``update`` (a list) at once, rather
            than one aggregate.
        devices: with ``independent``, how many local devices to split the clients over
            (default all).
        restarts: attempts from fresh random starts; the lowest loss wins (preset: 1).
        chunk: steps per jitted chunk; ``callback(frame)`` runs between chunks (e.g.
            ``widgets.Live(truth).callback``).

    Returns:
        An ``engine.AttackResult`` (``FedAvgResult`` is the same type): ``images`` the
        reconstruction after MatchEpoch, in pixels, ``[clients · N, H, W, C]``
        (unclipped; clip to [0, 1] to display), in the order of ``labels`` (int
        ``[clients · N]``, the label the attack assumed for each image); ``epoch_images``
        the reconstruction of every copy, ``[copies, clients · N, H, W, C]`` (copies = E
        for ``per_batch`` and ``fedsgd_epoch``, 1 otherwise), each in the attacker's batch
        order; ``batch_labels`` and ``mask`` ``[clients, S, n]``, the attacker's split of
        the labels into one simulated epoch's batches (``mask == 0``: an empty slot). The
        frames show the first copy, in pixels (usable by ``widgets.Live``).

    Raises:
        ValueError: for an unknown preset (the message lists the valid ones), a
            normalisation whose channel count is not the model's or that differs from the
            model's own ``model.normalization``, trees of different
            structure, counts that are not non-negative integers ``[K]``, counts that do
            not sum to ``num_samples``, ``local_steps`` not equal to ``E · ceil(N/m)``, or
            non-positive E, m, η or steps.
    """
    who = "attacks.fedavg"
    settings = _check_preset(preset, who)
    norm, model = _working_space(model, normalization, who)
    steps = settings["steps"] if steps is None else steps
    invariant_weight = (settings["invariant_weight"] if invariant_weight is None
                        else invariant_weight)
    restarts = settings["restarts"] if restarts is None else restarts
    keep = settings["keep"] if keep is None else keep
    if keep not in ("best", "last"):
        raise ValueError(f"{who}: keep must be 'best' or 'last', got {keep!r}.")
    if independent:
        if not isinstance(update, (list, tuple)) or not update:
            raise ValueError(f"{who}: with independent=True, update must be a non-empty list "
                             f"of the clients' weight trees, got {type(update).__name__}.")
        for i, theta in enumerate(update):
            check_matching(theta, theta_s, name=f"update[{i}]", reference_name="theta_s")
    else:
        check_matching(update, theta_s, name="update (theta_c)", reference_name="theta_s")
    epochs, batch_size, steps = (check_int(v, name, who) for v, name in (
        (epochs, "epochs"), (batch_size, "batch_size"), (steps, "steps")))
    if not lr > 0:
        raise ValueError(f"{who}: the learning rate lr must be > 0, got {lr!r}.")
    counts = _as_counts(model, label_counts, num_samples, who)
    clients, n = counts.shape[0], int(counts[0].sum())
    if independent and len(update) != clients:
        raise ValueError(f"{who}: independent=True needs one row of label_counts per client "
                         f"update, got {len(update)} updates and {clients} rows of counts.")
    batches = math.ceil(n / batch_size)
    if local_steps is not None and int(local_steps) != epochs * batches:
        raise ValueError(
            f"{who}: the update took local_steps={local_steps} steps, but E={epochs} epochs "
            f"of ceil(N/m) = ceil({n}/{batch_size}) = {batches} batches make {epochs * batches}"
            f"; check N (the label counts), epochs and batch_size.")
    layout = method(int(epochs), batches)
    if not isinstance(layout, Layout):
        raise ValueError(f"{who}: method must return a fedavg.Layout, got {layout!r}; use "
                         "fedavg.per_batch, shared, fedsgd_epoch or fedsgd.")
    if distance is None:
        distance = (distances.cosine if settings["distance"] == "cosine"
                    else _layer_l2(tuple(theta_s), batches))
    if optimizer is None:
        kind, *args = settings["optimizer"]
        optimizer = (optimizers.staircase_adam(*args) if kind == "staircase"
                     else _smooth_adam(*args))
    if init is None:
        normal = settings["init"] == "normal" or norm is not None
        init = jax.random.normal if normal else jax.random.uniform
    ramp = None if settings["ramp"] is None else (float(settings["ramp"]), int(steps))
    width = batch_size if layout.steps_per_epoch > 1 else n
    slots = layout.steps_per_epoch * width

    # The start images follow engine.run_attack's rule (fold_in(key, attempt)); the label
    # split, shared by all attempts, takes a fold that no attempt uses.
    k_split = jax.random.fold_in(key, 2**31 - 1)
    labels, masks = [], []
    for c in range(clients):
        order = np.asarray(jax.random.permutation(jax.random.fold_in(k_split, c), n))
        y = np.repeat(np.arange(model.num_classes), counts[c])[order]
        labels.append(np.concatenate([y, np.zeros(slots - n, y.dtype)]))
        masks.append(np.concatenate([np.ones(n), np.zeros(slots - n)]))
    shape2 = (clients, layout.steps_per_epoch, width)
    labels = np.stack(labels).reshape(shape2).astype(np.int32)
    masks = np.stack(masks).reshape(shape2).astype(np.float32)
    valid = tuple(int(i) for i in _valid_slots(masks[0]))

    total_steps = epochs * batches
    def average_update(theta):
        return jax.tree.map(lambda s, t: (jnp.asarray(s) - jnp.asarray(t)) / (lr * total_steps),
                            theta_s, theta)

    mesh, pad = None, 0
    if independent:
        mesh = client_mesh(devices)
        pad = -clients % mesh.size
        # Padding: copies of the first client, whose losses weigh 0.
        rows = np.concatenate([np.arange(clients), np.zeros(pad, np.int64)])
        target = jax.tree.map(lambda *t: jnp.stack(t),
                              *[average_update(update[int(r)]) for r in rows])
        labels_in, masks_in = labels[rows], masks[rows]
    else:
        target, labels_in, masks_in = average_update(update), labels, masks
    data: dict[str, Any] = {
        "theta_s": jax.tree.map(jnp.asarray, theta_s), "target": target,
        "labels": jnp.asarray(labels_in), "mask": jnp.asarray(masks_in),
        "lr": jnp.asarray(lr, jnp.float32),
        "invariant_weight": jnp.asarray(invariant_weight, jnp.float32),
        "tv_weight": jnp.asarray(tv_weight, jnp.float32),
        "clip_weight": jnp.asarray(clip_weight, jnp.float32),
    }
    if independent:
        data["client_weights"] = jnp.asarray(np.r_[np.ones(clients), np.zeros(pad)],
                                             jnp.float32)
    shape = (clients, layout.copies, layout.steps_per_epoch, width, *model.input_shape)
    loss_fn = _loss(model, layout, distance, invariant, invariant_distance, valid,
                    bool(independent), norm, ramp, mesh)
    after_step = _count_steps(project, norm) if (project is not None or ramp) else None
    to_images = _first_copy_pixels(valid, norm)

    def attempt(images, key):
        del key   # nothing else is drawn
        if pad:
            images = jnp.concatenate([images, jnp.repeat(images[:1], pad, axis=0)])
        variables = {"images": images}
        if ramp is not None:
            variables["step"] = jnp.zeros((), jnp.float32)
        return engine.minimize(loss_fn, variables, data, optimizer, steps=steps,
                               chunk=int(chunk), project=after_step, to_images=to_images,
                               callback=callback, keep=keep)

    out, index = engine.run_attack(attempt, init=init, shape=shape, key=key,
                                   restarts=restarts, who=who)
    final = out.variables["images"][:clients]
    per_copy = np.asarray(_pixels(_epoch_view(valid)(final), norm))   # [C, copies, N, ...]
    matched = np.concatenate([matching.match_epochs(per_copy[c]) for c in range(clients)])
    flat_labels = labels.reshape(clients, -1)[:, list(valid)].reshape(-1)
    return engine.attack_result(out, flat_labels, images=matched,
                                epoch_images=np.concatenate(list(per_copy), axis=1),
                                batch_labels=labels, mask=masks, attempt=index)


def paper_input(images, *, size: int = 32, channels: int = 3) -> np.ndarray:
    """Grey ``[N, h, w, 1]`` images as the input of the paper's FEMNIST network.

    Dimitrov et al. (TMLR 2022, Table 5) feed their FEMNIST network 3-channel images, and
    its first dense layer has ``5184 = 9·9·64`` inputs, which a 32x32 input gives (28x28
    would give 4096). So the 28x28 grey images were most likely enlarged to 32x32 and
    repeated over 3 channels. This pads each image with zeros (the digits' background)
    to ``size x size``, centred, and repeats the channel ``channels`` times; the
    bundled data files are not changed.

        >>> paper_input(np.ones((2, 28, 28, 1))).shape
        (2, 32, 32, 3)
    """
    x = np.asarray(images, np.float32)
    if x.ndim != 4 or x.shape[-1] != 1 or max(x.shape[1:3]) > size:
        raise ValueError(f"fedavg.paper_input expects grey images [N, h, w, 1] with h, w <= "
                         f"{size}, got shape {list(x.shape)}.")
    top, left = (size - x.shape[1]) // 2, (size - x.shape[2]) // 2
    x = np.pad(x, ((0, 0), (top, size - x.shape[1] - top), (left, size - x.shape[2] - left),
                   (0, 0)))
    return np.repeat(x, channels, axis=-1)
