"""proto3 JSON codec (connect.md §9, §10): golden cases, round trips of every message, fuzzing."""

from __future__ import annotations

import base64
import json
import math
import random
import time
from datetime import datetime, timedelta, timezone

import pytest

from ironflow_pkg.proto import descriptors, parser, wkt
from ironflow_pkg.proto.descriptors import load_schema
from ironflow_pkg.proto.jsoncodec import (
    MAX_DEPTH,
    DecodeError,
    DecodeLimitError,
    EncodeError,
    enum_name,
    enum_number,
    from_json,
    from_json_bytes,
    get_payload,
    set_payload,
    to_json,
    to_json_bytes,
)

SCHEMA = load_schema()

TEST_PROTO = """
syntax = "proto3";
package test.v1;
import "google/protobuf/struct.proto";
import "google/protobuf/timestamp.proto";
import "google/protobuf/duration.proto";
import "google/protobuf/wrappers.proto";
import "google/protobuf/field_mask.proto";
import "google/protobuf/empty.proto";

enum Color { COLOR_UNSPECIFIED = 0; COLOR_RED = 1; COLOR_BLUE = 2; }

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
  string renamed = 37 [json_name = "otherName"];
  google.protobuf.Timestamp ts = 38;
  google.protobuf.Duration dur = 39;
  google.protobuf.FieldMask mask = 40;
  google.protobuf.Empty empty = 41;
  google.protobuf.Struct st = 42;
  google.protobuf.Value v = 43;
  google.protobuf.ListValue lv = 44;
  repeated google.protobuf.Value rv = 45;
  repeated google.protobuf.Timestamp rts = 46;
}
"""
TSCHEMA = parser.build_schema({**descriptors.read_proto_sources(), "test/v1/all.proto": TEST_PROTO},
                              default_package="test.v1")

from proto_gen import WKT, generate, json_value  # noqa: E402,F401  (shared by the codec tests)


def dec(name, obj, schema=SCHEMA):
    return from_json(schema, name, obj)


def enc(name, msg, schema=SCHEMA):
    return to_json(schema, name, msg)


def dec_error(name, obj, schema=SCHEMA) -> str:
    with pytest.raises(DecodeError) as info:
        from_json(schema, name, obj)
    return str(info.value)


def enc_error(name, msg, schema=SCHEMA) -> str:
    with pytest.raises(EncodeError) as info:
        to_json(schema, name, msg)
    return str(info.value)


# --- output rules -------------------------------------------------------------------------------------


def test_defaults_are_emitted_for_implicit_fields_only():
    assert enc("SubscribeOptions", {}) == {
        "replay": 0, "includeMetadata": False, "filter": "", "namespace": "", "consumerGroup": "",
        "ackMode": "ACK_MODE_UNSPECIFIED", "backpressure": "BACKPRESSURE_MODE_UNSPECIFIED",
    }
    out = enc("Run", {})
    assert out["status"] == "RUN_STATUS_UNSPECIFIED" and out["attempt"] == 0 and out["id"] == ""
    for never in ("input", "inputValue", "output", "outputValue", "error", "errorValue",
                  "startedAt", "createdAt"):
        assert never not in out
    assert enc("AuditEvent", {})["metadata"] == {}
    assert enc("ListRunsResponse", {})["runs"] == []
    assert enc("WorkerMessage", {}) == {}  # unset oneof members are never emitted
    assert enc("PublishResponse", {}) == {"eventId": "", "sequence": "0", "duplicate": False}


def test_explicit_presence():
    assert enc("SubscribeOptions", {"start_after_sequence": 0})["startAfterSequence"] == "0"
    assert "startAfterSequence" not in enc("SubscribeOptions", {"start_after_sequence": None})
    assert enc("Step", {"duration_ms_full": 0})["durationMsFull"] == "0"
    assert "durationMsFull" not in enc("Step", {})
    assert dec("SubscribeOptions", {"startAfterSequence": 0}) == {"start_after_sequence": 0}
    assert dec("SubscribeOptions", {"replay": 0, "filter": ""}) == {}
    assert dec("SubscribeOptions", {"startAfterSequence": None}) == {}


def test_int64_as_strings_and_int32_as_numbers():
    assert enc("PublishResponse", {"sequence": 42}) == {"eventId": "", "sequence": "42",
                                                          "duplicate": False}
    out = enc("All", {"i64": -5, "u64": 2**64 - 1, "s64": -(2**63), "fx64": 7, "sf64": -7,
                      "i32": -3, "u32": 4, "s32": -1, "fx32": 9, "sf32": -9}, TSCHEMA)
    assert (out["i64"], out["u64"], out["s64"], out["fx64"], out["sf64"]) == (
        "-5", "18446744073709551615", "-9223372036854775808", "7", "-7")
    assert (out["i32"], out["u32"], out["s32"], out["fx32"], out["sf32"]) == (-3, 4, -1, 9, -9)
    assert enc("Run", {"attempt": 3.0})["attempt"] == 3  # an integral float is accepted


