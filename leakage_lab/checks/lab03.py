"""Lab 03 (Inverting Gradients, Geiping et al., NeurIPS 2020): total variation (a warm-up),
the attack's objective (cosine distance + α·TV) and its step (Adam on the gradient's sign,
then the projection onto the box [0, 1])."""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from leakage_lab.checks._common import (
    CheckFailed,
    _call,
    _close,
    _fail,
    _grad_or_hint,
    _ok,
    _scalar,
)
from leakage_lab.checks._guard import exercise

__all__ = ["ig_step", "inverting_objective", "total_variation"]


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
    grad = _grad_or_hint(fn, x, lambda err: (
        f"JAX could not differentiate {name} under jit ({type(err).__name__}). Use "
        "jax.numpy (jnp.abs, jnp.mean), and no float() or .item() on the values."))
    if not _close(grad, jax.grad(priors.total_variation)(x)):
        _fail(f"{name} has the right values but the wrong gradient: did you stop the gradient "
              "or round something?")
    _ok(f"{name}: matches ll.priors.total_variation on random batches, 0 on a flat image, 2 on "
        "a checkerboard, and JAX can differentiate it.")


# -- the objective: 1 - cos(g, ∇θ L(x', y)) + α TV(x') ------------------------------------


def _numpy_params(model, rng):
    """Weights shaped like ``model.init``'s, drawn with numpy (``init`` compiles for
    seconds): uniform in ±1/sqrt(fan_in), as PyTorch's default."""
    shapes = jax.eval_shape(model.init, jax.random.key(0))
    return {layer: {k: jnp.asarray(rng.uniform(-1, 1, leaf.shape)
                                   / np.sqrt(np.prod(leaf.shape[:-1]) if leaf.ndim > 1
                                             else leaf.shape[0]), jnp.float32)
                    for k, leaf in leaves.items()}
            for layer, leaves in shapes.items()}


def _objective_case(index: int):
    """A small network, its weights, an observed update, candidate images and labels.

    Two dense networks of different shapes and depths, neither the lab's, so that
    nothing tuned to the lab's digits carries over.
    """
    from leakage_lab import models

    rng = np.random.default_rng(300 + index)
    if index == 0:
        model, n = models.mlp(num_classes=4, input_shape=(6, 7, 1), hidden=(9,)), 2
    else:
        model, n = models.mlp(num_classes=3, input_shape=(5, 4, 2), hidden=(7, 6)), 3
    params = _numpy_params(model, rng)
    truth = jnp.asarray(rng.uniform(size=(n, *model.input_shape)), jnp.float32)
    labels = jnp.asarray(rng.integers(0, model.num_classes, n), jnp.int32)
    candidate = jnp.asarray(rng.uniform(size=(n, *model.input_shape)), jnp.float32)
    return model, params, truth, candidate, labels


WEIGHTS = (0.0, 0.3, 2.0)
"""The TV weights the objective is checked at."""


@functools.lru_cache(maxsize=4)
def _objective_reference(model):
    """One compiled function: the observed update, the candidate's gradient, the library's
    objective at every weight and its gradient with respect to the images."""
    from leakage_lab import inverting, objective

    def reference(params, truth, candidate, labels):
        update = objective.candidate_gradient(model, params, truth, labels)
        cand_grad = objective.candidate_gradient(model, params, candidate, labels)
        values = [inverting.inverting_objective(model, params, update, candidate, labels,
                                                prior_weight=w) for w in WEIGHTS]
        grad = jax.grad(lambda x: inverting.inverting_objective(
            model, params, update, x, labels, prior_weight=0.3))(candidate)
        return update, cand_grad, jnp.stack(values), grad

    return jax.jit(reference)


def _leaves(tree) -> list:
    return [jnp.asarray(leaf, jnp.float32) for leaf in jax.tree.leaves(tree)]


