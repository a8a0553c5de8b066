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

import json
import math
import threading
from collections.abc import Mapping
from typing import Any, Callable

from .descriptors import Schema
from .jsonvalues import (
    INT64_TYPES,
    MAX_DEPTH,
    MISSING,
    NULL_VALUE,
    SCALAR_DECODERS,
    SCALAR_ENCODERS,
    UNSET,
    VALUE,
    WKT_DECODERS,
    WKT_DEFAULTS,
    WKT_ENCODERS,
    Fail,
    as_int,
    describe,
    key_decoder,
    key_encoder,
    key_seg,
)

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
            raise Fail(f"expected object for {self.name}, got {describe(obj)}")
        if depth > MAX_DEPTH:
            raise Fail("message nested too deeply")
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
            except Fail as exc:
                exc.segs.append("." + name)
                raise
            if v is UNSET or (drop == 1 and not v) or (drop == 2 and not v and
                                                         math.copysign(1.0, v) > 0):
                out.pop(name, None)
                continue
            for other in others:  # oneof: the last member seen wins (as on the wire, §7)
                out.pop(other, None)
            out[name] = v
        return out

    def _encode(self, msg: Any, depth: int) -> dict[str, Any]:
        if type(msg) is not dict and not isinstance(msg, Mapping):
            raise Fail(f"expected dict for {self.name}, got {type(msg).__name__}")
        if depth > MAX_DEPTH:
            raise Fail("message nested too deeply")
        out: dict[str, Any] = {}
        seen = 0
        get = msg.get
        for name, json_name, enc, kind, default in self.fields:
            value = get(name, MISSING)
            if value is MISSING:
                pass
            else:
                seen += 1
                if value is not None or kind == _K_VALUE:
                    try:
                        out[json_name] = enc(value, depth + 1)
                    except Fail as exc:
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
            raise Fail(f"unknown field(s) for {self.name}: {', '.join(unknown)}")
        for members in self.oneofs:
            present = [m for m in members if get(m) is not None]  # None = unset
            if len(present) > 1:
                raise Fail(f"more than one member of a oneof is set: {', '.join(present)}")
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
        if type_name in WKT_DECODERS:
            return WKT_DECODERS[type_name], WKT_ENCODERS[type_name]
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
        is_null = type_name == NULL_VALUE

        def dec(value: Any, depth: int) -> Any:
            t = type(value)
            if t is str:
                n = values.get(value)
                return UNSET if n is None else n  # unknown name: leave unset (§9)
            if t is int or (t is float and value.is_integer()):
                n = int(value)
                if -(1 << 31) <= n < (1 << 31):
                    return n
                raise Fail("enum number out of int32 range")
            raise Fail(f"expected {enum.name} name or number, got {describe(value)}")

        def enc(value: Any, depth: int) -> Any:
            if is_null:
                return None
            if type(value) is str:
                if value in values:
                    return value
                raise Fail(f"unknown {enum.name} value {value!r}")
            n = as_int(value)
            if not -(1 << 31) <= n < (1 << 31):
                raise Fail("enum number out of int32 range")
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
        return SCALAR_DECODERS[ftype], SCALAR_ENCODERS[ftype]

    def _build(self, name: str) -> _MessagePlan:
        schema = self.schema
        if name in WKT_DECODERS:
            plan = _MessagePlan(name)
            plan.decode, plan.encode = WKT_DECODERS[name], WKT_ENCODERS[name]
            return plan
        md = schema.message(name)
        plan = _MessagePlan(md.full_name)
        for f in md.fields:
            null_ok = False
            if f.is_map:
                entry = schema.message(f.type_name or "")
                vf = entry.by_number[2]
                vdec, venc = self._single_coders(vf.type, vf.type_name)
                dec = _map_decoder(key_decoder(f.map_key_type or ""), vdec,
                                   vf.type_name == VALUE)
                enc = _map_encoder(key_encoder(f.map_key_type or ""), venc)
                kind, drop, default = _K_MAP, 1, None
            elif f.is_list:
                edec, eenc = self._single_coders(f.type, f.type_name)
                dec = _list_decoder(edec, f.type_name == VALUE)
                enc = _list_encoder(eenc)
                kind, drop, default = _K_LIST, 1, None
            else:
                dec, enc = self._single_coders(f.type, f.type_name)
                if f.type_name == VALUE:
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
            if type_name == NULL_VALUE:
                return None
            return self.schema.enum(type_name).by_number.get(0, 0)
        if ftype in INT64_TYPES:
            return "0"
        return {"double": 0, "float": 0, "bool": False, "string": "", "bytes": ""}.get(ftype, 0)


