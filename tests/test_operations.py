"""Operations with real worker processes: convergence, metrics across workers, graceful stop."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest

from devtools.server import running_server
from tests.helpers import GOOD, Project, add_version, env_for, settings_for, write_atomically, write_text_atomically


def metric(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        m = re.match(rf"^{re.escape(name)}(?:\{{(.*)\}})? (\S+)$", line)
        if not m:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1) or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(m.group(2))
    return total


@pytest.mark.slow
def test_two_workers_converge_on_a_new_version_within_two_seconds(served: Project) -> None:
    log: list[tuple[float, int]] = []
    failures: list[str] = []
    stop = threading.Event()

    def hammer(base: str) -> None:
        # No keep-alive: a new connection each time, so both workers answer.
        with httpx.Client(base_url=base, timeout=10, limits=httpx.Limits(max_keepalive_connections=0)) as c:
            while not stop.is_set():
                request(c)

    def request(c: httpx.Client) -> None:
        try:
            r = c.post("/diamond_price", json=GOOD)
        except httpx.HTTPError as exc:
            failures.append(repr(exc))
            return
        if r.status_code == 200:
            log.append((time.monotonic(), r.json()["model_version"]))
        else:
            failures.append(f"{r.status_code} {r.text}")

    with running_server(env_for(served), workers=2) as (base, _):
        threads = [threading.Thread(target=hammer, args=(base,)) for _ in range(4)]
        for t in threads:
            t.start()
        try:
            time.sleep(1.0)
            write_atomically(served.settings, add_version(served, 2))
            changed = time.monotonic()
            time.sleep(3.5)
        finally:
            stop.set()
            for t in threads:
                t.join()
    assert failures == []
    before = [v for t, v in log if t < changed]
    late = [v for t, v in log if t > changed + 2.0]
    assert before and set(before) == {1}
    assert len(late) > 10 and set(late) == {2}, "a worker still served v1 two seconds after the change"


@pytest.mark.slow
def test_metrics_count_all_workers_traffic(served: Project) -> None:
    with running_server(env_for(served), workers=2) as (base, _):
        for _ in range(40):
            assert httpx.post(base + "/diamond_price", json=GOOD).status_code == 200
        for _ in range(10):
            r = httpx.post(base + "/diamond_prices", json={"diamonds": [GOOD] * 5})
            assert r.status_code == 200
        for _ in range(7):
            assert httpx.post(base + "/diamond_price", json={"carat": 1}).status_code == 422
        for _ in range(3):
            assert httpx.get(base + "/no/such/thing").status_code == 404
        scrapes = [httpx.get(base + "/metrics").text for _ in range(6)]  # any worker answers
        for text in scrapes:
            assert metric(text, "diamond_http_requests_total", route="/diamond_price", status="200") == 40
            assert metric(text, "diamond_http_requests_total", route="/diamond_prices", status="200") == 10
            assert metric(text, "diamond_http_requests_total", route="/diamond_price", status="422") == 7
            assert metric(text, "diamond_http_requests_total", route="unmatched", status="404") == 3
            assert metric(text, "diamond_predicted_rows_total") == 40 + 50
            assert metric(text, "diamond_http_request_duration_seconds_count", route="/diamond_price") == 47
            assert metric(text, "diamond_model_reloads_total", outcome="success") == 2  # one start-up load each
            assert metric(text, "diamond_model_load_seconds_count") == 2
            assert metric(text, "diamond_model_info", version="1") == 1
        assert "# TYPE diamond_http_request_duration_seconds histogram" in scrapes[0]


def test_metrics_in_process_reflect_a_reload(served: Project) -> None:
    from starlette.testclient import TestClient

    from inference.app import create_app

    with TestClient(create_app(settings_for(served))) as c:
        write_atomically(served.settings, add_version(served, 2))
        assert c.post("/update_model").json()["version"] == 2
        served.settings.write_text("{")
        assert c.post("/update_model").status_code == 409
        text = c.get("/metrics").text
    assert metric(text, "diamond_model_info", version="2") == 1
    assert metric(text, "diamond_model_info", version="1") == 0
    assert metric(text, "diamond_model_reloads_total", outcome="success") == 2
    assert metric(text, "diamond_model_reloads_total", outcome="failure") == 1


@pytest.mark.slow
def test_sigterm_lets_an_in_flight_request_finish(served: Project) -> None:
    body = json.dumps({"diamonds": [GOOD] * 200}).encode()
    with running_server(env_for(served)) as (base, proc):
        port = int(base.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            head = (
                f"POST /diamond_prices HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            ).encode()
            sock.sendall(head + body[:100])  # the request is now in flight, waiting for its body
            time.sleep(0.3)
            os.killpg(proc.pid, signal.SIGTERM)
            time.sleep(0.3)
            assert proc.poll() is None, "the server quit with a request in flight"
            sock.sendall(body[100:])
            response = b""
            while b"\r\n\r\n" not in response or not response.rstrip().endswith(b"}"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                response += chunk
        assert response.startswith(b"HTTP/1.1 200"), response[:200]
        assert json.loads(response.split(b"\r\n\r\n", 1)[1])["model_version"] == 1
        # uvicorn re-raises the signal once it has drained: the exit status says "stopped by SIGTERM".
        assert proc.wait(timeout=10) in (0, -signal.SIGTERM)


@pytest.mark.slow
def test_bad_settings_are_logged_once_per_change_not_per_check(served: Project, tmp_path: Path) -> None:
    with running_server(env_for(served, RELOAD_INTERVAL="0.1"), log_dir=tmp_path) as (base, _):
        # Replaced whole: write_text truncates first, and a check between the two steps sees a third content.
        write_text_atomically(served.settings, "{broken")
        time.sleep(1.5)  # ~15 checks
        assert httpx.post(base + "/diamond_price", json=GOOD).json()["model_version"] == 1
        write_text_atomically(served.settings, "{broken again")
        time.sleep(1.0)
    errors = [line for line in (tmp_path / "server.err").read_text().splitlines() if "cannot be loaded" in line]
    assert len(errors) == 2, errors
    assert "still serving v1" in errors[0]
