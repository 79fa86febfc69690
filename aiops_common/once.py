"""Tells the first time a key comes from the times after it, for saying a thing
once; remembers a bounded number of keys, the one seen longest ago forgotten
first."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable


class Once:
    """A bounded memory of the keys given to `first`."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity!r}")
        self._capacity = capacity
        self._seen: OrderedDict[Hashable, None] = OrderedDict()
        # A service's loop and its background work may ask at once.
        self._lock = threading.Lock()

    def first(self, key: Hashable) -> bool:
        """True the first time `key` comes, and again once it is forgotten."""
        with self._lock:
            seen = key in self._seen
            self._seen[key] = None
            self._seen.move_to_end(key)
            if len(self._seen) > self._capacity:
                self._seen.popitem(last=False)
        return not seen

    def __len__(self) -> int:
        return len(self._seen)
