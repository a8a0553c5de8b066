"""KV and config watch sockets (websocket.md §3-§4) through the whole app."""

from __future__ import annotations

import base64
import json

import pytest

from support import InProcessServer, make_settings
from test_ws_asyncio import Client

KEY = "ifkey_" + "7" * 32


@pytest.fixture
def srv(tmp_path):
    with InProcessServer(make_settings(tmp_path, dev=False, bootstrap_api_key=KEY)) as s:
        yield s


def rest(s, verb, path, body=None, headers=None):
    data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
    return s.request(verb, path, data, {"Authorization": f"Bearer {KEY}", **(headers or {})})


def frame(c):
    op, payload = c.recv_message()
    assert op == 1  # text frames only
    return json.loads(payload)


def test_kv_watch_changes_filter_and_bucket_deletion(srv):
    rest(srv, "POST", "/api/v1/kv/buckets", {"name": "b"})
    rest(srv, "PUT", "/api/v1/kv/buckets/b/keys/user.0", b"old")
    c = Client(srv.port, path=f"/api/v1/kv/buckets/b/watch?key=user.*&token={KEY}")
    try:
        assert c.status == 101 and "sec-websocket-extensions" not in c.headers
        rest(srv, "PUT", "/api/v1/kv/buckets/b/keys/other", b"x")  # filtered out
        rest(srv, "PUT", "/api/v1/kv/buckets/b/keys/user.1", b'{"v": 1}')
        rest(srv, "DELETE", "/api/v1/kv/buckets/b/keys/user.1")
        f1, f2 = frame(c), frame(c)
        assert f1 == {"type": "kv_update", "bucket": "b", "key": "user.1",
                      "value": base64.b64encode(b'{"v": 1}').decode(), "revision": 3, "operation": "put"}
        assert f2 == {"type": "kv_update", "bucket": "b", "key": "user.1", "value": "", "revision": 4,
                      "operation": "delete"}
        rest(srv, "DELETE", "/api/v1/kv/buckets/b")
        assert frame(c) == {"type": "error", "message": "bucket deleted"}
        op, payload = c.recv_message()
        assert op == 8 and int.from_bytes(payload[:2], "big") == 1000
    finally:
        c.close()


def test_kv_watch_include_current_and_unknown_bucket(srv):
    rest(srv, "POST", "/api/v1/kv/buckets", {"name": "b"})
    rest(srv, "PUT", "/api/v1/kv/buckets/b/keys/k", b"v")
    c = Client(srv.port, path=f"/api/v1/kv/buckets/b/watch?include_current=true&token={KEY}")
    try:
        assert frame(c)["key"] == "k"
    finally:
        c.close()
    c = Client(srv.port, path=f"/api/v1/kv/buckets/nope/watch?token={KEY}")
    try:
        assert c.status == 101 and frame(c) == {"type": "error", "message": "bucket not found"}
        op, payload = c.recv_message()
        assert op == 8 and int.from_bytes(payload[:2], "big") == 1008
    finally:
        c.close()


def test_watch_auth_and_plain_get(srv):
    c = Client(srv.port, path="/api/v1/kv/buckets/b/watch")
    try:
        assert c.status == 401
    finally:
        c.close()
    st, _, raw = srv.request("GET", "/api/v1/config/app/watch", headers={"Authorization": f"Bearer {KEY}"})
    assert st == 400 and json.loads(raw)["code"] == "invalid_argument"


def test_config_watch(srv):
    c = Client(srv.port, path=f"/api/v1/config/app%2Fx/watch?token={KEY}")
    try:
        assert c.status == 101
        rest(srv, "POST", "/api/v1/config/app%2Fx", {"on": True})
        rest(srv, "PATCH", "/api/v1/config/app%2Fx", {"n": 2})
        rest(srv, "DELETE", "/api/v1/config/app%2Fx")
        f1, f2, f3 = frame(c), frame(c), frame(c)
        assert f1["type"] == "config_update" and f1["name"] == "app/x" and f1["data"] == {"on": True}
        assert f1["revision"] == 1 and f1["updatedAt"].endswith("Z")
        assert f2["data"] == {"on": True, "n": 2} and f2["revision"] == 2
        assert f3["data"] is None and f3["revision"] == 3
        c.send_frame(0x1, b"ignored")  # client data frames are ignored
        rest(srv, "POST", "/api/v1/config/app%2Fx", {"again": 1})
        assert frame(c)["data"] == {"again": 1}
    finally:
        c.close()


def test_held_changes_already_in_the_current_state_are_not_sent_again():
    """include_current: a change that lands while the snapshot is read and is already part of
    it is not sent a second time (the feed stays in revision order per key)."""
    import asyncio

    from ironflow_pkg.api_watch import _Feed

    class Session:
        def __init__(self) -> None:
            self.posted: list[dict] = []

        def queued(self, tag: object) -> int:
            return 0

        def post(self, text: str, tag: object) -> bool:
            self.posted.append(json.loads(text))
            return True

        async def recv(self) -> None:
            return None

    s = Session()
    feed = _Feed(s, hold=True)  # type: ignore[arg-type]
    for key, rev in (("a", 2), ("a", 3), ("b", 4), ("a", 5)):
        feed.push({"type": "kv_update", "key": key, "revision": rev})
    asyncio.run(feed.pump({"a": 3, "b": 1}))
    assert [(f["key"], f["revision"]) for f in s.posted] == [("b", 4), ("a", 5)]
