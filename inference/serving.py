"""What every handler takes from the app: the settings, the model holder, and the model a request
uses to the end (or a 503 saying why there is none); read only through here, so a handler's
dependencies are visible in its imports."""

from __future__ import annotations

from starlette.requests import Request

from inference.batching import RowBatcher
from inference.config import Settings
from inference.errors import ModelUnavailable
from inference.holder import ModelHolder
from inference.loaded import LoadedModel


def settings_of(request: Request) -> Settings:
    """The settings the app was built with (read once, at start-up)."""
    settings: Settings = request.app.state.settings
    return settings


def holder_of(request: Request) -> ModelHolder:
    holder: ModelHolder = request.app.state.holder
    return holder


def batcher_of(request: Request) -> RowBatcher:
    batcher: RowBatcher = request.app.state.batcher
    return batcher


def serving_model(request: Request) -> LoadedModel:
    """The model this request will use to the end, even if another is swapped in meanwhile."""
    holder = holder_of(request)
    return loaded_or_503(holder, holder.current)


def loaded_or_503(holder: ModelHolder, model: LoadedModel | None) -> LoadedModel:
    """``model``, taken once by the caller; a 503 naming why while none is loaded. Both APIs use it."""
    if model is None:
        raise ModelUnavailable(f"no model is loaded: {holder.unavailable_reason}")
    return model
