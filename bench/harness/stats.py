"""Percentiles as every report here computes them: the value at rank floor(q * n), no
interpolation, NaN for no values."""

from __future__ import annotations


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]