def test_enums_as_names():
    assert enc("Run", {"status": 3})["status"] == "RUN_STATUS_COMPLETED"
    assert enc("Run", {"status": 99})["status"] == 99  # unknown number: the number
    assert enc("Run", {"status": "RUN_STATUS_FAILED"})["status"] == "RUN_STATUS_FAILED"
    assert enc("All", {"rcolor": [1, 2, 0]}, TSCHEMA)["rcolor"] == [
        "COLOR_RED", "COLOR_BLUE", "COLOR_UNSPECIFIED"]
    assert enum_number(SCHEMA, "RunStatus", "RUN_STATUS_PAUSED") == 6
    assert enum_number(SCHEMA, "RunStatus", 6) == 6
    assert enum_name(SCHEMA, "ironflow.v1.RunStatus", 6) == "RUN_STATUS_PAUSED"
    assert enum_name(SCHEMA, "RunStatus", 1) == 1
    with pytest.raises(KeyError):
        enum_number(SCHEMA, "RunStatus", "NOPE")


def test_bytes_base64():
    out = enc("PausedStepInfo", {"output": b'{"a":1}', "error": b"x"})
    assert out["output"] == "eyJhIjoxfQ==" and out["error"] == "eA=="
    assert enc("PausedStepInfo", {})["output"] == ""
    assert enc("PausedStepInfo", {"output": bytearray(b"\xff\xfe")})["output"] == "//4="
    for text in ("eyJhIjoxfQ==", "eyJhIjoxfQ"):
        assert dec("PausedStepInfo", {"output": text}) == {"output": b'{"a":1}'}
    assert dec("PausedStepInfo", {"output": "-_4"}) == {"output": b"\xfb\xfe"}  # URL-safe
    assert dec("PausedStepInfo", {"output": "+/4="}) == {"output": b"\xfb\xfe"}
    assert dec("PausedStepInfo", {"output": ""}) == {}
    for bad in ("e", "eyJ!", "ey==J", "=", "e=", "eyJhIjoxfQ=", "eyJhIjoxfQ===", 12):
        assert dec_error("PausedStepInfo", {"output": bad}).startswith("output: ")


def test_floats():
    out = enc("RebuildJob", {"progress": 0.25})
    assert out["progress"] == 0.25
    assert enc("RebuildJob", {"progress": math.nan})["progress"] == "NaN"
    assert enc("RebuildJob", {"progress": math.inf})["progress"] == "Infinity"
    assert enc("RebuildJob", {"progress": -math.inf})["progress"] == "-Infinity"
    assert enc("RebuildJob", {"progress": 2})["progress"] == 2.0
    assert enc("RebuildJob", {})["progress"] == 0
    assert math.isnan(dec("RebuildJob", {"progress": "NaN"})["progress"])
    assert dec("RebuildJob", {"progress": "-Infinity"})["progress"] == -math.inf
    assert dec("RebuildJob", {"progress": "0.5"})["progress"] == 0.5
    assert dec("RebuildJob", {"progress": 1}) == {"progress": 1.0}
    assert type(dec("RebuildJob", {"progress": 1})["progress"]) is float
    negzero = dec("RebuildJob", {"progress": -0.0})["progress"]
    assert negzero == 0 and math.copysign(1, negzero) < 0  # -0.0 is not the default
    assert dec("RebuildJob", {"progress": 0.0}) == {}
    assert "out of range" in dec_error("RebuildJob", {"progress": 1e999})
    assert "out of range" in dec_error("All", {"f": 1e39}, TSCHEMA)
    assert dec("All", {"f": "Infinity"}, TSCHEMA)["f"] == math.inf
    assert dec_error("RebuildJob", {"progress": "fast"}).startswith("progress: expected number")
    assert dec_error("RebuildJob", {"progress": True}).startswith("progress: expected number")


