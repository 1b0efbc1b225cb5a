"""Hostile input, training side: absurd prices, non-finite MAEs, strict JSON records, hostile
key columns, and SIGKILL at random moments of a run."""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from inference import strict_json
from inference.modelsettings import ModelFileError, read_verified_model
from tests.helpers import ROOT, Project, Run, make_db, tiny_factory
from training import data
from training.__main__ import main as training_main
from training.paths import TrainingPaths
from training.registry import Registry
from training.train import run
from training.versions import list_versions, promote

ABSURD = 1.7e308


def paths(p: Project) -> TrainingPaths:
    return TrainingPaths(p.db, p.settings, p.registry)


def holdout_keys(count: int, start: int = 100_000) -> list[int]:
    keys = np.arange(start, start + 200)
    return [int(k) for k in keys[data.holdout_mask(keys)][:count]]


def absurd_rows(keys: list[int]) -> list[tuple[object, ...]]:
    return [(k, 0.5 + i / 100, "Ideal", "G", "VS2", 61.0, 55.0, ABSURD, 5.0, 5.0, 3.1) for i, k in enumerate(keys)]


def strict_lines(path: Path) -> list[object]:
    return [strict_json.loads(line) for line in path.read_text().splitlines()]


def test_absurd_prices_are_removed_and_counted_and_the_model_is_promoted(tmp_path: Path) -> None:
    p = Project(tmp_path)
    make_db(p.db, extra=absurd_rows(holdout_keys(2)))
    ds = data.load(p.db)
    assert ds.removed["price above MAX_PRICE"] == 2
    outcome = run(paths(p), pipeline_factory=tiny_factory())
    assert outcome.promoted and math.isfinite(outcome.candidate_mae)
    strict_json.loads(p.settings.read_bytes())
    strict_lines(p.registry / "history.jsonl")


def test_a_non_finite_mae_is_never_promoted_nor_written(tmp_path: Path) -> None:
    p = Project(tmp_path)
    make_db(p.db, extra=absurd_rows(holdout_keys(2)))
    outcome = run(paths(p), pipeline_factory=tiny_factory(), max_price=math.inf)  # the bound switched off
    assert math.isinf(outcome.candidate_mae)
    assert not outcome.promoted
    assert not p.settings.exists()
    assert not list(p.registry.glob("*.onnx"))
    (line,) = strict_lines(p.registry / "history.jsonl")
    assert isinstance(line, dict) and line["decision"] == "rejected" and line["candidate_mae"] is None
    assert "not a finite number" in str(line["reason"])
    # The run's report still says what was decided and why, though nothing sensible can be plotted.
    report = (p.registry / str(line["report"])).read_text()
    assert "Rejected" in report and "not a finite number" in report


def test_a_pointer_whose_mae_is_infinity_is_refused_by_readers(upgraded: Run, tmp_path: Path) -> None:
    assert upgraded.outcome.current_version == 1  # the pointer a second run wrote
    p = upgraded.project.copy(tmp_path / "p")
    record = json.loads(p.settings.read_text())
    p.settings.write_text(json.dumps(record).replace(f'"mae": {record["mae"]}', '"mae": Infinity'))
    with pytest.raises(ModelFileError, match="not valid JSON"):
        read_verified_model(p.settings, p.registry)


def test_the_registry_refuses_to_write_non_strict_json(served: Project) -> None:
    registry = Registry(served.settings, served.registry)
    record = json.loads(served.settings.read_text())
    before = served.snapshot()
    for bad in (math.inf, math.nan):
        with pytest.raises(ModelFileError):
            registry.write_settings({**record, "mae": bad})
        with pytest.raises(ModelFileError):
            registry.write_settings({**record, "extra": bad})
        with pytest.raises(ModelFileError):
            registry.append_history({"event": "x", "mae": bad})
    assert served.snapshot() == before
    with (served.registry / "history.jsonl").open("a") as fh:
        fh.write('{"event": "old", "mae": Infinity}\n')
    assert all(h.get("event") != "old" for h in registry.history())  # read strictly: skipped


def test_max_price_comes_from_the_environment() -> None:
    assert data.max_price_from_env({}) == data.MAX_PRICE
    assert data.max_price_from_env({"MAX_PRICE": "20000"}) == 20000.0
    for bad in ("inf", "nan", "-1", "0", "lots"):
        with pytest.raises(data.DataError):
            data.max_price_from_env({"MAX_PRICE": bad})


# -- SQL: identifiers are plain names, the key an INTEGER PRIMARY KEY or the rowid ------------------

COLUMNS = '"carat", "cut", "color", "clarity", "depth", "table", "price", "x", "y", "z"'


def db_with_key(path: Path, key_sql: str, key_values: list[object]) -> Path:
    """A diamonds table whose key column is declared by ``key_sql``, rows from the repo's data."""
    donor = make_db(path.with_name("donor.db"), rows=len(key_values))
    rows = sqlite3.connect(donor).execute("SELECT * FROM diamonds ORDER BY id").fetchall()
    con = sqlite3.connect(path)
    con.execute(f"CREATE TABLE diamonds ({key_sql}, {COLUMNS})")
    keyed = [(k, *r[1:]) for k, r in zip(key_values, rows, strict=True)]
    con.executemany("INSERT INTO diamonds VALUES (?,?,?,?,?,?,?,?,?,?,?)", keyed)
    con.commit()
    con.close()
    return path


INJECTION = "id\" FROM diamonds UNION ALL SELECT 999999999, 0.5, 'Ideal', 'G', 'VS2', 1.0 --"


