"""The one resolver of the project's paths, shared by serving and training.

| variable        | default                               |
|-----------------|---------------------------------------|
| MODEL_SETTINGS  | <repo>/modelsettings.json             |
| MODEL_REGISTRY  | model_registry/ beside MODEL_SETTINGS |
| DIAMOND_DB      | <repo>/diamond.db (training only)     |

An explicit argument (a command-line option) wins over the variable. A relative path
is taken from the current directory. So with only ``MODEL_SETTINGS=/srv/x/modelsettings.json``
set, both the service and training use ``/srv/x/model_registry``.
"""

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
