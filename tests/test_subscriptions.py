"""Live subscriptions: /ws (websocket.md §2) and PubSubService/Subscribe (connect.md §4) over
the one item log with a global sequence (websocket.md §5)."""

from __future__ import annotations

import json
import socket
import threading

import pytest

from ironflow_pkg.envelope import EnvelopeReader, envelope
from support import InProcessServer, make_settings
from test_ws_asyncio import Client

J = {"Content-Type": "application/json"}


@pytest.fixture
def srv(tmp_path):
    with InProcessServer(make_settings(tmp_path)) as s:
        yield s


def rpc(s, svc, method, body):
    st, _, raw = s.request("POST", f"/ironflow.v1.{svc}/{method}", json.dumps(body).encode(), J)
    assert st == 200, raw
    return json.loads(raw)


def emit(s, name, data, **kw):
    return rpc(s, "IronflowService", "Emit", {"event": name, "data": data, **kw})


def publish(s, topic, data, key=None):
    body = {"topic": topic, "data" if isinstance(data, dict) else "dataValue": data}
    if key:
        body["idempotencyKey"] = key
    return rpc(s, "PubSubService", "Publish", body)


def ws_send(c, obj):
    c.send_frame(0x1, json.dumps(obj).encode())


def ws_recv(c):
    op, payload = c.recv_message()
    assert op == 1
    return json.loads(payload)


def subscribe(c, pattern, **options):
    ws_send(c, {"type": "subscribe", "subscription": {"pattern": pattern, "options": options}})
    res = ws_recv(c)
    assert res["type"] == "subscription_result", res
    return res["results"][0]


def test_ws_events_and_topics_with_one_sequence(srv):
    c = Client(srv.port, path="/ws")
    try:
        a = subscribe(c, "events:order.*", includeMetadata=True)
        b = subscribe(c, "topic:chat.>")
        assert a["status"] == "ok" and a["subscriptionId"].startswith("sub_")
        emit(srv, "order.placed", {"id": 1})
        emit(srv, "other.thing", {})
        p = publish(srv, "chat.room.1", [1, 2])
        e1, e2 = ws_recv(c), ws_recv(c)
        assert e1["subscriptionId"] == a["subscriptionId"] and e1["topic"] == "order.placed"
        assert e1["data"] == {"id": 1} and e1["eventId"].startswith("evt_")
        assert e1["meta"]["timestamp"].endswith("Z")
        assert e2 == {"type": "event", "subscriptionId": b["subscriptionId"], "topic": "chat.room.1",
                      "data": [1, 2], "eventId": p["eventId"]}
        # one global sequence: the topic message comes after both events
        assert int(p["sequence"]) > e1["meta"]["sequence"] + 1
        ws_send(c, {"type": "unsubscribe", "subscriptionId": a["subscriptionId"]})
        emit(srv, "order.placed", {"id": 2})
        publish(srv, "chat.x", "after")
        assert ws_recv(c)["data"] == "after"  # the unsubscribed event never arrived
    finally:
        c.close()


def test_ws_replay_resume_filter_and_errors(srv):
    for i in range(5):
        emit(srv, "m.e", {"i": i})
    c = Client(srv.port, path="/ws")
    try:
        r = subscribe(c, "events:m.e", replay=2, includeMetadata=True)
        got = [ws_recv(c) for _ in range(2)]
        assert [g["data"]["i"] for g in got] == [3, 4]
        seq3 = got[0]["meta"]["sequence"]
        emit(srv, "m.e", {"i": 5})
        assert ws_recv(c)["data"]["i"] == 5  # live after replay: no gap, no duplicate
        f = subscribe(c, "events:m.e", startAfterSequence=seq3, filter="data.i % 2 == 0")
        got = ws_recv(c)
        assert got["subscriptionId"] == f["subscriptionId"] and got["data"]["i"] == 4
        for bad, code in [({"pattern": "m.e"}, "invalid_argument"),
                          ({"pattern": "events:m.e", "options": {"replay": 1, "startAfterSequence": 1}},
                           "invalid_argument"),
                          ({"pattern": "events:m.e", "options": {"filter": "1 +"}}, "invalid_argument"),
                          ({"pattern": "events:m.e", "options": {"consumerGroup": "g", "replay": 1}},
                           "invalid_argument")]:
            ws_send(c, {"type": "subscribe", "subscription": bad})
            while True:
                msg = ws_recv(c)
                if msg["type"] == "subscription_result":
                    break
            assert msg["results"][0]["status"] == "error" and msg["results"][0]["code"] == code, msg
        ws_send(c, {"type": "nonsense"})
        while (msg := ws_recv(c))["type"] != "error":
            pass
        assert msg["code"] == "invalid_argument"
        assert r["status"] == "ok"
    finally:
        c.close()


