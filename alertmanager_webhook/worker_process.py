"""The action worker in a process of its own, at a lower CPU priority.

Threads of one Python process take turns at one interpreter lock: a worker
with a backlog made notifications wait for the lock, not for the disk. In its
own process at a higher niceness, the kernel runs the request threads first.
The worker only reads the database; the server writes its moves, so that a
worker the scheduler put aside never holds the write lock a request waits for.
Needs Linux: the worker dies with the server through the parent-death signal.
"""

from __future__ import annotations

import ctypes
import fcntl
import logging
import multiprocessing
import os
import select
import signal
import threading
import time
from multiprocessing.connection import Connection
from typing import Any

from aiops_common.logs import setup_logging
from alertmanager_webhook.actuators.registry import Edges, build_actuators
from alertmanager_webhook.cgroups import Cgroups
from alertmanager_webhook.config import WebhookConfig
from alertmanager_webhook.forwarded_metrics import ForwardedMetrics, apply_updates
from alertmanager_webhook.jobs import Jobs
from alertmanager_webhook.metrics import WebhookMetrics
from alertmanager_webhook.processes import ProcessFinder, own_lineage
from alertmanager_webhook.siblings import beside
from alertmanager_webhook.store import Store
from alertmanager_webhook.store_errors import StoreError
from alertmanager_webhook.worker import Worker
from alertmanager_webhook.worker_moves import MoveClient, serve_moves

log = logging.getLogger(__name__)

# On two otherwise idle cores bench-receiver's p99 is 1.2-1.6x the bare
# endpoint's (target 2x); on a host busy with other work it has measured
# 1.7-2.5x, as the receiver needs more CPU per notification and so loses more
# to the other work. Under load, per notification, the server's event loop
# takes 0.31 ms of CPU (bare 0.23), its request threads 1.33 ms (bare 0.44:
# the intake with its action's row and audit record, and handing the GIL
# around among more threads) and the thread writing the worker's moves 0.50
# ms (an action's end: its commit and audit record). Next to cut, should a
# busy host matter: the audit record of each state change (a JSON of the
# whole row and a hash) and the moves' pipe round trip.

# Processes are started fresh rather than forked from a server with threads.
CONTEXT = multiprocessing.get_context("spawn")
# Added to the server's niceness: when the CPUs are busy the scheduler gives
# the worker a sixtieth of a request thread's share (bench-receiver's p99
# was a sixth lower than at +10). Commands that policies run inherit it.
NICENESS = 19
# Then, once started, the worker's threads run SCHED_IDLE: a server thread
# that wakes takes a CPU from them at once, where at +19 alone they kept it
# to the end of their slice (bench-receiver's p99 11% and 19% lower in two
# interleaved runs). On a host whose CPUs are all busy their share falls
# from some 1.5% of a CPU to 0.3%: an action that needs 5 ms of CPU waits
# about 2 s there. Commands that policies run inherit it.
IDLE_POLICY = os.SCHED_IDLE
# How long a new worker waits for the lock an exiting one still holds.
LOCK_WAIT_SECONDS = 5.0
STARTUP_TIMEOUT_SECONDS = 60.0
RESTART_DELAY_SECONDS = 1.0
# The least a stopping worker is given to finish what it runs; more where a
# policy lets its command run longer, by a margin for recording its result.
STOP_SECONDS = 30.0
STOP_MARGIN_SECONDS = 1.0
# Metric updates travel to the server in batches, at most this often.
FLUSH_SECONDS = 0.25
WAKE_READ_BYTES = 65536
PR_SET_PDEATHSIG = 1


class WorkerStartError(Exception):
    """The worker's process could not start; says why."""


