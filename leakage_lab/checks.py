"""Self-checks for the labs' exercises.

Each check calls the learner's function on small random inputs and compares it with
the library's own version. When they disagree it raises :class:`CheckFailed` (an
``AssertionError``) whose message is a *hint*: it names the likely slip (a missing
square, a sum over one layer only, sizes ignored...) rather than just "wrong". When
they agree it prints one line starting with ✓.

    >>> import leakage_lab.checks as checks
    >>> checks.gradient_distance(ll.distances.l2)
    ✓ gradient_distance: matches ll.distances.l2 on 3 random pytrees, and JAX can differentiate it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from leakage_lab import distances

__all__ = ["CheckFailed", "client_update_loop", "dp_clip_and_noise", "fedavg_average",
           "fedavg_label_counts", "gaussian_neg_log_likelihood", "gradient_distance",
           "idlg_label", "match_epochs", "pair_masks", "prune_laplace_log_prob",
           "total_variation"]


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
    except Exception as err:  # noqa: BLE001 - any error in the learner's code becomes a hint
        _fail(f"Calling {what} raised {type(err).__name__}: {err}")


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


def _trees_close(a, b) -> bool:
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    return len(la) == len(lb) and all(_close(x, y) for x, y in zip(la, lb, strict=True))


def _leafwise(a, b, fn) -> list[float]:
    return [float(fn(x, y)) for x, y in _pairs(a, b)]


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
    try:
        grad = jax.jit(jax.grad(lambda cand: fn(a, cand)))(b)
    except Exception as err:  # noqa: BLE001
        _fail(
            f"JAX could not differentiate {name} under jit ({type(err).__name__}). Use "
            "jax.numpy (jnp.sum, not np.sum), and no float() or .item() on the values."
        )
    expected = jax.tree.map(lambda x, y: 2.0 * (y - x), a, b)
    if not _trees_close(grad, expected):
        _fail(f"{name} has the right values, but its gradient is wrong: did you stop the "
              "gradient (jax.lax.stop_gradient) or round something?")
    _ok(f"{name}: matches ll.distances.l2 on 3 random pytrees, and JAX can differentiate it.")


def _average_of(trees: Sequence, weights: Sequence[float]):
    def mean(*leaves):
        return sum(w * x for w, x in zip(weights, leaves, strict=True))

    return jax.tree.map(mean, *trees)


def fedavg_average(fn: Callable) -> None:
    """Checks an implementation of FedAvg's server step (lab 00).

    ``fn(client_params, sizes)`` gets a list of client weight pytrees and how many
    samples each client holds, and should return their weighted mean
    ``sum_k (n_k / n) θ_k`` with ``n = sum_k n_k`` (McMahan et al., AISTATS 2017),
    a pytree shaped like each ``θ_k``.

    Args:
        fn: the learner's averaging function.

    Raises:
        CheckFailed: with a hint naming the likely mistake (sizes ignored, weights not
            normalised, inverted weights, only one leaf averaged, wrong structure...).
    """
    name = getattr(fn, "__name__", "your function")
    what = f"{name}(client_params, sizes)"
    trees = [_random_tree(jax.random.key(10 + k)) for k in range(3)]
    sizes = [100, 300, 50]
    total = sum(sizes)
    want = _average_of(trees, [n / total for n in sizes])

    got = _call(fn, trees, list(sizes), what=what)
    if got is None:
        _fail(f"{name} returned None: did you forget the `return` statement?")
    if jax.tree.structure(got) != jax.tree.structure(want):
        _fail(
            f"{name} should return one pytree shaped like each client's weights (a dict "
            f"with layers 'conv' and 'fc'), got {type(got).__name__} with structure "
            f"{jax.tree.structure(got)}. Combine the clients leaf by leaf, e.g. "
            "jax.tree.map(lambda *leaves: ..., *client_params)."
        )
    shapes = [np.shape(x) for x in jax.tree.leaves(got)]
    if shapes != [np.shape(x) for x in jax.tree.leaves(want)]:
        _fail(f"{name} returned leaves of shapes {shapes}; each must keep its layer's shape.")

    if not _trees_close(got, want):
        def matches(weights):
            return _trees_close(got, _average_of(trees, weights))

        right = [_close(g, w) for g, w in _pairs(got, want)]
        if any(right):
            wrong = [i for i, ok in enumerate(right) if not ok]
            _fail(f"{name} gets some leaves right but not leaves {wrong} (in jax.tree.leaves "
                  "order): apply the same weighted mean to every leaf of the tree.")
        k = len(trees)
        patterns = [
            ([1 / k] * k, "that is the plain mean, which ignores the sizes: a client with "
                          "300 samples must count 3 times as much as one with 100. Weight "
                          "client k by n_k / n"),
            ([float(n) for n in sizes], "the weights are the raw sizes n_k, which sum to "
                                        f"{total}, not 1: divide by the total n = sum(sizes)"),
            ([1.0] * k, "that is the sum of the clients' weights: divide by the total so the "
                        "weights n_k / n add up to 1"),
            ([(1 / n) / sum(1 / m for m in sizes) for n in sizes],
             "the weights are inverted: the client with the most samples must get the "
             "largest weight, n_k / n"),
            ([n / total / k for n in sizes], "you divided by the number of clients as well: "
                                             "the weights n_k / n already sum to 1"),
        ]
        for weights, hint in patterns:
            if matches(weights):
                _fail(f"{name} did not return the weighted mean: {hint}.")
        _fail(
            f"{name} does not return the weighted mean sum_k (n_k / n) θ_k on three random "
            f"clients with sizes {sizes}: check the weights (they should be "
            f"{[round(n / total, 3) for n in sizes]}) and that each leaf is combined."
        )

    # Averaging identical clients changes nothing, whatever the sizes.
    same = _call(fn, [trees[0]] * 2, [7, 1], what=what)
    if not _trees_close(same, trees[0]):
        _fail(f"{name} changes the weights when every client sends the same ones: the "
              "weights of the mean must add up to 1.")
    # Works for any number of clients (not only three).
    two = _call(fn, trees[:2], [1, 3], what=what)
    ref2 = _average_of(trees[:2], [0.25, 0.75])
    if not _trees_close(two, ref2):
        _fail(f"{name} is right for three clients but wrong for two: is the number of "
              "clients hard-coded?")
    _ok(f"{name}: the weighted mean of the clients' weights, leaf by leaf, for any "
        "number of clients.")


# --------------------------------------------------------------------------------------
# Labs 02 and 03: the iDLG rule and total variation
# --------------------------------------------------------------------------------------


def _as_label(value, what: str) -> int:
    if value is None:
        _fail(f"{what} returned None: did you forget the `return` statement?")
    if np.size(value) != 1:
        _fail(f"{what} returned {np.size(value)} values (shape {list(np.shape(value))}), "
              "expected one class index: reduce the K bias gradients to a single int, "
              "e.g. int(jnp.argmin(bias_grad)).")
    number = float(np.asarray(value).reshape(()))
    if number != round(number):
        _fail(f"{what} returned {number:g}, which is not a class index: return the *position* "
              "of the entry (argmin), not the entry itself.")
    return int(round(number))


def _bias_gradient(key: jax.Array, num_classes: int, label: int, confidence: float):
    """``p - onehot(label)`` for a random softmax ``p`` with ``p[label] = confidence``."""
    logits = jax.random.normal(key, (num_classes,))
    others = np.asarray(jax.nn.softmax(logits)) * (1.0 - confidence)
    p = np.where(np.arange(num_classes) == label, 0.0, others)
    p = p / p.sum() * (1.0 - confidence)
    p[label] = confidence
    return p - np.eye(num_classes)[label]


def idlg_label(fn: Callable) -> None:
    """Checks an implementation of iDLG's sign rule (lab 02; Zhao et al., 2020).

    ``fn(bias_grad)`` gets the gradient of the last layer's bias for *one* sample,
    ``dL/db_k = p_k - y_k`` (shape ``[K]``), and should return the true class as an int:
    the only negative entry, ``argmin_k dL/db_k``. The check compares it with
    ``ll.labels.idlg`` on real gradients of a small network, then on hand-made
    gradients of confident and unsure networks with 2 to 100 classes.

    Args:
        fn: the learner's rule.

    Raises:
        CheckFailed: with a hint naming the likely mistake (argmax instead of argmin,
            the magnitude instead of the sign, an off-by-one, an array instead of an int...).
    """
    from leakage_lab import fl, labels, models  # imported here: checks stays light

    name = getattr(fn, "__name__", "your function")
    what = f"{name}(bias_grad)"

    # 1. Real single-sample gradients of an untrained MLP, against ll.labels.idlg.
    model = models.mlp(num_classes=10, input_shape=(4, 4, 1), hidden=(16,))
    params = model.init(jax.random.key(0))
    layer = labels.last_layer(model, params)
    images = jax.random.uniform(jax.random.key(1), (6, 4, 4, 1))
    truth = [3, 0, 9, 5, 5, 7]
    for x, y in zip(images, truth, strict=True):
        grads = fl.gradient(model, params, x[None], jnp.array([y]))
        want = int(labels.idlg(model, params, grads)[0])
        bias_grad = grads[layer]["b"]
        got = _as_label(_call(fn, bias_grad, what=what), what)
        if got != want:
            b = np.asarray(bias_grad)
            if got == int(np.argmax(b)):
                _fail(f"{name} returned class {got}, the LARGEST entry of the bias gradient, "
                      f"but the true class is {want}: you took argmax. dL/db_k = p_k - y_k is "
                      "p_k >= 0 for every wrong class and p_y - 1 < 0 for the true one, so the "
                      "true class is the only NEGATIVE entry: take argmin.")
            if got == want + 1 or got == want - 1:
                _fail(f"{name} returned {got} where {want} was expected: off by one. Classes "
                      "are numbered from 0, like the positions of the array.")
            if got == int(np.argmin(np.abs(b))):
                _fail(f"{name} returned {got}, the entry closest to zero: the clue is the "
                      "SIGN, not the size. The true class is the only negative entry.")
            _fail(f"{name} returned class {got} for a gradient whose true class is {want} "
                  f"(bias gradient {np.round(b, 3).tolist()}): the true class is the only "
                  "negative entry.")

    # 2. Hand-made gradients: confident networks (p_y near 1, so p_y - 1 near 0), many classes.
    cases = [(2, 1, 0.5), (7, 4, 0.999), (10, 0, 0.99), (100, 63, 0.3), (100, 99, 0.9999)]
    for seed, (k, y, confidence) in enumerate(cases):
        b = _bias_gradient(jax.random.key(100 + seed), k, y, confidence)
        for array in (b, jnp.asarray(b, jnp.float32)):
            got = _as_label(_call(fn, array, what=what), what)
            if got != y:
                if got == int(np.argmax(np.abs(b))):
                    _fail(f"{name} returned {got}, the entry of LARGEST MAGNITUDE, but the "
                          f"true class is {y}. That works on an untrained network (p_y - 1 "
                          "≈ -0.9 dominates), but a confident network has p_y ≈ 1, so "
                          "p_y - 1 ≈ 0: use the sign. The true class is the only negative entry.")
                if got == int(np.argmax(b)):
                    _fail(f"{name} returned {got}, the largest entry, not the true class {y}: "
                          "the true class is the only NEGATIVE entry; take argmin.")
                _fail(f"{name} returned {got} on a {k}-class gradient whose only negative "
                      f"entry is class {y} (confidence p_y = {confidence}): is something "
                      "hard-coded (the number of classes, a threshold)?")
    _ok(f"{name}: finds the true class, the only negative entry, on 6 real gradients (as "
        "ll.labels.idlg) and on 5 hand-made ones with 2 to 100 classes.")


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
    except Exception as err:  # noqa: BLE001
        _fail(f"JAX could not differentiate {name} under jit ({type(err).__name__}). Use "
              "jax.numpy (jnp.abs, jnp.mean), and no float() or .item() on the values.")
    if not _close(grad, jax.grad(priors.total_variation)(x)):
        _fail(f"{name} has the right values but the wrong gradient: did you stop the gradient "
              "or round something?")
    _ok(f"{name}: matches ll.priors.total_variation on random batches, 0 on a flat image, 2 on "
        "a checkerboard, and JAX can differentiate it.")


# ---------------------------------------------------------------------------------------
# Lab 04: the conditionals p(g | x) of the Bayes-optimal adversary.

_HALF_LOG_2PI = 0.5 * float(np.log(2.0 * np.pi))


def _flat(tree) -> np.ndarray:
    return np.concatenate([np.asarray(leaf, np.float64).ravel() for leaf in jax.tree.leaves(tree)])


def _first_leaf_only(tree):
    """The same tree with every leaf but the first set to 0 (for "one layer only" hints)."""
    leaves, treedef = jax.tree.flatten(tree)
    return jax.tree.unflatten(treedef, [leaves[0]] + [jnp.zeros_like(x) for x in leaves[1:]])


def _gaussian_nll_variants(g: np.ndarray, c: np.ndarray, sigma: float, first: int):
    """(value, hint) for the usual slips in -log N(g; c, σ² I)."""
    sq, n = float(np.sum((g - c) ** 2)), g.size
    const = n * (np.log(sigma) + _HALF_LOG_2PI)
    right = sq / (2 * sigma**2) + const
    sq1 = float(np.sum((g[:first] - c[:first]) ** 2))
    return [
        (-right, "the sign is flipped: you returned the log-LIKELIHOOD; the negative "
                 "log-likelihood is  +‖g − g'‖² / (2σ²) + constant"),
        (sq / (2 * sigma**2), "the quadratic term is right, but the normalising constant is "
                              "missing: add n·(log σ + ½·log 2π), n = number of coordinates "
                              "(it does not move the attack, but it is part of −log p)"),
        (sq / sigma**2 + const, "the factor is 1/(2σ²), not 1/σ²"),
        (sq / (2 * sigma) + const, "divide by 2σ² (sigma SQUARED), not 2σ"),
        (sq / 2 + const, "you forgot to divide the squared distance by σ²"),
        (np.sqrt(sq) / (2 * sigma**2) + const, "use the SQUARED distance ‖g − g'‖², not the norm"),
        (sq / (2 * sigma**2) + n * np.log(sigma), "the constant per coordinate is "
                                                   "log σ + ½·log(2π); the ½·log(2π) is missing"),
        (sq / (2 * sigma**2) + n * (np.log(sigma) + 2 * _HALF_LOG_2PI),
         "the constant per coordinate is log σ + ½·log(2π), not log σ + log(2π)"),
        (sq / (2 * sigma**2) + n * (2 * np.log(sigma) + _HALF_LOG_2PI),
         "the constant per coordinate is log σ (= ½·log σ²), not log σ²"),
        (right / n, "that is a MEAN over coordinates: the coordinates are independent, so "
                    "their log-densities ADD: sum over all coordinates of all leaves"),
        (sq1 / (2 * sigma**2) + first * (np.log(sigma) + _HALF_LOG_2PI),
         "only the first leaf was counted: sum over EVERY leaf of the tree "
         "(jax.tree.leaves(observed))"),
    ]


def gaussian_neg_log_likelihood(fn: Callable) -> None:
    """Checks ``fn(observed, candidate, sigma) = -log N(observed; candidate, σ² I)`` (lab 04).

    The exact negative log-density of additive Gaussian noise, summed over every
    coordinate of every leaf,

        ‖g − g'‖² / (2σ²)  +  n · (log σ + ½ log 2π),

    which must equal ``-ll.defenses.gaussian(sigma).log_prob(observed, candidate)``: the
    squared L2 distance of DLG (Zhu et al., NeurIPS 2019) rescaled, plus a constant.

    Args:
        fn: the learner's function.

    Raises:
        CheckFailed: with a hint (the sign, the 2σ² factor, the constant, one leaf only...).
    """
    from leakage_lab import defenses

    name = getattr(fn, "__name__", "your function")
    what = f"{name}(observed, candidate, sigma)"
    for seed, sigma in ((0, 0.5), (1, 0.05), (2, 2.0)):
        k1, k2 = jax.random.split(jax.random.key(40 + seed))
        candidate = _random_tree(k1)
        observed = jax.tree.map(lambda a, b, s=sigma: a + s * b, candidate, _random_tree(k2))
        got = _scalar(_call(fn, observed, candidate, sigma, what=what), what)
        want = -float(defenses.gaussian(sigma).log_prob(observed, candidate))
        if _close(got, want, rtol=1e-4, atol=1e-3):
            continue
        g, c = _flat(observed), _flat(candidate)
        first = jax.tree.leaves(observed)[0].size
        for value, hint in _gaussian_nll_variants(g, c, sigma, first):
            if _close(got, value, rtol=1e-4, atol=1e-3):
                _fail(f"{name} returned {got:.5g} with σ = {sigma:g} where {want:.5g} was "
                      f"expected: {hint}.")
        _fail(f"{name} returned {got:.5g} with σ = {sigma:g} where {want:.5g} was expected. "
              "Write −log p(g | g') = Σ_i [(g_i − g'_i)² / (2σ²) + log σ + ½·log(2π)], the sum "
              "over every coordinate of every leaf.")
    tree = _random_tree(jax.random.key(50))
    try:
        grad = jax.jit(jax.grad(lambda c: fn(tree, c, 0.5)))(_random_tree(jax.random.key(51)))
    except Exception as err:  # noqa: BLE001
        _fail(f"JAX could not differentiate {name} under jit ({type(err).__name__}): use "
              "jax.numpy and jax.tree.leaves, no float() or np. on the values.")
    del grad
    _ok(f"{name}: equals −ll.defenses.gaussian(σ).log_prob for σ = 0.5, 0.05 and 2, and JAX "
        "can differentiate it. Up to the constant it is ll.distances.l2 / (2σ²): DLG.")


def _prune_laplace_variants(g: np.ndarray, c: np.ndarray, p: float, b: float):
    """(value, hint) for the usual slips in the prune + Laplace log-likelihood."""
    pruned = g == 0
    lap = -np.abs(g - c) / b - np.log(2 * b)
    lp, lk = np.log(p), np.log1p(-p)

    def total(pruned_score, kept_score):
        return float(np.sum(np.where(pruned, pruned_score, kept_score)))

    right = total(lp, lk + lap)
    return [
        (-right, "the sign is flipped: return the log-likelihood log p(g | g'), not its negative"),
        (float(np.sum(lk + lap)), "every coordinate was scored as kept: an EXACT zero in the "
                                  "observation was pruned and scores log p, whatever g' is"),
        (float(np.sum(lap)), "every coordinate was scored as kept and log(1 − p) is missing: "
                             "zeros in the observation were pruned (score log p); the others "
                             "score log(1 − p) + the Laplace log-density"),
        (total(0.0, lk + lap), "a pruned coordinate scores log p (the chance it was pruned), "
                               "not 0"),
        (total(lp + lap, lk + lap), "a pruned coordinate carries no information about g': it "
                                    "scores log p only, with no Laplace term"),
        (total(lp, lap), "the kept coordinates miss log(1 − p), the chance of being kept"),
        (total(lk, lp + lap), "p and 1 − p are swapped: pruned coordinates score log p, kept "
                              "ones log(1 − p) + the Laplace log-density"),
        (total(lp, lk - np.abs(g - c) / b), "the Laplace density's normaliser is missing: "
                                            "log Laplace(g; g', b) = −|g − g'| / b − log(2b)"),
        (total(lp, lk - np.abs(g - c) / b - np.log(b)), "the normaliser is log(2b), not log b"),
        (total(lp, lk - np.abs(g - c) * b - np.log(2 * b)), "divide |g − g'| by the scale b, "
                                                            "don't multiply"),
        (total(lp, lk - (g - c) ** 2 / (2 * b**2) - np.log(b) - _HALF_LOG_2PI),
         "that is a Gaussian density; the Laplace one is −|g − g'| / b − log(2b)"),
        (total(lp, lk - (g - c) / b - np.log(2 * b)), "take the ABSOLUTE value |g − g'|"),
    ]


def prune_laplace_log_prob(fn: Callable) -> None:
    """Checks ``fn(observed, clean, p, scale)``: the prune + Laplace log-likelihood (lab 04).

    Under the library's convention (``leakage_lab.defenses``), an exact 0 in the
    observation was pruned (probability ``p``, no information about ``clean``); any other
    coordinate was kept and received Laplacian noise of scale ``b``:

        log p(g | g') = Σ_{g_i = 0} log p  +  Σ_{g_i ≠ 0} [log(1 − p) − |g_i − g'_i| / b − log 2b]

    It must equal ``ll.defenses.prune_laplace(p, scale).log_prob(observed, clean)``.

    Args:
        fn: the learner's function.

    Raises:
        CheckFailed: with a hint (zeros treated as kept, a missing log p or log(1 − p), the
            normaliser, p and 1 − p swapped...).
    """
    from leakage_lab import defenses

    name = getattr(fn, "__name__", "your function")
    what = f"{name}(observed, clean, p, scale)"
    for seed, (p, b) in enumerate(((0.3, 0.1), (0.7, 0.5), (0.5, 0.02))):
        k1, k2 = jax.random.split(jax.random.key(60 + seed))
        clean = _random_tree(k1)
        defense = defenses.prune_laplace(p, b)
        observed = defense.apply(clean, key=k2)
        got = _scalar(_call(fn, observed, clean, p, b, what=what), what)
        want = float(defense.log_prob(observed, clean))
        if _close(got, want, rtol=1e-4, atol=1e-3):
            continue
        g, c = _flat(observed), _flat(clean)
        for value, hint in _prune_laplace_variants(g, c, p, b):
            if _close(got, value, rtol=1e-4, atol=1e-3):
                _fail(f"{name} returned {got:.5g} with p = {p:g}, b = {b:g} where {want:.5g} "
                      f"was expected: {hint}.")
        if np.isnan(got):
            _fail(f"{name} returned nan: compute both branches with jnp.where(observed == 0, "
                  "log p, log(1 − p) + ...) rather than dividing by a mask.")
        _fail(f"{name} returned {got:.5g} with p = {p:g}, b = {b:g} where {want:.5g} was "
              "expected. Per coordinate: log p if observed == 0, else log(1 − p) − |g − g'| / b "
              "− log(2b); then sum over every coordinate of every leaf.")
    _ok(f"{name}: equals ll.defenses.prune_laplace(p, b).log_prob for three (p, b) pairs. "
        "Note that the pruned coordinates' log p does not depend on the image: pruning only "
        "removes terms from the attack's loss.")


# ---------------------------------------------------------------------------------------
# Lab 05: DP-SGD's clipping and noise; secure aggregation's pairwise masks.


def _per_example_tree(key: jax.Array, m: int) -> dict:
    """Per-example gradients: the leaves of a parameter-like tree with a leading axis [m]."""
    k = jax.random.split(key, m)
    return jax.tree.map(lambda *xs: jnp.stack(xs), *[_random_tree(kk) for kk in k])


def _dp_variants(per_example: dict, c: float):
    """(value, hint) for the usual slips in the noiseless DP-SGD mean, as flat vectors."""
    leaves = [np.asarray(x, np.float64) for x in jax.tree.leaves(per_example)]
    m = leaves[0].shape[0]
    flat = np.concatenate([x.reshape(m, -1) for x in leaves], axis=1)
    norms = np.linalg.norm(flat, axis=1)
    scale = np.minimum(1.0, c / norms)
    mean = flat.mean(0)
    per_leaf = np.concatenate(
        [(x.reshape(m, -1) * np.minimum(1.0, c / np.linalg.norm(x.reshape(m, -1), axis=1)
                                        )[:, None]).mean(0) for x in leaves])
    return [
        (mean, "no clipping happened: scale each example's gradient by min(1, C / ‖g_i‖)"),
        (mean * min(1.0, c / np.linalg.norm(mean)), "you clipped the MEAN gradient; DP-SGD "
                                                    "clips EACH example's gradient before "
                                                    "averaging, so that one example's "
                                                    "influence is bounded by C"),
        ((flat * (c / norms)[:, None]).mean(0), "every example was rescaled to norm C, even "
                                                "the small ones: use min(1, C / ‖g_i‖), which "
                                                "only shrinks"),
        (per_leaf, "you clipped each leaf (layer) separately: the norm ‖g_i‖ is over ALL the "
                   "leaves of one example's gradient together"),
        ((flat * scale[:, None]).sum(0), "that is the SUM of the clipped gradients; divide by "
                                         "the batch size m"),
        ((flat * (c / np.maximum(norms, c))[:, None]).mean(0) / c, "do not divide by C: the "
                                                                   "clipped gradient has norm "
                                                                   "≤ C, not ≤ 1"),
    ]


def dp_clip_and_noise(fn: Callable) -> None:
    """Checks ``fn(per_example, clip_norm, noise_multiplier, key)``: one DP-SGD step (lab 05).

    Abadi et al. (ACM CCS 2016): clip each example's gradient (all its leaves together) to
    norm at most ``C``, sum, add ``N(0, σ²C² I)``, divide by the batch size ``m``:

        g = ( Σ_i g_i · min(1, C / ‖g_i‖) + N(0, σ² C² I) ) / m

    ``per_example`` is a pytree whose leaves have a leading batch axis ``[m, ...]``. The
    check compares the noiseless result (σ = 0) with ``ll.privacy.clip_and_noise``, then
    measures the noise's standard deviation on zero gradients (it must be σC/m).

    Raises:
        CheckFailed: with a hint (mean clipped instead of each example, leaves clipped
            separately, sum instead of mean, noise of the wrong size...).
    """
    from leakage_lab import privacy

    name = getattr(fn, "__name__", "your function")
    what = f"{name}(per_example, clip_norm, noise_multiplier, key)"
    for seed, (m, c) in enumerate(((4, 1.0), (3, 20.0), (5, 0.1))):
        per_example = _per_example_tree(jax.random.key(70 + seed), m)
        out = _call(fn, per_example, c, 0.0, jax.random.key(0), what=what)
        if out is None:
            _fail(f"{name} returned None: did you forget the `return` statement?")
        if jax.tree.structure(out) != jax.tree.structure(_random_tree(jax.random.key(0))):
            _fail(f"{name} must return one gradient shaped like a single example's (the same "
                  "tree, without the batch axis), got "
                  f"{jax.tree.map(lambda x: np.shape(x), out)}.")
        want = privacy.clip_and_noise(per_example, jnp.ones(m), privacy.dp_sgd(c, 0.0),
                                      key=jax.random.key(0))
        got_flat, want_flat = _flat(out), _flat(want)
        if _close(got_flat, want_flat, rtol=1e-4, atol=1e-6):
            continue
        for value, hint in _dp_variants(per_example, c):
            if _close(got_flat, value, rtol=1e-4, atol=1e-6):
                _fail(f"With σ = 0, C = {c:g} and m = {m}: {hint}.")
        _fail(f"With σ = 0, C = {c:g} and m = {m} the result differs from "
              "ll.privacy.clip_and_noise (largest difference "
              f"{np.max(np.abs(got_flat - want_flat)):.3g}). Compute ‖g_i‖ over all leaves of "
              "example i, scale by min(1, C / ‖g_i‖), sum over i, divide by m.")
    m, c, sigma = 4, 2.0, 1.5
    zeros = jax.tree.map(lambda x: jnp.zeros((m, *x.shape)),
                         {"w": jnp.zeros((100, 100)), "b": jnp.zeros((100,))})
    noisy = _flat(_call(fn, zeros, c, sigma, jax.random.key(1), what=what))
    again = _flat(_call(fn, zeros, c, sigma, jax.random.key(1), what=what))
    other = _flat(_call(fn, zeros, c, sigma, jax.random.key(2), what=what))
    std, want_std = float(np.std(noisy)), sigma * c / m
    if std == 0:
        _fail("With σ = 1.5 no noise was added: add jax.random.normal(key, shape) · σC to the "
              "sum of clipped gradients (a fresh key per leaf, e.g. jax.random.split).")
    if not np.array_equal(noisy, again):
        _fail("The same key gave different noise: draw it from the key argument with "
              "jax.random, not from numpy's global random state.")
    if np.array_equal(noisy, other):
        _fail("Two different keys gave the same noise: use the key you were given.")
    if not abs(std - want_std) < 0.05 * want_std:
        for got, hint in ((sigma * c, "the noise is added to the SUM, so after dividing by m "
                                      "its standard deviation is σC / m"),
                          (sigma / m, "the noise's standard deviation is σ·C (times C, the "
                                      "clipping norm), before dividing by m"),
                          (sigma * c / m**2, "divide the noise by m once, not twice"),
                          (sigma, "the noise is N(0, σ²C²) on the sum, then divided by m")):
            if abs(std - got) < 0.05 * got:
                _fail(f"noise standard deviation {std:.4g}, expected σC/m = {want_std:.4g}: "
                      f"{hint}.")
        _fail(f"noise standard deviation {std:.4g}, expected σC/m = {want_std:.4g}.")
    leaves = [np.ravel(x) for x in jax.tree.leaves(_call(fn, zeros, c, sigma, jax.random.key(1),
                                                        what=what))]
    if np.allclose(leaves[0][:100], leaves[1][:100]):
        _fail("Two leaves got the same noise: split the key, one per leaf.")
    _ok(f"{name}: clips each example's whole gradient, averages, and adds noise of standard "
        f"deviation σC/m (measured {std:.3f}, expected {want_std:.3f}): one DP-SGD step.")


def pair_masks(fn: Callable) -> None:
    """Checks ``fn(seed, u, v, length)``: client ``u``'s mask for the pair ``(u, v)`` (lab 05).

    Secure aggregation (Bonawitz et al., ACM CCS 2017): the two clients of a pair share a
    seed ``s_uv``; the smaller index adds ``PRG(s_uv)``, the larger subtracts it, modulo
    ``2**32`` (uint32 arithmetic), so the two terms cancel in the sum:

        term(u, v) = +PRG(s_uv)  if v > u,      -PRG(s_uv)  if v < u      (mod 2**32)

    ``ll.secagg.prg(seed, length)`` is the PRG. The check asks: do the terms of the two
    clients cancel, do they hide (look random), and are they uint32 vectors?

    Raises:
        CheckFailed: with a hint (terms that do not cancel, an all-zero mask, a wrong dtype).
    """
    from leakage_lab import secagg

    name = getattr(fn, "__name__", "your function")
    what = f"{name}(seed, u, v, length)"
    seed = secagg.random_bytes(5)(32)
    length = 1000
    a = _call(fn, seed, 1, 3, length, what=what)
    b = _call(fn, seed, 3, 1, length, what=what)
    for value, who in ((a, "u=1, v=3"), (b, "u=3, v=1")):
        if value is None:
            _fail(f"{name} returned None for {who}: did you forget the `return` statement?")
        arr = np.asarray(value)
        if arr.shape != (length,):
            _fail(f"{name}({who}) returned shape {list(arr.shape)}, expected [{length}].")
        if arr.dtype != np.uint32:
            _fail(f"{name}({who}) returned dtype {arr.dtype}: keep uint32 so that the "
                  "arithmetic wraps modulo 2**32 (np.negative on a uint32 vector is −x mod "
                  "2**32); a float or int64 mask would not cancel exactly after the wrap.")
    a, b = np.asarray(a), np.asarray(b)
    if not np.any(a):
        _fail(f"{name} returned zeros: a zero mask hides nothing. Use secagg.prg(seed, length).")
    total = a + b
    if np.any(total):
        if np.array_equal(a, b):
            _fail("Both clients ADDED the same PRG(s_uv): the terms double instead of "
                  "cancelling. The smaller index adds it, the larger subtracts it.")
        _fail("The two clients' terms do not cancel: term(u, v) + term(v, u) must be 0 "
              "modulo 2**32 (one adds PRG(seed), the other subtracts the same PRG(seed)).")
    prg = secagg.prg(seed, length)
    if not (np.array_equal(a, prg) or np.array_equal(a, np.negative(prg))):
        _fail("The terms cancel, but they are not ±PRG(seed): use secagg.prg(seed, length) "
              "so that only the two clients of the pair can compute them.")
    if np.array_equal(a, np.negative(prg)):
        _fail("The terms cancel, but the convention is reversed: the SMALLER index (u < v) "
              "adds +PRG(s_uv) and the larger subtracts it, as ll.secagg does.")
    _ok(f"{name}: the pair's terms cancel exactly modulo 2**32 and each one alone is a "
        "pseudo-random uint32 vector: the server learns nothing from one masked update.")


# --------------------------------------------------------------------------------------
# Labs 06-08: FedAvg's local steps, its label counts and MatchEpoch
# --------------------------------------------------------------------------------------


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


def _interpolated_counts(column_sums, server, client, num_samples, epochs, batch_size,
                         t=None, per_step_size=None):
    """Reference and variants of the RecLabels estimate (real-valued, before rounding)."""
    from leakage_lab import labels as lab

    steps = epochs * (num_samples // batch_size)
    if t is None:
        p, o = lab.interpolate(server, client, steps)
        p, o = np.asarray(p, np.float64), np.asarray(o, np.float64)
    else:
        p = ((1 - t)[:, None] * np.asarray(server.p_mean, np.float64)
             + t[:, None] * np.asarray(client.p_mean, np.float64))
        o = (1 - t) * float(server.o_mean) + t * float(client.o_mean)
    n = batch_size if per_step_size is None else per_step_size
    delta = np.asarray(column_sums, np.float64)
    return (n * p - n * delta[None, :] / o[:, None]).sum(axis=0) / epochs, p, o


def _counts_case(seed: int, num_classes: int = 5):
    from leakage_lab import labels as lab

    k = jax.random.split(jax.random.key(100 + seed), 3)
    server = lab.DummyStatistics(jax.nn.softmax(jax.random.normal(k[0], (num_classes,))),
                                 jnp.asarray(2.0 + seed))
    client = lab.DummyStatistics(jax.nn.softmax(2 * jax.random.normal(k[1], (num_classes,))),
                                 jnp.asarray(7.0 + seed))
    column_sums = 0.1 * jax.random.normal(k[2], (num_classes,))
    return column_sums, server, client


def fedavg_label_counts(fn: Callable) -> None:
    """Checks ``fn(column_sums, server, client, num_samples, epochs, batch_size)`` (lab 07).

    RecLabels of Dimitrov et al. (TMLR 2022, Sec. 4.5), before rounding. ``server`` and
    ``client`` are ``ll.labels.DummyStatistics`` (``p_mean [K]``, ``o_mean``) measured at
    θs and θc; ``column_sums`` ``[K]`` are the column sums Δ_k of the last layer's
    average update ``(θs − θc) / (η U)``. With ``U = E · N/m`` local steps (m divides N)
    and ``t_i = (i − 1)/U`` for step ``i = 1..U``:

        p̃_i = (1 − t_i) p̃^s + t_i p̃^c,   Õ_i = (1 − t_i) Õ^s + t_i Õ^c
        λ̃_k = (1/E) Σ_i [ m p̃_{k,i} − m Δ_k / Õ_i ]

    It must equal the ``raw`` estimate of ``ll.labels.fedavg_counts`` (whose statistics
    come from ``ll.labels.interpolate``).

    Raises:
        CheckFailed: with a hint (statistics at θs or θc only, interpolation off by one
            step, the 1/E missing, Õ averaged before dividing, a sign...).
    """
    name = getattr(fn, "__name__", "your function")
    what = f"{name}(column_sums, server, client, num_samples, epochs, batch_size)"
    for case, (n, epochs, m) in enumerate(((12, 2, 4), (10, 2, 5))):
        column_sums, server, client = _counts_case(case)
        want, p, o = _interpolated_counts(column_sums, server, client, n, epochs, m)
        got = _call(fn, column_sums, server, client, n, epochs, m, what=what)
        if got is None:
            _fail(f"{name} returned None: did you forget the `return` statement?")
        got = np.asarray(got, np.float64)
        if got.shape != want.shape:
            _fail(f"{name} returned shape {list(got.shape)}, expected one estimate per class, "
                  f"[{want.size}]: sum the per-step estimates over the steps (axis 0).")
        if _close(got, want, rtol=1e-4, atol=1e-4):
            continue
        if case == 1:
            _fail(f"{name} is right for one client but not for another (N = {n}, E = "
                  f"{epochs}, m = {m}): is a size hard-coded?")
        for value, hint in _count_variants(column_sums, server, client, n, epochs, m):
            if _close(got, value, rtol=1e-4, atol=1e-4):
                _fail(f"{name} returned {np.round(got, 3).tolist()} where "
                      f"{np.round(want, 3).tolist()} was expected: {hint}.")
        _fail(f"{name} returned {np.round(got, 3).tolist()} where {np.round(want, 3).tolist()} "
              f"was expected (N = {n}, E = {epochs}, m = {m}). Per step i = 1..U: t = (i − 1)/U, "
              "interpolate p̃ and Õ, take m p̃ − m Δ / Õ; sum over the steps and divide by E.")
    _ok(f"{name}: the interpolated label counts of ll.labels.fedavg_counts, for two clients.")


def _count_variants(column_sums, server, client, n, epochs, m):
    """(estimate, hint) for the usual slips in the interpolated label counts."""
    want, p, o = _interpolated_counts(column_sums, server, client, n, epochs, m)
    steps = epochs * (n // m)
    i = np.arange(1, steps + 1, dtype=np.float64)
    delta = np.asarray(column_sums, np.float64)

    def variant(**kw):
        return _interpolated_counts(column_sums, server, client, n, epochs, m, **kw)[0]

    return [
        (np.round(want), "that is the rounded estimate: return the real-valued λ̃ "
                         "(ll.labels.round_counts rounds it later)"),
        (variant(t=np.zeros(steps)), "every step used the statistics at θs (that is "
                                     "\"Geng et al. θs\"): interpolate from θs to θc "
                                     "over the U steps"),
        (variant(t=np.ones(steps)), "every step used the statistics at θc (\"Geng et al. "
                                    "θc\"): interpolate from θs to θc over the U steps"),
        (variant(t=i / steps), "off by one step: step i's gradient is taken at the weights "
                               "after i − 1 steps, so t_i = (i − 1)/U runs from 0 to "
                               "(U − 1)/U, not from 1/U to 1"),
        (want * epochs, "E times too large: each image is counted once per epoch, so "
                        "divide the sum over the U steps by E"),
        (want * epochs / steps, "you averaged over the U steps, which counts one batch of "
                                "m images: sum over the steps and divide by E"),
        (variant(per_step_size=n), f"{n // m} times too large: each step holds one batch "
                                   "of m images, so use m (not N) in the per-step "
                                   "estimate"),
        (n * p.mean(axis=0) - n * delta / o.mean(), "you averaged Õ over the steps before "
                                                    "dividing: apply Eq. 2 at every step, "
                                                    "so it is the mean of 1/Õ_i that "
                                                    "counts"),
        ((m * p + m * delta[None] / o[:, None]).sum(axis=0) / epochs,
         "the sign of the Δ term is flipped: λ̃ = m p̃ − m Δ / Õ"),
    ]


def _epoch_copies(seed: int, num: int = 6, epochs: int = 4, noise: float = 0.05):
    """Truth images and E noisy copies of them, each epoch in its own random order."""
    k = jax.random.split(jax.random.key(110 + seed), epochs + 1)
    truth = np.asarray(jax.random.uniform(k[0], (num, 4, 4, 1)))
    copies = []
    for e in range(epochs):
        order = np.arange(num) if e == 0 else np.asarray(jax.random.permutation(k[e + 1], num))
        noisy = truth[order] + noise * np.asarray(jax.random.normal(k[e + 1], truth.shape))
        copies.append(noisy)
    return truth, np.stack(copies)


def _match_variants(copies: np.ndarray):
    """(average, hint) for the usual slips in MatchEpoch."""
    from scipy.optimize import linear_sum_assignment

    from leakage_lab import matching

    def reordered(pick):
        return np.mean([copies[0]] + [pick(copies[0], copies[e])
                                      for e in range(1, len(copies))], axis=0)

    def maximised(first, other):
        rows, cols = linear_sum_assignment(matching.psnr_table(first, other))
        return other[cols[np.argsort(rows)]]

    def inverse(first, other):
        rows, cols = linear_sum_assignment(-matching.psnr_table(first, other))
        return other[np.argsort(cols[np.argsort(rows)])]

    return [
        (copies.mean(axis=0), "the epochs were averaged without matching: epoch e holds "
                              "the images in ITS OWN order, so reorder every epoch to the "
                              "first epoch's order before averaging"),
        (copies[0], "that is the first epoch alone: average the matched images of all E "
                    "epochs"),
        (reordered(maximised), "the assignment MAXIMISED the cost: linear_sum_assignment "
                               "minimises, and PSNR is a similarity, so pass −PSNR"),
        (reordered(inverse), "the permutation was applied the wrong way round: with "
                             "rows, cols = linear_sum_assignment(−M) for M[i, j] = "
                             "PSNR(first[i], other[j]), the image matched to first[i] "
                             "is other[cols[i]]"),
    ]


def match_epochs(fn: Callable) -> None:
    """Checks ``fn(epoch_images)``: MatchEpoch (lab 08).

    ``epoch_images`` ``[E, N, H, W, C]`` holds one reconstruction of the client's N
    images per epoch, each epoch in its own order. ``fn`` should put every epoch into the
    first epoch's order by the linear sum assignment that maximises the total PSNR
    (``scipy.optimize.linear_sum_assignment``; ``ll.matching.psnr_table`` gives the
    PSNR of all pairs) and return the average over the epochs, ``[N, H, W, C]``, equal to
    ``ll.matching.match_epochs`` (Dimitrov et al., TMLR 2022, Algorithm 3).

    Raises:
        CheckFailed: with a hint (no matching, a maximised cost, the permutation applied
            the wrong way round, epochs not averaged...).
    """
    from leakage_lab import matching

    name = getattr(fn, "__name__", "your function")
    for case in range(2):
        truth, copies = _epoch_copies(case, num=6 + 2 * case, epochs=4 + case)
        want = matching.match_epochs(copies)
        got = _call(fn, copies.copy(), what=f"{name}(epoch_images)")
        if got is None:
            _fail(f"{name} returned None: did you forget the `return` statement?")
        got = np.asarray(got, np.float64)
        if got.shape == copies.shape:
            _fail(f"{name} returned all E epochs ({list(got.shape)}), expected one image per "
                  f"client image, {list(want.shape)}: average the matched epochs (axis 0).")
        if got.shape != want.shape:
            _fail(f"{name} returned shape {list(got.shape)}, expected {list(want.shape)} "
                  "(one averaged image per client image, in the first epoch's order).")
        if _close(got, want, rtol=1e-4, atol=1e-5):
            continue
        if case == 1:
            _fail(f"{name} is right for one set of epochs but not for another: is N or E "
                  "hard-coded?")
        for value, hint in _match_variants(copies):
            if _close(got, value, rtol=1e-4, atol=1e-5):
                _fail(f"{name} does not return the matched average: {hint}.")
        errors = np.sqrt(np.mean((got - truth) ** 2)), np.sqrt(np.mean((want - truth) ** 2))
        _fail(f"{name} does not match ll.matching.match_epochs (RMS error against the truth "
              f"{errors[0]:.3f}, where matching and averaging reaches {errors[1]:.3f}): for "
              "every epoch e > 1, solve the assignment on M[i, j] = PSNR(epoch_1[i], "
              "epoch_e[j]), reorder epoch e, then average over the epochs.")
    _ok(f"{name}: the same matched average as ll.matching.match_epochs on two sets of noisy, "
        "shuffled epochs.")
