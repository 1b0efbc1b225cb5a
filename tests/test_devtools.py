"""bench/ and tests/ share devtools/ and import nothing from each other; devtools imports neither."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.helpers import ROOT


def imported(path: Path) -> set[str]:
    """The top-level package of every module ``path`` imports."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize(
    ("folder", "forbidden"), [("bench", {"tests"}), ("devtools", {"tests", "bench"}), ("tests", {"bench"})]
)
def test_no_import_across(folder: str, forbidden: set[str]) -> None:
    files = sorted((ROOT / folder).rglob("*.py"))
    assert files
    crossing = {str(p.relative_to(ROOT)): imported(p) & forbidden for p in files if imported(p) & forbidden}
    assert not crossing


def test_bench_uses_the_shared_server_runner() -> None:
    assert "devtools" in imported(ROOT / "bench" / "run.py")
