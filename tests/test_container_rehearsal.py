"""Rehearsals of the two images, without a Docker engine: what each image would do, done here.

For each Dockerfile, the instructions are replayed from the file itself (parsed by
tests/test_containers.py), so a change to the file changes the rehearsal, and one the
rehearsal cannot follow fails it:

* ``COPY`` lays the build context out under a directory that stands for the container's
  ``/``, filtered by .dockerignore, and ``COPY --from`` takes from an earlier stage;
* ``RUN pip install ...`` runs with the same arguments in a clean virtual environment
  (``python -m venv``), which then stands for the image's ``python``; ``RUN npm ci`` takes
  ``static/node_modules``, which ``make docs`` installed with the same command from the
  same lock file; ``groupadd``/``useradd`` have nothing to replay;
* compose.yaml's mounts are copies at their targets under that directory (the read-only
  ones made read-only), and the command runs with the image's ENV and compose's
  environment (with compose's defaults), its container paths moved under that directory.

The training image runs on a 3,000-row copy of diamond.db and writes into a copy of the
project's model directory; the serving image then serves what that run left there, on
127.0.0.1 and a free port instead of 0.0.0.0:80, and its HEALTHCHECK runs against it.

The virtual environments are built once per session: on a 2-core machine about 20-25 s for
serve.txt and 40-60 s for train.txt, the lower figures with pip's cache warm. Of the image's
pip arguments only --no-cache-dir is left out, so that the cache can serve the next session.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import posixpath
import re
import shutil
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from test_containers import (
    ROOT,
    SERVE_DOCKERFILE,
    TRAIN_DOCKERFILE,
    TRAINING_ONLY_PACKAGES,
    Copy,
    Stage,
    compose_environment,
    in_build_context,
    mount_for,
    mounts,
    normalize,
    parse_copy,
    parse_dockerfile,
    requirement_files,
    requirements,
    service,
    shell_commands,
)

pytestmark = pytest.mark.slow

SMALL_DB_ROWS = 3000
PIP_TIMEOUT = 1200
TRAIN_TIMEOUT = 600
START_TIMEOUT = 60
REQUEST_TIMEOUT = 10
STOP_TIMEOUT = 15
SAMPLE = {"carat": 0.7, "cut": "Ideal", "color": "G", "clarity": "VS2"}


# --------------------------------------------------------------------------------------
# Replaying a Dockerfile
# --------------------------------------------------------------------------------------
@dataclass
class Filesystem:
    """A container's filesystem laid out on this machine: ``root`` stands for ``/``."""

    root: Path
    overlays: dict[str, Path] = field(default_factory=dict)
    """Container directory -> directory on this machine standing for it (not copied)."""

    def host(self, container_path: str) -> Path:
        """Where ``container_path`` is on this machine."""
        path = posixpath.normpath(container_path)
        for prefix in sorted(self.overlays, key=len, reverse=True):
            if path == prefix or path.startswith(prefix + "/"):
                return self.overlays[prefix] / posixpath.relpath(path, prefix)
        return self.root / path.lstrip("/")


@dataclass
class Image:
    """A replayed image: its final stage, its filesystem and the interpreter standing for its python."""

    stage: Stage
    fs: Filesystem
    python: Path | None
    log: Path


def _context_ignore(directory: str, names: list[str]) -> set[str]:
    """``shutil.copytree`` filter: what .dockerignore keeps out of the build context."""
    base = Path(directory).resolve().relative_to(ROOT).as_posix()
    return {n for n in names if not in_build_context(posixpath.join(base, n) if base != "." else n)}


def _copy(c: Copy, fs: Filesystem, source_of: Callable[[str], Path], from_context: bool) -> None:
    for source in c.sources:
        src = source_of(source)
        if from_context:
            relative = src.relative_to(ROOT).as_posix()
            assert src.exists(), f"line {c.line}: COPY {source}: not in the build context"
            assert in_build_context(relative), f"line {c.line}: COPY {source}: excluded by .dockerignore"
        if src.is_dir():
            shutil.copytree(
                src,
                fs.host(c.dest),
                symlinks=True,
                dirs_exist_ok=True,
                ignore=_context_ignore if from_context else None,
            )
        else:
            assert src.is_file(), f"line {c.line}: COPY {source}: no such file"
            dest = fs.host(c.dest)
            if c.dest.endswith("/") or len(c.sources) > 1:
                dest = dest / src.name
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest)