def _objective_variants(update, cand_grad, tv, weight):
    """(value, hint) for the usual slips in Inverting Gradients' objective."""
    g, c = _leaves(update), _leaves(cand_grad)
    dot = sum(jnp.vdot(a, b) for a, b in zip(g, c, strict=True))
    gg = sum(jnp.vdot(a, a) for a in g)
    cc = sum(jnp.vdot(b, b) for b in c)
    sim = dot / (jnp.sqrt(gg) * jnp.sqrt(cc))
    l2 = sum(jnp.sum((a - b) ** 2) for a, b in zip(g, c, strict=True))
    per_layer = [jnp.vdot(a, b) / (jnp.linalg.norm(a) * jnp.linalg.norm(b) + 1e-12)
                 for a, b in zip(g, c, strict=True)]
    w, t = weight, tv
    return [
        (1 + sim + w * t, "you added the cosine similarity (1 + cos): the attack would push the "
                          "candidate's gradient AWAY from the observed one. The distance is "
                          "1 − cos, which is 0 when the directions agree"),
        (sim + w * t, "you return +cos, the similarity: minimising it pushes the candidate's "
                      "gradient away from the observed one. The distance is 1 − cos"),
        (-sim + w * t, "you return −cos: the right direction, but the objective is "
                       "1 − cos (0 at a perfect match, never negative); add the 1"),
        (1 - sim, "the total variation is missing: add tv_weight × TV(images)"),
        (1 - sim + t, "TV is added without its weight: multiply it by tv_weight"),
        (w * (1 - sim) + t, "the weight multiplies the wrong term: it is 1 − cos + "
                            "tv_weight × TV(images)"),
        (l2 + w * t, "that is the squared L2 distance ||g − g'||² (DLG's), not the cosine "
                     "distance. L2 depends on the update's scale: a client that scales its "
                     "update by 10 would change it, the cosine would not"),
        (1 - dot + w * t, "that is 1 minus the plain inner product <g, g'>: divide it by "
                          "both norms, ||g|| ||g'||, to get the cosine"),
        (1 - dot / gg + w * t, "you divided the inner product by ||g||², the observed "
                               "norm only: divide by ||g|| ||g'||"),
        (1 - dot / cc + w * t, "you divided the inner product by ||g'||², the candidate's "
                               "norm only: divide by ||g|| ||g'||"),
        (1 - jnp.mean(jnp.stack(per_layer)) + w * t,
         "that is the mean of the per-layer cosines: Inverting Gradients takes ONE cosine "
         "over all layers together (sum the inner products and the squared norms over "
         "every leaf first)"),
        (len(per_layer) - sum(per_layer) + w * t,
         "that is a sum of per-layer cosine distances: Inverting Gradients takes ONE cosine "
         "over all layers together (sum the inner products and the squared norms over "
         "every leaf first)"),
        (1 - sim ** 2 + w * t, "you squared the cosine: the distance is 1 − cos, not 1 − cos²"),
        (1 - sim + w * t * 1e4, "your TV seems to be a sum, not a mean: use the mean over "
                                "each direction (lab 03's warm-up)"),
    ]


