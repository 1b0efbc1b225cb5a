"""JSON as RFC 8259 has it: ``json``'s ``NaN`` and ``Infinity`` must be refused, not half-parsed.

Training uses this module too, so it imports nothing but the standard library."""

from __future__ import annotations

import json
from typing import Any


def _refuse(token: str) -> Any:
    raise ValueError(f"{token} is not valid JSON")


def loads(raw: bytes | str, *, constants: bool = False) -> Any:
    """Parse ``raw``; ``NaN``, ``Infinity`` and too deep nesting are a ValueError (with ``constants``
    the two parse as floats, so that a field's validation can name them)."""
    try:
        return json.loads(raw, parse_constant=None if constants else _refuse)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def dumps(value: Any, **kwargs: Any) -> str:
    """``json.dumps`` that refuses NaN and infinities (ValueError) instead of writing non-JSON."""
    return json.dumps(value, allow_nan=False, **kwargs)
