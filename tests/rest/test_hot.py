"""The pricing routes served by exact path ahead of the router: same answers, same errors, same labels."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.requests import Request

from inference.app import create_app
from inference.rest.hot import HotRoutes
from inference.routes import HOT, OPERATIONS
from tests.helpers import GOOD, InProcessClient, Project, settings_for


def _hot_layer(client: InProcessClient) -> HotRoutes:
    app: Any = client.app.middleware_stack
    while not isinstance(app, HotRoutes):
        app = app.app
    return app


def test_the_hot_routes_are_the_pricing_operations_and_nothing_else(client: InProcessClient) -> None:
    client.get("/health/live")  # the middleware stack is built on the first call
    hot = _hot_layer(client)
    assert set(hot.routes) == {"/diamond_price", "/diamond_prices"}
    patterns = {route.path for route in hot.patterns}
    assert patterns == {"/v2/models/{model_name}/infer", "/v2/models/{model_name}/versions/{model_version}/infer"}
    assert {op.path for op in HOT} == set(hot.routes) | patterns
    assert hot.prefix == "/v2/models/"
    assert all(op in OPERATIONS for op in HOT)


def test_the_hot_path_serves_the_request_and_not_the_router(
    client: InProcessClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    client.get("/health/live")

    async def refuse(*args: Any) -> None:
        raise AssertionError("the router was consulted")

    monkeypatch.setattr(_hot_layer(client), "app", refuse)
    answer = client.post("/diamond_price", json=GOOD)
    assert answer.status_code == 200 and answer.json()["price"] > 0
    assert client.post("/diamond_prices", json={"diamonds": [GOOD, GOOD]}).json()["prices"][0] > 0
    v2 = {
        "inputs": [
            {"name": k, "shape": [1], "datatype": "FP32" if k == "carat" else "BYTES", "data": [v]}
            for k, v in GOOD.items()
        ]
    }
    answer = client.post("/v2/models/diamond_price/infer", json=v2)
    assert answer.status_code == 200 and answer.json()["outputs"][0]["data"][0] > 0
    version = client.app.state.holder.current.version
    assert client.post(f"/v2/models/diamond_price/versions/{version}/infer", json=v2).status_code == 200
    # The endpoint's own answers for a path the pattern matches but no model serves.
    assert client.post("/v2/models/other/infer", json=v2).status_code == 404
    assert client.post("/v2/models/diamond_price/versions/999/infer", json=v2).status_code == 404


def test_client_errors_on_the_hot_path_are_the_apps_answers(client: InProcessClient) -> None:
    bad = client.post("/diamond_price", json={**GOOD, "carat": "heavy"})
    assert bad.status_code == 422 and bad.json()["fields"][0]["field"] == "carat"
    assert client.post("/diamond_price", content=b"{", headers={"content-type": "application/json"}).status_code == 400
    assert client.post("/diamond_price", content=b"{}", headers={"content-type": "text/plain"}).status_code == 415
    # What is not an exact hot path goes on to the router, with its 404 and 405.
    assert client.post("/diamond_price/", json=GOOD).json()["price"] > 0  # the router redirects it here
    assert client.get("/diamond_price").status_code == 405
    assert client.post("/diamond_pricez", json=GOOD).json()["error"] == "no route /diamond_pricez"


def test_an_unexpected_error_on_the_hot_path_is_a_logged_500(
    served: Project, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(request: Request) -> Any:
        raise ZeroDivisionError("boom")

    with InProcessClient(create_app(settings_for(served))) as c:
        c.get("/health/live")
        hot = _hot_layer(c)
        route = hot.routes["/diamond_price"]
        monkeypatch.setattr(route, "endpoint", broken)
        answer = c.post("/diamond_price", json=GOOD)
    assert answer.status_code == 500 and answer.json() == {"error": "internal error"}
    assert "ZeroDivisionError" in caplog.text
