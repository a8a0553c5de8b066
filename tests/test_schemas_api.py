"""Event schemas: registry over REST and Connect, history, enforcement on emit (off / warn /
reject), CheckEnforcement, TestUpcast (features.md §9, rest-api.md §2.8)."""

from __future__ import annotations

import json

import pytest

from support import InProcessServer, make_settings

J = {"Content-Type": "application/json"}
ORDER = {"type": "object", "required": ["id"], "properties": {"id": {"type": "string"},
                                                               "n": {"type": "integer", "minimum": 0}}}


def rpc(s, method, body):
    st, _, raw = s.request("POST", f"/ironflow.v1.EventSchemaService/{method}", json.dumps(body).encode(), J)
    return st, json.loads(raw) if raw else None


def rest(s, verb, path, body=None):
    st, _, raw = s.request(verb, path, None if body is None else json.dumps(body).encode())
    return st, (json.loads(raw) if raw else None)


@pytest.fixture
def reject(tmp_path):
    with InProcessServer(make_settings(tmp_path, event_schema_enforcement="reject")) as s:
        yield s


def test_register_get_list_delete_history(reject):
    s = reject
    st, out = rest(s, "POST", "/api/v1/events/schemas",
                   {"event_name": "order.placed", "version": 1, "schema": ORDER, "description": "v1"})
    assert st == 200 and out["status"] == "created" and out["schema"] == ORDER
    assert json.loads(out["schema_json"]) == ORDER and out["environment_id"] == "env_default"
    st, out = rpc(s, "RegisterSchema", {"eventName": "order.placed", "version": 1,
                                        "schemaJson": json.dumps({**ORDER, "required": []}),
                                        "changeReason": "relax"})
    assert st == 200 and out == {"status": "updated"}
    rest(s, "POST", "/api/v1/events/schemas", {"event_name": "order.placed", "version": 2,
                                               "schema_json": json.dumps(ORDER)})
    assert rest(s, "GET", "/api/v1/events/schemas/order.placed")[1]["version"] == 2
    assert rest(s, "GET", "/api/v1/events/schemas/order.placed/1")[1]["schema"]["required"] == []
    st, out = rest(s, "GET", "/api/v1/events/schemas?event_name=order.placed")
    assert out["total_count"] == 2
    st, out = rpc(s, "GetSchema", {"eventName": "order.placed"})
    assert out["version"] == 2
    hist = rpc(s, "ListSchemaHistory", {"eventName": "order.placed"})[1]["entries"]
    assert [h["changeType"] for h in hist] == ["created", "updated", "created"]
    assert hist[1]["previousDefinition"]["version"] == 1 and hist[1]["changeReason"] == "relax"
    rev = rpc(s, "GetSchemaRevision", {"eventName": "order.placed", "revision": hist[1]["revision"]})[1]
    assert rev["entry"]["changeType"] == "updated"
    assert rest(s, "DELETE", "/api/v1/events/schemas/order.placed/2")[0] == 204
    assert rest(s, "DELETE", "/api/v1/events/schemas/order.placed/2")[0] == 404
    st, out = rest(s, "GET", "/api/v1/events/schemas/nothing")
    assert st == 404 and out["message"] == "schema not found"


@pytest.mark.parametrize("schema_json,word", [
    ("not json", "JSON"), ("[1]", "object"), (json.dumps({"$ref": "http://x/y"}), "$ref"),
    (json.dumps({"type": 5}), "type")])
def test_bad_schemas_are_invalid_argument(reject, schema_json, word):
    st, out = rest(reject, "POST", "/api/v1/events/schemas",
                   {"event_name": "a", "version": 1, "schema_json": schema_json})
    assert st == 400 and out["code"] == "invalid_argument" and word in out["message"], out


def test_reject_mode_refuses_invalid_payloads(reject):
    rest(reject, "POST", "/api/v1/events/schemas", {"event_name": "o", "version": 1, "schema": ORDER})
    st, out = rest(reject, "POST", "/api/v1/events", {"name": "o", "data": {"n": -1}})
    assert st == 400 and out["code"] == "invalid_argument" and out["details"]["errors"]
    st, out = reject.request("POST", "/ironflow.v1.IronflowService/Emit",
                             json.dumps({"event": "o", "data": {"n": 1}}).encode(), J)[:2]
    assert st == 400
    st, out = rest(reject, "POST", "/api/v1/events", {"name": "o", "data": {"id": "x", "n": 1}})
    assert st == 200
    # another version without a schema, and names without a schema, are not checked
    assert rest(reject, "POST", "/api/v1/events", {"name": "o", "version": 2, "data": 5})[0] == 200
    assert rest(reject, "POST", "/api/v1/events", {"name": "other", "data": 5})[0] == 200
    check = rpc(reject, "CheckEnforcement", {"eventName": "o"})[1]
    assert check["mode"] == "reject" and check["totalSchemas"] == 1
    sc = check["schemas"][0]
    assert sc["asserts"] is True and len(sc["schemaHash"]) == 16
    assert {(t["version"], t["schemaHash"]): t["count"] for t in sc["traffic"]} == {
        (1, sc["schemaHash"]): "1", (2, ""): "1"}


def test_warn_mode_stores_and_off_mode_ignores(tmp_path):
    for mode, code in (("warn", 200), ("off", 200)):
        with InProcessServer(make_settings(tmp_path / mode, event_schema_enforcement=mode)) as s:
            rest(s, "POST", "/api/v1/events/schemas", {"event_name": "o", "version": 1, "schema": ORDER})
            st, out = rest(s, "POST", "/api/v1/events", {"name": "o", "data": {}})
            assert st == code and rest(s, "GET", f"/api/v1/events/{out['event_id']}")[0] == 200


def test_schemas_survive_restart(tmp_path):
    settings = make_settings(tmp_path, event_schema_enforcement="reject")
    with InProcessServer(settings) as s:
        rest(s, "POST", "/api/v1/events/schemas", {"event_name": "o", "version": 1, "schema": ORDER})
    with InProcessServer(settings) as s:
        assert rest(s, "POST", "/api/v1/events", {"name": "o", "data": {}})[0] == 400


def test_upcast(reject):
    st, out = rpc(reject, "TestUpcast", {"eventName": "o", "fromVersion": 1, "toVersion": 1, "data": {"a": 1}})
    assert st == 200 and out == {"data": {"a": 1}, "stepsApplied": []}
    st, out = rpc(reject, "TestUpcast", {"eventName": "o", "fromVersion": 1, "toVersion": 2, "data": {}})
    assert st == 400 and out["code"] == "failed_precondition"
    st, out = rest(reject, "POST", "/api/v1/events/upcast", {"eventName": "o", "fromVersion": 1,
                                                             "toVersion": 3, "data": {}})
    assert st == 200 and out["success"] is False and "no server-side upcaster" in out["error"]
