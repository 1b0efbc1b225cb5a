"""Test helpers, in one place: real diamonds databases and projects, tiny real models and real
training runs, the standard diamond, the service's settings for a project and its app called in
process. Fixtures live in conftest.py; test files import from here (and from tests/browser.py, and
devtools/server.py for a real server process), never from each other."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import httpx
import numpy as np

from devtools.asgi import http_scope

if TYPE_CHECKING:
    from training.paths import TrainingPaths
    from training.train import Outcome

ROOT = Path(__file__).resolve().parent.parent
REPO_DB = ROOT / "diamond.db"
COLUMNS = ("carat", "cut", "color", "clarity", "depth", "table", "price", "x", "y", "z")
TINY = {"max_iter": 40, "max_leaf_nodes": 15, "random_state": 0}


def make_db(
    path: Path,
    rows: int = 1500,
    *,
    extra: list[tuple[Any, ...]] | None = None,
    offset: int = 0,
    sample: tuple[int, int] | None = None,
) -> Path:
    """A real diamonds table with the first ``rows`` rows of the repo's data set (keys kept);
    with ``sample=(k, r)``, only rows whose ``id % k = r``."""
    src = sqlite3.connect(f"file:{REPO_DB}?mode=ro", uri=True)
    k, r = sample or (1, 0)
    data = src.execute(
        "SELECT * FROM diamonds WHERE id % ? = ? ORDER BY id LIMIT ? OFFSET ?", (k, r, rows, offset)
    ).fetchall()
    src.close()
    con = sqlite3.connect(path)
    cols = ", ".join(f'"{c}"' for c in COLUMNS)
    con.execute(f"CREATE TABLE diamonds (id INTEGER PRIMARY KEY, {cols})")
    con.executemany(f"INSERT INTO diamonds VALUES ({', '.join('?' * 11)})", data + (extra or []))
    con.commit()
    con.close()
    return path


@dataclass
class Project:
    """A throwaway copy of the project's mutable state: db, settings file, registry."""

    root: Path

    @property
    def db(self) -> Path:
        return self.root / "diamond.db"

    @property
    def settings(self) -> Path:
        return self.root / "modelsettings.json"

    @property
    def registry(self) -> Path:
        return self.root / "model_registry"

    def training_paths(self) -> TrainingPaths:
        from training.paths import TrainingPaths

        return TrainingPaths(self.db, self.settings, self.registry)

    def copy(self, root: Path) -> Project:
        """A copy of this project at ``root`` (not the registry's lock file), for a test to change."""
        shutil.copytree(self.root, root, ignore=shutil.ignore_patterns(".lock"))
        return Project(root)

    def train_command(self, *extra: str) -> list[str]:
        """``python -m training`` on this project's files."""
        paths = ["--db", str(self.db), "--settings", str(self.settings), "--registry", str(self.registry)]
        return [sys.executable, "-m", "training", *paths, *extra]

    def train_env(self) -> dict[str, str]:
        return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}

    def train_cli(self, *extra: str) -> subprocess.CompletedProcess[str]:
        return self.run(self.train_command(*extra))

    def cli(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        """Run ``python -m <args>`` in this project's directory."""
        return self.run([sys.executable, "-m", *args], timeout=timeout)

    def run(self, command: list[str], timeout: float = 180) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            command, cwd=self.root, env=self.train_env(), capture_output=True, text=True, timeout=timeout, check=False
        )

    def snapshot(self) -> dict[str, bytes]:
        """Every file of the settings and registry, for 'nothing changed' assertions.

        Not ``registry/reports/``: every run, even a failed one, adds its report there.
        """
        files = {}
        if self.settings.exists():
            files["modelsettings.json"] = self.settings.read_bytes()
        if self.registry.exists():
            for p in sorted(self.registry.iterdir()):
                if p.name != ".lock" and p.is_file():
                    files[p.name] = p.read_bytes()
        return files


def tiny_factory(*, interval: bool = True, **params: Any) -> Callable[[], Any]:
    """The shipped pipeline with tiny boosters (``params`` override :data:`TINY`); ``interval=False``
    leaves out the price range."""
    from training.estimator import INTERVAL
    from training.pipeline import build_pipeline

    booster = {**TINY, **params}
    return lambda: build_pipeline(boosters=(booster,), interval=INTERVAL if interval else None, interval_booster=TINY)


@dataclass(frozen=True)
class Run:
    """One real training run, in process: the project it ran on, what it returned, and every
    settings and registry file as it was just before (:meth:`Project.snapshot`)."""

    project: Project
    outcome: Outcome
    before: Mapping[str, bytes]


