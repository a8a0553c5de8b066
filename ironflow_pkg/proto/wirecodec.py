"""Binary protobuf codec (connect.md §7) between wire bytes and the in-memory "plain dict" form.

Sans-I/O: :func:`decode` takes bytes, :func:`encode` returns bytes. It walks the same descriptors
as :mod:`.jsoncodec` and produces/consumes the **same in-memory form** (see that module's
docstring), so ``decode(schema, T, data)`` and ``jsoncodec.from_json(schema, T, obj)`` of the same
message give equal dicts: snake_case keys, only set fields present, implicit-presence fields equal
to their default absent, enums as ``int``, bytes as ``bytes``, Timestamp as canonical RFC 3339
string, Duration as float seconds, Struct/Value/ListValue as JSON values, FieldMask as a list of
paths, wrappers as bare scalars.

Wire rules (connect.md §7 and the protobuf encoding spec):

* varints of at most 10 bytes whose value fits 64 bits; redundant zero-padded forms of up to 10
  bytes are accepted (as protobuf parsers do), 11+ bytes or bits beyond 64 are rejected;
* ``int32``/``enum`` negatives are written as 10-byte two's complement; on decode a 64-bit varint
  is truncated to 32 bits for 32-bit types (protobuf's cast semantics), so every result is in
  range; ``sint*`` use zig-zag; ``fixed*``/``sfixed*``/``float``/``double`` are little-endian;
* repeated numeric/bool/enum fields are written packed and read packed or unpacked;
* maps are repeated ``{1: key, 2: value}`` entries; a missing key or value is the default (an
  absent ``Value`` is ``None``); later duplicate keys win;
* oneofs: the last member on the wire wins; a singular ordinary message field that occurs twice is
  merged (protobuf semantics); Struct merges by key, ListValue/FieldMask concatenate, other
  well-known types take the last occurrence;
* implicit-presence scalars are not written when default (a float ``-0.0`` is not default: its
  bits are not zero, as in protobuf, and it survives like in the JSON codec); explicit-presence
  fields (``optional``, oneof members, message-typed) are written whenever set;
* unknown fields are skipped for wire types 0, 1, 2 and 5; groups (3, 4), wire types 6/7, field
  number 0 or > 2^29-1, and a known field number with the wrong wire type are errors;
* strings must be valid UTF-8 (Python's strict decoder: no surrogates, no overlongs).

Well-known types travel as their real messages (Timestamp/Duration ``{1: seconds, 2: nanos}``,
Struct ``{1: map<string, Value>}``, Value oneof 1-6, ListValue ``{1: repeated Value}``, FieldMask
``{1: repeated string}``, wrappers ``{1: value}``, Empty). ``Value.number_value`` is a double: on
decode a whole number within +-2^53 becomes a Python ``int`` (``-0.0`` stays a float) so that a
payload decodes to the same dict as the JSON codec gives for the same JSON text (``{"n": 2}``);
``int`` values above 2^53 are encoded as the nearest double (connect.md §10: precision is lost);
non-finite numbers are rejected both ways (the JSON codec cannot carry them either).

Nesting limit: counted as the JSON codec counts it, so both codecs accept the same documents:
each ordinary message is one level, each Struct/ListValue is one level, a Value wrapper is free.
``max_depth`` (default :data:`MAX_DEPTH`) bounds decoding; encoding uses :data:`MAX_DEPTH`.

Plans (per-field decode handlers keyed by tag and per-field encoders) are compiled once per
message type and kept in ``schema.codec_cache["wire"]``.
"""

from __future__ import annotations

import math
import struct
import threading
from collections.abc import Mapping
from datetime import datetime
from functools import lru_cache
from typing import Any, Callable

from . import wkt
from .descriptors import Schema
from .jsonvalues import MAX_DEPTH, WKT_DEFAULTS, Fail, key_seg
from .wkt import (  # the well-known type names both codecs use
    STRUCT as _STRUCT,
    VALUE as _VALUE,
    LIST_VALUE as _LIST_VALUE,
    TIMESTAMP as _TIMESTAMP,
    DURATION as _DURATION,
    FIELD_MASK as _FIELD_MASK,
    EMPTY as _EMPTY,
    WRAPPERS as _WRAPPERS,
)

__all__ = ["MAX_DEPTH", "WireDecodeError", "WireEncodeError", "decode", "encode"]

_MASK32 = 0xFFFF_FFFF
_MASK64 = (1 << 64) - 1
#: Largest field number the protobuf language allows (2^29 - 1).
_MAX_FIELD_NUMBER = (1 << 29) - 1
#: Whole doubles in Value/Struct within this magnitude decode to int (exactly representable).
_MAX_SAFE_INT = 1 << 53

_WIRE_TYPES = {
    "int32": 0, "int64": 0, "uint32": 0, "uint64": 0, "sint32": 0, "sint64": 0, "bool": 0,
    "enum": 0, "fixed64": 1, "sfixed64": 1, "double": 1, "string": 2, "bytes": 2, "message": 2,
    "fixed32": 5, "sfixed32": 5, "float": 5,
}
_MISSING = object()


class WireDecodeError(ValueError):
    """Client bytes that do not decode; ``path`` names the field (``""`` = the message)."""

    code = "invalid_argument"

    def __init__(self, reason: str, path: str = "") -> None:
        self.reason = reason
        self.path = path
        super().__init__(f"{path}: {reason}" if path else reason)


class WireEncodeError(ValueError):
    """A handler produced a value that does not fit the schema (a server bug: ``internal``)."""

    code = "internal"

    def __init__(self, reason: str, path: str = "") -> None:
        self.reason = reason
        self.path = path
        super().__init__(f"{path}: {reason}" if path else reason)


# --- reading primitives: (data, pos, end) -> (value, new pos) --------------------------------------


def _varint_slow(data: bytes, pos: int, end: int) -> tuple[int, int]:
    start = pos
    result = 0
    shift = 0
    while True:
        if pos >= end:
            raise Fail(f"truncated varint at byte {start}")
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            if shift == 63 and b > 1:
                raise Fail(f"varint at byte {start} overflows 64 bits")
            return result, pos
        shift += 7
        if shift > 63:
            raise Fail(f"varint at byte {start} is longer than 10 bytes")


def _varint(data: bytes, pos: int, end: int) -> tuple[int, int]:
    if pos < end:
        b = data[pos]
        if b < 0x80:
            return b, pos + 1
    return _varint_slow(data, pos, end)


def _r_int32(data: bytes, pos: int, end: int) -> tuple[int, int]:
    v, pos = _varint(data, pos, end)
    if v < 0x8000_0000:
        return v, pos
    v &= _MASK32
    return (v - (1 << 32) if v & 0x8000_0000 else v), pos


