"""The last complete collection of every source, served to scrapes as it stands.

Each source runs in its own thread with a time limit, so a hung NVML call or a
slow /proc never holds up /metrics; data older than the stale limit is dropped.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from exporter.metrics import health_families

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Source:
    """A named callable that reads something and returns its metric families."""

    name: str
    collect: Callable[[], Iterable[Metric]]


@dataclass
class _State:
    families: tuple[Metric, ...] = ()
    collected_at: float | None = None
    last_success: float = 0.0
    duration: float | None = None
    errors: int = 0
    worker: threading.Thread | None = None


@dataclass
class _Run:
    """What one worker thread left behind: families, or the error it raised."""

    source: Source
    families: tuple[Metric, ...] = ()
    error: Exception | None = None
    duration: float = 0.0


class Snapshot(Collector):
    """A prometheus_client Collector whose collect() only reads stored results.

    `clock` is monotonic (durations, staleness); `wall` gives the Unix time
    exported as the last success.
    """

    def __init__(
        self,
        sources: Iterable[Source],
        timeout_seconds: float,
        stale_after_seconds: float,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._sources = tuple(sources)
        self._timeout = timeout_seconds
        self._stale_after = stale_after_seconds
        self._clock = clock
        self._wall = wall
        self._states = {source.name: _State() for source in self._sources}
        self._lock = threading.Lock()

    def refresh(self) -> None:
        """Run every source once, side by side, and keep what finished in time."""
        started = [pair for pair in map(self._start, self._sources) if pair]

        # One deadline for all: sources run in parallel, so the cycle takes at
        # most one time limit however many sources hang.
        deadline = time.monotonic() + self._timeout
        for run, thread in started:
            thread.join(max(0.0, deadline - time.monotonic()))
            self._finish(run, thread)

    def join(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for running sources; True when none runs."""
        deadline = time.monotonic() + timeout
        with self._lock:
            workers = [s.worker for s in self._states.values() if s.worker is not None]
        for worker in workers:
            worker.join(max(0.0, deadline - time.monotonic()))
        return not any(worker.is_alive() for worker in workers)

    def collect(self) -> Iterator[Metric]:
        """Yield each source's last families unless stale, then the health series."""
        now = self._clock()
        with self._lock:
            states = list(self._states.items())
            fresh = [
                family
                for _, state in states
                if state.collected_at is not None
                and now - state.collected_at <= self._stale_after
                for family in state.families
            ]
            health = health_families(
                last_success=[(name, s.last_success) for name, s in states],
                durations=[
                    (n, s.duration) for n, s in states if s.duration is not None
                ],
                errors=[(name, s.errors) for name, s in states],
            )

        yield from fresh
        yield from health

    def _start(self, source: Source) -> tuple[_Run, threading.Thread] | None:
        with self._lock:
            state = self._states[source.name]
            if state.worker is not None and state.worker.is_alive():
                # Starting another would pile threads up behind a hung call.
                state.errors += 1
                log.warning(
                    "source still running, cycle skipped source=%s", source.name
                )
                return None

            # Daemon: a call hung in a driver must not keep the process alive.
            run = _Run(source)
            thread = threading.Thread(
                target=self._work,
                args=(run,),
                name=f"aiops-source-{source.name}",
                daemon=True,
            )
            state.worker = thread

        thread.start()
        return run, thread

    def _work(self, run: _Run) -> None:
        started = self._clock()
        try:
            run.families = tuple(run.source.collect())
        except Exception as exc:  # the source boundary: log, count, go on
            run.error = exc
        run.duration = self._clock() - started

    def _finish(self, run: _Run, thread: threading.Thread) -> None:
        name = run.source.name
        with self._lock:
            state = self._states[name]
            if thread.is_alive():
                state.errors += 1
                state.duration = self._timeout
                log.warning(
                    "source timed out source=%s timeout_seconds=%s",
                    name,
                    self._timeout,
                )
                return

            state.worker = None
            state.duration = run.duration
            if run.error is not None:
                state.errors += 1
                log.warning("source failed source=%s error=%r", name, run.error)
                log.debug("source failure", exc_info=run.error)
                return

            state.families = run.families
            state.collected_at = self._clock()
            state.last_success = self._wall()

        log.debug("source collected source=%s seconds=%.3f", name, run.duration)
