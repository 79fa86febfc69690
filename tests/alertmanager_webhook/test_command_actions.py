"""The generic command and Slurm's scontrol, with real programs and a fake scontrol."""

from __future__ import annotations

import errno
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

from alertmanager_webhook.actuators.base import ActuatorError
from alertmanager_webhook.actuators.command import Command, SlurmUpdate
from alertmanager_webhook.actuators.spawn import run_in_session
from alertmanager_webhook.policy_config import PolicyConfig
from alertmanager_webhook.program_groups import Ranker
from alertmanager_webhook.start_journal import Began, StartJournal

DUMP_ENV = (
    "import json, os, sys; open(sys.argv[1], 'w').write(json.dumps(dict(os.environ)))"
)


def _command(*argv: str, timeout: float = 10.0) -> PolicyConfig:
    return PolicyConfig(
        name="run",
        match={"a": "b"},
        action="command",
        argv=argv,
        timeout_seconds=timeout,
    )


def test_command_fills_labels_and_runs_without_a_shell_or_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIOPS_WEBHOOK_BEARER_TOKEN", "do-not-leak")
    policy = _command(sys.executable, "-c", DUMP_ENV, f"{tmp_path}/env-{{host}}.json")
    command = Command()

    plan = command.plan({"host": "gpu-07"}, policy, {})
    outcome = command.apply(plan.spec)

    written = tmp_path / "env-gpu-07.json"
    assert plan.spec["argv"][-1] == str(written)
    assert plan.text == "run " + shlex.join(
        [sys.executable, "-c", DUMP_ENV, str(written)]
    )
    assert outcome.text == f"{sys.executable} exited 0"
    env = json.loads(written.read_text())
    # UTF-8 without the rest of a locale, which every program would load.
    assert set(env) == {"PATH", "LC_CTYPE"} and env["LC_CTYPE"] == "C.UTF-8"
    assert "do-not-leak" not in written.read_text()


def test_doubled_braces_are_braces_and_single_ones_hold_a_label() -> None:
    policy = _command("/bin/echo", "{{job}}", "{{{host}}}", "x-{host}}}", "}}{{")

    plan = Command().plan({"host": "gpu-07"}, policy, {})

    assert plan.spec["argv"] == ["/bin/echo", "{job}", "{gpu-07}", "x-gpu-07}", "}{"]


@pytest.mark.parametrize(
    ("labels", "reason"),
    [
        ({}, "alert has no host label"),
        ({"host": ""}, "alert has no host label"),
        ({"host": "../etc"}, "label host='../etc' is not a plain name"),
        ({"host": "a/b"}, "label host='a/b' is not a plain name"),
        ({"host": "-rf"}, "label host='-rf' is not a plain name"),
        ({"host": "a b"}, "label host='a b' is not a plain name"),
        ({"host": "$(id)"}, "label host='$(id)' is not a plain name"),
        ({"host": "x;reboot"}, "label host='x;reboot' is not a plain name"),
        ({"host": "ok\n"}, "label host='ok\\n' is not a plain name"),
    ],
)
def test_command_refuses_unsafe_label_values(labels, reason: str) -> None:
    plan = Command().plan(labels, _command("/bin/echo", "{host}"), {})

    assert (plan.result, plan.text) == ("refused", f"refused: {reason}")
    assert plan.spec == {}


def test_failing_command_reports_its_exit_and_stderr() -> None:
    script = "import sys; sys.stderr.write('disk on fire'); sys.exit(3)"
    command = Command()
    plan = command.plan({}, _command(sys.executable, "-c", script), {})

    with pytest.raises(ActuatorError) as caught:
        command.apply(plan.spec)

    assert str(caught.value) == f"{sys.executable} exited 3: 'disk on fire'"


def test_a_command_killed_by_a_signal_says_which(tmp_path: Path) -> None:
    # It also writes whether it leads a session of its own, out of reach of
    # a Ctrl-C at the receiver's terminal and without that terminal.
    script = (
        "import os, signal, sys; "
        "open(sys.argv[1], 'w').write(str(os.getsid(0) == os.getpid())); "
        "os.kill(os.getpid(), signal.SIGTERM)"
    )
    leads = tmp_path / "leads"
    command = Command()
    plan = command.plan({}, _command(sys.executable, "-c", script, str(leads)), {})

    with pytest.raises(ActuatorError) as caught:
        command.apply(plan.spec)

    assert str(caught.value) == f"{sys.executable} killed by SIGTERM: ''"
    assert leads.read_text() == "True"


