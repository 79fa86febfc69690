"""Starts the bundle on 127.0.0.1: Prometheus, Alertmanager and our services.

Needs Debian's `prometheus` and `prometheus-alertmanager` binaries. The configs
come from `deploy/`; only ports, intervals and file paths are rewritten, so the
stack that runs is the one that is deployed. Used by `aiops demo` and by the
integration tests.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import yaml

log = logging.getLogger(__name__)

DEPLOY_DIR = Path(__file__).resolve().parent.parent / "deploy"
# How long each component may take to stop on SIGTERM before it is killed;
# the receiver lets a running action finish first.
STOP_SECONDS = 10.0


class StackError(RuntimeError):
    """A component of the stack could not be started."""


def find_binary(*names: str) -> str:
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    raise StackError(
        f"none of {', '.join(names)} is on PATH; install Debian's prometheus and "
        "prometheus-alertmanager packages (make deps does)"
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Timing:
    """Intervals of the demo and the tests: much shorter than production's."""

    scrape_seconds: float = 1.0
    exporter_seconds: float = 1.0
    detector_seconds: float = 1.0
    query_delay_seconds: float = 3.0
    detector_history_seconds: float = 900.0
    group_wait: str = "1s"
    group_interval: str = "2s"


@dataclass
class Stack(AbstractContextManager):
    """The processes of one running bundle; stop() ends every one of them."""

    run_dir: Path
    timing: Timing = field(default_factory=Timing)
    detector_queries: list[dict[str, Any]] = field(default_factory=list)
    # Keys of the global `model` section to replace, e.g. {"kind": "robust"}.
    detector_model: dict[str, Any] = field(default_factory=dict)
    # Whole `model` sections of single queries, deployed ones or the caller's,
    # by query name: e.g. {"host_cpu": {"kind": "robust"}} for a fresh host.
    detector_query_models: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Whole detector sections to replace, e.g. {"optimizer": {...}}: a caller
    # that needs other diagnosis or optimizer settings than the deployed ones.
    detector_settings: dict[str, Any] = field(default_factory=dict)
    with_exporter: bool = True
    # More targets per scrape job, e.g. {"aiops-exporter": ["127.0.0.1:9100"]}:
    # exporters a caller runs itself, such as one over a fake NVML.
    extra_targets: dict[str, list[str]] = field(default_factory=dict)
    # Receiver policies tried before the deployed ones (the first match wins).
    webhook_policies: list[dict[str, Any]] = field(default_factory=list)
    # The receiver's mode for `webhook_policies`; the deployed policies keep
    # dry-run whatever this says, so only the caller's own targets are touched.
    webhook_mode: str = ""
    # Other receiver settings to override, e.g. {"cgroup_name": "aiops-demo"}.
    webhook_settings: dict[str, Any] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)
    token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def start(self, tsdb_dir: Path | None = None) -> None:
        """Start everything; `tsdb_dir` may hold backfilled blocks already."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        names = ["prometheus", "alertmanager", "detector", "webhook"]
        if self.with_exporter:
            names.append("exporter")
        for name in names:
            self.ports[name] = free_port()
        tsdb_dir = tsdb_dir or self.run_dir / "prometheus-data"
        # One token file, read by Alertmanager to send and the receiver to check.
        token_file = self.run_dir / "webhook-token"
        token_file.write_text(self.token)
        token_file.chmod(0o600)

        try:
            self._start_webhook()
            self._start_alertmanager()
            if self.with_exporter:
                self._start_service("exporter", "exporter", self._exporter_config())
            self._start_prometheus(tsdb_dir)
            self._start_service("detector", "detector", self._detector_config())
            for name in self.processes:
                self._wait_ready(name)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        # The last started first, each gone before the next is told: stopped
        # all at once, the detector's last queries met a Prometheus shutting
        # down and logged two failed diagnosis stages in every run.
        for name, process in reversed(list(self.processes.items())):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=STOP_SECONDS)
            except subprocess.TimeoutExpired:
                log.warning("component=%s did not stop on SIGTERM; killing it", name)
                process.kill()
                process.wait()
        self.processes.clear()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def log_path(self, name: str) -> Path:
        return self.run_dir / f"{name}.log"

    def _launch(self, name: str, argv: list[str]) -> None:
        log.debug("starting %s: %s", name, argv)
        handle = self.log_path(name).open("w")
        self.processes[name] = subprocess.Popen(
            argv,
            stdout=handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=self.run_dir,
            # A new session keeps Ctrl-C in the terminal from reaching the
            # children before stop() has ended them in order.
            start_new_session=True,
        )
        handle.close()

    def _wait_ready(self, name: str, timeout: float = 60.0) -> None:
        path = "/-/ready" if name in ("prometheus", "alertmanager") else "/-/healthy"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            process = self.processes[name]
            if process.poll() is not None:
                tail = self.log_path(name).read_text()[-1500:]
                raise StackError(f"{name} exited with {process.returncode}:\n{tail}")
            try:
                if requests.get(self.url(name) + path, timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise StackError(f"{name} not ready on {self.url(name)} after {timeout:.0f}s")

    def _write_yaml(self, name: str, data: dict[str, Any]) -> Path:
        path = self.run_dir / name
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    def _start_prometheus(self, tsdb_dir: Path) -> None:
        config = yaml.safe_load((DEPLOY_DIR / "prometheus.yml").read_text())
        interval = f"{self.timing.scrape_seconds:g}s"
        config["global"] = {
            "scrape_interval": interval,
            "evaluation_interval": interval,
        }
        rules_dir = self.run_dir / "rules"
        shutil.copytree(DEPLOY_DIR / "rules", rules_dir, dirs_exist_ok=True)
        config["rule_files"] = [str(rules_dir / "*.yml")]
        config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] = [
            f"127.0.0.1:{self.ports['alertmanager']}"
        ]
        jobs = []
        for job in config["scrape_configs"]:
            component = job["job_name"].removeprefix("aiops-")
            targets = []
            if component in self.ports:
                targets.append(f"127.0.0.1:{self.ports[component]}")
            targets += self.extra_targets.get(job["job_name"], [])
            if targets:
                job["static_configs"][0]["targets"] = targets
                jobs.append(job)
        config["scrape_configs"] = jobs
        path = self._write_yaml("prometheus.yml", config)

        self._launch(
            "prometheus",
            [
                find_binary("prometheus"),
                f"--config.file={path}",
                f"--storage.tsdb.path={tsdb_dir}",
                f"--web.listen-address=127.0.0.1:{self.ports['prometheus']}",
                "--web.enable-remote-write-receiver",
                "--log.level=warn",
            ],
        )

    def _start_alertmanager(self) -> None:
        config = yaml.safe_load((DEPLOY_DIR / "alertmanager.yml").read_text())
        token_file = self.run_dir / "webhook-token"
        config["route"]["group_wait"] = self.timing.group_wait
        config["route"]["group_interval"] = self.timing.group_interval
        webhook = config["receivers"][0]["webhook_configs"][0]
        webhook["url"] = self.url("webhook") + "/webhook"
        webhook["http_config"]["authorization"]["credentials_file"] = str(token_file)
        path = self._write_yaml("alertmanager.yml", config)

        self._launch(
            "alertmanager",
            [
                find_binary("prometheus-alertmanager", "alertmanager"),
                f"--config.file={path}",
                f"--storage.path={self.run_dir / 'alertmanager-data'}",
                f"--web.listen-address=127.0.0.1:{self.ports['alertmanager']}",
                # An empty address turns clustering off, so nothing listens
                # beyond loopback.
                "--cluster.listen-address=",
                "--log.level=warn",
            ],
        )

    def _start_webhook(self) -> None:
        config = yaml.safe_load((DEPLOY_DIR / "webhook.yml").read_text())
        config["bearer_token_file"] = str(self.run_dir / "webhook-token")
        config["database"] = str(self.run_dir / "webhook.db")
        config["report_prometheus_url"] = self.url("prometheus")
        deployed = config.get("policies", [])
        if self.webhook_mode:
            config["mode"] = self.webhook_mode
            for policy in deployed:
                policy.setdefault("mode", "dry-run")
        config["policies"] = self.webhook_policies + deployed
        config.update(self.webhook_settings)
        self._start_service("webhook", "alertmanager_webhook", config)

    def _exporter_config(self) -> dict[str, Any]:
        config = yaml.safe_load((DEPLOY_DIR / "exporter.yml").read_text())
        config["interval_seconds"] = self.timing.exporter_seconds
        return config

    def _detector_config(self) -> dict[str, Any]:
        config = yaml.safe_load((DEPLOY_DIR / "detector.yml").read_text())
        config["prometheus_url"] = self.url("prometheus")
        config["interval_seconds"] = self.timing.detector_seconds
        config["query_delay_seconds"] = self.timing.query_delay_seconds
        config["history_seconds"] = self.timing.detector_history_seconds
        queries = [q for q in config["queries"] if self.with_exporter]
        for query in queries:
            query["step_seconds"] = self.timing.scrape_seconds
        # Copies: a query's model section goes in below, not into the caller's.
        config["queries"] = queries + [dict(q) for q in self.detector_queries]
        by_name = {q["name"]: q for q in config["queries"]}
        unknown = sorted(set(self.detector_query_models) - set(by_name))
        if unknown:
            raise StackError(f"detector_query_models names no query: {unknown!r}")
        for name, model in self.detector_query_models.items():
            by_name[name]["model"] = dict(model)
        config.setdefault("model", {}).update(self.detector_model)
        config.update(self.detector_settings)
        return config

    def _start_service(self, name: str, module: str, config: dict[str, Any]) -> None:
        path = self._write_yaml(f"{name}.yml", config)
        self._launch(
            name,
            [
                sys.executable,
                "-m",
                module,
                f"--config.file={path}",
                f"--web.listen-address=127.0.0.1:{self.ports[name]}",
            ],
        )


def environment_ok() -> bool:
    """Whether this process may start the stack (binaries on PATH)."""
    try:
        find_binary("prometheus")
        find_binary("prometheus-alertmanager", "alertmanager")
    except StackError:
        return False
    return os.access(DEPLOY_DIR, os.R_OK)
