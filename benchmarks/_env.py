"""What every benchmark records about the machine it ran on."""

import os
import platform

import jax


def environment() -> dict:
    """Device, core count and versions, to put beside the numbers."""
    return {
        "device": jax.devices()[0].device_kind,
        "cpu_count": os.cpu_count(),
        "jax": jax.__version__,
        "python": platform.python_version(),
    }
