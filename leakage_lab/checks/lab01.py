"""Lab 01 (DLG, Zhu et al., NeurIPS 2019): the squared L2 gradient distance (a warm-up),
DLG's gradient-matching objective with a joint soft label, and one step on it."""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from leakage_lab import distances
from leakage_lab.checks._common import (
    CheckFailed,
    _call,
    _close,
    _fail,
    _grad_or_hint,
    _leafwise,
    _ok,
    _random_tree,
    _scalar,
    _trees_close,
)
from leakage_lab.checks._guard import exercise

__all__ = ["dlg_loss", "dlg_step", "gradient_distance"]


@exercise(
    forbidden=(
        "leakage_lab.distances.l2",
        "leakage_lab.distances._l2_from_inner_products",
        "leakage_lab.trees.tree_vdot",
    ),
    allowed=(),
)
def gradient_distance(fn: Callable) -> None:
    """Checks an implementation of DLG's gradient distance (lab 01).

    ``fn(observed, candidate)`` should return the squared L2 distance summed over all
    leaves of two pytrees, ``sum_l sum_i (g_l[i] - g'_l[i])**2``, like
    ``ll.distances.l2``, as a scalar that JAX can differentiate.

    Args:
        fn: the learner's distance function.

    Raises:
        CheckFailed: with a hint naming the likely mistake (not subtracting, a sign
            error, only one layer summed, no square, a square root, a mean...).
    """
    name = getattr(fn, "__name__", "your function")
    what = f"{name}(observed, candidate)"
    a = _random_tree(jax.random.key(0))
    b = _random_tree(jax.random.key(1))

    # 1. Identical trees are at distance zero.
    same = _scalar(_call(fn, a, a, what=what), what)
    if not abs(same) < 1e-6:
        _fail(
            f"{name} gives {same:.4g} for two identical trees, but the distance of a tree to "
            "itself must be 0: did you subtract (observed - candidate) before squaring?"
        )

    got = _scalar(_call(fn, a, b, what=what), what)
    want = float(distances.l2(a, b))
    if not _close(got, want):
        l2_leaves = _leafwise(a, b, lambda x, y: jnp.sum((x - y) ** 2))
        diff_sums = _leafwise(a, b, lambda x, y: jnp.sum(x - y))
        hints = [
            (-want, "exactly minus the right value: a sign error. The attack minimises the "
                    "distance, so with the wrong sign it would push the gradients apart"),
            (l2_leaves[0], "only the first leaf counts: sum over all leaves (every layer's "
                           "weights and biases), e.g. loop over zip(jax.tree.leaves(observed), "
                           "jax.tree.leaves(candidate)) and add up"),
            (l2_leaves[-1], "only the last leaf counts: did you overwrite the total inside "
                            "the loop (total = ...) instead of accumulating (total += ...)?"),
            (float(distances.l1(a, b)), "that is the sum of |observed - candidate| (an L1 "
                                        "distance): square the differences instead"),
            (sum(diff_sums), "that is the sum of the raw differences, where positive and "
                             "negative ones cancel: square each difference before summing"),
            (float(np.sqrt(want)), "that is the square root (the Euclidean norm): DLG "
                                   "minimises the squared distance, so drop the sqrt"),
            (sum(_leafwise(a, b, lambda x, y: jnp.mean((x - y) ** 2))),
             "that is a mean per leaf: sum over the entries instead (jnp.sum, not jnp.mean)"),
            (want / sum(np.size(x) for x in jax.tree.leaves(a)),
             "that is the mean over all entries: sum instead of averaging"),
            (sum(_leafwise(a, b, lambda x, y: jnp.sum(x**2 - y**2))),
             "you subtracted the squares (x**2 - y**2) instead of squaring the difference "
             "(x - y)**2"),
            (sum(d**2 for d in diff_sums),
             "you squared the sum of each leaf's differences: square each difference "
             "first, then sum"),
        ]
        for value, hint in hints:
            if _close(got, value):
                _fail(f"{name} returned {got:.4g} where {want:.4g} was expected: {hint}.")
        if got < 0:
            _fail(
                f"{name} returned {got:.4g} < 0 for two different trees. A distance is never "
                "negative, and the attack minimises it: look for a sign error, and square "
                "the difference (observed - candidate)**2."
            )
        _fail(
            f"{name} returned {got:.4g} on two random trees where {want:.4g} was expected: "
            "compute the sum over leaves l of sum((observed_l - candidate_l)**2)."
        )

    # 2. Other pairs, including trees of very different scale.
    for seed, scale in ((2, 0.01), (3, 10.0)):
        c = _random_tree(jax.random.key(seed), scale)
        got, want = _scalar(_call(fn, a, c, what=what), what), float(distances.l2(a, c))
        if not _close(got, want):
            _fail(f"{name} agrees on one pair of trees but returns {got:.4g} instead of "
                  f"{want:.4g} on another: is something hard-coded?")

    # 3. The attack differentiates it under jit: it must be written with jax.numpy.
    grad = _grad_or_hint(lambda cand: fn(a, cand), b, lambda err: (
        f"JAX could not differentiate {name} under jit ({type(err).__name__}). Use "
        "jax.numpy (jnp.sum, not np.sum), and no float() or .item() on the values."))
    expected = jax.tree.map(lambda x, y: 2.0 * (y - x), a, b)
    if not _trees_close(grad, expected):
        _fail(f"{name} has the right values, but its gradient is wrong: did you stop the "
              "gradient (jax.lax.stop_gradient) or round something?")
    _ok(f"{name}: matches ll.distances.l2 on 3 random pytrees, and JAX can differentiate it.")


