"""A classroom dashboard: pick an image, a model, a defense and an attack, and watch it leak.

One screen for a lecturer with a projector. The class chooses a bundled image, the
network the client trains, the attack the curious server runs and the defense the
client applies to its update; the Run button then animates the reconstruction
(:class:`leakage_lab.widgets.Live`) beside a panel showing what the server actually
received, layer by layer.

Everything the dashboard does is a plain function of a :class:`Config` and a key, so it
runs (and is tested) without a browser::

    import jax
    from leakage_lab import dashboard

    config = dashboard.Config(dataset="digits", model="convnet", attack="inverting",
                              defense="gaussian", strength=0.01, steps=300)
    out = dashboard.run(config, key=jax.random.key(0))
    out.psnr, out.result.images           # dB; the reconstruction [N, H, W, C]

and :class:`Dashboard` only wires widgets to :func:`observe` and :func:`attack`. In a
notebook, ``dashboard.Dashboard()`` shows the screen; under Voilà
(``voila notebooks/09_classroom_dashboard.ipynb``) the code stays hidden.

The choices are registries of small functions, so a new attack, model or defense is one
entry: :data:`ATTACKS` maps a name to an :class:`Attack` (how the client computes its
update, and how the server attacks it), :data:`MODELS` to a network builder and
:data:`DEFENSES` to a :class:`DefenseChoice` (a strength and the defense it makes).
The attacks are the library's: DLG (Zhu et al., NeurIPS 2019), Inverting Gradients
(Geiping et al., NeurIPS 2020), the Bayes-optimal adversary (Balunović et al., ICLR
2022) and the FedAvg attack (Dimitrov et al., TMLR 2022).
"""

from __future__ import annotations

import functools
import html
import io
import math
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import numpy as np
from matplotlib.figure import Figure

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
    "MODELS",
    "Attack",
    "Config",
    "Dashboard",
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
    "server_figure",
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
    which field is wrong, what it may be and what came."""
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


@functools.cache
def _order(dataset: str) -> np.ndarray:
    return np.random.default_rng(0).permutation(len(_dataset(dataset)))


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


def _as_matrix(leaf: np.ndarray) -> np.ndarray:
    """A 2-D view of one array: fan-in down, fan-out across (a bias is one row)."""
    leaf = np.asarray(leaf)
    if leaf.ndim <= 1:
        return leaf.reshape(1, -1)
    return leaf.reshape(-1, leaf.shape[-1])


def server_figure(scene: Scene) -> Figure:
    """Pictures of the update, one column per weight array (biases are in the table).

    Top row: what the client computed (only when a defense changed it); bottom row:
    what the server received, on the same colour scale (red positive, blue negative).
    For an MLP with one image, a last panel divides the first layer's weight gradient
    by its bias gradient: the image comes straight out (``attacks.analytic_fc``).
    """
    weights = [(n, c, o) for (n, c), (_, o) in zip(_named_leaves(scene.clean),
                                                   _named_leaves(scene.observed), strict=True)
               if n.endswith(".w") or n == "w"]
    rows = [("the server saw", 1)]
    if scene.defense is not None:
        rows = [("the client computed", 0), ("the server saw", 1)]
    leak = None
    first = next(iter(scene.observed))
    observed_first = scene.observed[first] if isinstance(scene.observed, dict) else None
    if (scene.config.model == "mlp" and len(scene.images) == 1 and observed_first is not None
            and _update_word(scene) == "gradient"):
        image = attacks.analytic_fc(observed_first["w"], observed_first["b"])
        if np.all(np.isfinite(image)):
            leak = np.clip(np.asarray(image).reshape(scene.images.shape[1:]), 0.0, 1.0)
    columns = len(weights) + (leak is not None)
    fig = Figure(figsize=(2.6 * columns, 2.4 * len(rows) + 0.4))
    axes = fig.subplots(len(rows), columns, squeeze=False)
    for c, (name, clean, seen) in enumerate(weights):
        scale = float(np.percentile(np.abs(clean), 99)) or 1.0
        for r, (title, which) in enumerate(rows):
            ax = axes[r, c]
            ax.imshow(_as_matrix((clean, seen)[which]), cmap="RdBu_r", vmin=-scale,
                      vmax=scale, aspect="auto", interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"{name}\n{'×'.join(map(str, clean.shape))}", fontsize=11)
            if c == 0:
                ax.set_ylabel(title, fontsize=11)
    if leak is not None:
        for r in range(len(rows)):
            axes[r, -1].set_axis_off()
        ax = axes[-1, -1]
        ax.imshow(leak[..., 0] if leak.shape[-1] == 1 else leak, cmap="gray", vmin=0, vmax=1,
                  interpolation="nearest")
        ax.set_title("fc1.w grad ÷ fc1.b grad", fontsize=11)
    fig.tight_layout()
    return fig


def _figure_png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80)
    return buffer.getvalue()


# ---------------------------------------------------------------------------------------
# The widget.

_CSS = """<style>
.leakage-lab-dashboard .widget-label, .leakage-lab-dashboard select,
.leakage-lab-dashboard input, .leakage-lab-dashboard button,
.leakage-lab-dashboard .widget-readout, .leakage-lab-dashboard .widget-checkbox label,
.leakage-lab-dashboard .jupyter-widgets label {
  font-size: 20px !important; line-height: 1.4 !important; }
