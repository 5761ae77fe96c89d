"""leakage-lab: federated learning is not private by default, shown by doing it.

The library behind the labs: data sets, models, federated-learning simulation,
gradient-leakage attacks on one optimisation engine, metrics and live widgets.

    >>> import leakage_lab as ll
    >>> ds = ll.data.load("tiny-images")
"""

from leakage_lab import (
    attacks,
    config,
    data,
    distances,
    engine,
    fl,
    metrics,
    models,
    nn,
)

__version__ = "0.1.0"


def __getattr__(name):
    # The widgets import ipywidgets; load them on first use, not with the package.
    if name == "widgets":
        import importlib

        return importlib.import_module("leakage_lab.widgets")
    raise AttributeError(f"module 'leakage_lab' has no attribute {name!r}")

__all__ = [
    "attacks",
    "config",
    "data",
    "distances",
    "engine",
    "fl",
    "metrics",
    "models",
    "nn",
    "widgets",
]
