"""The dashboard's registries and adapters: every choice, and plain functions of a config.

No widgets here: :data:`DATASETS`, :data:`MODELS`, :data:`DEFENSES` and :data:`ATTACKS`
are the choices, :class:`Config` a screen's settings, :func:`observe` what the server
receives (a :class:`Scene`), :func:`attack` / :func:`run` the reconstruction (a
:class:`Run`), and :func:`layer_views` / :func:`server_summary` what the server saw, as
data. :mod:`leakage_lab.dashboard.screen` draws all of it.
"""

from __future__ import annotations

import functools
import html
import math
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import numpy as np

from leakage_lab import (
    attacks,
    compression,
    data,
    defenses,
    distances,
    fl,
    labels,
    metrics,
    models,
    trees,
)
from leakage_lab.bayes import bayes

__all__ = [
    "ATTACKS",
    "DATASETS",
    "DEFENSES",
    "MAX_BATCH",
    "MODELS",
    "SUGGESTED_MODEL",
    "Attack",
    "Config",
    "DefenseChoice",
    "LayerView",
    "ModelChoice",
    "Run",
    "Scene",
    "attack",
    "attacker_labels",
    "check_config",
    "client_indices",
    "layer_views",
    "observe",
    "register_attack",
    "run",
    "server_summary",
]

MAX_BATCH = 8
"""The most images one client may hold in the dashboard (a demo, not a benchmark)."""


# ---------------------------------------------------------------------------------------
# Registries: data sets, models, defenses.


DATASETS = {
    "digits": "handwritten digits, 28×28 grey, 10 classes",
    "faces": "faces and non-faces, 25×25 grey, 2 classes",
    "tiny-images": "crops of 7 photos, 32×32 colour",
}
"""The bundled data sets the dashboard offers (``ll.data.load(name)``), with a caption."""


class ModelChoice(NamedTuple):
    """A network the client can train: ``build(num_classes, input_shape) -> Model``."""

    label: str
    build: Callable[[int, tuple[int, int, int]], models.Model]
    about: str


MODELS = {
    "lenet": ModelChoice(
        "LeNet (sigmoid)",
        lambda k, shape: models.lenet(num_classes=k, input_shape=shape),
        "DLG's network: smooth sigmoids, large random weights. L-BFGS loves it."),
    "convnet": ModelChoice(
        "ConvNet (ReLU)",
        lambda k, shape: models.convnet(num_classes=k, input_shape=shape),
        "Dimitrov et al.'s small ReLU convnet. Inverting Gradients' home ground."),
    "mlp": ModelChoice(
        "MLP (dense)",
        lambda k, shape: models.mlp(num_classes=k, input_shape=shape),
        "Dense layers only: the first layer's gradient holds the image itself."),
}
"""Model name -> :class:`ModelChoice`."""

SUGGESTED_MODEL = {"digits": "convnet", "faces": "mlp", "tiny-images": "lenet"}
"""The model the dashboard picks when the class switches to a data set."""


class DefenseChoice(NamedTuple):
    """A defense the client can apply, with one strength knob.

    Attributes:
        label: the menu entry.
        make: ``make(strength) -> Defense``, or ``None`` for no defense.
        knob: the strength's name on screen (``"σ"``, ``"p"``...), ``None`` if it has none.
        default, low, high, step: the knob's default value and slider range (for a
            logarithmic slider, ``step`` is in decades).
        about: one line for the class.
        log: whether the slider is logarithmic (noise levels span decades: a useful σ
            differs about 100-fold between LeNet's and the ConvNet's gradients).
    """

    label: str
    make: Callable[[float], defenses.Defense] | None
    knob: str | None
    default: float
    low: float
    high: float
    step: float
    about: str
    log: bool = False


def _bits(strength: float) -> int:
    if float(strength) != round(float(strength)):
        raise ValueError(f"quantize: the strength is a number of bits, a whole number from 1 "
                         f"to 16, got {strength!r}.")
    return int(round(float(strength)))


