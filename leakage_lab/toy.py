"""An exact 2-D toy of gradient leakage, where the Bayes-optimal adversary is computable.

The "input" is a point ``x ∈ ℝ²`` drawn from a Gaussian mixture (the prior ``p(x)``);
the "gradient" is a fixed non-linear map ``u(x) = tanh(A x + b) ∈ ℝ⁴``; the client sends
``g ~ p(g | u(x))`` through a defense from ``leakage_lab.defenses``. On a grid every
quantity of Balunović et al. (ICLR 2022) can be computed exactly:

- the posterior ``p(x | g) ∝ p(g | u(x)) p(x)`` (:func:`posterior_grid`);
- the Bayes-optimal answer ``argmax_{x₀} ∫_{B(x₀, δ)} p(x | g) dx``: the posterior
  convolved with a disc of radius ``δ``, then its argmax (:func:`bayes_optimal`);
- the answers of the distance attacks, which assume a uniform prior:
  ``argmin_x d(g, u(x))`` for ``d`` = L2, L1 or cosine (:func:`distance_adversary`);
- the risk ``R(f) = P(||x - f(g)|| > δ)`` by sampling ``(x, g)`` (:func:`risk`).

    >>> import jax, leakage_lab as ll
    >>> d = ll.defenses.gaussian(0.2)
    >>> x, g = sample(jax.random.key(0), 3, defense=d)
    >>> x.shape, g.shape
    ((3, 2), (3, 4))
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from leakage_lab import defenses, distances

__all__ = [
    "Grid",
    "Risk",
    "bayes_adversary",
    "bayes_optimal",
    "ball_mass",
    "distance_adversary",
    "features",
    "grid",
    "log_prior",
    "plot_posterior",
    "posterior_grid",
    "risk",
    "sample",
]

# The prior: a mixture of three Gaussians with unequal weights (means, std, weight).
MEANS = np.array([[-1.2, -0.8], [1.0, 0.9], [1.3, -1.3]], np.float32)
STDS = np.array([0.35, 0.45, 0.3], np.float32)
WEIGHTS = np.array([0.5, 0.3, 0.2], np.float32)

# The "gradient" map u(x) = tanh(A x + b): non-linear, saturating far from the origin.
A = np.array([[1.5, 0.3], [-0.4, 1.2], [0.9, -1.1], [0.7, 0.8]], np.float32)
B = np.array([0.2, -0.1, 0.3, 0.0], np.float32)


class Grid(NamedTuple):
    """A square grid over ``[lo, hi]²``: ``points[i, j] = (xs[j], xs[i])``, shape ``[S, S, 2]``."""

    xs: np.ndarray
    points: np.ndarray
    step: float


def grid(lo: float = -3.0, hi: float = 3.0, size: int = 121) -> Grid:
    """The evaluation grid; ``size × size`` points, spacing ``(hi - lo) / (size - 1)``."""
    if size < 3 or not hi > lo:
        raise ValueError(f"grid: need size >= 3 and hi > lo, got size={size}, [{lo}, {hi}].")
    xs = np.linspace(lo, hi, size, dtype=np.float32)
    xx, yy = np.meshgrid(xs, xs)
    return Grid(xs, np.stack([xx, yy], axis=-1), float(xs[1] - xs[0]))


def features(x) -> jax.Array:
    """The toy's clean "gradient" ``u(x) = tanh(A x + b)``, for ``x [..., 2]`` -> ``[..., 4]``."""
    return jnp.tanh(jnp.asarray(x) @ A.T + B)


def log_prior(x) -> jax.Array:
    """``log p(x) = log sum_k w_k N(x; μ_k, s_k² I)`` for ``x [..., 2]``."""
    x = jnp.asarray(x)[..., None, :]
    sq = jnp.sum((x - MEANS) ** 2, axis=-1)
    log_comp = -sq / (2 * STDS**2) - 2 * jnp.log(STDS) - math.log(2 * math.pi)
    return jax.scipy.special.logsumexp(log_comp + jnp.log(WEIGHTS), axis=-1)


