"""Actions admitted to run: written once when they end, marked running if long.

An action used to be written twice, marked running before it began and then
its result: two commits in the server per action, a third of its CPU under
load. The start journal (start_journal.py) is what tells after a crash
whether an action began, so the mark before it is not what makes it run
once. An admitted action is now written once, at its end, together with when
it started and what it planned; one still running after `mark_after` seconds
is marked running meanwhile, so that a long program shows as such.

Until its row says so, what is admitted here counts against the cap and the
blast radius (worker/applying.py asks `unmarked()`).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

# An action that runs longer than this is marked running while it runs.
MARK_AFTER_SECONDS = 1.0

Move = Callable[..., bool]


@dataclass
class Admitted:
    """One admitted action; `fields` go with its first write, whichever it is."""

    action_id: int
    target: str
    # The row's state until the action is marked running: queued or approved.
    before: str
    fields: dict[str, Any]
    due: float
    marked: bool = False
    ended: bool = False


class Admissions:
    """The actions admitted and not yet written, and the thread that marks them."""

    def __init__(
        self,
        move: Move,
        mark_after: float = MARK_AFTER_SECONDS,
        marked: Callable[[], None] = lambda: None,
    ) -> None:
        self._move = move
        self._mark_after = mark_after
        # Told after each mark: the running actions' count has changed.
        self._marked = marked
        # Held over a mark's write, so that no count sees an action neither
        # among the unmarked nor in the database as running.
        self._lock = threading.Condition()
        self._open: dict[int, Admitted] = {}
        # When the marking thread will next look of its own accord.
        self._wake_at = math.inf
        self._stop = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._mark_due, name="running-marks", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        with self._lock:
            self._stop = True
            self._lock.notify_all()
        if self._thread is not None:
            self._thread.join()

    def admit(
        self, action_id: int, target: str, before: str, fields: dict[str, Any]
    ) -> Admitted:
        admitted = Admitted(
            action_id, target, before, fields, time.monotonic() + self._mark_after
        )
        with self._lock:
            self._open[action_id] = admitted
            # Woken only if it would sleep past this one's time: woken at each
            # admission, it took two wake-ups per action, each a contest for
            # the GIL, where now it wakes about once a `mark_after`.
            if admitted.due < self._wake_at:
                self._lock.notify_all()
        return admitted

    @contextmanager
    def ending(
        self, admitted: Admitted
    ) -> Iterator[tuple[tuple[str, ...], dict[str, Any]]]:
        """Write the action's end in the block, given what its row must be in.

        Yields the states its row may be in and the fields its first write
        adds. Once ending, an action is never marked; it counts as admitted
        until the block ends, and still after one that raised: a write that
        failed leaves it under way as far as the caps can tell, as a row left
        running did.
        """
        with self._lock:
            admitted.ended = True
            if admitted.marked:
                yield ("running",), {}
            else:
                yield (admitted.before,), dict(admitted.fields)
            self._open.pop(admitted.action_id, None)

    def forget(self, action_id: int) -> None:
        """The action's end was recorded elsewhere (a crash of its actuator)."""
        with self._lock:
            self._open.pop(action_id, None)

    @contextmanager
    def unmarked(self) -> Iterator[list[Admitted]]:
        """Admitted actions that the database does not yet show as running.

        None is marked until the block ends: a count of the database's
        running actions made in it adds up with these.
        """
        with self._lock:
            yield [a for a in self._open.values() if not a.marked]

    def _mark_due(self) -> None:
        with self._lock:
            while not self._stop:
                now = time.monotonic()
                due = [a for a in self._open.values() if not (a.marked or a.ended)]
                for admitted in due:
                    if admitted.due <= now:
                        self._mark(admitted)
                waits = [
                    a.due - now for a in due if not a.marked and math.isfinite(a.due)
                ]
                wait = max(0.0, min(waits)) if waits else None
                self._wake_at = math.inf if wait is None else now + wait
                self._lock.wait(wait)

    def _mark(self, admitted: Admitted) -> None:
        # A mark that fails leaves the action unmarked: its end writes it all.
        try:
            admitted.marked = self._move(
                admitted.action_id,
                (admitted.before,),
                result="running",
                **admitted.fields,
            )
        except Exception:  # the end's own write reports what is wrong
            admitted.due = time.monotonic() + self._mark_after
            return
        if not admitted.marked:
            admitted.due = math.inf  # its row moved on: its end finds it so
            return
        try:
            self._marked()
        except Exception:  # noqa: BLE001 (a gauge left stale is no reason to stop)
            log.exception("cannot publish the queue's depth after a mark")
