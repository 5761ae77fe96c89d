"""Lab 02 (labels first): iDLG's sign rule for one sample's label (Zhao et al., 2020)."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from leakage_lab.checks._common import (
    _call,
    _fail,
    _ok,
)
from leakage_lab.checks._guard import exercise

__all__ = ["idlg_label"]


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
