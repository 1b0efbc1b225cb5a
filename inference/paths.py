"""The one resolver of the project's paths (MODEL_SETTINGS, MODEL_REGISTRY, DIAMOND_DB), shared by
serving and training, so that setting only MODEL_SETTINGS moves the registry beside it for both."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class ProjectPaths:
    db: Path
    settings: Path
    registry: Path


def resolve_paths(
    env: Mapping[str, str] | None = None,
    *,
    db: Path | None = None,
    settings: Path | None = None,
    registry: Path | None = None,
) -> ProjectPaths:
    """Every path, from explicit arguments, then the environment, then the defaults above."""
    env = os.environ if env is None else env

    def pick(arg: Path | None, var: str, default: Path) -> Path:
        value = arg or (Path(env[var]) if env.get(var) else default)
        return value if value.is_absolute() else Path.cwd() / value

    settings_path = pick(settings, "MODEL_SETTINGS", PROJECT_ROOT / "modelsettings.json")
    return ProjectPaths(
        db=pick(db, "DIAMOND_DB", PROJECT_ROOT / "diamond.db"),
        settings=settings_path,
        registry=pick(registry, "MODEL_REGISTRY", settings_path.parent / "model_registry"),
    )
