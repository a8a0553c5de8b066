"""KV, config documents and secrets over REST (rest-api.md §1.7, §3.6, §3.12, §3.22)."""

from __future__ import annotations

import base64
import json
import threading
import time

import pytest

from support import InProcessServer, ServerProcess, http_request, make_settings
from test_flowcontrol import Worker, ok

MASTER = "00112233445566778899aabbccddeeff" * 2


@pytest.fixture
def srv(tmp_path):
    with InProcessServer(make_settings(tmp_path, master_key=MASTER)) as s:
        yield s


def req(s, verb, path, body=None, headers=None, raw=False):
    data = body if raw or body is None else json.dumps(body).encode()
    st, h, out = s.request(verb, path, data, headers or {})
    return st, (json.loads(out) if out else None), h


# -- KV ----------------------------------------------------------------------------------------

def test_bucket_lifecycle(srv):
    st, b, _ = req(srv, "POST", "/api/v1/kv/buckets", {"name": "b1", "description": "d", "history": 3})
    assert st == 201 and b == {"name": "b1", "values": 0, "bytes": 0, "history": 3,
                               "created_at": b["created_at"], "description": "d"}
    assert req(srv, "POST", "/api/v1/kv/buckets", {"name": "b1"})[0] == 409
    assert req(srv, "POST", "/api/v1/kv/buckets", {"name": "SYS_x"})[0] == 400
    assert req(srv, "POST", "/api/v1/kv/buckets", {"name": "bad name"})[0] == 400
    assert req(srv, "GET", "/api/v1/kv/buckets")[1]["count"] == 1
    assert req(srv, "DELETE", "/api/v1/kv/buckets/b1")[0] == 204
    assert req(srv, "GET", "/api/v1/kv/buckets/b1")[0] == 404
    assert req(srv, "PUT", "/api/v1/kv/buckets/b1/keys/k", b"1", raw=True)[0] == 404


def test_keys_raw_bytes_paths_and_revisions(srv):
    req(srv, "POST", "/api/v1/kv/buckets", {"name": "b", "history": 2})
    st, out, h = req(srv, "PUT", "/api/v1/kv/buckets/b/keys/user%2F1", b"\x00\xffraw", raw=True)
    assert st == 200 and out == {"revision": 1} and h["etag"] == '"1"'
    st, e, _ = req(srv, "GET", "/api/v1/kv/buckets/b/keys/user/1")  # unencoded slash: same key
    assert st == 200 and base64.b64decode(e["value"]) == b"\x00\xffraw"
    assert e["key"] == "user/1" and e["revision"] == 1 and e["operation"] == "put"
    assert req(srv, "PUT", "/api/v1/kv/buckets/b/keys/a.x", b"2", raw=True)[1]["revision"] == 2
    assert req(srv, "PUT", "/api/v1/kv/buckets/b/keys/a.y.z", b"3", raw=True)[1]["revision"] == 3
    assert req(srv, "GET", "/api/v1/kv/buckets/b/keys?filter=a.*")[1] == {"keys": ["a.x"], "count": 1}
    assert req(srv, "GET", "/api/v1/kv/buckets/b/keys?filter=a.>")[1]["keys"] == ["a.x", "a.y.z"]
    assert req(srv, "DELETE", "/api/v1/kv/buckets/b/keys/a.x")[1] == {"revision": 4}
    assert req(srv, "GET", "/api/v1/kv/buckets/b/keys/a.x")[0] == 404
    assert req(srv, "DELETE", "/api/v1/kv/buckets/b/keys/a.x")[0] == 404
    assert req(srv, "DELETE", "/api/v1/kv/buckets/b/keys/a.y.z?purge=true")[1] == {"revision": 5}
    info = req(srv, "GET", "/api/v1/kv/buckets/b")[1]
    assert info["values"] == 1 and info["bytes"] == 5
    assert req(srv, "PUT", "/api/v1/kv/buckets/b/keys/%00", b"x", raw=True)[0] == 400