@pytest.mark.skipif(
    not os.path.exists("/proc/self/autogroup"), reason="no scheduling autogroups"
)
def test_a_commands_session_is_ranked_below_the_receiver(tmp_path: Path) -> None:
    # Its session's scheduling group is given niceness +19 just after the
    # spawn: the program waits for it, then writes what it sees.
    script = (
        "import sys, time; deadline = time.monotonic() + 5\n"
        "def group(): return open('/proc/self/autogroup').read()\n"
        "while 'nice 19' not in group() and time.monotonic() < deadline:\n"
        "    time.sleep(0.01)\n"
        "open(sys.argv[1], 'w').write(group())"
    )
    seen = tmp_path / "autogroup"
    command = Command()

    command.apply(
        command.plan({}, _command(sys.executable, "-c", script, str(seen)), {}).spec
    )

    assert seen.read_text().rstrip().endswith("nice 19")
    assert Path("/proc/self/autogroup").read_text() != seen.read_text()  # not ours


def test_a_program_the_kernel_would_not_rank_yet_is_ranked_once_it_allows() -> None:
    # Without CAP_SYS_ADMIN the kernel takes one autogroup change per 100 ms,
    # system-wide, and answers EAGAIN to the rest; a program that ended is
    # left alone, its pid maybe another's by then.
    refusals, ranked = [2], []

    def write(pid: int) -> None:
        if refusals[0]:
            refusals[0] -= 1
            raise OSError(errno.EAGAIN, "try again")
        ranked.append(pid)

    ranker = Ranker(write)
    running = subprocess.Popen(["sleep", "30"])
    ended = subprocess.Popen(["true"])
    ended.wait()
    try:
        ranker.add(running.pid)
        ranker.add(ended.pid)
        deadline = time.monotonic() + 5
        while not ranked and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.3)
    finally:
        running.kill()
        running.wait()

    assert ranked == [running.pid]
    assert refusals == [0]


def test_missing_program_and_timeout_fail() -> None:
    command = Command()
    missing = command.plan({}, _command("/nonexistent/aiops-prog"), {})
    slow = command.plan(
        {},
        _command(sys.executable, "-c", "import time; time.sleep(30)", timeout=0.2),
        {},
    )

    with pytest.raises(ActuatorError, match="program '/nonexistent/aiops-prog' not"):
        command.apply(missing.spec)
    with pytest.raises(ActuatorError, match="timed out after 0.2s"):
        command.apply(slow.spec)


def _ended(pid: int) -> bool:
    """Whether a process is gone or only a zombie left for its new parent."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


def _ends_soon(pid: int, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while not _ended(pid) and time.monotonic() < deadline:
        time.sleep(0.01)
    return _ended(pid)


def _left_behind(tmp_path: Path, seconds: float) -> tuple[PolicyConfig, Path]:
    """A command that starts a sleep in the background, its output elsewhere,
    and exits at once, writing the sleep's pid."""
    pid_file = tmp_path / "pid"
    script = f"sleep {seconds:g} >/dev/null 2>&1 & echo $! > {pid_file}"
    return _command("/bin/sh", "-c", script, timeout=0.5), pid_file


def test_what_a_command_leaves_running_is_ended_at_its_timeout(tmp_path: Path) -> None:
    # Unseen by the program's pipes and its end, the sleep would otherwise
    # act on after its action was recorded, beside the next one on its target.
    policy, pid_file = _left_behind(tmp_path, 30)
    command = Command()

    with pytest.raises(ActuatorError, match="timed out after 0.5s"):
        command.apply(command.plan({}, policy, {}).spec)

    assert _ends_soon(int(pid_file.read_text()))


def test_what_a_command_leaves_running_is_waited_for_until_it_ends(
    tmp_path: Path,
) -> None:
    policy, pid_file = _left_behind(tmp_path, 0.2)
    command = Command()

    outcome = command.apply(command.plan({}, policy, {}).spec)

    assert outcome.text.startswith("/bin/sh exited 0")
    assert _ended(int(pid_file.read_text()))


