"""Reads the receiver's secrets from their files; their values are never logged.

Error messages name the file and the line, never the content. The CA bundle
the Kubernetes actions trust is checked here too, at start with the token.
"""

from __future__ import annotations

import logging
import os
import re
import ssl
import stat
from pathlib import Path

from aiops_common.config import ConfigError, check
from alertmanager_webhook.config import WebhookConfig

log = logging.getLogger(__name__)

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")

# The files whose content grants access to the receiver. Not the Kubernetes
# token: the kubelet mounts it 0644 wherever a pod runs, beyond our say.
SECRET_FILES = ("bearer_token_file", "basic_auth_password_file", "approver_tokens_file")


def _read_secret(path: str, key: str) -> str:
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"{key}: cannot read {path!r}: {exc.strerror}") from exc

    # Secret files are usually written with a trailing newline.
    secret = text.strip()
    check(bool(secret), key, f"{path!r} is empty")
    return secret


def warn_of_open_secrets(config: WebhookConfig, uid: int | None = None) -> None:
    """Warn of each secret file that users other than the receiver's may read.

    A warning, not a refusal: a Kubernetes secret volume mounts its files 0644
    unless told otherwise. Bits for the group are needed where the receiver
    reads through them, as a pod does with its fsGroup; only where the
    receiver (`uid`, by default its own) owns the file do they serve nobody.
    """
    uid = os.geteuid() if uid is None else uid
    for key in SECRET_FILES:
        path = getattr(config, key)
        if not path:
            continue
        try:
            info = os.stat(path)
        except OSError:
            continue  # read a moment ago; gone since, the next read says so

        readers = []
        if info.st_mode & stat.S_IRGRP and info.st_uid == uid:
            readers.append("its group")
        if info.st_mode & stat.S_IROTH:
            readers.append("every user")
        if readers:
            log.warning(
                "secret file readable by %s key=%s path=%r mode=%04o; chmod 600 "
                "it, or for a Kubernetes secret volume (0644 unless set) set "
                "defaultMode: 0400, or 0440 with the pod's fsGroup",
                " and ".join(readers),
                key,
                path,
                stat.S_IMODE(info.st_mode),
            )


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
    password = read_basic_password(config)
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
        check(
            token != password,
            "approver_tokens_file",
            f"line {number}: {name!r} has the basic auth password, which "
            "Alertmanager delivers with",
        )
        approvers[name] = token
    return approvers


def read_k8s_token(config: WebhookConfig) -> str:
    """Return the Kubernetes actions' token, "" without a kubernetes section."""
    if config.kubernetes is None:
        return ""
    return _read_secret(config.kubernetes.token_file, "kubernetes.token_file")


def check_k8s_ca(config: WebhookConfig) -> None:
    """Raise ConfigError unless the API server's CA bundle can be loaded.

    Only an https API server needs one; a folder of hashed certificates, which
    requests also takes, is loaded only as certificates are looked up.
    """
    k8s = config.kubernetes
    if k8s is None or not k8s.api_url.startswith("https://"):
        return
    try:
        context = ssl.create_default_context()
        if os.path.isdir(k8s.ca_file):
            context.load_verify_locations(capath=k8s.ca_file)
        else:
            context.load_verify_locations(cafile=k8s.ca_file)
    except OSError as exc:  # ssl.SSLError too, for a file of no certificate
        raise ConfigError(
            f"kubernetes.ca_file: cannot load {k8s.ca_file!r} as CA certificates: "
            f"{exc.strerror or exc}"
        ) from exc
