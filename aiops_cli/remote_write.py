"""Pushes samples to Prometheus' remote-write receiver (protocol 1.0).

Needs a Prometheus started with --web.enable-remote-write-receiver. The
WriteRequest protobuf is small enough to encode here by hand, which spares a
protobuf toolchain; snappy comes from cramjam.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import cramjam
import requests


class RemoteWriteError(RuntimeError):
    """Prometheus refused or did not answer a remote-write request."""


@dataclass(frozen=True)
class TimeSeries:
    labels: Mapping[str, str]  # includes __name__
    samples: tuple[tuple[int, float], ...]  # (timestamp in ms, value)


def encode_write_request(series: Iterable[TimeSeries]) -> bytes:
    """Serialise a prometheus.WriteRequest message."""
    body = bytearray()
    for one in series:
        body += _field_bytes(1, _encode_series(one))
    return bytes(body)


def push(
    session: requests.Session, url: str, series: Iterable[TimeSeries], timeout=5.0
) -> None:
    """Send `series` in one request; raises RemoteWriteError on refusal."""
    payload = cramjam.snappy.compress_raw(encode_write_request(series))
    headers = {
        "Content-Encoding": "snappy",
        "Content-Type": "application/x-protobuf",
        "X-Prometheus-Remote-Write-Version": "0.1.0",
    }
    try:
        response = session.post(
            url, data=bytes(payload), headers=headers, timeout=timeout
        )
    except requests.RequestException as exc:
        raise RemoteWriteError(f"remote write to {url!r} failed: {exc}") from exc
    if response.status_code >= 300:
        raise RemoteWriteError(
            f"remote write to {url!r} answered {response.status_code}: "
            f"{response.text.strip()[:200]}"
        )


def _encode_series(series: TimeSeries) -> bytes:
    # Prometheus expects labels sorted by name within a series.
    out = bytearray()
    for name in sorted(series.labels):
        label = _field_bytes(1, name.encode()) + _field_bytes(
            2, series.labels[name].encode()
        )
        out += _field_bytes(1, label)
    for timestamp_ms, value in series.samples:
        sample = _key(1, 1) + struct.pack("<d", value)
        sample += _key(2, 0) + _varint(timestamp_ms & 0xFFFFFFFFFFFFFFFF)
        out += _field_bytes(2, sample)
    return bytes(out)


def _field_bytes(number: int, data: bytes) -> bytes:
    return _key(number, 2) + _varint(len(data)) + data


def _key(number: int, wire_type: int) -> bytes:
    return _varint(number << 3 | wire_type)


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)