def test_timestamps():
    for given, canonical in [
        ("2026-11-29T21:00:28.818Z", "2026-11-29T21:00:28.818Z"),
        ("2026-11-29T21:00:28Z", "2026-11-29T21:00:28Z"),
        ("2026-11-29T21:00:28.000Z", "2026-11-29T21:00:28Z"),
        ("2026-11-29T21:00:28.5Z", "2026-11-29T21:00:28.500Z"),
        ("2026-11-29T21:00:28.1234Z", "2026-11-29T21:00:28.123400Z"),
        ("2026-11-29T21:00:28.123456789Z", "2026-11-29T21:00:28.123456789Z"),
        ("2026-11-29T21:00:28.120000000Z", "2026-11-29T21:00:28.120Z"),
        ("2026-11-29t22:30:28.818+01:30", "2026-11-29T21:00:28.818Z"),
        ("2026-11-29T19:00:28-02:00", "2026-11-29T21:00:28Z"),
        ("2026-11-30T00:00:00+03:00", "2026-11-29T21:00:00Z"),
        ("1970-01-01T00:00:00z", "1970-01-01T00:00:00Z"),
        ("1969-12-31T23:59:59.999999999Z", "1969-12-31T23:59:59.999999999Z"),
        ("0001-01-01T00:00:00Z", "0001-01-01T00:00:00Z"),
        ("9999-12-31T23:59:59.999999999Z", "9999-12-31T23:59:59.999999999Z"),
    ]:
        assert dec("Run", {"startedAt": given}) == {"started_at": canonical}, given
        assert enc("Run", {"started_at": given})["startedAt"] == canonical, given
    assert enc("Run", {"started_at": datetime(2026, 11, 29, 21, 0, 28, 818000,
                                              tzinfo=timezone.utc)})["startedAt"] == \
        "2026-11-29T21:00:28.818Z"
    tz = timezone(timedelta(hours=-5))
    assert enc("Run", {"created_at": datetime(2026, 1, 1, 0, 0, tzinfo=tz)})["createdAt"] == \
        "2026-01-01T05:00:00Z"
    assert enc("Run", {"created_at": datetime(2026, 1, 1)})["createdAt"] == "2026-01-01T00:00:00Z"
    for bad in ("2026-13-01T00:00:00Z", "2026-02-30T00:00:00Z", "2026-11-29T24:00:00Z",
                "2026-11-29T23:59:60Z", "2026-11-29 21:00:28Z", "2026-11-29T21:00:28",
                "2026-11-29T21:00:28.1234567890Z", "0000-01-01T00:00:00Z",
                "0001-01-01T00:00:00+00:01", "9999-12-31T23:59:59-00:01", "", "now",
                "2026-11-29T21:00:28+25:00"):
        assert dec_error("Run", {"startedAt": bad}).startswith("started_at: "), bad
        assert enc_error("Run", {"started_at": bad}).startswith("started_at: "), bad
    assert dec_error("Run", {"startedAt": 1700000000}).startswith("started_at: expected RFC 3339")
    assert enc_error("Run", {"started_at": 1700000000}).startswith("started_at: Timestamp must")
    # helpers used by the binary codec and the handlers
    assert wkt.parse_timestamp("1970-01-01T00:00:01.5Z") == (1, 500000000)
    assert wkt.format_timestamp(-1, 999_999_999) == "1969-12-31T23:59:59.999999999Z"
    assert wkt.timestamp_from_unix_ms(1764450028818) == "2025-11-29T21:00:28.818Z"
    assert wkt.timestamp_to_unix_ms("2025-11-29T21:00:28.818Z") == 1764450028818
    assert wkt.timestamp_to_datetime("2026-11-29T21:00:28.818Z") == datetime(
        2026, 11, 29, 21, 0, 28, 818000, tzinfo=timezone.utc)
    assert from_json(SCHEMA, "google.protobuf.Timestamp", "2026-01-01T00:00:00+01:00") == \
        "2025-12-31T23:00:00Z"
    assert to_json(SCHEMA, "google.protobuf.Timestamp", "2025-12-31T23:00:00.100Z") == \
        "2025-12-31T23:00:00.100Z"


def test_durations():
    for seconds, text in [(1.5, "1.500s"), (30, "30s"), (30.0, "30s"), (0, "0s"),
                          (0.000001, "0.000001s"), (1e-9, "0.000000001s"), (-0.5, "-0.500s"),
                          (1.1, "1.100s"), (86400 * 365, "31536000s"),
                          (timedelta(seconds=2, microseconds=5), "2.000005s")]:
        assert enc("AcquireProjectionLeaseResponse", {"ttl": seconds})["ttl"] == text, seconds
    for text, seconds in [("1.5s", 1.5), ("30s", 30.0), ("-0.500s", -0.5), ("0s", 0.0),
                          ("0.000000001s", 1e-9), ("315576000000s", 315576000000.0)]:
        got = dec("AcquireProjectionLeaseResponse", {"ttl": text})
        assert got == {"ttl": seconds} and type(got["ttl"]) is float, text
    for bad in ("1.5", "1.5 s", "s", "-s", "1.1234567891s", "315576000001s", "+1s", "1e3s", 1.5):
        assert dec_error("AcquireProjectionLeaseResponse", {"ttl": bad}).startswith("ttl: "), bad
    for bad in (math.inf, math.nan, 4e11, "1s", True):
        assert enc_error("AcquireProjectionLeaseResponse", {"ttl": bad}).startswith("ttl: "), bad
    assert wkt.duration_to_parts(-1.5) == (-1, -500_000_000)
    assert wkt.duration_from_parts(-1, -500_000_000) == -1.5


def test_field_mask():
    out = enc("UpdateConsumerGroupRequest", {"update_mask": ["group.max_in_flight", "description"]})
    assert out["updateMask"] == "group.maxInFlight,description"
    assert enc("UpdateConsumerGroupRequest", {"update_mask": []})["updateMask"] == ""
    assert "updateMask" not in enc("UpdateConsumerGroupRequest", {})
    for text in ("group.maxInFlight,description", "group.max_in_flight,description",
                 "group.maxInFlight, description"):
        assert dec("UpdateConsumerGroupRequest", {"updateMask": text}) == {
            "update_mask": ["group.max_in_flight", "description"]}, text
    assert dec("UpdateConsumerGroupRequest", {"update_mask": ""}) == {"update_mask": []}
    assert dec_error("UpdateConsumerGroupRequest", {"updateMask": ["a"]}).startswith("update_mask:")
    assert dec_error("UpdateConsumerGroupRequest", {"updateMask": "a,,b"}).startswith("update_mask:")
    assert enc_error("UpdateConsumerGroupRequest", {"update_mask": ["fooBar"]}).startswith(
        "update_mask: ")


