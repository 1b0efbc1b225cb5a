"""The noise floor: the error no model of carat, cut, color and clarity can avoid, by carat band.

Rows with identical carat, cut, color and clarity (a *cell*) sell at different prices; every
model of these four inputs prices them alike, so part of each row's error is out of reach.
Per cell of two or more rows, three estimates of the cell's expected absolute error around
its median (:func:`cell_spread`):

* **pairwise** (the floor shown): the mean of ``|y_i - y_j|`` over the cell's pairs, divided
  by sqrt(2). The mean pairwise difference is an unbiased estimate of ``E|Y - Y'|`` for two
  sales of the same cell, at any cell size from two rows up; for a spread that is normal
  within the cell, ``E|Y - median| = E|Y - Y'| / sqrt(2)`` exactly (for a Laplace spread it
  is 6% less).
* **in-sample** (a low bracket): the mean ``|y - cell median|``; the median is fitted on the
  very rows it is scored on, so it is biased low (a cell of two scores half its gap).
* **leave-one-out** (a high bracket): each row against the median of the *other* rows of its
  cell; that median is noisier than the true one, so this is biased high.

A band's floor is the mean of its rows' cell estimates over the rows whose cell has two or
more rows; the model's MAE beside it is over the same rows, so the two compare directly.
Rows alone in their cell have no estimate (nothing to compare them with): the table says how
many rows each floor rests on.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from inference.schema import FEATURES

CARAT_BANDS: tuple[float, ...] = (0.5, 1.0, 1.5, 2.0)
"""Inner edges of the carat bands: [0.2, 0.5), [0.5, 1), [1, 1.5), [1.5, 2), [2, 5.01]."""

HOW = (
    "floor: per cell of identical carat, cut, color and clarity with 2+ rows (all clean rows), the mean "
    "|price_i - price_j| over its pairs / sqrt(2) (unbiased for E|Y - Y'|; equal to E|Y - median| for a "
    "normal spread), averaged over the band's rows in such cells; bracket: in-sample |price - cell median| "
    "(biased low) to leave-one-out (biased high); the MAE beside it is over the same rows"
)
"""How the floor is computed, in one line, for the command's output and the report."""


def band_labels() -> tuple[str, ...]:
    """The carat bands' labels, smallest first: each band's bounds, e.g. ``0.5–1``."""
    lo, hi = FEATURES.numeric["carat"]
    edges = (lo, *CARAT_BANDS, hi)
    return tuple(f"{a:g}–{b:g}" for a, b in itertools.pairwise(edges))


def carat_band_labels(carat: np.ndarray) -> np.ndarray:
    """Each row's carat band, labelled by its bounds."""
    return np.asarray(band_labels(), dtype=object)[np.searchsorted(CARAT_BANDS, carat, side="right")]


@dataclass(frozen=True)
class CellSpread:
    """Per row (in the frame's order): its cell's size and the three estimates; NaN in a cell of one."""

    size: np.ndarray
    pairwise: np.ndarray
    in_sample: np.ndarray
    leave_one_out: np.ndarray

    def take(self, rows: np.ndarray) -> CellSpread:
        """The estimates of some rows (a mask or indices): e.g. the holdout's, its cells measured on all rows."""
        return CellSpread(self.size[rows], self.pairwise[rows], self.in_sample[rows], self.leave_one_out[rows])


def cell_spread(frame: pd.DataFrame) -> CellSpread:
    """The three estimates of each row's cell, from the prices of ``frame``'s rows (vectorised)."""
    cell = frame.groupby(list(FEATURES.names), sort=False).ngroup().to_numpy()
    price = frame[FEATURES.target].to_numpy(dtype=np.float64)
    order = np.lexsort((price, cell))  # by cell, then by price
    y, g = price[order], cell[order]
    sizes = np.bincount(g)
    m = sizes[g]
    start = np.concatenate(([0], np.cumsum(sizes)[:-1]))[g]
    k = np.arange(len(y)) - start  # rank within the cell, 0-based

    def at(rank: np.ndarray) -> np.ndarray:
        return np.asarray(y[start + np.clip(rank, 0, m - 1)], dtype=np.float64)

    pairs = np.bincount(g, weights=y * (2 * k - m + 1)) / np.maximum(sizes * (sizes - 1) / 2, 1)
    median = (at((m - 1) // 2) + at(m // 2)) / 2
    in_sample = np.bincount(g, weights=np.abs(y - median)) / sizes

    # The median of the other m - 1 rows: their j-th is the cell's j-th below this row's rank, else the next.
    def other(j: np.ndarray) -> np.ndarray:
        return at(j + (k <= j))

    others = m - 1
    loo = np.abs(y - (other((others - 1) // 2) + other(others // 2)) / 2)

    single = m < 2
    found = [np.where(single, np.nan, v) for v in (pairs[g] / math.sqrt(2), in_sample[g], loo)]
    unsorted = [np.empty_like(v) for v in (m.astype(np.float64), *found)]
    for out, v in zip(unsorted, (m.astype(np.float64), *found), strict=True):
        out[order] = v
    return CellSpread(unsorted[0].astype(np.int64), unsorted[1], unsorted[2], unsorted[3])


@dataclass(frozen=True)
class Band:
    """One carat band (or all rows): the model's MAE, and against the floor on rows that have one."""

    label: str
    rows: int
    mae: float
    floor_rows: int
    """Rows in cells of two or more: where the floor is estimated."""
    mae_on_floor_rows: float
    floor: float
    floor_low: float
    floor_high: float

    @property
    def gap(self) -> float:
        """The model's MAE above the floor, on the same rows."""
        return self.mae_on_floor_rows - self.floor


def by_band(carat: np.ndarray, errors: np.ndarray, spread: CellSpread) -> list[Band]:
    """Per carat band, then all rows: the model's MAE (absolute ``errors``) beside the floor."""
    labels = carat_band_labels(carat)
    groups = [(label, labels == label) for label in band_labels()] + [("all", np.ones(len(carat), bool))]
    found = []
    for label, mask in groups:
        known = mask & ~np.isnan(spread.pairwise)
        found.append(
            Band(
                label,
                int(mask.sum()),
                _mean(errors[mask]),
                int(known.sum()),
                _mean(errors[known]),
                _mean(spread.pairwise[known]),
                _mean(spread.in_sample[known]),
                _mean(spread.leave_one_out[known]),
            )
        )
    return found


def _mean(values: np.ndarray) -> float:
    return float(np.mean(values)) if len(values) else math.nan


def format_bands(bands: list[Band]) -> str:
    """The bands as a Markdown table (for ``python -m training.evaluate``)."""
    lines = [
        "| carat | rows | MAE | rows in cells of 2+ | MAE there | floor there [bracket] | above the floor |",
        "|---|---|---|---|---|---|---|",
    ]
    for b in bands:
        lines.append(
            f"| {b.label} | {b.rows:,} | {b.mae:,.1f} | {b.floor_rows:,} | {b.mae_on_floor_rows:,.1f} | "
            f"{b.floor:,.1f} [{b.floor_low:,.1f}–{b.floor_high:,.1f}] | {b.gap:+,.1f} |"
        )
    return "\n".join(lines)
