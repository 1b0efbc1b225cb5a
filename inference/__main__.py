"""``python -m inference [--port 9000] [--workers 2]``: serve the API with uvicorn."""

from __future__ import annotations

import argparse
import contextlib
import errno
import importlib.util
import ipaddress
import logging
import os
import shutil
import signal
import socket
import stat
import sys
import tempfile
import threading
import time
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
    unusable = cannot_listen(settings.host, settings.port)
    if unusable is not None:
        log.error("%s", unusable)
        return 1
    metrics_dir = prepare_metrics_dir()
    if settings.port:  # port 0: the system picks one, and uvicorn's own line names it
        threading.Thread(target=announce, args=(settings.host, settings.port), name="announce", daemon=True).start()

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
    """httptools with bounded request heads, else h11, whose own incomplete-event limit bounds heads."""
    if importlib.util.find_spec("httptools"):
        from inference.rest.protocol import BoundedHttpToolsProtocol

        return BoundedHttpToolsProtocol
    return "h11"


def cannot_listen(host: str, port: int) -> str | None:
    """Why ``host:port`` is held by another process, with what to do; None otherwise. Checked by binding
    first, so a busy port says how to pick another rather than ending in ``[Errno 98]``."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host.strip("[]"), port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return (
                    f"port {port} on {host} is already in use (another server?); pick another with "
                    f"PORT={port + 1 if port < 65535 else 8001} make serve, or python -m inference --port N"
                )
    return None


def urls(host: str, port: int) -> dict[str, str]:
    """What the server serves, by name, as a person on this machine would open it."""
    shown = host.strip("[]")
    with contextlib.suppress(ValueError):  # all interfaces: this machine's loopback of that family
        if ipaddress.ip_address(shown).is_unspecified:
            shown = "::1" if ":" in shown else "127.0.0.1"
    base = f"http://[{shown}]:{port}" if ":" in shown else f"http://{shown}:{port}"
    return {
        "API": f"{base}/",
        "Swagger UI": f"{base}/docs",
        "ReDoc": f"{base}/redoc",
        "calculator": f"{base}/calculator",
    }


def announce(host: str, port: int, timeout: float = 120.0) -> None:
    """Log the URLs once the server accepts connections (waits for it; says nothing if it never does)."""
    served = urls(host, port)
    target = served["API"].removeprefix("http://").rsplit(":", 1)[0].strip("[]")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((target, port), timeout=1):
                break
        except OSError:
            time.sleep(0.1)
    else:
        return
    width = max(len(name) for name in served)
    log.info("listening; open:\n%s", "\n".join(f"  {name:<{width}}  {url}" for name, url in served.items()))


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    if host.lower() in ("localhost", "localhost.", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


class MetricsDir:
    """This run's PROMETHEUS_MULTIPROC_DIR, removed at exit; the next start removes those left by runs
    that were killed before they could."""

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
    """A shared, empty PROMETHEUS_MULTIPROC_DIR, before anything imports the client; None when the
    operator chose one (its stale samples are removed)."""
    chosen = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if chosen:
        path = Path(chosen)
        path.mkdir(parents=True, exist_ok=True)
        for stale in [*path.glob("*.db"), *path.glob("drift-*.bin")]:  # samples, and drift windows
            stale.unlink()
        return None
    created = MetricsDir(Path(tempfile.gettempdir()) / f"diamond-metrics-{os.getuid()}")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(created.path)
    return created


if __name__ == "__main__":
    sys.exit(main())
