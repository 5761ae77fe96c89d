"""leakage-lab: federated learning is not private by default, shown by doing it.

The library behind the labs: data sets, models, federated-learning simulation,
gradient-leakage attacks on one optimisation engine, metrics and live widgets.

    >>> import leakage_lab as ll
    >>> ds = ll.data.load("tiny-images")
"""

from leakage_lab import (
    analytic,
    attacks,
    bayes,
    capstone,
    checks,
    compression,
    config,
    data,
    defenses,
    distances,
    dlg,
    engine,
    fast_dense,
    fedavg,
    fl,
    inverting,
    labels,
    matching,
    metrics,
    models,
    nn,
    objective,
    optimizers,
    priors,
    privacy,
    secagg,
    toy,
)

__version__ = "0.1.0"


def __getattr__(name):
    # The widgets import ipywidgets; load them on first use, not with the package.
    if name in ("dashboard", "quiz", "widgets"):
        import importlib

        return importlib.import_module(f"leakage_lab.{name}")
    raise AttributeError(f"module 'leakage_lab' has no attribute {name!r}")

__all__ = [
    "analytic",
    "attacks",
    "bayes",
    "capstone",
    "checks",
    "compression",
    "config",
    "dashboard",
    "data",
    "defenses",
    "distances",
    "dlg",
    "engine",
    "fast_dense",
    "fedavg",
    "fl",
    "inverting",
    "labels",
    "matching",
    "metrics",
    "models",
    "nn",
    "objective",
    "optimizers",
    "priors",
    "privacy",
    "quiz",
    "secagg",
    "toy",
    "widgets",
]