def _run_logged(command: list[str], log: Path, timeout: float, **kwargs: Any) -> None:
    with log.open("a") as out:
        out.write(f"$ {' '.join(command)}\n")
        out.flush()
        result = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, timeout=timeout, check=False, **kwargs)
    if result.returncode != 0:
        tail = "\n".join(log.read_text().splitlines()[-40:])
        raise AssertionError(f"{' '.join(command)} exited {result.returncode}:\n{tail}")


def _pip_install(args: list[str], fs: Filesystem, workdir: str, venv: Path, log: Path) -> Path:
    """``pip install <args>`` in WORKDIR, into a fresh virtual environment (made on first use)."""
    requirement_files(args)  # the same checks as the static test: only -r and known flags
    python = venv / "bin" / "python"
    if not python.exists():
        _run_logged([sys.executable, "-m", "venv", str(venv)], log, timeout=300)
    # The one difference: pip may keep its cache, so that the next session downloads nothing.
    replayed = [a for a in args if a != "--no-cache-dir"]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    _run_logged(
        [str(python), "-m", "pip", "install", "--quiet", *replayed],
        log,
        timeout=PIP_TIMEOUT,
        cwd=fs.host(workdir),
        env=env,
    )
    return python


def _npm_ci(words: list[str], fs: Filesystem, workdir: str) -> None:
    """``npm ci`` in WORKDIR (/build/<dir>): what ``make docs`` (or ``make web``) installed in <dir> of the
    repository (static/ or examples/web/) from the same lock file."""
    assert "--ignore-scripts" in words, words
    where = posixpath.relpath(workdir, "/build")
    for name in ("package.json", "package-lock.json"):
        copied, ours = fs.host(posixpath.join(workdir, name)), ROOT / where / name
        assert copied.read_bytes() == ours.read_bytes(), f"npm ci in {workdir} is not over {where}/{name}"
    installed = ROOT / where / "node_modules"
    assert (installed / ".package-lock.json").is_file(), f"{where}/node_modules is not installed: run `make test`"
    lock = json.loads((ROOT / where / "package-lock.json").read_text())["packages"]
    for dependency in json.loads((ROOT / where / "package.json").read_text()).get("dependencies", {}):
        have = json.loads((installed / dependency / "package.json").read_text())["version"]
        want = lock[f"node_modules/{dependency}"]["version"]
        assert have == want, f"{where}/node_modules has {dependency} {have}, the lock file {want}: run `make test`"
    fs.overlays[posixpath.join(workdir, "node_modules")] = installed


def replay(dockerfile: Path, work: Path) -> Image:
    """Replay every stage of ``dockerfile``; the last one is the image."""
    log = work / "build.log"
    work.mkdir(parents=True, exist_ok=True)
    stages = parse_dockerfile(dockerfile)
    built: dict[str, Filesystem] = {}
    python: Path | None = None
    fs = Filesystem(work / "stage0")
    for number, stage in enumerate(stages):
        fs = Filesystem(work / f"stage{number}")
        fs.root.mkdir()
        python = None
        for index, ins in enumerate(stage.instructions):
            workdir = stage.workdir_at(index)
            if ins.keyword == "WORKDIR":
                fs.host(stage.workdir_at(index + 1)).mkdir(parents=True, exist_ok=True)
            elif ins.keyword == "COPY":
                c = parse_copy(ins, workdir)
                if c.from_stage:
                    assert c.from_stage in built, f"line {ins.line}: COPY --from={c.from_stage}: no such stage"
                    _copy(c, fs, built[c.from_stage].host, from_context=False)
                else:
                    _copy(c, fs, lambda source: ROOT / source, from_context=True)
            elif ins.keyword == "RUN":
                for words in shell_commands(ins):
                    if words[:2] == ["pip", "install"] or words[:4] == ["python", "-m", "pip", "install"]:
                        args = words[words.index("install") + 1 :]
                        python = _pip_install(args, fs, workdir, work / f"venv{number}", log)
                    elif words[:2] == ["npm", "ci"]:
                        _npm_ci(words, fs, workdir)
                    elif words[0] in ("groupadd", "useradd"):
                        pass  # accounts: the rehearsal runs as whoever runs the tests
                    else:
                        raise AssertionError(f"{dockerfile.name}:{ins.line}: the rehearsal cannot replay {words}")
            elif ins.keyword not in ("ENV", "USER", "EXPOSE", "HEALTHCHECK", "CMD", "ENTRYPOINT", "LABEL"):
                raise AssertionError(f"{dockerfile.name}:{ins.line}: the rehearsal cannot replay {ins.keyword}")
        if stage.name:
            built[stage.name] = fs
    return Image(stages[-1], fs, python, log)


