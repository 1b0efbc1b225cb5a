"""The row rules: what makes a row of diamonds usable, defined once.

Training's cleaning (:func:`training.data.load`) removes the rows of ``diamond.db`` that break
them; an import (:mod:`training.importer`) refuses the rows of a file that break them, so nothing
enters the table that training would then throw away. A row is charged to the first rule it
breaks, in the order of :data:`RULES`, and to the first column that breaks it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from inference.schema import FEATURES, FeatureSchema

NULL = "NULL in a feature or the price"
NOT_NUMBER = "not a finite number"
UNKNOWN = "unknown category"
NON_POSITIVE = "non-positive carat or price"
ABOVE_MAX = "price above MAX_PRICE"
OUT_OF_RANGE = "outside the schema's range"
RULES = (NULL, NOT_NUMBER, UNKNOWN, NON_POSITIVE, ABOVE_MAX, OUT_OF_RANGE)
"""The per-row rules, in the order they are applied."""
DUPLICATE = "duplicate of an earlier row"
"""A rule of the whole table, not of a row: training keeps the first of rows equal in every
feature and the price (the lowest key); an import stores both, as the sales they are."""
PASSED = -1


@dataclass(frozen=True)
class Checked:
    """The verdict on each row of a frame."""

    rule: np.ndarray
    """Per row: the index in :data:`RULES` of the rule it breaks, or :data:`PASSED`."""
    column: np.ndarray
    """Per row: the column that breaks it ("" for a row that passes)."""
    numbers: dict[str, np.ndarray]
    """The numeric columns as float64 (NaN where a value is not a number)."""

    @property
    def passed(self) -> np.ndarray:
        passed: np.ndarray = self.rule == PASSED
        return passed

    def counts(self) -> dict[str, int]:
        """Rule -> rows it refused, every rule in order (zeros included)."""
        found = np.bincount(self.rule[self.rule != PASSED].astype(np.int64), minlength=len(RULES))
        return {rule: int(n) for rule, n in zip(RULES, found, strict=True)}


def check(
    frame: pd.DataFrame,
    schema: FeatureSchema = FEATURES,
    max_price: float = math.inf,
    optional_numeric: Sequence[str] = (),
) -> Checked:
    """Apply :data:`RULES` to every row of ``frame`` (the features and the price, any dtype;
    None or NaN for a missing value). ``optional_numeric`` columns may be missing, but a value
    they hold must be a finite number."""
    n = len(frame)
    rule = np.full(n, PASSED, dtype=np.int8)
    column = np.full(n, "", dtype=object)

    def mark(index: int, name: str, mask: np.ndarray | pd.Series) -> None:
        hit = np.asarray(mask, dtype=bool) & (rule == PASSED)
        rule[hit] = index
        column[hit] = name

    numeric = [*schema.numeric, schema.target]
    for name in [*schema.names, schema.target]:
        mark(0, name, frame[name].isna().to_numpy())
    numbers = {
        name: pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=np.float64, na_value=math.nan)
        for name in [*numeric, *optional_numeric]
    }
    for name in numeric:
        mark(1, name, ~np.isfinite(numbers[name]))
    for name in optional_numeric:
        mark(1, name, frame[name].notna().to_numpy() & ~np.isfinite(numbers[name]))
    for name, allowed in schema.categorical.items():
        mark(2, name, ~frame[name].isin(allowed).to_numpy())
    with np.errstate(invalid="ignore"):
        for name in numeric:
            mark(3, name, numbers[name] <= 0)
        mark(4, schema.target, numbers[schema.target] > max_price)
        for name, (lo, hi) in schema.numeric.items():
            mark(5, name, ~((numbers[name] >= lo) & (numbers[name] <= hi)))
    return Checked(rule, column, numbers)
