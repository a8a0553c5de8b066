"""Binary protobuf codec (connect.md §7): golden bytes per wire type and rule (hand-computed from
the protobuf encoding spec), round trips of every message, agreement with the JSON codec,
truncation at every offset, malformed input and fuzzing (only WireDecodeError may escape)."""

from __future__ import annotations

import math
import random
import struct
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest

from ironflow_pkg.proto import descriptors, parser, wkt
from ironflow_pkg.proto.descriptors import load_schema
from ironflow_pkg.proto.jsoncodec import DecodeError, from_json, to_json
from ironflow_pkg.proto.wirecodec import MAX_DEPTH, WireDecodeError, WireEncodeError, decode, encode

SCHEMA = load_schema()

TEST_PROTO = """
syntax = "proto3";
package wiretest.v1;
import "google/protobuf/struct.proto";
import "google/protobuf/timestamp.proto";
import "google/protobuf/duration.proto";
import "google/protobuf/wrappers.proto";
import "google/protobuf/field_mask.proto";
import "google/protobuf/empty.proto";

enum Color { COLOR_UNSPECIFIED = 0; COLOR_RED = 1; COLOR_BLUE = 2; }

// The examples of the protobuf encoding guide.
message Test1 { int32 a = 1; }
message Test3 { Test1 c = 3; }
message Test4 { string d = 1; repeated int32 e = 4; }

message All {
  double d = 1;
  float f = 2;
  int32 i32 = 3;
  int64 i64 = 4;
  uint32 u32 = 5;
  uint64 u64 = 6;
  sint32 s32 = 7;
  sint64 s64 = 8;
  fixed32 fx32 = 9;
  fixed64 fx64 = 10;
  sfixed32 sf32 = 11;
  sfixed64 sf64 = 12;
  bool b = 13;
  string s = 14;
  bytes by = 15;
  Color color = 16;
  repeated int32 ri = 17;
  repeated Color rcolor = 18;
  repeated string rs = 19;
  map<int32, string> mi = 20;
  map<bool, Color> mb = 21;
  map<uint64, All> mm = 22;
  map<string, google.protobuf.Value> mv = 23;
  optional int32 oi = 24;
  optional Color ocolor = 25;
  oneof pick {
    int32 pick_int = 26;
    string pick_str = 27;
    All pick_msg = 28;
  }
  All child = 29;
  google.protobuf.Int64Value w_i64 = 30;
  google.protobuf.BoolValue w_bool = 31;
  google.protobuf.StringValue w_str = 32;
  google.protobuf.BytesValue w_bytes = 33;
  google.protobuf.DoubleValue w_double = 34;
  google.protobuf.UInt32Value w_u32 = 35;
  google.protobuf.NullValue null_field = 36;
  google.protobuf.Timestamp ts = 38;
  google.protobuf.Duration dur = 39;
  google.protobuf.FieldMask mask = 40;
  google.protobuf.Empty empty = 41;
  google.protobuf.Struct st = 42;
  google.protobuf.Value v = 43;
  google.protobuf.ListValue lv = 44;
  repeated google.protobuf.Value rv = 45;
  repeated google.protobuf.Timestamp rts = 46;
  repeated sint32 rs32 = 47;
  repeated sint64 rs64 = 48;
  repeated fixed32 rfx32 = 49;
  repeated fixed64 rfx64 = 50;
  repeated sfixed32 rsf32 = 51;
  repeated sfixed64 rsf64 = 52;
  repeated float rf = 53;
  repeated double rd = 54;
  repeated bool rb = 55;
  repeated uint64 ru64 = 56;
  repeated int64 ri64 = 57;
  repeated uint32 ru32 = 58;
  repeated bytes rby = 59;
  repeated All rall = 60;
  map<int64, Color> m64 = 61;
  map<sint32, bytes> ms32 = 62;
  map<string, google.protobuf.Timestamp> mts = 63;
  map<fixed64, double> mfx = 64;
  map<string, google.protobuf.Struct> mst = 65;
  optional double od = 66;
  optional string os = 67;
  optional bool ob = 68;
  optional bytes oby = 69;
  google.protobuf.FloatValue w_float = 70;
  google.protobuf.Int32Value w_i32 = 71;
  google.protobuf.UInt64Value w_u64 = 72;
  int32 big_number = 1000;
}
"""
TSCHEMA = parser.build_schema({**{path: text for path, text in descriptors.read_proto_sources().items()
                                 if path.startswith("google/")},
                              "wiretest/v1/all.proto": TEST_PROTO}, default_package="wiretest.v1")
ALL = "wiretest.v1.All"

from proto_gen import WKT, generate, json_value  # noqa: E402,F401  (shared by the codec tests)


