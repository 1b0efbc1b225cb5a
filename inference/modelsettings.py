"""``modelsettings.json``: the pointer to the current model, and how to trust it.

Its path must stay inside the model registry and the file must match its sha256 before anything
runs it."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from inference import strict_json
from inference.files import MAX_MODEL_BYTES, FileBytes, FileRefused, read_regular

MODEL_NAME = "diamond_price"
SETTINGS_FORMAT = 1
MAX_SETTINGS_BYTES = 1 << 20
"""A settings file larger than this is refused unread (training writes about 2 KB)."""


class ModelFileError(Exception):
    """The settings file or the model it names cannot be trusted; the message says why."""


class ModelSettings(BaseModel):
    """The keys every reader relies on; training records more (kept as extras)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str = Field(default=MODEL_NAME, min_length=1, max_length=200)
    version: int = Field(ge=1, le=2**31 - 1)
    path: str = Field(min_length=1, max_length=4096, pattern=r"^[^\x00-\x1f]+$")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    mae: float = Field(ge=0, allow_inf_nan=False)


def read_settings(settings_path: Path) -> ModelSettings:
    """Parse and validate the settings file, or raise :class:`ModelFileError`."""
    raw = _read_regular(settings_path, "settings file", MAX_SETTINGS_BYTES).data
    try:
        data: Any = strict_json.loads(raw)
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, NaN/Infinity, an over-long integer
        raise ModelFileError(f"settings file {settings_path} is not valid JSON: {str(exc)[:200]}") from None
    if not isinstance(data, dict):
        raise ModelFileError(f"settings file {settings_path} must hold a JSON object")
    try:  # a lone surrogate ("\\ud800") parses, but no reply that quotes it could be encoded
        strict_json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise ModelFileError(f"settings file {settings_path} holds text that is not valid Unicode") from None
    try:
        return ModelSettings.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p)[:40] for p in err['loc']) or '(root)'}: {err['msg']}"
            for err in exc.errors(include_url=False)[:5]
        )
        raise ModelFileError(f"settings file {settings_path} is invalid: {problems}") from None


def resolve_model_path(settings_path: Path, registry: Path, relative: str) -> Path:
    """The model file that ``relative`` names, proven to lie inside ``registry``."""
    if "\x00" in relative:
        raise ModelFileError(f"model path {relative[:100]!r} contains a NUL byte")
    rel = Path(relative)
    if rel.is_absolute() or ".." in rel.parts:
        raise ModelFileError(f"model path {relative[:100]!r} must be relative and stay inside the registry")
    try:
        candidate = (settings_path.parent / rel).resolve()
        root = registry.resolve()
    except (OSError, ValueError, RuntimeError) as exc:  # a symlink loop, a name too long
        raise ModelFileError(f"model path {relative[:100]!r} cannot be resolved: {exc}") from None
    if not candidate.is_relative_to(root):
        raise ModelFileError(f"model path {relative!r} resolves outside the registry {root}")
    return candidate


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_verified_model(
    settings_path: Path, registry: Path, max_bytes: int = MAX_MODEL_BYTES
) -> tuple[ModelSettings, bytes]:
    """The current settings and model bytes, hashed as read once: what is verified is what gets loaded,
    even if the file changes in between."""
    settings = read_settings(settings_path)
    model_path = resolve_model_path(settings_path, registry, settings.path)
    model = _read_regular(model_path, "model file", max_bytes, follow=False)
    if model.sha256 != settings.sha256:
        raise ModelFileError(
            f"sha256 mismatch for {model_path}: file has {model.sha256}, settings expect {settings.sha256}"
        )
    return settings, model.data


def _read_regular(path: Path, what: str, max_bytes: int, *, follow: bool = True) -> FileBytes:
    """:func:`inference.files.read_regular`, its refusal as a :class:`ModelFileError`."""
    try:
        return read_regular(path, what, max_bytes, follow=follow)
    except FileRefused as exc:
        raise ModelFileError(str(exc)) from None


REPORT_SUFFIX = ".report.html"
"""Run reports: ``diamond_price-v{N}.report.html`` beside the model, ``reports/...`` for the others."""
REPORT_ROUTE = "/models/{version}/report"
"""Where the service publishes a version's report."""


def report_name(version: int) -> str:
    """The file name of version ``version``'s report, beside its model file."""
    return f"{MODEL_NAME}-v{version}{REPORT_SUFFIX}"


def report_path(registry: Path, version: int) -> Path:
    """Version ``version``'s report, proven inside ``registry`` as model files are."""
    return resolve_model_path(registry / MODEL_NAME, registry, report_name(version))


def report_exists(registry: Path, version: int) -> bool:
    """Whether ``version`` has a report file inside the registry (blocking: a stat)."""
    try:
        return report_path(registry, version).is_file()
    except ModelFileError:
        return False
