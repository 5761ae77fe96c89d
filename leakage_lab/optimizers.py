"""The optimisers and projections the attacks use, each as its paper describes it.

Every optimiser is an optax transformation. They are cached (a bounded
``functools.lru_cache``) so that the same settings give the same object, and a second
attack reuses the compiled code of the first.

* :func:`lbfgs`: L-BFGS with a zoom line search, as DLG (Zhu et al., NeurIPS 2019) used it.
* :func:`adam`: plain Adam.
* :func:`signed_adam`: Adam on the *sign* of the gradient with step decay at 3/8, 5/8 and
  7/8 of the steps (Geiping et al., NeurIPS 2020).
* :func:`staircase_adam`: Adam whose rate decays by a factor every few steps (Dimitrov
  et al., TMLR 2022, App. B.2).
* :func:`unit_box`: the projection onto valid images, ``clip(x, 0, 1)``;
  :func:`on_images` lifts such a projection to an attack's variables.

    >>> import jax.numpy as jnp
    >>> unit_box(jnp.array([-0.5, 0.3, 1.7])).tolist()
    [0.0, 0.30000001192092896, 1.0]
    >>> signed_adam(0.1, 1000) is signed_adam(0.1, 1000)
    True
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

__all__ = ["adam", "adam_decay", "lbfgs", "on_images", "signed_adam", "staircase_adam",
           "step_decay", "unit_box"]


@functools.lru_cache(maxsize=32)
def lbfgs(learning_rate: float | None = None,
          memory_size: int = 100) -> optax.GradientTransformation:
    """L-BFGS with a zoom line search (strong Wolfe conditions), as DLG used it.

    Without a line search L-BFGS stalls on DLG's loss; the line search makes every step
    a descent step.
    """
    return optax.lbfgs(learning_rate=learning_rate, memory_size=memory_size)


@functools.lru_cache(maxsize=32)
def adam(learning_rate: float = 0.1) -> optax.GradientTransformation:
    """Adam with the given rate."""
    return optax.adam(learning_rate)


def step_decay(learning_rate: float, steps: int) -> optax.Schedule:
    """Geiping et al.'s schedule: ``learning_rate``, times 0.1 after 3/8, 5/8 and 7/8 of
    ``steps``."""
    decay = {int(steps * f): 0.1 for f in (3 / 8, 5 / 8, 7 / 8)}
    return optax.piecewise_constant_schedule(learning_rate, decay)


@functools.lru_cache(maxsize=32)
def signed_adam(learning_rate: float = 0.1, steps: int = 1000) -> optax.GradientTransformation:
    """Adam fed with the *sign* of the gradient, with step decay: Geiping et al.'s optimiser.

    ``update = Adam(sign(∇x loss))``, as in the fast gradient sign method of adversarial
    attacks, with the rate of :func:`step_decay`.
    """
    return optax.chain(optax.scale_by_sign(), optax.adam(step_decay(learning_rate, steps)))


@functools.lru_cache(maxsize=32)
def staircase_adam(learning_rate: float = 0.4, decay: float = 0.995,
                   every: int = 10) -> optax.GradientTransformation:
    """Adam whose rate is multiplied by ``decay`` every ``every`` steps (staircase).

    The FedAvg attack's FEMNIST setting (Dimitrov et al., TMLR 2022, App. B.2): rate
    0.4, decay 0.995 every 10 steps.
    """
    schedule = optax.exponential_decay(learning_rate, every, decay, staircase=True)
    return optax.adam(schedule)


adam_decay = staircase_adam   # the name ``fedavg.adam_decay`` had


def unit_box(images: jax.Array) -> jax.Array:
    """Projection onto the box of valid images: ``clip(x, 0, 1)``."""
    return jnp.clip(images, 0.0, 1.0)


@functools.lru_cache(maxsize=32)
def on_images(project: Callable) -> Callable:
    """``project(images) -> images`` lifted to the engine's variables ``{"images": ...}``."""

    def project_variables(variables):
        return {**variables, "images": project(variables["images"])}

    return project_variables
