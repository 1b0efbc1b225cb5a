"""Offline API docs: Swagger UI at ``/docs`` and ReDoc at ``/redoc``, both over ``/openapi.json``.

Every file the pages load is served here, so they make no request to any other host; only an
allow-list under ``/static`` is reachable (never ``package.json`` or the rest of ``node_modules``)."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path

import anyio
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from inference.errors import NotInstalled

SWAGGER_UI_DIR = Path("node_modules", "swagger-ui-dist")
REDOC_DIR = Path("node_modules", "redoc", "bundles")

# What each /static sub-path may serve: the files the pages load, plus their source maps for devtools.
OWN_FILES = ("swagger-init.js", "same-origin-images.js")
SWAGGER_UI_FILES = ("swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png", "favicon-16x16.png")
REDOC_FILES = ("redoc.standalone.js",)

# Defence in depth: the browser itself refuses anything not from this origin. Both UIs set inline styles;
# ReDoc runs its search index in a worker it starts from a blob: URL.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "font-src 'self' data:; connect-src 'self'; worker-src 'self' blob:; object-src 'none'; "
    "base-uri 'self'; form-action 'self'; frame-ancestors 'self'"
)
INSTALL_HINT = "run `make docs` (npm ci --prefix static --no-audit --no-fund --ignore-scripts)"


class AllowListedFiles(StaticFiles):
    """``StaticFiles`` serving only the named files (404 for the rest); the directory may appear later,
    when ``make docs`` runs, without a restart."""

    def __init__(self, directory: Path, names: Iterable[str], *, source_maps: bool = False) -> None:
        super().__init__(directory=directory, check_dir=False)
        allowed = set(names)
        self.allowed = frozenset(allowed | {f"{name}.map" for name in allowed} if source_maps else allowed)

    def lookup_path(self, path: str) -> tuple[str, os.stat_result | None]:
        if path not in self.allowed:
            return "", None
        return super().lookup_path(path)

    async def check_config(self) -> None:
        """Skip the check that the directory exists: a missing file is a 404, not a 500."""


def _page(static_dir: Path, page: str, needs: tuple[Path, ...], what: str) -> Callable[[Request], Awaitable[Response]]:
    """An endpoint serving ``static_dir/page``, or 503 while a file it loads is missing."""

    async def endpoint(request: Request) -> Response:
        for relative in (Path(page), *needs):
            if not await anyio.Path(static_dir / relative).is_file():
                message = f"{what} is not installed: static/{relative.as_posix()} is missing; {INSTALL_HINT}"
                raise NotInstalled(message)
        return FileResponse(
            static_dir / page,
            media_type="text/html",
            headers={"Content-Security-Policy": CONTENT_SECURITY_POLICY, "Cache-Control": "no-cache"},
        )

    return endpoint


def docs_routes(static_dir: Path) -> list[BaseRoute]:
    """``GET /docs``, ``GET /redoc`` and the ``/static`` mount their pages load; none is in the schema."""
    swagger_ui = static_dir / SWAGGER_UI_DIR
    redoc = static_dir / REDOC_DIR
    swagger_needs = (
        Path("swagger-init.js"),
        SWAGGER_UI_DIR / "swagger-ui-bundle.js",
        SWAGGER_UI_DIR / "swagger-ui.css",
    )
    redoc_needs = (Path("same-origin-images.js"), REDOC_DIR / "redoc.standalone.js")
    return [
        Route(
            "/docs",
            _page(static_dir, "docs.html", swagger_needs, "Swagger UI"),
            methods=["GET"],
            include_in_schema=False,
        ),
        Route(
            "/redoc",
            _page(static_dir, "redoc.html", redoc_needs, "ReDoc"),
            methods=["GET"],
            include_in_schema=False,
        ),
        Mount(
            "/static",
            routes=[
                Mount("/swagger-ui", app=AllowListedFiles(swagger_ui, SWAGGER_UI_FILES, source_maps=True)),
                Mount("/redoc", app=AllowListedFiles(redoc, REDOC_FILES, source_maps=True)),
                Mount("/", app=AllowListedFiles(static_dir, OWN_FILES)),
            ],
            name="static",
        ),
    ]
