"""Hostile input, in process: each attack from the review, replayed against the real app."""

from __future__ import annotations

import gzip
import json
import logging
import os
import time
import zlib
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from inference import __main__ as entry
from inference.app import create_app
from inference.config import ConfigError, Settings
from inference.errors import MAX_ERROR_BYTES
from inference.modelsettings import ModelFileError, read_settings, read_verified_model
from tests.helpers import GOOD, InProcessClient, Project, settings_for

BAD_ROW = {"carat": "x" * 70, "cut": "Superb", "color": 1, "clarity": None}


def post_raw(client: InProcessClient | TestClient, path: str, body: bytes, **headers: str) -> httpx.Response:
    return client.post(path, content=body, headers={"content-type": "application/json", **headers})


# -- 2. error bodies are bounded, large bodies are validated off the event loop ----------------


@pytest.mark.parametrize(
    "body",
    [
        json.dumps({"diamonds": [{}] * 10_000}).encode(),  # 30 KB: 2.36 MB of 422 before
        b'{"diamonds":[' + b",".join([b"{}"] * 300_000) + b"]}",  # 924 KB: 4.7 MB before
        json.dumps({"diamonds": [BAD_ROW] * 8_000}).encode(),  # 8,000 rows, every field wrong
        json.dumps({"diamonds": [{f"k{'y' * 5000}{i}": 1} for i in range(100)]}).encode(),  # long keys
        json.dumps({f"unknown{i}": i for i in range(30_000)}).encode(),
        json.dumps({"diamonds": list(range(10_001))}).encode(),
    ],
    ids=["empty-rows-30KB", "empty-rows-924KB", "bad-rows", "long-keys", "many-keys", "too-many-rows"],
)
def test_a_422_is_at_most_8_KB_listing_the_first_problems_and_counting_the_rest(
    shared_client: InProcessClient, body: bytes
) -> None:
    r = post_raw(shared_client, "/diamond_prices", body)
    assert r.status_code == 422, r.text[:300]
    assert len(r.content) <= MAX_ERROR_BYTES
    problems = r.json()["fields"]
    assert 1 <= len(problems) <= 20
    assert all(p["field"].startswith(("diamonds", "unknown", "(body)")) for p in problems)
    if r.json().get("error_count") is not None:
        assert r.json()["error_count"] > len(problems)
        assert f"and {r.json()['error_count'] - 10} more" in r.json()["error"]


def test_large_batches_still_validate_and_name_the_row(shared_client: InProcessClient) -> None:
    rows = [GOOD] * 5000
    rows[4321] = {**GOOD, "cut": "Superb"}
    bad = shared_client.post("/diamond_prices", json={"diamonds": rows})
    assert bad.status_code == 422
    assert [p["field"] for p in bad.json()["fields"]] == ["diamonds.4321.cut"]
    rows[4321] = GOOD
    ok = shared_client.post("/diamond_prices", json={"diamonds": rows})
    assert ok.status_code == 200 and len(ok.json()["prices"]) == 5000
    extra = shared_client.post("/diamond_prices", json={"diamonds": rows, "more": 1})
    assert extra.status_code == 422 and extra.json()["fields"] == [{"field": "more", "problem": "unknown field"}]


@pytest.mark.parametrize("size", [40, 600, 3000], ids=["inline", "one-pass", "slices"])
def test_every_validation_path_prices_alike_and_names_the_same_problems(
    shared_client: InProcessClient, size: int
) -> None:
    """Bodies under 4 KiB, up to 128 KiB and over it take three validation paths (see
    inference/api/validate.py); each must price the rows and name bad rows and NaN the same way."""
    rows = [{**GOOD, "carat": round(0.3 + (i % 50) / 20, 2)} for i in range(size)]
    ok = shared_client.post("/diamond_prices", json={"diamonds": rows})
    assert ok.status_code == 200, ok.text[:300]
    singles = {r["carat"]: shared_client.post("/diamond_price", json=r).json()["price"] for r in rows[:50]}
    assert ok.json()["prices"] == [singles[r["carat"]] for r in rows]
    bad = [dict(r) for r in rows]
    bad[size - 3] = {**GOOD, "cut": "Superb", "carat": -1}
    bad[1] = {**GOOD, "extra": 1}
    r = shared_client.post("/diamond_prices", json={"diamonds": bad})
    assert r.status_code == 422
    assert [p["field"] for p in r.json()["fields"]] == [
        "diamonds.1.extra",
        f"diamonds.{size - 3}.carat",
        f"diamonds.{size - 3}.cut",
    ]
    nan = json.dumps({"diamonds": rows}).replace('"carat": 0.3,', '"carat": NaN,', 1).encode()
    r = post_raw(shared_client, "/diamond_prices", nan)
    assert r.status_code == 422, r.text[:300]
    assert [p["field"] for p in r.json()["fields"]] == ["diamonds.0.carat"]


