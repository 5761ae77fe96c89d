"""Tests for the classroom dashboard: the config -> run path, headless, and its widget."""

import jax
import numpy as np
import pytest

from leakage_lab import dashboard
from leakage_lab.dashboard import Config

# Tiny runs: 25x25 faces through the MLP, few steps. The same step count everywhere lets
# the attacks reuse their compiled code across tests.
STEPS = 200
TINY = Config(dataset="faces", image=3, model="mlp", attack="inverting", steps=STEPS)
KEY = jax.random.key(0)


def tiny(**changes) -> Config:
    return TINY._replace(**changes)


# -- the configuration ------------------------------------------------------------------


@pytest.mark.parametrize("changes, message", [
    ({"dataset": "cifar10"}, r"Config.dataset must be one of 'digits', 'faces'.*'cifar10'"),
    ({"model": "resnet"}, r"Config.model must be one of 'lenet', 'convnet', 'mlp'"),
    ({"attack": "magic"}, r"Config.attack must be one of .*'dlg'.*got 'magic'"),
    ({"defense": "vpn"}, r"Config.defense must be one of .*'gaussian'.*got 'vpn'"),
    ({"image": 200}, r"Config.image must be an int from 0 to 199 .*got 200"),
    ({"image": 199, "batch": 2}, r"Config.image must be an int from 0 to 198"),
    ({"batch": 0}, r"Config.batch must be an int from 1 to 8, got 0"),
    ({"steps": 2.5}, r"Config.steps must be an int"),
    ({"defense": "gaussian", "strength": float("nan")}, r"strength \(σ of Gaussian.*finite"),
    ({"defense": "gaussian", "strength": "high"}, r"finite number, got 'high'"),
])
def test_bad_config_says_what_was_expected(changes, message):
    with pytest.raises(ValueError, match=message):
        dashboard.check_config(tiny(**changes))


def test_defense_strength_errors_come_from_the_defense():
    with pytest.raises(ValueError, match="prune: p must be a pruning probability"):
        dashboard.observe(tiny(defense="prune", strength=1.5), key=KEY)
    with pytest.raises(ValueError, match="number of bits, a whole number"):
        dashboard.observe(tiny(defense="quantize", strength=4.5), key=KEY)


def test_key_must_be_a_prng_key():
    with pytest.raises(ValueError, match=r"key must be a PRNG key such as jax.random.key\(0\)"):
        dashboard.run(tiny(), key=0)


def test_strength_defaults_to_the_defense_default():
    assert dashboard.check_config(tiny(defense="prune")).strength == 0.5
    assert dashboard.check_config(tiny(defense="top_k", strength=0.2)).strength == 0.2


def test_register_attack_rejects_other_objects():
    with pytest.raises(ValueError, match="expects a dashboard.Attack"):
        dashboard.register_attack("x", lambda scene: None)


# -- what the server saw ----------------------------------------------------------------


def test_observe_is_reproducible_and_shares_weights_across_attacks():
    a = dashboard.observe(tiny(defense="gaussian", strength=0.01), key=KEY)
    b = dashboard.observe(tiny(defense="gaussian", strength=0.01, attack="dlg"), key=KEY)
    for x, y in zip(jax.tree.leaves(a.observed), jax.tree.leaves(b.observed), strict=True):
        np.testing.assert_array_equal(x, y)
    c = dashboard.observe(tiny(defense="gaussian", strength=0.01), key=jax.random.key(1))
    assert not np.array_equal(jax.tree.leaves(a.params)[0], jax.tree.leaves(c.params)[0])


def test_no_defense_sends_the_clean_gradient():
    scene = dashboard.observe(tiny(), key=KEY)
    assert scene.defense is None
    views = dashboard.layer_views(scene)
    assert [v.name for v in views] == ["fc1.b", "fc1.w", "fc2.b", "fc2.w"]
    assert all(v.change == 0 for v in views)
    assert sum(v.size for v in views) == 625 * 256 + 256 + 256 * 2 + 2
    assert "No defense" in dashboard.server_summary(scene)


def test_layer_views_measure_the_defense():
    topk = dashboard.observe(tiny(defense="top_k", strength=0.1), key=KEY)
    views = dashboard.layer_views(topk)
    total = sum(v.size for v in views)
    zeros = sum(v.zeros * v.size for v in views) / total
    assert zeros == pytest.approx(0.9, abs=1e-3)
    noisy = dashboard.observe(tiny(defense="gaussian", strength=0.05), key=KEY)
    # σ = 0.05 drowns the first layer's many small values, not the last layer's few
    # large ones: noise only means something relative to each layer's size.
    change = {v.name: v.change for v in dashboard.layer_views(noisy)}
    assert change["fc1.w"] > 2 and change["fc2.b"] < 0.2
    signs = dashboard.observe(tiny(defense="sign"), key=KEY)
    for leaf in jax.tree.leaves(signs.observed):
        magnitudes = np.unique(np.abs(np.asarray(leaf)))
        assert len(magnitudes[magnitudes > 0]) == 1  # one scale per layer
    assert "moved by" in dashboard.server_summary(noisy)


