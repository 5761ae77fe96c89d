"""DP-SGD: clipping, noise, its use inside client_update/train, and the accountant."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from leakage_lab import fl, models, privacy

MODEL = models.mlp(num_classes=3, input_shape=(4, 4, 1), hidden=(8,))
PARAMS = MODEL.init(jax.random.key(0))
X = np.random.default_rng(0).uniform(size=(6, 4, 4, 1)).astype(np.float32)
Y = np.array([0, 1, 2, 0, 1, 2])


def per_example():
    return fl.per_example_gradients(MODEL, PARAMS, X, Y)


def test_settings_are_validated():
    with pytest.raises(ValueError, match="clip_norm must be > 0"):
        privacy.dp_sgd(0.0, 1.0)
    with pytest.raises(ValueError, match="noise_multiplier must be >= 0"):
        privacy.dp_sgd(1.0, -0.1)


def test_no_noise_and_no_clipping_is_the_plain_mean_gradient():
    dp = privacy.dp_sgd(1e9, 0.0)
    got = privacy.clip_and_noise(per_example(), jnp.ones(6), dp, key=jax.random.key(1))
    want = fl.gradient(MODEL, PARAMS, X, Y)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_clipping_bounds_each_example_and_masked_slots_count_for_nothing():
    c = 0.05
    per = per_example()
    mask = jnp.array([1, 1, 1, 1, 0, 0], jnp.float32)
    got = privacy.clip_and_noise(per, mask, privacy.dp_sgd(c, 0.0), key=jax.random.key(1))
    flat = np.concatenate([np.asarray(x).reshape(6, -1) for x in jax.tree.leaves(per)], axis=1)
    scale = np.minimum(1.0, c / np.linalg.norm(flat, axis=1)) * np.asarray(mask)
    want = (scale[:, None] * flat).sum(0) / 4
    got_flat = np.concatenate([np.asarray(x).ravel() for x in jax.tree.leaves(got)])
    np.testing.assert_allclose(got_flat, want, rtol=1e-5, atol=1e-8)
    assert np.linalg.norm(got_flat) <= c + 1e-6


def test_noise_has_the_stated_standard_deviation():
    zeros = {"w": jnp.zeros((4, 200, 100))}
    dp = privacy.dp_sgd(2.0, 1.5)
    got = privacy.clip_and_noise(zeros, jnp.ones(4), dp, key=jax.random.key(3))["w"]
    assert abs(float(jnp.std(got)) - 1.5 * 2.0 / 4) < 0.01
    assert abs(float(jnp.mean(got))) < 0.01


def test_client_update_with_inert_dp_equals_plain_sgd():
    kw = dict(lr=0.1, epochs=2, batch_size=4, key=jax.random.key(5))
    plain = fl.client_update(MODEL, PARAMS, X, Y, **kw)
    inert = fl.client_update(MODEL, PARAMS, X, Y, dp=privacy.dp_sgd(1e9, 0.0), **kw)
    for a, b in zip(jax.tree.leaves(plain), jax.tree.leaves(inert), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    noisy = fl.client_update(MODEL, PARAMS, X, Y, dp=privacy.dp_sgd(1.0, 1.0), **kw)
    again = fl.client_update(MODEL, PARAMS, X, Y, dp=privacy.dp_sgd(1.0, 1.0), **kw)
    assert not np.allclose(noisy["fc1"]["w"], plain["fc1"]["w"])
    np.testing.assert_array_equal(noisy["fc1"]["w"], again["fc1"]["w"])  # same key, same noise


def test_epsilon_behaves_like_a_privacy_budget():
    dp = privacy.dp_sgd(1.0, 1.1)
    eps = privacy.epsilon(dp, sampling_rate=0.01, steps=10_000, delta=1e-5)
    assert 3.0 < eps < 9.0  # Abadi et al.'s MNIST setting lands in single digits
    assert privacy.epsilon(dp, sampling_rate=0.01, steps=20_000, delta=1e-5) > eps
    assert privacy.epsilon(privacy.dp_sgd(1.0, 2.0), sampling_rate=0.01, steps=10_000,
                           delta=1e-5) < eps
    assert privacy.epsilon(privacy.dp_sgd(1.0, 0.0), sampling_rate=0.01, steps=1,
                           delta=1e-5) == float("inf")
    with pytest.raises(ValueError, match="sampling_rate"):
        privacy.epsilon(dp, sampling_rate=0.0, steps=1, delta=1e-5)


def test_train_reports_epsilon_for_the_steps_taken():
    clients = [(X[:3], Y[:3]), (X[3:], Y[3:])]
    kw = dict(rounds=2, clients_per_round=2, lr=0.1, epochs=1, batch_size=3,
              key=jax.random.key(0))
    plain = fl.train(MODEL, PARAMS, clients, **kw)
    assert plain.epsilon is None
    dp = privacy.dp_sgd(1.0, 1.0)
    private = fl.train(MODEL, PARAMS, clients, dp=dp, **kw)
    want = privacy.epsilon(dp, sampling_rate=1.0, steps=2, delta=1e-5)
    assert private.epsilon == pytest.approx(want)


def test_epsilon_is_dp_accountings_rdp_accountant_for_the_same_parameters():
    """ll.privacy.epsilon against the RDP accountant built directly (count passed to compose)."""
    import dp_accounting
    from dp_accounting.rdp import rdp_privacy_accountant

    for sigma, q, steps, delta in ((1.1, 0.01, 1000, 1e-5), (0.8, 0.1, 50, 1e-6),
                                   (2.0, 1.0, 3, 1e-5)):
        accountant = rdp_privacy_accountant.RdpAccountant()
        accountant.compose(dp_accounting.PoissonSampledDpEvent(
            q, dp_accounting.GaussianDpEvent(sigma)), steps)
        want = accountant.get_epsilon(delta)
        got = privacy.epsilon(privacy.dp_sgd(1.0, sigma), sampling_rate=q, steps=steps,
                              delta=delta)
        assert got == pytest.approx(want, rel=1e-9)


@pytest.mark.parametrize(("sigma", "epochs", "documented"), [(1.12, 60, 2.92), (0.6, 30, 9.74),
                                                             (1.2, 10, 1.20)])
def test_epsilon_reproduces_tensorflow_privacys_documented_values(sigma, epochs, documented):
    """TensorFlow Privacy's MNIST tutorial table (tutorials/README.md, "Select Parameters"):
    N = 60,000, batch 256, δ = 1e-5. Those values used the classic RDP-to-DP conversion
    ε = min_α RDP(α) + log(1/δ) / (α - 1) over its orders; with the RDP that the same
    accountant computes, that conversion gives the documented ε, and ll.privacy.epsilon
    (dp-accounting's tighter conversion) is below it."""
    import math

    import dp_accounting
    from dp_accounting.rdp import rdp_privacy_accountant

    q, steps, delta = 256 / 60_000, epochs * 60_000 // 256, 1e-5
    orders = [1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64))
    accountant = rdp_privacy_accountant.RdpAccountant(orders)
    accountant.compose(dp_accounting.PoissonSampledDpEvent(
        q, dp_accounting.GaussianDpEvent(sigma)), steps)
    rdp = np.asarray(accountant._rdp)  # the accountant's RDP curve, one value per order
    classic = float(np.min(rdp + math.log(1 / delta) / (np.asarray(orders) - 1)))
    assert classic == pytest.approx(documented, rel=5e-3)
    ours = privacy.epsilon(privacy.dp_sgd(1.0, sigma), sampling_rate=q, steps=steps, delta=delta)
    assert 0.7 * documented < ours <= classic