def test_a_huge_single_diamond_body_is_refused_cheaply(shared_client: InProcessClient) -> None:
    body = json.dumps({**GOOD, "carat": list(range(100_000))}).encode()
    r = post_raw(shared_client, "/diamond_price", body)
    assert r.status_code == 422 and len(r.content) <= MAX_ERROR_BYTES
    padded = json.dumps(GOOD).replace(",", "," + " " * 20_000).encode()  # valid, only padded
    assert post_raw(shared_client, "/diamond_price", padded).status_code == 200


# -- 9. the JSON API decodes gzip and deflate under the body limit, refuses other encodings -----


def test_json_api_decodes_gzip_and_deflate_and_refuses_other_encodings(shared_client: InProcessClient) -> None:
    raw = json.dumps(GOOD).encode()
    for encoding, body in (("gzip", gzip.compress(raw)), ("deflate", zlib.compress(raw)), ("identity", raw)):
        r = post_raw(shared_client, "/diamond_price", body, **{"content-encoding": encoding})
        assert r.status_code == 200, (encoding, r.text)
    batch = gzip.compress(json.dumps({"diamonds": [GOOD] * 300}).encode())
    r = post_raw(shared_client, "/diamond_prices", batch, **{"content-encoding": "gzip"})
    assert r.status_code == 200 and len(r.json()["prices"]) == 300
    for encoding in ("br", "compress", "gzip, gzip", "x" * 5000):
        r = post_raw(shared_client, "/diamond_price", raw, **{"content-encoding": encoding})
        assert r.status_code == 415, encoding
        assert len(r.content) < 1000
    assert post_raw(shared_client, "/diamond_price", b"not gzip", **{"content-encoding": "gzip"}).status_code == 400


def test_a_compressed_bomb_is_413(served: Project) -> None:
    with TestClient(create_app(settings_for(served, max_body_bytes=10_000))) as c:
        bomb = gzip.compress(b'{"diamonds": [' + b" " * 5_000_000 + b"]}")
        assert len(bomb) < 10_000
        r = post_raw(c, "/diamond_prices", bomb, **{"content-encoding": "gzip"})
        assert r.status_code == 413


# -- 4. every failure to read the settings file is a model-file error ---------------------------


def bad_settings(p: Project) -> dict[str, bytes]:
    good = json.loads(p.settings.read_text())
    digits = "9" * 4301
    return {
        "nul-in-path": json.dumps({**good, "path": "model_registry/x\u0000.onnx"}).encode(),
        "4301-digit-integer": json.dumps({**good, "version": 12345}).replace("12345", digits).encode(),
        "4301-digit-extra": json.dumps(good).replace("{", '{"junk": ' + digits + ",", 1).encode(),
        "mae-infinity": json.dumps({**good, "mae": float("inf")}).encode(),
        "mae-nan": json.dumps({**good, "mae": float("nan")}).encode(),
        "extra-nan": json.dumps({**good, "params": float("nan")}).encode(),
        "deeply-nested": b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
        "not-utf8": b"\xff\xfe{}",
        "huge-version": json.dumps({**good, "version": 2**70}).encode(),
        "path-too-long": json.dumps({**good, "path": "a/" * 5000}).encode(),
        "control-char-path": json.dumps({**good, "path": "model_registry/\n.onnx"}).encode(),
    }


@pytest.mark.parametrize(
    "case",
    [
        "nul-in-path",
        "4301-digit-integer",
        "4301-digit-extra",
        "mae-infinity",
        "mae-nan",
        "extra-nan",
        "deeply-nested",
        "not-utf8",
        "huge-version",
        "path-too-long",
        "control-char-path",
    ],
)
def test_a_bad_settings_file_is_409_on_reload_and_503_at_start(served: Project, case: str) -> None:
    content = bad_settings(served)[case]
    with TestClient(create_app(settings_for(served)), raise_server_exceptions=False) as c:
        served.settings.write_bytes(content)
        r = c.post("/update_model")
        assert r.status_code == 409, r.text[:300]
        assert r.json()["serving_version"] == 1
        assert c.post("/diamond_price", json=GOOD).json()["model_version"] == 1
        assert c.get("/").status_code == 200
    with pytest.raises(ModelFileError):
        read_verified_model(served.settings, served.registry)
    with TestClient(create_app(settings_for(served)), raise_server_exceptions=False) as c:
        r = c.get("/health/ready")
        assert r.status_code == 503
        assert r.json()["reason"]


