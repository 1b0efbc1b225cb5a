"""The service as a real uvicorn process on 127.0.0.1."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import httpx
import pytest

from devtools.server import running_server
from tests.helpers import GOOD, Project, add_version, env_for, write_atomically

pytestmark = pytest.mark.slow  # every test starts a real uvicorn process


def test_starts_serves_and_logs_to_the_right_streams(served: Project, tmp_path: Path) -> None:
    with running_server(env_for(served), log_dir=tmp_path) as (base, _):
        assert httpx.get(base + "/").json()["model"]["version"] == 1
        assert httpx.post(base + "/diamond_price", json=GOOD).status_code == 200
        assert httpx.post(base + "/diamond_price", json={"carat": 1}).status_code == 422
    out = (tmp_path / "server.out").read_text()
    assert "serving diamond_price v1" in out
    assert "ERROR" not in out


def test_reload_under_concurrent_requests_loses_nothing(served: Project) -> None:
    failures: list[str] = []
    versions: list[int] = []
    per_thread: list[list[int]] = []
    stop = threading.Event()

    def hammer(base: str) -> None:
        seen: list[int] = []
        per_thread.append(seen)
        with httpx.Client(base_url=base, timeout=10) as c:
            while not stop.is_set():
                try:
                    r = c.post("/diamond_price", json=GOOD)
                    if r.status_code != 200:
                        failures.append(f"{r.status_code} {r.text}")
                    else:
                        versions.append(r.json()["model_version"])
                        seen.append(r.json()["model_version"])
                except httpx.HTTPError as exc:
                    failures.append(repr(exc))

    with running_server(env_for(served, MODEL_AUTO_RELOAD="0")) as (base, _):
        threads = [threading.Thread(target=hammer, args=(base,)) for _ in range(4)]
        for t in threads:
            t.start()
        try:
            for version in (2, 3, 4):
                time.sleep(0.3)
                write_atomically(served.settings, add_version(served, version))
                r = httpx.post(base + "/update_model", timeout=10)
                assert r.status_code == 200 and r.json()["version"] == version
            time.sleep(0.3)
            # A broken pointer: the reload fails, the model keeps serving.
            served.settings.write_text("{broken")
            assert httpx.post(base + "/update_model", timeout=10).status_code == 409
            time.sleep(0.3)
        finally:
            stop.set()
            for t in threads:
                t.join()
    assert failures == []
    assert len(versions) > 50
    assert versions[-1] == 4 and set(versions) <= {1, 2, 3, 4}
    # Each client's requests run one after another, so the versions it sees move forward, never back.
    assert len(per_thread) == 4
    for seen in per_thread:
        assert seen == sorted(seen), f"a client saw an older version after a newer one: {seen}"
    assert {1, 4} <= set(versions)


def test_model_arriving_after_start_is_picked_up(served: Project) -> None:
    record = json.loads(served.settings.read_text())
    served.settings.unlink()
    with running_server(env_for(served, RELOAD_INTERVAL="0.2"), ready_status=(503,)) as (base, _):
        assert httpx.post(base + "/diamond_price", json=GOOD).status_code == 503
        write_atomically(served.settings, record)
        deadline = time.monotonic() + 5
        while httpx.get(base + "/").status_code != 200:
            assert time.monotonic() < deadline, "model never picked up"
            time.sleep(0.1)
        assert httpx.post(base + "/diamond_price", json=GOOD).json()["model_version"] == 1
