"""Tests for the factored dense-layer gradient comparison of Inverting Gradients.

``models.Model.apply_with_taps`` opens up the dense layers; ``attacks.
gradient_inner_products`` uses it to compute ``<g, g'>`` and ``<g', g'>`` without forming
the candidate's dense weight gradients; ``distances.from_inner_products`` writes cosine
and L2 over those products; ``attacks.reconstruct`` uses all this by default.

Oracles: the plain path (``candidate_gradient`` + the distance over whole trees), on the
LeNet, the convnet and an MLP, for one image and for a batch of three; the loss and its
gradient with respect to the images must agree to float32 rounding.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _helpers import numpy_init

from leakage_lab import attacks, distances, fl, inverting, metrics, models, priors, trees

MODELS = {
    "lenet": models.lenet(num_classes=4, input_shape=(8, 8, 1)),
    "convnet": models.convnet(num_classes=5, input_shape=(10, 10, 3), width=4),
    "mlp": models.mlp(num_classes=3, input_shape=(6, 6, 1), hidden=(16, 8),
                      activation=jax.nn.sigmoid),
}


@functools.cache
def problem(name: str, n: int = 1, seed: int = 0):
    """Weights, the observed update of a private batch, and a different candidate batch."""
    model = MODELS[name]
    params = numpy_init(model, seed)
    rng = np.random.default_rng(seed)
    shape = (n, *model.input_shape)
    private = rng.uniform(size=shape).astype(np.float32)
    labels = jnp.asarray(rng.integers(0, model.num_classes, n), jnp.int32)
    grads = fl.gradient(model, params, private, labels)
    candidate = jnp.asarray(rng.uniform(size=shape), jnp.float32)
    return model, params, labels, grads, candidate


def zero_taps(model, params, n):
    return {layer: jnp.zeros((n, params[layer]["b"].shape[0])) for layer in model.dense_layers}


def test_models_declare_their_dense_layers():
    assert MODELS["lenet"].dense_layers == ("fc",)
    assert MODELS["convnet"].dense_layers == ("fc1", "fc2")
    assert MODELS["mlp"].dense_layers == ("fc1", "fc2", "fc3")


@pytest.mark.parametrize("name", list(MODELS))
def test_zero_taps_change_nothing_and_the_inputs_are_the_layers_inputs(name):
    model, params, _, _, x = problem(name, 3)
    logits, inputs = model.apply_with_taps(params, x, zero_taps(model, params, 3))
    np.testing.assert_array_equal(logits, model.apply(params, x))
    assert set(inputs) == set(model.dense_layers)
    last = model.dense_layers[-1]
    np.testing.assert_array_equal(inputs[last], model.features(params, x))
    for layer in model.dense_layers:
        assert inputs[layer].shape == (3, params[layer]["w"].shape[0])
    # a tap is added to the pre-activation: on the last layer it shifts the logits
    taps = zero_taps(model, params, 3)
    taps[last] = jnp.ones_like(taps[last])
    np.testing.assert_allclose(model.apply_with_taps(params, x, taps)[0], logits + 1.0,
                               rtol=1e-6)


@pytest.mark.parametrize("name", ["convnet", "mlp"])
def test_the_tap_gradient_gives_the_weight_gradient(name):
    """``∂L/∂W = aᵀ δ`` and ``∂L/∂b = sum_n δ_n`` with ``δ`` the gradient at a zero tap."""
    model, params, labels, _, x = problem(name, 3)

    def loss(taps):
        logits, inputs = model.apply_with_taps(params, x, taps)
        return jnp.mean(fl.cross_entropy(logits, labels)), inputs

    deltas, inputs = jax.grad(loss, has_aux=True)(zero_taps(model, params, 3))
    full = attacks.candidate_gradient(model, params, x, labels)
    for layer in model.dense_layers:
        np.testing.assert_allclose(inputs[layer].T @ deltas[layer], full[layer]["w"],
                                   rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(deltas[layer].sum(0), full[layer]["b"], rtol=1e-5,
                                   atol=1e-7)


def test_bad_taps_are_refused():
    model, params, _, _, x = problem("convnet")
    with pytest.raises(ValueError, match=r"taps for the dense layers \['fc1', 'fc2'\]"):
        model.apply_with_taps(params, x, {"fc1": jnp.zeros((1, 12))})
    taps = zero_taps(model, params, 1)
    taps["fc2"] = jnp.zeros((2, 5))
    with pytest.raises(ValueError, match=r"tap of 'fc2' must have shape \[1, 5\], got \[2, 5\]"):
        model.apply_with_taps(params, x, taps)


@pytest.mark.parametrize("n", [1, 3])
@pytest.mark.parametrize("name", list(MODELS))
def test_inner_products_equal_those_of_the_whole_gradient(name, n):
    model, params, labels, grads, x = problem(name, n)
    full = attacks.candidate_gradient(model, params, x, labels)
    dot, square = jax.jit(functools.partial(attacks.gradient_inner_products, model))(
        params, x, labels, grads)
    np.testing.assert_allclose(dot, trees.tree_vdot(grads, full), rtol=2e-5)
    np.testing.assert_allclose(square, trees.tree_vdot(full, full), rtol=2e-5)


def test_inner_products_need_taps():
    model, params, labels, grads, x = problem("lenet")
    blind = model._replace(dense_layers=(), apply_with_taps=None)
    with pytest.raises(ValueError, match="needs a model with apply_with_taps"):
        attacks.gradient_inner_products(blind, params, x, labels, grads)


def test_distances_over_inner_products():
    rng = np.random.default_rng(3)
    g = {"a": {"w": rng.normal(size=(4, 3))}, "b": {"w": rng.normal(size=5)}}
    h = jax.tree.map(lambda v: v + rng.normal(size=v.shape), g)
    products = (trees.tree_vdot(g, h), trees.tree_vdot(h, h), trees.tree_vdot(g, g))
    for distance in (distances.cosine, distances.l2):
        form = distances.from_inner_products(distance)
        np.testing.assert_allclose(form(*products), distance(g, h), rtol=1e-6)
    assert distances.from_inner_products(distances.l1) is None
    weighted = distances.layer_weighted(distances.cosine, {"a": 1.0, "b": 2.0})
    assert distances.from_inner_products(weighted) is None


def losses(name, n, distance):
    """Loss and image gradient, factored and plain, at the same candidate."""
    model, params, labels, grads, x = problem(name, n)
    out = []
    for factored in (True, False):
        def loss(images, factored=factored):
            return inverting.inverting_objective(model, params, grads, images, labels,
                                                 distance=distance, prior=priors.total_variation,
                                                 prior_weight=1e-4, factored=factored)
        value, grad = jax.jit(jax.value_and_grad(loss))(x)
        out.append((value, {"images": grad}))
    return out


@pytest.mark.parametrize("n", [1, 3])
@pytest.mark.parametrize("distance", [distances.cosine, distances.l2], ids=["cosine", "l2"])
@pytest.mark.parametrize("name", list(MODELS))
def test_factored_loss_and_image_gradient_equal_the_plain_ones(name, distance, n):
    (fast, fast_grad), (plain, plain_grad) = losses(name, n, distance)
    assert np.isfinite(float(plain)) and float(plain) > 1e-4
    # 1 - cos loses digits to cancellation in both paths: compare to float32's eps of 1
    np.testing.assert_allclose(fast, plain, rtol=2e-5, atol=1e-6)
    g, ref = np.asarray(fast_grad["images"]), np.asarray(plain_grad["images"])
    assert np.abs(ref).max() > 0
    np.testing.assert_allclose(g, ref, rtol=1e-3, atol=2e-5 * np.abs(ref).max())


def test_reconstruct_factored_matches_plain_and_is_reproducible():
    model, params, labels, grads, _ = problem("convnet")
    run = functools.partial(attacks.reconstruct, model, params, grads, labels=labels,
                            steps=20, chunk=10, key=jax.random.key(4))
    fast, again, plain = run(), run(factored=True), run(factored=False)
    np.testing.assert_array_equal(fast.images, again.images)
    np.testing.assert_array_equal(fast.losses, again.losses)
    # The signed optimiser amplifies rounding only slowly over 20 steps.
    np.testing.assert_allclose(fast.losses, plain.losses, rtol=1e-3, atol=1e-5)
    assert metrics.psnr(fast.images[0], plain.images[0]) > 40.0


def test_reconstruct_factored_errors():
    model, params, labels, grads, _ = problem("lenet")
    with pytest.raises(ValueError, match="factored=True needs the distance to be"):
        attacks.reconstruct(model, params, grads, labels=labels, steps=2, key=jax.random.key(0),
                            distance=distances.l1, factored=True)
    blind = model._replace(dense_layers=(), apply_with_taps=None)
    with pytest.raises(ValueError, match="has none"):
        attacks.reconstruct(blind, params, grads, labels=labels, steps=2, key=jax.random.key(0),
                            factored=True)
