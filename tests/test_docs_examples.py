"""The examples in README.md and docs/*.md run as written and answer what the page shows.

A fenced block is an example when it writes its answer under a command: ``# -> `` and the JSON
(continued on ``#    `` lines) in ``sh`` and ``python`` blocks, ``// -> `` in ``js`` blocks. Each
runs against a real server on a copy of the shipped model (``localhost:8000`` and the containers'
``localhost:81`` pointed at it): ``sh`` with bash from the repository root, ``python`` with the
interpreter its first line names, ``js`` with node in examples/node. The real answers must have
the keys, lengths and value types shown; prices and times may differ. Every block with a curl
must show its answer, so a curl added without one fails here too; and every setting the service
or training reads from the environment must have its line in the docs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from devtools.server import running_server
from inference.config import Settings
from tests.helpers import ROOT, node
from training.data import max_price_from_env
from training.importer import Limits

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
COMMENT = {"sh": "#", "python": "#", "js": "//"}
HOSTS = re.compile(r"\b(?:localhost|127\.0\.0\.1):(?:8000|81)\b")
INTERPRETER = re.compile(r"^# (\S*python\S*)")


@dataclass(frozen=True)
class Example:
    page: str
    line: int
    lang: str
    code: str
    answers: tuple[Any, ...]

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"


def answers(code: str, comment: str) -> list[Any]:
    """The JSON answers a block shows: ``<comment> -> `` lines and their ``<comment>    `` continuations."""
    found: list[str] = []
    open_answer = False
    for line in code.splitlines():
        text = line.strip()
        if text.startswith(comment + " -> "):
            found.append(text[len(comment) + 4 :])
            open_answer = True
        elif open_answer and line.startswith(comment + "    "):
            found[-1] += line[len(comment) :].strip()
        else:
            open_answer = False
    return [json.loads(answer) for answer in found]


def blocks(page: Path) -> Iterator[tuple[int, str, str]]:
    text = page.read_text()
    for match in FENCE.finditer(text):
        yield text.count("\n", 0, match.start()) + 1, match.group(1), match.group(2)


def examples() -> list[Example]:
    found = []
    for page in PAGES:
        for line, lang, code in blocks(page):
            if lang in COMMENT and f"{COMMENT[lang]} -> " in code:
                shown = tuple(answers(code, COMMENT[lang]))
                found.append(Example(str(page.relative_to(ROOT)), line, lang, code, shown))
    return found


def shape(value: Any) -> Any:
    """What an answer must keep: keys, list lengths and JSON types (every number is a number)."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shape(item) for item in value]
    if isinstance(value, bool) or value is None:
        return repr(value) if value is None else "bool"
    return "number" if isinstance(value, int | float) else type(value).__name__


def json_values(out: str) -> list[Any]:
    """Every JSON value a command printed, one after another."""
    decoder, values, at = json.JSONDecoder(), [], 0
    while True:
        while at < len(out) and out[at].isspace():
            at += 1
        if at == len(out):
            return values
        value, at = decoder.raw_decode(out, at)
        values.append(value)


def interpreter(path: str) -> str:
    """A virtual environment's python as the docs name it; this one where that is not built (CI
    builds .venv only), since the docs' interpreters are the project's own environments."""
    return path if (ROOT / path).is_file() else sys.executable


def command(example: Example, base: str) -> tuple[list[str], str | None, Path]:
    code = HOSTS.sub(base.removeprefix("http://"), example.code)
    if example.lang == "sh":
        if "curl " in code and shutil.which("curl") is None:
            if os.environ.get("CI"):
                pytest.fail("curl is missing: .ci/run installs it")
            pytest.skip("curl is missing")
        for venv in (".venv-serve/bin/python", ".venv/bin/python"):
            code = code.replace(venv, interpreter(venv))
        return ["bash", "-euo", "pipefail", "-c", code], None, ROOT
    if example.lang == "python":
        named = INTERPRETER.match(code)
        assert named, f"{example.id}: the first line must name the interpreter, e.g. `# .venv/bin/python`"
        return [interpreter(named.group(1)), "-"], code, ROOT
    return [node(), "--input-type=module"], code, ROOT / "examples" / "node"


