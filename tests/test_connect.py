"""The Connect protocol over real sockets: codecs, compression, the GET form, deadlines,
errors, and server-streaming envelopes (connect.md §1-§8); the envelope core byte-exact."""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import struct
from urllib.parse import quote

import pytest

from ironflow_pkg.envelope import (FLAG_COMPRESSED, FLAG_END_STREAM, Envelope, EnvelopeError,
                                   EnvelopeReader, end_stream, envelope)
from ironflow_pkg.errors import ApiError
from ironflow_pkg.proto import wirecodec
from ironflow_pkg.proto.descriptors import load_schema
from support import InProcessServer, make_settings

SCHEMA = load_schema()
JSON_H = {"Content-Type": "application/json"}


# -- envelope core --------------------------------------------------------------------------------

def test_envelope_bytes():
    assert envelope(b"abc") == b"\x00\x00\x00\x00\x03abc"
    assert envelope(b"", FLAG_COMPRESSED) == b"\x01\x00\x00\x00\x00"
    assert end_stream() == b"\x02\x00\x00\x00\x02{}"
    err = b'{"error":{"code":"unavailable","message":"bye"}}'
    assert end_stream("unavailable", "bye") == b"\x02" + struct.pack(">I", len(err)) + err
    assert len(err) == 48


def test_envelope_reader_every_split():
    stream = envelope(b"one") + envelope(b"", 0) + envelope(b"x" * 300, FLAG_COMPRESSED) + end_stream()
    want = [Envelope(0, b"one"), Envelope(0, b""), Envelope(1, b"x" * 300),
            Envelope(FLAG_END_STREAM, b"{}")]
    for i in range(len(stream) + 1):
        r = EnvelopeReader(1000)
        got = r.feed(stream[:i]) + r.feed(stream[i:])
        assert got == want and r.pending == 0
    r = EnvelopeReader(1000)
    got = []
    for b in stream:
        got += r.feed(bytes([b]))
    assert got == want


def test_envelope_reader_limits_and_flags():
    with pytest.raises(EnvelopeError) as e:
        EnvelopeReader(10).feed(b"\x00\x00\x00\x00\x0b")  # header alone says too large
    assert e.value.code == "resource_exhausted"
    with pytest.raises(EnvelopeError) as e:
        EnvelopeReader(10).feed(b"\x80\x00\x00\x00\x00")
    assert e.value.code == "invalid_argument"
    r = EnvelopeReader(10)
    assert r.feed(b"\x00\x00\x00") == [] and r.pending == 3


# -- unary over the wire --------------------------------------------------------------------------

@pytest.fixture
def srv(tmp_path):
    with InProcessServer(make_settings(tmp_path)) as s:
        yield s


def call(srv, method, body=b"", headers=None, verb="POST", path=None):
    status, h, raw = srv.request(verb, path or f"/ironflow.v1.{method}", body, headers or {})
    return status, h, raw


def test_json_and_proto_give_the_same_answer(srv):
    body = {"id": "f", "triggers": [{"event": "a.b"}], "retry": {"maxAttempts": 3}}
    st, h, raw = call(srv, "IronflowService/RegisterFunction", json.dumps(body).encode(), JSON_H)
    assert st == 200 and h["content-type"] == "application/json"
    msg = {"id": "f"}
    st, h, raw = call(srv, "IronflowService/GetFunction",
                      wirecodec.encode(SCHEMA, "GetFunctionRequest", msg),
                      {"Content-Type": "application/proto"})
    assert st == 200 and h["content-type"] == "application/proto"
    fn = wirecodec.decode(SCHEMA, "Function", raw)
    assert fn["id"] == "f" and fn["retry"]["max_attempts"] == 3 and fn["triggers"][0]["event"] == "a.b"


def test_gzip_request_and_snake_case_json(srv):
    body = gzip.compress(json.dumps({"event": "x.y", "data": {"a": 1}, "idempotency_key": "k1"}).encode())
    st, _, raw = call(srv, "IronflowService/Emit", body, {**JSON_H, "Content-Encoding": "gzip"})
    assert st == 200 and json.loads(raw)["eventId"].startswith("evt_")
    proto = gzip.compress(wirecodec.encode(SCHEMA, "TriggerRequest", {"event": "x.y", "idempotency_key": "k1"}))
    st, _, raw = call(srv, "IronflowService/Emit", proto,
                      {"Content-Type": "application/proto", "Content-Encoding": "gzip"})
    assert st == 200
    assert wirecodec.decode(SCHEMA, "TriggerResponse", raw)["event_id"].startswith("evt_")


