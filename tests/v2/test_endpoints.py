"""The Open Inference Protocol (V2) API: Triton's reference client against a real server, and every
error path in process. Prices must equal ``/diamond_prices`` for the same rows."""

from __future__ import annotations

import gzip
import json
import struct
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, Protocol

import httpx
import numpy as np
import pytest
from starlette.testclient import TestClient

from devtools.server import running_server
from inference.app import create_app
from inference.schema import FEATURES
from inference.v2 import bodies as v2_models
from tests.helpers import InProcessClient, Project, repo_features, settings_for

if TYPE_CHECKING:  # imported where used: only the slow tests run the reference client
    import tritonclient.http as httpclient

MODEL = "diamond_price"
INFER = f"/v2/models/{MODEL}/infer"
HEADER = "Inference-Header-Content-Length"
Row = dict[str, Any]


def db_rows(n: int, seed: int = 0) -> list[Row]:
    """A seeded random sample of the repo's diamonds (all inside the feature schema)."""
    data = repo_features()
    picked = np.random.default_rng(seed).choice(len(data), size=n, replace=False)
    return [dict(zip(FEATURES.names, data[i], strict=True)) for i in picked]


def api_prices(client: httpx.Client | InProcessClient | TestClient, rows: list[Row]) -> list[float]:
    """What ``/diamond_prices`` says for ``rows``."""
    r = client.post("/diamond_prices", json={"diamonds": rows})
    assert r.status_code == 200, r.text
    prices: list[float] = r.json()["prices"]
    return prices


def json_prices(client: httpx.Client | InProcessClient | TestClient, rows: list[Row]) -> np.ndarray:
    """``/diamond_prices`` as the FP32 ``[N, 1]`` tensor V2 must return."""
    return np.asarray(api_prices(client, rows), dtype=np.float32).reshape(-1, 1)


def tensors(rows: list[Row], shape2: bool = True) -> list[dict[str, Any]]:
    """The rows as V2 JSON input tensors."""
    shape = [len(rows), 1] if shape2 else [len(rows)]
    return [
        {
            "name": n,
            "shape": shape,
            "datatype": "FP32" if n in FEATURES.numeric else "BYTES",
            "data": [r[n] for r in rows],
        }
        for n in FEATURES.names
    ]


def fp32(values: list[float]) -> bytes:
    return np.asarray(values, dtype="<f4").tobytes()


def strings(values: list[str | bytes]) -> bytes:
    parts = [v if isinstance(v, bytes) else v.encode() for v in values]
    return b"".join(struct.pack("<I", len(p)) + p for p in parts)


def binary_request(rows: list[Row], **extra: Any) -> tuple[bytes, dict[str, str]]:
    """A request with every input as binary tensor data, the way the reference client sends it."""
    blobs = [
        fp32([r[n] for r in rows]) if n in FEATURES.numeric else strings([r[n] for r in rows]) for n in FEATURES.names
    ]
    inputs = tensors(rows)
    for tensor, blob in zip(inputs, blobs, strict=True):
        del tensor["data"]
        tensor["parameters"] = {"binary_data_size": len(blob)}
    return with_binary({"inputs": inputs, **extra}, blobs)


def with_binary(header: dict[str, Any], blobs: list[bytes]) -> tuple[bytes, dict[str, str]]:
    head = json.dumps(header).encode()
    return head + b"".join(blobs), {HEADER: str(len(head)), "content-type": "application/octet-stream"}


class Reply(Protocol):
    """What is read of a response: httpx's, or the TestClient's."""

    @property
    def headers(self) -> Mapping[str, str]: ...

    @property
    def content(self) -> bytes: ...


