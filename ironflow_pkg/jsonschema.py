"""JSON Schema Draft 2020-12 validator (stdlib only, sans-I/O) for event schemas (features.md §9).

:func:`compile_schema` turns a schema document into a :class:`CompiledSchema` once (raising
:class:`SchemaError`, naming the JSON pointer of the offending keyword, for anything that does not
compile); :meth:`CompiledSchema.validate` then returns every :class:`ValidationError` (bounded by
:data:`MAX_ERRORS`) and :meth:`CompiledSchema.is_valid` answers yes/no, stopping at the first
failure. Nothing is ever fetched over the network: remote ``$ref`` targets come from the
``registry`` mapping (URI -> document) or from the built-in 2020-12 meta-schemas.

Product rule (§9.1): the server compiles with ``strict_refs_local_only=True``, under which the
document must be a JSON object and every ``$ref``/``$dynamicRef`` must be ``#`` or ``#/$defs/...``.

Implementation notes:

- Compilation is two passes: an index walk over each document records every schema resource
  (``$id``), ``$anchor`` and ``$dynamicAnchor`` with its base URI (only through keywords known to
  hold subschemas, so an ``$id`` inside ``enum`` or an unknown keyword identifies nothing); then
  schema objects are compiled into :class:`_Node` objects (a list of keyword closures), cached
  per (object, base URI) so reference cycles compile finitely.
- Evaluation of a node returns ``(valid, evaluated property names, evaluated item indexes)``;
  the last two are the annotations ``unevaluatedProperties``/``unevaluatedItems`` consume, merged
  only from subschemas that passed (Core §11). They are collected only when the compiled graph
  contains an ``unevaluated*`` keyword.
- ``$dynamicRef`` keeps the dynamic scope (the schema resources entered) on a stack (Core §8.2.3.2).
- A ``$ref`` that re-enters a schema at the same instance location it is already evaluating is an
  endless loop: it fails with keyword ``$ref`` instead of recursing (the instance path only grows
  along one evaluation chain, so "same node at the same path length" means "same location").
- Patterns are ECMA-262; :func:`translate_ecma_regex` maps them onto Python ``re``.
- ``format`` is an annotation; it is asserted only when a meta-schema enables the
  format-assertion vocabulary (a small set of formats is known; unknown formats pass).
- ``$schema`` naming draft 2019-09 or older selects a legacy reading (array ``items`` with
  ``additionalItems``, no ``prefixItems``/``$dynamic*``); any other meta-schema is loaded from the
  registry (default mode only) and its ``$vocabulary`` decides which vocabularies apply.

Known gaps: Python ``re`` backtracks (no timeout: a pathological pattern can be slow on long
strings); variable-width lookbehind and Unicode script properties (``\\p{Script=...}``) do not
compile; ``\\S`` inside a character class is ASCII-only.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import math
import re
import unicodedata
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from typing import Any, Callable, Mapping
from urllib.parse import unquote, urljoin

__all__ = [
    "SchemaError", "ValidationError", "CompiledSchema", "compile_schema", "schema_hash",
    "translate_ecma_regex", "MAX_ERRORS", "MAX_INSTANCE_DEPTH", "MAX_EVAL_DEPTH",
    "MAX_SCHEMA_DEPTH", "DRAFT_2020_12",
]

#: validate() stops collecting after this many errors: a huge bad payload must not cost a huge reply.
MAX_ERRORS = 100
#: Instances nested deeper than this (as reached by evaluation) fail instead of exhausting the stack.
MAX_INSTANCE_DEPTH = 200
#: Nested schema evaluations (a recursive schema applied to a deep instance). Each level costs
#: about 2.5 Python frames: 250 levels stay well inside the default recursion limit of 1000.
MAX_EVAL_DEPTH = 250
#: Schema documents nested deeper than this (in subschemas) do not compile.
MAX_SCHEMA_DEPTH = 200

DRAFT_2020_12 = "https://json-schema.org/draft/2020-12/schema"
_VOCAB_PREFIX = "https://json-schema.org/draft/2020-12/vocab/"
_VOCABS = ("core", "applicator", "unevaluated", "validation", "meta-data", "format-annotation",
           "format-assertion", "content")
_FULL_VOCABS = frozenset(v for v in _VOCABS if v != "format-assertion")
_LEGACY_DRAFTS = {
    "https://json-schema.org/draft/2019-09/schema", "http://json-schema.org/draft-07/schema",
    "http://json-schema.org/draft-06/schema", "http://json-schema.org/draft-04/schema",
    "http://json-schema.org/draft-03/schema",
}
_ANCHOR_RE = re.compile(r"^[A-Za-z_][-A-Za-z0-9._]*$")
_SCHEME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:")


class SchemaError(ValueError):
    """The schema document does not compile; the message names the JSON pointer and the reason."""

    def __init__(self, pointer: str, reason: str) -> None:
        shown = pointer if len(pointer) <= 200 else pointer[:200] + "..."
        super().__init__(f"schema error at {shown or '(root)'}: {reason}")
        self.pointer = pointer
        self.reason = reason


@dataclass(frozen=True)
class ValidationError:
    """One failed assertion: ``path`` is a JSON pointer into the instance ("" is the root)."""

    path: str
    keyword: str
    message: str


@dataclass(frozen=True)
class _Dialect:
    vocabs: frozenset[str]
    legacy: bool = False  # a pre-2020-12 draft: array-form items, no prefixItems / $dynamic*


_FULL = _Dialect(_FULL_VOCABS)
_LEGACY = _Dialect(_FULL_VOCABS, legacy=True)

# Keywords whose values are subschemas (for the index walk; Core §9.2 identifiers only count there).
_SUB_ONE = ("items", "contains", "additionalProperties", "propertyNames", "if", "then", "else",
            "not", "unevaluatedItems", "unevaluatedProperties", "contentSchema", "additionalItems")
_SUB_MAP = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas",
            "dependencies")
_SUB_LIST = ("prefixItems", "allOf", "anyOf", "oneOf", "items")


class _Full(Exception):
    """MAX_ERRORS reached: unwinds the evaluation."""


class _TooDeep(Exception):
    """Evaluation nesting limit reached; carries the instance path where it happened."""

    def __init__(self, path: tuple) -> None:
        super().__init__()
        self.path = path


# --------------------------------------------------------------------------- URIs and pointers

def _split_frag(uri: str) -> tuple[str, str]:
    base, _, frag = uri.partition("#")
    return base, frag


def _join(base: str, ref: str) -> str:
    """Resolve ``ref`` against ``base`` (RFC 3986) and drop an empty fragment."""
    if _SCHEME_RE.match(ref):
        out = ref
    elif ref.startswith("#"):
        out = _split_frag(base)[0] + ref
    elif not base:
        out = ref
    elif "://" in base or base.startswith("file:"):
        try:
            out = urljoin(base, ref)
        except ValueError:  # e.g. a malformed IPv6 host: such a URI just never resolves
            out = ref
    else:  # urn:, tag: ... have no hierarchy to resolve a relative path against
        out = ref
    return out[:-1] if out.endswith("#") else out


def _ptr_escape(token: Any) -> str:
    return str(token).replace("~", "~0").replace("/", "~1")


def _pointer(path: tuple) -> str:
    return "".join("/" + _ptr_escape(t) for t in path)


def _unescape_tokens(fragment: str) -> list[str]:
    return [unquote(t).replace("~1", "/").replace("~0", "~") for t in fragment.split("/")[1:]]


# --------------------------------------------------------------------------- JSON equality

def _key(v: Any) -> Any:
    """Hashable key with JSON equality: 1 == 1.0, true != 1, object key order ignored."""
    if v is None:
        return ("z",)
    t = type(v)
    if t is bool:
        return ("b", v)
    if t is int or t is float:
        return ("n", v)
    if t is str:
        return ("s", v)
    if t is list or t is tuple:
        return ("a", tuple(_key(x) for x in v))
    if t is dict:
        return ("o", frozenset((k, _key(x)) for k, x in v.items()))
    if isinstance(v, bool):
        return ("b", bool(v))
    if isinstance(v, (int, float)):
        return ("n", v)
    if isinstance(v, str):
        return ("s", str(v))
    if isinstance(v, (list, tuple)):
        return ("a", tuple(_key(x) for x in v))
    if isinstance(v, Mapping):
        return ("o", frozenset((k, _key(x)) for k, x in v.items()))
    return ("?", id(v))


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _json_type(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int):
        return "integer"
    if isinstance(v, float):
        return "integer" if v.is_integer() else "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    if isinstance(v, dict):
        return "object"
    return type(v).__name__


def _has_type(v: Any, t: str) -> bool:
    if t == "number":
        return _is_num(v)
    if t == "integer":
        if isinstance(v, bool):
            return False
        return isinstance(v, int) or (isinstance(v, float) and v.is_integer())
    if t == "string":
        return isinstance(v, str)
    if t == "object":
        return isinstance(v, dict)
    if t == "array":
        return isinstance(v, list)
    if t == "boolean":
        return isinstance(v, bool)
    return v is None  # "null"


def _exact(x: int | float) -> Fraction:
    # A float is taken at its shortest decimal spelling (what the JSON text said), so that
    # 0.0075 is a multiple of 0.0001 although neither is exact in binary.
    return Fraction(x) if isinstance(x, int) else Fraction(repr(x))


def _multiple_of(v: int | float, m: Fraction, m_raw: int | float) -> bool:
    if isinstance(v, int) and isinstance(m_raw, int):
        return v % m_raw == 0
    if isinstance(v, float) and not math.isfinite(v):
        return False
    return (_exact(v) / m).denominator == 1


# --------------------------------------------------------------------------- ECMA-262 regexes

_ECMA_WS = ("\\t\\n\\x0b\\x0c\\r \\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f"
            "\\u3000\\ufeff")
_GC_ALIASES = {
    "l": "L", "letter": "L", "lu": "Lu", "uppercase_letter": "Lu", "ll": "Ll",
    "lowercase_letter": "Ll", "lt": "Lt", "titlecase_letter": "Lt", "lc": "LC",
    "cased_letter": "LC", "lm": "Lm", "modifier_letter": "Lm", "lo": "Lo", "other_letter": "Lo",
    "m": "M", "mark": "M", "combining_mark": "M", "mn": "Mn", "nonspacing_mark": "Mn",
    "mc": "Mc", "spacing_mark": "Mc", "me": "Me", "enclosing_mark": "Me", "n": "N",
    "number": "N", "nd": "Nd", "decimal_number": "Nd", "digit": "Nd", "nl": "Nl",
    "letter_number": "Nl", "no": "No", "other_number": "No", "p": "P", "punctuation": "P",
    "punct": "P", "pc": "Pc", "connector_punctuation": "Pc", "pd": "Pd", "dash_punctuation": "Pd",
    "ps": "Ps", "open_punctuation": "Ps", "pe": "Pe", "close_punctuation": "Pe", "pi": "Pi",
    "initial_punctuation": "Pi", "pf": "Pf", "final_punctuation": "Pf", "po": "Po",
    "other_punctuation": "Po", "s": "S", "symbol": "S", "sm": "Sm", "math_symbol": "Sm",
    "sc": "Sc", "currency_symbol": "Sc", "sk": "Sk", "modifier_symbol": "Sk", "so": "So",
    "other_symbol": "So", "z": "Z", "separator": "Z", "zs": "Zs", "space_separator": "Zs",
    "zl": "Zl", "line_separator": "Zl", "zp": "Zp", "paragraph_separator": "Zp", "c": "C",
    "other": "C", "cc": "Cc", "control": "Cc", "cntrl": "Cc", "cf": "Cf", "format": "Cf",
    "cs": "Cs", "surrogate": "Cs", "co": "Co", "private_use": "Co", "cn": "Cn",
    "unassigned": "Cn", "any": "*", "ascii": "ASCII",
}


@lru_cache(maxsize=1)
def _category_ranges() -> dict[str, list[tuple[int, int]]]:
    """Code point ranges per Unicode general category (one pass over the code space, cached)."""
    out: dict[str, list[tuple[int, int]]] = {}
    cat = unicodedata.category
    start, cur = 0, cat("\x00")
    for cp in range(1, 0x110000):
        c = cat(chr(cp))
        if c != cur:
            out.setdefault(cur, []).append((start, cp - 1))
            start, cur = cp, c
    out.setdefault(cur, []).append((start, 0x10FFFF))
    return out


@lru_cache(maxsize=64)
def _property_ranges(name: str) -> tuple[tuple[int, int], ...]:
    raw = name
    if "=" in name:
        prop, _, name = name.partition("=")
        if prop.lower() not in ("gc", "general_category"):
            raise ValueError(f"unsupported unicode property {raw!r}")
    gc = _GC_ALIASES.get(name.lower().replace(" ", "_").replace("-", "_"))
    if gc is None:
        raise ValueError(f"unsupported unicode property {raw!r}")
    if gc == "*":
        return ((0, 0x10FFFF),)
    if gc == "ASCII":
        return ((0, 0x7F),)
    table = _category_ranges()
    if gc == "LC":
        cats = ["Lu", "Ll", "Lt"]
    elif len(gc) == 1:
        cats = [c for c in table if c[0] == gc]
    else:
        cats = [gc]
    ranges = sorted(r for c in cats for r in table.get(c, []))
    merged: list[tuple[int, int]] = []
    for a, b in ranges:
        if merged and a <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(b, merged[-1][1]))
        else:
            merged.append((a, b))
    return tuple(merged)


def _ranges_class_body(ranges: tuple[tuple[int, int], ...], negate: bool) -> str:
    if negate:
        comp, nxt = [], 0
        for a, b in ranges:
            if a > nxt:
                comp.append((nxt, a - 1))
            nxt = b + 1
        if nxt <= 0x10FFFF:
            comp.append((nxt, 0x10FFFF))
        ranges = tuple(comp)

    def esc(cp: int) -> str:
        return f"\\U{cp:08x}"
    return "".join(esc(a) if a == b else f"{esc(a)}-{esc(b)}" for a, b in ranges)


def translate_ecma_regex(pattern: str) -> str:
    """Rewrite an ECMA-262 (unicode mode) pattern into Python ``re`` syntax (compile with re.ASCII).

    Handles: ``\\d \\w \\b`` (ASCII, via re.ASCII), ``\\s``/``\\S`` (ECMA white space set), ``.``
    (no line terminators), ``$`` (end of input only), ``\\cX``, ``\\u{...}``, surrogate pairs,
    ``\\p{..}``/``\\P{..}`` general categories, ``(?<name>`` and ``\\k<name>``, ``[]``/``[^]``.
    Known gaps: ``\\S`` inside a class is ASCII-only; variable-width lookbehind; script properties.
    """
    out: list[str] = []
    i, n = 0, len(pattern)
    in_class = False
    while i < n:
        c = pattern[i]
        if c == "\\":
            if i + 1 >= n:
                raise ValueError("pattern ends with a lone backslash")
            e = pattern[i + 1]
            i += 2
            if e == "s":
                out.append(_ECMA_WS if in_class else f"[{_ECMA_WS}]")
            elif e == "S":
                out.append("\\S" if in_class else f"[^{_ECMA_WS}]")
            elif e == "c" and i < n and pattern[i].isascii() and pattern[i].isalpha():
                out.append(f"\\x{ord(pattern[i]) % 32:02x}")
                i += 1
            elif e == "u":
                if i < n and pattern[i] == "{":
                    j = pattern.find("}", i)
                    if j < 0:
                        raise ValueError("unterminated \\u{...}")
                    cp = int(pattern[i + 1:j], 16)
                    if cp > 0x10FFFF:
                        raise ValueError("code point out of range")
                    out.append(f"\\U{cp:08x}")
                    i = j + 1
                elif re.fullmatch(r"[0-9A-Fa-f]{4}", pattern[i:i + 4]):
                    cp = int(pattern[i:i + 4], 16)
                    i += 4
                    if (0xD800 <= cp <= 0xDBFF and pattern[i:i + 2] == "\\u"
                            and re.fullmatch(r"[dD][c-fC-F][0-9A-Fa-f]{2}", pattern[i + 2:i + 6])):
                        lo = int(pattern[i + 2:i + 6], 16)
                        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00)
                        i += 6
                    out.append(f"\\U{cp:08x}")
                else:
                    raise ValueError("invalid \\u escape")
            elif e in "pP":
                if i >= n or pattern[i] != "{":
                    raise ValueError("invalid \\p escape")
                j = pattern.find("}", i)
                if j < 0:
                    raise ValueError("unterminated \\p{...}")
                body = _ranges_class_body(_property_ranges(pattern[i + 1:j]), e == "P")
                out.append(body if in_class else f"[{body}]")
                i = j + 1
            elif e == "k" and i < n and pattern[i] == "<":
                j = pattern.find(">", i)
                if j < 0:
                    raise ValueError("unterminated \\k<name>")
                out.append(f"(?P={pattern[i + 1:j]})")
                i = j + 1
            elif e == "/":
                out.append("/")
            elif e == "0" and not (i < n and pattern[i].isdigit()):
                out.append("\\x00")
            elif e == "-":
                out.append("\\-")
            elif e.isascii() and e.isalpha() and e not in "dDwWbBfnrtvx":
                raise ValueError(f"unknown escape \\{e}")
            else:
                out.append("\\" + e)
            continue
        if in_class:
            if c == "]":
                in_class = False
                out.append("]")
            elif c == "[":
                out.append("\\[")
            elif c in "&~|" and i + 1 < n and pattern[i + 1] == c:
                out.append("\\" + c)  # Python reserves doubled &&, ~~, || (and --) in classes
            elif c == "-" and i + 1 < n and pattern[i + 1] == "-":
                out.append("-\\-")
                i += 2
                continue
            else:
                out.append(c)
            i += 1
            continue
        if c == "[":
            if pattern.startswith("[]", i):
                out.append("(?!)")
                i += 2
                continue
            if pattern.startswith("[^]", i):
                out.append("(?s:.)")
                i += 3
                continue
            in_class = True
            out.append("[")
            i += 1
            if i < n and pattern[i] == "^":
                out.append("^")
                i += 1
            continue
        if c == ".":
            out.append("[^\\n\\r\\u2028\\u2029]")
        elif c == "$":
            out.append("\\Z")  # ECMA $ never matches before a final newline
        elif c == "(" and pattern.startswith("(?<", i) and not pattern.startswith(("(?<=", "(?<!"), i):
            out.append("(?P<")
            i += 3
            continue
        else:
            out.append(c)
        i += 1
    if in_class:
        raise ValueError("unterminated character class")
    return "".join(out)


@lru_cache(maxsize=512)
def _compile_regex(pattern: str) -> re.Pattern[str]:
    return re.compile(translate_ecma_regex(pattern), re.ASCII)


# --------------------------------------------------------------------------- formats (assertion vocab only)

_DATE_RE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$", re.ASCII)
_TIME_RE = re.compile(r"^(\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-](\d{2}):(\d{2}))$", re.ASCII)
_UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+$")
_HOST_LABEL_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$", re.ASCII)


def _fmt_date(s: str) -> bool:
    m = _DATE_RE.match(s)
    if not m:
        return False
    y, mo, d = (int(g) for g in m.groups())
    if not 1 <= mo <= 12:
        return False
    leap = y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)
    days = [31, 29 if leap else 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][mo - 1]
    return 1 <= d <= days


def _fmt_time(s: str) -> bool:
    m = _TIME_RE.match(s)
    if not m:
        return False
    h, mi, sec = int(m.group(1)), int(m.group(2)), int(m.group(3))
    if m.group(6) is not None and (int(m.group(6)) > 23 or int(m.group(7)) > 59):
        return False
    return h <= 23 and mi <= 59 and sec <= 60


def _fmt_ip(version: int) -> Callable[[str], bool]:
    def check(s: str) -> bool:
        if not s.isascii() or "%" in s:
            return False
        try:
            return ipaddress.ip_address(s).version == version
        except ValueError:
            return False
    return check


def _fmt_hostname(s: str) -> bool:
    if not s or len(s) > 253:
        return False
    return all(_HOST_LABEL_RE.match(label) for label in (s[:-1] if s.endswith(".") else s).split("."))


def _fmt_regex(s: str) -> bool:
    try:
        _compile_regex(s)
        return True
    except (ValueError, re.error, OverflowError):
        return False


_FORMATS: dict[str, Callable[[str], bool]] = {
    "date": _fmt_date,
    "time": _fmt_time,
    "date-time": lambda s: len(s) > 11 and s[10] in "Tt" and _fmt_date(s[:10]) and _fmt_time(s[11:]),
    "ipv4": _fmt_ip(4),
    "ipv6": _fmt_ip(6),
    "uuid": lambda s: bool(_UUID_RE.match(s)),
    "email": lambda s: bool(_EMAIL_RE.match(s)),
    "hostname": _fmt_hostname,
    "regex": _fmt_regex,
}


# --------------------------------------------------------------------------- built-in meta-schemas

def _meta(name: str, vocab: str, body: dict[str, Any]) -> dict[str, Any]:
    doc = {"$schema": DRAFT_2020_12, "$id": f"https://json-schema.org/draft/2020-12/meta/{name}",
           "$vocabulary": {_VOCAB_PREFIX + vocab: True}, "$dynamicAnchor": "meta",
           "type": ["object", "boolean"]}
    doc.update(body)
    return doc


@lru_cache(maxsize=1)
def _builtin_metaschemas() -> dict[str, Any]:
    """The Draft 2020-12 meta-schemas (json-schema.org), so ``$ref`` to them needs no network."""
    dyn = {"$dynamicRef": "#meta"}
    nonneg = {"$ref": "#/$defs/nonNegativeInteger"}
    nonneg0 = {"$ref": "#/$defs/nonNegativeIntegerDefault0"}
    docs = [
        {"$schema": DRAFT_2020_12, "$id": DRAFT_2020_12,
         "$vocabulary": {_VOCAB_PREFIX + v: True for v in _VOCABS if v != "format-assertion"},
         "$dynamicAnchor": "meta", "title": "Core and Validation specifications meta-schema",
         "allOf": [{"$ref": f"meta/{v}"} for v in ("core", "applicator", "unevaluated", "validation",
                                                     "meta-data", "format-annotation", "content")],
         "type": ["object", "boolean"],
         "properties": {
             "definitions": {"type": "object", "additionalProperties": dyn, "deprecated": True},
             "dependencies": {"type": "object", "additionalProperties": {"anyOf": [
                 dyn, {"$ref": "meta/validation#/$defs/stringArray"}]}, "deprecated": True},
             "$recursiveAnchor": {"$ref": "meta/core#/$defs/anchorString", "deprecated": True},
             "$recursiveRef": {"$ref": "meta/core#/$defs/uriReferenceString", "deprecated": True}}},
        _meta("core", "core", {"properties": {
            "$id": {"$ref": "#/$defs/uriReferenceString", "pattern": "^[^#]*#?$"},
            "$schema": {"$ref": "#/$defs/uriString"},
            "$ref": {"$ref": "#/$defs/uriReferenceString"},
            "$anchor": {"$ref": "#/$defs/anchorString"},
            "$dynamicRef": {"$ref": "#/$defs/uriReferenceString"},
            "$dynamicAnchor": {"$ref": "#/$defs/anchorString"},
            "$vocabulary": {"type": "object", "propertyNames": {"$ref": "#/$defs/uriString"},
                            "additionalProperties": {"type": "boolean"}},
            "$comment": {"type": "string"},
            "$defs": {"type": "object", "additionalProperties": dyn}},
            "$defs": {"anchorString": {"type": "string", "pattern": "^[A-Za-z_][-A-Za-z0-9._]*$"},
                      "uriString": {"type": "string", "format": "uri"},
                      "uriReferenceString": {"type": "string", "format": "uri-reference"}}}),
        _meta("applicator", "applicator", {"properties": {
            "prefixItems": {"$ref": "#/$defs/schemaArray"}, "items": dyn, "contains": dyn,
            "additionalProperties": dyn,
            "properties": {"type": "object", "additionalProperties": dyn, "default": {}},
            "patternProperties": {"type": "object", "additionalProperties": dyn,
                                  "propertyNames": {"format": "regex"}, "default": {}},
            "dependentSchemas": {"type": "object", "additionalProperties": dyn, "default": {}},
            "propertyNames": dyn, "if": dyn, "then": dyn, "else": dyn,
            "allOf": {"$ref": "#/$defs/schemaArray"}, "anyOf": {"$ref": "#/$defs/schemaArray"},
            "oneOf": {"$ref": "#/$defs/schemaArray"}, "not": dyn},
            "$defs": {"schemaArray": {"type": "array", "minItems": 1, "items": dyn}}}),
        _meta("unevaluated", "unevaluated", {"properties": {
            "unevaluatedItems": dyn, "unevaluatedProperties": dyn}}),
        _meta("validation", "validation", {"properties": {
            "type": {"anyOf": [{"$ref": "#/$defs/simpleTypes"},
                               {"type": "array", "items": {"$ref": "#/$defs/simpleTypes"},
                                "minItems": 1, "uniqueItems": True}]},
            "const": True, "enum": {"type": "array", "items": True},
            "multipleOf": {"type": "number", "exclusiveMinimum": 0},
            "maximum": {"type": "number"}, "exclusiveMaximum": {"type": "number"},
            "minimum": {"type": "number"}, "exclusiveMinimum": {"type": "number"},
            "maxLength": nonneg, "minLength": nonneg0,
            "pattern": {"type": "string", "format": "regex"},
            "maxItems": nonneg, "minItems": nonneg0,
            "uniqueItems": {"type": "boolean", "default": False},
            "maxContains": nonneg, "minContains": {"$ref": "#/$defs/nonNegativeInteger", "default": 1},
            "maxProperties": nonneg, "minProperties": nonneg0,
            "required": {"$ref": "#/$defs/stringArray"},
            "dependentRequired": {"type": "object",
                                  "additionalProperties": {"$ref": "#/$defs/stringArray"}}},
            "$defs": {
                "nonNegativeInteger": {"type": "integer", "minimum": 0},
                "nonNegativeIntegerDefault0": {"$ref": "#/$defs/nonNegativeInteger", "default": 0},
                "simpleTypes": {"enum": ["array", "boolean", "integer", "null", "number", "object",
                                         "string"]},
                "stringArray": {"type": "array", "items": {"type": "string"}, "uniqueItems": True,
                                "default": []}}}),
        _meta("meta-data", "meta-data", {"properties": {
            "title": {"type": "string"}, "description": {"type": "string"}, "default": True,
            "deprecated": {"type": "boolean", "default": False},
            "readOnly": {"type": "boolean", "default": False},
            "writeOnly": {"type": "boolean", "default": False},
            "examples": {"type": "array", "items": True}}}),
        _meta("format-annotation", "format-annotation", {"properties": {"format": {"type": "string"}}}),
        _meta("format-assertion", "format-assertion", {"properties": {"format": {"type": "string"}}}),
        _meta("content", "content", {"properties": {
            "contentEncoding": {"type": "string"}, "contentMediaType": {"type": "string"},
            "contentSchema": dyn}}),
    ]
    return {d["$id"]: d for d in docs}


# --------------------------------------------------------------------------- evaluation

class _Acc:
    """Annotations gathered while evaluating one schema object at one instance location."""

    __slots__ = ("props", "items")

    def __init__(self) -> None:
        self.props: set[str] | None = None
        self.items: set[int] | None = None


def _merge(acc: _Acc | None, r: tuple) -> None:
    if acc is None:
        return
    if r[1]:
        if acc.props is None:
            acc.props = set(r[1])
        else:
            acc.props |= r[1]
    if r[2]:
        if acc.items is None:
            acc.items = set(r[2])
        else:
            acc.items |= r[2]


def _add_props(acc: _Acc | None, names: Any) -> None:
    if acc is not None:
        if acc.props is None:
            acc.props = set(names)
        else:
            acc.props.update(names)


def _add_items(acc: _Acc | None, idx: Any) -> None:
    if acc is not None:
        if acc.items is None:
            acc.items = set(idx)
        else:
            acc.items.update(idx)


class _State:
    __slots__ = ("track", "scope", "active", "depth", "dyn")

    def __init__(self, track: bool, dyn: dict[str, dict[str, "_Node"]]) -> None:
        self.track = track
        self.scope: list[str] = [None]  # type: ignore[list-item]  # sentinel: never equal to a URI
        self.active: set[tuple[int, int]] = set()
        self.depth = 0
        self.dyn = dyn


def _err(errs: list, path: tuple, keyword: str, message: str) -> None:
    errs.append(ValidationError(_pointer(path), keyword, message))
    if len(errs) >= MAX_ERRORS:
        raise _Full


_OK = (True, None, None)
_FAIL = (False, None, None)
_Kw = Callable[[Any, tuple, "list | None", _State, "_Acc | None"], bool]


class _Node:
    """A compiled schema object (or boolean schema when ``const`` is not None)."""

    __slots__ = ("const", "kws", "resource", "loc", "assert_spec", "has_uneval", "__weakref__")

    def __init__(self, const: bool | None, resource: str = "", loc: str = "") -> None:
        self.const = const
        self.kws: list[_Kw] = []
        self.resource = resource
        self.loc = loc
        self.assert_spec: list[Any] = []
        self.has_uneval = False


_TRUE = _Node(True)
_FALSE = _Node(False)


def _eval(node: _Node, inst: Any, path: tuple, errs: list | None, st: _State) -> tuple:
    """Evaluate ``node`` against ``inst``: (valid, evaluated props, evaluated items)."""
    c = node.const
    if c is not None:
        if c:
            return _OK
        if errs is not None:
            _err(errs, path, "false", "no value is allowed here (the schema is false)")
        return _FAIL
    if len(path) > MAX_INSTANCE_DEPTH:
        if errs is not None:
            _err(errs, path, "$depth", f"instance nested deeper than {MAX_INSTANCE_DEPTH} levels")
        return _FAIL
    st.depth += 1
    if st.depth > MAX_EVAL_DEPTH:
        raise _TooDeep(path)
    scope = st.scope
    pushed = node.resource != scope[-1]
    if pushed:
        scope.append(node.resource)
    acc = _Acc() if st.track else None
    ok = True
    for kw in node.kws:
        if not kw(inst, path, errs, st, acc):
            ok = False
            if errs is None:
                break
    if pushed:
        scope.pop()
    st.depth -= 1
    if not ok:
        return _FAIL
    if acc is None or (acc.props is None and acc.items is None):
        return _OK
    return (True, acc.props, acc.items)


def _apply(child: _Node, inst: Any, path: tuple, errs: list | None, st: _State, kw: str,
           what: str) -> tuple:
    """Evaluate a subschema at a child location; a false subschema reports as ``kw``."""
    if child.const is False:
        if errs is not None:
            _err(errs, path, kw, f"{what} is not allowed")
        return _FAIL
    return _eval(child, inst, path, errs, st)


# --------------------------------------------------------------------------- compilation

def _is_nonneg_int(v: Any) -> bool:
    """A non-negative integer; 2.0 counts (JSON does not distinguish 2 from 2.0)."""
    if isinstance(v, float):
        return math.isfinite(v) and v >= 0 and v.is_integer()
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


_TYPES = ("null", "boolean", "object", "array", "number", "integer", "string")
_KNOWN_VOCAB_URIS = {_VOCAB_PREFIX + v: v for v in _VOCABS}


class _Compiler:
    def __init__(self, registry: Mapping[str, Any] | None, strict: bool) -> None:
        self.registry = registry or {}
        self.strict = strict
        self.loaded: set[str] = set()
        # uri -> (object, parent base, dialect, location)
        self.resources: dict[str, tuple] = {}
        self.anchors: dict[str, tuple] = {}
        self.dyn_anchors: dict[str, dict[str, tuple]] = {}
        self.info: dict[int, tuple] = {}
        self.nodes: dict[tuple[int, str], _Node] = {}
        self.dialects: dict[str, _Dialect] = {}

    # ---- documents and the index walk

    def add_document(self, doc: Any, uri: str, loc: str) -> None:
        self.loaded.add(uri)
        self.resources.setdefault(uri, (doc, uri, _FULL, loc))
        self._walk(doc, uri, _FULL, loc, 0)

    def _walk(self, obj: Any, base: str, dialect: _Dialect, loc: str, depth: int) -> None:
        if not isinstance(obj, dict):
            return
        if depth > MAX_SCHEMA_DEPTH:
            raise SchemaError(loc, f"schema nested deeper than {MAX_SCHEMA_DEPTH} levels")
        self.info.setdefault(id(obj), (base, dialect, loc))
        entry = (obj, base, dialect, loc)
        sch = obj.get("$schema")
        if isinstance(sch, str):
            dialect = self.dialect_for(sch, loc + "/$schema")
        idv = obj.get("$id")
        if isinstance(idv, str) and not (dialect.legacy and idv.startswith("#")):
            base = _split_frag(_join(base, idv))[0]
            self.resources.setdefault(base, entry)
        for kw in ("$anchor", "$dynamicAnchor"):
            a = obj.get(kw)
            if isinstance(a, str) and not (kw == "$dynamicAnchor" and dialect.legacy):
                self.anchors.setdefault(f"{base}#{a}", entry)
                if kw == "$dynamicAnchor":
                    self.dyn_anchors.setdefault(base, {}).setdefault(a, entry)
        if dialect.legacy and isinstance(idv, str) and idv.startswith("#"):
            self.anchors.setdefault(base + idv, entry)
        for k, v in obj.items():
            sub = f"{loc}/{_ptr_escape(k)}"
            if k in _SUB_ONE:
                self._walk(v, base, dialect, sub, depth + 1)
            if k in _SUB_MAP and isinstance(v, dict):
                for name, s in v.items():
                    self._walk(s, base, dialect, f"{sub}/{_ptr_escape(name)}", depth + 1)
            if k in _SUB_LIST and isinstance(v, list):
                for i, s in enumerate(v):
                    self._walk(s, base, dialect, f"{sub}/{i}", depth + 1)

    def _load(self, uri: str) -> bool:
        if self.strict or uri in self.loaded:
            return False
        doc = self.registry.get(uri) if uri in self.registry else None
        if doc is None:
            doc = _builtin_metaschemas().get(uri)
        if doc is None:
            return False
        self.add_document(doc, uri, uri + "#")
        return True

    def dialect_for(self, schema_uri: str, loc: str) -> _Dialect:
        uri = schema_uri[:-1] if schema_uri.endswith("#") else schema_uri
        if uri == DRAFT_2020_12:
            return _FULL
        if uri in _LEGACY_DRAFTS:
            return _LEGACY
        if self.strict:
            return _FULL
        if uri in self.dialects:
            return self.dialects[uri]
        self.dialects[uri] = _FULL  # provisional, for a meta-schema describing itself
        if uri not in self.resources:
            self._load(uri)
        res = self.resources.get(uri)
        dialect = _FULL
        if res is not None and isinstance(res[0], dict) and isinstance(res[0].get("$vocabulary"), dict):
            vocabs = set()
            for vuri, required in res[0]["$vocabulary"].items():
                name = _KNOWN_VOCAB_URIS.get(vuri)
                if name is not None:
                    vocabs.add(name)
                elif required is True:
                    raise SchemaError(loc, f"meta-schema {uri!r} requires unknown vocabulary {vuri!r}")
            dialect = _Dialect(frozenset(vocabs))
        self.dialects[uri] = dialect
        return dialect

    # ---- references

    def resolve(self, full: str, loc: str) -> tuple:
        uri, frag = _split_frag(full)
        res = self.resources.get(uri)
        if res is None and self._load(uri):
            res = self.resources.get(uri)
        if res is None:
            raise SchemaError(loc, f"cannot resolve reference {full!r}")
        if not frag:
            return res
        if frag.startswith("/"):
            obj, pbase, dialect, rloc = res
            cur_base = _split_frag(_join(pbase, obj["$id"]))[0] if (
                isinstance(obj, dict) and isinstance(obj.get("$id"), str)) else pbase
            cur_dialect = dialect
            cur, cur_loc = obj, rloc
            for tok in _unescape_tokens(frag):
                parent = cur
                if isinstance(cur, dict) and tok in cur:
                    cur = cur[tok]
                elif isinstance(cur, list) and tok.isdigit() and int(tok) < len(cur) and (
                        tok == "0" or not tok.startswith("0")):
                    cur = cur[int(tok)]
                else:
                    raise SchemaError(loc, f"cannot resolve reference {full!r}")
                cur_loc = f"{cur_loc}/{_ptr_escape(tok)}"
                if isinstance(parent, dict) and parent is not obj:
                    inf = self.info.get(id(parent))
                    if inf is not None:
                        pb, cur_dialect = inf[0], inf[1]
                        pid = parent.get("$id")
                        cur_base = _split_frag(_join(pb, pid))[0] if isinstance(pid, str) else pb
            inf = self.info.get(id(cur)) if isinstance(cur, dict) else None
            if inf is not None:
                return (cur, inf[0], inf[1], inf[2])
            return (cur, cur_base, cur_dialect, cur_loc)
        a = self.anchors.get(f"{uri}#{frag}")
        if a is None:
            raise SchemaError(loc, f"cannot resolve reference {full!r}")
        return a

    # ---- nodes

    def node(self, obj: Any, base: str, dialect: _Dialect, loc: str) -> _Node:
        if obj is True:
            return _TRUE
        if obj is False:
            return _FALSE
        if not isinstance(obj, dict):
            raise SchemaError(loc, "a schema must be an object or a boolean")
        sch = obj.get("$schema")
        if "$schema" in obj:
            if not isinstance(sch, str):
                raise SchemaError(loc + "/$schema", "$schema must be a string")
            dialect = self.dialect_for(sch, loc + "/$schema")
        if "$id" in obj:
            idv = obj["$id"]
            if not isinstance(idv, str):
                raise SchemaError(loc + "/$id", "$id must be a string")
            if not (dialect.legacy and idv.startswith("#")):
                base = _split_frag(_join(base, idv))[0]
        key = (id(obj), base)
        node = self.nodes.get(key)
        if node is not None:
            return node
        node = _Node(None, base, loc)
        self.nodes[key] = node
        _KeywordCompiler(self, node, obj, base, dialect, loc).run()
        return node

    def node_for_ref(self, full: str, loc: str) -> _Node:
        obj, pbase, dialect, tloc = self.resolve(full, loc)
        return self.node(obj, pbase, dialect, tloc)


class _KeywordCompiler:
    """Compiles the keywords of one schema object into closures on ``node.kws``."""

    def __init__(self, comp: _Compiler, node: _Node, obj: dict, base: str, dialect: _Dialect,
                 loc: str) -> None:
        self.c = comp
        self.node = node
        self.obj = obj
        self.base = base
        self.d = dialect
        self.loc = loc

    def fail(self, kw: str, reason: str) -> SchemaError:
        return SchemaError(f"{self.loc}/{_ptr_escape(kw)}", reason)

    def sub(self, value: Any, *tokens: Any) -> _Node:
        loc = self.loc + "".join("/" + _ptr_escape(t) for t in tokens)
        return self.c.node(value, self.base, self.d, loc)

    def subs_list(self, kw: str) -> list[_Node]:
        v = self.obj[kw]
        if not isinstance(v, list) or not v:
            raise self.fail(kw, f"{kw} must be a non-empty array of schemas")
        return [self.sub(s, kw, i) for i, s in enumerate(v)]

    def subs_map(self, kw: str) -> list[tuple[str, _Node]]:
        v = self.obj[kw]
        if not isinstance(v, dict):
            raise self.fail(kw, f"{kw} must be an object of schemas")
        return [(k, self.sub(s, kw, k)) for k, s in v.items()]

    def regex(self, kw: str, pattern: Any, *tokens: Any) -> re.Pattern[str]:
        if not isinstance(pattern, str):
            raise self.fail(kw, "a pattern must be a string")
        try:
            return _compile_regex(pattern)
        except (ValueError, re.error, OverflowError, RecursionError) as exc:
            where = "/".join(_ptr_escape(t) for t in (kw, *tokens))
            raise SchemaError(f"{self.loc}/{where}", f"invalid regular expression {pattern!r}: {exc}") from None

    def count(self, kw: str) -> int | None:
        if kw not in self.obj:
            return None
        v = self.obj[kw]
        if not _is_nonneg_int(v):
            raise self.fail(kw, f"{kw} must be a non-negative integer")
        return int(v)

    def number(self, kw: str) -> int | float | None:
        if kw not in self.obj:
            return None
        v = self.obj[kw]
        if not _is_num(v) or v != v:
            raise self.fail(kw, f"{kw} must be a number")
        return v

    def add(self, fn: _Kw, asserts: Any = True) -> None:
        self.node.kws.append(fn)
        if asserts is not None and asserts is not False:
            self.node.assert_spec.append(asserts)

    def run(self) -> None:
        o, V = self.obj, self.d.vocabs
        for kw in ("$anchor", "$dynamicAnchor"):
            if kw in o and (not isinstance(o[kw], str) or not _ANCHOR_RE.match(o[kw])):
                raise self.fail(kw, f"{kw} must be a plain name matching ^[A-Za-z_][-A-Za-z0-9._]*$")
        if "$defs" in o:
            self.subs_map("$defs")  # compiled so a broken definition is reported up front
        if "validation" in V:
            self.validation()
        if "format-assertion" in V and isinstance(o.get("format"), str):
            self.format_assertion(o["format"])
        if "$ref" in o:
            self.ref("$ref")
        if "$dynamicRef" in o and not self.d.legacy:
            self.ref("$dynamicRef")
        if "applicator" in V:
            self.applicators()
        if "unevaluated" in V:
            self.unevaluated()

    # ---- core

    def ref(self, kw: str) -> None:
        ref = self.obj[kw]
        if not isinstance(ref, str):
            raise self.fail(kw, f"{kw} must be a string")
        if self.c.strict and not (ref == "#" or ref.startswith("#/$defs/")):
            raise self.fail(kw, f"only local references to '#' or '#/$defs/...' are allowed, got {ref!r}")
        full = _join(self.base, ref)
        loc = f"{self.loc}/{kw}"
        target = self.c.node_for_ref(full, loc)
        dyn_name = None
        if kw == "$dynamicRef":
            frag = _split_frag(full)[1]
            tobj = self.c.resolve(full, loc)[0]
            if frag and not frag.startswith("/") and isinstance(tobj, dict) and (
                    tobj.get("$dynamicAnchor") == frag):
                dyn_name = frag
        tid = id(target)

        def ref_fn(inst: Any, path: tuple, errs: list | None, st: _State, acc: _Acc | None) -> bool:
            t = target
            if dyn_name is not None:
                for res in st.scope[1:]:
                    anchors = st.dyn.get(res)
                    if anchors is not None and dyn_name in anchors:
                        t = anchors[dyn_name]
                        break
            key = (tid if t is target else id(t), len(path))
            if key in st.active:
                if errs is not None:
                    _err(errs, path, kw, f"{kw} loops back to a schema already being applied here")
                return False
            st.active.add(key)
            r = _eval(t, inst, path, errs, st)
            st.active.discard(key)
            if r[0]:
                _merge(acc, r)
                return True
            return False
        self.add(ref_fn, ("in", [target]) if dyn_name is None else True)

    # ---- validation vocabulary

    def validation(self) -> None:
        o = self.obj
        if "type" in o:
            t = o["type"]
            types = [t] if isinstance(t, str) else t
            if not isinstance(types, list) or not types or not all(
                    isinstance(x, str) and x in _TYPES for x in types):
                raise self.fail("type", f"type must be one of {', '.join(_TYPES)} or a non-empty array of them")
            tset = tuple(dict.fromkeys(types))
            label = tset[0] if len(tset) == 1 else "one of " + ", ".join(tset)

            def type_fn(inst, path, errs, st, acc):
                for x in tset:
                    if _has_type(inst, x):
                        return True
                if errs is not None:
                    _err(errs, path, "type", f"expected {label}, got {_json_type(inst)}")
                return False
            self.add(type_fn)
        if "enum" in o:
            vals = o["enum"]
            if not isinstance(vals, list):
                raise self.fail("enum", "enum must be an array")
            keys = self.keys("enum", vals)
            shown = json.dumps(vals, default=str)[:200]

            def enum_fn(inst, path, errs, st, acc):
                if _key(inst) in keys:
                    return True
                if errs is not None:
                    _err(errs, path, "enum", f"value is not one of {shown}")
                return False
            self.add(enum_fn)
        if "const" in o:
            ckey = self.keys("const", [o["const"]])
            shown_c = json.dumps(o["const"], default=str)[:200]

            def const_fn(inst, path, errs, st, acc):
                if _key(inst) in ckey:
                    return True
                if errs is not None:
                    _err(errs, path, "const", f"value must equal {shown_c}")
                return False
            self.add(const_fn)
        self.numeric()
        self.strings()
        self.arrays()
        self.objects()

    def keys(self, kw: str, vals: list) -> frozenset:
        def check(v: Any, depth: int) -> None:
            if depth > MAX_SCHEMA_DEPTH:
                raise self.fail(kw, "value nested too deeply")
            if isinstance(v, dict):
                for k, x in v.items():
                    if not isinstance(k, str):
                        raise self.fail(kw, "object keys must be strings")
                    check(x, depth + 1)
            elif isinstance(v, list):
                for x in v:
                    check(x, depth + 1)
            elif not (v is None or isinstance(v, (bool, int, float, str))):
                raise self.fail(kw, f"not a JSON value: {type(v).__name__}")
        for v in vals:
            check(v, 0)
        return frozenset(_key(v) for v in vals)

    def numeric(self) -> None:
        m = self.number("multipleOf")
        if m is not None:
            if not m > 0 or (isinstance(m, float) and not math.isfinite(m)):
                raise self.fail("multipleOf", "multipleOf must be a number greater than 0")
            mf = _exact(m)

            def multiple_fn(inst, path, errs, st, acc):
                if not _is_num(inst) or _multiple_of(inst, mf, m):
                    return True
                if errs is not None:
                    _err(errs, path, "multipleOf", f"{inst!r} is not a multiple of {m!r}")
                return False
            self.add(multiple_fn)
        for kw, bad, text in (("maximum", lambda v, b: v > b, "greater than"),
                              ("exclusiveMaximum", lambda v, b: v >= b, "greater than or equal to"),
                              ("minimum", lambda v, b: v < b, "less than"),
                              ("exclusiveMinimum", lambda v, b: v <= b, "less than or equal to")):
            bound = self.number(kw)
            if bound is not None:
                self.add(self._bound_fn(kw, bound, bad, text))

    @staticmethod
    def _bound_fn(kw: str, bound: Any, bad: Callable[[Any, Any], bool], text: str) -> _Kw:
        def fn(inst, path, errs, st, acc):
            if not _is_num(inst) or not bad(inst, bound):
                return True
            if errs is not None:
                _err(errs, path, kw, f"{inst!r} is {text} {bound!r}")
            return False
        return fn

    def strings(self) -> None:
        o = self.obj
        hi, lo = self.count("maxLength"), self.count("minLength")
        if hi is not None or lo is not None:
            def length_fn(inst, path, errs, st, acc):
                if not isinstance(inst, str):
                    return True
                n = len(inst)  # code points, as the spec counts
                if hi is not None and n > hi:
                    if errs is not None:
                        _err(errs, path, "maxLength", f"string longer than {hi} characters")
                    return False
                if lo is not None and n < lo:
                    if errs is not None:
                        _err(errs, path, "minLength", f"string shorter than {lo} characters")
                    return False
                return True
            self.add(length_fn)
        if "pattern" in o:
            rx = self.regex("pattern", o["pattern"])
            src = o["pattern"]

            def pattern_fn(inst, path, errs, st, acc):
                if not isinstance(inst, str) or rx.search(inst):
                    return True
                if errs is not None:
                    _err(errs, path, "pattern", f"string does not match pattern {src!r}")
                return False
            self.add(pattern_fn)

    def arrays(self) -> None:
        o = self.obj
        hi, lo = self.count("maxItems"), self.count("minItems")
        if hi is not None or lo is not None:
            def items_len_fn(inst, path, errs, st, acc):
                if not isinstance(inst, list):
                    return True
                if hi is not None and len(inst) > hi:
                    if errs is not None:
                        _err(errs, path, "maxItems", f"array has more than {hi} items")
                    return False
                if lo is not None and len(inst) < lo:
                    if errs is not None:
                        _err(errs, path, "minItems", f"array has fewer than {lo} items")
                    return False
                return True
            self.add(items_len_fn)
        if "uniqueItems" in o:
            if not isinstance(o["uniqueItems"], bool):
                raise self.fail("uniqueItems", "uniqueItems must be a boolean")
            if o["uniqueItems"]:
                def unique_fn(inst, path, errs, st, acc):
                    if not isinstance(inst, list):
                        return True
                    seen: dict[Any, int] = {}
                    for i, v in enumerate(inst):
                        k = _key(v)
                        if k in seen:
                            if errs is not None:
                                _err(errs, path, "uniqueItems", f"items {seen[k]} and {i} are equal")
                            return False
                        seen[k] = i
                    return True
                self.add(unique_fn)
        # minContains / maxContains are read by contains (applicators)

    def objects(self) -> None:
        o = self.obj
        hi, lo = self.count("maxProperties"), self.count("minProperties")
        if hi is not None or lo is not None:
            def props_len_fn(inst, path, errs, st, acc):
                if not isinstance(inst, dict):
                    return True
                if hi is not None and len(inst) > hi:
                    if errs is not None:
                        _err(errs, path, "maxProperties", f"object has more than {hi} properties")
                    return False
                if lo is not None and len(inst) < lo:
                    if errs is not None:
                        _err(errs, path, "minProperties", f"object has fewer than {lo} properties")
                    return False
                return True
            self.add(props_len_fn)
        if "required" in o:
            req = self.string_list("required", o["required"])
            if req:
                def required_fn(inst, path, errs, st, acc):
                    if not isinstance(inst, dict):
                        return True
                    ok = True
                    for name in req:
                        if name not in inst:
                            if errs is None:
                                return False
                            ok = False
                            _err(errs, path, "required", f"missing required property {name!r}")
                    return ok
                self.add(required_fn)
        if "dependentRequired" in o:
            dr = o["dependentRequired"]
            if not isinstance(dr, dict):
                raise self.fail("dependentRequired", "dependentRequired must be an object")
            deps = [(k, self.string_list("dependentRequired", v, k)) for k, v in dr.items()]
            self.add(self._dep_required_fn(deps, "dependentRequired"))

    @staticmethod
    def _dep_required_fn(deps: list[tuple[str, list[str]]], kw: str) -> _Kw:
        def fn(inst, path, errs, st, acc):
            if not isinstance(inst, dict):
                return True
            ok = True
            for k, names in deps:
                if k in inst:
                    for name in names:
                        if name not in inst:
                            if errs is None:
                                return False
                            ok = False
                            _err(errs, path, kw, f"property {name!r} is required when {k!r} is present")
            return ok
        return fn

    def string_list(self, kw: str, v: Any, *tokens: Any) -> list[str]:
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            where = "/".join(_ptr_escape(t) for t in (kw, *tokens))
            raise SchemaError(f"{self.loc}/{where}", f"{kw} must be an array of strings")
        return list(dict.fromkeys(v))

    def format_assertion(self, fmt: str) -> None:
        check = _FORMATS.get(fmt)
        if check is None:
            return

        def format_fn(inst, path, errs, st, acc):
            if not isinstance(inst, str) or check(inst):
                return True
            if errs is not None:
                _err(errs, path, "format", f"string is not a valid {fmt}")
            return False
        self.add(format_fn)

    # ---- applicator vocabulary

    def applicators(self) -> None:
        o = self.obj
        legacy = self.d.legacy
        for kw in ("allOf", "anyOf", "oneOf"):
            if kw in o:
                getattr(self, "_" + kw)(self.subs_list(kw))
        if "not" in o:
            self._not(self.sub(o["not"], "not"))
        if "if" in o:
            self._if(self.sub(o["if"], "if"),
                     self.sub(o["then"], "then") if "then" in o else None,
                     self.sub(o["else"], "else") if "else" in o else None)
        else:
            for kw in ("then", "else"):
                if kw in o:
                    self.sub(o[kw], kw)  # still has to compile
        # objects
        props = self.subs_map("properties") if "properties" in o else []
        pats = []
        if "patternProperties" in o:
            pp = o["patternProperties"]
            if not isinstance(pp, dict):
                raise self.fail("patternProperties", "patternProperties must be an object of schemas")
            pats = [(self.regex("patternProperties", p, p), self.sub(s, "patternProperties", p))
                    for p, s in pp.items()]
        if props:
            self._properties(props)
        if pats:
            self._pattern_properties(pats)
        if "additionalProperties" in o:
            self._additional_properties(self.sub(o["additionalProperties"], "additionalProperties"),
                                        frozenset(k for k, _ in props), [r for r, _ in pats])
        if "dependentSchemas" in o:
            self._dependent_schemas(self.subs_map("dependentSchemas"))
        if "dependencies" in o and isinstance(o["dependencies"], dict):  # pre-2019 compatibility
            req = [(k, self.string_list("dependencies", v, k)) for k, v in o["dependencies"].items()
                   if isinstance(v, list)]
            schemas = [(k, self.sub(v, "dependencies", k)) for k, v in o["dependencies"].items()
                       if not isinstance(v, list)]
            if req:
                self.add(self._dep_required_fn(req, "dependencies"))
            if schemas:
                self._dependent_schemas(schemas)
        if "propertyNames" in o:
            self._property_names(self.sub(o["propertyNames"], "propertyNames"))
        # arrays
        prefix: list[_Node] = []
        items = o.get("items")
        if legacy and isinstance(items, list):
            prefix = [self.sub(s, "items", i) for i, s in enumerate(items)]
            self._prefix_items(prefix, "items")
            if "additionalItems" in o:
                self._items(self.sub(o["additionalItems"], "additionalItems"), len(prefix),
                            "additionalItems")
        else:
            if "prefixItems" in o and not legacy:
                prefix = self.subs_list("prefixItems")
                self._prefix_items(prefix, "prefixItems")
            if "items" in o:
                if isinstance(items, list):
                    raise self.fail("items", "items must be a schema (use prefixItems for tuples)")
                self._items(self.sub(items, "items"), len(prefix), "items")
        if "contains" in o:
            lo = self.count("minContains") if "validation" in self.d.vocabs else None
            hi = self.count("maxContains") if "validation" in self.d.vocabs else None
            self._contains(self.sub(o["contains"], "contains"), 1 if lo is None else lo, hi)

    def _allOf(self, subs: list[_Node]) -> None:
        def fn(inst, path, errs, st, acc):
            ok = True
            for s in subs:
                r = _eval(s, inst, path, errs, st)
                if r[0]:
                    _merge(acc, r)
                else:
                    if errs is None:
                        return False
                    ok = False
            return ok
        self.add(fn, ("in", subs))

    def _anyOf(self, subs: list[_Node]) -> None:
        def fn(inst, path, errs, st, acc):
            matched = False
            for s in subs:
                r = _eval(s, inst, path, None, st)
                if r[0]:
                    matched = True
                    if acc is None:
                        return True
                    _merge(acc, r)
            if not matched and errs is not None:
                _err(errs, path, "anyOf", "value does not match any of the anyOf schemas")
            return matched
        self.add(fn, ("in-all", subs))

    def _oneOf(self, subs: list[_Node]) -> None:
        def fn(inst, path, errs, st, acc):
            first = None
            hits: list[int] = []
            for i, s in enumerate(subs):
                r = _eval(s, inst, path, None, st)
                if r[0]:
                    hits.append(i)
                    if len(hits) > 1:
                        break
                    first = r
            if len(hits) == 1:
                _merge(acc, first)  # type: ignore[arg-type]
                return True
            if errs is not None:
                if hits:
                    _err(errs, path, "oneOf", f"value matches more than one oneOf schema ({hits[0]} and {hits[1]})")
                else:
                    _err(errs, path, "oneOf", "value does not match any of the oneOf schemas")
            return False
        self.add(fn, True if len(subs) != 1 else ("in", subs))

    def _not(self, sub: _Node) -> None:
        def fn(inst, path, errs, st, acc):
            if not _eval(sub, inst, path, None, st)[0]:
                return True
            if errs is not None:
                _err(errs, path, "not", "value must not match the 'not' schema")
            return False
        self.add(fn)

    def _if(self, cond: _Node, then: _Node | None, other: _Node | None) -> None:
        def fn(inst, path, errs, st, acc):
            r = _eval(cond, inst, path, None, st)
            if r[0]:
                _merge(acc, r)
                branch = then
            else:
                branch = other
            if branch is None:
                return True
            r = _eval(branch, inst, path, errs, st)
            if r[0]:
                _merge(acc, r)
                return True
            return False
        self.add(fn, ("in", [n for n in (then, other) if n is not None]))

    def _properties(self, props: list[tuple[str, _Node]]) -> None:
        def fn(inst, path, errs, st, acc):
            if not isinstance(inst, dict):
                return True
            ok = True
            seen = []
            for name, s in props:
                if name in inst:
                    seen.append(name)
                    if s.const is True:
                        continue
                    r = _apply(s, inst[name], path + (name,), errs, st, "properties",
                               f"property {name!r}")
                    if not r[0]:
                        if errs is None:
                            return False
                        ok = False
            _add_props(acc, seen)
            return ok
        self.add(fn, ("any", [s for _, s in props]))

    def _pattern_properties(self, pats: list[tuple[re.Pattern[str], _Node]]) -> None:
        def fn(inst, path, errs, st, acc):
            if not isinstance(inst, dict):
                return True
            ok = True
            seen = []
            for k, v in inst.items():
                if not isinstance(k, str):
                    continue
                for rx, s in pats:
                    if rx.search(k):
                        seen.append(k)
                        r = _apply(s, v, path + (k,), errs, st, "patternProperties", f"property {k!r}")
                        if not r[0]:
                            if errs is None:
                                return False
                            ok = False
            _add_props(acc, seen)
            return ok
        self.add(fn, ("any", [s for _, s in pats]))

    def _additional_properties(self, sub: _Node, names: frozenset[str],
                               pats: list[re.Pattern[str]]) -> None:
        def fn(inst, path, errs, st, acc):
            if not isinstance(inst, dict):
                return True
            ok = True
            seen = []
            for k, v in inst.items():
                if k in names or (pats and isinstance(k, str) and any(p.search(k) for p in pats)):
                    continue
                seen.append(k)
                r = _apply(sub, v, path + (k,), errs, st, "additionalProperties",
                           f"additional property {k!r}")
                if not r[0]:
                    if errs is None:
                        return False
                    ok = False
            _add_props(acc, seen)
            return ok
        self.add(fn, ("any", [sub]))

    def _dependent_schemas(self, deps: list[tuple[str, _Node]]) -> None:
        def fn(inst, path, errs, st, acc):
            if not isinstance(inst, dict):
                return True
            ok = True
            for k, s in deps:
                if k in inst:
                    r = _eval(s, inst, path, errs, st)
                    if r[0]:
                        _merge(acc, r)
                    else:
                        if errs is None:
                            return False
                        ok = False
            return ok
        self.add(fn, ("in", [s for _, s in deps]))

    def _property_names(self, sub: _Node) -> None:
        def fn(inst, path, errs, st, acc):
            if not isinstance(inst, dict):
                return True
            ok = True
            for k in inst:
                if not _eval(sub, k, path + (k,), None, st)[0]:
                    if errs is None:
                        return False
                    ok = False
                    _err(errs, path + (k,), "propertyNames", f"property name {k!r} is not allowed")
            return ok
        self.add(fn, ("any", [sub]))

    def _prefix_items(self, subs: list[_Node], kw: str) -> None:
        def fn(inst, path, errs, st, acc):
            if not isinstance(inst, list):
                return True
            ok = True
            n = min(len(inst), len(subs))
            for i in range(n):
                r = _apply(subs[i], inst[i], path + (i,), errs, st, kw, f"item {i}")
                if not r[0]:
                    if errs is None:
                        return False
                    ok = False
            if n:
                _add_items(acc, range(n))
            return ok
        self.add(fn, ("any", subs))

    def _items(self, sub: _Node, start: int, kw: str) -> None:
        def fn(inst, path, errs, st, acc):
            if not isinstance(inst, list):
                return True
            ok = True
            n = len(inst)
            if sub.const is not True:
                for i in range(start, n):
                    r = _apply(sub, inst[i], path + (i,), errs, st, kw, f"item {i}")
                    if not r[0]:
                        if errs is None:
                            return False
                        ok = False
            if n > start:
                _add_items(acc, range(start, n))
            return ok
        self.add(fn, ("any", [sub]))

    def _contains(self, sub: _Node, lo: int, hi: int | None) -> None:
        def fn(inst, path, errs, st, acc):
            if not isinstance(inst, list):
                return True
            matched = []
            for i, v in enumerate(inst):
                if _eval(sub, v, path + (i,), None, st)[0]:
                    matched.append(i)
                    if acc is None and hi is None and len(matched) >= lo:
                        return True
            n = len(matched)
            if n < lo:
                if errs is not None:
                    msg = ("array does not contain an item matching 'contains'" if lo == 1
                           else f"array contains {n} matching items, fewer than {lo}")
                    _err(errs, path, "minContains" if lo != 1 else "contains", msg)
                return False
            if hi is not None and n > hi:
                if errs is not None:
                    _err(errs, path, "maxContains", f"array contains {n} matching items, more than {hi}")
                return False
            _add_items(acc, matched)
            return True
        self.add(fn, lo > 0 or hi is not None)

    # ---- unevaluated vocabulary (evaluated last: it reads every sibling's annotations)

    def unevaluated(self) -> None:
        o = self.obj
        if "unevaluatedItems" in o:
            self.node.has_uneval = True
            sub = self.sub(o["unevaluatedItems"], "unevaluatedItems")

            def items_fn(inst, path, errs, st, acc):
                if not isinstance(inst, list):
                    return True
                done = acc.items if acc is not None and acc.items else ()
                ok = True
                for i, v in enumerate(inst):
                    if i in done:
                        continue
                    r = _apply(sub, v, path + (i,), errs, st, "unevaluatedItems", f"unevaluated item {i}")
                    if not r[0]:
                        if errs is None:
                            return False
                        ok = False
                _add_items(acc, range(len(inst)))
                return ok
            self.add(items_fn, ("any", [sub]))
        if "unevaluatedProperties" in o:
            self.node.has_uneval = True
            psub = self.sub(o["unevaluatedProperties"], "unevaluatedProperties")

            def props_fn(inst, path, errs, st, acc):
                if not isinstance(inst, dict):
                    return True
                done = acc.props if acc is not None and acc.props else ()
                ok = True
                for k, v in inst.items():
                    if k in done:
                        continue
                    r = _apply(psub, v, path + (k,), errs, st, "unevaluatedProperties",
                               f"unevaluated property {k!r}")
                    if not r[0]:
                        if errs is None:
                            return False
                        ok = False
                _add_props(acc, inst.keys())
                return ok
            self.add(props_fn, ("any", [psub]))


def _asserts(node: _Node, memo: dict[int, bool], in_place: frozenset[int] = frozenset()) -> bool:
    """Whether a node can reject anything (False for {} / true / annotation-only schemas).

    Each ``assert_spec`` entry is True or (mode, subschemas): "any" = applied at child
    locations, "in" = applied in place ($ref, allOf, if/then/else, ...), "in-all" = anyOf, which
    rejects something only if every branch does. Conservative: when unsure, it asserts.
    """
    if node.const is not None:
        return not node.const
    k = id(node)
    if k in in_place:
        return True  # an in-place cycle without progress: evaluation fails it at run time
    if k in memo:
        return memo[k]
    memo[k] = False  # a recursion through child locations constrains nothing by itself
    result = False
    here = in_place | {k}
    for spec in node.assert_spec:
        if spec is True:
            result = True
        elif spec[0] == "any":
            result = any(_asserts(s, memo) for s in spec[1])
        elif spec[0] == "in":
            result = any(_asserts(s, memo, here) for s in spec[1])
        else:
            result = all(_asserts(s, memo, here) for s in spec[1])
        if result:
            break
    memo[k] = result
    return result


# --------------------------------------------------------------------------- public API

class CompiledSchema:
    """A compiled schema: validate instances against it as often as needed (thread-safe)."""

    def __init__(self, document: Any, root: _Node, track: bool, dyn: dict[str, dict[str, _Node]],
                 asserts: bool) -> None:
        self.document = document
        self.asserts = asserts
        self._root = root
        self._track = track
        self._dyn = dyn

    def _run(self, instance: Any, errs: list | None) -> bool:
        st = _State(self._track, self._dyn)
        try:
            return _eval(self._root, instance, (), errs, st)[0]
        except _Full:
            return False
        except (_TooDeep, RecursionError) as exc:  # RecursionError: a caller already deep in its stack
            if errs is not None:
                where = _pointer(exc.path) if isinstance(exc, _TooDeep) else ""
                errs.append(ValidationError(where, "$depth", "schema evaluation nested too deeply "
                                            f"(more than {MAX_EVAL_DEPTH} levels)"))
            return False

    def validate(self, instance: Any) -> list[ValidationError]:
        """All errors (at most :data:`MAX_ERRORS`); an empty list means valid."""
        errs: list[ValidationError] = []
        ok = self._run(instance, errs)
        if not ok and not errs:  # every failing keyword reports; this is a safety net
            errs.append(ValidationError("", "schema", "value is not valid"))
        return errs[:MAX_ERRORS]

    def is_valid(self, instance: Any) -> bool:
        return self._run(instance, None)

    def __repr__(self) -> str:
        return f"CompiledSchema(asserts={self.asserts}, hash={schema_hash(self.document)})"


def compile_schema(document: Any, *, registry: Mapping[str, Any] | None = None,
                   strict_refs_local_only: bool = False) -> CompiledSchema:
    """Compile a Draft 2020-12 schema document; raise :class:`SchemaError` if it does not compile.

    ``registry`` maps absolute URIs (without fragment) to documents for remote ``$ref``s.
    ``strict_refs_local_only`` is the registration rule of features.md §9.1: the document must be
    an object and every reference ``#`` or ``#/$defs/...``; nothing outside the document is loaded.
    """
    if strict_refs_local_only and not isinstance(document, dict):
        raise SchemaError("", "a schema document must be a JSON object")
    comp = _Compiler(registry, strict_refs_local_only)
    try:
        comp.add_document(document, "", "")
        root = comp.node(document, "", _FULL, "")
        # every $dynamicAnchor of every loaded resource gets a node: dynamic scope lookups at
        # validation time must never compile (or fail).
        dyn: dict[str, dict[str, _Node]] = {}
        done = -1
        while done != sum(len(v) for v in comp.dyn_anchors.values()):
            done = sum(len(v) for v in comp.dyn_anchors.values())
            for uri, anchors in list(comp.dyn_anchors.items()):
                for name, (obj, pbase, dialect, loc) in list(anchors.items()):
                    dyn.setdefault(uri, {})[name] = comp.node(obj, pbase, dialect, loc)
    except RecursionError:
        raise SchemaError("", "schema nested too deeply") from None
    track = any(n.has_uneval for n in comp.nodes.values())
    return CompiledSchema(document, root, track, dyn, _asserts(root, {}))


def schema_hash(document: Any) -> str:
    """First 16 hex digits of SHA-256 over the canonical JSON (sorted keys, compact, UTF-8)."""
    text = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
