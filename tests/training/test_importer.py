"""``python -m training import``, in process: parsing, the shared row rules, the rejects file, the
refused-share limit, idempotency, provenance, the schema added in place, a locked database, and
retraining on imported rows. The real CLI process and kills: tests/training/test_import_process.py."""

from __future__ import annotations

import csv
import importlib.util
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import COLUMNS, REPO_DB, ROOT, Project, make_db, sales_csv, table_state, tiny_factory
from training import data, importer, provenance, rules
from training.__main__ import main as training_main
from training.csv_source import MAX_LINE
from training.import_batch import WRONG_WIDTH
from training.imports_cli import print_summary
from training.train import run as train_run

BAD = (
    "0.5,Superb,G,VS2,61.0,55.0,900,5.0,5.0,3.1",  # unknown cut
    "heavy,Ideal,G,VS2,61.0,55.0,900,5.0,5.0,3.1",  # not a number
    "0.5,Ideal,G,VS2,61.0,55.0,,5.0,5.0,3.1",  # no price
    "9,Ideal,G,VS2,61.0,55.0,900,5.0,5.0,3.1",  # outside the schema's carat range
    "0.5,Ideal,G,VS2,61.0,55.0,-3,5.0,5.0,3.1",  # non-positive price
    "0.5,Ideal,G,VS2,61.0,55.0,2e9,5.0,5.0,3.1",  # above MAX_PRICE
    "0.5,Ideal,G,VS2,deep,55.0,900,5.0,5.0,3.1",  # an optional column that is not a number
    "0.5,Ideal,G",  # three fields
)


