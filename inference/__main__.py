"""``python -m inference``: serve the API with uvicorn.

python -m inference                      # HOST/PORT/WORKERS from the environment
python -m inference --port 9000 --workers 2
"""

from __future__ import annotations

import argparse
import importlib.util
import ipaddress
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from inference.config import ConfigError, Settings
from inference.logs import configure_logging, logging_dict

log = logging.getLogger("inference")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m inference", description="Serve the diamond-price API.")
    parser.add_argument("--host", help="listen address (default: $HOST or 127.0.0.1)")
    parser.add_argument("--port", type=int, help="listen port (default: $PORT or 8000)")
    parser.add_argument("--workers", type=int, help="worker processes (default: $WORKERS or 1)")
    args = parser.parse_args(argv)
    # Workers build their app from the environment, so command-line overrides go there.
    for name, value in (("HOST", args.host), ("PORT", args.port), ("WORKERS", args.workers)):
        if value is not None:
            os.environ[name] = str(value)
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        configure_logging()
        log.error("configuration error: %s", exc)
        return 2
    configure_logging(settings.log_level.upper())
    if settings.update_token is None and not is_loopback(settings.host):
        log.warning(
            "listening on %s beyond loopback with UPDATE_TOKEN unset: POST /update_model is open to anyone "
            "who can reach this port; set UPDATE_TOKEN",
            settings.host,
        )
    metrics_dir = prepare_metrics_dir()

    import uvicorn

    uvicorn.run(
        "inference.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_config=logging_dict(settings.log_level.upper()),
        access_log=settings.access_log,
        loop="uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
        http=http_protocol(),
        proxy_headers=True,
        server_header=False,
        limit_concurrency=settings.limit_concurrency,
    )
    if metrics_dir is not None:
        metrics_dir.cleanup()
    return 0


def http_protocol() -> Any:
    """httptools with bounded request heads (:mod:`inference.rest.protocol`), else h11, whose
    own incomplete-event limit bounds heads."""
    if importlib.util.find_spec("httptools"):
        from inference.rest.protocol import BoundedHttpToolsProtocol

        return BoundedHttpToolsProtocol
    return "h11"


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    if host.lower() in ("localhost", "localhost.", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def prepare_metrics_dir() -> tempfile.TemporaryDirectory[str] | None:
    """Give the workers a shared, empty PROMETHEUS_MULTIPROC_DIR (before anything imports the client).

    Returns the temporary directory we created, or None when the operator chose one
    (its stale sample files from an earlier run are removed).
    """
    chosen = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if chosen:
        path = Path(chosen)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):
            stale.unlink()
        return None
    created = tempfile.TemporaryDirectory(prefix="diamond-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = created.name
    return created


if __name__ == "__main__":
    sys.exit(main())
