"""Read the diamonds table read-only, clean it, and split off the gate's holdout."""

from __future__ import annotations

import hashlib
import logging
import math
import os
import re
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from inference.config import ConfigError, number_from_env
from inference.schema import FEATURES, FeatureSchema
from training import rules

log = logging.getLogger(__name__)

TABLE = "diamonds"
KEY = "id"
"""The frame's name for the row key: the table's INTEGER PRIMARY KEY, whatever its column is
called (``id`` in the shipped database), or SQLite's rowid when the table declares none."""
HOLDOUT_BUCKETS = 10
"""A row is in the holdout when sha256 of its key, as a number, is 0 modulo this."""
MAX_PRICE = 1_000_000.0
"""Default bound on a believable price in USD (``MAX_PRICE``); rows above it are removed."""
MAX_ROWS = 2_000_000
"""Default bound on the rows a run reads (``MAX_TRAIN_ROWS``): past it the run stops before reading
them, with a message, instead of holding gigabytes of rows in memory."""
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


class DataError(Exception):
    """The database cannot give a training set; the message is the one-line cause."""


def max_price_from_env(env: Mapping[str, str] | None = None) -> float:
    """``MAX_PRICE`` from the environment, else :data:`MAX_PRICE`; :class:`DataError` if unusable."""
    try:
        return number_from_env(
            os.environ if env is None else env,
            "MAX_PRICE",
            MAX_PRICE,
            lambda v: math.isfinite(v) and v > 0,
            "a finite positive number",
        )
    except ConfigError as exc:
        raise DataError(str(exc)) from None


def max_rows_from_env(env: Mapping[str, str] | None = None) -> int:
    """``MAX_TRAIN_ROWS`` from the environment, else :data:`MAX_ROWS`; :class:`DataError` if unusable."""
    try:
        env = os.environ if env is None else env
        return number_from_env(env, "MAX_TRAIN_ROWS", MAX_ROWS, lambda v: v >= 1, "a positive integer", int)
    except ConfigError as exc:
        raise DataError(str(exc)) from None


def quote_identifier(name: str) -> str:
    """``name`` as an SQL identifier, if it is a plain one (letters, digits, underscores);
    anything else is refused rather than escaped."""
    if not _IDENTIFIER.fullmatch(name):
        raise DataError(f"column or table name {name[:40]!r} is not a plain identifier ([A-Za-z_][A-Za-z0-9_]*)")
    return f'"{name}"'


@dataclass
class Dataset:
    """What :func:`load` read and kept."""

    frame: pd.DataFrame
    """Clean rows: the key, the features and the target, ordered by key."""
    removed: dict[str, int] = field(default_factory=dict)
    """Rule -> number of rows it removed, in the order the rules ran."""
    rows_read: int = 0

    @property
    def holdout(self) -> np.ndarray:
        """True for the frame's rows in the gate's holdout (:func:`holdout_mask`)."""
        return holdout_mask(self.frame[KEY].to_numpy())

    def fingerprint(self) -> str:
        """sha256 of the clean rows, independent of how SQLite stores them."""
        return hashlib.sha256(self.frame.to_csv(index=False).encode()).hexdigest()


def holdout_mask(keys: np.ndarray) -> np.ndarray:
    """True for the rows the gate scores on and no model ever trains on.

    Defined by each row's primary key alone, so the split is the same for every
    version and every run, and a row keeps its side as the table grows.
    """
    return np.fromiter(
        (int.from_bytes(hashlib.sha256(str(int(k)).encode()).digest()[:8], "big") % HOLDOUT_BUCKETS == 0 for k in keys),
        dtype=bool,
        count=len(keys),
    )


def load(db: Path, schema: FeatureSchema = FEATURES, max_price: float = MAX_PRICE, max_rows: int = MAX_ROWS) -> Dataset:
    """The clean rows of ``db``; raises :class:`DataError` with a one-line cause (also when the
    table holds more than ``max_rows`` rows, before any is read)."""
    raw = _read(db, [*schema.names, schema.target], max_rows)
    ds = Dataset(frame=raw, rows_read=len(raw))
    log.info("read %d rows from %s", len(raw), db)

    checked = rules.check(raw, schema, max_price)
    for rule, count in checked.counts().items():
        ds.removed[rule] = count
        log.info("cleaning: %-28s removed %6d rows", rule, count)
    keep = checked.passed
    df = raw.loc[keep].copy()
    for column in [*schema.numeric, schema.target]:
        df[column] = checked.numbers[column][keep]
    needed = [*schema.names, schema.target]
    df = _drop(ds, df, df.duplicated(subset=needed, keep="first").to_numpy(), rules.DUPLICATE)
    if df.empty:
        raise DataError(f"no usable rows in {db} (read {len(raw)}, all removed by cleaning)")
    for name in schema.categorical:
        df[name] = df[name].astype(str)
    ds.frame = df.reset_index(drop=True)
    return ds


