"""The price calculator at ``/calculator``: the browser prices diamonds itself, with onnxruntime-web.

This service answers the page's repository-relative URLs (``/modelsettings.json``,
``/model_registry/<file>``) with the served model only, so one page works from both."""

from __future__ import annotations

from pathlib import Path

import anyio
import anyio.to_thread
from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from inference.errors import ModelUnavailable, NotFound, NotInstalled
from inference.files import FileBytes, FileRefused, read_regular, regular_identity
from inference.modelsettings import ModelFileError, resolve_model_path
from inference.pages.docs import AllowListedFiles
from inference.rest.wire import json_response
from inference.serving import holder_of, serving_model, settings_of

PAGE = "index.html"
OWN_FILES = ("calculator.js", "calculator.css")
ORT_WEB_DIR = Path("node_modules", "onnxruntime-web", "dist")
ORT_WEB_FILES = ("ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
"""onnxruntime-web's wasm-only ES module, and the emscripten module and binary it loads."""
INSTALL_HINT = "run `make web` (npm ci --prefix examples/web --ignore-scripts --no-audit --no-fund)"

# Nothing but this origin. 'wasm-unsafe-eval' lets the page compile onnxruntime's WebAssembly, and
# nothing else: no eval, no inline script or style. The page carries the same policy in a <meta>
# tag (without frame-ancestors, which a <meta> cannot set), so it holds from a static server too.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; worker-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; "
    "frame-ancestors 'self'"
)
NO_CACHE = {"Cache-Control": "no-cache"}


def _page(web_dir: Path) -> Route:
    needs = (Path(PAGE), *(Path(name) for name in OWN_FILES), *(ORT_WEB_DIR / name for name in ORT_WEB_FILES))

    async def endpoint(request: Request) -> Response:
        for relative in needs:
            if not await anyio.Path(web_dir / relative).is_file():
                where = f"examples/web/{relative.as_posix()}"
                raise NotInstalled(f"the calculator is not installed: {where} is missing; {INSTALL_HINT}")
        headers = {"Content-Security-Policy": CONTENT_SECURITY_POLICY, **NO_CACHE}
        return FileResponse(web_dir / PAGE, media_type="text/html", headers=headers)

    return Route("/", endpoint, methods=["GET"], include_in_schema=False)


async def model_settings(request: Request) -> Response:
    """The settings of the model being served: what ``modelsettings.json`` said when it was loaded."""
    model = serving_model(request)
    return json_response(model.settings.model_dump(mode="json"), headers=NO_CACHE)


class PublishedModel:
    """The served model's file as last read: re-hashed (off the event loop) only when the file changed."""

    def __init__(self) -> None:
        self._cached: FileBytes | None = None

    def bytes_for(self, path: Path, sha256: str, max_bytes: int) -> bytes:
        """The file's bytes if they still hash to ``sha256``; :class:`ModelUnavailable` otherwise."""
        cached = self._cached
        if cached is None or cached.identity != regular_identity(path):
            try:
                cached = read_regular(path, "model file", max_bytes, follow=False)
            except FileRefused:
                raise ModelUnavailable("the model file being served cannot be read") from None
            self._cached = cached
        if cached.sha256 != sha256:
            raise ModelUnavailable("the model file changed on disk; the new model is not loaded yet")
        return cached.data


async def model_file(request: Request) -> Response:
    """The served model's ``.onnx`` file, checked against its sha256; 404 for any other name."""
    holder = holder_of(request)
    model = serving_model(request)
    if f"model_registry/{request.path_params['name']}" != model.settings.path:
        raise NotFound("not found: only the model being served is published")
    try:
        path = resolve_model_path(holder.settings_path, holder.registry, model.settings.path)
    except ModelFileError:
        raise ModelUnavailable("the model file being served cannot be read") from None
    published: PublishedModel = request.app.state.published_model
    limit = settings_of(request).max_model_bytes
    blob = await anyio.to_thread.run_sync(published.bytes_for, path, model.sha256, limit)
    return Response(blob, media_type="application/octet-stream", headers=NO_CACHE)


def calculator_routes(web_dir: Path) -> list[BaseRoute]:
    """``/calculator`` (redirect to ``/calculator/``: the page's URLs are relative), its files, and the
    current model at the repository's own paths."""

    async def to_page(request: Request) -> Response:
        query = request.url.query  # a shared link's diamond (?carat=0.7&cut=Ideal...) survives the redirect
        return RedirectResponse(f"/calculator/?{query}" if query else "/calculator/", status_code=308)

    return [
        Route("/calculator", to_page, methods=["GET"], include_in_schema=False),
        Route("/modelsettings.json", model_settings, methods=["GET"], include_in_schema=False),
        Route("/model_registry/{name}", model_file, methods=["GET"], include_in_schema=False),
        Mount(
            "/calculator",
            routes=[
                _page(web_dir),
                Mount(f"/{ORT_WEB_DIR.as_posix()}", app=AllowListedFiles(web_dir / ORT_WEB_DIR, ORT_WEB_FILES)),
                Mount("/", app=AllowListedFiles(web_dir, OWN_FILES)),
            ],
        ),
    ]