def test_bad_input_is_invalid_argument(srv):
    for body, h in [(b"{not json", JSON_H), (b"\xff\xff\xff", {"Content-Type": "application/proto"}),
                    (b"not gzip", {**JSON_H, "Content-Encoding": "gzip"})]:
        st, hh, raw = call(srv, "IronflowService/GetRun", body, h)
        assert st == 400 and json.loads(raw)["code"] == "invalid_argument", (body, raw)
        assert hh["content-type"] == "application/json"
    st, hh, raw = call(srv, "IronflowService/GetRun", b"{}", {**JSON_H, "Content-Encoding": "br"})
    assert st == 501 and hh["accept-encoding"] == "gzip, identity"


def test_routing_errors(srv):
    st, _, raw = call(srv, "IronflowService/Nope", b"{}", JSON_H)
    assert st == 404 and json.loads(raw) == {"code": "unimplemented",
                                             "message": "unknown method /ironflow.v1.IronflowService/Nope"}
    st, h, raw = call(srv, "IronflowService/Emit", verb="PUT")
    assert st == 405 and h["allow"] == "POST"
    st, _, raw = call(srv, "IronflowService/Emit", verb="GET")  # Emit has side effects
    assert st == 405
    st, _, raw = call(srv, "IronflowService/Emit", b"{}", {"Content-Type": "text/plain"})
    assert st == 415
    st, _, raw = call(srv, "IronflowService/Emit", b"{}", {"Content-Type": "application/grpc"})
    assert st == 415
    st, _, raw = call(srv, "WorkerService/Connect", b"{}", JSON_H)
    assert st == 501 and "HTTP/2" in json.loads(raw)["message"]
    st, _, raw = call(srv, "IronflowService/Emit", b"{}", {**JSON_H, "Connect-Protocol-Version": "2"})
    assert st == 400
    st, _, raw = call(srv, "IronflowService/Emit", b"{}", {**JSON_H, "Connect-Timeout-Ms": "abc"})
    assert st == 400


def test_get_form_for_side_effect_free_methods(srv):
    call(srv, "IronflowService/RegisterFunction", json.dumps({"id": "g"}).encode(), JSON_H)
    q = quote(json.dumps({"id": "g"}))
    st, h, raw = call(srv, None, verb="GET",
                      path=f"/ironflow.v1.IronflowService/GetFunction?connect=v1&encoding=json&message={q}")
    assert st == 200 and json.loads(raw)["id"] == "g"
    m = base64.urlsafe_b64encode(gzip.compress(wirecodec.encode(SCHEMA, "GetFunctionRequest", {"id": "g"})))
    st, h, raw = call(srv, None, verb="GET", path=("/ironflow.v1.IronflowService/GetFunction?connect=v1"
                                                   f"&encoding=proto&base64=1&compression=gzip&message={m.decode().rstrip('=')}"))
    assert st == 200 and wirecodec.decode(SCHEMA, "Function", raw)["id"] == "g"


def test_unimplemented_methods_answer_unimplemented(srv):
    # a unary method of the schema that has no handler yet
    method = next(m for m in SCHEMA.iter_methods()
                  if m.kind == "unary" and m.path not in srv.app.connect_handler.implemented())
    st, _, raw = srv.request("POST", method.path, b"{}", JSON_H)
    assert st == 501 and json.loads(raw)["code"] == "unimplemented"


def test_deadline_exceeded(srv):
    async def slow(req, msg):
        await asyncio.sleep(2)
        return {}
    srv.app.connect_handler._unary["/ironflow.v1.IronflowService/Info"] = slow
    st, _, raw = call(srv, "IronflowService/Info", b"{}", {**JSON_H, "Connect-Timeout-Ms": "100"})
    assert st == 504 and json.loads(raw)["code"] == "deadline_exceeded"


def test_large_unary_response_is_gzipped_when_accepted(srv):
    async def big(req, msg):
        return {"version": "x" * 100_000}
    srv.app.connect_handler._unary["/ironflow.v1.IronflowService/Info"] = big
    st, h, raw = call(srv, "IronflowService/Info", b"{}", {**JSON_H, "Accept-Encoding": "gzip"})
    assert st == 200 and h["content-encoding"] == "gzip"
    assert json.loads(gzip.decompress(raw))["version"] == "x" * 100_000
    st, h, raw = call(srv, "IronflowService/Info", b"{}", JSON_H)
    assert "content-encoding" not in h and json.loads(raw)["version"] == "x" * 100_000


