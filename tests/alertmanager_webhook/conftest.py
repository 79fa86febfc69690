"""Shared fixtures: captured-shape payloads, a store, fake edges, a receiver."""

from __future__ import annotations

import copy
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from flask.testing import FlaskClient
from prometheus_client import CollectorRegistry

from aiops_common.config import from_mapping
from alertmanager_webhook.actuators.base import Actuator
from alertmanager_webhook.actuators.registry import Edges, build_actuators
from alertmanager_webhook.app import Auth, create_app
from alertmanager_webhook.cgroups import CgroupError, Cgroups
from alertmanager_webhook.config import WebhookConfig
from alertmanager_webhook.jobs import Jobs
from alertmanager_webhook.listings import recent_actions
from alertmanager_webhook.metrics import WebhookMetrics
from alertmanager_webhook.processes import ProcessFinder, ProcessInfo
from alertmanager_webhook.recommend import Recommender
from alertmanager_webhook.store import Store
from alertmanager_webhook.worker import Worker
from tests.ports import on_first_free_port

FIXTURES = Path(__file__).parent / "fixtures"
TOKEN = "s3cret-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
APPROVER_TOKEN = "approver-s3cret"

POLICIES = [
    {
        "name": "cap-testcap",
        "match": {"alertname": "AiopsProcessCpuHog", "command": "aiops-testcap"},
        "action": "cpu_cap",
        "params": {"cpu_cores": 0.5},
    },
    {
        "name": "watch-only",
        "match": {"alertname": "AiopsProcessCpuHog"},
        "action": "none",
    },
]

# What psutil would report for the processes the fixture's alerts name.
FAKE_PROCESSES = (
    ProcessInfo(4211, "aiops-testcap", "root", 1, ("aiops-testcap",), 1000.0),
    ProcessInfo(4212, "aiops-testcap", "root", 4211, ("aiops-testcap",), 1001.0),
    ProcessInfo(4213, "aiops-testcap", "nobody", 1, ("aiops-testcap",), 1002.0),
    ProcessInfo(1, "systemd", "root", 0, ("/sbin/init",), 10.0),
)


def load_payload(name: str) -> dict[str, Any]:
    """Return a fresh copy of a fixture payload, for tests that change it."""
    return copy.deepcopy(json.loads((FIXTURES / f"{name}.json").read_text()))


def make_config(**overrides: Any) -> WebhookConfig:
    raw: dict[str, Any] = {"bearer_token": TOKEN, "policies": POLICIES}
    raw.update(overrides)
    return from_mapping(WebhookConfig, raw)


def fake_v1_tree(root: Path) -> Path:
    """A cgroup v1 layout with the cpu and memory hierarchies, as files."""
    for controller, marker in (
        ("cpu", "cpu.cfs_quota_us"),
        ("memory", "memory.limit_in_bytes"),
    ):
        (root / controller).mkdir(parents=True)
        (root / controller / marker).write_text("-1\n")
        (root / controller / "cgroup.procs").write_text("")
    return root


def fake_proc(root: Path, cgroups: Mapping[int, str]) -> Path:
    """A /proc with a `cgroup` file per pid."""
    for pid, text in cgroups.items():
        (root / str(pid)).mkdir(parents=True)
        (root / str(pid) / "cgroup").write_text(text)
    return root


