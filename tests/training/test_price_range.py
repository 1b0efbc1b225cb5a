"""The price range through the JSON API and V2: same model call, same numbers as the .onnx."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
from starlette.testclient import TestClient

from inference.app import create_app
from inference.onnx_io import make_feeds
from inference.schema import FEATURES
from tests.helpers import InProcessClient, Project, settings_for

GOOD = {"carat": 0.7, "cut": "Ideal", "color": "G", "clarity": "VS2"}
ROWS = [GOOD, {"carat": 1.51, "cut": "Premium", "color": "E", "clarity": "SI1"}, {**GOOD, "carat": 3.2}]
INFER = "/v2/models/diamond_price/infer"


def app_client(p: Project) -> TestClient:
    return TestClient(create_app(settings_for(p)), raise_server_exceptions=False)


def onnx_outputs(p: Project, rows: list[dict[str, Any]]) -> list[np.ndarray]:
    record = json.loads(p.settings.read_text())
    session = ort.InferenceSession((p.settings.parent / record["path"]).read_bytes())
    return [o.ravel() for o in session.run(None, make_feeds({n: [r[n] for r in rows] for n in FEATURES.names}))]


def test_one_price_comes_with_its_range(shared_client: InProcessClient, trained: Project) -> None:
    body = shared_client.post("/diamond_price", json=GOOD).json()
    assert set(body) == {"price", "price_range", "model_version"}
    price, low, high = (float(x[0]) for x in onnx_outputs(trained, [GOOD]))
    assert body["price"] == pytest.approx(price, abs=0.006)
    assert body["price_range"]["low"] == pytest.approx(low, abs=0.006)
    assert body["price_range"]["high"] == pytest.approx(high, abs=0.006)
    assert body["price_range"]["level"] == 0.8
    assert body["price_range"]["low"] <= body["price"] <= body["price_range"]["high"]


def test_every_row_of_a_batch_comes_with_its_range(shared_client: InProcessClient, trained: Project) -> None:
    body = shared_client.post("/diamond_prices", json={"diamonds": ROWS}).json()
    price, low, high = onnx_outputs(trained, ROWS)
    np.testing.assert_allclose(body["prices"], price, atol=0.006)
    assert [r["level"] for r in body["price_ranges"]] == [0.8] * len(ROWS)
    np.testing.assert_allclose([r["low"] for r in body["price_ranges"]], low, atol=0.006)
    np.testing.assert_allclose([r["high"] for r in body["price_ranges"]], high, atol=0.006)
    singles = [shared_client.post("/diamond_price", json=row).json() for row in ROWS]
    assert [s["price_range"] for s in singles] == body["price_ranges"]


def test_health_reports_the_recorded_calibration(shared_client: InProcessClient, trained: Project) -> None:
    model = shared_client.get("/").json()["model"]
    assert model["price_range"] == json.loads(trained.settings.read_text())["price_range"]
    assert set(model["price_range"]) == {"level", "coverage", "mean_width"}


def test_a_model_without_a_range_still_serves_with_null_ranges(plain: Project) -> None:
    with app_client(plain) as c:
        one = c.post("/diamond_price", json=GOOD).json()
        assert one["price_range"] is None and one["price"] > 0
        batch = c.post("/diamond_prices", json={"diamonds": ROWS}).json()
        assert batch["price_ranges"] is None and len(batch["prices"]) == len(ROWS)
        assert c.get("/").json()["model"]["price_range"] is None
        meta = c.get("/v2/models/diamond_price").json()
        assert [o["name"] for o in meta["outputs"]] == ["price"]
        r = c.post(INFER, json={"inputs": v2_inputs(ROWS), "outputs": [{"name": "price_low"}]})
        assert r.status_code == 400 and "price_low" in r.json()["error"]


def v2_inputs(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "name": n,
            "datatype": "FP32" if n in FEATURES.numeric else "BYTES",
            "shape": [len(rows), 1],
            "data": [r[n] for r in rows],
        }
        for n in FEATURES.names
    ]


def test_v2_metadata_lists_every_output(shared_client: InProcessClient) -> None:
    meta = shared_client.get("/v2/models/diamond_price").json()
    assert [o["name"] for o in meta["outputs"]] == ["price", "price_low", "price_high"]


ORDERS = [["price_high"], ["price_low", "price"], ["price", "price_low", "price_high"], ["price_high", "price_low"]]


@pytest.mark.parametrize("wanted", ORDERS)
def test_v2_outputs_field_selects_and_orders_outputs(shared_client: InProcessClient, wanted: list[str]) -> None:
    r = shared_client.post(INFER, json={"inputs": v2_inputs(ROWS), "outputs": [{"name": n} for n in wanted]})
    assert r.status_code == 200, r.text
    outputs = r.json()["outputs"]
    assert [o["name"] for o in outputs] == wanted
    everything = {
        o["name"]: o["data"] for o in shared_client.post(INFER, json={"inputs": v2_inputs(ROWS)}).json()["outputs"]
    }
    for o in outputs:
        assert o["data"] == everything[o["name"]] and o["shape"] == [len(ROWS), 1]


def test_v2_binary_and_json_outputs_mix_per_output(shared_client: InProcessClient) -> None:
    request = {
        "inputs": v2_inputs(ROWS),
        "outputs": [{"name": "price_low", "parameters": {"binary_data": True}}, {"name": "price"}],
    }
    r = shared_client.post(INFER, json=request)
    assert r.status_code == 200
    split = int(r.headers["inference-header-content-length"])
    header = json.loads(r.content[:split])
    low_meta, price_meta = header["outputs"]
    assert low_meta["name"] == "price_low" and "data" not in low_meta
    low = np.frombuffer(r.content[split:], dtype="<f4")
    assert low_meta["parameters"]["binary_data_size"] == low.nbytes == 4 * len(ROWS)
    assert (low <= np.float32(price_meta["data"])).all()


@pytest.mark.parametrize(
    ("outputs", "message"),
    [
        ([{"name": "price_mid"}], "unknown output 'price_mid'"),
        ([{"name": "price"}, {"name": "price"}], "requested twice"),
        ([{"name": "price_low", "parameters": {"binary_data": "yes"}}], "output 'price_low'"),
    ],
)
def test_v2_bad_output_requests_are_400_naming_the_output(
    shared_client: InProcessClient, outputs: list[dict[str, Any]], message: str
) -> None:
    r = shared_client.post(INFER, json={"inputs": v2_inputs(ROWS), "outputs": outputs})
    assert r.status_code == 400 and message in r.json()["error"]