def test_struct_value_listvalue_empty():
    data = {"a": 1, "b": [True, None, "x", 1.5, {"c": {}}], "é": "ü"}
    assert enc("TriggerRequest", {"event": "e", "data": data})["data"] == data
    out = enc("TriggerRequest", {"event": "e", "data_value": None})
    assert "dataValue" in out and out["dataValue"] is None and "data" not in out
    assert "dataValue" not in enc("TriggerRequest", {"event": "e"})
    for value in ([1, "two", None], "text", 3, 2.5, True, None, {"x": [{}]}):
        assert enc("TriggerRequest", {"data_value": value})["dataValue"] == value
        assert dec("TriggerRequest", {"dataValue": value}) == {"data_value": value}
    assert enc("TriggerRequest", {"data_value": (1, (2, 3))})["dataValue"] == [1, [2, 3]]
    assert dec("TriggerRequest", {"data": None}) == {}
    assert dec("TriggerRequest", {"data": {}}) == {"data": {}}
    assert enc("TriggerRequest", {"data": {}})["data"] == {}
    assert dec_error("TriggerRequest", {"data": [1]}) == "data: expected object, got array"
    assert enc_error("TriggerRequest", {"data_value": {"a": [1, math.nan]}}) == \
        'data_value["a"][1]: a JSON value cannot be NaN or Infinity'
    assert enc_error("TriggerRequest", {"data": {"a": {1: 2}}}).startswith('data["a"]: object keys')
    assert enc_error("TriggerRequest", {"data_value": object()}).startswith("data_value: object")
    assert dec_error("TriggerRequest", {"data": {"a": [1, math.inf]}}) == \
        'data["a"][1]: number out of range'
    assert to_json(SCHEMA, "google.protobuf.Empty", {}) == {}
    assert from_json(SCHEMA, "google.protobuf.Empty", {"ignored": 1}) == {}
    assert enc_error("google.protobuf.Empty", {"x": 1}) == "Empty must be {}"
    assert to_json(SCHEMA, "google.protobuf.ListValue", [1, "a"]) == [1, "a"]
    assert from_json(SCHEMA, "google.protobuf.Value", None) is None
    assert from_json(SCHEMA, "google.protobuf.Struct", {"k": [None]}) == {"k": [None]}
    assert dec_error("google.protobuf.ListValue", {}) == "expected array, got object"


def test_maps():
    assert enc("AuditEvent", {"metadata": {"k": "v"}})["metadata"] == {"k": "v"}
    assert dec("AuditEvent", {"metadata": {"k": "v"}}) == {"metadata": {"k": "v"}}
    assert dec("AuditEvent", {"metadata": {}}) == {}
    health = enc("HealthResponse", {"status": "healthy",
                                    "components": {"database": {"status": "healthy"}}})
    assert health["components"] == {"database": {"status": "healthy", "message": ""}}
    assert dec("HealthResponse", {"components": {"db": {"status": "ok", "message": ""}}}) == {
        "components": {"db": {"status": "ok"}}}
    out = enc("All", {"mi": {1: "a", -2: "b"}, "mb": {True: 1, False: 0},
                      "mm": {2**64 - 1: {"s": "x"}}, "mv": {"n": None}}, TSCHEMA)
    assert out["mi"] == {"1": "a", "-2": "b"}
    assert out["mb"] == {"true": "COLOR_RED", "false": "COLOR_UNSPECIFIED"}
    assert out["mm"]["18446744073709551615"]["s"] == "x"
    assert out["mv"] == {"n": None}
    back = dec("All", out, TSCHEMA)
    assert back["mi"] == {1: "a", -2: "b"} and back["mb"] == {True: 1, False: 0}
    assert back["mm"] == {2**64 - 1: {"s": "x"}} and back["mv"] == {"n": None}
    assert dec_error("All", {"mi": {"x": "a"}}, TSCHEMA) == 'mi["x"]: invalid int32 map key string "x"'
    assert dec_error("All", {"mi": {"1.0": "a"}}, TSCHEMA).startswith('mi["1.0"]: invalid')
    assert dec_error("All", {"mi": {"9999999999": "a"}}, TSCHEMA).startswith('mi["9999999999"]')
    assert dec_error("All", {"mb": {"yes": 1}}, TSCHEMA).startswith('mb["yes"]: invalid bool')
    assert dec_error("All", {"mi": {"1": None}}, TSCHEMA) == 'mi["1"]: null is not allowed as a map value'
    assert dec_error("AuditEvent", {"metadata": ["k"]}) == "metadata: expected object, got array"
    assert enc_error("All", {"mi": {"1": "a"}}, TSCHEMA).startswith('mi["1"]: expected int')
    assert enc_error("AuditEvent", {"metadata": {"k": 1}}) == 'metadata["k"]: expected str, got int'
    # unknown enum names in maps and lists are dropped, not errors
    assert dec("All", {"mb": {"true": "COLOR_NOPE"}, "rcolor": ["COLOR_RED", "NOPE", 7]},
               TSCHEMA) == {"rcolor": [1, 7]}  # the map ended up empty: absent == default


