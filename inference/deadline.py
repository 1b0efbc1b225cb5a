"""Deadlines for onnxruntime calls: a model that is slow, or never ends, cannot take the server down.

A thread cannot be killed, but ``RunOptions.terminate`` set from another thread ends a run between
two nodes; :class:`Deadlines` is that thread, one per process."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

import onnxruntime as ort

from inference.errors import ServiceError

T = TypeVar("T")

TICK = 0.005
"""Seconds between the thread's looks at deadlines while calls come."""
LINGER = 1.0
"""Seconds the thread stays awake after the last call: under load, no call pays to wake it."""
INLINE_SECONDS = 0.02
"""How long a model call on the event loop may run before it is terminated."""
SLOW_SECONDS = 0.005
"""CPU seconds of a call on the event loop past which its model is slow and later calls go to a
thread. CPU time, not wall time: a process preempted on a busy machine is not a slow model (its
call stopped at :data:`INLINE_SECONDS` is redone once in a thread by the caller)."""


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
        """``call(options)`` terminated after ``seconds`` (:class:`ModelTooSlow`)."""
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
