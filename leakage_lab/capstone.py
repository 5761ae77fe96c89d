"""Lab 10's capstone: design a defense, then break it.

A **defense** here is what a client does to its update before sending it. The learner
writes it as a plain function

    def my_defense(update, key):        # update: a pytree shaped like the model's weights
        ...                             # key: a JAX PRNG key (draw all randomness from it)
        return defended                 # the same tree, same shapes, finite numbers

on the update **in gradient units**: the client's weight change divided by ``-lr``, which
for one local step is exactly its gradient. :func:`evaluate` scores it the way lab 05
scored the library's defenses, in one call:

1. **Price.** FedAvg training (``fl.train``) on the bundled digits, every client's update
   passed through the defense; the test accuracy after the last round.
2. **Leakage.** Held-out clients join at the trained weights, each holding one digit
   (the hardest case for a defense), take one local step and send the defended update.
   The server attacks each one with the series' attacks, labels known (lab 02 reads them
   off the update): the analytic recovery of the first dense layer's input (lab 03),
   Inverting Gradients' cosine + TV (lab 03), and an **adaptive** attack that knows the
   defense (Kerckhoffs: the defense is public code, lab 04):

   * the Bayes-optimal adversary (Balunović et al., ICLR 2022) with the defense's own
     likelihood, when the defense declares one (``log_prob``);
   * else Inverting Gradients with the defense's matched distance, when it declares one;
   * else "through the defense": the attack runs the defense's own code on each
     candidate's gradient and compares the results with what was observed, averaged over
     a few keys (expectation over transformation, Athalye et al., ICML 2018), only on the
     coordinates the observation kept (``defenses.kept_distance(zero_rows=True)``).
3. **Baselines.** Every score stands beside the update-free guesses (blank image, pixel
   mean, label mean: ``metrics.baseline_scores``) from public digits the server holds. A
   defense **holds** when no attack beats the best guess by more than ``margin`` dB.
4. **Guarantee.** ε (δ = 1e-5, ``privacy.epsilon``) when the candidate runs DP-SGD.

The result is a :class:`Scorecard`: it prints as a table, ``card.rows()`` gives plain
dicts, and :func:`leaderboard` prints several cards side by side.
:func:`reference_defenses` are the library's (none, Gaussian noise, DP-SGD, top-k,
Soteria-style pruning, secure aggregation of k): the leaderboard to beat.

A defense may declare more about itself with :func:`declare` (a likelihood for the Bayes
attack, its noise level, a matched distance, DP-SGD settings); a ``defenses.Defense``
(e.g. ``ll.defenses.gaussian(0.01)``) is accepted as it is.

    >>> import jax, jax.numpy as jnp
    >>> def halve(update, key):
    ...     return jax.tree.map(lambda g: 0.5 * g, update)
    >>> check_defense(halve, {"w": jnp.ones(3)}, key=jax.random.key(0))["w"].tolist()
    [0.5, 0.5, 0.5]
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from leakage_lab import (
    analytic,
    config,
    data,
    defenses,
    distances,
    fl,
    metrics,
    models,
    privacy,
    secagg,
    trees,
)
from leakage_lab.bayes import bayes
from leakage_lab.inverting import reconstruct

__all__ = [
    "Candidate",
    "Scorecard",
    "Setup",
    "check_defense",
    "declare",
    "evaluate",
    "leaderboard",
    "plot_leaderboard",
    "public_data",
    "reference_defenses",
    "scramble",
    "setup",
    "show",
    "unsigned_leaf_cosine",
]

DELTA = 1e-5
"""δ of every ε reported here."""

INVERTING_PRIOR_WEIGHT = 1e-4
"""Total-variation weight of Inverting Gradients (Geiping et al.'s default)."""

BAYES_TV_WEIGHT = 2e-4
"""The Bayes attack's TV weight, relative: α = BAYES_TV_WEIGHT · ||g||² / (2 s²) for noise of
standard deviation s, so that the prior weighs against the likelihood as Inverting
Gradients' 1e-4 weighs against the cosine distance (the dashboard's rule, lab 09)."""


# ---------------------------------------------------------------------------------------
# What a candidate defense is.


class Candidate(NamedTuple):
    """A defense as :func:`evaluate` runs it.

    Attributes:
        name: shown in the scorecard.
        apply: ``apply(update, key) -> update`` on the update in gradient units, or
            ``None`` (send the update as it is).
        log_prob: ``log_prob(observed, clean) -> scalar``, the defense's likelihood
            ``log p(observed | clean)``; the adaptive attack is then the Bayes attack.
        noise_std: the standard deviation per coordinate that ``log_prob`` assumes; sets
            the Bayes attack's prior weight (default: ``defenses.POINT_MASS_WIDTH``).
        matched_distance: ``(observed, candidate) -> scalar``, the distance that attacks
            this defense best (used when there is no ``log_prob``).
        dp: DP-SGD settings (``privacy.dp_sgd``) for every local step of every client.
        per_client: ``per_client(model, params, images, labels) -> defenses.Defense``,
            for a defense built from the client's own data (Soteria); replaces ``apply``.
        aggregate: secure aggregation of this many held-out clients: the server sees only
            the sum of their (defended) updates (``secagg.secure_sum``).
    """

    name: str
    apply: Callable | None = None
    log_prob: Callable | None = None
    noise_std: float | None = None
    matched_distance: Callable | None = None
    dp: privacy.DPSGD | None = None
    per_client: Callable | None = None
    aggregate: int = 1


def _name_of(fn, fallback="defense") -> str:
    return getattr(fn, "__name__", None) or getattr(fn, "name", None) or fallback


def declare(apply: Callable | None, *, name: str | None = None, log_prob: Callable | None = None,
            noise_std: float | None = None, matched_distance: Callable | None = None,
            dp: privacy.DPSGD | None = None, aggregate: int = 1) -> Candidate:
    """A learner's defense function with what it declares about itself (see :class:`Candidate`).

    ``apply(update, key) -> update``; ``None`` means "send the update as it is" (useful
    with ``dp=``). Declaring a ``log_prob`` lets the adaptive attack use it: declare the
    true one, since a wrong likelihood only fools your own evaluation.
    """
    if apply is not None and not callable(apply):
        raise TypeError(f"declare: the defense must be a function apply(update, key) -> update, "
                        f"got {type(apply).__name__} {apply!r}.")
    for label, fn in (("log_prob", log_prob), ("matched_distance", matched_distance)):
        if fn is not None and not callable(fn):
            raise TypeError(f"declare: {label} must be a function, got {type(fn).__name__}.")
    if noise_std is not None and not (float(noise_std) > 0 and math.isfinite(noise_std)):
        raise ValueError(f"declare: noise_std must be a finite number > 0, got {noise_std!r}.")
    if dp is not None and not isinstance(dp, privacy.DPSGD):
        raise TypeError(f"declare: dp must be privacy.dp_sgd(clip_norm, noise_multiplier), got "
                        f"{type(dp).__name__}.")
    if isinstance(aggregate, bool) or not isinstance(aggregate, int | np.integer) \
            or aggregate < 1:
        raise ValueError(f"declare: aggregate must be an int >= 1 (clients per secure sum), "
                         f"got {aggregate!r}.")
    return Candidate(name or (_name_of(apply) if apply is not None else "none"), apply,
                     log_prob, None if noise_std is None else float(noise_std),
                     matched_distance, dp, None, int(aggregate))


def _library_log_prob(defense: defenses.Defense, probe) -> tuple[Callable | None, float | None]:
    """The Defense's log_prob when it has a usable one (compressions raise), and its σ."""
    try:
        jax.eval_shape(defense.log_prob, probe, probe)     # traces only, compiles nothing
    except NotImplementedError:
        return None, None
    keywords = getattr(defense.log_prob, "keywords", {}) or {}
    sigma = keywords.get("sigma")
    width = keywords.get("width", defenses.POINT_MASS_WIDTH)
    return defense.log_prob, float(sigma) if sigma else float(width)


@functools.lru_cache(maxsize=64)
def _keyword_key(apply: Callable) -> Callable:
    """``apply(update, *, key)`` (the library's Defense protocol) as ``apply(update, key)``."""

    def positional(update, key):
        return apply(update, key=key)

    positional.__name__ = _name_of(apply)
    return positional


@functools.lru_cache(maxsize=64)
def _jitted(apply: Callable) -> Callable:
    return jax.jit(apply)


def _fast(apply: Callable, probe, key) -> Callable:
    """``apply`` compiled once with ``jax.jit`` when it traces (a defense written with
    jax.numpy), else ``apply`` itself (numpy code, Python branches on values...). Eager JAX
    compiles every operation for every leaf shape; one jit compiles the whole defense."""
    try:
        fast = _jitted(apply)
        fast(probe, key)
        return fast
    except Exception:  # noqa: BLE001 - anything that does not trace runs as written
        return apply


def as_candidate(defense, probe=None) -> Candidate:
    """:class:`Candidate` from a function, a ``defenses.Defense``, a Candidate or ``None``."""
    if defense is None:
        return Candidate("none")
    if isinstance(defense, Candidate):
        return defense
    if isinstance(defense, defenses.Defense):
        log_prob, sigma = (None, None) if probe is None else _library_log_prob(defense, probe)
        matched = defense.matched_distance
        if matched is defenses.kept_distance():
            # On the MLP a black pixel zeroes a whole row of the first layer's gradient,
            # which pruning and top-k almost never do: read such rows as real zeros (lab 05).
            matched = defenses.kept_distance(zero_rows=True)
        return Candidate(defense.name, _keyword_key(defense.apply), log_prob, sigma, matched)
    if isinstance(defense, type):
        raise TypeError(f"evaluate: expected a defense function apply(update, key) -> update, "
                        f"got the class {defense.__name__}; pass a function (or an instance's "
                        "method).")
    if callable(defense):
        return declare(defense)
    raise TypeError(f"evaluate: expected a defense function apply(update, key) -> update "
                    f"(or ll.capstone.declare(...), or an ll.defenses.Defense, or None), got "
                    f"{type(defense).__name__} {defense!r:.80}.")


# ---------------------------------------------------------------------------------------
# Checking what a defense returns.


def _shapes(tree) -> str:
    try:
        described = jax.tree.map(lambda x: list(np.shape(x)), tree)
    except Exception:  # noqa: BLE001 - only for the message
        return type(tree).__name__
    return str(described)


def check_defense(apply: Callable, update, *, key: jax.Array, name: str | None = None):
    """Runs ``apply(update, key)`` once and returns its result, or raises a clear error.

    The result must be a pytree with ``update``'s structure, each leaf an array of the
    same shape, with finite numbers. Each error names what was expected and what came.
    """
    name = name or _name_of(apply)
    try:
        out = apply(update, key)
    except TypeError as err:
        raise TypeError(f"{name}(update, key) raised TypeError: {err}. A defense is called "
                        "with two arguments, the update (a pytree) and a PRNG key.") from err
    if out is None:
        raise TypeError(f"{name}(update, key) returned None: did you forget `return`? Expected a "
                        f"tree shaped like the update, {_shapes(update)}.")
    want, got = jax.tree.structure(update), jax.tree.structure(out)
    if want != got:
        raise ValueError(f"{name}(update, key) returned a tree of another structure: expected "
                         f"{_shapes(update)}, got {_shapes(out)} ({type(out).__name__}). Return "
                         "the update's own tree, e.g. jax.tree.map(f, update).")
    paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(update)]
    for where, a, b in zip(paths, jax.tree.leaves(update), jax.tree.leaves(out), strict=True):
        if not hasattr(b, "shape") or not hasattr(b, "dtype"):
            raise TypeError(f"{name}(update, key): leaf {where} is a {type(b).__name__}, expected "
                            f"an array of shape {list(np.shape(a))}.")
        if tuple(np.shape(b)) != tuple(np.shape(a)):
            raise ValueError(f"{name}(update, key): leaf {where} has shape {list(np.shape(b))}, "
                             f"expected {list(np.shape(a))} (the same as the update's).")
        if not jnp.issubdtype(b.dtype, jnp.floating):
            raise TypeError(f"{name}(update, key): leaf {where} has dtype {b.dtype}, expected a "
                            "float array (the server averages the updates).")
        finite = np.isfinite(np.asarray(b))
        if not finite.all():
            raise ValueError(f"{name}(update, key): leaf {where} holds {int((~finite).sum())} "
                             "NaN or infinite numbers; expected finite ones (a division by "
                             "zero? a norm of an all-zero leaf?).")
    return out


