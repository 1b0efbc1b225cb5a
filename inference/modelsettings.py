"""``modelsettings.json``: the pointer to the current model, and how to trust it.

Training writes this file (atomically); the service and training both read it. The
path it names is relative to the file's own directory and must stay inside the
model registry: no absolute paths, no ``..``, no symlink that leads out. The model
file must match the recorded sha256 before anything runs it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

MODEL_NAME = "diamond_price"
SETTINGS_FORMAT = 1


class ModelFileError(Exception):
    """The settings file or the model it names cannot be trusted; the message says why."""


class ModelSettings(BaseModel):
    """The keys every reader relies on; training records more (kept as extras)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str = MODEL_NAME
    version: int = Field(ge=1)
    path: str = Field(min_length=1)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    mae: float = Field(ge=0)


def read_settings(settings_path: Path) -> ModelSettings:
    """Parse and validate the settings file, or raise :class:`ModelFileError`."""
    try:
        raw = settings_path.read_bytes()
    except FileNotFoundError:
        raise ModelFileError(f"settings file not found: {settings_path}") from None
    except OSError as exc:
        raise ModelFileError(f"cannot read settings file {settings_path}: {exc.strerror}") from None
    try:
        data: Any = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"settings file {settings_path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ModelFileError(f"settings file {settings_path} must hold a JSON object")
    try:
        return ModelSettings.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}" for err in exc.errors()
        )
        raise ModelFileError(f"settings file {settings_path} is invalid: {problems}") from None


def resolve_model_path(settings_path: Path, registry: Path, relative: str) -> Path:
    """The model file that ``relative`` names, proven to lie inside ``registry``."""
    rel = Path(relative)
    if rel.is_absolute() or ".." in rel.parts:
        raise ModelFileError(f"model path {relative!r} must be relative and stay inside the registry")
    candidate = (settings_path.parent / rel).resolve()
    root = registry.resolve()
    if not candidate.is_relative_to(root):
        raise ModelFileError(f"model path {relative!r} resolves outside the registry {root}")
    return candidate


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_verified_model(settings_path: Path, registry: Path) -> tuple[ModelSettings, bytes]:
    """The current settings and the model bytes, checked against the recorded sha256.

    The bytes are read once and hashed in memory, so what is verified is exactly what
    gets loaded, even if the file changes in between.
    """
    settings = read_settings(settings_path)
    model_path = resolve_model_path(settings_path, registry, settings.path)
    try:
        blob = model_path.read_bytes()
    except FileNotFoundError:
        raise ModelFileError(f"model file not found: {model_path}") from None
    except OSError as exc:
        raise ModelFileError(f"cannot read model file {model_path}: {exc.strerror}") from None
    digest = hashlib.sha256(blob).hexdigest()
    if digest != settings.sha256:
        raise ModelFileError(f"sha256 mismatch for {model_path}: file has {digest}, settings expect {settings.sha256}")
    return settings, blob
