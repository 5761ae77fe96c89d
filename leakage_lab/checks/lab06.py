"""Lab 06 (FedAvg simulation): the client's local SGD loop (Dimitrov et al., TMLR 2022,
Algorithm 1) and SimUpdate, the same steps on an attacker's candidate images as a
``lax.scan`` (Algorithm 2)."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from leakage_lab.checks._common import (
    CheckFailed,
    _call,
    _fail,
    _grad_or_hint,
    _ok,
    _trees_close,
)
from leakage_lab.checks._guard import exercise

__all__ = ["client_update_loop", "sim_update"]


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


# -- SimUpdate: the client's U = E·B steps on the attacker's images, as a lax.scan ---------


def _sim_case(index: int):
    """A small dense network, its weights, candidate images ``[E, B, m, H, W, C]``, their
    labels ``[E, B, m]`` and the client's rate: the check's own, not the lab's."""
    from leakage_lab import models

    rng = np.random.default_rng(600 + index)
    if index == 0:
        model, (epochs, batches, m), lr = models.mlp(num_classes=3, input_shape=(4, 4, 1),
                                                     hidden=(8,)), (2, 3, 2), 0.5
    else:
        model, (epochs, batches, m), lr = models.mlp(num_classes=4, input_shape=(3, 5, 1),
                                                     hidden=(6, 5)), (3, 2, 1), 0.3
    shapes = jax.eval_shape(model.init, jax.random.key(0))
    params = {layer: {k: jnp.asarray(rng.uniform(-0.6, 0.6, leaf.shape), jnp.float32)
                      for k, leaf in leaves.items()} for layer, leaves in shapes.items()}
    images = jnp.asarray(rng.uniform(size=(epochs, batches, m, *model.input_shape)),
                         jnp.float32)
    labels = jnp.asarray(rng.integers(0, model.num_classes, (epochs, batches, m)), jnp.int32)
    target = jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape), jnp.float32),
                          params)
    return model, params, images, labels, lr, target


def _cosine(a, b):
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    dot = sum(jnp.vdot(x, y) for x, y in zip(la, lb, strict=True))
    return dot / jnp.sqrt(sum(jnp.vdot(x, x) for x in la) * sum(jnp.vdot(y, y) for y in lb))


def _sim_reference(model, lr, epochs, batches, with_grad):
    """The library's simulated average update and (``with_grad``) the gradient, with
    respect to the images, of its cosine with a fixed random ``target``: one compiled
    function."""
    from leakage_lab import fedavg

    layout = fedavg.per_batch(epochs, batches)

    def average(params, images, labels):
        final = fedavg.simulate(model, params, images, labels, jnp.ones(labels.shape),
                                lr=lr, layout=layout)
        return jax.tree.map(lambda s, c: (s - c) / (lr * epochs * batches), params, final)

    def reference(params, images, labels, target):
        update = average(params, images, labels)
        if not with_grad:
            return update, None
        grad = jax.grad(lambda x: _cosine(target, average(params, x, labels)))(images)
        return update, grad

    return jax.jit(reference)


def _sim_loop(model, params, images, labels, lr, *, sign=1.0, frozen=False, order=None,
              restart=False, mean=True):
    """Final weights of the client's steps on ``images [E, B, m, ...]`` (plain Python)."""
    from leakage_lab import objective

    epochs, batches = images.shape[:2]
    steps = order if order is not None else [(e, b) for e in range(epochs)
                                             for b in range(batches)]
    theta, finals = params, []
    for i, (e, b) in enumerate(steps):
        if restart and i and e != steps[i - 1][0]:
            finals.append(theta)
            theta = params
        x, y = images[e, b], labels[e, b]
        g = objective.candidate_gradient(model, params if frozen else theta, x, y)
        if not mean:
            g = jax.tree.map(lambda d, n=x.shape[0]: n * d, g)
        theta = jax.tree.map(lambda w, d: w - sign * lr * d, theta, g)
    finals.append(theta)
    return finals