def _r_int64(data: bytes, pos: int, end: int) -> tuple[int, int]:
    v, pos = _varint(data, pos, end)
    return (v - (1 << 64) if v >> 63 else v), pos


def _r_uint32(data: bytes, pos: int, end: int) -> tuple[int, int]:
    v, pos = _varint(data, pos, end)
    return v & _MASK32, pos


def _r_sint32(data: bytes, pos: int, end: int) -> tuple[int, int]:
    v, pos = _varint(data, pos, end)
    v &= _MASK32
    return (v >> 1) ^ -(v & 1), pos


def _r_sint64(data: bytes, pos: int, end: int) -> tuple[int, int]:
    v, pos = _varint(data, pos, end)
    return (v >> 1) ^ -(v & 1), pos


def _r_bool(data: bytes, pos: int, end: int) -> tuple[bool, int]:
    v, pos = _varint(data, pos, end)
    return v != 0, pos


def _fixed_reader(fmt: str, type_name: str) -> Callable[[bytes, int, int], tuple[Any, int]]:
    unpack = struct.Struct(fmt).unpack_from
    size = struct.calcsize(fmt)

    def read(data: bytes, pos: int, end: int) -> tuple[Any, int]:
        e = pos + size
        if e > end:
            raise Fail(f"truncated {type_name} at byte {pos}")
        return unpack(data, pos)[0], e

    return read


def _truncated(what: str, pos: int, n: int, end: int) -> Fail:
    return Fail(f"truncated {what} at byte {pos}: length {n} exceeds the {end - pos} bytes left")


def _length(data: bytes, pos: int, end: int, what: str) -> tuple[int, int]:
    """Length prefix -> (start, end) of the payload, checked against ``end``."""
    if pos < end and data[pos] < 0x80:
        n = data[pos]
        pos += 1
    else:
        n, pos = _varint_slow(data, pos, end)
    e = pos + n
    if e > end:
        raise _truncated(what, pos, n, end)
    return pos, e


def _bad_utf8(pos: int, exc: UnicodeDecodeError) -> Fail:
    return Fail(f"invalid UTF-8 in string at byte {pos + exc.start}")


def _r_string(data: bytes, pos: int, end: int) -> tuple[str, int]:
    if pos < end and data[pos] < 0x80:
        n = data[pos]
        pos += 1
    else:
        n, pos = _varint_slow(data, pos, end)
    e = pos + n
    if e > end:
        raise _truncated("string", pos, n, end)
    try:
        return data[pos:e].decode("utf-8"), e
    except UnicodeDecodeError as exc:
        raise _bad_utf8(pos, exc) from None


def _r_bytes(data: bytes, pos: int, end: int) -> tuple[bytes, int]:
    pos, e = _length(data, pos, end, "bytes")
    return data[pos:e], e


_READERS: dict[str, Callable[[bytes, int, int], tuple[Any, int]]] = {
    "int32": _r_int32, "enum": _r_int32, "int64": _r_int64, "uint32": _r_uint32,
    "uint64": _varint, "sint32": _r_sint32, "sint64": _r_sint64, "bool": _r_bool,
    "fixed32": _fixed_reader("<I", "fixed32"), "sfixed32": _fixed_reader("<i", "sfixed32"),
    "float": _fixed_reader("<f", "float"), "fixed64": _fixed_reader("<Q", "fixed64"),
    "sfixed64": _fixed_reader("<q", "sfixed64"), "double": _fixed_reader("<d", "double"),
    "string": _r_string, "bytes": _r_bytes,
}
#: Fixed-width element types: struct format letter and size (packed fast path).
_FIXED = {"fixed32": ("I", 4), "sfixed32": ("i", 4), "float": ("f", 4),
          "fixed64": ("Q", 8), "sfixed64": ("q", 8), "double": ("d", 8)}
#: Varint types whose 1-byte values are the byte itself (packed fast path via bytes.isascii()).
_PLAIN_VARINTS = frozenset({"int32", "int64", "uint32", "uint64", "enum"})


def _skip(data: bytes, pos: int, end: int, tag: int, names: Mapping[int, str]) -> int:
    """Skip an unknown field whose tag was just read; reject bad tags and known fields that
    arrive with the wrong wire type."""
    num = tag >> 3
    wt = tag & 7
    if num == 0:
        raise Fail("invalid tag: field number 0")
    if num > _MAX_FIELD_NUMBER:
        raise Fail(f"field number {num} out of range")
    seg = names.get(num)
    if seg is not None:
        exc = Fail(f"wrong wire type {wt} for field {num}")
        exc.segs.append(seg)
        raise exc
    if wt == 0:
        return _varint(data, pos, end)[1]
    if wt == 2:
        return _length(data, pos, end, f"field {num}")[1]
    if wt == 1 or wt == 5:
        e = pos + (8 if wt == 1 else 4)
        if e > end:
            raise Fail(f"truncated field {num} at byte {pos}")
        return e
    if wt == 3 or wt == 4:
        raise Fail(f"groups are not supported (field {num}, wire type {wt})")
    raise Fail(f"invalid wire type {wt} (field {num})")


# --- writing primitives: (buf, value) -> value is not the default -----------------------------------


def _wv(buf: bytearray, v: int) -> None:
    """Append the varint of a non-negative ``v``."""
    while v > 0x7F:
        buf.append((v & 0x7F) | 0x80)
        v >>= 7
    buf.append(v)


def _varint_bytes(v: int) -> bytes:
    out = bytearray()
    _wv(out, v)
    return bytes(out)


def _fix_len(buf: bytearray, start: int) -> None:
    """Patch the 1-byte length placeholder at ``start`` with the length of what follows it."""
    n = len(buf) - start - 1
    if n < 0x80:
        buf[start] = n
    else:
        buf[start:start + 1] = _varint_bytes(n)


def _as_int(v: Any) -> int:
    t = type(v)
    if t is int:
        return v
    if t is float and v.is_integer():
        return int(v)
    if t is not bool and t is not float and isinstance(v, int):  # IntEnum and friends
        return int(v)
    raise Fail(f"expected int, got {t.__name__} {v!r:.40}")


def _int_writer(type_name: str, lo: int, hi: int, zigzag: bool = False
                ) -> Callable[[bytearray, Any], bool]:
    if zigzag:
        bits = 31 if type_name == "sint32" else 63

        def write_zz(buf: bytearray, v: Any) -> bool:
            if type(v) is not int:
                v = _as_int(v)
            if v < lo or v > hi:
                raise Fail(f"integer {v} out of range for {type_name}")
            _wv(buf, (v << 1) ^ (v >> bits))
            return v != 0

        return write_zz

    def write(buf: bytearray, v: Any) -> bool:
        if type(v) is not int:
            v = _as_int(v)
        if v < 0x80 and v >= 0:
            buf.append(v)
            return v != 0
        if v < lo or v > hi:
            raise Fail(f"integer {v} out of range for {type_name}")
        _wv(buf, v & _MASK64)  # negatives: 10-byte two's complement (§7)
        return True

    return write


