"""Hostile input, round two, in process: files that are not what they seem, exotic text, and what
error bodies show. Each test replays one class of attack against the real app."""

from __future__ import annotations

import json
import os
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inference import files
from inference.app import create_app
from inference.modelsettings import ModelFileError, read_settings
from tests.helpers import GOOD, InProcessClient, Project, settings_for

REPORT = "diamond_price-v1.report.html"
V2 = "/v2/models/diamond_price"


def within(seconds: float, call: Any) -> Any:
    """``call()`` in a thread; fails (instead of hanging the suite) if it has not returned in time."""
    result: list[Any] = []
    worker = threading.Thread(target=lambda: result.append(call()), daemon=True)
    worker.start()
    worker.join(seconds)
    assert result, f"still blocked after {seconds} s"
    return result[0]


# -- files that are not what they seem ------------------------------------------------------------


def test_a_report_that_is_a_fifo_is_a_404_at_once(client: InProcessClient, served: Project) -> None:
    (served.registry / REPORT).unlink()
    os.mkfifo(served.registry / REPORT)  # a reader opening it by name would wait for a writer for ever
    r = within(5, lambda: client.get("/models/1/report"))
    assert r.status_code == 404 and "not a regular file" in r.json()["error"]
    assert str(served.root) not in r.text
    assert within(5, lambda: client.get("/")).json()["model"]["report"] is None


def test_a_huge_sparse_model_file_is_refused_before_it_is_read(served: Project) -> None:
    record = json.loads(served.settings.read_text())
    huge = served.registry / "diamond_price-v9.onnx"
    with huge.open("wb") as fh:
        fh.truncate(4 << 30)  # 4 GiB of nothing: read whole, it grew the worker by 4.3 GB
    with InProcessClient(create_app(settings_for(served))) as c:
        served.settings.write_text(json.dumps({**record, "version": 9, "path": "model_registry/" + huge.name}))
        r = c.post("/update_model")
        assert r.status_code == 409
        assert "more than the 134217728 allowed" in r.json()["error"]
        assert str(served.root) not in r.text and "/tmp" not in r.text
        assert c.post("/diamond_price", json=GOOD).json()["model_version"] == 1


def test_a_report_over_max_report_bytes_is_refused(served: Project) -> None:
    with InProcessClient(create_app(settings_for(served, max_report_bytes=4096))) as c:
        r = c.get("/models/1/report")
        assert r.status_code == 404 and "more than the 4096 allowed" in r.json()["error"]
        assert str(served.root) not in r.text


def test_a_model_path_swapped_for_a_link_after_resolution_is_not_followed(tmp_path: Path) -> None:
    target = tmp_path / "real"
    target.write_bytes(b"x" * 10)
    link = tmp_path / "link"
    link.symlink_to(target)
    with pytest.raises(files.FileRefused, match="symbolic link"):
        files.read_regular(link, "model file", 1024, follow=False)
    got = files.read_regular(link, "settings file", 1024)
    assert got.data == b"x" * 10 and len(got.sha256) == 64