def test_wrappers_nullvalue_json_name():
    out = enc("All", {"w_i64": 0, "w_bool": False, "w_str": "", "w_bytes": b"", "w_double": 1.5,
                      "w_u32": 7, "renamed": "r"}, TSCHEMA)
    assert (out["wI64"], out["wBool"], out["wStr"], out["wBytes"], out["wDouble"], out["wU32"]) == (
        "0", False, "", "", 1.5, 7)
    assert out["otherName"] == "r" and "renamed" not in out
    assert out["nullField"] is None  # NullValue's JSON form is null
    assert "wI64" not in enc("All", {}, TSCHEMA)
    back = dec("All", out, TSCHEMA)
    assert back["w_i64"] == 0 and back["w_bool"] is False and back["w_str"] == ""
    assert back["w_bytes"] == b"" and back["renamed"] == "r" and "null_field" not in back
    assert dec("All", {"wI64": "12", "w_u32": 3.0}, TSCHEMA) == {"w_i64": 12, "w_u32": 3}
    assert dec("All", {"renamed": "a", "otherName": "b"}, TSCHEMA) == {"renamed": "b"}
    assert dec("All", {"nullField": None, "null_field": "NULL_VALUE"}, TSCHEMA) == {}


# --- input rules ------------------------------------------------------------------------------------


def test_both_spellings_last_wins():
    assert dec("GetAuditTrailRequest", {"runId": "a", "run_id": "b"}) == {"run_id": "b"}
    assert dec("GetAuditTrailRequest", {"run_id": "b", "runId": "a"}) == {"run_id": "a"}
    assert dec("GetAuditTrailRequest", {"run_id": "b", "runId": None}) == {}
    assert dec("TriggerRequest", {"idempotency_key": "k", "event": "x"}) == {
        "idempotency_key": "k", "event": "x"}
    assert dec("GetRunRequest", {"runID": "ignored", "unknown": {"deep": [1]}, "@type": 1}) == {}


def test_integers_liberal_input():
    for value, expected in [(5, 5), ("5", 5), (5.0, 5), ("5.0", 5), ("1e2", 100), ("-7", -7),
                            ("0007", 7), (2**31 - 1, 2**31 - 1), ("-2147483648", -2**31)]:
        assert dec("Run", {"attempt": value}) == {"attempt": expected}, value
    for value, expected in [("9223372036854775807", 2**63 - 1), (-2**63, -2**63), ("1.5e3", 1500)]:
        assert dec("AppendEventRequest", {"expectedVersion": value}) == {"expected_version": expected}
    assert dec("PublishResponse", {"sequence": "18446744073709551615"}) == {"sequence": 2**64 - 1}
    for bad, reason in [(1.5, "expected integer, got fractional number 1.5"),
                        ("1.5", 'expected integer, got fractional string "1.5"'),
                        ("x", 'expected integer, got string "x"'), (True, "expected integer, got boolean"),
                        ([], "expected integer, got array"), (2**31, "integer out of range for int32"),
                        ("1e30", "integer out of range"), (" 1", 'expected integer, got string " 1"'),
                        ("1" * 5000, "integer out of range"), ("1e999999999", "integer out of range"),
                        (math.inf, "expected integer, got fractional number inf")]:
        assert dec_error("Run", {"attempt": bad}) == f"attempt: {reason}", bad
    assert dec_error("PublishResponse", {"sequence": -1}) == "sequence: integer out of range for uint64"
    assert dec_error("PublishResponse", {"sequence": str(2**64)}).startswith("sequence: integer out")


def test_enums_input():
    assert dec("Run", {"status": "RUN_STATUS_COMPLETED"}) == {"status": 3}
    assert dec("Run", {"status": 3}) == {"status": 3}
    assert dec("Run", {"status": 42}) == {"status": 42}  # open enum: unknown numbers are kept
    assert dec("Run", {"status": "RUN_STATUS_BOGUS"}) == {}  # unknown name: left unset
    assert dec("Run", {"status": "RUN_STATUS_UNSPECIFIED"}) == {}
    assert dec("Run", {"status": "RUN_STATUS_COMPLETED", "status_": 1}) == {"status": 3}
    assert dec_error("Run", {"status": True}) == "status: expected RunStatus name or number, got boolean"
    assert dec_error("Run", {"status": 2**40}) == "status: enum number out of int32 range"
    assert dec("All", {"ocolor": "COLOR_UNSPECIFIED"}, TSCHEMA) == {"ocolor": 0}  # optional kept
    assert dec("All", {"ocolor": "NOPE"}, TSCHEMA) == {}


def test_null_means_unset_except_value():
    assert dec("Run", {"id": None, "attempt": None, "input": None, "error": None,
                       "startedAt": None}) == {}
    assert dec("Run", {"inputValue": None}) == {"input_value": None}
    assert dec("ListRunsRequest", {"statuses": None}) == {}
    assert dec_error("ListRunsResponse", {"runs": [None]}) == \
        "runs[0]: null is not allowed in a repeated field"
    assert dec("All", {"rv": [None, 1]}, TSCHEMA) == {"rv": [None, 1]}


