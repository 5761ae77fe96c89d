"""The attack exercises of labs 01 and 02: each self-check passes on the master's answer
and fails, with the hint for that slip, on typical broken answers.

* ``ll.checks.dlg_loss``: DLG's gradient-matching objective with a joint soft label;
* ``ll.checks.dlg_step``: one gradient-descent step on it (image and label logits);
* ``ll.checks.geng_counts``: Geng et al.'s label counts (Eq. 2 as Dimitrov et al. write it).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import leakage_lab as ll
from leakage_lab.checks import CheckFailed, lab01, lab02

# -- lab 01: DLG's objective --------------------------------------------------------------


def _leaves_l2(observed, candidate):
    return sum(jnp.sum((g - c) ** 2) for g, c in zip(jax.tree.leaves(observed),
                                                      jax.tree.leaves(candidate), strict=True))


def _objective(labels_of=jax.nn.softmax, reduce=jnp.mean, sign=1.0, log=jax.nn.log_softmax,
               distance=_leaves_l2, cut=lambda g: g):
    """A DLG objective written by a learner, with one of the usual slips switched on."""
    def dlg_loss(model, params, observed, dummy_images, dummy_logits):
        labels = labels_of(dummy_logits)

        def client_loss(p):
            logp = log(model.apply(p, dummy_images))
            return reduce(-sign * jnp.sum(labels * logp, axis=-1))

        candidate = jax.tree.map(cut, jax.grad(client_loss)(params))
        return distance(observed, candidate)

    return dlg_loss


RIGHT_LOSS = _objective()


def test_dlg_loss_passes_the_solution(capsys):
    ll.checks.dlg_loss(RIGHT_LOSS)
    assert capsys.readouterr().out.startswith("✓")


def test_dlg_loss_passes_an_answer_with_the_allowed_helpers(capsys):
    def dlg_loss(model, params, observed, dummy_images, dummy_logits):
        def client_loss(p):
            ce = ll.objective.cross_entropy(model.apply(p, dummy_images),
                                            jax.nn.softmax(dummy_logits))
            return jnp.mean(ce)

        return ll.distances.l2(observed, jax.grad(client_loss)(params))

    ll.checks.dlg_loss(dlg_loss)
    assert capsys.readouterr().out.startswith("✓")


@pytest.mark.parametrize(("broken", "hint"), [
    (_objective(labels_of=lambda u: u), r"raw logits u as the label.*softmax\(u\)"),
    (_objective(labels_of=lambda u: jax.nn.one_hot(jnp.argmax(u, axis=-1), u.shape[-1])),
     r"argmax\) as a hard label"),
    (_objective(sign=-1.0), "cross-entropy has the wrong sign"),
    (_objective(reduce=jnp.sum), "SUMS the cross-entropy over the batch.*MEAN"),
    (_objective(log=lambda z: z), "uses the logits, not the log-probabilities"),
    (_objective(distance=lambda a, b: -_leaves_l2(a, b)), "exactly minus the right value"),
    (_objective(distance=lambda a, b: jnp.sqrt(_leaves_l2(a, b))), "SQUARED distance"),
    (_objective(distance=lambda a, b: _leaves_l2(a, b) / sum(x.size for x in
                                                               jax.tree.leaves(a))),
     "mean over all entries"),
    (_objective(cut=jax.lax.stop_gradient), "gradient with respect to the image is zero"),
], ids=["no-softmax", "argmax", "ce-sign", "batch-sum", "no-log-softmax", "sign", "sqrt",
        "mean", "stop-gradient"])
def test_dlg_loss_names_the_slip(broken, hint):
    with pytest.raises(CheckFailed, match=hint):
        ll.checks.dlg_loss(broken)


def test_dlg_loss_sees_a_label_cut_off_and_a_hard_coded_value():
    def label_cut(model, params, observed, dummy_images, dummy_logits):
        return RIGHT_LOSS(model, params, observed, dummy_images,
                          jax.lax.stop_gradient(dummy_logits))

    with pytest.raises(CheckFailed, match="respect to the label logits is zero"):
        ll.checks.dlg_loss(label_cut)
    first = lab01._dlg_case(0, 3)
    value = lab01._dlg_reference(*first)
    with pytest.raises(CheckFailed, match="hard-coded"):
        ll.checks.dlg_loss(lambda *args: jnp.asarray(value))


def test_dlg_loss_hints_are_distinct_on_the_checks_inputs():
    """Every slip gives another value than the answer, so no right answer gets a hint."""
    case = lab01._dlg_case(0, 3)
    want = lab01._dlg_reference(*case)
    values = [v for v, _ in lab01._dlg_loss_variants(*case)]
    assert all(abs(v - want) > 1e-3 * abs(want) for v in values)


# -- lab 01: one step ---------------------------------------------------------------------


def _step(objective=RIGHT_LOSS, image_sign=-1.0, move_labels=True, post=lambda x: x,
          lr_used=True):
    def dlg_step(model, params, observed, dummy_images, dummy_logits, lr):
        gx, gu = jax.grad(objective, argnums=(3, 4))(model, params, observed, dummy_images,
                                                     dummy_logits)
        rate = lr if lr_used else 1.0
        new_u = dummy_logits - rate * gu if move_labels else dummy_logits
        return post(dummy_images + image_sign * rate * gx), new_u

    return dlg_step


def test_dlg_step_passes_the_solution(capsys):
    ll.checks.dlg_step(_step())
    assert capsys.readouterr().out.startswith("✓")


def _ascent(model, params, observed, dummy_images, dummy_logits, lr):
    gx, gu = jax.grad(RIGHT_LOSS, argnums=(3, 4))(model, params, observed, dummy_images,
                                                  dummy_logits)
    return dummy_images + lr * gx, dummy_logits + lr * gu


def _signed(model, params, observed, dummy_images, dummy_logits, lr):
    gx, gu = jax.grad(RIGHT_LOSS, argnums=(3, 4))(model, params, observed, dummy_images,
                                                  dummy_logits)
    return dummy_images - lr * jnp.sign(gx), dummy_logits - lr * jnp.sign(gu)


def _python_float(model, params, observed, dummy_images, dummy_logits, lr):
    gx, gu = jax.grad(RIGHT_LOSS, argnums=(3, 4))(model, params, observed, dummy_images,
                                                  dummy_logits)
    rate = float(lr)   # fine when called directly, fails when the lab jits the step
    return dummy_images - rate * gx, dummy_logits - rate * gu


@pytest.mark.parametrize(("broken", "hint"), [
    (_ascent, "stepped UP the gradient"),
    (_step(move_labels=False), "label logits did not"),
    (_step(lr_used=False), "ignores the step size"),
    (_step(post=lambda x: jnp.clip(x, 0.0, 1.0)), "clipped the image"),
    (_signed, "signed step"),
    (_step(objective=_objective(labels_of=lambda u: u)), "fix dlg_loss first"),
    (_python_float, "fails under jax.jit"),
], ids=["ascent", "image-only", "no-lr", "clipped", "signed", "wrong-objective", "not-jittable"])
def test_dlg_step_names_the_slip(broken, hint):
    with pytest.raises(CheckFailed, match=hint):
        ll.checks.dlg_step(broken)


def test_dlg_step_wants_a_pair():
    with pytest.raises(CheckFailed, match=r"pair \(new_images, new_logits\)"):
        ll.checks.dlg_step(lambda model, params, observed, x, u, lr: x)


# -- lab 02: Geng et al.'s counts ---------------------------------------------------------


def _counts(sign=-1.0, softmax_term=True, n_on_delta=True, columns=jnp.sum,
            rounding=ll.labels.round_counts):
    def geng_counts(weight_grad, p_mean, o_mean, num_samples):
        n = num_samples
        delta = columns(weight_grad, axis=0)
        estimate = (n * p_mean if softmax_term else 0.0) \
            + sign * (n if n_on_delta else 1) * delta / o_mean
        return rounding(estimate, n)

    return geng_counts


def test_geng_counts_passes_the_solution(capsys):
    ll.checks.geng_counts(_counts())
    assert capsys.readouterr().out.startswith("✓")


@pytest.mark.parametrize(("broken", "hint"), [
    (_counts(sign=+1.0), "sign of the gradient term is flipped"),
    (_counts(softmax_term=False), r"forgot the softmax term N p̃_k"),
    (_counts(n_on_delta=False), "lacks the factor N.*MEAN loss"),
    (_counts(columns=jnp.mean), "column SUM"),
    (_counts(rounding=lambda estimate, n: estimate), "real-valued estimate.*round"),
    (_counts(rounding=lambda estimate, n: jnp.round(estimate)),
     "rounds the right estimate.*one by one.*sum to N"),
    (_counts(columns=lambda w, axis: jnp.sum(w, axis=1)), r"over the D rows.*axis=0"),
], ids=["sign", "no-softmax-term", "no-N", "column-mean", "not-rounded", "np-round", "axis"])
def test_geng_counts_names_the_slip(broken, hint):
    with pytest.raises(CheckFailed, match=hint):
        ll.checks.geng_counts(broken)


def test_geng_counts_cases_are_what_they_claim():
    """The exact cases give the counts back through the library's Eq. 2; the network
    cases' reference is ll.labels.batch_counts, and differs from rounding one by one."""
    rng = np.random.default_rng(0)
    for counts, width, o_mean in (([2, 0, 3, 1, 0], 3, 0.6), ([0, 4, 1, 0, 5], 9, 12.5)):
        w, p, o, n = lab02._exact_case(rng, counts, width, o_mean)
        raw = ll.labels.geng_estimate(jnp.sum(w, axis=0), p, o, n)
        np.testing.assert_allclose(np.asarray(raw), counts, atol=1e-4)
        assert np.array_equal(ll.labels.round_counts(raw, n), counts)
    args, from_library = lab02._network_case(0, [1, 1, 1, 1, 4, 4, 2, 0, 5, 5, 5])
    w, p, o, n = args
    raw = np.asarray(ll.labels.geng_estimate(jnp.sum(w, axis=0), p, o, n))
    assert np.array_equal(ll.labels.round_counts(raw, n), np.asarray(from_library))
    assert np.round(raw).sum() != n  # so rounding one by one is caught