def sample(key: jax.Array, num: int, *, defense: defenses.Defense):
    """``num`` pairs ``x ~ p(x)``, ``g ~ p(g | u(x))``: returns ``(x [num, 2], g [num, 4])``."""
    k_comp, k_x, k_g = jax.random.split(key, 3)
    comp = jax.random.choice(k_comp, len(WEIGHTS), (num,), p=jnp.asarray(WEIGHTS))
    x = MEANS[comp] + STDS[comp, None] * jax.random.normal(k_x, (num, 2))
    g = defense.apply(features(x), key=k_g)
    return np.asarray(x), np.asarray(g)


@functools.partial(jax.jit, static_argnums=(1,))
def _log_posterior(observed, log_prob, points):
    """``log p(g | u(x)) + log p(x)`` at every grid point, for each observation ``[M, S, S]``."""
    clean = features(points)                                    # [S, S, 4]
    per_point = jax.vmap(jax.vmap(log_prob, (None, 0)), (None, 0))   # over the grid
    return jax.vmap(per_point, (0, None))(observed, clean) + log_prior(points)


def posterior_grid(observed, *, defense: defenses.Defense, grid: Grid) -> np.ndarray:
    """The posterior ``p(x | g)`` on the grid, as probability masses that sum to 1.

    ``observed`` is one update ``[4]`` (returns ``[S, S]``) or a batch ``[M, 4]``
    (returns ``[M, S, S]``). Each cell holds ``p(x | g) · step²``, normalised over the
    grid (the grid is assumed to hold essentially all of the prior's mass).
    """
    obs = np.asarray(observed, np.float32)
    single = obs.ndim == 1
    logp = np.asarray(_log_posterior(jnp.atleast_2d(obs), defense.log_prob,
                                     jnp.asarray(grid.points)), np.float64)
    logp -= logp.max(axis=(-2, -1), keepdims=True)
    post = np.exp(logp)
    post /= post.sum(axis=(-2, -1), keepdims=True)
    return post[0] if single else post


def _disc(delta: float, step: float) -> np.ndarray:
    r = int(math.floor(delta / step))
    offs = np.arange(-r, r + 1) * step
    return (offs[:, None] ** 2 + offs[None, :] ** 2 <= delta**2 + 1e-9).astype(np.float64)


def ball_mass(posterior: np.ndarray, *, delta: float, grid: Grid) -> np.ndarray:
    """``∫_{B(x₀, δ)} p(x | g) dx`` at every grid point ``x₀``: the posterior convolved with a disc.

    Works on ``[S, S]`` or ``[M, S, S]`` (by FFT, zero padding outside the grid).
    """
    disc = _disc(delta, grid.step)
    size, r = posterior.shape[-1], disc.shape[0] // 2
    n = size + disc.shape[0] - 1
    spec = np.fft.rfft2(posterior, (n, n)) * np.fft.rfft2(disc, (n, n))
    full = np.fft.irfft2(spec, (n, n))
    return full[..., r : r + size, r : r + size]


def _at(grid: Grid, flat_index) -> np.ndarray:
    return grid.points.reshape(-1, 2)[np.asarray(flat_index)]


def bayes_optimal(observed, *, defense: defenses.Defense, delta: float, grid: Grid) -> np.ndarray:
    """The Bayes-optimal reconstruction: the grid point whose δ-ball has the most posterior mass.

    ``f*(g) = argmax_{x₀} ∫_{B(x₀, δ)} p(x | g) dx``. ``[4] -> [2]`` or ``[M, 4] -> [M, 2]``.
    """
    mass = ball_mass(posterior_grid(observed, defense=defense, grid=grid), delta=delta, grid=grid)
    return _at(grid, np.argmax(mass.reshape(*mass.shape[:-2], -1), axis=-1))


def bayes_adversary(*, defense: defenses.Defense, delta: float, grid: Grid) -> Callable:
    """:func:`bayes_optimal` as an adversary ``f(g)`` for :func:`risk`."""
    return functools.partial(bayes_optimal, defense=defense, delta=delta, grid=grid)


