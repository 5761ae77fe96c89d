"""Tests for the exact 2-D toy (``leakage_lab.toy``) of Balunović et al. (ICLR 2022).

The posterior is a distribution on the grid and concentrates at the truth as the noise
vanishes; the Bayes-optimal answer has the most posterior mass in its δ-ball (by
construction, checked against every other adversary's answer); risk estimates are
reproducible; and the Bayes adversary's risk is no higher than the L2, L1 and cosine
adversaries' under a Gaussian and a Laplacian defense.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest

from leakage_lab import defenses, distances, toy

GRID = toy.grid(-3.0, 3.0, 61)
KEY = jax.random.key(0)


def adversaries(defense, delta):
    return {
        "bayes": toy.bayes_adversary(defense=defense, delta=delta, grid=GRID),
        "l2": toy.distance_adversary(distances.l2, grid=GRID),
        "l1": toy.distance_adversary(distances.l1, grid=GRID),
        "cosine": toy.distance_adversary(distances.cosine, grid=GRID),
    }


def test_posterior_is_normalised():
    d = defenses.gaussian(0.3)
    _, g = toy.sample(KEY, 5, defense=d)
    post = toy.posterior_grid(g, defense=d, grid=GRID)
    assert post.shape == (5, 61, 61) and (post >= 0).all()
    np.testing.assert_allclose(post.sum(axis=(1, 2)), 1.0, rtol=1e-6)
    np.testing.assert_allclose(toy.posterior_grid(g[0], defense=d, grid=GRID), post[0])
    # The prior's mass lies inside the grid: the prior itself integrates to ~1 on it.
    prior = np.exp(np.asarray(toy.log_prior(GRID.points))) * GRID.step**2
    assert abs(prior.sum() - 1.0) < 1e-3


def test_posterior_concentrates_at_truth_for_tiny_noise():
    d = defenses.gaussian(1e-3)
    x, g = toy.sample(KEY, 4, defense=d)
    post = toy.posterior_grid(g, defense=d, grid=GRID)
    mode = GRID.points.reshape(-1, 2)[post.reshape(4, -1).argmax(axis=1)]
    # Off-grid truths: the mode is the grid point nearest in feature space, a cell or two away.
    assert np.all(np.linalg.norm(mode - x, axis=1) < 2.5 * GRID.step)
    near = np.linalg.norm(GRID.points[None] - x[:, None, None], axis=-1) < 3 * GRID.step
    assert np.all((post * near).sum(axis=(1, 2)) > 0.99)


@pytest.mark.parametrize("defense", [defenses.gaussian(0.3), defenses.laplace(0.2)])
def test_bayes_answer_has_the_most_ball_mass(defense):
    delta = 0.4
    _, g = toy.sample(KEY, 20, defense=defense)
    mass = toy.ball_mass(toy.posterior_grid(g, defense=defense, grid=GRID), delta=delta,
                         grid=GRID).reshape(20, -1)
    flat = GRID.points.reshape(-1, 2)

    def mass_at(answers):
        index = np.array([np.flatnonzero((flat == a).all(axis=1))[0] for a in answers])
        return mass[np.arange(20), index]

    answers = {name: f(g) for name, f in adversaries(defense, delta).items()}
    best = mass_at(answers["bayes"])
    np.testing.assert_allclose(best, mass.max(axis=1))
    for name in ("l2", "l1", "cosine"):
        assert np.all(best >= mass_at(answers[name]) - 1e-12), name
    # Ball mass by convolution agrees with a direct sum at one centre.
    post = toy.posterior_grid(g[0], defense=defense, grid=GRID)
    centre = answers["bayes"][0]
    inside = np.linalg.norm(GRID.points - centre, axis=-1) <= delta + 1e-6
    np.testing.assert_allclose(best[0], post[inside].sum(), rtol=1e-6)


def test_risk_reproducible():
    d = defenses.gaussian(0.3)
    f = toy.distance_adversary(distances.l2, grid=GRID)
    a = toy.risk(f, defense=d, delta=0.4, num_samples=300, key=KEY)
    assert a == toy.risk(f, defense=d, delta=0.4, num_samples=300, key=KEY)
    assert a.low <= a.risk <= a.high and a.num_samples == 300
    with pytest.raises(ValueError):
        toy.risk(f, defense=d, delta=0.4, num_samples=0, key=KEY)


@pytest.mark.parametrize("defense", [defenses.gaussian(0.3), defenses.laplace(0.2)])
def test_bayes_risk_is_lowest(defense):
    delta = 0.5
    risks = {name: toy.risk(f, defense=defense, delta=delta, num_samples=600, key=KEY)
             for name, f in adversaries(defense, delta).items()}
    for name in ("l2", "l1", "cosine"):
        assert risks["bayes"].risk <= risks[name].risk, (name, risks)
        assert risks["bayes"].high < risks[name].low, (name, risks)   # clearly, not by chance


def test_plot_posterior():
    import matplotlib

    matplotlib.use("Agg")
    d = defenses.laplace(0.2)
    x, g = toy.sample(KEY, 1, defense=d)
    fig = toy.plot_posterior(g[0], defense=d, delta=0.4, grid=GRID, truth=x[0])
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels == ["Bayes", "L2", "L1", "cosine", "true x"]
    import matplotlib.pyplot as plt

    plt.close(fig)
