"""The noise floor (training/floor.py): its three estimates per cell, and by carat band."""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
import pandas as pd
import pytest

from inference.schema import FEATURES
from tests.helpers import REPO_DB, make_db
from training import data, floor


@pytest.fixture(scope="module")
def frame(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    return data.load(make_db(tmp_path_factory.mktemp("floor") / "d.db", rows=4000)).frame


def test_each_estimate_is_its_definition_row_by_row(frame: pd.DataFrame) -> None:
    """The vectorised estimates against the definitions, cell by cell, on real diamonds."""
    spread = floor.cell_spread(frame)
    cells: dict[tuple[object, ...], list[int]] = defaultdict(list)
    for i, key in enumerate(zip(*(frame[n] for n in FEATURES.names), strict=True)):
        cells[key].append(i)
    price = frame["price"].to_numpy()
    assert max(len(rows) for rows in cells.values()) >= 5  # real cells of many sizes
    for rows in cells.values():
        y = price[rows]
        assert (spread.size[rows] == len(rows)).all()
        if len(rows) == 1:
            assert np.isnan([spread.pairwise[rows], spread.in_sample[rows], spread.leave_one_out[rows]]).all()
            continue
        pairs = [abs(a - b) for i, a in enumerate(y) for b in y[i + 1 :]]
        assert spread.pairwise[rows] == pytest.approx(np.mean(pairs) / math.sqrt(2))
        assert spread.in_sample[rows] == pytest.approx(np.mean(np.abs(y - np.median(y))))
        loo = [abs(y[j] - np.median(np.delete(y, j))) for j in range(len(y))]
        assert spread.leave_one_out[rows] == pytest.approx(loo)


def test_a_cell_of_three_by_hand() -> None:
    cell = {"carat": 1.0, "cut": "Ideal", "color": "G", "clarity": "VS1"}
    rows = pd.DataFrame([{**cell, "price": p} for p in (400.0, 100.0, 200.0)])
    spread = floor.cell_spread(rows)
    assert spread.pairwise == pytest.approx([200 / math.sqrt(2)] * 3)  # pairs: 300, 200, 100
    assert spread.in_sample == pytest.approx([100.0] * 3)  # around the median 200: 200, 100, 0
    assert spread.leave_one_out == pytest.approx([250.0, 200.0, 50.0])  # against 150, 300, 250


def test_bands_partition_the_rows_and_compare_on_the_same_rows(frame: pd.DataFrame) -> None:
    spread = floor.cell_spread(frame)
    carat = frame["carat"].to_numpy()
    errors = np.abs(frame["price"].to_numpy() - np.median(frame["price"]))
    bands = floor.by_band(carat, errors, spread)
    assert [b.label for b in bands] == [*floor.band_labels(), "all"]
    *each, total = bands
    assert sum(b.rows for b in each) == total.rows == len(frame)
    assert total.mae == pytest.approx(float(errors.mean()))
    known = ~np.isnan(spread.pairwise)
    assert total.floor_rows == int(known.sum()) and total.mae_on_floor_rows == pytest.approx(errors[known].mean())
    assert total.floor_low < total.floor < total.floor_high  # in-sample below, leave-one-out above
    assert total.gap == pytest.approx(total.mae_on_floor_rows - total.floor)
    assert "| all |" in floor.format_bands(bands) and "[" in floor.format_bands(bands)


def test_the_floor_of_the_shipped_data() -> None:
    """On the whole data set most rows share their cell, and the floor is well above zero."""
    full = data.load(REPO_DB).frame
    spread = floor.cell_spread(full)
    total = floor.by_band(full["carat"].to_numpy(), np.zeros(len(full)), spread)[-1]
    assert 0.7 * len(full) < total.floor_rows < len(full)
    assert 100 < total.floor_low < total.floor < total.floor_high < 1000