# --------------------------------------------------------------------------------------
# DLG's objective and one step on it
# --------------------------------------------------------------------------------------

_DLG_FORBIDDEN = (
    "leakage_lab.dlg.dlg_objective",
    "leakage_lab.objective.candidate_gradient",
    "leakage_lab.objective.loss",
    "leakage_lab.objective.per_example_gradients",
    "leakage_lab.fl.gradient",
    "leakage_lab.fl._gradient",
    "leakage_lab.fl.per_example_gradients",
    "leakage_lab.fl._per_example",
)
_DLG_ALLOWED = ("leakage_lab.distances.l2", "leakage_lab.objective.cross_entropy")


def _dlg_model():
    from leakage_lab import models  # imported here: checks stays light

    return models.mlp(num_classes=4, input_shape=(3, 3, 2), hidden=(5,),
                      activation=jax.nn.sigmoid)


def _dlg_case(seed: int, batch: int):
    """A small sigmoid MLP (one architecture, so JAX compiles its operations once), the
    observed gradient of a random batch, and a random candidate: images in [0, 1] with a
    third of the pixels at exactly 0 or 1, label logits of scale 1.5. Drawn with numpy
    (seeded): jitting JAX's random draws would cost more than the check."""
    model = _dlg_model()
    rng = np.random.default_rng(1000 + seed)
    shapes = jax.eval_shape(model.init, jax.random.key(0))
    params = jax.tree.map(lambda leaf: jnp.asarray(rng.uniform(-0.5, 0.5, leaf.shape),
                                                   jnp.float32), shapes)
    shape = (batch, *model.input_shape)
    truth = jnp.asarray(rng.uniform(size=shape), jnp.float32)
    labels = jnp.asarray(rng.integers(0, model.num_classes, batch), jnp.int32)
    observed = _candidate_gradient(model, params, truth, labels)
    images = rng.uniform(size=shape)
    edge = rng.uniform(size=shape)
    images = jnp.asarray(np.where(edge < 1 / 6, 0.0, np.where(edge > 5 / 6, 1.0, images)),
                         jnp.float32)
    logits = jnp.asarray(1.5 * rng.standard_normal((batch, model.num_classes)), jnp.float32)
    return model, params, observed, images, logits


