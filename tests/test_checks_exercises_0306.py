"""The attack exercises of labs 03 and 06 (issue 15): Inverting Gradients' objective and
step, and SimUpdate. Each self-check passes the lab's answer and fails, with the hint
for that slip, on typical wrong answers."""

import jax
import jax.numpy as jnp
import pytest

import leakage_lab as ll
from leakage_lab.checks import CheckFailed

# --- lab 03: 1 − cos(g, g') + α TV ------------------------------------------------------


def _tv(images):
    return (jnp.mean(jnp.abs(images[:, 1:] - images[:, :-1]))
            + jnp.mean(jnp.abs(images[:, :, 1:] - images[:, :, :-1])))


def ig_objective(model, params, update, images, labels, tv_weight, *, form="cos",
                 tv_scale=None, stop=False):
    """A right answer, and (through the keywords) the usual wrong ones."""
    candidate = ll.objective.candidate_gradient(model, params, images, labels)
    if stop:
        candidate = jax.lax.stop_gradient(candidate)
    pairs = list(zip(jax.tree.leaves(update), jax.tree.leaves(candidate), strict=True))
    dot = sum(jnp.sum(g * c) for g, c in pairs)
    gg = sum(jnp.sum(g * g) for g, _ in pairs)
    cc = sum(jnp.sum(c * c) for _, c in pairs)
    cos = dot / jnp.sqrt(gg * cc)
    match = {"cos": 1.0 - cos, "1+cos": 1.0 + cos, "-cos": -cos,
             "l2": sum(jnp.sum((g - c) ** 2) for g, c in pairs),
             "one-norm": 1.0 - dot / gg}[form]
    return match + (tv_weight if tv_scale is None else tv_scale) * _tv(images)


def test_ig_objective_accepts_a_right_answer(capsys):
    ll.checks.inverting_objective(ig_objective)
    assert capsys.readouterr().out.startswith("✓")


@pytest.mark.parametrize(("fn", "hint"), [
    (lambda *a: ig_objective(*a, form="1+cos"), r"added the cosine similarity \(1 \+ cos\)"),
    (lambda *a: ig_objective(*a, form="-cos"), "you return −cos"),
    (lambda *a: ig_objective(*a, tv_scale=0.0), "total variation is missing"),
    (lambda *a: ig_objective(*a, tv_scale=1.0), "without its weight"),
    (lambda *a: ig_objective(*a, form="l2"), "squared L2 distance.*scales its update by 10"),
    (lambda *a: ig_objective(*a, form="one-norm"), "observed norm only"),
    (lambda *a: ig_objective(*a, stop=True), "wrong gradient with respect to the images"),
    (lambda *a: ll.inverting.inverting_objective(*a[:5], prior_weight=a[5]),
     "you called `ll.inverting.inverting_objective`"),
])
def test_ig_objective_explains_a_wrong_answer(fn, hint):
    with pytest.raises(CheckFailed, match=hint):
        ll.checks.inverting_objective(fn)


def test_ig_objective_sees_a_scaled_update():
    """An answer that is right at the check's update scale and wrong at ten times it."""
    from leakage_lab.checks.lab03 import _objective_case, _objective_reference

    sizes = []
    for case in range(2):
        model, params, truth, images, labels = _objective_case(case)
        update = _objective_reference(model)(params, truth, images, labels)[0]
        sizes.append(sum(float(jnp.sum(g * g)) for g in jax.tree.leaves(update)))
    threshold = 2 * max(sizes)   # above every check update's ||g||², below 100 times it

    def scale_sensitive(model, params, update, images, labels, tv_weight):
        gg = sum(jnp.sum(g * g) for g in jax.tree.leaves(update))
        return ig_objective(model, params, update, images, labels, tv_weight) + \
            jnp.maximum(gg - threshold, 0.0)

    with pytest.raises(CheckFailed, match="times 10.*must not depend on the update's scale"):
        ll.checks.inverting_objective(scale_sensitive)


# --- lab 03: Adam on sign(∇), then clip to [0, 1] ------------------------------------------


def ig_step(images, grad, m, v, t, lr, *, sign=True, project=True, bias=True, direction=-1.0,
            sign_after=False):
    b1, b2, eps = 0.9, 0.999, 1e-8
    s = jnp.sign(grad) if sign else grad
    m = b1 * m + (1 - b1) * s
    v = b2 * v + (1 - b2) * s ** 2
    m_hat, v_hat = (m / (1 - b1 ** t), v / (1 - b2 ** t)) if bias else (m, v)
    step = m_hat / (jnp.sqrt(v_hat) + eps)
    images = images + direction * lr * (jnp.sign(step) if sign_after else step)
    return (jnp.clip(images, 0.0, 1.0) if project else images), m, v


