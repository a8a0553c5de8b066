"""POST /api/v1/sql and QueryService/ExecuteSQL: one service, both shapes (rest-api.md §2.6)."""

from __future__ import annotations

import json

from support import InProcessServer, make_settings

KEY = "ifkey_" + "5" * 32


def test_rest_and_connect_shapes_and_errors(tmp_path):
    with InProcessServer(make_settings(tmp_path, dev=False, bootstrap_api_key=KEY)) as s:
        auth = {"Authorization": f"Bearer {KEY}"}
        s.request("POST", "/api/v1/events", json.dumps({"name": "e.x", "data": {"a": None}}).encode(), auth)
        st, _, raw = s.request("POST", "/api/v1/sql", json.dumps(
            {"sql": "SELECT name, json_extract(data, '$.a') AS a FROM events"}).encode(), auth)
        assert st == 200 and json.loads(raw) == {"columns": ["name", "a"], "rows": [["e.x", None]],
                                                  "total_rows": 1, "truncated": False}
        st, _, raw = s.request("POST", "/ironflow.v1.QueryService/ExecuteSQL", json.dumps(
            {"query": "SELECT name, json_extract(data, '$.a') FROM events"}).encode(),
            {**auth, "Content-Type": "application/json"})
        assert st == 200 and json.loads(raw)["rows"] == [{"values": ["e.x", ""]}]
        for bad in ("DELETE FROM runs", "SELECT 1; SELECT 2", "PRAGMA table_info(runs)", ""):
            st, _, raw = s.request("POST", "/api/v1/sql", json.dumps({"query": bad}).encode(), auth)
            assert st == 400 and json.loads(raw)["code"] == "invalid_argument", bad
        st, _, raw = s.request("POST", "/api/v1/sql", json.dumps({"query": (
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"),
            "timeout_ms": 200}).encode(), auth)
        assert st == 504 and json.loads(raw)["code"] == "deadline_exceeded"
        assert s.request("POST", "/api/v1/sql", b'{"query": "SELECT 1"}')[0] == 401
        caps = json.loads(s.request("GET", "/api/v1/capabilities")[2])
        assert "sql" in caps["features"]
