"""Shared fixtures: tiny real SQLite databases and tiny real models, built in tmp_path."""

from __future__ import annotations

import os

# One OpenMP thread: the suite runs fits side by side with servers on a 2-core machine,
# where oversubscribed OpenMP barriers slow HistGradientBoosting down a hundredfold.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

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


@pytest.fixture
def project(tmp_path: Path) -> Project:
    proj = Project(tmp_path / "project")
    proj.root.mkdir()
    make_db(proj.db)
    return proj


def tiny_factory(*, interval: bool = True, **params: Any) -> Callable[[], Any]:
    """The shipped pipeline with tiny boosters (``params`` override :data:`TINY`); ``interval=False``
    leaves out the price range."""
    from training.estimator import INTERVAL
    from training.pipeline import build_pipeline

    booster = {**TINY, **params}
    return lambda: build_pipeline(boosters=(booster,), interval=INTERVAL if interval else None, interval_booster=TINY)


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


# -- issue #11: training killed at random moments ------------------------------------------------


def train_tiny_in_child(db: str, settings: str, registry: str, max_iter: int) -> None:
    """One real training run with a tiny booster: the target of a forked child the test kills."""
    from training.paths import TrainingPaths
    from training.train import run

    run(TrainingPaths(Path(db), Path(settings), Path(registry)), pipeline_factory=tiny_factory(max_iter=max_iter))


# -- a real browser: Debian's chromium driven by Playwright (never a downloaded browser) ------------

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = ROOT / "artifacts"
"""Where tests leave files for a person to look at (screenshots); gitignored."""


def require_chromium() -> Path:
    """/usr/bin/chromium, or skip (fail under CI, where no test may skip)."""
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: CI must run scripts/install_chromium.sh first")
        pytest.skip(f"{CHROMIUM} is missing (scripts/install_chromium.sh installs it)")
    return CHROMIUM
