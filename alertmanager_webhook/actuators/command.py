"""A program run as an argument list, never through a shell; and Slurm's scontrol.

Programs get no standard input and an environment of PATH and LANG only, so
that the receiver's own secrets never reach them.
"""

from __future__ import annotations

import os
import re
import selectors
import shlex
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from alertmanager_webhook.actuators.base import (
    ActuatorError,
    Began,
    Outcome,
    Params,
    Plan,
    fmt_number,
)
from alertmanager_webhook.config import PolicyConfig
from alertmanager_webhook.templates import (
    SAFE_VALUE,
    LabelError,
    fill_argv,
    safe_value,
)

Runner = Callable[..., subprocess.CompletedProcess]

# Signals Python ignores for itself; a program must start with them default.
DEFAULT_SIGNALS = (signal.SIGPIPE, signal.SIGXFSZ)
# Where a program's mark is opened in the spawn, and closed before exec.
MARK_FD = 3
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

    Its own session, so that Ctrl-C at the receiver's terminal reaches the
    receiver, which lets the program finish, and not the program. A timeout
    ends the session's whole process group, not the program alone: nothing it
    started may act after its action was recorded as failed.

    Spawned rather than forked: a fork of the worker, whose memory must be
    copied, cost ten times the spawn's CPU. The spawn's last step before the
    program replaces it creates `began`'s mark, so the mark precedes the
    program's first effect. Raises FileNotFoundError, subprocess.TimeoutExpired
    and OSError.
    """
    _keep_descriptors_from_programs()
    out_read, out_write = os.pipe()
    err_read, err_write = os.pipe()
    steps: list[tuple[Any, ...]] = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_DUP2, out_write, 1),
        (os.POSIX_SPAWN_DUP2, err_write, 2),
    ]
    if began is not None:
        if began.durable:
            began()
        flags = os.O_WRONLY | os.O_CREAT
        steps.append((os.POSIX_SPAWN_OPEN, MARK_FD, began.path, flags, 0o600))
        steps.append((os.POSIX_SPAWN_CLOSE, MARK_FD))
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
    try:
        if not program.wait_until(time.monotonic() + timeout):
            _kill_group(pid)
            program.wait_until(time.monotonic() + DRAIN_AFTER_KILL_SECONDS)
            program.reap()
            raise subprocess.TimeoutExpired(list(argv), timeout)
        code = program.reap()
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


# A job id, or an array job's element: 1234 or 1234_7.
SLURM_JOB = re.compile(r"[0-9]{1,12}(_[0-9]{1,9})?")

# Shown from a failing program's standard error, as the recorded reason.
STDERR_SHOWN = 200


def run_program(
    run: Runner, argv: Sequence[str], timeout: float, began: Began | None = None
) -> str:
    """Run `argv`; return its standard output, raise ActuatorError on failure.

    `began`'s mark is made just before the program starts: the last moment at
    which not running it is still certain.
    """
    env = {"PATH": os.environ.get("PATH", os.defpath), "LANG": "C.UTF-8"}
    try:
        done = run(list(argv), timeout=timeout, env=env, began=began)
    except FileNotFoundError as exc:
        if began is not None and not os.path.exists(began.path):
            # The spawn stopped at the mark, before the program was looked for.
            raise ActuatorError(
                f"cannot mark that {argv[0]} began: {began.path}: {exc.strerror}"
            ) from exc
        raise ActuatorError(f"program {argv[0]!r} not found") from exc
    except subprocess.TimeoutExpired as exc:
        raise ActuatorError(f"{argv[0]} timed out after {timeout:g}s") from exc
    except OSError as exc:
        raise ActuatorError(f"cannot run {argv[0]!r}: {exc}") from exc

    if done.returncode != 0:
        err = done.stderr.decode(errors="replace").strip()[-STDERR_SHOWN:]
        raise ActuatorError(f"{argv[0]} {_ended(done.returncode)}: {err!r}")
    return done.stdout.decode(errors="replace")


def _ended(returncode: int) -> str:
    # subprocess reports death by a signal as the signal's negative number.
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exited {returncode}"


class Command:
    """The `command` action: the policy's argv with `{label}` values filled in."""

    # Whether a command may run twice is the policy's to say (`idempotent`).
    idempotent = False

    def __init__(self, run: Runner = run_in_session) -> None:
        self._run = run

    def plan(
        self, labels: Mapping[str, str], policy: PolicyConfig, params: Params
    ) -> Plan:
        try:
            argv = fill_argv(policy.argv, labels)
        except LabelError as exc:
            return Plan("", f"refused: {exc}", "refused")

        shown = shlex.join(argv)
        return Plan(
            shown,
            f"run {shown}",
            spec={"argv": argv, "timeout": policy.timeout_seconds},
        )

    def apply(self, spec: Mapping[str, Any], began: Began | None = None) -> Outcome:
        run_program(self._run, spec["argv"], float(spec["timeout"]), began)
        return Outcome(f"{spec['argv'][0]} exited 0")

    def restore(self, undo: Mapping[str, Any]) -> str:
        return "a command cannot be taken back"


class SlurmUpdate:
    """The `slurm_update` action: `scontrol update JobId=N Field=Value ...`.

    The fields' values before the change are read with `scontrol show job`, so
    that a resolved alert sets them back.
    """

    idempotent = True

    def __init__(self, scontrol: str = "scontrol", run: Runner = run_in_session):
        self._scontrol = scontrol
        self._run = run

    def plan(
        self, labels: Mapping[str, str], policy: PolicyConfig, params: Params
    ) -> Plan:
        try:
            job = safe_value(labels, "slurm_job_id", SLURM_JOB)
        except LabelError as exc:
            return Plan("", f"refused: {exc}", "refused")
        fields = {k: fmt_number(v) for k, v in params.items()}
        bad = [k for k, v in fields.items() if not SAFE_VALUE.fullmatch(v)]
        if bad:
            return Plan(
                f"job {job}", f"refused: field {bad[0]} is not plain", "refused"
            )

        argv = self._update_argv(job, fields)
        return Plan(
            f"slurm job {job}",
            f"run {shlex.join(argv)}",
            spec={"job": job, "fields": fields, "timeout": policy.timeout_seconds},
        )

    def apply(self, spec: Mapping[str, Any]) -> Outcome:
        job, fields, timeout = spec["job"], spec["fields"], float(spec["timeout"])
        shown = run_program(
            self._run, [self._scontrol, "show", "job", "-o", job], timeout
        )
        before = _show_fields(shown)
        previous = {k: before[k] for k in fields if k in before}

        run_program(self._run, self._update_argv(job, fields), timeout)
        undo = (
            {"job": job, "fields": previous, "timeout": timeout} if previous else None
        )
        return Outcome(f"updated slurm job {job}", undo)

    def restore(self, undo: Mapping[str, Any]) -> str:
        argv = self._update_argv(undo["job"], undo["fields"])
        run_program(self._run, argv, float(undo["timeout"]))
        return f"set {', '.join(undo['fields'])} of slurm job {undo['job']} back"

    def _update_argv(self, job: str, fields: Mapping[str, str]) -> list[str]:
        return [
            self._scontrol,
            "update",
            f"JobId={job}",
            *(f"{k}={v}" for k, v in fields.items()),
        ]


def _show_fields(text: str) -> dict[str, str]:
    # `scontrol show job -o` prints one line of Key=Value pairs.
    pairs = (word.partition("=") for word in text.split())
    return {key: value for key, sep, value in pairs if sep}
