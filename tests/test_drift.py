"""Input drift in process: the baseline a trained model carries (inference/baseline.py,
training/baseline.py), the window and its PSI (inference/drift_window.py, inference/drift.py), the gauges and
``GET /models/{version}/drift``. Across real worker processes and a real Prometheus:
tests/deploy/test_prometheus.py (slow)."""

from __future__ import annotations

import json
import logging
import math
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families

from inference import drift_window
from inference.app import create_app
from inference.baseline import BASELINE_KEY, PSI_FLOOR, UNPRICEABLE, Baseline
from inference.drift import ACT, WATCH, DriftMonitor
from inference.drift_window import DriftSettings, Window
from inference.onnx_io import make_feeds, open_session, predict_outputs
from inference.schema import FEATURES
from tests.helpers import (
    GOOD,
    InProcessClient,
    Project,
    Run,
    mixed_rows,
    republish,
    settings_for,
    write_atomically,
)
from training import baseline as training_baseline
from training import data

SHIFTED = {"carat": 3.0, "cut": "Fair", "color": "J", "clarity": "I1"}
"""The shifted stream's diamond: far from what the test models were trained on."""


def training_rows(p: Project, n: int, seed: int = 3) -> list[dict[str, Any]]:
    """``n`` rows drawn from the project's own database: a stream like the training data."""
    con = sqlite3.connect(p.db)
    rows = con.execute(f"SELECT {', '.join(FEATURES.names)} FROM diamonds").fetchall()
    con.close()
    picked = np.random.default_rng(seed).choice(len(rows), size=n)
    return [dict(zip(FEATURES.names, rows[i], strict=True)) for i in picked]


def model_baseline(path: Path) -> Baseline:
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    return Baseline.from_json(props[BASELINE_KEY])


def psi_gauges(text: str) -> dict[str, float]:
    return {
        s.labels["feature"]: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "diamond_input_drift_psi"
    }


def window_rows(text: str) -> float | None:
    found = [
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "diamond_input_drift_window_rows"
    ]
    return found[0] if found else None


def price_each(client: InProcessClient, rows: list[dict[str, Any]]) -> None:
    for row in rows:
        assert client.post("/diamond_price", json=row).status_code == 200


# -- the baseline training stores ------------------------------------------------------------------


def test_the_trained_model_carries_the_baseline_of_its_training_rows(first_run: Run) -> None:
    p = first_run.project
    carried = model_baseline(p.registry / "diamond_price-v1.onnx")
    dataset = data.load(p.db)
    train = dataset.frame[~dataset.holdout]
    assert carried.rows == len(train)
    carat = train["carat"].to_numpy(dtype=np.float32)
    edges = carried.edges["carat"]
    assert 5 <= len(edges) <= training_baseline.BINS - 1 and set(edges.tolist()) <= set(carat.tolist())
    shares = carried.shares()
    assert shares["carat"][f"< {edges[0]:g}"] == pytest.approx(float(np.mean(carat < edges[0])))
    for name in FEATURES.categorical:
        observed = train[name].value_counts(normalize=True)
        assert shares[name] == pytest.approx({c: float(observed.get(c, 0.0)) for c in FEATURES.categorical[name]})
    assert shares[UNPRICEABLE]["unpriceable"] == training_baseline.unpriceable_share(dataset)
    report = first_run.outcome.report
    assert report is not None
    html = report.read_text()
    assert "Input baseline" in html and "Very Good" in html


def test_unpriceable_share_counts_the_rows_the_schema_refuses() -> None:
    dataset = data.Dataset(
        frame=pd.DataFrame(),
        removed={"NULL in a feature or the price": 1, "unknown category": 2, "price above MAX_PRICE": 5},
        rows_read=100,
    )
    assert training_baseline.unpriceable_share(dataset) == 0.03


# -- binning and PSI -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def carried(trained: Project) -> Baseline:
    return model_baseline(trained.registry / "diamond_price-v1.onnx")