def _fixed_writer(fmt: str, type_name: str, lo: int, hi: int) -> Callable[[bytearray, Any], bool]:
    pack = struct.Struct(fmt).pack

    def write(buf: bytearray, v: Any) -> bool:
        if type(v) is not int:
            v = _as_int(v)
        if v < lo or v > hi:
            raise Fail(f"integer {v} out of range for {type_name}")
        buf += pack(v)
        return v != 0

    return write


def _float_writer(fmt: str, type_name: str) -> Callable[[bytearray, Any], bool]:
    pack = struct.Struct(fmt).pack
    copysign = math.copysign

    def write(buf: bytearray, v: Any) -> bool:
        if type(v) is not float:
            if type(v) is not bool and isinstance(v, (int, float)):
                try:
                    v = float(v)
                except OverflowError:
                    raise Fail(f"number out of range for {type_name}") from None
            else:
                raise Fail(f"expected float, got {type(v).__name__}")
        try:
            buf += pack(v)
        except OverflowError:  # finite double beyond float32's range
            raise Fail(f"number {v!r} out of range for {type_name}") from None
        return v != 0 or copysign(1.0, v) < 0  # -0.0 has non-zero bits: written (NaN too)

    return write


def _w_bool(buf: bytearray, v: Any) -> bool:
    if v is True:
        buf.append(1)
        return True
    if v is False:
        buf.append(0)
        return False
    raise Fail(f"expected bool, got {type(v).__name__}")


def _w_string(buf: bytearray, v: Any) -> bool:
    if type(v) is not str:
        if not isinstance(v, str):
            raise Fail(f"expected str, got {type(v).__name__}")
        v = str(v)
    try:
        b = v.encode("utf-8")
    except UnicodeEncodeError:
        raise Fail("string is not valid UTF-8 (lone surrogate)") from None
    n = len(b)
    if n < 0x80:
        buf.append(n)
    else:
        _wv(buf, n)
    buf += b
    return n != 0


def _w_bytes(buf: bytearray, v: Any) -> bool:
    if type(v) is not bytes:
        if isinstance(v, memoryview):
            v = v.tobytes()
        elif not isinstance(v, (bytes, bytearray)):
            raise Fail(f"expected bytes, got {type(v).__name__}")
    n = len(v)
    if n < 0x80:
        buf.append(n)
    else:
        _wv(buf, n)
    buf += v
    return n != 0


_I32 = (-(1 << 31), (1 << 31) - 1)
_I64 = (-(1 << 63), (1 << 63) - 1)
_WRITERS: dict[str, Callable[[bytearray, Any], bool]] = {
    "int32": _int_writer("int32", *_I32), "int64": _int_writer("int64", *_I64),
    "uint32": _int_writer("uint32", 0, _MASK32), "uint64": _int_writer("uint64", 0, _MASK64),
    "sint32": _int_writer("sint32", *_I32, zigzag=True),
    "sint64": _int_writer("sint64", *_I64, zigzag=True),
    "fixed32": _fixed_writer("<I", "fixed32", 0, _MASK32),
    "sfixed32": _fixed_writer("<i", "sfixed32", *_I32),
    "fixed64": _fixed_writer("<Q", "fixed64", 0, _MASK64),
    "sfixed64": _fixed_writer("<q", "sfixed64", *_I64),
    "float": _float_writer("<f", "float"), "double": _float_writer("<d", "double"),
    "bool": _w_bool, "string": _w_string, "bytes": _w_bytes,
}


def _tag(number: int, wire_type: int) -> bytes:
    return _varint_bytes((number << 3) | wire_type)


# --- plans ------------------------------------------------------------------------------------------

# A decode handler: (data, pos, end, out dict, depth budget) -> new pos.
Handler = Callable[[bytes, int, int, dict, int], int]
# A field encoder: (buf, value, depth) -> None.
Encoder = Callable[[bytearray, Any, int], None]


class _Plan:
    """Compiled steps for one message type. ``dec(data, pos, end, budget)`` returns the in-memory
    value of the bytes ``data[pos:end]``; ``merge(data, pos, end, budget, old)`` does the same
    for a second occurrence of a singular field; ``enc(buf, value, depth)`` appends the message
    body (no tag, no length); ``default()`` is the value of an absent map entry value."""

    __slots__ = ("name", "handlers", "names", "fields", "oneofs", "dec", "merge", "enc",
                 "default")

    def __init__(self, name: str) -> None:
        self.name = name
        self.handlers: dict[int, Handler] = {}
        self.names: dict[int, str] = {}  # field number -> ".name" path segment
        self.fields: list[tuple[str, Encoder, bool]] = []  # (name, encoder, None-is-a-value)
        self.oneofs: tuple[tuple[str, ...], ...] = ()
        self.dec: Callable[[bytes, int, int, int], Any] = self._dec
        self.merge: Callable[[bytes, int, int, int, Any], Any] = self._merge
        self.enc: Callable[[bytearray, Any, int], None] = self._enc
        self.default: Callable[[], Any] = dict

    def _fill(self, data: bytes, pos: int, end: int, budget: int, out: dict) -> dict:
        handlers = self.handlers
        while pos < end:
            tag = data[pos]
            if tag < 0x80:
                pos += 1
            elif pos + 1 < end and data[pos + 1] < 0x80:  # 2-byte tag: fields 16..2047
                tag = (tag & 0x7F) | (data[pos + 1] << 7)
                pos += 2
            else:
                tag, pos = _varint_slow(data, pos, end)
            h = handlers.get(tag)
            if h is None:
                pos = _skip(data, pos, end, tag, self.names)
                continue
            try:
                pos = h(data, pos, end, out, budget)
            except Fail as exc:
                exc.segs.append(self.names[tag >> 3])
                raise
        return out

    def _dec(self, data: bytes, pos: int, end: int, budget: int) -> dict:
        if budget < 0:
            raise Fail("message nested too deeply")
        return self._fill(data, pos, end, budget, {})

    def _merge(self, data: bytes, pos: int, end: int, budget: int, old: Any) -> dict:
        if budget < 0:
            raise Fail("message nested too deeply")
        return self._fill(data, pos, end, budget, old)

    def _enc(self, buf: bytearray, msg: Any, depth: int) -> None:
        if type(msg) is not dict and not isinstance(msg, Mapping):
            raise Fail(f"expected dict for {self.name}, got {type(msg).__name__}")
        if depth > MAX_DEPTH:
            raise Fail("message nested too deeply")
        get = msg.get
        seen = 0
        for name, enc, null_ok in self.fields:
            v = get(name, _MISSING)
            if v is _MISSING:
                continue
            seen += 1
            if v is None and not null_ok:
                continue  # None = unset (except for Value-typed fields: JSON null)
            try:
                enc(buf, v, depth)
            except Fail as exc:
                exc.segs.append("." + name)
                raise
        if seen != len(msg):
            known = {f[0] for f in self.fields}
            unknown = sorted(str(k) for k in msg if not isinstance(k, str) or k not in known)
            raise Fail(f"unknown field(s) for {self.name}: {', '.join(unknown)}")
        for members in self.oneofs:
            present = [m for m in members if get(m) is not None]
            if len(present) > 1:
                raise Fail(f"more than one member of a oneof is set: {', '.join(present)}")


