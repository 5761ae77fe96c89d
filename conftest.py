"""Test configuration: quick mode for every test and every lab run by nbval."""

import os

# Set before any notebook kernel starts, so nbval's kernels inherit it.
os.environ.setdefault("LEAKAGE_LAB_QUICK", "1")
