"""A STAND-IN for the original service this project replaced, rebuilt from its description; not its code.

The original was a FastAPI app over a LightGBM model with pandas: every ``POST /diamond_price``
built a one-row DataFrame (the grades as pandas ``category``) and called LightGBM's ``predict``.
This reconstruction does the same, so ``make bench-peers`` can repeat the side-by-side check
"this project vs the original service" in one run. It trains at start-up on the rows of the
project's ``diamond.db`` (all rows with the four features and a positive price: no holdout, no
further cleaning), with the original's parameters, and answers ``{"price": ...}`` only.

Runs in its own throw-away virtual environment under .bench/, never in the project's:
``PEER_DB=diamond.db [PEER_ASYNC_ROUTE=1] uvicorn original_peer:app --workers 1 --port N``.
"""

import os
import sqlite3

import lightgbm
import pandas as pd
from fastapi import FastAPI
from pydantic import BaseModel

GRADES = ("cut", "color", "clarity")


def train(db: str) -> tuple[lightgbm.LGBMRegressor, dict[str, pd.Index]]:
    """The original's model and, per grade, the categories it was trained with."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        frame = pd.read_sql_query(
            "SELECT carat, cut, color, clarity, price FROM diamonds WHERE carat > 0 AND price > 0"
            " AND cut IS NOT NULL AND color IS NOT NULL AND clarity IS NOT NULL",
            con,
        )
    for name in GRADES:
        frame[name] = frame[name].astype("category")
    model = lightgbm.LGBMRegressor(
        objective="mae", n_estimators=397, num_leaves=37, learning_rate=0.1, colsample_bytree=0.9,
        random_state=1, verbose=-1,
    )  # fmt: skip
    model.fit(frame[["carat", *GRADES]], frame["price"])
    return model, {name: frame[name].cat.categories for name in GRADES}


MODEL, CATEGORIES = train(os.environ["PEER_DB"])
app = FastAPI(title="Diamond price (stand-in of the original service)")


class Diamond(BaseModel):
    carat: float
    cut: str
    color: str
    clarity: str


def diamond_price(diamond: Diamond) -> dict:
    frame = pd.DataFrame([diamond.model_dump()])
    for name in GRADES:
        frame[name] = pd.Categorical(frame[name], categories=CATEGORIES[name])
    return {"price": float(MODEL.predict(frame)[0])}


async def diamond_price_on_the_loop(diamond: Diamond) -> dict:
    return diamond_price(diamond)


# Whether the original's route was a plain ``def`` (FastAPI runs it in its thread pool: the default
# here) or an ``async def`` (the predict on the event loop) is not known; PEER_ASYNC_ROUTE=1 picks
# the second, to measure how much the reference depends on it.
ASYNC_ROUTE = os.environ.get("PEER_ASYNC_ROUTE") == "1"
app.post("/diamond_price")(diamond_price_on_the_loop if ASYNC_ROUTE else diamond_price)
