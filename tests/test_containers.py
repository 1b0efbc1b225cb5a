"""Static checks of the container files: Dockerfile.serve, Dockerfile.train, compose.yaml, .dockerignore.

There is no Docker engine in CI, so the files are parsed here (the Dockerfiles with the
small parser below, compose.yaml with PyYAML) and linted with hadolint and the Compose
specification's JSON schema. tests/test_container_rehearsal.py reuses the parser to replay
what the images do in clean virtual environments.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import shlex
import subprocess
import sys
import sysconfig
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
SERVE_DOCKERFILE = ROOT / "Dockerfile.serve"
TRAIN_DOCKERFILE = ROOT / "Dockerfile.train"
COMPOSE_FILE = ROOT / "compose.yaml"
DOCKERIGNORE = ROOT / ".dockerignore"

TRAINING_ONLY_PACKAGES = frozenset({"scikit-learn", "pandas", "skl2onnx", "onnx"})
PYTHON_BASE = re.compile(r"^python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?$")
NODE_BASE = re.compile(r"^node:20\.\d+\.\d+-bookworm-slim(@sha256:[0-9a-f]{64})?$")
# The only pip options an image may use: nothing that adds an index, a package or a source.
ALLOWED_PIP_FLAGS = frozenset(
    {"--require-hashes", "--no-cache-dir", "--only-binary=:all:", "--no-deps", "--no-compile", "--quiet"}
)
# pip settings an image may set through ENV: none that adds an index or changes what is installed.
ALLOWED_PIP_ENV = frozenset({"PIP_DISABLE_PIP_VERSION_CHECK", "PIP_ROOT_USER_ACTION", "PIP_NO_CACHE_DIR"})
# Variables the images set for Python and pip themselves, not for the application.
RUNTIME_VARIABLES = re.compile(r"^(PYTHON[A-Z_]*|PIP_[A-Z_]+|LANG|LC_[A-Z]+|TZ|OMP_NUM_THREADS)$")


# --------------------------------------------------------------------------------------
# A small Dockerfile parser: enough for these two files, strict about what it does not know.
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Instruction:
    keyword: str
    """Upper-case instruction name."""
    args: str
    """Everything after the keyword, continuation lines joined."""
    line: int

    def exec_form(self, text: str | None = None) -> list[str]:
        """The JSON (exec) form of ``text`` (default: the arguments); fails on the shell form."""
        raw = (self.args if text is None else text).strip()
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = None
        if not (isinstance(value, list) and value and all(isinstance(v, str) for v in value)):
            raise AssertionError(f"line {self.line}: {self.keyword} must use the exec form (a JSON array): {raw!r}")
        return value


@dataclass(frozen=True)
class Copy:
    sources: list[str]
    dest: str
    """Absolute, resolved against the WORKDIR in force; ends with / when the source said so."""
    from_stage: str | None
    line: int


@dataclass(frozen=True)
class Healthcheck:
    options: dict[str, str]
    command: list[str]
    """The exec-form command, without the leading CMD."""


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction | None:
        found = self.all(keyword)
        return found[-1] if found else None

    @property
    def env(self) -> dict[str, str]:
        """ENV in force at the end of the stage."""
        env: dict[str, str] = {}
        for ins in self.all("ENV"):
            env.update(parse_env(ins))
        return env

    @property
    def workdir(self) -> str:
        return self.workdir_at(len(self.instructions))

    def workdir_at(self, index: int) -> str:
        """The WORKDIR in force before instruction number ``index``."""
        current = "/"
        for ins in self.instructions[:index]:
            if ins.keyword == "WORKDIR":
                current = posixpath.normpath(posixpath.join(current, ins.args.strip()))
        return current

    @property
    def user(self) -> str | None:
        ins = self.last("USER")
        return ins.args.strip() if ins else None

    @property
    def cmd(self) -> list[str]:
        ins = self.last("CMD")
        return ins.exec_form() if ins else []

    @property
    def entrypoint(self) -> list[str]:
        ins = self.last("ENTRYPOINT")
        return ins.exec_form() if ins else []

    @property
    def command(self) -> list[str]:
        """What the container runs: ENTRYPOINT followed by CMD."""
        return [*self.entrypoint, *self.cmd]

    @property
    def copies(self) -> list[Copy]:
        return [parse_copy(ins, self.workdir_at(n)) for n, ins in enumerate(self.instructions) if ins.keyword == "COPY"]

    @property
    def healthcheck(self) -> Healthcheck | None:
        ins = self.last("HEALTHCHECK")
        return parse_healthcheck(ins) if ins else None

    @property
    def exposed(self) -> list[str]:
        return [port for ins in self.all("EXPOSE") for port in ins.args.split()]


def logical_lines(text: str) -> Iterator[tuple[int, str]]:
    """(first line number, text) of each instruction: comments dropped, continuations joined."""
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue  # comments and blank lines, also inside a continuation (as Docker does)
        if not pending:
            start = number
        if raw.rstrip().endswith("\\"):
            pending.append(raw.rstrip()[:-1])
            continue
        pending.append(raw)
        yield start, " ".join(part.strip() for part in pending)
        pending = []
    if pending:
        raise AssertionError(f"line {start}: the file ends inside a continuation")


def parse_dockerfile(path: Path) -> list[Stage]:
    stages: list[Stage] = []
    for number, text in logical_lines(path.read_text()):
        keyword, _, args = text.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            words = [w for w in args.split() if not w.startswith("--")]
            if len(words) == 3 and words[1].upper() == "AS":
                stages.append(Stage(base=words[0], name=words[2]))
            elif len(words) == 1:
                stages.append(Stage(base=words[0], name=None))
            else:
                raise AssertionError(f"{path.name}:{number}: cannot parse FROM {args!r}")
            continue
        if keyword == "ARG" and not stages:
            raise AssertionError(f"{path.name}:{number}: ARG before FROM is not supported by this parser")
        if not stages:
            raise AssertionError(f"{path.name}:{number}: {keyword} before FROM")
        stages[-1].instructions.append(Instruction(keyword, args.strip(), number))
    if not stages:
        raise AssertionError(f"{path.name}: no FROM")
    return stages


def parse_env(ins: Instruction) -> dict[str, str]:
    words = shlex.split(ins.args)
    if words and "=" not in words[0]:  # legacy form: ENV NAME value with spaces
        pairs = {words[0]: " ".join(words[1:])}
    else:
        pairs = {}
        for word in words:
            name, sep, value = word.partition("=")
            if not sep:
                raise AssertionError(f"line {ins.line}: cannot parse ENV {ins.args!r}")
            pairs[name] = value
    for name, value in pairs.items():
        if "$" in value:
            raise AssertionError(f"line {ins.line}: ENV {name} uses a substitution, which this parser does not expand")
    return pairs


def parse_copy(ins: Instruction, workdir: str) -> Copy:
    words = ins.exec_form() if ins.args.startswith("[") else ins.args.split()
    flags = [w for w in words if w.startswith("--")]
    paths = [w for w in words if not w.startswith("--")]
    from_stage = None
    for flag in flags:
        name, _, value = flag.partition("=")
        if name == "--from":
            from_stage = value
        elif name not in ("--chown", "--chmod", "--link"):
            raise AssertionError(f"line {ins.line}: COPY flag {flag} is not supported by this parser")
    if len(paths) < 2:
        raise AssertionError(f"line {ins.line}: COPY needs a source and a destination")
    *sources, dest = paths
    if any(c in s for s in sources for c in "*?["):
        raise AssertionError(f"line {ins.line}: wildcards in COPY are not supported by this parser")
    resolved = posixpath.normpath(posixpath.join(workdir, dest))
    if dest.endswith("/") or dest in (".", "./"):
        resolved = resolved.rstrip("/") + "/"
    return Copy(sources, resolved, from_stage, ins.line)


def parse_healthcheck(ins: Instruction) -> Healthcheck:
    options: dict[str, str] = {}
    rest = ins.args
    while rest.startswith("--"):
        option, _, rest = rest.partition(" ")
        name, _, value = option.partition("=")
        options[name] = value
        rest = rest.lstrip()
    keyword, _, command = rest.partition(" ")
    if keyword.upper() != "CMD":
        raise AssertionError(f"line {ins.line}: HEALTHCHECK must be CMD [...], got {rest!r}")
    return Healthcheck(options, ins.exec_form(command))


def shell_commands(ins: Instruction) -> list[list[str]]:
    """A shell-form RUN split into its simple commands (at &&, ||, ; and |)."""
    lexer = shlex.shlex(ins.args, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    commands: list[list[str]] = [[]]
    for token in lexer:
        if token in ("&&", "||", ";", "|"):
            commands.append([])
        else:
            commands[-1].append(token)
    return [c for c in commands if c]


def pip_installs(stage: Stage) -> list[tuple[Instruction, list[str]]]:
    """(RUN instruction, arguments after ``install``) for every pip install in the stage."""
    found = []
    for ins in stage.all("RUN"):
        for words in shell_commands(ins):
            if "pip" in words or "pip3" in words or any(w.endswith("/pip") for w in words):
                pos = next((i for i, w in enumerate(words) if w in ("pip", "pip3") or w.endswith("/pip")), 0)
                if words[pos + 1 : pos + 2] != ["install"]:
                    raise AssertionError(f"line {ins.line}: unexpected pip command {words}")
                found.append((ins, words[pos + 2 :]))
    return found


def requirement_files(install_args: list[str]) -> list[str]:
    """The ``-r`` files of a pip install, checking that nothing else is installed or configured."""
    files, args = [], list(install_args)
    while args:
        word = args.pop(0)
        if word in ("-r", "--requirement"):
            files.append(args.pop(0))
        elif word.startswith("--requirement="):
            files.append(word.partition("=")[2])
        elif word not in ALLOWED_PIP_FLAGS:
            allowed = ", ".join(sorted(ALLOWED_PIP_FLAGS))
            raise AssertionError(f"pip install argument {word!r} is not allowed (only -r and {allowed})")
    return files


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirements(path: Path) -> dict[str, str]:
    """Package -> pinned version of a ``make requirements`` file; every entry must be pinned and hashed."""
    text = path.read_text()
    entries = re.split(r"\n(?=\S)", re.sub(r"\\\n", " ", text))
    pins: dict[str, str] = {}
    for entry in entries:
        entry = entry.split("\n")[0].strip()
        if not entry or entry.startswith("#"):
            continue
        m = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==([^\s;]+)", entry)
        assert m, f"{path.name}: not a pinned requirement: {entry[:80]!r}"
        assert "--hash=sha256:" in entry, f"{path.name}: {m.group(1)} has no hash"
        pins[normalize(m.group(1))] = m.group(3)
    return pins


# --------------------------------------------------------------------------------------
# compose.yaml: interpolation and mounts
# --------------------------------------------------------------------------------------
_INTERPOLATION = re.compile(
    r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}|\$(?P<bare>[A-Za-z_][A-Za-z0-9_]*)"
)


def interpolate(value: str, env: Mapping[str, str] | None = None) -> str:
    """Compose's ``${VAR:-default}`` interpolation; by default as if no variable were set."""
    env = {} if env is None else env

    def one(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group("name") or m.group("bare")
        op, arg = m.group("op"), m.group("arg") or ""
        value = env.get(name)
        if not op:
            return value or ""
        is_set = value is not None and (value != "" or not op.startswith(":"))
        if op.endswith("-"):
            return value if is_set and value is not None else arg
        if op.endswith("+"):
            return arg if is_set else ""
        if not is_set:  # ? and :?
            raise AssertionError(f"compose.yaml requires {name}: {arg}")
        return value or ""

    return _INTERPOLATION.sub(one, value)


@dataclass(frozen=True)
class Mount:
    source: str
    target: str
    read_only: bool
    type: str
    create_host_path: bool


@cache
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return data


def service(name: str) -> dict[str, Any]:
    services: dict[str, dict[str, Any]] = compose()["services"]
    assert name in services, f"compose.yaml has no service {name!r}"
    return services[name]


def mounts(svc: Mapping[str, Any]) -> list[Mount]:
    found = []
    for volume in svc.get("volumes", []):
        if isinstance(volume, str):
            parts = volume.split(":")
            assert len(parts) in (2, 3), f"cannot parse volume {volume!r}"
            source, target = parts[0], parts[1]
            options = parts[2].split(",") if len(parts) == 3 else []
            kind = "bind" if source.startswith((".", "/", "$", "~")) else "volume"
            found.append(Mount(interpolate(source), target, "ro" in options, kind, True))
        else:
            found.append(
                Mount(
                    interpolate(str(volume["source"])),
                    str(volume["target"]),
                    bool(volume.get("read_only", False)),
                    str(volume["type"]),
                    bool(volume.get("bind", {}).get("create_host_path", True)),
                )
            )
    return found


def compose_environment(svc: Mapping[str, Any], env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The service's ``environment``, interpolated (by default as if no variable were set)."""
    raw = svc.get("environment", {})
    if isinstance(raw, list):
        raw = dict(item.partition("=")[::2] for item in raw)
    return {str(k): interpolate(str(v), env) for k, v in raw.items()}


def dockerfile_of(svc: Mapping[str, Any]) -> Path:
    build = svc["build"]
    return ROOT / str(build["context"]) / str(build.get("dockerfile", "Dockerfile"))


def effective_environment(svc: Mapping[str, Any]) -> dict[str, str]:
    """The container's variables: the image's ENV, then compose's environment."""
    return {**parse_dockerfile(dockerfile_of(svc))[-1].env, **compose_environment(svc)}


def mount_for(path: str, svc: Mapping[str, Any]) -> Mount:
    """The mount that holds the container path ``path``."""
    holding = [m for m in mounts(svc) if path == m.target or path.startswith(m.target.rstrip("/") + "/")]
    assert holding, f"{path} is not on any mount of the service"
    return max(holding, key=lambda m: len(m.target))


# --------------------------------------------------------------------------------------
# .dockerignore, with Docker's semantics: the last matching pattern wins, and a pattern
# that matches a directory matches everything under it.
# --------------------------------------------------------------------------------------
def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out, i = "", 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif c == "*":
            out, i = out + "[^/]*", i + 1
        elif c == "?":
            out, i = out + "[^/]", i + 1
        elif c == "[":
            end = pattern.index("]", i)
            out, i = out + "[" + pattern[i + 1 : end].replace("!", "^", 1) + "]", end + 1
        else:
            out, i = out + re.escape(c), i + 1
    return re.compile(f"^{out}$")


@cache
def dockerignore_rules() -> list[tuple[bool, re.Pattern[str]]]:
    rules = []
    for raw in DOCKERIGNORE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = posixpath.normpath(line.lstrip("!").strip()).lstrip("/")
        rules.append((negated, _pattern_regex(pattern)))
    return rules


def in_build_context(relative: str) -> bool:
    """Whether the file at ``relative`` (to the project root) reaches the build context."""
    parts = relative.strip("/").split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    excluded = False
    for negated, regex in dockerignore_rules():
        if any(regex.match(c) for c in candidates):
            excluded = not negated
    return not excluded


# ======================================================================================
# The tests
# ======================================================================================
@pytest.fixture(scope="module")
def serve_stages() -> list[Stage]:
    return parse_dockerfile(SERVE_DOCKERFILE)


@pytest.fixture(scope="module")
def train_stages() -> list[Stage]:
    return parse_dockerfile(TRAIN_DOCKERFILE)


def tool(name: str) -> str:
    """A console script installed with the test environment (requirements/dev.txt)."""
    path = Path(sysconfig.get_path("scripts")) / name
    assert path.is_file(), f"{name} is not installed next to {sys.executable}: run `make test` (requirements/dev.txt)"
    return str(path)


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


# ---- base images -------------------------------------------------------------------------
def test_base_images_are_pinned(serve_stages: list[Stage], train_stages: list[Stage]) -> None:
    for stage in [*serve_stages, *train_stages]:
        image, _, tag = stage.base.partition("@")[0].rpartition(":")
        assert image, stage.base
        assert tag, f"{stage.base}: no tag"
        assert tag != "latest", f"{stage.base}: :latest is not a pin"
        assert re.match(r"^\d+\.\d+\.\d+(-|$)", tag), f"{stage.base}: pin a full version (major.minor.patch)"
    assert PYTHON_BASE.match(serve_stages[-1].base), serve_stages[-1].base
    assert PYTHON_BASE.match(train_stages[-1].base), train_stages[-1].base
    assert len(train_stages) == 1, "the training image is a single stage"


# ---- Dockerfile.serve --------------------------------------------------------------------
def test_serve_image_builds_the_docs_bundles_in_a_node_stage(serve_stages: list[Stage]) -> None:
    assert len(serve_stages) >= 2, "Dockerfile.serve is multi-stage: a Node stage, then the service"
    docs = serve_stages[0]
    assert NODE_BASE.match(docs.base), docs.base
    assert docs.name, "the Node stage needs a name for COPY --from"
    copied = {src for c in docs.copies for src in c.sources}
    assert copied == {"static/package.json", "static/package-lock.json"}, copied
    assert {c.dest for c in docs.copies} == {docs.workdir + "/"}
    runs = [words for ins in docs.all("RUN") for words in shell_commands(ins)]
    assert runs, "the Node stage runs npm ci"
    assert all(words[:2] == ["npm", "ci"] for words in runs), runs
    assert all("--ignore-scripts" in words for words in runs), "npm ci --ignore-scripts: no install scripts run"
    # The final stage takes (part of) node_modules, at the same place under static/ (or, from the
    # calculator's Node stage, under examples/web/): /build/<dir> in a Node stage is <dir> in the repo.
    final = serve_stages[-1]
    node_stages = {stage.name: stage for stage in serve_stages[:-1]}
    from_docs = [c for c in final.copies if c.from_stage]
    assert {c.from_stage for c in from_docs} >= {docs.name}, "the serving stage copies the bundles from the Node stage"
    for c in from_docs:
        assert c.from_stage in node_stages, c
        node = node_stages[c.from_stage]
        assert NODE_BASE.match(node.base), node.base
        (source,) = c.sources
        relative = posixpath.relpath(source, node.workdir)
        assert relative.startswith("node_modules/"), c
        in_repo = posixpath.relpath(node.workdir, "/build")
        assert c.dest.rstrip("/") == posixpath.join(final.workdir, in_repo, relative).rstrip("/"), c


def test_serve_image_installs_exactly_requirements_serve_txt(serve_stages: list[Stage]) -> None:
    final = serve_stages[-1]
    installs = pip_installs(final)
    assert len(installs) == 1, f"one pip install in the serving stage, found {len(installs)}"
    ins, args = installs[0]
    assert "--require-hashes" in args, args
    assert "--no-cache-dir" in args, args
    assert [posixpath.normpath(posixpath.join(final.workdir, f)) for f in requirement_files(args)] == [
        final.workdir + "/requirements/serve.txt"
    ]
    # ... and the file installed is the repository's serve.txt, copied before the RUN.
    copied = [c for c in final.copies if c.line < ins.line and not c.from_stage]
    assert [(c.sources, c.dest) for c in copied] == [
        (["requirements/serve.txt"], final.workdir + "/requirements/serve.txt")
    ], copied
    assert not {k for k in final.env if k.startswith("PIP_")} - ALLOWED_PIP_ENV, final.env
    # Nothing else installs software: no apt, no npm, no uv, no curl | sh.
    for run in final.all("RUN"):
        for words in shell_commands(run):
            assert words[0] in ("pip", "groupadd", "useradd"), f"line {run.line}: unexpected command {words}"


def test_serve_requirements_name_no_training_package() -> None:
    pins = requirements(ROOT / "requirements" / "serve.txt")
    assert {"onnxruntime", "starlette", "uvicorn", "numpy", "pydantic"} <= set(pins)
    assert not TRAINING_ONLY_PACKAGES & set(pins), sorted(TRAINING_ONLY_PACKAGES & set(pins))


def test_serve_image_copies_only_what_the_service_needs(serve_stages: list[Stage]) -> None:
    final = serve_stages[-1]
    assert final.workdir == "/app"
    sources = sorted(src for c in final.copies if not c.from_stage for src in c.sources)
    assert sources == ["examples/web/", "inference/", "requirements/serve.txt", "static/"], sources
    for c in final.copies:
        if c.sources in (["inference/"], ["static/"], ["examples/web/"]):
            assert c.dest == f"/app/{c.sources[0]}", c


def test_serve_image_runs_as_non_root_on_port_80(serve_stages: list[Stage]) -> None:
    final = serve_stages[-1]
    user = final.user
    assert user, "the serving image needs a USER"
    uid = user.split(":")[0]
    assert uid.isdigit(), f"USER {user}: a numeric uid"
    assert int(uid) != 0, f"USER {user}: not root"
    assert final.exposed == ["80"]
    env = final.env
    assert env["HOST"] == "0.0.0.0", env  # noqa: S104 - all interfaces: inside a container that is the point
    assert env["PORT"] == "80", env
    assert final.command == ["python", "-m", "inference"]
    # USER comes before CMD and HEALTHCHECK, after every RUN: nothing runs as root at run time.
    user_line = final.all("USER")[-1].line
    assert all(ins.line < user_line for ins in final.all("RUN"))


def test_serve_healthcheck_uses_the_standard_library(serve_stages: list[Stage]) -> None:
    check = serve_stages[-1].healthcheck
    assert check is not None, "Dockerfile.serve needs a HEALTHCHECK"
    assert check.command[:2] == ["python", "-c"], check.command
    script = " ".join(check.command)
    assert "urllib.request" in script
    assert not re.search(r"\b(curl|wget)\b", script)
    for option in ("--interval", "--timeout", "--retries"):
        assert option in check.options, f"HEALTHCHECK {option}"


def test_serve_settings_point_at_the_model_mount(serve_stages: list[Stage]) -> None:
    env = serve_stages[-1].env
    settings = env["MODEL_SETTINGS"]
    assert posixpath.isabs(settings), settings
    assert posixpath.basename(settings) == "modelsettings.json", settings
    assert env["MODEL_REGISTRY"] == posixpath.join(posixpath.dirname(settings), "model_registry")
    assert env["STATIC_DIR"] == serve_stages[-1].workdir + "/static"


# ---- Dockerfile.train --------------------------------------------------------------------
def test_train_image_installs_requirements_train_txt(train_stages: list[Stage]) -> None:
    stage = train_stages[-1]
    installs = pip_installs(stage)
    assert len(installs) == 1, installs
    ins, args = installs[0]
    assert "--require-hashes" in args, args
    assert "--no-cache-dir" in args, args
    assert [posixpath.normpath(posixpath.join(stage.workdir, f)) for f in requirement_files(args)] == [
        stage.workdir + "/requirements/train.txt"
    ]
    copied_before = [c for c in stage.copies if c.line < ins.line]
    assert [(c.sources, c.dest) for c in copied_before] == [
        (["requirements/train.txt"], stage.workdir + "/requirements/train.txt")
    ]
    assert not {k for k in stage.env if k.startswith("PIP_")} - ALLOWED_PIP_ENV, stage.env
    pins = requirements(ROOT / "requirements" / "train.txt")
    assert {"scikit-learn", "pandas", "skl2onnx", "onnx", "onnxruntime"} <= set(pins)


def test_train_image_copies_the_two_packages_and_runs_training(train_stages: list[Stage]) -> None:
    stage = train_stages[-1]
    sources = sorted(src for c in stage.copies for src in c.sources)
    assert sources == ["inference/", "requirements/train.txt", "training/"], sources
    assert stage.command[:3] == ["python", "-m", "training"], stage.command
    assert stage.command[3:] in ([], ["train"]), stage.command
    user = stage.user
    assert user, "the training image runs as a non-root USER too"
    uid = user.split(":")[0]
    assert uid.isdigit(), f"USER {user}: a numeric uid"
    assert int(uid) != 0, f"USER {user}: not root"
    env = stage.env
    assert posixpath.basename(env["DIAMOND_DB"]) == "diamond.db"
    assert env["MODEL_REGISTRY"] == posixpath.join(posixpath.dirname(env["MODEL_SETTINGS"]), "model_registry")


# ---- compose.yaml ------------------------------------------------------------------------
def test_compose_services_and_profiles() -> None:
    assert set(compose()["services"]) == {"training", "api"}
    assert service("training")["profiles"] == ["training"]
    assert service("api")["profiles"] == ["api"]
    assert dockerfile_of(service("training")) == TRAIN_DOCKERFILE
    assert dockerfile_of(service("api")) == SERVE_DOCKERFILE


def test_api_service_publishes_81_healthchecks_and_restarts(serve_stages: list[Stage]) -> None:
    api = service("api")
    # Port 81 on loopback unless API_BIND says otherwise (issue #11: /update_model may have no token).
    assert api["ports"] == ["${API_BIND:-127.0.0.1}:81:80"]
    assert api["restart"] == "unless-stopped"
    test = api["healthcheck"]["test"]
    assert test[0] == "CMD", "exec form, like the image's HEALTHCHECK"
    image_check = serve_stages[-1].healthcheck
    assert image_check is not None
    assert test[1:] == image_check.command, "compose's healthcheck and the image's HEALTHCHECK must agree"
    # Port 80 as a non-root user needs unprivileged low ports (Docker's default; explicit here).
    assert str(api.get("sysctls", {}).get("net.ipv4.ip_unprivileged_port_start")) == "0"


def test_compose_passes_the_settings_through_the_environment() -> None:
    api = service("api")["environment"]
    assert api["UPDATE_TOKEN"] == "${UPDATE_TOKEN:-}", "no token unless the user sets one"
    assert api["WORKERS"] == "${WORKERS:-1}"
    defaults = compose_environment(service("api"))
    assert defaults["UPDATE_TOKEN"] == ""
    assert defaults["WORKERS"] == "1"
    assert compose_environment(service("api"), {"WORKERS": "4"})["WORKERS"] == "4"


def test_both_services_share_the_model_directory() -> None:
    api, training = service("api"), service("training")
    api_env, train_env = effective_environment(api), effective_environment(training)
    for name in ("MODEL_SETTINGS", "MODEL_REGISTRY"):
        assert api_env[name] == train_env[name], name
    settings_dir = posixpath.dirname(api_env["MODEL_SETTINGS"])
    api_mount, train_mount = mount_for(settings_dir, api), mount_for(settings_dir, training)
    # A directory mount, never the settings file alone (it is replaced by rename).
    assert api_mount.target == settings_dir == train_mount.target
    assert api_mount.type == train_mount.type == "bind"
    assert api_mount.source == train_mount.source
    assert (ROOT / api_mount.source).resolve() == ROOT, "by default the project directory itself"
    # The registry lies on the same mount, at the relative path modelsettings.json records.
    assert mount_for(api_env["MODEL_REGISTRY"], api) == api_mount
    assert mount_for(train_env["MODEL_REGISTRY"], training) == train_mount
    assert api_mount.read_only, "the API mounts the models read-only"
    assert not train_mount.read_only, "training writes the registry and the settings file"


def test_training_mounts_the_database_read_only() -> None:
    training = service("training")
    db = effective_environment(training)["DIAMOND_DB"]
    mount = mount_for(db, training)
    assert mount.target == db
    assert mount.read_only
    assert (ROOT / mount.source).resolve() == ROOT / "diamond.db"
    assert not mount.create_host_path, "a missing diamond.db must be an error, not an empty directory"
    assert all(m.target != db for m in mounts(service("api"))), "the API has no business with the data"


def test_no_mount_hides_the_image_code() -> None:
    for name in ("api", "training"):
        workdir = parse_dockerfile(dockerfile_of(service(name)))[-1].workdir
        for m in mounts(service(name)):
            assert not (workdir + "/").startswith(m.target.rstrip("/") + "/"), f"{name}: {m.target} hides {workdir}"
            assert not m.target.startswith(workdir + "/"), f"{name}: {m.target} is inside the image's {workdir}"


@pytest.mark.parametrize(
    ("name", "source"),
    [("api", ROOT / "inference" / "config.py"), ("training", ROOT / "training" / "paths.py")],
)
def test_every_variable_set_is_one_the_code_reads(name: str, source: Path) -> None:
    code = source.read_text()
    for variable in effective_environment(service(name)):
        if not RUNTIME_VARIABLES.match(variable):
            assert f'"{variable}"' in code, f"{name}: {variable} is set but {source.name} never reads it"


# ---- .dockerignore -----------------------------------------------------------------------
@pytest.mark.parametrize(
    "path",
    [
        ".venv/bin/python",
        ".venv-serve/lib/python3.11/site-packages/x.py",
        ".git/HEAD",
        "tests/test_containers.py",
        "static/node_modules/redoc/package.json",
        "node_modules/x/index.js",
        "inference/__pycache__/config.cpython-311.pyc",
        "training/__pycache__/train.cpython-311.pyc",
        ".pytest_cache/v/cache/lastfailed",
        ".mypy_cache/3.11/x.json",
        ".ruff_cache/content",
        "diamond.db",
        "modelsettings.json",
        "model_registry/diamond_price-v1.onnx",
        ".env",
    ],
)
def test_dockerignore_keeps_out(path: str) -> None:
    assert not in_build_context(path), f"{path} would be sent to the builder"


def test_dockerignore_keeps_every_copied_source() -> None:
    for dockerfile in (SERVE_DOCKERFILE, TRAIN_DOCKERFILE):
        for stage in parse_dockerfile(dockerfile):
            for c in stage.copies:
                if c.from_stage:
                    continue
                for source in c.sources:
                    path = ROOT / source
                    assert path.exists(), f"{dockerfile.name}:{c.line}: {source} does not exist"
                    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
                    kept = [f for f in files if in_build_context(f.relative_to(ROOT).as_posix())]
                    assert kept, f"{dockerfile.name}:{c.line}: .dockerignore drops all of {source}"
                    if path.is_file():
                        assert kept == [path], f"{dockerfile.name}:{c.line}: .dockerignore drops {source}"
    for module in (ROOT / "inference").glob("*.py"):
        assert in_build_context(module.relative_to(ROOT).as_posix()), module


def test_dockerignore_matcher_follows_docker_semantics() -> None:
    regex = _pattern_regex
    assert regex("**/node_modules").match("static/node_modules")
    assert regex("**/node_modules").match("node_modules")
    assert regex(".venv*").match(".venv-serve")
    assert not regex(".venv*").match("inference/.venv")
    assert regex("**/*.py[cod]").match("a/b/c.pyc")
    assert not regex("*").match("a/b")