# ---------------------------------------------------------------------------------------
# The experiment's settings.


class Setup(NamedTuple):
    """The scored experiment's size (``setup()`` picks classroom or quick values).

    Attributes:
        image_size: digits are shrunk to ``image_size × image_size`` (14: every 2nd pixel).
        hidden: the MLP's hidden layer widths.
        num_clients, samples_per_client: the training clients (IID split).
        rounds, clients_per_round, lr, epochs, batch_size: FedAvg (``fl.train``).
        held_out: attacked held-out clients, one digit each.
        attack_steps: steps of each optimising attack.
        margin: a defense holds when no attack beats the best update-free guess by more
            than this many dB (PSNR).
        attacks: which attacks to run, a subset of ``("analytic", "inverting", "dlg",
            "adaptive")``.
    """

    image_size: int = 14
    hidden: tuple[int, ...] = (64,)
    num_clients: int = 40
    samples_per_client: int = 50
    rounds: int = 30
    clients_per_round: int = 5
    lr: float = 0.1
    epochs: int = 1
    batch_size: int = 10
    held_out: int = 4
    attack_steps: int = 200
    margin: float = 1.0
    attacks: tuple[str, ...] = ("analytic", "inverting", "adaptive")


ATTACKS = ("analytic", "inverting", "dlg", "adaptive")