# --- decode handlers --------------------------------------------------------------------------------


def _h_string_implicit(name: str) -> Handler:
    """The most common field of the schema (a plain ``string``), with the reader inlined."""

    def h(data: bytes, pos: int, end: int, out: dict, budget: int) -> int:
        if pos < end and data[pos] < 0x80:
            n = data[pos]
            pos += 1
        else:
            n, pos = _varint_slow(data, pos, end)
        e = pos + n
        if e > end:
            raise _truncated("string", pos, n, end)
        if n:
            try:
                out[name] = data[pos:e].decode("utf-8")
            except UnicodeDecodeError as exc:
                raise _bad_utf8(pos, exc) from None
        else:
            out.pop(name, None)
        return e

    return h


def _h_varint_implicit(name: str, read: Callable) -> Handler:
    """int32/int64/uint32/uint64/enum: a 1-byte varint is the value itself (inlined)."""

    def h(data: bytes, pos: int, end: int, out: dict, budget: int) -> int:
        if pos < end and data[pos] < 0x80:
            v = data[pos]
            pos += 1
        else:
            v, pos = read(data, pos, end)
        if v:
            out[name] = v
        else:
            out.pop(name, None)
        return pos

    return h


def _h_implicit(name: str, read: Callable, is_float: bool) -> Handler:
    if is_float:
        copysign = math.copysign

        def h_float(data: bytes, pos: int, end: int, out: dict, budget: int) -> int:
            v, pos = read(data, pos, end)
            if v or copysign(1.0, v) < 0:  # keep -0.0 (and NaN, which is truthy)
                out[name] = v
            else:
                out.pop(name, None)
            return pos

        return h_float

    def h(data: bytes, pos: int, end: int, out: dict, budget: int) -> int:
        v, pos = read(data, pos, end)
        if v:
            out[name] = v
        else:
            out.pop(name, None)  # implicit presence: default == absent
        return pos

    return h


def _h_presence(name: str, read: Callable, others: tuple[str, ...]) -> Handler:
    def h(data: bytes, pos: int, end: int, out: dict, budget: int) -> int:
        v, pos = read(data, pos, end)
        for other in others:  # oneof: the last member seen wins (§7)
            out.pop(other, None)
        out[name] = v
        return pos

    return h


def _h_append(name: str, read: Callable) -> Handler:
    def h(data: bytes, pos: int, end: int, out: dict, budget: int) -> int:
        try:
            v, pos = read(data, pos, end)
        except Fail as exc:
            exc.segs.append(f"[{len(out.get(name, ()))}]")
            raise
        lst = out.get(name)
        if lst is None:
            out[name] = [v]
        else:
            lst.append(v)
        return pos

    return h


def _h_packed(name: str, read: Callable, ftype: str) -> Handler:
    fixed = _FIXED.get(ftype)
    plain = ftype in _PLAIN_VARINTS

    def h(data: bytes, pos: int, end: int, out: dict, budget: int) -> int:
        pos, e = _length(data, pos, end, "packed field")
        if e == pos:
            return e
        if fixed is not None:
            letter, size = fixed
            count, rem = divmod(e - pos, size)
            if rem:
                raise Fail(f"packed {ftype} length {e - pos} is not a multiple of {size}")
            vals = list(struct.unpack_from(f"<{count}{letter}", data, pos))
        elif plain and data[pos:e].isascii():  # every element is a 1-byte varint
            vals = list(data[pos:e])
        else:
            vals = []
            append = vals.append
            p = pos
            while p < e:
                v, p = read(data, p, e)
                append(v)
        lst = out.get(name)
        if lst is None:
            out[name] = vals
        else:
            lst.extend(vals)
        return e

    return h


def _h_message(name: str, sub: _Plan, others: tuple[str, ...]) -> Handler:
    def h(data: bytes, pos: int, end: int, out: dict, budget: int) -> int:
        pos, e = _length(data, pos, end, "message")
        for other in others:
            out.pop(other, None)
        old = out.get(name, _MISSING)
        if old is _MISSING:
            out[name] = sub.dec(data, pos, e, budget - 1)
        else:  # a singular message seen twice: merged (protobuf semantics)
            out[name] = sub.merge(data, pos, e, budget - 1, old)
        return e

    return h


def _h_message_list(name: str, sub: _Plan) -> Handler:
    def h(data: bytes, pos: int, end: int, out: dict, budget: int) -> int:
        pos, e = _length(data, pos, end, "message")
        lst = out.get(name)
        if lst is None:
            lst = out[name] = []
        try:
            lst.append(sub.dec(data, pos, e, budget - 1))
        except Fail as exc:
            exc.segs.append(f"[{len(lst)}]")
            raise
        return e

    return h


_ENTRY_NAMES = {1: ".key", 2: ".value"}


def _h_map(name: str, key_type: str, val_type: str, sub: _Plan | None) -> Handler:
    kread = _READERS[key_type]
    ktag = (1 << 3) | _WIRE_TYPES[key_type]
    kdefault = {"string": "", "bool": False}.get(key_type, 0)
    vtag = (2 << 3) | _WIRE_TYPES[val_type]
    vread = _READERS.get(val_type)
    vdefault: Any = _SCALAR_DEFAULTS.get(val_type, 0)

    def h(data: bytes, pos: int, end: int, out: dict, budget: int) -> int:
        pos, e = _length(data, pos, end, "map entry")
        k: Any = _MISSING
        v: Any = _MISSING
        p = pos
        try:
            while p < e:
                tag = data[p]
                if tag < 0x80:
                    p += 1
                else:
                    tag, p = _varint_slow(data, p, e)
                if tag == ktag:
                    k, p = kread(data, p, e)
                elif tag == vtag:
                    if sub is None:
                        v, p = vread(data, p, e)  # type: ignore[misc]
                    else:
                        p, q = _length(data, p, e, "map value")
                        v = sub.dec(data, p, q, budget - 1)
                        p = q
                else:
                    p = _skip(data, p, e, tag, _ENTRY_NAMES)
        except Fail as exc:
            if k is not _MISSING:
                exc.segs.append(key_seg(k))
            raise
        if k is _MISSING:
            k = kdefault
        if v is _MISSING:
            v = sub.default() if sub is not None else vdefault
        d = out.get(name)
        if d is None:
            out[name] = {k: v}
        else:
            d[k] = v  # later duplicate keys win (§7)
        return e

    return h