def _sim_variants(model, params, images, labels, lr):
    """(update, hint) for the usual slips in SimUpdate."""
    epochs, batches = images.shape[:2]
    u = epochs * batches

    def avg(theta, scale=lr * u, start=params):
        return jax.tree.map(lambda s, c: (s - c) / scale, start, theta)

    final = _sim_loop(model, params, images, labels, lr)[-1]
    per_epoch = _sim_loop(model, params, images, labels, lr, restart=True)
    transposed = [(e, b) for b in range(batches) for e in range(epochs)]
    backwards = [(e, b) for e in range(epochs) for b in reversed(range(batches))]
    return [
        (final, "it returned the simulated weights θ̃c: return the simulated AVERAGE "
                "UPDATE (θs − θ̃c) / (η U), which is what the server compares with "
                "(θs − θc) / (η U)"),
        (avg(final, scale=1.0), "you forgot to divide by η U: the average update is "
                                "(θs − θ̃c) / (η U), U = E·B"),
        (avg(final, scale=lr), "you divided by η only: divide by η U, U = E·B steps"),
        (avg(final, scale=u), "you divided by U only: divide by η U (η, the client's rate)"),
        (avg(final, scale=lr * batches), "you divided by η B: there are U = E·B steps"),
        (avg(final, scale=lr * epochs), "you divided by η E: there are U = E·B steps"),
        (jax.tree.map(lambda s, c: (c - s) / (lr * u), params, final),
         "the sign is flipped: the average update is (θs − θ̃c) / (η U), the way the "
         "client's steps point down the gradient"),
        (avg(_sim_loop(model, params, images, labels, lr, sign=-1.0)[-1]),
         "the steps go UP the gradient: θ ← θ − η ∇θ CE"),
        (avg(_sim_loop(model, params, images, labels, lr, frozen=True)[-1]),
         "every gradient was taken at θs, so you averaged U gradients instead of stepping: "
         "each step's gradient is taken at the weights the PREVIOUS step left (carry them "
         "through the scan)"),
        (jax.tree.map(lambda *ts: sum(ts) / len(ts),
                      *[avg(t, scale=lr * batches) for t in per_epoch]),
         "you averaged over the E epochs, each started from θs: the epochs run one after "
         "the other, the second starting where the first ended"),
        (avg(per_epoch[-1], scale=lr * batches),
         "only the last epoch counts, started from θs: carry the weights across epochs"),
        (avg(_sim_loop(model, params, images, labels, lr,
                       order=[(0, b) for b in range(batches)])[-1], scale=lr * batches),
         "only the first epoch was simulated: scan over all E·B batches"),
        (avg(_sim_loop(model, params, images, labels, lr, order=transposed)[-1]),
         "the batches ran in the wrong order (epoch index fastest): the client runs batch "
         "0, 1, ..., B−1 of epoch 0, then of epoch 1, ...: reshape images to "
         "[E·B, m, ...] in that order (images.reshape(-1, *images.shape[2:]))"),
        (avg(_sim_loop(model, params, images, labels, lr, order=backwards)[-1]),
         "the batches of each epoch ran backwards: scan them in order b = 0, 1, ..., B−1"),
        (avg(_sim_loop(model, params, images, labels, lr, mean=False)[-1]),
         "each step used the SUM of the batch's losses: the client's loss is the MEAN "
         "cross-entropy over the batch"),
    ]


def _has_loop(jaxpr) -> bool:
    """Whether a traced function contains a scan or while loop (at any depth)."""
    for eqn in jaxpr.eqns:
        if eqn.primitive.name in ("scan", "while"):
            return True
        for value in eqn.params.values():
            inner = getattr(value, "jaxpr", None)
            if inner is not None and _has_loop(getattr(inner, "jaxpr", inner)):
                return True
    return False


