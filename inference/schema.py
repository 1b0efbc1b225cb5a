"""The feature schema: the one definition of the model's inputs.

Nothing else in the project spells out a feature name, a category or a range."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

CUTS: tuple[str, ...] = ("Fair", "Good", "Very Good", "Premium", "Ideal")
"""Cut grades, worst to best."""

COLORS: tuple[str, ...] = ("J", "I", "H", "G", "F", "E", "D")
"""Colour grades, worst (J) to best (D)."""

CLARITIES: tuple[str, ...] = ("I1", "SI2", "SI1", "VS2", "VS1", "VVS2", "VVS1", "IF")
"""Clarity grades, worst to best."""


@dataclass(frozen=True)
class FeatureSchema:
    """Names, types, allowed categories and ranges of the model's inputs."""

    numeric: dict[str, tuple[float, float]]
    """Numeric feature -> inclusive (min, max)."""
    categorical: dict[str, tuple[str, ...]]
    """Categorical feature -> allowed values, in quality order (worst first)."""
    target: str = "price"

    @cached_property
    def names(self) -> tuple[str, ...]:
        """All feature names, numeric first, in the model's input order (computed once: every request reads it)."""
        return (*self.numeric, *self.categorical)

    def to_dict(self) -> dict[str, Any]:
        return {
            "numeric": {k: {"min": lo, "max": hi} for k, (lo, hi) in self.numeric.items()},
            "categorical": {k: list(v) for k, v in self.categorical.items()},
            "target": self.target,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureSchema:
        return cls(
            numeric={k: (float(v["min"]), float(v["max"])) for k, v in data["numeric"].items()},
            categorical={k: tuple(v) for k, v in data["categorical"].items()},
            target=str(data.get("target", "price")),
        )


FEATURES = FeatureSchema(
    numeric={"carat": (0.2, 5.01)},
    categorical={"cut": CUTS, "color": COLORS, "clarity": CLARITIES},
)
"""The project's feature schema."""


MAX_BATCH = 10_000
"""The most rows one request may price, on every API."""


def columns(diamonds: Sequence[Any]) -> dict[str, list[Any]]:
    """Validated diamonds as one column per feature, as :meth:`LoadedModel.price` takes them."""
    return {name: [getattr(d, name) for d in diamonds] for name in FEATURES.names}
