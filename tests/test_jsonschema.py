"""ironflow_pkg.jsonschema: the product's keyword subset (features.md §9.1), error reporting, the
strict local-reference rule, schema_hash, the asserts flag, recursion/depth guards and a bounded
fuzz. Conformance with the official suite lives in test_jsonschema_suite.py."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import random
import re
from typing import Any

import pytest

from ironflow_pkg.jsonschema import (
    MAX_ERRORS,
    CompiledSchema,
    SchemaError,
    ValidationError,
    compile_schema,
    schema_hash,
    translate_ecma_regex,
)


def valid(schema: Any, instance: Any, **kw: Any) -> bool:
    c = compile_schema(schema, **kw)
    ok = c.is_valid(instance)
    assert ok == (not c.validate(instance)), "is_valid and validate() disagree"
    return ok


def errors(schema: Any, instance: Any, **kw: Any) -> list[tuple[str, str]]:
    return [(e.path, e.keyword) for e in compile_schema(schema, **kw).validate(instance)]


# --------------------------------------------------------------------------- API surface

def test_api_types() -> None:
    doc = {"type": "string"}
    c = compile_schema(doc)
    assert isinstance(c, CompiledSchema)
    assert c.document is doc
    assert c.asserts is True
    errs = c.validate(3)
    assert errs == [ValidationError(path="", keyword="type", message="expected string, got integer")]
    with pytest.raises(dataclasses.FrozenInstanceError):
        errs[0].path = "/x"  # type: ignore[misc]
    assert issubclass(SchemaError, ValueError)
    assert c.validate("ok") == [] and c.is_valid("ok")


# --------------------------------------------------------------------------- product keyword subset

PRODUCT_CASES: list[tuple[Any, Any, bool]] = [
    ({"type": "string"}, "a", True),
    ({"type": "string"}, 1, False),
    ({"type": ["string", "null"]}, None, True),
    ({"type": ["string", "null"]}, 0, False),
    ({"type": "integer"}, 1.0, True),
    ({"type": "integer"}, 1.5, False),
    ({"type": "integer"}, True, False),
    ({"type": "number"}, False, False),
    ({"type": "boolean"}, 0, False),
    ({"type": "object"}, [], False),
    ({"type": "array"}, {}, False),
    ({"enum": [1, "a", None, {"k": [1]}]}, 1.0, True),
    ({"enum": [1, "a", None, {"k": [1]}]}, True, False),
    ({"enum": [1, "a", None, {"k": [1]}]}, {"k": [1.0]}, True),
    ({"enum": [False]}, 0, False),
    ({"const": {"a": 1, "b": [True]}}, {"b": [True], "a": 1}, True),
    ({"const": {"a": 1, "b": [True]}}, {"b": [1], "a": 1}, False),
    ({"properties": {"a": {"type": "integer"}}}, {"a": 1, "b": "x"}, True),
    ({"properties": {"a": {"type": "integer"}}}, {"a": "1"}, False),
    ({"properties": {"a": {"type": "integer"}}}, "not an object", True),
    ({"required": ["a", "b"]}, {"a": 1}, False),
    ({"required": ["a", "b"]}, {"a": 1, "b": None}, True),
    ({"additionalProperties": False, "properties": {"a": True}}, {"a": 1}, True),
    ({"additionalProperties": False, "properties": {"a": True}}, {"a": 1, "b": 2}, False),
    ({"additionalProperties": {"type": "string"}, "patternProperties": {"^n_": {"type": "number"}}},
     {"n_1": 1, "x": "s"}, True),
    ({"additionalProperties": {"type": "string"}, "patternProperties": {"^n_": {"type": "number"}}},
     {"n_1": "1"}, False),
    ({"items": {"type": "integer"}}, [1, 2, 3], True),
    ({"items": {"type": "integer"}}, [1, "2"], False),
    ({"prefixItems": [{"type": "string"}, {"type": "integer"}], "items": False}, ["a", 1], True),
    ({"prefixItems": [{"type": "string"}, {"type": "integer"}], "items": False}, ["a", 1, 2], False),
    ({"prefixItems": [{"type": "string"}]}, [1], False),
    ({"minItems": 1, "maxItems": 2}, [], False),
    ({"minItems": 1, "maxItems": 2}, [1, 2, 3], False),
    ({"minItems": 1.0, "maxItems": 2.0}, [1], True),
    ({"uniqueItems": True}, [1, 1.0], False),
    ({"uniqueItems": True}, [1, True], True),
    ({"uniqueItems": True}, [{"a": 1, "b": 2}, {"b": 2, "a": 1}], False),
    ({"uniqueItems": False}, [1, 1], True),
    ({"minLength": 2, "maxLength": 3}, "é😀", True),  # code points, not UTF-16 units or bytes
    ({"maxLength": 1}, "😀", True),
    ({"minLength": 2}, "a", False),
    ({"pattern": "^[a-z]+\\d$"}, "abc1", True),
    ({"pattern": "^[a-z]+\\d$"}, "abc١", False),  # ECMA \d is ASCII
    ({"pattern": "b"}, "abc", True),  # unanchored search
    ({"pattern": "^abc$"}, "abc\n", False),
    ({"minimum": 1, "maximum": 3}, 3, True),
    ({"minimum": 1, "maximum": 3}, 3.01, False),
    ({"exclusiveMinimum": 1, "exclusiveMaximum": 3}, 1, False),
    ({"exclusiveMinimum": 1, "exclusiveMaximum": 3}, 2.5, True),
    ({"maximum": 18446744073709551615}, 18446744073709551616, False),
    ({"multipleOf": 0.01}, 19.99, True),
    ({"multipleOf": 0.01}, 19.991, False),
    ({"multipleOf": 0.0001}, 0.0075, True),
    ({"multipleOf": 3}, 9, True),
    ({"multipleOf": 3}, 10, False),
    ({"multipleOf": 2}, 4.0, True),
    ({"multipleOf": 0.5, "type": "integer"}, 1e308, True),
    ({"minProperties": 1, "maxProperties": 2}, {}, False),
    ({"minProperties": 1, "maxProperties": 2}, {"a": 1, "b": 2, "c": 3}, False),
    ({"allOf": [{"type": "string"}, {"minLength": 2}]}, "ab", True),
    ({"allOf": [{"type": "string"}, {"minLength": 2}]}, "a", False),
    ({"anyOf": [{"type": "string"}, {"type": "integer"}]}, 1, True),
    ({"anyOf": [{"type": "string"}, {"type": "integer"}]}, 1.5, False),
    ({"oneOf": [{"type": "integer"}, {"minimum": 2}]}, 1, True),
    ({"oneOf": [{"type": "integer"}, {"minimum": 2}]}, 3, False),
    ({"not": {"type": "null"}}, None, False),
    ({"not": {"type": "null"}}, 0, True),
    ({"if": {"properties": {"kind": {"const": "a"}}}, "then": {"required": ["x"]},
      "else": {"required": ["y"]}}, {"kind": "a", "x": 1}, True),
    ({"if": {"properties": {"kind": {"const": "a"}}}, "then": {"required": ["x"]},
      "else": {"required": ["y"]}}, {"kind": "b", "x": 1}, False),
    ({"$defs": {"pos": {"type": "integer", "minimum": 1}}, "properties": {"n": {"$ref": "#/$defs/pos"}}},
     {"n": 0}, False),
    ({"$defs": {"a~b/c": {"type": "string"}}, "$ref": "#/$defs/a~0b~1c"}, "s", True),
    ({"$defs": {"a b": {"type": "string"}}, "$ref": "#/$defs/a%20b"}, 1, False),
    ({"format": "email"}, "definitely not an email", True),  # format is an annotation
    ({"x-unknown": {"type": "string"}, "description": "d"}, 5, True),
    ({"dependentRequired": {"card": ["billing"]}}, {"card": 1}, False),
    ({"dependentSchemas": {"card": {"required": ["billing"]}}}, {"card": 1, "billing": 2}, True),
    ({"propertyNames": {"maxLength": 3}}, {"abcd": 1}, False),
    ({"contains": {"type": "string"}, "minContains": 2}, ["a", 1, "b"], True),
    ({"contains": {"type": "string"}, "maxContains": 1}, ["a", 1, "b"], False),
    ({"unevaluatedProperties": False, "allOf": [{"properties": {"a": True}}]}, {"a": 1}, True),
    ({"unevaluatedProperties": False, "allOf": [{"properties": {"a": True}}]}, {"a": 1, "b": 1}, False),
    (True, {"anything": 1}, True),
    (False, None, False),
]


@pytest.mark.parametrize("schema,instance,expected", PRODUCT_CASES,
                         ids=[f"{i}" for i in range(len(PRODUCT_CASES))])
def test_product_keywords(schema: Any, instance: Any, expected: bool) -> None:
    assert valid(schema, instance) is expected
    if isinstance(schema, dict):  # every product case is also legal under the registration rule
        assert valid(schema, instance, strict_refs_local_only=True) is expected


# --------------------------------------------------------------------------- error reporting

def test_all_errors_with_paths_and_messages() -> None:
    schema = {
        "type": "object",
        "properties": {"a": {"type": "integer"},
                       "b": {"type": "array", "items": {"type": "string", "maxLength": 2}}},
        "required": ["a", "c"],
        "additionalProperties": False,
    }
    errs = compile_schema(schema).validate({"a": "x", "b": ["abc", 1], "z/~": 1})
    assert [(e.path, e.keyword) for e in errs] == [
        ("", "required"), ("/a", "type"), ("/b/0", "maxLength"), ("/b/1", "type"),
        ("/z~1~0", "additionalProperties"),
    ]
    assert errs[0].message == "missing required property 'c'"
    assert errs[1].message == "expected integer, got string"
    assert errs[2].message == "string longer than 2 characters"
    assert "'z/~'" in errs[4].message


def test_error_keywords_for_each_assertion() -> None:
    assert errors({"enum": [1, 2]}, 3) == [("", "enum")]
    assert errors({"const": "x"}, "y") == [("", "const")]
    assert errors({"minimum": 5}, 4) == [("", "minimum")]
    assert errors({"exclusiveMaximum": 5}, 5) == [("", "exclusiveMaximum")]
    assert errors({"multipleOf": 2}, 3) == [("", "multipleOf")]
    assert errors({"pattern": "^a"}, "b") == [("", "pattern")]
    assert errors({"minItems": 2}, [1]) == [("", "minItems")]
    assert errors({"uniqueItems": True}, [1, 2, 1]) == [("", "uniqueItems")]
    assert errors({"maxProperties": 0}, {"a": 1}) == [("", "maxProperties")]
    assert errors({"anyOf": [{"type": "null"}, {"type": "string"}]}, 1) == [("", "anyOf")]
    assert errors({"oneOf": [True, True]}, 1) == [("", "oneOf")]
    assert errors({"not": True}, 1) == [("", "not")]
    assert errors({"contains": {"const": 1}}, [2]) == [("", "contains")]
    assert errors({"prefixItems": [False]}, [1]) == [("/0", "prefixItems")]
    assert errors({"items": False}, [1, 2]) == [("/0", "items"), ("/1", "items")]
    assert errors({"propertyNames": {"pattern": "^[a-z]+$"}}, {"A": 1}) == [("/A", "propertyNames")]
    assert errors({"properties": {"a": False}}, {"a": 1}) == [("/a", "properties")]
    assert errors({"unevaluatedProperties": False}, {"a": 1}) == [("/a", "unevaluatedProperties")]
    assert errors({"unevaluatedItems": False, "prefixItems": [True]}, [1, 2]) == [("/1", "unevaluatedItems")]
    assert errors(False, 1) == [("", "false")]
    # allOf / $ref / then pass the inner errors through, at their own paths
    assert errors({"allOf": [{"properties": {"x": {"type": "string"}}}, {"required": ["y"]}]},
                  {"x": 1}) == [("/x", "type"), ("", "required")]
    assert errors({"$defs": {"s": {"type": "string"}}, "items": {"$ref": "#/$defs/s"}}, ["a", 2]) == [
        ("/1", "type")]
    assert errors({"if": True, "then": {"minimum": 3}}, 1) == [("", "minimum")]


def test_errors_are_bounded() -> None:
    c = compile_schema({"items": {"type": "string"}})
    errs = c.validate(list(range(10 * MAX_ERRORS)))
    assert len(errs) == MAX_ERRORS == 100
    assert errs[0].path == "/0" and errs[-1].path == "/99"
    assert not c.is_valid(list(range(10 * MAX_ERRORS)))


def test_schema_error_names_pointer_and_reason() -> None:
    cases = [
        ({"properties": {"a": {"type": "strin"}}}, "/properties/a/type"),
        ({"properties": {"a": {"minLength": -1}}}, "/properties/a/minLength"),
        ({"items": {"pattern": "(unclosed"}}, "/items/pattern"),
        ({"patternProperties": {"[": True}}, "/patternProperties/["),
        ({"allOf": []}, "/allOf"),
        ({"allOf": [{"required": [1]}]}, "/allOf/0/required"),
        ({"multipleOf": 0}, "/multipleOf"),
        ({"maximum": "10"}, "/maximum"),
        ({"enum": "abc"}, "/enum"),
        ({"properties": {"a": 5}}, "/properties/a"),
        ({"$defs": {"x": {"type": 1}}}, "/$defs/x/type"),
        ({"items": [{"type": "string"}]}, "/items"),
        ({"$ref": "#/$defs/missing"}, "/$ref"),
        ({"$anchor": "not a name"}, "/$anchor"),
        ({"uniqueItems": "yes"}, "/uniqueItems"),
        ({"dependentRequired": {"a": "b"}}, "/dependentRequired/a"),
    ]
    for schema, pointer in cases:
        with pytest.raises(SchemaError) as info:
            compile_schema(schema)
        assert info.value.pointer == pointer, (schema, info.value)
        assert pointer in str(info.value) and info.value.reason in str(info.value)
    with pytest.raises(SchemaError):
        compile_schema(5)
    with pytest.raises(SchemaError):
        compile_schema(None)


# --------------------------------------------------------------------------- strict local refs (§9.1)

def test_strict_requires_an_object_document() -> None:
    for doc in (True, False, [], "x", 1, None):
        with pytest.raises(SchemaError, match="JSON object"):
            compile_schema(doc, strict_refs_local_only=True)
    # the default (conformance) mode accepts boolean schemas
    assert compile_schema(True).is_valid(1) and not compile_schema(False).is_valid(1)


@pytest.mark.parametrize("ref", [
    "#/definitions/x", "#/properties/a", "#anchor", "other.json", "http://localhost:1234/integer.json",
    "https://json-schema.org/draft/2020-12/schema", "urn:uuid:deadbeef-1234-0000-0000-4321feebdaed",
    "/$defs/x", "",
])
def test_strict_rejects_non_local_refs(ref: str) -> None:
    doc = {"$defs": {"x": {"type": "string"}, "anchor": {"$anchor": "anchor"}},
           "definitions": {"x": {}}, "properties": {"a": {"$ref": ref}}}
    with pytest.raises(SchemaError) as info:
        compile_schema(doc, strict_refs_local_only=True, registry={ref: {"type": "string"}})
    assert info.value.pointer == "/properties/a/$ref"
    with pytest.raises(SchemaError):
        compile_schema({"$dynamicRef": ref}, strict_refs_local_only=True)


def test_strict_accepts_local_defs_refs() -> None:
    doc = {
        "$id": "https://example.com/schemas/order",
        "$defs": {"money": {"type": "object", "properties": {"cents": {"type": "integer"}},
                            "required": ["cents"]},
                  "node": {"type": "object", "properties": {"next": {"$ref": "#/$defs/node"}}}},
        "type": "object",
        "properties": {"total": {"$ref": "#/$defs/money"}, "self": {"$ref": "#"},
                       "chain": {"$ref": "#/$defs/node"}},
    }
    c = compile_schema(doc, strict_refs_local_only=True)
    assert c.is_valid({"total": {"cents": 5}, "self": {"total": {"cents": 1}},
                       "chain": {"next": {"next": {}}}})
    assert [(e.path, e.keyword) for e in c.validate({"self": {"total": {}}})] == [
        ("/self/total", "required")]
    with pytest.raises(SchemaError, match="cannot resolve"):
        compile_schema({"$ref": "#/$defs/nope"}, strict_refs_local_only=True)


def test_default_mode_remote_refs_come_from_registry_only() -> None:
    reg = {"http://example.com/int.json": {"type": "integer"}}
    c = compile_schema({"$ref": "http://example.com/int.json"}, registry=reg)
    assert c.is_valid(1) and not c.is_valid("1")
    with pytest.raises(SchemaError, match="cannot resolve"):
        compile_schema({"$ref": "http://example.com/other.json"}, registry=reg)
    # the 2020-12 meta-schema is built in
    meta = compile_schema({"$ref": "https://json-schema.org/draft/2020-12/schema"})
    assert meta.is_valid({"type": "string", "minLength": 1})
    assert not meta.is_valid({"minLength": -1})
    assert not meta.is_valid({"$defs": {"x": {"type": 1}}})


# --------------------------------------------------------------------------- schema_hash

def test_schema_hash_is_canonical_and_stable() -> None:
    a = {"type": "object", "properties": {"b": {"type": "string"}, "a": {"enum": [1, "é"]}}}
    b = json.loads('{"properties": {"a": {"enum": [1, "é"]}, "b": {"type": "string"}}, "type": "object"}')
    h = schema_hash(a)
    assert re.fullmatch(r"[0-9a-f]{16}", h)
    assert h == schema_hash(b)
    canonical = '{"properties":{"a":{"enum":[1,"é"]},"b":{"type":"string"}},"type":"object"}'
    assert h == hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]
    assert schema_hash({}) == hashlib.sha256(b"{}").hexdigest()[:16] == "44136fa355b3678a"
    assert schema_hash({"type": "string"}) != schema_hash({"type": "integer"})
    assert schema_hash(a) == h  # hashing does not mutate


# --------------------------------------------------------------------------- asserts flag

@pytest.mark.parametrize("schema,asserts", [
    ({}, False), (True, False), (False, True),
    ({"title": "t", "description": "d", "$comment": "c", "format": "email", "examples": [1],
      "default": 2, "x-extension": {"type": "string"}}, False),
    ({"$defs": {"a": {"type": "string"}}}, False),
    ({"properties": {"a": {}, "b": True}}, False),
    ({"properties": {"a": {"type": "string"}}}, True),
    ({"type": "object"}, True), ({"required": ["a"]}, True), ({"required": []}, False),
    ({"not": {}}, True), ({"anyOf": [{}, {"type": "string"}]}, False),
    ({"anyOf": [{"type": "null"}, {"type": "string"}]}, True),
    ({"oneOf": [{}, {}]}, True), ({"allOf": [{}, {"minimum": 1}]}, True),
    ({"$ref": "#/$defs/a", "$defs": {"a": {"type": "string"}}}, True),
    ({"$ref": "#/$defs/a", "$defs": {"a": {"description": "x"}}}, False),
    ({"if": {"type": "string"}}, False), ({"if": {"type": "string"}, "then": False}, True),
    ({"additionalProperties": False}, True), ({"contains": {}}, True),
    ({"contains": {}, "minContains": 0}, False),
    ({"unevaluatedProperties": {}}, False), ({"items": {"type": "string"}}, True),
])
def test_asserts_flag(schema: Any, asserts: bool) -> None:
    assert compile_schema(schema).asserts is asserts


# --------------------------------------------------------------------------- recursion and depth guards

def test_ref_cycle_without_progress_fails_instead_of_looping() -> None:
    for schema in ({"$ref": "#"},
                   {"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"allOf": [{"$ref": "#/$defs/a"}]}},
                    "$ref": "#/$defs/a"}):
        c = compile_schema(schema)
        assert not c.is_valid(1)
        assert [e.keyword for e in c.validate({"x": 1})] == ["$ref"]


def test_recursive_schema_with_progress_is_fine() -> None:
    tree = {"$defs": {"node": {"type": "object", "properties": {
        "value": {"type": "integer"}, "children": {"type": "array", "items": {"$ref": "#/$defs/node"}}},
        "required": ["value"], "unevaluatedProperties": False}}, "$ref": "#/$defs/node"}
    c = compile_schema(tree)
    inst: dict[str, Any] = {"value": 0}
    cur = inst
    for i in range(30):
        nxt = {"value": i}
        cur["children"] = [nxt]
        cur = nxt
    assert c.is_valid(inst)
    cur["children"] = [{"value": "x", "extra": 1}]
    assert [(e.path.count("children"), e.keyword) for e in c.validate(inst)] == [
        (31, "type"), (31, "unevaluatedProperties")]


@pytest.mark.parametrize("schema", [
    {"items": {"$ref": "#"}},
    {"properties": {"a": {"$ref": "#"}}, "additionalProperties": {"$ref": "#"}},
    {"enum": [[[1]]]}, {"const": {"a": {"a": 1}}}, {"uniqueItems": True},
    {"unevaluatedItems": False, "items": {"$ref": "#"}},
])
def test_deep_instances_are_errors_not_crashes(schema: Any) -> None:
    deep_list: Any = []
    deep_obj: Any = {}
    a, o = deep_list, deep_obj
    for _ in range(50_000):
        a.append([])
        a = a[0]
        o["a"] = {}
        o = o["a"]
    c = compile_schema(schema)
    for inst in (deep_list, deep_obj, [deep_list, deep_list]):
        res = c.validate(inst)
        assert isinstance(res, list) and len(res) <= MAX_ERRORS
        assert c.is_valid(inst) == (not res)
    deep_errs = compile_schema({"items": {"$ref": "#"}}).validate(deep_list)
    assert deep_errs and deep_errs[0].keyword == "$depth" and deep_errs[0].path.startswith("/0/0/0")


def test_deep_schema_documents_do_not_compile() -> None:
    doc: dict[str, Any] = {}
    cur = doc
    for _ in range(10_000):
        cur["not"] = {}
        cur = cur["not"]
    with pytest.raises(SchemaError, match="nested"):
        compile_schema(doc)
    loop: dict[str, Any] = {}
    loop["not"] = loop  # a Python cycle is not JSON, but must not hang either
    with pytest.raises(SchemaError):
        compile_schema(loop)


# --------------------------------------------------------------------------- ECMA-262 patterns

@pytest.mark.parametrize("pattern,text,matches", [
    ("^\\d$", "5", True), ("^\\d$", "٥", False), ("^\\w$", "é", False), ("^\\W$", "é", True),
    ("^\\s$", "\u00a0", True), ("^\\s$", "\ufeff", True), ("^\\S$", "\u2003", False),
    ("^.$", "\n", False), ("^.$", "\u2028", False), ("^.$", "😀", True),
    ("^abc$", "abc\n", False), ("^\\cJ$", "\n", True), ("^\\u0041\\u{1F600}$", "A😀", True),
    ("^\\uD83D\\uDE00$", "😀", True), ("^\\p{Lu}\\p{Ll}+$", "Émile", True),
    ("^\\P{L}+$", "123", True), ("^\\p{Letter}+$", "ab1", False), ("^[\\p{N}x]+$", "x٣", True),
    ("^(?<y>\\d{4})-\\k<y>$", "2020-2020", True), ("^[^]$", "\n", True), ("[]", "a", False),
    ("^\\/$", "/", True), ("^a{2}$", "aa", True), ("^[&&]+$", "&&", True),
    ("^[+--]+$", ",-+", True), ("^[[a]+$", "[a", True),
])
def test_ecma_regex_translation(pattern: str, text: str, matches: bool) -> None:
    rx = re.compile(translate_ecma_regex(pattern), re.ASCII)
    assert bool(rx.search(text)) is matches
    assert valid({"pattern": pattern}, text) is matches


def test_invalid_patterns_do_not_compile() -> None:
    for p in ("(", "[a", "\\", "a**", "\\p{NotAProperty}", "\\u{110000}", "\\q"):
        with pytest.raises(SchemaError):
            compile_schema({"pattern": p})


# --------------------------------------------------------------------------- bounded fuzz

_TYPES = ["null", "boolean", "object", "array", "number", "integer", "string"]
_PATTERNS = ["^a", "b$", "\\d+", "[", "(a|b)*c", "\\p{L}", "\\p{Nope}", "^[^]$", "(?<n>x)\\k<n>",
             "\\u{1F600}", ".*", "\\", "a{2,3}", "[\\s\\S]", "(?=a)a", "\\cA"]
_REFS = ["#", "#/$defs/a", "#/$defs/b", "#/$defs/a/items", "#/properties/x", "#anc", "#dyn",
         "#/$defs/%61", "http://example.com/r.json", "r.json", "", "#/$defs/a~1b", 5, None]
_KEYWORDS = ["type", "enum", "const", "multipleOf", "minimum", "maximum", "exclusiveMinimum",
             "exclusiveMaximum", "minLength", "maxLength", "pattern", "items", "prefixItems",
             "contains", "minContains", "maxContains", "minItems", "maxItems", "uniqueItems",
             "minProperties", "maxProperties", "required", "properties", "patternProperties",
             "additionalProperties", "propertyNames", "dependentRequired", "dependentSchemas",
             "allOf", "anyOf", "oneOf", "not", "if", "then", "else", "unevaluatedItems",
             "unevaluatedProperties", "$ref", "$defs", "$id", "$anchor", "$dynamicRef",
             "$dynamicAnchor", "$schema", "format", "$comment", "dependencies", "x-unknown"]


def _rand_value(r: random.Random, depth: int = 0) -> Any:
    k = r.randrange(10 if depth < 3 else 7)
    if k == 0:
        return None
    if k == 1:
        return r.random() < 0.5
    if k == 2:
        return r.choice([0, 1, -1, 2, 3, 10**20, -(10**20)])
    if k == 3:
        return r.choice([0.5, 1.0, -2.5, 1e308, 1e-9, math.inf, -math.inf, math.nan, 0.1])
    if k in (4, 5, 6):
        return r.choice(["", "a", "abc", "A1", "😀", "é", "a\n", "x" * 20, "12", "$ref"])
    if k in (7, 8):
        return [_rand_value(r, depth + 1) for _ in range(r.randrange(4))]
    return {r.choice(["a", "b", "x", "$id", "", "a/b~"]): _rand_value(r, depth + 1)
            for _ in range(r.randrange(4))}


def _rand_schema(r: random.Random, depth: int = 0) -> Any:
    if depth > 3 or r.random() < 0.15:
        return r.choice([True, False, {}, _rand_value(r, 2)])
    return {kw: _rand_kw(r, kw, depth) for kw in r.sample(_KEYWORDS, r.randrange(1, 5))}


def _rand_kw(r: random.Random, kw: str, depth: int) -> Any:
    if r.random() < 0.08:
        return _rand_value(r, 2)  # garbage of any shape
    sub = lambda: _rand_schema(r, depth + 1)  # noqa: E731
    if kw == "type":
        return r.choice(_TYPES + ["strin", r.sample(_TYPES, 2), []])
    if kw == "enum":
        return [_rand_value(r, 1) for _ in range(r.randrange(4))]
    if kw == "const":
        return _rand_value(r, 1)
    if kw == "multipleOf":
        return r.choice([0, -1, 0.5, 2, 1e-9, 3, 0.1, 1e308])
    if kw in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        return r.choice([0, 1, -1.5, 10**30, 2.0, math.inf])
    if kw in ("minLength", "maxLength", "minItems", "maxItems", "minContains", "maxContains",
              "minProperties", "maxProperties"):
        return r.choice([0, 1, 2, 2.0, 2.5, -1, 10**9])
    if kw == "pattern":
        return r.choice(_PATTERNS)
    if kw in ("items", "contains", "additionalProperties", "propertyNames", "not", "if", "then",
              "else", "unevaluatedItems", "unevaluatedProperties"):
        return sub()
    if kw in ("prefixItems", "allOf", "anyOf", "oneOf"):
        return [sub() for _ in range(r.randrange(4))]
    if kw in ("properties", "$defs", "dependentSchemas"):
        return {r.choice(["a", "b", "x", "a/b", "~"]): sub() for _ in range(r.randrange(4))}
    if kw == "patternProperties":
        return {r.choice(_PATTERNS): sub() for _ in range(r.randrange(3))}
    if kw == "required":
        return r.sample(["a", "b", "x"], r.randrange(3))
    if kw == "dependentRequired":
        return {"a": r.sample(["b", "x"], r.randrange(3))}
    if kw == "dependencies":
        return {"a": r.choice([["b"], sub()])}
    if kw in ("$ref", "$dynamicRef"):
        return r.choice(_REFS)
    if kw == "$id":
        return r.choice(["http://example.com/s.json", "s2.json", "#frag", "urn:x:y", "http://[::1", 7])
    if kw in ("$anchor", "$dynamicAnchor"):
        return r.choice(["anc", "dyn", "bad anchor", 3])
    if kw == "$schema":
        return r.choice(["https://json-schema.org/draft/2020-12/schema", "http://example.com/meta",
                         "http://json-schema.org/draft-07/schema#", 1])
    return _rand_value(r, 1)


def test_fuzz_compile_raises_only_schema_error_and_validate_never_raises() -> None:
    r = random.Random(20201212)
    compiled = 0
    registry = {"http://example.com/r.json": {"type": "string"},
                "http://example.com/meta": {"$vocabulary": {
                    "https://json-schema.org/draft/2020-12/vocab/core": True}}}
    instances = [_rand_value(r) for _ in range(40)]
    for _ in range(4000):
        schema = _rand_schema(r)
        for strict in (False, True):
            try:
                c = compile_schema(schema, registry=registry, strict_refs_local_only=strict)
            except SchemaError:
                continue
            compiled += 1
            assert isinstance(c.asserts, bool)
            for inst in r.sample(instances, 4):
                errs = c.validate(inst)
                assert all(isinstance(e, ValidationError) for e in errs) and len(errs) <= MAX_ERRORS
                assert c.is_valid(inst) == (not errs), (schema, inst, errs)
                if not c.asserts:
                    assert errs == [], (schema, inst, errs)
    assert compiled > 1000  # the generator must produce plenty of compilable schemas