def setup(**changes) -> Setup:
    """Classroom settings, or quick ones under ``LEAKAGE_LAB_QUICK=1``; ``changes`` override."""
    base = Setup(rounds=config.pick(30, 4), held_out=config.pick(8, 4),
                 attack_steps=config.pick(200, 60))
    unknown = set(changes) - set(Setup._fields)
    if unknown:
        raise TypeError(f"setup: unknown settings {sorted(unknown)}; the settings are "
                        f"{list(Setup._fields)}.")
    out = base._replace(**changes)
    bad = [a for a in out.attacks if a not in ATTACKS]
    if bad or not out.attacks:
        raise ValueError(f"setup: attacks must be a non-empty subset of {ATTACKS}, got "
                         f"{out.attacks!r}.")
    return out


class _World(NamedTuple):
    model: models.Model
    params: Any
    clients: list
    test: data.Dataset
    public: data.Dataset
    held: data.Dataset


@functools.lru_cache(maxsize=4)
def _world(s: Setup, seed: int) -> _World:
    """The data, the model and its initial weights: the same for every candidate."""
    digits = data.load("digits")
    step = max(1, digits.images.shape[1] // s.image_size)
    small = digits._replace(images=digits.images[:, ::step, ::step])
    train, test = data.train_test_split(small, test_fraction=0.2, key=jax.random.key(seed))
    model = models.mlp(num_classes=small.num_classes,
                       input_shape=tuple(small.images.shape[1:]), hidden=tuple(s.hidden))
    params = jax.jit(model.init)(jax.random.key(seed + 1))
    clients = data.split_iid(train, num_clients=s.num_clients,
                             samples_per_client=s.samples_per_client,
                             key=jax.random.key(seed + 2))
    held = test.subset(np.arange(s.held_out))               # attacked, never trained on
    rest = test.subset(np.arange(s.held_out, len(test.labels)))   # accuracy
    return _World(model, params, clients, rest, train, held)


def public_data(settings: Setup | None = None, *, seed: int = 0) -> data.Dataset:
    """The server's public digits (the training split, shrunk like the experiment's): what
    the update-free guesses are computed from."""
    return _world(setup() if settings is None else settings, int(seed)).public


# ---------------------------------------------------------------------------------------
# The scorecard.


class AttackScore(NamedTuple):
    """One attack's scores over the held-out clients' images.

    Attributes:
        attack: its name, e.g. ``"inverting"`` or ``"adaptive: bayes"``.
        psnr, ssim, rec: mean PSNR (dB), mean SSIM, Rec% (share above 20 dB, a fraction).
        psnrs: PSNR per image.
    """

    attack: str
    psnr: float
    ssim: float
    rec: float
    psnrs: np.ndarray


@dataclass
class Scorecard:
    """What :func:`evaluate` found for one defense.

    Attributes:
        name: the defense.
        accuracy: test accuracy after FedAvg training with it.
        attacks: one :class:`AttackScore` per attack.
        guesses: the update-free guesses, as :class:`AttackScore` (same images).
        epsilon: ε at δ = 1e-5 of the training clients' DP-SGD (``None`` without DP-SGD).
        epsilon_attacked: ε of the attacked client's one DP-SGD release.
        margin: the dB margin of :attr:`holds`.
        notes: what the evaluation had to decide (e.g. which adaptive attack ran).
        reconstructions: the strongest attack's images per held-out image.
        truth: the held-out images.
        seconds: wall time of the evaluation.
        guess_images: the update-free guesses' images, by name.
        labels: the held-out images' labels.
    """

    name: str
    accuracy: float
    attacks: list[AttackScore]
    guesses: list[AttackScore]
    epsilon: float | None = None
    epsilon_attacked: float | None = None
    margin: float = 1.0
    notes: list[str] = field(default_factory=list)
    reconstructions: np.ndarray | None = field(default=None, repr=False)
    truth: np.ndarray | None = field(default=None, repr=False)
    seconds: float = 0.0
    guess_images: dict | None = field(default=None, repr=False)
    labels: np.ndarray | None = field(default=None, repr=False)

    @property
    def strongest(self) -> AttackScore:
        """The attack with the highest mean PSNR."""
        return max(self.attacks, key=lambda a: a.psnr)

    @property
    def best_guess(self) -> AttackScore:
        """The update-free guess with the highest mean PSNR."""
        return max(self.guesses, key=lambda a: a.psnr)

    @property
    def holds(self) -> bool:
        """No attack beats the best update-free guess by more than ``margin`` dB."""
        return self.strongest.psnr <= self.best_guess.psnr + self.margin

    def __getitem__(self, attack: str) -> AttackScore:
        for row in self.attacks + self.guesses:
            if row.attack == attack or row.attack.split(":")[0] == attack:
                return row
        raise KeyError(f"no attack {attack!r}; the card has "
                       f"{[r.attack for r in self.attacks + self.guesses]}")

    def rows(self) -> list[dict]:
        """One plain dict per attack and guess (e.g. for ``pandas.DataFrame(card.rows())``)."""
        out = []
        for r in self.attacks + self.guesses:
            out.append({"defense": self.name, "accuracy": self.accuracy, "attack": r.attack,
                        "update-free": r in self.guesses, "psnr": r.psnr, "ssim": r.ssim,
                        "rec": r.rec, "epsilon": self.epsilon})
        return out

    def __str__(self) -> str:
        eps = "" if self.epsilon is None else (
            f" · ε = {self.epsilon:.3g} (training, δ = {DELTA:g}); "
            f"one attacked release ε = {self.epsilon_attacked:.3g}")
        lines = [f"defense: {self.name} · test accuracy {100 * self.accuracy:.1f}%{eps}",
                 f"  {'attack':<34} {'PSNR dB':>8} {'SSIM':>6} {'Rec%':>6}"]
        for r in self.attacks:
            lines.append(f"  {r.attack:<34} {r.psnr:>8.1f} {r.ssim:>6.3f} {100 * r.rec:>5.0f}%")
        for r in self.guesses:
            lines.append(f"  {r.attack + ' (no update)':<34} {r.psnr:>8.1f} {r.ssim:>6.3f} "
                         f"{100 * r.rec:>5.0f}%")
        s, g = self.strongest, self.best_guess
        verdict = "HOLDS" if self.holds else "LEAKS"
        lines.append(f"  {verdict}: strongest attack ({s.attack}) {s.psnr:.1f} dB vs best "
                     f"update-free guess ({g.attack}) {g.psnr:.1f} dB (margin {self.margin:g} dB)")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)

    __repr__ = __str__


