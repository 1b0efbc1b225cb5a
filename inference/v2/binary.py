"""The wire format of V2 inference bodies: JSON, optionally followed by binary tensor data.

Binary tensor data extension: when ``Inference-Header-Content-Length`` is present, the first
that many bytes of the body are the JSON object and the rest holds the binary tensors, in
the order the JSON lists them, each ``binary_data_size`` bytes long. Values are little-endian,
row-major; a BYTES element is a 4-byte little-endian unsigned length followed by its bytes.
Every malformed body is a :class:`~inference.errors.BadRequest` (or 413/415), never a 500.
"""

from __future__ import annotations

import functools
import re
import struct
from collections.abc import Sequence
from typing import Any

import numpy as np
from starlette.responses import Response

from inference.errors import BadRequest, clip_text
from inference.rest.wire import dump, json_response

HEADER_LENGTH = "Inference-Header-Content-Length"
BINARY_MEDIA_TYPE = "application/octet-stream"
_DIGITS = re.compile(r"[0-9]{1,15}")
_LENGTH = struct.Struct("<I")


def split_body(body: bytes, header_length: str | None) -> tuple[bytes, memoryview]:
    """The JSON part and the binary part (empty without ``Inference-Header-Content-Length``) of
    an inference request's body, read by :func:`inference.api.validate.read_body`."""
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
    """``rows`` little-endian float32 values."""
    if len(buf) != 4 * rows:
        raise BadRequest(f"{where}: FP32 binary data for {rows} value(s) must be {4 * rows} bytes, got {len(buf)}")
    return np.frombuffer(buf, dtype="<f4").astype(np.float32)


def decode_bytes(buf: memoryview, rows: int, where: str, known: Sequence[str] = ()) -> list[str]:
    """``rows`` length-prefixed BYTES elements, each decoded as UTF-8. When every element is one
    of the ``known`` strings (a feature's categories) they are split and looked up as bytes, with
    no decoding per element; anything else takes the element-by-element path, which names the
    first problem."""
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


@functools.cache
def _element_pattern(known: tuple[str, ...]) -> tuple[re.Pattern[bytes], dict[bytes, str]]:
    """A regex matching any one of ``known`` as a BYTES element (length prefix and bytes), and
    each element's string."""
    elements = {_LENGTH.pack(len(b)) + b: s for s in known for b in [s.encode()]}
    return re.compile(b"|".join(re.escape(e) for e in elements)), elements


def _known_elements(data: bytes, known: tuple[str, ...], rows: int) -> list[str] | None:
    """The ``rows`` elements of ``data`` when each is one of ``known``; else None. The regex finds
    known elements left to right; when they are ``rows`` and their lengths add up to the whole
    buffer they tile it from its first byte, each one where a length-prefixed reading would find
    it (a prefix fixes its element's length, and no two known elements are equal), so this is that
    reading, at C speed."""
    pattern, elements = _element_pattern(known)
    found = pattern.findall(data)
    if len(found) != rows or sum(map(len, found)) != len(data):
        return None
    return list(map(elements.__getitem__, found))


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
