"""Every input check of the attacks and the simulation, in one place.

Bad input fails early with a message that says what was expected and what came. Each
check takes ``who`` (the public function's name) so that the message points at the
caller, not at this module.

    >>> check_restarts(2, "dlg")
    2
    >>> check_restarts(0, "dlg")
    Traceback (most recent call last):
    ...
    ValueError: dlg: restarts must be an int >= 1, got 0.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from leakage_lab.models import check_images
from leakage_lab.trees import check_matching

__all__ = ["check_batch", "check_images", "check_int", "check_labels", "check_matching",
           "check_restarts", "check_shape", "label_range"]


def check_int(value, name: str, who: str, minimum: int = 1) -> int:
    """``value`` as an int ``>= minimum`` (numpy integers accepted, bools not)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{who}: {name} must be an int >= {minimum}, got {value!r}.")
    return int(value)


def check_restarts(restarts, who: str) -> int:
    """The number of attempts of an attack: an int >= 1 (0 is an error, not "once")."""
    return check_int(restarts, "restarts", who)


def check_shape(model, shape, who: str) -> tuple[int, int, int, int]:
    """``shape`` as ``(N, *model.input_shape)`` with ``N >= 1``, else a ValueError."""
    shape = tuple(int(s) for s in shape)
    if len(shape) != 4 or shape[1:] != tuple(model.input_shape) or shape[0] < 1:
        raise ValueError(
            f"{who}: shape must be [N, {', '.join(map(str, model.input_shape))}] for "
            f"{model.name}, got {list(shape)}."
        )
    return shape


def label_range(model, labels, who: str) -> None:
    """Concrete integer class indices in ``[0, K)``; traced labels pass unchecked."""
    if isinstance(labels, jax.core.Tracer):
        return
    lab = np.asarray(labels)
    if not np.issubdtype(lab.dtype, np.integer):
        raise ValueError(f"{who}: labels must be integer class indices, got dtype {lab.dtype}.")
    if lab.size and (lab.min() < 0 or lab.max() >= model.num_classes):
        bad = lab[(lab < 0) | (lab >= model.num_classes)]
        raise ValueError(f"{who}: labels must lie in [0, {model.num_classes - 1}] for "
                         f"{model.name} ({model.num_classes} classes), got {bad[:5].tolist()}.")


def check_labels(model, labels, who: str, n: int | None = None) -> jax.Array:
    """Known class indices ``[N]`` for an attack (one per image), as int32.

    With ``n`` given, the labels must number ``n`` (the batch of the reconstruction).
    """
    lab = np.asarray(labels)
    if lab.ndim != 1 or lab.size == 0:
        raise ValueError(
            f"{who}: labels must be class indices of shape [N], one per image, got shape "
            f"{list(lab.shape)}. (Label counts can be turned into indices first, with "
            f"labels.counts_to_labels.)")
    label_range(model, lab, who)
    if n is not None and lab.shape[0] != n:
        raise ValueError(f"{who}: {lab.shape[0]} labels were given for a batch of {n} "
                         f"images; give one label per image.")
    return jnp.asarray(lab, jnp.int32)


def check_batch(model, images, labels, who: str) -> None:
    """A training batch: images ``[N, *input_shape]``, labels ``[N]`` (indices) or ``[N, K]``."""
    check_images(images, model.input_shape, who)
    lshape = tuple(jnp.shape(labels))
    n = images.shape[0]
    if lshape not in ((n,), (n, model.num_classes)):
        raise ValueError(
            f"{who} expects labels of shape [{n}] (class indices) or [{n}, {model.num_classes}] "
            f"(label distributions) for {n} images, got shape {list(lshape)}."
        )
    if len(lshape) == 1:
        label_range(model, labels, who)