def leaderboard(cards: Mapping[str, Scorecard] | list[Scorecard]) -> str:
    """Several scorecards side by side, one line each: accuracy, ε, each attack's PSNR,
    the best update-free guess, and whether the defense holds."""
    cards = list(cards.values()) if isinstance(cards, Mapping) else list(cards)
    if not cards:
        raise ValueError("leaderboard: no scorecards given.")
    kinds = list(dict.fromkeys(a.attack.split(":")[0] for c in cards for a in c.attacks))
    width = max(12, *(len(c.name) for c in cards))
    head = (f"{'defense':<{width}} {'acc %':>6} {'ε':>7} "
            + " ".join(f"{k:>10}" for k in kinds)
            + f" {'best guess':>10} {'verdict':>7}")
    lines = [head, "PSNR in dB; 'best guess' is the update-free baseline"]
    for c in cards:
        by = {a.attack.split(":")[0]: a.psnr for a in c.attacks}
        eps = "" if c.epsilon is None else f"{c.epsilon:.3g}"
        cells = " ".join(f"{by[k]:>10.1f}" if k in by else f"{'':>10}" for k in kinds)
        lines.append(f"{c.name:<{width}} {100 * c.accuracy:>6.1f} {eps:>7} {cells} "
                     f"{c.best_guess.psnr:>10.1f} {'holds' if c.holds else 'LEAKS':>7}")
    return "\n".join(lines)


