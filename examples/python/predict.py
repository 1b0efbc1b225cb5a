"""Price diamonds with the exported diamond_price .onnx, using only onnxruntime and numpy.

    python predict.py MODEL.onnx rows.json        # or: ... | python predict.py MODEL.onnx

rows.json: ``[{"carat": 0.7, "cut": "Ideal", "color": "G", "clarity": "VS2"}, ...]``. Prints
``{"name", "version", "prices", "problems"}``: a price in USD (rounded to cents) per row, or null
with the reason in ``problems`` when the row cannot be priced. The rule: validate every row against
the feature schema the model carries, and treat NaN as "cannot price"; never substitute a default.
"""

from __future__ import annotations

import json
import math
import sys
from typing import Any

import numpy as np
import onnxruntime as ort


def problem(row: Any, schema: dict[str, Any]) -> str | None:
    """Why ``row`` is outside the feature schema, or None when it is inside."""
    if not isinstance(row, dict):
        return "a row must be a JSON object"
    for name, bounds in schema["numeric"].items():
        value = row.get(name)
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        if not ok or not bounds["min"] <= value <= bounds["max"]:
            return f"{name} must be a number from {bounds['min']} to {bounds['max']}"
    for name, allowed in schema["categorical"].items():
        if row.get(name) not in allowed:
            return f"{name} must be one of {', '.join(allowed)}"
    return None


def _number(value: Any) -> float:
    """``value`` as a float, or NaN (which the model never prices) when it is not a number."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return math.nan
    try:
        return float(value)
    except OverflowError:
        return math.nan


def model_prices(session: ort.InferenceSession, schema: dict[str, Any], rows: list[Any]) -> np.ndarray:
    """The model's raw float32 prices: NaN for every row outside the schema."""
    feeds: dict[str, np.ndarray] = {}
    for name in schema["numeric"]:
        with np.errstate(over="ignore"):
            numbers = np.array([_number(r.get(name)) if isinstance(r, dict) else math.nan for r in rows])
            feeds[name] = numbers.astype(np.float32).reshape(-1, 1)
    for name in schema["categorical"]:
        labels = [r.get(name) if isinstance(r, dict) and isinstance(r.get(name), str) else "" for r in rows]
        feeds[name] = np.array(labels, dtype=object).reshape(-1, 1)
    (prices,) = session.run(["price"], feeds)
    return np.asarray(prices, dtype=np.float32).reshape(-1)


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: python predict.py MODEL.onnx [rows.json]  (rows on stdin without a file)", file=sys.stderr)
        return 2
    session = ort.InferenceSession(argv[0], providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map  # the model's metadata_props
    schema = json.loads(meta["feature_schema"])
    if len(argv) > 1:
        with open(argv[1], encoding="utf-8") as fh:
            parsed = json.load(fh)
    else:
        parsed = json.load(sys.stdin)
    rows = parsed if isinstance(parsed, list) else parsed["diamonds"]
    raw = model_prices(session, schema, rows) if rows else np.empty(0, np.float32)
    problems = [
        problem(row, schema) or (None if math.isfinite(x) else "the model cannot price this row")
        for row, x in zip(rows, raw, strict=True)
    ]
    prices = [None if p else round(float(x), 2) for p, x in zip(problems, raw, strict=True)]
    print(json.dumps({"name": meta["name"], "version": int(meta["version"]), "prices": prices, "problems": problems}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