def train(p: Project, factory: Callable[[], Any], **options: Any) -> Run:
    """:func:`training.train.run` on ``p`` with the pipelines ``factory`` builds."""
    from training.train import run

    before = MappingProxyType(p.snapshot())  # shared by many tests: read only
    return Run(p, run(p.training_paths(), pipeline_factory=factory, **options), before)


def train_tiny_in_child(db: str, settings: str, registry: str, max_iter: int) -> None:
    """One real training run with a tiny booster: the target of a forked child the test kills."""
    from training.paths import TrainingPaths
    from training.train import run

    run(TrainingPaths(Path(db), Path(settings), Path(registry)), pipeline_factory=tiny_factory(max_iter=max_iter))


# -- the service ---------------------------------------------------------------------------------


class InProcessClient:
    """The service's ASGI app, with its lifespan, called in this thread on an event loop of its own
    through httpx's ASGITransport: what starlette's TestClient does without its second thread,
    whose hand-offs cost about 2.5 ms a request (this costs a fifth of that). As with
    ``TestClient(raise_server_exceptions=False)``, an error answers as the server would (a 500,
    never an exception here); redirects are followed. Use it as a context manager."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self._loop = asyncio.new_event_loop()
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        self._client = httpx.AsyncClient(transport=transport, base_url="http://testserver", follow_redirects=True)
        self._to_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._from_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._lifespan: asyncio.Future[None] | None = None

    def __enter__(self) -> InProcessClient:
        try:
            self._loop.run_until_complete(self._lifespan_event("startup"))
        except BaseException:
            self._close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self._loop.run_until_complete(self._lifespan_event("shutdown"))
        finally:
            self._close()

    def _close(self) -> None:
        try:
            self._loop.run_until_complete(self._client.aclose())
        finally:
            self._loop.close()

    async def _lifespan_event(self, event: str) -> None:
        if self._lifespan is None:
            scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
            self._lifespan = asyncio.ensure_future(self.app(scope, self._to_app.get, self._from_app.put))
        await self._to_app.put({"type": f"lifespan.{event}"})
        answer = await self._from_app.get()
        if answer["type"] != f"lifespan.{event}.complete":
            raise RuntimeError(f"lifespan {event} failed: {answer.get('message')}")
        if event == "shutdown":
            await self._lifespan

    def request(self, method: str, url: str, **options: Any) -> httpx.Response:
        return self._loop.run_until_complete(self._client.request(method, url, **options))

    def get(self, url: str, **options: Any) -> httpx.Response:
        return self.request("GET", url, **options)

    def post(self, url: str, **options: Any) -> httpx.Response:
        return self.request("POST", url, **options)

    def delete(self, url: str, **options: Any) -> httpx.Response:
        return self.request("DELETE", url, **options)

    def raw(
        self, method: str, path: str, body: bytes, headers: list[tuple[bytes, bytes]], **scope: Any
    ) -> tuple[int, bytes]:
        """One ASGI call as uvicorn makes it (the whole body in one message), with ``scope`` added
        to the request's scope: the status and the body sent."""
        full = http_scope(method, path, headers, **scope)
        messages = [{"type": "http.request", "body": body, "more_body": False}]
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            if messages:
                return messages.pop()
            await asyncio.sleep(3600)
            raise AssertionError("not reached")

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        self._loop.run_until_complete(self.app(full, receive, send))
        status = next(m["status"] for m in sent if m["type"] == "http.response.start")
        return status, b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


GOOD = {"carat": 0.7, "cut": "Ideal", "color": "G", "clarity": "VS2"}
"""The standard diamond."""


def settings_for(p: Project, **overrides: Any) -> Any:
    """The service's settings for project ``p`` (no reload watcher unless asked)."""
    from inference.config import Settings

    return Settings(model_settings=p.settings, model_registry=p.registry, auto_reload=False, **overrides)


def reference_price(p: Project, rows: list[dict[str, Any]]) -> np.ndarray:
    """What v1 of ``p`` prices ``rows`` at, straight from onnxruntime."""
    from inference.onnx_io import make_feeds, open_session, predict
    from inference.schema import FEATURES

    blob = (p.registry / "diamond_price-v1.onnx").read_bytes()
    return predict(open_session(blob), make_feeds({n: [r[n] for r in rows] for n in FEATURES.names}))


def env_for(p: Project, **extra: str) -> dict[str, str]:
    """Environment for a real server process over project ``p``."""
    return {"MODEL_SETTINGS": str(p.settings), "MODEL_REGISTRY": str(p.registry), **extra}


def add_version(p: Project, version: int) -> dict[str, object]:
    """Publish a copy of v1 as ``version`` (same graph, new file) and return its pointer record."""
    src = p.registry / "diamond_price-v1.onnx"
    dst = p.registry / f"diamond_price-v{version}.onnx"
    shutil.copy(src, dst)
    record = json.loads(p.settings.read_text())
    return {**record, "version": version, "path": f"model_registry/{dst.name}"}


