"""Helpers shared by the benchmark scripts (run as `python benchmarks/NAME.py`, so this imports as `_common`)."""

from __future__ import annotations

import os


def load_average() -> str:
    """The 1/5/15-minute load average: other jobs on the machine slow every timed model alike."""
    try:
        return " ".join(f"{v:.1f}" for v in os.getloadavg())
    except OSError:
        return "n/a"