_SCALAR_DEFAULTS: dict[str, Any] = {"double": 0.0, "float": 0.0, "bool": False, "string": "",
                                    "bytes": b""}


# --- encoders ---------------------------------------------------------------------------------------


def _e_implicit(tag: bytes, write: Callable[[bytearray, Any], bool]) -> Encoder:
    def e(buf: bytearray, v: Any, depth: int) -> None:
        mark = len(buf)
        buf += tag
        if not write(buf, v):
            del buf[mark:]  # the default: not written (implicit presence, §7)

    return e


def _e_presence(tag: bytes, write: Callable[[bytearray, Any], bool]) -> Encoder:
    def e(buf: bytearray, v: Any, depth: int) -> None:
        buf += tag
        write(buf, v)

    return e


def _check_list(v: Any) -> None:
    if type(v) is not list and not isinstance(v, (list, tuple)):
        raise Fail(f"repeated field must be a list, got {type(v).__name__}")


def _e_packed(tag: bytes, write: Callable[[bytearray, Any], bool]) -> Encoder:
    def e(buf: bytearray, v: Any, depth: int) -> None:
        _check_list(v)
        if not v:
            return
        buf += tag
        start = len(buf)
        buf.append(0)
        i = 0
        try:
            for i, item in enumerate(v):
                write(buf, item)
        except Fail as exc:
            exc.segs.append(f"[{i}]")
            raise
        _fix_len(buf, start)

    return e


def _e_repeated(tag: bytes, write: Callable[[bytearray, Any], bool]) -> Encoder:
    def e(buf: bytearray, v: Any, depth: int) -> None:
        _check_list(v)
        i = 0
        try:
            for i, item in enumerate(v):
                buf += tag
                write(buf, item)
        except Fail as exc:
            exc.segs.append(f"[{i}]")
            raise

    return e


def _e_message(tag: bytes, sub: _Plan) -> Encoder:
    def e(buf: bytearray, v: Any, depth: int) -> None:
        buf += tag
        start = len(buf)
        buf.append(0)  # length placeholder, patched (and widened if needed) afterwards
        sub.enc(buf, v, depth + 1)
        _fix_len(buf, start)

    return e


def _e_message_list(tag: bytes, sub: _Plan) -> Encoder:
    def e(buf: bytearray, v: Any, depth: int) -> None:
        _check_list(v)
        i = 0
        try:
            for i, item in enumerate(v):
                buf += tag
                start = len(buf)
                buf.append(0)
                sub.enc(buf, item, depth + 1)
                _fix_len(buf, start)
        except Fail as exc:
            exc.segs.append(f"[{i}]")
            raise

    return e


def _e_map(tag: bytes, key_type: str, val_type: str, sub: _Plan | None,
           vwrite: Callable[[bytearray, Any], bool] | None) -> Encoder:
    kwrite = _WRITERS[key_type]
    ktag = _tag(1, _WIRE_TYPES[key_type])
    vtag = _tag(2, _WIRE_TYPES[val_type])

    def e(buf: bytearray, v: Any, depth: int) -> None:
        if not isinstance(v, Mapping):
            raise Fail(f"map field must be a dict, got {type(v).__name__}")
        for k, item in v.items():
            try:
                buf += tag
                start = len(buf)
                buf.append(0)
                buf += ktag
                kwrite(buf, k)
                buf += vtag
                if sub is None:
                    vwrite(buf, item)  # type: ignore[misc]
                else:
                    vstart = len(buf)
                    buf.append(0)
                    sub.enc(buf, item, depth + 1)
                    _fix_len(buf, vstart)
                _fix_len(buf, start)
            except Fail as exc:
                exc.segs.append(key_seg(k))
                raise

    return e


# --- well-known types -------------------------------------------------------------------------------

_SN_NAMES = {1: ".seconds", 2: ".nanos"}


def _dec_seconds_nanos(data: bytes, pos: int, end: int) -> tuple[int, int]:
    """Timestamp/Duration body: ``{1: seconds int64, 2: nanos int32}``."""
    seconds = nanos = 0
    while pos < end:
        tag = data[pos]
        if tag < 0x80:
            pos += 1
        else:
            tag, pos = _varint_slow(data, pos, end)
        if tag == 0x08:
            seconds, pos = _varint_slow(data, pos, end)
            if seconds >> 63:
                seconds -= 1 << 64
        elif tag == 0x10:
            nanos, pos = _r_int32(data, pos, end)
        else:
            pos = _skip(data, pos, end, tag, _SN_NAMES)
    return seconds, nanos


def _enc_seconds_nanos(buf: bytearray, seconds: int, nanos: int) -> None:
    if seconds:
        buf.append(0x08)
        _wv(buf, seconds & _MASK64)
    if nanos:
        buf.append(0x10)
        _wv(buf, nanos & _MASK64)


#: Timestamps repeat a lot (created_at/updated_at of many rows): memoise both directions.
#: Bounded: cleared when full. Plain dict get/set are atomic under the GIL.
_TIMESTAMP_CACHE_SIZE = 4096
_ts_decoded: dict[bytes, str] = {}


#: Longest canonical Timestamp body (08 + 10-byte varint, 10 + 5-byte varint); longer bodies
#: (unknown fields, padding) are decoded but not memoised, so the cache stays small.
_MAX_TIMESTAMP_BODY = 17


def _dec_timestamp(data: bytes, pos: int, end: int, budget: int) -> str:
    raw = data[pos:end] if end - pos <= _MAX_TIMESTAMP_BODY else None
    text = _ts_decoded.get(raw) if raw is not None else None
    if text is None:
        seconds, nanos = _dec_seconds_nanos(data, pos, end)
        try:
            text = wkt.format_timestamp(seconds, nanos)
        except ValueError as exc:
            raise Fail(str(exc)) from None
        if raw is not None:
            if len(_ts_decoded) >= _TIMESTAMP_CACHE_SIZE:
                _ts_decoded.clear()
            _ts_decoded[raw] = text
    return text


@lru_cache(maxsize=_TIMESTAMP_CACHE_SIZE)
def _timestamp_body(text: str) -> bytes:
    body = bytearray()
    _enc_seconds_nanos(body, *wkt.parse_timestamp(text))
    return bytes(body)


def _enc_timestamp(buf: bytearray, v: Any, depth: int) -> None:
    try:
        if type(v) is str:
            buf += _timestamp_body(v)
        elif isinstance(v, str):
            buf += _timestamp_body(str(v))
        elif isinstance(v, datetime):
            buf += _timestamp_body(wkt.timestamp_from_datetime(v))
        else:
            raise Fail(f"Timestamp must be an RFC 3339 str or datetime, got {type(v).__name__}")
    except ValueError as exc:
        raise Fail(str(exc)) from None