class WorkerProcess:
    """Starts the worker's process, wakes it, writes its moves, relays metrics.

    A worker that dies is started again; `stop()` lets running actions end.
    """

    def __init__(
        self,
        config: WebhookConfig,
        jobs: Jobs,
        metrics: WebhookMetrics,
        k8s_token: str = "",
    ) -> None:
        self._config = config
        self._jobs = jobs
        self._metrics = metrics
        self._k8s_token = k8s_token
        # Woken by a byte on a pipe: a request thread's write never waits,
        # where an Event's set() waits for the (lower priority) sleeper.
        self._wake, self._waker = CONTEXT.Pipe(duplex=False)
        os.set_blocking(self._waker.fileno(), False)
        # Set by the worker once it has read its wake-ups: one byte per look
        # at the queue rather than per notification, each write being a
        # wake-up the kernel does while a request waits.
        self._wake_wanted = CONTEXT.RawValue("b", 1)
        # Closed by stop(): the worker sees its end of the pipe reach its end.
        self._stop_pipe: Connection | None = None
        self._stopping = False
        # Held while a worker is started and while stop() begins, so that no
        # worker is started after stop() has told the last one to stop.
        self._lifecycle = threading.Lock()
        self._process: Any = None
        self._events: Connection | None = None
        self._relay: threading.Thread | None = None

    def start(self) -> None:
        """Start the worker and wait until it has settled what a crash left."""
        self._spawn()
        self._relay = threading.Thread(
            target=self._relay_loop, name="worker-relay", daemon=True
        )
        self._relay.start()

    def notify(self) -> None:
        """Tell the worker that something was queued, approved or let go."""
        if not self._wake_wanted.value:
            return  # it looks at the queue again before it sleeps
        self._wake_wanted.value = 0
        try:
            os.write(self._waker.fileno(), b"w")
        except BlockingIOError:
            pass  # the pipe is full of wake-ups the worker has yet to read

    def stop(self, timeout: float | None = None) -> None:
        """Let the running actions finish, then end the worker's process."""
        if timeout is None:
            longest = max((p.timeout_seconds for p in self._config.policies), default=0)
            timeout = max(STOP_SECONDS, longest + STOP_MARGIN_SECONDS)
        with self._lifecycle:
            self._stopping = True
            if self._stop_pipe is not None:
                self._stop_pipe.close()
            process = self._process

        if process is not None:
            process.join(timeout)
            if process.is_alive():
                log.warning("worker did not stop in %gs; killing it", timeout)
                process.kill()
                process.join()
        if self._relay is not None:
            self._relay.join(timeout)

    def _spawn(self) -> None:
        events, events_end = CONTEXT.Pipe(duplex=False)
        moves, moves_end = CONTEXT.Pipe(duplex=True)
        stop_end, stop_pipe = CONTEXT.Pipe(duplex=False)
        process = CONTEXT.Process(
            target=run_worker,
            name="aiops-webhook-worker",
            args=(
                self._config,
                self._k8s_token,
                os.getpid(),
                self._wake,
                self._wake_wanted,
                stop_end,
                events_end,
                moves_end,
            ),
        )
        process.start()
        # The worker holds the only other ends: they close when it is gone.
        events_end.close()
        moves_end.close()
        stop_end.close()
        self._process, self._events, self._stop_pipe = process, events, stop_pipe

        # Moves are served before the worker is ready: settling what a crash
        # left running moves actions.
        threading.Thread(
            target=serve_moves,
            args=(moves, self._jobs),
            name="worker-moves",
            daemon=True,
        ).start()
        if not events.poll(STARTUP_TIMEOUT_SECONDS):
            process.kill()
            raise WorkerStartError(f"no word in {STARTUP_TIMEOUT_SECONDS:g}s")
        try:
            kind, body = events.recv()
        except EOFError:
            process.join()
            raise WorkerStartError(
                f"exited at start with code {process.exitcode}"
            ) from None
        if kind != "ready":
            process.join()
            raise WorkerStartError(body)
        log.info("worker started pid=%d niceness=+%d", process.pid, NICENESS)

    def _relay_loop(self) -> None:
        while True:
            assert self._events is not None
            try:
                updates = self._events.recv()
            except (EOFError, OSError):
                if self._stopping:
                    return
                self._restart()
                continue
            apply_updates(self._metrics, updates)

    def _restart(self) -> None:
        """Start a new worker after the last one died; try until one starts."""
        self._process.join()
        self._metrics.worker_errors.labels("process").inc()
        log.error(
            "worker process exited code=%s; starting a new one in %gs",
            self._process.exitcode,
            RESTART_DELAY_SECONDS,
        )
        while True:
            self._publish_depth()
            time.sleep(RESTART_DELAY_SECONDS)
            with self._lifecycle:
                if self._stopping:
                    return
                try:
                    self._spawn()
                    return
                except WorkerStartError as exc:
                    self._metrics.worker_errors.labels("process").inc()
                    log.error("worker did not start again err=%s", exc)

    def _publish_depth(self) -> None:
        # The worker publishes the queue's depth; without one, what waits for
        # it would otherwise go unseen.
        try:
            depth = self._jobs.depth()
        except StoreError as exc:
            log.warning("cannot count waiting actions err=%s", exc)
            return
        for state, count in depth.items():
            self._metrics.queue_depth.labels(state).set(count)


