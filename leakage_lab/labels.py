"""Labels first: reading a batch's labels off the last layer's gradient.

With softmax + cross-entropy, the gradient of the last dense layer ``z = f W + b``
(``W: [D, K]``) for one sample with penultimate activations ``f`` and label ``y`` is

    dL/db_k = p_k - y_k,          dL/dW[:, k] = f (p_k - y_k),

where ``p = softmax(z)``. Only the true class has ``p_k - y_k < 0``, so one gradient
gives its label away (``idlg``). For a batch, the column sums of the weight gradient
still count the labels, approximately (``batch_counts``, after Geng et al.).

Both read the last layer of a model built by ``leakage_lab.models``: the dense layer
``{"w": [D, K], "b": [K]}`` with ``apply(params, x) == features(params, x) @ w + b``
(``last_layer`` finds it).

    >>> import jax
    >>> from leakage_lab import fl, labels, models
    >>> model = models.mlp(num_classes=3, input_shape=(2, 2, 1), hidden=(4,))
    >>> params = model.init(jax.random.key(0))
    >>> x = jax.numpy.ones((1, 2, 2, 1))
    >>> grads = fl.gradient(model, params, x, jax.numpy.array([2]))
    >>> labels.idlg(model, params, grads).tolist()
    [2]
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from leakage_lab import trees
from leakage_lab.models import Model

__all__ = [
    "DummyStatistics",
    "LabelCounts",
    "at_client",
    "at_server",
    "batch_counts",
    "counts_to_labels",
    "dummy_statistics",
    "fedavg_counts",
    "geng_estimate",
    "idlg",
    "interpolate",
    "last_layer",
    "round_counts",
]


# --------------------------------------------------------------------------------------
# The last layer
# --------------------------------------------------------------------------------------


def _check_model(model: Model, who: str) -> None:
    if getattr(model, "features", None) is None:
        raise ValueError(
            f"{who}: label recovery needs the penultimate activations (the input of the last "
            f"dense layer), but {getattr(model, 'name', 'this model')} has features=None. "
            "Build the model with leakage_lab.models, or give it a features function."
        )


def last_layer(model: Model, params) -> str:
    """The name of ``model``'s last dense layer in ``params``.

    The convention of ``leakage_lab.models``: the last layer is the entry
    ``{"w": [D, K], "b": [K]}`` of ``params`` with ``D`` the width of
    ``model.features`` and ``K = model.num_classes``, such that
    ``apply(params, x) == features(params, x) @ w + b``. When several layers have that
    shape, each is checked on one random input, and the one ``apply`` uses is kept.

    Raises:
        ValueError: if the model has no ``features`` or no layer satisfies the convention.
    """
    _check_model(model, "labels.last_layer")
    x = jax.ShapeDtypeStruct((1, *model.input_shape), jnp.float32)
    shape = (jax.eval_shape(model.features, params, x).shape[-1], model.num_classes)
    candidates = [
        name for name, layer in params.items()
        if isinstance(layer, dict) and "w" in layer and tuple(jnp.shape(layer["w"])) == shape
    ]
    if len(candidates) > 1:  # several layers of that shape: keep the one apply uses
        x = jax.random.uniform(jax.random.key(0), x.shape)
        f, logits = model.features(params, x), model.apply(params, x)
        candidates = [
            name for name in candidates
            if np.allclose(f @ params[name]["w"] + params[name].get("b", 0.0), logits,
                           rtol=1e-4, atol=1e-5)
        ]
    if len(candidates) == 1:
        return candidates[0]
    raise ValueError(
        f"labels.last_layer: found no dense layer {{'w': {list(shape)}, 'b': [{shape[1]}]}} in "
        f"params (layers {list(params)}) with apply(params, x) == features(params, x) @ w + b. "
        "Label recovery expects a model built by leakage_lab.models."
    )


def _last_layer_grads(model: Model, params, grads, who: str):
    """Validates ``grads`` against ``params`` and returns the last layer's name and gradient."""
    _check_model(model, who)
    trees.check_matching(grads, params)
    name = last_layer(model, params)
    return name, grads[name]


