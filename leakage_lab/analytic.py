"""Analytic recovery of a dense layer's input from its gradients: no optimisation at all.

For one sample through a dense layer ``y = x W + b`` (``W: [in, out]``), the chain rule
gives (Phong et al., 2018; Geiping et al., NeurIPS 2020, who prove it for any fully
connected layer anywhere in a network):

    dL/dW = xᵀ (dL/dy),    dL/db = dL/dy,    so    dL/dW[:, j] = x · dL/db_j.

Every column j with ``dL/db_j != 0`` is a scaled copy of the input ``x``. For the first
layer of an MLP, ``x`` is the (flattened) image itself.

    >>> import numpy as np
    >>> from leakage_lab import analytic
    >>> x, g = np.array([0.5, 0.0, 2.0]), np.array([0.1, -0.3])
    >>> analytic.analytic_fc(np.outer(x, g), g).round(6).tolist()
    [0.5, 0.0, 2.0]
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["BatchRecovery", "analytic_fc", "analytic_fc_batch"]


def _check(weight_grad, bias_grad, who: str) -> tuple[np.ndarray, np.ndarray]:
    dw = np.asarray(weight_grad, np.float64)
    db = np.asarray(bias_grad, np.float64)
    if dw.ndim != 2 or db.ndim != 1 or dw.shape[1] != db.shape[0]:
        raise ValueError(
            f"{who} expects weight_grad [in, out] and bias_grad [out] of a dense layer "
            f"x @ W + b, got weight_grad shape {list(dw.shape)} and bias_grad shape "
            f"{list(db.shape)}."
        )
    if not (np.all(np.isfinite(dw)) and np.all(np.isfinite(db))):
        raise ValueError(f"{who}: the gradients contain NaN or infinite entries.")
    return dw, db


def analytic_fc(weight_grad, bias_grad, *, eps: float = 1e-20) -> np.ndarray:
    """The input ``x`` of a dense layer from a single sample's gradients.

    Since ``dL/dW[:, j] = x · dL/db_j`` for every output j, the least-squares solution
    over all columns is

        x = sum_j dL/dW[:, j] dL/db_j / sum_j (dL/db_j)²,

    which weighs the columns by their signal (a column with a tiny bias gradient
    carries mostly rounding error). Exact, up to rounding, for one sample; for the
    mean gradient of a batch it returns a mix of the batch's inputs (see
    ``analytic_fc_batch``). Computed in float64.

    Args:
        weight_grad: ``[in, out]``, the gradient of ``W`` in ``y = x W + b``.
        bias_grad: ``[out]``, the gradient of ``b``.
        eps: bias gradients with ``|dL/db_j| <= eps`` count as zero.

    Returns:
        float64 ``[in]``: the layer's input (reshape it to the image for a first layer).

    Raises:
        ValueError: on mismatched shapes, or when every ``|dL/db_j| <= eps``: then no
            output carries signal (e.g. all ReLUs after the layer are off) and the input
            cannot be recovered from this layer.
    """
    dw, db = _check(weight_grad, bias_grad, "analytic_fc")
    keep = np.abs(db) > eps
    if not np.any(keep):
        raise ValueError(
            f"analytic_fc: every bias gradient is zero (|dL/db| <= eps = {eps:g}), so the "
            "weight gradient dL/dW = x^T dL/db is zero too and carries no signal: the layer's "
            "input cannot be recovered from it. Try another layer or another sample."
        )
    db = np.where(keep, db, 0.0)
    return dw @ db / np.sum(db * db)


class BatchRecovery(NamedTuple):
    """The inputs ``analytic_fc_batch`` recovered from a batch gradient.

    Attributes:
        inputs: float64 ``[R, in]``, one estimated input per recovered sample.
        classes: int32 ``[R]``, the output (class) each one was read from.
        indices: int32 ``[R]``, the position of each recovered sample in ``labels``.
    """

    inputs: np.ndarray
    classes: np.ndarray
    indices: np.ndarray


def analytic_fc_batch(weight_grad, bias_grad, labels, *, eps: float = 1e-20) -> BatchRecovery:
    """Inputs of the *last* layer for the samples whose class is unique in the batch.

    For the last layer with softmax cross-entropy and the mean gradient of N samples
    with penultimate activations ``f_i`` and probabilities ``p_i``,

        dL/db_j = (1/N) sum_i (p_ij - y_ij),   dL/dW[:, j] = (1/N) sum_i f_i (p_ij - y_ij).

    If sample s is the only one of class j, the ratio ``dL/dW[:, j] / dL/db_j`` equals

        (f_s (1 - p_sj) - sum_{i != s} f_i p_ij) / ((1 - p_sj) - sum_{i != s} p_ij),

    which is ``f_s`` exactly only when the other samples give class j no probability
    (``p_ij = 0``); otherwise it is an approximation, good when the network is trained
    and confident, poor on an untrained one (``p_ij ≈ 1/K``). With N = 1 it is exact.
    Classes that occur more than once, or not at all, are skipped.

    Args:
        weight_grad: ``[D, K]``, the last layer's weight gradient (mean over the batch).
        bias_grad: ``[K]``, its bias gradient.
        labels: int ``[N]``, the batch's labels (e.g. from ``labels.counts_to_labels``;
            only the counts matter, so their order is arbitrary).
        eps: a class whose ``|dL/db_j| <= eps`` is skipped.

    Returns:
        A ``BatchRecovery(inputs, classes, indices)``; empty when no class is unique.
    """
    dw, db = _check(weight_grad, bias_grad, "analytic_fc_batch")
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.size == 0 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"analytic_fc_batch expects integer labels [N >= 1], got {labels!r}.")
    if labels.min() < 0 or labels.max() >= db.shape[0]:
        raise ValueError(
            f"analytic_fc_batch: labels must lie in [0, {db.shape[0] - 1}] for a layer with "
            f"{db.shape[0]} outputs, got {labels.tolist()}."
        )
    counts = np.bincount(labels, minlength=db.shape[0])
    classes = np.array([j for j in range(db.shape[0]) if counts[j] == 1 and abs(db[j]) > eps],
                       np.int32)
    indices = np.array([int(np.flatnonzero(labels == j)[0]) for j in classes], np.int32)
    inputs = (dw[:, classes] / db[classes]).T if classes.size else np.zeros((0, dw.shape[0]))
    return BatchRecovery(inputs, classes, indices)