def test_ig_step_accepts_a_right_answer(capsys):
    ll.checks.ig_step(ig_step)
    assert capsys.readouterr().out.startswith("✓")


def _signed_descent(images, grad, m, v, t, lr):
    return jnp.clip(images - lr * jnp.sign(grad), 0.0, 1.0), m, v


@pytest.mark.parametrize(("fn", "hint"), [
    (lambda *a: ig_step(*a, sign=False), "Adam on the raw gradient.*SIGN"),
    (lambda *a: ig_step(*a, project=False), r"outside \[0, 1\].*jnp.clip"),
    (lambda *a: ig_step(*a, direction=1.0), "goes UP the gradient"),
    (lambda *a: ig_step(*a, bias=False), "bias correction is missing"),
    (lambda *a: ig_step(*a, sign=False, sign_after=True), "sign of Adam's update"),
    (_signed_descent, "signed gradient descent"),
    (lambda x, g, m, v, t, lr: ig_step(x, g, m, v, t - 1, lr), "non-finite.*counts from 1"),
    (lambda x, g, m, v, t, lr: x, "tuple"),
    (lambda x, g, m, v, t, lr: (ll.optimizers.unit_box(x - lr * jnp.sign(g)), m, v),
     "you called `ll.optimizers.unit_box`"),
])
def test_ig_step_explains_a_wrong_answer(fn, hint):
    with pytest.raises(CheckFailed, match=hint):
        ll.checks.ig_step(fn)


# --- lab 06: SimUpdate -----------------------------------------------------------------------


def sim_update(model, theta_s, images, labels, lr, *, sign=1.0, frozen=False, stop=False,
               divide=True, transpose=False, scan=True):
    """A right answer, and (through the keywords) the usual wrong ones."""
    if transpose:
        images, labels = jnp.swapaxes(images, 0, 1), jnp.swapaxes(labels, 0, 1)
    xs = images.reshape(-1, *images.shape[2:])
    ys = labels.reshape(-1, labels.shape[-1])

    def step(theta, batch):
        x, y = batch
        at = theta_s if frozen else (jax.lax.stop_gradient(theta) if stop else theta)
        g = ll.objective.candidate_gradient(model, at, x, y)
        return jax.tree.map(lambda w, d: w - sign * lr * d, theta, g), None

    if scan:
        theta_c, _ = jax.lax.scan(step, theta_s, (xs, ys))
    else:
        theta_c = theta_s
        for i in range(xs.shape[0]):
            theta_c, _ = step(theta_c, (xs[i], ys[i]))
    scale = lr * xs.shape[0] if divide else 1.0
    return jax.tree.map(lambda s, c: (s - c) / scale, theta_s, theta_c)


def test_sim_update_accepts_a_right_answer(capsys):
    ll.checks.sim_update(sim_update)
    assert capsys.readouterr().out.startswith("✓")


@pytest.mark.parametrize(("fn", "hint"), [
    (lambda *a: sim_update(*a, sign=-1.0), "steps go UP the gradient"),
    (lambda *a: sim_update(*a, frozen=True), "averaged U gradients instead of stepping"),
    (lambda *a: sim_update(*a, stop=True), "wrong gradient with respect to the images"),
    (lambda *a: sim_update(*a, divide=False), "forgot to divide by η U"),
    (lambda *a: sim_update(*a, transpose=True), "wrong order"),
    (lambda *a: sim_update(*a, scan=False), "without a jax.lax.scan"),
    (lambda m, p, x, y, lr: jax.tree.map(lambda s, c: s - lr * x.shape[0] * x.shape[1] * c,
                                         p, sim_update(m, p, x, y, lr)),
     "returned the simulated weights"),
    (lambda m, p, x, y, lr: ll.fedavg.simulate(
        m, p, x, y, jnp.ones(y.shape), lr=lr, layout=ll.fedavg.per_batch(*x.shape[:2])),
     "you called `ll.fedavg.simulate`"),
])
def test_sim_update_explains_a_wrong_answer(fn, hint):
    with pytest.raises(CheckFailed, match=hint):
        ll.checks.sim_update(fn)
