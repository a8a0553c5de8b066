"""Protobuf descriptors for the ``ironflow.v1`` schema: what both codecs (proto3 JSON and binary)
walk.

The schema lives in ``.proto`` files shipped inside this package (``ironflow/v1/*.proto``,
generated from ``proto-fields.txt`` by ``scripts/gen_protos.py``, and a hand-written minimal
``google/protobuf/*.proto``). :func:`load_schema` reads them through :mod:`importlib.resources`
(so it works from inside ``ironflow.pyz``, design.md habit 13), parses them with
:mod:`ironflow_pkg.proto.parser` and links the result into a :class:`Schema`.

Start-up cost: ``_schema_cache.json`` (written by ``gen_protos.py``) holds the linked descriptors
in a compact form together with a SHA-256 over the ``.proto`` sources; when the hash matches, the
loader builds the schema from it instead of parsing. A stale or missing cache is simply ignored
(the sources are parsed), so correctness never depends on it.

Conventions (shared by the codecs):

* type names are fully qualified without a leading dot (``ironflow.v1.Run``,
  ``google.protobuf.Struct``);
* a map field is ``label == "repeated"``, ``type == "message"`` whose ``type_name`` is a synthetic
  entry message ``<Message>.<Field>Entry`` with fields ``key = 1`` and ``value = 2`` (as protoc
  does), plus ``map_key_type`` / ``map_value_type`` set; test it with :attr:`FieldDesc.is_map`;
* ``label == "optional"`` is proto3 explicit presence (``optional`` keyword); members of a real
  oneof carry the oneof's name in ``oneof`` and keep ``label == "singular"``.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Iterable, Iterator

__all__ = [
    "CACHE_FILE",
    "DEFAULT_PACKAGE",
    "INT64_TYPES",
    "SCALAR_TYPES",
    "EnumDesc",
    "FieldDesc",
    "MessageDesc",
    "MethodDesc",
    "Schema",
    "SchemaError",
    "ServiceDesc",
    "build_cache_text",
    "load_schema",
    "read_proto_sources",
]

#: Package whose types may be named without qualification in :meth:`Schema.message` & co.
DEFAULT_PACKAGE = "ironflow.v1"
#: The compact cache of the linked schema, next to this module (see module docstring).
CACHE_FILE = "_schema_cache.json"
#: Bump when the cache layout changes, so an old cache file is ignored rather than misread.
CACHE_VERSION = 1

SCALAR_TYPES = frozenset({
    "double", "float", "int32", "int64", "uint32", "uint64", "sint32", "sint64",
    "fixed32", "fixed64", "sfixed32", "sfixed64", "bool", "string", "bytes",
})
#: 64-bit integer types: decimal strings in proto3 JSON (connect.md §9).
INT64_TYPES = frozenset({"int64", "uint64", "fixed64", "sint64", "sfixed64"})
INTEGER_TYPES = frozenset({"int32", "uint32", "sint32", "fixed32", "sfixed32"}) | INT64_TYPES
FLOAT_TYPES = frozenset({"double", "float"})
#: Valid map key types (protobuf language spec: integral or string scalars).
MAP_KEY_TYPES = INTEGER_TYPES | {"bool", "string"}

#: Wire type per scalar (connect.md §7); enums are varints, messages length-delimited.
WIRE_TYPES: dict[str, int] = {
    "int32": 0, "int64": 0, "uint32": 0, "uint64": 0, "sint32": 0, "sint64": 0, "bool": 0,
    "enum": 0, "fixed64": 1, "sfixed64": 1, "double": 1, "string": 2, "bytes": 2, "message": 2,
    "fixed32": 5, "sfixed32": 5, "float": 5,
}

_SCALAR_DEFAULTS: dict[str, Any] = {t: 0 for t in INTEGER_TYPES}
_SCALAR_DEFAULTS.update({"double": 0.0, "float": 0.0, "bool": False, "string": "", "bytes": b""})


class SchemaError(ValueError):
    """A ``.proto`` file does not parse or link (a build-time bug, never a client error)."""


@dataclass(frozen=True, slots=True)
class FieldDesc:
    """One field. ``type`` is a scalar name, ``"message"`` or ``"enum"``; ``type_name`` is the
    fully qualified message/enum name (``None`` for scalars)."""

    name: str
    number: int
    type: str
    type_name: str | None
    label: str  # "singular" | "repeated" | "optional"
    json_name: str
    oneof: str | None = None
    map_key_type: str | None = None  # scalar name, maps only
    map_value_type: str | None = None  # scalar name or fully qualified message/enum name
    containing_type: str = ""  # full name of the message this field belongs to

    @property
    def is_map(self) -> bool:
        return self.map_key_type is not None

    @property
    def is_repeated(self) -> bool:
        """True for repeated fields, maps included (a map is a repeated entry on the wire)."""
        return self.label == "repeated"

    @property
    def is_list(self) -> bool:
        """A repeated field that is not a map."""
        return self.label == "repeated" and self.map_key_type is None

    @property
    def is_message(self) -> bool:
        return self.type == "message"

    @property
    def is_enum(self) -> bool:
        return self.type == "enum"

    @property
    def is_scalar(self) -> bool:
        return self.type in SCALAR_TYPES

    @property
    def has_presence(self) -> bool:
        """Explicit presence (connect.md §7): singular message fields, ``optional`` fields and
        oneof members are "set" even at their zero value; other singular fields are absent
        when they equal the default."""
        if self.label == "repeated":
            return False
        return self.label == "optional" or self.oneof is not None or self.type == "message"

    @property
    def packable(self) -> bool:
        """Repeated numeric/bool/enum fields: encoded packed, decoded packed or not (§7)."""
        return self.is_list and self.type not in ("string", "bytes", "message")

    @property
    def wire_type(self) -> int:
        """Wire type of one (unpacked) element: 0 varint, 1 64-bit, 2 length-delimited, 5 32-bit."""
        return WIRE_TYPES[self.type]

    @property
    def default(self) -> Any:
        """In-memory default of a singular scalar/enum (``0``, ``0.0``, ``False``, ``""``,
        ``b""``); ``None`` for message fields."""
        if self.type == "enum":
            return 0
        return _SCALAR_DEFAULTS.get(self.type)


@dataclass(slots=True)
class MessageDesc:
    """A message: fields in declaration order plus lookups by name, JSON name and number."""

    full_name: str
    fields: tuple[FieldDesc, ...]
    file: str = ""
    map_entry: bool = False
    by_name: dict[str, FieldDesc] = field(init=False, repr=False)
    by_json_name: dict[str, FieldDesc] = field(init=False, repr=False)
    by_number: dict[int, FieldDesc] = field(init=False, repr=False)
    #: oneof name -> member field names, in declaration order (synthetic proto3-optional
    #: oneofs are not listed: those fields have ``label == "optional"``).
    oneofs: dict[str, tuple[str, ...]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.by_name = {f.name: f for f in self.fields}
        self.by_json_name = {f.json_name: f for f in self.fields}
        self.by_number = {f.number: f for f in self.fields}
        groups: dict[str, list[str]] = {}
        for f in self.fields:
            if f.oneof is not None:
                groups.setdefault(f.oneof, []).append(f.name)
        self.oneofs = {k: tuple(v) for k, v in groups.items()}

    @property
    def name(self) -> str:
        return self.full_name.rsplit(".", 1)[-1]


@dataclass(slots=True)
class EnumDesc:
    """An enum: ``values`` name -> number in declaration order; ``by_number`` number -> first
    name declared with it."""

    full_name: str
    values: dict[str, int]
    file: str = ""
    by_number: dict[int, str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.by_number = {}
        for name, number in self.values.items():
            self.by_number.setdefault(number, name)

    @property
    def name(self) -> str:
        return self.full_name.rsplit(".", 1)[-1]

    def number(self, name: str) -> int:
        """Number of a value name; ``KeyError`` when unknown."""
        return self.values[name]

    def name_of(self, number: int) -> str | None:
        """Name of a number, or ``None`` for a number this enum does not declare (proto3 enums
        are open: unknown numbers are kept)."""
        return self.by_number.get(number)


@dataclass(frozen=True, slots=True)
class MethodDesc:
    """One RPC. ``service`` and the message types are fully qualified."""

    service: str
    name: str
    input_type: str
    output_type: str
    kind: str  # "unary" | "server_stream" | "client_stream" | "bidi_stream"
    no_side_effects: bool

    @property
    def path(self) -> str:
        """The Connect route, ``/ironflow.v1.Service/Method`` (connect.md §1)."""
        return f"/{self.service}/{self.name}"

    @property
    def server_streaming(self) -> bool:
        return self.kind in ("server_stream", "bidi_stream")

    @property
    def client_streaming(self) -> bool:
        return self.kind in ("client_stream", "bidi_stream")


@dataclass(slots=True)
class ServiceDesc:
    full_name: str
    methods: tuple[MethodDesc, ...]
    file: str = ""
    by_name: dict[str, MethodDesc] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.by_name = {m.name: m for m in self.methods}

    @property
    def name(self) -> str:
        return self.full_name.rsplit(".", 1)[-1]


class Schema:
    """All linked descriptors. Lookups accept fully qualified names, or bare names of the
    default package (``"Run"`` == ``"ironflow.v1.Run"``)."""

    def __init__(self, messages: Iterable[MessageDesc], enums: Iterable[EnumDesc],
                 services: Iterable[ServiceDesc], files: Iterable[str] = (),
                 default_package: str = DEFAULT_PACKAGE) -> None:
        self.messages: dict[str, MessageDesc] = {m.full_name: m for m in messages}
        self.enums: dict[str, EnumDesc] = {e.full_name: e for e in enums}
        self.services: dict[str, ServiceDesc] = {s.full_name: s for s in services}
        self.files: tuple[str, ...] = tuple(files)
        self.default_package = default_package
        self._paths = {m.path: m for s in self.services.values() for m in s.methods}
        #: Scratch space for codecs to keep per-schema compiled plans (keyed by codec).
        self.codec_cache: dict[str, Any] = {}

    def _qualify(self, name: str, table: dict[str, Any]) -> str:
        if name in table:
            return name
        qualified = f"{self.default_package}.{name}"
        if qualified in table:
            return qualified
        return name.lstrip(".")

    def message(self, name: str) -> MessageDesc:
        """The message called ``name``; ``KeyError`` when unknown."""
        try:
            return self.messages[self._qualify(name, self.messages)]
        except KeyError:
            raise KeyError(f"unknown message type: {name}") from None

    def enum(self, name: str) -> EnumDesc:
        """The enum called ``name``; ``KeyError`` when unknown."""
        try:
            return self.enums[self._qualify(name, self.enums)]
        except KeyError:
            raise KeyError(f"unknown enum type: {name}") from None

    def service(self, name: str) -> ServiceDesc:
        try:
            return self.services[self._qualify(name, self.services)]
        except KeyError:
            raise KeyError(f"unknown service: {name}") from None

    def method(self, service: str, method: str) -> MethodDesc:
        """``method("IronflowService", "GetRun")``; ``KeyError`` when unknown."""
        try:
            return self.service(service).by_name[method]
        except KeyError:
            raise KeyError(f"unknown method: {service}/{method}") from None

    def method_by_path(self, path: str) -> MethodDesc | None:
        """The method routed at ``/pkg.Service/Method`` (case-sensitive), or ``None``."""
        return self._paths.get(path)

    def iter_methods(self) -> Iterator[MethodDesc]:
        for svc in self.services.values():
            yield from svc.methods

    def __repr__(self) -> str:
        return (f"<Schema {len(self.messages)} messages, {len(self.enums)} enums, "
                f"{len(self.services)} services>")


# --- loading ----------------------------------------------------------------------------------

_PACKAGE = __name__.rsplit(".", 1)[0]  # "ironflow_pkg.proto"
_lock = threading.Lock()
_cached: Schema | None = None
#: How the last :func:`load_schema` got its schema: "cache" or "parse" (for tests and logs).
last_load_source: str = ""


def read_proto_sources(root: Any = None) -> dict[str, str]:
    """Every ``*.proto`` under the proto resource tree, as ``{relative path: text}`` sorted by
    path. ``root`` is a directory path or Traversable (default: this package via
    :mod:`importlib.resources`)."""
    if root is None:
        base = resources.files(_PACKAGE)
    elif isinstance(root, str):
        import pathlib

        base = pathlib.Path(root)
    else:
        base = root
    out: dict[str, str] = {}

    def walk(node: Any, prefix: str) -> None:
        for entry in node.iterdir():
            name = entry.name
            if name.startswith((".", "_")):  # __pycache__, _schema_cache.json, hidden files
                continue
            if entry.is_dir():
                walk(entry, f"{prefix}{name}/")
            elif name.endswith(".proto"):
                out[prefix + name] = entry.read_text(encoding="utf-8")

    walk(base, "")
    return dict(sorted(out.items()))


def sources_hash(sources: dict[str, str]) -> str:
    h = hashlib.sha256()
    for path, text in sorted(sources.items()):
        h.update(path.encode() + b"\0" + text.encode("utf-8") + b"\0")
    return h.hexdigest()


def schema_to_compact(schema: Schema) -> dict[str, Any]:
    """A JSON-ready compact form of ``schema`` (lists, not objects, to keep it small)."""
    return {
        "files": list(schema.files),
        "messages": [
            [m.full_name, m.file, int(m.map_entry),
             [[f.name, f.number, f.type, f.type_name, f.label, f.json_name, f.oneof,
               f.map_key_type, f.map_value_type] for f in m.fields]]
            for m in schema.messages.values()
        ],
        "enums": [[e.full_name, e.file, list(e.values.items())] for e in schema.enums.values()],
        "services": [
            [s.full_name, s.file,
             [[m.name, m.input_type, m.output_type, m.kind, int(m.no_side_effects)]
              for m in s.methods]]
            for s in schema.services.values()
        ],
    }


def schema_from_compact(data: dict[str, Any]) -> Schema:
    messages = [
        MessageDesc(full, tuple(FieldDesc(*row, containing_type=full) for row in rows), file,
                    bool(entry))
        for full, file, entry, rows in data["messages"]
    ]
    enums = [EnumDesc(full, {k: v for k, v in values}, file) for full, file, values in data["enums"]]
    services = [
        ServiceDesc(full, tuple(MethodDesc(full, n, i, o, k, bool(nse)) for n, i, o, k, nse in rows),
                    file)
        for full, file, rows in data["services"]
    ]
    return Schema(messages, enums, services, data["files"])


def build_cache_text(root: Any = None, sources: dict[str, str] | None = None) -> str:
    """The text of ``_schema_cache.json`` for ``sources`` (default: the ``.proto`` files under
    ``root``); parses and links them, so a broken source raises :class:`SchemaError`."""
    from . import parser

    if sources is None:
        sources = read_proto_sources(root)
    schema = parser.build_schema(sources)
    payload = {"version": CACHE_VERSION, "sha256": sources_hash(sources),
               **schema_to_compact(schema)}
    return json.dumps(payload, separators=(",", ":"), sort_keys=False) + "\n"


def _load_uncached(use_cache: bool = True) -> Schema:
    global last_load_source
    sources = read_proto_sources()
    digest = sources_hash(sources)
    try:
        if not use_cache:
            raise KeyError("cache disabled")
        raw = resources.files(_PACKAGE).joinpath(CACHE_FILE).read_text(encoding="utf-8")
        data = json.loads(raw)
        if data.get("version") == CACHE_VERSION and data.get("sha256") == digest:
            last_load_source = "cache"
            return schema_from_compact(data)
    except (OSError, ValueError, KeyError, TypeError):
        pass  # missing or unreadable cache: parse the sources instead
    from . import parser

    last_load_source = "parse"
    return parser.build_schema(sources)


def load_schema(*, reload: bool = False, use_cache: bool = True) -> Schema:
    """The process-wide :class:`Schema` of every ``.proto`` shipped in this package (loaded
    once, then kept; ``reload=True`` loads afresh, ``use_cache=False`` ignores
    ``_schema_cache.json`` and parses the sources)."""
    global _cached
    if _cached is not None and not reload:
        return _cached
    with _lock:
        if _cached is None or reload:
            _cached = _load_uncached(use_cache)
        return _cached
