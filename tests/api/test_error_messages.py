"""What a newcomer's mistakes are told, in process: every problem names the field, what it must be
and what was received (clipped, invisible characters shown), in one style for both APIs; a body of
the wrong shape gets one hint instead of a problem per field; an unknown version is "no version N"."""

from __future__ import annotations

import json
from typing import Any

import pytest

from inference.schema import MAX_BATCH
from tests.helpers import InProcessClient

GOOD = {"carat": 0.7, "cut": "Ideal", "color": "G", "clarity": "VS2"}
CUTS = "one of Fair, Good, Very Good, Premium, Ideal"
CARAT = "a number from 0.2 to 5.01"
COLORS = "one of J, I, H, G, F, E, D"
CLARITIES = "one of I1, SI2, SI1, VS2, VS1, VVS2, VVS1, IF"
INFER = "/v2/models/diamond_price/infer"


def problems(client: InProcessClient, route: str, body: Any) -> list[dict[str, str]]:
    r = client.post(route, content=json.dumps(body), headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    found: list[dict[str, str]] = r.json()["fields"]
    assert r.json()["error"] == "invalid request: " + "; ".join(f"{p['field']}: {p['problem']}" for p in found)
    return found


ONE_DIAMOND_CASES: dict[str, tuple[dict[str, Any], dict[str, str]]] = {
    "a number as a string": ({**GOOD, "carat": "0.7"}, {"carat": f"must be {CARAT}, got '0.7' (a string)"}),
    "a trailing space": ({**GOOD, "cut": "Ideal "}, {"cut": f"must be {CUTS}, got 'Ideal '"}),
    "lower case": ({**GOOD, "cut": "ideal"}, {"cut": f"must be {CUTS}, got 'ideal'"}),
    "a zero-width space": ({**GOOD, "color": "G\u200b"}, {"color": f"must be {COLORS}, got 'G\\u200b'"}),
    "a no-break space": ({**GOOD, "clarity": "VS2\u00a0"}, {"clarity": f"must be {CLARITIES}, got 'VS2\\xa0'"}),
    "out of range": ({**GOOD, "carat": 9}, {"carat": f"must be {CARAT}, got 9"}),
    "a boolean": ({**GOOD, "carat": True}, {"carat": f"must be {CARAT}, got true (a boolean)"}),
    "null": ({**GOOD, "cut": None}, {"cut": f"must be {CUTS}, got null"}),
    "a number for a grade": ({**GOOD, "cut": 3}, {"cut": f"must be {CUTS}, got 3 (a number)"}),
    "missing and unknown": (
        {"carat": 0.7, "cut": "Ideal", "colour": "G", "clarity": "VS2"},
        {"color": f"missing; must be {COLORS}", "colour": "unknown field"},
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", ONE_DIAMOND_CASES, ids=list(ONE_DIAMOND_CASES))
def test_each_problem_names_the_field_what_it_must_be_and_what_came(shared_client: InProcessClient, case: str) -> None:
    body, expected = ONE_DIAMOND_CASES[case]
    found = problems(shared_client, "/diamond_price", body)
    assert {p["field"]: p["problem"] for p in found} == expected
    in_batch = problems(shared_client, "/diamond_prices", {"diamonds": [GOOD, body]})
    assert {p["field"]: p["problem"] for p in in_batch} == {f"diamonds.1.{k}": v for k, v in expected.items()}


def test_a_long_value_is_clipped(shared_client: InProcessClient) -> None:
    (problem,) = problems(shared_client, "/diamond_price", {**GOOD, "cut": "Ideal" * 200})
    assert problem["problem"].startswith(f"must be {CUTS}, got 'IdealIdeal") and problem["problem"].endswith("...")
    assert len(problem["problem"]) < 120


SHAPES: dict[str, tuple[str, Any, dict[str, str]]] = {
    "one diamond as a batch": (
        "/diamond_prices",
        GOOD,
        {"(body)": 'one diamond, not a batch: wrap it in {"diamonds": [...]}, or POST it to /diamond_price'},
    ),
    "a bare array as a batch": (
        "/diamond_prices",
        [GOOD, GOOD],
        {"(body)": 'an array, not a batch: wrap it in {"diamonds": [...]}'},
    ),
    "a batch as one diamond": (
        "/diamond_price",
        {"diamonds": [GOOD]},
        {"(body)": 'a batch, not one diamond: POST {"diamonds": [...]} to /diamond_prices'},
    ),
    "an array as one diamond": (
        "/diamond_price",
        [GOOD],
        {"(body)": 'an array, not one diamond: send one object, or {"diamonds": [...]} to /diamond_prices'},
    ),
    "an empty batch": (
        "/diamond_prices", {"diamonds": []}, {"diamonds": f"must hold 1 to {MAX_BATCH} diamonds, got none"}
    ),
    "diamonds not an array": (
        "/diamond_prices",
        {"diamonds": GOOD},
        {"diamonds": f"must be an array of 1 to {MAX_BATCH} diamonds, got an object with 4 key(s)"},
    ),
    "a large bare array": (  # over the inline size: validated by the careful pass, same hint
        "/diamond_prices",
        [GOOD] * 100,
        {"(body)": 'an array, not a batch: wrap it in {"diamonds": [...]}'},
    ),
    "one too many": (
        "/diamond_prices",
        {"diamonds": [GOOD] * (MAX_BATCH + 1)},
        {"diamonds": f"must hold 1 to {MAX_BATCH} diamonds, got {MAX_BATCH + 1}"},
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", SHAPES, ids=list(SHAPES))
def test_a_body_of_the_wrong_shape_gets_one_hint(shared_client: InProcessClient, case: str) -> None:
    route, body, expected = SHAPES[case]
    r = shared_client.post(route, content=json.dumps(body), headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    assert {p["field"]: p["problem"] for p in r.json()["fields"]} == expected
    assert "error_count" not in r.json()


def test_v2_words_its_problems_the_same_way(shared_client: InProcessClient) -> None:
    inputs = [
        {"name": "carat", "shape": [2, 1], "datatype": "FP32", "data": [0.7, 1.0]},
        {"name": "cut", "shape": [2, 1], "datatype": "BYTES", "data": ["Ideal", "Ideal "]},
        {"name": "color", "shape": [2, 1], "datatype": "BYTES", "data": ["G", "G"]},
        {"name": "clarity", "shape": [2, 1], "datatype": "BYTES", "data": ["VS2", "VS2"]},
    ]
    r = shared_client.post(INFER, content=json.dumps({"inputs": inputs}), headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert r.json()["error"] == f"input 'cut': must be {CUTS}, got 'Ideal ' in row 1"
    inputs[0]["data"] = ["0.7", 1.0]
    r = shared_client.post(INFER, content=json.dumps({"inputs": inputs}), headers={"content-type": "application/json"})
    assert r.json()["error"] == "input 'carat': must be a number (datatype FP32), got '0.7' (a string) in row 0"


def test_an_unknown_version_has_no_report_because_it_does_not_exist(shared_client: InProcessClient) -> None:
    r = shared_client.get("/models/9/report")
    assert r.status_code == 404
    assert r.json()["error"] == "no version 9: the registry holds no diamond_price-v9.onnx"
    assert shared_client.get("/models/1/report").status_code == 200
