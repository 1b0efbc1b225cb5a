"""/docs and /redoc in a real browser over a real server: they render and ask nothing of any other host.

Needs Debian's chromium (scripts/install_chromium.sh). Without it the test skips, except with CI set:
there it fails, since in CI no test may skip.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import ConsoleMessage, Error, Page, Request, Route, sync_playwright

from inference.paths import PROJECT_ROOT

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
HOST = "127.0.0.1"
START_TIMEOUT_S = 15.0
RENDER_TIMEOUT_MS = 20_000


@pytest.fixture(scope="module")
def chromium() -> Path:
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: CI must run scripts/install_chromium.sh first")
        pytest.skip(f"{CHROMIUM} is missing (scripts/install_chromium.sh installs it)")
    return CHROMIUM


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


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


class Watch:
    """What a page did: every request it made or tried, those sent elsewhere, and its console errors."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        self.external: list[str] = []
        self.errors: list[str] = []

    def route(self, route: Route) -> None:
        url = route.request.url
        parts = urlsplit(url)
        if parts.scheme in ("data", "blob") or parts.hostname == HOST:
            route.continue_()
        else:
            self.external.append(url)
            route.abort("blockedbyclient")

    def request(self, request: Request) -> None:
        self.requests.append(request.url)

    def console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(f"console: {message.text} ({message.location.get('url')})")

    def page_error(self, error: Error) -> None:
        self.errors.append(f"uncaught: {error}")

    def check(self) -> None:
        off_host = [url for url in self.requests if urlsplit(url).hostname not in (HOST, None)]
        assert not self.external, f"requests to other hosts were attempted: {self.external}"
        assert not off_host, f"requests to other hosts: {off_host}"
        assert not self.errors, "\n".join(self.errors)


@pytest.fixture
def page(chromium: Path, tmp_path: Path) -> Iterator[tuple[Page, Watch]]:
    watch = Watch()
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=str(chromium),
            headless=True,
            args=CHROMIUM_ARGS,
            service_workers="block",
        )
        try:
            context.route("**/*", watch.route)
            context.on("request", watch.request)
            page = context.pages[0] if context.pages else context.new_page()
            page.on("console", watch.console)
            page.on("pageerror", watch.page_error)
            yield page, watch
        finally:
            context.close()


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
