"""Run-time settings read from the environment.

``LEAKAGE_LAB_QUICK=1`` selects quick mode: the labs shrink step counts and sample
sizes so that the whole series runs in CI in a few minutes. Quick mode never skips a
cell; it only makes the numbers smaller. The test configuration (``conftest.py``) sets it.
"""

from __future__ import annotations

import os

QUICK_ENV = "LEAKAGE_LAB_QUICK"


def quick() -> bool:
    """True when quick mode is on (``LEAKAGE_LAB_QUICK`` set to anything but '', '0', 'false')."""
    return os.environ.get(QUICK_ENV, "").strip().lower() not in ("", "0", "false", "no")


def pick(classroom, quick_value):
    """Returns ``quick_value`` in quick mode, else the classroom setting ``classroom``."""
    return quick_value if quick() else classroom