@functools.partial(jax.jit, static_argnums=0)
def _candidate_gradient(model, params, images, labels):
    from leakage_lab import objective

    return objective.candidate_gradient(model, params, images, labels)


def _client_gradient(model, params, images, labels, *, reduce=jnp.mean, sign=1.0,
                     log=jax.nn.log_softmax, class_reduce=jnp.sum):
    """The candidate's gradient ``∇θ reduce_i(sign · -class_reduce_k y_k log(p_k))`` and
    its slips (a batch sum, a flipped sign, logits instead of log-probabilities...)."""
    def client_loss(p):
        logp = log(model.apply(p, images))
        return reduce(sign * -class_reduce(labels * logp, axis=-1))

    return jax.grad(client_loss)(params)


def _objective(model, params, observed, images, logits):
    from leakage_lab import dlg

    return dlg.dlg_objective(model, params, observed, images, jax.nn.softmax(logits))


_dlg_objective = jax.jit(_objective, static_argnums=0)
_dlg_objective_grad = jax.jit(jax.grad(_objective, argnums=(3, 4)), static_argnums=0)


def _dlg_reference(model, params, observed, images, logits) -> float:
    return float(_dlg_objective(model, params, observed, images, logits))


@functools.partial(jax.jit, static_argnums=0)
def _dlg_variant_values(model, params, observed, images, logits):
    """The slips' values, in the order of :data:`_DLG_LOSS_HINTS` (one compilation)."""
    from leakage_lab import dlg

    soft = jax.nn.softmax(logits)
    want = dlg.dlg_objective(model, params, observed, images, soft)
    right = _client_gradient(model, params, images, soft)
    n_entries = sum(g.size for g in jax.tree.leaves(observed))

    def l2_to(candidate):
        return distances.l2(observed, candidate)

    def with_labels(labels):
        return dlg.dlg_objective(model, params, observed, images, labels)

    return [
        -want,
        with_labels(logits),
        with_labels(jnp.argmax(logits, axis=-1)),
        with_labels(jax.nn.log_softmax(logits)),
        l2_to(_client_gradient(model, params, images, soft, sign=-1.0)),
        l2_to(_client_gradient(model, params, images, soft, reduce=jnp.sum)),
        l2_to(_client_gradient(model, params, images, soft, class_reduce=jnp.mean)),
        l2_to(_client_gradient(model, params, images, soft, log=lambda z: z)),
        l2_to(_client_gradient(model, params, images, soft, log=jax.nn.softmax)),
        jnp.sqrt(want),
        distances.l1(observed, right),
        want / n_entries,
        sum(jnp.mean((a - b) ** 2) for a, b in zip(jax.tree.leaves(observed),
                                                   jax.tree.leaves(right), strict=True)),
    ]


_DLG_LOSS_HINTS = [
    "exactly minus the right value: a sign error. DLG minimises the distance "
    "||∇θ L(x', y') − g||², which is never negative",
    "you fed the raw logits u as the label: the candidate's soft label is softmax(u) "
    "(jax.nn.softmax(dummy_logits)), a distribution over the classes",
    "you used the most likely class (argmax) as a hard label: DLG's label is the soft "
    "softmax(u), so the attack can move it smoothly (an argmax has no gradient)",
    "you used log_softmax(u) as the label: the label is the distribution softmax(u)",
    "the candidate's cross-entropy has the wrong sign: CE = −Σ_k y_k log p_k (with the "
    "minus), so its gradient is the update a client would send",
    "the candidate's loss SUMS the cross-entropy over the batch: a client sends the gradient "
    "of the MEAN loss over its N images (jnp.mean over the batch)",
    "the cross-entropy AVERAGES over the classes: sum y_k log p_k over the classes "
    "(jnp.sum(..., axis=-1)), then take the mean over the batch",
    "the cross-entropy uses the logits, not the log-probabilities: take jax.nn.log_softmax "
    "of model.apply(params, images)",
    "the cross-entropy uses the probabilities, not their log: take jax.nn.log_softmax of "
    "model.apply(params, images)",
    "that is the square root (the Euclidean norm): DLG minimises the SQUARED distance",
    "that is the sum of |g − g'| (an L1 distance): square the differences",
    "that is the mean over all entries of the gradient: DLG sums the squared differences "
    "(jnp.sum, not jnp.mean)",
    "that is a mean per layer: sum the squared differences over each array's entries",
]


