"""Training under duress: a table too large to hold, a full disk at the last write, runs started
together. Each replays what a review saw go wrong, against real runs."""

from __future__ import annotations

import errno
import fcntl
import multiprocessing
import os
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from inference.modelsettings import read_verified_model
from tests.helpers import Project, make_db, tiny_factory, train_tiny_in_child
from training import data
from training import registry as registry_module
from training.registry import Registry
from training.train import run

GIB = 1 << 30


def test_a_table_over_max_train_rows_is_refused_before_its_rows_are_read(tmp_path: Path) -> None:
    db = make_db(tmp_path / "d.db", rows=1500)
    with pytest.raises(data.DataError, match=r"has 1500 rows, more than MAX_TRAIN_ROWS=1000"):
        data.load(db, max_rows=1000)
    assert len(data.load(db, max_rows=1500).frame) > 1000
    assert data.max_rows_from_env({}) == data.MAX_ROWS == 2_000_000
    assert data.max_rows_from_env({"MAX_TRAIN_ROWS": "5000000"}) == 5_000_000
    for bad in ("0", "-3", "1e6", "many"):
        with pytest.raises(data.DataError, match="MAX_TRAIN_ROWS"):
            data.max_rows_from_env({"MAX_TRAIN_ROWS": bad})


def five_million_rows(path: Path) -> Path:
    con = sqlite3.connect(path)
    columns = '"carat", "cut", "color", "clarity", "depth", "table", "price", "x", "y", "z"'
    con.execute(f"CREATE TABLE diamonds (id INTEGER PRIMARY KEY, {columns})")
    con.execute(
        "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 5000000) "
        "INSERT INTO diamonds SELECT i, 0.3 + (i % 200) / 100.0, 'Ideal', 'G', 'VS2', 61.0, 55.0, 400 + i % 9000, "
        "4.0, 4.0, 2.5 FROM c"
    )
    con.commit()
    con.close()
    return path


@pytest.mark.slow
def test_five_million_rows_are_refused_with_a_message_in_bounded_memory_and_time(tmp_path: Path) -> None:
    p = Project(tmp_path)
    five_million_rows(p.db)
    started = time.monotonic()
    with (tmp_path / "err").open("w") as err_file:
        command, env = p.train_command(), p.train_env()
        proc = subprocess.Popen(command, cwd=p.root, env=env, stdout=subprocess.DEVNULL, stderr=err_file)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    elapsed = time.monotonic() - started
    err = (tmp_path / "err").read_text()
    peak = usage.ru_maxrss * 1024
    print(f"5,000,000 rows: exit {proc.returncode} after {elapsed:.1f} s, peak RSS {peak / 1e6:.0f} MB")
    assert proc.returncode == 1
    assert "has 5000000 rows, more than MAX_TRAIN_ROWS=2000000" in err and len(err.strip().splitlines()) == 1
    assert peak < 2 * GIB
    assert elapsed < 60
    assert not p.settings.exists()


def test_a_full_disk_at_the_pointer_write_leaves_everything_as_it_was(
    weak: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = weak.copy(tmp_path / "p")
    before = p.snapshot()
    reports_before = sorted((p.registry / "reports").glob("*")) if (p.registry / "reports").exists() else []
    real_write = registry_module.atomic_write

    def full_disk_at_the_pointer(path: Path, payload: bytes) -> None:
        if path == p.settings:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        real_write(path, payload)

    monkeypatch.setattr(registry_module, "atomic_write", full_disk_at_the_pointer)
    with pytest.raises(OSError, match="No space left"):
        run(p.training_paths(), pipeline_factory=tiny_factory())  # a stronger candidate: it would be promoted
    assert p.snapshot() == before  # no v2 model, digest or report; the history and the pointer as they were
    assert not list(p.registry.glob("diamond_price-v2*"))
    reports_after = sorted((p.registry / "reports").glob("*")) if (p.registry / "reports").exists() else []
    assert reports_after == reports_before
    assert read_verified_model(p.settings, p.registry)[0].version == 1
    monkeypatch.setattr(registry_module, "atomic_write", real_write)
    assert run(p.training_paths(), pipeline_factory=tiny_factory()).version == 2  # the number is free again


def test_a_failure_after_the_pointer_names_the_new_version_keeps_that_version(
    weak: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pointer is the commit: an error after it (the directory's fsync) must not delete the model
    it names, which would leave the next start with nothing to serve."""
    p = weak.copy(tmp_path / "p")
    real_write = registry_module.atomic_write

    def fails_after_the_pointer(path: Path, payload: bytes) -> None:
        real_write(path, payload)
        if path == p.settings:
            raise OSError(errno.EIO, os.strerror(errno.EIO), str(path))

    monkeypatch.setattr(registry_module, "atomic_write", fails_after_the_pointer)
    with pytest.raises(OSError, match="Input/output error"):
        run(p.training_paths(), pipeline_factory=tiny_factory())
    settings, _ = read_verified_model(p.settings, p.registry)  # the model it names is there, whole
    assert settings.version == 2


def lock_is_held(registry: Path) -> bool:
    try:
        fd = os.open(registry / ".lock", os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


@pytest.mark.slow
def test_two_runs_started_together_serialize_and_a_third_with_no_wait_exits_75_at_once(tmp_path: Path) -> None:
    p = Project(tmp_path)
    make_db(p.db, rows=3000)
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["tests.helpers", "training.train", "training.export", "sklearn.ensemble"])
    args: tuple[Any, ...] = (str(p.db), str(p.settings), str(p.registry), 300)
    runs = [ctx.Process(target=train_tiny_in_child, args=args) for _ in range(2)]
    for proc in runs:
        proc.start()
    deadline = time.monotonic() + 60
    while not lock_is_held(p.registry):
        assert time.monotonic() < deadline, "no run took the lock"
        time.sleep(0.02)
    started = time.monotonic()
    third = p.train_cli("--no-wait")
    took = time.monotonic() - started
    overlapped = any(proc.is_alive() for proc in runs)
    for proc in runs:
        proc.join(300)
    assert overlapped, "both runs finished before the --no-wait run asked: the test proves nothing"
    assert third.returncode == 75, third.stderr
    assert "another training run" in third.stderr
    assert "fitting" not in third.stdout + third.stderr  # it stopped before minutes of work
    print(f"--no-wait answered 75 in {took:.1f} s while another run held the lock")
    assert [proc.exitcode for proc in runs] == [0, 0]
    history = [h for h in Registry(p.settings, p.registry).history() if h.get("event") == "train"]
    assert len(history) == 2
    first, second = history
    assert first["decision"] == "promoted" and first["version"] == 1
    assert second["current_version"] == 1  # the second run was gated against the first one's model
    assert read_verified_model(p.settings, p.registry)[0].version in (1, 2)
