"""Tests for leakage_lab.fl: FedSGD gradients, FedAvg client updates, the server loop.

Oracles: the mean of per-example gradients; a plain Python SGD loop over the schedule
that ``client_steps`` reports. Known answers: one full-batch epoch is one gradient
step; FedAvg's weighted average. Properties: partitions, determinism, learning.
"""

from __future__ import annotations

import re

import jax
import numpy as np
import pytest

from leakage_lab import fl, models, trees


def numpy_init(model, seed=0, bound=0.5):
    """Random float32 params shaped like ``model.init``'s (numpy: nothing to compile)."""
    rng = np.random.default_rng(seed)
    shapes = jax.eval_shape(model.init, jax.random.key(0))
    return jax.tree.map(lambda s: rng.uniform(-bound, bound, s.shape).astype(np.float32), shapes)


MODEL = models.mlp(num_classes=3, input_shape=(3, 3, 1), hidden=(8,))
PARAMS = numpy_init(MODEL)
N = 10
IMAGES = np.random.default_rng(1).uniform(size=(N, 3, 3, 1)).astype(np.float32)
LABELS = np.arange(N) % 3


def assert_trees_close(a, b, rtol=1e-5, atol=1e-6):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)


def assert_trees_equal(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def sgd_step(params, grad, lr):
    return jax.tree.map(lambda w, g: w - lr * g, params, grad)


# ----------------------------------------------------------------------------- FedSGD


def test_gradient_is_mean_of_per_example_gradients():
    g = fl.gradient(MODEL, PARAMS, IMAGES, LABELS)
    per = fl.per_example_gradients(MODEL, PARAMS, IMAGES, LABELS)
    for leaf, p in zip(jax.tree.leaves(PARAMS), jax.tree.leaves(per), strict=True):
        assert p.shape == (N, *leaf.shape)
    assert_trees_close(g, jax.tree.map(lambda x: x.mean(axis=0), per))
    # Each per-example gradient is the gradient of a batch of one.
    g3 = fl.gradient(MODEL, PARAMS, IMAGES[3:4], LABELS[3:4])
    assert_trees_close(g3, jax.tree.map(lambda x: x[3], per))


def test_one_hot_label_distributions_equal_class_indices():
    one_hot = np.eye(3, dtype=np.float32)[LABELS]
    assert_trees_close(fl.gradient(MODEL, PARAMS, IMAGES, one_hot),
                       fl.gradient(MODEL, PARAMS, IMAGES, LABELS))
    ce = fl.cross_entropy(np.log(np.array([[0.5, 0.25, 0.25]])), np.array([1]))
    np.testing.assert_allclose(ce, [np.log(4.0)], rtol=1e-6)


# ----------------------------------------------------------------------------- FedAvg client


@pytest.mark.parametrize("batch_size", [N, N + 3])
def test_one_full_batch_epoch_is_one_gradient_step(batch_size):
    lr = 0.3
    got = fl.client_update(MODEL, PARAMS, IMAGES, LABELS, lr=lr, epochs=1,
                           batch_size=batch_size, key=jax.random.key(5))
    expected = sgd_step(PARAMS, fl.gradient(MODEL, PARAMS, IMAGES, LABELS), lr)
    assert_trees_close(got, expected)


def run(key, epochs=2, batch_size=3, lr=0.2):
    return fl.client_steps(MODEL, PARAMS, IMAGES, LABELS, lr=lr, epochs=epochs,
                           batch_size=batch_size, key=key)


def test_schedule_partitions_each_epoch():
    out = run(jax.random.key(0), epochs=3)
    batches, mask = np.asarray(out.batches), np.asarray(out.mask)
    assert batches.shape == mask.shape == (3, 4, 3)  # ceil(10 / 3) = 4 batches per epoch
    for e in range(3):
        used = batches[e][mask[e] == 1]
        np.testing.assert_array_equal(np.sort(used), np.arange(N))  # each sample once
        np.testing.assert_array_equal(mask[e].sum(axis=1), [3, 3, 3, 1])
    assert not np.array_equal(batches[0], batches[1])  # a fresh split every epoch


def test_schedule_depends_on_key_only():
    a, b, c = run(jax.random.key(0)), run(jax.random.key(0)), run(jax.random.key(1))
    np.testing.assert_array_equal(a.batches, b.batches)
    assert_trees_equal(a.params, b.params)
    assert not np.array_equal(a.batches, c.batches)
    assert not np.allclose(a.params["fc1"]["w"], c.params["fc1"]["w"])


def test_client_steps_match_client_update_and_path():
    key = jax.random.key(3)
    out = run(key)
    final = fl.client_update(MODEL, PARAMS, IMAGES, LABELS, lr=0.2, epochs=2, batch_size=3,
                             key=key)
    assert_trees_equal(out.params, final)
    for leaf, p in zip(jax.tree.leaves(PARAMS), jax.tree.leaves(out.path), strict=True):
        assert p.shape == (2 * 4, *leaf.shape)
    assert_trees_equal(jax.tree.map(lambda x: x[-1], out.path), final)


def test_client_steps_oracle_sgd_loop():
    """Replays the reported schedule with plain SGD on fl.gradient: same path."""
    out = run(jax.random.key(4))
    batches, mask = np.asarray(out.batches), np.asarray(out.mask)
    p = PARAMS
    for k, (idx, m) in enumerate(zip(batches.reshape(-1, 3), mask.reshape(-1, 3), strict=True)):
        sel = idx[m == 1]
        p = sgd_step(p, fl.gradient(MODEL, p, IMAGES[sel], LABELS[sel]), 0.2)
        assert_trees_close(jax.tree.map(lambda x, k=k: x[k], out.path), p)
    assert_trees_close(out.params, p)


# ----------------------------------------------------------------------------- server


def blobs(seed, n, shape=(4, 4, 1)):
    """Two Gaussian blobs in image space, class 0 around -mu, class 1 around +mu."""
    rng = np.random.default_rng(seed)
    mu = rng.normal(size=shape)
    labels = rng.integers(0, 2, n).astype(np.int32)
    sign = (2.0 * labels - 1.0)[:, None, None, None]
    return (sign * mu + 0.5 * rng.normal(size=(n, *shape))).astype(np.float32), labels


def test_train_learns_separable_blobs():
    model = models.mlp(num_classes=2, input_shape=(4, 4, 1), hidden=(8,))
    params = numpy_init(model, bound=0.25)
    images, labels = blobs(42, 100)
    clients = [(images[i : i + 20], labels[i : i + 20]) for i in range(0, 80, 20)]
    test = (images[80:], labels[80:])
    before = fl.accuracy(model, params, *test)
    seen = []
    out = fl.train(model, params, clients, rounds=3, clients_per_round=2, lr=0.5, epochs=2,
                   batch_size=10, key=jax.random.key(1), test=test,
                   callback=lambda r, p, acc: seen.append((r, acc)))
    assert out.rounds == 3 and len(out.accuracy) == 3
    assert [r for r, _ in seen] == [0, 1, 2] and [a for _, a in seen] == out.accuracy
    assert out.accuracy[-1] >= 0.9 > before
    assert fl.accuracy(model, out.params, *test) == out.accuracy[-1]


def full_batch_update(params, client, lr):
    return sgd_step(params, fl.gradient(MODEL, params, *client), lr)


TWO_CLIENTS = [(IMAGES[:2], LABELS[:2]), (IMAGES[2:], LABELS[2:])]  # 2 and 8 samples


def test_train_one_client_per_round_is_that_clients_update():
    clients = TWO_CLIENTS
    out = fl.train(MODEL, PARAMS, clients, rounds=1, clients_per_round=1, lr=0.1, epochs=1,
                   batch_size=N, key=jax.random.key(0))
    candidates = [full_batch_update(PARAMS, c, 0.1) for c in clients]
    matches = [all(np.allclose(a, b, rtol=1e-5, atol=1e-6)
                   for a, b in zip(jax.tree.leaves(out.params), jax.tree.leaves(c), strict=True))
               for c in candidates]
    assert matches.count(True) == 1
    assert np.isnan(out.accuracy[0])  # no test set


def test_train_weights_clients_by_sample_count():
    clients = TWO_CLIENTS
    out = fl.train(MODEL, PARAMS, clients, rounds=1, clients_per_round=2, lr=0.1, epochs=1,
                   batch_size=N, key=jax.random.key(0))
    u0, u1 = (full_batch_update(PARAMS, c, 0.1) for c in clients)
    assert_trees_close(out.params, jax.tree.map(lambda a, b: 0.2 * a + 0.8 * b, u0, u1))


def test_accuracy_known_answer_and_label_distributions():
    pred = np.argmax(jax.jit(MODEL.apply)(PARAMS, IMAGES), axis=-1)
    flipped = np.where(np.arange(N) < 4, (pred + 1) % 3, pred)  # 4 of 10 wrong
    assert fl.accuracy(MODEL, PARAMS, IMAGES, flipped) == pytest.approx(0.6)
    assert fl.accuracy(MODEL, PARAMS, IMAGES, flipped, batch_size=3) == pytest.approx(0.6)
    # Label distributions are scored by their most likely class (3 images: N == K).
    soft = np.eye(3, dtype=np.float32)[flipped] * 0.7 + 0.1
    assert fl.accuracy(MODEL, PARAMS, IMAGES, soft) == pytest.approx(0.6)
    assert fl.accuracy(MODEL, PARAMS, IMAGES[:3], soft[:3]) == pytest.approx(
        fl.accuracy(MODEL, PARAMS, IMAGES[:3], flipped[:3]))


# ----------------------------------------------------------------------------- errors


def test_labels_out_of_range():
    bad = LABELS.copy()
    bad[2] = 3
    for fn in (fl.gradient, fl.per_example_gradients):
        with pytest.raises(ValueError, match=re.escape("[0, 2]")):
            fn(MODEL, PARAMS, IMAGES, bad)
    with pytest.raises(ValueError, match=re.escape("[0, 2]")):
        fl.client_update(MODEL, PARAMS, IMAGES, LABELS - 1, lr=0.1, epochs=1,
                         batch_size=2, key=jax.random.key(0))


def test_wrong_label_shape_or_dtype():
    for bad in (LABELS[:-1], LABELS[:, None], np.zeros((N, 4))):
        with pytest.raises(ValueError, match="labels of shape"):
            fl.gradient(MODEL, PARAMS, IMAGES, bad)
    with pytest.raises(ValueError, match="integer"):
        fl.gradient(MODEL, PARAMS, IMAGES, LABELS.astype(np.float32))
    with pytest.raises(ValueError, match=re.escape("[N, 3, 3, 1]")):
        fl.gradient(MODEL, PARAMS, IMAGES[..., 0], LABELS)


def test_bad_client_arguments():
    kw = dict(epochs=1, batch_size=2, key=jax.random.key(0))
    with pytest.raises(ValueError, match="lr"):
        fl.client_update(MODEL, PARAMS, IMAGES, LABELS, lr=0.0, **kw)
    with pytest.raises(ValueError, match="epochs and batch_size"):
        fl.client_steps(MODEL, PARAMS, IMAGES, LABELS, lr=0.1, epochs=0, batch_size=2,
                        key=jax.random.key(0))


def test_clients_per_round_too_large():
    clients = [(IMAGES[:5], LABELS[:5]), (IMAGES[5:], LABELS[5:])]
    for k in (0, 3):
        with pytest.raises(ValueError, match=r"clients_per_round.*\(2\)"):
            fl.train(MODEL, PARAMS, clients, rounds=1, clients_per_round=k, lr=0.1, epochs=1,
                     batch_size=5, key=jax.random.key(0))


def test_gradient_tree_mismatch_names_leaf():
    g = fl.gradient(MODEL, PARAMS, IMAGES, LABELS)
    trees.check_matching(g, PARAMS)  # matching: no error
    missing = {"fc1": g["fc1"]}
    with pytest.raises(ValueError, match=r"missing leaves.*\['fc2'\]\['w'\]"):
        trees.check_matching(missing, PARAMS)
    reshaped = {**g, "fc1": {"w": g["fc1"]["w"][:, :4], "b": g["fc1"]["b"]}}
    with pytest.raises(ValueError, match=re.escape("['fc1']['w']: expected (9, 8), got (9, 4)")):
        trees.check_matching(reshaped, PARAMS)
    extra = {**g, "fc9": {"w": np.zeros(1)}}
    with pytest.raises(ValueError, match=re.escape("unexpected leaves [\"['fc9']['w']\"]")):
        trees.check_matching(extra, PARAMS, name="update")


def test_train_sends_defended_updates():
    from leakage_lab import defenses

    model = models.mlp(num_classes=2, input_shape=(2, 2, 1), hidden=(4,))
    params = model.init(jax.random.key(0))
    rng = np.random.default_rng(0)
    clients = [(rng.uniform(size=(6, 2, 2, 1)).astype(np.float32), np.array([0, 1] * 3))
               for _ in range(2)]
    kw = dict(rounds=2, clients_per_round=2, lr=0.5, epochs=1, batch_size=3,
              key=jax.random.key(1))
    plain = fl.train(model, params, clients, **kw)
    inert = fl.train(model, params, clients, defense=defenses.gaussian(0.0), **kw)
    noisy = fl.train(model, params, clients, defense=defenses.gaussian(1.0), **kw)
    for a, b in zip(jax.tree.leaves(plain.params), jax.tree.leaves(inert.params), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert not np.allclose(plain.params["fc1"]["w"], noisy.params["fc1"]["w"], atol=0.1)
