"""``make serve`` as a newcomer meets it: the URLs it serves, printed once it listens, and a busy
port that says how to pick another instead of ending in ``[Errno 98]``."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from devtools.server import running_server
from inference.__main__ import cannot_listen, urls
from tests.helpers import ROOT


def test_a_busy_port_is_named_with_the_way_out() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        why = cannot_listen("127.0.0.1", port)
    assert why is not None and f"port {port} on 127.0.0.1 is already in use" in why
    assert f"PORT={port + 1} make serve" in why and "--port" in why
    assert cannot_listen("127.0.0.1", port) is None  # free again once closed


def test_other_bind_errors_are_left_to_uvicorn() -> None:
    assert cannot_listen("192.0.2.1", 8000) is None  # TEST-NET-1, never local: uvicorn says so itself


def test_the_urls_are_the_ones_a_person_on_this_machine_opens() -> None:
    assert urls("127.0.0.1", 8000) == {
        "API": "http://127.0.0.1:8000/",
        "Swagger UI": "http://127.0.0.1:8000/docs",
        "ReDoc": "http://127.0.0.1:8000/redoc",
        "calculator": "http://127.0.0.1:8000/calculator",
    }
    assert urls("0.0.0.0", 80)["API"] == "http://127.0.0.1:80/"  # noqa: S104 (all interfaces: shown as loopback)
    assert urls("::", 8000)["ReDoc"] == "http://[::1]:8000/redoc"
    assert urls("localhost", 8000)["calculator"] == "http://localhost:8000/calculator"


@pytest.mark.slow
def test_the_server_prints_what_it_serves_and_a_second_one_says_how_to_pick_another_port(tmp_path: Path) -> None:
    env = {"MODEL_SETTINGS": str(ROOT / "modelsettings.json"), "MODEL_AUTO_RELOAD": "0"}
    with running_server(env, log_dir=tmp_path) as (base, _):
        port = int(base.rsplit(":", 1)[1])
        out = tmp_path / "server.out"
        deadline = time.monotonic() + 10
        while "calculator" not in out.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        printed = out.read_text()
        for name, url in urls("127.0.0.1", port).items():
            assert f"{name}  " in printed and f"{url}\n" in printed, printed
            assert httpx.get(url, follow_redirects=True, timeout=10).status_code == 200, url
        assert printed.count("listening; open:") == 1

        second = subprocess.run(
            [sys.executable, "-m", "inference"],
            env={**os.environ, **env, "PYTHONPATH": str(ROOT), "HOST": "127.0.0.1", "PORT": str(port)},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert second.returncode == 1
    assert f"port {port} on 127.0.0.1 is already in use" in second.stderr
    assert f"PORT={port + 1} make serve" in second.stderr
    assert "Errno" not in second.stderr and "Traceback" not in second.stderr, second.stderr
