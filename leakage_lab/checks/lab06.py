"""Lab 06 (FedAvg simulation): the client's local SGD loop (Dimitrov et al., Algorithm 1)."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from leakage_lab.checks._common import (
    _call,
    _fail,
    _ok,
    _trees_close,
)
from leakage_lab.checks._guard import exercise

__all__ = ["client_update_loop"]


def _tiny_client(seed: int, num_samples: int):
    """A small dense network and a client of ``num_samples`` random 4x4 images."""
    from leakage_lab import models

    model = models.mlp(num_classes=3, input_shape=(4, 4, 1), hidden=(8,))
    params = model.init(jax.random.key(70 + seed))
    images = jax.random.uniform(jax.random.key(80 + seed), (num_samples, 4, 4, 1))
    labels = jnp.arange(num_samples, dtype=jnp.int32) % 3
    return model, params, images, labels


def _sgd(model, params, images, labels, steps, lr, *, frozen: bool = False):
    """One SGD step per row of ``steps`` (sample indices); ``frozen``: every gradient at θs."""
    from leakage_lab import fl

    p = params
    for idx in steps:
        idx = np.asarray(idx)
        g = fl.gradient(model, params if frozen else p, images[idx], labels[idx])
        p = jax.tree.map(lambda w, d: w - lr * d, p, g)
    return p


def _client_loop_variants(model, params, images, labels, batches, lr):
    """(result, hint) for the usual slips in FedAvg's client loop (Algorithm 1)."""
    epochs, per_epoch, _ = batches.shape
    steps = batches.reshape(-1, batches.shape[-1])
    everything = np.tile(np.arange(len(labels)), (len(steps), 1))

    def run(rows, rate=lr, frozen=False, start=params):
        return _sgd(model, start, images, labels, rows, rate, frozen=frozen)

    return [
        (params, "it returned the server's weights θs unchanged: inside the loop, assign the "
                 "new weights (params = params - lr * grad) and return them at the end"),
        (run(steps, rate=-lr), "the sign is flipped: SGD walks DOWN the gradient, θ ← θ − η ∇θ CE"),
        (run(steps, frozen=True),
         "every gradient was taken at the server's weights θs. The client computes each "
         "step's gradient at the weights left by the PREVIOUS step; that drift is exactly "
         "what the server cannot see"),
        (jax.tree.map(lambda s, c: s - (s - c) / len(steps), params,
                      run(steps, frozen=True)),
         "that is ONE step with the average gradient at θs (FedSGD's update). FedAvg takes "
         "U = E·B steps, each on one batch, each at the current weights"),
        (run(steps[:per_epoch]), "only the first epoch's steps were taken: loop over all E "
                                 "epochs (batches has shape [E, B, m])"),
        (run(steps[-per_epoch:]), "only the last epoch counts: did you restart from params "
                                  "at the start of every epoch? Carry the weights over"),
        (run(steps[-1:]), "only one step was taken (the last batch): take one step per batch "
                          "of every epoch"),
        (run(everything), "every step used all the client's images: a step uses only the "
                          "images of its batch, images[batch] and labels[batch]"),
        (run(everything[:epochs]), "that is one full-data step per epoch (E steps); FedAvg "
                                   "takes one step per batch, E·B in all"),
        (run(steps, rate=1.0), "the learning rate is missing: multiply the gradient by lr"),
    ]


@exercise(
    forbidden=(
        "leakage_lab.fl.client_steps",
        "leakage_lab.fl.client_update",
        "leakage_lab.fl._client_steps",
        "leakage_lab.objective.sgd_step",
        "leakage_lab.fedavg.simulate",
    ),
    allowed=("leakage_lab.fl.gradient", "leakage_lab.objective.masked_gradient"),
)
def client_update_loop(fn: Callable) -> None:
    """Checks ``fn(model, params, images, labels, batches, lr)``: FedAvg's client (lab 06).

    ``batches`` is an int array ``[E, B, m]``: the sample indices of batch ``b`` of epoch
    ``e``. ``fn`` should run Algorithm 1 of Dimitrov et al. (TMLR 2022) on those batches,

        for e in 1..E:  for b in 1..B:  θ ← θ − η ∇θ CE(f(X[batches[e, b]]; θ), Y[batches[e, b]])

    starting from ``params`` (θs), and return the final weights θc, a pytree like
    ``params``. It must equal ``ll.fl.client_steps(...).params`` run with the same batches.

    Args:
        fn: the learner's function.

    Raises:
        CheckFailed: with a hint (all gradients taken at θs, one averaged step, a flipped
            sign, one epoch only, the whole data in every step, lr forgotten...).
    """
    from leakage_lab import fl

    name = getattr(fn, "__name__", "your function")
    what = f"{name}(model, params, images, labels, batches, lr)"
    for case, (n, epochs, m, lr) in enumerate(((6, 2, 3, 0.5), (8, 3, 2, 0.3))):
        model, params, images, labels = _tiny_client(case, n)
        run = fl.client_steps(model, params, images, labels, lr=lr, epochs=epochs,
                              batch_size=m, key=jax.random.key(90 + case))
        batches = np.asarray(run.batches)
        got = _call(fn, model, params, images, labels, batches.copy(), lr, what=what)
        if got is None:
            _fail(f"{name} returned None: did you forget to return the final weights?")
        if jax.tree.structure(got) != jax.tree.structure(params):
            _fail(f"{name} should return the final weights, a pytree shaped like params "
                  f"({jax.tree.structure(params)}), got {type(got).__name__}: return the "
                  "weights after the last step, not a list of steps or a loss.")
        if _trees_close(got, run.params):
            continue
        if case == 1:
            _fail(f"{name} is right for one client but not for another (N = {n}, E = "
                  f"{epochs}, m = {m}): is a size or the number of epochs hard-coded?")
        for value, hint in _client_loop_variants(model, params, images, labels, batches, lr):
            if _trees_close(got, value):
                _fail(f"{name} does not return the client's weights θc: {hint}.")
        _fail(f"{name} does not match ll.fl.client_steps on the same batches (N = {n}, "
              f"E = {epochs}, m = {m}, lr = {lr}): for every epoch e and batch b, compute "
              "the gradient of the mean loss on images[batches[e, b]] at the CURRENT "
              "weights and step θ ← θ − lr · grad.")
    _ok(f"{name}: the same θc as ll.fl.client_steps for two clients. The U = E·B "
        "intermediate weights it walked through never leave the client.")
