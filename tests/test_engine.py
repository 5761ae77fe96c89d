"""Tests for leakage_lab.engine (the optimisation loop) and attacks.dlg.

DLG is checked end to end on a tiny sigmoid LeNet (8x8x1, 4 classes): it recovers the
image (PSNR > 30 dB) and the label, bitwise reproducibly, whatever the chunking. The
engine's bookkeeping is checked on small losses with known minimisers: status, best
iterate, loss record, callback frames, non-finite handling.
"""

from __future__ import annotations

import functools
import math
import re
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from leakage_lab import attacks, engine, fl, metrics, models

MODEL = models.lenet(num_classes=4, input_shape=(8, 8, 1))


@functools.cache
def problem(seed: int):
    """Weights, one private image and label, and the FedSGD update the server observes."""
    params = MODEL.init(jax.random.key(seed))
    image = np.random.default_rng(seed).uniform(size=(1, 8, 8, 1)).astype(np.float32)
    label = np.array([(seed + 2) % 4])
    return params, image, label, fl.gradient(MODEL, params, image, label)


@functools.cache
def dlg_run(seed: int = 0, chunk: int = 50):
    params, _, _, grads = problem(seed)
    frames = []
    result = attacks.dlg(MODEL, params, grads, steps=300, key=jax.random.key(0), chunk=chunk,
                         callback=frames.append)
    return result, frames


# ----------------------------------------------------------------------------- DLG


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_dlg_reconstructs_image_and_label(seed):
    _, image, label, _ = problem(seed)
    result, _ = dlg_run(seed)
    assert result.images.shape == image.shape and result.soft_labels.shape == (1, 4)
    assert metrics.psnr(result.images[0], image[0]) > 30.0
    assert result.labels.tolist() == label.tolist()            # int [N], like every attack
    assert int(np.argmax(result.soft_labels[0])) == int(label[0])
    np.testing.assert_allclose(result.soft_labels.sum(axis=-1), 1.0, rtol=1e-5)


def test_dlg_converges_and_records_losses():
    result, _ = dlg_run(0)
    assert result.status == "converged"
    assert result.best_loss <= 1e-7 and result.steps < 300
    assert "Converged" in result.message
    losses = np.asarray(result.losses)
    assert losses.shape == (result.steps,)
    finite = losses[np.isfinite(losses)]
    assert result.best_loss == float(finite.min())
    assert result.best_step == int(np.nanargmin(losses))
    assert losses[0] > 1e3 * result.best_loss  # it did optimise


def test_dlg_same_key_is_bitwise_reproducible():
    params, _, _, grads = problem(0)
    first, _ = dlg_run(0)
    again = attacks.dlg(MODEL, params, grads, steps=300, key=jax.random.key(0), chunk=50)
    np.testing.assert_array_equal(first.images, again.images)
    np.testing.assert_array_equal(first.labels, again.labels)
    np.testing.assert_array_equal(first.losses, again.losses)
    other = attacks.dlg(MODEL, params, grads, steps=50, key=jax.random.key(1), chunk=50)
    assert not np.array_equal(other.losses[:3], first.losses[:3])  # another random start


def test_dlg_chunking_does_not_change_the_result():
    a, _ = dlg_run(0, chunk=50)
    b, _ = dlg_run(0, chunk=10)
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.losses, b.losses)
    assert (a.steps, a.best_step, a.status) == (b.steps, b.best_step, b.status)


def test_dlg_callback_once_at_start_and_after_each_chunk():
    for chunk in (50, 10):
        result, frames = dlg_run(0, chunk)
        assert len(frames) == 1 + math.ceil(result.steps / chunk)
        assert frames == result.frames
        assert frames[0].step == 0 and math.isnan(frames[0].loss)
        assert all(f.total_steps == 300 for f in frames)
        assert [f.step for f in frames[1:-1]] == [chunk * i for i in range(1, len(frames) - 1)]
        np.testing.assert_array_equal(frames[-1].images, np.clip(result.images, 0, 1))
        assert frames[-1].best_loss == result.best_loss


def test_dlg_errors():
    params, _, _, grads = problem(0)
    key = jax.random.key(0)
    with pytest.raises(ValueError, match=re.escape("[N, 8, 8, 1]")):
        attacks.dlg(MODEL, params, grads, shape=(1, 8, 8, 3), key=key)
    with pytest.raises(ValueError, match=re.escape("[N, 8, 8, 1]")):
        attacks.dlg(MODEL, params, grads, shape=(8, 8, 1), key=key)
    with pytest.raises(ValueError, match=r"missing leaves.*\['fc'\]\['w'\]"):
        attacks.dlg(MODEL, params, {k: v for k, v in grads.items() if k != "fc"}, key=key)
    # An update for a 5-class head: zeros shaped like lenet(num_classes=5)'s gradient.
    other = models.lenet(num_classes=5, input_shape=(8, 8, 1))
    wrong = jax.tree.map(lambda s: np.zeros(s.shape, np.float32),
                         jax.eval_shape(other.init, jax.random.key(0)))
    with pytest.raises(ValueError, match=re.escape("['fc']['w']: expected (48, 4), got (48, 5)")):
        attacks.dlg(MODEL, params, wrong, key=key)
    for bad in ([4], [-1]):
        with pytest.raises(ValueError, match=re.escape("[0, 3]")):
            attacks.dlg(MODEL, params, grads, labels=np.array(bad), key=key)
    with pytest.raises(ValueError, match="2 labels were given for a batch of 1"):
        attacks.dlg(MODEL, params, grads, labels=np.array([0, 1]), key=key)
    for restarts in (0, -1, 1.5):                        # no silent "at least once"
        with pytest.raises(ValueError, match="restarts must be an int >= 1"):
            attacks.dlg(MODEL, params, grads, restarts=restarts, key=key)


