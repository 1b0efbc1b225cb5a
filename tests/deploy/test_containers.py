"""Lint of the container files: hadolint on both Dockerfiles, compose.yaml against the Compose
specification's JSON schema. What the images and the compose profiles do is tested with a
real engine in tests/deploy/test_container_engine.py.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVE_DOCKERFILE = ROOT / "Dockerfile.serve"
TRAIN_DOCKERFILE = ROOT / "Dockerfile.train"
COMPOSE_FILE = ROOT / "compose.yaml"


def tool(name: str) -> str:
    """A console script installed with the test environment (requirements/dev.txt)."""
    path = Path(sysconfig.get_path("scripts")) / name
    assert path.is_file(), f"{name} is not installed next to {sys.executable}: run `make test` (requirements/dev.txt)"
    return str(path)


@pytest.mark.slow
def test_hadolint_reports_nothing(tmp_path: Path) -> None:
    # A config of our own: no user or global hadolint config can silence a rule, and even
    # style-level findings fail. Ignoring a rule takes an inline `# hadolint ignore=` pragma,
    # which the next test wants justified.
    config = tmp_path / "hadolint.yaml"
    config.write_text("failure-threshold: style\nignored: []\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HADOLINT_")}
    result = subprocess.run(
        [tool("hadolint"), "--no-color", "--config", str(config), SERVE_DOCKERFILE.name, TRAIN_DOCKERFILE.name],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert not result.stdout.strip(), result.stdout


@pytest.mark.parametrize("dockerfile", [SERVE_DOCKERFILE, TRAIN_DOCKERFILE], ids=lambda p: p.name)
def test_every_hadolint_ignore_is_justified(dockerfile: Path) -> None:
    pragma = re.compile(r"^\s*#\s*hadolint\s+(global\s+)?ignore=")
    lines = dockerfile.read_text().splitlines()
    for n, line in enumerate(lines):
        if pragma.match(line):
            before = lines[n - 1].strip() if n else ""
            justified = before.startswith("#") and not pragma.match(before) and len(before) > 10
            assert justified, f"{dockerfile.name}:{n + 1}: say why the rule is ignored, in a comment just above it"


@pytest.mark.slow
def test_compose_file_matches_the_compose_specification() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec", COMPOSE_FILE.name],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
