"""Load and fault benchmark of the receiver on loopback; prints one RESULT line.

Runs the real receiver (waitress, SQLite, the worker) and a bare endpoint on
the same stack as child processes on 127.0.0.1; needs `mktemp` for the action
it counts. Every accepted notification names a `seq`; the policy's command
creates one file per run for it, so files count executions. Phases: latency
under load against both, `kill -9` in the middle of load, then fuzzed payloads.

Latency is measured in slices that alternate between the two endpoints, so
that a host whose speed drifts (a shared machine's often does by a third
within minutes) weighs on both alike; each receiver slice starts once the
worker has caught up, so that its work never falls in a bare slice. A
warm-up at the same rate precedes them, unmeasured: the first second of a
freshly started server (cold caches, first calls) is not its steady state.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import queue
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "bench-token"
CLIENT_THREADS = 16
HEALTH_TIMEOUT_SECONDS = 30.0
# Measured slices per endpoint, and the unmeasured warm-up before them.
SLICES = 6
WARMUP_SECONDS = 5.0
DRAIN_TIMEOUT_SECONDS = 300.0


@dataclass
class Load:
    """What one load phase saw: latencies of answered sends, and each seq's fate."""

    latencies: list[float] = field(default_factory=list)
    accepted: set[int] = field(default_factory=set)
    unanswered: list[int] = field(default_factory=list)
    codes: Counter[int] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)


def notification(seq: int, status: str = "firing") -> dict[str, Any]:
    """A one-alert notification shaped like Alertmanager 0.25's, unique per seq."""
    labels = {
        "alertname": "BenchAlert",
        "instance": "127.0.0.1:9835",
        "job": "aiops-exporter",
        "severity": "warning",
        "seq": str(seq),
    }
    return {
        "receiver": "aiops-webhook",
        "status": status,
        "alerts": [
            {
                "status": status,
                "labels": labels,
                "annotations": {
                    "summary": "A benchmark alert.",
                    "description": f"Benchmark alert number {seq} of this run.",
                    "runbook_url": "docs/runbook.md#benchalert",
                },
                "startsAt": "2024-05-14T09:31:12.457813601Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://127.0.0.1:9090/graph?g0.expr=up",
                "fingerprint": f"{seq:016x}",
            }
        ],
        "groupLabels": {"alertname": "BenchAlert"},
        "commonLabels": labels,
        "commonAnnotations": {"summary": "A benchmark alert."},
        "externalURL": "http://127.0.0.1:9093",
        "version": "4",
        "groupKey": f'{{}}:{{alertname="BenchAlert", seq="{seq}"}}',
        "truncatedAlerts": 0,
    }


