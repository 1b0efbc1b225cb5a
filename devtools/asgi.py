"""An HTTP request's ASGI scope as uvicorn builds it, for calling the app in process (tests, bench)."""

from __future__ import annotations

from typing import Any


def http_scope(method: str, path: str, headers: list[tuple[bytes, bytes]], **extra: Any) -> dict[str, Any]:
    """The scope of ``method path`` with ``headers`` (after a ``host`` header), ``extra`` keys added."""
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1"), *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
        **extra,
    }
