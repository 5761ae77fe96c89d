"""Federated learning, simulated: FedSGD gradients, FedAvg client updates, a server loop.

What a client sends decides what leaks:

* **FedSGD**: the mean cross-entropy gradient of one batch, ``gradient(...)``.
* **FedAvg**: the weights after ``epochs`` passes of local SGD over random batches of
  ``batch_size`` (Dimitrov et al., TMLR 2022, Algorithm 1), ``client_update(...)``. The
  server sees only the final weights, never the intermediate ones.

``train`` is the FedAvg server loop (McMahan et al., AISTATS 2017): each round it picks
clients, runs their updates from the current weights and averages the results,
weighted by the clients' sample counts.
"""

from __future__ import annotations

import math
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from leakage_lab import objective, privacy, trees
from leakage_lab._validate import check_batch
from leakage_lab.models import Model
from leakage_lab.objective import cross_entropy, loss

__all__ = [
    "ClientRun",
    "TrainResult",
    "accuracy",
    "average",
    "client_steps",
    "client_update",
    "cross_entropy",
    "gradient",
    "loss",
    "per_example_gradients",
    "train",
]


@partial(jax.jit, static_argnums=0)
def _gradient(model, params, images, labels):
    return jax.grad(lambda p: loss(model, p, images, labels))(params)


def gradient(model: Model, params, images, labels):
    """The FedSGD update: gradient of the mean cross-entropy over the batch.

    Returns a pytree shaped like ``params``.
    """
    check_batch(model, images, labels, "fl.gradient")
    return _gradient(model, params, jnp.asarray(images), jnp.asarray(labels))


_per_example = partial(jax.jit, static_argnums=0)(objective.per_example_gradients)


def per_example_gradients(model: Model, params, images, labels):
    """Gradients of each example's loss: a pytree whose leaves have a leading batch axis.

    Their mean over the batch is ``gradient(model, params, images, labels)``.
    """
    check_batch(model, images, labels, "fl.per_example_gradients")
    return _per_example(model, params, jnp.asarray(images), jnp.asarray(labels))


def batch_schedule(key, num_samples: int, *, epochs: int, batch_size: int):
    """Algorithm 1's partitions: a fresh random split into batches of ``batch_size`` per epoch.

    Returns ``(indices, mask)``, both ``[epochs * B, batch_size]`` with
    ``B = ceil(num_samples / batch_size)``; the last batch of an epoch may be smaller,
    and its empty slots have ``mask == 0``.
    """
    nb = math.ceil(num_samples / batch_size)
    pad = nb * batch_size - num_samples
    perms = jax.vmap(lambda k: jax.random.permutation(k, num_samples))(
        jax.random.split(key, epochs)
    )
    idx = jnp.concatenate([perms, jnp.zeros((epochs, pad), perms.dtype)], axis=1)
    mask = jnp.concatenate([jnp.ones((epochs, num_samples)), jnp.zeros((epochs, pad))], axis=1)
    return idx.reshape(epochs * nb, batch_size), mask.reshape(epochs * nb, batch_size)




@partial(jax.jit, static_argnums=(0, 5, 6, 7, 9))
def _client_steps(model, params, images, labels, key, lr, epochs, batch_size, dp,
                  keep_path=True):
    # keep_path=False returns path=None: the stacked weights of every local step are never
    # built (at U = 500 steps of a 0.4 M-parameter convnet they would take 0.8 GB).
    idx, mask = batch_schedule(key, images.shape[0], epochs=epochs, batch_size=batch_size)
    noise_key = jax.random.fold_in(key, 1)

    def step(p, batch):
        i, m, t = batch
        gradient = None if dp is None else partial(
            privacy.private_gradient, dp=dp, key=jax.random.fold_in(noise_key, t))
        p = objective.sgd_step(model, p, images[i], labels[i], m, lr, gradient=gradient)
        return p, (p if keep_path else None)

    final, path = jax.lax.scan(step, params, (idx, mask, jnp.arange(idx.shape[0])))
    return final, path, idx, mask


