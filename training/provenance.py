"""Where the rows of ``diamond.db`` came from: the ``imports`` table and each row's link to it.

A database built by ``make db`` (or the committed one) has neither; :func:`migrate` adds them in
place, inside the importing transaction: a new table, two new NULL columns on ``diamonds`` and an
index, nothing rewritten, so the existing rows read exactly as before. Readers
(:func:`list_imports`, :func:`new_rows`) take a database with or without them.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from training.data import TABLE, DataError, open_read_only, quote_identifier

IMPORTS = "imports"
COLUMNS = {"import_id": "INTEGER REFERENCES imports(id)", "import_line": "INTEGER"}
"""Provenance columns of ``diamonds``: NULL for rows that were not imported."""
DDL = f"""CREATE TABLE IF NOT EXISTS {IMPORTS} (
    id           INTEGER PRIMARY KEY,
    source       TEXT    NOT NULL,
    sha256       TEXT    NOT NULL UNIQUE,
    imported_at  TEXT    NOT NULL,
    rows_read    INTEGER NOT NULL,
    rows_added   INTEGER NOT NULL,
    rows_refused INTEGER NOT NULL
)"""
INDEX = (
    "CREATE UNIQUE INDEX IF NOT EXISTS diamonds_import_line "
    "ON diamonds (import_id, import_line) WHERE import_id IS NOT NULL"
)
"""The idempotency key: one row per (import, line), and an import is one file's sha256."""


@dataclass(frozen=True)
class Import:
    """One row of the ``imports`` table, with the rows of it the table holds now."""

    id: int
    source: str
    sha256: str
    imported_at: str
    rows_read: int
    rows_added: int
    rows_refused: int
    rows_now: int = 0


def migrate(con: sqlite3.Connection) -> list[str]:
    """Add what is missing (inside the caller's transaction); returns what was added."""
    added = []
    if not con.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (IMPORTS,)).fetchone():
        added.append(f"table {IMPORTS}")
    con.execute(DDL)
    present = {row[1] for row in con.execute(f"PRAGMA table_info({quote_identifier(TABLE)})")}
    for name, declared in COLUMNS.items():
        if name not in present:
            con.execute(f"ALTER TABLE {quote_identifier(TABLE)} ADD COLUMN {name} {declared}")
            added.append(f"column {TABLE}.{name}")
    con.execute(INDEX)
    return added


def has_provenance(con: sqlite3.Connection) -> bool:
    present = {row[1] for row in con.execute(f"PRAGMA table_info({quote_identifier(TABLE)})")}
    tables = {row[0] for row in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    return IMPORTS in tables and set(COLUMNS) <= present


def find(con: sqlite3.Connection, sha256: str) -> Import | None:
    """The import of a file with this sha256, if there was one."""
    row = con.execute(f"SELECT * FROM {IMPORTS} WHERE sha256 = ?", (sha256,)).fetchone()
    return _record(row) if row else None


def list_imports(db: Path) -> tuple[int, list[Import]]:
    """The table's row count and every import, oldest first, with the rows of each it holds now."""
    con = open_read_only(db)
    try:
        total = con.execute(f"SELECT count(*) FROM {quote_identifier(TABLE)}").fetchone()[0]
        if not has_provenance(con):
            return int(total), []
        now = dict(
            con.execute(
                f"SELECT import_id, count(*) FROM {quote_identifier(TABLE)} "
                "WHERE import_id IS NOT NULL GROUP BY import_id"
            ).fetchall()
        )
        rows = con.execute(f"SELECT * FROM {IMPORTS} ORDER BY id").fetchall()
        return int(total), [_record(row, int(now.get(row[0], 0))) for row in rows]
    except sqlite3.DatabaseError as exc:
        raise DataError(f"cannot read database {db}: {exc}") from None
    finally:
        con.close()


def last_import(db: Path) -> int:
    """The number of the latest import (0: none): a model records it, so the next run knows what is new."""
    con = open_read_only(db)
    try:
        return (
            int(con.execute(f"SELECT coalesce(max(id), 0) FROM {IMPORTS}").fetchone()[0]) if has_provenance(con) else 0
        )
    except sqlite3.DatabaseError as exc:
        raise DataError(f"cannot read database {db}: {exc}") from None
    finally:
        con.close()


def imported_after(db: Path, after_import: int | None, since: str | None) -> list[int]:
    """Keys of the rows of every import numbered above ``after_import``; when that is None (a model
    from before imports were recorded), of every import at or after the ISO time ``since``."""
    con = open_read_only(db)
    try:
        if not has_provenance(con):
            return []
        when = None if since is None else datetime.fromisoformat(since)
        ids = [
            i
            for i, at in con.execute(f"SELECT id, imported_at FROM {IMPORTS}")
            if (i > after_import if after_import is not None else when is None or datetime.fromisoformat(at) >= when)
        ]
        if not ids:
            return []
        query = f"SELECT {_key(con)} FROM {quote_identifier(TABLE)} WHERE import_id IN ({', '.join('?' * len(ids))})"
        return [int(k) for (k,) in con.execute(query, ids)]
    except sqlite3.DatabaseError as exc:
        raise DataError(f"cannot read database {db}: {exc}") from None
    finally:
        con.close()


def new_rows(db: Path, keys: np.ndarray, holdout: np.ndarray, current: Mapping[str, Any] | None) -> dict[str, Any]:
    """How many rows were imported since the ``current`` model's record was made (every imported row
    without a current model), and where the clean ones among them (``keys``, ``holdout``) fall."""
    after = 0 if current is None else current.get("last_import")
    since = None if current is None else current.get("created_at")
    imported = imported_after(db, after if isinstance(after, int) else None, since)
    new = np.isin(keys, np.asarray(imported, dtype=np.int64))
    return {
        "since": None if current is None else f"v{current.get('version')} ({since})",
        "imported": len(imported),
        "clean": int(new.sum()),
        "train": int((new & ~holdout).sum()),
        "holdout": int((new & holdout).sum()),
    }


def format_imports(db: Path, total: int, imports: list[Import]) -> str:
    """What ``python -m training data`` prints."""
    imported = sum(i.rows_now for i in imports)
    lines = [f"{db}: {total:,} rows ({total - imported:,} not imported, {imported:,} from {len(imports)} import(s))"]
    if imports:
        row = "{:>6}  {:<19}  {:>9}  {:>9}  {:>8}  {:<12}  {}"
        lines.append(row.format("import", "imported at (UTC)", "rows now", "added", "refused", "sha256", "source"))
        lines += [
            row.format(
                i.id,
                i.imported_at[:19].replace("T", " "),
                f"{i.rows_now:,}",
                f"{i.rows_added:,}",
                f"{i.rows_refused:,}",
                i.sha256[:12],
                i.source,
            )
            for i in imports
        ]
    return "\n".join(lines)


def _record(row: tuple[Any, ...], rows_now: int = 0) -> Import:
    i, source, sha256, at, read, added, refused = row
    return Import(int(i), str(source), str(sha256), str(at), int(read), int(added), int(refused), rows_now)


def _key(con: sqlite3.Connection) -> str:
    primary = [row for row in con.execute(f"PRAGMA table_info({quote_identifier(TABLE)})") if row[5]]
    return quote_identifier(str(primary[0][1])) if len(primary) == 1 else "rowid"