class FakeClock:
    """Wall-clock seconds that a test moves by hand."""

    def __init__(self, start: float = 1_715_679_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def datetime(self) -> datetime:
        return datetime.fromtimestamp(self.now, UTC)


@dataclass
class Receiver:
    """The app, its worker and their store, wired as main() wires them."""

    client: FlaskClient
    worker: Worker
    store: Store
    registry: CollectorRegistry
    clock: FakeClock

    def post(self, payload: Any, headers: dict[str, str] | None = None):
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        return self.client.post(
            "/webhook",
            data=body,
            headers=AUTH if headers is None else headers,
            content_type="application/json",
        )

    def actions(self) -> list[dict[str, Any]]:
        return list(reversed(recent_actions(self.store, 1000)))

    def sample(self, name: str, **labels: str) -> float | None:
        return self.registry.get_sample_value(name, labels)


@pytest.fixture
def firing() -> dict[str, Any]:
    return load_payload("alertmanager-0.25-firing")


@pytest.fixture
def resolved() -> dict[str, Any]:
    return load_payload("alertmanager-0.25-resolved")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(tmp_path: Path, clock: FakeClock) -> Iterator[Store]:
    opened = Store.open(str(tmp_path / "webhook.db"), clock=clock.datetime)
    yield opened
    opened.close()


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def edges(tmp_path: Path) -> Edges:
    return Edges(
        finder=ProcessFinder(lambda: iter(FAKE_PROCESSES), own_pids=()),
        cgroups=Cgroups(
            fake_v1_tree(tmp_path / "cgroup"),
            "aiops-webhook",
            fake_proc(tmp_path / "proc", {}),
        ),
    )


@pytest.fixture
def make_receiver(
    store: Store, registry: CollectorRegistry, edges: Edges, clock: FakeClock
) -> Callable[..., Receiver]:
    def build(
        config: WebhookConfig | None = None,
        actuators: Mapping[str, Actuator] | None = None,
        auth: Auth | None = None,
        recommender: Recommender | None = None,
        # One of its own for a second receiver on the same database.
        own_registry: CollectorRegistry | None = None,
    ) -> Receiver:
        config = config or make_config()
        metrics = WebhookMetrics(own_registry or registry)
        worker = Worker(
            config,
            Jobs(store),
            actuators or build_actuators(config, edges),
            metrics,
            recommender=recommender,
            clock=clock,
        )
        auth = auth or Auth(bearer=TOKEN, approvers={"ops": APPROVER_TOKEN})
        app = create_app(
            config, store, auth=auth, notify=worker.notify, metrics=metrics
        )
        return Receiver(
            app.test_client(), worker, store, own_registry or registry, clock
        )

    return build


@pytest.fixture
def receiver(make_receiver: Callable[..., Receiver]) -> Receiver:
    return make_receiver()


def _usable_cpu_hierarchy() -> bool:
    if os.geteuid() != 0:
        return False
    try:
        Cgroups().usable("cpu")
    except CgroupError:
        return False
    return True


@pytest.fixture
def real_cgroups(request: pytest.FixtureRequest) -> Iterator[Cgroups]:
    """The host's cgroupfs, with a managed root that only this test uses."""
    if not _usable_cpu_hierarchy():
        pytest.skip("needs root and a writable cgroup hierarchy with cpu")
    name = f"aiops-test-{os.getpid()}-{request.node.name[:40]}"
    name = "".join(c if c.isalnum() or c in "-_." else "-" for c in name)
    cgroups = Cgroups(managed=name)
    hierarchy = cgroups.find("cpu")
    assert hierarchy is not None
    try:
        yield cgroups
    finally:
        _remove_managed_root(hierarchy.mount, name)


def _remove_managed_root(mount: Path, name: str) -> None:
    # Only what this test made: its children first, each emptied into the
    # hierarchy's root, then the managed root itself.
    root = mount / name
    if not root.is_dir():
        return
    for group in [p for p in root.iterdir() if p.is_dir()] + [root]:
        for pid in (group / "cgroup.procs").read_text().split():
            try:
                (mount / "cgroup.procs").write_text(pid)
            except ProcessLookupError:
                pass
        group.rmdir()


def receiver_command(config: Path | str, address: str) -> list[str]:
    """The receiver's command line, as an operator would type it."""
    return [
        sys.executable,
        "-m",
        "alertmanager_webhook",
        "--config.file",
        str(config),
        "--web.listen-address",
        address,
    ]


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listened on a moment ago.

    Any free port, or one of AIOPS_TEST_PORTS (tests/ports.py).
    """
    with bound_socket() as sock:
        return sock.getsockname()[1]


def bound_socket() -> socket.socket:
    """A TCP socket bound on 127.0.0.1 to a port `free_port` would give."""

    def bind(port: int) -> socket.socket:
        sock = socket.socket()
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            sock.close()
            raise
        return sock

    return on_first_free_port(bind)


@pytest.fixture
def start_server(
    tmp_path: Path,
) -> Iterator[Callable[..., tuple[str, subprocess.Popen[bytes], Path]]]:
    """Start the real receiver (`python -m alertmanager_webhook`) on loopback."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(
        extra: str = "",
        scheme: str = "http",
        policies: str = "  - {name: watch, match: {alertname: AiopsProcessCpuHog},"
        " action: none}\n",
        token_mode: int = 0o600,
    ):
        token_file = tmp_path / "token"
        token_file.write_text(TOKEN + "\n")
        token_file.chmod(token_mode)
        config = tmp_path / "webhook.yml"
        config.write_text(
            f"bearer_token_file: {token_file}\n"
            f"database: {tmp_path / 'webhook.db'}\n"
            "max_body_bytes: 4096\n"
            "log_level: debug\n"
            "policies:\n" + policies + extra,
        )
        port = free_port()
        log_path = tmp_path / "stderr.log"
        env = {
            k: v for k, v in os.environ.items() if not k.startswith("AIOPS_WEBHOOK_")
        }
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                receiver_command(config, f"127.0.0.1:{port}"),
                stderr=log,
                env=env,
            )
        procs.append(proc)
        return f"{scheme}://127.0.0.1:{port}", proc, log_path

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


def wait_healthy(session: requests.Session, base: str, proc) -> None:
    """Wait until the receiver started by `start_server` answers /-/healthy."""
    deadline = time.monotonic() + 20
    while True:
        assert proc.poll() is None, "server exited at start"
        try:
            if session.get(f"{base}/-/healthy", timeout=1).status_code == 200:
                return
        except (requests.ConnectionError, requests.exceptions.SSLError):
            pass
        assert time.monotonic() < deadline, "server never became healthy"
        time.sleep(0.05)