def test_conditional_writes(srv):
    req(srv, "POST", "/api/v1/kv/buckets", {"name": "b"})
    put = lambda h, v=b"v": req(srv, "PUT", "/api/v1/kv/buckets/b/keys/k", v, h, raw=True)
    assert put({"If-None-Match": "*"})[0] == 200
    st, out, _ = put({"If-None-Match": "*"})
    assert st == 412 and out["code"] == "PRECONDITION_FAILED" and out["details"] == {"revision": 1}
    assert put({"If-Match": '"1"'})[1] == {"revision": 2}
    st, out, _ = put({"If-Match": "1"})
    assert st == 412 and out["details"]["revision"] == 2
    assert put({"If-Match": "*"})[0] == 200
    assert req(srv, "PUT", "/api/v1/kv/buckets/b/keys/new", b"", {"If-Match": "*"}, raw=True)[0] == 412
    req(srv, "DELETE", "/api/v1/kv/buckets/b/keys/k")
    assert put({"If-None-Match": "*"})[0] == 200  # a tombstoned key counts as absent


def test_cas_race_exactly_one_winner_per_round(srv):
    req(srv, "POST", "/api/v1/kv/buckets", {"name": "race"})
    rev = req(srv, "PUT", "/api/v1/kv/buckets/race/keys/c", b"0", raw=True)[1]["revision"]
    for _ in range(5):
        results = []

        def writer(i, rev=rev):
            st, out, _ = req(srv, "PUT", "/api/v1/kv/buckets/race/keys/c", str(i).encode(),
                             {"If-Match": str(rev)}, raw=True)
            results.append((st, out))
        ts = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
        [t.start() for t in ts]
        [t.join() for t in ts]
        winners = [out for st, out in results if st == 200]
        assert len(winners) == 1 and sorted(st for st, _ in results) == [200] + [412] * 7
        rev = winners[0]["revision"]


def test_limits_and_ttl(srv):
    req(srv, "POST", "/api/v1/kv/buckets", {"name": "t", "ttl_seconds": 1, "max_value_size": 10,
                                            "max_bytes": 15})
    assert req(srv, "PUT", "/api/v1/kv/buckets/t/keys/big", b"x" * 11, raw=True)[0] == 413
    assert req(srv, "PUT", "/api/v1/kv/buckets/t/keys/a", b"x" * 10, raw=True)[0] == 200
    assert req(srv, "PUT", "/api/v1/kv/buckets/t/keys/b", b"x" * 6, raw=True)[0] == 413
    time.sleep(1.2)
    assert req(srv, "GET", "/api/v1/kv/buckets/t/keys/a")[0] == 404
    assert req(srv, "GET", "/api/v1/kv/buckets/t/keys")[1]["keys"] == []
    assert req(srv, "PUT", "/api/v1/kv/buckets/t/keys/b", b"x" * 6, raw=True)[0] == 200


def test_kv_survives_restart_and_history_is_pruned(tmp_path):
    db = str(tmp_path / "kv.db")
    with ServerProcess(db) as s:
        req(s, "POST", "/api/v1/kv/buckets", {"name": "h", "history": 2})
        for i in range(5):
            req(s, "PUT", "/api/v1/kv/buckets/h/keys/k", str(i).encode(), raw=True)
        s.kill()
    with ServerProcess(db) as s:
        e = req(s, "GET", "/api/v1/kv/buckets/h/keys/k")[1]
        assert base64.b64decode(e["value"]) == b"4" and e["revision"] == 5
        assert req(s, "PUT", "/api/v1/kv/buckets/h/keys/k", b"5", raw=True)[1]["revision"] == 6
    import sqlite3
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("SELECT count(*) FROM kv_entries").fetchone()[0] == 2
    finally:
        conn.close()


# -- config ------------------------------------------------------------------------------------

