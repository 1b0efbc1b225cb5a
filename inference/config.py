"""Service settings, read once from the environment at start-up.

Every variable, its default and meaning: docs/operations.md and docs/security.md."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from inference.files import MAX_MODEL_BYTES, MAX_REPORT_BYTES
from inference.paths import PROJECT_ROOT, resolve_paths

N = TypeVar("N", int, float)


def number_from_env(
    env: Mapping[str, str],
    name: str,
    default: N,
    allowed: Callable[[N], bool],
    requirement: str,
    parse: Callable[[str], N] = float,  # type: ignore[assignment]
) -> N:
    """``name`` parsed by ``parse``, ``default`` when unset or empty; a :class:`ConfigError` naming the
    variable otherwise (training uses it too)."""
    raw = env.get(name)
    if not raw:
        return default
    try:
        value = parse(raw)
    except ValueError:
        kind = "an integer" if parse is int else "a number"
        raise ConfigError(f"{name} must be {kind}, got {raw[:40]!r}") from None
    if not allowed(value):  # NaN fails every comparison, so it is refused too
        raise ConfigError(f"{name} must be {requirement}, got {raw[:40]!r}")
    return value


class ConfigError(ValueError):
    """An environment variable holds a value the service cannot use."""


@dataclass(frozen=True)
class Settings:
    model_settings: Path = PROJECT_ROOT / "modelsettings.json"
    model_registry: Path = PROJECT_ROOT / "model_registry"
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    update_token: str | None = None
    max_body_bytes: int = 1 << 20
    body_timeout: float = 10.0
    header_timeout: float = 10.0
    max_header_bytes: int = 64 * 1024
    body_buffer_bytes: int = 4 << 20
    limit_concurrency: int = 512
    max_pipelined: int = 8
    write_timeout: float = 30.0
    max_model_bytes: int = MAX_MODEL_BYTES
    max_report_bytes: int = MAX_REPORT_BYTES
    predict_timeout: float = 5.0
    load_timeout: float = 60.0
    max_error_fields: int = 20
    auto_reload: bool = True
    reload_interval: float = 1.0
    static_dir: Path = PROJECT_ROOT / "static"
    calculator_dir: Path = PROJECT_ROOT / "examples" / "web"
    log_level: str = "info"
    access_log: bool = False
    drift_window_rows: int = 10_000
    drift_window_seconds: float = 3600.0
    drift_min_rows: int = 500

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env

        def path(name: str, default: Path) -> Path:
            value = env.get(name)
            return Path(value).absolute() if value else default

        def integer(name: str, default: int, minimum: int) -> int:
            return number_from_env(env, name, default, lambda v: v >= minimum, f">= {minimum}", int)

        def flag(name: str, default: bool) -> bool:
            raw = env.get(name)
            if raw is None or raw == "":
                return default
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise ConfigError(f"{name} must be 0 or 1, got {raw!r}")

        def seconds(name: str, default: float, low: float, high: float) -> float:
            return number_from_env(
                env, name, default, lambda v: low <= v <= high, f"between {low:g} and {high:g} seconds"
            )

        paths = resolve_paths(env)
        interval = seconds("RELOAD_INTERVAL", cls.reload_interval, 0.05, 60)
        return cls(
            model_settings=paths.settings,
            model_registry=paths.registry,
            host=env.get("HOST") or cls.host,
            port=integer("PORT", cls.port, 0),
            workers=integer("WORKERS", cls.workers, 1),
            update_token=env.get("UPDATE_TOKEN") or None,
            max_body_bytes=integer("MAX_BODY_BYTES", cls.max_body_bytes, 1),
            body_timeout=seconds("BODY_TIMEOUT", cls.body_timeout, 0.1, 3600),
            header_timeout=seconds("HEADER_TIMEOUT", cls.header_timeout, 0.1, 3600),
            max_header_bytes=integer("MAX_HEADER_BYTES", cls.max_header_bytes, 1024),
            body_buffer_bytes=integer("BODY_BUFFER_BYTES", cls.body_buffer_bytes, 1),
            limit_concurrency=integer("LIMIT_CONCURRENCY", cls.limit_concurrency, 1),
            max_pipelined=integer("MAX_PIPELINED", cls.max_pipelined, 1),
            write_timeout=seconds("WRITE_TIMEOUT", cls.write_timeout, 0.1, 3600),
            max_model_bytes=integer("MAX_MODEL_BYTES", cls.max_model_bytes, 1024),
            max_report_bytes=integer("MAX_REPORT_BYTES", cls.max_report_bytes, 1024),
            predict_timeout=seconds("PREDICT_TIMEOUT", cls.predict_timeout, 0.01, 3600),
            load_timeout=seconds("LOAD_TIMEOUT", cls.load_timeout, 0.1, 3600),
            max_error_fields=integer("MAX_ERROR_FIELDS", cls.max_error_fields, 1),
            auto_reload=flag("MODEL_AUTO_RELOAD", cls.auto_reload),
            reload_interval=interval,
            static_dir=path("STATIC_DIR", cls.static_dir),
            calculator_dir=path("CALCULATOR_DIR", cls.calculator_dir),
            log_level=(env.get("LOG_LEVEL") or cls.log_level).lower(),
            access_log=flag("ACCESS_LOG", cls.access_log),
            drift_window_rows=integer("DRIFT_WINDOW_ROWS", cls.drift_window_rows, 0),
            drift_window_seconds=seconds("DRIFT_WINDOW_SECONDS", cls.drift_window_seconds, 1, 7 * 86400),
            drift_min_rows=integer("DRIFT_MIN_ROWS", cls.drift_min_rows, 1),
        )