def test_epsilon_of_zero_steps_is_zero_and_bad_settings_are_refused():
    assert privacy.epsilon(privacy.dp_sgd(1.0, 1.0), sampling_rate=0.1, steps=0,
                           delta=1e-5) == 0.0
    for clip in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="clip_norm must be > 0"):
            privacy.dp_sgd(clip, 1.0)
    with pytest.raises(ValueError, match="delta"):
        privacy.epsilon(privacy.dp_sgd(1.0, 1.0), sampling_rate=0.1, steps=1, delta=0.0)


def test_dp_gradient_is_the_private_fedsgd_update():
    inert = privacy.dp_gradient(MODEL, PARAMS, X, Y, privacy.dp_sgd(1e9, 0.0),
                                key=jax.random.key(0))
    for a, b in zip(jax.tree.leaves(inert), jax.tree.leaves(fl.gradient(MODEL, PARAMS, X, Y)),
                    strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    clipped = privacy.dp_gradient(MODEL, PARAMS, X[:1], Y[:1], privacy.dp_sgd(1e-3, 0.0),
                                  key=jax.random.key(0))
    norm = np.sqrt(sum(float(jnp.sum(x**2)) for x in jax.tree.leaves(clipped)))
    assert norm == pytest.approx(1e-3, rel=1e-4)