def h(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


def enc(msg, name=ALL, schema=TSCHEMA) -> bytes:
    return encode(schema, name, msg)


def dec(data: bytes, name=ALL, schema=TSCHEMA, **kw):
    return decode(schema, name, data, **kw)


def dec_error(data: bytes, name=ALL, schema=TSCHEMA, **kw) -> str:
    with pytest.raises(WireDecodeError) as info:
        decode(schema, name, data, **kw)
    assert info.value.code == "invalid_argument"
    return str(info.value)


def enc_error(msg, name=ALL, schema=TSCHEMA) -> str:
    with pytest.raises(WireEncodeError) as info:
        encode(schema, name, msg)
    assert info.value.code == "internal"
    return str(info.value)


def _same(a, b) -> bool:
    """Equality that tells -0.0 from 0.0 and int from float, and treats NaN as equal to NaN."""
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


# --- golden bytes (hand-computed from https://protobuf.dev/programming-guides/encoding/) ------------

GOLDEN = [
    # varint scalars
    ({"i32": 150}, "18 96 01"),
    ({"i32": 1}, "18 01"),
    ({"i32": 127}, "18 7f"),
    ({"i32": 128}, "18 80 01"),
    ({"i32": -1}, "18 ff ff ff ff ff ff ff ff ff 01"),  # negative int32: 10 bytes
    ({"i32": -(2**31)}, "18 80 80 80 80 f8 ff ff ff ff 01"),
    ({"i32": 2**31 - 1}, "18 ff ff ff ff 07"),
    ({"i64": -2}, "20 fe ff ff ff ff ff ff ff ff 01"),
    ({"i64": 2**63 - 1}, "20 ff ff ff ff ff ff ff ff 7f"),
    ({"i64": -(2**63)}, "20 80 80 80 80 80 80 80 80 80 01"),
    ({"u32": 2**32 - 1}, "28 ff ff ff ff 0f"),
    ({"u64": 2**64 - 1}, "30 ff ff ff ff ff ff ff ff ff 01"),
    ({"u64": 300}, "30 ac 02"),
    # zig-zag
    ({"s32": -1}, "38 01"),
    ({"s32": 1}, "38 02"),
    ({"s32": -64}, "38 7f"),
    ({"s32": 2**31 - 1}, "38 fe ff ff ff 0f"),
    ({"s32": -(2**31)}, "38 ff ff ff ff 0f"),
    ({"s64": -1}, "40 01"),
    ({"s64": -(2**63)}, "40 ff ff ff ff ff ff ff ff ff 01"),
    ({"s64": 2**63 - 1}, "40 fe ff ff ff ff ff ff ff ff 01"),
    # fixed width, little-endian
    ({"fx32": 1}, "4d 01 00 00 00"),
    ({"fx64": 2**64 - 1}, "51 ff ff ff ff ff ff ff ff"),
    ({"sf32": -1}, "5d ff ff ff ff"),
    ({"sf64": -2}, "61 fe ff ff ff ff ff ff ff"),
    ({"d": 1.5}, "09 00 00 00 00 00 00 f8 3f"),
    ({"d": -0.0}, "09 00 00 00 00 00 00 00 80"),  # -0.0 is not the default (non-zero bits)
    ({"f": 1.5}, "15 00 00 c0 3f"),
    ({"f": -2.0}, "15 00 00 00 c0"),
    ({"b": True}, "68 01"),
    # length-delimited
    ({"s": "testing"}, "72 07 74 65 73 74 69 6e 67"),
    ({"s": "é"}, "72 02 c3 a9"),
    ({"by": b"\x00\xff"}, "7a 02 00 ff"),
    ({"color": 2}, "80 01 02"),  # field 16: 2-byte tag
    ({"color": 99}, "80 01 63"),  # open enum: unknown numbers kept
    ({"color": -1}, "80 01 ff ff ff ff ff ff ff ff ff 01"),
    ({"big_number": 1}, "c0 3e 01"),  # field 1000
    # packed repeated
    ({"ri": [3, 270, 86942]}, "8a 01 06 03 8e 02 9e a7 05"),
    ({"ri": [-1]}, "8a 01 0a ff ff ff ff ff ff ff ff ff 01"),
    ({"ri": [0, 0]}, "8a 01 02 00 00"),  # elements are never dropped
    ({"rcolor": [1, 0, 2]}, "92 01 03 01 00 02"),
    ({"rs32": [-1, 1]}, "fa 02 02 01 02"),
    ({"rf": [1.5]}, "aa 03 04 00 00 c0 3f"),
    ({"rd": [1.5, -0.0]}, "b2 03 10 00 00 00 00 00 00 f8 3f 00 00 00 00 00 00 00 80"),
    ({"rb": [True, False]}, "ba 03 02 01 00"),
    ({"rfx32": [1, 2]}, "8a 03 08 01 00 00 00 02 00 00 00"),
    ({"ru64": [2**64 - 1]}, "c2 03 0a ff ff ff ff ff ff ff ff ff 01"),
    # repeated strings/bytes/messages: one record each
    ({"rs": ["a", ""]}, "9a 01 01 61 9a 01 00"),
    ({"rby": [b"", b"\x01"]}, "da 03 00 da 03 01 01"),
    ({"rall": [{}, {"i32": 1}]}, "e2 03 00 e2 03 02 18 01"),
    # maps: entries {1: key, 2: value}, both written
    ({"mi": {1: "a"}}, "a2 01 05 08 01 12 01 61"),
    ({"mi": {-1: ""}}, "a2 01 0d 08 ff ff ff ff ff ff ff ff ff 01 12 00"),
    ({"mb": {True: 0}}, "aa 01 04 08 01 10 00"),
    ({"mm": {7: {"i32": 1}}}, "b2 01 06 08 07 12 02 18 01"),
    ({"mv": {"k": None}}, "ba 01 07 0a 01 6b 12 02 08 00"),
    ({"ms32": {-1: b"x"}}, "f2 03 05 08 01 12 01 78"),
    ({"mfx": {1: 0.0}}, "82 04 12 09 01 00 00 00 00 00 00 00 11 00 00 00 00 00 00 00 00"),
    # explicit presence: written even at the zero value
    ({"oi": 0}, "c0 01 00"),
    ({"ocolor": 0}, "c8 01 00"),
    ({"od": 0.0}, "91 04 00 00 00 00 00 00 00 00"),
    ({"os": ""}, "9a 04 00"),
    ({"ob": False}, "a0 04 00"),
    ({"oby": b""}, "aa 04 00"),
    ({"pick_int": 0}, "d0 01 00"),
    ({"pick_str": ""}, "da 01 00"),
    ({"pick_msg": {}}, "e2 01 00"),
    ({"child": {}}, "ea 01 00"),
    ({"child": {"i32": 150}}, "ea 01 03 18 96 01"),
    # wrappers: {1: value}, the wrapper itself always written
    ({"w_i64": 0}, "f2 01 00"),
    ({"w_i64": 5}, "f2 01 02 08 05"),
    ({"w_bool": True}, "fa 01 02 08 01"),
    ({"w_str": "x"}, "82 02 03 0a 01 78"),
    ({"w_bytes": b"\x01"}, "8a 02 03 0a 01 01"),
    ({"w_double": 1.5}, "92 02 09 09 00 00 00 00 00 00 f8 3f"),
    ({"w_u32": 2**32 - 1}, "9a 02 06 08 ff ff ff ff 0f"),
    ({"w_float": 1.5}, "b2 04 05 0d 00 00 c0 3f"),
    ({"w_i32": -1}, "ba 04 0b 08 ff ff ff ff ff ff ff ff ff 01"),
    # well-known types
    ({"ts": "1970-01-01T00:00:01.500Z"}, "b2 02 08 08 01 10 80 ca b5 ee 01"),
    ({"ts": "1970-01-01T00:00:00Z"}, "b2 02 00"),
    ({"ts": "1969-12-31T23:59:59Z"}, "b2 02 0b 08 ff ff ff ff ff ff ff ff ff 01"),
    ({"dur": 1.5}, "ba 02 08 08 01 10 80 ca b5 ee 01"),
    ({"dur": -1.5}, "ba 02 16 08 ff ff ff ff ff ff ff ff ff 01 10 80 b6 ca 91 fe ff ff ff ff 01"),
    ({"dur": 0.0}, "ba 02 00"),
    ({"mask": ["a.b", "c"]}, "c2 02 08 0a 03 61 2e 62 0a 01 63"),
    ({"mask": []}, "c2 02 00"),
    ({"empty": {}}, "ca 02 00"),
    ({"st": {}}, "d2 02 00"),
    ({"st": {"a": 1}}, "d2 02 10 0a 0e 0a 01 61 12 09 11 00 00 00 00 00 00 f0 3f"),
    ({"v": None}, "da 02 02 08 00"),
    ({"v": True}, "da 02 02 20 01"),
    ({"v": False}, "da 02 02 20 00"),
    ({"v": "hi"}, "da 02 04 1a 02 68 69"),
    ({"v": 0}, "da 02 09 11 00 00 00 00 00 00 00 00"),
    ({"v": -2.5}, "da 02 09 11 00 00 00 00 00 00 04 c0"),
    ({"v": []}, "da 02 02 32 00"),
    ({"v": {}}, "da 02 02 2a 00"),
    ({"v": {"a": [True]}}, "da 02 0f 2a 0d 0a 0b 0a 01 61 12 06 32 04 0a 02 20 01"),
    ({"lv": [None, 1]}, "e2 02 0f 0a 02 08 00 0a 09 11 00 00 00 00 00 00 f0 3f"),
    ({"rv": [None, "a"]}, "ea 02 02 08 00 ea 02 03 1a 01 61"),
    ({"rts": ["1970-01-01T00:00:00Z", "1970-01-01T00:00:02Z"]}, "f2 02 00 f2 02 02 08 02"),
    ({"mts": {"k": "1970-01-01T00:00:00Z"}}, "fa 03 05 0a 01 6b 12 00"),
    # implicit presence: defaults are not written
    ({"i32": 0, "s": "", "by": b"", "b": False, "d": 0.0, "color": 0, "ri": [], "mi": {},
      "null_field": 0}, ""),
    # several fields: field-number order whatever the dict order
    ({"s": "a", "i32": 1}, "18 01 72 01 61"),
]


@pytest.mark.parametrize("msg,hexbytes", GOLDEN, ids=[str(i) for i in range(len(GOLDEN))])
def test_golden_encode_and_decode(msg, hexbytes):
    data = h(hexbytes)
    assert enc(msg) == data
    expected = {k: v for k, v in msg.items()
                if v not in (0, "", b"", False, [], {}) or TSCHEMA.message(ALL).by_name[k].has_presence
                or (isinstance(v, float) and math.copysign(1, v) < 0)}
    assert _same(dec(data), expected)


def test_golden_protobuf_guide_examples():
    assert enc({"a": 150}, "Test1") == h("08 96 01")
    assert enc({"c": {"a": 150}}, "Test3") == h("1a 03 08 96 01")
    assert enc({"d": "hello", "e": [1, 2, 3]}, "Test4") == h("0a 05 68 65 6c 6c 6f 22 03 01 02 03")
    assert enc({"e": [3, 270, 86942]}, "Test4") == h("22 06 03 8e 02 9e a7 05")
    assert dec(h("1a 03 08 96 01"), "Test3") == {"c": {"a": 150}}


def test_golden_long_lengths_widen_the_prefix():
    assert enc({"s": "x" * 200}) == h("72 c8 01") + b"x" * 200
    # nested message longer than 127 bytes: the 1-byte length placeholder is widened in place
    assert enc({"child": {"s": "x" * 200}}) == h("ea 01 cb 01 72 c8 01") + b"x" * 200
    big = {"child": {"child": {"s": "y" * 20000}, "i32": 1}}
    data = enc(big)
    assert data.startswith(h("ea 01")) and dec(data) == big
    assert dec(enc({"rall": [{"s": "z" * 300}] * 3})) == {"rall": [{"s": "z" * 300}] * 3}


def test_golden_top_level_well_known_types():
    assert encode(SCHEMA, "google.protobuf.Timestamp", "1970-01-01T00:00:01.500Z") == h("08 01 10 80 ca b5 ee 01")
    assert encode(SCHEMA, "google.protobuf.Duration", 1.5) == h("08 01 10 80 ca b5 ee 01")
    assert encode(SCHEMA, "google.protobuf.Value", None) == h("08 00")
    assert encode(SCHEMA, "google.protobuf.Struct", {}) == b""
    assert encode(SCHEMA, "google.protobuf.ListValue", ["a"]) == h("0a 03 1a 01 61")
    assert encode(SCHEMA, "google.protobuf.FieldMask", ["run_id"]) == h("0a 06") + b"run_id"
    assert encode(SCHEMA, "google.protobuf.Empty", {}) == b""
    assert encode(SCHEMA, "google.protobuf.Int64Value", 0) == b""
    assert encode(SCHEMA, "google.protobuf.StringValue", "a") == h("0a 01 61")
    assert decode(SCHEMA, "google.protobuf.Timestamp", h("08 01 10 80 ca b5 ee 01")) == "1970-01-01T00:00:01.500Z"
    assert decode(SCHEMA, "google.protobuf.Timestamp", b"") == "1970-01-01T00:00:00Z"
    assert decode(SCHEMA, "google.protobuf.Duration", h("08 01 10 80 ca b5 ee 01")) == 1.5
    assert decode(SCHEMA, "google.protobuf.Value", b"") is None  # no kind set reads as null (§7)
    assert decode(SCHEMA, "google.protobuf.Value", h("08 00")) is None
    assert decode(SCHEMA, "google.protobuf.Struct", b"") == {}
    assert decode(SCHEMA, "google.protobuf.ListValue", b"") == []
    assert decode(SCHEMA, "google.protobuf.Empty", b"") == {}
    assert decode(SCHEMA, "google.protobuf.FieldMask", b"") == []
    assert _same(decode(SCHEMA, "google.protobuf.DoubleValue", b""), 0.0)
    assert decode(SCHEMA, "google.protobuf.BytesValue", b"") == b""
    assert decode(SCHEMA, "google.protobuf.UInt64Value", h("08 ff ff ff ff ff ff ff ff ff 01")) == 2**64 - 1
    assert decode(SCHEMA, "Run", b"") == {}


def test_real_schema_explicit_presence_and_payload_pairs():
    # proto3 `optional` (connect.md §7): written at zero, and kept on decode
    assert encode(SCHEMA, "SubscribeOptions", {"start_after_sequence": 0}) == h("40 00")
    assert decode(SCHEMA, "SubscribeOptions", h("40 00")) == {"start_after_sequence": 0}
    assert decode(SCHEMA, "SubscribeOptions", b"") == {}
    assert encode(SCHEMA, "Step", {"duration_ms_full": 0}) == h("b0 01 00")
    # data / data_value (connect.md §10): a JSON null in data_value is a set value
    assert encode(SCHEMA, "TriggerRequest", {"event": "a", "data_value": None}) == h("0a 01 61 32 02 08 00")
    assert decode(SCHEMA, "TriggerRequest", h("0a 01 61 32 02 08 00")) == {"event": "a", "data_value": None}
    assert decode(SCHEMA, "TriggerRequest", h("0a 01 61")) == {"event": "a"}  # absent, not null
    msg = {"event": "order.created", "data": {"id": 7, "tags": ["a"], "nested": {"x": None}}}
    assert decode(SCHEMA, "TriggerRequest", encode(SCHEMA, "TriggerRequest", msg)) == msg


def test_encoder_accepts_liberal_in_memory_values():
    # enum names, whole floats for integers, datetimes, timedeltas, tuples, memoryview, Mapping
    assert enc({"color": "COLOR_RED", "rcolor": ("COLOR_BLUE",)}) == h("80 01 01 92 01 01 02")
    assert enc({"i64": 5.0}) == h("20 05")
    assert enc({"ts": datetime(1970, 1, 1, 0, 0, 1, 500000, tzinfo=timezone.utc)}) == enc({"ts": "1970-01-01T00:00:01.500Z"})
    assert enc({"ts": "1970-01-01T01:00:01.5+01:00"}) == enc({"ts": "1970-01-01T00:00:01.500Z"})
    assert enc({"dur": timedelta(seconds=1.5)}) == enc({"dur": 1.5}) == enc({"dur": 1.5})
    assert enc({"dur": 2}) == h("ba 02 02 08 02")
    assert enc({"by": memoryview(b"ab"), "rby": [bytearray(b"c")]}) == h("7a 02 61 62 da 03 01 63")
    assert enc({"v": (1, "a")}) == enc({"v": [1, "a"]})
    # None = unset, except on Value-typed fields (a JSON null)
    assert enc({"i32": None, "child": None, "ts": None, "ri": None, "mi": None}) == b""
    assert enc({"v": None}) == h("da 02 02 08 00")
    assert enc({"rv": [None]}) == h("ea 02 02 08 00")


# --- decoding rules ---------------------------------------------------------------------------------


def test_decode_unpacked_and_mixed_repeated():
    assert dec(h("88 01 03 88 01 8e 02")) == {"ri": [3, 270]}  # field 17 unpacked (wire type 0)
    assert dec(h("88 01 01 8a 01 02 02 03 88 01 04")) == {"ri": [1, 2, 3, 4]}
    assert dec(h("8a 01 00")) == {}  # empty packed run: no list
    assert dec(h("f8 02 01 f8 02 02")) == {"rs32": [-1, 1]}
    assert dec(h("8d 03 01 00 00 00")) == {"rfx32": [1]}  # fixed32 element unpacked (wire type 5)
    assert dec(h("b1 03 00 00 00 00 00 00 f8 3f")) == {"rd": [1.5]}
    assert dec(h("b8 03 05 b8 03 00")) == {"rb": [True, False]}
    assert dec(h("ba 03 03 01 00 02")) == {"rb": [True, False, True]}
    assert dec(h("8a 01 03 01 ff 01")) == {"ri": [1, 255]}  # packed varints past the 1-byte fast path
    assert dec(h("8a 01 02 7f 7f")) == {"ri": [127, 127]}
    assert "rfx32: packed fixed32 length 3 is not a multiple of 4" in dec_error(h("8a 03 03 01 00 00"))
    assert dec_error(h("8a 01 02 01 80")) == "ri: truncated varint at byte 4"


def test_decode_last_value_wins_and_oneofs():
    assert dec(h("18 05 18 07")) == {"i32": 7}
    assert dec(h("18 05 18 00")) == {}  # a later default clears the implicit field
    assert dec(h("c0 01 05 c0 01 00")) == {"oi": 0}
    assert dec(h("d0 01 05 da 01 01 61")) == {"pick_str": "a"}
    assert dec(h("da 01 01 61 d0 01 05")) == {"pick_int": 5}
    assert dec(h("e2 01 02 18 01 d0 01 00")) == {"pick_int": 0}
    # a singular message seen twice is merged (protobuf semantics)
    assert dec(h("ea 01 03 18 96 01 ea 01 02 68 01")) == {"child": {"i32": 150, "b": True}}
    assert dec(h("ea 01 03 88 01 01 ea 01 03 88 01 02")) == {"child": {"ri": [1, 2]}}
    assert dec(h("e2 01 02 18 01 e2 01 02 68 01")) == {"pick_msg": {"i32": 1, "b": True}}
    assert dec(h("d2 02 05 0a 03 0a 01 61 d2 02 05 0a 03 0a 01 62")) == {"st": {"a": None, "b": None}}
    assert dec(h("e2 02 02 0a 00 e2 02 02 0a 00")) == {"lv": [None, None]}
    assert dec(h("c2 02 03 0a 01 61 c2 02 03 0a 01 62")) == {"mask": ["a", "b"]}
    assert dec(h("b2 02 02 08 01 b2 02 02 10 05")) == {"ts": "1970-01-01T00:00:00.000000005Z"}  # last wins
    assert dec(h("da 02 02 20 01 da 02 02 08 00")) == {"v": None}


def test_decode_maps():
    assert dec(h("a2 01 03 12 01 61")) == {"mi": {0: "a"}}  # missing key = default
    assert dec(h("a2 01 02 08 01")) == {"mi": {1: ""}}  # missing value = default
    assert dec(h("a2 01 00")) == {"mi": {0: ""}}
    assert dec(h("b2 01 02 08 07")) == {"mm": {7: {}}}
    assert dec(h("ba 01 03 0a 01 6b")) == {"mv": {"k": None}}
    assert dec(h("fa 03 03 0a 01 6b")) == {"mts": {"k": "1970-01-01T00:00:00Z"}}
    assert dec(h("8a 04 03 0a 01 6b")) == {"mst": {"k": {}}}
    assert dec(h("aa 01 02 08 01")) == {"mb": {True: 0}}
    assert dec(h("a2 01 05 12 01 61 08 01")) == {"mi": {1: "a"}}  # any order inside the entry
    # later duplicate keys win; unknown fields inside an entry are skipped
    assert dec(h("a2 01 05 08 01 12 01 61 a2 01 05 08 01 12 01 62")) == {"mi": {1: "b"}}
    assert dec(h("a2 01 07 08 01 18 05 12 01 61")) == {"mi": {1: "a"}}
    assert dec(h("ea 03 0d 08 ff ff ff ff ff ff ff ff ff 01 10 01")) == {"m64": {-1: 1}}
    assert dec_error(h("a2 01 03 0a 01 61")) == "mi.key: wrong wire type 2 for field 1"
    assert dec_error(h("ba 01 05 0a 01 6b 10 01")) == 'mv["k"].value: wrong wire type 0 for field 2'


def test_decode_integer_semantics():
    # 32-bit types keep the low 32 bits of a wider varint (protobuf's cast), bool is "non-zero"
    assert dec(h("18 85 80 80 80 10")) == {"i32": 5}  # 2^32 + 5
    assert dec(h("18 ff ff ff ff 0f")) == {"i32": -1}  # 5-byte form of -1
    assert dec(h("28 ff ff ff ff ff 01")) == {"u32": 2**32 - 1}
    assert dec(h("68 02")) == {"b": True}
    assert dec(h("68 80 80 80 80 80 80 80 80 80 01")) == {"b": True}
    assert dec(h("80 01 ff ff ff ff ff ff ff ff ff 01")) == {"color": -1}
    # redundant (zero-padded) varints up to 10 bytes are accepted, as protobuf parsers do
    assert dec(h("18 96 81 80 80 00")) == {"i32": 150}
    assert dec(h("98 80 80 80 00 01")) == {"i32": 1}  # padded tag
    assert dec(h("30 ff ff ff ff ff ff ff ff ff 01")) == {"u64": 2**64 - 1}


def test_decode_overlong_and_truncated_varints():
    assert dec_error(h("18 ff ff ff ff ff ff ff ff ff ff 01")) == "i32: varint at byte 1 is longer than 10 bytes"
    assert dec_error(h("18 80 80 80 80 80 80 80 80 80 80 00")) == "i32: varint at byte 1 is longer than 10 bytes"
    assert dec_error(h("30 ff ff ff ff ff ff ff ff ff 02")) == "u64: varint at byte 1 overflows 64 bits"
    assert dec_error(h("18 96")) == "i32: truncated varint at byte 1"
    assert dec_error(h("18")) == "i32: truncated varint at byte 1"
    assert dec_error(h("80")) == "truncated varint at byte 0"  # the tag itself
    assert dec_error(h("ff ff ff ff ff ff ff ff ff ff 01")) == "varint at byte 0 is longer than 10 bytes"
    assert dec_error(h("72 80")) == "s: truncated varint at byte 1"
    assert dec_error(h("72 05 61")) == "s: truncated string at byte 2: length 5 exceeds the 1 bytes left"
    assert "truncated" in dec_error(h("72 ff ff ff ff ff ff ff ff 7f"))  # 2^63-ish length
    assert dec_error(h("09 00 00")) == "d: truncated double at byte 1"
    assert dec_error(h("4d 00")) == "fx32: truncated fixed32 at byte 1"
    # a length that reaches past the enclosing message is truncation, not a peek at the parent
    assert dec_error(h("ea 01 02 72 05 61 61 61 61 61")).startswith("child.s: truncated string")


def test_decode_wrong_wire_types():
    assert dec_error(h("1a 00")) == "i32: wrong wire type 2 for field 3"
    assert dec_error(h("70 01")) == "s: wrong wire type 0 for field 14"
    assert dec_error(h("0d 00 00 00 00")) == "d: wrong wire type 5 for field 1"
    assert dec_error(h("11 00 00 00 00 00 00 00 00")) == "f: wrong wire type 1 for field 2"
    assert dec_error(h("e8 01 00")) == "child: wrong wire type 0 for field 29"
    assert dec_error(h("ea 01 02 1a 00")) == "child.i32: wrong wire type 2 for field 3"
    assert dec_error(h("b2 02 02 0a 00")) == "ts.seconds: wrong wire type 2 for field 1"
    assert dec_error(h("da 02 02 0a 00")) == "v.null_value: wrong wire type 2 for field 1"
    assert dec_error(h("d2 02 02 08 00")) == "st.fields: wrong wire type 0 for field 1"
    assert dec_error(h("98 01 01")) == "rs: wrong wire type 0 for field 19"
    assert dec_error(h("f2 01 02 0a 00")) == "w_i64.value: wrong wire type 2 for field 1"
    assert dec_error(h("c2 02 02 08 00")) == "mask.paths: wrong wire type 0 for field 1"


def test_decode_bad_tags_groups_and_wire_types():
    assert dec_error(h("00 01")) == "invalid tag: field number 0"
    assert dec_error(h("02 00")) == "invalid tag: field number 0"
    assert dec_error(h("80 80 80 80 10 00")) == "field number 536870912 out of range"
    assert dec_error(h("fb 07 fc 07")) == "groups are not supported (field 127, wire type 3)"
    assert dec_error(h("fc 07")) == "groups are not supported (field 127, wire type 4)"
    assert dec_error(h("fe 07 00")) == "invalid wire type 6 (field 127)"
    assert dec_error(h("ff 07 00")) == "invalid wire type 7 (field 127)"
    assert dec_error(h("1b")) == "i32: wrong wire type 3 for field 3"


def test_decode_invalid_utf8():
    assert dec_error(h("72 02 c3 28")) == "s: invalid UTF-8 in string at byte 2"
    assert dec_error(h("72 02 c0 80")) == "s: invalid UTF-8 in string at byte 2"  # overlong NUL
    assert dec_error(h("72 03 ed a0 80")) == "s: invalid UTF-8 in string at byte 2"  # surrogate
    assert dec_error(h("72 01 ff")) == "s: invalid UTF-8 in string at byte 2"
    assert dec_error(h("9a 01 01 61 9a 01 01 ff")) == "rs[1]: invalid UTF-8 in string at byte 7"
    assert dec_error(h("e2 03 00 e2 03 03 72 01 ff")) == "rall[1].s: invalid UTF-8 in string at byte 8"
    assert dec_error(h("a2 01 05 08 01 12 01 ff")).startswith("mi[1]: invalid UTF-8")
    assert dec_error(h("ba 01 03 0a 01 ff")) == "mv: invalid UTF-8 in string at byte 5"
    assert dec_error(h("d2 02 05 0a 03 0a 01 ff")).startswith("st: invalid UTF-8")
    assert dec_error(h("d2 02 0a 0a 08 0a 01 61 12 03 1a 01 ff")) == 'st["a"].string_value: invalid UTF-8 in string at byte 12'
    assert dec_error(h("c2 02 03 0a 01 ff")) == "mask.paths[0]: invalid UTF-8 in string at byte 5"
    assert dec_error(h("82 02 03 0a 01 ff")) == "w_str: invalid UTF-8 in string at byte 5"
    assert dec(h("7a 01 ff")) == {"by": b"\xff"}  # bytes are not UTF-8 checked
    assert dec(h("72 04 f0 9f 98 80")) == {"s": "😀"}


def test_decode_well_known_type_validation():
    assert dec_error(h("b2 02 0b 10 ff ff ff ff ff ff ff ff ff 01")) == "ts: timestamp nanos out of range"
    assert dec_error(h("b2 02 06 10 80 94 eb dc 03")) == "ts: timestamp nanos out of range"  # 1e9
    assert dec_error(h("b2 02 0a 08 80 80 80 80 80 80 80 80 40")).startswith("ts: timestamp out of range")
    assert dec(h("b2 02 06 08 ff ff ff ff 07")) == {"ts": "2038-01-19T03:14:07Z"}
    assert dec_error(h("ba 02 0d 08 01 10 ff ff ff ff ff ff ff ff ff 01")) == \
        "dur: duration seconds and nanos must have the same sign"
    assert dec_error(h("ba 02 0a 08 80 80 80 80 80 80 80 80 40")) == "dur: duration out of range"
    assert dec(h("ba 02 02 10 01")) == {"dur": 1e-9}
    assert dec_error(h("da 02 09 11 00 00 00 00 00 00 f8 7f")) == \
        "v.number_value: number_value must be finite (JSON cannot carry NaN/Infinity)"
    assert dec_error(h("da 02 09 11 00 00 00 00 00 00 f0 ff")).startswith("v.number_value")
    assert dec(h("da 02 02 08 05")) == {"v": None}  # any NullValue number is null
    assert dec(h("da 02 00")) == {"v": None}  # Value with no kind: null
    assert dec(h("d2 02 04 0a 02 12 00")) == {"st": {"": None}}  # entry with no key, no value
    assert dec(h("ca 02 02 08 01")) == {"empty": {}}  # unknown fields inside Empty skipped


def test_value_numbers_whole_doubles_become_ints():
    def num(x: float):
        return decode(SCHEMA, "google.protobuf.Value", b"\x11" + struct.pack("<d", x))
    assert _same(num(2.0), 2)
    assert _same(num(-3.0), -3)
    assert _same(num(2.0**53), 2**53)
    assert _same(num(-(2.0**53)), -(2**53))
    assert _same(num(2.0**53 + 2), 2.0**53 + 2)  # beyond 2^53: stays a float
    assert _same(num(1e100), 1e100)
    assert _same(num(1.5), 1.5)
    assert _same(num(-0.0), -0.0)  # the sign of zero survives
    assert _same(num(0.0), 0)
    # ints above 2^53 are encoded as the nearest double (connect.md §10: precision is lost)
    assert encode(SCHEMA, "google.protobuf.Value", 2**60 + 1) == b"\x11" + struct.pack("<d", 2.0**60)
    assert _same(decode(SCHEMA, "google.protobuf.Value", encode(SCHEMA, "google.protobuf.Value", 2**60 + 1)), 2.0**60)
    # the same payload decodes to the same dict through both codecs
    doc = {"n": 2, "f": 1.5, "l": [1, -7, {"z": 0}], "s": "x", "t": True, "u": None}
    assert _same(decode(SCHEMA, "google.protobuf.Struct", encode(SCHEMA, "google.protobuf.Struct", doc)),
                 from_json(SCHEMA, "google.protobuf.Struct", doc))


def test_unknown_fields_of_every_wire_type_are_skipped():
    unknown = {
        0: h("b8 3e 96 01"),  # field 999 varint
        1: h("b9 3e") + bytes(8),  # field 999 fixed64
        2: h("ba 3e 03 01 02 03"),  # field 999 length-delimited
        5: h("bd 3e 01 02 03 04"),  # field 999 fixed32
        99: h("f8 ff ff ff 0f 00"),  # the largest field number, varint
    }
    base = {"i32": 150, "s": "a", "child": {"b": True}}
    data = enc(base)
    for wire_type, extra in unknown.items():
        assert dec(extra + data) == base, wire_type
        assert dec(data + extra) == base, wire_type
        assert dec(data[:3] + extra + data[3:]) == base, wire_type  # between fields
        # inside a nested message, a map entry, a Struct, a Value, a Timestamp, a wrapper
        child = h("ea 01") + bytes([len(extra) + 2]) + extra + h("68 01")
        assert dec(child) == {"child": {"b": True}}
        assert dec(h("a2 01") + bytes([len(extra) + 5]) + h("08 01") + extra + h("12 01 61")) == {"mi": {1: "a"}}
        assert dec(h("d2 02") + bytes([len(extra)]) + extra) == {"st": {}}
        assert dec(h("da 02") + bytes([len(extra) + 2]) + extra + h("20 01")) == {"v": True}
        assert dec(h("b2 02") + bytes([len(extra) + 2]) + extra + h("08 02")) == {"ts": "1970-01-01T00:00:02Z"}
        assert dec(h("f2 01") + bytes([len(extra) + 2]) + extra + h("08 05")) == {"w_i64": 5}
        assert dec(h("e2 02") + bytes([len(extra)]) + extra) == {"lv": []}
        assert dec(h("c2 02") + bytes([len(extra)]) + extra) == {"mask": []}
        assert decode(SCHEMA, "Run", extra) == {}
    assert dec(h("b8 3e ff ff ff ff ff ff ff ff ff 01") + data) == base  # 10-byte unknown varint
    assert dec_error(h("b9 3e 00 00")) == "truncated field 999 at byte 2"
    assert dec_error(h("bd 3e 00")) == "truncated field 999 at byte 2"
    assert dec_error(h("ba 3e 05 00")) == "truncated field 999 at byte 3: length 5 exceeds the 1 bytes left"


# --- depth ------------------------------------------------------------------------------------------


def _nested_list(n: int):
    v: list = []
    for _ in range(n - 1):
        v = [v]
    return v


def _nested_children(n: int):
    msg: dict = {}
    for _ in range(n):
        msg = {"child": msg}
    return msg


def _json_accepts(name, value, schema=TSCHEMA) -> bool:
    try:
        from_json(schema, name, value)
        return True
    except DecodeError:
        return False


def test_depth_limit_is_counted_like_the_json_codec():
    for name, build in (("google.protobuf.ListValue", _nested_list), (ALL, _nested_children)):
        limit = max(n for n in range(90, 110) if _json_accepts(name, build(n)))
        assert 95 <= limit <= 105
        ok = encode(TSCHEMA, name, build(limit))
        assert _same(decode(TSCHEMA, name, ok), build(limit))
        with pytest.raises(WireEncodeError) as info:
            encode(TSCHEMA, name, build(limit + 1))
        assert "nested too deeply" in str(info.value)
        # bytes one level too deep (built by wrapping the valid bytes once more)
        if name == ALL:
            too_deep = b"\xea\x01" + _varint(len(ok)) + ok
        else:
            value = b"\x32" + _varint(len(ok)) + ok
            too_deep = b"\x0a" + _varint(len(value)) + value
        assert "nested too deeply" in dec_error(too_deep, name)
        assert dec(ok, name, max_depth=limit + 5) is not None
        assert "nested too deeply" in dec_error(ok, name, max_depth=10)
    # a Value nested inside Struct inside message fields
    deep = {"st": {"a": _nested_list(MAX_DEPTH - 1)}}
    assert _json_accepts(ALL, deep) and _same(dec(enc(deep)), deep)
    deeper = {"st": {"a": _nested_list(MAX_DEPTH + 1)}}
    assert not _json_accepts(ALL, deeper)
    assert "nested too deeply" in enc_error(deeper)


def test_very_deep_input_raises_decode_error_not_recursion_error():
    data = b""
    for _ in range(5000):
        data = b"\xea\x01" + _varint(len(data)) + data
    assert "nested too deeply" in dec_error(data)
    assert "nested too deeply" in dec_error(data, max_depth=100_000)  # RecursionError is caught


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


# --- encode errors ------------------------------------------------------------------------------------


def test_encode_errors_name_the_path():
    assert enc_error({"nope": 1}) == "unknown field(s) for wiretest.v1.All: nope"
    assert enc_error({"child": {"rall": [{}, {"x": 1}]}}) == "child.rall[1]: unknown field(s) for wiretest.v1.All: x"
    assert enc_error({"i32": "1"}) == "i32: expected int, got str '1'"
    assert enc_error({"i32": True}) == "i32: expected int, got bool True"
    assert enc_error({"i32": 1.5}) == "i32: expected int, got float 1.5"
    assert enc_error({"i32": 2**31}) == "i32: integer 2147483648 out of range for int32"
    assert enc_error({"u32": -1}) == "u32: integer -1 out of range for uint32"
    assert enc_error({"u64": 2**64}) == "u64: integer 18446744073709551616 out of range for uint64"
    assert enc_error({"s32": 2**31}) == "s32: integer 2147483648 out of range for sint32"
    assert enc_error({"fx32": -1}) == "fx32: integer -1 out of range for fixed32"
    assert enc_error({"f": 1e39}) == "f: number 1e+39 out of range for float"
    assert enc_error({"d": "x"}) == "d: expected float, got str"
    assert enc_error({"b": 1}) == "b: expected bool, got int"
    assert enc_error({"s": b"x"}) == "s: expected str, got bytes"
    assert enc_error({"s": "\ud800"}) == "s: string is not valid UTF-8 (lone surrogate)"
    assert enc_error({"by": "x"}) == "by: expected bytes, got str"
    assert enc_error({"color": "COLOR_GREEN"}) == "color: unknown Color value 'COLOR_GREEN'"
    assert enc_error({"ri": 1}) == "ri: repeated field must be a list, got int"
    assert enc_error({"ri": [1, "x"]}) == "ri[1]: expected int, got str 'x'"
    assert enc_error({"rs": ["a", 1]}) == "rs[1]: expected str, got int"
    assert enc_error({"mi": [1]}) == "mi: map field must be a dict, got list"
    assert enc_error({"mi": {"1": "a"}}) == 'mi["1"]: expected int, got str \'1\''
    assert enc_error({"mm": {1: None}}) == "mm[1]: expected dict for wiretest.v1.All, got NoneType"
    assert enc_error({"pick_int": 1, "pick_str": "a"}) == "more than one member of a oneof is set: pick_int, pick_str"
    assert enc_error({"child": 1}) == "child: expected dict for wiretest.v1.All, got int"
    assert enc_error({"ts": 5}) == "ts: Timestamp must be an RFC 3339 str or datetime, got int"
    assert enc_error({"ts": "2026-13-01T00:00:00Z"}) == "ts: invalid date in timestamp"
    assert enc_error({"dur": math.inf}) == "dur: duration must be finite"
    assert enc_error({"mask": "a,b"}) == "mask: FieldMask must be a list of paths, got str"
    assert enc_error({"empty": {"x": 1}}) == "empty: Empty must be {}"
    assert enc_error({"v": math.nan}) == "v: a JSON value cannot be NaN or Infinity"
    assert enc_error({"v": 10**400}) == "v: integer too large for a JSON number (double)"
    assert enc_error({"st": {"a": [1, object()]}}) == 'st["a"][1]: object is not a JSON value'
    assert enc_error({"st": {1: 2}}) == "st: object keys must be str, got int"
    assert enc_error({"st": [1]}) == "st: Struct must be a dict, got list"
    assert enc_error({"lv": {}}) == "lv: ListValue must be a list, got dict"
    assert enc_error({"w_i64": "5"}) == "w_i64: expected int, got str '5'"
    assert enc_error([1]) == "expected dict for wiretest.v1.All, got list"
    with pytest.raises(KeyError):
        encode(SCHEMA, "NoSuchMessage", {})
    with pytest.raises(KeyError):
        decode(SCHEMA, "NoSuchMessage", b"")


def test_decode_rejects_non_bytes_and_accepts_buffers():
    assert dec_error("abc") == "expected bytes, got str"  # type: ignore[arg-type]
    assert dec(bytearray(h("18 01"))) == {"i32": 1}
    assert dec(memoryview(h("00 18 01"))[1:]) == {"i32": 1}


def test_plans_are_compiled_once_and_cached_on_the_schema():
    schema = descriptors.schema_from_compact(descriptors.schema_to_compact(SCHEMA))
    errors = []

    def work():
        try:
            for _ in range(20):
                assert decode(schema, "Run", encode(schema, "Run", {"id": "r", "attempt": 1})) == {"id": "r", "attempt": 1}
        except Exception as exc:  # pragma: no cover
            errors.append(exc)
    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    codec = schema.codec_cache["wire"]
    plan = codec.plan("Run")
    assert codec.plan("ironflow.v1.Run") is plan
    encode(schema, "Run", {})
    assert schema.codec_cache["wire"] is codec and codec.plan("Run") is plan


# --- generated round trips over the whole schema ------------------------------------------------------

ALL_MESSAGES = sorted(SCHEMA.messages)


def test_every_message_round_trips_and_agrees_with_the_json_codec():
    for name in ALL_MESSAGES:
        rng = random.Random(name)
        for _ in range(3):
            msg = generate(SCHEMA, name, rng)
            data = encode(SCHEMA, name, msg)
            back = decode(SCHEMA, name, data)
            assert _same(back, msg), name
            # cross-codec: the binary and the JSON codec give the same in-memory form
            via_json = from_json(SCHEMA, name, to_json(SCHEMA, name, msg))
            assert _same(back, via_json), name
            assert encode(SCHEMA, name, back) == data, name  # deterministic, canonical
        if name not in WKT:
            assert encode(SCHEMA, name, {}) == b"" and decode(SCHEMA, name, b"") == {}


def test_test_schema_covers_every_field_and_type():
    rng = random.Random(7)
    md = TSCHEMA.message(ALL)
    seen = set()
    for _ in range(25):
        msg = generate(TSCHEMA, ALL, rng, depth=2)
        seen.update(msg)
        data = enc(msg)
        back = dec(data)
        assert _same(back, msg)
        assert _same(back, from_json(TSCHEMA, ALL, to_json(TSCHEMA, ALL, msg)))
        assert enc(back) == data
    assert seen >= {f.name for f in md.fields if f.name != "null_field"}


def test_special_floats_round_trip_and_agree():
    msg = {"d": math.nan, "rd": [math.inf, -math.inf, math.nan, -0.0], "od": -0.0, "f": math.inf,
           "w_double": -0.0}
    back = dec(enc(msg))
    assert _same(back, msg)
    assert _same(back, from_json(TSCHEMA, ALL, to_json(TSCHEMA, ALL, msg)))


def _split_boundaries(schema, name, msg) -> tuple[bytes, set[int]]:
    """The encoding of ``msg`` and the offsets where a top-level field ends, computed by
    encoding each field on its own (fields are written in number order, so they concatenate)."""
    md = schema.message(name)
    parts = []
    for f in sorted(md.fields, key=lambda f: f.number):
        if f.name not in msg:
            continue
        value = msg[f.name]
        if f.is_map:  # one record per entry
            parts += [encode(schema, name, {f.name: {k: v}}) for k, v in value.items()]
        elif f.is_list and not f.packable:  # one record per element
            parts += [encode(schema, name, {f.name: [v]}) for v in value]
        else:
            parts.append(encode(schema, name, {f.name: value}))
    data = b"".join(parts)
    assert data == encode(schema, name, msg)
    ends, pos = {0}, 0
    for p in parts:
        pos += len(p)
        ends.add(pos)
    return data, ends


def test_truncation_at_every_offset():
    rng = random.Random(11)
    cases = [(TSCHEMA, ALL, generate(TSCHEMA, ALL, rng, depth=3)) for _ in range(2)]
    cases += [(SCHEMA, n, generate(SCHEMA, n, rng)) for n in ("Run", "TriggerRequest", "WorkerMessage",
                                                                "EngineMessage", "HealthResponse")]
    checked = 0
    for schema, name, msg in cases:
        data, ends = _split_boundaries(schema, name, msg)
        for k in range(len(data)):
            if k in ends:  # a prefix made of whole fields is a valid (smaller) message
                decode(schema, name, data[:k])
                continue
            with pytest.raises(WireDecodeError) as info:
                decode(schema, name, data[:k])
            assert "truncated" in info.value.reason or "UTF-8" in info.value.reason, (name, k, info.value)
            checked += 1
    assert checked > 3000


# --- fuzzing --------------------------------------------------------------------------------------------

_FUZZ_TOKENS = [b"\xff" * 11, b"\x80", b"\x00", b"\x0b", b"\x0c", b"\x0e", b"\x0f", b"\x7f",
                b"\x0a\xff\xff\xff\xff\x0f", b"\x0a\x05", b"\x11", b"\x15", b"\xc3\x28", b"\xed\xa0\x80",
                b"\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", b"\x2a\x02\x08\x00", b"\x32\x00",
                b"\x12\x00", b"\xea\x01\x00", b"\x09" + b"\x00" * 6 + b"\xf8\x7f", b"\x80\x80\x80\x80\x10"]


def _mutate(rng: random.Random, data: bytes, corpus: list[bytes]) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(7)
        pos = rng.randrange(len(buf) + 1)
        if op == 0 and buf:
            buf[min(pos, len(buf) - 1)] = rng.randrange(256)
        elif op == 1 and buf:
            buf[min(pos, len(buf) - 1)] ^= 1 << rng.randrange(8)
        elif op == 2:
            buf[pos:pos] = rng.choice(_FUZZ_TOKENS)
        elif op == 3:
            del buf[pos:pos + rng.randint(1, 8)]
        elif op == 4:
            del buf[pos:]
        elif op == 5:
            end = min(len(buf), pos + rng.randint(1, 20))
            buf[pos:pos] = buf[pos:end]
        else:
            other = rng.choice(corpus)
            start = rng.randrange(len(other) + 1)
            buf[pos:pos] = other[start:start + rng.randint(1, 30)]
    return bytes(buf)


def test_fuzz_decode_only_raises_wire_decode_error():
    rng = random.Random(20261129)
    names = [(SCHEMA, n) for n in ALL_MESSAGES if rng.random() < 0.4] + [(TSCHEMA, ALL)] * 20
    corpus = [(schema, name, encode(schema, name, generate(schema, name, rng, depth=2 if schema is SCHEMA else 3)))
              for schema, name in names]
    corpus = [c for c in corpus if c[2]]
    raw = [c[2] for c in corpus]
    deadline = time.monotonic() + 4.0
    runs = outcomes = errors = 0
    while runs < 10000 and time.monotonic() < deadline:
        schema, name, seed = rng.choice(corpus)
        r = rng.random()
        if r < 0.1:  # type confusion: bytes of some other message
            data = rng.choice(raw)
        elif r < 0.15:
            data = bytes(rng.randrange(256) for _ in range(rng.randrange(40)))
        else:
            data = _mutate(rng, seed, raw)
        try:
            decode(schema, name, data, max_depth=rng.choice([MAX_DEPTH, 3]))
            outcomes += 1
        except WireDecodeError as exc:
            assert "internal" not in exc.reason, (name, data, exc)  # never the safety net
            errors += 1
        except Exception as exc:  # pragma: no cover - the point of the test
            pytest.fail(f"{type(exc).__name__}: {exc} for {name} on {data[:200]!r}")
        runs += 1
    assert runs >= 1000 and outcomes > 100 and errors > 100, (runs, outcomes, errors)


def test_fuzz_encode_only_raises_wire_encode_error():
    rng = random.Random(5)
    junk = [None, 1, -1, 2**70, 1.5, math.nan, "s", b"b", True, [], {}, [1, "a"], {"k": object()},
            (1, 2), object(), datetime(2020, 1, 1), {"x": [None]}, "2026-01-01T00:00:00Z", "\udc80",
            [None], {1: 2}, -0.0, 10**400]
    ok = 0
    for _ in range(3000):
        name = rng.choice(ALL_MESSAGES)
        md = SCHEMA.message(name)
        msg = {f.name: rng.choice(junk) for f in md.fields if rng.random() < 0.3}
        try:
            encode(SCHEMA, name, msg if name not in WKT else rng.choice(junk))
            ok += 1
        except WireEncodeError:
            pass
    assert ok > 100


def test_repeated_occurrences_stay_linear():
    """Many occurrences of a merged singular field must not be quadratic (a cheap DoS)."""
    n = 50_000
    started = time.monotonic()
    assert len(dec(h("c2 02 03 0a 01 61") * n)["mask"]) == n
    assert len(dec(h("e2 02 02 0a 00") * n)["lv"]) == n
    assert len(dec(h("ea 01 03 88 01 01") * n)["child"]["ri"]) == n
    assert len(dec(h("88 01 01") * n)["ri"]) == n
    assert time.monotonic() - started < 3.0
    # a Timestamp with a large unknown field decodes (and is not memoised)
    body = h("08 01") + h("ba 3e") + _varint(5000) + bytes(5000)
    assert dec(h("b2 02") + _varint(len(body)) + body) == {"ts": "1970-01-01T00:00:01Z"}
