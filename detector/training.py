"""When family models retrain, and where the work runs.

Training runs on an executor: a single background thread in the service, so
that a long fit never delays a scoring cycle, or inline in the backtest and the
tests, where a fit must happen at a known point of the replayed time. Either
way a model trained on data up to time T only scores points after T.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import Any

log = logging.getLogger(__name__)


class InlineExecutor(Executor):
    """Runs each job at once in the caller's thread."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as exc:  # handed to the caller through the future
            future.set_exception(exc)
        return future


def background_executor() -> Executor:
    # One worker: family fits queue up rather than compete with the scoring
    # loop for the cores.
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="detector-train")


class Schedule:
    """Says when a family's model is due, and keeps one fit in flight at most."""

    def __init__(self, every_seconds: float, last_trained: float | None = None) -> None:
        self.every_seconds = every_seconds
        # Unix time of the data the model in use was trained up to; None until
        # one is trained or loaded.
        self.last_trained = last_trained
        self.failures = 0
        self._last_attempt = -float("inf") if last_trained is None else last_trained
        self._running: Future | None = None
        self._lock = threading.Lock()

    def due(self, now: float) -> bool:
        with self._lock:
            busy = self._running is not None and not self._running.done()
        return not busy and now - self._last_attempt >= self.every_seconds

    def start(
        self,
        executor: Executor,
        now: float,
        job: Callable[[], object],
        done: Callable[[object], None],
        name: str,
    ) -> None:
        """Run `job`, then `done(result)`; a failure is logged and counted."""

        def finished(future: Future) -> None:
            try:
                result = future.result()
            except Exception:  # a failed fit keeps the previous model
                self.failures += 1
                log.warning("training failed family=%s", name, exc_info=True)
                return
            done(result)
            self.last_trained = now
            log.info("trained family=%s", name)

        # The attempt counts even if it fails, so a bad fit is retried on the
        # schedule and not every cycle.
        self._last_attempt = now
        future = executor.submit(job)
        with self._lock:
            self._running = future
        future.add_done_callback(finished)