def plot_leaderboard(cards: Mapping[str, Scorecard], highlight=()) -> None:
    """Accuracy against the strongest attack's PSNR, one point per card, with the best
    update-free guess and the 20 dB Rec% threshold as vertical lines (top left is best)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8.5, 4.6), layout="constrained")
    for i, (name, card) in enumerate(cards.items()):
        star = name in highlight
        ax.scatter(card.strongest.psnr, 100 * card.accuracy, s=160 if star else 60,
                   marker="*" if star else "o", color=f"C{i % 10}", label=name)
    best = max(card.best_guess.psnr for card in cards.values())
    ax.axvline(best, color="C3", linestyle="--",
               label=f"best update-free guess ({best:.0f} dB)")
    ax.axvline(20, color="0.5", linestyle=":", label="Rec% threshold (20 dB)")
    ax.set_xlabel("strongest attack's mean PSNR on held-out clients (dB)  ← more private")
    ax.set_ylabel("test accuracy after FedAvg (%)")
    ax.set_title("each defense's price and leakage (top left is best)", fontsize=11)
    fig.legend(fontsize=8, loc="outside right upper")
    plt.show()


def show(card: Scorecard, title: str | None = None) -> None:
    """The held-out digits, the strongest attack's reconstructions and the best
    update-free guess, one column per digit, PSNR under each reconstruction."""
    import matplotlib.pyplot as plt

    guess = card.best_guess
    rows = [("truth", card.truth, None),
            (card.strongest.attack, card.reconstructions, card.strongest.psnrs),
            (f"{guess.attack} guess\n(no update)", card.guess_images[guess.attack], guess.psnrs)]
    n = len(card.truth)
    fig, axes = plt.subplots(3, n, figsize=(1.3 * n + 1.4, 4.8), squeeze=False,
                             layout="constrained")
    for r, (label, images, psnrs) in enumerate(rows):
        for i in range(n):
            ax = axes[r, i]
            ax.imshow(np.clip(np.asarray(images[i])[..., 0], 0, 1), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if psnrs is not None:
                ax.set_xlabel(f"{psnrs[i]:.0f} dB", fontsize=8)
            if i == 0:
                ax.set_ylabel(label, fontsize=8)
    fig.suptitle(title or f"{card.name}: strongest attack {card.strongest.psnr:.1f} dB, best "
                 f"update-free guess {guess.psnr:.1f} dB", fontsize=10)
    plt.show()


# ---------------------------------------------------------------------------------------
# Training with the defense.


class _InGradientUnits:
    """``fl.train``'s defense hook: the update θc − θs, in gradient units for the learner's
    function (divided by −lr), and back. Checks every result."""

    def __init__(self, apply: Callable, lr: float, name: str):
        self.apply_fn, self.lr, self.name = apply, float(lr), name

    def apply(self, update, *, key):
        grads = trees.tree_scale(update, -1.0 / self.lr)
        sent = check_defense(self.apply_fn, grads, key=key, name=self.name)
        return trees.tree_scale(sent, -self.lr)


def _train(c: Candidate, w: _World, s: Setup, key) -> tuple[Any, float, float | None]:
    if c.per_client is not None:
        lr = s.lr

        def hook(model, params, images, labels):
            inner = c.per_client(model, params, images, labels)
            return _InGradientUnits(lambda u, k: inner.apply(u, key=k), lr, c.name)
    else:
        hook = None if c.apply is None else _InGradientUnits(c.apply, s.lr, c.name)
    run = fl.train(w.model, w.params, w.clients, rounds=s.rounds,
                   clients_per_round=s.clients_per_round, lr=s.lr, epochs=s.epochs,
                   batch_size=s.batch_size, key=key, dp=c.dp, delta=DELTA, defense=hook)
    acc = fl.accuracy(w.model, run.params, w.test.images, w.test.labels)
    return run.params, acc, run.epsilon


# ---------------------------------------------------------------------------------------
# What the server sees from the held-out clients.


def _observe(c: Candidate, w: _World, s: Setup, params, key) -> list[tuple[Any, np.ndarray]]:
    """Per group of ``c.aggregate`` held-out clients: (what the server sees in gradient
    units, the indices of the group's images)."""
    sent = []
    for i in range(len(w.held.labels)):
        x, y = w.held.images[i:i + 1], w.held.labels[i:i + 1]
        k = jax.random.fold_in(key, i)
        # One local SGD step on one image: θc − θs = −lr · g, so in gradient units the
        # client's update is its gradient (DP-SGD's clipped and noised one under dp).
        if c.dp is None:
            grads = fl.gradient(w.model, params, x, y)
        else:
            grads = privacy.dp_gradient(w.model, params, x, y, c.dp, key=k)
        if c.per_client is not None:
            inner = c.per_client(w.model, params, x, y)
            grads = check_defense(lambda u, kk, d=inner: d.apply(u, key=kk), grads,
                                  key=jax.random.fold_in(k, 2), name=c.name)
        elif c.apply is not None:
            grads = check_defense(c.apply, grads, key=jax.random.fold_in(k, 2), name=c.name)
        sent.append(grads)
    groups = []
    n = len(sent)
    for start in range(0, n - c.aggregate + 1, c.aggregate):
        members = list(range(start, start + c.aggregate))
        if c.aggregate == 1:
            seen = sent[start]
        else:
            total = secagg.secure_sum([sent[j] for j in members], threshold=c.aggregate // 2 + 1,
                                      scale=2**24, seed=start).total
            seen = trees.tree_scale(total, 1.0 / c.aggregate)   # the batch gradient of the group
        groups.append((seen, np.asarray(members)))
    return groups


# ---------------------------------------------------------------------------------------
# The attacks.


def _analytic(w: _World, params, observed, labels, s, key, c, notes):
    layer = list(params)[0]
    try:
        x = analytic.analytic_fc(observed[layer]["w"], observed[layer]["b"])
    except ValueError as err:                      # e.g. all-zero bias gradient
        notes.append(f"analytic: {err}")
        x = np.zeros(math.prod(w.model.input_shape))
    image = np.clip(x.reshape(w.model.input_shape), 0.0, 1.0)
    return np.repeat(image[None], len(labels), axis=0)


def _inverting(w, params, observed, labels, s, key, c, notes):
    res = reconstruct(w.model, params, observed, labels=labels, steps=s.attack_steps, key=key,
                      prior_weight=INVERTING_PRIOR_WEIGHT)
    return np.asarray(res.images)


def _dlg(w, params, observed, labels, s, key, c, notes):
    from leakage_lab.dlg import dlg

    res = dlg(w.model, params, observed, shape=(len(labels), *w.model.input_shape),
              steps=s.attack_steps, key=key)
    return np.asarray(res.images)


@functools.lru_cache(maxsize=16)
def _through(apply: Callable, num_keys: int) -> Callable:
    """EOT distance: ``mean_j kept_rows_cosine(g, defense(g', k_j))`` over fixed keys."""
    kept = defenses.kept_distance(distances.cosine, zero_rows=True)
    keys = [jax.random.key(10_000 + j) for j in range(num_keys)]

    def through_defense(observed, candidate):
        return sum(kept(observed, apply(candidate, k)) for k in keys) / num_keys

    return through_defense


def _traceable(apply: Callable, observed) -> bool:
    try:
        jax.eval_shape(lambda u: apply(u, jax.random.key(0)), observed)
        jax.eval_shape(jax.grad(lambda u: trees.tree_sum(jax.tree.map(
            jnp.sum, apply(u, jax.random.key(0))))), observed)
        return True
    except Exception:  # noqa: BLE001 - any failure to trace means: not through the defense
        return False


def _adaptive_kind(c: Candidate, observed) -> str:
    if c.log_prob is not None:
        return "bayes"
    if c.matched_distance is not None:
        return "matched"
    if c.apply is not None and _traceable(c.apply, observed):
        return "through"
    return "kept"


def _adaptive(w, params, observed, labels, s, key, c, notes):
    kind = _adaptive_kind(c, observed)
    if kind == "bayes":
        squared = max(float(trees.tree_vdot(observed, observed)), 1e-30)
        sd = c.noise_std or defenses.POINT_MASS_WIDTH
        prior_weight = BAYES_TV_WEIGHT * squared / (2 * sd**2)
        conditional = defenses.Defense(apply=c.apply, log_prob=c.log_prob, name=c.name)
        res = bayes(w.model, params, observed, defense=conditional, labels=labels,
                    prior_weight=prior_weight, steps=s.attack_steps, key=key)
    else:
        distance = {"matched": c.matched_distance,
                    "through": _through(c.apply, 2) if kind == "through" else None,
                    "kept": defenses.kept_distance(distances.cosine, zero_rows=True)}[kind]
        res = reconstruct(w.model, params, observed, labels=labels, distance=distance,
                          steps=s.attack_steps, key=key, prior_weight=INVERTING_PRIOR_WEIGHT)
    return np.asarray(res.images)


_RUNNERS = {"analytic": _analytic, "inverting": _inverting, "dlg": _dlg, "adaptive": _adaptive}

_ADAPTIVE_LABEL = {"bayes": "adaptive: Bayes, its log_prob",
                   "matched": "adaptive: its matched distance",
                   "through": "adaptive: through the defense",
                   "kept": "adaptive: kept-rows cosine"}


def _score_rows(name: str, recon: np.ndarray, truth: np.ndarray) -> AttackScore:
    p = np.atleast_1d(metrics.psnr(recon, truth))
    q = np.atleast_1d(metrics.ssim(recon, truth))
    return AttackScore(name, float(p.mean()), float(q.mean()), float(np.mean(p > 20.0)), p)


# ---------------------------------------------------------------------------------------
# The one call.


def _check_key(key, who):
    if not (isinstance(key, jax.Array) and jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)):
        raise TypeError(f"{who}: key must be a PRNG key such as jax.random.key(0), got "
                        f"{type(key).__name__} {key!r:.60}.")


