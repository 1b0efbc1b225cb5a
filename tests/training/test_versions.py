"""`python -m training versions` and `promote`: listing and rollback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from inference.modelsettings import read_verified_model
from tests.helpers import Project, Run

pytestmark = pytest.mark.slow  # every test runs `python -m training` in a process of its own


@pytest.fixture
def two_versions(upgraded: Run, tmp_path: Path) -> Project:
    """A weak v1 and a stronger v2, the current one: a copy of the session's :func:`upgraded`."""
    assert upgraded.outcome.version == 2
    return upgraded.project.copy(tmp_path / "p")


def test_versions_lists_every_version_and_marks_the_current(two_versions: Project) -> None:
    result = two_versions.cli(
        "training", "versions", "--settings", str(two_versions.settings), "--registry", str(two_versions.registry)
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    v1 = next(line for line in lines if line.split()[:1] == ["1"])
    v2 = next(line for line in lines if line.split()[:2] == ["*", "2"])
    record = json.loads(two_versions.settings.read_text())
    assert f"{record['mae']:.2f}" in v2 and str(record["train_rows"]) in v2 and record["created_at"] in v2
    assert "ok" in v1 and "ok" in v2 and not v1.startswith("*")


def test_promote_rolls_back_atomically_and_records_history(two_versions: Project) -> None:
    result = two_versions.cli(
        "training",
        "promote",
        "--version",
        "1",
        "--settings",
        str(two_versions.settings),
        "--registry",
        str(two_versions.registry),
    )
    assert result.returncode == 0, result.stderr
    settings, _ = read_verified_model(two_versions.settings, two_versions.registry)
    assert settings.version == 1
    record = json.loads(two_versions.settings.read_text())
    assert record["path"] == "model_registry/diamond_price-v1.onnx"
    assert record["train_rows"] > 0 and "mae_protocol" in record
    last = json.loads((two_versions.registry / "history.jsonl").read_text().splitlines()[-1])
    assert last["event"] == "promote" and last["version"] == 1 and last["previous_version"] == 2


@pytest.mark.parametrize(
    ("version", "damage", "message"),
    [
        ("7", None, "version 7 does not exist"),
        ("1", "tamper", "does not verify"),
        ("1", "no_sidecar", "no recorded sha256"),
    ],
)
def test_promote_refuses_what_does_not_exist_or_verify(
    two_versions: Project, version: str, damage: str | None, message: str
) -> None:
    model = two_versions.registry / "diamond_price-v1.onnx"
    if damage == "tamper":
        model.write_bytes(model.read_bytes() + b"\x00")
    elif damage == "no_sidecar":
        model.with_name(model.name + ".sha256").unlink()
    before = two_versions.settings.read_bytes()
    result = two_versions.cli(
        "training",
        "promote",
        "--version",
        version,
        "--settings",
        str(two_versions.settings),
        "--registry",
        str(two_versions.registry),
    )
    assert result.returncode == 1
    assert message in result.stderr
    assert two_versions.settings.read_bytes() == before


def test_versions_flags_a_damaged_file(two_versions: Project) -> None:
    model = two_versions.registry / "diamond_price-v1.onnx"
    model.write_bytes(b"garbage")
    result = two_versions.cli(
        "training", "versions", "--settings", str(two_versions.settings), "--registry", str(two_versions.registry)
    )
    assert result.returncode == 0
    assert "DAMAGED" in next(line for line in result.stdout.splitlines() if line.split()[:1] == ["1"])