def _drop(ds: Dataset, df: pd.DataFrame, mask: np.ndarray | pd.Series, rule: str) -> pd.DataFrame:
    mask = np.asarray(mask, dtype=bool)
    count = int(mask.sum())
    ds.removed[rule] = count
    log.info("cleaning: %-28s removed %6d rows", rule, count)
    return df.loc[~mask]


def open_read_only(db: Path) -> sqlite3.Connection:
    """``db`` for reading, after SQLite's own recovery of a write that was killed.

    A process killed mid-transaction leaves ``db-journal`` beside the database (a hot journal);
    a read-only connection cannot roll it back and refuses to read. Opening the file for writing
    once and reading it makes SQLite restore the last committed state; nothing else is written.
    """
    if not db.is_file():
        raise DataError(f"database not found: {db}")
    journal = db.with_name(db.name + "-journal")
    if journal.exists() and journal.stat().st_size > 0:
        try:
            con = sqlite3.connect(db, timeout=5)
            try:
                con.execute("SELECT count(*) FROM sqlite_master").fetchone()
            finally:
                con.close()
        except sqlite3.Error:
            pass  # no write access, or another writer: the read below says what is wrong
    try:
        con = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise DataError(f"cannot open database {db}: {exc}") from None
    try:
        con.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.DatabaseError as exc:
        con.close()
        if journal.exists() and journal.stat().st_size > 0:
            raise DataError(
                f"cannot read database {db}: a write was interrupted and left {journal.name}, which only a "
                "process allowed to write the database can roll back (e.g. `python -m training data` run "
                "with write access to its directory)"
            ) from None
        raise DataError(f"cannot read database {db}: {exc}") from None
    return con


def _read(db: Path, columns: list[str], max_rows: int = MAX_ROWS) -> pd.DataFrame:
    """The key (as :data:`KEY`) and ``columns`` of every row, ordered by key."""
    con = open_read_only(db)
    try:
        try:
            info = con.execute(f"PRAGMA table_info({quote_identifier(TABLE)})").fetchall()
        except sqlite3.DatabaseError as exc:
            raise DataError(f"cannot read database {db}: {exc}") from None
        if not info:
            raise DataError(f"table {TABLE!r} not found in {db}")
        present = {row[1] for row in info}
        missing = [c for c in columns if c not in present]
        if missing:
            raise DataError(f"table {TABLE!r} in {db} lacks column(s): {', '.join(missing)}")
        key = key_column(info, db)
        select = ", ".join([key, *(quote_identifier(c) for c in columns)])
        table = quote_identifier(TABLE)
        try:
            total = con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            if total > max_rows:
                raise DataError(
                    f"table {TABLE!r} in {db} has {total} rows, more than MAX_TRAIN_ROWS={max_rows}: "
                    "raise the limit (and the memory the run may use) or train on a sample"
                )
            bad_keys = con.execute(f"SELECT count(*) FROM {table} WHERE typeof({key}) != 'integer'").fetchone()[0]
            if bad_keys:
                raise DataError(f"table {TABLE!r} in {db}: {bad_keys} row(s) have a key that is not an integer")
            rows = con.execute(f"SELECT {select} FROM {table} ORDER BY {key}").fetchall()
        except sqlite3.DatabaseError as exc:
            raise DataError(f"cannot read table {TABLE!r} in {db}: {exc}") from None
    finally:
        con.close()
    return pd.DataFrame.from_records(rows, columns=[KEY, *columns])


def key_column(info: list[tuple[object, ...]], db: Path) -> str:
    """The row key as an SQL expression: the table's INTEGER PRIMARY KEY column, or ``rowid``
    when it declares no primary key. Any other key (TEXT, REAL, several columns) is refused."""
    primary = [row for row in info if row[5]]  # (cid, name, type, notnull, default, pk)
    if not primary:
        return "rowid"
    if len(primary) > 1:
        names = ", ".join(str(row[1])[:40] for row in primary)
        raise DataError(f"table {TABLE!r} in {db} has a composite primary key ({names}); it needs an INTEGER one")
    name, declared = str(primary[0][1]), str(primary[0][2])
    if declared.strip().upper() != "INTEGER":
        raise DataError(
            f"table {TABLE!r} in {db}: primary key {name[:40]!r} is {declared[:20] or 'untyped'}, not INTEGER"
        )
    return quote_identifier(name)
