"""/docs and /redoc in a real browser over a real server: they render and ask nothing of any other host.

Needs Debian's chromium (scripts/install_chromium.sh). Without it the test skips, except with CI set:
there it fails, since in CI no test may skip.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page

from devtools.server import free_port
from inference.paths import PROJECT_ROOT
from tests.browser import HOST, Watch, chromium_page
from tests.browser import chromium as browser_executable

pytestmark = pytest.mark.slow

START_TIMEOUT_S = 15.0
RENDER_TIMEOUT_MS = 20_000


@pytest.fixture(scope="module")
def chromium() -> Path:
    return browser_executable()


@pytest.fixture(scope="module")
def server(chromium: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The real service (``python -m inference``) on a free port; yields its base URL. Only with a browser."""
    port = free_port()
    base = f"http://{HOST}:{port}"
    env = {**os.environ, "HOST": HOST, "PORT": str(port), "WORKERS": "1", "MODEL_AUTO_RELOAD": "0"}
    env["STATIC_DIR"] = str(PROJECT_ROOT / "static")
    log_path = tmp_path_factory.mktemp("server") / "server.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "inference"], cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        with httpx.Client(trust_env=False, timeout=2.0) as client:
            while True:
                if proc.poll() is not None:
                    pytest.fail(f"the server exited with {proc.returncode}:\n{log_path.read_text()}")
                try:
                    if client.get(f"{base}/openapi.json").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    pytest.fail(f"the server did not answer within {START_TIMEOUT_S} s:\n{log_path.read_text()}")
                time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture(scope="module")
def spec(server: str) -> dict[str, object]:
    with httpx.Client(trust_env=False) as client:
        result: dict[str, object] = client.get(f"{server}/openapi.json").json()
    return result


@pytest.fixture
def page(chromium: Path, tmp_path: Path) -> Iterator[tuple[Page, Watch]]:
    with chromium_page(tmp_path / "profile") as watched:
        yield watched


def operations(spec: dict[str, object]) -> list[tuple[str, str, str]]:
    """(method, path, summary) of every operation in the spec."""
    paths = spec["paths"]
    assert isinstance(paths, dict)
    return [(method, path, op["summary"]) for path, item in paths.items() for method, op in item.items()]


def test_swagger_ui_renders_the_spec_offline(server: str, spec: dict[str, object], page: tuple[Page, Watch]) -> None:
    browser, watch = page
    browser.goto(f"{server}/docs")
    browser.wait_for_selector(".opblock", timeout=RENDER_TIMEOUT_MS)
    browser.wait_for_load_state("networkidle")
    paths = {path for _, path, _ in operations(spec)}
    shown = {
        (element.get_attribute("data-path") or element.inner_text()).replace("\u200b", "")
        for element in browser.locator(".opblock-summary-path").all()
    }
    assert shown == paths, f"no operation of the spec is shown; shown: {shown}"
    assert browser.locator(".opblock").count() == len(operations(spec))
    assert browser.locator(".errors-wrapper").count() == 0
    watch.check()


def test_redoc_renders_the_spec_offline(server: str, spec: dict[str, object], page: tuple[Page, Watch]) -> None:
    browser, watch = page
    browser.goto(f"{server}/redoc")
    info = spec["info"]
    assert isinstance(info, dict)
    title = browser.locator("h1", has_text=str(info["title"]))
    title.first.wait_for(timeout=RENDER_TIMEOUT_MS)
    browser.wait_for_load_state("networkidle")
    headings = browser.locator("h2").all_inner_texts()
    for _, _, summary in operations(spec):
        assert any(summary in heading for heading in headings), f"{summary!r} not among {headings}"
    watch.check()
