"""The fast paths give what the careful paths give: the same values for every valid input, and for
every invalid one the careful path's own answer (they fall back to it rather than phrase errors).

Covered: request JSON parsed by pydantic-core before ``json``; known BYTES elements split by one
regex; JSON API batches validated straight to columns; a one-row V2 request priced through the
row batcher."""

from __future__ import annotations

import json
import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inference.api.bodies import DiamondBatch
from inference.api.validate import validate, validate_columns
from inference.errors import BadRequest, ServiceError
from inference.rest.wire import strict_loads
from inference.schema import CUTS, FEATURES, columns
from inference.strict_json import loads as json_loads
from inference.v2.binary import decode_bytes
from tests.helpers import InProcessClient

INFER = "/v2/models/diamond_price/infer"


def careful_loads(raw: bytes) -> Any:
    """What :func:`strict_loads` answered before pydantic-core went first: ``json`` alone."""
    try:
        return json_loads(raw.decode("utf-8"))
    except ValueError as exc:
        return ("error", str(exc)[:200])


def outcome(raw: bytes) -> Any:
    try:
        return strict_loads(raw)
    except BadRequest as exc:
        return ("error", exc.message)


@pytest.mark.parametrize(
    "raw",
    [
        b'\xef\xbb\xbf{"a": 1}',  # a byte order mark
        b'{"a": "\\ud800"}',  # a lone surrogate: json accepts it, pydantic-core refuses, json decides
        b'{"a": "\xff"}',
        b'{"a": NaN}',
        b'{"a": -Infinity}',
        b'{"a": 1e999}',
        b'{"a": ' + b"9" * 600 + b"}",  # an integer too long for pydantic-core, not for json
        b'{"a": ' + b"9" * 5000 + b"}",  # too long for both
        b'{"a": 1, "a": 2}',
        b'{"a": 1} x',
        b"[" * 5000 + b"]" * 5000,
        b'"\\u0001"',
        b'"\x01"',
        b"-0",
        b"01",
        b"",
        b'{"a": 0.1, "b": [1.5e-7, 123456789.123456789, -2.2250738585072014e-308]}',
    ],
)
def test_request_json_parses_as_json_alone_did(raw: bytes) -> None:
    got, expected = outcome(raw), careful_loads(raw)
    if isinstance(expected, tuple):
        assert isinstance(got, tuple), raw[:40]
    else:
        assert json.dumps(got, allow_nan=True) == json.dumps(expected, allow_nan=True)
        assert type(got) is type(expected)


@settings(max_examples=300, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
        lambda c: st.lists(c) | st.dictionaries(st.text(), c),
    )
)
def test_any_json_value_parses_to_the_same_value(value: Any) -> None:
    raw = json.dumps(value).encode()
    got, expected = outcome(raw), careful_loads(raw)
    assert isinstance(got, tuple) == isinstance(expected, tuple)
    if not isinstance(expected, tuple):
        assert json.dumps(got) == json.dumps(expected)


def element(text: bytes) -> bytes:
    return struct.pack("<I", len(text)) + text


def slow_bytes(buf: bytes, rows: int) -> Any:
    try:
        return decode_bytes(memoryview(buf), rows, "input 'cut'")
    except BadRequest as exc:
        return exc.message


ELEMENTS = st.sampled_from([c.encode() for c in CUTS]) | st.binary(max_size=12)


@settings(max_examples=400, deadline=None)
@given(st.lists(ELEMENTS, max_size=20), st.integers(0, 22), st.integers(-3, 3))
def test_known_bytes_elements_split_as_read_one_by_one(items: list[bytes], rows: int, cut: int) -> None:
    buf = b"".join(map(element, items))
    buf = buf[: len(buf) + cut] if cut < 0 else buf + b"\x00" * cut
    fast: Any
    try:
        fast = decode_bytes(memoryview(buf), rows, "input 'cut'", CUTS)
    except BadRequest as exc:
        fast = exc.message
    assert fast == slow_bytes(buf, rows)


def test_a_tricky_tiling_is_read_as_a_length_prefixed_reader_would() -> None:
    # "Good" then "Fair", and a buffer where a known element hides inside another's bytes.
    inner = element(b"Good")
    hiding = element(b"xx" + inner)  # not a known element: must not be split into known ones
    assert decode_bytes(memoryview(element(b"Good") + element(b"Fair")), 2, "w", CUTS) == ["Good", "Fair"]
    assert decode_bytes(memoryview(hiding), 1, "w", CUTS) == slow_bytes(hiding, 1) == ["xx" + inner.decode("latin-1")]


def batch_body(rows: list[dict[str, Any]]) -> bytes:
    return json.dumps({"diamonds": rows}).encode()


def either(func: Any, *args: Any) -> Any:
    try:
        return func(*args)
    except ServiceError as exc:
        return (exc.status_code, exc.message, exc.extra)


GOOD = {"carat": 0.7, "cut": "Ideal", "color": "G", "clarity": "VS2"}


@pytest.mark.parametrize("rows", [1, 3, 100, 1500])
@pytest.mark.parametrize(
    "bad",
    [
        None,
        {"carat": 5.0100001},
        {"carat": True},
        {"carat": 1},
        {"carat": "0.7"},
        {"cut": "ideal"},
        {"extra": 1},
        {"carat": None},
    ],
)
def test_batches_validate_to_the_same_columns_and_errors(rows: int, bad: dict[str, Any] | None) -> None:
    diamonds = [dict(GOOD, carat=round(0.2 + i % 400 / 100, 2)) for i in range(rows)]
    if bad is not None:
        diamonds[rows // 2] = {**GOOD, **bad}
    body = batch_body(diamonds)
    expected = either(lambda: columns(validate(DiamondBatch, body, 20).diamonds))
    assert either(validate_columns, body, 20) == expected


def test_empty_and_oversized_batches_answer_as_before() -> None:
    for body in (b'{"diamonds": []}', b"[]", b"{", b'{"diamonds": [' + b"[]," * 30000 + b"[]]}"):
        assert either(validate_columns, body, 20) == either(lambda b=body: validate(DiamondBatch, b, 20), body)


def test_one_row_v2_requests_priced_through_the_batcher_match_a_batch(shared_client: InProcessClient) -> None:
    rows = [
        {"carat": 0.31, "cut": "Good", "color": "J", "clarity": "SI2"},
        {"carat": 1.52, "cut": "Ideal", "color": "D", "clarity": "IF"},
    ]
    inputs = [
        {
            "name": n,
            "shape": [2, 1],
            "datatype": "FP32" if n in FEATURES.numeric else "BYTES",
            "data": [r[n] for r in rows],
        }
        for n in FEATURES.names
    ]
    both = shared_client.post(INFER, json={"inputs": inputs}).json()["outputs"]
    for i, row in enumerate(rows):
        one = [{**t, "shape": [1], "data": [row[t["name"]]]} for t in inputs]
        got = shared_client.post(INFER, json={"inputs": one, "id": f"r{i}"}).json()
        assert got["id"] == f"r{i}"
        assert [o["data"] for o in got["outputs"]] == [[o["data"][i]] for o in both]
        assert [o["shape"] for o in got["outputs"]] == [[1, 1]] * len(both)
