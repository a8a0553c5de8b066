"""proto3 JSON mapping (connect.md §9) between JSON values and the in-memory "plain dict" form.

In-memory form (what Connect handlers receive and return; the binary codec uses the same):

* a message is a ``dict`` keyed by proto field name (snake_case); only set fields are present.
  Implicit-presence fields (plain proto3 scalars, enums, repeated, maps) equal to their default
  are **absent** after decoding (absent == default), so JSON and binary decoding give identical
  dicts. Explicit-presence fields (``optional``, oneof members, message-typed fields) are
  present exactly when set, even at a zero value;
* scalars: ``int`` (64-bit too), ``float``, ``bool``, ``str``; ``bytes`` for bytes;
* enums: ``int`` numbers (:func:`enum_number` / :func:`enum_name` convert names). Encoders also
  accept a value name;
* ``google.protobuf.Timestamp``: canonical RFC 3339 UTC string (see :mod:`.wkt`); encoders also
  accept any RFC 3339 string or a ``datetime``;
* ``Duration``: ``float`` seconds (encoders also accept ``int`` / ``timedelta``);
* ``Struct``: ``dict``; ``Value``: any JSON value (``None`` = JSON null); ``ListValue``: ``list``;
  ``Empty``: ``{}``; ``FieldMask``: ``list[str]`` of snake_case paths; wrappers: the bare scalar;
* repeated: ``list``; map: ``dict`` with keys as ``str`` / ``int`` / ``bool`` per key type.

For encoding, ``None`` stands for "unset" on every field except ``Value``-typed ones (there it is
a JSON null, which is a set value). Keys that are not fields of the message raise
:class:`EncodeError` (a handler bug, surfaced loudly).

Output follows the server decisions of §9: ``json_name`` keys; defaults of implicit-presence
fields are emitted (``0``, ``""``, ``false``, ``[]``, ``{}``, enum zero names); unset
message/oneof/optional fields never; 64-bit integers as strings; enums as names (unknown numbers
as numbers); bytes as padded standard base64; non-finite floats as ``"NaN"`` / ``"Infinity"``.

Input is liberal (§9): JSON or proto names (last wins), integers as numbers or strings, ``1.0``
for integers, enums by name or number (unknown name = unset), ``null`` = unset (except
``Value``), base64 of either alphabet with or without padding, any RFC 3339 offset, unknown keys
ignored. Everything else that does not fit raises :class:`DecodeError` naming the field path,
e.g. ``runs[2].attempt: expected integer, got string "x"``.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import threading
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Callable

from . import wkt
from .descriptors import Schema

__all__ = [
    "MAX_DEPTH",
    "MAX_JSON_BYTES",
    "PAYLOAD_FIELDS",
    "DecodeError",
    "DecodeLimitError",
    "EncodeError",
    "enum_name",
    "enum_number",
    "from_json",
    "from_json_bytes",
    "get_payload",
    "set_payload",
    "to_json",
    "to_json_bytes",
]

#: Deepest nesting of messages/Values accepted or produced (protobuf's default recursion limit).
MAX_DEPTH = 100
#: Largest JSON message accepted: the Connect request limit (connect.md §3.1, 32 MiB).
MAX_JSON_BYTES = 32 * 1024 * 1024

#: Struct field / Value sibling pairs of the data/data_value convention (connect.md §10).
PAYLOAD_FIELDS = ("data", "output", "input", "state", "current_state", "payload", "event_data",
                  "original_output", "error", "metadata")


class DecodeError(ValueError):
    """Client input that does not decode; ``path`` names the field (``""`` = the message)."""

    code = "invalid_argument"

    def __init__(self, reason: str, path: str = "") -> None:
        self.reason = reason
        self.path = path
        super().__init__(f"{path}: {reason}" if path else reason)


class DecodeLimitError(DecodeError):
    """Input over a size limit (Connect answers ``resource_exhausted``)."""

    code = "resource_exhausted"


class EncodeError(ValueError):
    """A handler produced a value that does not fit the schema (a server bug: ``internal``)."""

    code = "internal"

    def __init__(self, reason: str, path: str = "") -> None:
        self.reason = reason
        self.path = path
        super().__init__(f"{path}: {reason}" if path else reason)


class _Fail(Exception):
    """Internal: a failure plus the path segments collected on the way out (innermost first)."""

    __slots__ = ("reason", "segs")

    def __init__(self, reason: str) -> None:
        self.reason = reason
        self.segs: list[str] = []

    def path(self) -> str:
        return "".join(reversed(self.segs)).lstrip(".")


_UNSET = object()  # decoder result: leave the field unset (unknown enum name)
_MISSING = object()

_STRUCT = "google.protobuf.Struct"
_VALUE = "google.protobuf.Value"
_LIST_VALUE = "google.protobuf.ListValue"
_NULL_VALUE = "google.protobuf.NullValue"
_TIMESTAMP = "google.protobuf.Timestamp"
_DURATION = "google.protobuf.Duration"
_FIELD_MASK = "google.protobuf.FieldMask"
_EMPTY = "google.protobuf.Empty"
_ANY = "google.protobuf.Any"
_WRAPPERS = {
    "google.protobuf.DoubleValue": "double", "google.protobuf.FloatValue": "float",
    "google.protobuf.Int64Value": "int64", "google.protobuf.UInt64Value": "uint64",
    "google.protobuf.Int32Value": "int32", "google.protobuf.UInt32Value": "uint32",
    "google.protobuf.BoolValue": "bool", "google.protobuf.StringValue": "string",
    "google.protobuf.BytesValue": "bytes",
}

_INT_RANGES = {
    "int32": (-(1 << 31), (1 << 31) - 1), "sint32": (-(1 << 31), (1 << 31) - 1),
    "sfixed32": (-(1 << 31), (1 << 31) - 1), "uint32": (0, (1 << 32) - 1),
    "fixed32": (0, (1 << 32) - 1), "int64": (-(1 << 63), (1 << 63) - 1),
    "sint64": (-(1 << 63), (1 << 63) - 1), "sfixed64": (-(1 << 63), (1 << 63) - 1),
    "uint64": (0, (1 << 64) - 1), "fixed64": (0, (1 << 64) - 1),
}
_FLOAT32_MAX = 3.4028234663852886e38

_INT_STR_RE = re.compile(r"-?[0-9]+\Z", re.ASCII)
_NUMBER_RE = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?\Z", re.ASCII)
_SURROGATE_RE = re.compile(r"[\ud800-\udfff]")
_B64_RE = re.compile(r"[A-Za-z0-9+/\-_]*={0,2}\Z", re.ASCII)
_SPECIAL_FLOATS = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if value is True or value is False:
        return "boolean"
    if isinstance(value, (int, float)):
        return f"number {value!r}"
    if isinstance(value, str):
        shown = value if len(value) <= 20 else value[:17] + "..."
        return f"string {json.dumps(shown)}"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    return type(value).__name__


def _key_seg(key: Any) -> str:
    try:
        return "[" + json.dumps(key, ensure_ascii=True) + "]"
    except (TypeError, ValueError):
        return f"[{key!r}]"


def _check_str(s: str) -> str:
    if not s.isascii() and _SURROGATE_RE.search(s):
        raise _Fail("invalid UTF-8 in string (lone surrogate)")
    return s


def _check_key(k: Any) -> str:
    """Object keys: always strings in JSON (guards callers passing non-JSON dicts)."""
    if type(k) is not str:
        raise _Fail(f"object keys must be strings, got {type(k).__name__}")
    return _check_str(k)


# --- scalar decoders: (JSON value, depth) -> in-memory value --------------------------------------


def _int_from_str(s: str) -> int:
    if _INT_STR_RE.match(s):
        digits = s.lstrip("-").lstrip("0")
        if len(digits) > 24:
            raise _Fail("integer out of range")
        return int(s)
    if _NUMBER_RE.match(s):
        try:
            d = Decimal(s)
        except InvalidOperation:  # pragma: no cover - the regex admits only valid numbers
            raise _Fail("expected integer") from None
        if d.adjusted() > 24:
            raise _Fail("integer out of range")
        if d != d.to_integral_value():
            raise _Fail(f"expected integer, got fractional {_describe(s)}")
        return int(d)
    raise _Fail(f"expected integer, got {_describe(s)}")


def _int_decoder(type_name: str) -> Callable[[Any, int], Any]:
    lo, hi = _INT_RANGES[type_name]

    def dec(value: Any, depth: int) -> int:
        t = type(value)
        if t is int:
            v = value
        elif t is float:
            if not value.is_integer():
                raise _Fail(f"expected integer, got fractional {_describe(value)}")
            v = int(value)
        elif t is str:
            v = _int_from_str(value)
        else:
            raise _Fail(f"expected integer, got {_describe(value)}")
        if v < lo or v > hi:
            raise _Fail(f"integer out of range for {type_name}")
        return v

    return dec


def _float_decoder(type_name: str) -> Callable[[Any, int], Any]:
    single = type_name == "float"

    def dec(value: Any, depth: int) -> float:
        t = type(value)
        if t is float:
            v = value
        elif t is int:
            try:
                v = float(value)
            except OverflowError:
                raise _Fail("number out of range") from None
        elif t is str:
            special = _SPECIAL_FLOATS.get(value)
            if special is not None:
                return special
            if not _NUMBER_RE.match(value):
                raise _Fail(f"expected number, got {_describe(value)}")
            v = float(value)
        else:
            raise _Fail(f"expected number, got {_describe(value)}")
        if not math.isfinite(v) or (single and abs(v) > _FLOAT32_MAX):
            raise _Fail(f"number out of range for {type_name}")
        return v

    return dec


def _dec_bool(value: Any, depth: int) -> bool:
    if value is True or value is False:
        return value
    raise _Fail(f"expected boolean, got {_describe(value)}")


def _dec_string(value: Any, depth: int) -> str:
    if type(value) is str:
        return _check_str(value)
    raise _Fail(f"expected string, got {_describe(value)}")


def _dec_bytes(value: Any, depth: int) -> bytes:
    if type(value) is not str:
        raise _Fail(f"expected base64 string, got {_describe(value)}")
    s = value.rstrip("=")
    if (not _B64_RE.match(value) or len(s) % 4 == 1
            or (len(s) != len(value) and (len(value) % 4 or not s))):  # padding only if whole
        raise _Fail("invalid base64")
    if "-" in s or "_" in s:
        s = s.replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(s + "=" * (-len(s) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise _Fail("invalid base64") from None


_SCALAR_DECODERS: dict[str, Callable[[Any, int], Any]] = {
    **{t: _int_decoder(t) for t in _INT_RANGES},
    "double": _float_decoder("double"), "float": _float_decoder("float"),
    "bool": _dec_bool, "string": _dec_string, "bytes": _dec_bytes,
}


def _key_decoder(type_name: str) -> Callable[[str], Any]:
    """Map keys are always JSON strings; convert per key type."""
    if type_name == "string":
        return _check_key
    if type_name == "bool":
        def dec_bool_key(key: Any) -> bool:
            if key == "true":
                return True
            if key == "false":
                return False
            raise _Fail(f"invalid bool map key {_describe(key)}")
        return dec_bool_key
    lo, hi = _INT_RANGES[type_name]

    def dec_int_key(key: Any) -> int:
        if type(key) is not str or not _INT_STR_RE.match(key) or len(key) > 24:
            raise _Fail(f"invalid {type_name} map key {_describe(key)}")
        v = int(key)
        if v < lo or v > hi:
            raise _Fail(f"map key out of range for {type_name}")
        return v

    return dec_int_key


# --- well-known type decoders ---------------------------------------------------------------------


def _check_json_value(value: Any, depth: int) -> Any:
    """Validate a decoded JSON value (Struct/Value/ListValue contents); returns it unchanged."""
    t = type(value)
    if t is str:
        return _check_str(value)
    if value is None or t is bool or t is int:
        return value
    if t is float:
        if not math.isfinite(value):
            raise _Fail("number out of range")
        return value
    if depth > MAX_DEPTH:
        raise _Fail("JSON value nested too deeply")
    if t is dict:
        for k, item in value.items():
            try:
                _check_key(k)
                _check_json_value(item, depth + 1)
            except _Fail as exc:
                exc.segs.append(_key_seg(k))
                raise
        return value
    if t is list:
        for i, item in enumerate(value):
            try:
                _check_json_value(item, depth + 1)
            except _Fail as exc:
                exc.segs.append(f"[{i}]")
                raise
        return value
    raise _Fail(f"unsupported JSON value {_describe(value)}")


def _dec_value(value: Any, depth: int) -> Any:
    return _check_json_value(value, depth)


def _dec_struct(value: Any, depth: int) -> dict[str, Any]:
    if type(value) is not dict:
        raise _Fail(f"expected object, got {_describe(value)}")
    return _check_json_value(value, depth)


def _dec_list_value(value: Any, depth: int) -> list[Any]:
    if type(value) is not list:
        raise _Fail(f"expected array, got {_describe(value)}")
    return _check_json_value(value, depth)


def _dec_timestamp(value: Any, depth: int) -> str:
    if type(value) is not str:
        raise _Fail(f"expected RFC 3339 timestamp string, got {_describe(value)}")
    try:
        return wkt.normalize_timestamp(value)
    except ValueError as exc:
        raise _Fail(str(exc)) from None


def _dec_duration(value: Any, depth: int) -> float:
    if type(value) is not str:
        raise _Fail(f'expected duration string "<seconds>s", got {_describe(value)}')
    try:
        return wkt.duration_from_parts(*wkt.parse_duration(value))
    except ValueError as exc:
        raise _Fail(str(exc)) from None


def _dec_field_mask(value: Any, depth: int) -> list[str]:
    if type(value) is not str:
        raise _Fail(f"expected field mask string, got {_describe(value)}")
    try:
        return wkt.fieldmask_from_json(_check_str(value))
    except ValueError as exc:
        raise _Fail(str(exc)) from None


def _dec_empty(value: Any, depth: int) -> dict[str, Any]:
    if type(value) is not dict:
        raise _Fail(f"expected object, got {_describe(value)}")
    return {}


def _dec_any(value: Any, depth: int) -> Any:
    raise _Fail("google.protobuf.Any is not supported")


_WKT_DECODERS: dict[str, Callable[[Any, int], Any]] = {
    _STRUCT: _dec_struct, _VALUE: _dec_value, _LIST_VALUE: _dec_list_value,
    _TIMESTAMP: _dec_timestamp, _DURATION: _dec_duration, _FIELD_MASK: _dec_field_mask,
    _EMPTY: _dec_empty, _ANY: _dec_any,
    **{name: _SCALAR_DECODERS[t] for name, t in _WRAPPERS.items()},
}
#: In-memory default of a well-known type, for an empty top-level body.
_WKT_DEFAULTS: dict[str, Any] = {
    _STRUCT: {}, _VALUE: None, _LIST_VALUE: [], _TIMESTAMP: "1970-01-01T00:00:00Z",
    _DURATION: 0.0, _FIELD_MASK: [], _EMPTY: {},
    **{name: ({"bool": False, "string": "", "bytes": b""}.get(t, 0)) for name, t in _WRAPPERS.items()},
}


# --- scalar encoders: in-memory value -> JSON value ----------------------------------------------


def _as_int(value: Any) -> int:
    t = type(value)
    if t is int:
        return value
    if t is float and value.is_integer():
        return int(value)
    if t is not bool and isinstance(value, int):  # IntEnum and friends
        return int(value)
    raise _Fail(f"expected int, got {type(value).__name__} {value!r:.40}")


def _int_encoder(type_name: str) -> Callable[[Any, int], Any]:
    lo, hi = _INT_RANGES[type_name]
    as_string = type_name in ("int64", "uint64", "fixed64", "sint64", "sfixed64")

    def enc(value: Any, depth: int) -> Any:
        v = _as_int(value)
        if v < lo or v > hi:
            raise _Fail(f"integer {v} out of range for {type_name}")
        return str(v) if as_string else v

    return enc


def _float_encoder(type_name: str) -> Callable[[Any, int], Any]:
    def enc(value: Any, depth: int) -> Any:
        t = type(value)
        if t is float:
            v = value
        elif t is int or (t is not bool and isinstance(value, (int, float))):
            try:
                v = float(value)
            except OverflowError:
                raise _Fail(f"number out of range for {type_name}") from None
        else:
            raise _Fail(f"expected float, got {type(value).__name__}")
        if math.isfinite(v):
            return v
        if math.isnan(v):
            return "NaN"
        return "Infinity" if v > 0 else "-Infinity"

    return enc


def _enc_bool(value: Any, depth: int) -> bool:
    if value is True or value is False:
        return value
    raise _Fail(f"expected bool, got {type(value).__name__}")


def _enc_string(value: Any, depth: int) -> str:
    if type(value) is str:
        return value
    if isinstance(value, str):
        return str(value)
    raise _Fail(f"expected str, got {type(value).__name__}")


def _enc_bytes(value: Any, depth: int) -> str:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(value).decode("ascii")
    raise _Fail(f"expected bytes, got {type(value).__name__}")


_SCALAR_ENCODERS: dict[str, Callable[[Any, int], Any]] = {
    **{t: _int_encoder(t) for t in _INT_RANGES},
    "double": _float_encoder("double"), "float": _float_encoder("float"),
    "bool": _enc_bool, "string": _enc_string, "bytes": _enc_bytes,
}


def _key_encoder(type_name: str) -> Callable[[Any], str]:
    if type_name == "string":
        def enc_str_key(key: Any) -> str:
            if isinstance(key, str):
                return str(key)
            raise _Fail(f"map key must be str, got {type(key).__name__}")
        return enc_str_key
    if type_name == "bool":
        def enc_bool_key(key: Any) -> str:
            if key is True or key is False:
                return "true" if key else "false"
            raise _Fail(f"map key must be bool, got {type(key).__name__}")
        return enc_bool_key
    lo, hi = _INT_RANGES[type_name]

    def enc_int_key(key: Any) -> str:
        v = _as_int(key)
        if v < lo or v > hi:
            raise _Fail(f"map key {v} out of range for {type_name}")
        return str(v)

    return enc_int_key


# --- well-known type encoders ---------------------------------------------------------------------


def _json_value_out(value: Any, depth: int) -> Any:
    """Validated copy of a JSON-like value (tuples become lists)."""
    t = type(value)
    if value is None or t is str or t is bool or t is int:
        return value
    if t is float:
        if not math.isfinite(value):
            raise _Fail("a JSON value cannot be NaN or Infinity")
        return value
    if depth > MAX_DEPTH:
        raise _Fail("JSON value nested too deeply")
    if t is dict or isinstance(value, Mapping):
        out = {}
        for k, item in value.items():
            if not isinstance(k, str):
                raise _Fail(f"object keys must be str, got {type(k).__name__}")
            try:
                out[str(k)] = _json_value_out(item, depth + 1)
            except _Fail as exc:
                exc.segs.append(_key_seg(k))
                raise
        return out
    if t is list or t is tuple:
        items = []
        for i, item in enumerate(value):
            try:
                items.append(_json_value_out(item, depth + 1))
            except _Fail as exc:
                exc.segs.append(f"[{i}]")
                raise
        return items
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return _json_value_out(float(value), depth)
    if isinstance(value, str):
        return str(value)
    raise _Fail(f"{type(value).__name__} is not a JSON value")


def _enc_struct(value: Any, depth: int) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise _Fail(f"Struct must be a dict, got {type(value).__name__}")
    return _json_value_out(value, depth)


def _enc_list_value(value: Any, depth: int) -> list[Any]:
    if not isinstance(value, (list, tuple)):
        raise _Fail(f"ListValue must be a list, got {type(value).__name__}")
    return _json_value_out(value, depth)


def _enc_timestamp(value: Any, depth: int) -> str:
    try:
        if isinstance(value, str):
            return wkt.normalize_timestamp(value)
        if isinstance(value, datetime):
            return wkt.timestamp_from_datetime(value)
    except ValueError as exc:
        raise _Fail(str(exc)) from None
    raise _Fail(f"Timestamp must be an RFC 3339 str or datetime, got {type(value).__name__}")


def _enc_duration(value: Any, depth: int) -> str:
    try:
        return wkt.format_duration(*wkt.duration_to_parts(value))
    except ValueError as exc:
        raise _Fail(str(exc)) from None


def _enc_field_mask(value: Any, depth: int) -> str:
    if not isinstance(value, (list, tuple)):
        raise _Fail(f"FieldMask must be a list of paths, got {type(value).__name__}")
    try:
        return wkt.fieldmask_to_json(value)
    except ValueError as exc:
        raise _Fail(str(exc)) from None


def _enc_empty(value: Any, depth: int) -> dict[str, Any]:
    if not isinstance(value, Mapping) or value:
        raise _Fail("Empty must be {}")
    return {}


def _enc_any(value: Any, depth: int) -> Any:
    raise _Fail("google.protobuf.Any is not supported")


_WKT_ENCODERS: dict[str, Callable[[Any, int], Any]] = {
    _STRUCT: _enc_struct, _VALUE: _json_value_out, _LIST_VALUE: _enc_list_value,
    _TIMESTAMP: _enc_timestamp, _DURATION: _enc_duration, _FIELD_MASK: _enc_field_mask,
    _EMPTY: _enc_empty, _ANY: _enc_any,
    **{name: _SCALAR_ENCODERS[t] for name, t in _WRAPPERS.items()},
}

# Field kinds in an encode plan.
_K_PRESENCE = 0  # message / optional / oneof member: emitted only when set
_K_SCALAR = 1  # implicit presence: emit the default when absent
_K_LIST = 2
_K_MAP = 3
_K_VALUE = 4  # Value-typed with presence: None is a set JSON null


class _MessagePlan:
    """Compiled decode/encode steps for one message type."""

    __slots__ = ("name", "lookup", "fields", "oneofs", "decode", "encode")

    def __init__(self, name: str) -> None:
        self.name = name
        # JSON key (json_name and proto name) -> (field name, decoder, drop-if-default kind,
        # other members of its oneof, null-is-a-value)
        self.lookup: dict[str, tuple[str, Callable[[Any, int], Any], int, tuple[str, ...], bool]] = {}
        # (field name, json name, encoder, kind, default JSON value)
        self.fields: list[tuple[str, str, Callable[[Any, int], Any], int, Any]] = []
        self.oneofs: tuple[tuple[str, ...], ...] = ()
        self.decode: Callable[[Any, int], Any] = self._decode
        self.encode: Callable[[Any, int], Any] = self._encode

    def _decode(self, obj: Any, depth: int) -> dict[str, Any]:
        if type(obj) is not dict:
            raise _Fail(f"expected object for {self.name}, got {_describe(obj)}")
        if depth > MAX_DEPTH:
            raise _Fail("message nested too deeply")
        out: dict[str, Any] = {}
        lookup = self.lookup
        for key, value in obj.items():
            entry = lookup.get(key)
            if entry is None:
                continue  # unknown keys are ignored (§9)
            name, dec, drop, others, null_ok = entry
            if value is None and not null_ok:
                out.pop(name, None)  # null = unset; a later spelling wins over an earlier one
                continue
            try:
                v = dec(value, depth + 1)
            except _Fail as exc:
                exc.segs.append("." + name)
                raise
            if v is _UNSET or (drop == 1 and not v) or (drop == 2 and not v and
                                                         math.copysign(1.0, v) > 0):
                out.pop(name, None)
                continue
            for other in others:  # oneof: the last member seen wins (as on the wire, §7)
                out.pop(other, None)
            out[name] = v
        return out

    def _encode(self, msg: Any, depth: int) -> dict[str, Any]:
        if type(msg) is not dict and not isinstance(msg, Mapping):
            raise _Fail(f"expected dict for {self.name}, got {type(msg).__name__}")
        if depth > MAX_DEPTH:
            raise _Fail("message nested too deeply")
        out: dict[str, Any] = {}
        seen = 0
        get = msg.get
        for name, json_name, enc, kind, default in self.fields:
            value = get(name, _MISSING)
            if value is _MISSING:
                pass
            else:
                seen += 1
                if value is not None or kind == _K_VALUE:
                    try:
                        out[json_name] = enc(value, depth + 1)
                    except _Fail as exc:
                        exc.segs.append("." + name)
                        raise
                    continue
            if kind == _K_SCALAR:
                out[json_name] = default
            elif kind == _K_LIST:
                out[json_name] = []
            elif kind == _K_MAP:
                out[json_name] = {}
        if seen != len(msg):
            unknown = sorted(str(k) for k in msg if not isinstance(k, str) or k not in
                             {f[0] for f in self.fields})
            raise _Fail(f"unknown field(s) for {self.name}: {', '.join(unknown)}")
        for members in self.oneofs:
            present = [m for m in members if get(m) is not None]  # None = unset
            if len(present) > 1:
                raise _Fail(f"more than one member of a oneof is set: {', '.join(present)}")
        return out


class _Codec:
    """Per-schema compiled plans, built lazily (thread-safe) and kept on the schema."""

    def __init__(self, schema: Schema) -> None:
        self.schema = schema
        self.plans: dict[str, _MessagePlan] = {}
        self.lock = threading.Lock()

    def plan(self, name: str) -> _MessagePlan:
        plan = self.plans.get(name)
        if plan is None:
            with self.lock:
                plan = self.plans.get(name)
                if plan is None:
                    full = self.schema.message(name).full_name  # KeyError: unknown type
                    plan = self.plans.get(full)
                    if plan is None:
                        plan = self._build(full)
                        self.plans[full] = plan
                    self.plans[name] = plan
        return plan

    # decoders / encoders for one (non-repeated) value of a field's type

    def _message_coders(self, type_name: str) -> tuple[Callable[[Any, int], Any],
                                                       Callable[[Any, int], Any]]:
        if type_name in _WKT_DECODERS:
            return _WKT_DECODERS[type_name], _WKT_ENCODERS[type_name]
        resolved: list[_MessagePlan] = []

        def plan() -> _MessagePlan:
            if not resolved:
                resolved.append(self.plan(type_name))  # lazily: types may be recursive
            return resolved[0]

        return (lambda v, d: plan()._decode(v, d)), (lambda v, d: plan()._encode(v, d))

    def _enum_coders(self, type_name: str) -> tuple[Callable[[Any, int], Any],
                                                    Callable[[Any, int], Any]]:
        enum = self.schema.enum(type_name)
        values = enum.values
        by_number = enum.by_number
        is_null = type_name == _NULL_VALUE

        def dec(value: Any, depth: int) -> Any:
            t = type(value)
            if t is str:
                n = values.get(value)
                return _UNSET if n is None else n  # unknown name: leave unset (§9)
            if t is int or (t is float and value.is_integer()):
                n = int(value)
                if -(1 << 31) <= n < (1 << 31):
                    return n
                raise _Fail("enum number out of int32 range")
            raise _Fail(f"expected {enum.name} name or number, got {_describe(value)}")

        def enc(value: Any, depth: int) -> Any:
            if is_null:
                return None
            if type(value) is str:
                if value in values:
                    return value
                raise _Fail(f"unknown {enum.name} value {value!r}")
            n = _as_int(value)
            if not -(1 << 31) <= n < (1 << 31):
                raise _Fail("enum number out of int32 range")
            return by_number.get(n, n)

        return dec, enc

    def _single_coders(self, ftype: str, type_name: str | None) -> tuple[
            Callable[[Any, int], Any], Callable[[Any, int], Any]]:
        if ftype == "message":
            assert type_name is not None
            return self._message_coders(type_name)
        if ftype == "enum":
            assert type_name is not None
            return self._enum_coders(type_name)
        return _SCALAR_DECODERS[ftype], _SCALAR_ENCODERS[ftype]

    def _build(self, name: str) -> _MessagePlan:
        schema = self.schema
        if name in _WKT_DECODERS:
            plan = _MessagePlan(name)
            plan.decode, plan.encode = _WKT_DECODERS[name], _WKT_ENCODERS[name]
            return plan
        md = schema.message(name)
        plan = _MessagePlan(md.full_name)
        for f in md.fields:
            null_ok = False
            if f.is_map:
                entry = schema.message(f.type_name or "")
                vf = entry.by_number[2]
                vdec, venc = self._single_coders(vf.type, vf.type_name)
                dec = _map_decoder(_key_decoder(f.map_key_type or ""), vdec,
                                   vf.type_name == _VALUE)
                enc = _map_encoder(_key_encoder(f.map_key_type or ""), venc)
                kind, drop, default = _K_MAP, 1, None
            elif f.is_list:
                edec, eenc = self._single_coders(f.type, f.type_name)
                dec = _list_decoder(edec, f.type_name == _VALUE)
                enc = _list_encoder(eenc)
                kind, drop, default = _K_LIST, 1, None
            else:
                dec, enc = self._single_coders(f.type, f.type_name)
                if f.type_name == _VALUE:
                    null_ok = True
                    kind, drop, default = _K_VALUE, 0, None
                elif f.has_presence:
                    kind, drop, default = _K_PRESENCE, 0, None
                else:
                    kind = _K_SCALAR
                    drop = 2 if f.type in ("double", "float") else 1  # keep -0.0
                    default = self._default_json(f.type, f.type_name)
            others = tuple(m for m in md.oneofs.get(f.oneof, ()) if m != f.name) if f.oneof else ()
            entry_t = (f.name, dec, drop, others, null_ok)
            plan.lookup[f.json_name] = entry_t
            plan.lookup.setdefault(f.name, entry_t)
            plan.fields.append((f.name, f.json_name, enc, kind, default))
        plan.oneofs = tuple(md.oneofs.values())
        return plan

    def _default_json(self, ftype: str, type_name: str | None) -> Any:
        if ftype == "enum":
            assert type_name is not None
            if type_name == _NULL_VALUE:
                return None
            return self.schema.enum(type_name).by_number.get(0, 0)
        if ftype in ("int64", "uint64", "fixed64", "sint64", "sfixed64"):
            return "0"
        return {"double": 0, "float": 0, "bool": False, "string": "", "bytes": ""}.get(ftype, 0)


def _list_decoder(elem: Callable[[Any, int], Any], null_ok: bool) -> Callable[[Any, int], Any]:
    def dec(value: Any, depth: int) -> list[Any]:
        if type(value) is not list:
            raise _Fail(f"expected array, got {_describe(value)}")
        out = []
        for i, item in enumerate(value):
            try:
                if item is None and not null_ok:
                    raise _Fail("null is not allowed in a repeated field")
                v = elem(item, depth)
            except _Fail as exc:
                exc.segs.append(f"[{i}]")
                raise
            if v is not _UNSET:
                out.append(v)
        return out

    return dec


def _list_encoder(elem: Callable[[Any, int], Any]) -> Callable[[Any, int], Any]:
    def enc(value: Any, depth: int) -> list[Any]:
        if not isinstance(value, (list, tuple)):
            raise _Fail(f"repeated field must be a list, got {type(value).__name__}")
        out = []
        for i, item in enumerate(value):
            try:
                out.append(elem(item, depth))
            except _Fail as exc:
                exc.segs.append(f"[{i}]")
                raise
        return out

    return enc


def _map_decoder(key: Callable[[str], Any], val: Callable[[Any, int], Any],
                 null_ok: bool) -> Callable[[Any, int], Any]:
    def dec(value: Any, depth: int) -> dict[Any, Any]:
        if type(value) is not dict:
            raise _Fail(f"expected object, got {_describe(value)}")
        out = {}
        for k, item in value.items():
            try:
                kk = key(k)
                if item is None and not null_ok:
                    raise _Fail("null is not allowed as a map value")
                v = val(item, depth)
            except _Fail as exc:
                exc.segs.append(_key_seg(k))
                raise
            if v is not _UNSET:
                out[kk] = v
        return out

    return dec


def _map_encoder(key: Callable[[Any], str], val: Callable[[Any, int], Any]) -> Callable[[Any, int], Any]:
    def enc(value: Any, depth: int) -> dict[str, Any]:
        if not isinstance(value, Mapping):
            raise _Fail(f"map field must be a dict, got {type(value).__name__}")
        out = {}
        for k, item in value.items():
            try:
                out[key(k)] = val(item, depth)
            except _Fail as exc:
                exc.segs.append(_key_seg(k))
                raise
        return out

    return enc


def _codec(schema: Schema) -> _Codec:
    codec = schema.codec_cache.get("json")
    if codec is None:
        codec = schema.codec_cache.setdefault("json", _Codec(schema))
    return codec


# --- public API -----------------------------------------------------------------------------------


def from_json(schema: Schema, message_name: str, obj: Any) -> Any:
    """Decode a JSON value (as from :func:`json.loads`) of message ``message_name`` into the
    in-memory form. Raises :class:`DecodeError` (never anything else) on bad input.

    For an ordinary message the result is a dict; for a well-known type at the top level, its
    in-memory form (e.g. a string for ``google.protobuf.Timestamp``)."""
    plan = _codec(schema).plan(message_name)
    try:
        return plan.decode(obj, 0)
    except _Fail as exc:
        raise DecodeError(exc.reason, exc.path()) from None
    except RecursionError:
        raise DecodeError("input nested too deeply") from None


def to_json(schema: Schema, message_name: str, msg: Any) -> Any:
    """Encode an in-memory message as a JSON-ready value (dict for ordinary messages).
    Raises :class:`EncodeError` when ``msg`` does not fit the schema."""
    plan = _codec(schema).plan(message_name)
    try:
        return plan.encode(msg, 0)
    except _Fail as exc:
        raise EncodeError(exc.reason, exc.path()) from None
    except RecursionError:
        raise EncodeError("value nested too deeply") from None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"invalid JSON literal {name}")


_decoder = json.JSONDecoder(parse_constant=_reject_constant)


def from_json_bytes(schema: Schema, message_name: str, data: bytes | bytearray | memoryview, *,
                    max_bytes: int = MAX_JSON_BYTES) -> Any:
    """Decode a UTF-8 JSON body. An empty body is the all-defaults message (connect.md §3.1).
    Malformed input raises :class:`DecodeError`; a body over ``max_bytes`` raises
    :class:`DecodeLimitError`. Nothing else escapes."""
    if len(data) > max_bytes:
        raise DecodeLimitError(f"message larger than {max_bytes} bytes")
    if len(data) == 0:
        name = _codec(schema).plan(message_name).name
        default = _WKT_DEFAULTS.get(name, _MISSING)
        return {} if default is _MISSING else (default.copy() if isinstance(default, (dict, list))
                                               else default)
    try:
        text = str(data, "utf-8")
    except UnicodeDecodeError as exc:
        raise DecodeError(f"invalid UTF-8 at byte {exc.start}") from None
    except TypeError:
        raise DecodeError("expected bytes") from None
    if text.startswith("\ufeff"):  # RFC 8259 §8.1: senders must not add one; Go rejects it too
        raise DecodeError("invalid JSON: unexpected UTF-8 BOM")
    try:
        obj = _decoder.decode(text)
    except RecursionError:
        raise DecodeError("JSON nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, huge integer literals, NaN/Infinity literals
        raise DecodeError(f"invalid JSON: {exc}") from None
    return from_json(schema, message_name, obj)


def to_json_bytes(schema: Schema, message_name: str, msg: Any) -> bytes:
    """Encode as compact UTF-8 JSON (no spaces, non-ASCII kept as UTF-8)."""
    value = to_json(schema, message_name, msg)
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"),
                          allow_nan=False).encode("utf-8")
    except UnicodeEncodeError:
        raise EncodeError("string is not valid UTF-8 (lone surrogate)") from None
    except (TypeError, ValueError) as exc:  # pragma: no cover - to_json output is plain JSON
        raise EncodeError(str(exc)) from None


# --- helpers --------------------------------------------------------------------------------------


def enum_number(schema: Schema, enum_type: str, value: str | int) -> int:
    """A value name (or number) of ``enum_type`` -> its number; ``KeyError`` for unknown names."""
    if isinstance(value, str):
        return schema.enum(enum_type).values[value]
    return int(value)


def enum_name(schema: Schema, enum_type: str, number: int) -> str | int:
    """A number of ``enum_type`` -> its value name (the number itself when not declared)."""
    return schema.enum(enum_type).by_number.get(number, number)


def get_payload(msg: Mapping[str, Any], field: str = "data") -> Any:
    """Read a data/data_value pair (connect.md §10): ``<field>_value`` when present, else the
    Struct ``<field>``, else ``None``."""
    value_key = field + "_value"
    if value_key in msg:
        return msg[value_key]
    return msg.get(field)


def set_payload(msg: dict[str, Any], field: str, value: Any) -> dict[str, Any]:
    """Write a data/data_value pair (connect.md §10): a dict goes into the Struct ``<field>``,
    anything else (list, str, number, bool, None) into ``<field>_value``; the other one is
    cleared. Returns ``msg``."""
    value_key = field + "_value"
    if isinstance(value, dict):
        msg[field] = value
        msg.pop(value_key, None)
    else:
        msg[value_key] = value
        msg.pop(field, None)
    return msg
