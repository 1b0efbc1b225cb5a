"""The calculator in chromium as a person shares it: a decimal comma is a decimal point, a link's
query string fills the form (what does not fit is named on the page, not used), and the address bar
follows the form, so that the link it shows opens the same price."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from playwright.sync_api import Page

from tests.browser import chromium_page, static_server
from tests.helpers import ROOT

pytestmark = pytest.mark.slow

READY_MS = 60_000
NAMES = ("carat", "cut", "color", "clarity")


@pytest.fixture(scope="module")
def service(repo_service: str) -> str:
    return repo_service


def open_ready(page: Page, url: str) -> None:
    page.goto(url)
    page.wait_for_selector("body[data-state=ready]", timeout=READY_MS)


def form(page: Page) -> dict[str, str]:
    return {name: page.input_value(f"#{name}") for name in NAMES}


def answered(page: Page, diamond: dict[str, Any]) -> None:
    """Wait until the page has answered for exactly ``diamond``."""
    page.wait_for_function(
        "(row) => { const r = document.getElementById('diamond').dataset.row;"
        " return r !== undefined && JSON.stringify(JSON.parse(r)) === JSON.stringify(row); }",
        arg=diamond,
    )


def shown_price(page: Page) -> float:
    text = page.locator("#price").inner_text()
    assert re.fullmatch(r"\$[\d,]+\.\d\d", text), f"not a price: {text!r} ({page.locator('#message').inner_text()})"
    return float(text[1:].replace(",", ""))


def api_price(service: str, diamond: dict[str, Any]) -> float:
    price: float = httpx.post(f"{service}/diamond_price", json=diamond, timeout=10).json()["price"]
    return price


def test_a_link_fills_the_form_and_the_address_follows_what_is_typed(service: str, tmp_path: Path) -> None:
    with chromium_page(tmp_path / "profile") as (page, watch):
        open_ready(page, f"{service}/calculator?carat=0,7&cut=ideal&color=E&clarity=VS1")
        assert form(page) == {"carat": "0.7", "cut": "Ideal", "color": "E", "clarity": "VS1"}
        assert page.locator("#link").is_hidden()
        diamond = {"carat": 0.7, "cut": "Ideal", "color": "E", "clarity": "VS1"}
        answered(page, diamond)
        assert shown_price(page) == pytest.approx(api_price(service, diamond), abs=0.01)

        page.fill("#carat", "1,5")  # a decimal comma, as typed in most of the world
        page.select_option("#cut", "Very Good")
        typed = {"carat": 1.5, "cut": "Very Good", "color": "E", "clarity": "VS1"}
        answered(page, typed)
        assert page.locator("#message").inner_text() == ""
        assert shown_price(page) == pytest.approx(api_price(service, typed), abs=0.01)
        query = parse_qs(urlsplit(page.url).query)
        assert query == {"carat": ["1.5"], "cut": ["Very Good"], "color": ["E"], "clarity": ["VS1"]}, page.url

        shared, price = page.url, shown_price(page)
        open_ready(page, shared)  # the link the address bar shows opens the same price
        answered(page, typed)
        assert shown_price(page) == price
        watch.check()


def test_a_link_with_values_that_do_not_fit_says_which_and_uses_the_rest(service: str, tmp_path: Path) -> None:
    with chromium_page(tmp_path / "profile") as (page, watch):
        open_ready(page, f"{service}/calculator/")
        defaults = form(page)
        open_ready(page, f"{service}/calculator/?carat=9&cut=Perfect&color=D&clarity=%20VS2%20&utm_source=mail")
        note = page.locator("#link")
        assert note.is_visible()
        text = note.inner_text()
        assert 'carat "9" (a number from 0.2 to 5.01)' in text and 'cut "Perfect" (one of Fair, ' in text, text
        assert "color" not in text and "clarity" not in text and "utm" not in text, text
        assert form(page) == {**defaults, "color": "D", "clarity": "VS2"}
        answered(page, {"carat": float(defaults["carat"]), "cut": defaults["cut"], "color": "D", "clarity": "VS2"})
        assert shown_price(page) > 0
        watch.check()


def test_only_a_plain_decimal_is_a_carat(service: str, tmp_path: Path) -> None:
    with chromium_page(tmp_path / "profile") as (page, _):
        open_ready(page, f"{service}/calculator/")
        for typed, words in (
            ("0,", "must be a number"),
            ("1,2,3", "must be a number"),
            ("1e0", "must be"),
            ("", "Enter"),
        ):
            page.fill("#carat", typed)
            page.wait_for_function(
                f"() => document.getElementById('message').textContent.includes({json.dumps(words)})"
            )
            assert page.locator("#price").inner_text() == "", typed


def test_a_link_to_the_static_page_fills_it_too(service: str, tmp_path: Path) -> None:
    diamond = {"carat": 1.01, "cut": "Premium", "color": "G", "clarity": "SI1"}
    with static_server(ROOT) as base, chromium_page(tmp_path / "profile") as (page, watch):
        open_ready(page, f"{base}/examples/web/?carat=1,01&cut=Premium&color=G&clarity=SI1")
        answered(page, diamond)
        assert shown_price(page) == pytest.approx(api_price(service, diamond), abs=0.01)
        watch.check()