@exercise(
    forbidden=(
        "leakage_lab.fedavg.simulate",
        "leakage_lab.fedavg.fedavg_objective",
        "leakage_lab.objective.sgd_step",
        "leakage_lab.fl.client_steps",
        "leakage_lab.fl.client_update",
        "leakage_lab.fl._client_steps",
    ),
    allowed=("leakage_lab.objective.candidate_gradient", "leakage_lab.objective.loss",
             "leakage_lab.objective.masked_gradient"),
)
def sim_update(fn: Callable) -> None:
    """Checks ``fn(model, theta_s, images, labels, lr)``: SimUpdate (lab 06; Dimitrov et
    al., TMLR 2022, Algorithms 1 and 2).

    ``images`` ``[E, B, m, H, W, C]`` are the attacker's candidate images, batch ``b`` of
    epoch ``e``, and ``labels`` ``[E, B, m]`` their classes. ``fn`` should run the
    client's ``U = E·B`` local SGD steps from ``theta_s``, in the order epoch 0 batch 0,
    1, ..., B−1, then epoch 1, ..., each ``θ ← θ − η ∇θ mean CE(f(X_{e,b}; θ), Y_{e,b})``
    as one ``jax.lax.scan`` over the batches, and return the simulated average update

        (θs − θ̃c) / (η U)

    differentiable with respect to the images through every step. Compared with
    ``ll.fedavg.simulate`` (the ``per_batch`` layout) on two small networks of the check's
    own, in value and in the gradient with respect to the images of the update's cosine
    with a random direction.

    Args:
        fn: the learner's SimUpdate.

    Raises:
        CheckFailed: with a hint (the weights instead of the average update, a missing
            division by η U, a flipped sign, gradients all taken at θs, epochs averaged
            or restarted, the wrong batch order, a stopped gradient, no scan...).
    """
    name = getattr(fn, "__name__", "your function")
    what = f"{name}(model, theta_s, images, labels, lr)"
    for case in range(2):
        model, params, images, labels, lr, target = _sim_case(case)
        epochs, batches = images.shape[:2]
        want, want_grad = _sim_reference(model, lr, epochs, batches, case == 0)(
            params, images, labels, target)

        def both(x, p=params, y=labels, m=model, r=lr, t=target):
            update = fn(m, p, x, y, r)
            return _cosine(t, update), update

        got, grad = None, None
        if case == 0:   # value and gradient compiled together (fast); as written if that fails
            try:
                grad, got = jax.jit(jax.grad(both, has_aux=True))(images)
            except CheckFailed:
                raise
            except Exception:  # noqa: BLE001 - rerun as written: its own error is the hint
                grad, got = None, None
        if got is None:
            got = _call(fn, model, params, images, labels, lr, what=what)
        if got is None:
            _fail(f"{name} returned None: did you forget to return the average update?")
        if jax.tree.structure(got) != jax.tree.structure(params):
            _fail(f"{name} should return the simulated average update, a pytree shaped like "
                  f"theta_s ({jax.tree.structure(params)}), got {type(got).__name__}: not the "
                  "scan's stacked outputs or a loss.")
        if not _trees_close(got, want, rtol=2e-4, atol=1e-5):
            if case == 1:
                _fail(f"{name} is right for one client but not for another (E = {epochs}, "
                      f"B = {batches}, m = {images.shape[2]}): is a size, E or B hard-coded?")
            for value, hint in _sim_variants(model, params, images, labels, lr):
                if _trees_close(got, value, rtol=2e-4, atol=1e-5):
                    _fail(f"{name} does not return SimUpdate's average update: {hint}.")
            _fail(f"{name} does not match ll.fedavg.simulate (E = {epochs}, B = {batches}, "
                  f"m = {images.shape[2]}, η = {lr}): scan over the E·B batches in order, "
                  "step θ ← θ − η ∇θ mean CE at the current weights, and return "
                  "(θs − θ̃c) / (η U).")
        try:
            jaxpr = jax.make_jaxpr(lambda x, p=params, y=labels, m=model, r=lr:
                                   fn(m, p, x, y, r))(images)
        except CheckFailed:
            raise
        except Exception as err:  # noqa: BLE001
            _fail(f"JAX could not trace {name} ({type(err).__name__}: {str(err)[:120]}): the "
                  "attack differentiates it, so use jax.numpy and jax.lax.scan, with no "
                  "float(), .item() or numpy on the images or the weights.")
        if not _has_loop(jaxpr.jaxpr):
            _fail(f"{name} gives the right update, but without a jax.lax.scan: a Python loop "
                  f"unrolls all U = {epochs * batches} steps into the traced program, so "
                  "compiling it (and its gradient) grows with U. Write the steps as "
                  "jax.lax.scan(step, theta_s, (batches_of_images, batches_of_labels)).")
        if case:   # the gradient is checked on the first client
            continue
        if grad is None:
            grad, _ = _grad_or_hint(both, images, lambda err: (
                f"JAX could not differentiate {name} with respect to the images "
                f"({type(err).__name__}: {str(err)[:120]})."), jit=False, has_aux=True)
        if not _trees_close(grad, want_grad, rtol=2e-3, atol=1e-6):
            late = np.abs(np.asarray(grad[:, :-1] if batches > 1 else grad[:-1]))
            vanished = float(late.max()) < 1e-9 * max(float(np.abs(want_grad).max()), 1e-30)
            _fail(f"{name} has the right update but the wrong gradient with respect to the "
                  "images" + (" (it vanishes for every batch but the last)" if vanished
                              else "") + ": the attack differentiates through ALL the "
                  "steps. No jax.lax.stop_gradient on the weights the scan carries.")
    _ok(f"{name}: the same average update as ll.fedavg.simulate for two clients, as a "
        "lax.scan, and the same gradient with respect to every candidate image through "
        "all U steps.")
