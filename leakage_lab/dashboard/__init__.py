"""A classroom dashboard: pick an image, a model, a defense and an attack, and watch it leak.

One screen for a lecturer with a projector. The class chooses a bundled image, the
network the client trains, the attack the curious server runs and the defense the
client applies to its update; the Run button then animates the reconstruction
(:class:`leakage_lab.widgets.Live`) beside a panel showing what the server actually
received, layer by layer.

Everything the dashboard does is a plain function of a :class:`Config` and a key, so it
runs (and is tested) without a browser::

    import jax
    from leakage_lab import dashboard

    config = dashboard.Config(dataset="digits", model="convnet", attack="inverting",
                              defense="gaussian", strength=0.01, steps=300)
    out = dashboard.run(config, key=jax.random.key(0))
    out.psnr, out.result.images           # dB; the reconstruction [N, H, W, C]

and :class:`Dashboard` only wires widgets to :func:`observe` and :func:`attack`. In a
notebook, ``dashboard.Dashboard()`` shows the screen; under Voilà
(``voila notebooks/09_classroom_dashboard.ipynb``) the code stays hidden.

The choices are registries of small functions, so a new attack, model or defense is one
entry: :data:`ATTACKS` maps a name to an :class:`Attack` (how the client computes its
update, and how the server attacks it), :data:`MODELS` to a network builder and
:data:`DEFENSES` to a :class:`DefenseChoice` (a strength and the defense it makes).
The attacks are the library's: DLG (Zhu et al., NeurIPS 2019), Inverting Gradients
(Geiping et al., NeurIPS 2020), the Bayes-optimal adversary (Balunović et al., ICLR
2022) and the FedAvg attack (Dimitrov et al., TMLR 2022).

The package has two modules: :mod:`~leakage_lab.dashboard.registry` (the registries and
the adapters, plain functions of a :class:`Config`; no widgets) and
:mod:`~leakage_lab.dashboard.screen` (the :class:`Dashboard` widget, its CSS and the
server's picture, :func:`server_figure`).
"""

from leakage_lab.dashboard import registry, screen
from leakage_lab.dashboard.registry import *  # noqa: F403 - the registries and adapters
from leakage_lab.dashboard.registry import _bayes_conditional, _matched  # noqa: F401 - tests
from leakage_lab.dashboard.screen import Dashboard, server_figure  # noqa: F401

__all__ = [*registry.__all__, *screen.__all__]