def _dec_duration(data: bytes, pos: int, end: int, budget: int) -> float:
    seconds, nanos = _dec_seconds_nanos(data, pos, end)
    if abs(seconds) > wkt.MAX_DURATION_SECONDS or abs(nanos) >= 1_000_000_000:
        raise Fail("duration out of range")
    try:
        return wkt.duration_from_parts(seconds, nanos)
    except ValueError as exc:
        raise Fail(str(exc)) from None


def _enc_duration(buf: bytearray, v: Any, depth: int) -> None:
    try:
        seconds, nanos = wkt.duration_to_parts(v)
    except ValueError as exc:
        raise Fail(str(exc)) from None
    _enc_seconds_nanos(buf, seconds, nanos)


_FM_NAMES = {1: ".paths"}


def _dec_field_mask(data: bytes, pos: int, end: int, budget: int) -> list[str]:
    paths: list[str] = []
    while pos < end:
        tag = data[pos]
        if tag < 0x80:
            pos += 1
        else:
            tag, pos = _varint_slow(data, pos, end)
        if tag == 0x0A:
            try:
                s, pos = _r_string(data, pos, end)
            except Fail as exc:
                exc.segs.append(f".paths[{len(paths)}]")
                raise
            paths.append(s)
        else:
            pos = _skip(data, pos, end, tag, _FM_NAMES)
    return paths


def _merge_field_mask(data: bytes, pos: int, end: int, budget: int, old: Any) -> list[str]:
    old.extend(_dec_field_mask(data, pos, end, budget))  # in place: many occurrences stay linear
    return old


def _enc_field_mask(buf: bytearray, v: Any, depth: int) -> None:
    if not isinstance(v, (list, tuple)):
        raise Fail(f"FieldMask must be a list of paths, got {type(v).__name__}")
    for i, p in enumerate(v):
        buf.append(0x0A)
        try:
            _w_string(buf, p)
        except Fail as exc:
            exc.segs.append(f"[{i}]")
            raise


def _dec_empty(data: bytes, pos: int, end: int, budget: int) -> dict:
    while pos < end:
        tag = data[pos]
        if tag < 0x80:
            pos += 1
        else:
            tag, pos = _varint_slow(data, pos, end)
        pos = _skip(data, pos, end, tag, {})
    return {}


def _enc_empty(buf: bytearray, v: Any, depth: int) -> None:
    if not isinstance(v, Mapping) or v:
        raise Fail("Empty must be {}")


def _wrapper_coders(scalar: str) -> tuple[Callable, Callable]:
    read = _READERS[scalar]
    write = _WRITERS[scalar]
    vtag = (1 << 3) | _WIRE_TYPES[scalar]
    tag = bytes([vtag])
    default = _SCALAR_DEFAULTS.get(scalar, 0)
    names = {1: ".value"}

    def dec(data: bytes, pos: int, end: int, budget: int) -> Any:
        v = default
        while pos < end:
            t = data[pos]
            if t < 0x80:
                pos += 1
            else:
                t, pos = _varint_slow(data, pos, end)
            if t == vtag:
                v, pos = read(data, pos, end)
            else:
                pos = _skip(data, pos, end, t, names)
        return v

    def enc(buf: bytearray, v: Any, depth: int) -> None:
        mark = len(buf)
        buf += tag
        if not write(buf, v):
            del buf[mark:]

    return dec, enc



# Struct / Value / ListValue: hand-written for speed (they carry every payload).

_VALUE_NAMES = {1: ".null_value", 2: ".number_value", 3: ".string_value", 4: ".bool_value",
                5: ".struct_value", 6: ".list_value"}
_ONE_NAMES = {1: ".fields"}
_LIST_NAMES = {1: ".values"}
_unpack_double = struct.Struct("<d").unpack_from
_pack_double = struct.Struct("<d").pack


def _dec_value(data: bytes, pos: int, end: int, budget: int) -> Any:
    """A Value: the JSON value of its ``kind`` (unset kind reads as null, §7). A Value costs no
    depth of its own; the Struct/ListValue it holds does."""
    result: Any = None
    while pos < end:
        tag = data[pos]
        if tag < 0x80:
            pos += 1
        else:
            tag, pos = _varint_slow(data, pos, end)
        if tag == 0x11:  # number_value
            e = pos + 8
            if e > end:
                raise Fail(f"truncated double at byte {pos}")
            v = _unpack_double(data, pos)[0]
            pos = e
            if v.is_integer():
                if -_MAX_SAFE_INT <= v <= _MAX_SAFE_INT and (v or math.copysign(1.0, v) > 0):
                    v = int(v)  # so the dict equals the JSON codec's for {"n": 2} (module doc)
            elif v != v or v in (math.inf, -math.inf):
                exc = Fail("number_value must be finite (JSON cannot carry NaN/Infinity)")
                exc.segs.append(".number_value")
                raise exc
            result = v
        elif tag == 0x1A:
            try:
                result, pos = _r_string(data, pos, end)
            except Fail as exc:
                exc.segs.append(".string_value")
                raise
        elif tag == 0x2A:
            p, e = _length(data, pos, end, "struct_value")
            result = _dec_struct(data, p, e, budget)
            pos = e
        elif tag == 0x32:
            p, e = _length(data, pos, end, "list_value")
            result = _dec_list_value(data, p, e, budget)
            pos = e
        elif tag == 0x20:
            v, pos = _varint(data, pos, end)
            result = v != 0
        elif tag == 0x08:  # null_value: any NullValue number is null
            pos = _varint(data, pos, end)[1]
            result = None
        else:
            pos = _skip(data, pos, end, tag, _VALUE_NAMES)
    return result


def _dec_struct(data: bytes, pos: int, end: int, budget: int) -> dict[str, Any]:
    if budget < 0:
        raise Fail("JSON value nested too deeply")
    out: dict[str, Any] = {}
    while pos < end:
        tag = data[pos]
        if tag < 0x80:
            pos += 1
        else:
            tag, pos = _varint_slow(data, pos, end)
        if tag != 0x0A:
            pos = _skip(data, pos, end, tag, _ONE_NAMES)
            continue
        p, e = _length(data, pos, end, "Struct entry")
        key: Any = _MISSING
        value: Any = None
        # fast path for the canonical entry layout: 0a <klen> key 12 <vlen> value (short lengths)
        if p + 1 < e and data[p] == 0x0A and data[p + 1] < 0x80:
            q = p + 2 + data[p + 1]
            if q + 1 < e and data[q] == 0x12 and data[q + 1] < 0x80 and data[q + 1] == e - q - 2:
                try:
                    key = data[p + 2:q].decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise _bad_utf8(p + 2, exc) from None
                try:
                    out[key] = _dec_value(data, q + 2, e, budget - 1)
                except Fail as exc:
                    exc.segs.append(key_seg(key))
                    raise
                pos = e
                continue
        try:
            while p < e:
                t = data[p]
                if t < 0x80:
                    p += 1
                else:
                    t, p = _varint_slow(data, p, e)
                if t == 0x0A:
                    key, p = _r_string(data, p, e)
                elif t == 0x12:
                    q, r = _length(data, p, e, "Struct value")
                    value = _dec_value(data, q, r, budget - 1)
                    p = r
                else:
                    p = _skip(data, p, e, t, _ENTRY_NAMES)
        except Fail as exc:
            if key is not _MISSING:
                exc.segs.append(key_seg(key))
            raise
        out["" if key is _MISSING else key] = value
        pos = e
    return out


