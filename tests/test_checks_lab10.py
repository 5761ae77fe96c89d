"""Lab 10's self-checks: each passes on the solution and fails, with its hint, on the usual
wrong answers (the identity, a rescaling, another tree, numpy randomness; a global cosine,
signs not ignored, an array instead of a number)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import leakage_lab as ll
from leakage_lab.checks import CheckFailed


def clip_and_noise(update, key):
    leaves, treedef = jax.tree.flatten(update)
    norm = jnp.sqrt(sum(jnp.sum(x**2) for x in leaves))
    factor = jnp.minimum(1.0, 1.0 / jnp.maximum(norm, 1e-12))
    keys = jax.random.split(key, len(leaves))
    return jax.tree.unflatten(treedef, [factor * x + 0.02 * jax.random.normal(k, x.shape)
                                        for x, k in zip(leaves, keys, strict=True)])


def test_defense_check_passes_a_real_defense(capsys):
    ll.checks.capstone_defense(clip_and_noise)
    assert capsys.readouterr().out.startswith("✓")


def _numpy_noise(update, key):
    rng = np.random.default_rng()
    return jax.tree.map(lambda x: x + rng.normal(size=x.shape).astype(np.float32), update)


@pytest.mark.parametrize(("answer", "hint"), [
    (lambda u, k: u, "unchanged"),
    (lambda u, k: jax.tree.map(lambda x: 0.01 * x, u), "only rescales the update"),
    (lambda u, k: jax.tree.map(jnp.zeros_like, u), "only zeros"),
    (lambda u, k: None, "forget the `return`"),
    (lambda u, k: jax.tree.leaves(u), "another structure"),
    (lambda u, k: jax.tree.map(lambda x: x[..., :1], u), "has shape"),
    (lambda u, k: jax.tree.map(lambda x: x * jnp.nan, u), "NaN"),
    (_numpy_noise, "same key"),
    (lambda u, k: ll.defenses.gaussian(0.1).apply(u, key=k), "write it yourself"),
])
def test_defense_check_gives_the_hint(answer, hint):
    with pytest.raises(CheckFailed, match=hint):
        ll.checks.capstone_defense(answer)


def unsigned(observed, candidate):
    total = 0.0
    for a, b in zip(jax.tree.leaves(observed), jax.tree.leaves(candidate), strict=True):
        total = total + 1.0 - jnp.sum(a * b) ** 2 / (jnp.sum(a * a) * jnp.sum(b * b) + 1e-12)
    return total


def test_distance_check_passes_the_solution(capsys):
    ll.checks.capstone_attack_distance(unsigned)
    assert capsys.readouterr().out.startswith("✓")


def pairs(observed, candidate):
    return zip(jax.tree.leaves(observed), jax.tree.leaves(candidate), strict=True)


def _leafwise_cosine(observed, candidate):
    return sum(1.0 - jnp.sum(a * b) / jnp.sqrt(jnp.sum(a * a) * jnp.sum(b * b))
               for a, b in zip(jax.tree.leaves(observed), jax.tree.leaves(candidate), strict=True))


def _global_squared_cosine(observed, candidate):
    dot = sum(jnp.sum(a * b) for a, b in zip(jax.tree.leaves(observed),
                                             jax.tree.leaves(candidate), strict=True))
    na = sum(jnp.sum(a * a) for a in jax.tree.leaves(observed))
    nb = sum(jnp.sum(b * b) for b in jax.tree.leaves(candidate))
    return 1.0 - dot**2 / (na * nb)


def _per_leaf_array(observed, candidate):
    return jnp.stack([1.0 - jnp.sum(a * b) ** 2 / (jnp.sum(a * a) * jnp.sum(b * b))
                      for a, b in pairs(observed, candidate)])


def _numpy_distance(observed, candidate):
    return float(np.sum([1.0 - float(np.sum(np.asarray(a) * np.asarray(b))) ** 2
                         / float(np.sum(np.asarray(a) ** 2) * np.sum(np.asarray(b) ** 2))
                         for a, b in pairs(observed, candidate)]))


@pytest.mark.parametrize(("answer", "hint"), [
    (ll.distances.cosine, "change sign"),
    (_leafwise_cosine, "change sign"),
    (_global_squared_cosine, "rescaled by its own factor"),
    (_per_leaf_array, "expected a single number"),
    (lambda o, c: 0.0, "smallest at a match"),
    (_numpy_distance, "cannot differentiate"),
    (ll.capstone.unsigned_leaf_cosine, "write it yourself"),
])
def test_distance_check_gives_the_hint(answer, hint):
    with pytest.raises(CheckFailed, match=hint):
        ll.checks.capstone_attack_distance(answer)


def test_stubs_name_not_implemented():
    def stub(*args):
        raise NotImplementedError()

    for check in (ll.checks.capstone_defense, ll.checks.capstone_attack_distance):
        with pytest.raises(CheckFailed, match="NotImplementedError"):
            check(stub)
