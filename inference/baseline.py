"""The training baseline of a model's inputs, and the population stability index against it.

Numeric values are binned as float32, the type the model reads: a float64 edge would send 0.7
carat (0.699999988 in float32) to another bin at serving than at training."""

from __future__ import annotations

import itertools
import json
import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from inference.schema import FEATURES, FeatureSchema

BASELINE_KEY = "input_baseline"
"""The ``metadata_props`` key that holds the baseline (JSON)."""
BASELINE_FORMAT = 1
UNPRICEABLE = "unpriceable"
"""The pseudo-feature: priced against unpriceable rows (no price: outside the feature schema)."""
PSI_FLOOR = 1e-4
"""Shares below this count as this in the PSI, so that an empty bin does not make it infinite."""


@dataclass(frozen=True, eq=False)
class Baseline:
    """Bins and expected shares, one slice of one flat vector per feature (and :data:`UNPRICEABLE`)."""

    edges: dict[str, np.ndarray]
    """Numeric feature -> increasing float32 inner edges; bin i holds edges[i-1] <= x < edges[i]."""
    categories: dict[str, tuple[str, ...]]
    """Categorical feature -> its categories, in the schema's order."""
    expected: np.ndarray
    """float64 shares, in :attr:`slices` order; each feature's slice sums to 1."""
    rows: int
    """Training rows measured."""

    @cached_property
    def slices(self) -> dict[str, slice]:
        """Feature -> its bins' slice of :attr:`expected` and of :meth:`count`'s vector."""
        sizes = [(n, len(e) + 1) for n, e in self.edges.items()]
        sizes += [(n, len(c)) for n, c in self.categories.items()] + [(UNPRICEABLE, 2)]
        out, start = {}, 0
        for name, size in sizes:
            out[name] = slice(start, start + size)
            start += size
        return out

    @cached_property
    def size(self) -> int:
        return sum(len(e) + 1 for e in self.edges.values()) + sum(map(len, self.categories.values())) + 2

    def count(self, columns: Mapping[str, Any], values: np.ndarray) -> np.ndarray:
        """Rows per bin of one model call; training bins with it too, so both sides bin alike. No Python
        loop over rows (``np.searchsorted``, :class:`collections.Counter`)."""
        counts = np.zeros(self.size, dtype=np.int64)
        priced = np.isfinite(values).all(axis=1)
        keep = None if priced.all() else priced
        for name, (start, edges) in self._numeric.items():
            x = np.asarray(columns[name]).reshape(-1)  # the priced rows only reach float32: no overflow
            x = (x if keep is None else x[keep]).astype(np.float32)
            counts[start : start + len(edges) + 1] = np.bincount(
                np.searchsorted(edges, x, "right"), minlength=len(edges) + 1
            )
        for name, index in self._categorical.items():
            x = np.asarray(columns[name], dtype=object).reshape(-1)
            for category, k in Counter((x if keep is None else x[keep]).tolist()).items():
                i = index.get(category)
                if i is not None:
                    counts[i] += k
        n_priced = int(np.count_nonzero(priced))
        counts[-2:] = (n_priced, len(priced) - n_priced)
        return counts

    @cached_property
    def _numeric(self) -> dict[str, tuple[int, np.ndarray]]:
        return {n: (self.slices[n].start, e) for n, e in self.edges.items()}

    @cached_property
    def _categorical(self) -> dict[str, dict[str, int]]:
        return {n: {c: self.slices[n].start + i for i, c in enumerate(cats)} for n, cats in self.categories.items()}

    def psi(self, counts: np.ndarray) -> dict[str, float | None]:
        """Feature -> PSI of ``counts`` against the baseline; None for a feature with no rows."""
        out: dict[str, float | None] = {}
        for name, where in self.slices.items():
            total = counts[where].sum()
            if total <= 0:
                out[name] = None
                continue
            actual = np.maximum(counts[where] / total, PSI_FLOOR)
            expected = np.maximum(self.expected[where], PSI_FLOOR)
            out[name] = float(np.sum((actual - expected) * np.log(actual / expected)))
        return out

    def shares(self) -> dict[str, dict[str, float]]:
        """Feature -> bin label -> expected share, for people (the report, the JSON view)."""
        return {
            name: dict(zip(self.labels()[name], self.expected[where].tolist(), strict=True))
            for name, where in self.slices.items()
        }

    def labels(self) -> dict[str, list[str]]:
        """Feature -> a label per bin: ``< 0.4``, ``0.4-0.7``, ``>= 1.5``; the category; priced / unpriceable."""
        out: dict[str, list[str]] = {}
        for name, edges in self.edges.items():
            e = [f"{v:g}" for v in edges.tolist()]
            out[name] = (
                [f"< {e[0]}", *(f"{a} to < {b}" for a, b in itertools.pairwise(e)), f">= {e[-1]}"] if e else ["all"]
            )
        out.update({n: list(c) for n, c in self.categories.items()})
        out[UNPRICEABLE] = ["priced", "unpriceable"]
        return out

    def to_json(self) -> str:
        shares = self.shares()
        data: dict[str, Any] = {"format": BASELINE_FORMAT, "rows": self.rows}
        for name, edges in self.edges.items():
            data[name] = {"edges": [float(v) for v in edges.tolist()], "shares": list(shares[name].values())}
        data.update({name: shares[name] for name in self.categories})
        data[UNPRICEABLE] = shares[UNPRICEABLE]["unpriceable"]
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def from_counts(
        cls, edges: dict[str, np.ndarray], counts: np.ndarray, unpriceable: float, schema: FeatureSchema = FEATURES
    ) -> Baseline:
        """The baseline whose shares are ``counts``, with ``unpriceable`` the share the schema refuses."""
        shell = cls(edges, dict(schema.categorical), np.zeros(0), 0)
        expected = np.zeros(shell.size)
        slices = shell.slices
        for where in slices.values():
            expected[where] = counts[where] / max(int(counts[where].sum()), 1)
        expected[slices[UNPRICEABLE]] = (1.0 - unpriceable, unpriceable)
        return cls(edges, dict(schema.categorical), expected, int(counts[slices[UNPRICEABLE]].sum()))

    @classmethod
    def from_json(cls, text: str, schema: FeatureSchema = FEATURES) -> Baseline:
        """Parse and check what :meth:`to_json` wrote; ValueError naming the first problem."""
        try:
            data = json.loads(text)
            if data.get("format") != BASELINE_FORMAT:
                raise ValueError(f"format {data.get('format')!r} is not {BASELINE_FORMAT}")
            edges: dict[str, np.ndarray] = {}
            parts: list[list[float]] = []
            for name in schema.numeric:
                raw = [float(v) for v in data[name]["edges"]]
                edges[name] = np.asarray(raw, dtype=np.float32)
                if not all(map(math.isfinite, raw)) or np.any(np.diff(edges[name]) <= 0):
                    raise ValueError(f"{name}: edges must be finite and increasing")
                parts.append([float(v) for v in data[name]["shares"]])
                if len(parts[-1]) != len(raw) + 1:
                    raise ValueError(f"{name}: {len(raw) + 1} bins need as many shares")
            for name, cats in schema.categorical.items():
                if set(data[name]) != set(cats):
                    raise ValueError(f"{name}: categories are not the schema's")
                parts.append([float(data[name][c]) for c in cats])
            unpriceable = float(data[UNPRICEABLE])
            parts.append([1.0 - unpriceable, unpriceable])
            rows = int(data["rows"])
        except (KeyError, TypeError, AttributeError, RecursionError, OverflowError, json.JSONDecodeError) as exc:
            raise ValueError(f"malformed: {type(exc).__name__}: {str(exc)[:100]}") from None
        for shares in parts:
            if not all(math.isfinite(s) and 0 <= s <= 1 for s in shares) or abs(sum(shares) - 1) > 1e-3:
                raise ValueError("each feature's shares must lie in [0, 1] and sum to 1")
        return cls(edges, dict(schema.categorical), np.asarray([s for p in parts for s in p]), rows)
