"""Where training reads and writes, resolved from the project, never the current directory."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class TrainingPaths:
    db: Path
    settings: Path
    registry: Path

    @classmethod
    def from_env(
        cls,
        db: Path | None = None,
        settings: Path | None = None,
        registry: Path | None = None,
    ) -> TrainingPaths:
        """Explicit arguments win, then ``DIAMOND_DB``, ``MODEL_SETTINGS`` and
        ``MODEL_REGISTRY``, then the repository's own files."""

        def pick(arg: Path | None, var: str, default: Path) -> Path:
            value = arg or (Path(os.environ[var]) if os.environ.get(var) else default)
            return value if value.is_absolute() else (Path.cwd() / value)

        return cls(
            db=pick(db, "DIAMOND_DB", PROJECT_ROOT / "diamond.db"),
            settings=pick(settings, "MODEL_SETTINGS", PROJECT_ROOT / "modelsettings.json"),
            registry=pick(registry, "MODEL_REGISTRY", PROJECT_ROOT / "model_registry"),
        )
