"""One optimisation engine that every attack runs on.

An attack is a loss over *variables* (a pytree: dummy images, perhaps label logits),
given fixed *data* (the observed update, the weights). The engine minimises it with an
optax optimiser in jitted chunks of up to ``chunk`` steps (a ``lax.while_loop``), and
between chunks hands a :class:`Frame` to an optional callback, so a widget can animate
the reconstruction while the same code runs on CPU or GPU.

It keeps the iterate with the lowest loss, stops early once the loss falls to ``tol``
or the images stop moving (``xtol``), and stops on a non-finite loss, keeping the best
iterate so far and saying so.

:func:`run_attack` is the one restart loop of every attack: attempt ``i`` splits
``fold_in(key, i)`` into a start key and a spare key and starts from
``init(start_key, shape)`` (the same key gives the same start in every attack),
and the attempt with the lowest loss of the attack's own objective wins; the truth is
never consulted. :class:`AttackResult` is the one result type.

    >>> import optax, jax.numpy as jnp
    >>> out = minimize(lambda v, d: jnp.sum((v["images"] - d) ** 2), {"images": jnp.zeros(2)},
    ...                jnp.ones(2), optax.sgd(0.25), steps=40, tol=1e-6)
    >>> out.status, round(float(out.variables["images"][0]), 3)
    ('converged', 1.0)
"""

from __future__ import annotations

import collections
import time
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from leakage_lab._validate import check_restarts

__all__ = ["AttackResult", "Frame", "attack_result", "minimize", "run_attack",
           "start_images"]

RUNNING, CONVERGED, NONFINITE, STATIONARY = 0, 1, 2, 3


class Frame(NamedTuple):
    """A snapshot handed to the callback between chunks.

    Attributes:
        step: optimiser steps taken so far.
        loss: the attack's loss at the current iterate.
        best_loss: lowest loss seen so far.
        images: the current reconstruction (numpy, clipped to [0, 1]).
        total_steps: the step budget.
    """

    step: int
    loss: float
    best_loss: float
    images: np.ndarray
    total_steps: int


class AttackResult(NamedTuple):
    """The result of every attack (``dlg``, ``reconstruct``, ``bayes``, ``fedavg``).

    Attributes:
        images: the reconstruction (best iterate by the attack's own loss), ``[N, H, W, C]``.
        labels: int ``[N]``, the class of each image: the given (or assumed) labels, or,
            when the attack optimised them (DLG without labels), the most likely class
            of the recovered distribution ``soft_labels``.
        losses: the attack's loss at every step run (of the winning attempt).
        best_loss: loss of the returned iterate.
        best_step: step at which it was reached.
        steps: steps run (fewer than asked when it converged or stopped).
        status: ``"converged"``, ``"budget"`` (ran all steps) or ``"non-finite"``.
        message: one sentence saying how the run ended.
        frames: snapshots taken between chunks (for scrubbing through the run).
        seconds: wall time of the optimisation over all attempts, compilation excluded.
        compile_seconds: time spent compiling (0 when the compiled code was reused).
        soft_labels: DLG's recovered label distributions ``[N, K]`` (``None`` when the
            labels were not optimised).
        epoch_images: FedAvg: the reconstruction of every copy of the client's images,
            ``[copies, N, H, W, C]`` before MatchEpoch (``None`` for the other attacks).
        batch_labels: FedAvg: int ``[clients, S, n]``, the attacker's split of the labels
            into the batches of one simulated epoch.
        mask: FedAvg: ``[clients, S, n]``, 1 where a batch slot holds an image.
        attempt: which attempt (restart) won.
        variables: the optimised variables as the engine returned them (the images and,
            for DLG, the label logits); ``None`` once an attack has built its result.
    """

    images: np.ndarray
    labels: np.ndarray
    losses: np.ndarray
    best_loss: float
    best_step: int
    steps: int
    status: str
    message: str
    frames: list[Frame]
    seconds: float
    compile_seconds: float
    soft_labels: np.ndarray | None = None
    epoch_images: np.ndarray | None = None
    batch_labels: np.ndarray | None = None
    mask: np.ndarray | None = None
    attempt: int = 0
    variables: Any = None


