"""A real Prometheus (Debian's server, scripts/install_prometheus.sh) scraping a real two-worker
service with the alert rules of deploy/prometheus loaded: a stream of diamonds like the training rows
keeps every PSI below the watch level and the drift alert quiet; a shifted stream (3-carat Fair I1
only) drives the PSI past the act level and the alert pending. Everything on 127.0.0.1, in a temp
directory, bounded in time."""

from __future__ import annotations

import contextlib
import json
import re
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from devtools.server import free_port, running_server
from inference.drift import ACT, WATCH
from inference.schema import FEATURES
from tests.helpers import Project, env_for, prometheus_tool

pytestmark = pytest.mark.slow

RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "alerts.yml"
SHIFTED = {"carat": 3.0, "cut": "Fair", "color": "J", "clarity": "I1"}
WINDOW_ROWS = 1500
SINGLES = 40
WAIT_SECONDS = 30


@contextlib.contextmanager
def prometheus(target: str, workdir: Path) -> Iterator[str]:
    """The prometheus server on a free loopback port, scraping ``target`` every 0.5 s and evaluating
    the rules as often; yields its base URL. Always stopped."""
    port = free_port()
    config = {
        "global": {"scrape_interval": "500ms", "evaluation_interval": "500ms", "scrape_timeout": "400ms"},
        "rule_files": [str(RULES)],
        "scrape_configs": [{"job_name": "diamond-price", "static_configs": [{"targets": [target]}]}],
    }
    (workdir / "prometheus.yml").write_text(json.dumps(config))  # JSON is YAML
    log = (workdir / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [
            prometheus_tool("prometheus"),
            f"--config.file={workdir / 'prometheus.yml'}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=workdir,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _ready(base, proc), "prometheus to become ready", workdir / "prometheus.log")
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _ready(base: str, proc: subprocess.Popen[bytes]) -> bool:
    if proc.poll() is not None:
        raise RuntimeError(f"prometheus exited with {proc.returncode}")
    with contextlib.suppress(httpx.TransportError):
        return httpx.get(base + "/-/ready", timeout=1).status_code == 200
    return False


def wait_for(check: Callable[[], Any], what: str, log: Path | None = None) -> Any:
    """``check()`` until it is truthy, for :data:`WAIT_SECONDS` at most."""
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.25)
    tail = log.read_text()[-2000:] if log is not None and log.exists() else ""
    raise AssertionError(f"timed out waiting for {what}\n{tail}")


def query(base: str, expr: str) -> dict[str, float]:
    """An instant query's result: the ``feature`` label (or ``""``) -> value."""
    body = httpx.get(base + "/api/v1/query", params={"query": expr}, timeout=5).json()
    assert body["status"] == "success", body
    return {r["metric"].get("feature", ""): float(r["value"][1]) for r in body["data"]["result"]}


def drift_alerts(base: str) -> list[dict[str, Any]]:
    body = httpx.get(base + "/api/v1/alerts", timeout=5).json()
    return [a for a in body["data"]["alerts"] if a["labels"]["alertname"] == "DiamondPriceInputDrift"]


def rules_evaluated_since(base: str, since: float) -> bool:
    """Whether the rule group has been evaluated after ``since`` (Unix seconds)."""
    body = httpx.get(base + "/api/v1/rules", timeout=5).json()
    (group,) = body["data"]["groups"]
    # RFC 3339 with up to nine fractional digits; Python reads six
    m = re.fullmatch(r"(.+T\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", group["lastEvaluation"])
    assert m is not None, group["lastEvaluation"]
    fraction = (m.group(2) or "0")[:6]
    zone = "+00:00" if m.group(3) == "Z" else m.group(3)
    return datetime.fromisoformat(f"{m.group(1)}.{fraction}{zone}").timestamp() > since


def training_like(p: Project, n: int) -> list[dict[str, Any]]:
    con = sqlite3.connect(p.db)
    rows = con.execute(f"SELECT {', '.join(FEATURES.names)} FROM diamonds").fetchall()
    con.close()
    picked = np.random.default_rng(8).choice(len(rows), size=n)
    return [dict(zip(FEATURES.names, rows[i], strict=True)) for i in picked]


def send(base: str, rows: list[dict[str, Any]], batch: int = 150) -> None:
    """:data:`SINGLES` single rows first, then batches; each request on a new connection (so both
    workers get some)."""
    for row in rows[:SINGLES]:
        assert httpx.post(base + "/diamond_price", json=row, timeout=10).status_code == 200
    for start in range(SINGLES, len(rows), batch):
        part = {"diamonds": rows[start : start + batch]}
        assert httpx.post(base + "/diamond_prices", json=part, timeout=10).status_code == 200


def test_a_real_prometheus_sees_drift_and_fires_the_alert_only_on_a_shifted_stream(
    served: Project, tmp_path: Path
) -> None:
    env = env_for(served, DRIFT_WINDOW_ROWS=str(WINDOW_ROWS), DRIFT_MIN_ROWS="300", MODEL_AUTO_RELOAD="0")
    with running_server(env, workers=2) as (api, _), prometheus(api.removeprefix("http://"), tmp_path) as prom:
        normal = training_like(served, WINDOW_ROWS)
        send(api, normal)
        # A worker counts its last few single rows at its next call (or when a scrape reaches it).
        least = WINDOW_ROWS - SINGLES
        view = httpx.get(api + "/models/1/drift").json()
        assert view["window"]["workers"] == 2 and least <= view["window"]["rows"] <= WINDOW_ROWS, view["window"]
        wait_for(lambda: query(prom, "diamond_input_drift_window_rows").get("", 0) >= least, "the normal window")
        scraped = time.time()
        calm = wait_for(lambda: query(prom, "diamond_input_drift_psi"), "the PSI gauges")
        assert set(calm) == {*FEATURES.names, "unpriceable"} and max(calm.values()) < WATCH, calm
        wait_for(lambda: rules_evaluated_since(prom, scraped + 1), "a rule evaluation on the normal window")
        assert drift_alerts(prom) == []

        send(api, [SHIFTED] * WINDOW_ROWS)

        def past_act() -> dict[str, float] | None:
            found = query(prom, "diamond_input_drift_psi")
            return found if found and min(found[n] for n in FEATURES.names) > ACT else None

        moved = wait_for(past_act, "the PSI to pass the act level")
        assert moved["unpriceable"] < WATCH  # every shifted diamond got a price
        alerts = wait_for(lambda: drift_alerts(prom), "the drift alert")
        assert {a["labels"]["feature"] for a in alerts} <= set(moved)
        assert {a["state"] for a in alerts} <= {"pending", "firing"}
        assert all(a["labels"]["job"] == "diamond-price" and a["labels"]["severity"] == "warning" for a in alerts)
        wait_for(lambda: {a["labels"]["feature"] for a in drift_alerts(prom)} == set(FEATURES.names), "every feature")