FAKE_SCONTROL = """#!{python}
import pathlib, sys
log = pathlib.Path(__file__).with_name("calls.log")
with log.open("a") as out:
    out.write(" ".join(sys.argv[1:]) + "\\n")
if sys.argv[1] == "show":
    print("JobId=1234 JobName=train UserId=alice(1000) Nice=0 "
          "TimeLimit=02:00:00 Partition=gpu")
if "Partition=nope" in sys.argv:
    sys.stderr.write("Invalid partition name specified")
    sys.exit(1)
"""


@pytest.fixture
def scontrol(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "scontrol"
    script.write_text(FAKE_SCONTROL.format(python=sys.executable))
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return bin_dir / "calls.log"


def _slurm(**params) -> PolicyConfig:
    return PolicyConfig(
        name="slurm", match={"a": "b"}, action="slurm_update", params=params
    )


def test_slurm_update_and_restore_through_scontrol(scontrol: Path) -> None:
    slurm = SlurmUpdate()
    policy = _slurm(Nice=100.0, TimeLimit="01:00:00")

    plan = slurm.plan({"slurm_job_id": "1234"}, policy, policy.params)
    outcome = slurm.apply(plan.spec)
    restored = slurm.restore(outcome.undo)

    assert plan.text == "run scontrol update JobId=1234 Nice=100 TimeLimit=01:00:00"
    assert outcome.undo["fields"] == {"Nice": "0", "TimeLimit": "02:00:00"}
    assert restored == "set Nice, TimeLimit of slurm job 1234 back"
    assert scontrol.read_text().splitlines() == [
        "show job -o 1234",
        "update JobId=1234 Nice=100 TimeLimit=01:00:00",
        "update JobId=1234 Nice=0 TimeLimit=02:00:00",
    ]


def test_slurm_refusal_is_recorded_with_scontrol_words(scontrol: Path) -> None:
    slurm = SlurmUpdate()
    policy = _slurm(Partition="nope")
    plan = slurm.plan({"slurm_job_id": "1234_7"}, policy, policy.params)

    with pytest.raises(ActuatorError) as caught:
        slurm.apply(plan.spec)

    assert str(caught.value) == "scontrol exited 1: 'Invalid partition name specified'"


@pytest.mark.parametrize("job", ["12a", "1234; scancel -u root", "-1", ""])
def test_slurm_refuses_a_job_id_that_is_not_one(job: str) -> None:
    policy = _slurm(Nice=10.0)

    plan = SlurmUpdate().plan({"slurm_job_id": job}, policy, policy.params)

    assert plan.result == "refused"


def test_a_commands_mark_is_made_before_the_program_runs(tmp_path: Path) -> None:
    journal = StartJournal(str(tmp_path / "webhook.db.started"))
    journal.open()
    effect = tmp_path / "effect"
    script = (
        "import os, sys; open(sys.argv[2], 'w').write(str(os.listdir(sys.argv[1])))"
    )
    policy = _command(sys.executable, "-c", script, journal.path, str(effect))
    command = Command()

    command.apply(command.plan({}, policy, {}).spec, journal.mark(41))

    assert effect.read_text() == "['41']"  # what the program saw at its start
    assert journal.begun() == {41}


@pytest.mark.parametrize("durable", [False, True])
def test_a_program_whose_mark_cannot_be_made_does_not_run(
    tmp_path: Path, durable: bool
) -> None:
    effect = tmp_path / "effect"
    policy = _command(sys.executable, "-c", "open(__import__('sys').argv[1], 'w')")
    policy = _command(*policy.argv, str(effect))
    command = Command()
    began = Began(str(tmp_path / "gone" / "7"), durable)

    with pytest.raises(ActuatorError, match="cannot mark that .* began: .*gone/7"):
        command.apply(command.plan({}, policy, {}).spec, began)

    assert not effect.exists()


def test_a_program_gets_no_descriptor_but_its_standard_three(tmp_path: Path) -> None:
    # The worker's process holds inheritable descriptors from its start; a
    # spawn would hand them on unless they are made to close at exec.
    handed = os.open(tmp_path / "secret", os.O_WRONLY | os.O_CREAT, 0o600)
    os.set_inheritable(handed, True)
    script = "import os; print(sorted(int(f) for f in os.listdir('/proc/self/fd')))"
    command = Command()
    try:
        plan = command.plan({}, _command(sys.executable, "-c", script), {})
        done = run_in_session(plan.spec["argv"], timeout=10, env={"PATH": os.defpath})
    finally:
        os.close(handed)

    # 3 is the listing's own descriptor, opened by the program itself.
    assert done.stdout.decode().strip() == "[0, 1, 2, 3]"
    assert done.returncode == 0


def test_a_program_that_closes_its_output_is_still_timed_out(tmp_path: Path) -> None:
    command = Command()
    script = "import os, time; os.close(1); os.close(2); time.sleep(30)"
    plan = command.plan({}, _command(sys.executable, "-c", script, timeout=0.5), {})
    started = time.monotonic()

    with pytest.raises(ActuatorError, match="timed out after 0.5s"):
        command.apply(plan.spec)

    assert time.monotonic() - started < 10


def test_a_timeout_ends_what_the_command_started_too(tmp_path: Path) -> None:
    # The program starts a child and waits; at the timeout both must end, or
    # the child would act after the action was recorded as failed.
    late = tmp_path / "late"
    child = tmp_path / "child.py"
    child.write_text(f"import time\ntime.sleep(1.5)\nopen({str(late)!r}, 'w')\n")
    parent = tmp_path / "parent.py"
    parent.write_text(
        "import subprocess, sys, time\n"
        f"subprocess.Popen([sys.executable, {str(child)!r}])\n"
        "time.sleep(30)\n"
    )
    command = Command()
    plan = command.plan({}, _command(sys.executable, str(parent), timeout=0.5), {})

    with pytest.raises(ActuatorError, match="timed out after 0.5s"):
        command.apply(plan.spec)

    time.sleep(2.0)
    assert not late.exists()


def test_a_program_whose_end_cannot_be_watched_is_killed_and_cleaned_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Without pidfd_open (Linux before 5.3, or a seccomp filter) the timeout
    # could not be kept: the program must not run on unwatched.
    effect = tmp_path / "effect"
    script = "import sys, time; time.sleep(1); open(sys.argv[1], 'w')"
    command = Command()
    plan = command.plan({}, _command(sys.executable, "-c", script, str(effect)), {})
    descriptors = len(os.listdir("/proc/self/fd"))

    def no_pidfd(pid: int) -> int:
        raise OSError(38, "Function not implemented")

    monkeypatch.setattr(os, "pidfd_open", no_pidfd)
    with pytest.raises(ActuatorError, match="cannot watch for its end .* killed"):
        command.apply(plan.spec)
    monkeypatch.undo()

    time.sleep(1.5)
    assert not effect.exists()
    assert len(os.listdir("/proc/self/fd")) == descriptors
    assert not _zombie_children()


def _zombie_children() -> list[str]:
    found = []
    for name in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{name}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue  # ended meanwhile
        if stat[0] == "Z" and int(stat[1]) == os.getpid():
            found.append(name)
    return found


def test_a_programs_mark_names_its_target_before_the_program_runs(
    tmp_path: Path,
) -> None:
    # A crash the moment the program starts must find which target it changes.
    journal = StartJournal.beside(str(tmp_path / "webhook.db"))
    began = journal.mark(7, "host a", "poke host a")
    done = run_in_session(
        ["cat", began.path], timeout=10, env={"PATH": os.defpath}, began=began
    )

    seen = json.loads(done.stdout)
    assert (seen["target"], seen["plan"]) == ("host a", "poke host a")
    assert journal.named(7) == ("host a", "poke host a")


def test_a_mark_that_cannot_be_made_leaves_no_descriptor_open(tmp_path: Path) -> None:
    began = Began(str(tmp_path / "no-journal" / "7"), target="host a")
    before = len(os.listdir("/proc/self/fd"))

    with pytest.raises(FileNotFoundError):
        run_in_session(["true"], timeout=10, env={"PATH": os.defpath}, began=began)

    assert len(os.listdir("/proc/self/fd")) == before