def _list_decoder(elem: Callable[[Any, int], Any], null_ok: bool) -> Callable[[Any, int], Any]:
    def dec(value: Any, depth: int) -> list[Any]:
        if type(value) is not list:
            raise Fail(f"expected array, got {describe(value)}")
        out = []
        for i, item in enumerate(value):
            try:
                if item is None and not null_ok:
                    raise Fail("null is not allowed in a repeated field")
                v = elem(item, depth)
            except Fail as exc:
                exc.segs.append(f"[{i}]")
                raise
            if v is not UNSET:
                out.append(v)
        return out

    return dec


def _list_encoder(elem: Callable[[Any, int], Any]) -> Callable[[Any, int], Any]:
    def enc(value: Any, depth: int) -> list[Any]:
        if not isinstance(value, (list, tuple)):
            raise Fail(f"repeated field must be a list, got {type(value).__name__}")
        out = []
        for i, item in enumerate(value):
            try:
                out.append(elem(item, depth))
            except Fail as exc:
                exc.segs.append(f"[{i}]")
                raise
        return out

    return enc


def _map_decoder(key: Callable[[str], Any], val: Callable[[Any, int], Any],
                 null_ok: bool) -> Callable[[Any, int], Any]:
    def dec(value: Any, depth: int) -> dict[Any, Any]:
        if type(value) is not dict:
            raise Fail(f"expected object, got {describe(value)}")
        out = {}
        for k, item in value.items():
            try:
                kk = key(k)
                if item is None and not null_ok:
                    raise Fail("null is not allowed as a map value")
                v = val(item, depth)
            except Fail as exc:
                exc.segs.append(key_seg(k))
                raise
            if v is not UNSET:
                out[kk] = v
        return out

    return dec


def _map_encoder(key: Callable[[Any], str], val: Callable[[Any, int], Any]) -> Callable[[Any, int], Any]:
    def enc(value: Any, depth: int) -> dict[str, Any]:
        if not isinstance(value, Mapping):
            raise Fail(f"map field must be a dict, got {type(value).__name__}")
        out = {}
        for k, item in value.items():
            try:
                out[key(k)] = val(item, depth)
            except Fail as exc:
                exc.segs.append(key_seg(k))
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
    in-memory form (e.g. a string for ``google.protobuf.Timestamp``). An unknown
    ``message_name`` is a programming error: ``KeyError``."""
    plan = _codec(schema).plan(message_name)
    try:
        return plan.decode(obj, 0)
    except Fail as exc:
        raise DecodeError(exc.reason, exc.path()) from None
    except RecursionError:
        raise DecodeError("input nested too deeply") from None


def to_json(schema: Schema, message_name: str, msg: Any) -> Any:
    """Encode an in-memory message as a JSON-ready value (dict for ordinary messages).
    Raises :class:`EncodeError` when ``msg`` does not fit the schema."""
    plan = _codec(schema).plan(message_name)
    try:
        return plan.encode(msg, 0)
    except Fail as exc:
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
        default = WKT_DEFAULTS.get(name, MISSING)
        return {} if default is MISSING else (default.copy() if isinstance(default, (dict, list))
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
