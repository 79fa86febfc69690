"""Programs that outlived the worker that started them.

After a crash (`kill -9`, the OOM killer) a command the worker had started
runs on in its own session. No two actions on one target may run at once, so
the target stays held until that program and what it started (its process
group) end, and they are ended at the timeout its policy gave it, as they
would have been. Whether they ended by themselves is told; how is not: the
program is no child of the restarted receiver, and only a parent learns a
process's exit status.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import threading
import time
from collections.abc import Callable

from alertmanager_webhook.processes import same_process
from alertmanager_webhook.program_groups import group_ends_by, group_runs

log = logging.getLogger(__name__)

# How long a killed program's end is waited for before its target is let go.
KILL_WAIT_SECONDS = 5.0


def watch(
    pid: int, started: float, seconds: float, gone: Callable[[bool | None], None]
) -> threading.Thread | None:
    """Call `gone` once process `pid`, created at `started`, and its group end.

    The group is killed if it still runs after `seconds`; `gone` is told
    whether it was (True), or ended by itself (False), or None if the watch
    failed before it could tell. Returns the thread
    that watches, to be waited for before the receiver stops (it is what
    kills at the timeout); None, calling nothing, when neither that process
    nor its group runs.
    """
    try:
        ended: int | None = os.pidfd_open(pid)
    except ProcessLookupError:
        # Gone, but what it started may run on in its group, whose id the
        # kernel gives no new process while a member runs.
        # (A later group could hold the number only once the pid space had
        # wrapped around and that group's own leader had ended: not guarded.)
        ended = None
        if not group_runs(pid):
            return None
    except OSError:  # not ours to watch: nothing to wait for
        return None
    # Checked once the pidfd holds the pid: it cannot name another meanwhile.
    if ended is not None and same_process(pid, started) is None:
        os.close(ended)  # the pid names another process now: its group is gone
        return None
    thread = threading.Thread(
        target=_outlive,
        args=(ended, pid, seconds, gone),
        name=f"survivor-{pid}",
        daemon=True,
    )
    thread.start()
    return thread


def _outlive(
    ended: int | None,
    pid: int,
    seconds: float,
    gone: Callable[[bool | None], None],
) -> None:
    deadline = time.monotonic() + max(0.0, seconds)
    # Said only once seen: a watch that failed on its way tells nothing.
    killed: bool | None = None
    try:
        # Its program first, then what it left in its group.
        program_ended = (
            ended is None or select.select([ended], [], [], max(0.0, seconds))[0]
        )
        if program_ended and group_ends_by(pid, deadline):
            killed = False
        else:
            log.warning(
                "killing interrupted action's program at its timeout pid=%d", pid
            )
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass  # it ended meanwhile
            killed = True
            group_ends_by(pid, time.monotonic() + KILL_WAIT_SECONDS)
    finally:
        if ended is not None:
            os.close(ended)
        gone(killed)


def ending(killed: bool, ran_seconds: float | None, timeout: float) -> str:
    """What the restarted receiver saw of a survivor's end, for its action's record.

    Not whether it succeeded: that is its exit status, which it cannot learn.
    """
    if killed:
        return (
            "its program's process group ran on after the restart until its "
            f"timeout of {timeout:g}s, which killed it"
        )
    ran = (
        "" if ran_seconds is None else f", {max(0.0, ran_seconds):.0f}s after it began"
    )
    return (
        "its program's process group ran on after the restart and ended by "
        f"itself{ran}; its exit status is not known, as only the receiver that "
        "started the program could have learnt it"
    )
