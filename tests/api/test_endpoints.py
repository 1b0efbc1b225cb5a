"""The real ASGI app, in process: every endpoint, good and bad requests."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from openapi_spec_validator import validate
from starlette.testclient import TestClient

from inference.app import create_app
from inference.schema import FEATURES
from tests.helpers import GOOD, InProcessClient, Project, reference_price, settings_for


def test_health_reports_the_current_model(shared_client: InProcessClient, trained: Project) -> None:
    r = shared_client.get("/")
    assert r.status_code == 200
    body = r.json()
    record = json.loads(trained.settings.read_text())
    assert body["status"] == "ok" and body["ready"] is True
    assert body["model"]["name"] == "diamond_price"
    assert body["model"]["version"] == record["version"]
    assert body["model"]["mae"] == record["mae"]
    assert shared_client.get("/health/live").json() == {"status": "alive"}
    assert shared_client.get("/health/ready").status_code == 200


def test_price_matches_the_onnx_model(shared_client: InProcessClient, trained: Project) -> None:
    r = shared_client.post("/diamond_price", json=GOOD)
    assert r.status_code == 200
    body = r.json()
    assert body["model_version"] == 1
    assert body["price"] == pytest.approx(float(reference_price(trained, [GOOD])[0]), abs=0.006)


def test_batch_prices_in_order(shared_client: InProcessClient, trained: Project) -> None:
    rng = np.random.default_rng(0)
    rows = [
        {
            "carat": round(float(rng.uniform(0.2, 3)), 2),
            "cut": str(rng.choice(FEATURES.categorical["cut"])),
            "color": str(rng.choice(FEATURES.categorical["color"])),
            "clarity": str(rng.choice(FEATURES.categorical["clarity"])),
        }
        for _ in range(500)
    ]
    r = shared_client.post("/diamond_prices", json={"diamonds": rows})
    assert r.status_code == 200
    body = r.json()
    assert body["model_version"] == 1
    np.testing.assert_allclose(body["prices"], reference_price(trained, rows), atol=0.006)
    single = shared_client.post("/diamond_price", json=rows[17]).json()["price"]
    assert body["prices"][17] == single


@pytest.mark.parametrize(
    ("payload", "fields"),
    [
        ({**GOOD, "carat": 0.1}, ["carat"]),
        ({**GOOD, "carat": 5.02}, ["carat"]),
        ({**GOOD, "carat": "0.7"}, ["carat"]),
        ({**GOOD, "carat": None}, ["carat"]),
        ({**GOOD, "carat": True}, ["carat"]),
        ({**GOOD, "cut": "ideal"}, ["cut"]),
        ({**GOOD, "color": "K"}, ["color"]),
        ({**GOOD, "clarity": 3}, ["clarity"]),
        ({"carat": 0.7}, ["cut", "color", "clarity"]),
        ({**GOOD, "depth": 61.0}, ["depth"]),
        ({"carat": 9, "cut": "x", "color": "y", "clarity": "z"}, ["carat", "cut", "color", "clarity"]),
        ([GOOD], ["(body)"]),
    ],
)
def test_invalid_fields_are_422_naming_every_field(
    shared_client: InProcessClient, payload: Any, fields: list[str]
) -> None:
    r = shared_client.post("/diamond_price", json=payload)
    assert r.status_code == 422
    body = r.json()
    assert sorted(p["field"] for p in body["fields"]) == sorted(fields)
    for f in fields:
        assert f in body["error"]


def test_nan_and_infinity_are_rejected(shared_client: InProcessClient) -> None:
    for token in ("NaN", "Infinity", "-Infinity", "1e999"):
        r = shared_client.post(
            "/diamond_price",
            content=f'{{"carat": {token}, "cut": "Ideal", "color": "G", "clarity": "VS2"}}',
            headers={"content-type": "application/json"},
        )
        assert r.status_code == 422, token  # valid JSON syntax aside, the field's value is what is wrong
        assert [f["field"] for f in r.json()["fields"]] == ["carat"], token


def test_batch_errors_name_the_row(shared_client: InProcessClient) -> None:
    rows = [GOOD, GOOD, {**GOOD, "cut": "Superb"}]
    r = shared_client.post("/diamond_prices", json={"diamonds": rows})
    assert r.status_code == 422
    assert r.json()["fields"][0]["field"] == "diamonds.2.cut"
    assert shared_client.post("/diamond_prices", json={"diamonds": []}).status_code == 422
    too_many = shared_client.post("/diamond_prices", json={"diamonds": [GOOD] * 10_001})  # 640 KB: under the body limit
    assert too_many.status_code == 422
    assert [f["field"] for f in too_many.json()["fields"]] == ["diamonds"]


@pytest.mark.parametrize(
    ("kwargs", "status"),
    [
        ({"content": b"{", "headers": {"content-type": "application/json"}}, 400),
        ({"content": b"", "headers": {"content-type": "application/json"}}, 400),
        ({"content": b"\xff\xfe", "headers": {"content-type": "application/json"}}, 400),
        ({"content": json.dumps(GOOD).encode(), "headers": {"content-type": "text/plain"}}, 415),
        ({"content": json.dumps(GOOD).encode()}, 415),
        ({"data": {"carat": "0.7"}}, 415),
    ],
)
def test_malformed_bodies(shared_client: InProcessClient, kwargs: dict[str, Any], status: int) -> None:
    r = shared_client.post("/diamond_price", **kwargs)
    assert r.status_code == status
    assert r.headers["content-type"] == "application/json"
    assert r.json()["error"]


def test_body_over_the_limit_is_413(served: Project) -> None:
    with TestClient(create_app(settings_for(served, max_body_bytes=1000))) as c:
        r = c.post("/diamond_prices", json={"diamonds": [GOOD] * 50})
        assert r.status_code == 413
        assert "1000 bytes" in r.json()["error"]

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted while streaming
            yield b'{"diamonds": ['
            for _ in range(40):
                yield json.dumps(GOOD).encode() + b","
            yield json.dumps(GOOD).encode() + b"]}"

        r = c.post("/diamond_prices", content=chunks(), headers={"content-type": "application/json"})
        assert r.status_code == 413
        assert c.post("/diamond_price", json=GOOD).status_code == 200


def test_unknown_route_and_wrong_method_are_json(shared_client: InProcessClient) -> None:
    r = shared_client.get("/nope")
    assert r.status_code == 404 and r.json()["error"]
    r = shared_client.get("/diamond_price")
    assert r.status_code == 405 and "GET" in r.json()["error"]
    r = shared_client.delete("/")
    assert r.status_code == 405


def test_update_model_reports_versions_and_swaps(served: Project, trained: Project) -> None:
    with TestClient(create_app(settings_for(served))) as c:
        assert c.post("/update_model").json() == {"status": "unchanged", "version": 1, "previous_version": 1}
        v2 = served.registry / "diamond_price-v2.onnx"
        shutil.copy(served.registry / "diamond_price-v1.onnx", v2)
        record = json.loads(served.settings.read_text())
        served.settings.write_text(json.dumps({**record, "version": 2, "path": "model_registry/diamond_price-v2.onnx"}))
        r = c.post("/update_model")
        assert r.status_code == 200
        assert r.json() == {"status": "updated", "version": 2, "previous_version": 1}
        assert c.post("/diamond_price", json=GOOD).json()["model_version"] == 2


def _damage(p: Project, how: str) -> None:
    record = json.loads(p.settings.read_text())
    model = p.registry / "diamond_price-v1.onnx"
    if how == "missing_file":
        model.unlink()
    elif how == "corrupt_file":
        data = model.read_bytes()
        model.write_bytes(data[:100])
        record["sha256"] = __import__("hashlib").sha256(data[:100]).hexdigest()
        p.settings.write_text(json.dumps(record))
    elif how == "sha_mismatch":
        p.settings.write_text(json.dumps({**record, "sha256": "0" * 64}))
    elif how == "outside_registry":
        outside = p.root / "elsewhere.onnx"
        shutil.copy(model, outside)
        p.settings.write_text(json.dumps({**record, "path": "elsewhere.onnx"}))
    elif how == "dotdot":
        p.settings.write_text(json.dumps({**record, "path": "model_registry/../model_registry/diamond_price-v1.onnx"}))
    elif how == "absolute":
        p.settings.write_text(json.dumps({**record, "path": str(model)}))
    elif how == "symlink_out":
        outside = p.root / "outside.onnx"
        shutil.copy(model, outside)
        link = p.registry / "diamond_price-v9.onnx"
        link.symlink_to(outside)
        p.settings.write_text(json.dumps({**record, "path": "model_registry/diamond_price-v9.onnx"}))
    elif how == "bad_json":
        p.settings.write_text("{not json")
    elif how == "missing_keys":
        p.settings.write_text(json.dumps({"version": 1}))
    elif how == "missing_settings":
        p.settings.unlink()
    elif how == "not_an_object":
        p.settings.write_text("[1, 2]")


DAMAGE = [
    "missing_file",
    "corrupt_file",
    "sha_mismatch",
    "outside_registry",
    "dotdot",
    "absolute",
    "symlink_out",
    "bad_json",
    "missing_keys",
    "missing_settings",
    "not_an_object",
]
CAUSE = {
    "missing_file": "not found",
    "corrupt_file": "onnxruntime cannot load",
    "sha_mismatch": "sha256 mismatch",
    "outside_registry": "outside the registry",
    "dotdot": "stay inside",
    "absolute": "must be relative",
    "symlink_out": "outside the registry",
    "bad_json": "not valid JSON",
    "missing_keys": "path",
    "missing_settings": "not found",
    "not_an_object": "JSON object",
}


@pytest.mark.parametrize("how", DAMAGE)
def test_failed_reload_names_the_cause_and_keeps_serving(served: Project, how: str) -> None:
    with TestClient(create_app(settings_for(served))) as c:
        before = c.post("/diamond_price", json=GOOD).json()
        _damage(served, how)
        r = c.post("/update_model")
        assert r.status_code == 409
        assert CAUSE[how] in r.json()["error"]
        assert r.json()["serving_version"] == 1
        assert c.post("/diamond_price", json=GOOD).json() == before
        assert c.get("/").json()["ready"] is True


@pytest.mark.parametrize("how", ["missing_file", "sha_mismatch", "bad_json", "missing_settings"])
def test_start_without_a_valid_model_is_not_ready_and_answers_503(served: Project, how: str) -> None:
    _damage(served, how)
    with TestClient(create_app(settings_for(served))) as c:
        r = c.get("/")
        assert r.status_code == 503
        assert r.json()["ready"] is False and CAUSE[how] in r.json()["reason"]
        assert c.get("/health/ready").status_code == 503
        assert c.get("/health/live").status_code == 200
        r = c.post("/diamond_price", json=GOOD)
        assert r.status_code == 503 and "no model is loaded" in r.json()["error"]
        assert c.post("/diamond_price", json={"carat": 1}).status_code == 422  # validation still answers


def test_update_token_is_required_when_set(served: Project) -> None:
    with TestClient(create_app(settings_for(served, update_token="s3cret"))) as c:
        assert c.post("/update_model").status_code == 401
        assert c.post("/update_model", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert c.post("/update_model", headers={"Authorization": "Basic s3cret"}).status_code == 401
        r = c.post("/update_model", headers={"Authorization": "Bearer s3cret"})
        assert r.status_code == 200


def test_openapi_is_valid_3_1_and_generated_from_the_models(shared_client: InProcessClient) -> None:
    spec = shared_client.get("/openapi.json").json()
    validate(spec)
    assert spec["openapi"].startswith("3.1")
    diamond = spec["components"]["schemas"]["Diamond"]
    assert diamond["properties"]["cut"]["enum"] == list(FEATURES.categorical["cut"])
    assert diamond["properties"]["carat"]["minimum"] == FEATURES.numeric["carat"][0]
    for path in ("/", "/diamond_price", "/diamond_prices", "/update_model", "/health/live", "/health/ready"):
        assert path in spec["paths"]
