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
    decoding each (:func:`known_strings`); anything else goes element by element, which names the
    first problem."""
    if known:
        fast = known_strings(buf, rows, tuple(known))
        if fast is not None:
            strings: list[str] = fast.tolist()
            return strings
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
    """The known strings as BYTES elements, found by a one-byte hash of (length, first byte, last byte)."""

    weights: tuple[np.uint8, np.uint8]
    """The hash is ``(length * weights[0] + first * weights[1] + last) mod 256``, distinct per known string."""
    slot: np.ndarray
    """Hash -> index into :attr:`elements` (``len(known)``, an empty element, where no known string hashes)."""
    elements: np.ndarray
    """Each element's bytes, length prefix included (object array, then the empty one)."""
    strings: np.ndarray
    """The known strings, in :attr:`elements` order (object array)."""


@functools.cache
def _known_table(known: tuple[str, ...]) -> _KnownElements | None:
    """The table :func:`known_strings` reads, or None when ``known`` does not suit it (an empty or
    over-long string, a zero byte, or no weights below 64 that hash the strings apart)."""
    encoded = [s.encode() for s in known]
    if not known or any(not 0 < len(b) < 256 or 0 in b for b in encoded):
        return None
    for a in range(1, 64):
        for b in range(1, 64):
            hashes = [(len(e) * a + e[0] * b + e[-1]) & 0xFF for e in encoded]
            if len(set(hashes)) == len(hashes):
                slot = np.full(256, len(known), dtype=np.intp)
                slot[hashes] = np.arange(len(known))
                elements = np.array([_LENGTH.pack(len(e)) + e for e in encoded] + [b""], dtype=object)
                strings = np.array([*known, ""], dtype=object)
                return _KnownElements((np.uint8(a), np.uint8(b)), slot, elements, strings)
    return None


def known_strings(buf: memoryview | bytes, rows: int, known: tuple[str, ...]) -> np.ndarray | None:
    """The ``rows`` elements as an object array of strings when each is one of ``known``, else None.

    Vectorised, yet exactly the length-prefixed reading: a known element is its length byte, three
    zero bytes and a string without one, so the zeros give the candidates' starts and a hash of
    (length, first, last byte) the candidates; they are only taken if, joined, they equal the buffer
    byte for byte (a concatenation of length-prefixed elements has one reading)."""
    table = _known_table(known)
    if table is None or rows < 1:
        return None
    data = bytes(buf)  # a memoryview compares with bytes element by element, slowly
    octets = np.frombuffer(data, dtype=np.uint8)
    zeros = np.flatnonzero(octets == 0)
    if len(zeros) != 3 * rows:
        return None
    starts = zeros[::3] - 1
    lengths = octets[starts]
    first = octets.take(starts + 4, mode="clip")
    last = octets.take(starts + 3 + lengths, mode="clip")
    hashes = lengths * table.weights[0]
    hashes += first * table.weights[1]
    hashes += last
    at = table.slot[hashes]
    if b"".join(table.elements[at].tolist()) != data:
        return None
    strings: np.ndarray = table.strings[at]
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
