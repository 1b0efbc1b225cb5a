"""Shared fixtures: tiny real SQLite databases and tiny real models, built in tmp_path (helpers: tests/helpers.py).

A real training run costs seconds (the fit, the ONNX export and the report's plots), so each run that
several tests look at happens once per session, in a session fixture below, and tests only read
what it left. A test that changes a project's files works on a copy (:meth:`Project.copy`,
:func:`served`)."""

from __future__ import annotations

import contextlib
import json
import os

# One OpenMP thread: the suite runs fits side by side with servers on a 2-core machine,
# where oversubscribed OpenMP barriers slow HistGradientBoosting down a hundredfold.
os.environ.setdefault("OMP_NUM_THREADS", "1")

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import ROOT, InProcessClient, Project, Run, make_db, settings_for, tiny_factory, train


@contextlib.contextmanager
def shared(project: Project) -> Iterator[None]:
    """Around a session fixture's project: the tests that share it must leave its files as they were."""
    before = project.snapshot()
    yield
    assert project.snapshot() == before, f"a test changed {project.root}, which other tests share: copy it first"


def new_project(tmp_path_factory: pytest.TempPathFactory, name: str) -> Project:
    """An empty project with the standard 1,500-row database."""
    proj = Project(tmp_path_factory.mktemp(name))
    make_db(proj.db)
    return proj


# -- real training runs, once per session (read only: copy before changing anything) -------------


@pytest.fixture(scope="session")
def first_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    """The first run on an empty registry with the tiny pipeline: v1 promoted."""
    run = train(new_project(tmp_path_factory, "trained"), tiny_factory())
    with shared(run.project):
        yield run


@pytest.fixture(scope="session")
def trained(first_run: Run) -> Project:
    """A project whose registry holds one real model (v1), trained once per session. Read only."""
    return first_run.project


@pytest.fixture(scope="session")
def weak(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    """A project whose v1 is a weak model (3 boosting iterations). Read only."""
    project = train(new_project(tmp_path_factory, "weak"), tiny_factory(max_iter=3)).project
    with shared(project):
        yield project


@pytest.fixture(scope="session")
def upgraded(weak: Project, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    """A copy of :func:`weak` whose settings claim v1 scored an MAE of 0.01 (a figure no candidate
    could beat: the gate must score v1 on today's rows, not believe the file), then a stronger
    candidate (60 iterations): promoted as v2."""
    proj = weak.copy(tmp_path_factory.mktemp("upgraded") / "p")
    record = json.loads(proj.settings.read_text())
    proj.settings.write_text(json.dumps({**record, "mae": 0.01}))
    run = train(proj, tiny_factory(max_iter=60))
    with shared(run.project):
        yield run


@pytest.fixture(scope="session")
def downgraded(upgraded: Run, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    """A copy of :func:`upgraded` (the strong v2 current), then a weak candidate (3 iterations): rejected."""
    run = train(upgraded.project.copy(tmp_path_factory.mktemp("downgraded") / "p"), tiny_factory(max_iter=3))
    with shared(run.project):
        yield run


@pytest.fixture(scope="session")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    """A project whose v1 has no price range (the tiny pipeline without its interval). Read only."""
    project = train(new_project(tmp_path_factory, "plain"), tiny_factory(interval=False)).project
    with shared(project):
        yield project


@pytest.fixture(scope="session")
def ranged(plain: Project, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    """A copy of :func:`plain`, then the tiny pipeline with its price range: the same median model
    (the same MAE) plus a calibrated range, promoted as v2."""
    run = train(plain.copy(tmp_path_factory.mktemp("ranged") / "p"), tiny_factory())
    with shared(run.project):
        yield run


@pytest.fixture(scope="session")
def retrained(ranged: Run, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    """A copy of :func:`ranged`, trained again with the same pipeline on the same rows: rejected."""
    run = train(ranged.project.copy(tmp_path_factory.mktemp("retrained") / "p"), tiny_factory())
    with shared(run.project):
        yield run


@pytest.fixture(scope="session")
def shared_client(trained: Project) -> Iterator[InProcessClient]:
    """The service over :func:`trained`, in process, one for the session (an app's start-up costs more
    than most tests): for tests that only send requests, never /update_model. Its metrics count
    every test's requests; a test that reads them, reloads or changes files takes :func:`client`."""
    from inference.app import create_app

    with InProcessClient(create_app(settings_for(trained))) as c:
        yield c


# -- per test ---------------------------------------------------------------------------------------


@pytest.fixture
def project(tmp_path: Path) -> Project:
    proj = Project(tmp_path / "project")
    proj.root.mkdir()
    make_db(proj.db)
    return proj


@pytest.fixture
def served(trained: Project, tmp_path: Path) -> Project:
    """A private copy of :func:`trained` that a test may damage."""
    return trained.copy(tmp_path / "served")


@pytest.fixture
def client(served: Project) -> Iterator[InProcessClient]:
    """The service over :func:`served`, in process (no reload watcher); errors answer as the server would."""
    from inference.app import create_app

    with InProcessClient(create_app(settings_for(served))) as c:
        yield c


@pytest.fixture(scope="session")
def repo_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The real service over the repository's own modelsettings.json and calculator (browser tests)."""
    from devtools.server import running_server
    from tests.browser import chromium

    chromium()
    env = {"MODEL_SETTINGS": str(ROOT / "modelsettings.json"), "MODEL_AUTO_RELOAD": "0"}
    with running_server(env, log_dir=tmp_path_factory.mktemp("server")) as (base, _):
        yield base