@functools.partial(jax.jit, static_argnums=(1,))
def _distance_argmin(observed, distance, points):
    clean = features(points).reshape(-1, features(points).shape[-1])
    table = jax.vmap(lambda o: jax.vmap(lambda c: distance(o, c))(clean))(observed)
    return jnp.argmin(table, axis=-1)


def distance_adversary(distance: Callable, *, grid: Grid) -> Callable:
    """The attack that assumes a uniform prior: ``f(g) = argmin_{x on grid} distance(g, u(x))``.

    ``distance`` is e.g. ``distances.l2``, ``distances.l1`` or ``distances.cosine``.
    """

    def adversary(observed):
        obs = np.asarray(observed, np.float32)
        index = _distance_argmin(jnp.atleast_2d(obs), distance, jnp.asarray(grid.points))
        out = _at(grid, index)
        return out[0] if obs.ndim == 1 else out

    adversary.__name__ = getattr(distance, "__name__", "distance")
    return adversary


class Risk(NamedTuple):
    """A risk estimate ``R(f) = P(||x - f(g)|| > δ)`` with its 95% Wilson interval."""

    risk: float
    low: float
    high: float
    num_samples: int


def _wilson(failures: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion."""
    phat = failures / n
    centre = (phat + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z * math.sqrt(phat * (1 - phat) / n + z**2 / (4 * n**2)) / (1 + z**2 / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def risk(adversary: Callable, *, defense: defenses.Defense, delta: float, num_samples: int,
         key: jax.Array, batch: int = 500) -> Risk:
    """Estimates ``R(f) = E_{x, g} 1[||x - f(g)||₂ > δ]`` from ``num_samples`` draws of ``(x, g)``.

    The same ``key`` gives the same draws (and, for every adversary, the same pairs, so
    adversaries can be compared on common samples). ``adversary`` maps ``[M, 4] -> [M, 2]``.
    """
    if num_samples < 1:
        raise ValueError(f"risk: num_samples must be >= 1, got {num_samples}.")
    x, g = sample(key, num_samples, defense=defense)
    answers = np.concatenate([np.asarray(adversary(g[i : i + batch]))
                              for i in range(0, num_samples, batch)])
    failures = int(np.sum(np.linalg.norm(x - answers, axis=-1) > delta))
    low, high = _wilson(failures, num_samples)
    return Risk(failures / num_samples, low, high, num_samples)


def plot_posterior(observed, *, defense: defenses.Defense, delta: float, grid: Grid,
                   truth=None, adversaries: dict[str, Callable] | None = None):
    """A heat map of ``p(x | g)`` with each adversary's answer and the true ``x`` marked.

    ``adversaries`` maps a label to ``f(g)``; default Bayes, L2, L1 and cosine.
    Returns a matplotlib ``Figure``.
    """
    import matplotlib.pyplot as plt

    if adversaries is None:
        adversaries = {
            "Bayes": bayes_adversary(defense=defense, delta=delta, grid=grid),
            "L2": distance_adversary(distances.l2, grid=grid),
            "L1": distance_adversary(distances.l1, grid=grid),
            "cosine": distance_adversary(distances.cosine, grid=grid),
        }
    post = posterior_grid(observed, defense=defense, grid=grid)
    fig, ax = plt.subplots(figsize=(5, 4.5))
    lo, hi = float(grid.xs[0]), float(grid.xs[-1])
    im = ax.imshow(post, origin="lower", extent=(lo, hi, lo, hi), cmap="magma")
    fig.colorbar(im, ax=ax, label="p(x | g) per cell")
    markers = iter("osD^vP*")
    for label, f in adversaries.items():
        x0 = np.asarray(f(np.asarray(observed)))
        ax.plot(*x0, next(markers), ms=9, mfc="none", mew=2, label=label)
        ax.add_patch(plt.Circle(tuple(x0), delta, fill=False, lw=0.5, color="w"))
    if truth is not None:
        ax.plot(*np.asarray(truth), "x", color="cyan", ms=10, mew=2, label="true x")
    ax.set_title(f"posterior under {defense.name}, δ = {delta:g}")
    ax.legend(loc="upper left", fontsize=8)
    return fig