def evaluate(defense, *, key: jax.Array, settings: Setup | None = None, name: str | None = None,
             seed: int = 0, extra_distances: Mapping[str, Callable] | None = None) -> Scorecard:
    """Scores a defense: accuracy after FedAvg with it, and leakage to the series' attacks.

    Args:
        defense: ``apply(update, key) -> update`` (the update in gradient units, a pytree
            shaped like the MLP's weights), or :func:`declare` of one (with a likelihood,
            noise level, matched distance, DP-SGD or secure aggregation), or a
            ``defenses.Defense`` (e.g. ``ll.defenses.gaussian(0.01)``), or ``None``.
        key: PRNG key: training (``fold_in(key, 0)``), the held-out clients' steps and
            defense (``fold_in(key, 1)``) and the attacks (``fold_in(key, 2)``). The same
            key gives the same scorecard.
        settings: the experiment's size (:func:`setup`; default ``setup()``).
        name: the defense's name on the card (default: the function's name).
        seed: fixes the data split, the clients and the initial weights (the same for
            every defense, so cards compare).
        extra_distances: more attacks, ``{name: distance(observed, candidate)}``: each
            runs Inverting Gradients (TV prior, signed Adam) with that distance and gets a
            row ``"yours: name"`` (lab 10, part two: your attack on someone's defense).

    Returns:
        A :class:`Scorecard`.

    Raises:
        TypeError, ValueError: the defense is not a function of ``(update, key)``, or it
            returned another tree, other shapes, non-float leaves or NaN / inf (the
            message names what was expected and what came).
    """
    start = time.perf_counter()
    _check_key(key, "evaluate")
    s = setup() if settings is None else settings
    if not isinstance(s, Setup):
        raise TypeError(f"evaluate: settings must be ll.capstone.setup(...), got "
                        f"{type(s).__name__}.")
    w = _world(s, int(seed))
    probe_key = jax.random.fold_in(key, 3)
    probe = fl.gradient(w.model, w.params, w.held.images[:1], w.held.labels[:1])
    c = as_candidate(defense, probe)
    if name is not None:
        c = c._replace(name=str(name))
    if c.aggregate > s.held_out:
        raise ValueError(f"evaluate: secure aggregation of {c.aggregate} clients needs at least "
                         f"{c.aggregate} held-out clients, the settings have {s.held_out}.")
    if c.apply is not None:                 # fail early, before any training
        c = c._replace(apply=_fast(c.apply, probe, probe_key))
        check_defense(c.apply, probe, key=probe_key, name=c.name)
    params, acc, eps = _train(c, w, s, jax.random.fold_in(key, 0))
    groups = _observe(c, w, s, params, jax.random.fold_in(key, 1))
    used = np.concatenate([members for _, members in groups])
    truth = np.asarray(w.held.images)[used]
    labels_all = np.asarray(w.held.labels)[used]
    notes: list[str] = []
    if c.aggregate > 1:
        notes.append(f"secure aggregation: the server saw only the mean of {c.aggregate} "
                     "clients' updates; training used the plain average (secure aggregation "
                     "changes what the server sees, not the sum).")
    extra = dict(extra_distances or {})
    for label, fn in extra.items():
        if not callable(fn):
            raise TypeError(f"evaluate: extra_distances[{label!r}] must be a function "
                            f"distance(observed, candidate) -> scalar, got {type(fn).__name__}.")
    results: dict[str, np.ndarray] = {}
    attack_key = jax.random.fold_in(key, 2)
    for a, attack in enumerate([*s.attacks, *(f"yours: {k}" for k in extra)]):
        label = attack
        recon = []
        for g, (observed, members) in enumerate(groups):
            y = jnp.asarray(np.asarray(w.held.labels)[members])
            k = jax.random.fold_in(attack_key, 100 * a + g)
            if attack.startswith("yours: "):
                res = reconstruct(w.model, params, observed, labels=y, steps=s.attack_steps,
                                  key=k, distance=extra[attack[len("yours: "):]],
                                  prior_weight=INVERTING_PRIOR_WEIGHT)
                images = np.asarray(res.images)
            else:
                if attack == "adaptive":
                    label = _ADAPTIVE_LABEL[_adaptive_kind(c, observed)]
                images = _RUNNERS[attack](w, params, observed, y, s, k, c, notes)
            truth_g = np.asarray(w.held.images)[members]
            if len(members) > 1:
                images = images[metrics.match(images, truth_g)]
            recon.append(images)
        results[label] = np.concatenate(recon)
    scores = [_score_rows(n, r, truth) for n, r in results.items()]
    guess_images = metrics.guesses(truth, labels_all, w.public.images, w.public.labels)
    guesses = [_score_rows(n, g, truth) for n, g in guess_images.items()]
    strongest = max(scores, key=lambda r: r.psnr).attack
    eps_attacked = None
    if c.dp is not None:
        eps_attacked = privacy.epsilon(c.dp, sampling_rate=1.0, steps=1, delta=DELTA)
    return Scorecard(c.name, float(acc), scores, guesses, eps, eps_attacked, s.margin, notes,
                     results[strongest], truth, time.perf_counter() - start, guess_images,
                     labels_all)


