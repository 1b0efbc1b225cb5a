"""inference/rest/metrics.py in process: what the middleware counts and times, what the model-load
listener records, and the exposition as Prometheus' own parser reads it. Across worker
processes: tests/test_operations.py (slow)."""

from __future__ import annotations

import asyncio
import json
import math
from types import SimpleNamespace

import pytest
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from inference.holder import ModelHolder
from inference.modelsettings import ModelFileError
from inference.rest.metrics import LATENCY_BUCKETS, Metrics, MetricsMiddleware
from tests.helpers import GOOD, InProcessClient, Project, add_version, write_atomically

Labels = frozenset[tuple[str, str]]


def samples(text: str) -> dict[tuple[str, Labels], float]:
    """Every sample of an exposition, keyed by its name and exact label set."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of the sample ``name`` with exactly ``labels``; None if there is none."""
    return samples(text).get((name, frozenset(labels.items())))


def kinds(text: str) -> dict[str, str]:
    """Metric family -> its TYPE; without the ``*_created`` gauges the text format adds for the
    creation time of each counter and histogram."""
    families = text_string_to_metric_families(text)
    return {f.name: f.type for f in families if not (f.name.endswith("_created") and f.type == "gauge")}


def exposition(metrics: Metrics) -> str:
    return metrics.exposition().decode()


# -- the middleware, around small ASGI apps ---------------------------------------------------------


def http(method: str = "GET", path: str = "/items/7") -> Scope:
    return {"type": "http", "method": method, "path": path, "headers": [], "state": {}}