# --------------------------------------------------------------------------------------
# Running a replayed image with compose's settings
# --------------------------------------------------------------------------------------
def _make_read_only(path: Path) -> None:
    if path.is_dir():
        for p in sorted(path.rglob("*"), key=lambda p: len(p.parts), reverse=True):
            if not p.is_symlink():
                p.chmod(p.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def _make_writable(path: Path) -> None:
    if path.exists():
        path.chmod(path.stat().st_mode | stat.S_IWUSR)
        if path.is_dir():
            for p in path.rglob("*"):
                if not p.is_symlink():
                    p.chmod(p.stat().st_mode | stat.S_IWUSR)


@dataclass
class Container:
    image: Image
    service: dict[str, Any]
    env: dict[str, str]
    read_only: list[Path]

    @property
    def cwd(self) -> Path:
        return self.image.fs.host(self.image.stage.workdir)

    def argv(self, command: list[str]) -> list[str]:
        assert command, "no command"
        assert command[0] == "python", f"the rehearsal runs python commands only, not {command}"
        assert self.image.python is not None, "the image installs no Python packages"
        return [str(self.image.python), *command[1:]]

    def release(self) -> None:
        for path in self.read_only:
            _make_writable(path)


def container_path_env(value: str, fs: Filesystem) -> str:
    """A variable's value, with a container path under a laid-out top directory moved under ``fs.root``."""
    if value.startswith("/"):
        top = value.lstrip("/").split("/")[0]
        if top and (fs.root / top).exists():
            return str(fs.host(value))
    return value


def start_container(
    image: Image,
    service_name: str,
    fill: dict[str, Callable[[Path], None]],
    overrides: dict[str, str] | None = None,
) -> Container:
    """Lay compose's mounts out, each by ``fill[target]``, and work out the environment."""
    svc = service(service_name)
    fs = image.fs
    read_only = []
    for m in mounts(svc):
        assert m.type == "bind", f"{service_name}: the rehearsal knows bind mounts only, not {m}"
        assert m.target in fill, f"{service_name}: the rehearsal does not know what to put at {m.target}"
        target = fs.host(m.target)
        assert not target.exists(), f"{service_name}: {m.target} would hide something the image put there"
        target.parent.mkdir(parents=True, exist_ok=True)
        fill[m.target](target)
        if m.read_only:
            _make_read_only(target)
            read_only.append(target)
    env = {
        # What the python image gives every container: its PATH (here: the virtual
        # environment's), its locale; HOME is the account's, which does not exist.
        "PATH": f"{image.python.parent if image.python else ''}:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "HOME": str(fs.root / "nonexistent"),
        # Two cores, shared: keep OpenMP and onnxruntime from oversubscribing them.
        "OMP_NUM_THREADS": "1",
    }
    for name, value in {**image.stage.env, **compose_environment(svc), **(overrides or {})}.items():
        env[name] = container_path_env(value, fs)
    return Container(image, svc, env, read_only)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def http(method: str, url: str, body: dict[str, Any] | None = None) -> tuple[int, bytes, str]:
    """(status, body, content type) of one request; HTTP errors are answers too."""
    assert url.startswith("http://127.0.0.1:"), url
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    request = urllib.request.Request(url, data=data, method=method, headers=headers)  # noqa: S310 - checked above
    try:
        with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT) as response:  # noqa: S310 - checked above
            return response.status, response.read(), response.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read(), exc.headers.get("Content-Type", "")


