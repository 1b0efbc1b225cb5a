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
import shutil
import signal
import stat
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

    # uvicorn re-raises the SIGTERM it handled once it has shut down, which kills the process before
    # the `finally` below: remove the metrics directory first, then die of the signal as before.
    def stopped(signum: int, frame: object) -> None:
        if metrics_dir is not None:
            metrics_dir.cleanup()
        signal.signal(signum, signal.SIG_DFL)
        signal.raise_signal(signum)

    previous = signal.signal(signal.SIGTERM, stopped)

    import uvicorn

    try:
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
    finally:
        signal.signal(signal.SIGTERM, previous)
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


class MetricsDir:
    """This run's PROMETHEUS_MULTIPROC_DIR: ``<tmp>/diamond-metrics-<uid>/run-<pid>``, removed at exit.
    A run killed before it could remove its own (SIGKILL, a crash) leaves it behind; the next start
    removes every run directory whose process is gone."""

    def __init__(self, parent: Path) -> None:
        parent.mkdir(mode=0o700, exist_ok=True)
        info = parent.lstat()  # in a shared /tmp: ours, a real directory, not a link someone planted
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
            raise RuntimeError(f"{parent} is not a directory owned by this user")
        for stale in parent.glob("run-*"):
            pid = stale.name.removeprefix("run-")
            if pid.isascii() and pid.isdigit() and (int(pid) == os.getpid() or not _alive(int(pid))):
                shutil.rmtree(stale, ignore_errors=True)
        self.path = parent / f"run-{os.getpid()}"
        self.path.mkdir(mode=0o700)

    def cleanup(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def prepare_metrics_dir() -> MetricsDir | None:
    """Give the workers a shared, empty PROMETHEUS_MULTIPROC_DIR (before anything imports the client).

    Returns the run directory we created, or None when the operator chose one (its stale sample
    files from an earlier run are removed).
    """
    chosen = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if chosen:
        path = Path(chosen)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):
            stale.unlink()
        return None
    created = MetricsDir(Path(tempfile.gettempdir()) / f"diamond-metrics-{os.getuid()}")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(created.path)
    return created


if __name__ == "__main__":
    sys.exit(main())
