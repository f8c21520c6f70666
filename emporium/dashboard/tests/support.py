"""Helpers for the dashboard tests."""

from __future__ import annotations

import math


def nearest_rank(values: list[float], quantile: float) -> float:
    """The reference percentile: sort everything and take rank ceil(q * n)."""
    ordered = sorted(values)
    return ordered[math.ceil(quantile * len(ordered)) - 1]
