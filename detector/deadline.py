"""A requests transport adapter that holds each answer, status line, headers and
body, to one deadline; needs requests on urllib3 2.

requests' timeout bounds each socket read on its own: a server that sends a
byte now and then holds a request as long as it likes. Here every read's
timeout is cut to what is left of the deadline set by `held_to`.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import socket
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import Any

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.poolmanager import ProxyManager

SecondsLeft = Callable[[], float]

# The deadline of the request being made; a context variable, so that threads
# sharing one session each keep their own.
_seconds_left: ContextVar[SecondsLeft | None] = ContextVar("seconds_left", default=None)


@contextlib.contextmanager
def held_to(seconds_left: SecondsLeft) -> Iterator[None]:
    """Hold the answers to requests sent within, headers and body, to a
    deadline: `seconds_left()` is how long the next read may still wait."""
    token = _seconds_left.set(seconds_left)
    try:
        yield
    finally:
        _seconds_left.reset(token)


class DeadlineAdapter(HTTPAdapter):
    """An HTTPAdapter whose answers keep to the deadline of `held_to`; outside
    it, an HTTPAdapter like any other."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _POOLS

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        # A SOCKS proxy's pools are its own: through one, requests' timeout
        # per read is all there is.
        if isinstance(manager, ProxyManager):
            manager.pool_classes_by_scheme = _POOLS
        return manager


class _DeadlineReader(io.RawIOBase):
    """A socket's reader whose every read waits no longer than the time left."""

    def __init__(
        self, raw: io.RawIOBase, sock: socket.socket, seconds_left: SecondsLeft
    ) -> None:
        super().__init__()
        self._raw = raw
        self._sock = sock
        self._seconds_left = seconds_left

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int | None:
        left = self._seconds_left()
        if left <= 0:
            # What a socket read raises on its timeout, so that urllib3 and
            # requests report it as they report theirs.
            raise TimeoutError("deadline passed")
        self._sock.settimeout(left)
        return self._raw.readinto(buffer)

    def fileno(self) -> int:
        return self._raw.fileno()

    def close(self) -> None:
        self._raw.close()
        super().close()


class _DeadlineResponse(http.client.HTTPResponse):
    """http.client's response, reading its socket through a _DeadlineReader
    when a deadline is held; it reads the status line and headers too."""

    def __init__(self, sock: socket.socket, *args: Any, **kwargs: Any) -> None:
        super().__init__(sock, *args, **kwargs)
        seconds_left = _seconds_left.get()
        if seconds_left is not None:
            # Nothing is read yet, so the buffer that detach() drops is empty.
            raw = self.fp.detach()
            self.fp = io.BufferedReader(_DeadlineReader(raw, sock, seconds_left))


class _HTTPConnection(HTTPConnection):
    response_class = _DeadlineResponse


class _HTTPSConnection(HTTPSConnection):
    response_class = _DeadlineResponse


class _HTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


_POOLS = {"http": _HTTPConnectionPool, "https": _HTTPSConnectionPool}
