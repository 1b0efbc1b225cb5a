"""``GET /models/{version}/report`` in process: the HTML, its policy, 404s, confinement, the link from ``/``."""

from __future__ import annotations

import os

import pytest

from inference.pages.docs import CONTENT_SECURITY_POLICY as DOCS_POLICY
from tests.helpers import InProcessClient, Project

REPORT = "diamond_price-v1.report.html"


def policy(header: str) -> dict[str, str]:
    return {d.split()[0]: " ".join(d.split()[1:]) for d in (p.strip() for p in header.split(";")) if d}


def test_a_versions_report_is_served_as_html_under_a_policy_that_allows_no_request(
    shared_client: InProcessClient, trained: Project
) -> None:
    r = shared_client.get("/models/1/report")
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/html; charset=utf-8"
    assert r.content == (trained.registry / REPORT).read_bytes()
    csp = policy(r.headers["content-security-policy"])
    assert csp["default-src"] == "'none'" and "script-src" not in csp  # nothing runs, nothing loads by default
    assert csp["img-src"] == "data:" and csp["style-src"] == "'unsafe-inline'"
    docs = policy(DOCS_POLICY)
    assert csp["frame-ancestors"] == docs["frame-ancestors"]
    assert r.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize("version", ["2", "0", "-1", "abc", "1.0", "99999999999999999999", "%2e%2e"])
def test_a_version_without_a_report_is_a_json_404_naming_the_version(
    shared_client: InProcessClient, version: str
) -> None:
    r = shared_client.get(f"/models/{version}/report")
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/json"
    assert "version" in r.json()["error"]


def test_a_report_that_resolves_outside_the_registry_is_not_served(client: InProcessClient, served: Project) -> None:
    outside = served.root / "secret.html"
    outside.write_text("<p>not a report</p>")
    os.symlink(outside, served.registry / "diamond_price-v7.report.html")
    r = client.get("/models/7/report")
    assert r.status_code == 404 and "secret" not in r.text
    (served.registry / REPORT).unlink()
    os.symlink(served.registry / "history.jsonl", served.registry / REPORT)  # inside: served as any file there
    assert client.get("/models/1/report").status_code == 200


def test_root_links_to_the_current_models_report_only_when_it_has_one(client: InProcessClient, served: Project) -> None:
    link = client.get("/").json()["model"]["report"]
    assert link == "/models/1/report"
    assert client.get(link).status_code == 200
    (served.registry / REPORT).unlink()
    assert client.get("/").json()["model"]["report"] is None


def test_the_route_is_in_the_openapi_document(shared_client: InProcessClient) -> None:
    spec = shared_client.get("/openapi.json").json()
    op = spec["paths"]["/models/{version}/report"]["get"]
    assert "text/html" in op["responses"]["200"]["content"]
    assert op["responses"]["404"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}
    (param,) = op["parameters"]
    assert param["name"] == "version" and param["in"] == "path" and param["required"] is True
    assert "report" in spec["components"]["schemas"]["ModelInfo"]["properties"]