class ClientRun(NamedTuple):
    """Everything that happened on a FedAvg client (the server sees only ``params``).

    Attributes:
        params: the final weights θc that are sent to the server.
        path: the weights after each local step, leaves ``[E * B, ...]`` (hidden).
        batches: sample indices of each local step, ``[E, B, batch_size]`` (hidden).
        mask: 1 where a batch slot holds a sample, ``[E, B, batch_size]``.
    """

    params: dict
    path: dict
    batches: jax.Array
    mask: jax.Array


def _check_client_args(model, params, images, labels, lr, epochs, batch_size, who):
    check_batch(model, images, labels, who)
    if int(epochs) < 1 or int(batch_size) < 1:
        raise ValueError(f"{who}: epochs and batch_size must be >= 1, got {epochs}, {batch_size}.")
    if not lr > 0:
        raise ValueError(f"{who}: the learning rate lr must be > 0, got {lr}.")


def client_steps(model: Model, params, images, labels, *, lr: float, epochs: int,
                 batch_size: int, key: jax.Array,
                 dp: privacy.DPSGD | None = None) -> ClientRun:
    """Runs Algorithm 1 and returns the final weights with the hidden intermediate ones."""
    _check_client_args(model, params, images, labels, lr, epochs, batch_size, "fl.client_steps")
    final, path, idx, mask = _client_steps(
        model, params, jnp.asarray(images), jnp.asarray(labels), key,
        float(lr), int(epochs), int(batch_size), dp,
    )
    shape = (int(epochs), -1, int(batch_size))
    return ClientRun(final, path, idx.reshape(shape), mask.reshape(shape))


def client_update(model: Model, params, images, labels, *, lr: float, epochs: int,
                  batch_size: int, key: jax.Array, dp: privacy.DPSGD | None = None):
    """FedAvg's ClientUpdate (Dimitrov et al., TMLR 2022, Algorithm 1).

    For each of ``epochs`` epochs the client splits its data at random into
    ``ceil(N / batch_size)`` batches and takes one SGD step of rate ``lr`` per batch:
    ``θ ← θ - lr · ∇θ CE(f(X_b, θ), Y_b)``. Returns the final weights θc, all the server
    sees. With one epoch and ``batch_size >= N`` this is ``params - lr * gradient(...)``.

    With ``dp=privacy.dp_sgd(C, σ)`` every step is a DP-SGD step instead (per-example
    clipping to norm C, Gaussian noise σ·C); ``privacy.epsilon`` gives the budget.
    """
    _check_client_args(model, params, images, labels, lr, epochs, batch_size, "fl.client_update")
    final, _, _, _ = _client_steps(
        model, params, jnp.asarray(images), jnp.asarray(labels), key,
        float(lr), int(epochs), int(batch_size), dp, False,
    )
    return final


@partial(jax.jit, static_argnums=0)
def _correct(model, params, images, labels):
    return jnp.sum(jnp.argmax(model.apply(params, images), axis=-1) == labels)


def accuracy(model: Model, params, images, labels, *, batch_size: int = 1000) -> float:
    """Share of ``images`` classified as ``labels``."""
    check_batch(model, images, labels, "fl.accuracy")
    if jnp.ndim(labels) == 2:  # label distributions: score against their most likely class
        labels = jnp.argmax(labels, axis=-1)
    n = images.shape[0]
    correct = sum(
        int(_correct(model, params, jnp.asarray(images[i : i + batch_size]),
                     jnp.asarray(labels[i : i + batch_size])))
        for i in range(0, n, batch_size)
    )
    return correct / max(n, 1)


