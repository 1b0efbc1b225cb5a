"""deploy/prometheus/alerts.yml: promtool checks it and runs its unit tests (series that fire and
series that stay quiet, alerts.test.yml); every metric it reads is one the service exposes, and its
drift thresholds are the service's. Against a real Prometheus: tests/deploy/test_prometheus.py (slow)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml
from prometheus_client.parser import text_string_to_metric_families

from inference.app import create_app
from inference.drift import ACT, WATCH
from tests.helpers import GOOD, InProcessClient, Project, prometheus_tool, settings_for

RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"


def promtool(*args: str, cwd: Path = RULES) -> subprocess.CompletedProcess[str]:
    return subprocess.run([prometheus_tool("promtool"), *args], capture_output=True, text=True, timeout=60, cwd=cwd)


def rules() -> dict[str, dict[str, object]]:
    groups = yaml.safe_load((RULES / "alerts.yml").read_text())["groups"]
    return {rule["alert"]: rule for group in groups for rule in group["rules"]}


def test_promtool_checks_the_rules() -> None:
    out = promtool("check", "rules", "alerts.yml")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS: 7 rules found" in out.stdout


def test_the_rules_unit_tests_pass() -> None:
    out = promtool("test", "rules", "alerts.test.yml")
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_unit_tests_catch_a_changed_threshold(tmp_path: Path) -> None:
    """The unit tests are not vacuous: a rule that reads the wrong status or threshold fails them."""
    text = (RULES / "alerts.yml").read_text()
    (tmp_path / "alerts.yml").write_text(text.replace("> 0.25\n        for: 15m", "> 0.7\n        for: 15m"))
    (tmp_path / "alerts.test.yml").write_text((RULES / "alerts.test.yml").read_text())
    out = promtool("test", "rules", "alerts.test.yml", cwd=tmp_path)
    assert out.returncode != 0 and "alertname: DiamondPriceInputDrift," in out.stdout + out.stderr


def test_every_alert_the_issue_names_is_there_with_a_summary() -> None:
    found = rules()
    assert set(found) == {
        "DiamondPriceNoModel",
        "DiamondPriceReloadFailed",
        "DiamondPriceHighErrorRatio",
        "DiamondPriceSlowPricing",
        "DiamondPriceStaleWorker",
        "DiamondPriceInputDrift",
        "DiamondPriceInputDriftWatch",
    }
    for rule in found.values():
        assert rule["annotations"]["summary"] and rule["labels"]["severity"]  # type: ignore[index]


def test_the_drift_thresholds_are_the_services() -> None:
    found = rules()
    assert str(found["DiamondPriceInputDrift"]["expr"]).strip().endswith(f"> {ACT}")
    assert str(found["DiamondPriceInputDriftWatch"]["expr"]).strip().endswith(f"> {WATCH}")


def test_every_metric_the_rules_read_is_one_the_service_exposes(served: Project) -> None:
    # metric names, not the routes /diamond_price(s)
    read = set(re.findall(r"(?<![/\w])diamond_[a-z_]+", (RULES / "alerts.yml").read_text()))
    with InProcessClient(create_app(settings_for(served, drift_min_rows=1))) as client:
        assert client.post("/diamond_price", json=GOOD).status_code == 200
        client.get("/metrics")
        text = client.get("/metrics").text
    exposed = {s.name for family in text_string_to_metric_families(text) for s in family.samples}
    assert read and read <= exposed, read - exposed
    assert {"route", "method", "status"} <= set(_labels(text, "diamond_http_requests_total"))
    assert {"version", "sha256"} <= set(_labels(text, "diamond_model_info"))
    assert "outcome" in _labels(text, "diamond_model_reloads_total")


def _labels(text: str, name: str) -> set[str]:
    return {k for f in text_string_to_metric_families(text) for s in f.samples if s.name == name for k in s.labels}
