"""The wire format both APIs share: strict JSON in, a structural count before parsing, JSON out."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from typing import Any

from pydantic_core import PydanticSerializationError, from_json, to_json
from starlette.responses import Response

from inference import strict_json
from inference.errors import BadRequest, clip_text

JSON = "application/json"


def structural_bytes(raw: bytes) -> int:
    """The ``{[:,`` bytes of a JSON body, an upper bound of its values: counted before parsing, as a
    megabyte of ``[]`` costs the parser far more than the count."""
    return len(raw) - len(raw.translate(None, b"{[:,"))  # one pass (four ``count`` calls took 2.6x as long)


def strict_loads(raw: bytes, *, constants: bool = False) -> Any:
    """A request's JSON, any failure a 400; ``NaN`` and ``Infinity`` refused unless ``constants``.
    pydantic-core parses first; what it refuses is parsed again by ``json``, whose errors are the answer."""
    if not constants:
        with contextlib.suppress(ValueError):
            return from_json(raw, allow_inf_nan=False)
    try:
        return strict_json.loads(raw.decode("utf-8"), constants=constants)
    except ValueError as exc:  # includes UnicodeDecodeError and JSONDecodeError
        raise BadRequest(f"malformed JSON: {clip_text(str(exc), 200)}") from None


def dump(body: Any) -> bytes:
    """``body`` as compact JSON; a lone surrogate a client sent is written escaped instead of failing."""
    try:
        return to_json(body)
    except PydanticSerializationError:
        return json.dumps(body, ensure_ascii=True, separators=(",", ":")).encode()


def json_response(body: Any, status_code: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    """The one way every route writes JSON."""
    return Response(dump(body), status_code=status_code, headers=headers, media_type=JSON)
