"""A program run as an argument list, never through a shell; and Slurm's scontrol.

Programs get no standard input and an environment of PATH and LC_CTYPE only,
so that the receiver's own secrets never reach them.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
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
from alertmanager_webhook.actuators.spawn import run_in_session
from alertmanager_webhook.policy_config import PolicyConfig
from alertmanager_webhook.templates import (
    SAFE_VALUE,
    LabelError,
    fill_argv,
    safe_value,
)

Runner = Callable[..., subprocess.CompletedProcess]

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
    # UTF-8 text, messages and formats of the C locale. LANG would load every
    # category of the locale: a third of what a small program's start costs.
    env = {"PATH": os.environ.get("PATH", os.defpath), "LC_CTYPE": "C.UTF-8"}
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
