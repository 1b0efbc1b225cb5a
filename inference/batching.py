"""Coalesce single-row predictions that arrive together into one onnxruntime call.

One call per row costs far more than the row; batching at the end of the event-loop turn, with
no timer, means nothing waits for a batch to fill."""

from __future__ import annotations

import asyncio
from typing import Any

import anyio
import anyio.to_thread

from inference.deadline import ModelTooSlow
from inference.errors import UnpriceableRows
from inference.loaded import LoadedModel
from inference.schema import columns

Pending = tuple[LoadedModel, Any, "asyncio.Future[list[float]]"]
"""A queued row: the model its request started with, the row, and where its answer goes."""


class RowBatcher:
    """Rows queued in one event-loop turn are priced by one model call at the end of it."""

    def __init__(self) -> None:
        self._pending: list[Pending] = []
        self._limiter = anyio.CapacityLimiter(1)
        self._tasks: set[asyncio.Task[None]] = set()

    async def price(self, model: LoadedModel, row: Any) -> list[float]:
        """The diamond's prices in USD rounded to cents; :class:`UnpriceableRows` outside the schema."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[float]] = loop.create_future()
        if not self._pending:
            loop.call_soon(self._flush)  # after the handlers already ready in this turn
        self._pending.append((model, row, future))
        if not model.speed.slow:
            return await future
        try:  # in a thread under PREDICT_TIMEOUT; past it (a call onnxruntime could not stop), a 503
            return await asyncio.wait_for(future, 2 * model.predict_timeout + 1)
        except TimeoutError:
            raise ModelTooSlow(f"the model did not answer within {model.predict_timeout:g} s") from None

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        groups: dict[int, list[Pending]] = {}
        for item in pending:  # a request keeps the model it started with, even across a swap
            groups.setdefault(id(item[0]), []).append(item)
        for items in groups.values():
            model = items[0][0]
            outcomes = None if model.speed.slow else _outcomes(model, [row for _, row, _ in items])
            if outcomes is None or any(isinstance(o, ModelTooSlow) for o in outcomes):
                task = asyncio.ensure_future(self._off_loop(model, items))
                self._tasks.add(task)  # held until done (the loop keeps only weak references)
                task.add_done_callback(self._tasks.discard)
                continue
            _settle(items, outcomes)

    async def _off_loop(self, model: LoadedModel, items: list[Pending]) -> None:
        rows = [row for _, row, _ in items]
        outcomes = await anyio.to_thread.run_sync(_outcomes, model, rows, limiter=self._limiter)
        _settle(items, outcomes)


def _outcomes(model: LoadedModel, rows: list[Any]) -> list[list[float] | BaseException]:
    try:
        return list(model.price_list(columns(rows)))
    except UnpriceableRows:  # rare: price one by one, so that only the bad rows fail
        return [_price_or_error(model, row) for row in rows]
    except Exception as exc:
        return [exc] * len(rows)


def _settle(items: list[Pending], outcomes: list[list[float] | BaseException]) -> None:
    for (_, _, future), outcome in zip(items, outcomes, strict=True):
        if future.done():  # the client went away meanwhile
            continue
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)


def _price_or_error(model: LoadedModel, row: Any) -> list[float] | BaseException:
    """One row of a batch that failed: its own outcome, whatever it is (a row left unsettled would hang),
    not counted again by the drift hook."""
    try:
        return model.price_list(columns([row]), observe=False)[0]
    except Exception as exc:
        return exc