# --------------------------------------------------------------------------------------
# One sample: iDLG
# --------------------------------------------------------------------------------------


def idlg(model: Model, params, grads, *, use_bias: bool = True) -> jax.Array:
    """The label of a single-sample gradient (Zhao et al., 2020, iDLG).

    For one sample, ``dL/db_k = p_k - y_k`` is negative at the true class only, and the
    weight column ``dL/dW[:, k] = f (p_k - y_k)`` sums to ``O (p_k - y_k)`` with
    ``O = sum_d f_d``. So

        label = argmin_k dL/db_k            (use_bias=True, the default)
        label = argmin_k sum_d dL/dW[d, k]  (use_bias=False, iDLG's rule)

    The bias rule is exact for any network; the weight rule is exact when the
    penultimate activations are non-negative (sigmoid, ReLU), which holds for every
    model in ``leakage_lab.models`` except an mlp with a signed activation (e.g. tanh).

    The rule assumes a single sample: a batch gradient looks alike and gives one of
    the batch's labels (use ``batch_counts`` for batches).

    Args:
        model: the attacked model.
        params: the weights the gradient was computed at.
        grads: the observed gradient, a pytree shaped like ``params``.
        use_bias: read the bias gradient (default) or the weight gradient.

    Returns:
        int32 ``[1]``, ready for the ``labels=`` argument of the attacks.
    """
    _, g = _last_layer_grads(model, params, grads, "labels.idlg")
    if use_bias:
        if "b" not in g:
            raise ValueError("labels.idlg: the last layer has no bias; use use_bias=False.")
        scores = jnp.asarray(g["b"])
    else:
        scores = jnp.sum(jnp.asarray(g["w"]), axis=0)
    return jnp.argmin(scores)[None].astype(jnp.int32)


# --------------------------------------------------------------------------------------
# A batch: Geng et al.'s label counts
# --------------------------------------------------------------------------------------


class DummyStatistics(NamedTuple):
    """What Geng et al.'s estimate needs from the network, measured on dummy inputs.

    Attributes:
        p_mean: ``[K]`` mean softmax probability of each class.
        o_mean: scalar, mean over inputs of the sum of the penultimate activations.
    """

    p_mean: jax.Array
    o_mean: jax.Array


class LabelCounts(NamedTuple):
    """The result of ``batch_counts``.

    Attributes:
        counts: int32 ``[K]``, non-negative, summing to ``num_samples``.
        raw: float ``[K]``, Eq. 2's real-valued estimate before rounding.
        p_mean: ``[K]``, the dummy estimate of the mean softmax probabilities.
        o_mean: scalar, the dummy estimate of the mean sum of penultimate activations.
    """

    counts: jax.Array
    raw: jax.Array
    p_mean: jax.Array
    o_mean: jax.Array


@partial(jax.jit, static_argnums=(0, 1))
def _statistics(model, layer, params, images):
    f = model.features(params, images)
    z = f @ params[layer]["w"] + (params[layer]["b"] if "b" in params[layer] else 0.0)
    return jnp.mean(jax.nn.softmax(z), axis=0), jnp.mean(jnp.sum(f, axis=-1))


def dummy_statistics(model: Model, params, images) -> DummyStatistics:
    """Mean softmax probabilities and mean activation sum of ``images`` at ``params``.

    Geng et al. feed random dummy inputs, since the client's data is unknown; given the
    client's own images it returns the exact quantities of Eq. 2.
    """
    _check_model(model, "labels.dummy_statistics")
    images = jnp.asarray(images)
    if images.ndim != 4 or images.shape[1:] != tuple(model.input_shape) or images.shape[0] < 1:
        raise ValueError(
            f"labels.dummy_statistics expects images [N >= 1, "
            f"{', '.join(map(str, model.input_shape))}], got shape {list(images.shape)}."
        )
    layer = last_layer(model, params)
    return DummyStatistics(*_statistics(model, layer, params, images))


