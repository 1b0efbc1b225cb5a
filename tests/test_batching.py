"""Single-row requests that arrive together share one onnxruntime call."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import httpx
import numpy as np
import pytest

from inference.app import create_app
from inference.batching import RowBatcher
from inference.deadline import ModelTooSlow
from inference.errors import UnpriceableRows
from inference.holder import ModelHolder
from inference.loaded import LoadedModel
from tests.helpers import GOOD, Project, reference_price, settings_for


def rows(n: int) -> list[dict[str, Any]]:
    cuts = ["Fair", "Good", "Very Good", "Premium", "Ideal"]
    return [{**GOOD, "carat": round(0.3 + 0.05 * i, 2), "cut": cuts[i % 5]} for i in range(n)]


def test_concurrent_requests_are_priced_together_and_correctly(
    served: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    original = LoadedModel.price_list

    def counting(self: LoadedModel, columns: Any) -> Any:
        calls.append(len(columns["carat"]))
        return original(self, columns)

    monkeypatch.setattr(LoadedModel, "price_list", counting)
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


def test_every_row_is_answered_when_the_one_by_one_fallback_fails_otherwise() -> None:
    """A batch refused as unpriceable is retried row by row; a row that then fails another way (the
    inline deadline) must still settle, not leave its request waiting for ever."""

    class Flaky:
        speed = SimpleNamespace(slow=False)
        predict_timeout = 1.0

        def price_list(self, columns: Any, *, observe: bool = True) -> list[list[float]]:
            if len(columns["carat"]) > 1:
                raise UnpriceableRows([0])
            raise ModelTooSlow("stopped at its deadline")

    batcher, model, row = RowBatcher(), Flaky(), SimpleNamespace(**GOOD)

    async def main() -> list[Any]:
        both = asyncio.gather(batcher.price(model, row), batcher.price(model, row), return_exceptions=True)  # type: ignore[arg-type]
        return await asyncio.wait_for(both, 10)

    assert [type(outcome) for outcome in asyncio.run(main())] == [ModelTooSlow, ModelTooSlow]


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


class _FixedSession:
    """An onnxruntime stand-in whose outputs are given values (to test the rounding alone)."""

    def __init__(self, values: np.ndarray) -> None:
        self.values = values

    def get_outputs(self) -> list[SimpleNamespace]:
        return [SimpleNamespace(name=n) for n in ("price", "price_low", "price_high")]

    def get_modelmeta(self) -> SimpleNamespace:
        return SimpleNamespace(custom_metadata_map={"price_range_level": "0.8"})

    def run(self, names: list[str], feeds: Any, options: Any = None) -> list[np.ndarray]:
        return [self.values[:, [i]] for i in range(len(names))]


@pytest.mark.parametrize("rows", [1, 16, 17, 500])
def test_the_single_row_path_rounds_exactly_as_the_batch_path(rows: int) -> None:
    rng = np.random.default_rng(rows)
    values = rng.uniform(300, 20_000, size=(rows, 3)).astype(np.float32)
    values[0] = np.float32([0.125, 1.005, 2.675])  # ties and near-ties once scaled to cents
    values[-1, 0] = np.float32(1234.565)
    model = LoadedModel(_FixedSession(values), None, None, 0.0)  # type: ignore[arg-type]
    columns = {"carat": [0.5] * rows, "cut": ["Ideal"] * rows, "color": ["G"] * rows, "clarity": ["VS2"] * rows}
    assert model.price_list(columns) == model.price(columns).tolist()
    values[rows // 2, 1] = np.nan
    for price in (model.price, model.price_list):
        with pytest.raises(UnpriceableRows) as caught:
            price(columns)
        assert caught.value.rows == [rows // 2]
