"""Just enough of the protobuf wire format to write and inspect a SentencePiece ModelProto,
so that pyllama does not need the protobuf package."""
from __future__ import annotations

import struct
from typing import Iterator

VARINT, FIXED64, BYTES, FIXED32 = 0, 1, 2, 5


def varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # negative int32/int64 are sent as 64-bit two's complement
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def varint_field(number: int, value: int) -> bytes:
    return varint(number << 3 | VARINT) + varint(value)


def bytes_field(number: int, data: bytes) -> bytes:
    return varint(number << 3 | BYTES) + varint(len(data)) + data


def float_field(number: int, value: float) -> bytes:
    return varint(number << 3 | FIXED32) + struct.pack("<f", value)


def fields(data: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """(field number, wire type, value) of each field of a message; ValueError if malformed."""
    pos, end = 0, len(data)

    def read_varint() -> int:
        nonlocal pos
        value = shift = 0
        while True:
            if pos >= end or shift > 63:
                raise ValueError("truncated or overlong varint")
            byte = data[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                return value

    while pos < end:
        key = read_varint()
        number, wire = key >> 3, key & 7
        if wire == VARINT:
            yield number, wire, read_varint()
            continue
        size = {FIXED64: 8, FIXED32: 4}.get(wire)
        if size is None:
            if wire != BYTES:
                raise ValueError(f"unsupported wire type {wire}")
            size = read_varint()
        if pos + size > end:
            raise ValueError("field runs past the end of the message")
        yield number, wire, data[pos:pos + size]
        pos += size