# ---------------------------------------------------------------------------------------
# The library's defenses: the leaderboard to beat.


def _soteria(fraction: float) -> Callable:
    def make(model, params, images, labels):
        return defenses.soteria(model, params, images, fraction=fraction)

    return make


def reference_defenses() -> dict[str, Candidate]:
    """The library's defenses as candidates, each with what an adaptive attacker uses.

    ============================  ==========================================================
    none                          the update as it is
    gaussian(σ=0.01)              ``defenses.gaussian``; adaptive: Bayes with its likelihood
    gaussian(σ=0.1)               the same, ten times the noise
    DP-SGD(C=1, σ=1)              ``privacy.dp_sgd`` at every local step; adaptive: Bayes
                                  with a Gaussian of σC on the (clipped) gradient
    top-k(10%)                    ``compression.top_k``; adaptive: its matched distance
    soteria(80%)                  ``defenses.soteria``; adaptive: the break (layer left out)
    secure aggregation (k=4)      ``secagg.secure_sum`` of 4 held-out clients
    ============================  ==========================================================
    """
    from leakage_lab import compression

    dp = privacy.dp_sgd(1.0, 1.0)
    top = compression.top_k(0.1)
    candidates = {
        "none": Candidate("none"),
        "gaussian(σ=0.01)": as_candidate(defenses.gaussian(0.01), {"p": jnp.zeros(1)}),
        "gaussian(σ=0.1)": as_candidate(defenses.gaussian(0.1), {"p": jnp.zeros(1)}),
        "DP-SGD(C=1, σ=1)": Candidate(
            "DP-SGD(C=1, σ=1)", None,
            functools.partial(_clipped_gaussian_log_prob, clip=dp.clip_norm,
                              sigma=dp.clip_norm * dp.noise_multiplier),
            dp.clip_norm * dp.noise_multiplier, None, dp),
        "top-k(10%)": as_candidate(top),
        "soteria(80%)": Candidate("soteria(80%)", per_client=_soteria(0.8),
                                  matched_distance=defenses.ignore_layers(
                                      distances.cosine, ("fc2",))),
        "secure aggregation (k=4)": Candidate("secure aggregation (k=4)", aggregate=4),
    }
    return {name: c._replace(name=name) for name, c in candidates.items()}


