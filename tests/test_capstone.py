"""Lab 10's ``ll.capstone``: a leaky defense leaks, a strong one holds, bad defenses get clear
errors, and the same key gives the same scorecard. Tiny settings (one or two rounds, two
held-out digits, few attack steps) keep each test to seconds."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import leakage_lab as ll
from leakage_lab import capstone

TINY = capstone.setup(rounds=1, num_clients=4, samples_per_client=20, clients_per_round=2,
                      held_out=2, attack_steps=20, attacks=("analytic", "inverting"))
KEY = jax.random.key(0)


def noise(sigma):
    def add_noise(update, key):
        leaves, treedef = jax.tree.flatten(update)
        keys = jax.random.split(key, len(leaves))
        return jax.tree.unflatten(treedef, [x + sigma * jax.random.normal(k, x.shape)
                                            for x, k in zip(leaves, keys, strict=True)])
    return add_noise


def test_no_defense_leaks_far_above_the_guesses():
    card = capstone.evaluate(None, key=KEY, settings=TINY)
    assert card.name == "none" and not card.holds
    assert card["analytic"].psnr > 30 > card.best_guess.psnr + 5
    assert {g.attack for g in card.guesses} == {"blank", "pixel mean", "label mean"}
    assert 0.0 <= card.accuracy <= 1.0 and card.epsilon is None
    assert "LEAKS" in str(card) and "(no update)" in str(card)
    rows = card.rows()
    assert len(rows) == len(card.attacks) + len(card.guesses)
    assert sum(r["update-free"] for r in rows) == 3


def test_strong_noise_holds_against_the_adaptive_attack():
    settings = TINY._replace(attacks=("analytic", "inverting", "adaptive"))
    card = capstone.evaluate(noise(10.0), key=KEY, settings=settings)
    assert card["adaptive"].attack == "adaptive: through the defense"
    assert card.holds, str(card)
    assert card.strongest.psnr <= card.best_guess.psnr + card.margin


def test_weak_noise_leaks_and_the_bayes_attack_uses_a_declared_likelihood():
    settings = TINY._replace(attacks=("adaptive",), attack_steps=100)
    card = capstone.evaluate(ll.defenses.gaussian(1e-4), key=KEY, settings=settings)
    assert card.attacks[0].attack == "adaptive: Bayes, its log_prob"
    assert not card.holds and card.strongest.psnr > card.best_guess.psnr + 5


def test_same_key_same_card_other_key_other_noise():
    defense = noise(0.05)
    a = capstone.evaluate(defense, key=KEY, settings=TINY)
    b = capstone.evaluate(defense, key=KEY, settings=TINY)
    c = capstone.evaluate(defense, key=jax.random.key(1), settings=TINY)
    for x, y in zip(a.attacks, b.attacks, strict=True):
        np.testing.assert_array_equal(x.psnrs, y.psnrs)
    assert a.accuracy == b.accuracy
    assert not np.array_equal(a["analytic"].psnrs, c["analytic"].psnrs)


def test_dp_sgd_reports_epsilon_and_secure_aggregation_needs_a_crowd():
    dp = capstone.declare(None, name="dp", dp=ll.privacy.dp_sgd(1.0, 1.0))
    card = capstone.evaluate(dp, key=KEY, settings=TINY._replace(attacks=("analytic",)))
    assert card.epsilon is not None and card.epsilon > 0
    assert card.epsilon_attacked == pytest.approx(
        ll.privacy.epsilon(ll.privacy.dp_sgd(1.0, 1.0), sampling_rate=1.0, steps=1,
                           delta=capstone.DELTA))
    assert "ε" in str(card)
    crowd = capstone.declare(None, name="secagg", aggregate=3)
    with pytest.raises(ValueError, match="secure aggregation of 3 clients needs at least 3"):
        capstone.evaluate(crowd, key=KEY, settings=TINY)


def test_scramble_leaks_to_the_unsigned_distance():
    update = {"a": {"w": jnp.arange(6.0).reshape(2, 3), "b": jnp.ones(3)}}
    scrambled = capstone.scramble(update, jax.random.key(3))
    assert float(capstone.unsigned_leaf_cosine(update, scrambled)) < 1e-5
    assert float(capstone.unsigned_leaf_cosine(update, {"a": {"w": jnp.eye(2, 3),
                                                               "b": jnp.ones(3)}})) > 0.1
    card = capstone.evaluate(capstone.scramble, key=KEY, settings=TINY._replace(attack_steps=60),
                             extra_distances={"unsigned": capstone.unsigned_leaf_cosine})
    assert not card.holds
    assert card["yours"].psnr > card.best_guess.psnr + 5


def test_leaderboard_lists_every_card():
    card = capstone.evaluate(None, key=KEY, settings=TINY._replace(attacks=("analytic",)))
    text = capstone.leaderboard({"none": card, "again": card})
    assert text.count("LEAKS") == 2 and "best guess" in text
    with pytest.raises(ValueError, match="no scorecards"):
        capstone.leaderboard([])


def test_reference_defenses_are_the_library_s():
    refs = capstone.reference_defenses()
    assert list(refs) == ["none", "gaussian(σ=0.01)", "gaussian(σ=0.1)", "DP-SGD(C=1, σ=1)",
                          "top-k(10%)", "soteria(80%)", "secure aggregation (k=4)"]
    assert refs["DP-SGD(C=1, σ=1)"].dp == ll.privacy.dp_sgd(1.0, 1.0)
    assert refs["secure aggregation (k=4)"].aggregate == 4
    assert refs["gaussian(σ=0.1)"].noise_std == pytest.approx(0.1)
    assert refs["top-k(10%)"].matched_distance is ll.defenses.kept_distance(zero_rows=True)


# -- bad input: each error names what was expected and what came ---------------------------

def _wrong_tree(update, key):
    return {"w": jnp.zeros(3)}


def _wrong_shape(update, key):
    return jax.tree.map(lambda x: x.reshape(-1), update)


def _nan(update, key):
    return jax.tree.map(lambda x: x / 0.0 * 0.0, update)


def _ints(update, key):
    return jax.tree.map(lambda x: jnp.zeros(x.shape, jnp.int32), update)


def _none(update, key):
    return None


def _one_argument(update):
    return update


@pytest.mark.parametrize(("defense", "error", "words"), [
    (_wrong_tree, ValueError, r"another structure: expected \{'fc1'.*got \{'w': \[3\]\}"),
    (_wrong_shape, ValueError, r"has shape \[12544\], expected \[196, 64\]"),
    (_nan, ValueError, r"NaN or infinite"),
    (_ints, TypeError, r"dtype int32, expected a float array"),
    (_none, TypeError, r"returned None.*Expected a tree shaped like the update"),
    (_one_argument, TypeError, r"called with two arguments, the update .* and a PRNG key"),
    (42, TypeError, r"expected a defense function apply\(update, key\).*got int 42"),
    (capstone.Setup, TypeError, r"got the class Setup"),
])
def test_bad_defenses_fail_early_with_what_was_expected(defense, error, words):
    with pytest.raises(error, match=words):
        capstone.evaluate(defense, key=KEY, settings=TINY)


def test_bad_arguments_are_named():
    with pytest.raises(TypeError, match="key must be a PRNG key"):
        capstone.evaluate(None, key=0, settings=TINY)
    with pytest.raises(TypeError, match="unknown settings \\['round'\\]"):
        capstone.setup(round=3)
    with pytest.raises(ValueError, match="attacks must be a non-empty subset"):
        capstone.setup(attacks=("magic",))
    with pytest.raises(TypeError, match=r"extra_distances\['x'\] must be a function"):
        capstone.evaluate(None, key=KEY, settings=TINY, extra_distances={"x": 3})
    with pytest.raises(ValueError, match="noise_std must be a finite number > 0"):
        capstone.declare(noise(1.0), noise_std=-1)
    with pytest.raises(TypeError, match="dp must be privacy.dp_sgd"):
        capstone.declare(None, dp=(1.0, 1.0))
