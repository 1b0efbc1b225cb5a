"""Run reports, read-only: ``GET /models/{version}/report`` serves a promoted version's HTML report.

Found exactly as a model file is, and served under a policy allowing no script and no request."""

from __future__ import annotations

import re
from pathlib import Path

import anyio
import anyio.to_thread
from starlette.requests import Request
from starlette.responses import Response

from inference.errors import NotFound, clip_text, hide_paths
from inference.files import FileRefused, read_regular
from inference.modelsettings import MODEL_NAME, REPORT_ROUTE, ModelFileError, report_name, report_path
from inference.rest.openapi import Error, Operation, version_parameter
from inference.serving import settings_of

MAX_VERSION_DIGITS = 9
VERSION = re.compile(rf"[1-9][0-9]{{0,{MAX_VERSION_DIGITS - 1}}}", re.ASCII)
# Stricter than the docs pages' policy: a report needs inline styles and data: images, nothing else.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'self'"
)


def parse_version(raw: str) -> int:
    """A version as ``/`` writes it: ``str.isdigit`` accepts digits ``int`` refuses (superscripts),
    and ``003`` would alias ``3``."""
    if not VERSION.fullmatch(raw):
        raise NotFound(f"version: {clip_text(ascii(raw), 40)} is not a model version (a whole number from 1)")
    return int(raw)


async def model_report(request: Request) -> Response:
    version = parse_version(request.path_params["version"])
    registry: Path = settings_of(request).model_registry
    try:
        path = report_path(registry, version)
    except ModelFileError:  # it would resolve outside the registry: as good as absent
        raise NotFound(f"version {version} has no report in the registry") from None
    limit = settings_of(request).max_report_bytes
    try:  # opened once, never blocking, never through a final link; size checked before reading
        body = (await anyio.to_thread.run_sync(lambda: read_regular(path, "report", limit, follow=False))).data
    except FileRefused as exc:
        if exc.missing:
            if not await anyio.Path(registry / f"{MODEL_NAME}-v{version}.onnx").is_file():
                raise NotFound(f"no version {version}: the registry holds no {MODEL_NAME}-v{version}.onnx") from None
            raise NotFound(f"version {version} has no report ({report_name(version)} is not in the registry)") from None
        raise NotFound(f"version {version}'s report cannot be served: {hide_paths(str(exc))}") from None
    headers = {
        "Content-Security-Policy": CONTENT_SECURITY_POLICY,
        "Cache-Control": "no-cache",
        "X-Content-Type-Options": "nosniff",
    }
    return Response(body, media_type="text/html; charset=utf-8", headers=headers)


OPERATION = Operation(
    REPORT_ROUTE,
    "get",
    model_report,
    "The HTML report of the training run that promoted a version",
    "models",
    {200: ("The report, a self-contained HTML page", None), 404: ("No such version, or it has no report", Error)},
    description="What the run read and cleaned, the candidate against the model it replaced on the same held-out "
    "rows (MAE overall and by cut, color, clarity and carat band), plots, and the gate's decision. The page makes "
    "no request of its own.",
    parameters=[version_parameter("A model version, as `/` and `python -m training versions` list them.")],
    response_content={200: {"text/html": {"schema": {"type": "string"}}}},
)