def average(updates: list, sizes) -> dict:
    """FedAvg's aggregation: ``sum_c n_c θc / sum_c n_c`` over the clients' weights."""
    if len(updates) != len(sizes) or not updates:
        raise ValueError(f"average needs one size per update, got {len(updates)} updates and "
                         f"{len(sizes)} sizes.")
    weights = np.asarray(sizes, np.float64) / np.sum(sizes)
    return jax.tree.map(
        lambda *leaves: sum(float(w) * leaf for w, leaf in zip(weights, leaves, strict=True)),
        *updates,
    )


class TrainResult(NamedTuple):
    """Outcome of ``train``: final weights, test accuracy after each round, and the
    privacy budget ε when the clients ran DP-SGD (``None`` otherwise)."""

    params: dict
    accuracy: list[float]
    rounds: int
    epsilon: float | None = None


def _arrays(client):
    if hasattr(client, "images"):
        return client.images, client.labels
    images, labels = client
    return images, labels


def train(model: Model, params, clients, *, rounds: int, clients_per_round: int, lr: float,
          epochs: int, batch_size: int, key: jax.Array, test=None, callback=None,
          dp: privacy.DPSGD | None = None, delta: float = 1e-5, defense=None) -> TrainResult:
    """FedAvg training: the server loop around ``client_update``.

    Args:
        clients: a list of data sets (anything with ``images`` and ``labels``, or pairs).
        rounds: communication rounds.
        clients_per_round: clients sampled (without replacement) each round.
        lr, epochs, batch_size: the clients' local SGD (``epochs=1, batch_size=N`` is FedSGD).
        key: PRNG key; split per round and per client.
        test: optional held-out data set; its accuracy is recorded after every round.
        callback: optional ``callback(round, params, acc)`` called after every round.
        dp: DP-SGD settings for every client's local steps (``privacy.dp_sgd``); then
            ``TrainResult.epsilon`` is the largest ε (at ``delta``) over the clients, for
            the local steps each one actually took.
        defense: optional update defense (anything with ``apply(update, *, key)``, e.g.
            ``defenses.gaussian(σ)`` or a compression): each client sends
            ``θs + defense.apply(θc - θs)`` instead of ``θc``. A defense that depends
            on the client's data (``defenses.soteria``) is passed as a function
            ``make(model, params, images, labels) -> defense``, called per client with
            the round's weights θs and that client's data.
    """
    if not 1 <= clients_per_round <= len(clients):
        raise ValueError(
            f"clients_per_round must be between 1 and the number of clients ({len(clients)}), "
            f"got {clients_per_round}."
        )
    accs = []
    local_steps = np.zeros(len(clients), np.int64)
    for r in range(rounds):
        pick_key, client_key = jax.random.split(jax.random.fold_in(key, r))
        chosen = np.asarray(jax.random.choice(pick_key, len(clients), (clients_per_round,),
                                              replace=False))
        updates, sizes = [], []
        for j, c in enumerate(chosen):
            images, labels = _arrays(clients[int(c)])
            local_key = jax.random.fold_in(client_key, j)
            theta_c = client_update(model, params, images, labels, lr=lr, epochs=epochs,
                                    batch_size=batch_size, key=local_key, dp=dp)
            if defense is not None:
                client_defense = (defense if hasattr(defense, "apply")
                                  else defense(model, params, images, labels))
                sent = client_defense.apply(trees.tree_sub(theta_c, params),
                                            key=jax.random.fold_in(local_key, 2))
                theta_c = trees.tree_add(params, sent)
            updates.append(theta_c)
            sizes.append(len(labels))
            local_steps[int(c)] += epochs * math.ceil(len(labels) / batch_size)
        params = average(updates, sizes)
        acc = accuracy(model, params, *_arrays(test)) if test is not None else float("nan")
        accs.append(acc)
        if callback is not None:
            callback(r, params, acc)
    eps = None
    if dp is not None:
        eps = max(
            privacy.epsilon(dp, sampling_rate=min(1.0, batch_size / len(_arrays(c)[1])),
                            steps=int(n), delta=delta)
            for c, n in zip(clients, local_steps, strict=True)
        )
    return TrainResult(params, accs, rounds, eps)