DEFENSES = {
    "none": DefenseChoice("none", None, None, 0.0, 0.0, 1.0, 1.0,
                          "The client sends its exact gradient."),
    "gaussian": DefenseChoice(
        "Gaussian noise", lambda s: defenses.gaussian(s), "σ", 1e-3, 1e-4, 1e-1, 0.1,
        "Adds N(0, σ²) to every number it sends (DP-SGD's noise, without clipping).",
        log=True),
    "laplace": DefenseChoice(
        "Laplacian noise", lambda s: defenses.laplace(s), "b", 1e-3, 1e-4, 1e-1, 0.1,
        "Adds Laplace(0, b) noise to every number.", log=True),
    "prune": DefenseChoice(
        "random pruning", lambda s: defenses.prune(s), "p", 0.5, 0.0, 0.99, 0.01,
        "Sets each number to 0 with probability p; sends the rest exactly."),
    "quantize": DefenseChoice(
        "quantisation", lambda s: compression.quantize(_bits(s)), "bits", 8.0, 1.0, 8.0,
        1.0, "Rounds every number to one of 2^bits levels per layer (8 bits: 256)."),
    "sign": DefenseChoice(
        "SignSGD", lambda s: compression.sign(), None, 0.0, 0.0, 1.0, 1.0,
        "Sends only the sign of each number (times one scale per layer)."),
    "top_k": DefenseChoice(
        "top-k sparsification", lambda s: compression.top_k(s), "fraction", 0.1, 0.01, 1.0,
        0.01, "Sends only the largest numbers (this fraction of them); the rest are 0."),
}
"""Defense name -> :class:`DefenseChoice`."""


# ---------------------------------------------------------------------------------------
# The configuration, what the server saw, and a run.


class Config(NamedTuple):
    """One dashboard setting: everything a run depends on except the key.

    Attributes:
        dataset: a key of :data:`DATASETS`.
        image: position of the client's first image in the dashboard's fixed shuffle of
            the data set (the bundled sets are sorted by class; the shuffle lets a batch
            mix classes). :func:`client_indices` maps it to data set indices.
        batch: how many images the client holds (1 to :data:`MAX_BATCH`): the ones at
            positions ``image, image + 1, ...`` of the shuffle.
        model: a key of :data:`MODELS`.
        attack: a key of :data:`ATTACKS`.
        defense: a key of :data:`DEFENSES`.
        strength: the defense's knob (σ, b, p, bits or fraction); ``None`` for its default.
        steps: the attack's optimisation steps.
        adaptive: whether the attacker matches its distance to the defense (L1 against
            Laplacian noise, only the kept numbers against pruning and top-k, signs
            against SignSGD). The Bayes attack always uses the defense's own model.
    """

    dataset: str = "digits"
    image: int = 0
    batch: int = 1
    model: str = "convnet"
    attack: str = "inverting"
    defense: str = "none"
    strength: float | None = None
    steps: int = 300
    adaptive: bool = True


class Scene(NamedTuple):
    """One client, its update, and what the server received.

    Attributes:
        config: the (checked) configuration.
        model, params: the network and the weights the server sent.
        images, labels: the client's private data ``[N, H, W, C]``, ``[N]``.
        clean: the update the client computed (gradient, or weight change for FedAvg).
        observed: what the server received: ``clean`` after the defense.
        defense: the defense applied, or ``None``.
        class_names: the data set's class names, for captions.
    """

    config: Config
    model: models.Model
    params: Any
    images: np.ndarray
    labels: np.ndarray
    clean: Any
    observed: Any
    defense: defenses.Defense | None
    class_names: tuple[str, ...]


class Run(NamedTuple):
    """What :func:`run` returns.

    Attributes:
        config: the configuration run.
        scene: the client and what the server saw (:class:`Scene`).
        result: the attack's result (``images``, ``labels``, ``frames``, ``message``...).
        psnr: PSNR of the reconstruction in dB (for a batch: the mean after matching each
            reconstruction to its closest true image, ``metrics.score_batch``).
        seconds: wall time of the attack, compilation included.
    """

    config: Config
    scene: Scene
    result: Any
    psnr: float
    seconds: float


