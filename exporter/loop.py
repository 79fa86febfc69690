"""The background thread that refreshes the snapshot every interval."""

from __future__ import annotations

import logging
import threading
import time

from exporter.snapshot import Snapshot

log = logging.getLogger(__name__)


class CollectionLoop:
    """Refreshes `snapshot` at once, then every `interval_seconds` until stopped."""

    def __init__(self, snapshot: Snapshot, interval_seconds: float) -> None:
        self._snapshot = snapshot
        self._interval = interval_seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the thread; it makes its first collection straight away."""
        self._thread = threading.Thread(
            target=self._run, name="aiops-collection", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float) -> bool:
        """Ask the thread to end and wait up to `timeout`; True once it has."""
        self._stop.set()
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        log.info("collection started interval_seconds=%s", self._interval)
        while True:
            started = time.monotonic()
            try:
                self._snapshot.refresh()
            except Exception:  # the loop boundary: a bug here must not end collection
                log.exception("collection cycle failed")

            # Counted from the cycle's start, so a slow source does not drift
            # the schedule by its own duration.
            elapsed = time.monotonic() - started
            if self._stop.wait(max(0.0, self._interval - elapsed)):
                break
        log.info("collection stopped")
