"""The self-checks of labs 06-08 accept right answers and explain wrong ones."""

import jax
import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

import leakage_lab as ll
from leakage_lab.checks import CheckFailed

# --- lab 06: the client loop ----------------------------------------------------------


def client_loop(model, params, images, labels, batches, lr, *, frozen=False, sign=1.0,
                epochs=None, whole=False, rate=None):
    """A right answer, and (through the keywords) the usual wrong ones."""
    rate = lr if rate is None else rate
    theta = params
    for epoch in batches[:epochs] if epochs else batches:
        for batch in epoch:
            idx = np.arange(len(labels)) if whole else batch
            at = params if frozen else theta
            g = ll.fl.gradient(model, at, images[idx], labels[idx])
            theta = jax.tree.map(lambda w, d: w - sign * rate * d, theta, g)
    return theta


def test_client_loop_accepts_a_right_answer(capsys):
    ll.checks.client_update_loop(client_loop)
    assert capsys.readouterr().out.startswith("✓")


def _restart_every_epoch(model, params, images, labels, batches, lr):
    theta = params
    for epoch in batches:
        theta = params
        for batch in epoch:
            g = ll.fl.gradient(model, theta, images[batch], labels[batch])
            theta = jax.tree.map(lambda w, d: w - lr * d, theta, g)
    return theta


def _one_averaged_step(model, params, images, labels, batches, lr):
    g = ll.fl.gradient(model, params, images, labels)
    return jax.tree.map(lambda w, d: w - lr * d, params, g)


@pytest.mark.parametrize(("fn", "hint"), [
    (lambda *a: client_loop(*a, frozen=True), "at the server's weights θs"),
    (lambda *a: client_loop(*a, sign=-1.0), "sign is flipped"),
    (lambda *a: client_loop(*a, epochs=1), "only the first epoch"),
    (_restart_every_epoch, "restart from params"),
    (lambda *a: client_loop(*a, whole=True), "used all the client's images"),
    (lambda *a: client_loop(*a, rate=1.0), "learning rate is missing"),
    (_one_averaged_step, "ONE step with the average gradient"),
    (lambda m, p, x, y, b, lr: p, "unchanged"),
    (lambda m, p, x, y, b, lr: None, "return"),
    (lambda m, p, x, y, b, lr: [p, p], "pytree shaped like params"),
    (lambda m, p, x, y, b, lr: client_loop(m, p, x, y, b[:, :1], lr), "does not match"),
])
def test_client_loop_hints(fn, hint):
    with pytest.raises(CheckFailed, match=hint):
        ll.checks.client_update_loop(fn)


def test_client_loop_reports_errors_in_learner_code():
    def broken(*args):
        raise RuntimeError("oops")

    with pytest.raises(CheckFailed, match="RuntimeError: oops"):
        ll.checks.client_update_loop(broken)


# --- lab 07: interpolated label counts -----------------------------------------------