class Attack(NamedTuple):
    """An attack the dashboard can run.

    Attributes:
        label: the menu entry.
        client: ``client(model, params, images, labels, *, key) -> update``: what an
            honest client computes and sends (before any defense).
        run: ``run(scene, *, steps, key, callback) -> result``, an attack result whose
            ``frames`` a :class:`~leakage_lab.widgets.Live` can show.
        default_steps: the step count the dashboard proposes.
        about: one line for the class.
    """

    label: str
    client: Callable
    run: Callable
    default_steps: int
    about: str


ATTACKS: dict[str, Attack] = {}
"""Attack name -> :class:`Attack`; extend it with :func:`register_attack`."""


def register_attack(name: str, entry: Attack) -> None:
    """Adds (or replaces) an attack in the dashboard's menu."""
    if not isinstance(entry, Attack):
        raise ValueError(f"register_attack expects a dashboard.Attack, got "
                         f"{type(entry).__name__}.")
    ATTACKS[str(name)] = entry


def _choices(registry) -> str:
    return ", ".join(repr(k) for k in registry)


def check_config(config: Config) -> Config:
    """Returns ``config`` with its strength filled in, or raises a ValueError that says
    which field is wrong, what it may be and what came.

        >>> from leakage_lab import dashboard
        >>> dashboard.check_config(dashboard.Config(defense="gaussian")).strength
        0.001
        >>> dashboard.check_config(dashboard.Config(attack="magic"))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: Config.attack must be one of ...
    """
    if not isinstance(config, Config):
        raise ValueError(f"Expected a dashboard.Config, got {type(config).__name__}.")
    for field, registry in (("dataset", DATASETS), ("model", MODELS), ("attack", ATTACKS),
                            ("defense", DEFENSES)):
        value = getattr(config, field)
        if value not in registry:
            raise ValueError(f"Config.{field} must be one of {_choices(registry)}, "
                             f"got {value!r}.")
    for field, low, high in (("batch", 1, MAX_BATCH), ("steps", 1, 100_000)):
        value = getattr(config, field)
        if isinstance(value, bool) or not isinstance(value, int | np.integer) \
                or not low <= value <= high:
            raise ValueError(f"Config.{field} must be an int from {low} to {high}, "
                             f"got {value!r}.")
    size = len(_dataset(config.dataset))
    if isinstance(config.image, bool) or not isinstance(config.image, int | np.integer) \
            or not 0 <= config.image <= size - config.batch:
        raise ValueError(f"Config.image must be an int from 0 to {size - config.batch} for "
                         f"{config.batch} image(s) of {config.dataset!r} ({size} images), "
                         f"got {config.image!r}.")
    choice = DEFENSES[config.defense]
    strength = choice.default if config.strength is None else config.strength
    if not isinstance(strength, int | float | np.integer | np.floating) \
            or isinstance(strength, bool) or not math.isfinite(strength):
        raise ValueError(f"Config.strength ({choice.knob or 'unused'} of {choice.label}) must "
                         f"be a finite number, got {strength!r}.")
    return config._replace(strength=float(strength))


@functools.cache
def _dataset(name: str) -> data.Dataset:
    return data.load(name)


# The class the first image of a data set's shuffle shows, so that each set's default
# image is what its name promises (a face for "faces", not a non-face patch).
FIRST_CLASS = {"faces": 1}


@functools.cache
def _order(dataset: str) -> np.ndarray:
    order = np.random.default_rng(0).permutation(len(_dataset(dataset)))
    if dataset in FIRST_CLASS:
        labels = np.asarray(_dataset(dataset).labels)[order]
        first = int(np.argmax(labels == FIRST_CLASS[dataset]))
        order[[0, first]] = order[[first, 0]]      # swap it to the front; the rest stays put
    return order


def client_indices(config: Config) -> np.ndarray:
    """The data set indices of the client's images for ``config`` (after the shuffle)."""
    config = check_config(config)
    return _order(config.dataset)[config.image:config.image + config.batch]


@functools.cache
def _model(dataset: str, model: str) -> models.Model:
    """One Model object per (data set, model): the attacks cache compiled code by it."""
    ds = _dataset(dataset)
    return MODELS[model].build(ds.num_classes, tuple(ds.images.shape[1:]))


@functools.cache
def _init(model: models.Model) -> Callable:
    return jax.jit(model.init)