EXAMPLES = examples()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The service as ``make serve`` runs it, on a copy of the shipped model directory."""
    home = tmp_path_factory.mktemp("docs-server")
    shutil.copy(ROOT / "modelsettings.json", home / "modelsettings.json")
    shutil.copytree(ROOT / "model_registry", home / "model_registry")
    env = {
        "MODEL_SETTINGS": str(home / "modelsettings.json"),
        "MODEL_REGISTRY": str(home / "model_registry"),
        "UPDATE_TOKEN": "",  # as make serve runs by default, whatever this shell has set
    }
    with running_server(env) as (base, _):
        yield base


@pytest.mark.slow
@pytest.mark.parametrize("example", EXAMPLES, ids=[e.id for e in EXAMPLES])
def test_example_answers_as_shown(example: Example, server: str) -> None:
    argv, stdin, cwd = command(example, server)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(argv, input=stdin, cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, f"{example.id} failed:\n{done.stderr}"
    got = json_values(done.stdout)
    assert len(got) == len(example.answers), f"{example.id}: {len(got)} answers for {len(example.answers)} shown"
    for real, shown in zip(got, example.answers, strict=True):
        assert shape(real) == shape(shown), f"{example.id}: answered {json.dumps(real)}"


def test_every_curl_shows_its_answer() -> None:
    missing = [
        f"{page.relative_to(ROOT)}:{line}"
        for page in PAGES
        for line, lang, code in blocks(page)
        if lang == "sh" and "curl " in code and code.count("# -> ") < code.count("curl ")
    ]
    assert not missing, f"curl blocks without an answer under each curl: {missing}"


def test_every_file_the_docs_name_exists() -> None:
    named = re.compile(r"`((?:bench|deploy|devtools|examples|inference|scripts|static|tests|training)/[\w./-]*)`")
    missing = [
        f"{page.relative_to(ROOT)}: {path}"
        for page in PAGES
        for path in named.findall(page.read_text())
        if not (ROOT / path).exists()
    ]
    assert not missing


def test_the_quick_start_and_the_api_page_are_examples() -> None:
    by_page = {page: [e for e in EXAMPLES if e.page == page] for page in ("README.md", "docs/api.md")}
    assert any("curl " in e.code for e in by_page["README.md"]), "the README's quick start has no runnable curl"
    assert sum(e.code.count("curl ") for e in by_page["docs/api.md"]) >= 10
    langs = {e.lang for e in EXAMPLES}
    assert langs == {"sh", "python", "js"}, langs


class Reads(dict[str, str]):
    """An empty environment that remembers every name looked up in it."""

    def __init__(self) -> None:
        super().__init__()
        self.names: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        self.names.add(key)
        return super().get(key, default)

    def __getitem__(self, key: str) -> str:
        self.names.add(key)
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        self.names.add(str(key))
        return super().__contains__(key)


def test_every_setting_the_service_and_training_read_is_documented() -> None:
    env = Reads()
    Settings.from_env(env)
    max_price_from_env(env)
    Limits.from_env(env)
    pages = ("operations.md", "security.md", "training.md", "import.md")
    documented = "".join((ROOT / "docs" / page).read_text() for page in pages)
    assert len(env.names) >= 15, env.names
    undocumented = {name for name in env.names if f"`{name}`" not in documented}
    assert not undocumented, (
        f"settings with no line in docs/operations.md, security.md, training.md or import.md: {undocumented}"
    )


def test_shapes_tell_answers_apart() -> None:
    shown = {"price": 2729.36, "price_range": {"low": 1.0, "high": 2.0, "level": 0.8}, "model_version": 3}
    assert shape({**shown, "price": 1, "model_version": 4}) == shape(shown)
    assert shape({**shown, "price_range": None}) != shape(shown)
    assert shape({"prices": [1.0]}) != shape({"prices": [1.0, 2.0]})
    assert shape({"error": "x"}) != shape({"error": "x", "fields": []})
    assert [shape(v) for v in json_values('{"a": 1}\n[2, NaN] "x"\n')] == [{"a": "number"}, ["number", "number"], "str"]
