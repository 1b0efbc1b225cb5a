"""Hostile input, round two, against a real uvicorn process: budgets that must count the bytes
actually held (inflated bodies, chunked bodies, trailers), connections that must not cost without
end (pipelined requests, answers nobody reads), transfer codings, and a killed server's leftovers."""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from devtools.server import running_server
from tests.helpers import GOOD, Project, env_for, port_of, rss_bytes

pytestmark = pytest.mark.slow


def connect(base: str) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port_of(base)))


def read_all(s: socket.socket, timeout: float) -> bytes:
    """Everything until the server closes (or ``timeout``)."""
    s.settimeout(timeout)
    received = b""
    with contextlib.suppress(OSError):
        while chunk := s.recv(1 << 16):
            received += chunk
    return received


def test_pipelined_requests_are_bounded_per_connection(served: Project) -> None:
    with running_server(env_for(served, MAX_PIPELINED="8")) as (base, proc):
        polite = connect(base)  # a client that pipelines a few requests is answered in full
        polite.sendall(b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n" * 5)
        polite.settimeout(5)
        got = b""
        while got.count(b"HTTP/1.1 200") < 5:
            got += polite.recv(1 << 16)
        polite.close()
        before = rss_bytes(proc.pid)
        flood = connect(base)
        flood.setblocking(False)
        request = b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n"
        sent, answers, deadline = 0, b"", time.monotonic() + 3
        closed = False
        while time.monotonic() < deadline and not closed:  # 410 MB of queued requests grew from this before
            try:
                with contextlib.suppress(BlockingIOError):
                    sent += flood.send(request * 2000)
                with contextlib.suppress(BlockingIOError):
                    answers += flood.recv(1 << 16)
            except (ConnectionResetError, BrokenPipeError):
                closed = True  # the server closed it, with requests unread: the kernel resets
        growth = rss_bytes(proc.pid) - before
        if not closed:
            flood.setblocking(True)
            answers += read_all(flood, 5)
        flood.close()
        answered = answers.count(b"HTTP/1.1 200")
        print(f"pipelined {sent // len(request)} requests: {answered} answered, closed; RSS +{growth / 1e6:.1f} MB")
        assert answered <= 9
        assert sent // len(request) > 1000
        assert growth < 10e6
        assert httpx.get(base + "/health/live").status_code == 200


def test_chunked_trailers_are_bounded_and_dropped(served: Project) -> None:
    with running_server(env_for(served)) as (base, proc):
        before = rss_bytes(proc.pid)
        s = connect(base)
        body = json.dumps(GOOD).encode()
        s.sendall(
            b"POST /diamond_price HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n" + f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n"
        )
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            for _ in range(300):  # 18 MB of trailer lines: about 2 GB of worker before
                s.sendall(b"X-Trailer: a\r\n" * 5000)
        answer = read_all(s, 5)
        s.close()
        assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
        assert rss_bytes(proc.pid) - before < 10e6
        small = connect(base)  # a few trailers are fine, and never reach the app
        small.sendall(
            b"POST /diamond_price HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nConnection: close\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
            + f"{len(body):x}\r\n".encode()
            + body
            + b"\r\n0\r\nX-Check: 1\r\n\r\n"
        )
        reply = read_all(small, 5)
        small.close()
        assert reply.startswith(b"HTTP/1.1 200 "), reply[:200]


@pytest.mark.parametrize("coding", [b"gzip, chunked", b"chunked, chunked", b"identity"])
def test_transfer_codings_other_than_chunked_are_refused(served: Project, coding: bytes) -> None:
    with running_server(env_for(served)) as (base, _):
        s = connect(base)
        body = gzip.compress(json.dumps(GOOD).encode())
        s.sendall(
            b"POST /diamond_price HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: " + coding + b"\r\n\r\n" + f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"
        )
        answer = read_all(s, 5)
        s.close()
        assert answer.startswith((b"HTTP/1.1 501 ", b"HTTP/1.1 400 ")), answer[:200]


def test_idle_chunked_uploads_do_not_starve_large_ones(served: Project) -> None:
    with running_server(env_for(served, BODY_TIMEOUT="8")) as (base, _):
        idle = []
        for _ in range(12):  # each reserved the whole MAX_BODY_BYTES before: 4 of them spent the budget
            s = connect(base)
            s.sendall(
                b"POST /diamond_prices HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b'Transfer-Encoding: chunked\r\n\r\n2\r\n{"\r\n'
            )
            idle.append(s)
        time.sleep(0.3)
        started = time.monotonic()
        r = httpx.post(base + "/diamond_prices", json={"diamonds": [GOOD] * 12_000}, timeout=20)
        took = time.monotonic() - started
        for s in idle:
            s.close()
        assert r.status_code == 422  # 12,000 rows: read in full, then refused by validation
        assert took < 4, took


GZIP_ATTACKER = """
import gzip, http.client, json, sys, threading
port, count = int(sys.argv[1]), int(sys.argv[2])
row = {"carat": 0.7, "cut": "Ideal", "color": "G", "clarity": "VS2"}
plain = json.dumps({"diamonds": [row] * 14_000}).encode()[: 1_000_000]  # 1 MB, cut mid-row: a 422
body = gzip.compress(plain, 9)
statuses = []
def send():
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    c.request("POST", "/diamond_prices", body, {"Content-Type": "application/json", "Content-Encoding": "gzip"})
    statuses.append(c.getresponse().status)
threads = [threading.Thread(target=send) for _ in range(count)]
for t in threads: t.start()
for t in threads: t.join()
print(len(body), sorted(set(statuses)))
"""


def test_gzip_bodies_reserve_what_they_inflate_to(served: Project) -> None:
    with running_server(env_for(served, BODY_TIMEOUT="60")) as (base, proc):
        before = rss_bytes(proc.pid)
        peak = before
        command = [sys.executable, "-c", GZIP_ATTACKER, str(port_of(base)), "300"]
        attacker = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        while attacker.poll() is None:
            peak = max(peak, rss_bytes(proc.pid))
            time.sleep(0.02)
        out = attacker.communicate()[0]
        print(f"300 gzip bodies ({out.strip()}): RSS +{(peak - before) / 1e6:.0f} MB at the peak")
        assert attacker.returncode == 0
        assert "[422]" in out  # every one read, inflated and validated: no 5xx
        assert peak - before < 80e6  # +307 MB before: the budget counted the compressed bytes


@pytest.fixture
def big_model(served: Project) -> Project:
    """``served`` with its model padded to 12 MB (a metadata entry): a download larger than the
    kernel's socket buffers, so what a client does not read stays in the server's own buffers."""
    import hashlib

    import onnx

    model = onnx.load_from_string((served.registry / "diamond_price-v1.onnx").read_bytes())
    onnx.helper.set_model_props(model, {p.key: p.value for p in model.metadata_props} | {"padding": "x" * (12 << 20)})
    blob = model.SerializeToString()
    (served.registry / "diamond_price-v5.onnx").write_bytes(blob)
    record = json.loads(served.settings.read_text())
    record |= {"version": 5, "path": "model_registry/diamond_price-v5.onnx", "sha256": hashlib.sha256(blob).hexdigest()}
    served.settings.write_text(json.dumps(record))
    return served


def read_until_closed(s: socket.socket, timeout: float) -> tuple[int, bool]:
    """(bytes received, whether the server closed or reset the connection within ``timeout``)."""
    s.settimeout(timeout)
    received = 0
    try:
        while chunk := s.recv(1 << 16):
            received += len(chunk)
    except ConnectionResetError:
        return received, True
    except TimeoutError:
        return received, False
    return received, True


def test_answers_nobody_reads_are_dropped_after_write_timeout(big_model: Project) -> None:
    url = "/model_registry/diamond_price-v5.onnx"
    with running_server(env_for(big_model, WRITE_TIMEOUT="1")) as (base, proc):
        size = len(httpx.get(base + url).content)
        before = rss_bytes(proc.pid)
        readers = []
        for _ in range(20):
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.connect(("127.0.0.1", port_of(base)))
            s.sendall(f"GET {url} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            readers.append(s)
        time.sleep(4)  # past WRITE_TIMEOUT with no progress: every one is aborted
        ends = [read_until_closed(s, 3) for s in readers]
        for s in readers:
            s.close()
        growth = rss_bytes(proc.pid) - before
        print(f"20 downloads of {size / 1e6:.0f} MB never read: {ends[:3]}...; RSS +{growth / 1e6:.0f} MB")
        assert all(closed and received < size for received, closed in ends), ends
        assert httpx.get(base + "/health/live").status_code == 200
        assert httpx.get(base + url).content.__len__() == size  # a reader still gets it whole


def test_a_killed_servers_metrics_directory_is_removed_at_the_next_start(
    served: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {**env_for(served), "TMPDIR": str(tmp_path)}
    # set, then removed: the code under test sets it, and the test's end must take it away again
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "")
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR")
    parent = tmp_path / f"diamond-metrics-{os.getuid()}"
    with running_server(env) as (base, proc):
        assert httpx.get(base + "/metrics").status_code == 200
        (left,) = parent.iterdir()
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert left.exists()  # a killed run cannot clean up after itself
    with running_server(env) as (base, _):
        assert httpx.get(base + "/metrics").status_code == 200
        assert not left.exists()
        assert len(list(parent.iterdir())) == 1
    assert list(parent.iterdir()) == []  # a stopped run removes its own