def test_a_batch_is_binned_as_its_rows_one_by_one_priced_or_not(trained: Project, carried: Baseline) -> None:
    rows, invalid = mixed_rows(300)
    edges = carried.edges["carat"]
    rows += [{**GOOD, "carat": float(e)} for e in edges.tolist()]  # on an edge: the upper bin, both ways
    columns = {n: [r[n] for r in rows] for n in FEATURES.names}
    session = open_session((trained.registry / "diamond_price-v1.onnx").read_bytes())
    with np.errstate(over="ignore"):  # 1e39 carats: beyond float32, unpriceable
        values = predict_outputs(session, make_feeds(columns), ("price",))
    counts = carried.count(columns, values)
    one_by_one = sum(carried.count({n: [r[n]] for n in FEATURES.names}, values[i : i + 1]) for i, r in enumerate(rows))
    assert counts.tolist() == one_by_one.tolist()
    where = carried.slices
    assert counts[where[UNPRICEABLE]].tolist() == [len(rows) - invalid.sum(), invalid.sum()]
    for name in FEATURES.names:
        assert counts[where[name]].sum() == len(rows) - invalid.sum()
    top = [r["carat"] for r, bad in zip(rows, [*invalid, *[False] * len(edges)], strict=True) if not bad]
    assert counts[where["carat"]][-1] == sum(np.float32(c) >= edges[-1] for c in top)


def test_psi_is_zero_on_the_baseline_and_known_on_a_shift(carried: Baseline) -> None:
    expected_counts = np.round(carried.expected * 1_000_000)
    assert all(v == pytest.approx(0.0, abs=1e-6) for v in carried.psi(expected_counts).values())
    shifted = np.zeros(carried.size)
    where = carried.slices[UNPRICEABLE]
    shifted[where] = (900, 100)  # 10% unpriceable against the baseline's share
    ok, bad = (max(share, PSI_FLOOR) for share in carried.expected[where])  # a share of 0 counts as the floor
    by_hand = (0.9 - ok) * math.log(0.9 / ok) + (0.1 - bad) * math.log(0.1 / bad)
    assert carried.psi(shifted)[UNPRICEABLE] == pytest.approx(by_hand)
    assert carried.psi(shifted)["carat"] is None  # no priced rows counted for it


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda d: "{", "malformed"),
        (lambda d: {**d, "format": 2}, "format"),
        (lambda d: {**d, "cut": {"Fair": 1.0}}, "categories"),
        (lambda d: {**d, "color": {**d["color"], "J": 0.9}}, "sum to 1"),
        (lambda d: {**d, "carat": {**d["carat"], "edges": d["carat"]["edges"][::-1]}}, "increasing"),
        (lambda d: {**d, "carat": {**d["carat"], "shares": [1.0]}}, "shares"),
        (lambda d: {**d, "unpriceable": "x"}, "malformed|could not convert"),
        (lambda d: [], "malformed"),
        (lambda d: "[" * 100_000 + "]" * 100_000, "malformed"),  # nested past the parser's recursion
        (lambda d: {**d, "rows": 1e400}, "malformed|must"),  # Infinity: int() overflows
    ],
)
def test_a_malformed_baseline_is_refused_with_its_reason(carried: Baseline, change: Any, problem: str) -> None:
    changed = change(json.loads(carried.to_json()))
    with pytest.raises(ValueError, match=problem):
        Baseline.from_json(changed if isinstance(changed, str) else json.dumps(changed))


def test_the_baseline_round_trips_through_json(carried: Baseline) -> None:
    again = Baseline.from_json(carried.to_json())
    assert again.expected.tolist() == pytest.approx(carried.expected.tolist())
    assert again.edges["carat"].tolist() == carried.edges["carat"].tolist() and again.rows == carried.rows


# -- the window, across "workers" (files in one directory) ---------------------------------------------


def columns_of(rows: list[dict[str, Any]]) -> dict[str, list[Any]]:
    return {n: [r[n] for r in rows] for n in FEATURES.names}


def priced(n: int) -> np.ndarray:
    return np.ones((n, 1), dtype=np.float32)