def _dlg_loss_variants(model, params, observed, images, logits):
    """(value, hint) for the usual slips in DLG's objective."""
    values = _dlg_variant_values(model, params, observed, images, logits)
    return list(zip((float(v) for v in values), _DLG_LOSS_HINTS, strict=True))


@exercise(forbidden=_DLG_FORBIDDEN, allowed=_DLG_ALLOWED)
def dlg_loss(fn: Callable) -> None:
    """Checks an implementation of DLG's objective (lab 01; Zhu et al., NeurIPS 2019).

    ``fn(model, params, observed, dummy_images, dummy_logits)`` should return

        || ∇θ L(θ; x', softmax(u)) − g ||²,    L(θ; X, Y) = (1/N) Σ_i −Σ_k Y_ik log p_ik,

    the squared L2 distance, summed over every array of the tree, between the observed
    gradient ``g`` and the gradient of the mean cross-entropy of the candidate images
    ``x'`` with the soft labels ``softmax(u)``; like ``ll.dlg.dlg_objective(model, params,
    observed, x', jax.nn.softmax(u))``, and differentiable (the attack takes its gradient
    with respect to ``x'`` and ``u``, through the candidate's gradient).

    It runs on a small sigmoid MLP, two batches of 3 that the lab never shows.

    Raises:
        CheckFailed: with a hint naming the likely mistake (no softmax on the label, a
            sign, a sum or mean in the wrong place, no square, the gradient stopped...).
    """
    name = getattr(fn, "__name__", "your function")
    what = f"{name}(model, params, observed, dummy_images, dummy_logits)"
    cases = [_dlg_case(0, 3), _dlg_case(1, 3)]

    # 1. The value, against ll.dlg.dlg_objective with softmax(u) as the label.
    for index, (model, params, observed, images, logits) in enumerate(cases):
        got = _scalar(_call(fn, model, params, observed, images, logits, what=what), what)
        want = _dlg_reference(model, params, observed, images, logits)
        if _close(got, want):
            continue
        if index > 0:
            _fail(f"{name} is right on one batch but returns {got:.4g} instead of "
                  f"{want:.4g} on another (other weights and images): "
                  "is a size or a value hard-coded?")
        for value, hint in _dlg_loss_variants(model, params, observed, images, logits):
            if _close(got, value):
                _fail(f"{name} returned {got:.4g} where {want:.4g} was expected: {hint}.")
        if got < 0:
            _fail(f"{name} returned {got:.4g} < 0: a squared distance is never negative. "
                  "Look for a sign error.")
        _fail(f"{name} returned {got:.4g} where {want:.4g} was expected (a batch of 3 images, "
              "4 classes). Compute the candidate's update with jax.grad of the mean "
              "cross-entropy of (dummy_images, softmax(dummy_logits)) with respect to "
              "params, then sum the squared differences to `observed` over every array.")

    # 2. Its gradient, through the candidate's gradient, w.r.t. the image and the label.
    model, params, observed, images, logits = cases[0]
    want_x, want_u = _dlg_objective_grad(model, params, observed, images, logits)
    got_x, got_u = _grad_or_hint(lambda xu: fn(model, params, observed, *xu),
                                 (images, logits), lambda err: (
        f"JAX could not differentiate {name} under jit ({type(err).__name__}: "
        f"{str(err).splitlines()[0][:160]}). The attack differentiates your loss with "
        "respect to the image, through the candidate's gradient: write it with jax "
        "and jax.numpy only (no np.asarray, float() or .item())."))
    if not np.any(np.asarray(got_x)):
        _fail(f"{name} has the right values, but its gradient with respect to the image is "
              "zero: the candidate's gradient was cut off from the image "
              "(jax.lax.stop_gradient, or a copy through numpy). DLG differentiates THROUGH "
              "the candidate's gradient (a derivative of a derivative): keep it in JAX.")
    if not np.any(np.asarray(got_u)):
        _fail(f"{name} has the right values, but its gradient with respect to the label "
              "logits is zero: the label was cut off (stop_gradient, an argmax, a copy "
              "through numpy). DLG optimises the soft label softmax(u) jointly with the image.")
    if not (_close(got_x, want_x, rtol=1e-3, atol=1e-6)
            and _close(got_u, want_u, rtol=1e-3, atol=1e-6)):
        _fail(f"{name} has the right values, but its gradient is wrong: did you stop part "
              "of the gradient (jax.lax.stop_gradient) or round something?")
    _ok(f"{name}: matches ll.dlg.dlg_objective with softmax labels on 2 batches, and JAX "
        "differentiates it through the candidate's gradient.")


