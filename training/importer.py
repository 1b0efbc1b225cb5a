"""``python -m training import FILE``: add the rows of a CSV file to ``diamond.db``, or none.

The file streams through in chunks (memory does not grow with its length). Each row meets the
rules training's cleaning applies (:mod:`training.rules`); a row that breaks one goes to
``FILE.rejects.csv`` with its line and reason, the others are inserted, all in one SQLite
transaction: a kill at any moment leaves the database as it was before or after. A file whose
sha256 was imported before adds nothing. More than ``max_refused`` of the rows refused, and
nothing is imported unless ``accept_partial``.
"""

from __future__ import annotations

import csv
import logging
import math
import os
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from inference.config import ConfigError, number_from_env
from inference.modelsettings import sha256_file
from training import provenance
from training.csv_source import MAX_LINE, CsvSource, match_columns
from training.csv_source import ImportFailed as ImportFailed  # callers catch it from here
from training.data import TABLE, key_column, quote_identifier
from training.import_batch import REQUIRED, Batch

log = logging.getLogger(__name__)

MAX_REFUSED = 0.10
"""Default share of refused rows above which nothing is imported (``IMPORT_MAX_REFUSED``)."""
BUSY_TIMEOUT = 10.0
"""Default seconds to wait for another writer of the database (``IMPORT_BUSY_TIMEOUT``)."""
PROVENANCE = set(provenance.COLUMNS)


class Busy(ImportFailed):
    """Another writer held the database past the busy timeout."""


@dataclass
class Summary:
    """What an import did."""

    source: Path
    sha256: str
    rows_read: int = 0
    added: int = 0
    refused: dict[str, int] = field(default_factory=dict)
    import_id: int | None = None
    first_id: int | None = None
    rejects: Path | None = None
    ignored: list[str] = field(default_factory=list)
    already: provenance.Import | None = None
    migrated: list[str] = field(default_factory=list)

    @property
    def refused_total(self) -> int:
        return sum(self.refused.values())


@dataclass(frozen=True)
class Limits:
    """An import's limits, from the environment (:meth:`from_env`) or the command line."""

    max_refused: float = MAX_REFUSED
    busy_timeout: float = BUSY_TIMEOUT
    max_line: int = MAX_LINE

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Limits:
        """``IMPORT_MAX_REFUSED`` (a share, 0 to 1), ``IMPORT_BUSY_TIMEOUT`` (seconds) and
        ``IMPORT_MAX_LINE`` (characters); :class:`ImportFailed` naming a variable it cannot use."""
        env = os.environ if env is None else env
        try:
            return cls(
                number_from_env(env, "IMPORT_MAX_REFUSED", MAX_REFUSED, lambda v: 0 <= v <= 1, "a share from 0 to 1"),
                number_from_env(
                    env, "IMPORT_BUSY_TIMEOUT", BUSY_TIMEOUT, lambda v: 0 <= v <= 86400, "seconds from 0 to 86400"
                ),
                number_from_env(env, "IMPORT_MAX_LINE", MAX_LINE, lambda v: v >= 100, "an integer >= 100", int),
            )
        except ConfigError as exc:
            raise ImportFailed(str(exc)) from None


def run(
    db: Path,
    source: Path,
    *,
    limits: Limits = Limits(),
    accept_partial: bool = False,
    max_price: float = math.inf,
    rejects: Path | None = None,
) -> Summary:
    """Import ``source`` into ``db``; raises :class:`ImportFailed` (nothing imported) or :class:`Busy`."""
    if not source.is_file():
        raise ImportFailed(f"file not found: {source}")
    if source.suffix.lower() in (".parquet", ".pq", ".xlsx", ".xls"):
        raise ImportFailed(f"{source.name}: only CSV files can be imported (save it as CSV first)")
    if not db.is_file():
        raise ImportFailed(f"database not found: {db}")
    summary = Summary(source, sha256_file(source))
    rejects = rejects or source.with_name(source.name + ".rejects.csv")
    max_refused, busy_timeout = limits.max_refused, limits.busy_timeout
    con = _begin(db, busy_timeout)
    try:
        summary.migrated = provenance.migrate(con)
        summary.already = provenance.find(con, summary.sha256)
        if summary.already is not None:
            con.rollback()
            return summary
        _import(con, db, source, summary, rejects, max_price, limits.max_line)
        share = summary.refused_total / summary.rows_read
        if share > max_refused and not accept_partial:
            con.rollback()
            raise ImportFailed(
                f"{source.name}: {summary.refused_total:,} of {summary.rows_read:,} rows refused ({share:.1%}), "
                f"more than the {max_refused:.0%} allowed (IMPORT_MAX_REFUSED, --max-refused); nothing imported. "
                f"Reasons in {rejects}; fix them, or pass --accept-partial to import the {summary.added:,} good rows"
            )
        con.execute(
            f"UPDATE {provenance.IMPORTS} SET rows_read = ?, rows_added = ?, rows_refused = ? WHERE id = ?",
            (summary.rows_read, summary.added, summary.refused_total, summary.import_id),
        )
        con.commit()
    except sqlite3.DatabaseError as exc:
        con.rollback()
        raise _write_failed(exc, db, busy_timeout, "; nothing imported") from None
    except BaseException:
        con.rollback()
        raise
    finally:
        con.close()
    return summary


