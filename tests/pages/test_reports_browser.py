"""A run report in a real browser, through a real server: every plot renders, nothing leaves 127.0.0.1.

Leaves a screenshot of the page in ``artifacts/report-browser.png`` (gitignored).
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import ConsoleMessage, Route, sync_playwright

from devtools.server import running_server
from tests.browser import ARTIFACTS, CHROMIUM_ARGS
from tests.browser import chromium as require_chromium
from tests.helpers import Project, tiny_factory
from training.paths import TrainingPaths
from training.train import run

pytestmark = pytest.mark.slow
HOST = "127.0.0.1"


def test_a_report_renders_every_plot_offline_in_chromium(project: Project, tmp_path: Path) -> None:
    chromium = require_chromium()
    paths = TrainingPaths(project.db, project.settings, project.registry)
    run(paths, pipeline_factory=tiny_factory(max_iter=3))
    assert run(paths, pipeline_factory=tiny_factory(max_iter=60)).promoted  # v2's report compares it with v1
    env = {"MODEL_SETTINGS": str(project.settings), "MODEL_REGISTRY": str(project.registry), "MODEL_AUTO_RELOAD": "0"}

    requests: list[str] = []
    blocked: list[str] = []
    errors: list[str] = []

    def route(r: Route) -> None:
        parts = urlsplit(r.request.url)
        if parts.scheme == "data" or parts.hostname == HOST:
            r.continue_()
        else:
            blocked.append(r.request.url)
            r.abort("blockedbyclient")

    def console(message: ConsoleMessage) -> None:
        if message.type in ("error", "warning"):
            errors.append(message.text)

    with running_server(env, log_dir=tmp_path) as (base, _), sync_playwright() as playwright:
        link = httpx.get(f"{base}/", trust_env=False).json()["model"]["report"]
        assert link == "/models/2/report"
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=str(chromium), headless=True, args=CHROMIUM_ARGS
        )
        try:
            context.route("**/*", route)
            context.on("request", lambda request: requests.append(request.url))
            page = context.pages[0] if context.pages else context.new_page()
            page.on("console", console)
            page.set_viewport_size({"width": 1100, "height": 900})
            response = page.goto(base + link, wait_until="load")
            assert response is not None and response.status == 200
            page.wait_for_load_state("networkidle")
            images = page.evaluate(
                "Array.from(document.images).map(i => ({src: i.src.slice(0, 30), complete: i.complete,"
                " width: i.naturalWidth, height: i.naturalHeight}))"
            )
            assert len(images) >= 5, images
            for image in images:
                assert image["complete"] and image["width"] > 0 and image["height"] > 0, image
            assert any(i["src"].startswith("data:image/svg+xml") for i in images)
            assert any(i["src"].startswith("data:image/png") for i in images)
            headings = page.locator("h2").all_inner_texts()
            assert headings[:3] == ["Decision", "Data", "Candidate against current"], headings
            assert "v2 promoted" in page.title()
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "report-browser.png"), full_page=True)
        finally:
            context.close()

    assert not blocked, f"requests to other hosts were attempted: {blocked}"
    assert all(urlsplit(u).scheme == "data" or urlsplit(u).hostname == HOST for u in requests), requests
    assert not errors, errors  # a CSP violation would show here
    assert (ARTIFACTS / "report-browser.png").stat().st_size > 10_000
