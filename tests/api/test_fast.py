"""The usual single-diamond request, answered ahead of the full stack: the same answer as the full
stack gives, for every request, and the full stack's answer for anything unusual."""

from __future__ import annotations

import gzip
import json
import time
from typing import Any

import pytest

from inference.api.fast import FastPrice
from inference.app import create_app
from inference.rest.protocol import BODY_COMPLETE
from tests.helpers import GOOD, InProcessClient, Project, point_at, settings_for, slow_model

JSON = [(b"content-type", b"application/json")]


def _headers(body: bytes, extra: list[tuple[bytes, bytes]] = JSON) -> list[tuple[bytes, bytes]]:
    return [(b"content-length", str(len(body)).encode()), *extra]


def _fast_layer(client: InProcessClient) -> FastPrice:
    client.get("/health/live")  # builds the middleware stack
    app: Any = client.app.middleware_stack
    while not isinstance(app, FastPrice):
        app = app.app
    return app


CASES: list[tuple[bytes, list[tuple[bytes, bytes]]]] = [
    (json.dumps(GOOD).encode(), JSON),
    (json.dumps({**GOOD, "carat": 5.01, "cut": "Fair", "color": "J", "clarity": "I1"}).encode(), JSON),
    (json.dumps({**GOOD, "carat": 0.2}).encode(), [(b"content-type", b"application/json; charset=utf-8")]),
    (json.dumps({**GOOD, "carat": "heavy", "cut": "Superb"}).encode(), JSON),
    (json.dumps({**GOOD, "carat": 9.5}).encode(), JSON),
    (json.dumps({**GOOD, "extra": 1}).encode(), JSON),
    (b'{"carat": NaN, "cut": "Ideal", "color": "G", "clarity": "VS2"}', JSON),
    (b'{"carat": 0.7, "cut": "Ideal",', JSON),
    (b"[]", JSON),
    (b"", JSON),
    (json.dumps(GOOD).encode(), [(b"content-type", b"text/plain")]),
    (json.dumps(GOOD).encode(), [(b"content-type", b"text/plain"), (b"content-type", b"application/json")]),
    (json.dumps(GOOD).encode(), [(b"content-type", b"application/vnd.api+json")]),
    (json.dumps(GOOD).encode(), []),
    (gzip.compress(json.dumps(GOOD).encode()), [*JSON, (b"content-encoding", b"gzip")]),
    (json.dumps({**GOOD, "cut": "x" * 5000}).encode(), JSON),
]


@pytest.mark.parametrize(("body", "extra"), CASES)
def test_the_answer_is_the_full_stacks(
    shared_client: InProcessClient, body: bytes, extra: list[tuple[bytes, bytes]]
) -> None:
    headers = _headers(body, extra)
    careful = shared_client.raw("POST", "/diamond_price", body, headers)
    fast = shared_client.raw("POST", "/diamond_price", body, headers, **{BODY_COMPLETE: True})
    assert fast[0] == careful[0]
    assert json.loads(fast[1]) == json.loads(careful[1])


def test_the_usual_request_never_reaches_the_full_stack(
    shared_client: InProcessClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast = _fast_layer(shared_client)
    reached: list[str] = []

    async def full_stack(scope: Any, receive: Any, send: Any) -> None:
        reached.append(scope["path"])
        await send({"type": "http.response.start", "status": 299, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    monkeypatch.setattr(fast, "app", full_stack)
    body = json.dumps(GOOD).encode()
    status, answer = shared_client.raw("POST", "/diamond_price", body, _headers(body), **{BODY_COMPLETE: True})
    assert status == 200 and json.loads(answer)["price"] > 0 and reached == []
    # A body still on its way, an invalid one, or another route: the full stack's.
    assert shared_client.raw("POST", "/diamond_price", body, _headers(body))[0] == 299
    assert shared_client.raw("POST", "/diamond_price", b"{}", _headers(b"{}"), **{BODY_COMPLETE: True})[0] == 299
    assert shared_client.raw("POST", "/diamond_prices", body, _headers(body), **{BODY_COMPLETE: True})[0] == 299
    assert reached == ["/diamond_price", "/diamond_price", "/diamond_prices"]


def test_the_usual_request_is_counted_like_any_other(shared_client: InProcessClient) -> None:
    metrics = _fast_layer(shared_client).metrics
    requests = metrics.requests.labels("/diamond_price", "POST", "200")
    before, rows = requests._value.get(), metrics.rows._value.get()
    body = json.dumps(GOOD).encode()
    for _ in range(3):
        assert shared_client.raw("POST", "/diamond_price", body, _headers(body), **{BODY_COMPLETE: True})[0] == 200
    assert requests._value.get() == before + 3
    assert metrics.rows._value.get() == rows + 3


def test_a_slow_model_answers_as_on_the_full_stack(served: Project) -> None:
    point_at(served, 2, slow_model(0.2, 1e7))  # a carat of 3.0 takes minutes, 0.2 none
    flag = {BODY_COMPLETE: True}
    quick, slow = (json.dumps({**GOOD, "carat": carat}).encode() for carat in (0.2, 3.0))
    with InProcessClient(create_app(settings_for(served, predict_timeout=0.5))) as c:
        assert json.loads(c.raw("POST", "/diamond_price", quick, _headers(quick), **flag)[1])["price"] == 200
        started = time.perf_counter()
        status, body = c.raw("POST", "/diamond_price", slow, _headers(slow), **flag)  # 20 ms inline, 0.5 s in a thread
        assert status == 503 and "did not answer" in json.loads(body)["error"]
        assert time.perf_counter() - started < 3  # answered once, not retried by the full stack
        assert c.app.state.holder.current.speed.slow
        assert json.loads(c.raw("POST", "/diamond_price", quick, _headers(quick), **flag)[1])["price"] == 200
        text = c.get("/metrics").text
    assert 'diamond_http_requests_total{method="POST",route="/diamond_price",status="503"} 1.0' in text


def test_without_a_model_the_answer_is_the_full_stacks_503(project: Project) -> None:
    body = json.dumps(GOOD).encode()
    with InProcessClient(create_app(settings_for(project))) as c:
        status, answer = c.raw("POST", "/diamond_price", body, _headers(body), **{BODY_COMPLETE: True})
    assert status == 503 and "no model is loaded" in json.loads(answer)["error"]