def app_answering(
    status: int, *, route: str | None = None, rows: int | None = None, delay: float = 0.0, fail: bool = False
) -> ASGIApp:
    """An app that answers ``status``; with ``route``, it matched that template, as Starlette's router
    records it in the scope; ``rows`` is what a prediction route leaves in the request state."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if route is not None:
            scope["route"] = SimpleNamespace(path=route)
        if rows is not None:
            scope["state"]["rows"] = rows
        await asyncio.sleep(delay)
        if fail:
            raise RuntimeError("the handler failed")
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    return app


def call(metrics: Metrics, app: ASGIApp, scope: Scope) -> list[Message]:
    """One request through :class:`MetricsMiddleware`; what reached the client."""
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    asyncio.run(MetricsMiddleware(app, metrics)(scope, receive, send))
    return sent


def test_a_request_is_counted_by_its_route_template_never_its_path() -> None:
    metrics = Metrics()
    for item in ("7", "8", "9"):
        sent = call(metrics, app_answering(201, route="/items/{id}"), http("POST", f"/items/{item}"))
        assert sent[0]["status"] == 201 and sent[1]["body"] == b"{}"  # the response passes through unchanged
    call(metrics, app_answering(200, route="/items/{id}"), http("GET"))
    text = exposition(metrics)
    total = "diamond_http_requests_total"
    assert sample(text, total, route="/items/{id}", method="POST", status="201") == 3
    assert sample(text, total, route="/items/{id}", method="GET", status="200") == 1
    assert not [key for key in samples(text) if ("route", "/items/7") in key[1]]
    count = "diamond_http_request_duration_seconds_count"
    assert sample(text, count, route="/items/{id}") == 4


def test_unknown_methods_and_unmatched_paths_fold_into_bounded_labels() -> None:
    metrics = Metrics()
    for method in ("BREW", "PURGE", "X" * 300):
        call(metrics, app_answering(405), http(method, "/" + method))
    call(metrics, app_answering(404), http("GET", "/no/such/thing"))
    text = exposition(metrics)
    total = "diamond_http_requests_total"
    assert sample(text, total, route="unmatched", method="other", status="405") == 3
    assert sample(text, total, route="unmatched", method="GET", status="404") == 1
    assert len([key for key in samples(text) if key[0] == total]) == 2


def test_a_handler_that_raises_is_counted_as_a_500_and_its_error_still_propagates() -> None:
    metrics = Metrics()
    with pytest.raises(RuntimeError, match="the handler failed"):
        call(metrics, app_answering(200, route="/boom", fail=True), http("POST", "/boom"))
    text = exposition(metrics)
    assert sample(text, "diamond_http_requests_total", route="/boom", method="POST", status="500") == 1
    assert sample(text, "diamond_http_request_duration_seconds_count", route="/boom") == 1


@pytest.mark.parametrize("status", [0, 99, 600, 999])
def test_a_status_outside_http_is_counted_as_a_500(status: int) -> None:
    metrics = Metrics()
    call(metrics, app_answering(status, route="/odd"), http())
    text = exposition(metrics)
    assert sample(text, "diamond_http_requests_total", route="/odd", method="GET", status="500") == 1
    assert sample(text, "diamond_http_requests_total", route="/odd", method="GET", status=str(status)) is None


def test_the_latency_covers_the_handler_and_uses_the_declared_buckets() -> None:
    metrics = Metrics()
    call(metrics, app_answering(200, route="/slow", delay=0.03), http())
    text = exposition(metrics)
    bucket = "diamond_http_request_duration_seconds_bucket"
    bounds = {dict(labels)["le"] for name, labels in samples(text) if name == bucket}
    assert bounds == {*(str(b) for b in LATENCY_BUCKETS), "+Inf"}
    assert sample(text, bucket, route="/slow", le="0.025") == 0  # it took at least the handler's 30 ms
    assert sample(text, bucket, route="/slow", le="+Inf") == 1
    took = sample(text, "diamond_http_request_duration_seconds_sum", route="/slow")
    assert took is not None and 0.025 < took < 10


def test_rows_are_counted_from_what_the_route_leaves_in_the_request_state() -> None:
    metrics = Metrics()
    call(metrics, app_answering(200, route="/price", rows=5), http("POST"))
    call(metrics, app_answering(200, route="/price", rows=3), http("POST"))
    call(metrics, app_answering(422, route="/price"), http("POST"))  # refused: nothing priced
    call(metrics, app_answering(200, route="/price"), http("POST"))  # a route that prices nothing
    assert sample(exposition(metrics), "diamond_predicted_rows_total") == 8


def test_scopes_other_than_http_pass_through_uncounted() -> None:
    metrics = Metrics()
    seen: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope["type"])

    async def receive() -> Message:
        return {"type": "lifespan.startup"}

    async def send(message: Message) -> None:
        pass

    for kind in ("lifespan", "websocket"):
        asyncio.run(MetricsMiddleware(app, metrics)({"type": kind}, receive, send))
    assert seen == ["lifespan", "websocket"]
    assert not [key for key in samples(exposition(metrics)) if key[0].startswith("diamond_http_")]


def test_each_service_has_its_own_registry() -> None:
    first, second = Metrics(), Metrics()
    call(first, app_answering(200, route="/a"), http())
    assert sample(exposition(first), "diamond_http_requests_total", route="/a", method="GET", status="200") == 1
    assert sample(exposition(second), "diamond_http_requests_total", route="/a", method="GET", status="200") is None


# -- the model-load listener, fed by a real ModelHolder ---------------------------------------------


def test_every_load_outcome_is_counted_and_the_info_gauge_follows_the_served_model(served: Project) -> None:
    metrics = Metrics()
    holder = ModelHolder(served.settings, served.registry, on_load=metrics.on_load)
    first = holder.load()
    holder.swap(first)  # start-up: success
    assert holder.reload()[0].version == 1  # the same file: unchanged
    write_atomically(served.settings, add_version(served, 2))
    second = holder.reload().current  # success
    served.settings.write_text("{broken")
    with pytest.raises(ModelFileError):
        holder.reload()  # failure: v2 keeps serving
    text = exposition(metrics)
    reloads = "diamond_model_reloads_total"
    assert [sample(text, reloads, outcome=o) for o in ("success", "unchanged", "failure")] == [2, 1, 1]
    assert sample(text, "diamond_model_load_seconds_count") == 3  # a failure has no load time
    load_sum = sample(text, "diamond_model_load_seconds_sum")
    assert load_sum is not None and 0 < load_sum < 60
    info = "diamond_model_info"
    assert sample(text, info, version="1", sha256=first.sha256) == 0
    assert sample(text, info, version="2", sha256=second.sha256) == 1
    serving = [dict(labels) for (name, labels), v in samples(text).items() if name == info and v == 1]
    assert serving == [{"version": "2", "sha256": second.sha256}]  # one model at a time


def test_a_load_that_fails_before_any_model_leaves_no_info(served: Project) -> None:
    metrics = Metrics()
    served.settings.unlink()
    holder = ModelHolder(served.settings, served.registry, on_load=metrics.on_load)
    with pytest.raises(ModelFileError):
        holder.load()
    text = exposition(metrics)
    assert sample(text, "diamond_model_reloads_total", outcome="failure") == 1
    assert sample(text, "diamond_model_load_seconds_count") == 0
    assert not [key for key in samples(text) if key[0] == "diamond_model_info"]


# -- the whole service -----------------------------------------------------------------------------


def test_the_service_exposes_every_metric_in_the_prometheus_text_format(
    client: InProcessClient, served: Project
) -> None:
    infer = {
        "inputs": [
            {"name": "carat", "shape": [2, 1], "datatype": "FP32", "data": [0.7, 1.1]},
            {"name": "cut", "shape": [2, 1], "datatype": "BYTES", "data": ["Ideal", "Good"]},
            {"name": "color", "shape": [2, 1], "datatype": "BYTES", "data": ["G", "E"]},
            {"name": "clarity", "shape": [2, 1], "datatype": "BYTES", "data": ["VS2", "SI1"]},
        ]
    }
    assert client.post("/diamond_price", json=GOOD).status_code == 200
    assert client.post("/diamond_prices", json={"diamonds": [GOOD] * 4}).status_code == 200
    assert client.post("/diamond_price", json={"carat": 1}).status_code == 422
    assert client.post("/v2/models/diamond_price/infer", json=infer).status_code == 200
    assert client.get("/no/such/thing").status_code == 404
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"] == CONTENT_TYPE_LATEST
    text = r.text
    assert kinds(text) == {
        "diamond_http_requests": "counter",
        "diamond_http_request_duration_seconds": "histogram",
        "diamond_predicted_rows": "counter",
        "diamond_model_info": "gauge",
        "diamond_model_reloads": "counter",
        "diamond_model_load_seconds": "histogram",
        "diamond_input_drift_psi": "gauge",
        "diamond_input_drift_window_rows": "gauge",
    }
    total = "diamond_http_requests_total"
    assert sample(text, total, route="/diamond_price", method="POST", status="200") == 1
    assert sample(text, total, route="/diamond_price", method="POST", status="422") == 1
    assert sample(text, total, route="/diamond_prices", method="POST", status="200") == 1
    assert sample(text, total, route="/v2/models/{model_name}/infer", method="POST", status="200") == 1
    assert sample(text, total, route="unmatched", method="GET", status="404") == 1
    assert sample(text, "diamond_http_request_duration_seconds_count", route="/diamond_price") == 2
    assert sample(text, "diamond_predicted_rows_total") == 1 + 4 + 2  # priced rows only: not the 422's
    record = json.loads(served.settings.read_text())
    assert sample(text, "diamond_model_info", version="1", sha256=record["sha256"]) == 1
    assert sample(text, "diamond_model_reloads_total", outcome="success") == 1  # the start-up load
    scrape = client.get("/metrics").text  # the first scrape is counted once it has answered
    assert sample(scrape, total, route="/metrics", method="GET", status="200") == 1
    assert all(math.isfinite(v) for v in samples(scrape).values())
