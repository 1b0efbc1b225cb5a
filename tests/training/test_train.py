"""The MAE gate, the registry's guarantees and the command line, on real fits and files."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import onnxruntime as ort
import pytest

from inference.modelsettings import read_verified_model, sha256_file
from tests.helpers import ROOT, Project, Run, make_db, tiny_factory
from training.paths import TrainingPaths
from training.train import TrainingError, run


def paths(p: Project) -> TrainingPaths:
    return TrainingPaths(p.db, p.settings, p.registry)


def history(p: Project) -> list[dict[str, object]]:
    return [json.loads(line) for line in (p.registry / "history.jsonl").read_text().splitlines()]


def test_first_run_promotes_v1_with_a_complete_record(first_run: Run) -> None:
    project, outcome = first_run.project, first_run.outcome
    assert first_run.before == {}  # an empty registry, no settings
    assert outcome.promoted and outcome.version == 1 and outcome.current_mae is None
    record = json.loads(project.settings.read_text())
    assert record["version"] == 1
    assert record["path"] == "model_registry/diamond_price-v1.onnx"
    assert record["sha256"] == sha256_file(project.registry / "diamond_price-v1.onnx")
    assert record["mae"] == pytest.approx(outcome.candidate_mae, abs=1e-3)
    for key in (
        "mae_protocol",
        "train_rows",
        "holdout_rows",
        "data_fingerprint",
        "estimator",
        "params",
        "libraries",
        "created_at",
    ):
        assert key in record, key
    assert record["train_rows"] + record["holdout_rows"] < 1500
    _, blob = read_verified_model(project.settings, project.registry)
    meta = ort.InferenceSession(blob).get_modelmeta().custom_metadata_map
    assert meta["version"] == "1" and float(meta["mae"]) == record["mae"]
    (line,) = history(project)
    assert line["decision"] == "promoted" and line["version"] == 1 and line["current_mae"] is None


def test_retraining_on_unchanged_data_rejects_and_changes_only_history(retrained: Run) -> None:
    project, outcome, before = retrained.project, retrained.outcome, dict(retrained.before)
    assert not outcome.promoted
    assert outcome.candidate_mae == outcome.current_mae  # same rows, same protocol, same model
    after = project.snapshot()
    assert after.pop("history.jsonl") != before.pop("history.jsonl")
    assert after == before
    last = history(project)[-1]
    assert last["decision"] == "rejected" and last["version"] is None
    assert last["candidate_mae"] == last["current_mae"]


def test_better_candidate_is_promoted_as_the_next_version(upgraded: Run) -> None:
    project, outcome = upgraded.project, upgraded.outcome  # a weak v1, then 60 iterations
    assert outcome.promoted and outcome.version == 2
    assert outcome.current_mae is not None and outcome.candidate_mae < outcome.current_mae
    assert json.loads(project.settings.read_text())["version"] == 2
    assert (project.registry / "diamond_price-v1.onnx").exists()  # never removed or overwritten


def test_worse_candidate_is_rejected(downgraded: Run) -> None:
    project, outcome, before = downgraded.project, downgraded.outcome, downgraded.before  # 60 iterations, then 3
    assert not outcome.promoted and outcome.current_mae is not None
    assert outcome.candidate_mae > outcome.current_mae
    assert project.settings.read_bytes() == before["modelsettings.json"]


def test_gate_scores_current_model_on_todays_rows_not_a_stored_number(upgraded: Run) -> None:
    stored = json.loads(upgraded.before["modelsettings.json"])["mae"]
    assert stored == 0.01  # a stored figure the candidate could never beat
    outcome = upgraded.outcome
    assert outcome.current_mae is not None and outcome.current_mae > 1
    assert outcome.promoted


def test_tampered_current_model_stops_the_run_and_changes_nothing(served: Project) -> None:
    project = served  # v1: the tiny pipeline
    model = project.registry / "diamond_price-v1.onnx"
    model.write_bytes(model.read_bytes()[:-10] + b"0123456789")
    before = project.snapshot()
    with pytest.raises(TrainingError, match="sha256 mismatch"):
        run(paths(project), pipeline_factory=tiny_factory())
    assert project.snapshot() == before


def test_version_numbers_skip_orphan_files(weak: Project, tmp_path: Path) -> None:
    project = weak.copy(tmp_path / "p")  # v1: 3 iterations
    orphan = project.registry / "diamond_price-v2.onnx"
    orphan.write_bytes(b"left by a run killed before it updated the pointer")
    outcome = run(paths(project), pipeline_factory=tiny_factory(max_iter=60))
    assert outcome.version == 3
    assert orphan.read_bytes().startswith(b"left by")


# -- the command line, as a user runs it --------------------------------------------------


@pytest.mark.slow
def test_cli_promotes_then_rejects_leaving_settings_byte_identical(project: Project) -> None:
    first = project.train_cli()
    assert first.returncode == 0, first.stderr
    assert "decision: promote v1" in first.stdout
    assert "duplicate" in first.stdout and "removed" in first.stdout
    # In a pipe: no live line, one line per stage and per fit, each with its time.
    assert "\x1b" not in first.stdout and "\r" not in first.stdout
    stages = re.findall(r"^(\w+) done in [\d.]+ s", first.stdout, re.MULTILINE)
    assert stages == ["cleaning", "fitting", "export", "parity", "gate", "report", "saving"], first.stdout
    fits = re.findall(r"^fit (\d+)/(\d+): (\d+) iterations in [\d.]+ s$", first.stdout, re.MULTILINE)
    assert [int(k) for k, _, _ in fits] == list(range(1, len(fits) + 1)) and len(fits) > 1, first.stdout
    settings = project.settings.read_bytes()
    second = project.train_cli()
    assert second.returncode == 0, second.stderr
    assert "decision: candidate rejected: " in second.stdout and "vs current v1" in second.stdout
    assert "v2" not in second.stdout, "a rejected run names no version it did not create"
    assert project.settings.read_bytes() == settings
    assert len(history(project)) == 2


def _bad_db(project: Project, kind: str) -> None:
    if kind == "missing":
        project.db.unlink()
    elif kind == "garbage":
        project.db.write_bytes(b"\x00garbage" * 500)
    elif kind == "no_table":
        con = sqlite3.connect(project.db)
        con.execute("DROP TABLE diamonds")
        con.commit()
        con.close()
    elif kind == "no_column":
        con = sqlite3.connect(project.db)
        con.execute("ALTER TABLE diamonds DROP COLUMN price")
        con.commit()
        con.close()
    elif kind == "no_rows":
        con = sqlite3.connect(project.db)
        con.execute("UPDATE diamonds SET cut = 'Unknown'")
        con.commit()
        con.close()


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["missing", "garbage", "no_table", "no_column", "no_rows"])
def test_cli_bad_database_exits_non_zero_with_one_line_and_changes_nothing(served: Project, kind: str) -> None:
    project = served
    before = project.snapshot()
    _bad_db(project, kind)
    result = project.train_cli()
    assert result.returncode == 1
    errors = result.stderr.strip().splitlines()
    assert len(errors) == 1 and errors[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    assert project.snapshot() == before


@pytest.mark.slow
def test_cli_defaults_resolve_from_the_project_not_the_cwd(tmp_path: object) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "from training.paths import TrainingPaths; p = TrainingPaths.from_env(); "
            "print(p.db, p.settings, p.registry)",
        ],
        cwd=str(tmp_path),
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.split() == [
        str(ROOT / "diamond.db"),
        str(ROOT / "modelsettings.json"),
        str(ROOT / "model_registry"),
    ]


@pytest.mark.slow
def test_two_concurrent_runs_promote_once_and_leave_a_consistent_registry(project: Project) -> None:
    env, args = project.train_env(), project.train_command()
    procs = [
        subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    stdout = "".join(o for o, _ in outs)
    assert stdout.count("decision: promote v1") == 1
    assert stdout.count("decision: candidate rejected: ") == 1
    settings, _ = read_verified_model(project.settings, project.registry)
    assert settings.version == 1
    assert sorted(p.name for p in project.registry.glob("*.onnx")) == ["diamond_price-v1.onnx"]
    assert [h["decision"] for h in history(project)] == ["promoted", "rejected"]


@pytest.mark.slow
def test_no_wait_exits_75_while_another_run_holds_the_lock(project: Project) -> None:
    import fcntl

    project.registry.mkdir()
    with open(project.registry / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        result = project.train_cli("--no-wait")
    assert result.returncode == 75
    assert "another training run" in result.stderr
    assert not project.settings.exists()


@pytest.mark.slow  # three fits on 4,000 to 9,000 rows
@pytest.mark.parametrize(("k", "r"), [(6, 2), (13, 6), (9, 4)])
def test_training_from_nothing_promotes_on_samples_of_the_data(tmp_path: Path, k: int, r: int) -> None:
    """Training from an empty registry promotes on deterministic samples (``id % k = r``),
    including the two on which the export used to fail its parity check."""
    p = Project(tmp_path / "p")
    p.root.mkdir()
    make_db(p.db, rows=60_000, sample=(k, r))
    outcome = run(paths(p), pipeline_factory=tiny_factory(max_iter=60))
    assert outcome.promoted and outcome.version == 1
    assert json.loads(p.settings.read_text())["parity_max_abs_diff"] <= 0.01


def test_a_model_that_adds_a_price_range_at_the_same_mae_is_promoted_and_says_why(
    plain: Project, ranged: Run, retrained: Run
) -> None:
    """The documented way in for a new capability: the median is unchanged (same MAE), the
    candidate adds a calibrated range, and the gate promotes it with both figures logged.
    The three runs, one after the other: conftest's plain, ranged and retrained."""
    assert [h["decision"] for h in history(plain)] == ["promoted"]  # v1: the tiny pipeline without its range
    assert "price_range" not in json.loads(plain.settings.read_text())
    assert ranged.before["modelsettings.json"] == plain.settings.read_bytes()
    project, outcome = ranged.project, ranged.outcome  # the tiny pipeline with its range
    assert outcome.promoted and outcome.version == 2
    assert outcome.candidate_mae == outcome.current_mae  # the same median model
    record = json.loads(project.settings.read_text())
    assert record["price_range"]["level"] == 0.8 and 0 < record["price_range"]["coverage"] <= 1
    assert record["outputs"] == ["price", "price_low", "price_high"] and record["min_onnxruntime"] == "1.16"
    last = history(project)[-1]
    assert last["decision"] == "promoted" and "as good" in str(last["reason"]) and "price range" in str(last["reason"])
    assert last["price_range"] == record["price_range"]
    again = retrained.outcome  # the same pipeline once more
    assert not again.promoted and "MAE not lower" in str(history(retrained.project)[-1]["reason"])