def _dec_list_value(data: bytes, pos: int, end: int, budget: int) -> list[Any]:
    if budget < 0:
        raise Fail("JSON value nested too deeply")
    out: list[Any] = []
    while pos < end:
        tag = data[pos]
        if tag < 0x80:
            pos += 1
        else:
            tag, pos = _varint_slow(data, pos, end)
        if tag != 0x0A:
            pos = _skip(data, pos, end, tag, _LIST_NAMES)
            continue
        p, e = _length(data, pos, end, "ListValue element")
        try:
            out.append(_dec_value(data, p, e, budget - 1))
        except Fail as exc:
            exc.segs.append(f"[{len(out)}]")
            raise
        pos = e
    return out


def _merge_struct(data: bytes, pos: int, end: int, budget: int, old: Any) -> Any:
    old.update(_dec_struct(data, pos, end, budget))
    return old


def _merge_list_value(data: bytes, pos: int, end: int, budget: int, old: Any) -> Any:
    old.extend(_dec_list_value(data, pos, end, budget))
    return old


def _enc_value(buf: bytearray, v: Any, depth: int) -> None:
    t = type(v)
    if t is str:
        buf.append(0x1A)
        _w_string(buf, v)
    elif v is None:
        buf += b"\x08\x00"
    elif t is bool:
        buf += b"\x20\x01" if v else b"\x20\x00"
    elif t is int or t is float:
        if t is int:
            try:
                v = float(v)  # above 2^53: the nearest double (§10)
            except OverflowError:
                raise Fail("integer too large for a JSON number (double)") from None
        elif not math.isfinite(v):
            raise Fail("a JSON value cannot be NaN or Infinity")
        buf.append(0x11)
        buf += _pack_double(v)
    elif t is dict or t is list or t is tuple or isinstance(v, Mapping):
        buf.append(0x2A if t is not list and t is not tuple else 0x32)
        start = len(buf)
        buf.append(0)
        if t is list or t is tuple:
            _enc_list_value(buf, v, depth)
        else:
            _enc_struct(buf, v, depth)
        n = len(buf) - start - 1
        if n < 0x80:
            buf[start] = n
        else:
            buf[start:start + 1] = _varint_bytes(n)
    elif isinstance(v, bool):
        _enc_value(buf, bool(v), depth)
    elif isinstance(v, (int, float)):
        _enc_value(buf, int(v) if isinstance(v, int) else float(v), depth)
    elif isinstance(v, str):
        _enc_value(buf, str(v), depth)
    else:
        raise Fail(f"{t.__name__} is not a JSON value")


def _enc_struct(buf: bytearray, v: Any, depth: int) -> None:
    if not isinstance(v, Mapping):
        raise Fail(f"Struct must be a dict, got {type(v).__name__}")
    if depth > MAX_DEPTH:
        raise Fail("JSON value nested too deeply")
    for k, item in v.items():
        if type(k) is not str:
            if not isinstance(k, str):
                raise Fail(f"object keys must be str, got {type(k).__name__}")
            k = str(k)
        try:
            try:
                kb = k.encode("utf-8")
            except UnicodeEncodeError:
                raise Fail("string is not valid UTF-8 (lone surrogate)") from None
            klen = len(kb)
            start = len(buf) + 1
            if klen < 0x80:  # entry tag, length placeholder, key tag, key length
                buf += bytes((0x0A, 0, 0x0A, klen))
            else:
                buf += b"\x0a\x00\x0a"
                _wv(buf, klen)
            buf += kb
            buf.append(0x12)
            vstart = len(buf)
            buf.append(0)
            _enc_value(buf, item, depth + 1)
            n = len(buf) - vstart - 1
            if n < 0x80:
                buf[vstart] = n
            else:
                buf[vstart:vstart + 1] = _varint_bytes(n)
            _fix_len(buf, start)
        except Fail as exc:
            exc.segs.append(key_seg(k))
            raise


def _enc_list_value(buf: bytearray, v: Any, depth: int) -> None:
    if not isinstance(v, (list, tuple)):
        raise Fail(f"ListValue must be a list, got {type(v).__name__}")
    if depth > MAX_DEPTH:
        raise Fail("JSON value nested too deeply")
    i = 0
    try:
        for i, item in enumerate(v):
            buf += b"\x0a\x00"
            start = len(buf) - 1
            _enc_value(buf, item, depth + 1)
            n = len(buf) - start - 1
            if n < 0x80:
                buf[start] = n
            else:
                buf[start:start + 1] = _varint_bytes(n)
    except Fail as exc:
        exc.segs.append(f"[{i}]")
        raise


def _last_wins(dec: Callable[[bytes, int, int, int], Any]) -> Callable[..., Any]:
    return lambda data, pos, end, budget, old: dec(data, pos, end, budget)


#: Hand-written (decode, merge-or-None, encode) per well-known type; merge None = last wins.
_WKT_CODERS: dict[str, tuple[Callable, Callable | None, Callable]] = {
    _STRUCT: (_dec_struct, _merge_struct, _enc_struct),
    _VALUE: (_dec_value, None, _enc_value),
    _LIST_VALUE: (_dec_list_value, _merge_list_value, _enc_list_value),
    _TIMESTAMP: (_dec_timestamp, None, _enc_timestamp),
    _DURATION: (_dec_duration, None, _enc_duration),
    _FIELD_MASK: (_dec_field_mask, _merge_field_mask, _enc_field_mask),
    _EMPTY: (_dec_empty, None, _enc_empty),
}


def _wkt_plan(name: str) -> _Plan | None:
    """The hand-written plan of a well-known type, or ``None`` for an ordinary message."""
    if name in _WRAPPERS:
        dec, enc = _wrapper_coders(_WRAPPERS[name])
        merge = None
    elif name in _WKT_CODERS:
        dec, merge, enc = _WKT_CODERS[name]
    else:
        return None
    plan = _Plan(name)
    plan.dec, plan.enc = dec, enc
    plan.merge = merge if merge is not None else _last_wins(dec)
    default = WKT_DEFAULTS.get(name)
    if name in _WRAPPERS:
        default = _SCALAR_DEFAULTS.get(_WRAPPERS[name], 0)
    if isinstance(default, (dict, list)):
        plan.default = default.copy
    else:
        plan.default = lambda: default
    return plan