# -- server streaming -------------------------------------------------------------------------------

def read_envelopes(raw: bytes):
    r = EnvelopeReader(1 << 20)
    envs = r.feed(raw)
    assert r.pending == 0
    return envs


def install_stream(srv, gen):
    srv.app.connect_handler._streams["/ironflow.v1.PubSubService/Subscribe"] = gen


def test_stream_messages_and_end(srv):
    async def gen(req, msg):
        for i in range(3):
            yield {"subscription_id": msg["pattern"], "sequence": i}
    install_stream(srv, gen)
    req = envelope(json.dumps({"pattern": "topic:t"}).encode())
    st, h, raw = call(srv, "PubSubService/Subscribe", req, {"Content-Type": "application/connect+json"})
    assert st == 200 and h["content-type"] == "application/connect+json"
    envs = read_envelopes(raw)
    assert [json.loads(e.payload) for e in envs[:3]] == [
        {"subscriptionId": "topic:t", "eventId": "", "topic": "", "sequence": str(i), "deliveryAttempt": 0}
        for i in range(3)]
    assert envs[3] == Envelope(FLAG_END_STREAM, b"{}")
    # binary codec, compressed request message
    req = envelope(gzip.compress(wirecodec.encode(SCHEMA, "SubscribeRequest", {"pattern": "p"})), FLAG_COMPRESSED)
    st, h, raw = call(srv, "PubSubService/Subscribe", req,
                      {"Content-Type": "application/connect+proto", "Connect-Content-Encoding": "gzip"})
    envs = read_envelopes(raw)
    assert h["content-type"] == "application/connect+proto"
    assert wirecodec.decode(SCHEMA, "SubscriptionEvent", envs[1].payload)["sequence"] == 1


def test_stream_errors_are_end_stream_frames(srv):
    async def gen(req, msg):
        yield {"sequence": 1}
        raise ApiError("unavailable", "shutting down")
    install_stream(srv, gen)
    st, _, raw = call(srv, "PubSubService/Subscribe", envelope(b"{}"), {"Content-Type": "application/connect+json"})
    envs = read_envelopes(raw)
    assert st == 200 and len(envs) == 2
    assert json.loads(envs[1].payload) == {"error": {"code": "unavailable", "message": "shutting down"}}
    # zero or two request messages; a unary content type on a stream method
    st, _, raw = call(srv, "PubSubService/Subscribe", envelope(b"{}") * 2, {"Content-Type": "application/connect+json"})
    assert st == 200 and json.loads(read_envelopes(raw)[0].payload)["error"]["code"] == "unimplemented"
    st, _, raw = call(srv, "PubSubService/Subscribe", b"{}", JSON_H)
    assert st == 415
    st, _, raw = call(srv, "PubSubService/Subscribe", envelope(b"{bad"), {"Content-Type": "application/connect+json"})
    assert json.loads(read_envelopes(raw)[0].payload)["error"]["code"] == "invalid_argument"


def test_stream_deadline(srv):
    async def gen(req, msg):
        yield {"sequence": 1}
        await asyncio.sleep(5)
        yield {"sequence": 2}
    install_stream(srv, gen)
    st, _, raw = call(srv, "PubSubService/Subscribe", envelope(b"{}"),
                      {"Content-Type": "application/connect+json", "Connect-Timeout-Ms": "200"})
    envs = read_envelopes(raw)
    assert json.loads(envs[-1].payload)["error"]["code"] == "deadline_exceeded" and len(envs) == 2


def test_stream_then_unary_on_the_same_connection(srv):
    import http.client
    async def gen(req, msg):
        yield {"sequence": 7}
    install_stream(srv, gen)
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
    try:
        conn.request("POST", "/ironflow.v1.PubSubService/Subscribe", envelope(b"{}"),
                     {"Content-Type": "application/connect+json"})
        resp = conn.getresponse()
        assert resp.getheader("transfer-encoding") == "chunked"
        assert read_envelopes(resp.read())[-1].end_stream
        conn.request("POST", "/ironflow.v1.IronflowService/Health", b"{}", JSON_H)
        resp = conn.getresponse()
        assert resp.status == 200 and json.loads(resp.read())["status"] == "healthy"
    finally:
        conn.close()