@exercise(
    forbidden=(
        "leakage_lab.inverting.inverting_objective",
        "leakage_lab.inverting.reconstruct",
        "leakage_lab.distances.cosine",
        "leakage_lab.distances._cosine_from_inner_products",
        "leakage_lab.trees.tree_vdot",
    ),
    allowed=(
        "leakage_lab.objective.candidate_gradient",
        "leakage_lab.objective.loss",
        "leakage_lab.priors.total_variation",
    ),
)
def inverting_objective(fn: Callable) -> None:
    """Checks ``fn(model, params, update, images, labels, tv_weight)``: Inverting Gradients'
    objective (lab 03; Geiping et al., NeurIPS 2020).

    It should return, as a scalar JAX can differentiate with respect to ``images``,

        1 − <g, g'> / (||g|| ||g'||)  +  tv_weight · TV(images),   g' = ∇θ L(images, labels)

    where ``g`` is the observed ``update``, ``g'`` the candidate's gradient of the mean
    cross-entropy at ``params``, and the inner product and the norms run over all layers
    together: ``ll.inverting.inverting_objective(..., prior_weight=tv_weight)``. Checked on
    two small networks of the check's own (not the lab's), three TV weights, an update
    scaled by 10 (the cosine must not notice), and the gradient with respect to the images.

    Args:
        fn: the learner's objective.

    Raises:
        CheckFailed: with a hint (1 + cos or −cos, TV or its weight forgotten, L2 instead
            of the cosine, one norm only, per-layer cosines, a stopped gradient...).
    """
    from leakage_lab import priors

    name = getattr(fn, "__name__", "your function")
    what = f"{name}(model, params, update, images, labels, tv_weight)"
    for case in range(2):
        model, params, truth, images, labels = _objective_case(case)
        update, cand_grad, wants, want_grad = _objective_reference(model)(params, truth,
                                                                          images, labels)
        tv = float(priors.total_variation(images))

        def call(upd, weight, model=model, params=params, images=images, labels=labels):
            return fn(model, params, upd, images, labels, weight)

        # Compiled once for every weight and update (fast); if the answer cannot be
        # traced (a Python `if` on a value, say), it runs as written instead.
        compiled = jax.jit(call)
        try:
            compiled(update, WEIGHTS[0])
        except CheckFailed:
            raise
        except Exception:  # noqa: BLE001 - rerun as written: its own error becomes the hint
            compiled = call

        for weight, want in zip(WEIGHTS, np.asarray(wants), strict=True):
            got = _scalar(_call(compiled, update, weight, what=what), what)
            want = float(want)
            if _close(got, want, rtol=1e-4, atol=1e-5):
                continue
            if not np.isfinite(got):
                _fail(f"{name} returned {got} (not finite): a division by a zero norm? The "
                      "observed update and the candidate's gradient are both non-zero here.")
            for value, hint in _objective_variants(update, cand_grad, tv, weight):
                if _close(got, float(value), rtol=1e-4, atol=1e-5):
                    _fail(f"{name} returned {got:.5g} where {want:.5g} was expected "
                          f"(tv_weight = {weight}): {hint}.")
            if case == 1:
                _fail(f"{name} is right on one network but not on another with two hidden "
                      f"layers ({got:.5g}, expected {want:.5g}): is a layer name or shape "
                      "hard-coded? Loop over every leaf of the gradient trees.")
            _fail(f"{name} returned {got:.5g} where {want:.5g} was expected (tv_weight = "
                  f"{weight}): compute g' = the gradient of the mean cross-entropy of "
                  "(images, labels) with respect to params, then 1 − <g, g'> / (||g|| ||g'||) "
                  "over all leaves, plus tv_weight × TV(images).")

        # The cosine does not see the update's scale (a client's learning rate, say).
        scaled = jax.tree.map(lambda leaf: 10.0 * leaf, update)
        big = _scalar(_call(compiled, scaled, WEIGHTS[1], what=what), what)
        if not _close(big, float(wants[1]), rtol=1e-4, atol=1e-5):
            _fail(f"{name} gives {float(wants[1]):.5g} for the update and {big:.5g} for the "
                  "same update times 10: the cosine distance must not depend on the update's "
                  "scale. Normalise by both norms (an L2 distance would change by a factor "
                  "of ~100).")

        if case:   # the gradient is checked on the first network
            continue

        def mine(x, model=model, params=params, update=update, labels=labels):
            return fn(model, params, update, x, labels, WEIGHTS[1])

        grad = _grad_or_hint(mine, images, lambda err: (
            f"JAX could not differentiate {name} with respect to the images under jit "
            f"({type(err).__name__}: {str(err)[:120]}). Use jax.numpy throughout, "
            "and no float(), .item() or numpy on the values."))
        if not _close(grad, want_grad, rtol=1e-3, atol=1e-6):
            zero = float(jnp.max(jnp.abs(grad))) == 0.0
            _fail(f"{name} has the right values but the wrong gradient with respect to the "
                  "images" + (" (it is zero everywhere)" if zero else "") + ": the attack "
                  "differentiates through the candidate's gradient. No "
                  "jax.lax.stop_gradient, and compute g' from the images you were given.")
    _ok(f"{name}: matches ll.inverting.inverting_objective on two networks, three TV "
        "weights, an update scaled by 10, and its gradient with respect to the "
        "images.")


# -- the step: Adam on the sign of the gradient, then the box [0, 1] ------------------------

_B1, _B2, _EPS = 0.9, 0.999, 1e-8


