"""The network carries the data's normalisation, and the FedAvg attack takes it from there.

A model built with ``normalization=`` normalises its pixel input itself; clients feed it
pixels. ``attacks.fedavg`` with ``normalization=None`` then works in the normalised space
the model declares, exactly as the explicit ``normalization=`` path does for a plain
network whose client fed it normalised images.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _helpers import numpy_init

from leakage_lab import attacks, data, fl, models, optimizers

NORM3 = ((0.4, 0.5, 0.6), (0.2, 0.25, 0.3))


@pytest.fixture(scope="module")
def femnist():
    return data.load("femnist-like")


@pytest.mark.parametrize("build, shape, norm", [
    (lambda **kw: models.mlp(3, (4, 4, 1), hidden=(8,), **kw), (4, 4, 1), ((0.9,), (0.1,))),
    (lambda **kw: models.convnet(3, (8, 8, 1), width=4, **kw), (8, 8, 1), ((0.9,), (0.1,))),
    (lambda **kw: models.lenet(3, (8, 8, 3), **kw), (8, 8, 3), NORM3),
])
def test_the_model_normalises_its_pixel_input(build, shape, norm):
    plain, carrying = build(), build(normalization=norm)
    assert plain.normalization is None
    assert carrying.normalization == data.Normalization(*norm)
    assert carrying.name.endswith(", normalised)") and not plain.name.endswith("normalised)")
    params = numpy_init(plain, 0)
    x = jnp.asarray(np.random.default_rng(1).uniform(0, 1, (2, *shape)), jnp.float32)
    z = jnp.asarray(data.Normalization(*norm).normalize(np.asarray(x)))
    np.testing.assert_allclose(carrying.apply(params, x), plain.apply(params, z),
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(carrying.features(params, x), plain.features(params, z),
                               rtol=1e-5, atol=1e-5)
    taps = {layer: jnp.zeros((2, params[layer]["b"].shape[-1])) for layer in plain.dense_layers}
    (got, ins), (want, ins_plain) = (carrying.apply_with_taps(params, x, taps),
                                     plain.apply_with_taps(params, z, taps))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    for layer in plain.dense_layers:
        np.testing.assert_allclose(ins[layer], ins_plain[layer], rtol=1e-5, atol=1e-5)


def test_the_builder_cache_returns_one_model_per_normalisation(femnist):
    a = models.mlp(10, (28, 28, 1), hidden=(8,), normalization=femnist)
    assert a.normalization == femnist.normalization
    assert models.mlp(10, (28, 28, 1), hidden=(8,), normalization=femnist.normalization) is a
    mean, std = femnist.normalization
    assert models.mlp(10, [28, 28, 1], hidden=[8], normalization=(list(mean), list(std))) is a
    assert models.mlp(10, (28, 28, 1), hidden=(8,), normalization=((0.5,), (0.2,))) is not a
    assert models.mlp(10, (28, 28, 1), hidden=(8,)) is not a
    assert models.lenet(3, (8, 8, 3), normalization=NORM3) is models.lenet(
        3, (8, 8, 3), normalization=data.Normalization(*NORM3))


@pytest.mark.parametrize("builder, shape", [
    (models.convnet, (28, 28, 1)), (models.mlp, (28, 28, 1)), (models.lenet, (32, 32, 3)),
])
def test_the_builders_check_the_normalisation(builder, shape):
    channels = shape[-1]
    wrong = NORM3 if channels == 1 else ((0.5,), (0.2,))
    got = len(wrong[0])
    with pytest.raises(ValueError, match=rf"models\.{builder.__name__}: the normalization has "
                                         rf"{got} channel\(s\).*input_shape has {channels}; "
                                         rf"expected {channels} mean"):
        builder(10, shape, normalization=wrong)
    with pytest.raises(ValueError, match="stds > 0"):
        builder(10, shape, normalization=((0.5,) * channels, (0.0,) * channels))
    with pytest.raises(ValueError, match="stds > 0"):
        builder(10, shape, normalization=((float("nan"),) * channels, (1.0,) * channels))
    with pytest.raises(ValueError, match=r"\(mean, std\) per channel"):
        builder(10, shape, normalization=0.5)


def test_the_tiny_images_normalisation_does_not_fit_a_grey_network():
    colour = data.load("tiny-images")
    with pytest.raises(ValueError, match=r"has 3 channel\(s\).*input_shape has 1"):
        models.convnet(10, (28, 28, 1), normalization=colour)


# ------------------------------------------------------------------------- the attack

N, M, E, LR = 4, 2, 2, 0.1


@pytest.fixture(scope="module")
def client(femnist):
    plain = models.mlp(10, (28, 28, 1), hidden=(16,))
    carrying = models.mlp(10, (28, 28, 1), hidden=(16,), normalization=femnist)
    params = numpy_init(plain, 0)
    x, y = femnist.images[:N], femnist.labels[:N]
    kw = dict(lr=LR, epochs=E, batch_size=M, key=jax.random.key(1))
    theta_c = fl.client_update(carrying, params, x, y, **kw)             # fed pixels
    theta_plain = fl.client_update(plain, params, femnist.normalization.normalize(x), y, **kw)
    counts = np.bincount(y, minlength=10)
    return plain, carrying, params, theta_c, theta_plain, counts


def test_a_network_fed_pixels_updates_as_one_fed_normalised_inputs(client):
    *_, theta_c, theta_plain, _ = client
    for a, b in zip(jax.tree.leaves(theta_c), jax.tree.leaves(theta_plain), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_the_attack_takes_the_normalisation_from_the_model(client, femnist):
    plain, carrying, params, theta_c, _, counts = client
    kw = dict(label_counts=counts, lr=LR, epochs=E, batch_size=M, steps=5, chunk=5,
              key=jax.random.key(3), optimizer=optax.adam(0.05), project=optimizers.unit_box)
    default = attacks.fedavg(carrying, params, theta_c, **kw)            # no flag
    explicit = attacks.fedavg(plain, params, theta_c, normalization=femnist, **kw)
    np.testing.assert_allclose(default.losses, explicit.losses, rtol=1e-4)
    np.testing.assert_allclose(default.images, explicit.images, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(default.epoch_images, explicit.epoch_images, rtol=1e-4,
                               atol=1e-4)
    # The results are pixels: project (unit_box) kept them in [0, 1].
    assert default.images.min() >= -1e-6 and default.images.max() <= 1 + 1e-6
    # Giving the model's own normalisation explicitly changes nothing.
    same = attacks.fedavg(carrying, params, theta_c, normalization=femnist.normalization, **kw)
    np.testing.assert_allclose(same.losses, default.losses, rtol=1e-6)


def test_the_default_starts_from_a_standard_normal_in_the_normalised_space(client, femnist):
    # No optimisation (a zero learning rate): the result is the start, mapped to pixels.
    _, carrying, params, theta_c, _, counts = client
    res = attacks.fedavg(carrying, params, theta_c, label_counts=counts, lr=LR, epochs=E,
                         batch_size=M, steps=1, key=jax.random.key(0),
                         init=lambda key, shape: jnp.zeros(shape), optimizer=optax.sgd(0.0))
    np.testing.assert_allclose(res.images, femnist.normalization.mean[0], atol=1e-5)


def test_the_attack_checks_the_normalisation(client):
    plain, carrying, params, theta_c, _, counts = client
    kw = dict(label_counts=counts, lr=LR, epochs=E, batch_size=M, steps=1,
              key=jax.random.key(0))
    with pytest.raises(ValueError, match=r"attacks\.fedavg: the normalization has 3 "
                                         r"channel\(s\).*have 1; expected 1 mean"):
        attacks.fedavg(plain, params, theta_c, normalization=NORM3, **kw)
    with pytest.raises(ValueError, match=r"has 3 channel\(s\).*have 1"):
        attacks.fedavg(carrying, params, theta_c, normalization=NORM3, **kw)
    with pytest.raises(ValueError, match=r"the model normalises its input itself .*"
                                         r"normalization= gives another one"):
        attacks.fedavg(carrying, params, theta_c, normalization=((0.5,), (0.2,)), **kw)
