"""``make bench-peers``' table of peers, read from bench/peers.py without importing it (tests never
import bench/): every peer pinned, served and documented; the original's stand-in labelled as one."""

from __future__ import annotations

import ast
import re
from typing import Any

from tests.helpers import ROOT

PEERS = ROOT / "bench" / "peers.py"
TABLES = ("ONNXRUNTIME", "PINS", "CASES", "SERVES", "REFERENCES")


def tables() -> dict[str, Any]:
    """The module's constant tables, evaluated in order (they refer to each other, nothing else)."""
    found: dict[str, Any] = {}
    for node in ast.parse(PEERS.read_text()).body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name) and node.targets[0].id in TABLES:
            found[node.targets[0].id] = eval(compile(ast.Expression(node.value), str(PEERS), "eval"), {}, found)  # noqa: S307
    assert set(found) == set(TABLES)
    return found


def test_every_peer_is_pinned_served_and_documented() -> None:
    t = tables()
    docs = (ROOT / "docs" / "benchmarks-peers.md").read_text()
    assert set(t["SERVES"]) == {"ours", *t["PINS"]}
    assert set(t["REFERENCES"]) <= set(t["PINS"])
    for peer, pins in t["PINS"].items():
        assert pins and all(re.fullmatch(r"[a-z][a-z0-9-]*==[0-9][0-9.]*", p) for p in pins), peer
        assert set(t["SERVES"][peer]) <= set(t["CASES"]), peer
        missing = [p for p in pins if f"`{p}`" not in docs]
        assert not missing, f"{peer}: docs/benchmarks-peers.md does not name {missing}"


def test_the_original_is_labelled_a_stand_in() -> None:
    server = (ROOT / "bench" / "peers" / "original_peer.py").read_text()
    head = ast.get_docstring(ast.parse(server)) or ""
    assert head.startswith("A STAND-IN") and "not its code" in head
    assert "stand-in" in (ast.get_docstring(ast.parse(PEERS.read_text())) or "")