def test_server_figure_has_a_column_per_weight_and_the_mlp_leak():
    scene = dashboard.observe(tiny(defense="prune", strength=0.5), key=KEY)
    fig = dashboard.server_figure(scene)
    # 2 rows (client, server) x (2 weight arrays + the analytic-leak panel).
    assert len(fig.axes) == 6
    leak = fig.axes[-1].images[0].get_array()
    clean = dashboard.observe(tiny(), key=KEY)
    # With no defense the first layer's gradient gives the image exactly.
    exact = dashboard.server_figure(clean).axes[-1].images[0].get_array()
    np.testing.assert_allclose(exact, clean.images[0, ..., 0], atol=1e-4)
    assert leak.shape == exact.shape


# -- attacks, headless ------------------------------------------------------------------


RUNS = [(attack, defense) for attack in dashboard.ATTACKS
        for defense in (("none", "prune") if attack == "fedavg" else ("none", "gaussian"))]
RUNS.append(("bayes", "quantize"))   # its integer bits must not become traced data


@pytest.mark.parametrize("attack, defense", RUNS)
def test_each_attack_runs_headless(attack, defense):
    frames = []
    config = tiny(attack=attack, defense=defense)
    out = dashboard.run(config, key=KEY, callback=frames.append)
    assert out.config.strength == dashboard.DEFENSES[defense].default
    assert out.result.images.shape == out.scene.images.shape
    assert np.isfinite(out.psnr)
    assert 1 <= out.result.steps <= STEPS
    assert frames and frames[-1].step == out.result.steps
    if defense == "none" and attack != "fedavg":
        # The MLP's dense first layer makes these easy: the image comes back clearly.
        assert out.psnr > 20, f"{attack}: only {out.psnr:.1f} dB without a defense"


def test_noise_hurts_inverting_gradients():
    clean = dashboard.run(tiny(), key=KEY)
    noisy = dashboard.run(tiny(defense="gaussian", strength=0.1), key=KEY)
    assert clean.psnr > noisy.psnr + 10


def test_adaptive_attacker_uses_matched_distances():
    from leakage_lab import compression, distances

    scene = dashboard.observe(tiny(defense="top_k"), key=KEY)
    assert dashboard._matched(scene, distances.cosine) is \
        compression.kept_distance(distances.cosine)
    fixed = scene._replace(config=scene.config._replace(adaptive=False))
    assert dashboard._matched(fixed, distances.cosine) is distances.cosine
    laplace = dashboard.observe(tiny(defense="laplace"), key=KEY)
    assert dashboard._matched(laplace, distances.l2) is distances.l1


# -- the widget -------------------------------------------------------------------------


def test_widget_builds_and_round_trips_its_config():
    board = dashboard.Dashboard()
    assert dashboard.check_config(board.config()) == dashboard.check_config(Config())
    target = tiny(defense="gaussian", strength=0.01, attack="bayes", batch=2)
    board.set_config(target)
    assert board.config() == dashboard.check_config(target)
    # A noise level uses the logarithmic slider; pruning the linear one.
    assert board.controls["noise"].layout.display is None
    assert board.controls["strength"].layout.display == "none"
    board.controls["defense"].value = "prune"
    assert board.controls["strength"].description == "p"
    assert board.config().strength == 0.5
    board.controls["defense"].value = "sign"
    assert board.controls["strength"].layout.display == "none"
    assert board.config().strength is None


def visible_controls(board):
    """Names of the controls whose layout does not hide them."""
    return {name for name, c in board.controls.items() if c.layout.display != "none"}


@pytest.mark.parametrize("defense", list(dashboard.DEFENSES))
def test_only_the_unused_knobs_are_hidden(defense):
    board = dashboard.Dashboard(tiny(defense=defense))
    layouts = [c.layout for c in board.controls.values()]
    assert len({id(layout) for layout in layouts}) == len(layouts), \
        "controls share a Layout: hiding one knob would hide them all"
    choice = dashboard.DEFENSES[defense]
    hidden = {"strength", "noise"}
    if choice.knob:
        hidden.discard("noise" if choice.log else "strength")
    assert visible_controls(board) == set(board.controls) - hidden
    for name, control in board.controls.items():
        assert f"leakage-lab-control-{name}" in control._dom_classes


def test_changing_the_image_set_picks_a_suitable_model():
    board = dashboard.Dashboard()
    board.controls["dataset"].value = "tiny-images"
    assert board.controls["model"].value == "lenet"
    assert board.controls["image"].max == 111


def test_clicking_run_animates_the_live_view():
    board = dashboard.Dashboard(tiny())
    board.run_button.click()
    assert board.last is not None, board.status.value
    assert len(board.live.frames) >= 2
    # The slider and the Play button both rest on the last frame.
    assert board.live._slider.value == board.live._play.value == len(board.live.frames) - 1
    assert board.live.psnr() == pytest.approx(board.last.psnr, abs=0.5)
    assert f"PSNR {board.last.psnr:.1f} dB" in board.status.value
    assert "numbers" in board._summary.value
    assert bytes(board._server_image.value).startswith(b"\x89PNG")
    assert not board.run_button.disabled


def test_clicking_run_with_a_bad_setting_shows_the_error():
    board = dashboard.Dashboard(tiny())
    board.controls["image"].value = 199
    board.controls["batch"].value = 4
    board.run_button.click()
    assert board.last is None
    assert "Could not run" in board.status.value
    assert "Config.image must be an int from 0 to 196" in board.status.value
    assert not board.run_button.disabled
