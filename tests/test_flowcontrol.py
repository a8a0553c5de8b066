"""Flow control end to end: cron triggers, debounce, throttle, concurrency, cancelOn
(features.md §2.3-§2.7), driven over HTTP like a worker would."""

from __future__ import annotations

import base64
import json
import time

import pytest

from support import InProcessServer, ServerProcess, make_settings


def rpc(srv, method, body):
    status, _, raw = srv.request("POST", f"/ironflow.v1.IronflowService/{method}",
                                 json.dumps(body).encode(), {"Content-Type": "application/json"})
    return status, (json.loads(raw) if raw else None)


def ok(srv, method, body):
    status, out = rpc(srv, method, body)
    assert status == 200, (method, status, out)
    return out


def runs_of(srv, fid):
    return ok(srv, "ListRuns", {"functionId": fid, "limit": 1000})["runs"]


def wait_for(pred, timeout=8.0, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(interval)
    raise AssertionError("condition not reached in time")


class Worker:
    """Just enough of the pull protocol to take jobs and finish them."""

    def __init__(self, srv, wid, fids, slots=10):
        self.srv, self.wid = srv, wid
        st, _, raw = srv.request("POST", f"/api/v1/workers/{wid}/register", json.dumps(
            {"function_ids": fids, "max_concurrent_jobs": slots}).encode())
        assert st == 200, raw

    def poll(self, available=10, wait=0):
        st, _, raw = self.srv.request("GET", f"/api/v1/workers/{self.wid}/jobs?available={available}&wait={wait}")
        return json.loads(raw)["jobs"] if st == 200 else []

    def finish(self, job, output=None):
        fence = {"execution_seq": job["execution_seq"], "lease_token": job["lease_token"]}
        st, _, raw = self.srv.request("PUT", f"/api/v1/workers/{self.wid}/jobs/{job['job_id']}",
                                      json.dumps({"status": "completed", "output": output, **fence}).encode())
        assert st == 200, raw


# -- cron ----------------------------------------------------------------------------------------

def test_cron_trigger_creates_tick_runs(tmp_path):
    with InProcessServer(make_settings(tmp_path)) as srv:
        fn = ok(srv, "RegisterFunction", {"id": "tick", "triggers": [{"cron": "@every 1s"}]})["function"]
        assert fn["nextRun"].endswith("Z")
        runs = wait_for(lambda: [r for r in runs_of(srv, "tick")] if len(runs_of(srv, "tick")) >= 2 else None,
                        timeout=5)
        for r in runs:
            assert r["eventName"] == "cron/tick"
            assert r["input"]["cron"] == "@every 1s" and r["input"]["scheduled_at"].endswith(".000Z")
        ticks = {r["input"]["scheduled_at"] for r in runs}
        assert len(ticks) == len(runs), "one run per tick"
        _, _, raw = srv.request("GET", "/api/v1/events?source=cron")
        assert json.loads(raw)["events"][0]["source"] == "cron"


def test_cron_named_event_and_archived_function_stops(tmp_path):
    with InProcessServer(make_settings(tmp_path)) as srv:
        ok(srv, "RegisterFunction", {"id": "rep", "triggers": [{"event": "report.due", "cron": "@every 1s"}]})
        wait_for(lambda: runs_of(srv, "rep"), timeout=4)
        assert runs_of(srv, "rep")[0]["eventName"] == "report.due"
        ok(srv, "UpdateFunctionStatus", {"id": "rep", "status": "FUNCTION_STATUS_ARCHIVED"})
        n = len(runs_of(srv, "rep"))
        time.sleep(1.6)
        assert len(runs_of(srv, "rep")) <= n + 1  # at most a tick already in flight


def test_bad_cron_is_invalid_argument(tmp_path):
    with InProcessServer(make_settings(tmp_path)) as srv:
        status, out = rpc(srv, "RegisterFunction", {"id": "x", "triggers": [{"cron": "61 * * * *"}]})
        assert status == 400 and out["code"] == "invalid_argument" and "triggers[0].cron" in out["message"]
        status, out = rpc(srv, "RegisterFunction", {"id": "x", "triggers": [{"expression": "true"}]})
        assert status == 400 and "triggers[0]" in out["message"]
        status, out = rpc(srv, "RegisterFunction", {"id": "x", "triggers": [{"event": "a", "expression": "1 +"}]})
        assert status == 400 and "triggers[0].expression" in out["message"]


# -- debounce ------------------------------------------------------------------------------------

def test_debounce_runs_once_with_the_latest_event(tmp_path):
    with InProcessServer(make_settings(tmp_path)) as srv:
        ok(srv, "RegisterFunction", {"id": "deb", "triggers": [{"event": "d.e"}],
                                     "debounce": {"periodMs": 1000, "key": "k"}})
        for i in range(3):
            assert ok(srv, "Emit", {"event": "d.e", "data": {"k": "a", "i": i}})["runIds"] == []
            time.sleep(0.2)
        ok(srv, "Emit", {"event": "d.e", "data": {"k": "b", "i": 9}})
        entries = json.loads(srv.request("GET", "/api/v1/debounce/entries")[2])
        assert sorted(e["debounce_key"] for e in entries) == ['"a"', '"b"']
        runs = wait_for(lambda: runs_of(srv, "deb") if len(runs_of(srv, "deb")) == 2 else None, timeout=4)
        assert sorted(r["input"]["i"] for r in runs) == [2, 9]
        time.sleep(1.2)
        assert len(runs_of(srv, "deb")) == 2
        assert json.loads(srv.request("GET", "/api/v1/debounce/entries")[2]) == []


def test_debounce_max_wait_caps_the_delay(tmp_path):
    with InProcessServer(make_settings(tmp_path)) as srv:
        ok(srv, "RegisterFunction", {"id": "deb", "triggers": [{"event": "d.e"}],
                                     "debounce": {"periodMs": 1000, "key": "", "maxWaitMs": 1500}})
        start = time.monotonic()
        while not runs_of(srv, "deb"):
            assert time.monotonic() - start < 4, "max_wait did not fire the lane"
            ok(srv, "Emit", {"event": "d.e", "data": {"t": time.monotonic()}})
            time.sleep(0.3)
        assert time.monotonic() - start < 2.5


def test_debounce_cancel_by_rest_and_trigger_sync_refused(tmp_path):
    with InProcessServer(make_settings(tmp_path)) as srv:
        ok(srv, "RegisterFunction", {"id": "deb", "triggers": [{"event": "d.e"}],
                                     "debounce": {"periodMs": 1000, "key": "k"}})
        ok(srv, "Emit", {"event": "d.e", "data": {"k": "z"}})
        ok(srv, "Emit", {"event": "d.e", "data": {}})  # unresolvable key: the global lane
        key = base64.urlsafe_b64encode(b'"z"').decode().rstrip("=")
        assert srv.request("DELETE", f"/api/v1/debounce/entries/env_default/deb/{key}")[0] == 204
        assert srv.request("DELETE", "/api/v1/debounce/entries/env_default/deb/-")[0] == 204
        assert srv.request("DELETE", "/api/v1/debounce/entries/env_default/deb/-")[0] == 404
        time.sleep(1.3)
        assert runs_of(srv, "deb") == []
        status, out = rpc(srv, "TriggerSync", {"event": "d.e", "data": {"k": 1}})
        assert status == 400 and out["code"] == "failed_precondition"


def test_debounce_survives_a_restart(tmp_path):
    db = str(tmp_path / "d.db")
    with ServerProcess(db) as srv:
        ok(srv, "RegisterFunction", {"id": "deb", "triggers": [{"event": "d.e"}],
                                     "debounce": {"periodMs": 2000, "key": ""}})
        ok(srv, "Emit", {"event": "d.e", "data": {"n": 1}})
        srv.kill()
    with ServerProcess(db) as srv:
        runs = wait_for(lambda: runs_of(srv, "deb"), timeout=6)
        assert len(runs) == 1 and runs[0]["input"] == {"n": 1}


# -- throttle and concurrency --------------------------------------------------------------------

def test_throttle_limits_starts_per_window(tmp_path):
    with InProcessServer(make_settings(tmp_path)) as srv:
        ok(srv, "RegisterFunction", {"id": "thr", "triggers": [{"event": "t.e"}],
                                     "throttle": {"limit": 2, "periodMs": 1000}})
        for i in range(5):
            ok(srv, "Emit", {"event": "t.e", "data": {"i": i}})
        w = Worker(srv, "w1", ["thr"])
        first = w.poll(10)
        assert len(first) == 2
        for j in first:
            w.finish(j)
        assert w.poll(10) == []  # window still full even though both finished
        got = []
        deadline = time.monotonic() + 4
        while len(got) < 3 and time.monotonic() < deadline:
            got += w.poll(10, wait=1)
        assert len(got) == 3


def test_throttle_key_unresolved_fails_the_run(tmp_path):
    with InProcessServer(make_settings(tmp_path)) as srv:
        ok(srv, "RegisterFunction", {"id": "thr", "triggers": [{"event": "t.e"}],
                                     "throttle": {"limit": 1, "periodMs": 1000, "key": "customer"}})
        rid = ok(srv, "Emit", {"event": "t.e", "data": {"x": 1}})["runIds"][0]
        run = ok(srv, "GetRun", {"id": rid})
        assert run["status"] == "RUN_STATUS_FAILED" and run["error"]["code"] == "THROTTLE_KEY_UNRESOLVED"


def test_concurrency_limit_per_key(tmp_path):
    with InProcessServer(make_settings(tmp_path)) as srv:
        ok(srv, "RegisterFunction", {"id": "c", "triggers": [{"event": "c.e"}],
                                     "concurrency": {"limit": 1, "key": "user"}})
        for user in ("a", "a", "b"):
            ok(srv, "Emit", {"event": "c.e", "data": {"user": user}})
        w = Worker(srv, "w1", ["c"])
        jobs = w.poll(10)
        assert sorted(j["event"]["data"]["user"] for j in jobs) == ["a", "b"]
        assert w.poll(10) == []
        w.finish(jobs[0])
        w.finish(jobs[1])
        assert [j["event"]["data"]["user"] for j in w.poll(10)] == ["a"]


# -- cancelOn ------------------------------------------------------------------------------------

def test_cancel_on_matching_event(tmp_path):
    with InProcessServer(make_settings(tmp_path)) as srv:
        ok(srv, "RegisterFunction", {"id": "o", "triggers": [{"event": "order.placed"}],
                                     "cancelOn": [{"event": "order.cancelled", "match": "data.orderId"}]})
        r1 = ok(srv, "Emit", {"event": "order.placed", "data": {"orderId": 1}})["runIds"][0]
        r2 = ok(srv, "Emit", {"event": "order.placed", "data": {"orderId": 2}})["runIds"][0]
        ok(srv, "Emit", {"event": "order.cancelled", "data": {"orderId": 1}})
        a, b = ok(srv, "GetRun", {"id": r1}), ok(srv, "GetRun", {"id": r2})
        assert a["status"] == "RUN_STATUS_CANCELLED" and a["cancellationCause"] == "cancel-on-event"
        assert b["status"] == "RUN_STATUS_WAITING_FOR_CAPACITY"


@pytest.mark.parametrize("expr,hits", [("data.priority > 5", 1), ("data.region in ['eu', 'us']", 2)])
def test_trigger_expression(tmp_path, expr, hits):
    with InProcessServer(make_settings(tmp_path)) as srv:
        ok(srv, "RegisterFunction", {"id": "f", "triggers": [{"event": "e", "expression": expr}]})
        ok(srv, "Emit", {"event": "e", "data": {"priority": 9, "region": "eu"}})
        ok(srv, "Emit", {"event": "e", "data": {"priority": 1, "region": "us"}})
        ok(srv, "Emit", {"event": "e", "data": {"priority": 1}})
        assert len(runs_of(srv, "f")) == hits
