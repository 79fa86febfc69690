"""Parses listen addresses written as Prometheus' exporters write them."""

from __future__ import annotations


def parse_listen_address(value: str) -> tuple[str, int]:
    """Split 'HOST:PORT' (or '[::1]:PORT', or ':PORT' for all interfaces)."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"listen address must be HOST:PORT, got {value!r}")
    if not 0 <= int(port) <= 65535:
        raise ValueError(f"listen address port must be 0 to 65535, got {value!r}")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)