def _seconds(option: str | None, default: float) -> float:
    if not option:
        return default
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m)", option)
    assert m, f"cannot read the duration {option!r}"
    return float(m.group(1)) * {"ms": 0.001, "s": 1.0, "m": 60.0}[m.group(2)]


def run_healthcheck(container: Container) -> subprocess.CompletedProcess[str]:
    """The image's HEALTHCHECK, as Docker runs it: in the container's environment, with its timeout."""
    check = container.image.stage.healthcheck
    assert check is not None, "the image has no HEALTHCHECK"
    return subprocess.run(
        container.argv(check.command),
        cwd=container.cwd,
        env=container.env,
        capture_output=True,
        text=True,
        timeout=_seconds(check.options.get("--timeout"), 30) + 5,
        check=False,
    )


# --------------------------------------------------------------------------------------
# Fixtures: the images (once per session), the data, the training run
# --------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def train_image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Image]:
    work = tmp_path_factory.mktemp("train-image")
    try:
        yield replay(TRAIN_DOCKERFILE, work)
    finally:
        shutil.rmtree(work)  # about 500 MB; pytest would keep three sessions' worth


@pytest.fixture(scope="session")
def serve_image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Image]:
    work = tmp_path_factory.mktemp("serve-image")
    try:
        yield replay(SERVE_DOCKERFILE, work)
    finally:
        shutil.rmtree(work)  # about 250 MB


def small_db(path: Path, rows: int = SMALL_DB_ROWS) -> None:
    """The first ``rows`` rows of the repository's diamond.db, in a table made by the same DDL."""
    source = sqlite3.connect(f"{(ROOT / 'diamond.db').as_uri()}?mode=ro", uri=True)
    try:
        (ddl,) = source.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'diamonds'").fetchone()
        data = source.execute("SELECT * FROM diamonds ORDER BY id LIMIT ?", (rows,)).fetchall()
    finally:
        source.close()
    target = sqlite3.connect(path)
    try:
        target.execute(ddl)
        target.executemany(f"INSERT INTO diamonds VALUES ({', '.join('?' * len(data[0]))})", data)
        target.commit()
    finally:
        target.close()


def project_model_dir(target: Path) -> None:
    """What the model directory mount shows: the project's modelsettings.json and model_registry/, if any."""
    target.mkdir()
    if (ROOT / "modelsettings.json").is_file():
        shutil.copy2(ROOT / "modelsettings.json", target / "modelsettings.json")
    if (ROOT / "model_registry").is_dir():
        shutil.copytree(
            ROOT / "model_registry", target / "model_registry", ignore=shutil.ignore_patterns(".lock", "*.tmp")
        )


@dataclass(frozen=True)
class TrainingRun:
    result: subprocess.CompletedProcess[str]
    model_dir: Path
    """The model directory mount, as training left it."""
    before: dict[str, bytes]


