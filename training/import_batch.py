"""A batch of an import: up to :data:`BATCH_ROWS` records of the file, checked by the row rules
together and inserted with one ``executemany``; the refused ones written to the rejects file in
line order. Memory holds one batch, whatever the file's length."""

from __future__ import annotations

import itertools
import math
import sqlite3
from typing import Any

import numpy as np
import pandas as pd

from inference.schema import FEATURES
from training import rules

BATCH_ROWS = 20_000
WRONG_WIDTH = "wrong number of fields"
"""The one refusal that is the file's, not the rules': a record the header does not describe."""
REQUIRED = (*FEATURES.names, FEATURES.target)


class Batch:
    """Fed with :meth:`add`, emptied with :meth:`flush`; counts what it read, added and refused."""

    def __init__(self, names: list[str], positions: list[int], width: int, optional: list[str], max_price: float):
        self.names, self.positions, self.width = names, positions, width
        self.optional, self.max_price = optional, max_price
        self.canonical = {n: {v.lower(): v for v in allowed} for n, allowed in FEATURES.categorical.items()}
        self.numeric = {*FEATURES.numeric, FEATURES.target, *optional}
        self.lines: list[int] = []
        self.rows: list[list[str]] = []
        self.refusals: list[tuple[int, str, str, list[str]]] = []
        self.read = self.added = 0
        self.refused = dict.fromkeys([*rules.RULES, WRONG_WIDTH], 0)

    @property
    def full(self) -> bool:
        return len(self.lines) + len(self.refusals) >= BATCH_ROWS

    def add(self, line: int, record: list[str]) -> None:
        """The record that starts on ``line``; one of the wrong width is refused here."""
        self.read += 1
        if len(record) == self.width:
            self.lines.append(line)
            self.rows.append(record)
        else:
            self.refused[WRONG_WIDTH] += 1
            detail = f"{len(record)} fields, the header has {self.width}"
            self.refusals.append((line, WRONG_WIDTH, detail, [""] * len(self.names)))

    def flush(self, con: sqlite3.Connection, insert: str, rejects: Any, import_id: int | None, next_id: int) -> int:
        """Check, insert (keys from ``next_id``) and write the refused to ``rejects`` (a csv writer);
        returns the number of rows inserted."""
        keep = np.zeros(0, dtype=np.int64)
        values: list[list[Any]] = []
        if self.rows:
            by_column = list(zip(*self.rows, strict=False))  # all as wide as the header
            pairs = zip(self.names, self.positions, strict=True)
            frame = pd.DataFrame({name: self._column(name, by_column[position]) for name, position in pairs})
            checked = rules.check(frame, FEATURES, self.max_price, optional_numeric=self.optional)
            for at in np.flatnonzero(~checked.passed):
                reason, column = rules.RULES[checked.rule[at]], str(checked.column[at])
                row = [self.rows[at][i].strip() for i in self.positions]
                value = row[self.names.index(column)]
                detail = f"{column} is empty" if reason == rules.NULL else f"{column} = {value[:40]!r}"
                self.refused[reason] += 1
                self.refusals.append((self.lines[at], reason, detail, row))
            keep = np.flatnonzero(checked.passed)
            for name in self.names:
                if name in REQUIRED and name in checked.numbers:  # a row that passed has a number there
                    values.append(checked.numbers[name][keep].tolist())
                elif name in checked.numbers:
                    values.append([None if math.isnan(v) else v for v in checked.numbers[name][keep].tolist()])
                else:
                    values.append(frame[name].to_numpy()[keep].tolist())
        for line, reason, detail, row in sorted(self.refusals, key=lambda r: r[0]):
            rejects.writerow([line, reason, detail, *row])
        if len(keep):
            ids = range(next_id, next_id + len(keep))
            lines = [self.lines[i] for i in keep]
            con.executemany(insert, zip(ids, *values, itertools.repeat(import_id), lines, strict=False))
        self.added += len(keep)
        self.lines, self.rows, self.refusals = [], [], []
        return len(keep)

    def _column(self, name: str, texts: tuple[str, ...]) -> np.ndarray:
        """A column as :func:`training.rules.check` takes it: numbers where every value is one
        (the usual case, parsed in one step), else the stripped texts with None for empty ones and
        categories in their canonical spelling ("very good" is "Very Good")."""
        if name in self.numeric:
            try:
                numbers = np.array(texts, dtype=np.float64)
            except ValueError:
                pass
            else:
                if not np.isnan(numbers).any():  # "nan" is text that is not a number, not a missing value
                    return numbers
        lookup = self.canonical.get(name, {})
        stripped = (text.strip() for text in texts)
        return np.array([lookup.get(t.lower(), t) if t else None for t in stripped], dtype=object)
