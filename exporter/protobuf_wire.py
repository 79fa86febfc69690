"""Reads protocol buffers messages field by field, without generated code or the
protobuf package: enough for the few small messages the exporter receives.

The wire format is the one protobuf.dev documents under "Encoding": each field
is a varint key (field number << 3 | wire type) followed by its value.
"""

from __future__ import annotations

from collections.abc import Iterator

VARINT, I64, LEN, I32 = 0, 1, 2, 5
_FIXED_SIZES = {I64: 8, I32: 4}
# A varint holds at most 64 bits, seven to a byte.
_MAX_VARINT_BYTES = 10


class WireError(ValueError):
    """The bytes are not a well-formed protocol buffers message."""


def fields(data: bytes) -> Iterator[tuple[int, int | bytes]]:
    """(field number, value) for each field in order: an int for varints and
    fixed-size fields, bytes for length-delimited ones (strings, messages)."""
    position = 0
    while position < len(data):
        key, position = _varint(data, position)
        number, wire_type = key >> 3, key & 7
        if number == 0:
            raise WireError(f"field number 0 at byte {position}")

        value: int | bytes
        if wire_type == VARINT:
            value, position = _varint(data, position)
        elif wire_type == LEN:
            length, position = _varint(data, position)
            value, position = _take(data, position, length, number)
        elif wire_type in _FIXED_SIZES:
            raw, position = _take(data, position, _FIXED_SIZES[wire_type], number)
            value = int.from_bytes(raw, "little")
        else:
            # 3 and 4 are the deprecated groups, which proto3 never writes.
            raise WireError(f"field {number} has unsupported wire type {wire_type}")
        yield number, value


def text(value: int | bytes, what: str) -> str:
    """A string field's value; WireError when it is not length-delimited UTF-8."""
    if not isinstance(value, bytes):
        raise WireError(f"{what}: expected a string, got a number {value!r}")
    try:
        return value.decode()
    except UnicodeDecodeError as exc:
        raise WireError(f"{what}: not UTF-8: {value[:40]!r}") from exc


def embedded(value: int | bytes, what: str) -> bytes:
    """An embedded message field's bytes; WireError when it is a number."""
    if not isinstance(value, bytes):
        raise WireError(f"{what}: expected a message, got a number {value!r}")
    return value


def _varint(data: bytes, position: int) -> tuple[int, int]:
    result = 0
    for count in range(_MAX_VARINT_BYTES):
        if position + count >= len(data):
            raise WireError(f"varint cut off at byte {position + count}")
        byte = data[position + count]
        result |= (byte & 0x7F) << (7 * count)
        if not byte & 0x80:
            return result, position + count + 1
    raise WireError(f"varint longer than {_MAX_VARINT_BYTES} bytes at byte {position}")


def _take(data: bytes, position: int, length: int, number: int) -> tuple[bytes, int]:
    end = position + length
    if end > len(data):
        raise WireError(
            f"field {number} needs {length} bytes at byte {position}, "
            f"only {len(data) - position} remain"
        )
    return data[position:end], end