def geng_estimate(column_sums, p_mean, o_mean, num_samples: int) -> jax.Array:
    """Eq. 2 of Dimitrov et al. (TMLR 2022), the estimate of Geng et al. (2021):

        λ_k ≈ N p̃_k - N Δ_k / Õ

    ``Δ_k = sum_d dL/dW[d, k]`` is the column sum of the last layer's weight gradient of
    the *mean* loss over the N samples (what ``fl.gradient`` returns), ``p̃`` the mean
    softmax probabilities and ``Õ`` the mean sum of penultimate activations.

    Why: ``Δ_k = (1/N) sum_i O_i (p_ik - y_ik)``; replacing every ``O_i`` by ``Õ`` and
    every ``p_ik`` by ``p̃_k`` gives ``Δ_k = Õ (p̃_k - λ_k / N)``. Exact when all samples
    share ``O_i`` and ``p_i`` (e.g. one image repeated with different labels).
    """
    n = float(num_samples)
    return n * jnp.asarray(p_mean) - n * jnp.asarray(column_sums) / o_mean


def round_counts(raw, num_samples: int) -> np.ndarray:
    """Integer counts summing to ``num_samples``: clip at 0, then largest remainders.

    The clipped estimates are scaled to sum to N; each class gets the floor of its
    share, and the classes with the largest remainders get the samples left over
    (Hamilton's method). If every estimate is <= 0 the shares are uniform.
    """
    _check_num_samples(num_samples, "labels.round_counts")
    raw = np.asarray(raw, np.float64)
    if raw.ndim != 1 or not np.all(np.isfinite(raw)):
        raise ValueError(f"labels.round_counts expects finite estimates [K], got {raw!r}.")
    clipped = np.clip(raw, 0.0, None)
    total = clipped.sum()
    if total > 0:
        share = clipped * num_samples / total
    else:
        share = np.full(raw.shape, num_samples / raw.size)
    counts = np.floor(share).astype(np.int64)
    left = num_samples - int(counts.sum())
    order = np.argsort(-(share - counts), kind="stable")
    counts[order[:left]] += 1
    return counts.astype(np.int32)


def _check_num_samples(num_samples, who: str) -> None:
    if isinstance(num_samples, bool) or not isinstance(num_samples, (int, np.integer)) \
            or num_samples < 1:
        raise ValueError(f"{who}: num_samples must be an int >= 1 (the batch size), "
                         f"got {num_samples!r}.")


def batch_counts(model: Model, params, grads, *, num_samples: int, key: jax.Array,
                 num_dummy: int = 100, dummy_images=None) -> LabelCounts:
    """How many samples of each class a FedSGD gradient holds (Geng et al., 2021).

    Implements Eq. 2 as reviewed by Dimitrov et al. (TMLR 2022, Sec. 3.2):

        λ_k ≈ N p̃_k - N Δ_k / Õ

    with ``Δ_k`` the column sum of the last layer's weight gradient (``geng_estimate``)
    and ``p̃, Õ`` measured at ``params`` on dummy inputs (``dummy_statistics``), then
    rounded to counts that sum to N (``round_counts``). Accurate on untrained networks,
    whose outputs barely depend on the input; less so on trained ones.

    Args:
        model: the attacked model.
        params: the weights the gradient was computed at.
        grads: the observed mean gradient of the batch, a pytree shaped like ``params``.
        num_samples: the batch size N.
        key: draws ``num_dummy`` dummy images, uniform in [0, 1] (unused when
            ``dummy_images`` is given).
        num_dummy: how many dummy images.
        dummy_images: optional dummy inputs ``[M, H, W, C]`` to use instead (e.g. public
            images of the same kind).

    Returns:
        A ``LabelCounts(counts, raw, p_mean, o_mean)``.
    """
    _check_num_samples(num_samples, "labels.batch_counts")
    name, g = _last_layer_grads(model, params, grads, "labels.batch_counts")
    if dummy_images is None:
        if int(num_dummy) < 1:
            raise ValueError(f"labels.batch_counts: num_dummy must be >= 1, got {num_dummy!r}.")
        dummy_images = jax.random.uniform(key, (int(num_dummy), *model.input_shape))
    stats = dummy_statistics(model, params, dummy_images)
    column_sums = jnp.sum(jnp.asarray(g["w"]), axis=0)
    raw = geng_estimate(column_sums, stats.p_mean, stats.o_mean, num_samples)
    counts = jnp.asarray(round_counts(raw, num_samples))
    return LabelCounts(counts, raw, stats.p_mean, stats.o_mean)