def test_ws_namespaces(srv):
    c = Client(srv.port, path="/ws")
    try:
        subscribe(c, "events:n.e", namespace="blue")
        rpc(srv, "PubSubService", "Emit", {"event": "n.e", "data": {"ns": "default"}})
        rpc(srv, "PubSubService", "Emit", {"event": "n.e", "data": {"ns": "blue"}, "namespace": "blue"})
        assert ws_recv(c)["data"] == {"ns": "blue"}
    finally:
        c.close()


def read_stream(port, body, stop_after):
    """POST a Connect server stream and collect ``stop_after`` messages, then hang up."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    req = envelope(json.dumps(body).encode())
    s.sendall(b"POST /ironflow.v1.PubSubService/Subscribe HTTP/1.1\r\nHost: x\r\n"
              b"Content-Type: application/connect+json\r\nContent-Length: %d\r\n\r\n" % len(req) + req)
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += s.recv(65536)
    head, _, rest = buf.partition(b"\r\n\r\n")
    assert b" 200 " in head.split(b"\r\n")[0] and b"application/connect+json" in head
    reader = EnvelopeReader(1 << 20)
    msgs, raw = [], rest
    while len(msgs) < stop_after:
        # de-chunk what we have: "<hex>\r\n<data>\r\n"
        while b"\r\n" in raw:
            size_line, _, tail = raw.partition(b"\r\n")
            n = int(size_line, 16)
            if len(tail) < n + 2:
                break
            msgs += [json.loads(e.payload) for e in reader.feed(tail[:n])]
            raw = tail[n + 2:]
        if len(msgs) >= stop_after:
            break
        raw += s.recv(65536)
    s.close()
    return msgs


def test_connect_subscribe_stream_replay_and_live(srv):
    for i in range(3):
        publish(srv, "t.a", {"i": i}, key=f"k{i}")
    assert publish(srv, "t.a", {"i": 0}, key="k0")["duplicate"] is True
    results = []
    t = threading.Thread(target=lambda: results.extend(read_stream(
        srv.port, {"pattern": "topic:t.a", "options": {"replay": 10, "includeMetadata": True}}, 4)))
    t.start()
    import time
    time.sleep(0.5)
    publish(srv, "t.a", {"i": 3})
    t.join(10)
    assert [m["data"]["i"] for m in results] == [0, 1, 2, 3]
    seqs = [int(m["sequence"]) for m in results]
    assert seqs == sorted(seqs) and results[0]["metadata"]["namespace"] == "default"
    stats = rpc(srv, "PubSubService", "GetTopicStats", {"topic": "t.a"})
    assert stats["messageCount"] == "4"
    assert [t["name"] for t in rpc(srv, "PubSubService", "ListTopics", {})["topics"]] == ["t.a"]


def test_reserved_topics_and_keys(srv):
    st, _, raw = srv.request("POST", "/ironflow.v1.PubSubService/Publish",
                             json.dumps({"topic": "system.x", "data": {}}).encode(), J)
    assert st == 400 and json.loads(raw)["code"] == "invalid_argument"
    st, _, raw = srv.request("POST", "/ironflow.v1.PubSubService/Publish",
                             json.dumps({"topic": "a", "data": {}, "idempotencyKey": "has space"}).encode(), J)
    assert st == 400


def test_system_run_events(srv):
    import threading
    from test_flowcontrol import Worker
    rpc(srv, "IronflowService", "RegisterFunction", {"id": "f", "triggers": [{"event": "go"}]})
    c = Client(srv.port, path="/ws")
    try:
        subscribe(c, "system.run.>")
        rid = emit(srv, "go", {})["runIds"][0]
        w = Worker(srv, "w1", ["f"])
        job = w.poll()[0]
        w.finish(job, {"ok": True})
        frames = [f for f in (ws_recv(c) for _ in range(3))]
        assert [f["topic"] for f in frames] == [f"system.run.{rid}.created", f"system.run.{rid}.updated",
                                                 f"system.run.{rid}.completed"]
        assert frames[0]["data"]["status"] == "waiting_for_capacity"
        assert frames[1]["data"]["status"] == "running"
        assert frames[2]["data"] == {"run_id": rid, "function_id": "f", "status": "completed",
                                     "output": {"ok": True}}
    finally:
        c.close()
    # replay recovers a run's lifecycle from the stored log
    c = Client(srv.port, path="/ws")
    try:
        subscribe(c, f"system.run.{rid}.>", replay=10)
        assert [ws_recv(c)["topic"].rsplit(".", 1)[1] for _ in range(3)] == ["created", "updated", "completed"]
    finally:
        c.close()


# -- consumer groups ---------------------------------------------------------------------------

def test_consumer_group_crud_and_round_robin_over_ws(srv):
    g = rpc(srv, "PubSubService", "CreateConsumerGroup", {"name": "workers", "pattern": "topic:jobs.>"})
    assert g["status"] == "CONSUMER_GROUP_STATUS_ACTIVE" and g["ackMode"] == "ACK_MODE_AUTO"
    assert g["maxInflight"] == 100 and g["id"].startswith("cg_")
    st, _, raw = srv.request("POST", "/ironflow.v1.PubSubService/CreateConsumerGroup",
                             json.dumps({"name": "workers", "pattern": "topic:jobs.>"}).encode(), J)
    assert st == 409 and json.loads(raw)["code"] == "already_exists"
    publish(srv, "jobs.old", {"n": -1})  # before any member: still delivered (group exists)
    a, b = Client(srv.port, path="/ws"), Client(srv.port, path="/ws")
    try:
        ra = subscribe(a, "topic:ignored", consumerGroup="workers")
        rb = subscribe(b, "topic:ignored", consumerGroup="workers")
        assert ra["status"] == rb["status"] == "ok"
        for n in range(4):
            publish(srv, "jobs.x", {"n": n})
        got_a = [ws_recv(a)["data"]["n"] for _ in range(2)]
        got_b = [ws_recv(b)["data"]["n"] for _ in range(3)] if -1 not in got_a else \
            [ws_recv(b)["data"]["n"] for _ in range(2)]
        if -1 in got_a:
            got_a.append(ws_recv(a)["data"]["n"])
        assert sorted(got_a + got_b) == [-1, 0, 1, 2, 3]  # each item to exactly one member
        assert got_a and got_b
        listed = rpc(srv, "PubSubService", "ListConsumerGroups", {})["groups"]
        assert listed[0]["memberCount"] == 2
    finally:
        a.close()
        b.close()
    upd = rpc(srv, "PubSubService", "UpdateConsumerGroup",
              {"group": {"name": "workers", "maxInflight": 5}, "updateMask": "maxInflight"})
    assert upd["maxInflight"] == 5
    rpc(srv, "PubSubService", "DeleteConsumerGroup", {"name": "workers"})
    st, _, _ = srv.request("POST", "/ironflow.v1.PubSubService/GetConsumerGroup",
                           json.dumps({"name": "workers"}).encode(), J)
    assert st == 404


def test_manual_acks_nak_term_and_redelivery(srv):
    rpc(srv, "PubSubService", "CreateConsumerGroup", {"name": "m", "pattern": "topic:t", "ackMode": "ACK_MODE_MANUAL",
                                                      "redeliverDelayMs": 300, "maxRedeliveries": 2})
    c = Client(srv.port, path="/ws")
    try:
        subscribe(c, "topic:t", consumerGroup="m", includeMetadata=True)
        p1 = publish(srv, "t", {"n": 1})
        p2 = publish(srv, "t", {"n": 2})
        p3 = publish(srv, "t", {"n": 3})
        e = [ws_recv(c) for _ in range(3)]
        assert [x["data"]["n"] for x in e] == [1, 2, 3]
        ws_send(c, {"type": "ack", "eventId": p1["eventId"], "ackType": "ack"})
        ws_send(c, {"type": "ack", "eventId": p2["eventId"], "ackType": "nak", "redeliverDelay": 50})
        ws_send(c, {"type": "ack", "eventId": p3["eventId"], "ackType": "term"})
        again = ws_recv(c)
        assert again["eventId"] == p2["eventId"]
        # not acked again: redelivered once more after 300 ms, then dropped (max_redeliveries 2)
        third = ws_recv(c)
        assert third["eventId"] == p2["eventId"] and third["meta"]["sequence"] == e[1]["meta"]["sequence"]
        import time
        time.sleep(0.5)  # past the delay: no third redelivery
        publish(srv, "t", {"n": 4})
        assert ws_recv(c)["data"]["n"] == 4
    finally:
        c.close()


def test_join_consumer_group_stream_and_ack_event(srv):
    rpc(srv, "PubSubService", "CreateConsumerGroup", {"name": "s", "pattern": "topic:q", "ackMode": "ACK_MODE_MANUAL"})
    results = []
    t = threading.Thread(target=lambda: results.extend(_join(srv.port, {"groupName": "s", "consumerId": "c1"}, 2)))
    t.start()
    import time
    time.sleep(0.4)
    publish(srv, "q", {"n": 1})
    publish(srv, "q", {"n": 2})
    t.join(10)
    assert [r["data"]["n"] for r in results] == [1, 2]
    assert results[0]["subscriptionId"].startswith("sub_") and results[0]["deliveryAttempt"] == 1
    st, _, raw = srv.request("POST", "/ironflow.v1.PubSubService/AckEvent", json.dumps(
        {"groupName": "s", "consumerId": "nobody", "eventId": results[0]["eventId"], "ackType": "ACK_TYPE_ACK"}).encode(), J)
    assert st == 404
    st, _, raw = srv.request("POST", "/ironflow.v1.PubSubService/AckEvent", json.dumps(
        {"groupName": "s", "consumerId": "x", "eventId": "e"}).encode(), J)
    assert st == 400


def _join(port, body, n):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    req = envelope(json.dumps(body).encode())
    s.sendall(b"POST /ironflow.v1.PubSubService/JoinConsumerGroup HTTP/1.1\r\nHost: x\r\n"
              b"Content-Type: application/connect+json\r\nContent-Length: %d\r\n\r\n" % len(req) + req)
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += s.recv(65536)
    _, _, raw = buf.partition(b"\r\n\r\n")
    reader, msgs = EnvelopeReader(1 << 20), []
    while len(msgs) < n:
        while b"\r\n" in raw:
            size_line, _, tail = raw.partition(b"\r\n")
            k = int(size_line, 16)
            if len(tail) < k + 2:
                break
            msgs += [json.loads(e.payload) for e in reader.feed(tail[:k])]
            raw = tail[k + 2:]
        if len(msgs) >= n:
            break
        raw += s.recv(65536)
    s.close()
    return msgs


def test_consumer_group_survives_restart_with_unsettled_items(tmp_path):
    import time
    from support import ServerProcess
    db = str(tmp_path / "cg.db")
    with ServerProcess(db) as s:
        rpc(s, "PubSubService", "CreateConsumerGroup", {"name": "d", "pattern": "topic:w", "ackMode": "ACK_MODE_MANUAL"})
        c = Client(s.port, path="/ws")
        subscribe(c, "topic:w", consumerGroup="d")
        p1, p2 = publish(s, "w", {"n": 1}), publish(s, "w", {"n": 2})
        assert [ws_recv(c)["data"]["n"] for _ in range(2)] == [1, 2]
        ws_send(c, {"type": "ack", "eventId": p1["eventId"], "ackType": "ack"})
        time.sleep(1.0)  # the group cursor is flushed within 0.5 s
        c.close()
        s.kill()
    with ServerProcess(db) as s:
        c = Client(s.port, path="/ws")
        try:
            subscribe(c, "topic:w", consumerGroup="d")
            got = ws_recv(c)
            assert got["eventId"] == p2["eventId"]  # unsettled: delivered again after the restart
        finally:
            c.close()


def test_store_and_function_system_events(srv):
    c = Client(srv.port, path="/ws")
    try:
        subscribe(c, "system.config.>")
        subscribe(c, "system.secret.>")
        subscribe(c, "system.function.>")
        srv.request("POST", "/api/v1/config/app", b'{"a": 1}')
        srv.request("POST", "/api/v1/secrets", b'{"name": "K", "value": "hidden-value"}')
        rpc(srv, "IronflowService", "RegisterFunction", {"id": "fx", "triggers": [{"event": "e"}]})
        srv.request("DELETE", "/api/v1/config/app")
        frames = [ws_recv(c) for _ in range(4)]
        assert [f["topic"] for f in frames] == ["system.config.app.updated", "system.secret.K.created",
                                                 "system.function.fx.registered", "system.config.app.deleted"]
        assert frames[1]["data"] == {"name": "K", "revision": 1}
        assert "hidden-value" not in json.dumps(frames)
        assert frames[2]["data"]["version"] == 1 and frames[2]["data"]["mode"] == "pull"
    finally:
        c.close()


def test_killed_member_items_go_to_another_member(srv):
    rpc(srv, "PubSubService", "CreateConsumerGroup", {"name": "k", "pattern": "topic:z",
                                                      "ackMode": "ACK_MODE_MANUAL", "redeliverDelayMs": 300})
    a = Client(srv.port, path="/ws")
    subscribe(a, "topic:z", consumerGroup="k")
    p = publish(srv, "z", {"n": 1})
    assert ws_recv(a)["eventId"] == p["eventId"]
    a.close()  # the member dies with the item in flight, unacked
    b = Client(srv.port, path="/ws")
    try:
        subscribe(b, "topic:z", consumerGroup="k")
        again = ws_recv(b)  # at-least-once: redelivered to the surviving member after the delay
        assert again["eventId"] == p["eventId"]
    finally:
        b.close()



def test_step_system_events_and_topic_lag(srv):
    from test_flowcontrol import Worker
    rpc(srv, "IronflowService", "RegisterFunction", {"id": "f", "triggers": [{"event": "go"}]})
    c = Client(srv.port, path="/ws")
    try:
        rid = emit(srv, "go", {})["runIds"][0]
        subscribe(c, f"system.run.{rid}.step.>")
        w = Worker(srv, "w1", ["f"])
        job = w.poll()[0]
        fence = {"execution_seq": job["execution_seq"], "lease_token": job["lease_token"]}
        srv.request("PUT", f"/api/v1/workers/w1/jobs/{job['job_id']}", json.dumps(
            {"status": "progress", "steps": [{"id": f"{rid}:a.b:0", "name": "a.b", "type": "invoke",
                                               "status": "completed", "output": 7}], "step_offset": 0,
             **fence}).encode())
        f = ws_recv(c)
        assert f["topic"] == f"system.run.{rid}.step.{rid}_a_b_0.completed"
        assert f["data"]["output"] == 7 and f["data"]["step_id"] == f"{rid}:a.b:0"
    finally:
        c.close()
    rpc(srv, "PubSubService", "CreateConsumerGroup", {"name": "lagger", "pattern": "topic:lag.t",
                                                      "ackMode": "ACK_MODE_MANUAL"})
    for i in range(3):
        publish(srv, "lag.t", {"i": i})
    assert rpc(srv, "PubSubService", "GetTopicStats", {"topic": "lag.t"})["lag"] == "3"
