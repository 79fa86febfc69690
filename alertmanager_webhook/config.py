"""The receiver's settings as frozen dataclasses; loaded by aiops_common.config.

A cgroup_root other than the default is checked against the mount table
(cgroup_root.py); a policy's own settings are in policy_config.py.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Literal

from aiops_common.address import parse_listen_address
from aiops_common.config import ConfigError, check
from aiops_common.logs import LEVELS, LogLevel
from alertmanager_webhook.cgroup_root import DEFAULT_CGROUP_ROOT, check_cgroup_root
from alertmanager_webhook.policy_config import PolicyConfig

ENV_PREFIX = "AIOPS_WEBHOOK_"

Mode = Literal["dry-run", "approve", "apply"]

# From most to least cautious; a policy's own mode can only be more cautious.
MODES: tuple[Mode, ...] = ("dry-run", "approve", "apply")

# Processes no action may touch, whatever an alert says; the receiver also
# protects itself, its ancestors, PID 1, kernel threads and the bundle's services.
PROTECTED_COMMANDS = (
    "systemd",
    "init",
    "sshd",
    "kthreadd",
    "containerd",
    "dockerd",
    "kubelet",
    "slurmd",
    "slurmctld",
    "nvidia-persistenced",
    "prometheus",
    "alertmanager",
    "prometheus-alertmanager",
)

_CGROUP_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


@dataclass(frozen=True)
class KubernetesConfig:
    """The API server the k8s actions talk to, with a service account's token."""

    api_url: str = "https://kubernetes.default.svc"
    token_file: str = "/var/run/secrets/kubernetes.io/serviceaccount/token"
    ca_file: str = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"
    # Kubernetes 1.33 resizes through pods/<name>/resize; before, with the
    # InPlacePodVerticalScaling gate, the pod itself is patched.
    resize_subresource: bool = True
    timeout_seconds: float = 10.0

    def __post_init__(self) -> None:
        check(
            self.api_url.startswith(("http://", "https://")),
            "api_url",
            f"expected an http(s) URL, got {self.api_url!r}",
        )
        check(self.timeout_seconds > 0, "timeout_seconds", "must be above 0")
        check(bool(self.token_file), "token_file", "must name the token's file")
        # Empty, requests would trust the system's CAs: a cluster's own CA is
        # not among them, and every action would fail at its first call.
        check(
            bool(self.ca_file) or not self.api_url.startswith("https://"),
            "ca_file",
            "must name the CA bundle that signed the API server's certificate "
            f"(in a pod, {KubernetesConfig.ca_file})",
        )