class Client:
    """One keep-alive connection, as Alertmanager keeps one per receiver."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn: http.client.HTTPConnection | None = None

    def post(self, body: bytes, timeout: float = 10.0) -> int:
        headers = {
            "Authorization": f"Bearer {TOKEN}",
            "Content-Type": "application/json",
        }
        for attempt in (1, 2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(
                    "127.0.0.1", self.port, timeout=timeout
                )
            try:
                self.conn.request("POST", "/webhook", body, headers)
                response = self.conn.getresponse()
                response.read()
                return response.status
            except (OSError, http.client.HTTPException):
                self.conn.close()
                self.conn = None
                # A kept-alive connection the server closed: one fresh try.
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()


def run_load(
    port: Callable[[], int], rate: float, seconds: float, first_seq: int, load: Load
) -> int:
    """Send `rate` notifications per second for `seconds`; return the next seq.

    Open loop: each send has a scheduled time, and its latency is counted from
    then, so a stalled server shows in the figures rather than hiding in them.
    """
    jobs: queue.Queue[tuple[int, float] | None] = queue.Queue()

    def worker() -> None:
        client = Client(port())
        while (job := jobs.get()) is not None:
            seq, scheduled = job
            if client.port != port():
                client.close()
                client = Client(port())
            try:
                code = client.post(json.dumps(notification(seq)).encode())
            except (OSError, http.client.HTTPException):
                with load.lock:
                    load.unanswered.append(seq)
                continue
            done = time.perf_counter()
            with load.lock:
                load.codes[code] += 1
                if 200 <= code < 300:
                    load.accepted.add(seq)
                    load.latencies.append(done - scheduled)
                else:
                    load.unanswered.append(seq)
        client.close()

    threads = [threading.Thread(target=worker) for _ in range(CLIENT_THREADS)]
    for thread in threads:
        thread.start()
    total = int(rate * seconds)
    start = time.perf_counter()
    for i in range(total):
        scheduled = start + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        jobs.put((first_seq + i, scheduled))
    for _ in threads:
        jobs.put(None)
    for thread in threads:
        thread.join()
    return first_seq + total


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Server:
    """A child process serving on 127.0.0.1, started and killed by this bench."""

    def __init__(self, argv: list[str], port: int, log: Path) -> None:
        self.argv, self.port, self.log = argv, port, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIOPS_")}
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(self.argv, stderr=log, env=env, cwd=ROOT)
        deadline = time.monotonic() + HEALTH_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.argv[2]} exited at start; see {self.log}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1)
                conn.request("GET", "/-/healthy")
                if conn.getresponse().status == 200:
                    conn.close()
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"{self.argv[2]} never became healthy; see {self.log}")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.kill()


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def receiver_config(work: Path, marks: Path, port: int, sync: str = "normal") -> Path:
    token = work / "token"
    token.write_text(TOKEN)
    mktemp = shutil.which("mktemp")
    if mktemp is None:
        raise SystemExit("bench_receiver: needs mktemp on PATH")
    config = {
        "listen_address": f"127.0.0.1:{port}",
        "bearer_token_file": str(token),
        "database": str(work / "webhook.db"),
        "database_sync": sync,
        "mode": "apply",
        "log_level": "warn",
        # Bounded to a second so that the check stays cheap at 200 per second.
        "blast_radius_targets": 100000,
        "blast_radius_window_seconds": 1,
        "policies": [
            {
                "name": "mark",
                "match": {"alertname": "BenchAlert"},
                "action": "command",
                "argv": [mktemp, f"{marks}/{{seq}}.XXXXXX"],
                "cooldown_seconds": 0,
            }
        ],
    }
    path = work / "webhook.yml"
    path.write_text(json.dumps(config))
    return path


def wait_for_drain(database: Path) -> float:
    """Wait until the worker has no queued or running action; return seconds."""
    started = time.monotonic()
    while time.monotonic() - started < DRAIN_TIMEOUT_SECONDS:
        waiting = query(
            database,
            "SELECT count(*) FROM actions WHERE result IN ('queued', 'running')",
        )
        if waiting == 0:
            return time.monotonic() - started
        time.sleep(0.2)
    raise RuntimeError("the worker did not drain its queue")


def query(database: Path, sql: str, *params: Any) -> int:
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as conn:
        return conn.execute(sql, params).fetchone()[0]


def marks_by_seq(marks: Path) -> Counter[int]:
    counts: Counter[int] = Counter()
    for entry in os.scandir(marks):
        head = entry.name.split(".", 1)[0]
        if head.isdigit():
            counts[int(head)] += 1
    return counts


def crash_phase(
    receiver: Server, rate: float, seconds: float, first_seq: int, load: Load
) -> int:
    """Load for `seconds`, kill -9 the receiver halfway, restart it, resend."""
    killer = threading.Timer(seconds / 2, receiver.kill)
    killer.start()
    restarter = threading.Thread(target=lambda: (killer.join(), receiver.start()))
    restarter.start()
    next_seq = run_load(lambda: receiver.port, rate, seconds, first_seq, load)
    restarter.join()

    # Alertmanager resends what got no 2xx; so does this bench, until accepted.
    for _ in range(5):
        pending, load.unanswered = load.unanswered, []
        if not pending:
            break
        client = Client(receiver.port)
        for seq in pending:
            try:
                code = client.post(json.dumps(notification(seq)).encode())
            except (OSError, http.client.HTTPException):
                code = 0
            if 200 <= code < 300:
                load.accepted.add(seq)
            else:
                load.unanswered.append(seq)
        client.close()
    return next_seq


def fuzz_phase(port: int, examples: int) -> tuple[int, int]:
    """Post hypothesis-made bodies; return (5xx answers, sends)."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from alertmanager_webhook.templates import SAFE_VALUE

    # Lone surrogates included: JSON can carry them escaped.
    text = st.text(st.characters(exclude_categories=()), max_size=40)
    json_values = st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | text,
        lambda inner: (
            st.lists(inner, max_size=4)
            | st.dictionaries(st.text(max_size=8), inner, max_size=4)
        ),
        max_leaves=12,
    )
    hostile = st.one_of(
        st.sampled_from(
            ["../etc", "-rf", "a b", "$(id)", "x;reboot", "`id`", "..", "a/b"]
        ),
        text.filter(lambda v: not SAFE_VALUE.fullmatch(v)),
    )

    @st.composite
    def mutated(draw: st.DrawFn) -> bytes:
        body = notification(draw(st.integers(min_value=10**9, max_value=2 * 10**9)))
        alert = body["alerts"][0]
        # The label the command template uses, made unsafe: never acted on.
        alert["labels"]["seq"] = draw(hostile)
        # A quarter stay well formed, to reach the worker with the unsafe label.
        if draw(st.booleans()):
            key = draw(st.sampled_from(sorted(body)))
            body[key] = draw(json_values)
        if draw(st.booleans()):
            alert[draw(st.sampled_from(sorted(alert)))] = draw(json_values)
        # NaN and Infinity, which Python writes and strict JSON lacks, included.
        return json.dumps(body).encode()

    bodies = (
        mutated()
        | json_values.map(lambda v: json.dumps(v).encode())
        | st.binary(max_size=512)
    )
    client = Client(port)
    result = {"5xx": 0, "sends": 0}

    @settings(
        max_examples=examples,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(bodies)
    def send(body: bytes) -> None:
        code = client.post(body)
        result["sends"] += 1
        if code >= 500:
            result["5xx"] += 1

    send()
    client.close()
    return result["5xx"], result["sends"]


def serve_bare(port: int) -> None:
    """The baseline: the same Flask and waitress, a route that stores nothing."""
    import waitress
    from flask import Flask, Response, jsonify, request

    app = Flask("bare")

    @app.post("/webhook")
    def webhook() -> Response:
        request.get_data()
        return jsonify(status="accepted")

    @app.get("/-/healthy")
    def healthy() -> Response:
        return Response("Healthy.\n", mimetype="text/plain")

    waitress.serve(app, host="127.0.0.1", port=port, _quiet=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_receiver", description=__doc__)
    parser.add_argument(
        "--seconds", type=float, default=60.0, help="measured load per endpoint"
    )
    parser.add_argument("--rate", type=float, default=200.0, help="notifications/s")
    parser.add_argument("--crash-seconds", type=float, help="default: seconds / 3")
    parser.add_argument("--fuzz-examples", type=int, default=500)
    parser.add_argument(
        "--sync",
        choices=("normal", "full"),
        default="normal",
        help="the receiver's database_sync",
    )
    parser.add_argument("--serve-bare", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_bare:
        serve_bare(args.serve_bare)
        return 0

    work = Path(tempfile.mkdtemp(prefix="aiops-bench-"))
    marks = work / "marks"
    marks.mkdir()
    port, bare_port = free_port(), free_port()
    config = receiver_config(work, marks, port, args.sync)
    python = sys.executable
    receiver = Server(
        [python, "-m", "alertmanager_webhook", "--config.file", str(config)],
        port,
        work / "receiver.log",
    )
    bare = Server(
        [python, "-m", "benchmarks.bench_receiver", "--serve-bare", str(bare_port)],
        bare_port,
        work / "bare.log",
    )
    try:
        return run(args, work, marks, receiver, bare)
    finally:
        receiver.stop()
        bare.stop()
        shutil.rmtree(work, ignore_errors=True)


def run(args, work: Path, marks: Path, receiver: Server, bare: Server) -> int:
    seconds, rate = args.seconds, args.rate
    crash_seconds = args.crash_seconds or max(2.0, seconds / 3)
    database = work / "webhook.db"

    print(
        f"latency: {rate:g}/s for {seconds:g}s per endpoint in {SLICES} "
        f"alternating slices, after {WARMUP_SECONDS:g}s of warm-up; "
        f"sync {args.sync}",
        flush=True,
    )
    bare.start()
    receiver.start()
    base, load = Load(), Load()
    run_load(lambda: bare.port, rate, WARMUP_SECONDS, 0, Load())
    next_seq = run_load(lambda: receiver.port, rate, WARMUP_SECONDS, 1, load)
    load.latencies.clear()  # its notifications still count as accepted
    wait_for_drain(database)
    drain = 0.0
    for index in range(SLICES):
        # Each endpoint goes first in every other pair.
        order = ("bare", "receiver") if index % 2 == 0 else ("receiver", "bare")
        for name in order:
            if name == "bare":
                run_load(lambda: bare.port, rate, seconds / SLICES, 0, base)
            else:
                next_seq = run_load(
                    lambda: receiver.port, rate, seconds / SLICES, next_seq, load
                )
                drain = max(drain, wait_for_drain(database))
    bare.stop()

    print(f"kill -9 halfway through {crash_seconds:g}s of load", flush=True)
    crash = Load()
    crash_phase(receiver, rate, crash_seconds, next_seq, crash)
    crash_drain = wait_for_drain(database)

    files_before = len(os.listdir(marks))
    last_action = query(database, "SELECT coalesce(max(id), 0) FROM actions")
    print(f"fuzz: {args.fuzz_examples} examples", flush=True)
    fuzz_5xx, fuzz_sends = fuzz_phase(receiver.port, args.fuzz_examples)
    wait_for_drain(database)
    # Both what ran (files) and what the receiver says it applied.
    fuzz_files = len(os.listdir(marks)) - files_before
    fuzz_applied = query(
        database,
        "SELECT count(*) FROM actions WHERE result = 'applied' AND id > ?",
        last_action,
    )
    fuzz_refused = query(
        database,
        "SELECT count(*) FROM actions WHERE result = 'refused' AND id > ?",
        last_action,
    )
    interrupted = query(
        database, "SELECT count(*) FROM actions WHERE reason LIKE 'interrupted%'"
    )

    marked = marks_by_seq(marks)
    accepted = load.accepted | crash.accepted
    lost = sum(1 for seq in accepted if marked[seq] == 0)
    double = sum(1 for seq in accepted if marked[seq] > 1)
    p99_bare = percentile(base.latencies, 0.99)
    p99_receiver = percentile(load.latencies, 0.99)
    ms = 1000
    print(
        f"bare: {len(base.latencies)} answered, p50 "
        f"{percentile(base.latencies, 0.5) * ms:.2f} ms, p99 {p99_bare * ms:.2f} ms,"
        f" p99.9 {percentile(base.latencies, 0.999) * ms:.2f} ms"
    )
    print(
        f"receiver: {len(load.latencies)} measured, answers {dict(load.codes)}, p50 "
        f"{percentile(load.latencies, 0.5) * ms:.2f} ms, p99 "
        f"{p99_receiver * ms:.2f} ms, p99.9 "
        f"{percentile(load.latencies, 0.999) * ms:.2f} ms; "
        f"actions drained at most {drain:.1f}s after a slice"
    )
    print(
        f"crash: {len(crash.accepted)} accepted, {len(crash.unanswered)} never "
        f"answered, {interrupted} interrupted actions, drained in {crash_drain:.1f}s"
    )
    print(
        f"fuzz: {fuzz_sends} sends, {fuzz_5xx} answered 5xx, {fuzz_refused} "
        f"actions refused, {fuzz_applied} applied, {fuzz_files} commands run"
    )
    result = {
        "p99_ratio": round(p99_receiver / p99_bare, 3),
        "lost": lost,
        "double_actions": double,
        "fuzz_5xx": fuzz_5xx,
        "fuzz_actions": max(fuzz_files, fuzz_applied),
    }
    # Other work on the host shows in every figure; say how much there was.
    one, five, fifteen = os.getloadavg()
    print(f"host load average: {one:.2f} {five:.2f} {fifteen:.2f} (1, 5, 15 min)")
    print("RESULT " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