def counts_to_labels(counts) -> jax.Array:
    """A sorted label array with ``counts[k]`` copies of class ``k``: ``[2, 0, 1] -> [0, 0, 2]``.

    Useful as ``labels=`` of an attack when the counts, but not the order, are known.
    """
    c = np.asarray(counts)
    if c.ndim != 1 or c.size == 0:
        raise ValueError(f"counts_to_labels expects counts [K] (one per class), got {c!r}.")
    if not np.issubdtype(c.dtype, np.integer):
        if not np.all(np.isfinite(c)) or not np.all(c == np.round(c)):
            raise ValueError(f"counts_to_labels expects integer counts, got {c.tolist()}; "
                             "round them first (labels.round_counts).")
        c = c.astype(np.int64)
    if np.any(c < 0) or c.sum() < 1:
        raise ValueError(f"counts_to_labels expects non-negative counts with a positive sum, "
                         f"got {c.tolist()}.")
    return jnp.asarray(np.repeat(np.arange(c.size), c), jnp.int32)


# --------------------------------------------------------------------------------------
# FedAvg: label counts from a client's weights (Dimitrov et al., TMLR 2022, Sec. 4.5)
# --------------------------------------------------------------------------------------


def at_server(server: DummyStatistics, client: DummyStatistics, num_steps: int):
    """Statistics strategy "Geng et al. θs": every local step uses the statistics at θs.

    Returns ``(p [U, K], o [U])``, the same row ``U = num_steps`` times. Good when the
    client takes few local steps (Dimitrov et al., TMLR 2022, Table 2).
    """
    del client
    return (jnp.broadcast_to(server.p_mean, (num_steps, *jnp.shape(server.p_mean))),
            jnp.broadcast_to(server.o_mean, (num_steps,)))


def at_client(server: DummyStatistics, client: DummyStatistics, num_steps: int):
    """Statistics strategy "Geng et al. θc": every local step uses the statistics at θc.

    Returns ``(p [U, K], o [U])``. Good when the client takes many local steps.
    """
    return at_server(client, server, num_steps)


def interpolate(server: DummyStatistics, client: DummyStatistics, num_steps: int):
    """Statistics strategy RecLabels (Dimitrov et al., TMLR 2022, Sec. 4.5), the default.

    The weights move from θs to θc over the U local steps, and the statistics change
    smoothly with them, so step ``i = 1..U`` (whose gradient is taken at the weights
    after ``i - 1`` steps) gets the linear interpolation

        p̃_i = (1 - t_i) p̃^s + t_i p̃^c,   Õ_i = (1 - t_i) Õ^s + t_i Õ^c,   t_i = (i - 1) / U.

    The paper writes the weights as ``i/U`` on θs and ``(U - i)/U`` on θc; read literally
    that puts the client's statistics at the first step. We take the order of the local
    steps instead (the first step at θs exactly), so that one local step is FedSGD.
    Returns ``(p [U, K], o [U])``.
    """
    t = jnp.arange(num_steps, dtype=jnp.float32) / num_steps
    p = (1.0 - t)[:, None] * server.p_mean + t[:, None] * client.p_mean
    o = (1.0 - t) * server.o_mean + t * client.o_mean
    return p, o


