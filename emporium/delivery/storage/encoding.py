"""One-dimensional float8 and timestamptz arrays in PostgreSQL's binary format.

A batch travels to PostgreSQL as six arrays, packed here without a Python
step per point, and sent as binary parameters of a server-binding cursor
(``emporium.core.db.connection.server_cursor``). :func:`packed_arrays_register`
tells that cursor how to send them.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

from psycopg.adapt import Dumper
from psycopg.pq import Format

_FLOAT8_OID, _FLOAT8_ARRAY_OID = 701, 1022
_TIMESTAMPTZ_OID, _TIMESTAMPTZ_ARRAY_OID = 1184, 1185
_LENGTH_8 = struct.pack(">i", 8)


class PackedFloat8Array(bytes):
    """A float8[] already in PostgreSQL's binary format."""


class PackedTimestamptzArray(bytes):
    """A timestamptz[] already in PostgreSQL's binary format."""


class _PackedDumper(Dumper):
    format = Format.BINARY

    def dump(self, obj: Any) -> bytes:
        return bytes(obj)


class _Float8ArrayDumper(_PackedDumper):
    oid = _FLOAT8_ARRAY_OID


class _TimestamptzArrayDumper(_PackedDumper):
    oid = _TIMESTAMPTZ_ARRAY_OID


def packed_arrays_register(cursor: Any) -> None:
    """Sends this module's arrays as what they are on ``cursor`` (its own adapters only)."""
    cursor.adapters.register_dumper(PackedFloat8Array, _Float8ArrayDumper)
    cursor.adapters.register_dumper(PackedTimestamptzArray, _TimestamptzArrayDumper)


def _array_binary(values: Sequence[Any], element_oid: int, code: str) -> bytes:
    """Packs 8-byte values (``code`` "d" or "q"; None is NULL) as a binary array.

    The format is a header (dimensions, a has-NULL flag, the element type, then
    the length and lower bound of the one dimension) and, per element, its byte
    length (-1 for NULL) and its bytes. Without NULLs the values are packed in
    one call and the length words woven in with strided slices, so no Python
    code runs per element.
    """
    count = len(values)
    has_null = None in values
    header = struct.pack(">iiiii", 1, 1 if has_null else 0, element_oid, count, 1)
    if not has_null:
        packed = struct.pack(f">{count}{code}", *values)
        body = bytearray(12 * count)
        for offset in range(4):
            body[offset::12] = _LENGTH_8[offset : offset + 1] * count
        for offset in range(8):
            body[4 + offset :: 12] = packed[offset::8]
        return header + bytes(body)
    layout = "".join("i" if value is None else "i" + code for value in values)
    words: list[Any] = []
    for value in values:
        if value is None:
            words.append(-1)
        else:
            words.extend((8, value))
    return header + struct.pack(">" + layout, *words)


def float8_array(values: Sequence[float | None]) -> PackedFloat8Array:
    return PackedFloat8Array(_array_binary(values, _FLOAT8_OID, "d"))


def timestamptz_array(micros: Sequence[int]) -> PackedTimestamptzArray:
    """Microseconds since PostgreSQL's epoch (2000-01-01 UTC), as timestamptz[]."""
    return PackedTimestamptzArray(_array_binary(micros, _TIMESTAMPTZ_OID, "q"))
