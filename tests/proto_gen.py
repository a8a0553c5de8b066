"""Shared by the codec tests: the well-known type names and a generator of canonical in-memory
messages with every field set (the binary and JSON codecs must round-trip the same values)."""

from __future__ import annotations

import random

from ironflow_pkg.proto import wkt

#: Every well-known type the codecs special-case.
WKT = {wkt.STRUCT, wkt.VALUE, wkt.LIST_VALUE, wkt.TIMESTAMP, wkt.DURATION, wkt.FIELD_MASK,
       wkt.EMPTY, *wkt.WRAPPERS}

_STRINGS = ["x", "hello world", "é😀", "run_123", "a\"quoted\"\n", "y" * 150]


def json_value(rng: random.Random, depth: int = 0):
    """A JSON value in canonical in-memory form: whole numbers as ints (within 2^53)."""
    choice = rng.randrange(7 if depth < 3 else 4)
    if choice == 0:
        return None
    if choice == 1:
        return rng.choice([True, False])
    if choice == 2:
        return rng.choice([0, 1, -3, 2**40, 2**53, 1.5, -0.25, 1e100, -0.0, 0.1])
    if choice == 3:
        return rng.choice(_STRINGS)
    if choice in (4, 5):
        return {rng.choice(_STRINGS) + str(i): json_value(rng, depth + 1) for i in range(rng.randrange(3))}
    return [json_value(rng, depth + 1) for _ in range(rng.randrange(3))]


def _scalar(rng: random.Random, ftype: str):
    if ftype in ("double", "float"):  # float32-exact values, so a float field round-trips
        return rng.choice([1.5, -2.25, 1e10, 0.125, -0.0, 3.0])
    if ftype == "bool":
        return True
    if ftype == "string":
        return rng.choice(_STRINGS)
    if ftype == "bytes":
        return rng.choice([b"\x00\xff", b'{"k":1}', bytes(range(7)), bytes(200)])
    lo, hi = {"int32": (-2**31, 2**31 - 1), "sint32": (-2**31, 2**31 - 1),
              "sfixed32": (-2**31, 2**31 - 1), "uint32": (1, 2**32 - 1), "fixed32": (1, 2**32 - 1),
              "int64": (-2**63, 2**63 - 1), "sint64": (-2**63, 2**63 - 1),
              "sfixed64": (-2**63, 2**63 - 1), "uint64": (1, 2**64 - 1),
              "fixed64": (1, 2**64 - 1)}[ftype]
    return rng.choice([lo, hi, 1, 127, 128, rng.randint(lo, hi) or 1])


def _wkt_value(rng: random.Random, name: str):
    if name == "google.protobuf.Timestamp":
        return wkt.format_timestamp(rng.choice([rng.randint(-10**10, 10**10), 0, -1,
                                                wkt.MIN_TIMESTAMP_SECONDS, wkt.MAX_TIMESTAMP_SECONDS]),
                                    rng.choice([0, 5_000_000, 123_456_000, 987_654_321]))
    if name == "google.protobuf.Duration":
        return rng.choice([1.5, 30.0, -0.25, 0.000001, 86400.0, 0.0, -1e-9, 315576000000.0])
    if name == "google.protobuf.FieldMask":
        return rng.choice([["group.max_in_flight", "name"], [], ["a"]])
    if name == "google.protobuf.Empty":
        return {}
    if name == "google.protobuf.Struct":
        return {"k": json_value(rng, 1), "n": 2, "nested": {"l": [1, "x", None]}}
    if name == "google.protobuf.Value":
        return json_value(rng)
    if name == "google.protobuf.ListValue":
        return [json_value(rng, 1), "s"]
    scalar = {"DoubleValue": "double", "FloatValue": "float", "Int64Value": "int64",
              "UInt64Value": "uint64", "Int32Value": "int32", "UInt32Value": "uint32",
              "BoolValue": "bool", "StringValue": "string", "BytesValue": "bytes"}[name.rsplit(".", 1)[1]]
    zero = {"bool": False, "string": "", "bytes": b"", "double": 0.0, "float": 0.0}.get(scalar, 0)
    return rng.choice([_scalar(rng, scalar), zero])


def _value_of(schema, rng, ftype, type_name, depth):
    if ftype == "message":
        if type_name in WKT:
            return _wkt_value(rng, type_name)
        return generate(schema, type_name, rng, depth + 1)
    if ftype == "enum":
        numbers = [n for n in schema.enum(type_name).values.values() if n != 0]
        if type_name != "google.protobuf.NullValue" and rng.random() < 0.1:
            return 77  # open enum: unknown numbers are kept
        return rng.choice(numbers) if numbers else 0
    return _scalar(rng, ftype)


def generate(schema, name: str, rng: random.Random, depth: int = 0):
    """A canonical in-memory message with every field set (one member per oneof; message
    recursion stops at depth 3)."""
    if name in WKT:
        return _wkt_value(rng, name)
    md = schema.message(name)
    chosen = {o: rng.choice(members) for o, members in md.oneofs.items()}
    out = {}
    for f in md.fields:
        if f.oneof and chosen[f.oneof] != f.name:
            continue
        if f.type == "message" and f.type_name not in WKT and depth >= 3 and not f.oneof:
            continue
        if f.is_map:
            vf = schema.message(f.type_name).by_number[2]
            if f.map_key_type == "string":
                keys = ["a", "b é", ""]
            elif f.map_key_type == "bool":
                keys = [True, False]
            else:
                keys = [_scalar(rng, f.map_key_type), 0]
            out[f.name] = {k: _value_of(schema, rng, vf.type, vf.type_name, depth) for k in keys}
        elif f.is_list:
            out[f.name] = [_value_of(schema, rng, f.type, f.type_name, depth)
                           for _ in range(rng.randint(1, 3))]
        else:
            v = _value_of(schema, rng, f.type, f.type_name, depth)
            if f.has_presence and f.type != "message" and rng.random() < 0.3:
                v = f.default  # explicit presence keeps a zero value
            if not f.has_presence and v == f.default and f.type not in ("double", "float"):
                continue
            out[f.name] = v
    return out
