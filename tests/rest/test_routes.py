"""The serving seam: routes declared once, one error formatter and one set of error classes for both APIs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from starlette.routing import Route
from starlette.testclient import TestClient

from inference import errors
from inference.api.bodies import Diamond
from inference.app import create_app
from inference.routes import OPERATIONS
from tests.helpers import GOOD, Project, settings_for

V2_INFER = "/v2/models/diamond_price/infer"


def test_every_served_api_route_is_documented_and_every_documented_one_is_served(client: TestClient) -> None:
    documented = {(path, method) for path, ops in client.get("/openapi.json").json()["paths"].items() for method in ops}
    served = {
        (route.path, method.lower())
        for route in client.app.routes  # type: ignore[attr-defined]
        if isinstance(route, Route) and route.include_in_schema and route.methods
        for method in route.methods - {"HEAD"}
    }
    assert documented == served
    assert len(documented) == len(OPERATIONS)  # one declaration each: no route twice, none left out
    assert {op.endpoint.__name__ for op in OPERATIONS} >= {"diamond_price", "diamond_prices", "infer", "model_report"}


def test_a_route_added_to_the_list_is_served_and_documented(served: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response

    from inference import routes
    from inference.rest.openapi import Operation

    async def ping(request: Request) -> Response:
        return JSONResponse({"pong": True})

    extra = Operation("/ping", "get", ping, "Ping", "health", {200: ("Pong", None)})
    monkeypatch.setattr(routes, "OPERATIONS", [*routes.OPERATIONS, extra])
    monkeypatch.setattr("inference.app.OPERATIONS", routes.OPERATIONS)
    with TestClient(create_app(settings_for(served))) as c:
        assert c.get("/ping").json() == {"pong": True}
        assert c.get("/openapi.json").json()["paths"]["/ping"]["get"]["summary"] == "Ping"


def _errors(data: dict[str, Any]) -> list[Any]:
    try:
        Diamond.model_validate(data)
    except ValidationError as exc:
        return exc.errors(include_url=False)
    raise AssertionError("valid")


def test_problem_list_names_fields_and_words_the_common_problems() -> None:
    problems = errors.problem_list(_errors({"carat": "x", "cut": "Ideal", "color": "G", "zz": 1}))
    assert {p["field"]: p["problem"] for p in problems} == {
        "carat": problems[0]["problem"],
        "clarity": "missing; must be one of I1, SI2, SI1, VS2, VS1, VVS2, VVS1, IF",
        "zz": "unknown field",
    }
    assert problems[0]["problem"] == "must be a number from 0.2 to 5.01, got 'x' (a string)"
    shifted = errors.problem_list(_errors({**GOOD, "carat": -1}), lambda loc: errors.field_path(["rows", 7, *loc]))
    assert [p["field"] for p in shifted] == ["rows.7.carat"]
    long = errors.problem_list(_errors({**GOOD, "k" * 500: 1}))
    assert len(long[0]["field"]) == 40 and long[0]["field"].endswith("...")


def test_invalid_counts_all_and_quotes_ten() -> None:
    problems = [{"field": f"f{i}", "problem": "bad"} for i in range(20)]
    err = errors.invalid(problems, 35)
    assert err.status_code == 422 and err.extra == {"fields": problems, "error_count": 35}
    assert err.message.startswith("invalid request: f0: bad; f1: bad") and err.message.endswith("and 25 more")
    v2 = errors.invalid(problems[:2], 2, errors.BadRequest, "inference request")
    assert v2.status_code == 400 and v2.message == "invalid inference request: f0: bad; f1: bad"
    assert "error_count" not in v2.extra


@pytest.mark.parametrize(
    ("cls", "status", "header"),
    [
        (errors.BadRequest, 400, None),
        (errors.Unauthorized, 401, ("WWW-Authenticate", "Bearer")),
        (errors.NotFound, 404, None),
        (errors.RequestTimeout, 408, ("Connection", "close")),
        (errors.ReloadFailed, 409, None),
        (errors.PayloadTooLarge, 413, None),
        (errors.UnsupportedMediaType, 415, None),
        (errors.InvalidInput, 422, None),
        (errors.ModelUnavailable, 503, ("Retry-After", "1")),
        (errors.NotInstalled, 503, ("Cache-Control", "no-store")),
    ],
)
def test_each_error_class_carries_its_status_and_headers(
    cls: type[errors.ServiceError], status: int, header: tuple[str, str] | None
) -> None:
    err = cls("what went wrong", detail=1)
    assert (err.status_code, err.message, err.extra) == (status, "what went wrong", {"detail": 1})
    if header is not None:
        assert (err.headers or {})[header[0]] == header[1]


def test_both_apis_answer_validation_errors_in_the_same_shape(client: TestClient) -> None:
    json_api = client.post("/diamond_price", json={**GOOD, "carat": "heavy"})
    inputs = [
        {"name": "carat", "shape": [1], "datatype": "FP32", "data": [0.5]},
        {"name": "cut", "shape": [1], "datatype": "BYTES", "data": ["Ideal"]},
        {"name": "color", "shape": [1], "datatype": "BYTES", "data": ["G"]},
        {"name": "clarity", "shape": "one", "datatype": "BYTES", "data": ["VS2"]},
    ]
    v2 = client.post(V2_INFER, json={"inputs": inputs})
    assert (json_api.status_code, v2.status_code) == (422, 400)
    for r, field in ((json_api, "carat"), (v2, "input 'clarity': shape")):
        body = r.json()
        assert set(body) == {"error", "fields"}
        assert [p["field"] for p in body["fields"]] == [field]
        assert body["error"].endswith(f"{field}: {body['fields'][0]['problem']}")


def test_no_model_is_a_503_with_retry_after_on_both_apis(served: Project) -> None:
    (served.registry / "diamond_price-v1.onnx").unlink()
    with TestClient(create_app(settings_for(served))) as c:
        for r in (c.post("/diamond_price", json=GOOD), c.get("/v2/models/diamond_price")):
            assert r.status_code == 503 and r.headers["retry-after"] == "1", r.text
            assert "no model is loaded" in r.json()["error"]


def test_a_missing_docs_bundle_is_a_503_naming_the_fix(served: Project, tmp_path: Path) -> None:
    with TestClient(create_app(settings_for(served, static_dir=tmp_path))) as c:
        r = c.get("/docs")
        assert r.status_code == 503 and r.headers["cache-control"] == "no-store"
        assert "npm ci" in r.json()["error"] or "make docs" in r.json()["error"], r.text
