"""Coalesce single-row predictions that arrive together into one onnxruntime call.

Under concurrent load an onnxruntime call for one row costs far more than the row:
binding, dispatch, cold caches. :class:`RowBatcher` queues the rows of the
``/diamond_price`` requests that reach the model in the same event-loop turn and prices
them with one call at the end of that turn: adaptive batching as in MLServer and Triton,
but without a timer, so nothing waits for a batch to fill; a lone request pays one
event-loop turn. Its gain is in docs/benchmarks.md.
"""

from __future__ import annotations

import asyncio
from typing import Any

from inference.errors import UnpriceableRows
from inference.holder import LoadedModel
from inference.schema import columns


class RowBatcher:
    """Rows queued in one event-loop turn are priced by one model call at the end of it."""

    def __init__(self) -> None:
        self._pending: list[tuple[LoadedModel, Any, asyncio.Future[list[float]]]] = []

    async def price(self, model: LoadedModel, row: Any) -> list[float]:
        """The validated diamond's values of ``model.outputs`` in USD rounded to cents (see
        :meth:`LoadedModel.price_list`); :class:`UnpriceableRows` outside the schema."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[float]] = loop.create_future()
        if not self._pending:
            loop.call_soon(self._flush)  # after the handlers already ready in this turn
        self._pending.append((model, row, future))
        return await future

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        groups: dict[int, list[tuple[LoadedModel, Any, asyncio.Future[list[float]]]]] = {}
        for item in pending:  # a request keeps the model it started with, even across a swap
            groups.setdefault(id(item[0]), []).append(item)
        for items in groups.values():
            model = items[0][0]
            rows = [row for _, row, _ in items]
            try:
                outcomes: list[list[float] | BaseException] = list(model.price_list(columns(rows)))
            except UnpriceableRows:  # rare: price one by one, so that only the bad rows fail
                outcomes = [_price_or_error(model, row) for row in rows]
            except Exception as exc:
                outcomes = [exc] * len(rows)
            for (_, _, future), outcome in zip(items, outcomes, strict=True):
                if future.done():  # the client went away meanwhile
                    continue
                if isinstance(outcome, BaseException):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome)


def _price_or_error(model: LoadedModel, row: Any) -> list[float] | BaseException:
    try:
        return model.price_list(columns([row]))[0]
    except UnpriceableRows as exc:
        return exc