def _adam_steps(images, grads, lr, *, sign=True, sign_after=False, bias=True, project=True,
                direction=-1.0, offset=0, plain=False):
    """The images after each step of a (possibly wrong) signed-Adam loop, in float64."""
    x = np.asarray(images, np.float64)
    m, v = np.zeros_like(x), np.zeros_like(x)
    out = []
    for t, g in enumerate(grads, start=1):
        g = np.asarray(g, np.float64)
        s = np.sign(g) if sign else g
        if plain:
            step = lr * s
        else:
            m = _B1 * m + (1 - _B1) * s
            v = _B2 * v + (1 - _B2) * s ** 2
            tt = t + offset
            mh, vh = (m / (1 - _B1 ** tt), v / (1 - _B2 ** tt)) if bias else (m, v)
            step = lr * mh / (np.sqrt(vh) + _EPS)
            if sign_after:
                step = lr * np.sign(step)
        x = x + direction * step
        if project:
            x = np.clip(x, 0.0, 1.0)
        out.append(x)
    return out


def _step_variants(images, grads, lr):
    return [
        (_adam_steps(images, grads, lr, sign=False),
         "that is Adam on the raw gradient: feed Adam the SIGN of the gradient, "
         "s = jnp.sign(grad), so that every pixel moves at the same speed however tiny its "
         "gradient"),
        (_adam_steps(images, grads, lr, sign=False, sign_after=True),
         "you took the sign of Adam's update, after Adam: take the sign of the GRADIENT "
         "first and feed that to Adam (m and v are moments of sign(grad))"),
        (_adam_steps(images, grads, lr, plain=True),
         "that is signed gradient descent, images − lr · sign(grad): run the sign through "
         "Adam (moments m, v with β1 = 0.9, β2 = 0.999, bias correction)"),
        (_adam_steps(images, grads, lr, direction=1.0),
         "the step goes UP the gradient: subtract lr · m̂ / (√v̂ + ε) to descend"),
        (_adam_steps(images, grads, lr, bias=False),
         "the bias correction is missing: divide m by (1 − β1^t) and v by (1 − β2^t) "
         "before the step"),
        (_adam_steps(images, grads, lr, offset=1),
         "the bias correction is one step late: t counts from 1 at the first step "
         "(m̂ = m / (1 − β1^t) with the t you are given)"),
    ]


