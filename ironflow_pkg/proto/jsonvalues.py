"""Leaf coders of the proto3 JSON mapping (connect.md §9), used by :mod:`.jsoncodec`.

One decoder and one encoder per scalar type, map key type and well-known type. A decoder takes
``(JSON value, depth)`` and returns the in-memory value; an encoder does the reverse. Both raise
:class:`Fail` with a reason; the message-level code in :mod:`.jsoncodec` adds the field path and
turns it into ``DecodeError`` / ``EncodeError``. Nothing here knows about messages or schemas.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Callable

from . import wkt
from .wkt import (  # the well-known type names both codecs use
    STRUCT as _STRUCT,
    VALUE,
    LIST_VALUE as _LIST_VALUE,
    NULL_VALUE,
    TIMESTAMP as _TIMESTAMP,
    DURATION as _DURATION,
    FIELD_MASK as _FIELD_MASK,
    EMPTY as _EMPTY,
    ANY as _ANY,
    WRAPPERS as _WRAPPERS,
)

#: Deepest nesting of messages/Values accepted or produced (protobuf's default recursion limit).
MAX_DEPTH = 100


class Fail(Exception):
    """Internal: a failure plus the path segments collected on the way out (innermost first)."""

    __slots__ = ("reason", "segs")

    def __init__(self, reason: str) -> None:
        self.reason = reason
        self.segs: list[str] = []

    def path(self) -> str:
        return "".join(reversed(self.segs)).lstrip(".")


UNSET = object()  # decoder result: leave the field unset (unknown enum name)
MISSING = object()


_INT_RANGES = {
    "int32": (-(1 << 31), (1 << 31) - 1), "sint32": (-(1 << 31), (1 << 31) - 1),
    "sfixed32": (-(1 << 31), (1 << 31) - 1), "uint32": (0, (1 << 32) - 1),
    "fixed32": (0, (1 << 32) - 1), "int64": (-(1 << 63), (1 << 63) - 1),
    "sint64": (-(1 << 63), (1 << 63) - 1), "sfixed64": (-(1 << 63), (1 << 63) - 1),
    "uint64": (0, (1 << 64) - 1), "fixed64": (0, (1 << 64) - 1),
}
INT64_TYPES = frozenset({"int64", "uint64", "fixed64", "sint64", "sfixed64"})
_FLOAT32_MAX = 3.4028234663852886e38

_INT_STR_RE = re.compile(r"-?[0-9]+\Z", re.ASCII)
_NUMBER_RE = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?\Z", re.ASCII)
_SURROGATE_RE = re.compile(r"[\ud800-\udfff]")
_B64_RE = re.compile(r"[A-Za-z0-9+/\-_]*={0,2}\Z", re.ASCII)
_SPECIAL_FLOATS = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def describe(value: Any) -> str:
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


def key_seg(key: Any) -> str:
    try:
        return "[" + json.dumps(key, ensure_ascii=True) + "]"
    except (TypeError, ValueError):
        return f"[{key!r}]"


def _check_str(s: str) -> str:
    if not s.isascii() and _SURROGATE_RE.search(s):
        raise Fail("invalid UTF-8 in string (lone surrogate)")
    return s


def _check_key(k: Any) -> str:
    """Object keys: always strings in JSON (guards callers passing non-JSON dicts)."""
    if type(k) is not str:
        raise Fail(f"object keys must be strings, got {type(k).__name__}")
    return _check_str(k)


# --- scalar decoders: (JSON value, depth) -> in-memory value --------------------------------------


def _int_from_str(s: str) -> int:
    if _INT_STR_RE.match(s):
        digits = s.lstrip("-").lstrip("0")
        if len(digits) > 24:
            raise Fail("integer out of range")
        return int(s)
    if _NUMBER_RE.match(s):
        try:
            d = Decimal(s)
        except InvalidOperation:  # pragma: no cover - the regex admits only valid numbers
            raise Fail("expected integer") from None
        if d.adjusted() > 24:
            raise Fail("integer out of range")
        if d != d.to_integral_value():
            raise Fail(f"expected integer, got fractional {describe(s)}")
        return int(d)
    raise Fail(f"expected integer, got {describe(s)}")


def _int_decoder(type_name: str) -> Callable[[Any, int], Any]:
    lo, hi = _INT_RANGES[type_name]

    def dec(value: Any, depth: int) -> int:
        t = type(value)
        if t is int:
            v = value
        elif t is float:
            if not value.is_integer():
                raise Fail(f"expected integer, got fractional {describe(value)}")
            v = int(value)
        elif t is str:
            v = _int_from_str(value)
        else:
            raise Fail(f"expected integer, got {describe(value)}")
        if v < lo or v > hi:
            raise Fail(f"integer out of range for {type_name}")
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
                raise Fail("number out of range") from None
        elif t is str:
            special = _SPECIAL_FLOATS.get(value)
            if special is not None:
                return special
            if not _NUMBER_RE.match(value):
                raise Fail(f"expected number, got {describe(value)}")
            v = float(value)
        else:
            raise Fail(f"expected number, got {describe(value)}")
        if not math.isfinite(v) or (single and abs(v) > _FLOAT32_MAX):
            raise Fail(f"number out of range for {type_name}")
        return v

    return dec


def _dec_bool(value: Any, depth: int) -> bool:
    if value is True or value is False:
        return value
    raise Fail(f"expected boolean, got {describe(value)}")


def _dec_string(value: Any, depth: int) -> str:
    if type(value) is str:
        return _check_str(value)
    raise Fail(f"expected string, got {describe(value)}")


def _dec_bytes(value: Any, depth: int) -> bytes:
    if type(value) is not str:
        raise Fail(f"expected base64 string, got {describe(value)}")
    s = value.rstrip("=")
    if (not _B64_RE.match(value) or len(s) % 4 == 1
            or (len(s) != len(value) and (len(value) % 4 or not s))):  # padding only if whole
        raise Fail("invalid base64")
    if "-" in s or "_" in s:
        s = s.replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(s + "=" * (-len(s) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise Fail("invalid base64") from None


SCALAR_DECODERS: dict[str, Callable[[Any, int], Any]] = {
    **{t: _int_decoder(t) for t in _INT_RANGES},
    "double": _float_decoder("double"), "float": _float_decoder("float"),
    "bool": _dec_bool, "string": _dec_string, "bytes": _dec_bytes,
}


def key_decoder(type_name: str) -> Callable[[str], Any]:
    """Map keys are always JSON strings; convert per key type."""
    if type_name == "string":
        return _check_key
    if type_name == "bool":
        def dec_bool_key(key: Any) -> bool:
            if key == "true":
                return True
            if key == "false":
                return False
            raise Fail(f"invalid bool map key {describe(key)}")
        return dec_bool_key
    lo, hi = _INT_RANGES[type_name]

    def dec_int_key(key: Any) -> int:
        if type(key) is not str or not _INT_STR_RE.match(key) or len(key) > 24:
            raise Fail(f"invalid {type_name} map key {describe(key)}")
        v = int(key)
        if v < lo or v > hi:
            raise Fail(f"map key out of range for {type_name}")
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
            raise Fail("number out of range")
        return value
    if depth > MAX_DEPTH:
        raise Fail("JSON value nested too deeply")
    if t is dict:
        for k, item in value.items():
            try:
                _check_key(k)
                _check_json_value(item, depth + 1)
            except Fail as exc:
                exc.segs.append(key_seg(k))
                raise
        return value
    if t is list:
        for i, item in enumerate(value):
            try:
                _check_json_value(item, depth + 1)
            except Fail as exc:
                exc.segs.append(f"[{i}]")
                raise
        return value
    raise Fail(f"unsupported JSON value {describe(value)}")


def _dec_value(value: Any, depth: int) -> Any:
    return _check_json_value(value, depth)


def _dec_struct(value: Any, depth: int) -> dict[str, Any]:
    if type(value) is not dict:
        raise Fail(f"expected object, got {describe(value)}")
    return _check_json_value(value, depth)


def _dec_list_value(value: Any, depth: int) -> list[Any]:
    if type(value) is not list:
        raise Fail(f"expected array, got {describe(value)}")
    return _check_json_value(value, depth)


def _dec_timestamp(value: Any, depth: int) -> str:
    if type(value) is not str:
        raise Fail(f"expected RFC 3339 timestamp string, got {describe(value)}")
    try:
        return wkt.normalize_timestamp(value)
    except ValueError as exc:
        raise Fail(str(exc)) from None


def _dec_duration(value: Any, depth: int) -> float:
    if type(value) is not str:
        raise Fail(f'expected duration string "<seconds>s", got {describe(value)}')
    try:
        return wkt.duration_from_parts(*wkt.parse_duration(value))
    except ValueError as exc:
        raise Fail(str(exc)) from None


def _dec_field_mask(value: Any, depth: int) -> list[str]:
    if type(value) is not str:
        raise Fail(f"expected field mask string, got {describe(value)}")
    try:
        return wkt.fieldmask_from_json(_check_str(value))
    except ValueError as exc:
        raise Fail(str(exc)) from None


def _dec_empty(value: Any, depth: int) -> dict[str, Any]:
    if type(value) is not dict:
        raise Fail(f"expected object, got {describe(value)}")
    return {}


def _dec_any(value: Any, depth: int) -> Any:
    raise Fail("google.protobuf.Any is not supported")


WKT_DECODERS: dict[str, Callable[[Any, int], Any]] = {
    _STRUCT: _dec_struct, VALUE: _dec_value, _LIST_VALUE: _dec_list_value,
    _TIMESTAMP: _dec_timestamp, _DURATION: _dec_duration, _FIELD_MASK: _dec_field_mask,
    _EMPTY: _dec_empty, _ANY: _dec_any,
    **{name: SCALAR_DECODERS[t] for name, t in _WRAPPERS.items()},
}
#: In-memory default of a well-known type, for an empty top-level body.
WKT_DEFAULTS: dict[str, Any] = {
    _STRUCT: {}, VALUE: None, _LIST_VALUE: [], _TIMESTAMP: "1970-01-01T00:00:00Z",
    _DURATION: 0.0, _FIELD_MASK: [], _EMPTY: {},
    **{name: ({"bool": False, "string": "", "bytes": b""}.get(t, 0)) for name, t in _WRAPPERS.items()},
}


# --- scalar encoders: in-memory value -> JSON value ----------------------------------------------


def as_int(value: Any) -> int:
    t = type(value)
    if t is int:
        return value
    if t is float and value.is_integer():
        return int(value)
    if t is not bool and isinstance(value, int):  # IntEnum and friends
        return int(value)
    raise Fail(f"expected int, got {type(value).__name__} {value!r:.40}")


def _int_encoder(type_name: str) -> Callable[[Any, int], Any]:
    lo, hi = _INT_RANGES[type_name]
    as_string = type_name in INT64_TYPES

    def enc(value: Any, depth: int) -> Any:
        v = as_int(value)
        if v < lo or v > hi:
            raise Fail(f"integer {v} out of range for {type_name}")
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
                raise Fail(f"number out of range for {type_name}") from None
        else:
            raise Fail(f"expected float, got {type(value).__name__}")
        if math.isfinite(v):
            return v
        if math.isnan(v):
            return "NaN"
        return "Infinity" if v > 0 else "-Infinity"

    return enc


def _enc_bool(value: Any, depth: int) -> bool:
    if value is True or value is False:
        return value
    raise Fail(f"expected bool, got {type(value).__name__}")


def _enc_string(value: Any, depth: int) -> str:
    if type(value) is str:
        return value
    if isinstance(value, str):
        return str(value)
    raise Fail(f"expected str, got {type(value).__name__}")


def _enc_bytes(value: Any, depth: int) -> str:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(value).decode("ascii")
    raise Fail(f"expected bytes, got {type(value).__name__}")


SCALAR_ENCODERS: dict[str, Callable[[Any, int], Any]] = {
    **{t: _int_encoder(t) for t in _INT_RANGES},
    "double": _float_encoder("double"), "float": _float_encoder("float"),
    "bool": _enc_bool, "string": _enc_string, "bytes": _enc_bytes,
}


def key_encoder(type_name: str) -> Callable[[Any], str]:
    if type_name == "string":
        def enc_str_key(key: Any) -> str:
            if isinstance(key, str):
                return str(key)
            raise Fail(f"map key must be str, got {type(key).__name__}")
        return enc_str_key
    if type_name == "bool":
        def enc_bool_key(key: Any) -> str:
            if key is True or key is False:
                return "true" if key else "false"
            raise Fail(f"map key must be bool, got {type(key).__name__}")
        return enc_bool_key
    lo, hi = _INT_RANGES[type_name]

    def enc_int_key(key: Any) -> str:
        v = as_int(key)
        if v < lo or v > hi:
            raise Fail(f"map key {v} out of range for {type_name}")
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
            raise Fail("a JSON value cannot be NaN or Infinity")
        return value
    if depth > MAX_DEPTH:
        raise Fail("JSON value nested too deeply")
    if t is dict or isinstance(value, Mapping):
        out = {}
        for k, item in value.items():
            if not isinstance(k, str):
                raise Fail(f"object keys must be str, got {type(k).__name__}")
            try:
                out[str(k)] = _json_value_out(item, depth + 1)
            except Fail as exc:
                exc.segs.append(key_seg(k))
                raise
        return out
    if t is list or t is tuple:
        items = []
        for i, item in enumerate(value):
            try:
                items.append(_json_value_out(item, depth + 1))
            except Fail as exc:
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
    raise Fail(f"{type(value).__name__} is not a JSON value")


def _enc_struct(value: Any, depth: int) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise Fail(f"Struct must be a dict, got {type(value).__name__}")
    return _json_value_out(value, depth)


def _enc_list_value(value: Any, depth: int) -> list[Any]:
    if not isinstance(value, (list, tuple)):
        raise Fail(f"ListValue must be a list, got {type(value).__name__}")
    return _json_value_out(value, depth)


def _enc_timestamp(value: Any, depth: int) -> str:
    try:
        if isinstance(value, str):
            return wkt.normalize_timestamp(value)
        if isinstance(value, datetime):
            return wkt.timestamp_from_datetime(value)
    except ValueError as exc:
        raise Fail(str(exc)) from None
    raise Fail(f"Timestamp must be an RFC 3339 str or datetime, got {type(value).__name__}")


def _enc_duration(value: Any, depth: int) -> str:
    try:
        return wkt.format_duration(*wkt.duration_to_parts(value))
    except ValueError as exc:
        raise Fail(str(exc)) from None


def _enc_field_mask(value: Any, depth: int) -> str:
    if not isinstance(value, (list, tuple)):
        raise Fail(f"FieldMask must be a list of paths, got {type(value).__name__}")
    try:
        return wkt.fieldmask_to_json(value)
    except ValueError as exc:
        raise Fail(str(exc)) from None


def _enc_empty(value: Any, depth: int) -> dict[str, Any]:
    if not isinstance(value, Mapping) or value:
        raise Fail("Empty must be {}")
    return {}


def _enc_any(value: Any, depth: int) -> Any:
    raise Fail("google.protobuf.Any is not supported")


WKT_ENCODERS: dict[str, Callable[[Any, int], Any]] = {
    _STRUCT: _enc_struct, VALUE: _json_value_out, _LIST_VALUE: _enc_list_value,
    _TIMESTAMP: _enc_timestamp, _DURATION: _enc_duration, _FIELD_MASK: _enc_field_mask,
    _EMPTY: _enc_empty, _ANY: _enc_any,
    **{name: SCALAR_ENCODERS[t] for name, t in _WRAPPERS.items()},
}
