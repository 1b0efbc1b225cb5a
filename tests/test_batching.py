"""Single-row requests that arrive together share one onnxruntime call."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from inference.app import create_app
from inference.batching import RowBatcher
from inference.errors import UnpriceableRows
from inference.model import LoadedModel, ModelHolder
from tests.helpers import GOOD, Project, reference_price, settings_for


def rows(n: int) -> list[dict[str, Any]]:
    cuts = ["Fair", "Good", "Very Good", "Premium", "Ideal"]
    return [{**GOOD, "carat": round(0.3 + 0.05 * i, 2), "cut": cuts[i % 5]} for i in range(n)]


def test_concurrent_requests_are_priced_together_and_correctly(
    served: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    original = LoadedModel.price

    def counting(self: LoadedModel, columns: Any) -> Any:
        calls.append(len(columns["carat"]))
        return original(self, columns)

    monkeypatch.setattr(LoadedModel, "price", counting)
    app = create_app(settings_for(served))
    wanted = rows(24)

    async def main() -> list[httpx.Response]:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                return await asyncio.gather(*(client.post("/diamond_price", json=row) for row in wanted))

    responses = asyncio.run(main())
    assert [r.status_code for r in responses] == [200] * 24
    expected = reference_price(served, wanted)
    for r, price in zip(responses, expected, strict=True):
        assert r.json()["price"] == pytest.approx(float(price), abs=0.006)
    assert sum(calls) == 24 and len(calls) < 24, calls  # every row priced once, in fewer model calls


def test_a_row_the_model_cannot_price_fails_alone(served: Project) -> None:
    holder = ModelHolder(served.settings, served.registry)
    model = holder.load()
    good = SimpleNamespace(**GOOD)
    bad = SimpleNamespace(**{**GOOD, "carat": 9.0})  # outside the schema: the graph answers NaN
    batcher = RowBatcher()

    async def main() -> list[Any]:
        return await asyncio.gather(
            batcher.price(model, good), batcher.price(model, bad), batcher.price(model, good), return_exceptions=True
        )

    first, second, third = asyncio.run(main())
    assert isinstance(first, list) and first == third and first[1] <= first[0] <= first[2]
    assert isinstance(second, UnpriceableRows)


def test_a_cancelled_request_does_not_break_the_batch(served: Project) -> None:
    model = ModelHolder(served.settings, served.registry).load()
    batcher = RowBatcher()

    async def main() -> list[float]:
        doomed = asyncio.ensure_future(batcher.price(model, SimpleNamespace(**GOOD)))
        kept = asyncio.ensure_future(batcher.price(model, SimpleNamespace(**GOOD)))
        await asyncio.sleep(0)
        doomed.cancel()
        return await kept

    assert asyncio.run(main())[0] > 0
