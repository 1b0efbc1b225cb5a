"""Training's fail-fast check (training/preflight.py): no fit before it knows it can publish.

The checks run in a forked child under another uid when the suite runs as root (root passes
every permission check), or against directories made read-only otherwise. The end-to-end
case, a container whose TRAIN_UID cannot write the bind-mounted project, is in
tests/deploy/test_container_engine.py.
"""

from __future__ import annotations

import os
import pickle
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.helpers import make_db
from training import preflight
from training.paths import TrainingPaths
from training.train import run

OTHER = 65534  # nobody


def as_unprivileged(check: Callable[[], None], *read_only: Path) -> BaseException | None:
    """Run ``check`` without write access to ``read_only``; return what it raised."""
    if os.getuid() != 0:
        modes = {p: p.stat().st_mode for p in read_only}
        for p in read_only:
            p.chmod(0o555)
        try:
            check()
        except BaseException as exc:
            return exc
        finally:
            for p, mode in modes.items():
                p.chmod(stat.S_IMODE(mode))
        return None
    # Root: the directories stay root's 0755; a forked child drops to another uid.
    for p in read_only:
        p.chmod(0o755)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(r)
        try:
            os.setgid(OTHER)
            os.setuid(OTHER)
            try:
                check()
                result: BaseException | None = None
            except BaseException as exc:
                result = exc
            os.write(w, pickle.dumps(result))
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as fh:
        data = fh.read()
    os.waitpid(pid, 0)
    result = pickle.loads(data)  # noqa: S301 - our own child's bytes
    assert result is None or isinstance(result, BaseException)
    return result


@pytest.fixture
def area() -> Iterator[Path]:
    """A directory the other uid can reach (pytest's tmp_path sits under a 0700 directory)."""
    path = Path(tempfile.mkdtemp(prefix="diamond-preflight-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


def writable_by_anyone(path: Path) -> Path:
    path.mkdir(exist_ok=True)
    path.chmod(0o777)
    return path


def assert_names_the_fix(exc: BaseException | None, directory: Path) -> None:
    assert isinstance(exc, preflight.RegistryNotWritable), repr(exc)
    message = str(exc)
    assert "\n" not in message
    uid, gid = (os.getuid(), os.getgid()) if os.getuid() else (OTHER, OTHER)
    assert f"uid:gid {uid}:{gid}" in message
    assert f"cannot write to {directory}," in message or f"cannot write to {directory} (" in message
    assert "TRAIN_UID=$(id -u) TRAIN_GID=$(id -g)" in message


def test_a_writable_project_passes_and_gains_only_the_registry_and_its_lock(area: Path) -> None:
    settings, registry = area / "modelsettings.json", area / "model_registry"
    preflight.check_writable(settings, registry)
    assert sorted(p.name for p in area.iterdir()) == ["model_registry"]
    assert [p.name for p in registry.iterdir()] == [".lock"]


def test_a_registry_it_cannot_create_files_in(area: Path) -> None:
    root = writable_by_anyone(area / "project")
    registry = root / "model_registry"
    registry.mkdir()
    exc = as_unprivileged(lambda: preflight.check_writable(root / "modelsettings.json", registry), registry)
    assert_names_the_fix(exc, registry)


def test_a_project_directory_it_cannot_create_the_registry_in(area: Path) -> None:
    root = area / "project"
    root.mkdir()
    exc = as_unprivileged(lambda: preflight.check_writable(root / "modelsettings.json", root / "model_registry"), root)
    assert_names_the_fix(exc, root)
    assert not (root / "model_registry").exists()


def test_a_settings_directory_it_cannot_replace_the_file_in(area: Path) -> None:
    root = area / "project"
    root.mkdir()
    registry = writable_by_anyone(root / "model_registry")
    exc = as_unprivileged(lambda: preflight.check_writable(root / "modelsettings.json", registry), root)
    assert_names_the_fix(exc, root)


def test_a_lock_file_of_another_user(area: Path) -> None:
    root = writable_by_anyone(area / "project")
    registry = writable_by_anyone(root / "model_registry")
    lock = registry / ".lock"
    lock.touch()
    lock.chmod(0o444)
    exc = as_unprivileged(lambda: preflight.check_writable(root / "modelsettings.json", registry))
    assert_names_the_fix(exc, registry)


def test_training_checks_before_it_reads_the_database(area: Path) -> None:
    root = writable_by_anyone(area / "project")
    registry = root / "model_registry"
    registry.mkdir()
    db = make_db(root / "diamond.db", rows=200)
    db.chmod(0)  # had training read it first, this would be a DataError instead
    exc = as_unprivileged(lambda: run(TrainingPaths(db, root / "modelsettings.json", registry)), registry)
    assert_names_the_fix(exc, registry)
    assert sorted(p.name for p in root.iterdir()) == ["diamond.db", "model_registry"]
    assert list(registry.iterdir()) == []
