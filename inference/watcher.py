"""Every worker converges on the model that modelsettings.json names.

One ``stat`` per interval; retried on every check while no model serves, so a service started
before its first model picks it up; a bad settings file is logged once per change."""

from __future__ import annotations

import asyncio
import logging

from inference.files import regular_identity
from inference.holder import ModelHolder
from inference.modelsettings import ModelFileError

log = logging.getLogger(__name__)


async def watch_settings(holder: ModelHolder, interval: float) -> None:
    """Run until cancelled."""
    current = holder.current
    seen = current.identity if current is not None else None
    logged: tuple[object, str] | None = None
    while True:
        await asyncio.sleep(interval)
        identity = regular_identity(holder.settings_path)
        if identity == seen and (holder.current is not None or holder.timed_out):
            continue  # a load that ran out of LOAD_TIMEOUT is not retried until the settings change
        try:
            model, previous, changed = await holder.reload_async()
        except ModelFileError as exc:
            seen = identity
            key = (identity, str(exc))
            if key != logged:
                logged = key
                holder.last_error = str(exc)
                serving = holder.current
                state = f"still serving v{serving.version}" if serving else "no model is serving"
                log.error("modelsettings.json changed but cannot be loaded (%s): %s", state, exc)
            continue
        except Exception:  # never let the watcher die: the next change gets another try
            log.exception("unexpected error while reloading the model")
            seen = identity
            continue
        seen = model.identity
        logged = None
        if changed:
            log.info(
                "settings changed: now serving v%d (was %s)",
                model.version,
                f"v{previous.version}" if previous else "none",
            )