def test_strings_and_types():
    assert dec("GetAuditTrailRequest", {"runId": "é😀"}) == {"run_id": "é😀"}
    assert dec_error("GetAuditTrailRequest", {"runId": 5}) == "run_id: expected string, got number 5"
    assert dec_error("GetAuditTrailRequest", {"runId": "\ud800"}) == \
        "run_id: invalid UTF-8 in string (lone surrogate)"
    assert dec_error("TriggerRequest", {"data": {"\udc00": 1}}).startswith("data[")
    assert dec_error("Run", {"pauseRequested": "true"}) == 'pause_requested: expected boolean, got string "true"'
    assert dec_error("Run", {"error": "boom"}) == 'error: expected object for ironflow.v1.Error, got string "boom"'
    assert dec_error("ListRunsResponse", {"runs": {}}) == "runs: expected array, got object"
    assert dec_error("GetRunRequest", []) == "expected object for ironflow.v1.GetRunRequest, got array"
    assert dec_error("GetRunRequest", "x").startswith("expected object")
    assert dec_error("ListRunsResponse", {"runs": [{}, {}, {"attempt": "x"}]}) == \
        'runs[2].attempt: expected integer, got string "x"'
    assert dec_error("HealthResponse", {"components": {"db": {"status": 1}}}) == \
        'components["db"].status: expected string, got number 1'


def test_oneof_last_member_wins():
    assert dec("WorkerMessage", {"register": {"workerId": "w"}, "heartbeat": {}}) == {"heartbeat": {}}
    assert dec("WorkerMessage", {"register": {}, "heartbeat": None}) == {"register": {}}
    assert dec("All", {"pickInt": 0}, TSCHEMA) == {"pick_int": 0}  # oneof scalars have presence
    assert enc("All", {"pick_int": 0}, TSCHEMA)["pickInt"] == 0
    assert "pickStr" not in enc("All", {"pick_int": 0}, TSCHEMA)
    assert enc_error("WorkerMessage", {"register": {}, "heartbeat": {}}) == \
        "more than one member of a oneof is set: register, heartbeat"
    assert enc("WorkerMessage", {"register": {}, "heartbeat": None}).keys() == {"register"}


def test_encode_errors_name_the_path():
    assert enc_error("Run", {"runId": "x"}) == "unknown field(s) for ironflow.v1.Run: runId"
    assert enc_error("Run", {"attempt": "3"}) == "attempt: expected int, got str '3'"
    assert enc_error("Run", {"attempt": 2**31}) == "attempt: integer 2147483648 out of range for int32"
    assert enc_error("Run", {"attempt": True}) == "attempt: expected int, got bool True"
    assert enc_error("Run", {"attempt": 1.5}) == "attempt: expected int, got float 1.5"
    assert enc_error("Run", {"status": "NOPE"}) == "status: unknown RunStatus value 'NOPE'"
    assert enc_error("Run", {"pause_requested": 1}) == "pause_requested: expected bool, got int"
    assert enc_error("Run", {"id": b"x"}) == "id: expected str, got bytes"
    assert enc_error("PausedStepInfo", {"output": "text"}) == "output: expected bytes, got str"
    assert enc_error("ListRunsResponse", {"runs": [{}, {"error": {"code": 5}}]}) == \
        "runs[1].error.code: expected str, got int"
    assert enc_error("ListRunsResponse", {"runs": {}}) == \
        "runs: repeated field must be a list, got dict"
    assert enc_error("Run", []) == "expected dict for ironflow.v1.Run, got list"
    deep: dict = {}
    cur = deep
    for _ in range(MAX_DEPTH + 5):
        cur["child"] = {}
        cur = cur["child"]
    assert "nested too deeply" in enc_error("All", deep, TSCHEMA)
    loop: dict = {}
    loop["child"] = loop
    assert "nested too deeply" in enc_error("All", loop, TSCHEMA)


def test_payload_helpers():
    msg: dict = {}
    set_payload(msg, "data", {"a": 1})
    assert msg == {"data": {"a": 1}} and get_payload(msg, "data") == {"a": 1}
    set_payload(msg, "data", [1, 2])
    assert msg == {"data_value": [1, 2]} and get_payload(msg) == [1, 2]
    set_payload(msg, "data", None)
    assert msg == {"data_value": None} and get_payload(msg) is None
    assert enc("TriggerRequest", msg)["dataValue"] is None
    assert get_payload({}, "data") is None
    assert get_payload({"data": {"x": 1}, "data_value": "v"}, "data") == "v"
    run = set_payload({}, "output", "done")
    assert enc("Run", run)["outputValue"] == "done" and "output" not in enc("Run", run)
    decoded = dec("TriggerRequest", {"event": "e", "data": {"k": 1}})
    assert get_payload(decoded, "data") == {"k": 1}


# --- bytes in, bytes out -------------------------------------------------------------------------


