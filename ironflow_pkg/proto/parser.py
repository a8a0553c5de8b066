"""A small ``.proto`` parser (proto3 subset) and linker producing :mod:`.descriptors`.

Grammar covered (the Protocol Buffers Version 3 Language Specification, restricted to what this
project writes): ``syntax``, ``package``, ``import [public|weak]``, ``option`` (anywhere; only
``json_name`` on fields, ``idempotency_level`` on rpcs and ``allow_alias`` on enums have an
effect), ``message`` (nested messages/enums allowed), fields with ``repeated`` / ``optional``,
``map<K, V>``, ``oneof``, ``reserved`` (skipped), ``enum``, ``service`` / ``rpc`` with ``stream``.
Not covered: proto2 (``required``, groups, extensions, defaults), ``extend``, ``Any`` semantics.

Linking resolves type references by protobuf scoping (innermost scope outwards, a leading ``.``
means fully qualified), checks that a referenced type is declared in the same file or in a file
it imports (directly or via ``import public``), and rejects duplicate names and numbers, field
numbers out of range or in the reserved 19000-19999 block, bad map keys and proto3 enums whose
first value is not zero. Every error is a :class:`~.descriptors.SchemaError` naming
``file:line:col``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .descriptors import (
    DEFAULT_PACKAGE,
    MAP_KEY_TYPES,
    SCALAR_TYPES,
    EnumDesc,
    FieldDesc,
    MessageDesc,
    MethodDesc,
    Schema,
    SchemaError,
    ServiceDesc,
)

__all__ = ["build_schema", "default_json_name", "parse_file", "ProtoFile"]

# One match = optional whitespace/comments, then one token (or nothing at the very end).
_TOKEN_RE = re.compile(
    r"""
    (?:\s+|//[^\n]*|/\*.*?\*/)*
    (?:
      (?P<ident>\.?[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
    | (?P<number>[-+]?(?:0[xX][0-9A-Fa-f]+|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?))
    | (?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
    | (?P<symbol>[{}()\[\]<>;,=:])
    )?
    """,
    re.VERBOSE | re.DOTALL,
)

_MAX_FIELD_NUMBER = (1 << 29) - 1
_RESERVED_NUMBERS = range(19000, 20000)


def default_json_name(name: str) -> str:
    """protoc's default JSON name: drop each ``_`` and upper-case the character after it."""
    if "_" not in name:
        return name
    out = []
    upper = False
    for ch in name:
        if ch == "_":
            upper = True
        elif upper:
            out.append(ch.upper())
            upper = False
        else:
            out.append(ch)
    return "".join(out)


def _map_entry_name(field_name: str) -> str:
    """protoc's map entry message name: ``event_handlers`` -> ``EventHandlersEntry``."""
    camel = default_json_name(field_name)
    return camel[:1].upper() + camel[1:] + "Entry"


def _parse_int(value: str) -> int:
    """A proto integer literal: decimal, ``0``-prefixed octal or ``0x`` hex, optional sign."""
    sign = -1 if value.startswith("-") else 1
    body = value.lstrip("+-")
    if body[:2] in ("0x", "0X"):
        return sign * int(body[2:], 16)
    if len(body) > 1 and body[0] == "0":
        return sign * int(body, 8)
    return sign * int(body, 10)


_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v",
            "\\": "\\", "'": "'", '"': '"', "?": "?"}


def _unquote(tok: str) -> str:
    body = tok[1:-1]
    if "\\" not in body:
        return body
    out = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        nxt = body[i + 1]
        if nxt in _ESCAPES:
            out.append(_ESCAPES[nxt])
            i += 2
        elif nxt in "xX":
            m = re.match(r"[0-9A-Fa-f]{1,2}", body[i + 2:])
            if not m:
                raise ValueError("bad \\x escape")
            out.append(chr(int(m.group(), 16)))
            i += 2 + len(m.group())
        elif nxt in "uU":
            n = 4 if nxt == "u" else 8
            digits = body[i + 2:i + 2 + n]
            if len(digits) != n or not all(c in "0123456789abcdefABCDEF" for c in digits):
                raise ValueError("bad \\u escape")
            out.append(chr(int(digits, 16)))
            i += 2 + n
        elif nxt in "01234567":
            m = re.match(r"[0-7]{1,3}", body[i + 1:])
            assert m is not None
            out.append(chr(int(m.group(), 8)))
            i += 1 + len(m.group())
        else:
            raise ValueError(f"bad escape \\{nxt}")
    return "".join(out)


# --- parse tree (pre-link) ---------------------------------------------------------------------


@dataclass
class _Field:
    name: str
    number: int
    label: str  # singular | repeated | optional
    type_ref: str  # scalar name or unresolved reference
    json_name: str | None
    oneof: str | None
    pos: int
    map_key: str | None = None
    map_value_ref: str | None = None


@dataclass
class _Message:
    full_name: str
    pos: int
    fields: list[_Field] = field(default_factory=list)
    map_entry: bool = False


@dataclass
class _Enum:
    full_name: str
    pos: int
    values: list[tuple[str, int, int]] = field(default_factory=list)  # name, number, pos
    allow_alias: bool = False


@dataclass
class _Method:
    name: str
    input_ref: str
    output_ref: str
    client_stream: bool
    server_stream: bool
    no_side_effects: bool
    pos: int


@dataclass
class _Service:
    full_name: str
    pos: int
    methods: list[_Method] = field(default_factory=list)


@dataclass
class ProtoFile:
    """One parsed (unlinked) file."""

    path: str
    text: str
    syntax: str = ""
    package: str = ""
    imports: list[tuple[str, bool]] = field(default_factory=list)  # (path, public)
    messages: list[_Message] = field(default_factory=list)  # nested ones flattened, in order
    enums: list[_Enum] = field(default_factory=list)
    services: list[_Service] = field(default_factory=list)

    def where(self, pos: int) -> str:
        line = self.text.count("\n", 0, pos) + 1
        col = pos - (self.text.rfind("\n", 0, pos) + 1) + 1
        return f"{self.path}:{line}:{col}"


class _Parser:
    def __init__(self, path: str, text: str) -> None:
        self.file = ProtoFile(path, text)
        self.toks: list[tuple[str, str, int]] = []
        pos = 0
        end = len(text)
        append = self.toks.append
        match = _TOKEN_RE.match
        while True:
            m = match(text, pos)  # never None: every part of the pattern is optional
            kind = m.lastgroup
            if kind is None:
                pos = m.end()
                break
            append((kind, m.group(kind), m.start(kind)))
            pos = m.end()
        if pos != end:
            if text.startswith("/*", pos):
                raise SchemaError(f"{self.file.where(pos)}: unterminated comment")
            raise SchemaError(f"{self.file.where(pos)}: unexpected character {text[pos]!r}")
        self.toks.append(("eof", "", end))
        self.i = 0

    # token helpers
    def error(self, msg: str, pos: int | None = None) -> SchemaError:
        if pos is None:
            pos = self.toks[self.i][2]
        return SchemaError(f"{self.file.where(pos)}: {msg}")

    def peek(self) -> str:
        return self.toks[self.i][1]

    def next(self) -> tuple[str, str, int]:
        tok = self.toks[self.i]
        if tok[0] == "eof":
            raise self.error("unexpected end of file")
        self.i += 1
        return tok

    def accept(self, value: str) -> bool:
        if self.toks[self.i][1] == value and self.toks[self.i][0] != "string":
            self.i += 1
            return True
        return False

    def expect(self, value: str) -> None:
        kind, got, pos = self.toks[self.i]
        if got != value or kind == "string":
            raise self.error(f"expected {value!r}, got {got or 'end of file'!r}")
        self.i += 1

    def ident(self, what: str = "identifier", dotted: bool = False) -> str:
        kind, value, _ = self.toks[self.i]
        if kind != "ident" or (not dotted and "." in value):
            raise self.error(f"expected {what}, got {value or 'end of file'!r}")
        self.i += 1
        return value

    def string(self) -> str:
        kind, value, pos = self.toks[self.i]
        if kind != "string":
            raise self.error(f"expected a string, got {value or 'end of file'!r}")
        self.i += 1
        parts = [value]
        while self.toks[self.i][0] == "string":  # adjacent literals concatenate
            parts.append(self.toks[self.i][1])
            self.i += 1
        try:
            return "".join(_unquote(p) for p in parts)
        except ValueError as exc:
            raise self.error(str(exc), pos) from None

    def integer(self) -> int:
        kind, value, _ = self.toks[self.i]
        if kind != "number":
            raise self.error(f"expected an integer, got {value or 'end of file'!r}")
        try:
            n = _parse_int(value)
        except ValueError:
            raise self.error(f"expected an integer, got {value!r}") from None
        self.i += 1
        return n

    # grammar
    def parse(self) -> ProtoFile:
        f = self.file
        if self.peek() == "syntax":
            self.next()
            self.expect("=")
            f.syntax = self.string()
            self.expect(";")
        if f.syntax != "proto3":
            raise self.error(f"only proto3 is supported (syntax = {f.syntax or 'proto2'!r})", 0)
        while self.toks[self.i][0] != "eof":
            kind, word, pos = self.toks[self.i]
            if word == ";":
                self.i += 1
            elif kind != "ident":
                raise self.error(f"unexpected {word!r}")
            elif word == "package":
                self.i += 1
                if f.package:
                    raise self.error("multiple package statements", pos)
                f.package = self.ident("package name", dotted=True)
                self.expect(";")
            elif word == "import":
                self.i += 1
                public = False
                if self.peek() in ("public", "weak"):
                    public = self.next()[1] == "public"
                f.imports.append((self.string(), public))
                self.expect(";")
            elif word == "option":
                self.option()
            elif word == "message":
                self.message(f.package)
            elif word == "enum":
                self.enum(f.package)
            elif word == "service":
                self.service()
            else:
                raise self.error(f"unexpected {word!r}")
        return f

    def option(self) -> tuple[str, object]:
        """``option name = constant ;`` -> (name, value)."""
        self.expect("option")
        name = self.option_name()
        self.expect("=")
        value = self.constant()
        self.expect(";")
        return name, value

    def option_name(self) -> str:
        parts = []
        if self.accept("("):
            parts.append("(" + self.ident("option name", dotted=True) + ")")
            self.expect(")")
        else:
            parts.append(self.ident("option name", dotted=True))
        while self.toks[self.i][0] == "ident" and self.peek().startswith("."):
            parts.append(self.next()[1])
        return "".join(parts)

    def constant(self) -> object:
        kind, value, _ = self.toks[self.i]
        if kind == "string":
            return self.string()
        if kind == "ident":
            self.i += 1
            return {"true": True, "false": False}.get(value, value)
        if kind == "number":
            self.i += 1
            try:
                return _parse_int(value)
            except ValueError:
                return float(value)
        if value == "{":  # aggregate value: skip it, balanced
            depth = 0
            while True:
                tok = self.next()[1]
                if tok == "{":
                    depth += 1
                elif tok == "}":
                    depth -= 1
                    if depth == 0:
                        return None
        raise self.error(f"expected a constant, got {value or 'end of file'!r}")

    def field_options(self) -> dict[str, object]:
        opts: dict[str, object] = {}
        if self.accept("["):
            while True:
                name = self.option_name()
                self.expect("=")
                opts[name] = self.constant()
                if self.accept("]"):
                    break
                self.expect(",")
        return opts

    def skip_statement(self) -> None:
        while not self.accept(";"):
            self.next()

    def message(self, scope: str) -> None:
        pos = self.toks[self.i][2]
        self.expect("message")
        name = self.ident("message name")
        full = f"{scope}.{name}" if scope else name
        msg = _Message(full, pos)
        self.file.messages.append(msg)
        self.expect("{")
        while not self.accept("}"):
            kind, word, wpos = self.toks[self.i]
            if word == ";":
                self.i += 1
            elif word == "message" and kind == "ident" and self.toks[self.i + 2][1] == "{":
                self.message(full)
            elif word == "enum" and kind == "ident" and self.toks[self.i + 2][1] == "{":
                self.enum(full)
            elif word == "option":
                self.option()
            elif word in ("reserved", "extensions") and self.toks[self.i + 1][1] != "=":
                if word == "extensions":
                    raise self.error("extensions are not supported in proto3")
                self.skip_statement()
            elif word == "oneof" and self.toks[self.i + 2][1] == "{":
                self.i += 1
                oneof = self.ident("oneof name")
                self.expect("{")
                while not self.accept("}"):
                    if self.peek() == "option":
                        self.option()
                    elif self.accept(";"):
                        pass
                    else:
                        if self.peek() in ("repeated", "optional", "required") and \
                                self.toks[self.i + 2][1] != "=":
                            raise self.error("oneof fields cannot have labels")
                        self.field(msg, "singular", oneof)
            elif word == "map" and self.toks[self.i + 1][1] == "<":
                self.map_field(msg)
            elif word == "required" and self.toks[self.i + 2][1] != "=":
                raise self.error("'required' is not allowed in proto3")
            elif word in ("repeated", "optional") and self.toks[self.i + 2][1] != "=":
                self.i += 1
                self.field(msg, word, None)
            elif kind == "ident":
                self.field(msg, "singular", None)
            else:
                raise self.error(f"unexpected {word!r} in message {name}", wpos)

    def field(self, msg: _Message, label: str, oneof: str | None) -> None:
        type_ref = self.ident("field type", dotted=True)
        pos = self.toks[self.i][2]
        name = self.ident("field name")
        self.expect("=")
        number = self.integer()
        opts = self.field_options()
        self.expect(";")
        json_name = opts.get("json_name")
        if json_name is not None and not isinstance(json_name, str):
            raise self.error("json_name must be a string", pos)
        if type_ref == "group":
            raise self.error("groups are not supported", pos)
        msg.fields.append(_Field(name, number, label, type_ref, json_name, oneof, pos))

    def map_field(self, msg: _Message) -> None:
        self.expect("map")
        self.expect("<")
        key = self.ident("map key type")
        self.expect(",")
        value = self.ident("map value type", dotted=True)
        self.expect(">")
        pos = self.toks[self.i][2]
        name = self.ident("field name")
        self.expect("=")
        number = self.integer()
        opts = self.field_options()
        self.expect(";")
        json_name = opts.get("json_name")
        if json_name is not None and not isinstance(json_name, str):
            raise self.error("json_name must be a string", pos)
        if key not in MAP_KEY_TYPES:
            raise self.error(f"invalid map key type {key!r}", pos)
        entry = _Message(f"{msg.full_name}.{_map_entry_name(name)}", pos, map_entry=True)
        entry.fields.append(_Field("key", 1, "singular", key, None, None, pos))
        entry.fields.append(_Field("value", 2, "singular", value, None, None, pos))
        self.file.messages.append(entry)
        msg.fields.append(_Field(name, number, "repeated", entry.full_name, json_name, None, pos,
                                 map_key=key, map_value_ref=value))

    def enum(self, scope: str) -> None:
        pos = self.toks[self.i][2]
        self.expect("enum")
        name = self.ident("enum name")
        en = _Enum(f"{scope}.{name}" if scope else name, pos)
        self.file.enums.append(en)
        self.expect("{")
        while not self.accept("}"):
            word = self.peek()
            if word == ";":
                self.i += 1
            elif word == "option" and self.toks[self.i + 1][1] != "=":
                oname, value = self.option()
                if oname == "allow_alias":
                    en.allow_alias = value is True
            elif word == "reserved" and self.toks[self.i + 1][1] != "=":
                self.skip_statement()
            else:
                vpos = self.toks[self.i][2]
                vname = self.ident("enum value name")
                self.expect("=")
                number = self.integer()
                self.field_options()
                self.expect(";")
                en.values.append((vname, number, vpos))

    def service(self) -> None:
        pos = self.toks[self.i][2]
        self.expect("service")
        name = self.ident("service name")
        pkg = self.file.package
        svc = _Service(f"{pkg}.{name}" if pkg else name, pos)
        self.file.services.append(svc)
        self.expect("{")
        while not self.accept("}"):
            word = self.peek()
            if word == ";":
                self.i += 1
            elif word == "option":
                self.option()
            elif word == "rpc":
                svc.methods.append(self.rpc())
            else:
                raise self.error(f"unexpected {word!r} in service {name}")

    def _rpc_type(self) -> tuple[bool, str]:
        self.expect("(")
        stream = False
        if self.peek() == "stream" and self.toks[self.i + 1][0] == "ident":
            self.i += 1
            stream = True
        ref = self.ident("message type", dotted=True)
        self.expect(")")
        return stream, ref

    def rpc(self) -> _Method:
        pos = self.toks[self.i][2]
        self.expect("rpc")
        name = self.ident("method name")
        cstream, in_ref = self._rpc_type()
        self.expect("returns")
        sstream, out_ref = self._rpc_type()
        nse = False
        if self.accept("{"):
            while not self.accept("}"):
                if self.accept(";"):
                    continue
                oname, value = self.option()
                if oname == "idempotency_level":
                    nse = value == "NO_SIDE_EFFECTS"
        else:
            self.expect(";")
        return _Method(name, in_ref, out_ref, cstream, sstream, nse, pos)


def parse_file(path: str, text: str) -> ProtoFile:
    """Parse one file (no linking)."""
    return _Parser(path, text).parse()


# --- linking -----------------------------------------------------------------------------------


class _Where:
    """``file:line:col`` computed only when an error message needs it."""

    __slots__ = ("f", "pos")

    def __init__(self, f: ProtoFile, pos: int) -> None:
        self.f, self.pos = f, pos

    def __str__(self) -> str:
        return self.f.where(self.pos)

    __format__ = lambda self, spec: format(str(self), spec)  # noqa: E731


def _resolve(ref: str, scope: str, table: dict[str, tuple[str, ProtoFile]]) -> str | None:
    if ref.startswith("."):
        return ref[1:] if ref[1:] in table else None
    parts = scope.split(".") if scope else []
    while True:
        cand = ".".join(parts + [ref])
        if cand in table:
            return cand
        if not parts:
            return None
        parts.pop()


def build_schema(sources: dict[str, str], default_package: str = DEFAULT_PACKAGE) -> Schema:
    """Parse and link ``{path: text}`` (paths as used in ``import`` statements) into a Schema.
    Files are processed in sorted path order, so the result is deterministic.
    ``default_package`` is the package whose types the Schema finds by bare name."""
    files = [parse_file(path, sources[path]) for path in sorted(sources)]
    by_path = {f.path: f for f in files}
    table: dict[str, tuple[str, ProtoFile]] = {}  # full name -> (kind, file)

    def declare(full: str, kind: str, f: ProtoFile, pos: int) -> None:
        if full in table:
            raise SchemaError(f"{f.where(pos)}: {full} is already defined in {table[full][1].path}")
        table[full] = (kind, f)

    for f in files:
        for imp, _ in f.imports:
            if imp not in by_path:
                raise SchemaError(f"{f.path}: import {imp!r} not found")
        for m in f.messages:
            declare(m.full_name, "message", f, m.pos)
        for e in f.enums:
            declare(e.full_name, "enum", f, e.pos)
        for s in f.services:
            declare(s.full_name, "service", f, s.pos)

    def visible_files(f: ProtoFile) -> set[str]:
        seen = {f.path}

        def add_public(p: str) -> None:
            for imp, public in by_path[p].imports:
                if public and imp not in seen:
                    seen.add(imp)
                    add_public(imp)

        for imp, _ in f.imports:
            seen.add(imp)
            add_public(imp)
        return seen

    def lookup(ref: str, scope: str, f: ProtoFile, pos: int, visible: set[str]) -> tuple[str, str]:
        full = _resolve(ref, scope, table)
        if full is None:
            raise SchemaError(f"{f.where(pos)}: unknown type {ref!r}")
        kind, owner = table[full]
        if owner.path not in visible:
            raise SchemaError(f"{f.where(pos)}: {full} is defined in {owner.path}, "
                              f"which {f.path} does not import")
        return full, kind

    messages: list[MessageDesc] = []
    enums: list[EnumDesc] = []
    services: list[ServiceDesc] = []
    for f in files:
        visible = visible_files(f)
        for e in f.enums:
            values: dict[str, int] = {}
            seen_numbers: set[int] = set()
            for vname, number, vpos in e.values:
                if vname in values:
                    raise SchemaError(f"{f.where(vpos)}: duplicate enum value {vname}")
                if number in seen_numbers and not e.allow_alias:
                    raise SchemaError(f"{f.where(vpos)}: {e.full_name} reuses number {number} "
                                      "without allow_alias")
                if not -(1 << 31) <= number < (1 << 31):
                    raise SchemaError(f"{f.where(vpos)}: enum value out of int32 range")
                values[vname] = number
                seen_numbers.add(number)
            if not e.values or e.values[0][1] != 0:
                raise SchemaError(f"{f.where(e.pos)}: the first value of proto3 enum "
                                  f"{e.full_name} must be 0")
            enums.append(EnumDesc(e.full_name, values, f.path))
        for m in f.messages:
            fields: list[FieldDesc] = []
            names: set[str] = set()
            json_names: dict[str, str] = {}
            numbers: set[int] = set()
            for fd in m.fields:
                where = _Where(f, fd.pos)
                if fd.name in names:
                    raise SchemaError(f"{where}: duplicate field name {fd.name}")
                if fd.number in numbers:
                    raise SchemaError(f"{where}: duplicate field number {fd.number}")
                if not 1 <= fd.number <= _MAX_FIELD_NUMBER or fd.number in _RESERVED_NUMBERS:
                    raise SchemaError(f"{where}: invalid field number {fd.number}")
                names.add(fd.name)
                numbers.add(fd.number)
                json_name = fd.json_name if fd.json_name is not None else default_json_name(fd.name)
                if json_name in json_names:
                    raise SchemaError(f"{where}: JSON name {json_name!r} of {fd.name} "
                                      f"conflicts with {json_names[json_name]}")
                json_names[json_name] = fd.name
                if fd.type_ref in SCALAR_TYPES:
                    ftype, type_name = fd.type_ref, None
                else:
                    type_name, ftype = lookup(fd.type_ref, m.full_name, f, fd.pos, visible)
                    if ftype == "service":
                        raise SchemaError(f"{where}: {type_name} is a service, not a type")
                map_value = None
                if fd.map_key is not None:
                    assert fd.map_value_ref is not None
                    if fd.map_value_ref in SCALAR_TYPES:
                        map_value = fd.map_value_ref
                    else:
                        map_value, vkind = lookup(fd.map_value_ref, m.full_name, f, fd.pos, visible)
                        if vkind == "service":
                            raise SchemaError(f"{where}: {map_value} is a service, not a type")
                fields.append(FieldDesc(fd.name, fd.number, ftype, type_name, fd.label, json_name,
                                        fd.oneof, fd.map_key, map_value, m.full_name))
            messages.append(MessageDesc(m.full_name, tuple(fields), f.path, m.map_entry))
        for s in f.services:
            methods: list[MethodDesc] = []
            seen_methods: set[str] = set()
            for r in s.methods:
                if r.name in seen_methods:
                    raise SchemaError(f"{f.where(r.pos)}: duplicate method {r.name}")
                seen_methods.add(r.name)
                in_type, in_kind = lookup(r.input_ref, f.package, f, r.pos, visible)
                out_type, out_kind = lookup(r.output_ref, f.package, f, r.pos, visible)
                if in_kind != "message" or out_kind != "message":
                    raise SchemaError(f"{f.where(r.pos)}: rpc types must be messages")
                kind = {(False, False): "unary", (False, True): "server_stream",
                        (True, False): "client_stream", (True, True): "bidi_stream"}[
                    (r.client_stream, r.server_stream)]
                methods.append(MethodDesc(s.full_name, r.name, in_type, out_type, kind,
                                          r.no_side_effects))
            services.append(ServiceDesc(s.full_name, tuple(methods), f.path))
    return Schema(messages, enums, services, [f.path for f in files], default_package)
