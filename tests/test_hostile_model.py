"""A model that passes the load checks but is slow, or never ends: it must not take the server down.
In process for the mechanisms, against a real server for liveness, start-up and reload."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest

from devtools.server import running_server
from inference.app import create_app
from inference.deadline import DEADLINES, ModelTooSlow
from inference.holder import ModelHolder
from inference.modelsettings import ModelFileError
from inference.onnx_io import make_feeds, open_session, predict
from tests.helpers import GOOD, InProcessClient, Project, env_for, point_at, settings_for, slow_model

SLOW_INPUT = {**GOOD, "carat": 3.0}
"""Priced by :func:`slow_model` (offset 0.2) after about 28 million loop turns: minutes."""


def test_a_run_past_its_deadline_is_stopped() -> None:
    session = open_session(slow_model(0.2, 1e7))
    feeds = make_feeds({"carat": [3.0], "cut": ["Ideal"], "color": ["G"], "clarity": ["VS2"]})
    started = time.perf_counter()
    with pytest.raises(ModelTooSlow):
        DEADLINES.run(0.2, lambda options: predict(session, feeds, options))
    assert time.perf_counter() - started < 1.0
    fast = make_feeds({"carat": [0.2], "cut": ["Ideal"], "color": ["G"], "clarity": ["VS2"]})
    assert DEADLINES.run(0.2, lambda options: predict(session, fast, options))[0] == pytest.approx(200)


def test_a_slow_input_on_the_event_loop_is_stopped_and_the_model_moves_off_it(served: Project) -> None:
    point_at(served, 2, slow_model(0.2, 1e7))
    with InProcessClient(create_app(settings_for(served, predict_timeout=0.5))) as c:
        assert c.post("/diamond_price", json={**GOOD, "carat": 0.2}).json()["price"] == 200
        started = time.perf_counter()
        r = c.post("/diamond_price", json=SLOW_INPUT)  # stopped inline after 20 ms, then 0.5 s in a thread
        assert r.status_code == 503 and "did not answer" in r.json()["error"]
        assert time.perf_counter() - started < 3
        model = c.app.state.holder.current
        assert model.speed.slow
        assert c.post("/diamond_price", json={**GOOD, "carat": 0.2}).json()["price"] == 200  # now in a thread
        assert c.post("/diamond_prices", json={"diamonds": [SLOW_INPUT]}).status_code == 503
        assert c.post("/diamond_prices", json={"diamonds": [{**GOOD, "carat": 0.2}]}).status_code == 200


def test_a_reload_whose_trial_never_ends_times_out_and_the_old_model_keeps_serving(served: Project) -> None:
    holder = ModelHolder(served.settings, served.registry, load_timeout=0.5)
    holder.reload()
    point_at(served, 2, slow_model(0.0, 1e9))
    started = time.perf_counter()
    with pytest.raises(ModelFileError, match="LOAD_TIMEOUT"):
        holder.reload()
    assert time.perf_counter() - started < 2
    assert holder.current is not None and holder.current.version == 1
    time.sleep(0.2)  # the trial was terminated at its deadline: its thread has ended, the lock is free
    point_at(served, 3, (served.registry / "diamond_price-v1.onnx").read_bytes())
    assert holder.reload().current.version == 3


# -- against a real server ------------------------------------------------------------------------


def live_latencies(base: str, stop: threading.Event, out: list[float]) -> None:
    with httpx.Client(base_url=base, timeout=30) as c:
        while not stop.is_set():
            started = time.perf_counter()
            assert c.get("/health/live").status_code == 200
            out.append(time.perf_counter() - started)
            time.sleep(0.01)


@pytest.mark.slow
def test_liveness_answers_fast_whatever_the_model_does(served: Project) -> None:
    point_at(served, 2, slow_model(0.2, 1e7))
    with running_server(env_for(served, PREDICT_TIMEOUT="1")) as (base, _):
        stop, latencies = threading.Event(), []
        probe = threading.Thread(target=live_latencies, args=(base, stop, latencies))
        probe.start()
        answers = []
        try:
            with httpx.Client(base_url=base, timeout=30) as c:
                for _ in range(6):  # minutes of model each, on the event loop before
                    answers.append(c.post("/diamond_price", json=SLOW_INPUT).status_code)
                    answers.append(c.post("/diamond_price", json={**GOOD, "carat": 0.2}).status_code)
        finally:
            stop.set()
            probe.join()
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99) - 1]
    print(f"/health/live p99 {p99 * 1000:.1f} ms over {len(latencies)} probes; answers {answers}")
    assert answers == [503, 200] * 6
    assert p99 <= 0.050


@pytest.mark.slow
def test_start_up_opens_the_port_when_the_trial_never_ends(served: Project, tmp_path: Path) -> None:
    point_at(served, 2, slow_model(0.0, 1e9))
    started = time.monotonic()
    with running_server(env_for(served, LOAD_TIMEOUT="2"), ready_status=(503,), log_dir=tmp_path) as (base, _):
        took = time.monotonic() - started
        ready = httpx.get(base + "/health/ready")
        assert ready.status_code == 503 and "LOAD_TIMEOUT" in ready.json()["reason"]
        assert httpx.get(base + "/health/live").status_code == 200
        point_at(served, 3, (served.registry / "diamond_price-v1.onnx").read_bytes())
        deadline = time.monotonic() + 20
        while httpx.get(base + "/").status_code != 200:  # the watcher loads the next good model
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert httpx.post(base + "/diamond_price", json=GOOD).json()["model_version"] == 3
    print(f"port open after {took:.1f} s with a trial that never ends")
    assert took < 15


@pytest.mark.slow
def test_a_hung_reload_times_out_without_blocking_later_ones(served: Project) -> None:
    with running_server(env_for(served, LOAD_TIMEOUT="2", MODEL_AUTO_RELOAD="0")) as (base, _):
        point_at(served, 2, slow_model(0.0, 1e9))
        with httpx.Client(base_url=base, timeout=30) as c:
            for _ in range(3):
                started = time.monotonic()
                r = c.post("/update_model")
                assert r.status_code == 409 and "LOAD_TIMEOUT" in r.json()["error"], r.text
                assert time.monotonic() - started < 5
                assert c.post("/diamond_price", json=GOOD).json()["model_version"] == 1
            point_at(served, 3, (served.registry / "diamond_price-v1.onnx").read_bytes())
            assert c.post("/update_model").json()["version"] == 3
            assert c.get("/health/live").status_code == 200


@pytest.mark.slow
def test_an_update_storm_behind_a_hung_load_leaves_the_thread_pool_to_others(served: Project) -> None:
    with running_server(env_for(served, LOAD_TIMEOUT="3", MODEL_AUTO_RELOAD="0")) as (base, _):
        point_at(served, 2, slow_model(0.0, 1e9))
        answers: list[int] = []

        def update() -> None:
            answers.append(httpx.post(base + "/update_model", timeout=60).status_code)

        storm = [threading.Thread(target=update) for _ in range(60)]  # more than the 40 worker threads
        for t in storm:
            t.start()
        time.sleep(0.5)
        with httpx.Client(base_url=base, timeout=30) as c:
            for path in ("/", "/health/ready", "/health/live"):  # `/` looks for the report in a thread
                started = time.perf_counter()
                assert c.get(path).status_code == 200
                assert time.perf_counter() - started < 1, path
        for t in storm:
            t.join()
        assert answers == [409] * 60