@functools.partial(jax.jit, static_argnums=0)
def _dlg_steps(model, params, observed, images, logits, lr):
    """The right step and its slips: ``{name: (images, logits)}``."""
    from leakage_lab import dlg

    gx, gu = jax.grad(_objective, argnums=(3, 4))(model, params, observed, images, logits)
    soft = jax.nn.softmax(logits)
    gy = jax.grad(lambda y: dlg.dlg_objective(model, params, observed, images, y))(soft)
    right_x, right_u = images - lr * gx, logits - lr * gu
    return {
        "right": (right_x, right_u),
        "ascent": (images + lr * gx, logits + lr * gu),
        "image only": (right_x, logits),
        "label only": (images, right_u),
        "gradient": (gx, gu),
        "no lr": (images - gx, logits - gu),
        "clipped": (jnp.clip(right_x, 0.0, 1.0), right_u),
        "sign": (images - lr * jnp.sign(gx), logits - lr * jnp.sign(gu)),
        "soft gradient": (right_x, logits - lr * gy),
        "soft labels": (right_x, jax.nn.softmax(right_u)),
    }


_STEP_HINTS = {
    "ascent": "you stepped UP the gradient (x + lr·∇): a descent step subtracts, "
              "x ← x − lr·∂D/∂x, u ← u − lr·∂D/∂u",
    "image only": "the image moved but the label logits did not: DLG optimises the label "
                  "jointly, so also take u ← u − lr·∂D/∂u (jax.grad(..., argnums=(3, 4)))",
    "label only": "the label logits moved but the image did not: differentiate with "
                  "respect to the image too (argnums=(3, 4))",
    "gradient": "you returned the gradients ∂D/∂x, ∂D/∂u, not the stepped variables: "
                "return (x − lr·∂D/∂x, u − lr·∂D/∂u)",
    "no lr": "the step ignores the step size: multiply the gradient by lr",
    "clipped": "you clipped the image to [0, 1]: DLG's step is unconstrained (ll.attacks.dlg "
               "does not clip either; lab 03's attack does). Return x − lr·∂D/∂x as it is",
    "sign": "that is a signed step (lr·sign(∇), as Inverting Gradients takes in lab 03): DLG "
            "takes a plain gradient step, lr·∇",
    "soft gradient": "the label moved by the gradient with respect to the soft label "
                     "softmax(u), not to the logits u: differentiate your loss with respect to "
                     "dummy_logits (the softmax is inside the objective)",
    "soft labels": "you returned the soft label softmax(u) instead of the logits u: return "
                   "the stepped logits; the softmax belongs inside the objective",
}


