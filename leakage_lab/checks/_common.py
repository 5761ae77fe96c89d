"""What every lab's self-check shares: the failure type, printing, comparisons, inputs.

A check calls the learner's function through :func:`_call` and differentiates it through
:func:`_grad_or_hint` (an exception becomes a hint), compares with the library through
:func:`_close` / :func:`_trees_close`, and ends with :func:`_fail` (raises
:class:`CheckFailed`, an ``AssertionError`` whose message is the hint) or :func:`_ok`
(prints one line starting with ✓).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import numpy as np

__all__ = ["CheckFailed"]


class CheckFailed(AssertionError):
    """A self-check failed; the message says what went wrong and hints at a fix."""


def _fail(message: str) -> None:
    raise CheckFailed(message)


def _ok(message: str) -> None:
    print(f"✓ {message}")


def _close(a, b, rtol: float = 1e-4, atol: float = 1e-6) -> bool:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return a.shape == b.shape and bool(np.allclose(a, b, rtol=rtol, atol=atol))


def _random_tree(key: jax.Array, scale: float = 1.0) -> dict:
    """A small parameter-like pytree: two layers, four leaves of different shapes."""
    k = jax.random.split(key, 4)
    return {
        "conv": {"w": scale * jax.random.normal(k[0], (3, 3, 2, 4)),
                 "b": scale * jax.random.normal(k[1], (4,))},
        "fc": {"w": scale * jax.random.normal(k[2], (6, 5)),
               "b": scale * jax.random.normal(k[3], (5,))},
    }


def _call(fn: Callable, *args, what: str):
    """Calls the learner's ``fn``; turns an exception into a hint that shows it."""
    try:
        return fn(*args)
    except CheckFailed:  # the guard's hint (a forbidden library call) passes through
        raise
    except Exception as err:  # noqa: BLE001 - any error in the learner's code becomes a hint
        _fail(f"Calling {what} raised {type(err).__name__}: {err}")


def _grad_or_hint(fn: Callable, x, hint: Callable[[Exception], str], *, jit: bool = True,
                  has_aux: bool = False):
    """``jax.grad(fn, has_aux=has_aux)(x)``, under ``jax.jit`` unless ``jit=False``.

    The attacks differentiate the learner's function, so it must be written with jax.numpy;
    if JAX cannot differentiate (or compile) it, the check fails with ``hint(err)``.
    """
    try:
        grad = jax.grad(fn, has_aux=has_aux)
        return (jax.jit(grad) if jit else grad)(x)
    except CheckFailed:  # the guard's hint (a forbidden library call) passes through
        raise
    except Exception as err:  # noqa: BLE001 - any error in the learner's code becomes a hint
        _fail(hint(err))


def _scalar(value, what: str) -> float:
    if value is None:
        _fail(f"{what} returned None: did you forget the `return` statement?")
    shape = np.shape(value)
    if shape != ():
        _fail(
            f"{what} returned an array of shape {list(shape)}, expected a single number: "
            "sum over every entry of every leaf (e.g. jnp.sum per leaf, then add the leaves)."
        )
    return float(value)


def _pairs(a, b) -> list[tuple]:
    """The leaves of two pytrees, paired in order (they must have as many leaves)."""
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    return list(zip(la, lb, strict=True)) if len(la) == len(lb) else []


def _trees_close(a, b, rtol: float = 1e-4, atol: float = 1e-6) -> bool:
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    return len(la) == len(lb) and all(_close(x, y, rtol=rtol, atol=atol)
                                      for x, y in zip(la, lb, strict=True))


def _leafwise(a, b, fn) -> list[float]:
    return [float(fn(x, y)) for x, y in _pairs(a, b)]



_HALF_LOG_2PI = 0.5 * float(np.log(2.0 * np.pi))
"""½·log(2π), the Gaussian's normalising constant per coordinate."""


def _flat(tree) -> np.ndarray:
    """Every leaf of a pytree, raveled and concatenated into one float64 vector."""
    return np.concatenate([np.asarray(leaf, np.float64).ravel() for leaf in jax.tree.leaves(tree)])

