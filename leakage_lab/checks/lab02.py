"""Lab 02 (labels first): iDLG's sign rule for one sample's label (Zhao et al., 2020), and
Geng et al.'s label counts of a batch (Eq. 2 as Dimitrov et al., TMLR 2022, write it)."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from leakage_lab.checks._common import (
    CheckFailed,
    _call,
    _close,
    _fail,
    _ok,
)
from leakage_lab.checks._guard import exercise

__all__ = ["geng_counts", "idlg_label"]


def _as_label(value, what: str) -> int:
    if value is None:
        _fail(f"{what} returned None: did you forget the `return` statement?")
    if np.size(value) != 1:
        _fail(f"{what} returned {np.size(value)} values (shape {list(np.shape(value))}), "
              "expected one class index: reduce the K bias gradients to a single int, "
              "e.g. int(jnp.argmin(bias_grad)).")
    number = float(np.asarray(value).reshape(()))
    if number != round(number):
        _fail(f"{what} returned {number:g}, which is not a class index: return the *position* "
              "of the entry (argmin), not the entry itself.")
    return int(round(number))


def _bias_gradient(key: jax.Array, num_classes: int, label: int, confidence: float):
    """``p - onehot(label)`` for a random softmax ``p`` with ``p[label] = confidence``."""
    logits = jax.random.normal(key, (num_classes,))
    others = np.asarray(jax.nn.softmax(logits)) * (1.0 - confidence)
    p = np.where(np.arange(num_classes) == label, 0.0, others)
    p = p / p.sum() * (1.0 - confidence)
    p[label] = confidence
    return p - np.eye(num_classes)[label]


@exercise(
    forbidden=("leakage_lab.labels.idlg",),
    allowed=(),
)
def idlg_label(fn: Callable) -> None:
    """Checks an implementation of iDLG's sign rule (lab 02; Zhao et al., 2020).

    ``fn(bias_grad)`` gets the gradient of the last layer's bias for *one* sample,
    ``dL/db_k = p_k - y_k`` (shape ``[K]``), and should return the true class as an int:
    the only negative entry, ``argmin_k dL/db_k``. The check compares it with
    ``ll.labels.idlg`` on real gradients of a small network, then on hand-made
    gradients of confident and unsure networks with 2 to 100 classes.

    Args:
        fn: the learner's rule.

    Raises:
        CheckFailed: with a hint naming the likely mistake (argmax instead of argmin,
            the magnitude instead of the sign, an off-by-one, an array instead of an int...).
    """
    from leakage_lab import fl, labels, models  # imported here: checks stays light

    name = getattr(fn, "__name__", "your function")
    what = f"{name}(bias_grad)"

    # 1. Real single-sample gradients of an untrained MLP, against ll.labels.idlg.
    model = models.mlp(num_classes=10, input_shape=(4, 4, 1), hidden=(16,))
    params = model.init(jax.random.key(0))
    layer = labels.last_layer(model, params)
    images = jax.random.uniform(jax.random.key(1), (6, 4, 4, 1))
    truth = [3, 0, 9, 5, 5, 7]
    for x, y in zip(images, truth, strict=True):
        grads = fl.gradient(model, params, x[None], jnp.array([y]))
        want = int(labels.idlg(model, params, grads)[0])
        bias_grad = grads[layer]["b"]
        got = _as_label(_call(fn, bias_grad, what=what), what)
        if got != want:
            b = np.asarray(bias_grad)
            if got == int(np.argmax(b)):
                _fail(f"{name} returned class {got}, the LARGEST entry of the bias gradient, "
                      f"but the true class is {want}: you took argmax. dL/db_k = p_k - y_k is "
                      "p_k >= 0 for every wrong class and p_y - 1 < 0 for the true one, so the "
                      "true class is the only NEGATIVE entry: take argmin.")
            if got == want + 1 or got == want - 1:
                _fail(f"{name} returned {got} where {want} was expected: off by one. Classes "
                      "are numbered from 0, like the positions of the array.")
            if got == int(np.argmin(np.abs(b))):
                _fail(f"{name} returned {got}, the entry closest to zero: the clue is the "
                      "SIGN, not the size. The true class is the only negative entry.")
            _fail(f"{name} returned class {got} for a gradient whose true class is {want} "
                  f"(bias gradient {np.round(b, 3).tolist()}): the true class is the only "
                  "negative entry.")

    # 2. Hand-made gradients: confident networks (p_y near 1, so p_y - 1 near 0), many classes.
    cases = [(2, 1, 0.5), (7, 4, 0.999), (10, 0, 0.99), (100, 63, 0.3), (100, 99, 0.9999)]
    for seed, (k, y, confidence) in enumerate(cases):
        b = _bias_gradient(jax.random.key(100 + seed), k, y, confidence)
        for array in (b, jnp.asarray(b, jnp.float32)):
            got = _as_label(_call(fn, array, what=what), what)
            if got != y:
                if got == int(np.argmax(np.abs(b))):
                    _fail(f"{name} returned {got}, the entry of LARGEST MAGNITUDE, but the "
                          f"true class is {y}. That works on an untrained network (p_y - 1 "
                          "≈ -0.9 dominates), but a confident network has p_y ≈ 1, so "
                          "p_y - 1 ≈ 0: use the sign. The true class is the only negative entry.")
                if got == int(np.argmax(b)):
                    _fail(f"{name} returned {got}, the largest entry, not the true class {y}: "
                          "the true class is the only NEGATIVE entry; take argmin.")
                _fail(f"{name} returned {got} on a {k}-class gradient whose only negative "
                      f"entry is class {y} (confidence p_y = {confidence}): is something "
                      "hard-coded (the number of classes, a threshold)?")
    _ok(f"{name}: finds the true class, the only negative entry, on 6 real gradients (as "
        "ll.labels.idlg) and on 5 hand-made ones with 2 to 100 classes.")


# --------------------------------------------------------------------------------------
# A batch: Geng et al.'s label counts (Eq. 2)
# --------------------------------------------------------------------------------------


def _exact_case(rng: np.random.Generator, counts, width: int, o_mean: float):
    """A weight gradient whose column sums are exactly ``Õ (p̃_k − λ_k / N)``: the case
    Eq. 2 assumes (every sample with the same activation sum and probabilities), so the
    right formula gives the counts back exactly."""
    counts = np.asarray(counts, np.float64)
    n, k = counts.sum(), counts.size
    logits = rng.standard_normal(k)
    p_mean = np.exp(logits) / np.exp(logits).sum()
    column_sums = o_mean * (p_mean - counts / n)
    w = rng.standard_normal((width, k)) * 0.1
    w += (column_sums - w.sum(axis=0)) / width  # rows add up to the column sums
    return (jnp.asarray(w, jnp.float32), jnp.asarray(p_mean, jnp.float32),
            jnp.asarray(o_mean, jnp.float32), int(n))


def _network_case(seed: int, labels, num_dummy: int = 40):
    """A real FedSGD gradient of a random batch through an untrained ReLU MLP, and the
    dummy statistics of noise images (the attacker's side), drawn with numpy (seeded)."""
    from leakage_lab import labels as lab
    from leakage_lab import models, objective

    model = models.mlp(num_classes=6, input_shape=(4, 4, 1), hidden=(12,))
    rng = np.random.default_rng(2000 + seed)
    shapes = jax.eval_shape(model.init, jax.random.key(0))
    params = jax.tree.map(lambda leaf: jnp.asarray(rng.uniform(-0.5, 0.5, leaf.shape),
                                                   jnp.float32), shapes)
    labels = jnp.asarray(labels, jnp.int32)
    images = jnp.asarray(rng.uniform(size=(labels.size, 4, 4, 1)), jnp.float32)
    grads = objective.candidate_gradient(model, params, images, labels)
    dummy = jnp.asarray(rng.uniform(size=(num_dummy, 4, 4, 1)), jnp.float32)
    stats = lab.dummy_statistics(model, params, dummy)
    layer = lab.last_layer(model, params)
    want = lab.batch_counts(model, params, grads, num_samples=int(labels.size),
                            key=jax.random.key(0), dummy_images=dummy).counts
    return (grads[layer]["w"], stats.p_mean, stats.o_mean, int(labels.size)), want


def _geng_raw(weight_grad, p_mean, o_mean, n, *, columns=np.sum, n_delta=None, sign=-1.0,
              softmax_term=True, divide=True):
    """Eq. 2 and its slips, real-valued: ``N p̃_k − N Δ_k / Õ``."""
    w = np.asarray(weight_grad, np.float64)
    p, o = np.asarray(p_mean, np.float64), float(o_mean)
    delta = columns(w, axis=0)
    scale = n if n_delta is None else n_delta
    term = scale * delta / o if divide else scale * delta * o
    return (n * p if softmax_term else 0.0) + sign * term


def _geng_variants(weight_grad, p_mean, o_mean, n):
    """(real-valued estimate, hint) for the usual slips in Eq. 2."""
    args = (weight_grad, p_mean, o_mean, n)
    return [
        (_geng_raw(*args, sign=+1.0), "the sign of the gradient term is flipped: the true "
         "class pulls its column sum DOWN (p_k − y_k < 0), so λ̃_k = N p̃_k − N Δ_k / Õ, with "
         "a minus"),
        (_geng_raw(*args, softmax_term=False), "you forgot the softmax term N p̃_k: every "
         "sample adds O p_k to every column, whatever its label, and that must be "
         "subtracted back out: λ̃_k = N p̃_k − N Δ_k / Õ"),
        (_geng_raw(*args, n_delta=1), "the gradient term lacks the factor N: the update is "
         "the gradient of the MEAN loss over the N samples, Δ_k = (1/N) Σ_i O_i (p_ik − y_ik), "
         "so multiply N Δ_k / Õ"),
        (_geng_raw(*args, n_delta=n * n), "the gradient term has N twice: the update is "
         "already the MEAN over the batch; λ̃_k = N p̃_k − N Δ_k / Õ"),
        (_geng_raw(*args, columns=np.mean), "Δ_k is the column SUM of the weight gradient "
         "over its D rows (jnp.sum(weight_grad, axis=0)), not the mean"),
        (_geng_raw(*args, divide=False), "you multiplied by Õ: Δ_k ≈ Õ (p̃_k − λ_k / N), so "
         "divide by Õ"),
    ]


def _as_counts(value, what: str, k: int) -> np.ndarray:
    if value is None:
        _fail(f"{what} returned None: did you forget the `return` statement?")
    got = np.asarray(value, np.float64)
    if got.shape != (k,):
        _fail(f"{what} returned shape {list(got.shape)}, expected one count per class, "
              f"[{k}]: Δ_k sums the weight gradient [D, K] over its D rows (axis=0), "
              "leaving one number per class.")
    if not np.all(np.isfinite(got)):
        _fail(f"{what} returned {got.tolist()}: not finite. Divide by Õ (o_mean), not by a "
              "column sum.")
    return got


@exercise(
    forbidden=("leakage_lab.labels.geng_estimate", "leakage_lab.labels.batch_counts",
               "leakage_lab.labels.fedavg_counts"),
    allowed=("leakage_lab.labels.round_counts",),
)
def geng_counts(fn: Callable) -> None:
    """Checks Geng et al.'s label counts (lab 02; Eq. 2 of Dimitrov et al., TMLR 2022).

    ``fn(weight_grad, p_mean, o_mean, num_samples)`` gets the last layer's weight
    gradient ``[D, K]`` of a batch's MEAN loss, the dummy estimates ``p̃ [K]`` and ``Õ``,
    and the batch size ``N``, and should return the integer counts ``[K]``

        λ̃_k = N p̃_k − N Δ_k / Õ,   Δ_k = Σ_d weight_grad[d, k],

    rounded with ``ll.labels.round_counts(λ̃, N)`` (non-negative, summing to N): what
    ``ll.labels.batch_counts`` returns. It runs on gradients built so that Eq. 2 is exact
    and on real gradients of a small network, none of them from the lab.

    Raises:
        CheckFailed: with a hint (the sign, the softmax term forgotten, N missing from the
            mean gradient, a mean over the rows, no rounding, a rounding that does not sum
            to N...).
    """
    from leakage_lab import labels as lab

    name = getattr(fn, "__name__", "your function")
    what = f"{name}(weight_grad, p_mean, o_mean, num_samples)"
    rng = np.random.default_rng(7)
    batch = [1, 1, 1, 1, 4, 4, 2, 0, 5, 5, 5]
    cases = [(_exact_case(rng, [2, 0, 3, 1, 0], width=3, o_mean=0.6), None),
             (_exact_case(rng, [0, 4, 1, 0, 5, 2, 0, 0], width=9, o_mean=12.5), None),
             _network_case(0, batch), _network_case(9, batch)]
    where = ["on a gradient where Eq. 2 is exact"] * 2 + \
        [f"on a real gradient of a batch of {len(batch)}"] * 2
    wants, raws, gots = [], [], []
    for args, from_library in cases:
        weight_grad, p_mean, o_mean, n = args
        raw = np.asarray(lab.geng_estimate(jnp.sum(weight_grad, axis=0), p_mean, o_mean, n),
                         np.float64)
        raws.append(raw)
        wants.append(np.asarray(lab.round_counts(raw, n) if from_library is None
                                else from_library, np.float64))
        gots.append(_as_counts(_call_counts(fn, args, what), what, int(np.size(p_mean))))
    wrong = [i for i, (got, want) in enumerate(zip(gots, wants, strict=True))
             if not np.array_equal(got, want)]
    if not wrong:
        _ok(f"{name}: Geng et al.'s counts, as ll.labels.batch_counts gives them, on 2 "
            "gradients where Eq. 2 is exact and 2 real ones.")
        return

    first = wrong[0]
    (args, _), got, want, raw = cases[first], gots[first], wants[first], raws[first]
    n = args[3]
    shown, expected = np.round(got, 3).tolist(), want.astype(int).tolist()
    said = f"{name} returned {shown} {where[first]}, where {expected} was expected"
    # A slip that explains every wrong case (a rounded or a real-valued estimate).
    for index, hint in enumerate(h for _, h in _geng_variants(*cases[0][0])):
        if all(_matches(gots[i], _geng_variants(*cases[i][0])[index][0], cases[i][0][3])
               for i in wrong):
            _fail(f"{said}: {hint}.")
    if all(_close(gots[i], raws[i], rtol=1e-4, atol=1e-4) for i in wrong):
        _fail(f"{name} returned the real-valued estimate {shown} {where[first]}: round it to "
              f"counts, non-negative and summing to N = {n}, with "
              "ll.labels.round_counts(estimate, num_samples).")
    rounded = np.round(raw)
    if any(np.array_equal(got, r) for r in (rounded, np.clip(rounded, 0, None), np.floor(raw),
                                            np.clip(np.floor(raw), 0, None))):
        bad = "has a negative count" if got.min() < 0 else f"sums to {got.sum():g}"
        _fail(f"{said}: that rounds the right estimate {np.round(raw, 2).tolist()} one by one "
              f"and {bad}. Counts are non-negative and sum to N = {n}: round with "
              "ll.labels.round_counts(estimate, num_samples).")
    if got.min() < 0 or got.sum() != n:
        _fail(f"{said}: counts must be non-negative and sum to the batch size N = {n}. Round "
              "with ll.labels.round_counts.")
    if first > 0:
        _fail(f"{name} is right on one gradient but returns {shown} instead of {expected} "
              f"{where[first]}: is a size or a value hard-coded?")
    _fail(f"{said}: λ̃_k = N p̃_k − N Δ_k / Õ with Δ_k = jnp.sum(weight_grad, axis=0), then "
          "ll.labels.round_counts(λ̃, N).")


def _call_counts(fn: Callable, args, what: str):
    """Calls the learner's function; a shape error gets the hint about the column sums."""
    try:
        return fn(*args)
    except CheckFailed:
        raise
    except Exception as err:  # noqa: BLE001 - any error in the learner's code becomes a hint
        hint = ""
        if "shape" in str(err).lower():
            d, k = np.shape(args[0])
            hint = (f" The weight gradient is [D, K] = [{d}, {k}]: Δ_k sums it over the D "
                    "rows, jnp.sum(weight_grad, axis=0), leaving one number per class.")
        _fail(f"Calling {what} raised {type(err).__name__}: {str(err).rstrip('.')}.{hint}")


def _matches(got, estimate, n) -> bool:
    """``got`` is ``estimate`` rounded by ``round_counts``, or ``estimate`` itself."""
    from leakage_lab import labels as lab

    return bool(np.array_equal(got, lab.round_counts(estimate, n))
                or _close(got, estimate, rtol=1e-4, atol=1e-4))
