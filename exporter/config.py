"""The exporter's settings, read once at start from YAML and AIOPS_EXPORTER_* vars."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from aiops_common.address import parse_listen_address
from aiops_common.config import ConfigError, check, load_config
from aiops_common.logs import LEVELS, LogLevel
from exporter.processes import GROUPINGS

ENV_PREFIX = "AIOPS_EXPORTER_"


@dataclass(frozen=True)
class ExporterConfig:
    """What to serve where, how often to collect and when data counts as stale.

    process_grouping: command (a user's processes of one command), container or
    unit (processes outside any container or unit still group by command).
    process_cmdline: export redacted command lines in _info series.
    gpu_processes_per_pid: one GPU-process series per PID instead of per group.
    expected_gpus: GPUs this host should have; None exports no expectation.
    kmsg_path: kernel log to read Xids from; empty to read none.
    kubelet_pod_resources_socket: the kubelet's PodResources socket, to name the
    pod and container of each GPU; empty to ask no kubelet.
    web_config_file: TLS and basic auth, in Prometheus' web config format.
    """

    listen_address: str = "127.0.0.1:9842"
    interval_seconds: float = 15.0
    top_groups: int = 10
    source_timeout_seconds: float = 5.0
    stale_after_seconds: float = 120.0
    log_level: LogLevel = "info"
    process_grouping: str = "command"
    process_cmdline: bool = False
    proc_root: str = "/proc"
    gpu_processes_per_pid: bool = False
    expected_gpus: int | None = None
    kmsg_path: str = "/dev/kmsg"
    nvml_xid_events: bool = True
    kubelet_pod_resources_socket: str = "/var/lib/kubelet/pod-resources/kubelet.sock"
    web_config_file: str = ""

    def __post_init__(self) -> None:
        try:
            parse_listen_address(self.listen_address)
        except ValueError as exc:
            raise ConfigError(f"listen_address: {exc}") from exc

        check(
            self.interval_seconds > 0,
            "interval_seconds",
            f"must be > 0, got {self.interval_seconds!r}",
        )
        check(
            self.top_groups >= 1, "top_groups", f"must be >= 1, got {self.top_groups!r}"
        )
        check(
            self.source_timeout_seconds > 0,
            "source_timeout_seconds",
            f"must be > 0, got {self.source_timeout_seconds!r}",
        )
        # A limit at or below the interval would drop every snapshot between two
        # collections, so /metrics would flap between data and nothing.
        check(
            self.stale_after_seconds > self.interval_seconds,
            "stale_after_seconds",
            f"must be greater than interval_seconds ({self.interval_seconds!r}), "
            f"got {self.stale_after_seconds!r}",
        )
        check(
            self.process_grouping in GROUPINGS,
            "process_grouping",
            f"must be one of {', '.join(GROUPINGS)}, got {self.process_grouping!r}",
        )
        check(
            self.expected_gpus is None or self.expected_gpus >= 0,
            "expected_gpus",
            f"must be >= 0 or null, got {self.expected_gpus!r}",
        )
        check(
            self.log_level in LEVELS,
            "log_level",
            f"must be one of {', '.join(LEVELS)}, got {self.log_level!r}",
        )


def read_config(
    path: str | Path | None, env: Mapping[str, str] | None = None
) -> ExporterConfig:
    """Load the config file (or the defaults) with environment overrides."""
    return load_config(ExporterConfig, path, env=env, env_prefix=ENV_PREFIX)
