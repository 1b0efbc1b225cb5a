"""No client input produces a 500: generated bodies against the real app, in process."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inference.app import create_app
from inference.config import Settings
from inference.schema import FEATURES
from tests.helpers import InProcessClient, Project

ROUTES = ["/diamond_price", "/diamond_prices", "/v2/models/diamond_price/infer", "/update_model"]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=20,
)
field_values = st.one_of(
    st.sampled_from([v for values in FEATURES.categorical.values() for v in values]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(),
    st.text(max_size=8),
    st.none(),
    st.lists(st.integers(), max_size=3),
)
diamonds = st.fixed_dictionaries({}, optional={n: field_values for n in (*FEATURES.names, "extra")})
v2_inputs = st.lists(
    st.fixed_dictionaries(
        {},
        optional={
            "name": st.sampled_from([*FEATURES.names, "nope"]),
            "datatype": st.sampled_from(["FP32", "BYTES", "INT64", "FP64", "bogus"]),
            "shape": st.lists(st.integers(min_value=-2, max_value=4), max_size=3),
            "data": st.lists(field_values, max_size=4),
            "parameters": st.dictionaries(st.sampled_from(["binary_data_size", "x"]), st.integers(), max_size=1),
        },
    ),
    max_size=5,
)
bodies = st.one_of(
    json_values.map(json.dumps),
    diamonds.map(json.dumps),
    st.lists(diamonds, max_size=4).map(lambda rows: json.dumps({"diamonds": rows})),
    v2_inputs.map(lambda inputs: json.dumps({"inputs": inputs})),
    st.binary(max_size=64).map(lambda b: b.decode("latin-1")),
)
headers = st.fixed_dictionaries(
    {},
    optional={
        "content-type": st.sampled_from(["application/json", "text/plain", "application/octet-stream", ""]),
        "inference-header-content-length": st.sampled_from(["0", "5", "-1", "x", "99999"]),
        "content-encoding": st.sampled_from(["gzip", "deflate", "br"]),
        "authorization": st.sampled_from(["Bearer nope", "Basic x", ""]),
    },
)


@pytest.fixture(scope="module")
def client(trained: Project, tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessClient]:
    root = trained.copy(tmp_path_factory.mktemp("fuzz") / "p").root
    app = create_app(
        Settings(model_settings=root / "modelsettings.json", model_registry=root / "model_registry",
                 auto_reload=False, update_token="s3cret", static_dir=Path(root))
    )  # fmt: skip
    with InProcessClient(app) as c:
        yield c


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(route=st.sampled_from(ROUTES), body=bodies, extra=headers)
def test_no_generated_request_gets_a_server_error(
    client: InProcessClient, route: str, body: str, extra: dict[str, Any]
) -> None:
    sent = {"content-type": "application/json", **extra}
    r = client.post(route, content=body.encode("utf-8", "surrogatepass"), headers=sent)
    assert r.status_code < 500, (r.status_code, r.text)
    if r.status_code >= 400:
        assert r.headers["content-type"].startswith("application/json")
        assert isinstance(r.json()["error"], str) and r.json()["error"]
