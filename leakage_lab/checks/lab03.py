"""Lab 03 (Inverting Gradients): anisotropic total variation (Geiping et al., NeurIPS 2020)."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from leakage_lab.checks._common import (
    CheckFailed,
    _call,
    _close,
    _fail,
    _ok,
    _scalar,
)
from leakage_lab.checks._guard import exercise

__all__ = ["total_variation"]


def _tv_variants(images):
    x = jnp.asarray(images, jnp.float32)
    dy, dx = x[:, 1:] - x[:, :-1], x[:, :, 1:] - x[:, :, :-1]
    db, dc = x[1:] - x[:-1], x[..., 1:] - x[..., :-1]
    both = jnp.concatenate([jnp.ravel(dy), jnp.ravel(dx)])
    return [
        (jnp.sum(jnp.abs(dy)) + jnp.sum(jnp.abs(dx)),
         "that is the SUM of the absolute differences: take the MEAN over each direction "
         "(jnp.mean), so the value does not grow with the image size"),
        (jnp.mean(jnp.abs(dy)), "only the vertical differences (along the height) count: add "
                                "the mean |difference| along the width too"),
        (jnp.mean(jnp.abs(dx)), "only the horizontal differences (along the width) count: add "
                                "the mean |difference| along the height too"),
        (jnp.mean(dy**2) + jnp.mean(dx**2),
         "you squared the differences: that is the squared (L2) variation "
         "(ll.priors.total_variation_squared), which blurs edges. Anisotropic TV takes "
         "their absolute value, jnp.abs"),
        (jnp.mean(jnp.sqrt(dy[:, :, :-1] ** 2 + dx[:, :-1, :] ** 2)),
         "that is the isotropic TV, sqrt(dy² + dx²); the anisotropic one adds the absolute "
         "values of the two directions separately"),
        (jnp.mean(jnp.abs(both)), "that is the mean over both directions pooled together, "
                                  "about half the right value: take the mean of each "
                                  "direction separately, then add the two means"),
        (jnp.mean(dy) + jnp.mean(dx), "the differences were not made positive, so rising and "
                                      "falling edges cancel: take jnp.abs of each difference"),
        (jnp.mean(jnp.abs(db)) + jnp.mean(jnp.abs(dx)),
         "one of your differences runs along axis 0, the batch: images are [N, H, W, C], "
         "so neighbours in the picture differ along axes 1 (height) and 2 (width)"),
        (jnp.mean(jnp.abs(dy)) + jnp.mean(jnp.abs(dc)),
         "one of your differences runs along the last axis, the channels: images are "
         "[N, H, W, C], so neighbours differ along axes 1 (height) and 2 (width)"),
        (jnp.mean(jnp.abs(db)) + jnp.mean(jnp.abs(dy)),
         "your differences run along axes 0 and 1: images are [N, H, W, C], so use axes 1 "
         "(height) and 2 (width); axis 0 is the batch"),
    ]


@exercise(
    forbidden=("leakage_lab.priors.total_variation",),
    allowed=(),
)
def total_variation(fn: Callable) -> None:
    """Checks an implementation of anisotropic total variation (lab 03).

    ``fn(images)`` gets a batch ``[N, H, W, C]`` and should return, like
    ``ll.priors.total_variation`` (Geiping et al., NeurIPS 2020),

        TV(x) = mean |x[:, i+1, j] - x[:, i, j]|  +  mean |x[:, i, j+1] - x[:, i, j]|

    as a scalar JAX can differentiate. Checked on random non-square batches, a constant
    image (0) and a 0/1 checkerboard (2).

    Args:
        fn: the learner's prior.

    Raises:
        CheckFailed: with a hint naming the likely mistake (a sum instead of a mean, one
            direction only, squares, the isotropic form, the wrong axes...).
    """
    from leakage_lab import priors

    name = getattr(fn, "__name__", "your function")
    what = f"{name}(images)"

    flat = jnp.full((2, 5, 7, 3), 0.3)
    value = _scalar(_call(fn, flat, what=what), what)
    if abs(value) > 1e-6:
        _fail(f"{name} gives {value:.4g} for constant images, where nothing varies: it must "
              "be 0. Did you use differences of NEIGHBOURING pixels, x[:, 1:] - x[:, :-1]?")

    for seed, shape in enumerate([(2, 6, 9, 3), (3, 8, 5, 1)]):
        x = jax.random.uniform(jax.random.key(20 + seed), shape)
        got = _scalar(_call(fn, x, what=what), what)
        want = float(priors.total_variation(x))
        if not _close(got, want):
            for variant, hint in _tv_variants(x):
                if _close(got, float(variant)):
                    _fail(f"{name} returned {got:.4g} where {want:.4g} was expected: {hint}.")
            if got < 0:
                _fail(f"{name} returned {got:.4g} < 0: a penalty is never negative; take the "
                      "absolute value of each difference.")
            _fail(f"{name} returned {got:.4g} on random images of shape {list(shape)} where "
                  f"{want:.4g} was expected: compute mean(|x[:, 1:] - x[:, :-1]|) + "
                  "mean(|x[:, :, 1:] - x[:, :, :-1]|).")

    board = (jnp.indices((6, 6)).sum(axis=0) % 2).astype(jnp.float32)[None, :, :, None]
    value = _scalar(_call(fn, board, what=what), what)
    if not _close(value, 2.0):
        _fail(f"{name} gives {value:.4g} for a 0/1 checkerboard, where every neighbour "
              "differs by 1: expected 1 + 1 = 2.")

    x = jax.random.uniform(jax.random.key(30), (2, 6, 9, 3))
    try:
        grad = jax.jit(jax.grad(fn))(x)
    except CheckFailed:
        raise
    except Exception as err:  # noqa: BLE001
        _fail(f"JAX could not differentiate {name} under jit ({type(err).__name__}). Use "
              "jax.numpy (jnp.abs, jnp.mean), and no float() or .item() on the values.")
    if not _close(grad, jax.grad(priors.total_variation)(x)):
        _fail(f"{name} has the right values but the wrong gradient: did you stop the gradient "
              "or round something?")
    _ok(f"{name}: matches ll.priors.total_variation on random batches, 0 on a flat image, 2 on "
        "a checkerboard, and JAX can differentiate it.")
