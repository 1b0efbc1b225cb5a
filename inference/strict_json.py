"""JSON as RFC 8259 has it, for every file and body the project reads or writes.

``json`` accepts and writes ``NaN`` and ``Infinity``, which no other JSON reader does; a settings
file, a history line or a request body holding them must be refused, not half-parsed. Training
uses this module too, so it imports nothing but the standard library.
"""

from __future__ import annotations

import json
from typing import Any


def _refuse(token: str) -> Any:
    raise ValueError(f"{token} is not valid JSON")


def loads(raw: bytes | str, *, constants: bool = False) -> Any:
    """Parse ``raw``; ``NaN`` and ``Infinity`` are a ValueError unless ``constants`` (then they parse
    as floats, so that a field's validation can name them). Nesting too deep is a ValueError too."""
    try:
        return json.loads(raw, parse_constant=None if constants else _refuse)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def dumps(value: Any, **kwargs: Any) -> str:
    """``json.dumps`` that refuses NaN and infinities (ValueError) instead of writing non-JSON."""
    return json.dumps(value, allow_nan=False, **kwargs)
