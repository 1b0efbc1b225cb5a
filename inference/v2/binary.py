"""The wire format of V2 inference bodies: JSON, optionally followed by binary tensor data.

Every malformed body is a :class:`~inference.errors.BadRequest` (or 413/415), never a 500."""

from __future__ import annotations

import functools
import re
import struct
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
from starlette.responses import Response

from inference.errors import BadRequest, clip_text
from inference.rest.wire import dump, json_response

HEADER_LENGTH = "Inference-Header-Content-Length"
BINARY_MEDIA_TYPE = "application/octet-stream"
_DIGITS = re.compile(r"[0-9]{1,15}")
_LENGTH = struct.Struct("<I")


def split_body(body: bytes, header_length: str | None) -> tuple[bytes, memoryview]:
    """The JSON part and the binary part (empty without ``Inference-Header-Content-Length``) of a body."""
    if header_length is None:
        return body, memoryview(b"")
    if not _DIGITS.fullmatch(header_length.strip()) or not 0 < int(header_length) <= len(body):
        raise BadRequest(
            f"{HEADER_LENGTH} must be a byte count between 1 and the body size {len(body)}, "
            f"got {clip_text(header_length, 40)!r}"
        )
    split = int(header_length)
    return body[:split], memoryview(body)[split:]


def decode_fp32(buf: memoryview, rows: int, where: str) -> np.ndarray:
    if len(buf) != 4 * rows:
        raise BadRequest(f"{where}: FP32 binary data for {rows} value(s) must be {4 * rows} bytes, got {len(buf)}")
    return np.frombuffer(buf, dtype="<f4").astype(np.float32)


def decode_bytes(buf: memoryview, rows: int, where: str, known: Sequence[str] = ()) -> list[str]:
    """``rows`` length-prefixed BYTES elements as UTF-8: known categories are split as bytes without
    decoding each; anything else goes element by element, which names the first problem."""
    if known:
        fast = _known_elements(bytes(buf), tuple(known), rows)
        if fast is not None:
            return fast
    values: list[str] = []
    offset, end = 0, len(buf)
    while offset < end:
        if offset + 4 > end:
            raise BadRequest(f"{where}: BYTES element {len(values)} is truncated in its 4-byte length prefix")
        (size,) = _LENGTH.unpack_from(buf, offset)
        offset += 4
        if size > end - offset:
            raise BadRequest(f"{where}: BYTES element {len(values)} declares {size} bytes, only {end - offset} remain")
        try:
            values.append(str(buf[offset : offset + size], "utf-8"))
        except UnicodeDecodeError:
            raise BadRequest(f"{where}: BYTES element {len(values)} is not valid UTF-8") from None
        offset += size
        if len(values) > rows:
            break
    if len(values) != rows:
        held = f"more than {rows}" if len(values) > rows else str(len(values))
        raise BadRequest(f"{where}: binary data holds {held} BYTES element(s), its shape says {rows}")
    return values


class _KnownElements(NamedTuple):
    """The known strings as BYTES elements, keyed by (length, first byte, last byte), sorted by key."""

    keys: np.ndarray
    elements: np.ndarray
    """Each element's bytes, length prefix included (object array, in key order)."""
    strings: np.ndarray


@functools.cache
def _known_table(known: tuple[str, ...]) -> _KnownElements | None:
    """The table :func:`_known_elements` reads, or None when ``known`` does not suit it (an empty
    or over-long string, a zero byte, or two strings sharing a key)."""
    encoded = [s.encode() for s in known]
    if any(not 0 < len(b) < 256 or 0 in b for b in encoded):
        return None
    keys = [len(b) << 16 | b[0] << 8 | b[-1] for b in encoded]
    if len(set(keys)) != len(keys):
        return None
    order = np.argsort(keys)
    elements = np.array([_LENGTH.pack(len(b)) + b for b in encoded], dtype=object)[order]
    return _KnownElements(np.array(keys, dtype=np.int64)[order], elements, np.array(known, dtype=object)[order])


def _known_elements(data: bytes, known: tuple[str, ...], rows: int) -> list[str] | None:
    """The elements when each is one of ``known``, else None. Vectorised, yet exactly the length-prefixed
    reading: candidates must tile the buffer and, joined, equal it byte for byte."""
    table = _known_table(known)
    buf = np.frombuffer(data, dtype=np.uint8)
    if table is None or rows < 1 or len(buf) < 5:
        return None
    zero = buf == 0
    starts = np.flatnonzero(~zero[:-3] & zero[1:-2] & zero[2:-1] & zero[3:])
    if len(starts) != rows or starts[0] != 0:
        return None
    lengths = buf[starts].astype(np.int64)
    ends = starts + 4 + lengths
    if ends[-1] != len(buf) or not np.array_equal(starts[1:], ends[:-1]):
        return None
    keys = lengths << 16 | buf[starts + 4].astype(np.int64) << 8 | buf[ends - 1]
    at = np.minimum(np.searchsorted(table.keys, keys), len(table.keys) - 1)
    if not np.array_equal(table.keys[at], keys) or b"".join(table.elements[at]) != data:
        return None
    strings: list[str] = table.strings[at].tolist()
    return strings


def encode_response(header: dict[str, Any], blobs: list[bytes]) -> Response:
    """A JSON response, or with ``blobs`` a binary one: the JSON, then each blob in output order."""
    if not blobs:
        return json_response(header)
    head = dump(header)
    return Response(
        b"".join([head, *blobs]),
        media_type=BINARY_MEDIA_TYPE,
        headers={HEADER_LENGTH: str(len(head))},
    )