@exercise(forbidden=_DLG_FORBIDDEN, allowed=_DLG_ALLOWED)
def dlg_step(fn: Callable) -> None:
    """Checks one gradient-descent step on DLG's objective (lab 01).

    ``fn(model, params, observed, dummy_images, dummy_logits, lr)`` should return the
    pair ``(x' − lr·∂D/∂x', u − lr·∂D/∂u)`` with ``D`` DLG's objective
    ``ll.dlg.dlg_objective(model, params, observed, x', softmax(u))``: both the image and
    the label logits move, along the gradient taken with ``jax.grad`` through the
    candidate's gradient, without clipping. It must also run under ``jax.jit`` (with the
    model static), as the lab runs it.

    Raises:
        CheckFailed: with a hint (a step up the gradient, the label or the image left out,
            the gradient returned, no step size, clipping, a signed step...).
    """
    name = getattr(fn, "__name__", "your function")
    what = f"{name}(model, params, observed, dummy_images, dummy_logits, lr)"
    for index, (case, lr) in enumerate(((_dlg_case(3, 3), 0.5), (_dlg_case(4, 3), 2.0))):
        model, params, observed, images, logits = case
        got = _call(fn, model, params, observed, images, logits, lr, what=what)
        if got is None:
            _fail(f"{name} returned None: did you forget the `return` statement?")
        if not (isinstance(got, tuple | list) and len(got) == 2):
            size = f" of length {len(got)}" if hasattr(got, "__len__") else ""
            _fail(f"{name} should return a pair (new_images, new_logits), got "
                  f"{type(got).__name__}{size}.")
        new_x, new_u = (np.asarray(v, np.float64) for v in got)
        if new_x.shape != images.shape or new_u.shape != logits.shape:
            _fail(f"{name} returned arrays of shapes {list(new_x.shape)} and "
                  f"{list(new_u.shape)}; expected the images' {list(images.shape)} and the "
                  f"logits' {list(logits.shape)}, in that order.")
        steps = _dlg_steps(model, params, observed, images, logits, lr)
        want_x, want_u = steps.pop("right")
        if _close(new_x, want_x, rtol=1e-3, atol=1e-6) and \
                _close(new_u, want_u, rtol=1e-3, atol=1e-6):
            continue
        if index > 0:
            _fail(f"{name} is right on one batch but not on another (lr = {lr}): is the "
                  "step size or a shape hard-coded?")
        for slip, (x, u) in steps.items():
            if _close(new_x, x, rtol=1e-3, atol=1e-6) and _close(new_u, u, rtol=1e-3, atol=1e-6):
                _fail(f"{name}: {_STEP_HINTS[slip]}.")
        _fail(f"{name} moved the image and the label logits differently from one "
              "gradient-descent step on DLG's objective. Take (dx, du) = jax.grad(dlg_loss, "
              "argnums=(3, 4))(model, params, observed, dummy_images, dummy_logits) and return "
              "(dummy_images − lr·dx, dummy_logits − lr·du). If ll.checks.dlg_loss(dlg_loss) "
              "fails, fix dlg_loss first.")

    # The lab jits the step (the model is static: its functions are not arrays).
    model, params, observed, images, logits = _dlg_case(3, 3)
    try:
        got = jax.jit(fn, static_argnums=0)(model, params, observed, images, logits, 0.5)
    except CheckFailed:
        raise
    except Exception as err:  # noqa: BLE001
        _fail(f"{name} is right, but fails under jax.jit ({type(err).__name__}: "
              f"{str(err).splitlines()[0][:160]}). The lab runs it jitted, so write it with "
              "jax and jax.numpy only (no float(), .item() or Python `if` on values).")
    want_x, want_u = _dlg_steps(model, params, observed, images, logits, 0.5)["right"]
    if not (_close(got[0], want_x, rtol=1e-3, atol=1e-6)
            and _close(got[1], want_u, rtol=1e-3, atol=1e-6)):
        _fail(f"{name} gives another step under jax.jit than without it: does it depend on "
              "a Python value that jit freezes?")
    _ok(f"{name}: one gradient-descent step on DLG's objective (image and label logits), as "
        "ll.dlg.dlg_objective's gradient gives, on 2 batches, also under jax.jit.")
