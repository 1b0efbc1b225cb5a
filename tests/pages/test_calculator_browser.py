"""The price calculator in chromium, over the real service and over a plain static server.

A person's path: pick carat, cut, color and clarity, read the price (and the range) the page shows,
computed in the browser by onnxruntime-web; it must match ``/diamond_price`` for the same diamond.
Invalid input shows a message and no price, and no request leaves 127.0.0.1.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import numpy as np
import pytest
from playwright.sync_api import Page

from inference.modelsettings import read_verified_model
from inference.onnx_io import make_feeds, metadata, open_session
from tests.browser import chromium_page, static_server
from tests.helpers import ROOT

pytestmark = pytest.mark.slow

TOLERANCE = 0.01
READY_MS = 60_000
# Spread over the carat range and every category's ends; the first and last are the carat limits.
DIAMONDS: list[dict[str, Any]] = [
    {"carat": 0.2, "cut": "Fair", "color": "J", "clarity": "I1"},
    {"carat": 0.7, "cut": "Ideal", "color": "G", "clarity": "VS2"},
    {"carat": 1.01, "cut": "Premium", "color": "D", "clarity": "IF"},
    {"carat": 2.34, "cut": "Very Good", "color": "H", "clarity": "SI1"},
    {"carat": 5.01, "cut": "Good", "color": "E", "clarity": "VVS1"},
]
INVALID = {"": "Enter a carat", "5.02": "must be a number from", "0.19": "must be a number from", "-1": "from"}


@pytest.fixture(scope="module")
def service(repo_service: str) -> str:
    return repo_service


@pytest.fixture(scope="module")
def model() -> dict[str, Any]:
    """The current model's schema, outputs and an onnxruntime session, for the expected values."""
    _, blob = read_verified_model(ROOT / "modelsettings.json", ROOT / "model_registry")
    session = open_session(blob)
    meta = metadata(session)
    return {
        "session": session,
        "schema": json.loads(meta["feature_schema"]),
        "outputs": json.loads(meta.get("outputs", '["price"]')),
    }


def choose(page: Page, diamond: dict[str, Any], carat: str | None = None) -> None:
    """Pick the diamond in the form and wait until the page has answered for exactly that input."""
    for name in ("cut", "color", "clarity"):
        page.select_option(f"#{name}", diamond[name])
    text = str(diamond["carat"]) if carat is None else carat
    page.fill("#carat", text)
    row = {"carat": None if text == "" else float(text), **{k: diamond[k] for k in ("cut", "color", "clarity")}}
    page.wait_for_function(
        "(row) => { const r = document.getElementById('diamond').dataset.row;"
        " return r !== undefined && JSON.stringify(JSON.parse(r)) === JSON.stringify(row); }",
        arg=row,
    )


def dollars(text: str) -> float:
    assert re.fullmatch(r"\$[\d,]+\.\d\d", text), f"not a price: {text!r}"
    return float(text[1:].replace(",", ""))


def check_page(page: Page, base: str, service: str, model: dict[str, Any]) -> None:
    page.goto(base)
    page.wait_for_selector("body[data-state=ready]", timeout=READY_MS)
    for name, values in model["schema"]["categorical"].items():
        assert page.locator(f"#{name} option").all_inner_texts() == values, name
    for diamond in DIAMONDS:
        choose(page, diamond)
        api = httpx.post(f"{service}/diamond_price", json=diamond, timeout=10).json()["price"]
        shown = dollars(page.locator("#price").inner_text())
        raw = float(page.locator("#price").get_attribute("data-value") or "nan")
        assert abs(shown - api) <= TOLERANCE and abs(raw - api) <= TOLERANCE, (diamond, shown, raw, api)
        assert page.locator("#message").inner_text() == ""
        names = ["price_low", "price_high"]
        if set(names) <= set(model["outputs"]):
            feeds = make_feeds({k: [v] for k, v in diamond.items()})
            low, high = (float(v[0, 0]) for v in model["session"].run(names, feeds))
            text = page.locator("#range").inner_text()
            shown_low, shown_high = (dollars(t) for t in re.findall(r"\$[\d,]+\.\d\d", text))
            assert abs(shown_low - low) <= TOLERANCE and abs(shown_high - high) <= TOLERANCE, text
            assert shown_low <= shown <= shown_high
        else:
            assert page.locator("#range").is_hidden()
    for carat, words in INVALID.items():
        choose(page, DIAMONDS[1], carat=carat)
        assert words in page.locator("#message").inner_text(), carat
        assert page.locator("#price").inner_text() == "" and page.locator("#range").is_hidden(), carat
    choose(page, DIAMONDS[1])
    assert page.locator("#message").inner_text() == "" and page.locator("#price").inner_text() != ""


def test_the_calculator_prices_like_the_api(service: str, model: dict[str, Any], tmp_path: Path) -> None:
    with chromium_page(tmp_path / "profile") as (page, watch):
        check_page(page, f"{service}/calculator", service, model)
        assert page.url == f"{service}/calculator/?{urlencode(DIAMONDS[1])}"  # the address follows the form
        assert not np.isnan(float(page.locator("#price").get_attribute("data-value") or "nan"))
        watch.check()
        loaded = {url.removeprefix(service) for url in watch.requests}
        assert "/modelsettings.json" in loaded and any(u.endswith(".wasm") for u in loaded), loaded


def test_the_same_page_works_from_a_static_server_at_the_repository_root(
    service: str, model: dict[str, Any], tmp_path: Path
) -> None:
    with static_server(ROOT) as base, chromium_page(tmp_path / "profile") as (page, watch):
        check_page(page, f"{base}/examples/web/", service, model)
        watch.check()
        assert all(url.startswith(base) for url in watch.requests), watch.requests
