"""Both images and both compose profiles, for real: a Docker engine with Compose v2.

The module works on a temporary copy of the project (compose.yaml, the Dockerfiles,
.dockerignore and the sources, unchanged) with a small sample of diamond.db, so that a
fit takes seconds, not minutes. It never touches the checkout's model_registry/ or
modelsettings.json, and removes its containers, images and networks at the end. It talks
to the api only through the port compose publishes, on 127.0.0.1:81.

The tests run in file order, each from the state the previous one left: the api started
before any model exists; training from nothing; the api turning healthy; the serving
image; a second version; two workers and promotions under load; `down`.

Where no engine answers the module skips, saying how to run it; with CI set it fails
instead. `.ci/run` starts an engine of its own (scripts/ci_docker.sh) and exports
DOCKER_HOST and DOCKER_BUILDKIT=0; on a laptop with Docker, `make test` uses that engine
and the real base images.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import ROOT, make_db, sales_csv

pytestmark = pytest.mark.slow

BASE = "http://127.0.0.1:81"
GOOD = {"carat": 0.7, "cut": "Ideal", "color": "G", "clarity": "VS2"}
# What the build context may need: everything .dockerignore lets in, and the files compose reads.
PROJECT_FILES = ("compose.yaml", "Dockerfile.serve", "Dockerfile.train", ".dockerignore")
PROJECT_DIRS = ("inference", "training", "requirements", "static", "examples/web")
FIRST_ROWS, MORE_ROWS = 1500, 3000  # sample sizes of diamond.db for v1 and v2
HOW = (
    "to run it, make a Docker engine with the Compose v2 plugin reachable (Docker Desktop, or Debian's "
    "docker.io with Compose v2) and run `make test`; or, as root on Debian, `bash .ci/run`, which installs "
    "and starts one at unix:///run/diamond-ci/docker.sock"
)


def engine_problem() -> str | None:
    """Why no usable engine is reachable, or None."""
    if shutil.which("docker") is None:
        return "no `docker` command on PATH"
    try:
        server = subprocess.run(
            ["docker", "version", "--format", "{{.Server.Version}}"], capture_output=True, text=True, timeout=30
        )
        compose = subprocess.run(
            ["docker", "compose", "version", "--short"], capture_output=True, text=True, timeout=30
        )
    except subprocess.TimeoutExpired:
        return "`docker version` did not answer within 30 s"
    where = os.environ.get("DOCKER_HOST", "the default socket")
    if server.returncode != 0:
        return f"no Docker engine answers at {where} ({(server.stderr.strip().splitlines() or ['?'])[-1]})"
    if compose.returncode != 0 or not compose.stdout.strip().lstrip("v").startswith("2"):
        return f"`docker compose` is not Compose v2 ({(compose.stdout + compose.stderr).strip()[:200]})"
    return None


@dataclass
class Stack:
    """The temporary project and the compose commands on it."""

    root: Path
    name: str
    uid: int
    gid: int
    say: Any = print
    """Writes a line to the terminal, past pytest's output capture."""
    timings: dict[str, float] = field(default_factory=dict)

    def env(self, **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            "TRAIN_UID": str(self.uid),
            "TRAIN_GID": str(self.gid),
            "COMPOSE_PROJECT_NAME": self.name,
            # The fit shares the CPUs with the suite and whatever else runs (compose passes it on).
            "OMP_NUM_THREADS": "1",
            **extra,
        }

    def compose(self, *args: str, timeout: float = 900, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["docker", "compose", *args],
            cwd=self.root,
            env=self.env(**extra),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def timed(self, phase: str, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        started = time.monotonic()
        result = self.compose(*args, **extra)
        self.timings[phase] = time.monotonic() - started
        return result

    def promote(self, version: int) -> None:
        result = self.compose("--profile", "training", "run", "--rm", "training", "promote", "--version", str(version))
        assert result.returncode == 0, result.stdout + result.stderr

    def container(self, service: str) -> str:
        result = self.compose("ps", "-a", "-q", service)
        ids = result.stdout.split()
        assert len(ids) == 1, f"{service}: containers {ids}: {result.stderr}"
        return ids[0]

    def inspect(self, ref: str) -> dict[str, Any]:
        out = subprocess.run(["docker", "inspect", ref], capture_output=True, text=True, timeout=60, check=True)
        data: list[dict[str, Any]] = json.loads(out.stdout)
        return data[0]

    def health(self) -> str:
        state = self.inspect(self.container("api"))["State"]
        return str(state.get("Health", {}).get("Status", "none"))

    def image(self, service: str) -> str:
        return str(self.inspect(self.container(service))["Image"])


def docker(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, check=False)


def copy_project(root: Path) -> None:
    for name in PROJECT_FILES:
        shutil.copy2(ROOT / name, root / name)
    for name in PROJECT_DIRS:
        ignore = shutil.ignore_patterns("node_modules", "__pycache__", "*.pyc")
        shutil.copytree(ROOT / name, root / name, ignore=ignore, symlinks=True)
    make_db(root / "diamond.db", rows=FIRST_ROWS)


@pytest.fixture(scope="module")
def stack(pytestconfig: pytest.Config) -> Iterator[Stack]:
    problem = engine_problem()
    if problem:
        if os.environ.get("CI"):
            pytest.fail(f"CI is set, and the container test cannot run: {problem}; {HOW}")
        pytest.skip(f"{problem}; {HOW}")
    root = Path(tempfile.mkdtemp(prefix="diamond-compose-"))
    # The api (uid 10001) reads the bind-mounted directory: it must be traversable by others.
    root.chmod(0o755)
    copy_project(root)
    # Training writes as TRAIN_UID:TRAIN_GID: the owner of the project, as README asks. When
    # the suite runs as root, the project goes to an unprivileged uid instead, so that the
    # ownership and fail-fast checks mean something.
    uid, gid = (os.getuid(), os.getgid()) if os.getuid() != 0 else (23456, 23456)
    if os.getuid() == 0:
        os.chown(root, uid, gid)
    terminal = pytestconfig.pluginmanager.get_plugin("terminalreporter")
    capture = pytestconfig.pluginmanager.get_plugin("capturemanager")

    def say(line: str) -> None:
        with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
            (terminal.write_line if terminal else print)(line)

    stack = Stack(root, f"dpct{os.getpid()}{int(time.time()) % 100000}", uid, gid, say)
    images_before = set(docker("images", "-a", "-q", "--no-trunc").stdout.split())
    try:
        yield stack
    finally:
        profiles = ("--profile", "api", "--profile", "training", "--profile", "data")
        down = stack.compose(*profiles, "down", "--rmi", "local", "--volumes", "--remove-orphans")
        label = f"label=com.docker.compose.project={stack.name}"
        left = docker("ps", "-aq", "--filter", label).stdout.split()
        if left:
            docker("rm", "-f", *left)
        nets = docker("network", "ls", "-q", "--filter", label).stdout.split()
        if nets:
            docker("network", "rm", *nets)
        # The classic builder keeps the image of each earlier build stage (Dockerfile.serve's
        # node stage), untagged: ours are the untagged images that were not there before.
        dangling = docker("images", "-q", "--no-trunc", "--filter", "dangling=true").stdout.split()
        if ours := [i for i in dangling if i not in images_before]:
            docker("rmi", *ours)
        shutil.rmtree(root, ignore_errors=True)
        assert down.returncode == 0, down.stdout + down.stderr
        summary = ", ".join(f"{k} {v:.0f} s" for k, v in stack.timings.items())
        stack.say(f"\ncontainer test phases: {summary}")


def get(path: str, **kwargs: Any) -> httpx.Response:
    return httpx.get(BASE + path, timeout=10, **kwargs)


def wait_for(predicate: Any, timeout: float, what: str, interval: float = 0.5) -> Any:
    """Poll ``predicate`` until it returns something truthy; connection errors count as no."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except httpx.TransportError as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"{what}: not within {timeout:.0f} s (last: {last!r})")


def serving_version() -> int | None:
    r = get("/")
    return int(r.json()["model"]["version"]) if r.status_code == 200 else None


# ---- the api before any model ---------------------------------------------------------------
def test_api_started_before_any_model_answers_503_and_is_not_healthy(stack: Stack) -> None:
    result = stack.timed("api image build + start", "--profile", "api", "up", "--build", "-d")
    assert result.returncode == 0, result.stdout + result.stderr
    first = wait_for(lambda: get("/").status_code, 60, "GET / answers")
    assert first == 503
    body = get("/").json()
    assert body["ready"] is False and body["model"] is None and body["reason"]
    assert httpx.post(BASE + "/diamond_price", json=GOOD, timeout=10).status_code == 503
    assert stack.health() in ("starting", "unhealthy")


# ---- training ------------------------------------------------------------------------------
def test_training_from_nothing_promotes_v1_owned_by_train_uid(stack: Stack) -> None:
    api_state = stack.inspect(stack.container("api"))["State"]
    result = stack.timed("training image build + fit v1", "--profile", "training", "up", "--build")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert stack.inspect(stack.container("training"))["State"]["ExitCode"] == 0, output
    assert "decision: promote v1" in output, output
    written = [stack.root / "modelsettings.json", *(stack.root / "model_registry").iterdir()]
    assert {p.name for p in written} >= {"modelsettings.json", "diamond_price-v1.onnx", "history.jsonl", ".lock"}
    for path in written:
        st = path.stat()
        assert (st.st_uid, st.st_gid) == (stack.uid, stack.gid), f"{path.name}: {st.st_uid}:{st.st_gid}"
    # The api was left as it was: it notices the model itself (next test).
    assert stack.inspect(stack.container("api"))["State"]["StartedAt"] == api_state["StartedAt"]


def test_the_api_turns_healthy_once_a_model_is_promoted_without_a_restart(stack: Stack) -> None:
    before = stack.inspect(stack.container("api"))
    started = time.monotonic()
    wait_for(lambda: serving_version() == 1, 30, "the api serves v1")
    wait_for(lambda: stack.health() == "healthy", 60, "docker reports the api healthy", interval=1)
    stack.timings["model promoted -> healthy"] = time.monotonic() - started
    after = stack.inspect(stack.container("api"))
    assert after["Id"] == before["Id"]
    assert after["State"]["StartedAt"] == before["State"]["StartedAt"]
    assert after["RestartCount"] == 0


def test_training_as_a_uid_that_cannot_write_fails_fast_naming_the_fix(stack: Stack) -> None:
    other = stack.uid + 1
    before = {p.name: p.read_bytes() for p in (stack.root / "model_registry").iterdir() if p.name != ".lock"}
    settings = (stack.root / "modelsettings.json").read_bytes()
    started = time.monotonic()
    result = stack.compose(
        "--profile", "training", "run", "--rm", "training", TRAIN_UID=str(other), TRAIN_GID=str(other)
    )
    elapsed = time.monotonic() - started
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, output
    assert f"uid:gid {other}:{other}" in errors[0]
    assert "/srv/model" in errors[0]
    assert "TRAIN_UID=$(id -u) TRAIN_GID=$(id -g)" in errors[0]
    assert "loading" not in output and "fitting" not in output, output  # no data read, no fit
    assert elapsed < 30, f"{elapsed:.0f} s"
    after = {p.name: p.read_bytes() for p in (stack.root / "model_registry").iterdir() if p.name != ".lock"}
    assert after == before
    assert (stack.root / "modelsettings.json").read_bytes() == settings


# ---- serving -------------------------------------------------------------------------------
def assets_of(page: str) -> list[str]:
    """The same-origin scripts and stylesheets a docs page loads."""
    found = re.findall(r"""(?:src|href)=["'](/[^"']+\.(?:js|css))["']""", page)
    assert found, page[:500]
    return found


def test_every_route_answers_on_localhost_81(stack: Stack) -> None:
    health = get("/").json()
    assert health["ready"] is True and health["model"]["version"] == 1
    one = httpx.post(BASE + "/diamond_price", json=GOOD, timeout=10)
    assert one.status_code == 200, one.text
    assert one.json()["price"] > 0 and one.json()["model_version"] == 1
    many = httpx.post(BASE + "/diamond_prices", json={"diamonds": [GOOD, {**GOOD, "carat": 1.5}]}, timeout=10)
    assert many.status_code == 200, many.text
    prices = many.json()["prices"]
    assert len(prices) == 2 and prices[1] > prices[0] and prices[0] == one.json()["price"]
    v2 = {
        "inputs": [
            {"name": n, "shape": [1], "datatype": "FP32" if isinstance(v, float) else "BYTES", "data": [v]}
            for n, v in GOOD.items()
        ]
    }
    infer = httpx.post(BASE + "/v2/models/diamond_price/infer", json=v2, timeout=10)
    assert infer.status_code == 200, infer.text
    assert infer.json()["model_version"] == "1"
    assert infer.json()["outputs"][0]["data"][0] == pytest.approx(one.json()["price"], abs=0.01)
    metrics = get("/metrics")
    assert metrics.status_code == 200 and "diamond_http_requests_total" in metrics.text
    for page in ("/docs", "/redoc"):
        r = get(page)
        assert r.status_code == 200 and "text/html" in r.headers["content-type"], page
        sizes = {}
        for asset in assets_of(r.text):
            a = get(asset)
            assert a.status_code == 200 and a.content.strip(), f"{page} loads {asset}: {a.status_code}"
            sizes[asset] = len(a.content)
        assert max(sizes.values()) > 500_000, sizes  # the Swagger UI or ReDoc bundle itself
    assert get("/openapi.json").json()["paths"]
    # The price range, the run report and the calculator page with the bundle it loads.
    assert one.json()["price_range"]["low"] <= one.json()["price"] <= one.json()["price_range"]["high"]
    report = get(health["model"]["report"])
    assert report.status_code == 200 and "text/html" in report.headers["content-type"]
    page = httpx.get(BASE + "/calculator", timeout=10, follow_redirects=True)
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    dist = "/calculator/node_modules/onnxruntime-web/dist/"
    for asset in ("/calculator/calculator.js", "/calculator/calculator.css", dist + "ort.wasm.min.mjs",
                  dist + "ort-wasm-simd-threaded.mjs", dist + "ort-wasm-simd-threaded.wasm"):  # fmt: skip
        a = get(asset)
        assert a.status_code == 200 and a.content, f"/calculator loads {asset}: {a.status_code}"
    settings = get("/modelsettings.json").json()
    model = get("/" + settings["path"])
    assert model.status_code == 200 and hashlib.sha256(model.content).hexdigest() == settings["sha256"]


def test_the_serving_image_lacks_training_libraries_and_runs_unprivileged(stack: Stack) -> None:
    api_image, train_image = stack.image("api"), stack.image("training")
    for module in ("sklearn", "pandas"):
        r = docker("run", "--rm", "--entrypoint", "python", api_image, "-c", f"import {module}")
        assert r.returncode != 0 and "ModuleNotFoundError" in r.stderr, r.stdout + r.stderr
    r = docker("run", "--rm", "--entrypoint", "python", api_image, "-c", "import onnxruntime, starlette")
    assert r.returncode == 0, r.stderr
    ids = stack.compose("exec", "-T", "api", "python", "-c", "import os; print(os.getuid(), os.getgid())")
    uid, gid = map(int, ids.stdout.split())
    assert uid != 0 and gid != 0, ids.stdout
    sizes = {name: int(stack.inspect(image)["Size"]) for name, image in (("api", api_image), ("training", train_image))}
    assert sizes["api"] < sizes["training"]
    stack.say("\nimage sizes: " + ", ".join(f"{k} {v / 1e6:.0f} MB" for k, v in sizes.items()))


# ---- a second version, two workers, promotions under load ---------------------------------
def test_training_on_more_rows_promotes_v2(stack: Stack) -> None:
    make_db(stack.root / "diamond-more.db", rows=MORE_ROWS)
    result = stack.timed("fit v2", "--profile", "training", "up", DIAMOND_DB_FILE="./diamond-more.db")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "decision: promote v2" in output and "promoted v2" in output, output
    wait_for(lambda: serving_version() == 2, 30, "the api serves v2")


def worker_views(count: int = 16) -> list[tuple[int, float]]:
    """(version, loaded_at) from ``count`` fresh connections, made concurrently so that
    they spread over the workers."""

    def one(_: int) -> tuple[int, float]:
        with httpx.Client(timeout=10) as client:
            model = client.get(BASE + "/").json()["model"]
            return int(model["version"]), float(model["loaded_at"])

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, range(count)))


def test_two_workers_come_up_healthy_and_converge_on_each_promotion(stack: Stack) -> None:
    started = time.monotonic()
    result = stack.compose("--profile", "api", "up", "--build", "-d", WORKERS="2")
    assert result.returncode == 0, result.stdout + result.stderr
    wait_for(lambda: stack.health() == "healthy", 60, "the api (WORKERS=2) healthy", interval=1)
    stack.timings["api up (WORKERS=2) -> healthy"] = time.monotonic() - started
    # Two processes answer: each reports its own load time.
    loads: set[float] = set()

    def two_answer() -> bool:
        loads.update(t for _, t in worker_views())
        return len(loads) >= 2

    wait_for(two_answer, 30, "answers from two workers")
    assert len(loads) == 2
    for version in (1, 2, 1):
        stack.promote(version)
        seen: set[float] = set()

        def converged(v: int = version, seen: set[float] = seen) -> bool:
            views = worker_views()
            seen.update(t for ver, t in views if ver == v)
            return all(ver == v for ver, _ in views) and len(seen) >= 2

        wait_for(converged, 30, f"both workers serve v{version}")


def test_promotions_under_load_lose_no_request(stack: Stack) -> None:
    assert serving_version() == 1
    stop = threading.Event()
    records: list[tuple[float, float, int, int | None]] = []
    lock = threading.Lock()

    def client_loop() -> None:
        while not stop.is_set():
            with httpx.Client(timeout=10) as client:  # a fresh connection now and then
                for _ in range(20):
                    t0 = time.monotonic()
                    try:
                        r = client.post(BASE + "/diamond_price", json=GOOD)
                        status, version = r.status_code, r.json().get("model_version")
                    except httpx.HTTPError:
                        status, version = 0, None
                    with lock:
                        records.append((t0, time.monotonic(), status, version))

    # (version, from, until): the pointer named `version` at some moment in [from, until].
    spans: list[tuple[int, float, float]] = []
    start = time.monotonic()
    clients = [threading.Thread(target=client_loop) for _ in range(4)]
    for t in clients:
        t.start()
    try:
        time.sleep(2)
        current = 1
        for version in (2, 1, 2, 1):
            before = time.monotonic()
            stack.promote(version)
            spans.append((current, start, time.monotonic()))
            current, start = version, before
            time.sleep(4)
    finally:
        stop.set()
        for t in clients:
            t.join(30)
    spans.append((current, start, time.monotonic()))
    failed = [r for r in records if r[2] != 200]
    assert not failed, f"{len(failed)} of {len(records)} failed: {failed[:5]}"
    assert len(records) > 100
    # A worker notices a new pointer within about two seconds (MODEL_AUTO_RELOAD): a response
    # may name the version the pointer held up to that long before the request began.
    lag = 5.0
    for t0, t1, _, version in records:
        assert any(v == version and a <= t1 and t0 - lag <= b for v, a, b in spans), (t0, t1, version, spans)
    served = [r[3] for r in sorted(records)]
    switches = sum(1 for a, b in itertools.pairwise(served) if a != b)
    assert switches >= 4, f"the clients saw {switches} switches"


# ---- stop ----------------------------------------------------------------------------------
def test_down_stops_the_api_within_10s_and_finishes_the_request_in_flight(stack: Stack) -> None:
    body = json.dumps(GOOD).encode()
    head = (
        f"POST /diamond_price HTTP/1.1\r\nHost: 127.0.0.1:81\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    container = stack.container("api")
    with socket.create_connection(("127.0.0.1", 81), timeout=15) as conn:
        conn.sendall(head + body[:5])  # the request has begun; the rest of the body comes later
        time.sleep(0.5)
        outcome: dict[str, Any] = {}

        def down() -> None:
            t0 = time.monotonic()
            outcome["result"] = stack.compose("--profile", "api", "down")
            outcome["seconds"] = time.monotonic() - t0

        stopper = threading.Thread(target=down)
        stopper.start()
        # Wait until the engine has asked the container to stop.
        wait_for(lambda: not stack.inspect(container)["State"]["Running"] or _stopping(container), 10, "stopping")
        time.sleep(1)
        conn.sendall(body[5:])
        response = b""
        with contextlib.suppress(TimeoutError):
            while chunk := conn.recv(65536):
                response += chunk
        stopper.join(30)
    result = outcome["result"]
    assert result.returncode == 0, result.stdout + result.stderr
    assert response.startswith(b"HTTP/1.1 200"), response[:300]
    assert b'"model_version"' in response
    stack.timings["api down"] = outcome["seconds"]
    assert outcome["seconds"] < 10, f"down took {outcome['seconds']:.1f} s"
    with pytest.raises(httpx.TransportError):
        get("/")


def _stopping(container: str) -> bool:
    """True once the engine has sent the stop signal (the api logs its shutdown)."""
    logs = docker("logs", "--tail", "20", container)
    return "Shutting down" in logs.stdout + logs.stderr


# ---- the data service: imports into the project's database ------------------------------------
def test_the_data_service_imports_a_csv_beside_the_database_and_lists_it(stack: Stack) -> None:
    db = stack.root / "import.db"
    make_db(db, rows=100)
    sales_csv(stack.root / "sales.csv", rows=40, extra=("0.5,Superb,G,VS2,61,55,900,5,5,3",))
    if os.getuid() == 0:  # the container writes as TRAIN_UID: the database must be that user's
        os.chown(db, stack.uid, stack.gid)
    run = ("run", "--rm", "-T", "-e", "DIAMOND_DB=/data/import.db", "data")  # DATA_DIR: the project
    result = stack.timed("data image build + import", *run, "import", "sales.csv")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "sales.csv: 41 rows read, 40 added (import 1, keys 101-140), 1 refused" in output, output
    rejects = stack.root / "sales.csv.rejects.csv"
    assert (rejects.stat().st_uid, rejects.stat().st_gid) == (stack.uid, stack.gid)
    assert "unknown category" in rejects.read_text()
    again = stack.compose(*run, "import", "sales.csv")
    assert again.returncode == 0 and "0 rows added" in again.stdout, again.stdout + again.stderr
    listing = stack.compose(*run)
    assert listing.returncode == 0, listing.stdout + listing.stderr
    assert "140 rows (100 not imported, 40 from 1 import(s))" in listing.stdout, listing.stdout
