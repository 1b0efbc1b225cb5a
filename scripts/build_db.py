"""Rebuild ``diamond.db`` from the public diamonds data set.

The CSV ships inside the plotnine wheel (``plotnine/data/diamonds.csv``). This script
downloads that wheel with pip (without installing plotnine), reads the CSV straight
from the archive and writes a fresh SQLite file, row ``id`` = CSV line number, so the
same wheel always gives the same rows and keys.

    python scripts/build_db.py                 # writes ./diamond.db next to this repo's root
    python scripts/build_db.py --wheel W.whl   # use a wheel already on disk
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import os
import sqlite3
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

PLOTNINE = "plotnine==0.15.9"
MEMBER = "plotnine/data/diamonds.csv"
ROOT = Path(__file__).resolve().parent.parent
COLUMNS = ("carat", "cut", "color", "clarity", "depth", "table", "price", "x", "y", "z")
DDL = """
CREATE TABLE diamonds (
    id      INTEGER PRIMARY KEY,
    carat   REAL,
    cut     TEXT,
    color   TEXT,
    clarity TEXT,
    depth   REAL,
    "table" REAL,
    price   INTEGER,
    x       REAL,
    y       REAL,
    z       REAL
)
"""


def download_wheel(dest: Path) -> Path:
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(dest), PLOTNINE],
        check=True,
    )
    (wheel,) = dest.glob("plotnine-*.whl")
    return wheel


def read_rows(wheel: Path) -> list[tuple[object, ...]]:
    with zipfile.ZipFile(wheel) as zf, zf.open(MEMBER) as raw:
        reader = csv.DictReader(io.TextIOWrapper(raw, encoding="utf-8"))
        rows = []
        for line, rec in enumerate(reader, start=1):
            rows.append(
                (
                    line,
                    float(rec["carat"]),
                    rec["cut"],
                    rec["color"],
                    rec["clarity"],
                    float(rec["depth"]),
                    float(rec["table"]),
                    int(rec["price"]),
                    float(rec["x"]),
                    float(rec["y"]),
                    float(rec["z"]),
                )
            )
    return rows


def write_db(rows: list[tuple[object, ...]], out: Path) -> None:
    tmp = out.with_name(out.name + ".tmp")
    tmp.unlink(missing_ok=True)
    con = sqlite3.connect(tmp)
    try:
        con.execute("PRAGMA page_size = 4096")
        con.execute(DDL)
        cols = ", ".join(f'"{c}"' for c in ("id", *COLUMNS))
        con.executemany(f"INSERT INTO diamonds ({cols}) VALUES ({', '.join('?' * 11)})", rows)
        con.commit()
        con.execute("VACUUM")
    finally:
        con.close()
    os.replace(tmp, out)


def content_digest(db: Path) -> str:
    """A digest of the table's content, independent of SQLite's file layout."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        h = hashlib.sha256()
        for row in con.execute("SELECT * FROM diamonds ORDER BY id"):
            h.update(repr(row).encode())
        return h.hexdigest()
    finally:
        con.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wheel", type=Path, help="a plotnine wheel already on disk")
    parser.add_argument("--out", type=Path, default=ROOT / "diamond.db")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        wheel = args.wheel or download_wheel(Path(tmp))
        rows = read_rows(wheel)
    write_db(rows, args.out)
    print(f"wrote {len(rows)} rows to {args.out} (content sha256 {content_digest(args.out)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
