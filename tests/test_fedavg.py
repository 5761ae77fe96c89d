"""The FedAvg attack (Dimitrov et al., TMLR 2022): SimUpdate, label counts, the attack, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _helpers import small_client

from leakage_lab import attacks as ll_attacks
from leakage_lab import distances, fedavg, fl, labels, metrics, models, priors

SHAPE = (4, 4, 1)
MODEL = models.mlp(num_classes=3, input_shape=SHAPE, hidden=(8,))
LR = 0.5


@pytest.fixture(scope="module")
def setup():
    return small_client(MODEL)


def _close(a, b, **kw):
    for x, z in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(z), **kw)


def test_simulate_with_the_true_batches_reproduces_the_client(setup):
    params, images, y = setup
    run = fl.client_steps(MODEL, params, images, y, lr=LR, epochs=3, batch_size=2,
                          key=jax.random.key(1))
    idx = np.asarray(run.batches)                       # [E, B, m]
    x = jnp.asarray(images[idx])                        # [E, B, m, H, W, C]
    theta = fedavg.simulate(MODEL, params, x, jnp.asarray(y[idx]), jnp.asarray(run.mask),
                            lr=LR, layout=fedavg.per_batch(3, 3))
    _close(theta, run.params, rtol=1e-5, atol=1e-6)
    # A different order of the same images gives other weights: the order matters.
    swapped = fedavg.simulate(MODEL, params, x[::-1], jnp.asarray(y[idx][::-1]),
                              jnp.asarray(run.mask), lr=LR, layout=fedavg.per_batch(3, 3))
    assert not np.allclose(swapped["fc1"]["w"], run.params["fc1"]["w"], atol=1e-6)


def test_layouts():
    assert fedavg.per_batch(10, 5) == fedavg.Layout(10, 5, 10)
    assert fedavg.shared(10, 5) == fedavg.Layout(1, 5, 10)
    assert fedavg.fedsgd_epoch(10, 5) == fedavg.Layout(10, 1, 10, 5, prior=False)
    assert fedavg.fedsgd(10, 5) == fedavg.Layout(1, 1, 1)


def test_epoch_invariant_is_blind_to_order_only():
    rng = np.random.default_rng(4)
    x = jnp.asarray(rng.uniform(size=(5, 4, 4, 1)), jnp.float32)
    same = jnp.stack([x, x[::-1], x[jnp.array([2, 0, 4, 1, 3])]])
    conv = priors.conv_max(key=jax.random.key(0), channels=1, filters=8)
    for g in (priors.epoch_mean, conv):
        for d in (distances.mean_squared, distances.mean_absolute):
            assert float(priors.epoch_invariant(same, g, d)) == pytest.approx(0.0, abs=1e-5)
    other = same.at[1, 0].set(0.0)
    assert float(priors.epoch_invariant(other)) > 0.0
    assert conv is priors.conv_max(key=jax.random.key(0), channels=1, filters=8)


def test_fedavg_counts_exact_when_every_sample_looks_alike(setup):
    # One image repeated with different labels, dummy inputs = that image, one local
    # step: Geng et al.'s Eq. 2 holds exactly, for every statistics strategy.
    params, images, _ = setup
    x = np.repeat(images[:1], 8, axis=0)
    y = np.array([0, 0, 0, 1, 2, 2, 2, 2], np.int32)
    theta_c = fl.client_update(MODEL, params, x, y, lr=0.01, epochs=1, batch_size=8,
                               key=jax.random.key(0))
    true = np.bincount(y, minlength=3)
    for strategy in (labels.at_server, labels.at_client, labels.interpolate):
        res = labels.fedavg_counts(MODEL, params, theta_c, num_samples=8, lr=0.01, epochs=1,
                                   batch_size=8, key=jax.random.key(1), statistics=strategy,
                                   dummy_images=x[:1])
        np.testing.assert_array_equal(np.asarray(res.counts), true)
        if strategy is not labels.at_client:   # at θc the statistics are a step off
            np.testing.assert_allclose(np.asarray(res.raw), true, atol=1e-3)


def test_fedavg_counts_strategies_and_sum(setup):
    params, images, y = setup
    theta_c = fl.client_update(MODEL, params, images, y, lr=LR, epochs=2, batch_size=4,
                               key=jax.random.key(2))
    kw = dict(num_samples=6, lr=LR, epochs=2, batch_size=4, key=jax.random.key(3))
    res = labels.fedavg_counts(MODEL, params, theta_c, **kw)
    assert res.p_mean.shape == (4, 3) and res.o_mean.shape == (4,)     # U = 2 * ceil(6/4)
    assert int(np.sum(res.counts)) == 6 and np.all(np.asarray(res.counts) >= 0)
    # The interpolation starts at θs and moves towards θc.
    at_s = labels.fedavg_counts(MODEL, params, theta_c, statistics=labels.at_server, **kw)
    at_c = labels.fedavg_counts(MODEL, params, theta_c, statistics=labels.at_client, **kw)
    np.testing.assert_allclose(res.p_mean[0], at_s.p_mean[0], rtol=1e-6)
    t = 3 / 4
    np.testing.assert_allclose(res.p_mean[3], (1 - t) * at_s.p_mean[0] + t * at_c.p_mean[0],
                               rtol=1e-5)
    with pytest.raises(ValueError, match="theta_c tree does not match the theta_s"):
        labels.fedavg_counts(MODEL, params, {"fc1": params["fc1"]}, **kw)


def _observed(setup, epochs, batch_size, key=0):
    params, images, y = setup
    return fl.client_update(MODEL, params, images, y, lr=LR, epochs=epochs,
                            batch_size=batch_size, key=jax.random.key(key))


def test_loss_vanishes_at_the_truth_for_one_step_and_for_an_aggregate(setup):
    # E = 1, m = N: one batch, so every split is the client's; the true images give
    # the observed update exactly (cosine distance 0), alone or averaged over clients.
    params, images, y = setup
    theta_c = _observed(setup, 1, 6)
    layout = fedavg.per_batch(1, 1)

    def loss(images, target, labels_, mask):
        return fedavg.fedavg_objective(MODEL, params, target, images, labels_, mask, lr=LR,
                                       layout=layout, tv_weight=0.0, clip_weight=0.0)

    target = jax.tree.map(lambda s, t: (s - t) / LR, params, theta_c)
    x = jnp.asarray(images)[None, None, None]
    labels_ = jnp.asarray(y)[None, None]
    assert float(loss(x, target, labels_, jnp.ones((1, 1, 6)))) == pytest.approx(0.0, abs=1e-5)
    assert float(loss(x[..., ::-1, :, :], target, labels_, jnp.ones((1, 1, 6)))) > 1e-3
    # Two clients, averaged.
    other = np.roll(images, 1, axis=0)
    theta_c2 = fl.client_update(MODEL, params, other, y, lr=LR, epochs=1, batch_size=6,
                                key=jax.random.key(0))
    mean_c = jax.tree.map(lambda a, b: (a + b) / 2, theta_c, theta_c2)
    target2 = jax.tree.map(lambda s, t: (s - t) / LR, params, mean_c)
    x2 = jnp.stack([jnp.asarray(images), jnp.asarray(other)])[:, None, None]
    value2 = loss(x2, target2, jnp.stack([jnp.asarray(y)] * 2)[:, None], jnp.ones((2, 1, 6)))
    assert float(value2) == pytest.approx(0.0, abs=1e-5)


def test_attack_runs_and_improves(setup):
    params, images, y = setup
    theta_c = _observed(setup, 2, 3)
    counts = np.bincount(y, minlength=3)
    res = ll_attacks.fedavg(MODEL, params, theta_c, label_counts=counts, lr=LR, epochs=2,
                            batch_size=3, steps=60, key=jax.random.key(5), tv_weight=0.0,
                            invariant_weight=1.0, chunk=30)
    assert res.images.shape == (6, *SHAPE)
    assert res.epoch_images.shape == (2, 6, *SHAPE)
    assert sorted(res.labels.tolist()) == sorted(y.tolist())
    assert res.batch_labels.shape == (1, 2, 3)
    assert res.steps == 60 and len(res.losses) == 60 and len(res.frames) == 3
    assert res.frames[-1].images.shape == (6, *SHAPE)
    assert res.losses[-1] < 0.5 * res.losses[0]
    assert res.compile_seconds >= 0 and res.seconds > 0


def test_attack_methods_shapes(setup):
    params, images, y = setup
    theta_c = _observed(setup, 2, 4)     # N = 6, m = 4: the last batch holds 2
    counts = np.bincount(y, minlength=3)
    for method, copies in ((fedavg.shared, 1), (fedavg.fedsgd, 1)):
        res = ll_attacks.fedavg(MODEL, params, theta_c, label_counts=counts, lr=LR, epochs=2,
                                batch_size=4, steps=2, key=jax.random.key(0), method=method)
        assert res.epoch_images.shape == (copies, 6, *SHAPE)
        assert res.images.shape == (6, *SHAPE)
    res = ll_attacks.fedavg(MODEL, params, theta_c, label_counts=counts, lr=LR, epochs=2,
                            batch_size=4, steps=2, key=jax.random.key(0))
    assert res.mask.tolist() == [[[1, 1, 1, 1], [1, 1, 0, 0]]]


def test_independent_clients_are_separate_attacks_run_together(setup, monkeypatch):
    # Two clients attacked at once: the loss is the sum of the two separate attacks'
    # losses, step by step (Adam is per pixel), and each keeps its own images.
    params, images, _ = setup
    y = np.zeros(6, np.int32)           # one label: the batch split cannot differ
    other = images[::-1].copy()
    thetas = [fl.client_update(MODEL, params, x, y, lr=LR, epochs=2, batch_size=3,
                               key=jax.random.key(9)) for x in (images, other)]
    counts = np.bincount(y, minlength=3)
    pattern = jnp.asarray(np.random.default_rng(3).uniform(0, 1, (2, 1, 3, *SHAPE)),
                          jnp.float32)

    def init(key, shape):               # the same start for every client
        return jnp.broadcast_to(pattern, shape)

    kw = dict(lr=LR, epochs=2, batch_size=3, steps=20, key=jax.random.key(4), init=init,
              invariant_weight=10.0, chunk=10, optimizer=optax.adam(0.01))
    both = ll_attacks.fedavg(MODEL, params, thetas, label_counts=np.stack([counts] * 2),
                             independent=True, **kw)
    alone = [ll_attacks.fedavg(MODEL, params, t, label_counts=counts, **kw) for t in thetas]
    np.testing.assert_allclose(both.losses, alone[0].losses + alone[1].losses, rtol=2e-4)
    assert both.images.shape == (12, *SHAPE)
    # A small rate: every loss falls at every step, so all three keep their last step.
    assert both.best_step == alone[0].best_step == alone[1].best_step == 19
    np.testing.assert_allclose(both.epoch_images[:, :6], alone[0].epoch_images, atol=1e-4)
    np.testing.assert_allclose(both.epoch_images[:, 6:], alone[1].epoch_images, atol=1e-4)
    # The GPU path (the clients' simulations vmapped) computes the same attack.
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    fedavg._loss.cache_clear()
    vmapped = ll_attacks.fedavg(MODEL, params, thetas, label_counts=np.stack([counts] * 2),
                                independent=True, **kw)
    monkeypatch.undo()
    fedavg._loss.cache_clear()
    np.testing.assert_allclose(vmapped.losses, both.losses, rtol=1e-4)
    with pytest.raises(ValueError, match="2 updates and 1 rows"):
        ll_attacks.fedavg(MODEL, params, thetas, label_counts=counts, independent=True, **kw)
    with pytest.raises(ValueError, match="update must be a non-empty list"):
        ll_attacks.fedavg(MODEL, params, thetas[0], label_counts=counts, independent=True,
                          **kw)
    with pytest.raises(ValueError, match=r"update\[1\] tree does not match"):
        ll_attacks.fedavg(MODEL, params, [thetas[0], {"fc1": thetas[1]["fc1"]}],
                          label_counts=np.stack([counts] * 2), independent=True, **kw)


def test_errors(setup):
    params, images, y = setup
    theta_c = _observed(setup, 2, 3)
    counts = np.bincount(y, minlength=3)
    kw = dict(lr=LR, epochs=2, batch_size=3, steps=1, key=jax.random.key(0))
    with pytest.raises(ValueError, match=r"local_steps=5 .* make 4"):
        ll_attacks.fedavg(MODEL, params, theta_c, label_counts=counts, local_steps=5, **kw)
    with pytest.raises(ValueError, match="sum to 6, but num_samples=7"):
        ll_attacks.fedavg(MODEL, params, theta_c, label_counts=counts, num_samples=7, **kw)
    with pytest.raises(ValueError, match=r"update \(theta_c\) tree does not match"):
        ll_attacks.fedavg(MODEL, params, {"fc1": theta_c["fc1"]}, label_counts=counts, **kw)
    with pytest.raises(ValueError, match=r"counts \[K=3\]"):
        ll_attacks.fedavg(MODEL, params, theta_c, label_counts=[1, 2], **kw)
    with pytest.raises(ValueError, match="non-negative"):
        ll_attacks.fedavg(MODEL, params, theta_c, label_counts=[4, 3, -1], **kw)
    with pytest.raises(ValueError, match="same N"):
        ll_attacks.fedavg(MODEL, params, theta_c, label_counts=[[1, 2, 3], [1, 1, 1]], **kw)
    with pytest.raises(ValueError, match="epochs must be an int >= 1"):
        ll_attacks.fedavg(MODEL, params, theta_c, label_counts=counts, **{**kw, "epochs": 0})


def test_scores_with_metrics(setup):
    # The attack's images are scored like any batch: after matching to the truth.
    _, images, _ = setup
    s = metrics.score_batch(images[::-1], images)
    assert s.mean_psnr == 100.0
