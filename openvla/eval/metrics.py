"""Success-rate statistics for closed-loop evaluation.

A success rate from n episodes is a binomial proportion; the Wilson score interval keeps its 95% confidence bounds
inside [0, 1] and stays sensible at 0/n and n/n, where the normal approximation collapses to a zero-width interval.
"""

from __future__ import annotations

import math

Z_95 = 1.959963984540054  # two-sided 95% standard normal quantile


def wilson_interval(successes: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval (low, high) for ``successes`` out of ``n``; (0, 1) when n = 0."""
    if n < 0 or not 0 <= successes <= max(n, 0):
        raise ValueError(f"wilson_interval: need 0 ≤ successes ≤ n, got successes={successes}, n={n}")
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    z2 = z * z
    denom = 1.0 + z2 / n
    center = (p + z2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom
    return max(0.0, center - half), min(1.0, center + half)


def success_summary(successes: int, n: int) -> dict[str, float | int]:
    """{success_rate, ci95_low, ci95_high, successes, episodes} of one task or of the whole suite."""
    low, high = wilson_interval(successes, n)
    return {
        "success_rate": successes / n if n else 0.0,
        "ci95_low": low,
        "ci95_high": high,
        "successes": successes,
        "episodes": n,
    }
