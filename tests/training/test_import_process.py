"""``python -m training import`` as a real process: its output and exit statuses, and SIGKILL at
random moments of an import, after which the database holds exactly the rows it held before or
exactly those of the finished import, and the import can be run again."""

from __future__ import annotations

import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import ROOT, make_db, sales_csv, table_state
from training import data

pytestmark = pytest.mark.slow


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "training", *args], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=timeout, check=False,
    )  # fmt: skip


def test_the_cli_imports_refuses_and_lists(tmp_path: Path) -> None:
    db = make_db(tmp_path / "diamond.db", rows=500)
    good = sales_csv(tmp_path / "sales.csv", rows=95, extra=("0.5,Superb,G,VS2,61,55,900,5,5,3",) * 5)
    result = cli("import", str(good), "--db", str(db))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "sales.csv: 100 rows read, 95 added (import 1, keys 501-595), 5 refused (5.0%)"
    assert lines[1] == "  refused: unknown category: 5"
    assert any(line.startswith("  took ") and "peak RSS" in line for line in lines)
    assert (tmp_path / "sales.csv.rejects.csv").read_text().count("\n") == 6

    again = cli("import", str(good), "--db", str(db))
    assert again.returncode == 0 and "0 rows added" in again.stdout

    bad = sales_csv(tmp_path / "bad.csv", rows=10, offset=500, extra=("heavy,Ideal,G,VS2,61,55,900,5,5,3",) * 2)
    refused = cli("import", str(bad), "--db", str(db))
    assert refused.returncode == 1
    assert (
        refused.stderr.count("\n") == 1
        and "2 of 12 rows refused" in refused.stderr
        and "--accept-partial" in refused.stderr
    )
    assert cli("import", str(bad), "--db", str(db), "--accept-partial").returncode == 0

    env_db = cli("data", "--db", str(db))
    assert env_db.returncode == 0
    assert env_db.stdout.splitlines()[0].endswith("605 rows (500 not imported, 105 from 2 import(s))")
    missing = cli("import", str(tmp_path / "nope.csv"), "--db", str(db))
    assert missing.returncode == 1 and "file not found" in missing.stderr and "Traceback" not in missing.stderr


def big_csv(path: Path, rows: int) -> Path:
    """``rows`` rows: the data set's, repeated."""
    src = sales_csv(path.with_name("src.csv"), rows=50_000, offset=0)
    body = src.read_text().splitlines()
    header, data_lines = body[0], body[1:]
    with path.open("w") as fh:
        fh.write(header + "\n")
        for i in range(rows):
            fh.write(data_lines[i % len(data_lines)] + "\n")
    return path


def test_sigkill_at_random_moments_of_an_import_leaves_before_or_after(tmp_path: Path) -> None:
    source = big_csv(tmp_path / "sales.csv", 100_000)
    base = make_db(tmp_path / "base.db", rows=1000)
    before = table_state(base)
    command = [sys.executable, "-m", "training", "import", str(source), "--db"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    done = tmp_path / "done.db"
    shutil.copy(base, done)
    started = time.monotonic()
    subprocess.run([*command, str(done)], cwd=ROOT, env=env, check=True, capture_output=True, timeout=300)
    full_run = time.monotonic() - started
    after = table_state(done)
    assert len(after[0]) == 101_000

    rng = random.Random(24)
    outcomes = {"before": 0, "after": 0}
    mid_write = 0
    db = tmp_path / "diamond.db"
    for _ in range(12):
        shutil.copy(base, db)
        proc = subprocess.Popen(
            [*command, str(db)], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        time.sleep(rng.uniform(0.3 * full_run, 1.05 * full_run))
        journal = db.with_name(db.name + "-journal").exists()
        proc.send_signal(signal.SIGKILL)
        proc.wait(60)
        mid_write += journal and proc.returncode == -signal.SIGKILL
        # Training's read-only load comes first: it must read through what the kill left.
        rows = len(data._read(db, ["carat", "cut", "color", "clarity", "price"]))
        state = table_state(db)
        assert sqlite3.connect(db).execute("PRAGMA integrity_check").fetchone() == ("ok",)
        if rows == 1000:
            assert state == before
            outcomes["before"] += 1
        else:
            assert rows == 101_000
            assert state[0] == after[0] and {name for _, name, _ in state[1]} == {name for _, name, _ in after[1]}
            outcomes["after"] += 1
    print(f"{outcomes}, {mid_write} kills mid-write; a full import takes {full_run:.2f} s")
    assert mid_write >= 4
    # The import can be run again after a kill, and once done adds nothing.
    shutil.copy(base, db)
    proc = subprocess.Popen(
        [*command, str(db)], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    while not db.with_name(db.name + "-journal").exists() and proc.poll() is None:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(60)
    rerun = subprocess.run([*command, str(db)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0 and "100,000 added" in rerun.stdout, rerun.stdout + rerun.stderr
    assert table_state(db)[0] == after[0]
    again = subprocess.run([*command, str(db)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "0 rows added" in again.stdout