def _images(variables):
    return variables["images"]


def attack_result(outcome: AttackResult, labels, *, images=None, **extra) -> AttackResult:
    """An attack's result from the engine's outcome: the best images, with ``labels``.

    ``images`` replaces the variables' images (FedAvg's matched ones); ``extra`` fills
    the optional fields (``soft_labels``, ``epoch_images``, ...).
    """
    images = outcome.variables["images"] if images is None else images
    return outcome._replace(images=np.asarray(images), labels=np.asarray(labels, np.int32),
                            variables=None, **extra)


def start_images(init: Callable, key: jax.Array, shape, who: str) -> jax.Array:
    """``init(key, shape)`` as float32, checked to have ``shape``."""
    images = jnp.asarray(init(key, tuple(shape)), jnp.float32)
    if tuple(images.shape) != tuple(shape):
        raise ValueError(f"{who}: init returned shape {list(images.shape)}, expected "
                         f"{list(shape)}.")
    return images


def run_attack(attempt: Callable, *, init: Callable, shape, key: jax.Array, restarts: int,
               who: str, tol: float | None = None) -> tuple[AttackResult, int]:
    """The one restart loop every attack runs on.

    Attempt ``i`` splits ``fold_in(key, i)`` into ``(start, spare)``, starts from
    ``images = init(start, shape)`` and runs ``attempt(images, spare) -> AttackResult`` (the
    spare key for anything else the attempt draws: DLG's label logits, Bayes'
    Monte-Carlo offsets). The attempt
    with the lowest ``best_loss`` wins (the truth is never consulted); once one
    converges to ``tol`` or below the rest are skipped. ``restarts`` must be an int >= 1.

    Returns ``(outcome, index)``: the winner, with ``seconds`` and ``compile_seconds``
    summed over all attempts, and its index.
    """
    restarts = check_restarts(restarts, who)
    best, index, seconds, compile_seconds = None, 0, 0.0, 0.0
    for i in range(int(restarts)):
        start, spare = jax.random.split(jax.random.fold_in(key, i))
        out = attempt(start_images(init, start, shape, who), spare)
        seconds += out.seconds
        compile_seconds += out.compile_seconds
        if best is None or out.best_loss < best.best_loss:
            best, index = out, i
        if tol is not None and out.status == "converged" and out.best_loss <= tol:
            break
    return best._replace(seconds=seconds, compile_seconds=compile_seconds), index


class _State(NamedTuple):
    variables: Any
    opt_state: Any
    best_variables: Any
    best_loss: jax.Array
    best_step: jax.Array
    step: jax.Array
    losses: jax.Array
    count: jax.Array
    status: jax.Array
    anchor: jax.Array      # the images at the last window boundary (for xtol)


def _uses_linesearch(opt_state) -> bool:
    """True for optimisers that keep a line search's last value and gradient in their state."""
    try:
        return optax.tree_utils.tree_get(opt_state, "value") is not None
    except (KeyError, ValueError):
        return False


