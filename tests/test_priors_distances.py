"""Tests for leakage_lab.priors and the layer-wise distances in leakage_lab.distances:
known values (constant images, checkerboards, ramps, small pytrees), properties (zero
inside the box, weights of one give the plain sum) and gradients an attack can use."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from leakage_lab import distances, priors

PRIORS = [priors.total_variation, priors.total_variation_isotropic,
          priors.total_variation_squared, priors.distance_to_grey, priors.clip, priors.uniform]


def checkerboard(n=2, h=6, w=5, c=3):
    i, j = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    board = ((i + j) % 2).astype(np.float32)
    return np.broadcast_to(board[None, :, :, None], (n, h, w, c)).copy()


def test_total_variation_known_values():
    const = jnp.full((2, 5, 4, 3), 0.7)
    assert float(priors.total_variation(const)) == 0.0
    assert float(priors.total_variation_squared(const)) == 0.0
    assert float(priors.total_variation_isotropic(const)) == pytest.approx(0.0, abs=1e-3)
    board = checkerboard()
    # every neighbour pair differs by exactly 1, in both directions
    assert float(priors.total_variation(board)) == pytest.approx(2.0)
    assert float(priors.total_variation_squared(board)) == pytest.approx(2.0)
    assert float(priors.total_variation_isotropic(board)) == pytest.approx(np.sqrt(2), rel=1e-5)
    # a vertical ramp with step 0.1: only the vertical differences count
    ramp = np.broadcast_to((0.1 * np.arange(6, dtype=np.float32))[None, :, None, None],
                           (1, 6, 4, 1))
    assert float(priors.total_variation(ramp)) == pytest.approx(0.1, rel=1e-5)
    assert float(priors.total_variation_squared(ramp)) == pytest.approx(0.01, rel=1e-4)
    assert float(priors.total_variation_isotropic(ramp)) == pytest.approx(0.1, rel=1e-4)


def test_total_variation_matches_a_plain_loop():
    x = np.random.default_rng(0).uniform(size=(2, 4, 5, 3)).astype(np.float32)
    vertical = [abs(x[n, i + 1, j, c] - x[n, i, j, c]) for n in range(2) for i in range(3)
                for j in range(5) for c in range(3)]
    horizontal = [abs(x[n, i, j + 1, c] - x[n, i, j, c]) for n in range(2) for i in range(4)
                  for j in range(4) for c in range(3)]
    want = np.mean(vertical) + np.mean(horizontal)
    assert float(priors.total_variation(x)) == pytest.approx(want, rel=1e-5)


def test_box_and_l2_priors():
    inside = np.random.default_rng(1).uniform(size=(3, 4, 4, 2)).astype(np.float32)
    assert float(priors.clip(inside)) == 0.0
    assert float(priors.clip(jnp.full((1, 2, 2, 1), 1.5))) == pytest.approx(0.25)
    assert float(priors.clip(jnp.full((1, 2, 2, 1), -2.0))) == pytest.approx(4.0)
    assert float(priors.distance_to_grey(jnp.full((1, 3, 3, 1), 0.5))) == 0.0
    assert float(priors.distance_to_grey(jnp.zeros((1, 3, 3, 1)))) == pytest.approx(0.25)
    assert float(priors.uniform(inside)) == 0.0


@pytest.mark.parametrize("prior", PRIORS, ids=lambda p: p.__name__)
def test_priors_are_scalars_with_finite_gradients(prior):
    for x in (jnp.full((2, 6, 5, 3), 0.5), jnp.asarray(checkerboard()),
              jax.random.uniform(jax.random.key(0), (1, 7, 7, 1), minval=-0.5, maxval=1.5)):
        value, grad = jax.value_and_grad(prior)(x)
        assert value.shape == ()
        assert grad.shape == x.shape
        assert bool(jnp.all(jnp.isfinite(grad)))
    assert float(jnp.abs(jax.grad(priors.uniform)(x)).max()) == 0.0


# ---- layer-wise distances

A = {"conv": {"w": np.array([[1.0, 2.0], [3.0, 4.0]]), "b": np.array([1.0])},
     "fc": {"w": np.array([0.0, -2.0])}}
B = {"conv": {"w": np.array([[0.0, 2.0], [1.0, 4.0]]), "b": np.array([-1.0])},
     "fc": {"w": np.array([1.0, -2.0])}}


def test_per_layer_known_values():
    got = {k: float(v) for k, v in distances.per_layer(distances.l2, A, B).items()}
    assert got == pytest.approx({"conv": 1 + 4 + 4, "fc": 1})
    got = {k: float(v) for k, v in distances.per_layer(distances.cosine, A, B).items()}
    conv = (0 + 4 + 3 + 16 - 1) / (np.sqrt(31) * np.sqrt(22))
    fc = 4 / (2 * np.sqrt(5))
    assert got == pytest.approx({"conv": 1 - conv, "fc": 1 - fc}, rel=1e-6)


@pytest.mark.parametrize("d", [distances.l2, distances.l1, distances.cosine],
                         ids=lambda d: d.__name__)
def test_unit_weights_give_the_sum_of_layer_distances(d):
    weighted = distances.layer_weighted(d, {"conv": 1.0, "fc": 1.0})
    want = sum(float(v) for v in distances.per_layer(d, A, B).values())
    assert float(weighted(A, B)) == pytest.approx(want, rel=1e-6)
    if d is not distances.cosine:  # l2 and l1 add up over layers
        assert float(weighted(A, B)) == pytest.approx(float(d(A, B)), rel=1e-6)


def test_layer_weights_scale_each_layer():
    weighted = distances.layer_weighted(distances.l2, {"conv": 2.0, "fc": 0.5})
    assert float(weighted(A, B)) == pytest.approx(2 * 9 + 0.5 * 1)
    only_fc = distances.layer_weighted(distances.l1, {"conv": 0.0, "fc": 3.0})
    assert float(only_fc(A, B)) == pytest.approx(3.0)
    assert float(jax.jit(weighted)(A, B)) == pytest.approx(18.5)
    # the same weights give the same function (so attacks reuse compiled code)
    assert distances.layer_weighted(distances.l2, {"fc": 0.5, "conv": 2}) is weighted


def test_layer_weighted_needs_one_weight_per_layer():
    with pytest.raises(ValueError, match="one per layer"):
        distances.layer_weighted(distances.l2, {"conv": 1.0})(A, B)
    with pytest.raises(ValueError, match="different layers"):
        distances.per_layer(distances.l2, A, {"conv": B["conv"]})
