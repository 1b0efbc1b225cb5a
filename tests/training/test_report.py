"""Run reports: where they go, what they say, and that their figures are the gate's own."""

from __future__ import annotations

import json
import math
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest

from inference.onnx_io import make_feeds, open_session, predict
from inference.schema import FEATURES
from tests.helpers import Project, Run
from training import data, floor, gate
from training.floor import carat_band_labels
from training.registry import Registry
from training.report import RunFacts, render_run

UNPROMOTED = re.compile(r"^reports/diamond_price-\d{8}T\d{6}Z(-\d+)?-(rejected|failed)\.report\.html$")


def history(p: Project) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (p.registry / "history.jsonl").read_text().splitlines()]


def report_data(path: Path) -> dict[str, Any]:
    """The figures a report embeds in its ``#report-data`` block."""
    match = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', path.read_text(), re.S)
    assert match, f"no report-data block in {path}"
    result: dict[str, Any] = json.loads(match.group(1))
    return result


class Links(HTMLParser):
    """Every URL-bearing attribute of a page, every element's tag, and every section id."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.tags: list[str] = []
        self.sections: list[str] = []
        self.csp: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        values = dict(attrs)
        self.urls += [v or "" for k, v in attrs if k in ("src", "href", "action", "srcset", "poster", "data")]
        if tag == "section":
            self.sections.append(values.get("id") or "")
        if tag == "meta" and values.get("http-equiv") == "Content-Security-Policy":
            self.csp = values.get("content")


def links(path: Path) -> Links:
    parser = Links()
    parser.feed(path.read_text())
    return parser


def holdout_of(p: Project) -> Any:
    dataset = data.load(p.db)
    return dataset, dataset.frame[dataset.holdout]


def test_a_promoted_run_writes_its_report_beside_the_model_and_the_history_names_it(first_run: Run) -> None:
    project, outcome = first_run.project, first_run.outcome
    report = project.registry / "diamond_price-v1.report.html"
    assert outcome.report == report and report.is_file()
    (line,) = history(project)
    assert line["report"] == "diamond_price-v1.report.html"
    figures = report_data(report)
    record = json.loads(project.settings.read_text())
    assert figures["decision"] == "promoted" and figures["version"] == 1
    assert figures["candidate_mae"] == line["candidate_mae"] == record["mae"]
    assert figures["current_mae"] is None and figures["current_version"] is None
    d = figures["data"]
    assert d["rows_read"] == 1500
    assert d["train_rows"] == line["train_rows"] == record["train_rows"]
    assert d["holdout_rows"] == line["holdout_rows"] == record["holdout_rows"]
    assert d["data_fingerprint"] == record["data_fingerprint"]
    assert d["clean_rows"] == d["rows_read"] - sum(d["removed"].values())
    assert d["removed"]["duplicate of an earlier row"] > 0
    page = links(report)
    assert page.sections == [
        "decision",
        "data",
        "comparison",
        "floor",
        "interval",
        "baseline",
        "plots",
        "history",
        "candidate",
    ]


def test_segment_figures_are_both_models_errors_on_the_same_rows(upgraded: Run) -> None:
    project, outcome = upgraded.project, upgraded.outcome  # a weak v1, then 60 iterations
    assert outcome.promoted and outcome.report is not None
    figures = report_data(outcome.report)
    assert figures["current_version"] == 1 and figures["version"] == 2
    assert figures["current_mae"] == history(project)[-1]["current_mae"]

    _, holdout = holdout_of(project)
    feeds = make_feeds({n: holdout[n].to_numpy() for n in FEATURES.names})
    actual = holdout[FEATURES.target].to_numpy()
    errors = {
        v: np.abs(predict(open_session((project.registry / f"diamond_price-v{v}.onnx").read_bytes()), feeds) - actual)
        for v in (1, 2)
    }
    keys = {name: holdout[name].to_numpy() for name in FEATURES.categorical}
    keys["carat band"] = carat_band_labels(holdout["carat"].to_numpy())
    seen = {kind: 0 for kind in keys}
    for segment in figures["segments"]:
        mask = keys[segment["kind"]] == segment["label"]
        assert segment["rows"] == int(mask.sum())
        seen[segment["kind"]] += segment["rows"]
        if segment["rows"]:
            assert segment["candidate_mae"] == pytest.approx(float(errors[2][mask].mean()), rel=1e-6)
            assert segment["current_mae"] == pytest.approx(float(errors[1][mask].mean()), rel=1e-6)
    assert seen == dict.fromkeys(keys, len(holdout))  # every kind partitions the holdout
    assert figures["candidate_mae"] == pytest.approx(float(errors[2].mean()), abs=1e-4)


def test_the_floor_and_the_gates_interval_are_in_the_report_and_the_history(upgraded: Run) -> None:
    project, outcome = upgraded.project, upgraded.outcome  # a weak v1, then 60 iterations
    assert outcome.report is not None
    figures, line = report_data(outcome.report), history(project)[-1]
    difference = line["mae_difference"]
    assert figures["mae_difference"] == difference and difference["resamples"] >= 2000
    assert difference["low"] <= difference["mean"] <= difference["high"] < 0
    assert difference["mean"] == pytest.approx(line["candidate_mae"] - line["current_mae"], abs=1e-3)
    assert f"{difference['high']:+.2f}]" in line["reason"]

    dataset, holdout = holdout_of(project)
    spread = floor.cell_spread(dataset.frame).take(dataset.holdout)  # cells measured on every clean row
    actual = holdout[FEATURES.target].to_numpy()
    feeds = make_feeds({n: holdout[n].to_numpy() for n in FEATURES.names})
    for name, v in (("candidate", 2), ("current", 1)):
        blob = (project.registry / f"diamond_price-v{v}.onnx").read_bytes()
        errors = np.abs(predict(open_session(blob), feeds) - actual)
        expected = floor.by_band(holdout["carat"].to_numpy(), errors, spread)
        for got, want in zip(figures["floor"][name], expected, strict=True):
            assert got["label"] == want.label and got["rows"] == want.rows and got["floor_rows"] == want.floor_rows
            for key in ("mae", "floor", "floor_low", "floor_high"):  # the page's JSON writes NaN as null
                value = getattr(want, key)
                assert got[key] == (None if math.isnan(value) else pytest.approx(value, rel=1e-5))
    text = outcome.report.read_text()
    assert "Against the noise floor" in text and "paired bootstrap" in text and "sqrt(2)" in text
    assert "candidate v2 above the floor" in text


def test_a_rejected_run_files_its_report_under_reports_and_leaves_the_promoted_one(retrained: Run) -> None:
    project, outcome = retrained.project, retrained.outcome  # the same pipeline twice on the same rows
    promoted = retrained.before["diamond_price-v2.report.html"]  # the current model's
    assert not outcome.promoted and outcome.report is not None
    line = history(project)[-1]
    assert UNPROMOTED.match(line["report"]) and line["report"].endswith("-rejected.report.html"), line["report"]
    assert outcome.report == project.registry / line["report"]
    stamp = re.search(r"\d{8}T\d{6}Z", line["report"])
    assert stamp and stamp.group() == line["time"].replace("-", "").replace(":", "").replace("+0000", "Z")
    figures = report_data(outcome.report)
    assert figures["decision"] == "rejected" and figures["version"] is None
    assert figures["candidate_mae"] == line["candidate_mae"] and figures["current_mae"] == line["current_mae"]
    assert "Rejected" in figures["reason"]
    assert (project.registry / "diamond_price-v2.report.html").read_bytes() == promoted
    assert not (project.registry / "diamond_price-v3.report.html").exists()


def test_a_report_is_self_contained(trained: Project) -> None:
    page = links(trained.registry / "diamond_price-v1.report.html")
    images = [u for u, t in zip(page.urls, page.tags, strict=False) if t]  # all URL attributes
    assert page.tags.count("img") >= 5
    assert "script" not in page.tags or page.tags.count("script") == 1  # the JSON data block only
    for url in images:
        assert url.startswith(("data:image/png;base64,", "data:image/svg+xml;base64,", "#")), url[:80]
    assert page.csp is not None and "default-src 'none'" in page.csp
    assert "script-src" not in page.csp  # no script may run
    text = (trained.registry / "diamond_price-v1.report.html").read_text()
    assert "url(" not in text and "@import" not in text


def without_interval(blob: bytes) -> bytes:
    """The model with ``price`` as its only output, as models before v3 were."""
    model = onnx.load_from_string(blob)
    kept = [o for o in model.graph.output if o.name == "price"]
    del model.graph.output[:]
    model.graph.output.extend(kept)
    return model.SerializeToString()


def facts_for(p: Project, candidate: bytes, current: Any) -> RunFacts:
    dataset, holdout = holdout_of(p)
    record = json.loads(p.settings.read_text())
    current_mae = None if current is None else 1.0
    return RunFacts(
        p.db,
        dataset,
        holdout,
        record,
        candidate,
        1.0,
        current,
        current_mae,
        False,
        "a test",
        Registry(p.settings, p.registry),
    )


def test_the_interval_section_appears_only_when_the_model_has_one(trained: Project, tmp_path: Path) -> None:
    blob = (trained.registry / "diamond_price-v1.onnx").read_bytes()
    plain = tmp_path / "plain.html"
    plain.write_text(render_run(facts_for(trained, without_interval(blob), None)))
    assert "interval" not in links(plain).sections and "interval" not in report_data(plain)

    page = trained.registry / "diamond_price-v1.report.html"  # the run that promoted this model wrote it
    assert "interval" in links(page).sections
    _, holdout = holdout_of(trained)
    feeds = make_feeds({n: holdout[n].to_numpy() for n in FEATURES.names})
    price, low, high = (o.ravel() for o in open_session(blob).run(["price", "price_low", "price_high"], feeds))
    assert (low <= price).all() and (price <= high).all()
    actual = holdout[FEATURES.target].to_numpy()
    shown = report_data(page)["interval"]["candidate"]
    assert shown["coverage"] == pytest.approx(float(np.mean((low <= actual) & (actual <= high))))
    assert shown["mean_width"] == pytest.approx(float(np.mean(high.astype(float) - low)), rel=1e-6)
    assert shown["rows"] == len(holdout) and shown["nominal"] == 0.8
    gate_scores = gate.score(blob, holdout)  # the report's figures are the gate's, by construction
    assert (shown["coverage"], shown["mean_width"]) == (gate_scores.coverage, gate_scores.mean_width)


@pytest.mark.slow
def test_the_command_line_prints_the_report_and_files_one_for_a_failed_run(served: Project) -> None:
    project = served
    before = project.snapshot()
    project.db.unlink()
    result = project.train_cli()
    assert result.returncode == 1
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("report: "), result.stdout
    report = Path(last.removeprefix("report: "))
    assert report.is_file() and UNPROMOTED.match(report.relative_to(project.registry).as_posix())
    assert report.name.endswith("-failed.report.html")
    figures = report_data(report)
    assert figures["decision"] == "failed" and "database not found" in figures["error"]
    assert figures["current_version"] == 1
    assert project.snapshot() == before  # the model, the pointer and the history are untouched