def _write_failed(exc: sqlite3.DatabaseError, db: Path, busy_timeout: float, suffix: str = "") -> Exception:
    """What a failed write means to the user: another writer held the lock, or the database is unwritable."""
    if isinstance(exc, sqlite3.OperationalError) and ("locked" in str(exc) or "busy" in str(exc)):
        return _busy(db, busy_timeout)
    return ImportFailed(f"cannot write {db}: {exc}{suffix}")


def _begin(db: Path, busy_timeout: float) -> sqlite3.Connection:
    """A connection inside ``BEGIN IMMEDIATE``: the write lock is ours until commit or rollback."""
    journal = db.with_name(db.name + "-journal")
    interrupted = journal.exists() and journal.stat().st_size > 0
    con = sqlite3.connect(db, timeout=0, isolation_level=None)
    try:
        try:
            con.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            log.info("%s is locked by another writer: waiting up to %g s (IMPORT_BUSY_TIMEOUT)", db, busy_timeout)
            con.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
            con.execute("BEGIN IMMEDIATE")
        con.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
    except sqlite3.DatabaseError as exc:
        con.close()
        raise _write_failed(exc, db, busy_timeout) from None
    if interrupted and not journal.exists():
        log.info("rolled back a write that was interrupted earlier (%s)", journal.name)
    return con


def _busy(db: Path, waited: float) -> Busy:
    return Busy(
        f"{db} is locked by another writer (waited {waited:g} s); nothing imported. Retry when it has "
        "finished, or wait longer with IMPORT_BUSY_TIMEOUT or --busy-timeout"
    )


def _import(
    con: sqlite3.Connection, db: Path, source: Path, summary: Summary, rejects: Path, max_price: float, max_line: int
) -> None:
    """Stream ``source`` into the open transaction, refused rows into ``rejects``."""
    info = con.execute(f"PRAGMA table_info({quote_identifier(TABLE)})").fetchall()
    key = key_column(info, db)
    table_columns = {str(row[1]): str(row[2]).upper() for row in info if not row[5] and row[1] not in PROVENANCE}
    lacking = [c for c in REQUIRED if c not in table_columns]
    if lacking:
        raise ImportFailed(f"table {TABLE!r} in {db} lacks column(s): {', '.join(lacking)}")
    now = datetime.now(UTC).isoformat(timespec="microseconds")
    cursor = con.execute(
        f"INSERT INTO {provenance.IMPORTS} (source, sha256, imported_at, rows_read, rows_added, rows_refused) "
        "VALUES (?, ?, ?, 0, 0, 0)",
        (source.name, summary.sha256, now),
    )
    summary.import_id = cursor.lastrowid
    next_id = int(con.execute(f"SELECT coalesce(max({key}), 0) FROM {quote_identifier(TABLE)}").fetchone()[0]) + 1
    summary.first_id = next_id
    tmp = rejects.with_name(rejects.name + ".tmp")
    try:
        with CsvSource(source, max_line) as rows, tmp.open("w", newline="", encoding="utf-8") as out:
            used, summary.ignored = match_columns(source.name, rows.header, table_columns, REQUIRED)
            names = [name for name, _ in used]
            writer = csv.writer(out)
            writer.writerow(["line", "reason", "detail", *names])
            optional = [n for n in names if n not in REQUIRED and _numeric(table_columns[n])]
            batch = Batch(names, [position for _, position in used], len(rows.header), optional, max_price)
            insert = (
                f"INSERT INTO {quote_identifier(TABLE)} ({key}, {', '.join(quote_identifier(n) for n in names)}, "
                f"import_id, import_line) VALUES ({', '.join('?' * (len(names) + 3))})"
            )
            for line, record in rows.records():
                batch.add(line, record)
                if batch.full:
                    next_id += batch.flush(con, insert, writer, summary.import_id, next_id)
            batch.flush(con, insert, writer, summary.import_id, next_id)
            summary.rows_read, summary.added = batch.read, batch.added
            summary.refused = {reason: n for reason, n in batch.refused.items() if n}
            if rows.sha256() != summary.sha256:
                raise ImportFailed(f"{source.name} changed while it was being imported; nothing imported")
        if summary.rows_read == 0:
            raise ImportFailed(f"{source.name} has a header but no rows; nothing imported")
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ImportFailed(f"cannot read {source} or write {tmp}: {exc}; nothing imported") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, rejects)
    summary.rejects = rejects


def _numeric(declared: str) -> bool:
    """SQLite's affinity rules: a column whose declared type holds INT, REAL, FLOA, DOUB or NUM."""
    return any(word in declared for word in ("INT", "REAL", "FLOA", "DOUB", "NUM"))
