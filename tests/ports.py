"""Ports for the servers tests start on 127.0.0.1.

Any free port by default; on a shared host that lets tests listen on some
ports only, the first free one of AIOPS_TEST_PORTS (such as "19100-19199").
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def on_first_free_port(bind: Callable[[int], T]) -> T:
    """Return `bind(port)` for the first port it can bind (0: any free one)."""
    ports = os.environ.get("AIOPS_TEST_PORTS")
    if not ports:
        return bind(0)

    first, _, last = ports.partition("-")
    for port in range(int(first), int(last or first) + 1):
        try:
            return bind(port)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
    raise OSError(errno.EADDRINUSE, f"no free port in AIOPS_TEST_PORTS={ports!r}")


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listened on a moment ago.

    The port may be taken again before the server binds it; rare enough in
    tests, where each server is started right after.
    """

    def bind(port: int) -> int:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))
            return sock.getsockname()[1]

    return on_first_free_port(bind)