def _make_chunk(loss_fn, optimizer, project, to_images, window, linesearch):
    """Builds the jitted function that runs up to ``limit`` optimiser steps."""

    def run_chunk(state: _State, data, limit, tol, xtol):
        def value(v):
            return loss_fn(v, data)

        def body(s: _State) -> _State:
            if linesearch:
                loss, grad = optax.value_and_grad_from_state(value)(s.variables,
                                                                    state=s.opt_state)
            else:
                loss, grad = jax.value_and_grad(value)(s.variables)
            finite = jnp.isfinite(loss)
            better = finite & (loss < s.best_loss)
            best = jax.tree.map(lambda a, b: jnp.where(better, a, b), s.variables,
                                s.best_variables)
            updates, opt_state = optimizer.update(
                grad, s.opt_state, s.variables, value=loss, grad=grad, value_fn=value
            )
            variables = optax.apply_updates(s.variables, updates)
            if project is not None:
                variables = project(variables)
            # Every ``window`` steps: have the images moved at all since the last check?
            images = to_images(variables)
            boundary = (s.step + 1) % window == 0
            moved = jnp.sqrt(jnp.mean((images - s.anchor) ** 2)) / window
            anchor = jnp.where(boundary, images, s.anchor)
            status = jnp.select(
                [~finite, loss <= tol, boundary & (moved <= xtol)],
                [NONFINITE, CONVERGED, STATIONARY], RUNNING,
            )
            # A step that failed or converged leaves the iterate where it was.
            keep = (status == NONFINITE) | (status == CONVERGED)
            variables = jax.tree.map(lambda a, b: jnp.where(keep, a, b), s.variables, variables)
            return _State(
                variables, opt_state, best,
                jnp.where(better, loss, s.best_loss), jnp.where(better, s.step, s.best_step),
                s.step + jnp.where(keep, 0, 1), s.losses.at[s.count].set(loss), s.count + 1,
                status, anchor,
            )

        state = state._replace(count=jnp.zeros((), jnp.int32),
                               losses=jnp.full_like(state.losses, jnp.nan))
        return jax.lax.while_loop(
            lambda s: (s.count < limit) & (s.status == RUNNING), body, state
        )

    return jax.jit(run_chunk)


_COMPILED: collections.OrderedDict = collections.OrderedDict()
_COMPILED_MAX = 64   # compiled chunks kept (least recently used ones are dropped)


def _signature(tree):
    leaves, treedef = jax.tree.flatten(tree)
    return treedef, tuple((jnp.shape(x), jnp.result_type(x)) for x in leaves)


def _compiled_chunk(loss_fn, optimizer, project, to_images, window, state, data, args):
    """Compiles (once per loss, optimiser and shapes) and returns (executable, seconds)."""
    key = (loss_fn, optimizer, project, to_images, window, _signature(state), _signature(data))
    if key in _COMPILED:
        _COMPILED.move_to_end(key)
        return _COMPILED[key], 0.0
    start = time.perf_counter()
    jitted = _make_chunk(loss_fn, optimizer, project, to_images, window,
                         _uses_linesearch(state.opt_state))
    compiled = jitted.lower(state, data, *args).compile()
    _COMPILED[key] = compiled
    while len(_COMPILED) > _COMPILED_MAX:
        _COMPILED.popitem(last=False)
    return compiled, time.perf_counter() - start


