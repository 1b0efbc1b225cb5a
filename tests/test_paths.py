"""One resolver for every path: serving and training agree on where the models are."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from inference.config import Settings
from inference.modelsettings import read_verified_model
from inference.paths import PROJECT_ROOT, resolve_paths
from tests.helpers import Project, tiny_factory
from training.paths import TrainingPaths
from training.train import run


def test_defaults_are_the_repositorys_files() -> None:
    paths = resolve_paths({})
    assert paths.settings == PROJECT_ROOT / "modelsettings.json"
    assert paths.registry == PROJECT_ROOT / "model_registry"
    assert paths.db == PROJECT_ROOT / "diamond.db"


def test_only_model_settings_set_moves_the_registry_beside_it_for_both_sides(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = tmp_path / "srv" / "modelsettings.json"
    for name in ("MODEL_REGISTRY", "DIAMOND_DB"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MODEL_SETTINGS", str(settings))
    serving = Settings.from_env()
    training = TrainingPaths.from_env()
    assert serving.model_settings == training.settings == settings
    assert serving.model_registry == training.registry == tmp_path / "srv" / "model_registry"


def test_explicit_registry_and_relative_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    env = {"MODEL_SETTINGS": "a/modelsettings.json", "MODEL_REGISTRY": "b/models", "DIAMOND_DB": "c.db"}
    paths = resolve_paths(env)
    assert paths == resolve_paths(env)  # pure
    assert paths.settings == tmp_path / "a" / "modelsettings.json"
    assert paths.registry == tmp_path / "b" / "models" and paths.db == tmp_path / "c.db"
    # A command-line option wins over the environment.
    assert resolve_paths(env, registry=Path("/x/r")).registry == Path("/x/r")


def test_an_empty_variable_counts_as_unset() -> None:
    assert resolve_paths({"MODEL_SETTINGS": "", "MODEL_REGISTRY": "", "DIAMOND_DB": ""}) == resolve_paths({})


def test_an_explicit_settings_file_takes_the_default_registry_along(tmp_path: Path) -> None:
    moved = resolve_paths({"MODEL_SETTINGS": "/elsewhere/modelsettings.json"}, settings=tmp_path / "s.json")
    assert moved.settings == tmp_path / "s.json" and moved.registry == tmp_path / "model_registry"
    assert moved.db == PROJECT_ROOT / "diamond.db"
    # MODEL_REGISTRY still names the registry when set; an explicit registry wins over it.
    named = resolve_paths({"MODEL_REGISTRY": "/env/registry"}, settings=tmp_path / "s.json")
    assert named.registry == Path("/env/registry")
    assert resolve_paths({"MODEL_REGISTRY": "/env/registry"}, registry=tmp_path / "r").registry == tmp_path / "r"


def test_relative_arguments_resolve_from_the_current_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    paths = resolve_paths({"DIAMOND_DB": "/env/d.db"}, db=Path("d.db"), settings=Path("conf/m.json"))
    assert paths.db == tmp_path / "d.db"
    assert paths.settings == tmp_path / "conf" / "m.json" and paths.registry == tmp_path / "conf" / "model_registry"


def test_training_with_only_model_settings_writes_where_the_service_reads(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real run with MODEL_SETTINGS alone set promotes into the registry beside that file,
    and the service's settings find and verify the model there."""
    target = project.root / "elsewhere" / "modelsettings.json"
    target.parent.mkdir()
    monkeypatch.delenv("MODEL_REGISTRY", raising=False)
    monkeypatch.setenv("MODEL_SETTINGS", str(target))
    outcome = run(TrainingPaths.from_env(db=project.db), pipeline_factory=tiny_factory())
    assert outcome.promoted
    serving = Settings.from_env()
    settings, blob = read_verified_model(serving.model_settings, serving.model_registry)
    assert serving.model_registry == target.parent / "model_registry"
    assert (target.parent / json.loads(target.read_text())["path"]).read_bytes() == blob and settings.version == 1
    assert not (project.root / "model_registry").exists()