def rejects_of(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def imported(db: Path) -> list[tuple[object, ...]]:
    con = sqlite3.connect(db)
    rows = con.execute(
        "SELECT id, carat, cut, color, clarity, price, depth, import_id, import_line FROM diamonds "
        "WHERE import_id IS NOT NULL ORDER BY id"
    ).fetchall()
    con.close()
    return rows


def shipped_db(path: Path, rows: int) -> Path:
    """The first ``rows`` rows of diamond.db in a table made as ``make db`` makes it (typed columns)."""
    con = sqlite3.connect(REPO_DB)
    data_rows = con.execute("SELECT * FROM diamonds ORDER BY id LIMIT ?", (rows,)).fetchall()
    con.close()
    build_db_module().write_db(data_rows, path)  # type: ignore[attr-defined]
    return path


def test_good_rows_are_added_and_bad_ones_refused_with_line_and_reason(tmp_path: Path) -> None:
    db = shipped_db(tmp_path / "diamond.db", rows=300)
    source = sales_csv(tmp_path / "sales.csv", rows=100, extra=BAD)
    summary = importer.run(db, source, max_price=data.MAX_PRICE)

    assert (summary.rows_read, summary.added, summary.refused_total) == (108, 100, 8)
    assert summary.refused == {
        rules.NULL: 1,
        rules.NOT_NUMBER: 2,
        rules.UNKNOWN: 1,
        rules.NON_POSITIVE: 1,
        rules.ABOVE_MAX: 1,
        rules.OUT_OF_RANGE: 1,
        WRONG_WIDTH: 1,
    }
    rejects = rejects_of(tmp_path / "sales.csv.rejects.csv")
    assert [int(r["line"]) for r in rejects] == list(range(102, 110))  # header is line 1, 100 good rows follow
    assert [r["reason"] for r in rejects] == [
        rules.UNKNOWN, rules.NOT_NUMBER, rules.NULL, rules.OUT_OF_RANGE, rules.NON_POSITIVE, rules.ABOVE_MAX,
        rules.NOT_NUMBER, WRONG_WIDTH,
    ]  # fmt: skip
    assert [r["detail"] for r in rejects[:3]] == ["cut = 'Superb'", "carat = 'heavy'", "price is empty"]
    assert rejects[6]["detail"] == "depth = 'deep'" and rejects[0]["cut"] == "Superb"
    assert list(rejects[0]) == ["line", "reason", "detail", *COLUMNS]

    rows = imported(db)
    assert len(rows) == 100
    assert [r[0] for r in rows] == list(range(301, 401))  # keys after the table's last
    assert [r[8] for r in rows] == list(range(2, 102))  # each row's line in its file
    assert {r[7] for r in rows} == {summary.import_id}
    src = sqlite3.connect(REPO_DB).execute("SELECT carat, cut, color, clarity, price, depth FROM diamonds "
                                           "ORDER BY id LIMIT 100 OFFSET 40000").fetchall()  # fmt: skip
    assert [r[1:7] for r in rows] == src


def test_the_importer_refuses_exactly_the_rows_cleaning_removes(tmp_path: Path) -> None:
    """One definition: the same rows written straight into the table are removed by training's
    cleaning under the same rule, and the ones imported survive it."""
    lines = [
        f"{carat},{cut},{color},{clarity},61.0,55.0,{price},5.0,5.0,3.1"
        for carat in ("0.19", "0.2", "1.25", "5.01", "5.02", "nan", "")
        for cut, color, clarity in (
            ("Ideal", "G", "VS2"),
            ("Fair", "D", "IF"),
            ("Good", "K", "SI1"),
            ("Ideal", "", "I1"),
        )
        for price in ("0", "1", "1000000", "1000001", "inf", "x")
    ]
    source = tmp_path / "s.csv"
    source.write_text(",".join(COLUMNS) + "\n" + "\n".join(lines) + "\n")
    db = make_db(tmp_path / "diamond.db", rows=0)
    summary = importer.run(db, source, accept_partial=True, max_price=data.MAX_PRICE)
    refused = {int(r["line"]): r["reason"] for r in rejects_of(tmp_path / "s.csv.rejects.csv")}
    assert 0 < summary.added < len(lines) and len(refused) == len(lines) - summary.added

    raw = make_db(tmp_path / "raw.db", rows=0)
    con = sqlite3.connect(raw)
    for line_no, text in enumerate(lines, start=2):
        values = [None if v == "" else v for v in text.split(",")]
        con.execute("INSERT INTO diamonds VALUES (?,?,?,?,?,?,?,?,?,?,?)", (line_no, *values))
    con.commit()
    con.close()
    frame = data._read(raw, [*data.FEATURES.names, data.FEATURES.target])
    checked = rules.check(frame, max_price=data.MAX_PRICE)
    cleaning = {int(k): rules.RULES[r] for k, r in zip(frame["id"], checked.rule, strict=True) if r != rules.PASSED}
    assert cleaning == refused
    ds = data.load(raw)
    assert sum(n for rule, n in ds.removed.items() if rule != rules.DUPLICATE) == len(refused)


def test_column_names_match_ignoring_case_and_categories_their_spelling(tmp_path: Path) -> None:
    db = make_db(tmp_path / "diamond.db", rows=10)
    source = tmp_path / "s.csv"
    source.write_text(
        "\ufeffCARAT; Cut ;Color;clarity;PRICE;sku\n0.5;very good;g;vs2;900;A1\n0.7; Ideal ;E;IF;2000;A2\n"
    )
    summary = importer.run(db, source)
    assert summary.added == 2 and summary.ignored == ["sku"]
    assert [r[1:6] for r in imported(db)] == [(0.5, "Very Good", "G", "VS2", 900), (0.7, "Ideal", "E", "IF", 2000)]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("carat,cut,colour,clarity,price\n0.5,Ideal,G,VS2,900\n", "lacks column(s): color"),
        ("carat,cut,clarity\n", "lacks column(s): color, price"),
        ("carat,Cut,cut,color,clarity,price\n", "column 'cut' appears twice"),
        ("", "is empty"),
        ("carat,cut,color,clarity,price\n\n", "has a header but no rows"),
        (b"carat,cut,color,clarity,price\n0.5,Id\xe9al,G,VS2,900\n", "is not UTF-8"),
        ('carat,cut,color,clarity,price\n0.5,"Ideal\n', "not valid CSV"),
        ("carat,cut,color,clarity,price\n" + "0" * (MAX_LINE + 1) + "\n", "line 2 is longer than"),
    ],
    ids=["missing", "several-missing", "twice", "empty", "header-only", "not-utf8", "unclosed-quote", "long-line"],
)
def test_an_unusable_file_imports_nothing_and_says_why(tmp_path: Path, content: str | bytes, message: str) -> None:
    db = make_db(tmp_path / "diamond.db", rows=50)
    before = table_state(db)
    source = tmp_path / "s.csv"
    if isinstance(content, bytes):
        source.write_bytes(content)
    else:
        source.write_text(content)
    with pytest.raises(importer.ImportFailed, match=message.replace("(", r"\(").replace(")", r"\)")) as caught:
        importer.run(db, source)
    assert "\n" not in str(caught.value)
    assert table_state(db) == before
    assert not list(tmp_path.glob("*.tmp"))