def snapshot(directory: Path) -> dict[str, bytes]:
    return {p.relative_to(directory).as_posix(): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


@pytest.fixture(scope="session")
def training_run(train_image: Image) -> Iterator[TrainingRun]:
    """The training image's command, run once against the mounts compose gives it."""
    svc = service("training")
    env_db = {**train_image.stage.env, **compose_environment(svc)}["DIAMOND_DB"]
    env_settings = {**train_image.stage.env, **compose_environment(svc)}["MODEL_SETTINGS"]
    model_target = mount_for(posixpath.dirname(env_settings), svc).target
    db_target = mount_for(env_db, svc).target
    container = start_container(train_image, "training", {model_target: project_model_dir, db_target: small_db})
    try:
        model_dir = train_image.fs.host(model_target)
        before = snapshot(model_dir)
        result = subprocess.run(
            container.argv(train_image.stage.command),
            cwd=container.cwd,
            env=container.env,
            capture_output=True,
            text=True,
            timeout=TRAIN_TIMEOUT,
            check=False,
        )
        yield TrainingRun(result, model_dir, before)
    finally:
        container.release()


# --------------------------------------------------------------------------------------
# The rehearsals
# --------------------------------------------------------------------------------------
def test_training_image_trains_on_the_mounted_files(training_run: TrainingRun) -> None:
    result = training_run.result
    output = f"exit {result.returncode}\n--- stdout\n{result.stdout[-4000:]}\n--- stderr\n{result.stderr[-4000:]}"
    assert result.returncode == 0, output
    assert re.search(r"decision: (promote|reject)", result.stdout), output
    settings = json.loads((training_run.model_dir / "modelsettings.json").read_text())
    model = training_run.model_dir / settings["path"]
    assert model.is_file(), settings["path"]
    assert model.parent == training_run.model_dir / "model_registry"
    # One more line in the history, whatever the decision; nothing that was there before
    # changed but the pointer and the history (model files are write-once).
    after = snapshot(training_run.model_dir)
    history = "model_registry/history.jsonl"
    assert after[history].count(b"\n") == training_run.before.get(history, b"").count(b"\n") + 1
    for name, content in training_run.before.items():
        if name not in ("modelsettings.json", history, "model_registry/.lock"):
            assert after.get(name) == content, f"training changed {name}"


def test_training_image_uses_only_train_txt(train_image: Image) -> None:
    assert train_image.python is not None
    installed = _installed(train_image.python)
    expected = set(requirements(ROOT / "requirements" / "train.txt"))
    assert installed - {"pip", "setuptools", "wheel"} == expected


def _installed(python: Path) -> set[str]:
    result = subprocess.run(
        [str(python), "-m", "pip", "list", "--format=json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        env={k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")},
    )
    return {normalize(p["name"]) for p in json.loads(result.stdout)}


def test_serving_image_has_no_training_package(serve_image: Image) -> None:
    assert serve_image.python is not None
    installed = _installed(serve_image.python)
    assert not installed & TRAINING_ONLY_PACKAGES, sorted(installed & TRAINING_ONLY_PACKAGES)
    assert installed - {"pip", "setuptools", "wheel"} == set(requirements(ROOT / "requirements" / "serve.txt"))
    # ... and the service's code imports none of them either.
    probe = "import sys, inference.app; print(sorted(m for m in sys.modules if m.split('.')[0] in {}))".format(
        sorted({"sklearn", "pandas", "skl2onnx", "onnx"})
    )
    result = subprocess.run(
        [str(serve_image.python), "-c", probe],
        cwd=serve_image.fs.host(serve_image.stage.workdir),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", result.stdout


@dataclass
class Server:
    container: Container
    process: subprocess.Popen[bytes]
    base: str
    log: Path
    settings: dict[str, Any]

    def output(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-60:])


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the server's process group (uvicorn and its workers), then SIGKILL if it lingers."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=STOP_TIMEOUT)