def observe(config: Config, *, key: jax.Array) -> Scene:
    """The client's images, its update, and what the server received after the defense.

    ``key`` draws the model's weights (``fold_in(key, 0)``), the client's local shuffling
    (``fold_in(key, 1)``) and the defense's noise (``fold_in(key, 2)``): the same key with
    another attack shows the class the same update.
    """
    config = check_config(config)
    if not (isinstance(key, jax.Array) and jax.dtypes.issubdtype(key.dtype,
                                                                   jax.dtypes.prng_key)):
        raise ValueError(f"key must be a PRNG key such as jax.random.key(0), got "
                         f"{type(key).__name__} {key!r}.")
    ds = _dataset(config.dataset)
    model = _model(config.dataset, config.model)
    params = _init(model)(jax.random.fold_in(key, 0))
    indices = client_indices(config)
    images, y = np.asarray(ds.images[indices]), np.asarray(ds.labels[indices])
    entry = ATTACKS[config.attack]
    clean = entry.client(model, params, images, y, key=jax.random.fold_in(key, 1))
    choice = DEFENSES[config.defense]
    defense = None if choice.make is None else choice.make(config.strength)
    observed = clean if defense is None else defense.apply(clean,
                                                           key=jax.random.fold_in(key, 2))
    return Scene(config, model, params, images, y, clean, observed, defense,
                 tuple(ds.class_names))


def _score(recon, truth) -> float:
    recon = np.asarray(recon)
    if len(truth) == 1:
        return float(metrics.psnr(recon[0], truth[0]))
    return metrics.score_batch(recon, truth).mean_psnr


def attack(scene: Scene, *, key: jax.Array, callback: Callable | None = None) -> Run:
    """Runs the scene's attack on what the server saw (``fold_in(key, 3)`` drives it)."""
    config = scene.config
    start = time.perf_counter()
    result = ATTACKS[config.attack].run(scene, steps=config.steps,
                                        key=jax.random.fold_in(key, 3), callback=callback)
    seconds = time.perf_counter() - start
    return Run(config, scene, result, _score(result.images, scene.images), seconds)


def run(config: Config, *, key: jax.Array, callback: Callable | None = None) -> Run:
    """Builds the scene for ``config`` and attacks it: :func:`observe`, then :func:`attack`.

    Args:
        config: what to run (checked by :func:`check_config`).
        key: drives the weights, the client, the defense and the attack's random start.
        callback: ``callback(frame)`` between the attack's jitted chunks (e.g.
            ``Live.callback``).

    Returns:
        A :class:`Run`: the scene, the attack's result and its PSNR.
    """
    return attack(observe(config, key=key), key=key, callback=callback)


# ---------------------------------------------------------------------------------------
# The attacks, each a small function of a scene.


