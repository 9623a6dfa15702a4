"""What the benchmark scripts share: argument checks and the machine's load. Each script runs as
`python benchmarks/NAME.py`, so this folder is on its import path."""

from __future__ import annotations

import argparse
import os


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1; got {value}")
    return value


def load_average() -> str:
    """The 1-minute load average, as the tables print it ('unknown' where the OS has none, e.g. Windows)."""
    try:
        return f"{os.getloadavg()[0]:.1f}"
    except (AttributeError, OSError):
        return "unknown"
