"""Training's progress: a live line on a terminal (a StringIO that says it is one), log lines only
in a pipe, and the fits' iterations counted from real boosters."""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Iterator

import numpy as np
import pytest

from training.estimator import BoostedLogPrice
from training.progress import CLEAR, Progress, duration


class Terminal(io.StringIO):
    """What a terminal looks like to the progress: a stream whose ``isatty`` says so."""

    def isatty(self) -> bool:
        return True


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Booster:
    """Stands in for a booster in the middle of its fit: ``done`` iterations finished."""

    def __init__(self, done: int) -> None:
        self._predictors = [[None]] * done


@pytest.fixture
def rows() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    X = np.column_stack([rng.uniform(0.2, 3, 400), rng.integers(0, 5, 400), rng.integers(0, 7, 400)])
    return X, 3000 * X[:, 0] ** 1.7 + 100 * X[:, 1] + rng.uniform(0, 50, 400)


@pytest.fixture
def same_stream_log() -> Iterator[Terminal]:
    """A terminal that the root logger writes to as well, as the training command's stdout is."""
    terminal = Terminal()
    handler = logging.StreamHandler(terminal)
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield terminal
    root.removeHandler(handler)
    root.setLevel(level)


def small_model(iterations: int = 60) -> BoostedLogPrice:
    booster = {"max_iter": iterations, "max_leaf_nodes": 7, "random_state": 0}
    return BoostedLogPrice(boosters=(booster, booster), interval_booster=booster)


def test_durations_read_as_seconds_then_minutes() -> None:
    assert duration(3.24) == "3.2 s"
    assert duration(245.4) == "4 min 05 s"


def test_a_pipe_gets_one_log_line_per_stage_and_fit_and_no_live_line(
    rows: tuple[np.ndarray, np.ndarray], caplog: pytest.LogCaptureFixture
) -> None:
    pipe = io.StringIO()
    model = small_model()
    with caplog.at_level(logging.INFO, logger="training.progress"), Progress(pipe) as progress:
        assert not progress.live
        progress.stage("cleaning")
        progress.stage("fitting")
        progress.plan(model.planned_iterations())
        model.fit(*rows, progress=progress.fit)
        progress.stage("export")
    lines = [r.getMessage() for r in caplog.records]
    assert pipe.getvalue() == ""
    assert [re.sub(r"[\d.]+ s\b", "T", line) for line in lines] == [
        "cleaning done in T (T since the start)",
        "fit 1/4: 60 iterations in T",
        "fit 2/4: 60 iterations in T",
        "fit 3/4: 60 iterations in T",
        "fit 4/4: 60 iterations in T",
        "fitting done in T (T since the start)",
        "export done in T (T since the start)",
    ]


def test_planned_iterations_are_the_fits_that_run(rows: tuple[np.ndarray, np.ndarray]) -> None:
    for model in (small_model(25), BoostedLogPrice(boosters=({"max_iter": 7},), interval=None)):
        progress = Progress(io.StringIO())
        model.fit(*rows, progress=progress.fit)
        assert progress.fits_done == len(model.planned_iterations())
        assert progress.iterations_before == sum(model.planned_iterations())
        assert len(model.models_) + len(model.bounds_) == progress.fits_done


def test_the_live_line_shows_the_stage_the_fit_its_iterations_and_an_estimate() -> None:
    clock = Clock()
    progress = Progress(Terminal(), clock=clock)
    clock.now += 5
    progress.stage("fitting")
    progress.plan([100, 100, 50])
    progress.fitting = Booster(50)
    clock.now += 10  # 50 of 250 iterations in 10 s: 200 more take about 40 s
    assert progress.line() == "fitting | 15.0 s elapsed | fit 1/3: 50/100 iterations | about 40.0 s left"
    progress.fitting, progress.fits_done, progress.iterations_before = Booster(0), 2, 200
    clock.now += 30
    assert progress.line() == "fitting | 45.0 s elapsed | fit 3/3: 0/50 iterations | about 10.0 s left"
    progress.fitting = None
    progress.stage("parity")
    assert progress.line() == "parity | 45.0 s elapsed"


def test_a_terminal_gets_a_live_line_that_log_lines_never_share(
    rows: tuple[np.ndarray, np.ndarray], same_stream_log: Terminal
) -> None:
    model = small_model(150)
    with Progress(same_stream_log, tick=0.005) as progress:
        assert progress.live
        progress.stage("fitting")
        progress.plan(model.planned_iterations())
        model.fit(*rows, progress=progress.fit)
        progress.stage("export")
    out = same_stream_log.getvalue()
    live = re.findall(r"fit (\d)/4: (\d+)/150 iterations", out)
    assert live, out[:500]
    assert "elapsed" in out and " left" in out
    assert {int(done) for _, done in live} - {0, 150}, "no count in the middle of a fit"
    assert "elapsed" not in out.rsplit(CLEAR, 1)[1], "the live line is erased when the run ends"
    for message in ("fit 1/4: 150 iterations in", "fitting done in", "export done in"):
        at = out.index(message)
        assert at == 0 or out[:at].endswith(("\n", CLEAR)), f"{message!r} shares a line: {out[at - 80 : at]!r}"
    assert logging.getLogger().handlers[-1].filters == [], "the erasing filter is removed on exit"


def fail_while_exporting(progress: Progress) -> None:
    with progress:
        progress.stage("export")
        raise OSError("disk full")


def test_a_stage_that_raises_is_logged_as_failed(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="training.progress"), pytest.raises(OSError, match="disk full"):
        fail_while_exporting(Progress(io.StringIO()))
    assert [r.getMessage().split(" after ")[0] for r in caplog.records] == ["export failed"]