def test_settings_that_are_a_fifo_or_huge_are_refused_without_reading(served: Project, tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    with pytest.raises(ModelFileError, match="not a regular file"):
        read_settings(fifo)
    huge = tmp_path / "huge.json"
    huge.write_bytes(b" " * (2 << 20))
    with pytest.raises(ModelFileError, match="more than"):
        read_settings(huge)


# -- 8. the update token is compared as UTF-8 bytes; an open /update_model is warned about ------


def test_a_non_ascii_update_token_matches_its_utf8_bytes(served: Project) -> None:
    token = "clé-secrète-✓"
    with TestClient(create_app(settings_for(served, update_token=token)), raise_server_exceptions=False) as c:
        right = c.post("/update_model", headers=[(b"authorization", b"Bearer " + token.encode("utf-8"))])
        assert right.status_code == 200, right.text
        latin = c.post("/update_model", headers=[(b"authorization", b"Bearer " + token.encode("utf-8")[:-3])])
        assert latin.status_code == 401
        as_latin1 = [(b"authorization", b"Bearer " + token.encode("utf-8").decode("latin-1").encode("utf-8"))]
        assert c.post("/update_model", headers=as_latin1).status_code == 401
        assert c.post("/update_model").status_code == 401


@pytest.mark.parametrize(
    ("host", "token", "warned"),
    [("0.0.0.0", None, True), ("::", None, True), ("example.org", None, True), ("0.0.0.0", "t", False),  # noqa: S104
     ("127.0.0.1", None, False), ("::1", None, False), ("localhost", None, False)],
)  # fmt: skip
def test_startup_warns_when_update_model_is_open_beyond_loopback(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, host: str, token: str | None, warned: bool
) -> None:
    import uvicorn

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda *a, **kw: calls.append(kw))  # records, does not listen
    monkeypatch.setattr(entry, "configure_logging", lambda *a, **kw: None)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(Path(os.environ.get("TMPDIR", "/tmp")) / f"m{os.getpid()}"))
    monkeypatch.setenv("LIMIT_CONCURRENCY", "77")
    if token:
        monkeypatch.setenv("UPDATE_TOKEN", token)
    else:
        monkeypatch.delenv("UPDATE_TOKEN", raising=False)
    with caplog.at_level(logging.WARNING, logger="inference"):
        assert entry.main(["--host", host, "--port", "0"]) == 0
    assert calls[0]["limit_concurrency"] == 77
    assert ("/update_model is open" in caplog.text) is warned


def test_limits_come_from_the_environment() -> None:
    s = Settings.from_env(
        {"BODY_TIMEOUT": "2.5", "BODY_BUFFER_BYTES": "1000", "LIMIT_CONCURRENCY": "9", "MAX_ERROR_FIELDS": "3",
         "HEADER_TIMEOUT": "4", "MAX_HEADER_BYTES": "2048"}
    )  # fmt: skip
    assert (s.body_timeout, s.body_buffer_bytes, s.limit_concurrency, s.max_error_fields) == (2.5, 1000, 9, 3)
    assert (s.header_timeout, s.max_header_bytes) == (4.0, 2048)
    defaults = Settings.from_env({})
    assert (defaults.body_timeout, defaults.limit_concurrency, defaults.max_error_fields) == (10.0, 512, 20)
    for bad in ({"BODY_TIMEOUT": "nan"}, {"BODY_TIMEOUT": "0"}, {"LIMIT_CONCURRENCY": "0"}):
        with pytest.raises(ConfigError):
            Settings.from_env(bad)


def test_max_error_fields_bounds_the_list(served: Project) -> None:
    with TestClient(create_app(settings_for(served, max_error_fields=3))) as c:
        r = c.post("/diamond_prices", json={"diamonds": [BAD_ROW] * 10})
        assert r.status_code == 422
        assert len(r.json()["fields"]) == 3 and r.json()["error_count"] == 40


# -- client-chosen text is never echoed whole --------------------------------------------------


def test_long_paths_methods_and_headers_are_clipped_in_errors(shared_client: InProcessClient) -> None:
    assert len(shared_client.get("/" + "a" * 20_000).content) < 1000
    assert len(shared_client.request("PURGE", "/" + "b" * 20_000).content) < 1000
    r = shared_client.post("/diamond_price", content=b"{}", headers={"content-type": "text/" + "c" * 20_000})
    assert r.status_code == 415 and len(r.content) < 1000
    v2 = shared_client.post(
        "/v2/models/diamond_price/infer",
        content=b"{}",
        headers={"content-type": "text/" + "c" * 20_000, "inference-header-content-length": "9" * 10_000},
    )
    assert v2.status_code == 415 and len(v2.content) < 1000


@pytest.mark.parametrize(
    "body",
    [
        b'{"inputs":[' + b",".join([b"{}"] * 340_000) + b"]}",  # 1M pydantic errors: 17 s of GIL before
        json.dumps({"inputs": [{}] * 30_000}).encode(),
        json.dumps({"inputs": [{"name": "carat", "parameters": {str(i): {} for i in range(20_000)}}]}).encode(),
        json.dumps({"inputs": [{"name": "carat", "shape": [{}] * 50_000}]}).encode(),
        json.dumps({"inputs": [{"name": "carat"}], "outputs": [{}] * 50_000}).encode(),
    ],
    ids=["empty-objects", "many-inputs", "many-parameters", "long-shape", "many-outputs"],
)
def test_v2_bodies_that_would_explode_into_errors_are_refused_cheaply(
    shared_client: InProcessClient, body: bytes
) -> None:
    started = time.perf_counter()
    r = post_raw(shared_client, "/v2/models/diamond_price/infer", body)
    elapsed = time.perf_counter() - started
    assert r.status_code == 400, r.text[:300]
    assert len(r.content) <= MAX_ERROR_BYTES
    assert elapsed < 2, elapsed