def test_workers_windows_add_up_and_dead_or_other_models_files_do_not(
    trained: Project, carried: Baseline, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = training_rows(trained, 40)
    settings = DriftSettings(window_rows=1000, window_seconds=600, min_rows=10)
    here = Window(carried, 1, "ab" * 32, settings, tmp_path)
    with monkeypatch.context() as m:
        m.setattr(drift_window.os, "getpid", os.getppid)  # a live process: "worker 2"
        there = Window(carried, 1, "ab" * 32, settings, tmp_path)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    for window in (here, there):
        window.observe(columns_of(rows), priced(len(rows)))  # the numpy path
        for row in rows[:5]:
            window.observe(columns_of([row]), priced(1))  # the single-row path
    there.flush()  # its queued single rows: a worker counts them at its next call, or when read
    assert here.path is not None and there.path is not None
    (tmp_path / f"drift-{dead.stdout.strip()}.bin").write_bytes(here.path.read_bytes())
    monitor = DriftMonitor(settings, tmp_path)
    monitor.window = here
    reading = monitor.read(monitor.window)
    assert reading is not None and reading.workers == 2 and reading.rows == 90
    assert reading.counts.tolist() == (2 * carried.count(columns_of(rows + rows[:5]), priced(45))).tolist()
    other = Window(carried, 2, "cd" * 32, settings, None)  # worker 2 serves another model
    other.array.tofile(there.path)
    reading = monitor.read(monitor.window)
    assert reading is not None and reading.workers == 1 and reading.rows == 45
    here.close()
    assert not here.path.exists()


def test_the_window_keeps_the_newest_rows_and_forgets_old_ones(
    trained: Project, carried: Baseline, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [1_000_000.0]
    monkeypatch.setattr(drift_window.time, "time", lambda: clock[0])
    settings = DriftSettings(window_rows=200, window_seconds=100, min_rows=50)
    monitor = DriftMonitor(settings, None)
    monitor.window = Window(carried, 1, "ab" * 32, settings, None)
    for row in training_rows(trained, 300):
        clock[0] += 0.01
        monitor.observe(columns_of([row]), priced(1))
    calm = monitor.read(monitor.window)
    assert calm is not None and 200 <= calm.rows <= 200 + drift_window.PENDING  # whole slots
    assert all(v is not None and v < WATCH for v in monitor.psi(monitor.window, calm).values())
    for _ in range(200):
        clock[0] += 0.01
        monitor.observe(columns_of([SHIFTED]), priced(1))
    moved = monitor.read(monitor.window)
    assert moved is not None and moved.rows <= 200 + drift_window.PENDING
    psi = monitor.psi(monitor.window, moved)
    assert all((psi[n] or 0) > ACT for n in FEATURES.names) and psi[UNPRICEABLE] == pytest.approx(0.0, abs=1e-3)
    clock[0] += 101
    old = monitor.read(monitor.window)
    assert old is not None and old.rows == 0 and old.since is None
    assert monitor.psi(monitor.window, old) == dict.fromkeys(carried.slices)


def test_a_large_call_is_counted_from_a_weighted_sample(trained: Project, carried: Baseline) -> None:
    rows = training_rows(trained, 5000)
    rows[::10] = [SHIFTED] * 500
    values = priced(len(rows))
    values[::7] = np.nan  # unpriceable rows are counted exactly
    window = Window(carried, 1, "ab" * 32, DriftSettings(), None)
    window.rng = np.random.default_rng(5)  # the sample is random: a seeded one here, for a stable figure
    window.observe(columns_of(rows), values)
    counted = window.array[drift_window.HEADER + 1 : drift_window.HEADER + window.width]
    exact = carried.count(columns_of(rows), values)
    where = carried.slices
    assert counted[where[UNPRICEABLE]].tolist() == exact[where[UNPRICEABLE]].tolist()
    for name in FEATURES.names:
        assert counted[where[name]].sum() == pytest.approx(exact[where[name]].sum())
    # 512 rows estimate the shares: the PSI within sampling noise (about bins / 512) of the exact one
    assert carried.psi(counted)["cut"] == pytest.approx(carried.psi(exact.astype(float))["cut"], abs=0.05)
    share = counted[where["cut"]][0] / counted[where["cut"]].sum()
    assert share == pytest.approx(exact[where["cut"]][0] / exact[where["cut"]].sum(), abs=0.05)


def test_counting_never_raises_into_pricing(carried: Baseline, caplog: pytest.LogCaptureFixture) -> None:
    monitor = DriftMonitor(DriftSettings(), None)
    monitor.window = Window(carried, 1, "ab" * 32, DriftSettings(), None)
    with caplog.at_level(logging.ERROR):
        monitor.observe({"carat": ["heavy"] * 20}, priced(20))
    assert monitor.window is None and "drift tracking failed" in caplog.text
    monitor.observe(columns_of([GOOD]), priced(1))  # stopped: nothing happens


# -- the service ---------------------------------------------------------------------------------------


def test_the_service_reports_a_calm_stream_as_stable_and_a_shifted_one_as_drift(served: Project) -> None:
    with InProcessClient(create_app(settings_for(served, drift_min_rows=200, drift_window_rows=600))) as client:
        assert psi_gauges(client.get("/metrics").text) == {}
        price_each(client, training_rows(served, 150))
        assert psi_gauges(client.get("/metrics").text) == {}  # too few rows yet
        assert client.get("/models/1/drift").json()["features"]["carat"]["status"] == "too few rows"
        assert client.post("/diamond_prices", json={"diamonds": training_rows(served, 450, seed=4)}).status_code == 200
        text = client.get("/metrics").text
        calm = psi_gauges(text)
        assert window_rows(text) == 600 and set(calm) == {*FEATURES.names, UNPRICEABLE}
        assert max(calm.values()) < WATCH, calm
        view = client.get("/models/1/drift").json()
        assert view["version"] == 1 and view["baseline"] and view["window"]["rows"] == 600
        assert view["window"]["workers"] == 1 and view["thresholds"] == {"watch": WATCH, "act": ACT}
        assert {f["status"] for f in view["features"].values()} == {"stable"}
        assert client.post("/diamond_prices", json={"diamonds": [SHIFTED] * 600}).status_code == 200
        moved = psi_gauges(client.get("/metrics").text)
        assert all(moved[n] > ACT for n in FEATURES.names), moved
        view = client.get("/models/1/drift").json()
        cut = view["features"]["cut"]
        assert cut["status"] == "act" and cut["observed"]["Fair"] == 1.0 and cut["expected"]["Fair"] < 0.2
        assert client.get("/models/2/drift").status_code == 404
        assert client.get("/models/x/drift").status_code == 404


def test_a_promotion_starts_a_new_window_against_the_new_baseline(served: Project) -> None:
    with InProcessClient(create_app(settings_for(served, drift_min_rows=10))) as client:
        price_each(client, [SHIFTED] * 20)
        assert client.get("/models/1/drift").json()["window"]["rows"] == 20
        write_atomically(served.settings, republish(served, 2, lambda props: None))
        assert client.post("/update_model").json()["status"] == "updated"
        view = client.get("/models/2/drift").json()
        assert view["baseline"] and view["window"]["rows"] == 0 and psi_gauges(client.get("/metrics").text) == {}
        price_each(client, [GOOD] * 10)
        assert client.get("/models/2/drift").json()["window"]["rows"] == 10


@pytest.mark.parametrize(
    ("change", "logged"),
    [
        (lambda props: props.update({BASELINE_KEY: '{"format": 1, "carat": '}), "input baseline is unusable"),
        (lambda props: props.pop(BASELINE_KEY), "carries no input baseline"),
    ],
)
def test_a_model_without_a_usable_baseline_serves_and_reports_no_drift(
    served: Project, caplog: pytest.LogCaptureFixture, change: Any, logged: str
) -> None:
    write_atomically(served.settings, republish(served, 2, change))
    with caplog.at_level(logging.INFO), InProcessClient(create_app(settings_for(served, drift_min_rows=1))) as client:
        price_each(client, [SHIFTED] * 3)
        assert client.post("/diamond_prices", json={"diamonds": [GOOD] * 30}).status_code == 200
        view = client.get("/models/2/drift").json()
        assert not view["baseline"] and view["features"] == {} and view["window"]["rows"] is None
        text = client.get("/metrics").text
        assert psi_gauges(text) == {} and window_rows(text) is None
    assert logged in caplog.text


def test_drift_tracking_turned_off_counts_nothing(served: Project) -> None:
    with InProcessClient(create_app(settings_for(served, drift_window_rows=0))) as client:
        price_each(client, [GOOD] * 3)
        view = client.get("/models/1/drift").json()
        assert not view["baseline"] and view["window"]["max_rows"] == 0