def run_worker(
    config: WebhookConfig,
    k8s_token: str,
    server_pid: int,
    wake: Connection,
    wake_wanted: Any,
    stop: Connection,
    events: Connection,
    moves: Connection,
) -> None:
    """The worker process's main: take actions until the server says stop."""
    _die_with(server_pid)
    # Ctrl-C and SIGTERM reach the whole process group; the server decides
    # when the worker stops, after it has stopped taking notifications. A
    # handler, not SIG_IGN: commands it runs must not inherit deaf ears.
    signal.signal(signal.SIGINT, _not_now)
    signal.signal(signal.SIGTERM, _not_now)
    setup_logging(config.log_level)
    os.nice(NICENESS)

    try:
        lock = take_worker_lock(config.database)
        store = Store.open_existing(config.database)
    except (WorkerStartError, StoreError) as exc:
        events.send(("error", str(exc)))
        return

    metrics = ForwardedMetrics()
    edges = Edges(
        finder=ProcessFinder(
            protected_commands=config.protected_commands,
            own_pids=own_lineage(server_pid),
        ),
        cgroups=Cgroups(
            config.cgroup_root,
            config.cgroup_name,
            records_dir=beside(config.database, ".cgroups"),
        ),
        k8s_token=k8s_token,
    )
    jobs = Jobs(store, remote_move=MoveClient(moves))
    worker = Worker(config, jobs, build_actuators(config, edges), metrics)
    _yield_to_the_server()
    try:
        worker.start()
    except StoreError as exc:
        events.send(("error", f"cannot settle interrupted actions: {exc}"))
        return
    events.send(("ready", None))

    flushed = 0.0
    while True:
        readable, _, _ = select.select([wake, stop], [], [], FLUSH_SECONDS)
        if stop in readable:
            break
        if readable:
            # Read and say so before the worker looks: a notification stored
            # after that look finds the flag set and writes again.
            os.read(wake.fileno(), WAKE_READ_BYTES)
            wake_wanted.value = 1
            worker.notify()
        if time.monotonic() - flushed >= FLUSH_SECONDS:
            _flush(metrics, events)
            flushed = time.monotonic()

    worker.stop()
    _flush(metrics, events)
    store.close()
    os.close(lock)


def _not_now(_signum: int, _frame: Any) -> None:
    pass


def _yield_to_the_server() -> None:
    """Run this thread, and the threads it starts, SCHED_IDLE where allowed."""
    try:
        os.sched_setscheduler(0, IDLE_POLICY, os.sched_param(0))
    except OSError as exc:  # a sandbox that forbids it: +19 alone holds
        log.warning("worker stays at niceness +%d, not idle err=%s", NICENESS, exc)


def _flush(metrics: ForwardedMetrics, events: Connection) -> None:
    updates = metrics.take()
    if updates:
        events.send(updates)


def worker_lock_path(database: str) -> str:
    return beside(database, ".worker-lock")


def take_worker_lock(database: str) -> int:
    """Hold `<database>.worker-lock`, so that one worker acts on a database.

    The server holds the database file itself (database_file.hold_database); this
    lock keeps a worker from starting while one of a dead server still ends.
    """
    path = worker_lock_path(database)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise WorkerStartError(f"cannot open {path!r}: {exc.strerror}") from exc

    deadline = time.monotonic() + LOCK_WAIT_SECONDS
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() >= deadline:
                os.close(fd)
                raise WorkerStartError(
                    f"another receiver's worker holds {path!r}; each receiver "
                    "needs a database of its own"
                ) from None
            time.sleep(0.05)


def _die_with(server_pid: int) -> None:
    """Ask Linux to kill this process when the server's process dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    # The server may have died before the request took effect.
    if os.getppid() != server_pid:
        os._exit(1)