# --- plan compiler ----------------------------------------------------------------------------------


class _Codec:
    """Per-schema compiled plans, built on first use (thread-safe) and kept on the schema."""

    def __init__(self, schema: Schema) -> None:
        self.schema = schema
        self.plans: dict[str, _Plan] = {}
        self.lock = threading.Lock()

    def plan(self, name: str) -> _Plan:
        plan = self.plans.get(name)
        if plan is None:
            with self.lock:
                plan = self.plans.get(name)
                if plan is None:
                    full = self.schema.message(name).full_name  # KeyError: unknown type
                    staging: dict[str, _Plan] = {}
                    plan = self._get(full, staging)
                    staging[name] = plan
                    self.plans.update(staging)  # publish the whole closure at once
        return plan

    def _get(self, full: str, staging: dict[str, _Plan]) -> _Plan:
        plan = self.plans.get(full) or staging.get(full)
        if plan is None:
            plan = _wkt_plan(full)
            if plan is not None:
                staging[full] = plan
            else:
                plan = _Plan(full)
                staging[full] = plan  # registered before filling: types may be recursive
                self._fill(plan, staging)
        return plan

    def _enum_writer(self, type_name: str) -> Callable[[bytearray, Any], bool]:
        enum = self.schema.enum(type_name)
        values = enum.values
        write_int = _WRITERS["int32"]

        def write(buf: bytearray, v: Any) -> bool:
            if type(v) is str:
                n = values.get(v)
                if n is None:
                    raise Fail(f"unknown {enum.name} value {v!r}")
                v = n
            return write_int(buf, v)

        return write

    def _writer(self, ftype: str, type_name: str | None) -> Callable[[bytearray, Any], bool]:
        if ftype == "enum":
            assert type_name is not None
            return self._enum_writer(type_name)
        return _WRITERS[ftype]

    def _fill(self, plan: _Plan, staging: dict[str, _Plan]) -> None:
        md = self.schema.message(plan.name)
        handlers = plan.handlers
        for f in sorted(md.fields, key=lambda f: f.number):
            plan.names[f.number] = "." + f.name
            wt = _WIRE_TYPES[f.type]
            tag = (f.number << 3) | wt
            tag_bytes = _tag(f.number, wt)
            null_ok = False
            others = tuple(m for m in md.oneofs.get(f.oneof, ()) if m != f.name) if f.oneof else ()
            if f.is_map:
                entry = self.schema.message(f.type_name or "")
                vf = entry.by_number[2]
                key_type = f.map_key_type or "string"
                sub = self._get(vf.type_name or "", staging) if vf.type == "message" else None
                val_type = vf.type
                handlers[tag] = _h_map(f.name, key_type, val_type, sub)
                vwrite = None if sub is not None else self._writer(vf.type, vf.type_name)
                enc = _e_map(tag_bytes, key_type, val_type, sub, vwrite)
            elif f.type == "message":
                sub = self._get(f.type_name or "", staging)
                if f.is_list:
                    handlers[tag] = _h_message_list(f.name, sub)
                    enc = _e_message_list(tag_bytes, sub)
                else:
                    handlers[tag] = _h_message(f.name, sub, others)
                    enc = _e_message(tag_bytes, sub)
                    null_ok = f.type_name == _VALUE  # None is a JSON null there
            else:
                read = _READERS[f.type]
                write = self._writer(f.type, f.type_name)
                if f.is_list:
                    handlers[tag] = _h_append(f.name, read)
                    if f.packable:
                        handlers[(f.number << 3) | 2] = _h_packed(f.name, read, f.type)
                        enc = _e_packed(_tag(f.number, 2), write)
                    else:
                        enc = _e_repeated(tag_bytes, write)
                elif f.has_presence:
                    handlers[tag] = _h_presence(f.name, read, others)
                    enc = _e_presence(tag_bytes, write)
                else:
                    if f.type == "string":
                        handlers[tag] = _h_string_implicit(f.name)
                    elif f.type in _PLAIN_VARINTS:
                        handlers[tag] = _h_varint_implicit(f.name, read)
                    else:
                        handlers[tag] = _h_implicit(f.name, read, f.type in ("double", "float"))
                    enc = _e_implicit(tag_bytes, write)
            plan.fields.append((f.name, enc, null_ok))
        plan.oneofs = tuple(md.oneofs.values())


def _codec(schema: Schema) -> _Codec:
    codec = schema.codec_cache.get("wire")
    if codec is None:
        codec = schema.codec_cache.setdefault("wire", _Codec(schema))
    return codec


# --- public API -------------------------------------------------------------------------------------


def decode(schema: Schema, message_name: str, data: bytes | bytearray | memoryview, *,
           max_depth: int = MAX_DEPTH) -> Any:
    """Decode binary protobuf bytes of message ``message_name`` into the in-memory form (a dict
    for ordinary messages; for a well-known type at the top level its in-memory form, e.g. a
    string for ``google.protobuf.Timestamp``). Empty bytes are the all-defaults message.

    Raises :class:`WireDecodeError` (never anything else) for any input bytes. An unknown
    ``message_name`` is a programming error: ``KeyError``."""
    plan = _codec(schema).plan(message_name)
    if type(data) is not bytes:
        if isinstance(data, (bytearray, memoryview)):
            data = bytes(data)
        else:
            raise WireDecodeError(f"expected bytes, got {type(data).__name__}")
    try:
        return plan.dec(data, 0, len(data), max_depth)
    except Fail as exc:
        raise WireDecodeError(exc.reason, exc.path()) from None
    except RecursionError:
        raise WireDecodeError("message nested too deeply") from None
    except (IndexError, KeyError, TypeError, ValueError, OverflowError, struct.error) as exc:
        # Safety net: every malformed input is meant to be caught above with a precise reason.
        raise WireDecodeError(f"malformed message (internal {type(exc).__name__})") from None


def encode(schema: Schema, message_name: str, msg: Any) -> bytes:
    """Encode an in-memory message (the same form :func:`decode` and ``jsoncodec.from_json``
    return; ``None`` = unset except on ``Value``-typed fields) as binary protobuf. Fields are
    written in field-number order. Raises :class:`WireEncodeError` when ``msg`` does not fit."""
    plan = _codec(schema).plan(message_name)
    buf = bytearray()
    try:
        plan.enc(buf, msg, 0)
    except Fail as exc:
        raise WireEncodeError(exc.reason, exc.path()) from None
    except RecursionError:
        raise WireEncodeError("value nested too deeply") from None
    return bytes(buf)