@pytest.fixture
def server(serve_image: Image, training_run: TrainingRun, tmp_path: Path) -> Iterator[Server]:
    """The serving image's CMD with its ENV and compose's environment, on 127.0.0.1 and a free port."""
    assert training_run.result.returncode == 0, "the training rehearsal failed; see its test"
    svc = service("api")
    env = {**serve_image.stage.env, **compose_environment(svc)}
    model_target = mount_for(posixpath.dirname(env["MODEL_SETTINGS"]), svc).target

    def model_dir(target: Path) -> None:
        shutil.copytree(training_run.model_dir, target, ignore=shutil.ignore_patterns(".lock", "*.tmp"))

    port = free_port()
    container = start_container(
        serve_image, "api", {model_target: model_dir}, overrides={"HOST": "127.0.0.1", "PORT": str(port)}
    )
    log = tmp_path / "server.log"
    try:
        with log.open("wb") as out:
            process = subprocess.Popen(
                container.argv(serve_image.stage.command),
                cwd=container.cwd,
                env=container.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            settings = json.loads((serve_image.fs.host(model_target) / "modelsettings.json").read_text())
            srv = Server(container, process, f"http://127.0.0.1:{port}", log, settings)
            _wait_until_ready(srv)
            yield srv
        finally:
            _stop(process)
    finally:
        container.release()
        model = serve_image.fs.host(model_target)
        shutil.rmtree(model)


def _wait_until_ready(srv: Server) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    last = "no answer"
    while time.monotonic() < deadline:
        if srv.process.poll() is not None:
            raise AssertionError(f"the server exited with {srv.process.returncode}:\n{srv.output()}")
        try:
            status, body, _ = http("GET", srv.base + "/")
            if status == 200:
                return
            last = f"{status} {body[:300]!r}"
        except OSError as exc:
            last = repr(exc)
        time.sleep(0.25)
    raise AssertionError(f"GET / did not answer 200 within {START_TIMEOUT} s (last: {last}):\n{srv.output()}")


def test_serving_image_serves_the_mounted_model(server: Server) -> None:
    status, body, kind = http("GET", server.base + "/")
    assert status == 200, body
    assert kind.startswith("application/json"), kind
    json.loads(body)
    status, body, _ = http("POST", server.base + "/diamond_price", SAMPLE)
    assert status == 200, body
    answer = json.loads(body)
    assert answer["model_version"] == server.settings["version"], answer
    assert isinstance(answer["price"], float), answer
    assert 300 < answer["price"] < 20_000, answer
    # compose's default UPDATE_TOKEN is empty: no token needed, and a re-read of the
    # read-only mount changes nothing.
    status, body, _ = http("POST", server.base + "/update_model")
    assert status == 200, body
    assert json.loads(body)["status"] == "unchanged", body


def test_serving_image_has_its_docs_bundles(server: Server) -> None:
    for page in ("/docs", "/redoc"):
        status, body, kind = http("GET", server.base + page)
        assert status == 200, f"{page}: {status} {body[:300]!r}"
        assert kind.startswith("text/html"), kind
        assets = re.findall(r'(?:src|href)="(/static/[^"]+)"', body.decode())
        assert assets, f"{page} loads nothing from /static"
        for asset in assets:
            status, body, _ = http("GET", server.base + asset)
            assert status == 200, f"{page} loads {asset}: {status} {body[:200]!r}"


def test_serving_image_has_its_calculator(server: Server) -> None:
    """/calculator (issue #14): the page, every file it loads, and the mounted model at the URLs it reads."""
    status, body, kind = http("GET", server.base + "/calculator")  # urllib follows the 308 to /calculator/
    assert status == 200 and kind.startswith("text/html"), f"/calculator: {status} {body[:300]!r}"
    assets = re.findall(r'(?:src|href)="([^":]+)"', body.decode())
    assert "calculator.js" in assets, assets
    status, script, _ = http("GET", server.base + "/calculator/calculator.js")
    assert status == 200
    (bundle,) = re.findall(r"from '\./(node_modules/[^']+)'", script.decode())
    dist = posixpath.dirname(bundle)
    loads = [*assets, bundle, f"{dist}/ort-wasm-simd-threaded.mjs", f"{dist}/ort-wasm-simd-threaded.wasm"]
    for asset in loads:
        status, body, _ = http("GET", f"{server.base}/calculator/{asset}")
        assert status == 200, f"/calculator loads {asset}: {status} {body[:200]!r}"
    status, body, _ = http("GET", server.base + "/modelsettings.json")
    assert status == 200 and json.loads(body)["sha256"] == server.settings["sha256"], body[:300]
    status, body, _ = http("GET", f"{server.base}/{server.settings['path']}")
    assert status == 200 and hashlib.sha256(body).hexdigest() == server.settings["sha256"]


def test_serving_image_healthcheck(server: Server) -> None:
    result = run_healthcheck(server.container)
    assert result.returncode == 0, result.stdout + result.stderr
    _stop(server.process)
    result = run_healthcheck(server.container)
    assert result.returncode != 0, "the HEALTHCHECK passes with the server down"