@exercise(
    forbidden=(
        "leakage_lab.optimizers.signed_adam",
        "leakage_lab.optimizers.adam",
        "leakage_lab.optimizers.unit_box",
        "leakage_lab.optimizers.on_images",
        "leakage_lab.engine.minimize",
        "leakage_lab.inverting.reconstruct",
    ),
    allowed=(),
)
def ig_step(fn: Callable) -> None:
    """Checks ``fn(images, grad, m, v, t, lr) -> (images, m, v)``: one step of Inverting
    Gradients' optimiser (lab 03; Geiping et al., NeurIPS 2020).

    Adam (β1 = 0.9, β2 = 0.999, ε = 1e-8) fed with the SIGN of the gradient, then the
    projection onto the box [0, 1]:

        s = sign(grad);  m ← β1 m + (1 − β1) s;  v ← β2 v + (1 − β2) s²
        images ← clip(images − lr · m̂ / (√v̂ + ε), 0, 1),  m̂ = m / (1 − β1^t),
                                                           v̂ = v / (1 − β2^t)

    with ``t`` the step's number, counting from 1, and ``m``, ``v`` zeros before the
    first step. Compared, step after step, with ``ll.optimizers.signed_adam`` (at a
    constant rate) followed by ``ll.optimizers.unit_box``, on images and gradients of the
    check's own: gradients whose size changes a thousandfold from step to step, some
    exactly 0, and a rate large enough to push pixels out of the box.

    Args:
        fn: the learner's step.

    Raises:
        CheckFailed: with a hint (no sign, the sign after Adam, signed gradient descent,
            the wrong direction, no bias correction, stepping outside [0, 1]...).
    """
    import optax

    from leakage_lab import optimizers

    name = getattr(fn, "__name__", "your function")
    what = f"{name}(images, grad, m, v, t, lr)"
    for case, (shape, lr) in enumerate((((2, 5, 6, 1), 0.2), ((1, 4, 3, 2), 0.05))):
        rng = np.random.default_rng(330 + case)
        images = jnp.asarray(rng.uniform(size=shape), jnp.float32)
        grads = []
        for scale in (1.0, 1e3, 1e-3, 1.0, 30.0):
            g = scale * rng.normal(size=shape)
            g.flat[0] = 0.0   # a pixel whose gradient is exactly 0
            grads.append(jnp.asarray(g, jnp.float32))

        # The library: signed Adam at a constant rate (the decay starts after 3/8 of a
        # long run), then the box.
        opt = optimizers.signed_adam(lr, 10_000)

        @jax.jit
        def library_step(x, state, g, opt=opt):
            updates, state = opt.update(g, state, x)
            return optimizers.unit_box(optax.apply_updates(x, updates)), state

        state = opt.init(images)
        x_ref, want = images, []
        for g in grads:
            x_ref, state = library_step(x_ref, state, g)
            want.append(np.asarray(x_ref, np.float64))

        x, m, v = images, jnp.zeros(shape), jnp.zeros(shape)
        got = []
        for t, g in enumerate(grads, start=1):
            out = _call(fn, x, g, m, v, t, lr, what=what)
            if not isinstance(out, tuple | list) or len(out) != 3:
                _fail(f"{name} should return a tuple (images, m, v): the new images and "
                      f"Adam's two moments, got {type(out).__name__}"
                      + (f" of length {len(out)}" if isinstance(out, tuple | list) else "")
                      + ".")
            x, m, v = out
            if np.shape(x) != shape:
                _fail(f"{name} returned images of shape {list(np.shape(x))}, expected "
                      f"{list(shape)} (the shape of the images it was given).")
            got.append(np.asarray(x, np.float64))
        last = got[-1]
        if not np.all(np.isfinite(last)):
            _fail(f"{name} produced non-finite pixels (nan or inf): did the bias correction "
                  "divide by 1 − β^0 = 0 (t counts from 1), or did you compute the sign as "
                  "grad / |grad|, which is 0/0 where the gradient is 0? Use jnp.sign.")
        if np.min(last) < -1e-7 or np.max(last) > 1 + 1e-7:
            _fail(f"{name} left pixels outside [0, 1] (from {np.min(last):.3g} to "
                  f"{np.max(last):.3g}): project after every step, "
                  "images = jnp.clip(images, 0, 1) — valid images live in the box.")
        if all(_close(a, b, rtol=1e-4, atol=1e-5) for a, b in zip(got, want, strict=True)):
            continue
        for values, hint in _step_variants(images, grads, lr):
            if all(_close(a, b, rtol=1e-4, atol=1e-5)
                              for a, b in zip(got, values, strict=True)):
                _fail(f"{name} does not take Inverting Gradients' step: {hint}.")
        if _close(got[0], want[0], rtol=1e-4, atol=1e-5):
            first_wrong = next(i for i, (a, b) in enumerate(zip(got, want, strict=True))
                               if not _close(a, b, rtol=1e-4, atol=1e-5))
            _fail(f"{name} is right at the first step but not at step {first_wrong + 1}: "
                  "are the moments carried over? Return the new m and v (m ← β1 m + "
                  "(1 − β1) s, v ← β2 v + (1 − β2) s², with s = sign(grad)), and use the "
                  "t you are given.")
        _fail(f"{name} does not match ll.optimizers.signed_adam followed by "
              f"ll.optimizers.unit_box (lr = {lr}): s = sign(grad); m ← 0.9 m + 0.1 s; "
              "v ← 0.999 v + 0.001 s²; images ← clip(images − lr · m̂ / (√v̂ + 1e-8), 0, 1) "
              "with m̂ = m / (1 − 0.9^t), v̂ = v / (1 − 0.999^t).")
    _ok(f"{name}: the same images as ll.optimizers.signed_adam + ll.optimizers.unit_box over "
        "five steps in two settings, with gradients of wildly different sizes, and every "
        "pixel stays in [0, 1].")
