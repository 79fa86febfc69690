"""Reads the web config file Prometheus' own exporters take (--web.config.file):
TLS (tls_server_config) and basic auth with bcrypt hashes (basic_auth_users).

Needs the bcrypt package for basic auth and the standard library's ssl for TLS.
Paths in the file are relative to the file, as in Prometheus' exporter-toolkit.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import ssl
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bcrypt
import yaml

from aiops_common.config import ConfigError, parse_yaml

_TLS_KEYS = {
    "cert_file",
    "key_file",
    "client_auth_type",
    "client_ca_file",
    "min_version",
    "max_version",
}
# The client_auth_type values Python's ssl can honour as Go's crypto/tls does;
# RequestClientCert and RequireAnyClientCert accept unverified certificates,
# which ssl cannot, so they are refused rather than quietly made stricter.
_CLIENT_AUTH = {
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
# Compared against when the user is unknown, so that a wrong user takes as long
# to refuse as a wrong password and user names cannot be probed by timing.
_DUMMY_HASH = b"$2b$10$ja7qQ0ZVM6gaN9dz0esnGOPOFcSkjQOg2eO4DpGHXJT3wKSCWsPWW"
_BCRYPT = re.compile(r"^\$2[abxy]?\$\d{2}\$[./A-Za-z0-9]{53}$")
_CACHE_SIZE = 256


@dataclass(frozen=True)
class TlsConfig:
    cert_file: Path
    key_file: Path
    client_auth_type: str = "NoClientCert"
    client_ca_file: Path | None = None
    min_version: str = "TLS12"
    max_version: str | None = None


@dataclass(frozen=True)
class WebConfig:
    """TLS when `tls` is set, basic auth when `users` is not empty."""

    tls: TlsConfig | None = None
    users: Mapping[str, bytes] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)


def read_web_config(path: str | Path) -> WebConfig:
    """Parse and check the file; raises ConfigError naming the bad key."""
    path = Path(path)
    try:
        raw = parse_yaml(path.read_text(), str(path)) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"web config {str(path)!r}: {exc}") from exc
    _only(raw, {"tls_server_config", "basic_auth_users", "http_server_config"}, path)

    users = raw.get("basic_auth_users") or {}
    _mapping(users, f"{path}: basic_auth_users")
    for user, hashed in users.items():
        if not isinstance(hashed, str) or not _BCRYPT.match(hashed):
            raise ConfigError(
                f"{path}: basic_auth_users.{user}: expected a bcrypt hash, got "
                f"{str(hashed)[:4]!r}..."
            )

    http = raw.get("http_server_config") or {}
    _mapping(http, f"{path}: http_server_config")
    _only(http, {"headers", "http2"}, path, "http_server_config.")

    headers = http.get("headers") or {}
    # Keys YAML keeps apart that are one once read as text (1 and "1"), or
    # header names that differ in case only: the last would win unseen.
    _distinct([str(u) for u in users], f"{path}: basic_auth_users")
    _distinct([str(k).lower() for k in headers], f"{path}: http_server_config.headers")

    return WebConfig(
        tls=_tls(raw.get("tls_server_config"), path),
        users={str(u): h.encode() for u, h in users.items()},
        headers={str(k): str(v) for k, v in headers.items()},
    )


def _distinct(names: list[str], where: str) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ConfigError(f"{where}: {name!r} is given twice")
        seen.add(name)


def ssl_context(tls: TlsConfig) -> ssl.SSLContext:
    """A server context from `tls`; raises ConfigError when files do not load."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = _VERSIONS[tls.min_version]
    if tls.max_version:
        context.maximum_version = _VERSIONS[tls.max_version]
    try:
        context.load_cert_chain(tls.cert_file, tls.key_file)
        if tls.client_ca_file is not None:
            context.load_verify_locations(tls.client_ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"tls_server_config: cannot load: {exc}") from exc
    context.verify_mode = _CLIENT_AUTH[tls.client_auth_type]
    return context


class BasicAuth:
    """Checks Authorization headers against bcrypt hashes.

    bcrypt is slow on purpose (tens of milliseconds); a scrape every few seconds
    with the same credentials is checked once and then found in a small cache.
    """

    def __init__(self, users: Mapping[str, bytes]) -> None:
        self._users = dict(users)
        self._verified: dict[bytes, None] = {}
        self._lock = threading.Lock()

    def allows(self, header: str | None) -> bool:
        credentials = _decode(header)
        if credentials is None:
            return False
        user, password = credentials

        hashed = self._users.get(user)
        key = hashlib.sha256(b"\0".join([user.encode(), password, hashed or b""]))
        digest = key.digest()
        with self._lock:
            if hashed is not None and digest in self._verified:
                return True

        ok = bcrypt.checkpw(password, hashed or _DUMMY_HASH) and hashed is not None
        if ok:
            with self._lock:
                if len(self._verified) >= _CACHE_SIZE:
                    self._verified.pop(next(iter(self._verified)))
                self._verified[digest] = None
        return ok


def _decode(header: str | None) -> tuple[str, bytes] | None:
    if not header or not header[:6].lower() == "basic ":
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    user, sep, password = decoded.partition(b":")
    if not sep:
        return None
    return user.decode(errors="replace"), password


def _tls(raw: Any, path: Path) -> TlsConfig | None:
    if not raw:
        return None
    _mapping(raw, f"{path}: tls_server_config")
    _only(raw, _TLS_KEYS, path, "tls_server_config.")
    for key in ("cert_file", "key_file"):
        if not raw.get(key):
            raise ConfigError(f"{path}: tls_server_config.{key} is required")
    auth = raw.get("client_auth_type", "NoClientCert")
    if auth not in _CLIENT_AUTH:
        raise ConfigError(
            f"{path}: tls_server_config.client_auth_type: expected one of "
            f"{', '.join(_CLIENT_AUTH)}, got {auth!r}"
        )
    for key in ("min_version", "max_version"):
        if key in raw and raw[key] not in _VERSIONS:
            raise ConfigError(
                f"{path}: tls_server_config.{key}: expected one of "
                f"{', '.join(_VERSIONS)}, got {raw[key]!r}"
            )
    if auth != "NoClientCert" and not raw.get("client_ca_file"):
        raise ConfigError(
            f"{path}: tls_server_config.client_ca_file is required with {auth}"
        )

    base = path.parent
    return TlsConfig(
        cert_file=base / raw["cert_file"],
        key_file=base / raw["key_file"],
        client_auth_type=auth,
        client_ca_file=base / raw["client_ca_file"]
        if raw.get("client_ca_file")
        else None,
        min_version=raw.get("min_version", "TLS12"),
        max_version=raw.get("max_version"),
    )


def _mapping(value: Any, where: str) -> None:
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")


def _only(raw: Any, known: set[str], path: Path, prefix: str = "") -> None:
    _mapping(raw, str(path))
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(
            f"{path}: unknown or unsupported key {prefix}{unknown[0]}; known keys: "
            f"{', '.join(sorted(known))}"
        )
