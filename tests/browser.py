"""Browser-test helpers: Debian's headless chromium driven by Playwright (never a downloaded
browser), a watch on what a page asks of the network, and a plain static server at the repository
root (as a person would start one)."""

from __future__ import annotations

import contextlib
import functools
import os
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import ConsoleMessage, Error, Page, Request, Route, sync_playwright

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
ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
"""Where tests leave files for a person to look at (screenshots); gitignored."""


def chromium() -> Path:
    """Debian's chromium; skips without it, except under CI, where no test may skip."""
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: CI must run scripts/install_chromium.sh first")
        pytest.skip(f"{CHROMIUM} is missing (scripts/install_chromium.sh installs it)")
    return CHROMIUM


class Watch:
    """What a page did: every request it made or tried, those aimed elsewhere (refused), its errors."""

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
        """Nothing left 127.0.0.1, and nothing went wrong."""
        off_host = [url for url in self.requests if urlsplit(url).scheme not in ("data", "blob")]
        off_host = [url for url in off_host if urlsplit(url).hostname != HOST]
        assert not self.external, f"requests to other hosts were attempted: {self.external}"
        assert not off_host, f"requests to other hosts: {off_host}"
        assert not self.errors, "\n".join(self.errors)


@contextlib.contextmanager
def chromium_page(profile: Path) -> Iterator[tuple[Page, Watch]]:
    """A fresh headless chromium (user data in ``profile``) whose one page is watched."""
    executable = chromium()
    watch = Watch()
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile), executable_path=str(executable), headless=True, args=CHROMIUM_ARGS, service_workers="block"
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


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """No access log on the test's stderr."""


@contextlib.contextmanager
def static_server(root: Path) -> Iterator[str]:
    """``python -m http.server`` at ``root`` on a free port of 127.0.0.1, in a thread; yields its URL."""
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = ThreadingHTTPServer((HOST, 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{HOST}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