def read_binary_outputs(r: Reply) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The JSON header and each binary output, in the order the header lists them."""
    split = int(r.headers[HEADER])
    header = json.loads(r.content[:split])
    found, offset = {}, split
    for out in header["outputs"]:
        if "data" in out:
            continue
        size = out["parameters"]["binary_data_size"]
        found[out["name"]] = np.frombuffer(r.content[offset : offset + size], dtype="<f4").reshape(out["shape"])
        offset += size
    assert offset == len(r.content)
    return header, found


def read_binary_price(r: Reply) -> tuple[dict[str, Any], np.ndarray]:
    header, found = read_binary_outputs(r)
    return header, found["price"]


# --- the reference client against a real server process ---------------------------------------------


def triton_inputs(rows: list[Row], binary: bool, shape2: bool = True) -> list[httpclient.InferInput]:
    import tritonclient.http as httpclient

    inputs = []
    for n in FEATURES.names:
        if n in FEATURES.numeric:
            array = np.asarray([r[n] for r in rows], dtype=np.float32)
        else:
            array = np.asarray([r[n].encode() for r in rows], dtype=np.object_)
        if shape2:
            array = array.reshape(-1, 1)
        tensor = httpclient.InferInput(n, list(array.shape), "FP32" if n in FEATURES.numeric else "BYTES")
        tensor.set_data_from_numpy(array, binary_data=binary)
        inputs.append(tensor)
    return inputs


@pytest.fixture
def triton(served: Project) -> Iterator[tuple[httpclient.InferenceServerClient, httpx.Client]]:
    import tritonclient.http as httpclient

    env = {"MODEL_SETTINGS": str(served.settings), "MODEL_REGISTRY": str(served.registry)}
    with running_server(env) as (base, _):
        client = httpclient.InferenceServerClient(url=base.removeprefix("http://"), network_timeout=30)
        try:
            with httpx.Client(base_url=base, timeout=30) as http:
                yield client, http
        finally:
            client.close()


@pytest.mark.slow
def test_reference_client_health_and_metadata(triton: tuple[httpclient.InferenceServerClient, httpx.Client]) -> None:
    from tritonclient.utils import InferenceServerException

    client, _ = triton
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready(MODEL) and client.is_model_ready(MODEL, "1")
    assert not client.is_model_ready(MODEL, "2") and not client.is_model_ready("other")
    server = client.get_server_metadata()
    assert server["name"] == "diamond-price" and "binary_tensor_data" in server["extensions"]
    meta = client.get_model_metadata(MODEL)
    assert meta == client.get_model_metadata(MODEL, "1")
    assert meta["name"] == MODEL and meta["versions"] == ["1"] and meta["platform"] == "onnxruntime_onnx"
    assert [(t["name"], t["datatype"], t["shape"]) for t in meta["inputs"]] == [
        ("carat", "FP32", [-1, 1]),
        ("cut", "BYTES", [-1, 1]),
        ("color", "BYTES", [-1, 1]),
        ("clarity", "BYTES", [-1, 1]),
    ]
    assert meta["outputs"] == [
        {"name": n, "datatype": "FP32", "shape": [-1, 1]} for n in ("price", "price_low", "price_high")
    ]
    for name, version in (("other", ""), (MODEL, "2")):
        with pytest.raises(InferenceServerException) as err:
            client.get_model_metadata(name, version)
        assert err.value.status() == "404"


@pytest.mark.slow
def test_reference_client_prices_1000_rows_like_the_json_api(
    triton: tuple[httpclient.InferenceServerClient, httpx.Client],
) -> None:
    import tritonclient.http as httpclient

    client, http = triton
    rows = db_rows(1000)
    expected = json_prices(http, rows)
    # The client's defaults: binary inputs, and binary_data_output for all outputs.
    result = client.infer(MODEL, triton_inputs(rows, binary=True), request_id="batch-1")
    response = result.get_response()
    assert response["id"] == "batch-1" and response["model_version"] == "1"
    assert response["outputs"][0]["parameters"]["binary_data_size"] == 4000
    np.testing.assert_array_equal(result.as_numpy("price"), expected)
    # JSON both ways.
    result = client.infer(
        MODEL,
        triton_inputs(rows, binary=False),
        model_version="1",
        outputs=[httpclient.InferRequestedOutput("price", binary_data=False)],
    )
    assert "data" in result.get_response()["outputs"][0]
    np.testing.assert_array_equal(result.as_numpy("price"), expected)
    # 1-D inputs, binary in, JSON out.
    result = client.infer(
        MODEL,
        triton_inputs(rows, binary=True, shape2=False),
        outputs=[httpclient.InferRequestedOutput("price", binary_data=False)],
    )
    np.testing.assert_array_equal(result.as_numpy("price"), expected)
    # Compressed request bodies, as the client can send them.
    for algorithm in ("gzip", "deflate"):
        result = client.infer(MODEL, triton_inputs(rows[:10], binary=True), request_compression_algorithm=algorithm)
        np.testing.assert_array_equal(result.as_numpy("price"), expected[:10])


@pytest.mark.slow
def test_reference_client_sees_errors_as_4xx(triton: tuple[httpclient.InferenceServerClient, httpx.Client]) -> None:
    from tritonclient.utils import InferenceServerException

    client, _ = triton
    rows = db_rows(3)
    rows[1]["cut"] = "Superb"
    with pytest.raises(InferenceServerException) as err:
        client.infer(MODEL, triton_inputs(rows, binary=True))
    assert err.value.status() == "400" and "input 'cut'" in str(err.value.message()) and "Superb" in str(err.value)
    with pytest.raises(InferenceServerException) as err:
        client.infer(MODEL, triton_inputs(db_rows(3), binary=True), model_version="7")
    assert err.value.status() == "404"
    with pytest.raises(InferenceServerException) as err:
        client.infer(MODEL, triton_inputs(db_rows(3), binary=True)[:3])
    assert err.value.status() == "400" and "clarity" in str(err.value.message())


# --- in process: every route, every error -------------------------------------------------------------


def test_health_and_metadata_match_their_documented_models(shared_client: InProcessClient) -> None:
    assert v2_models.ServerLive.model_validate(shared_client.get("/v2/health/live").json()).live
    assert v2_models.ServerReady.model_validate(shared_client.get("/v2/health/ready").json()).ready
    server = v2_models.ServerMetadata.model_validate(shared_client.get("/v2").json())
    assert server.extensions == ["binary_tensor_data"]
    for path in (f"/v2/models/{MODEL}", f"/v2/models/{MODEL}/versions/1"):
        meta = v2_models.ModelMetadata.model_validate(shared_client.get(path).json())
        assert meta.versions == ["1"] and [t.name for t in meta.inputs] == list(FEATURES.names)
    for path in (f"/v2/models/{MODEL}/ready", f"/v2/models/{MODEL}/versions/1/ready"):
        r = shared_client.get(path)
        assert r.status_code == 200 and r.json() == {"name": MODEL, "ready": True}


@pytest.mark.parametrize(
    "path",
    [
        "/v2/models/other",
        "/v2/models/other/ready",
        f"/v2/models/{MODEL}/versions/2",
        f"/v2/models/{MODEL}/versions/2/ready",
        f"/v2/models/{MODEL}/versions/v1/ready",
    ],
)
def test_other_models_and_versions_are_404(shared_client: InProcessClient, path: str) -> None:
    r = shared_client.get(path)
    assert r.status_code == 404 and r.json()["error"]
    r = shared_client.post((path.removesuffix("/ready")) + "/infer", json={"inputs": tensors(db_rows(1))})
    assert r.status_code == 404 and ("other" in r.json()["error"] or "version" in r.json()["error"])


def test_without_a_model_nothing_is_ready(served: Project) -> None:
    served.settings.unlink()
    with TestClient(create_app(settings_for(served))) as c:
        assert c.get("/v2/health/live").status_code == 200
        assert c.get("/v2").status_code == 200
        r = c.get("/v2/health/ready")
        assert r.status_code == 503 and r.json() == {"ready": False}
        for path in (f"/v2/models/{MODEL}/ready", f"/v2/models/{MODEL}/versions/1/ready"):
            r = c.get(path)
            assert r.status_code == 503 and r.json() == {"name": MODEL, "ready": False}
        assert c.get(f"/v2/models/{MODEL}").status_code == 503
        r = c.post(INFER, json={"inputs": tensors(db_rows(1))})
        assert r.status_code == 503 and "no model is loaded" in r.json()["error"]


@pytest.mark.parametrize("rows", [1, 64, 1000])
def test_json_and_binary_prices_equal_the_json_api(shared_client: InProcessClient, rows: int) -> None:
    sample = db_rows(rows, seed=rows)
    expected = json_prices(shared_client, sample)
    for shape2 in (True, False):
        r = shared_client.post(INFER, json={"id": "x", "inputs": tensors(sample, shape2)})
        assert r.status_code == 200, r.text
        response = v2_models.InferenceResponse.model_validate(r.json())
        assert response.id == "x" and response.model_name == MODEL and response.model_version == "1"
        assert [o.name for o in response.outputs] == ["price", "price_low", "price_high"]
        assert all(o.datatype == "FP32" and o.shape == [rows, 1] for o in response.outputs)
        price, low, high = (o.data for o in response.outputs)
        assert price == api_prices(shared_client, sample)
        ranges = shared_client.post("/diamond_prices", json={"diamonds": sample}).json()["price_ranges"]
        assert low == [r["low"] for r in ranges] and high == [r["high"] for r in ranges]
    body, headers = binary_request(sample, parameters={"binary_data_output": True})
    r = shared_client.post(INFER, content=body, headers=headers)
    assert r.status_code == 200 and r.headers["content-type"] == "application/octet-stream"
    header, prices = read_binary_price(r)
    assert "id" not in header
    np.testing.assert_array_equal(prices, expected)


def test_nested_json_data_is_accepted(shared_client: InProcessClient) -> None:
    rows = db_rows(5)
    inputs = tensors(rows)
    for tensor in inputs:
        tensor["data"] = [[x] for x in tensor["data"]]
    r = shared_client.post(INFER, json={"inputs": inputs})
    assert r.status_code == 200
    np.testing.assert_array_equal(
        np.float32(r.json()["outputs"][0]["data"]).reshape(-1, 1), json_prices(shared_client, rows)
    )


@pytest.mark.parametrize(
    ("parameters", "outputs", "binary"),
    [
        (None, None, False),
        ({"binary_data_output": True}, None, True),
        ({"binary_data_output": True}, [], True),
        ({"binary_data_output": False}, [{"name": "price"}], False),
        ({"binary_data_output": True}, [{"name": "price"}], True),
        ({"binary_data_output": True}, [{"name": "price", "parameters": {"binary_data": False}}], False),
        (None, [{"name": "price", "parameters": {"binary_data": True}}], True),
        ({"binary_data_output": False, "priority": 1}, [{"name": "price", "parameters": {"binary_data": True}}], True),
    ],
)
def test_outputs_come_back_as_asked(
    shared_client: InProcessClient, parameters: dict[str, Any] | None, outputs: list[Any] | None, binary: bool
) -> None:
    rows = db_rows(3)
    request: dict[str, Any] = {"inputs": tensors(rows)}
    if parameters is not None:
        request["parameters"] = parameters
    if outputs is not None:
        request["outputs"] = outputs
    r = shared_client.post(INFER, json=request)
    assert r.status_code == 200
    if binary:
        _, prices = read_binary_price(r)
    else:
        assert HEADER.lower() not in r.headers and r.headers["content-type"] == "application/json"
        prices = np.float32(r.json()["outputs"][0]["data"]).reshape(-1, 1)
    np.testing.assert_array_equal(prices, json_prices(shared_client, rows))


ROWS = [
    {"carat": 0.7, "cut": "Ideal", "color": "G", "clarity": "VS2"},
    {"carat": 1.01, "cut": "Premium", "color": "E", "clarity": "SI1"},
]


def changed(input_name: str, **fields: Any) -> dict[str, Any]:
    """A valid JSON request whose input ``input_name`` has ``fields`` replaced (None removes one)."""
    inputs = tensors(ROWS)
    for tensor in inputs:
        if tensor["name"] == input_name:
            tensor.update(fields)
            for key in [k for k, v in fields.items() if v is None]:
                del tensor[key]
    return {"inputs": inputs}


def without(name: str) -> dict[str, Any]:
    return {"inputs": [t for t in tensors(ROWS) if t["name"] != name]}


JSON_ERRORS: dict[str, tuple[Any, str]] = {
    "unknown category": (changed("cut", data=["Ideal", "Superb"]), "input 'cut': must be one of"),
    "category case": (changed("color", data=["g", "E"]), "input 'color'"),
    "carat too small": (changed("carat", data=[0.1, 1.0]), "input 'carat': must be a finite number from 0.2 to 5.01"),
    "carat too large": (
        changed("carat", data=[0.7, 5.02]),
        "must be a finite number from 0.2 to 5.01, got 5.02 in row 1",
    ),
    "carat overflows FP32": (changed("carat", data=[1e39, 1.0]), "input 'carat'"),
    "carat string": (
        changed("carat", data=["0.7", 1.0]),
        "input 'carat': must be a number (datatype FP32), got '0.7' (a string) in row 0",
    ),
    "carat bool": (
        changed("carat", data=[True, 1.0]),
        "input 'carat': must be a number (datatype FP32), got true (a boolean) in row 0",
    ),
    "carat null": (
        changed("carat", data=[None, 1.0]),
        "input 'carat': must be a number (datatype FP32), got null in row 0",
    ),
    "cut number": (
        changed("cut", data=[3, "Good"]),
        "input 'cut': must be a string (datatype BYTES), got 3 (a number) in row 0",
    ),
    "cut object": (
        changed("cut", shape=[2], data=["Ideal", {"Good": 1}]),
        "input 'cut': must be a string (datatype BYTES), got an object",
    ),
    "cut nested for 1-d": (
        changed("cut", shape=[2], data=[["Ideal"], "Good"]),
        "input 'cut': must be a string (datatype BYTES), got an array of 1 item(s) in row 0",
    ),
    "missing input": (without("clarity"), "missing input(s) clarity"),
    "unknown input": ({"inputs": [*tensors(ROWS), {**tensors(ROWS)[0], "name": "depth"}]}, "unknown input 'depth'"),
    "twice": ({"inputs": [*tensors(ROWS), tensors(ROWS)[1]]}, "input 'cut' is given twice"),
    "datatype FP64": (changed("carat", datatype="FP64"), "input 'carat': datatype must be FP32, got 'FP64'"),
    "datatype INT32": (changed("clarity", datatype="INT32"), "input 'clarity': datatype must be BYTES"),
    "shape 2x2": (changed("carat", shape=[1, 2]), "input 'carat': shape [1, 2] must be [N] or [N, 1]"),
    "shape 3-d": (changed("carat", shape=[2, 1, 1]), "input 'carat': shape [2, 1, 1]"),
    "shape empty": (changed("carat", shape=[]), "input 'carat': shape []"),
    "zero rows": ({"inputs": tensors([])}, "has no rows"),
    "negative dim": (changed("cut", shape=[-2, 1]), "input 'cut': shape.0"),
    "string dim": (changed("cut", shape=["2", 1]), "input 'cut': shape.0"),
    "count vs shape": (changed("cut", shape=[3, 1]), "inputs disagree on the number of rows: carat 2, cut 3"),
    "data vs shape": (changed("cut", data=["Ideal"]), "input 'cut': data has 1 value(s) but shape [2, 1] needs 2"),
    "huge N": (
        {"inputs": [{**t, "shape": [10**12, 1]} for t in tensors(ROWS)]},
        "input 'carat': 1000000000000 rows is more than the 10000",
    ),
    "nested wrong": (changed("carat", data=[[0.7, 1.0]]), "input 'carat': nested data must hold one value per row"),
    "nested deeper": (
        changed("carat", data=[[[0.7]], [[1.0]]]),
        "input 'carat': must be a number (datatype FP32), got an array of 1 item(s) in row 0",
    ),
    "nested for 1-d": (
        changed("carat", shape=[2], data=[[0.7], [1.0]]),
        "input 'carat': must be a number (datatype FP32), got an array of 1 item(s)",
    ),
    "data not a list": (changed("carat", data=0.7), "input 'carat': data"),
    "no data": (changed("carat", data=None), "input 'carat': has no data"),
    "data and binary": (changed("carat", parameters={"binary_data_size": 8}), "has both data and binary_data_size"),
    "binary without header": (
        changed("carat", data=None, parameters={"binary_data_size": 8}),
        "input 'carat': binary_data_size is 8 but only 0 byte(s)",
    ),
    "binary size bool": (changed("carat", data=None, parameters={"binary_data_size": True}), "binary_data_size"),
    "binary size negative": (changed("carat", data=None, parameters={"binary_data_size": -4}), "binary_data_size"),
    "name not a string": (changed("carat", name=1), "inputs.0.name"),
    "no inputs": ({"inputs": []}, "inputs"),
    "inputs missing": ({"id": "1"}, "inputs: missing"),
    "inputs not a list": ({"inputs": {"carat": 1}}, "inputs"),
    "body not an object": ([1, 2], "(body)"),
    "id not a string": ({**changed("cut"), "id": 42}, "id"),
    "parameter not a scalar": ({**changed("cut"), "parameters": {"x": [1]}}, "parameters.x"),
    "binary_data_output not bool": (
        {**changed("cut"), "parameters": {"binary_data_output": "yes"}},
        "binary_data_output",
    ),
    "binary_data not bool": (
        {**changed("cut"), "outputs": [{"name": "price", "parameters": {"binary_data": 1}}]},
        "output 'price': parameter 'binary_data'",
    ),
    "unknown output": ({**changed("cut"), "outputs": [{"name": "cost"}]}, "unknown output 'cost'"),
    "output twice": ({**changed("cut"), "outputs": [{"name": "price"}, {"name": "price"}]}, "requested twice"),
    "classification": (
        {**changed("cut"), "outputs": [{"name": "price", "parameters": {"classification": 2}}]},
        "'classification' is not supported",
    ),
    "shared memory": (
        {**changed("cut"), "outputs": [{"name": "price", "parameters": {"shared_memory_region": "r"}}]},
        "'shared_memory_region' is not supported",
    ),
}


@pytest.mark.parametrize("case", JSON_ERRORS)
def test_json_request_errors_are_400_naming_the_problem(shared_client: InProcessClient, case: str) -> None:
    body, expected = JSON_ERRORS[case]
    r = shared_client.post(INFER, json=body)
    assert r.status_code == 400, r.text
    assert r.headers["content-type"] == "application/json"
    assert expected in r.json()["error"]


RAW_ERRORS: dict[str, tuple[bytes, str]] = {
    "empty": (b"", "malformed JSON"),
    "truncated": (b'{"inputs": [', "malformed JSON"),
    "not UTF-8": (b'{"id": "\xff"}', "malformed JSON"),
    "NaN token": (json.dumps(changed("carat")).replace("0.7", "NaN").encode(), "NaN is not valid JSON"),
    "Infinity token": (json.dumps(changed("carat")).replace("0.7", "-Infinity").encode(), "-Infinity"),
    "1e999": (json.dumps(changed("carat")).replace("0.7", "1e999").encode(), "got inf in row 0"),
    "huge integer": (json.dumps(changed("carat")).replace("0.7", "9" * 400).encode(), "too large for FP32"),
    "too many digits": (json.dumps(changed("carat")).replace("0.7", "9" * 5000).encode(), "malformed JSON"),
    "deep nesting": (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
}


@pytest.mark.parametrize("case", RAW_ERRORS)
def test_malformed_json_is_400(shared_client: InProcessClient, case: str) -> None:
    body, expected = RAW_ERRORS[case]
    r = shared_client.post(INFER, content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text
    assert expected in r.json()["error"]


def binary_case(case: str) -> tuple[bytes, dict[str, str]]:
    """A binary request for ROWS broken in one way."""
    carat, cut = fp32([0.7, 1.01]), strings(["Ideal", "Premium"])
    rest = [strings(["G", "E"]), strings(["VS2", "SI1"])]
    inputs = tensors(ROWS)
    for tensor in inputs:
        del tensor["data"]
    sizes = [len(carat), len(cut), *map(len, rest)]
    blobs = [carat, cut, *rest]
    if case == "carat NaN":
        blobs[0] = fp32([0.7, float("nan")])
    elif case == "carat inf":
        blobs[0] = fp32([float("inf"), 1.0])
    elif case == "carat short":
        blobs[0], sizes[0] = carat[:6], 6
    elif case == "non-UTF-8":
        blobs[1] = strings([b"\xffIdeal", "Premium"])
        sizes[1] = len(blobs[1])
    elif case == "unknown category":
        blobs[1] = strings(["Ideal", "Superb"])
        sizes[1] = len(blobs[1])
    elif case == "element overruns":
        blobs[1] = struct.pack("<I", 1000) + b"Ideal" + strings(["Premium"])
    elif case == "length prefix cut":
        blobs[1] = strings(["Ideal"]) + b"\x07\x00"
        sizes[1] = len(blobs[1])
    elif case == "too many elements":
        blobs[1] = strings(["Ideal", "Premium", "Good"])
        sizes[1] = len(blobs[1])
    elif case == "too few elements":
        blobs[1] = strings(["Ideal"])
        sizes[1] = len(blobs[1])
    elif case == "sizes exceed the data":
        sizes[3] += 10
    elif case == "unclaimed bytes":
        blobs.append(b"extra")
    for tensor, size in zip(inputs, sizes, strict=True):
        tensor["parameters"] = {"binary_data_size": size}
    return with_binary({"inputs": inputs}, blobs)


BINARY_ERRORS = {
    "carat NaN": "input 'carat': must be a finite number from 0.2 to 5.01, got nan in row 1",
    "carat inf": "input 'carat': must be a finite number from 0.2 to 5.01, got inf in row 0",
    "carat short": "input 'carat': FP32 binary data for 2 value(s) must be 8 bytes, got 6",
    "non-UTF-8": "input 'cut': BYTES element 0 is not valid UTF-8",
    "unknown category": "input 'cut': must be one of Fair, Good, Very Good, Premium, Ideal, got 'Superb' in row 1",
    "element overruns": "input 'cut': BYTES element 0 declares 1000 bytes",
    "length prefix cut": "input 'cut': BYTES element 1 is truncated in its 4-byte length prefix",
    "too many elements": "input 'cut': binary data holds more than 2 BYTES element(s), its shape says 2",
    "too few elements": "input 'cut': binary data holds 1 BYTES element(s), its shape says 2",
    "sizes exceed the data": "input 'clarity': binary_data_size is 24 but only 14 byte(s)",
    "unclaimed bytes": "5 byte(s) of binary data follow the JSON but no input claims them",
}


@pytest.mark.parametrize("case", BINARY_ERRORS)
def test_binary_request_errors_are_400_naming_the_problem(shared_client: InProcessClient, case: str) -> None:
    body, headers = binary_case(case)
    r = shared_client.post(INFER, content=body, headers=headers)
    assert r.status_code == 400, r.text
    assert BINARY_ERRORS[case] in r.json()["error"]


@pytest.mark.parametrize("value", ["abc", "0", "-5", "1_0", "99999", " 12x", ""])
def test_bad_header_length_is_400(shared_client: InProcessClient, value: str) -> None:
    body, headers = binary_request(ROWS)
    r = shared_client.post(INFER, content=body, headers={**headers, HEADER: value})
    assert r.status_code == 400
    assert HEADER in r.json()["error"]


def test_header_length_inside_the_json_is_400(shared_client: InProcessClient) -> None:
    body, headers = binary_request(ROWS)
    r = shared_client.post(INFER, content=body, headers={**headers, HEADER: str(int(headers[HEADER]) - 3)})
    assert r.status_code == 400 and "malformed JSON" in r.json()["error"]


def test_no_truncation_or_corruption_of_a_binary_body_is_a_500(shared_client: InProcessClient) -> None:
    body, headers = binary_request(db_rows(4), id="fuzz")
    split = int(headers[HEADER])
    for end in range(len(body)):
        r = shared_client.post(INFER, content=body[:end], headers=headers)
        assert r.status_code == 400, (end, r.text)
    rng = np.random.default_rng(0)
    for _ in range(300):
        mutated = bytearray(body)
        for at in rng.integers(split if rng.random() < 0.7 else 0, len(body), size=int(rng.integers(1, 4))):
            mutated[at] = int(rng.integers(0, 256))
        r = shared_client.post(INFER, content=bytes(mutated), headers=headers)
        assert r.status_code in (200, 400), r.text
        assert r.headers["content-type"] in ("application/json", "application/octet-stream")


@pytest.mark.parametrize(
    ("headers", "status", "expected"),
    [
        ({"content-type": "text/plain"}, 415, "Content-Type must be application/json"),
        ({"content-type": "multipart/form-data; boundary=x"}, 415, "Content-Type"),
        ({"content-type": "application/json", "content-encoding": "br"}, 415, "Content-Encoding 'br'"),
        ({"content-type": "application/json", "content-encoding": "gzip"}, 400, "not valid gzip data"),
    ],
)
def test_content_type_and_encoding(
    shared_client: InProcessClient, headers: dict[str, str], status: int, expected: str
) -> None:
    r = shared_client.post(INFER, content=json.dumps(changed("cut")).encode(), headers=headers)
    assert r.status_code == status
    assert expected in r.json()["error"]


def test_bodies_without_content_type_and_compressed_bodies_are_priced(shared_client: InProcessClient) -> None:
    raw = json.dumps(changed("cut")).encode()
    assert shared_client.post(INFER, content=raw).status_code == 200
    packed = gzip.compress(raw)
    r = shared_client.post(INFER, content=packed, headers={"content-encoding": "gzip"})
    assert r.status_code == 200
    r = shared_client.post(INFER, content=packed[:-5], headers={"content-encoding": "gzip"})
    assert r.status_code == 400 and "truncated" in r.json()["error"]


def test_body_limits_hold_for_compressed_and_plain_bodies(served: Project) -> None:
    with TestClient(create_app(settings_for(served, max_body_bytes=2000))) as c:
        bomb = gzip.compress(b" " * 100_000)
        r = c.post(INFER, content=bomb, headers={"content-encoding": "gzip", "content-type": "application/json"})
        assert r.status_code == 413 and "2000 bytes" in r.json()["error"]
        body, headers = binary_request(db_rows(100))
        r = c.post(INFER, content=body, headers=headers)
        assert r.status_code == 413


def test_wrong_methods_are_405(shared_client: InProcessClient) -> None:
    assert shared_client.get(INFER).status_code == 405
    assert shared_client.post("/v2/health/ready").status_code == 405


def test_openapi_documents_the_v2_routes(shared_client: InProcessClient) -> None:
    from openapi_spec_validator import validate

    spec = shared_client.get("/openapi.json").json()
    validate(spec)
    for path in (
        "/v2",
        "/v2/health/live",
        "/v2/health/ready",
        "/v2/models/{model_name}",
        "/v2/models/{model_name}/ready",
        "/v2/models/{model_name}/infer",
        "/v2/models/{model_name}/versions/{model_version}",
        "/v2/models/{model_name}/versions/{model_version}/ready",
        "/v2/models/{model_name}/versions/{model_version}/infer",
    ):
        assert path in spec["paths"]
    infer = spec["paths"]["/v2/models/{model_name}/infer"]["post"]
    assert set(infer["requestBody"]["content"]) == {"application/json", "application/octet-stream"}
    assert "InferenceRequest" in spec["components"]["schemas"]
