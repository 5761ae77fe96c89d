"""The self-checks of lab 05 accept right answers and explain wrong ones."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import leakage_lab as ll
from leakage_lab.checks import CheckFailed


def _norms(per_example):
    leaves = jax.tree.leaves(per_example)
    m = leaves[0].shape[0]
    return jnp.sqrt(sum(jnp.sum(x.reshape(m, -1) ** 2, axis=1) for x in leaves))


def dp_step(per_example, clip_norm, noise_multiplier, key):
    m = jax.tree.leaves(per_example)[0].shape[0]
    factor = jnp.minimum(1.0, clip_norm / _norms(per_example))
    leaves, treedef = jax.tree.flatten(per_example)
    keys = jax.random.split(key, len(leaves))
    out = [(jnp.tensordot(factor, x, axes=1)
            + noise_multiplier * clip_norm * jax.random.normal(k, x.shape[1:])) / m
           for x, k in zip(leaves, keys, strict=True)]
    return jax.tree.unflatten(treedef, out)


def test_dp_accepts_right_answer_and_the_library(capsys):
    ll.checks.dp_clip_and_noise(dp_step)

    def library(g, c, s, k):
        return ll.privacy.clip_and_noise(g, jnp.ones(jax.tree.leaves(g)[0].shape[0]),
                                         ll.privacy.dp_sgd(c, s), key=k)

    ll.checks.dp_clip_and_noise.__wrapped__(library)  # unguarded: it agrees
    assert capsys.readouterr().out.count("✓") == 2
    with pytest.raises(CheckFailed, match=r"ll\.privacy\.clip_and_noise.*write it yourself"):
        ll.checks.dp_clip_and_noise(library)


def _mean(g):
    return jax.tree.map(lambda x: x.mean(0), g)


def _clip_mean(g, c):
    mean = _mean(g)
    norm = jnp.sqrt(sum(jnp.sum(x**2) for x in jax.tree.leaves(mean)))
    return jax.tree.map(lambda x: x * jnp.minimum(1.0, c / norm), mean)


def _per_leaf(g, c):
    def leaf(x):
        m = x.shape[0]
        n = jnp.linalg.norm(x.reshape(m, -1), axis=1)
        return jnp.tensordot(jnp.minimum(1.0, c / n), x, axes=1) / m
    return jax.tree.map(leaf, g)


def _noise_on_mean(g, c, s, k):
    """Right clipping, but noise σC added after dividing by m."""
    clean = dp_step(g, c, 0.0, k)
    leaves, treedef = jax.tree.flatten(clean)
    keys = jax.random.split(k, len(leaves))
    return jax.tree.unflatten(treedef, [x + s * c * jax.random.normal(kk, x.shape)
                                        for x, kk in zip(leaves, keys, strict=True)])


@pytest.mark.parametrize(("fn", "hint"), [
    (lambda g, c, s, k: _mean(g), "no clipping"),
    (lambda g, c, s, k: _clip_mean(g, c), "MEAN gradient"),
    (lambda g, c, s, k: _per_leaf(g, c), "each leaf"),
    (lambda g, c, s, k: jax.tree.map(lambda x: x * jax.tree.leaves(g)[0].shape[0],
                                     dp_step(g, c, 0.0, k)), "SUM"),
    (lambda g, c, s, k: None, "return"),
    (lambda g, c, s, k: dp_step(g, c, 0.0, k), "no noise"),
    (lambda g, c, s, k: dp_step(g, c, s, jax.random.key(0)), "different keys"),
    (_noise_on_mean, "σC / m"),
    (lambda g, c, s, k: dp_step(g, c, s, jax.random.key(np.random.randint(1 << 30))),
     "same key"),
])
def test_dp_hints(fn, hint):
    with pytest.raises(CheckFailed, match=hint):
        ll.checks.dp_clip_and_noise(fn)


def right_pair(seed, u, v, length):
    term = ll.secagg.prg(seed, length)
    return term if v > u else np.negative(term)


def test_pair_masks_accepts_right_answer(capsys):
    ll.checks.pair_masks(right_pair)
    assert capsys.readouterr().out.startswith("✓")


@pytest.mark.parametrize(("fn", "hint"), [
    (lambda s, u, v, n: ll.secagg.prg(s, n), "ADDED"),
    (lambda s, u, v, n: np.zeros(n, np.uint32), "hides nothing"),
    (lambda s, u, v, n: right_pair(s, u, v, n).astype(np.int64), "dtype"),
    (lambda s, u, v, n: right_pair(s, v, u, n), "reversed"),
    (lambda s, u, v, n: None, "return"),
    (lambda s, u, v, n: right_pair(s, u, v, n)[:10], "shape"),
    (lambda s, u, v, n: right_pair(s, u, v, n) if u < v else np.zeros(n, np.uint32),
     "do not cancel"),
    (lambda s, u, v, n: (np.arange(n, dtype=np.uint32) if u < v
                         else np.negative(np.arange(n, dtype=np.uint32))), "PRG"),
])
def test_pair_masks_hints(fn, hint):
    with pytest.raises(CheckFailed, match=hint):
        ll.checks.pair_masks(fn)
