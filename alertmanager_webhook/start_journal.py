"""Which actions' effects have begun, so that a crash's survivors run once.

An action that is not idempotent (a program, a signal) leaves a mark at the
moment it begins: just before the spawn that starts its program, or before
the first signal. After a crash, an action without a mark never began
and is run again, whether its row was marked running or not yet
(admissions.py); one with a mark is recorded failed, outcome unknown, never
run twice.

The journal is the folder `<database>.started` beside the database, one
file per action that has begun and whose end is not yet recorded, named by
its id. It holds the action's target, plan, attempt and start, and a
program's pid and start time once it runs, so that a program that outlived a
crash is waited for (survivors.py), even before the action's row named its
target, and counts toward the limits from when it began.
"""

from __future__ import annotations

import json
import logging
import os
import stat
from dataclasses import dataclass

import psutil

from alertmanager_webhook.siblings import beside

log = logging.getLogger(__name__)

# A mark being rewritten, before it is renamed over the mark itself.
FRESH_SUFFIX = ".new"


@dataclass(frozen=True)
class Began:
    """The mark of one action: `path` to create when its effect begins.

    Called, it creates the mark, naming the action's target and plan, just
    before the effect (a program's spawn, a signal); if `durable`, synced to
    disk too, so that a power cut cannot lose it while the program runs. A
    crash between the mark and the effect leaves the action "outcome
    unknown" though it never took effect, never run twice.
    """

    path: str
    durable: bool = False
    target: str = ""
    plan: str = ""
    # Which attempt began: a mark no later than the attempts its row records
    # is one whose end was recorded (a retry) before it could be spent.
    attempt: int = 0
    # When the attempt was admitted, as its row will say once its end is
    # recorded: the cooldown and the blast radius count from then.
    began_unix: float = 0.0

    def __call__(self) -> None:
        _write(self.path, self._named())
        if self.durable:
            _sync_folder(os.path.dirname(self.path))

    def record(self, pid: int) -> None:
        """Write the program's pid and start time into its mark.

        After a crash they tell whether the program still runs
        (processes.same_process), so that nothing else changes its target
        meanwhile. Best effort: a mark without them still says that the
        action began.
        """
        try:
            started = psutil.Process(pid).create_time()
        except psutil.Error:
            return  # it has ended already
        try:
            self._replace({"pid": pid, "started": started, **self._named()})
        except OSError:
            pass

    def _named(self) -> dict[str, object]:
        return {
            "target": self.target,
            "plan": self.plan,
            "attempt": self.attempt,
            "began_unix": self.began_unix,
        }

    def _replace(self, content: dict[str, object]) -> None:
        # Written beside it and renamed over it: rewritten in place, the mark
        # was empty for a moment, and a crash then lost the program's pid.
        fresh = self.path + FRESH_SUFFIX
        _write(fresh, content)
        os.replace(fresh, self.path)


def _write(path: str, content: dict[str, object]) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, json.dumps(content).encode() + b"\n")
    finally:
        os.close(fd)


class StartJournal:
    def __init__(self, path: str, fsync: bool = False) -> None:
        self.path = path
        # Under `database_sync: full` a mark survives a power cut too.
        self._fsync = fsync
        self._made = False

    @classmethod
    def beside(cls, database: str, fsync: bool = False) -> StartJournal:
        return cls(beside(database, ".started"), fsync)

    def begun(self) -> set[int] | None:
        """The ids marked so far; None when there is no journal to trust."""
        try:
            names = os.listdir(self.path)
        except (FileNotFoundError, NotADirectoryError):
            # No journal (a database of an older receiver, or its journal
            # file of one id per line): no absence of a mark can be trusted.
            return None
        except OSError as exc:
            log.warning(
                "start journal unreadable, every interrupted action counts as "
                "begun path=%s err=%s",
                self.path,
                exc,
            )
            return None
        # A rewrite a crash cut short: the mark it was to replace still holds.
        names = [name for name in names if not name.endswith(FRESH_SUFFIX)]
        if not all(name.isdigit() and name.isascii() for name in names):
            log.warning(
                "start journal holds what is not an action id, every interrupted "
                "action counts as begun path=%s",
                self.path,
            )
            return None
        return {int(name) for name in names}

    def open(self, keep: frozenset[int] = frozenset()) -> None:
        """Start anew: the crash's survivors are settled, their marks spent.

        The marks in `keep` stay: their programs still run, and a crash
        before they end must find them again. Raises OSError when the folder
        cannot be made or emptied.
        """
        try:
            mode = os.lstat(self.path).st_mode
        except FileNotFoundError:
            mode = None
        if mode is not None and stat.S_ISREG(mode):
            os.unlink(self.path)  # an older receiver's journal file
            mode = None
        if mode is None:
            os.mkdir(self.path, 0o700)
        for name in os.listdir(self.path):
            if not (name.isdigit() and int(name) in keep):
                os.unlink(os.path.join(self.path, name))
        self._made = True

    def mark(
        self,
        action_id: int,
        target: str = "",
        plan: str = "",
        attempt: int = 0,
        began_unix: float = 0.0,
    ) -> Began:
        """The mark to make when attempt `attempt` of an action begins."""
        if not self._made:
            # A worker driven inline, with no recovery first, has none yet.
            os.makedirs(self.path, 0o700, exist_ok=True)
            self._made = True
        return Began(
            self._mark_path(action_id), self._fsync, target, plan, attempt, began_unix
        )

    def program(self, action_id: int) -> tuple[int, float] | None:
        """The pid and start time a mark holds; None if it holds none."""
        content = self._read(action_id)
        try:
            return int(content["pid"]), float(content["started"])
        except (KeyError, TypeError, ValueError):
            return None

    def named(self, action_id: int) -> tuple[str, str]:
        """The target and the plan a mark names; "" for either it lacks."""
        content = self._read(action_id)
        target, plan = content.get("target"), content.get("plan")
        return (
            target if isinstance(target, str) else "",
            plan if isinstance(plan, str) else "",
        )

    def began_at(self, action_id: int) -> float | None:
        """When the attempt was admitted; else, its program's start.

        The admission's time is read from the worker's clock, as its row's
        would be; an older receiver's mark names only its program's. None
        for a mark that says neither.
        """
        began = self._read(action_id).get("began_unix")
        if isinstance(began, int | float) and not isinstance(began, bool) and began > 0:
            return float(began)
        program = self.program(action_id)
        return None if program is None else program[1]

    def attempt(self, action_id: int) -> int | None:
        """The attempt a mark says began; None if it does not say."""
        attempt = self._read(action_id).get("attempt")
        if isinstance(attempt, int) and not isinstance(attempt, bool) and attempt > 0:
            return attempt
        return None

    def _read(self, action_id: int) -> dict[str, object]:
        try:
            with open(self._mark_path(action_id), encoding="utf-8") as fh:
                text = fh.read()
        except (OSError, UnicodeDecodeError):
            return {}
        try:
            content = json.loads(text)
        except ValueError:
            # An older receiver's mark: "pid start-time".
            fields = text.split()
            if len(fields) != 2:
                return {}
            return {"pid": fields[0], "started": fields[1]}
        return content if isinstance(content, dict) else {}

    def settle(self, action_id: int) -> None:
        """The action's end is recorded: its mark is spent."""
        try:
            os.unlink(self._mark_path(action_id))
        except FileNotFoundError:
            pass  # its actuator failed before its effect began

    def _mark_path(self, action_id: int) -> str:
        return os.path.join(self.path, str(action_id))


def _sync_folder(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
