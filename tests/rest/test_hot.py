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
    assert {op.path for op in HOT} == set(hot.routes)
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
