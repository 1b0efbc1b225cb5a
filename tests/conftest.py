"""Shared fixtures: tiny real SQLite databases and tiny real models, built in tmp_path (helpers: tests/helpers.py)."""

from __future__ import annotations

import os

# One OpenMP thread: the suite runs fits side by side with servers on a 2-core machine,
# where oversubscribed OpenMP barriers slow HistGradientBoosting down a hundredfold.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import Project, make_db, settings_for, tiny_factory


@pytest.fixture
def project(tmp_path: Path) -> Project:
    proj = Project(tmp_path / "project")
    proj.root.mkdir()
    make_db(proj.db)
    return proj


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Project:
    """A project whose registry holds one real model (v1), trained once per session."""
    from training.paths import TrainingPaths
    from training.train import run

    proj = Project(tmp_path_factory.mktemp("trained"))
    make_db(proj.db)
    run(TrainingPaths(proj.db, proj.settings, proj.registry), pipeline_factory=tiny_factory())
    return proj


@pytest.fixture
def served(trained: Project, tmp_path: Path) -> Project:
    """A private copy of :func:`trained` that a test may damage."""
    proj = Project(tmp_path / "served")
    shutil.copytree(trained.root, proj.root, ignore=shutil.ignore_patterns(".lock"))
    return proj


@pytest.fixture
def client(served: Project) -> Iterator[Any]:
    """The service over :func:`served`, in process (no reload watcher); errors answer as the server would."""
    from starlette.testclient import TestClient

    from inference.app import create_app

    with TestClient(create_app(settings_for(served)), raise_server_exceptions=False) as c:
        yield c