@dataclass(frozen=True)
class WebhookConfig:
    """Settings of `aiops-webhook`.

    Authentication is a bearer token, basic auth, or both; only a receiver
    that listens on loopback may run without, and only when told so.
    """

    listen_address: str = "127.0.0.1:9844"
    # Kept out of repr so that logging the config never prints the secret.
    bearer_token: str = field(default="", repr=False)
    bearer_token_file: str = ""
    basic_auth_username: str = ""
    basic_auth_password_file: str = ""
    # Lines of NAME:TOKEN; holders may approve actions through the API.
    approver_tokens_file: str = ""
    insecure_no_auth: bool = False
    tls_cert_file: str = ""
    tls_key_file: str = ""
    database: str = "aiops-webhook.db"
    # normal: a 2xx survives the receiver being killed (kill -9, OOM, a crash);
    # full: it survives a power cut too, at the cost of an fsync per commit.
    database_sync: Literal["normal", "full"] = "normal"
    mode: Mode = "dry-run"
    max_body_bytes: int = 1048576
    log_level: LogLevel = "info"
    # Threads applying actions; one target is still changed by one at a time.
    # Two keep up with 200 notifications/s of a command each (bench-receiver);
    # more add little but compete with answering Alertmanager for the GIL.
    workers: int = 2
    # Changes in force at once (applied and not yet restored).
    max_active_actions: int = 10
    # At most this many distinct targets changed per window.
    blast_radius_targets: int = 5
    blast_radius_window_seconds: float = 600.0
    cgroup_root: str = DEFAULT_CGROUP_ROOT
    cgroup_name: str = "aiops-webhook"
    protected_commands: tuple[str, ...] = PROTECTED_COMMANDS
    scontrol: str = "scontrol"
    kubernetes: KubernetesConfig | None = None
    # Where fault reports read the anomaly and its causes; empty leaves the
    # plot out of reports, which then say that Prometheus data is missing.
    report_prometheus_url: str = ""
    policies: tuple[PolicyConfig, ...] = ()

    def __post_init__(self) -> None:
        try:
            host, _ = parse_listen_address(self.listen_address)
        except ValueError as exc:
            raise ConfigError(f"listen_address: {exc}") from exc

        check(
            self.report_prometheus_url == ""
            or self.report_prometheus_url.startswith(("http://", "https://")),
            "report_prometheus_url",
            f"expected an http(s) URL, got {self.report_prometheus_url!r}",
        )
        check(
            not (self.bearer_token and self.bearer_token_file),
            "bearer_token",
            "set at most one of bearer_token and bearer_token_file",
        )
        check(
            bool(self.basic_auth_username) == bool(self.basic_auth_password_file),
            "basic_auth_username",
            "basic auth needs both basic_auth_username and basic_auth_password_file",
        )
        if not self.has_auth:
            check(
                self.insecure_no_auth,
                "bearer_token",
                "set bearer_token, bearer_token_file or basic auth, or "
                "insecure_no_auth on a loopback listen_address",
            )
            check(
                is_loopback(host),
                "insecure_no_auth",
                f"only allowed on a loopback listen_address, got {host!r}",
            )
        check(
            bool(self.tls_cert_file) == bool(self.tls_key_file),
            "tls_cert_file",
            "TLS needs both tls_cert_file and tls_key_file",
        )
        check(bool(self.database), "database", "must not be empty")
        check(self.max_body_bytes > 0, "max_body_bytes", "must be above 0")
        check(
            self.log_level in LEVELS,
            "log_level",
            f"must be one of {', '.join(LEVELS)}, got {self.log_level!r}",
        )
        check(
            1 <= self.workers <= 64, "workers", f"must be 1 to 64, got {self.workers}"
        )
        check(self.max_active_actions > 0, "max_active_actions", "must be above 0")
        check(self.blast_radius_targets > 0, "blast_radius_targets", "must be above 0")
        check(
            self.blast_radius_window_seconds > 0,
            "blast_radius_window_seconds",
            "must be above 0",
        )
        check(
            bool(_CGROUP_NAME.fullmatch(self.cgroup_name)),
            "cgroup_name",
            f"must be one plain directory name, got {self.cgroup_name!r}",
        )
        # Where the default holds no cgroups, CPU caps fall back to renice by
        # design; another path was chosen, and a wrong one must not do so quietly.
        if self.cgroup_root != DEFAULT_CGROUP_ROOT:
            check_cgroup_root(self.cgroup_root)

        names = [p.name for p in self.policies]
        for i, policy in enumerate(self.policies):
            check(
                policy.name not in names[:i],
                f"policies[{i}].name",
                f"duplicate policy name {policy.name!r}",
            )
            check(
                self.kubernetes is not None or not policy.action.startswith("k8s_"),
                f"policies[{i}].action",
                f"{policy.action} needs a kubernetes section",
            )

    @property
    def has_auth(self) -> bool:
        return bool(
            self.bearer_token or self.bearer_token_file or self.basic_auth_username
        )


def is_loopback(host: str) -> bool:
    """Tell whether `host` is an address only this machine can reach.

    Only literal loopback addresses (and `localhost`) count: a name such as
    `127.example.com` may resolve anywhere.
    """
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def policy_mode(config: WebhookConfig, policy: PolicyConfig) -> Mode:
    """The mode a policy runs in: its own, unless the receiver's is more cautious."""
    if not policy.mode:
        return config.mode
    return MODES[min(MODES.index(config.mode), MODES.index(policy.mode))]
