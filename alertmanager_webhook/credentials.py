"""Reads the receiver's secrets from their files; their values are never logged.

Error messages name the file and the line, never the content.
"""

from __future__ import annotations

import re
from pathlib import Path

from aiops_common.config import ConfigError, check
from alertmanager_webhook.config import WebhookConfig

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def _read_secret(path: str, key: str) -> str:
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"{key}: cannot read {path!r}: {exc.strerror}") from exc

    # Secret files are usually written with a trailing newline.
    secret = text.strip()
    check(bool(secret), key, f"{path!r} is empty")
    return secret


def read_token(config: WebhookConfig) -> str:
    """Return the bearer token ("" when none is set), reading its file if needed."""
    if config.bearer_token or not config.bearer_token_file:
        return config.bearer_token
    return _read_secret(config.bearer_token_file, "bearer_token_file")


def read_basic_password(config: WebhookConfig) -> str:
    """Return the basic auth password, or "" when basic auth is off."""
    if not config.basic_auth_password_file:
        return ""
    return _read_secret(config.basic_auth_password_file, "basic_auth_password_file")


def read_approvers(config: WebhookConfig) -> dict[str, str]:
    """Return approver tokens by approver name, from lines of NAME:TOKEN."""
    if not config.approver_tokens_file:
        return {}

    approvers: dict[str, str] = {}
    bearer = read_token(config)
    text = _read_secret(config.approver_tokens_file, "approver_tokens_file")
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, sep, token = line.strip().partition(":")
        # As a presented token is read: "alice: tok" must match "tok".
        token = token.strip()
        # The message names the line, never its content: it holds a secret.
        check(
            bool(sep and name and token) and bool(_NAME.fullmatch(name)),
            "approver_tokens_file",
            f"line {number}: expected NAME:TOKEN",
        )
        # The last of two would win unseen, and the first's holder be refused.
        check(
            name not in approvers,
            "approver_tokens_file",
            f"line {number}: approver {name!r} is given twice",
        )
        # One token for two would credit one's approvals to the other.
        check(
            token not in approvers.values(),
            "approver_tokens_file",
            f"line {number}: {name!r} has the token of another approver",
        )
        # Whoever delivers alerts could then approve the actions they queue.
        check(
            token != bearer,
            "approver_tokens_file",
            f"line {number}: {name!r} has the bearer token, which Alertmanager "
            "delivers with",
        )
        approvers[name] = token
    return approvers