def test_the_published_model_is_read_once_per_file_state(
    client: InProcessClient, served: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads: list[Path] = []
    real = files.read_regular

    def counting(path: Path, *args: Any, **kwargs: Any) -> files.FileBytes:
        reads.append(path)
        return real(path, *args, **kwargs)

    monkeypatch.setattr("inference.pages.calculator.read_regular", counting)
    url = "/model_registry/diamond_price-v1.onnx"
    blob = (served.registry / "diamond_price-v1.onnx").read_bytes()
    for _ in range(5):
        r = client.get(url)
        assert r.status_code == 200 and r.content == blob
    assert len(reads) == 1
    os.utime(served.registry / "diamond_price-v1.onnx", ns=(1, 1))  # same bytes, another file state
    assert client.get(url).content == blob and len(reads) == 2
    (served.registry / "diamond_price-v1.onnx").write_bytes(blob[:-1] + b"\0")
    changed = client.get(url)
    assert changed.status_code == 503 and "changed on disk" in changed.json()["error"]


def test_503_and_409_bodies_show_no_absolute_server_path(served: Project) -> None:
    record = json.loads(served.settings.read_text())
    with InProcessClient(create_app(settings_for(served))) as c:
        served.settings.write_text(json.dumps({**record, "sha256": "0" * 64}))
        r = c.post("/update_model")
        assert r.status_code == 409 and "sha256 mismatch for diamond_price-v1.onnx" in r.json()["error"]
        assert str(served.root) not in r.text
    with InProcessClient(create_app(settings_for(served))) as c:
        for path in ("/", "/health/ready", "/diamond_price", "/modelsettings.json", f"{V2}/ready"):
            r = c.post(path, json=GOOD) if path == "/diamond_price" else c.get(path)
            assert r.status_code == 503, path
            assert str(served.root) not in r.text and "/tmp/" not in r.text, (path, r.text)


# -- 5xx from exotic text ------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["٣", "³", "003", "01", "+1", " 1", "1 ", "１", "0"])
def test_version_path_parameters_take_canonical_ascii_digits_only(shared_client: InProcessClient, version: str) -> None:
    r = shared_client.get(f"/models/{version}/report")
    assert r.status_code == 404, (version, r.status_code)
    assert shared_client.get(f"{V2}/versions/{version}/ready").status_code == 404


def test_lone_surrogates_are_answered_never_a_500(shared_client: InProcessClient, served: Project) -> None:
    # Over 4 KiB, bodies are parsed by json.loads, which accepts lone surrogate escapes (pydantic's
    # parser, used for smaller ones, refuses them with a 400).
    pad = b" " * 5000
    key = b'{"carat": 0.7, "cut": "Ideal", "color": "G", "clarity": "VS2", "\\ud800": 1}' + pad
    r = shared_client.post("/diamond_price", content=key, headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["fields"][0]["field"] in ("\ufffd", "\ud800")
    batch = b'{"diamonds": [{"carat": 0.7, "cut": "Ideal", "color": "G", "clarity": "VS2", "\\udfff": 1}]}' + pad
    r = shared_client.post("/diamond_prices", content=batch, headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["fields"][0]["field"].startswith("diamonds.0")
    v2 = json.loads(v2_body())
    v2["id"] = "PLACEHOLDER"
    body = json.dumps(v2).replace("PLACEHOLDER", "\\ud83d").encode()
    r = shared_client.post(f"{V2}/infer", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400 and "id" in r.json()["error"]
    record = json.loads(served.settings.read_text())
    served.settings.write_text(json.dumps(record)[:-1] + ', "note": "\\udc80"}')
    with pytest.raises(ModelFileError, match="not valid Unicode"):
        read_settings(served.settings)


# -- property-based: no text anywhere gives a 5xx ------------------------------------------------

PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
TEXT = st.text(st.characters(codec=None, exclude_categories=()), max_size=12)
"""Any code point, lone surrogates included."""
JSON_VALUE = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False) | st.integers() | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=8,
)


def v2_body(**changes: Any) -> str:
    request = {
        "inputs": [
            {"name": "carat", "shape": [1], "datatype": "FP32", "data": [0.7]},
            {"name": "cut", "shape": [1], "datatype": "BYTES", "data": ["Ideal"]},
            {"name": "color", "shape": [1], "datatype": "BYTES", "data": ["G"]},
            {"name": "clarity", "shape": [1], "datatype": "BYTES", "data": ["VS2"]},
        ],
        **changes,
    }
    return json.dumps(request)  # ASCII: lone surrogates travel as escapes, as an attacker sends them


@PROPERTY
@given(segment=TEXT.filter(lambda s: "/" not in s and "?" not in s and "#" not in s))
def test_no_path_parameter_gives_a_5xx(shared_client: InProcessClient, segment: str) -> None:
    quoted = segment.encode("utf-8", "surrogatepass").hex()
    encoded = "".join(f"%{quoted[i : i + 2]}" for i in range(0, len(quoted), 2))
    for path in (f"/models/{encoded}/report", f"{V2}/versions/{encoded}/ready", f"/v2/models/{encoded}/ready"):
        assert shared_client.get(path).status_code < 500, path


@PROPERTY
@given(extra=st.dictionaries(TEXT, JSON_VALUE, max_size=3), value=JSON_VALUE)
def test_no_json_key_or_value_gives_a_5xx(shared_client: InProcessClient, extra: dict[str, Any], value: Any) -> None:
    for body in ({**GOOD, **extra}, {**GOOD, "cut": value}, {"diamonds": [{**GOOD, **extra}, value]}):
        for path in ("/diamond_price", "/diamond_prices"):
            r = shared_client.post(path, content=json.dumps(body), headers={"content-type": "application/json"})
            assert r.status_code < 500, (path, body, r.text[:200])
            r.json()


@PROPERTY
@given(
    request_id=TEXT,
    parameters=st.dictionaries(TEXT, st.booleans() | st.integers() | TEXT, max_size=3),
    output=TEXT,
)
def test_no_v2_id_or_parameter_gives_a_5xx(
    shared_client: InProcessClient, request_id: str, parameters: dict[str, Any], output: str
) -> None:
    outputs = [{"name": output, "parameters": parameters}]
    for body in (v2_body(id=request_id, parameters=parameters), v2_body(id=request_id, outputs=outputs)):
        r = shared_client.post(f"{V2}/infer", content=body, headers={"content-type": "application/json"})
        assert r.status_code < 500, (body, r.text[:200])
        if r.status_code == 200:
            assert r.json()["id"] == request_id


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(extras=st.dictionaries(TEXT.filter(lambda k: k not in ("name", "version", "path", "sha256", "mae")), JSON_VALUE))
def test_no_settings_extra_gives_a_5xx(served: Project, extras: dict[str, Any]) -> None:
    record = json.loads(served.settings.read_text())
    served.settings.write_text(json.dumps({**record, **extras}))
    with InProcessClient(create_app(settings_for(served))) as c:
        for path in ("/", "/modelsettings.json", V2, "/v2/models/diamond_price/versions/1"):
            r = c.get(path)
            assert r.status_code in (200, 503), (path, r.status_code)
            r.json()


# -- one bound for both APIs ---------------------------------------------------------------------


@pytest.mark.parametrize(("carat", "priced"), [(5.0100001, False), (5.01, True), (0.2, True), (0.19999999, False)])
def test_v2_takes_the_json_apis_carat_bounds(shared_client: InProcessClient, carat: float, priced: bool) -> None:
    json_api = shared_client.post("/diamond_price", json={**GOOD, "carat": carat})
    assert (json_api.status_code == 200) is priced
    body = json.loads(v2_body())
    body["inputs"][0]["data"] = [carat]
    v2 = shared_client.post(f"{V2}/infer", json=body)
    assert (v2.status_code == 200) is priced, v2.text
    if not priced:
        assert v2.status_code == 400 and "carat" in v2.json()["error"]


def test_a_stale_metrics_directory_of_a_killed_run_is_removed_at_the_next_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from inference.__main__ import prepare_metrics_dir

    # set, then removed: the code under test sets it, and the test's end must take it away again
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "")
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR")
    monkeypatch.setattr("tempfile.gettempdir", lambda: str(tmp_path))
    dead = subprocess.Popen(["true"])
    dead.wait()
    parent = tmp_path / f"diamond-metrics-{os.getuid()}"
    parent.mkdir()
    stale, living = parent / f"run-{dead.pid}", parent / f"run-{os.getppid()}"
    for d in (stale, living):
        d.mkdir()
        (d / "counter_1.db").write_bytes(b"x" * 1000)
    created = prepare_metrics_dir()
    assert created is not None and created.path.is_dir()
    assert os.environ["PROMETHEUS_MULTIPROC_DIR"] == str(created.path)
    assert not stale.exists() and living.exists()
    created.cleanup()
    assert not created.path.exists()