.leakage-lab-dashboard select, .leakage-lab-dashboard input[type="number"] {
  height: 36px !important; }
.leakage-lab-dashboard .widget-inline-hbox { min-height: 40px; }
.leakage-lab-dashboard .leakage-lab-run button, .leakage-lab-dashboard button.leakage-lab-run {
  font-size: 24px !important; height: 52px !important; }
</style>"""

_FONT = "font-size: 20px; line-height: 1.4;"


def _html(text: str, size: int = 20, bold: bool = False) -> str:
    weight = " font-weight: bold;" if bold else ""
    return f'<div style="font-size: {size}px; line-height: 1.4;{weight}">{text}</div>'


class Dashboard:
    """The classroom screen: controls on the left, the live reconstruction on the right,
    and below them what the server saw. Display it by ending a cell with it.

    Args:
        config: the starting configuration (default: a digit, the ReLU convnet,
            Inverting Gradients, no defense).
        seed: the starting seed (weights, defense noise, attack start).

    Attributes:
        widget: the ipywidgets container.
        live: the current :class:`~leakage_lab.widgets.Live` view (a new one per run).
        last: the last :class:`Run`, or ``None``.
        controls: the input widgets by :class:`Config` field name, plus ``"seed"``.
        run_button: the Run button (``run_button.click()`` runs it in code too).
    """

    def __init__(self, config: Config | None = None, *, seed: int = 0):
        import ipywidgets as w

        config = check_config(config if config is not None else Config())
        self.last: Run | None = None
        # Each control gets a Layout of its own: the strength knobs are hidden through
        # their layout's display, and a shared Layout would hide every control with it.
        def wide(display=None):
            return w.Layout(width="440px", display=display)

        style = {"description_width": "120px"}

        def dropdown(registry, value, description, label=lambda k, v: v):
            return w.Dropdown(options=[(label(k, v), k) for k, v in registry.items()],
                              value=value, description=description, style=style, layout=wide())

        self.controls = {
            "dataset": dropdown(DATASETS, config.dataset, "image set", lambda k, v: k),
            "image": w.IntSlider(value=config.image, min=0,
                                 max=len(_dataset(config.dataset)) - 1,
                                 description="image #", style=style, layout=wide()),
            "batch": w.IntSlider(value=config.batch, min=1, max=4, description="images",
                                 style=style, layout=wide()),
            "model": dropdown(MODELS, config.model, "model", lambda k, v: v.label),
            "attack": dropdown(ATTACKS, config.attack, "attack", lambda k, v: v.label),
            "defense": dropdown(DEFENSES, config.defense, "defense", lambda k, v: v.label),
            "strength": w.FloatSlider(value=0.0, min=0.0, max=1.0, step=0.01,
                                      readout_format=".3g", description="strength",
                                      style=style, layout=wide()),
            "noise": w.FloatLogSlider(value=1e-3, base=10, min=-4, max=-1, step=0.1,
                                      readout_format=".1e", description="σ", style=style,
                                      layout=wide("none")),
            "steps": w.IntSlider(value=config.steps, min=10, max=2000, step=10,
                                 description="steps", style=style, layout=wide()),
            "adaptive": w.Checkbox(value=config.adaptive, indent=False,
                                   description="attacker adapts to the defense",
                                   layout=wide()),
            "seed": w.IntText(value=int(seed), description="seed", style=style,
                              layout=w.Layout(width="240px")),
        }
        c = self.controls
        for name, control in c.items():  # so a page (and the browser test) can find each
            control.add_class(f"leakage-lab-control-{name}")
        self._preview = w.Image(format="png")
        self._preview_caption = w.HTML()
        self._hint = w.HTML()
        self.run_button = w.Button(description="Run", button_style="primary",
                                   icon="play", layout=w.Layout(width="440px", height="52px"))
        self.run_button.add_class("leakage-lab-run")
        self.status = w.HTML(_html("Choose, then press <b>Run</b>."))
        self._summary = w.HTML()
        self._server_image = w.Image(format="png")
        self._live_box = w.VBox()
        self.status.add_class("leakage-lab-status")

        self._set_strength_knob(config.defense, config.strength)
        c["dataset"].observe(self._on_dataset, names="value")
        for name in ("image", "batch"):
            c[name].observe(lambda _: self._show_preview(), names="value")
        for name in ("model", "attack"):
            c[name].observe(lambda _: self._show_hint(), names="value")
        c["attack"].observe(self._on_attack, names="value")
        c["defense"].observe(lambda change: self._set_strength_knob(change["new"], None),
                             names="value")
        self.run_button.on_click(self._on_run)

        left = w.VBox([
            w.HTML(_html("The client", 22, True)),
            c["dataset"], c["image"], c["batch"],
            w.HBox([self._preview, self._preview_caption]),
            c["model"],
            w.HTML(_html("The client's defense", 22, True)),
            c["defense"], c["strength"], c["noise"],
            w.HTML(_html("The curious server", 22, True)),
            c["attack"], c["steps"], c["adaptive"], c["seed"], self._hint,
            self.run_button, self.status,
        ], layout=w.Layout(width="470px", padding="8px"))
        right = w.VBox([w.HTML(_html("What the server rebuilt", 22, True)), self._live_box],
                       layout=w.Layout(padding="8px"))
        server = w.VBox([w.HTML(_html("What the server saw", 22, True)), self._summary,
                         self._server_image], layout=w.Layout(padding="8px"))
        self.widget = w.VBox([
            w.HTML(_CSS),
            w.HTML(_html("Gradient leakage, live", 30, True)),
            w.HBox([left, right]),
            server,
        ])
        self.widget.add_class("leakage-lab-dashboard")
        self._show_preview()
        self._show_hint()
        self._new_live()

    # -- reading and setting the controls ----------------------------------------------

    def config(self) -> Config:
        """The configuration the controls show now."""
        c = self.controls
        choice = DEFENSES[c["defense"].value]
        slider = c["noise"] if choice.log else c["strength"]
        return Config(dataset=c["dataset"].value, image=int(c["image"].value),
                      batch=int(c["batch"].value), model=c["model"].value,
                      attack=c["attack"].value, defense=c["defense"].value,
                      strength=float(slider.value) if choice.knob else None,
                      steps=int(c["steps"].value), adaptive=bool(c["adaptive"].value))

    def set_config(self, config: Config) -> None:
        """Moves the controls to ``config`` (checked first)."""
        config = check_config(config)
        c = self.controls
        c["dataset"].value = config.dataset
        c["batch"].value = config.batch
        c["image"].value = config.image
        for name in ("model", "attack", "defense", "steps", "adaptive"):
            c[name].value = getattr(config, name)
        self._set_strength_knob(config.defense, config.strength)

    def _set_strength_knob(self, defense: str, value: float | None) -> None:
        choice = DEFENSES[defense]
        linear, log = self.controls["strength"], self.controls["noise"]
        linear.layout.display = None if choice.knob and not choice.log else "none"
        log.layout.display = None if choice.knob and choice.log else "none"
        value = choice.default if value is None else value
        if choice.knob is None:
            linear.description, linear.disabled = "(no knob)", True
        elif choice.log:
            log.min, log.max = math.log10(choice.low), math.log10(choice.high)
            log.step, log.value, log.description = choice.step, value, choice.knob
        else:
            # Widen the range first so that no intermediate state has min > max.
            linear.max = max(linear.max, choice.high)
            linear.min = min(linear.min, choice.low)
            linear.step = choice.step
            linear.min, linear.max = choice.low, choice.high
            linear.value = value
            linear.description, linear.disabled = choice.knob, False

    def _on_dataset(self, change) -> None:
        name = change["new"]
        self.controls["image"].max = len(_dataset(name)) - 1
        self.controls["model"].value = SUGGESTED_MODEL[name]
        self._show_preview()

    def _on_attack(self, change) -> None:
        self.controls["steps"].value = ATTACKS[change["new"]].default_steps

    def _show_hint(self) -> None:
        c = self.controls
        text = (f"<b>{html.escape(ATTACKS[c['attack'].value].label)}:</b> "
                f"{html.escape(ATTACKS[c['attack'].value].about)}<br>"
                f"<b>{html.escape(MODELS[c['model'].value].label)}:</b> "
                f"{html.escape(MODELS[c['model'].value].about)}")
        self._hint.value = f'<div style="font-size: 16px; line-height: 1.3;">{text}</div>'

    def _show_preview(self) -> None:
        from leakage_lab.widgets import to_png

        c = self.controls
        ds = _dataset(c["dataset"].value)
        indices = self._indices()
        images = ds.images[indices]
        self._preview.value = to_png(images, scale=max(1, 84 // images.shape[1]), max_columns=4)
        names = ", ".join(ds.class_names[int(k)] for k in ds.labels[indices])
        self._preview_caption.value = _html(f"&nbsp;label: {html.escape(names)}", 18)

    def _indices(self) -> np.ndarray:
        """The client's images on screen now (clamped to the data set while choosing)."""
        c = self.controls
        order = _order(c["dataset"].value)
        batch = int(c["batch"].value)
        start = min(int(c["image"].value), len(order) - batch)
        return order[start:start + batch]

    def _new_live(self, truth=None):
        from leakage_lab.widgets import Live

        if truth is None:
            truth = _dataset(self.controls["dataset"].value).images[self._indices()]
        scale = max(2, 224 // (truth.shape[1] * min(len(truth), 2)))
        self.live = Live(truth, scale=scale, max_columns=2)
        self._live_box.children = (self.live.widget,)
        return self.live

    # -- running -----------------------------------------------------------------------

    def run(self) -> Run:
        """Runs the configuration on screen, animating the reconstruction; returns the Run.

        Errors propagate (the Run button's handler shows them in the status line).
        """
        config = check_config(self.config())
        key = jax.random.key(int(self.controls["seed"].value))
        self.status.value = _html("Preparing the client's update…")
        scene = observe(config, key=key)
        self._summary.value = _html(server_summary(scene), 18)
        self._server_image.value = _figure_png(server_figure(scene))
        live = self._new_live(scene.images)
        self.status.value = _html(
            "Attacking… (the first run of a setting compiles for a few seconds)")
        out = attack(scene, key=key, callback=live.callback)
        self.last = out
        self.status.value = _html(
            f"<b>PSNR {out.psnr:.1f} dB</b> after {out.result.steps} steps, "
            f"{out.seconds:.1f} s.<br><i>{html.escape(out.result.message)}</i>", 18)
        return out

    def _on_run(self, _button) -> None:
        self.run_button.disabled = True
        self.run_button.description = "Running…"
        try:
            self.run()
        except Exception as error:  # noqa: BLE001 - shown to the class, not raised
            self.status.value = (f'<div style="{_FONT} color: #b00020;"><b>Could not run:</b> '
                                 f"{html.escape(str(error))}</div>")
        finally:
            self.run_button.disabled = False
            self.run_button.description = "Run"

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)
