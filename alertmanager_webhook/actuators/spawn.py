"""Programs started by posix_spawn in a session of their own, output captured.

A spawn, not a fork: forking the worker, whose memory must be copied, cost
ten times the spawn's CPU per program (4 ms against 0.65 ms).
"""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from typing import Any

from alertmanager_webhook.program_groups import group_ends_by, rank_below_the_receiver
from alertmanager_webhook.start_journal import Began

# Signals Python ignores for itself; a program must start with them default.
DEFAULT_SIGNALS = (signal.SIGPIPE, signal.SIGXFSZ)
# What a killed program's group may still write after the kill.
DRAIN_AFTER_KILL_SECONDS = 1.0


def run_in_session(
    argv: Sequence[str],
    *,
    timeout: float,
    env: Mapping[str, str],
    began: Began | None = None,
) -> subprocess.CompletedProcess:
    """Run `argv` in a session of its own, its output captured.

    Its own session, without a controlling terminal: Ctrl-C at the
    receiver's reaches the receiver, which lets the program finish, and not
    the program, nor can the program type into it (TIOCSTI).
    The program's whole process group is waited for, not the program alone,
    and ended at the timeout: nothing it started may act after its action
    was recorded, nor beside the next action on its target.

    `began`'s mark, naming the action's target, is made just before the
    spawn, so that it precedes the program's first effect; a crash between
    the two leaves the action "outcome unknown" though its program never
    ran, never run twice. Raises FileNotFoundError,
    subprocess.TimeoutExpired and OSError.
    """
    # First: a mark that cannot be made leaves no pipe open behind it.
    if began is not None:
        began()
    _keep_descriptors_from_programs()
    out_read, out_write = os.pipe()
    err_read, err_write = os.pipe()
    steps: list[tuple[Any, ...]] = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_DUP2, out_write, 1),
        (os.POSIX_SPAWN_DUP2, err_write, 2),
    ]
    try:
        pid = os.posix_spawnp(
            argv[0],
            list(argv),
            dict(env),
            file_actions=steps,
            setsid=True,
            setsigmask=(),
            setsigdef=DEFAULT_SIGNALS,
        )
    except BaseException:
        os.close(out_read)
        os.close(err_read)
        raise
    finally:
        os.close(out_write)
        os.close(err_write)
    rank_below_the_receiver(pid)
    if began is not None:
        began.record(pid)

    try:
        program = _Program(pid, out_read, err_read)
    except OSError as exc:
        # Unwatched, its timeout could not be kept: it is ended at once.
        _kill_group(pid)
        os.waitpid(pid, 0)
        os.close(out_read)
        os.close(err_read)
        raise OSError(
            exc.errno,
            f"cannot watch for its end (pidfd_open: {exc.strerror}; Linux 5.3 or "
            "later is needed), so it was killed",
        ) from exc
    deadline = time.monotonic() + timeout
    try:
        if not program.wait_until(deadline):
            _kill_group(pid)
            program.wait_until(time.monotonic() + DRAIN_AFTER_KILL_SECONDS)
            program.reap()
            raise subprocess.TimeoutExpired(list(argv), timeout)
        code = program.reap()
        # Reaped first: the program's own zombie would count as its group.
        if not group_ends_by(pid, deadline):
            _kill_group(pid)
            raise subprocess.TimeoutExpired(list(argv), timeout)
    finally:
        program.close()
    return subprocess.CompletedProcess(list(argv), code, *program.output())


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass  # the group ended on its own meanwhile


def _keep_descriptors_from_programs() -> None:
    """Make every descriptor past standard error close at exec.

    A spawn leaves open what is inheritable (a fork through subprocess closed
    everything): descriptors handed to the worker's process at its start must
    not reach the programs it runs.
    """
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2:
            try:
                if os.get_inheritable(fd):
                    os.set_inheritable(fd, False)
            except OSError:
                pass  # the listing's own descriptor, closed by now


class _Program:
    """A spawned program: its output read as it comes, its end waited for."""

    def __init__(self, pid: int, out: int, err: int) -> None:
        # Readable once the program has ended, even if its pipes stay open.
        # Opened first: a failure leaves nothing else to close.
        self._ended = os.pidfd_open(pid)
        self.pid = pid
        self._chunks: dict[int, list[bytes]] = {out: [], err: []}
        self._pipes = (out, err)
        self._selector = selectors.DefaultSelector()
        for fd in (*self._pipes, self._ended):
            self._selector.register(fd, selectors.EVENT_READ)

    def wait_until(self, deadline: float) -> bool:
        """Read until both pipes end and the program has; False at the deadline."""
        while self._selector.get_map():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            for key, _ in self._selector.select(left):
                chunk = b"" if key.fd == self._ended else os.read(key.fd, 65536)
                if chunk:
                    self._chunks[key.fd].append(chunk)
                else:
                    self._selector.unregister(key.fd)
        return True

    def reap(self) -> int:
        """Wait for the program's end; its exit code, negative for a signal."""
        _, status = os.waitpid(self.pid, 0)
        return os.waitstatus_to_exitcode(status)

    def close(self) -> None:
        self._selector.close()
        for fd in (*self._pipes, self._ended):
            os.close(fd)

    def output(self) -> tuple[bytes, bytes]:
        out, err = self._pipes
        return b"".join(self._chunks[out]), b"".join(self._chunks[err])