# ----------------------------------------------------------------------------- engine


def quadratic(variables, data):
    return jnp.sum((variables["images"] - data["target"]) ** 2)


TARGET = {"target": np.array([0.25, -1.0, 2.0], np.float32)}
START = {"images": np.zeros(3, np.float32)}


def test_minimize_lbfgs_converges_on_quadratic():
    out = engine.minimize(quadratic, START, TARGET, optax.lbfgs(), steps=50, chunk=7, tol=1e-10)
    assert out.status == "converged" and out.steps < 50
    np.testing.assert_allclose(out.variables["images"], TARGET["target"], atol=1e-5)
    assert out.best_loss <= 1e-10 and out.best_loss == float(np.nanmin(out.losses))


def test_minimize_sgd_known_path():
    """SGD on |x - t|^2 with rate 0.1: x_k = t (1 - 0.8^k), loss_k = 0.64^k |t|^2."""
    out = engine.minimize(quadratic, START, TARGET, optax.sgd(0.1), steps=12, chunk=5)
    t2 = float(np.sum(TARGET["target"] ** 2))
    np.testing.assert_allclose(out.losses, t2 * 0.64 ** np.arange(12), rtol=1e-4)
    assert out.status == "budget" and out.steps == 12
    assert out.best_step == 11 and out.best_loss == float(out.losses[-1])
    np.testing.assert_allclose(out.variables["images"], TARGET["target"] * (1 - 0.8**11),
                               rtol=1e-5)


def test_minimize_stops_at_tol():
    t2 = float(np.sum(TARGET["target"] ** 2))
    tol = t2 * 0.64**6 * 1.01  # first reached at step 6
    out = engine.minimize(quadratic, START, TARGET, optax.sgd(0.1), steps=100, chunk=4, tol=tol)
    assert out.status == "converged" and out.steps == 7 and out.best_step == 6
    assert out.best_loss <= tol


def test_minimize_stops_when_images_settle():
    """xtol: the images' RMS move per step over each window of steps; huge xtol stops at once."""
    runs = {}
    for chunk in (3, 10):
        out = engine.minimize(quadratic, START, TARGET, optax.sgd(0.1), steps=100, chunk=chunk,
                              xtol=1e9, window=5)
        assert out.status == "converged" and out.steps == 5 and "settled" in out.message
        runs[chunk] = out
    np.testing.assert_array_equal(runs[3].losses, runs[10].losses)
    never = engine.minimize(quadratic, START, TARGET, optax.sgd(0.1), steps=40, chunk=10,
                            xtol=0.0, window=5)
    assert never.status == "budget" and never.steps == 40


def test_minimize_chunking_and_callback():
    runs = {}
    for chunk in (3, 10):
        frames = []
        out = engine.minimize(quadratic, START, TARGET, optax.sgd(0.1), steps=10, chunk=chunk,
                              callback=frames.append)
        assert len(frames) == 1 + math.ceil(10 / chunk) and frames == out.frames
        assert [f.step for f in frames] == [0, *range(chunk, 10, chunk), 10][: len(frames)]
        runs[chunk] = out
    np.testing.assert_array_equal(runs[3].variables["images"], runs[10].variables["images"])
    np.testing.assert_array_equal(runs[3].losses, runs[10].losses)


def test_minimize_non_finite_keeps_best_iterate():
    """x <- 0.8 x from 5: 5, 4, 3.2, 2.56, 2.048, then 1.64 where the loss is NaN."""

    def loss_fn(variables, data):
        x = variables["x"]
        return jnp.where(x < 2.0, jnp.nan, x**2)

    with pytest.warns(RuntimeWarning, match="non-finite"):
        out = engine.minimize(loss_fn, {"x": np.float32(5.0)}, {}, optax.sgd(0.1), steps=20,
                              chunk=4, to_images=lambda v: v["x"])
    assert out.status == "non-finite"
    assert out.steps == 6 and np.isnan(out.losses[-1]) and np.all(np.isfinite(out.losses[:-1]))
    np.testing.assert_allclose(out.losses[:-1], [25, 16, 10.24, 6.5536, 4.194304], rtol=1e-5)
    assert out.best_step == 4 and out.best_loss == pytest.approx(4.194304)
    np.testing.assert_allclose(out.variables["x"], 2.048, rtol=1e-6)
    assert "non-finite" in out.message


def test_minimize_errors():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for steps, chunk in ((0, 5), (5, 0)):
            with pytest.raises(ValueError, match="steps and chunk"):
                engine.minimize(quadratic, START, TARGET, optax.sgd(0.1), steps=steps,
                                chunk=chunk)