def test_config_documents(srv):
    st, out, _ = req(srv, "POST", "/api/v1/config/app%2Fmain", {"a": 1, "b": {"c": 2}})
    assert st in (200, 201) and out == {"name": "app/main", "revision": 1}
    st, doc, h = req(srv, "GET", "/api/v1/config/app%2Fmain")
    assert doc == {"name": "app/main", "data": {"a": 1, "b": {"c": 2}}, "revision": 1,
                   "updatedAt": doc["updatedAt"]} and h["etag"] == '"1"'
    assert req(srv, "PATCH", "/api/v1/config/app%2Fmain", {"a": None, "d": 4})[1]["revision"] == 2
    assert req(srv, "GET", "/api/v1/config/app%2Fmain")[1]["data"] == {"b": {"c": 2}, "d": 4}
    assert req(srv, "POST", "/api/v1/config/app%2Fmain", {"x": 1}, {"If-None-Match": "*"})[0] == 412
    st, out, _ = req(srv, "POST", "/api/v1/config/app%2Fmain", {"x": 1}, {"If-Match": "1"})
    assert st == 412 and out["details"]["revision"] == 2
    assert req(srv, "POST", "/api/v1/config/app%2Fmain", {"x": 1}, {"If-Match": "2"})[1]["revision"] == 3
    assert req(srv, "POST", "/api/v1/config/x", [1, 2])[0] == 400
    assert req(srv, "PATCH", "/api/v1/config/fresh", {"k": 1})[1]["revision"] == 1
    assert req(srv, "PATCH", "/api/v1/config/nope", {"k": 1}, {"If-Match": "1"})[0] == 412
    assert req(srv, "GET", "/api/v1/config")[1]["configs"][0]["name"] == "app/main"
    assert req(srv, "DELETE", "/api/v1/config/app%2Fmain", headers={"If-Match": "9"})[0] == 412
    assert req(srv, "DELETE", "/api/v1/config/app%2Fmain")[0] == 204
    assert req(srv, "DELETE", "/api/v1/config/app%2Fmain")[0] == 204
    assert req(srv, "GET", "/api/v1/config/app%2Fmain")[0] == 404


# -- secrets -----------------------------------------------------------------------------------

def test_secrets_metadata_only_and_reach_declaring_jobs(srv):
    st, meta, _ = req(srv, "POST", "/api/v1/secrets", {"name": "API", "value": "s3cr3t-value",
                                                       "description": "key"})
    assert st == 201 and meta["revision"] == 1 and "value" not in meta
    assert req(srv, "POST", "/api/v1/secrets", {"name": "API", "value": "x"})[0] == 409
    assert req(srv, "POST", "/api/v1/secrets", {"name": "bad name", "value": "x"})[0] == 400
    assert req(srv, "PUT", "/api/v1/secrets/API", {"value": "s3cr3t-value"})[1]["revision"] == 2
    listing = srv.request("GET", "/api/v1/secrets")[2]
    assert b"s3cr3t" not in listing and json.loads(listing)[0]["name"] == "API"
    assert b"s3cr3t" not in srv.request("GET", "/api/v1/secrets/API")[2]
    ok(srv, "RegisterFunction", {"id": "f", "triggers": [{"event": "go"}], "secrets": ["API"]})
    ok(srv, "Emit", {"event": "go", "data": {}})
    job = Worker(srv, "w1", ["f"]).poll()[0]
    assert job["context"] == {"secrets": {"API": "s3cr3t-value"}}
    st, out, _ = req(srv, "POST", "/api/v1/sql", {"query": "SELECT * FROM runs"})
    assert st == 200 and "s3cr3t" not in json.dumps(out)
    assert req(srv, "PATCH", "/api/v1/secrets/API", {"name": "API2"})[1]["name"] == "API2"
    assert req(srv, "DELETE", "/api/v1/secrets/API2")[0] == 204
    assert req(srv, "DELETE", "/api/v1/secrets/API2")[0] == 404


def test_secret_values_never_logged_or_stored_plain(tmp_path):
    db = str(tmp_path / "s.db")
    with ServerProcess(db, env={"IRONFLOW_MASTER_KEY": MASTER}) as s:
        assert req(s, "POST", "/api/v1/secrets", {"name": "TOKEN", "value": "very-secret-token"})[0] == 201
        s.terminate()
    assert all("very-secret-token" not in line for line in s.lines)
    for suffix in ("", "-wal"):
        try:
            data = open(db + suffix, "rb").read()
        except FileNotFoundError:
            continue
        assert b"very-secret-token" not in data
    with ServerProcess(db) as s:  # no master key now: the secret cannot be decrypted
        health = req(s, "GET", "/health")[1]
        assert any("cannot be decrypted" in w for w in health["warnings"])