def test_json_bytes():
    body = to_json_bytes(SCHEMA, "PublishResponse", {"event_id": "évt", "sequence": 9})
    assert body == '{"eventId":"évt","sequence":"9","duplicate":false}'.encode()
    assert from_json_bytes(SCHEMA, "PublishResponse", body) == {"event_id": "évt", "sequence": 9}
    assert from_json_bytes(SCHEMA, "PublishRequest", b"") == {}
    assert from_json_bytes(SCHEMA, "google.protobuf.Duration", b"") == 0.0
    assert from_json_bytes(SCHEMA, "PublishRequest", bytearray(b' {"topic":"t"} ')) == {"topic": "t"}
    assert from_json_bytes(SCHEMA, "PublishRequest", memoryview(b'{"topic":"t"}')) == {"topic": "t"}
    with pytest.raises(EncodeError, match="lone surrogate"):
        to_json_bytes(SCHEMA, "GetAuditTrailRequest", {"run_id": "\ud800"})
    for bad, needle in [(b"\xff{}", "invalid UTF-8 at byte 0"), (b"\xef\xbb\xbf{}", "BOM"),
                        (b"{", "invalid JSON"), (b'{"a":1}x', "Extra data"),
                        (b'{"progress": NaN}', "invalid JSON literal NaN"),
                        (b'{"progress": -Infinity}', "invalid JSON literal -Infinity"),
                        (b"[" * 5000 + b"]" * 5000, "nested too deeply"),
                        (b'{"sequence": ' + b"9" * 5000 + b"}", "invalid JSON"),
                        (b"null", "expected object"), (b"5", "expected object"),
                        (b'{"topic": "\\ud800"}', "topic: invalid UTF-8")]:
        with pytest.raises(DecodeError) as info:
            from_json_bytes(SCHEMA, "PublishResponse" if b"sequence" in bad else
                            "RebuildJob" if b"progress" in bad else "PublishRequest", bad)
        assert needle in str(info.value), (bad[:20], str(info.value))
        assert info.value.code == "invalid_argument"
    nested = b'{"data":' + b'{"a":' * 150 + b"1" + b"}" * 151
    with pytest.raises(DecodeError, match="nested too deeply"):
        from_json_bytes(SCHEMA, "TriggerRequest", nested)
    with pytest.raises(DecodeLimitError) as info:
        from_json_bytes(SCHEMA, "PublishRequest", b"{}" + b" " * 100, max_bytes=64)
    assert info.value.code == "resource_exhausted"


# --- round trips of every message ---------------------------------------------------------------------


def to_proto_names(schema, name: str, obj):
    """Rewrite a to_json() result to use proto field names (Struct contents untouched)."""
    if name in WKT:
        return obj
    md = schema.message(name)
    out = {}
    for key, value in obj.items():
        f = md.by_json_name[key]
        if f.is_map:
            vt = f.map_value_type
            if vt in schema.messages and vt not in WKT:
                value = {k: to_proto_names(schema, vt, v) for k, v in value.items()}
        elif f.type == "message" and f.type_name not in WKT:
            value = ([to_proto_names(schema, f.type_name, v) for v in value] if f.is_list
                     else to_proto_names(schema, f.type_name, value))
        out[f.name] = value
    return out


def _same(a, b) -> bool:
    """Equality that tells -0.0 from 0.0 (it must survive) and treats NaN as equal to NaN."""
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


ALL_MESSAGES = sorted(SCHEMA.messages)


@pytest.mark.parametrize("name", ALL_MESSAGES)
def test_round_trip_every_message(name):
    rng = random.Random(name)
    for _ in range(3):
        msg = generate(SCHEMA, name, rng)
        out = to_json(SCHEMA, name, msg)
        assert _same(from_json(SCHEMA, name, out), msg)
        body = to_json_bytes(SCHEMA, name, msg)
        assert _same(from_json_bytes(SCHEMA, name, body), msg)
        assert _same(from_json(SCHEMA, name, to_proto_names(SCHEMA, name, json.loads(body))), msg)
        if isinstance(out, dict):
            assert _same(to_json(SCHEMA, name, from_json(SCHEMA, name, out)), out)
    # all defaults
    empty = from_json(SCHEMA, name, to_json(SCHEMA, name, {})) if name not in WKT else None
    if name not in WKT:
        assert empty == {}


def test_round_trip_test_schema_covers_every_scalar_type():
    rng = random.Random(7)
    seen_types = set()
    for _ in range(12):
        msg = generate(TSCHEMA, "test.v1.All", rng)
        seen_types.update(msg)
        body = to_json_bytes(TSCHEMA, "test.v1.All", msg)
        assert _same(from_json_bytes(TSCHEMA, "test.v1.All", body), msg)
        assert _same(from_json(TSCHEMA, "test.v1.All",
                               to_proto_names(TSCHEMA, "test.v1.All", json.loads(body))), msg)
    md = TSCHEMA.message("test.v1.All")
    assert seen_types >= {f.name for f in md.fields if f.name != "null_field"}


# --- fuzzing -----------------------------------------------------------------------------------------


_FUZZ_TOKENS = [b"{", b"}", b"[", b"]", b",", b":", b'"', b"\\", b"null", b"true", b"1e999", b"-",
                b"0.5", b'"NaN"', b"\\ud800", b"\xff", b"\x00", b"9" * 30, b'"runs"', b'"data"',
                b'"status"', b'"RUN_STATUS_FAILED"', b'"2026-01-01T00:00:00Z"', b'"1.5s"', b" "]