def test_line_numbers_count_physical_lines_and_blank_lines_are_skipped(tmp_path: Path) -> None:
    db = make_db(tmp_path / "diamond.db", rows=10)
    source = tmp_path / "s.csv"
    source.write_text(
        'carat,cut,color,clarity,price,note\n0.5,Ideal,G,VS2,900,"two\nlines"\n\n0.5,Superb,G,VS2,900,x\n'
    )
    summary = importer.run(db, source, accept_partial=True)
    assert (summary.rows_read, summary.added) == (2, 1)
    assert [r["line"] for r in rejects_of(tmp_path / "s.csv.rejects.csv")] == ["5"]
    assert imported(db)[0][8] == 2


def test_a_second_import_of_the_same_file_adds_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = make_db(tmp_path / "diamond.db", rows=100)
    source = sales_csv(tmp_path / "sales.csv", rows=50)
    first = importer.run(db, source)
    after_first = table_state(db)
    renamed = tmp_path / "copy.csv"
    renamed.write_bytes(source.read_bytes())  # the same bytes under another name: the same source
    for again in (source, renamed):
        second = importer.run(db, again)
        assert second.added == 0 and second.already is not None and second.already.id == first.import_id
        assert table_state(db) == after_first
    print_summary(second, 0.1, 50)
    assert "already imported (import 1, 50 rows" in capsys.readouterr().out
    # One more row makes another file: only its rows are added.
    grown = sales_csv(tmp_path / "more.csv", rows=51)
    assert importer.run(db, grown).added == 51


def test_more_refused_than_allowed_imports_nothing_unless_accepted(tmp_path: Path) -> None:
    db = make_db(tmp_path / "diamond.db", rows=100)
    before = table_state(db)
    source = sales_csv(tmp_path / "sales.csv", rows=18, extra=BAD[:3])  # 3 of 21 refused: 14%
    with pytest.raises(importer.ImportFailed, match=r"3 of 21 rows refused \(14.3%\), more than the 10% allowed"):
        importer.run(db, source)
    assert table_state(db) == before  # not even the schema was changed
    assert len(rejects_of(tmp_path / "sales.csv.rejects.csv")) == 3  # but the reasons are there
    assert importer.run(db, source, limits=importer.Limits(max_refused=0.15)).added == 18
    again = sales_csv(tmp_path / "other.csv", rows=18, offset=41_000, extra=BAD[:3])
    assert importer.run(db, again, accept_partial=True).added == 18
    exactly = sales_csv(tmp_path / "ten.csv", rows=9, offset=42_000, extra=BAD[:1])  # 10%: not more than
    assert importer.run(db, exactly).added == 9


