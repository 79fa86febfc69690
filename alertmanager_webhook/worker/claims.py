"""What the worker's threads hold: the actions in hand and the targets changed.

No two actions of one alert episode, nor two changes to one target, run at
once; an action whose target another change holds is set aside until it is
let go. One condition guards it all and wakes the threads waiting for work.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from sqlite3 import Row

log = logging.getLogger(__name__)

# Ready actions read per look at the queue. The read sorts every ready action,
# so it is done per batch rather than per action: a backlog would make each
# look slower, and the worker fall further behind.
BATCH = 50


class TargetHeld(Exception):
    """Another change holds the action's target: it waits, set aside."""


class Claims:
    """The actions and targets in hand, and the actions set aside, by thread."""

    def __init__(self) -> None:
        # Guards what the threads share: the actions and targets in hand, and
        # a counter that moves whenever new work may have become ready. Held
        # only briefly, never over the database: notify() runs in requests.
        self._busy = threading.Condition()
        # Held over a look at the queue and the claim that follows, and by a
        # thread letting an action go, so that no look sees it still queued.
        self._taking = threading.Lock()
        # Ready actions read by the last look and not yet taken, oldest first.
        # One may have been cancelled since; its move then finds it so.
        self._batch: list[Row] = []
        self._in_hand: dict[int, tuple[str, str]] = {}
        # Actions whose end could not be written: their rows may still say
        # queued, and must not be taken again. Admissions holds them too, but
        # under a lock held over every end's write: taking the next action
        # must not wait for one.
        self._unsettled: set[int] = set()
        self._targets: set[str] = set()
        # Actions set aside, by id: the target they were planned on, which
        # another change held, and their alert episode. While that target is
        # held, none is taken again, nor any other action of its episode. Once
        # it is let go they may be, oldest first: the first takes the target,
        # and the few that other threads plan meanwhile are set aside again,
        # so that each is planned a few times, not once per action let go.
        # Kept past the row's own end (a resolve cancelled it) until the next
        # look at the queue.
        self._aside: dict[int, tuple[str, tuple[str, str]]] = {}
        # Set when a target with actions set aside is let go: they are not in
        # the batch any more, so the next look reads the queue anew.
        self._reread = False
        self._generation = 0
        self._idle = False

    def generation(self) -> int:
        """The counter that moves whenever new work may have become ready."""
        with self._busy:
            return self._generation

    def notify(self) -> None:
        """Wake the threads: something was queued, approved or let go."""
        with self._busy:
            self._generation += 1
            self._idle = False
            self._busy.notify_all()

    def wait_for_work(self, seen: int, timeout: float, stop: threading.Event) -> None:
        """Sleep until notified, an action is let go, `stop` is set or `timeout`."""
        with self._busy:
            self._busy.wait_for(
                lambda: self._generation != seen or stop.is_set(), timeout
            )

    def wait_idle(self, timeout: float) -> bool:
        """Wait until a look at the queue found nothing ready and nothing in hand."""
        with self._busy:
            return self._busy.wait_for(lambda: self._idle, timeout)

    def found_nothing(self, seen: int) -> bool:
        """Note a look that found nothing to take; False while any waits aside."""
        with self._busy:
            # Not emptied while actions set aside wait for their target.
            emptied = not self._waiting_aside()
            # Idle only if nothing was queued or let go while it looked.
            if self._generation == seen and emptied and not self._in_hand:
                self._idle = True
                self._busy.notify_all()
        return emptied

    def aside_generation(self) -> int | None:
        """The generation to wait on while an action set aside waits, else None."""
        with self._busy:
            return self._generation if self._waiting_aside() else None

    @contextmanager
    def looking(self) -> Iterator[None]:
        """Hold the look at the queue: one thread at a time reads and takes."""
        with self._taking:
            yield

    def take(self, read: Callable[[int], list[Row]]) -> Row | None:
        """Claim the oldest ready action whose alert episode no thread holds.

        Called within `looking()`; `read(limit)` reads the ready actions once
        the batch has nothing left to take.
        """
        if self._reread:
            self._batch, self._reread = [], False
        row = self._claim()
        if row is None:
            # What the batch holds waits on other threads; look again.
            # Room for those set aside too, which would fill it otherwise.
            with self._busy:
                room = len(self._in_hand) + len(self._aside) + BATCH
            self._batch = read(room)
            with self._busy:
                ready = {r["id"] for r in self._batch}
                for action_id in set(self._aside) - ready:
                    del self._aside[action_id]  # ended meanwhile
            row = self._claim()
        return row

    def _waiting_aside(self) -> bool:
        """Whether an action set aside still waits for its target."""
        return any(target in self._targets for target, _ in self._aside.values())

    def _claim(self) -> Row | None:
        with self._busy:
            # Those another thread took since the batch was read are its own.
            waiting = {
                action_id: episode
                for action_id, (target, episode) in self._aside.items()
                if target in self._targets
            }
            self._batch = [
                r
                for r in self._batch
                if r["id"] not in self._in_hand
                and r["id"] not in self._unsettled
                and r["id"] not in waiting
            ]
            episodes = {*self._in_hand.values(), *waiting.values()}
            for i, row in enumerate(self._batch):
                episode = (row["alert_fingerprint"], row["alert_starts_at"])
                if episode not in episodes:
                    del self._batch[i]
                    self._in_hand[row["id"]] = episode
                    return row
        return None

    def let_go(self, action_id: int) -> None:
        with self._taking, self._busy:
            del self._in_hand[action_id]
            # An action of the same episode may now be taken.
            self._generation += 1
            self._busy.notify_all()

    def mark_unsettled(self, action_id: int) -> None:
        """Never take `action_id` again: its end could not be written."""
        with self._busy:
            self._unsettled.add(action_id)

    @contextmanager
    def holding(self, target: str, row: Row) -> Iterator[None]:
        """Keep `target` for this thread; raise TargetHeld if another has it.

        The action is then set aside rather than waited for in this thread:
        waiting, `workers` actions queued on one held target (a long command,
        or a program that outlived a crash, held up to its timeout) kept every
        thread, and actions on other targets waited for it too. Its target is
        known only once it is planned, so it is set aside only then.
        """
        with self._busy:
            if target in self._targets:
                episode = (row["alert_fingerprint"], row["alert_starts_at"])
                if row["id"] not in self._aside:
                    log.info(
                        "action waits for its target id=%d target=%r",
                        row["id"],
                        target,
                    )
                self._aside[row["id"]] = (target, episode)
                raise TargetHeld(target)
            self._aside.pop(row["id"], None)
            self._targets.add(target)
        try:
            yield
        finally:
            self.let_target_go(target)

    def keep_target(self, target: str) -> None:
        """Hold `target` for no thread: a program that outlived a crash has it."""
        with self._busy:
            self._targets.add(target)

    def drop_target(self, target: str) -> None:
        """Undo `keep_target` for a program found gone, waking no thread."""
        with self._busy:
            self._targets.discard(target)

    def let_target_go(self, target: str) -> None:
        with self._busy:
            self._targets.discard(target)
            if any(aside == target for aside, _ in self._aside.values()):
                self._reread = True
                self._generation += 1
            self._busy.notify_all()
