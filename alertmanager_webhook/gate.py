"""Who goes first inside the receiver: notifications before the worker.

The gate is shared by the process's database connections and by the worker,
so that answering Alertmanager never waits behind the action backlog.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class WriteGate:
    """One writer at a time across a process's stores, notifications first.

    The worker writes in a loop while it has a backlog; a plain lock could
    let it take the database again and again while a notification waits, so
    the worker steps aside whenever an urgent writer is waiting.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting = threading.Condition()
        self._urgent = 0
        self._requests = 0

    @contextmanager
    def request(self) -> Iterator[None]:
        """Mark a notification being answered; the worker waits for none."""
        with self._waiting:
            self._requests += 1
        try:
            yield
        finally:
            with self._waiting:
                self._requests -= 1
                self._waiting.notify_all()

    def let_requests_pass(self, timeout: float) -> None:
        """Wait, at most `timeout` seconds, until no notification is in flight."""
        with self._waiting:
            self._waiting.wait_for(lambda: self._requests == 0, timeout)

    @contextmanager
    def hold(self, urgent: bool) -> Iterator[None]:
        if urgent:
            with self._waiting:
                self._urgent += 1
            try:
                self._lock.acquire()
            finally:
                with self._waiting:
                    self._urgent -= 1
                    self._waiting.notify_all()
        else:
            with self._waiting:
                self._waiting.wait_for(lambda: self._urgent == 0)
            self._lock.acquire()
        try:
            yield
        finally:
            self._lock.release()
