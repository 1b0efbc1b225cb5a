"""Deadlines for onnxruntime calls: a model that is slow, or never ends, cannot take the server down.

A call on the event loop freezes everything else the process answers, ``/health/live`` included,
and a thread cannot be killed. onnxruntime can stop a run itself: ``RunOptions.terminate`` set from
another thread ends it between two nodes with an error. :class:`Deadlines` is that other thread,
one per process. Each model call registers its options with a deadline; the thread looks every
:data:`TICK` seconds while calls come, terminating those past their deadline, and sleeps after
:data:`LINGER` seconds without any (a call then wakes it).

A call on the event loop gets :data:`INLINE_SECONDS`: a row takes about 0.1 ms, so a call that
needs more marks its model as slow (:class:`Speed`) and from then on the model is called in a
worker thread, under ``PREDICT_TIMEOUT``. The trial prediction of a model being loaded gets
``LOAD_TIMEOUT``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

import onnxruntime as ort

from inference.errors import ServiceError

T = TypeVar("T")

TICK = 0.005
LINGER = 1.0
"""Seconds the thread stays awake after the last call: under load, no call pays to wake it."""
INLINE_SECONDS = 0.02
"""How long a model call on the event loop may run before it is terminated."""
SLOW_SECONDS = 0.005
"""A call on the event loop that takes more CPU time than this marks its model slow: later calls go
to a thread. CPU time of the calling thread (onnxruntime runs there with one intra-op thread), not
wall time: a process preempted on a busy machine is not a slow model."""


class ModelTooSlow(ServiceError, status=503, headers={"Retry-After": "1", "Cache-Control": "no-store"}):
    """The model did not answer within its deadline; the call was stopped."""


class Speed:
    """Whether a model must be called off the event loop (it once took more than :data:`SLOW_SECONDS`)."""

    __slots__ = ("slow",)

    def __init__(self) -> None:
        self.slow = False


class Deadlines:
    """The thread that terminates onnxruntime calls past their deadline."""

    def __init__(self) -> None:
        self._calls: dict[int, tuple[float, ort.RunOptions]] = {}
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def run(self, seconds: float, call: Callable[[ort.RunOptions], T]) -> T:
        """``call(options)`` whose onnxruntime run is terminated after ``seconds``:
        :class:`ModelTooSlow` then."""
        options = ort.RunOptions()
        key = id(options)
        self._calls[key] = (time.monotonic() + seconds, options)
        if not self._wake.is_set():
            self._start()
            self._wake.set()
        try:
            return call(options)
        except Exception:
            if options.terminate:
                raise ModelTooSlow(f"the model did not answer within {seconds:g} s; the call was stopped") from None
            raise
        finally:
            del self._calls[key]

    def _start(self) -> None:
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._watch, name="model-deadlines", daemon=True)
                    self._thread.start()

    def _watch(self) -> None:
        while True:
            self._wake.wait()
            quiet_since: float | None = None
            while True:  # awake while calls come; asleep again after LINGER seconds without one
                time.sleep(TICK)
                now = time.monotonic()
                calls = list(self._calls.values())
                for deadline, options in calls:
                    if now > deadline:
                        options.terminate = True
                if calls:
                    quiet_since = None
                elif quiet_since is None:
                    quiet_since = now
                elif now - quiet_since > LINGER:
                    self._wake.clear()
                    if not self._calls:  # else one registered between the look and the clear: go on
                        break
                    self._wake.set()


DEADLINES = Deadlines()
"""The process's one deadline thread."""
