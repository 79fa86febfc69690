"""A logger wrapper that says a thing at its level the first time and at DEBUG
after, so a fault that lasts does not flood the log every cycle."""

from __future__ import annotations

import logging
import threading
from collections.abc import Hashable


class Once:
    """Remembers which keys were logged; forget() lets a key be said again."""

    def __init__(self, logger: logging.Logger) -> None:
        self._log = logger
        self._said: set[Hashable] = set()
        self._lock = threading.Lock()

    def log(self, level: int, key: Hashable, msg: str, *args: object) -> bool:
        """Log at `level` when `key` is new, else at DEBUG; True when it was new."""
        with self._lock:
            new = key not in self._said
            self._said.add(key)
        self._log.log(level if new else logging.DEBUG, msg, *args)
        return new

    def forget(self, key: Hashable) -> bool:
        """Clear `key`; True when it had been said, so a recovery can be logged."""
        with self._lock:
            if key in self._said:
                self._said.discard(key)
                return True
        return False
