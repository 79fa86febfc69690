"""The receiver's settings as frozen dataclasses; loaded by aiops_common.config."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from aiops_common.address import parse_listen_address
from aiops_common.config import ConfigError, check
from aiops_common.logs import LEVELS

ENV_PREFIX = "AIOPS_WEBHOOK_"

ActionName = Literal["cpu_cap", "none"]


@dataclass(frozen=True)
class PolicyConfig:
    """Which alerts a remediation applies to, and with what parameters.

    `match` is label equality: every pair must be present on the alert. For
    `cpu_cap`, `params.cpu_cores` is the cap in CPU cores (0.5 is half a core).
    """

    name: str
    match: dict[str, str]
    action: ActionName
    params: dict[str, float | str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check(bool(self.name), "name", "must not be empty")
        check(bool(self.match), "match", "needs at least one label to match on")

        if self.action == "cpu_cap":
            cores = self.params.get("cpu_cores")
            check(
                isinstance(cores, float) and cores > 0,
                "params.cpu_cores",
                f"cpu_cap needs a number of cores above 0, got {cores!r}",
            )


@dataclass(frozen=True)
class WebhookConfig:
    """Settings of `aiops-webhook`; one of bearer_token and bearer_token_file."""

    listen_address: str = "127.0.0.1:9844"
    # Kept out of repr so that logging the config never prints the secret.
    bearer_token: str = field(default="", repr=False)
    bearer_token_file: str = ""
    database: str = "aiops-webhook.db"
    # Only dry-run exists: actions are planned and recorded, never carried out.
    mode: Literal["dry-run"] = "dry-run"
    max_body_bytes: int = 1048576
    log_level: str = "info"
    policies: tuple[PolicyConfig, ...] = ()

    def __post_init__(self) -> None:
        try:
            parse_listen_address(self.listen_address)
        except ValueError as exc:
            raise ConfigError(f"listen_address: {exc}") from exc

        check(
            bool(self.bearer_token) != bool(self.bearer_token_file),
            "bearer_token",
            "set exactly one of bearer_token and bearer_token_file",
        )
        check(bool(self.database), "database", "must not be empty")
        check(self.max_body_bytes > 0, "max_body_bytes", "must be above 0")
        check(
            self.log_level in LEVELS,
            "log_level",
            f"must be one of {', '.join(LEVELS)}, got {self.log_level!r}",
        )

        names = [p.name for p in self.policies]
        for i, name in enumerate(names):
            check(
                name not in names[:i],
                f"policies[{i}].name",
                f"duplicate policy name {name!r}",
            )


def read_token(config: WebhookConfig) -> str:
    """Return the bearer token, reading bearer_token_file when that is the source."""
    if config.bearer_token:
        return config.bearer_token

    try:
        text = Path(config.bearer_token_file).read_text()
    except OSError as exc:
        raise ConfigError(
            f"bearer_token_file: cannot read {config.bearer_token_file!r}: "
            f"{exc.strerror}"
        ) from exc

    # Secret files are usually written with a trailing newline.
    token = text.strip()
    check(bool(token), "bearer_token_file", f"{config.bearer_token_file!r} is empty")
    return token