def _mutate(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(5)
        pos = rng.randrange(len(buf) + 1)
        if op == 0 and buf:
            buf[min(pos, len(buf) - 1)] = rng.randrange(256)
        elif op == 1:
            buf[pos:pos] = rng.choice(_FUZZ_TOKENS)
        elif op == 2:
            del buf[pos:pos + rng.randint(1, 8)]
        elif op == 3:
            del buf[pos:]
        else:
            end = min(len(buf), pos + rng.randint(1, 20))
            buf[pos:pos] = buf[pos:end]
    return bytes(buf)


def test_fuzz_from_json_bytes_only_raises_decode_error():
    rng = random.Random(20261129)
    names = [n for n in ALL_MESSAGES if rng.random() < 0.5] + ["test.v1.All"]
    corpus = []
    for name in names:
        schema = TSCHEMA if name.startswith("test.") else SCHEMA
        corpus.append((schema, name, to_json_bytes(schema, name, generate(schema, name, rng))))
    deadline = time.monotonic() + 3.0
    runs = outcomes_ok = 0
    while runs < 6000 and time.monotonic() < deadline:
        schema, name, seed = rng.choice(corpus)
        if rng.random() < 0.2:  # type confusion: a document of some other message
            seed = rng.choice(corpus)[2]
        data = _mutate(rng, seed) if rng.random() < 0.9 else seed
        try:
            from_json_bytes(schema, name, data)
            outcomes_ok += 1
        except DecodeError:
            pass
        except Exception as exc:  # pragma: no cover - the point of the test
            pytest.fail(f"{type(exc).__name__}: {exc} for {name} on {data[:200]!r}")
        runs += 1
    assert runs >= 1000 and outcomes_ok > 0


def _replace_random_node(rng: random.Random, doc):
    """Replace one randomly chosen nested node (or the root) by a random JSON value."""
    if not isinstance(doc, (dict, list)) or not doc or rng.random() < 0.15:
        return json_value(rng)
    if isinstance(doc, dict):
        key = rng.choice(list(doc))
        doc[key] = _replace_random_node(rng, doc[key])
    else:
        i = rng.randrange(len(doc))
        doc[i] = _replace_random_node(rng, doc[i])
    return doc


def test_fuzz_structural_mutations():
    """Valid documents with one node swapped for a random value: reaches the type checks."""
    rng = random.Random(4242)
    outcomes = {"ok": 0, "error": 0}
    for name in ALL_MESSAGES:
        doc = to_json(SCHEMA, name, generate(SCHEMA, name, rng))
        for _ in range(8):
            mutated = _replace_random_node(rng, json.loads(json.dumps(doc)))
            data = json.dumps(mutated).encode()
            try:
                from_json_bytes(SCHEMA, name, data)
                outcomes["ok"] += 1
            except DecodeError:
                outcomes["error"] += 1
    assert outcomes["ok"] > 100 and outcomes["error"] > 100, outcomes


def test_non_json_python_input_still_raises_decode_error():
    assert dec_error("TriggerRequest", {"data": {1: "x"}}) == "data[1]: object keys must be strings, got int"
    assert dec_error("AuditEvent", {"metadata": {1: "x"}}) == "metadata[1]: object keys must be strings, got int"
    assert dec_error("All", {"mi": {1: "x"}}, TSCHEMA) == 'mi[1]: invalid int32 map key number 1'
    assert dec_error("All", {"mb": {True: 1}}, TSCHEMA) == "mb[true]: invalid bool map key boolean"
    assert dec_error("TriggerRequest", {"data_value": (1, 2)}) == "data_value: unsupported JSON value tuple"
    assert dec_error("Run", {"attempt": object()}).startswith("attempt: expected integer, got object")
    assert dec("Run", {1: "ignored", None: 2}) == {}


def test_timestamp_fast_path_agrees_with_full_parse():
    rng = random.Random(3)
    for _ in range(5000):
        year = rng.choice(["0000", "0001", "1900", "2000", "2024", "2023", "9999", "2100"])
        text = (f"{year}-{rng.randint(0, 13):02d}-{rng.randint(0, 32):02d}T{rng.randint(0, 25):02d}:"
                f"{rng.randint(0, 60):02d}:{rng.randint(0, 61):02d}"
                f"{rng.choice(['', '.000', '.123', '.120000', '.123456', '.100000000', '.5'])}Z")
        try:
            fast = wkt.normalize_timestamp(text)
        except ValueError:
            fast = None
        try:
            slow = wkt.format_timestamp(*wkt.parse_timestamp(text))
        except ValueError:
            slow = None
        assert fast == slow, text


def test_fuzz_from_json_random_values():
    rng = random.Random(99)
    names = ALL_MESSAGES
    for _ in range(3000):
        name = rng.choice(names)
        md = SCHEMA.message(name)
        obj = {}
        for f in md.fields:
            if rng.random() < 0.4:
                obj[rng.choice([f.name, f.json_name])] = json_value(rng)
        if name in WKT and rng.random() < 0.5:
            obj = json_value(rng)
        try:
            from_json(SCHEMA, name, obj)
        except DecodeError:
            pass


def test_fuzz_to_json_only_raises_encode_error():
    rng = random.Random(5)
    junk = [None, 1, -1, 2**70, 1.5, math.nan, "s", b"b", True, [], {}, [1, "a"], {"k": object()},
            (1, 2), object(), datetime(2020, 1, 1), {"x": [None]}, "2026-01-01T00:00:00Z"]
    for _ in range(3000):
        name = rng.choice(ALL_MESSAGES)
        md = SCHEMA.message(name)
        msg = {}
        for f in md.fields:
            if rng.random() < 0.3:
                msg[f.name] = rng.choice(junk)
        try:
            to_json_bytes(SCHEMA, name, msg if name not in WKT else rng.choice(junk))
        except EncodeError:
            pass