def _clipped_gaussian_log_prob(observed, clean, *, clip, sigma):
    """DP-SGD's likelihood for one example, one step: ``g = clip(g', C) + N(0, σ²C²)``.

    ``log p(g | g') = sum_i log N(g_i; clip(g')_i, (σC)²)`` with ``clip(g') = g' ·
    min(1, C / ||g'||)`` over the whole tree.
    """
    norm = jnp.sqrt(trees.tree_vdot(clean, clean))
    scale = jnp.minimum(1.0, clip / jnp.maximum(norm, 1e-12))
    total = jnp.zeros((), jnp.float32)
    for obs, cln in zip(jax.tree.leaves(observed), jax.tree.leaves(clean), strict=True):
        total = total + jnp.sum(-((obs - scale * cln) ** 2) / (2 * sigma**2) - jnp.log(sigma)
                                - 0.5 * jnp.log(2 * jnp.pi))
    return total


# ---------------------------------------------------------------------------------------
# Part two: a classmate's defense to break, and one way to break it.


def scramble(update, key):
    """A heuristic defense to break (lab 10, part two): every leaf is multiplied by its own
    random scale, log-uniform in [0.03, 1].

        g_l  →  c_l · g_l,    log10 c_l ~ U(−1.5, 0),   one per leaf l

    It changes every number the server sees and hurts attacks that compare the whole update
    at once (cosine over all leaves, L2) and the analytic recovery (the first layer's weight
    and bias are scaled differently). It only shrinks, so training still converges (a
    version that also flipped signs at random stopped FedAvg from learning at all). It keeps
    each leaf's *direction*, which is what :func:`unsigned_leaf_cosine` reads.
    """
    leaves, treedef, keys = trees.leaves_with_keys(update, key)
    out = []
    for leaf, k in zip(leaves, keys, strict=True):
        scale = 10.0 ** jax.random.uniform(k, (), minval=-1.5, maxval=0.0)
        out.append((scale * leaf).astype(leaf.dtype))
    return jax.tree.unflatten(treedef, out)


def unsigned_leaf_cosine(observed, candidate, eps: float = 1e-12) -> jax.Array:
    """``D(g, g') = sum_l (1 − cos²(g_l, g'_l))``: each leaf's direction, sign and scale
    ignored. Zero exactly when every candidate leaf is a multiple of the observed one, so
    :func:`scramble` leaves it unchanged."""
    total = jnp.zeros((), jnp.float32)
    for a, b in zip(jax.tree.leaves(observed), jax.tree.leaves(candidate), strict=True):
        dot = jnp.sum(a * b)
        cos2 = dot**2 / (jnp.sum(a * a) * jnp.sum(b * b) + eps)
        total = total + (1.0 - cos2)
    return total