def test_limits_come_from_the_environment(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert importer.Limits.from_env({}) == importer.Limits(0.10, 10.0, 1 << 20)
    env = {"IMPORT_MAX_REFUSED": "0.25", "IMPORT_BUSY_TIMEOUT": "2", "IMPORT_MAX_LINE": "200"}
    assert importer.Limits.from_env(env) == importer.Limits(0.25, 2.0, 200)
    for bad in ({"IMPORT_MAX_REFUSED": "10%"}, {"IMPORT_MAX_REFUSED": "1.5"}, {"IMPORT_BUSY_TIMEOUT": "-1"},
                {"IMPORT_MAX_LINE": "2.5"}, {"IMPORT_MAX_LINE": "10"}):  # fmt: skip
        with pytest.raises(importer.ImportFailed, match=next(iter(bad))):
            importer.Limits.from_env(bad)
    db = make_db(tmp_path / "diamond.db", rows=10)
    source = sales_csv(tmp_path / "s.csv", rows=5)
    with pytest.raises(importer.ImportFailed, match="line 1 is longer than 30 characters"):
        importer.run(db, source, limits=importer.Limits(max_line=30))
    assert training_main(["import", str(source), "--db", str(db), "--max-refused", "10"]) == 1
    assert "--max-refused must be a share from 0 to 1" in capsys.readouterr().err


def build_db_module() -> object:
    spec = importlib.util.spec_from_file_location("build_db", ROOT / "scripts" / "build_db.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_database_from_make_db_gains_the_provenance_schema_and_keeps_its_rows(tmp_path: Path) -> None:
    build_db = build_db_module()
    con = sqlite3.connect(REPO_DB)
    rows = con.execute("SELECT * FROM diamonds ORDER BY id LIMIT 2000").fetchall()
    con.close()
    db = tmp_path / "diamond.db"
    build_db.write_db(rows, db)  # type: ignore[attr-defined]
    digest = build_db.content_digest(db)  # type: ignore[attr-defined]
    fingerprint = data.load(db).fingerprint()

    summary = importer.run(db, sales_csv(tmp_path / "s.csv", rows=20))
    assert summary.migrated == ["table imports", "column diamonds.import_id", "column diamonds.import_line"]
    con = sqlite3.connect(db)
    quoted = ", ".join(f'"{c}"' for c in COLUMNS)
    old = con.execute(f"SELECT id, {quoted} FROM diamonds WHERE id <= 2000 ORDER BY id")
    assert old.fetchall() == rows
    assert con.execute("SELECT count(*) FROM diamonds WHERE import_id IS NOT NULL AND id <= 2000").fetchone() == (0,)
    con.close()
    assert build_db.content_digest(db) != digest  # SELECT *: the new columns count, the old values don't change
    ds = data.load(db)
    assert ds.frame[ds.frame["id"] <= 2000].pipe(lambda f: data.Dataset(f.reset_index(drop=True))).fingerprint() == (
        fingerprint
    )
    assert importer.run(db, sales_csv(tmp_path / "t.csv", rows=5, offset=1)).migrated == []  # once only


def test_a_database_locked_by_another_writer_waits_then_says_so(tmp_path: Path) -> None:
    db = make_db(tmp_path / "diamond.db", rows=50)
    source = sales_csv(tmp_path / "s.csv", rows=10)
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(importer.Busy, match=r"locked by another writer \(waited 0.2 s\); nothing imported"):
            importer.run(db, source, limits=importer.Limits(busy_timeout=0.2))
        code = training_main(["import", str(source), "--db", str(db), "--busy-timeout", "0.1"])
        assert code == 75
    finally:
        holder.rollback()
        holder.close()
    assert importer.run(db, source).added == 10


def test_the_data_command_lists_every_import(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = make_db(tmp_path / "diamond.db", rows=100)
    assert training_main(["data", "--db", str(db)]) == 0
    assert "100 rows (100 not imported, 0 from 0 import(s))" in capsys.readouterr().out
    importer.run(db, sales_csv(tmp_path / "a.csv", rows=30))
    importer.run(db, sales_csv(tmp_path / "b.csv", rows=20, offset=1, extra=BAD[:1]), accept_partial=True)
    assert training_main(["data", "--db", str(db)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "150 rows (100 not imported, 50 from 2 import(s))" in out[0]
    assert out[1].split() == [
        "import",
        "imported",
        "at",
        "(UTC)",
        "rows",
        "now",
        "added",
        "refused",
        "sha256",
        "source",
    ]
    first, second = (line.split() for line in out[2:])
    assert (first[0], first[3:6], first[7]) == ("1", ["30", "30", "0"], "a.csv")
    assert (second[0], second[3:6], second[7]) == ("2", ["20", "20", "1"], "b.csv")


def test_retraining_fits_on_imported_rows_and_says_how_many_are_new(tmp_path: Path) -> None:
    p = Project(tmp_path)
    make_db(p.db, rows=1200)
    first = train_run(p.training_paths(), pipeline_factory=tiny_factory())
    assert first.promoted
    summary = importer.run(p.db, sales_csv(tmp_path / "sales.csv", rows=400))
    keys = np.arange(summary.first_id or 0, (summary.first_id or 0) + 400)
    ds = data.load(p.db)
    clean = keys[np.isin(keys, ds.frame["id"])]  # some repeat an earlier row: cleaning keeps the first
    assert 100 < len(clean) < 400
    held = data.holdout_mask(clean)
    second = train_run(p.training_paths(), pipeline_factory=tiny_factory())
    history = [h for h in p.registry.joinpath("history.jsonl").read_text().splitlines() if h]
    last = json.loads(history[-1])
    assert last["new_rows"]["imported"] == 400 and last["new_rows"]["clean"] == len(clean)
    assert (last["new_rows"]["train"], last["new_rows"]["holdout"]) == (int((~held).sum()), int(held.sum()))
    assert last["holdout_rows"] == json.loads(history[0])["holdout_rows"] + int(held.sum())
    assert json.loads(history[0])["new_rows"]["since"] is None
    assert last["new_rows"]["since"].startswith("v1 (")
    assert second.report is not None
    page = second.report.read_text()
    assert "imported since the current model" in page and f"{len(clean)}: " in page
    # Nothing new since the run that just fitted on them (it recorded the last import it saw).
    record = json.loads(p.settings.read_text())
    assert record["last_import"] == summary.import_id == 1
    assert provenance.new_rows(p.db, ds.frame["id"].to_numpy(), ds.holdout, record)["imported"] == 0
    # A model from before imports were recorded: what was imported at or after its creation counts.
    legacy = {k: v for k, v in record.items() if k != "last_import"}
    later = {**legacy, "created_at": "2999-01-01T00:00:00+00:00"}
    assert provenance.new_rows(p.db, ds.frame["id"].to_numpy(), ds.holdout, later)["imported"] == 0
    assert (
        provenance.new_rows(
            p.db, ds.frame["id"].to_numpy(), ds.holdout, {**legacy, "created_at": "2000-01-01T00:00:00+00:00"}
        )["imported"]
        == 400
    )


def test_training_reads_through_a_journal_a_killed_writer_left(tmp_path: Path) -> None:
    db = make_db(tmp_path / "diamond.db", rows=300)
    before = data.load(db).fingerprint()
    killed = (
        "import os, signal, sqlite3, sys\n"
        "con = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
        "con.execute('PRAGMA cache_size = 1')\n"  # so that changed pages reach the file before the kill
        "con.execute('BEGIN IMMEDIATE')\n"
        "con.execute('UPDATE diamonds SET price = price * 2')\n"
        "con.executemany('INSERT INTO diamonds (carat) VALUES (?)', [(0.5,)] * 5000)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    subprocess.run([sys.executable, "-c", killed, str(db)], check=False, timeout=60)
    journal = db.with_name("diamond.db-journal")
    assert journal.stat().st_size > 0
    plain = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    with pytest.raises(sqlite3.OperationalError, match="readonly"):  # what a plain read-only open meets
        plain.execute("SELECT count(*) FROM diamonds").fetchone()
    plain.close()
    assert data.load(db).fingerprint() == before
    assert not journal.exists()


def test_batches_keep_keys_lines_and_rejects_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from training import import_batch

    monkeypatch.setattr(import_batch, "BATCH_ROWS", 7)
    good = sales_csv(tmp_path / "g.csv", rows=40).read_text().splitlines()
    lines = [good[0]]
    for i, row in enumerate(good[1:]):
        lines.append(row)
        if i % 6 == 0:
            lines.append(BAD[i % len(BAD)])
    source = tmp_path / "s.csv"
    source.write_text("\n".join(lines) + "\n")
    db = shipped_db(tmp_path / "diamond.db", rows=20)
    summary = importer.run(db, source, accept_partial=True, max_price=data.MAX_PRICE)
    bad_lines = [n for n, text in enumerate(lines, start=1) if text in BAD]
    assert (summary.rows_read, summary.added, summary.refused_total) == (47, 40, 7)
    assert [int(r["line"]) for r in rejects_of(tmp_path / "s.csv.rejects.csv")] == bad_lines
    rows = imported(db)
    assert [r[0] for r in rows] == list(range(21, 61))
    assert [r[8] for r in rows] == [n for n in range(2, len(lines) + 1) if n not in bad_lines]
