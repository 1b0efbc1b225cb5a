from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import make_db
from training import data


def test_clean_rows_and_counts_per_rule(tmp_path: Path) -> None:
    db = make_db(
        tmp_path / "d.db",
        rows=200,
        extra=[
            (10001, None, "Ideal", "G", "VS2", 61.0, 55.0, 500, 4.0, 4.0, 2.5),  # NULL carat
            (10002, 0.5, "Ideal", "G", "VS2", 61.0, 55.0, None, 4.0, 4.0, 2.5),  # NULL price
            (10003, 0.5, "Superb", "G", "VS2", 61.0, 55.0, 500, 4.0, 4.0, 2.5),  # unknown cut
            (10004, 0.5, "Ideal", "Z", "VS2", 61.0, 55.0, 500, 4.0, 4.0, 2.5),  # unknown color
            (10005, -0.5, "Ideal", "G", "VS2", 61.0, 55.0, 500, 4.0, 4.0, 2.5),  # negative carat
            (10006, 0.5, "Ideal", "G", "VS2", 61.0, 55.0, 0, 4.0, 4.0, 2.5),  # zero price
            (10007, "heavy", "Ideal", "G", "VS2", 61.0, 55.0, 500, 4.0, 4.0, 2.5),  # text in a REAL column
            (10008, 9.0, "Ideal", "G", "VS2", 61.0, 55.0, 500, 4.0, 4.0, 2.5),  # beyond the schema's carat range
            (10009, 0.5, "Ideal", "G", "VS2", 61.0, 55.0, 1.7e308, 4.0, 4.0, 2.5),  # an absurd price
        ],
    )
    con = sqlite3.connect(db)
    first = con.execute("SELECT * FROM diamonds WHERE id = 1").fetchone()
    con.execute("INSERT INTO diamonds VALUES (?,?,?,?,?,?,?,?,?,?,?)", (20000, *first[1:]))  # exact duplicate
    con.commit()
    con.close()

    ds = data.load(db)
    assert ds.rows_read == 210
    assert ds.removed == {
        "NULL in a feature or the price": 2,
        "not a finite number": 1,
        "unknown category": 2,
        "non-positive carat or price": 2,
        "price above MAX_PRICE": 1,
        "outside the schema's range": 1,
        "duplicate of an earlier row": ds.removed["duplicate of an earlier row"],
    }
    assert ds.removed["duplicate of an earlier row"] >= 1
    assert 20000 not in set(ds.frame["id"])  # the later copy is the one dropped
    assert len(ds.frame) == 210 - sum(ds.removed.values())
    assert ds.frame["carat"].dtype == np.float64
    assert ds.frame["id"].is_monotonic_increasing


def test_logs_count_of_every_rule(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO")
    data.load(make_db(tmp_path / "d.db", rows=50))
    text = caplog.text
    for rule in ("NULL", "unknown category", "non-positive", "duplicate"):
        assert rule in text


def test_database_is_opened_read_only(tmp_path: Path) -> None:
    db = make_db(tmp_path / "d.db", rows=100)
    before = db.read_bytes()
    db.chmod(0o444)
    data.load(db)
    assert db.read_bytes() == before
    assert not Path(str(db) + "-journal").exists()


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("missing", "database not found"),
        ("not_sqlite", "cannot read database"),
        ("no_table", "table 'diamonds' not found"),
        ("no_column", "lacks column(s): clarity"),
        ("no_rows", "no usable rows"),
    ],
)
def test_bad_databases_raise_one_line_errors(tmp_path: Path, setup: str, message: str) -> None:
    db = tmp_path / "bad.db"
    if setup == "not_sqlite":
        db.write_bytes(b"this is not a database" * 100)
    elif setup == "no_table":
        sqlite3.connect(db).execute("CREATE TABLE other (id INTEGER)").connection.close()
    elif setup == "no_column":
        con = sqlite3.connect(db)
        con.execute("CREATE TABLE diamonds (id INTEGER PRIMARY KEY, carat REAL, cut TEXT, color TEXT, price REAL)")
        con.close()
    elif setup == "no_rows":
        make_db(db, rows=0, extra=[(1, 0.5, "Bad", "G", "VS2", 61.0, 55.0, 500, 4.0, 4.0, 2.5)])
    with pytest.raises(data.DataError) as err:
        data.load(db)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_holdout_is_a_function_of_the_key_alone() -> None:
    keys = np.arange(1, 20001)
    mask = data.holdout_mask(keys)
    expected = [int.from_bytes(hashlib.sha256(str(k).encode()).digest()[:8], "big") % 10 == 0 for k in keys[:50]]
    assert mask[:50].tolist() == expected
    assert 0.08 < mask.mean() < 0.12
    shuffled = keys[::-1]
    assert (data.holdout_mask(shuffled) == mask[::-1]).all()


def test_fingerprint_changes_with_content(tmp_path: Path) -> None:
    a = data.load(make_db(tmp_path / "a.db", rows=100))
    b = data.load(make_db(tmp_path / "b.db", rows=100))
    c = data.load(make_db(tmp_path / "c.db", rows=101))
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()


@pytest.mark.parametrize(
    ("ddl", "key_of_row"),
    [
        ("CREATE TABLE diamonds (key INTEGER PRIMARY KEY, {cols})", lambda i: i + 100),
        ("CREATE TABLE diamonds ({cols})", lambda i: i + 1),  # no declared key: SQLite's rowid
    ],
)
def test_the_key_is_the_tables_integer_primary_key_whatever_its_name(
    tmp_path: Path, ddl: str, key_of_row: Callable[[int], int]
) -> None:
    src = data.load(make_db(tmp_path / "src.db", rows=300))
    cols = "carat REAL, cut TEXT, color TEXT, clarity TEXT, price REAL"
    db = tmp_path / "other.db"
    con = sqlite3.connect(db)
    con.execute(ddl.format(cols=cols))
    values = src.frame[["carat", "cut", "color", "clarity", "price"]].itertuples(index=False)
    if "PRIMARY KEY" in ddl:
        con.executemany(
            "INSERT INTO diamonds VALUES (?,?,?,?,?,?)", [(key_of_row(i), *v) for i, v in enumerate(values)]
        )
    else:
        con.executemany("INSERT INTO diamonds VALUES (?,?,?,?,?)", list(values))
    con.commit()
    con.close()
    ds = data.load(db)
    assert len(ds.frame) == len(src.frame)
    assert ds.frame["id"].tolist() == [key_of_row(i) for i in range(len(src.frame))]