def write_text_atomically(path: Path, text: str) -> None:
    """``path`` replaced whole by ``text``: a reader never sees it truncated or half written."""
    partial = path.with_suffix(".partial")
    partial.write_text(text)
    os.replace(partial, path)


def write_atomically(path: Path, record: dict[str, object]) -> None:
    from training.registry import atomic_write

    atomic_write(path, json.dumps(record).encode())


# -- rows for embedding tests: real diamonds, some made unpriceable ------------------------------

Row = dict[str, Any]

UNPRICEABLE: list[tuple[str, Any]] = [
    ("cut", "Superb"), ("cut", "ideal"), ("cut", "Ideal "), ("cut", ""), ("cut", None),
    ("color", "K"), ("color", "g"), ("color", ""), ("color", None),
    ("clarity", "I3"), ("clarity", "vs2"), ("clarity", "VS2 "), ("clarity", ""), ("clarity", None),
    ("carat", 0.19), ("carat", 0.1999), ("carat", 5.02), ("carat", 5.0101), ("carat", 0.0), ("carat", -1.0),
    ("carat", 100.0), ("carat", 1e30),
    ("carat", 1e39),  # beyond float32: inf
    ("carat", None),  # missing: NaN
]  # fmt: skip
"""``(field, value)`` put into a sampled row; each makes the row unpriceable."""
SCHEMA_EDGES: list[tuple[str, Any]] = [("carat", 0.2), ("carat", 5.01), ("carat", 0.2), ("carat", 5.01)]
"""Inside the schema, on its edges: these rows must be priced."""


@cache
def repo_features() -> tuple[tuple[Any, ...], ...]:
    """Every diamond of the repo's data set as ``(carat, cut, color, clarity)``, in key order
    (read once per session: tests sample from it often)."""
    con = sqlite3.connect(f"file:{REPO_DB}?mode=ro", uri=True)
    data = con.execute("SELECT carat, cut, color, clarity FROM diamonds ORDER BY id").fetchall()
    con.close()
    return tuple(data)


def mixed_rows(n: int = 1000, seed: int = 14, copies: int = 4) -> tuple[list[Row], np.ndarray]:
    """``n`` seeded rows of diamond.db with ``copies`` of each :data:`UNPRICEABLE` change and the
    :data:`SCHEMA_EDGES` put in; and which rows are unpriceable."""
    from inference.schema import FEATURES

    data = repo_features()
    rng = np.random.default_rng(seed)
    rows = [dict(zip(FEATURES.names, data[i], strict=True)) for i in rng.choice(len(data), size=n, replace=False)]
    invalid = np.zeros(n, dtype=bool)
    changes = [*(UNPRICEABLE * copies), *SCHEMA_EDGES]
    for at, (field, value) in zip(rng.choice(n, size=len(changes), replace=False), changes, strict=True):
        rows[at][field] = value
        invalid[at] = (field, value) not in SCHEMA_EDGES
    return rows, invalid


def node() -> str:
    """The ``node`` executable, with examples/node installed; skips without Node (fails under CI)."""
    import pytest

    exe = shutil.which("node")
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("node is missing: CI must install Node.js (20 or later) first")
        pytest.skip("node is missing")
    if not (ROOT / "examples" / "node" / "node_modules" / "onnxruntime-node").is_dir():
        pytest.fail("examples/node/node_modules is missing: run `make test` (npm ci --prefix examples/node)")
    return exe


def prometheus_tool(name: str) -> str:
    """Debian's ``prometheus`` or ``promtool`` (scripts/install_prometheus.sh); skips without it
    (fails under CI)."""
    import pytest

    exe = shutil.which(name, path="/usr/bin:" + os.environ.get("PATH", ""))
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is missing: CI must run scripts/install_prometheus.sh first")
        pytest.skip(f"{name} is missing (scripts/install_prometheus.sh installs it)")
    return exe


def republish(p: Project, version: int, change: Callable[[dict[str, str]], None]) -> dict[str, object]:
    """Publish v1 of ``p`` as ``version`` with its ``metadata_props`` changed by ``change`` (a dict it
    edits in place); returns the pointer record naming it (sha256 included)."""
    import hashlib

    import onnx

    model = onnx.load_model_from_string((p.registry / "diamond_price-v1.onnx").read_bytes())
    props = {prop.key: prop.value for prop in model.metadata_props}
    change(props)
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, props)
    blob = model.SerializeToString()
    (p.registry / f"diamond_price-v{version}.onnx").write_bytes(blob)
    record = json.loads(p.settings.read_text())
    return {
        **record,
        "version": version,
        "path": f"model_registry/diamond_price-v{version}.onnx",
        "sha256": hashlib.sha256(blob).hexdigest(),
    }