@pytest.mark.parametrize(
    ("key_sql", "values", "message"),
    [
        (f'"{INJECTION.replace(chr(34), chr(34) * 2)}" INTEGER PRIMARY KEY', list(range(1, 301)), "plain identifier"),
        ("id TEXT PRIMARY KEY", [f"k{i}" for i in range(300)], "not INTEGER"),
        ("id INT PRIMARY KEY", [None, *range(1, 300)], "not INTEGER"),
        ("id REAL PRIMARY KEY", [i + 0.5 for i in range(300)], "not INTEGER"),
        ("id INTEGER, k2 INTEGER", None, "composite"),
    ],
    ids=["quote-in-name", "text-key", "nullable-int-key", "real-key", "composite-key"],
)
def test_a_hostile_or_unusable_key_is_a_one_line_error(
    tmp_path: Path, key_sql: str, values: list[object] | None, message: str
) -> None:
    db = tmp_path / "d.db"
    if values is None:
        con = sqlite3.connect(db)
        con.execute(f"CREATE TABLE diamonds ({key_sql}, {COLUMNS}, PRIMARY KEY (id, k2))")
        con.close()
    else:
        db_with_key(db, key_sql, values)
    with pytest.raises(data.DataError, match=message) as caught:
        data.load(db)
    assert "\n" not in str(caught.value)


def test_a_without_rowid_table_with_text_in_its_integer_key_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "d.db"
    con = sqlite3.connect(db)
    con.execute(f"CREATE TABLE diamonds (id INTEGER PRIMARY KEY, {COLUMNS}) WITHOUT ROWID")
    con.execute("INSERT INTO diamonds VALUES ('abc', 0.5, 'Ideal', 'G', 'VS2', 61, 55, 500, 4, 4, 2.5)")
    con.commit()
    con.close()
    with pytest.raises(data.DataError, match="not an integer"):
        data.load(db)


def test_the_cli_reports_a_hostile_key_in_one_line_and_changes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    p = Project(tmp_path)
    db_with_key(p.db, "id TEXT PRIMARY KEY", [f"k{i}" for i in range(300)])
    code = training_main(["--db", str(p.db), "--settings", str(p.settings), "--registry", str(p.registry)])
    err = capsys.readouterr().err.strip()
    assert code == 1
    assert len(err.splitlines()) == 1 and "not INTEGER" in err and "Traceback" not in err
    assert not p.settings.exists()


def test_a_table_without_a_primary_key_uses_the_rowid(tmp_path: Path) -> None:
    db = tmp_path / "d.db"
    donor = make_db(tmp_path / "donor.db", rows=300)
    rows = sqlite3.connect(donor).execute("SELECT * FROM diamonds ORDER BY id").fetchall()
    con = sqlite3.connect(db)
    con.execute(f"CREATE TABLE diamonds ({COLUMNS})")
    con.executemany("INSERT INTO diamonds VALUES (?,?,?,?,?,?,?,?,?,?)", [r[1:] for r in rows])
    con.commit()
    con.close()
    assert list(data.load(db).frame["id"][:3]) == [1, 2, 3]


# -- SIGKILL at random moments --------------------------------------------------------------------


def check_registry(p: Project) -> int | None:
    """Every model file verifies, the pointer (if any) names one, every history line is strict
    JSON, and the lock is free. Returns the current version."""
    registry = Registry(p.settings, p.registry)
    rows = list_versions(registry)
    assert all(r.verified for r in rows), [(r.version, r.problem) for r in rows]
    if p.registry.joinpath("history.jsonl").exists():
        strict_lines(p.registry / "history.jsonl")
    with registry.lock(wait=False):
        pass
    if not p.settings.exists():
        return None
    settings, _ = read_verified_model(p.settings, p.registry)
    strict_json.loads(p.settings.read_bytes())
    assert settings.version in {r.version for r in rows}
    return settings.version


@pytest.mark.slow
def test_sigkill_at_random_moments_of_training_leaves_a_verified_registry(tmp_path: Path) -> None:
    p = Project(tmp_path)
    make_db(p.db, rows=800)
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["tests.helpers", "training.train", "training.export", "sklearn.ensemble"])
    args = (str(p.db), str(p.settings), str(p.registry))

    def start(max_iter: int) -> multiprocessing.process.BaseProcess:
        proc = ctx.Process(target=__import__("tests.helpers").helpers.train_tiny_in_child, args=(*args, max_iter))
        proc.start()
        return proc

    first = start(8)  # starts the fork server: its imports are paid once
    first.join(120)
    assert first.exitcode == 0
    assert check_registry(p) == 1
    started = time.monotonic()
    warm = start(9)
    warm.join(120)
    assert warm.exitcode == 0
    full_run = time.monotonic() - started
    check_registry(p)
    rng = random.Random(11)
    kills = completed = 0
    for i in range(40):
        proc = start(10 + 2 * i)  # more iterations each time: most runs that finish promote
        time.sleep(rng.uniform(0.0, full_run))
        if proc.exitcode is None:
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
        proc.join(120)
        completed += proc.exitcode == 0
        check_registry(p)
        if kills == 20:
            break
    print(f"{kills} kills, {completed} runs completed; a full run takes {full_run:.2f} s")
    assert kills >= 20
    versions = subprocess.run(
        [sys.executable, "-m", "training", "versions", "--settings", str(p.settings), "--registry", str(p.registry)],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert versions.returncode == 0 and "DAMAGED" not in versions.stdout, versions.stdout + versions.stderr
    # The registry is not wedged: a rollback and a new run both complete.
    promote(Registry(p.settings, p.registry), 1)
    assert run(paths(p), pipeline_factory=tiny_factory(max_iter=80)).version >= 2
    check_registry(p)
