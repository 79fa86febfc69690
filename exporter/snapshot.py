"""The last complete collection of every source, served to scrapes as it stands.

Each source runs in its own thread with a time limit, so a hung NVML call or a
slow /proc never holds up /metrics; data older than the stale limit is dropped.
Each source's text is rendered once, in its own thread, so that a scrape only
joins stored bytes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from prometheus_client.core import Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector

from exporter.metrics import health_families
from exporter.once import Once

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Source:
    """A named callable that reads something and returns its metric families."""

    name: str
    collect: Callable[[], Iterable[Metric]]


@dataclass
class _State:
    families: tuple[Metric, ...] = ()
    text: bytes = b""
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
    text: bytes = b""
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
        # A source that keeps failing warns once per streak, not every cycle.
        self._once = Once(log)

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
        with self._lock:
            fresh = [family for state in self._fresh() for family in state.families]
            health = self._health()

        yield from fresh
        yield from health

    def exposition(self, own: Collector | None = None) -> bytes:
        """The text format of every fresh source, the health series and `own`
        (the exporter's process metrics): what /metrics serves."""
        with self._lock:
            parts = [state.text for state in self._fresh()]
            health = self._health()

        parts.append(generate_latest(_Fixed(health)))
        if own is not None:
            parts.append(generate_latest(own))
        return b"".join(parts)

    def _fresh(self) -> list[_State]:
        now = self._clock()
        return [
            state
            for state in self._states.values()
            if state.collected_at is not None
            and now - state.collected_at <= self._stale_after
        ]

    def _health(self) -> list[Metric]:
        states = list(self._states.items())
        return health_families(
            last_success=[(name, s.last_success) for name, s in states],
            durations=[(n, s.duration) for n, s in states if s.duration is not None],
            errors=[(name, s.errors) for name, s in states],
        )

    def _start(self, source: Source) -> tuple[_Run, threading.Thread] | None:
        with self._lock:
            state = self._states[source.name]
            if state.worker is not None and state.worker.is_alive():
                # Starting another would pile threads up behind a hung call.
                state.errors += 1
                self._once.log(
                    logging.WARNING,
                    source.name,
                    "source still running, cycle skipped source=%s",
                    source.name,
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
            run.text = generate_latest(_Fixed(run.families))
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
                self._once.log(
                    logging.WARNING,
                    name,
                    "source timed out source=%s timeout_seconds=%s",
                    name,
                    self._timeout,
                )
                return

            state.worker = None
            state.duration = run.duration
            if run.error is not None:
                state.errors += 1
                self._once.log(
                    logging.WARNING,
                    name,
                    "source failed source=%s error=%r",
                    name,
                    run.error,
                )
                log.debug("source failure", exc_info=run.error)
                return

            state.families = run.families
            state.text = run.text
            state.collected_at = self._clock()
            state.last_success = self._wall()

        if self._once.forget(name):
            log.info("source recovered source=%s", name)
        log.debug("source collected source=%s seconds=%.3f", name, run.duration)


class _Fixed(Collector):
    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return self._families
