"""The paired bootstrap the gate decides on: how sure is a difference in MAE between two models?

Both models are scored on the same held-out rows, so their errors are paired row by row. One
resample draws the rows with replacement and takes the mean of ``candidate - current`` over the
rows drawn; the 2.5th and 97.5th percentiles of :data:`RESAMPLES` such means are the 95%
interval. Pairing matters: most of a row's error is the row itself (a stone priced far from
its grade), which both models share; the difference of two unpaired intervals would be several
times wider.

The resamples are seeded (:data:`SEED`), so a decision repeats exactly on the same rows, and
drawn in blocks, one NumPy gather each: no Python loop over resamples, and bounded memory.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RESAMPLES = 10_000
"""Resamples per interval (at least 2,000: the 2.5% tail then rests on 50 or more of them)."""

SEED = 0
"""The generator's seed: the same rows always give the same interval."""

CONFIDENCE = 0.95
"""The interval's nominal coverage."""

_BLOCK_CELLS = 4_000_000
"""Indices drawn per block (resamples x rows), bounding memory at about 32 MB of int64."""


@dataclass(frozen=True)
class Difference:
    """The mean of ``candidate - current`` absolute errors over the held-out rows, with its interval."""

    mean: float
    low: float
    high: float
    resamples: int
    confidence: float = CONFIDENCE

    @property
    def below_zero(self) -> bool:
        """The whole interval is below zero: the candidate's lower MAE is not the rows' luck."""
        return self.high < 0

    def describe(self) -> str:
        """E.g. ``-12.34 [-20.10, -4.50] (95% paired bootstrap, 10,000 resamples)``."""
        return (
            f"{self.mean:+.2f} [{self.low:+.2f}, {self.high:+.2f}] "
            f"({self.confidence:.0%} paired bootstrap, {self.resamples:,} resamples)"
        )

    def record(self) -> dict[str, float | int]:
        """The figures as the history and the report's JSON hold them."""
        return {
            "mean": round(self.mean, 4),
            "low": round(self.low, 4),
            "high": round(self.high, 4),
            "confidence": self.confidence,
            "resamples": self.resamples,
        }


def paired_difference(
    candidate: np.ndarray, current: np.ndarray, resamples: int = RESAMPLES, seed: int = SEED
) -> Difference:
    """The bootstrap interval of ``mean(candidate - current)`` (absolute errors, same rows, same order).

    Errors must be finite (the gate decides non-finite MAEs before it gets here).
    """
    diff = np.asarray(candidate, dtype=np.float64) - np.asarray(current, dtype=np.float64)
    if diff.ndim != 1 or len(diff) == 0 or not np.isfinite(diff).all():
        raise ValueError("paired_difference needs two equally long, non-empty arrays of finite errors")
    n = len(diff)
    rng = np.random.default_rng(seed)
    block = max(1, _BLOCK_CELLS // n)
    means = np.empty(resamples, dtype=np.float64)
    for start in range(0, resamples, block):
        stop = min(resamples, start + block)
        means[start:stop] = diff[rng.integers(0, n, size=(stop - start, n))].mean(axis=1)
    tail = (1 - CONFIDENCE) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return Difference(float(diff.mean()), float(low), float(high), resamples)