def counts(column_sums, server, client, num_samples, epochs, batch_size, *, t_shift=1.0,
           divide=True, size=None, average_o=False, sign=1.0):
    """A right answer, and (through the keywords) the usual wrong ones."""
    steps = epochs * (num_samples // batch_size)
    t = (np.arange(1, steps + 1) - t_shift) / steps
    p_s, p_c = np.asarray(server.p_mean), np.asarray(client.p_mean)
    p = (1 - t)[:, None] * p_s + t[:, None] * p_c
    o = (1 - t) * float(server.o_mean) + t * float(client.o_mean)
    if average_o:
        o = np.full_like(o, o.mean())
    m = batch_size if size is None else size
    per_step = m * p - sign * m * np.asarray(column_sums)[None, :] / o[:, None]
    return per_step.sum(axis=0) / (epochs if divide else 1)


def test_counts_accept_a_right_answer(capsys):
    ll.checks.fedavg_label_counts(counts)
    assert capsys.readouterr().out.startswith("✓")


def test_counts_do_not_depend_on_the_order_of_equal_steps():
    """The sum over steps sees only the set of t_i: running the interpolation from θc to θs
    (the paper's formula read literally) gives the same counts when all batches hold m."""

    def backwards(column_sums, server, client, n, epochs, m):
        return counts(column_sums, client, server, n, epochs, m, t_shift=0.0)

    ll.checks.fedavg_label_counts(backwards)


def _at(which):
    def fn(column_sums, server, client, n, epochs, m):
        stats = server if which == "server" else client
        steps = epochs * (n // m)
        return (m * np.asarray(stats.p_mean) * steps
                - m * steps * np.asarray(column_sums) / float(stats.o_mean)) / epochs

    return fn


@pytest.mark.parametrize(("fn", "hint"), [
    (_at("server"), "statistics at θs"),
    (_at("client"), "statistics at θc"),
    (lambda *a: counts(*a, t_shift=0.0), "off by one"),
    (lambda *a: counts(*a, divide=False), "E times too large"),
    (lambda *a: counts(*a, size=a[3]), "use m \\(not N\\)"),
    (lambda *a: counts(*a, average_o=True), "averaged Õ"),
    (lambda *a: counts(*a, sign=-1.0), "sign of the Δ term"),
    (lambda *a: np.round(counts(*a)), "rounded"),
    (lambda *a: counts(*a)[None], "one estimate per class"),
    (lambda *a: None, "return"),
    (lambda *a: counts(*a) if a[3] == 12 else counts(*a, divide=False), "another"),
    (lambda *a: counts(*a) + 0.5, "Per step"),
])
def test_counts_hints(fn, hint):
    with pytest.raises(CheckFailed, match=hint):
        ll.checks.fedavg_label_counts(fn)


def test_counts_check_agrees_with_the_library():
    """The check's reference is what labels.fedavg_counts computes from a real client."""
    model = ll.models.mlp(num_classes=4, input_shape=(4, 4, 1), hidden=(8,))
    theta_s = model.init(jax.random.key(0))
    images = jax.random.uniform(jax.random.key(1), (12, 4, 4, 1))
    labels = jax.numpy.array([0, 1, 2, 3] * 3)
    lr, epochs, m = 0.5, 3, 4
    theta_c = ll.fl.client_update(model, theta_s, images, labels, lr=lr, epochs=epochs,
                                  batch_size=m, key=jax.random.key(2))
    dummy = jax.random.uniform(jax.random.key(3), (20, 4, 4, 1))
    res = ll.labels.fedavg_counts(model, theta_s, theta_c, num_samples=12, lr=lr,
                                  epochs=epochs, batch_size=m, key=jax.random.key(4),
                                  dummy_images=dummy)
    layer = ll.labels.last_layer(model, theta_s)
    steps = epochs * 12 // m
    column_sums = np.sum(np.asarray(theta_s[layer]["w"] - theta_c[layer]["w"]), axis=0) \
        / (lr * steps)
    server = ll.labels.dummy_statistics(model, theta_s, dummy)
    client = ll.labels.dummy_statistics(model, theta_c, dummy)
    np.testing.assert_allclose(counts(column_sums, server, client, 12, epochs, m), res.raw,
                               rtol=1e-4, atol=1e-4)


# --- lab 08: MatchEpoch -----------------------------------------------------------------


def match(epoch_images, *, sign=-1.0, inverse=False, matched=True, average=True):
    """A right answer, and (through the keywords) the usual wrong ones."""
    epochs = np.asarray(epoch_images)
    out = [epochs[0]]
    for other in epochs[1:]:
        if not matched:
            out.append(other)
            continue
        rows, cols = linear_sum_assignment(sign * ll.matching.psnr_table(epochs[0], other))
        order = cols[np.argsort(rows)]
        out.append(other[np.argsort(order)] if inverse else other[order])
    return np.mean(out, axis=0) if average else np.stack(out)


def test_match_accepts_a_right_answer_and_the_library(capsys):
    ll.checks.match_epochs(match)
    ll.checks.match_epochs.__wrapped__(ll.matching.match_epochs)  # unguarded: it agrees
    assert capsys.readouterr().out.count("✓") == 2
    with pytest.raises(CheckFailed, match="write it yourself"):  # but it is no answer
        ll.checks.match_epochs(ll.matching.match_epochs)


@pytest.mark.parametrize(("fn", "hint"), [
    (lambda e: match(e, matched=False), "without matching"),
    (lambda e: match(e, sign=1.0), "MAXIMISED"),
    (lambda e: match(e, inverse=True), "wrong way round"),
    (lambda e: np.asarray(e)[0], "first epoch alone"),
    (lambda e: match(e, average=False), "all E epochs"),
    (lambda e: match(e)[:, :2], "expected"),
    (lambda e: None, "return"),
    (lambda e: match(e) + 0.1, "does not match ll.matching.match_epochs"),
])
def test_match_hints(fn, hint):
    with pytest.raises(CheckFailed, match=hint):
        ll.checks.match_epochs(fn)