def minimize(loss_fn: Callable, variables, data, optimizer: optax.GradientTransformation, *,
             steps: int, chunk: int = 50, tol: float = 0.0, xtol: float = 0.0,
             window: int = 25, project: Callable | None = None,
             to_images: Callable = _images, callback: Callable | None = None,
             keep: str = "best") -> AttackResult:
    """Minimises ``loss_fn(variables, data)`` over ``variables`` with ``optimizer``.

    Args:
        loss_fn: ``(variables, data) -> scalar``. Pass the same function object to reuse
            the compiled code (the attacks keep theirs in a cache).
        variables: the initial pytree to optimise.
        data: a pytree of fixed arrays (observed update, weights, labels...).
        optimizer: an optax transformation. Line-search optimisers (``optax.lbfgs``)
            get the loss function and reuse the line search's last value and gradient.
        steps: the step budget.
        chunk: steps per jitted call; the callback runs between chunks.
        tol: stop once the loss is at or below this value.
        xtol: stop once the images moved, over the last ``window`` steps, by at most
            ``xtol`` per step (root-mean-square over pixels): the run has settled.
        project: optional map applied after each step (e.g. clip images to [0, 1]).
        to_images: extracts the images from ``variables`` for frames.
        callback: ``callback(frame)`` after each chunk, and once at the start.
        keep: which iterate to return: ``"best"`` (lowest loss seen) or ``"last"`` (where
            the run ended; its loss is the last step's). ``"last"`` suits a decayed
            sign step, whose loss can dip early at a poor image and end higher at a
            better one. A non-finite loss always returns the best iterate.
    """
    if keep not in ("best", "last"):
        raise ValueError(f"keep must be 'best' or 'last', got {keep!r}.")
    if steps < 1 or chunk < 1:
        raise ValueError(f"steps and chunk must be >= 1, got steps={steps}, chunk={chunk}.")
    chunk = min(chunk, steps)
    variables = jax.tree.map(jnp.asarray, variables)
    inf = jnp.asarray(jnp.inf, jnp.float32)
    zero = jnp.zeros((), jnp.int32)
    state = _State(variables, optimizer.init(variables), variables, inf, zero, zero,
                   jnp.zeros((chunk,), jnp.float32), zero, zero, to_images(variables))
    limit = jnp.asarray(chunk, jnp.int32)
    if project is not None and _uses_linesearch(state.opt_state):
        raise ValueError(
            "project= cannot be combined with a line-search optimiser such as L-BFGS: the "
            "line search's values belong to the unprojected point. Use a first-order "
            "optimiser (e.g. optax.adam) with project=, or put a penalty in the loss."
        )
    tols = (jnp.asarray(tol, jnp.float32), jnp.asarray(xtol, jnp.float32))
    run, compile_seconds = _compiled_chunk(loss_fn, optimizer, project, to_images, int(window),
                                           state, data, (limit, *tols))

    def frame(s, loss):
        images = np.clip(np.asarray(to_images(s.variables)), 0.0, 1.0)
        return Frame(int(s.step), loss, float(s.best_loss), images, steps)

    frames = [frame(state, float("nan"))]
    if callback is not None:
        callback(frames[0])
    losses: list[np.ndarray] = []
    start = time.perf_counter()
    done = 0
    while done < steps:
        limit = jnp.asarray(min(chunk, steps - done), jnp.int32)
        state = run(state, data, limit, *tols)
        count = int(state.count)
        chunk_losses = np.asarray(state.losses[:count])
        losses.append(chunk_losses)
        done += count
        status = int(state.status)
        if (status != RUNNING or done >= steps) and (keep == "best" or status == NONFINITE):
            # The last frame shows the iterate that is returned: the best one.
            state = state._replace(variables=state.best_variables)
        frames.append(frame(state, float(chunk_losses[-1]) if count else float("nan")))
        if callback is not None:
            callback(frames[-1])
        if status != RUNNING:
            break
    seconds = time.perf_counter() - start
    losses_arr = np.concatenate(losses) if losses else np.zeros(0, np.float32)
    best_loss, best_step = float(state.best_loss), int(state.best_step)
    returned = state.best_variables
    if keep == "last" and status != NONFINITE and len(losses_arr):
        returned, best_loss, best_step = state.variables, float(losses_arr[-1]), done - 1
    if status == NONFINITE:
        name = "non-finite"
        message = (f"Stopped: the loss became non-finite at step {done - 1}; kept the best "
                   f"iterate (step {best_step}, loss {best_loss:.3g}).")
        warnings.warn(message, RuntimeWarning, stacklevel=3)
    elif status == CONVERGED:
        name = "converged"
        message = f"Converged: loss {best_loss:.3g} <= tol {tol:g} after {best_step} steps."
    elif status == STATIONARY:
        name = "converged"
        message = (f"Converged: the images settled (moved <= {xtol:g} per step over the last "
                   f"{window} steps) after {done} steps; best loss {best_loss:.3g}.")
    else:
        name = "budget"
        message = f"Ran all {done} steps; best loss {best_loss:.3g} at step {best_step}."
    return AttackResult(images=None, labels=None, losses=losses_arr, best_loss=best_loss,
                        best_step=best_step, steps=done, status=name, message=message,
                        frames=frames, seconds=seconds, compile_seconds=compile_seconds,
                        variables=returned)
