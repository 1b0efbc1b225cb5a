"""A CSV file to import, read as a stream: its header, then each record with the line it starts on.

UTF-8 (a byte-order mark is allowed, as spreadsheets write it), the delimiter the header uses
(comma, semicolon or tab), quoting as RFC 4180 has it. Every byte read is hashed: the sha256 an
import records is that of the rows it read. Anything that is not such a file ends the import
with a one-line :class:`ImportFailed`.
"""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import IO

from training.data import DataError

MAX_LINE = 1 << 20
"""Default bound on a line's length in characters (``IMPORT_MAX_LINE``): a longer one ends the
import, whose memory would otherwise grow with it. No row of diamonds comes near it."""


class ImportFailed(DataError):
    """Nothing was imported; the message says why in one line."""


class CsvSource:
    """Open with ``with``; then :attr:`header`, :meth:`records` and, once read, :meth:`sha256`."""

    def __init__(self, path: Path, max_line: int = MAX_LINE) -> None:
        self.path, self.max_line = path, max_line
        self.header: list[str] = []
        self.line = 0
        """The last line read."""
        self._digest = hashlib.sha256()
        self._raw: IO[bytes] | None = None

    def __enter__(self) -> CsvSource:
        self._raw = self.path.open("rb")
        try:
            self._start(self._raw)
        except BaseException:
            self._raw.close()
            raise
        return self

    def _start(self, raw: IO[bytes]) -> None:
        text = io.TextIOWrapper(io.BufferedReader(_Hashing(raw, self._digest), 1 << 20), "utf-8-sig", newline="")
        with self._errors():
            lines = _lines(text, self.max_line)
            first = next(lines, "")
            delimiter = max(",;\t", key=first.count)
            self._reader = csv.reader(itertools.chain([first], lines), delimiter=delimiter, strict=True)
            self.header = [name.strip() for name in next(self._reader, [])]
            self.line = self._reader.line_num
        if not any(self.header):
            raise ImportFailed(f"{self.path.name} is empty: a CSV file with a header row is needed")

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._raw is not None:
            self._raw.close()

    def records(self) -> Iterator[tuple[int, list[str]]]:
        """(the line a record starts on, its fields), blank lines left out."""
        with self._errors():
            for record in self._reader:
                start, self.line = self.line + 1, self._reader.line_num
                if "".join(record).strip():
                    yield start, record

    def sha256(self) -> str:
        """The hex sha256 of the bytes read so far (the whole file, once :meth:`records` is done)."""
        return self._digest.hexdigest()

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """Decoding and CSV errors as :class:`ImportFailed`, naming the line."""
        try:
            yield
        except UnicodeDecodeError as exc:
            reason = f"{exc.reason} after line {self.line}"
            raise ImportFailed(f"{self.path.name} is not UTF-8 text ({reason}); nothing imported") from None
        except csv.Error as exc:
            raise ImportFailed(
                f"{self.path.name}, line {self.line + 1}: not valid CSV ({exc}); nothing imported"
            ) from None


def match_columns(
    name: str, header: list[str], table: Iterable[str], required: Sequence[str]
) -> tuple[list[tuple[str, int]], list[str]]:
    """The header's columns that ``table`` has, as (the table's spelling, position in the file),
    matched ignoring case; and the names of the others. A missing ``required`` column ends the import."""
    seen: dict[str, int] = {}
    for position, column in enumerate(header):
        if column.lower() in seen:
            raise ImportFailed(f"{name}: column {column!r} appears twice in the header")
        seen[column.lower()] = position
    missing = [c for c in required if c.lower() not in seen]
    if missing:
        raise ImportFailed(
            f"{name} lacks column(s): {', '.join(missing)} (needs {', '.join(required)}, in any case; "
            f"its header is {', '.join(header)[:200]!r})"
        )
    spelling = {c.lower(): c for c in table}
    used = [(spelling[c.lower()], seen[c.lower()]) for c in header if c.lower() in spelling]
    return used, [c for c in header if c.lower() not in spelling]


def _lines(text: IO[str], limit: int) -> Iterator[str]:
    """The file's lines, each at most ``limit`` characters."""
    number = 0
    while line := text.readline(limit + 1):
        number += 1
        if len(line) > limit:
            raise ImportFailed(f"line {number} is longer than {limit:,} characters (IMPORT_MAX_LINE); nothing imported")
        yield line


class _Hashing(io.RawIOBase):
    """A binary file, hashed as it is read."""

    def __init__(self, raw: IO[bytes], digest: hashlib._Hash) -> None:
        self.raw, self.digest = raw, digest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self.raw.read(len(buffer))
        buffer[: len(data)] = data
        self.digest.update(data)
        return len(data)