# -- a model that passes the load checks but is slow, or never ends ------------------------------


def slow_model(offset: float, scale: float) -> bytes:
    """A real ONNX model with the service's interface (price = 1000 x carat) that first spins an
    ONNX Loop ``(max(carat) - offset) x scale`` times (about 3 us each): ``offset=0.2, scale=1e7``
    is instant for the trial row (carat 0.2) and endless for a carat of 3; ``offset=0`` never
    finishes even the trial."""
    from onnx import TensorProto
    from onnx import helper as h

    f, text = TensorProto.FLOAT, TensorProto.STRING
    inputs = [h.make_tensor_value_info("carat", f, [None, 1])]
    inputs += [h.make_tensor_value_info(n, text, [None, 1]) for n in ("cut", "color", "clarity")]
    body = h.make_graph(
        [h.make_node("Identity", ["cond_in"], ["cond_out"]), h.make_node("Add", ["v_in", "one"], ["v_out"])],
        "spin",
        [
            h.make_tensor_value_info("i", TensorProto.INT64, []),
            h.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
            h.make_tensor_value_info("v_in", f, []),
        ],
        [h.make_tensor_value_info("cond_out", TensorProto.BOOL, []), h.make_tensor_value_info("v_out", f, [])],
        [h.make_tensor("one", f, [], [1.0])],
    )
    nodes = [
        h.make_node("Sub", ["carat", "offset"], ["shifted"]),
        h.make_node("Mul", ["shifted", "scale"], ["scaled"]),
        h.make_node("ReduceMax", ["scaled"], ["most"], keepdims=0),
        h.make_node("Cast", ["most"], ["trips"], to=TensorProto.INT64),
        h.make_node("Loop", ["trips", "true", "zero"], ["spun"], body=body),
        h.make_node("Mul", ["spun", "zero"], ["nothing"]),
        h.make_node("Mul", ["carat", "thousand"], ["base"]),
        h.make_node("Add", ["base", "nothing"], ["price"]),
    ]
    constants = [
        h.make_tensor("offset", f, [], [offset]),
        h.make_tensor("scale", f, [], [scale]),
        h.make_tensor("true", TensorProto.BOOL, [], [True]),
        h.make_tensor("zero", f, [], [0.0]),
        h.make_tensor("thousand", f, [], [1000.0]),
    ]
    graph = h.make_graph(nodes, "slow", inputs, [h.make_tensor_value_info("price", f, [None, 1])], constants)
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])
    model.ir_version = 8
    return bytes(model.SerializeToString())


def point_at(p: Project, version: int, blob: bytes) -> None:
    """Publish ``blob`` as ``version`` in ``p``'s registry and point the settings at it."""
    import hashlib

    (p.registry / f"diamond_price-v{version}.onnx").write_bytes(blob)
    record = json.loads(p.settings.read_text()) if p.settings.exists() else {"mae": 1.0}
    record |= {
        "version": version,
        "path": f"model_registry/diamond_price-v{version}.onnx",
        "sha256": hashlib.sha256(blob).hexdigest(),
    }
    write_atomically(p.settings, record)


# -- imports into diamond.db ---------------------------------------------------------------------


def sales_csv(path: Path, rows: int = 200, *, offset: int = 40_000, extra: tuple[str, ...] = ()) -> Path:
    """A CSV file of ``rows`` real rows of diamond.db (from ``offset``, every column but the key),
    then the ``extra`` lines as written: what a shop exports, for ``python -m training import``."""
    src = sqlite3.connect(f"file:{REPO_DB}?mode=ro", uri=True)
    cols = ", ".join(f'"{c}"' for c in COLUMNS)
    data = src.execute(f"SELECT {cols} FROM diamonds ORDER BY id LIMIT ? OFFSET ?", (rows, offset)).fetchall()
    src.close()
    lines = [",".join(COLUMNS), *(",".join(str(v) for v in row) for row in data), *extra]
    path.write_text("\n".join(lines) + "\n")
    return path


def table_state(db: Path) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Every row of the diamonds table and every schema entry: 'nothing changed' is equality.
    Opened for writing, so that SQLite rolls back what a killed writer left (it writes nothing else)."""
    con = sqlite3.connect(db)
    try:
        rows = con.execute("SELECT * FROM diamonds ORDER BY id").fetchall()
        schema = con.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name").fetchall()
    finally:
        con.close()
    return rows, schema


# -- real processes ---------------------------------------------------------------------------------


def rss_bytes(pid: int) -> int:
    """A process's resident memory, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def port_of(base: str) -> int:
    """The port of a ``http://127.0.0.1:N`` base URL."""
    return int(base.rsplit(":", 1)[1])
