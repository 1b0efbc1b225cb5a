"""A report is shared: no directory of the machine that wrote it, plots that stay readable when two
models coincide, legends and notes that name only what is drawn. Read from the generated HTML."""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime
from html import unescape
from pathlib import Path

import numpy as np

from inference.paths import PROJECT_ROOT
from tests.helpers import Project, Run
from training.paths import TrainingPaths
from training.report import plots, write_failure
from training.report.files import shown_path
from training.report.history import history_section


def figures(html: str) -> dict[str, tuple[str, str]]:
    """Caption -> (alt text, caption note) of every figure of a page."""
    found = re.findall(r'<figure><img src="[^"]*" alt="([^"]*)"><figcaption>([^<]*)(.*?)</figcaption>', html)
    return {unescape(title): (unescape(alt), unescape(re.sub(r"<[^>]+>", "", note))) for alt, title, note in found}


def assert_no_machine_paths(html: str, project: Project) -> None:
    for spelling in {str(project.root), str(project.root.resolve()), str(PROJECT_ROOT), str(Path.home())}:
        assert spelling not in html, spelling
    found = re.findall(r".{0,40}(?<![\w.])/(?:tmp|home|root|work|Users|var)/.{0,40}", html)
    assert not found, found


def test_a_run_report_names_its_database_by_file_name(ranged: Run) -> None:
    assert ranged.outcome.report is not None
    html = ranged.outcome.report.read_text()
    assert_no_machine_paths(html, ranged.project)
    assert "Read from <code>diamond.db</code>" in html and '"db": "diamond.db"' in html


def test_a_failure_report_names_no_directory_either(trained: Project, tmp_path: Path) -> None:
    project = trained.copy(tmp_path / "p")
    project.db.unlink()
    paths = TrainingPaths(project.db, project.settings, project.registry)
    report = write_failure(paths, FileNotFoundError(f"database not found: {project.db}"))
    assert report is not None
    html = report.read_text()
    assert_no_machine_paths(html, project)
    assert "database not found: diamond.db" in html
    assert "<td>modelsettings.json</td>" in html and "<td>model_registry</td>" in html


def test_files_inside_the_project_are_named_relative_to_it(tmp_path: Path) -> None:
    assert shown_path(PROJECT_ROOT / "diamond.db") == "diamond.db"
    assert shown_path(PROJECT_ROOT / "model_registry" / "history.jsonl") == "model_registry/history.jsonl"
    assert shown_path(tmp_path / "elsewhere" / "prices.db") == "prices.db"


def test_identical_models_error_lines_are_told_apart(ranged: Run) -> None:
    """v2 is v1's median model plus a price range: the same errors, one histogram on the other."""
    assert ranged.outcome.report is not None
    html = ranged.outcome.report.read_text()
    alt, note = figures(html)["Error distribution"]
    assert alt == "histograms of candidate v2 and current v1's residuals"
    assert "current v1 (dashed) has exactly the errors of candidate v2" in note


def test_different_models_get_no_identical_note_and_the_second_line_is_dashed() -> None:
    rng = np.random.default_rng(0)
    actual = rng.uniform(500, 9000, 800)
    first = actual + rng.normal(0, 300, 800)
    second = actual + rng.normal(0, 600, 800)
    a, b = plots.Series("candidate", first, plots.CANDIDATE), plots.Series("current v1", second, plots.CURRENT)
    different = plots.error_distribution(actual, [a, b])
    assert different.note == ""
    svg = base64.b64decode(different.uri.split(",", 1)[1]).decode()
    assert "stroke-dasharray" in svg  # the second model's line
    same = plots.error_distribution(actual, [a, plots.Series("current v1", first.copy(), plots.CURRENT)])
    assert same.note.startswith("current v1 (dashed) has exactly the errors of candidate")


def history_line(when: str, mae: float, decision: str, version: int | None) -> dict[str, object]:
    return {"event": "train", "time": when, "candidate_mae": mae, "decision": decision, "version": version}


def test_the_history_legend_names_rejected_runs_only_when_there_were_some() -> None:
    promoted = [history_line("2026-11-29T17:29:40+00:00", 349.8, "promoted", 1)]
    this_run = (datetime(2026, 11, 30, 6, 49, tzinfo=UTC).isoformat(), 334.5, "v2")
    html = history_section(promoted, [1], this_run, 1, None)
    assert figures(html)["MAE of every version over time"][0].endswith("marked: version, this run")
    assert "cross" not in html

    rejected = [*promoted, history_line("2026-11-29T17:30:26+00:00", 349.8, "rejected", None)]
    html = history_section(rejected, [1], this_run, 1, None)
    assert figures(html)["MAE of every version over time"][0].endswith("marked: version, rejected, this run")
    assert "rejected candidates are crosses" in html