def _step_sizes(num_samples: int, epochs: int, batch_size: int) -> np.ndarray:
    """Samples in each of the ``E * ceil(N/m)`` local steps of Algorithm 1 (the last batch
    of an epoch may be smaller)."""
    nb = -(-num_samples // batch_size)
    sizes = np.full(nb, batch_size)
    sizes[-1] = num_samples - (nb - 1) * batch_size
    return np.tile(sizes, epochs)


def fedavg_counts(model: Model, theta_s, theta_c, *, num_samples: int, lr: float, epochs: int,
                  batch_size: int, key: jax.Array, statistics=interpolate,
                  num_dummy: int = 100, dummy_images=None) -> LabelCounts:
    """How many samples of each class a FedAvg client holds (Dimitrov et al., TMLR 2022).

    The server sees θs and θc only. It turns them into the client's *average* update
    ``∇̄θ = (θs - θc) / (η U)`` with ``U = E · ceil(N/m)`` local steps, and takes
    ``Δ_k``, the column sums of that update's last-layer weights. Geng et al.'s Eq. 2
    is then applied to every local step ``i`` with its batch size ``n_i`` and its own
    dummy statistics ``p̃_i, Õ_i``, and the per-step counts are added up over the E
    epochs (the paper's Sec. 4.5):

        λ̃_{k,i} = n_i p̃_{k,i} - n_i Δ_k / Õ_i,        λ̃_k = (1/E) sum_{i=1..U} λ̃_{k,i}

    before rounding to non-negative integers that sum to N (``round_counts``). With the
    same statistics at every step this is Eq. 2 with N samples.

    Args:
        model: the attacked model (its last layer is read, see ``last_layer``).
        theta_s: the weights the server sent.
        theta_c: the weights the client sent back (same tree as ``theta_s``).
        num_samples: the client's N.
        lr: the client's learning rate η.
        epochs: the client's local epochs E.
        batch_size: the client's batch size m.
        key: draws ``num_dummy`` dummy images, uniform in [0, 1] (unused when
            ``dummy_images`` is given).
        statistics: the strategy for the statistics of each local step,
            ``statistics(at_θs, at_θc, U) -> (p [U, K], o [U])`` given the
            :class:`DummyStatistics` at θs and at θc. The three of the paper's Table 2:
            :func:`interpolate` (default, "Ours"), :func:`at_server` ("Geng et al. θs")
            and :func:`at_client` ("Geng et al. θc").
        num_dummy: how many dummy images.
        dummy_images: optional dummy inputs ``[M, H, W, C]`` to use instead.

    Returns:
        A ``LabelCounts(counts, raw, p_mean, o_mean)``; here ``p_mean`` is ``[U, K]`` and
        ``o_mean`` is ``[U]``, the statistics used at each local step.

    Raises:
        ValueError: for trees of different structure, non-positive N, E, m or η.
    """
    who = "labels.fedavg_counts"
    _check_num_samples(num_samples, who)
    trees.check_matching(theta_c, theta_s, name="theta_c", reference_name="theta_s")
    _check_model(model, who)
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{who}: {name} must be an int >= 1, got {value!r}.")
    if not lr > 0:
        raise ValueError(f"{who}: the learning rate lr must be > 0, got {lr!r}.")
    layer = last_layer(model, theta_s)
    sizes = _step_sizes(int(num_samples), int(epochs), int(batch_size))
    num_steps = sizes.size
    if dummy_images is None:
        if int(num_dummy) < 1:
            raise ValueError(f"{who}: num_dummy must be >= 1, got {num_dummy!r}.")
        dummy_images = jax.random.uniform(key, (int(num_dummy), *model.input_shape))
    at_s = dummy_statistics(model, theta_s, dummy_images)
    at_c = dummy_statistics(model, theta_c, dummy_images)
    p, o = statistics(at_s, at_c, num_steps)
    mean_update = (jnp.asarray(theta_s[layer]["w"]) - jnp.asarray(theta_c[layer]["w"])) \
        / (lr * num_steps)
    column_sums = jnp.sum(mean_update, axis=0)
    n_i = jnp.asarray(sizes, jnp.float32)[:, None]
    per_step = n_i * jnp.asarray(p) - n_i * column_sums[None, :] / jnp.asarray(o)[:, None]
    raw = jnp.sum(per_step, axis=0) / epochs
    counts = jnp.asarray(round_counts(raw, int(num_samples)))
    return LabelCounts(counts, raw, jnp.asarray(p), jnp.asarray(o))
