"""V2 decoding in process: the vectorised paths agree with the one-by-one readers they stand in for,
and the size bound before parsing refuses exactly what it counts."""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inference.errors import BadRequest
from inference.schema import FEATURES, MAX_BATCH
from inference.v2.binary import decode_bytes, known_strings
from inference.v2.parse import parse_inference_request

LIMIT = len(FEATURES.names) * (3 * MAX_BATCH + 64) + 4096
"""The structural bytes a V2 JSON head may hold (inference/v2/parse.py)."""


def element(text: bytes) -> bytes:
    return struct.pack("<I", len(text)) + text


def read_one_by_one(buf: bytes, rows: int) -> Any:
    try:
        return decode_bytes(memoryview(buf), rows, "input 'x'")
    except BadRequest as exc:
        return exc.message


@pytest.mark.parametrize("name", list(FEATURES.categorical))
def test_every_category_column_of_1000_rows_is_split_as_read_one_by_one(name: str) -> None:
    known = FEATURES.categorical[name]
    picked = [known[i] for i in np.random.default_rng(1).integers(0, len(known), 1000)]
    buf = b"".join(element(s.encode()) for s in picked)
    fast = known_strings(buf, 1000, known)
    assert fast is not None and fast.dtype == object
    assert fast.tolist() == picked == read_one_by_one(buf, 1000)


# Known elements, other strings (zero bytes, long ones), and raw bytes that break the tiling.
KNOWN = st.sampled_from([element(c.encode()) for c in FEATURES.categorical["clarity"]])
PIECES = KNOWN | st.binary(max_size=8).map(element) | st.binary(min_size=1, max_size=6)


@settings(max_examples=500, deadline=None)
@given(st.lists(KNOWN, min_size=1, max_size=12) | st.lists(PIECES, min_size=1, max_size=12), st.integers(-1, 1))
def test_known_strings_is_the_one_by_one_reading_or_declines(pieces: list[bytes], off_by: int) -> None:
    buf, rows = b"".join(pieces), max(1, len(pieces) + off_by)
    fast = known_strings(buf, rows, FEATURES.categorical["clarity"])
    if fast is not None:  # taken only when exactly right; anything else is left to the careful reader
        assert fast.tolist() == read_one_by_one(buf, rows)
        assert set(fast.tolist()) <= set(FEATURES.categorical["clarity"])


def values_head(structural: int) -> bytes:
    """A JSON array (not a valid request) with exactly ``structural`` commas and brackets."""
    return b"[" + b"0," * (structural - 1) + b"0]"


def test_the_size_bound_refuses_a_head_past_it_and_nothing_at_it() -> None:
    with pytest.raises(BadRequest, match="more JSON values than"):
        parse_inference_request(values_head(LIMIT + 1))
    with pytest.raises(BadRequest) as at_limit:  # counted, let through, refused later as not an object
        parse_inference_request(values_head(LIMIT))
    assert "more JSON values" not in at_limit.value.message
    short = b"[" * (LIMIT // 2)  # shorter than the bound: cannot hold more, refused by the parser instead
    with pytest.raises(BadRequest, match="malformed JSON"):
        parse_inference_request(short)
