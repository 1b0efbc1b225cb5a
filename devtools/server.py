"""Run the service as a real process on 127.0.0.1: used by the tests and by the benchmark."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.contextmanager
def running_server(
    env: dict[str, str],
    *,
    workers: int = 1,
    ready_status: tuple[int, ...] = (200,),
    timeout: float = 30,
    log_dir: Path | None = None,
    command: list[str] | None = None,
    root: Path = ROOT,
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``python -m inference`` (or ``command`` + ``--port N``) on a free port, its code imported from
    ``root`` (another checkout, for the benchmark's baseline); yields (base URL, process). Always
    stopped."""
    port = free_port()
    full_env = {
        **os.environ,
        "PYTHONPATH": str(root),
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "WORKERS": str(workers),
        **env,
    }
    out = open(log_dir / "server.out", "wb") if log_dir else subprocess.DEVNULL  # noqa: SIM115
    err = open(log_dir / "server.err", "wb") if log_dir else subprocess.DEVNULL  # noqa: SIM115
    argv = [*command, "--port", str(port)] if command else [sys.executable, "-m", "inference"]
    proc = subprocess.Popen(argv, env=full_env, stdout=out, stderr=err, start_new_session=True, cwd=root)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(base + "/", timeout=1).status_code in ready_status:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("server did not become ready in time")
            time.sleep(0.05)
        yield base, proc
    finally:
        if proc.poll() is None:
            stop_group(proc)
        for fh in (out, err):
            if fh is not subprocess.DEVNULL:
                fh.close()  # type: ignore[union-attr]


def stop_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to a process started in its own session and its children; SIGKILL after 15 s."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
