"""The package layout holds: imports run one way, serving stays free of the training stack, and
training reaches only the contract it shares with serving."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.helpers import ROOT

PACKAGE = ROOT / "inference"
LAYERS = ("rest", "api", "v2", "pages")
ASSEMBLY = {"inference.app", "inference.routes", "inference.__main__"}
ALLOWED = {  # what each layer may import of inference/, besides the core modules at the top
    "rest": {"rest"},
    "api": {"rest", "api"},
    "v2": {"rest", "v2"},
    "pages": {"rest", "pages"},
}
CONTRACT = {"schema", "paths", "config", "logs", "modelsettings", "onnx_io", "strict_json", "baseline"}
"""The inference modules training may import: none of them imports starlette."""
TRAINING_STACK = ("sklearn", "pandas", "skl2onnx", "onnx", "lightgbm", "matplotlib", "training")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path) -> set[str]:
    """Every module ``path`` imports, absolute names."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def layer_of(module: str) -> str | None:
    """``rest``, ``api``, ``v2`` or ``pages`` for a module inside one of them; None for the core."""
    parts = module.split(".")
    return parts[1] if len(parts) > 2 and parts[1] in LAYERS else None


SERVING = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", SERVING, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_run_one_way(path: Path) -> None:
    module = module_name(path)
    if module in ASSEMBLY:
        return
    targets = {layer_of(name) for name in imported(path) if name.startswith("inference.")} - {None}
    own = layer_of(module)
    allowed = ALLOWED[own] if own else set()
    assert targets <= allowed, f"{module} imports {sorted(targets - allowed)}: layers import the core and rest/ only"


@pytest.mark.parametrize("path", SERVING, ids=lambda p: str(p.relative_to(ROOT)))
def test_serving_never_imports_the_training_stack(path: Path) -> None:
    stack = [n for n in imported(path) if n.split(".")[0] in TRAINING_STACK]
    assert not stack, f"{module_name(path)} imports {stack}"


def test_training_reaches_only_the_shared_contract() -> None:
    reached = {
        name.split(".")[1]
        for path in (ROOT / "training").rglob("*.py")
        for name in imported(path)
        if name.startswith("inference.") and name.count(".") >= 1
    }
    # ``from inference import strict_json`` names the module itself
    reached = {n for n in reached if (PACKAGE / f"{n}.py").exists() or (PACKAGE / n).is_dir()}
    assert reached <= CONTRACT, f"training imports inference.{sorted(reached - CONTRACT)}"
    for name in CONTRACT:
        assert "starlette" not in {n.split(".")[0] for n in imported(PACKAGE / f"{name}.py")}, name


def test_the_layers_are_packages_a_newcomer_can_name() -> None:
    for layer in LAYERS:
        init = PACKAGE / layer / "__init__.py"
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc, f"inference/{layer}/__init__.py says what the package holds"
