"""Test-only fault injection (acceptance.md, Conventions), declared secrets without a secrets
store, and undoing an assignment whose poller went away (worker-protocol.md §2.5 rule 6)."""

from __future__ import annotations

import json
import socket
import time

from support import InProcessServer, ServerProcess, make_settings
from test_flowcontrol import Worker, ok, wait_for


def test_report_status_fault_then_idempotent_retry(tmp_path):
    with ServerProcess(str(tmp_path / "f.db"),
                       env={"IRONFLOW_TEST_FAULTS": json.dumps({"report_status": [503, 503]})}) as srv:
        ok(srv, "RegisterFunction", {"id": "f", "triggers": [{"event": "go"}]})
        rid = ok(srv, "Emit", {"event": "go", "data": {}})["runIds"][0]
        w = Worker(srv, "w1", ["f"])
        job = w.poll()[0]
        fence = {"execution_seq": job["execution_seq"], "lease_token": job["lease_token"]}
        path = f"/api/v1/workers/w1/jobs/{job['job_id']}"
        # checkpoints are not failed by the fault
        assert srv.request("PUT", path, json.dumps({"status": "progress", **fence}).encode())[0] == 200
        body = json.dumps({"status": "completed", "output": 5, **fence}).encode()
        assert [srv.request("PUT", path, body)[0] for _ in range(4)] == [503, 503, 200, 200]
        run = ok(srv, "GetRun", {"id": rid})
        assert run["status"] == "RUN_STATUS_COMPLETED" and run["outputValue"] == 5


def test_drop_worker_sessions_fault(tmp_path):
    with ServerProcess(str(tmp_path / "d.db"),
                       env={"IRONFLOW_TEST_FAULTS": json.dumps({"drop_worker_sessions_after_s": 0.5})}) as srv:
        Worker(srv, "w1", [])
        assert srv.request("POST", "/api/v1/workers/w1/heartbeat", b"{}")[0] == 200
        wait_for(lambda: srv.request("POST", "/api/v1/workers/w1/heartbeat", b"{}")[0] == 404, timeout=5)
        assert srv.request("GET", "/api/v1/workers/w1/jobs")[0] == 404


def test_bad_faults_setting_refuses_to_start(tmp_path):
    from ironflow_pkg.config import ConfigError, load_settings
    import pytest
    with pytest.raises(ConfigError):
        load_settings({}, environ={"IRONFLOW_TEST_FAULTS": "{nope"})
    with pytest.raises(ConfigError):
        load_settings({}, environ={"IRONFLOW_TEST_FAULTS": '{"report_status": ["x"]}'})


def test_declared_secret_missing_fails_the_run(tmp_path):
    with InProcessServer(make_settings(tmp_path)) as srv:
        ok(srv, "RegisterFunction", {"id": "f", "triggers": [{"event": "go"}], "secrets": ["API"]})
        rid = ok(srv, "Emit", {"event": "go", "data": {}})["runIds"][0]
        assert Worker(srv, "w1", ["f"]).poll() == []
        run = ok(srv, "GetRun", {"id": rid})
        assert run["status"] == "RUN_STATUS_FAILED" and run["error"]["code"] == "SECRET_NOT_FOUND"
        assert run["error"]["retryable"] is False


def test_held_poll_abandoned_by_the_worker_is_undone(tmp_path):
    with InProcessServer(make_settings(tmp_path)) as srv:
        ok(srv, "RegisterFunction", {"id": "f", "triggers": [{"event": "go"}]})
        w = Worker(srv, "w1", ["f"])
        s = socket.create_connection(("127.0.0.1", srv.port))
        s.sendall(b"GET /api/v1/workers/w1/jobs?available=1&wait=5 HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.3)
        s.close()  # the worker gives up on its held poll (it started draining)
        time.sleep(0.3)
        rid = ok(srv, "Emit", {"event": "go", "data": {}})["runIds"][0]
        jobs = w.poll(wait=2)
        assert [j["run_id"] for j in jobs] == [rid]
        assert jobs[0]["execution_seq"] == 1  # nobody received an earlier assignment