def _chunk(steps: int) -> int:
    """Steps per jitted chunk: about 30 frames per run, 5 to 50 steps each."""
    return int(min(50, max(5, steps // 30)))


def attacker_labels(scene: Scene, *, key: jax.Array) -> jax.Array:
    """The labels the server reads off the update, without the truth.

    One image: the iDLG rule (Zhao et al., 2020) on the last layer's weight gradient,
    whose column sum is negative only at the true class when the features are
    non-negative (every model here). Unlike the bias rule, it survives pruning and
    top-k, which may zero the one telling bias entry. A batch: Geng et al.'s label
    counts (2021).
    """
    n = len(scene.images)
    if n == 1:
        return labels.idlg(scene.model, scene.params, scene.observed, use_bias=False)
    counts = labels.batch_counts(scene.model, scene.params, scene.observed, num_samples=n,
                                 key=key).counts
    return labels.counts_to_labels(counts)


def _matched(scene: Scene, base: Callable) -> Callable:
    """The distance an adaptive attacker uses against the scene's defense.

    ``base`` is the attack's own (L2 for DLG, cosine for Inverting Gradients). Laplacian
    noise: L1 for DLG (its negative log-likelihood); pruning and top-k: ``base`` on the
    numbers that were kept (``compression.kept_distance``); SignSGD: a smooth sign
    agreement (``compression.sign_distance``).
    """
    name = scene.config.defense
    if not scene.config.adaptive or scene.defense is None:
        return base
    if name == "laplace" and base is distances.l2:
        return distances.l1
    if name in ("prune", "top_k"):
        return compression.kept_distance(base)
    if name == "sign":
        return compression.sign_distance()
    return base


def _dlg(scene: Scene, *, steps: int, key: jax.Array, callback=None):
    """DLG (Zhu et al., NeurIPS 2019): image and soft label by L-BFGS on the L2 distance."""
    return attacks.dlg(scene.model, scene.params, scene.observed, shape=scene.images.shape,
                       steps=steps, key=key, distance=_matched(scene, distances.l2),
                       chunk=_chunk(steps), callback=callback)


INVERTING_PRIOR_WEIGHT = 1e-4
"""Total variation weight of Inverting Gradients (Geiping et al.'s default)."""


def _inverting(scene: Scene, *, steps: int, key: jax.Array, callback=None):
    """Inverting Gradients (Geiping et al., NeurIPS 2020): cosine + TV, signed Adam.

    The labels come from the update itself (:func:`attacker_labels`).
    """
    k_labels, k_attack = jax.random.split(key)
    return attacks.reconstruct(scene.model, scene.params, scene.observed,
                               labels=attacker_labels(scene, key=k_labels),
                               distance=_matched(scene, distances.cosine),
                               prior_weight=INVERTING_PRIOR_WEIGHT, steps=steps,
                               key=k_attack, chunk=_chunk(steps), callback=callback)


# The Bayes attack's loss is -log p(g | x) + α TV(x). For Gaussian-like noise of standard
# deviation s, -log p is the squared L2 distance over 2s²; dividing it by the update's own
# size ||g||² makes it comparable with Inverting Gradients' cosine distance, so the prior
# gets α = BAYES_TV_WEIGHT · ||g||² / (2s²), with BAYES_TV_WEIGHT on the scale of Inverting
# Gradients' 1e-4. For Laplacian noise of scale b, -log p is the L1 distance over b and
# α = BAYES_TV_WEIGHT_L1 · ||g||₁ / b. The constants were picked by a small search (300
# steps, one digit, LeNet and ConvNet; see the dashboard's report): not tuned per case.
BAYES_TV_WEIGHT = 2e-4
BAYES_TV_WEIGHT_L1 = 1e-2


def _bayes_conditional(scene: Scene) -> tuple[defenses.Defense, float]:
    """The conditional ``p(g | x)`` the Bayes attacker assumes, and its TV weight α.

    The client's own defense where it has a density (noise, pruning, quantisation's
    Gaussian approximation). Top-k keeps the largest numbers exactly and zeroes the
    rest: the attacker scores it as pruning with ``p = 1 - fraction`` (zeros say
    nothing, kept numbers are exact), an approximation, since top-k's zeros are not
    random. SignSGD has no density; the attacker uses ``exp(-sign_distance)``.
    No defense: the exact update, scored with the point-mass surrogate of
    ``defenses.gaussian(0)`` (a Gaussian of std ``defenses.POINT_MASS_WIDTH``).
    """
    name, s = scene.config.defense, scene.config.strength
    leaves = [np.asarray(g, np.float64) for g in jax.tree.leaves(scene.observed)]
    squared = max(sum(float(np.sum(g**2)) for g in leaves), 1e-30)
    width = defenses.POINT_MASS_WIDTH

    def gaussian_weight(sd: float) -> float:
        return BAYES_TV_WEIGHT * squared / (2 * sd**2)

    if name == "none" or (name in ("gaussian", "laplace") and s == 0):
        return defenses.gaussian(0.0), gaussian_weight(width)
    if name == "gaussian":
        return scene.defense, gaussian_weight(s)
    if name == "laplace":
        return scene.defense, BAYES_TV_WEIGHT_L1 * sum(float(np.sum(np.abs(g)))
                                                       for g in leaves) / s
    if name == "prune":
        return scene.defense, gaussian_weight(width)
    if name == "top_k":
        return defenses.prune(1.0 - s), gaussian_weight(width)
    if name == "quantize":
        # Rounding noise of std Δ/2 per layer (the log_prob's own choice); α from the
        # median layer's Δ.
        deltas = [2 * float(np.max(np.abs(g))) / (2 ** _bits(s) - 1) for g in leaves]
        return (compression.quantize(_bits(s)),
                gaussian_weight(max(float(np.median(deltas)) / 2, width)))
    if name == "sign":
        # A mean over coordinates in [0, 4], on the cosine distance's scale.
        return defenses.from_distance(compression.sign_distance()), INVERTING_PRIOR_WEIGHT
    raise ValueError(f"bayes: no conditional for the defense {name!r}; add one to "
                     f"dashboard._bayes_conditional.")


def _bayes(scene: Scene, *, steps: int, key: jax.Array, callback=None):
    """The Bayes-optimal adversary (Balunović et al., ICLR 2022): the defense's own
    log-likelihood plus a total-variation prior, labels read off the update."""
    k_labels, k_attack = jax.random.split(key)
    conditional, weight = _bayes_conditional(scene)
    return bayes(scene.model, scene.params, scene.observed, defense=conditional,
                 labels=attacker_labels(scene, key=k_labels), prior_weight=weight,
                 steps=steps, key=k_attack, chunk=_chunk(steps), callback=callback)


def _fedsgd_client(model, params, images, y, *, key):
    """FedSGD: the client sends the gradient of its mean loss."""
    del key
    return fl.gradient(model, params, images, y)


# FedAvg (Dimitrov et al., TMLR 2022): the client runs FEDAVG_EPOCHS epochs of local SGD on
# batches of ceil(N / 2) images at rate FEDAVG_LR (the paper's FEMNIST rate) and sends its
# new weights; the server sees their change.
FEDAVG_LR = 0.004
FEDAVG_EPOCHS = 2


def _fedavg_batch(n: int) -> int:
    return max(1, math.ceil(n / 2))


def _fedavg_client(model, params, images, y, *, key):
    """FedAvg: the change of the weights after the client's local epochs, θc - θs."""
    theta_c = fl.client_update(model, params, images, y, lr=FEDAVG_LR, epochs=FEDAVG_EPOCHS,
                               batch_size=_fedavg_batch(len(images)), key=key)
    return trees.tree_sub(theta_c, params)


# The paper's epoch order-invariant prior (weight 1000, no box) is far too strong for the
# dashboard's one to four digits: the mean image of a few random starts varies a lot
# between epochs, and the attack stalls on blank images (5.8 dB here; 9-11 dB in lab 08's
# setting of four digits). Its ablation without the prior ("Ours (no prior)"), with
# images kept in [0, 1], rebuilt one digit at about 35 dB. The dashboard runs that variant.
FEDAVG_OPTIONS = {"invariant_weight": 0.0, "project": attacks.unit_box}


def _fedavg(scene: Scene, *, steps: int, key: jax.Array, callback=None):
    """The FedAvg attack of Dimitrov et al. (TMLR 2022): simulate the client's local steps
    on dummy images, one variable per (epoch, batch), and average the epochs' copies
    (MatchEpoch); label counts estimated from the weights (``labels.fedavg_counts``).
    Without the epoch order-invariant prior (:data:`FEDAVG_OPTIONS`)."""
    k_counts, k_attack = jax.random.split(key)
    n = len(scene.images)
    theta_c = trees.tree_add(scene.params, scene.observed)
    client = {"lr": FEDAVG_LR, "epochs": FEDAVG_EPOCHS, "batch_size": _fedavg_batch(n)}
    counts = labels.fedavg_counts(scene.model, scene.params, theta_c, num_samples=n,
                                  key=k_counts, **client).counts
    return attacks.fedavg(scene.model, scene.params, theta_c, label_counts=counts,
                          steps=steps, key=k_attack, chunk=_chunk(steps), callback=callback,
                          **client, **FEDAVG_OPTIONS)


register_attack("dlg", Attack(
    "DLG", _fedsgd_client, _dlg, 300,
    "Zhu et al. (NeurIPS 2019): match the gradient in L2 with L-BFGS; image and label "
    "unknown. Best on LeNet."))
register_attack("inverting", Attack(
    "Inverting Gradients", _fedsgd_client, _inverting, 300,
    "Geiping et al. (NeurIPS 2020): cosine distance + total variation, Adam on the sign; "
    "label read off the gradient. Best on ReLU nets."))
register_attack("bayes", Attack(
    "Bayes-optimal", _fedsgd_client, _bayes, 300,
    "Balunović et al. (ICLR 2022): uses the defense's own noise model as the likelihood, "
    "plus a total-variation prior."))
register_attack("fedavg", Attack(
    "FedAvg attack", _fedavg_client, _fedavg, 200,
    f"Dimitrov et al. (TMLR 2022): the client took {FEDAVG_EPOCHS} epochs of local steps; "
    "the server simulates them on dummy images and matches the weight change."))


# ---------------------------------------------------------------------------------------
# What the server saw.


class LayerView(NamedTuple):
    """One array of the update, as the server received it.

    Attributes:
        name: e.g. ``"conv1.w"``.
        shape: its shape.
        size: how many numbers.
        norm: ``||g||`` of the clean update.
        observed_norm: ``||g̃||`` of what the server received.
        zeros: share of the received numbers that are exactly 0.
        change: ``||g̃ - g|| / ||g||``, how much the defense moved it (0 without one).
    """

    name: str
    shape: tuple[int, ...]
    size: int
    norm: float
    observed_norm: float
    zeros: float
    change: float


def _named_leaves(tree) -> list[tuple[str, np.ndarray]]:
    out = []
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        name = ".".join(str(getattr(p, "key", getattr(p, "idx", p))) for p in path)
        out.append((name, np.asarray(leaf)))
    return out


def layer_views(scene: Scene) -> list[LayerView]:
    """One :class:`LayerView` per array of the update, in the model's order."""
    views = []
    for (name, clean), (_, seen) in zip(_named_leaves(scene.clean),
                                        _named_leaves(scene.observed), strict=True):
        norm = float(np.linalg.norm(clean))
        change = float(np.linalg.norm(seen - clean)) / norm if norm > 0 else 0.0
        views.append(LayerView(name, tuple(clean.shape), int(clean.size), norm,
                               float(np.linalg.norm(seen)), float(np.mean(seen == 0)),
                               change))
    return views


def _cosine(a, b) -> float:
    a = np.concatenate([np.ravel(x) for x in jax.tree.leaves(a)]).astype(np.float64)
    b = np.concatenate([np.ravel(x) for x in jax.tree.leaves(b)]).astype(np.float64)
    norm = np.linalg.norm(a) * np.linalg.norm(b)
    return float(a @ b / norm) if norm > 0 else 0.0


def _update_word(scene: Scene) -> str:
    return "weight change" if ATTACKS[scene.config.attack].client is not _fedsgd_client \
        else "gradient"


def server_summary(scene: Scene) -> str:
    """An HTML paragraph: how many numbers the server got, and what the defense did."""
    views = layer_views(scene)
    total = sum(v.size for v in views)
    pixels = int(scene.images.size)
    word = _update_word(scene)
    lines = [
        f"The server received <b>{total:,} numbers</b> (the {word} of {len(views)} arrays) "
        f"from a client holding <b>{pixels:,} pixel values</b>: "
        f"{total / pixels:,.0f} numbers per pixel.",
    ]
    if scene.defense is None:
        lines.append("No defense: these are the client's exact numbers.")
    else:
        zeros = sum(v.zeros * v.size for v in views) / total
        change = float(np.sqrt(sum((v.change * v.norm) ** 2 for v in views))
                       / max(np.sqrt(sum(v.norm**2 for v in views)), 1e-30))
        lines.append(
            f"Defense <b>{html.escape(scene.defense.name)}</b>: {zeros:.0%} of the numbers are "
            f"0; the update moved by {change:.2g}× its own size; cosine with the true "
            f"{word} {_cosine(scene.clean, scene.observed):.2f}.")
    truth = ", ".join(scene.class_names[int(k)] for k in scene.labels)
    lines.append(f"The client's label{'s' if len(scene.labels) > 1 else ''}: "
                 f"{html.escape(truth)}.")
    return "<br>".join(lines)

