"""Operator actions: pause/inject/resume, patch, paused state, delete, function history and
rollback, rerun, Health/Info (features.md §2.1, §3.4)."""

from __future__ import annotations

import base64
import json

from support import InProcessServer, make_settings
from test_flowcontrol import Worker, ok, rpc


def fence(job):
    return {"execution_seq": job["execution_seq"], "lease_token": job["lease_token"]}


def report(srv, job, body):
    st, _, raw = srv.request("PUT", f"/api/v1/workers/w1/jobs/{job['job_id']}",
                             json.dumps({**body, **fence(job)}).encode())
    return st, json.loads(raw)


def step(run_id, name, output, status="completed"):
    return {"id": f"{run_id}:{name}:0", "name": name, "type": "invoke", "status": status, "output": output}


def test_pause_inject_resume(tmp_path):
    with InProcessServer(make_settings(tmp_path)) as srv:
        ok(srv, "RegisterFunction", {"id": "f", "triggers": [{"event": "go"}],
                                     "retry": {"maxAttempts": 1, "onExhausted": "pause"}})
        rid = ok(srv, "Emit", {"event": "go", "data": {}})["runIds"][0]
        w = Worker(srv, "w1", ["f"])
        job = w.poll()[0]
        st, _ = report(srv, job, {"status": "failed", "steps": [step(rid, "a", 1)], "step_offset": 0,
                                  "error": {"message": "boom", "code": "ERROR", "retryable": True}})
        assert st == 200
        run = ok(srv, "GetRun", {"id": rid})
        assert run["status"] == "RUN_STATUS_PAUSED" and run["error"]["message"] == "boom"
        state = ok(srv, "GetPausedState", {"runId": rid})
        assert [s["id"] for s in state["steps"]] == [f"{rid}:a:0"]
        assert json.loads(base64.b64decode(state["steps"][0]["output"])) == 1
        out = ok(srv, "InjectStepOutput", {"runId": rid, "stepId": f"{rid}:a:0",
                                           "newOutput": base64.b64encode(b'{"x": 2}').decode()})
        assert json.loads(base64.b64decode(out["previousOutput"])) == 1
        run = ok(srv, "ResumeRun", {"runId": rid})
        assert run["status"] == "RUN_STATUS_WAITING_FOR_CAPACITY" and run["attempt"] == 2
        assert run["maxAttempts"] == 2 and "error" not in run
        job = w.poll()[0]
        assert job["attempt"] == 2 and job["completed_steps"][0]["output"] == {"x": 2}
        steps = ok(srv, "GetRunSteps", {"runId": rid})["steps"]
        assert steps[0]["originalOutputValue"] == 1


def test_pause_requested_while_running_applies_at_checkpoint(tmp_path):
    with InProcessServer(make_settings(tmp_path)) as srv:
        ok(srv, "RegisterFunction", {"id": "f", "triggers": [{"event": "go"}]})
        rid = ok(srv, "Emit", {"event": "go", "data": {}})["runIds"][0]
        w = Worker(srv, "w1", ["f"])
        job = w.poll()[0]
        assert ok(srv, "PauseRun", {"runId": rid})["status"] == "pause_requested"
        st, _ = report(srv, job, {"status": "progress", "steps": [step(rid, "a", 1)], "step_offset": 0})
        assert st == 200
        assert ok(srv, "GetRun", {"id": rid})["status"] == "RUN_STATUS_PAUSED"
        st, body = report(srv, job, {"status": "completed", "output": 1})
        assert st == 409 and body["error"] == "STALE_EXECUTION"
        ok(srv, "ResumeRun", {"runId": rid})
        job = w.poll()[0]
        assert job["attempt"] == 1 and [s["step_id"] for s in job["completed_steps"]] == [f"{rid}:a:0"]


def test_patch_failed_step_then_resume(tmp_path):
    with InProcessServer(make_settings(tmp_path)) as srv:
        ok(srv, "RegisterFunction", {"id": "f", "triggers": [{"event": "go"}]})
        rid = ok(srv, "Emit", {"event": "go", "data": {}})["runIds"][0]
        w = Worker(srv, "w1", ["f"])
        job = w.poll()[0]
        failed_step = {**step(rid, "a", None, "failed"), "error": {"message": "bad"}}
        report(srv, job, {"status": "failed", "steps": [failed_step], "step_offset": 0,
                          "error": {"message": "bad", "code": "STEP_FAILED", "retryable": False}})
        assert ok(srv, "GetRun", {"id": rid})["status"] == "RUN_STATUS_FAILED"
        row_id = ok(srv, "GetRunSteps", {"runId": rid})["steps"][0]["id"]
        patched = ok(srv, "PatchStep", {"stepId": row_id, "output": {"fixed": True}})
        assert patched["status"] == "STEP_STATUS_COMPLETED" and patched["output"] == {"fixed": True}
        assert patched["patchedAt"]
        ok(srv, "ResumeRun", {"runId": rid})
        job = w.poll()[0]
        assert job["completed_steps"][0]["output"] == {"fixed": True}
        w.finish(job, "done")
        assert ok(srv, "GetRun", {"id": rid})["status"] == "RUN_STATUS_COMPLETED"
        status, out = rpc(srv, "PatchStep", {"stepId": row_id, "output": {}})
        assert status == 400 and out["code"] == "failed_precondition"


def test_delete_runs_and_preconditions(tmp_path):
    with InProcessServer(make_settings(tmp_path)) as srv:
        ok(srv, "RegisterFunction", {"id": "f", "triggers": [{"event": "go"}]})
        r1 = ok(srv, "Emit", {"event": "go", "data": {}})["runIds"][0]
        r2 = ok(srv, "Emit", {"event": "go", "data": {}})["runIds"][0]
        status, out = rpc(srv, "DeleteRun", {"id": r1})
        assert status == 400 and out["code"] == "failed_precondition"
        ok(srv, "CancelRun", {"id": r1})
        ok(srv, "CancelRun", {"id": r2})
        ok(srv, "DeleteRun", {"id": r1})
        assert rpc(srv, "GetRun", {"id": r1})[0] == 404
        status, out = rpc(srv, "DeleteRuns", {})
        assert status == 400 and out["code"] == "invalid_argument"
        assert ok(srv, "DeleteRuns", {"functionId": "f"})["deleted"] == "1"


def test_function_history_and_rollback(tmp_path):
    with InProcessServer(make_settings(tmp_path)) as srv:
        ok(srv, "RegisterFunction", {"id": "f", "triggers": [{"event": "a"}]})
        ok(srv, "RegisterFunction", {"id": "f", "triggers": [{"event": "b"}], "changeReason": "switch"})
        assert ok(srv, "RegisterFunction", {"id": "f", "triggers": [{"event": "b"}]})["created"] is False
        hist = ok(srv, "ListFunctionHistory", {"functionId": "f"})["entries"]
        assert [(e["entityVersion"], e["changeType"]) for e in hist] == [("1", "update"), ("2", "update")]
        assert hist[1]["changeReason"] == "switch"
        v1 = ok(srv, "GetFunctionAtVersion", {"functionId": "f", "version": 1})["entry"]
        assert v1["functionSnapshot"]["triggers"][0]["event"] == "a"
        fn = ok(srv, "RollbackFunction", {"functionId": "f", "version": 1})["function"]
        assert fn["version"] == 3 and fn["triggers"][0]["event"] == "a"
        assert ok(srv, "Emit", {"event": "a", "data": {}})["runIds"]
        assert ok(srv, "ListFunctionHistory", {"functionId": "f"})["entries"][-1]["changeType"] == "rollback"
        assert rpc(srv, "GetFunctionAtVersion", {"functionId": "f", "version": 9})[0] == 404


def test_status_changes_and_delete_function(tmp_path):
    with InProcessServer(make_settings(tmp_path)) as srv:
        ok(srv, "RegisterFunction", {"id": "f", "triggers": [{"event": "go"}]})
        fn = ok(srv, "UpdateFunctionStatus", {"id": "f", "status": "FUNCTION_STATUS_PAUSED"})
        assert fn["status"] == "FUNCTION_STATUS_PAUSED" and fn["version"] == 2
        rid = ok(srv, "Emit", {"event": "go", "data": {}})["runIds"][0]
        w = Worker(srv, "w1", ["f"])
        assert w.poll() == []
        ok(srv, "UpdateFunctionStatus", {"id": "f", "status": "FUNCTION_STATUS_ACTIVE"})
        assert [j["run_id"] for j in w.poll()] == [rid]
        rid2 = ok(srv, "Emit", {"event": "go", "data": {}})["runIds"][0]
        ok(srv, "DeleteFunction", {"id": "f"})
        run = ok(srv, "GetRun", {"id": rid2})
        assert run["status"] == "RUN_STATUS_FAILED" and run["error"]["code"] == "FUNCTION_NOT_FOUND"
        assert rpc(srv, "GetFunction", {"id": "f"})[0] == 404


def test_rerun_health_info(tmp_path):
    with InProcessServer(make_settings(tmp_path)) as srv:
        ok(srv, "RegisterFunction", {"id": "f", "triggers": [{"event": "go"}]})
        rid = ok(srv, "Emit", {"event": "go", "data": {"n": 7}})["runIds"][0]
        st, _, raw = srv.request("POST", f"/api/v1/runs/{rid}/rerun")
        new = json.loads(raw)
        assert st == 201 and new["input"] == {"n": 7} and new["id"] != rid
        ev = json.loads(srv.request("GET", f"/api/v1/events/{new['event_id']}")[2])
        assert ev["metadata"] == {"rerun_of": rid} and ev["name"] == "invoke/f"
        h = ok(srv, "Health", {})
        assert h["status"] == "healthy" and set(h["components"]) == {"database", "scheduler", "dispatcher"}
        info = ok(srv, "Info", {})
        assert info["version"] == "0.53.0" and info["functionCount"] == 1 and info["activeRuns"] == 2


def test_redaction(tmp_path):
    import hashlib
    with InProcessServer(make_settings(tmp_path)) as srv:
        ok(srv, "RegisterFunction", {"id": "f", "triggers": [{"event": "go"}]})
        out = ok(srv, "Emit", {"event": "go", "data": {"card": "4111"}})
        rid, eid = out["runIds"][0], out["eventId"]
        w = Worker(srv, "w1", ["f"])
        job = w.poll()[0]
        report(srv, job, {"status": "completed", "output": {"token": "t"}, "steps": [step(rid, "a", {"pan": 1})],
                          "step_offset": 0})
        ok(srv, "RedactEvent", {"eventId": eid})
        ok(srv, "RedactEvent", {"eventId": eid})  # idempotent
        ev = json.loads(srv.request("GET", f"/api/v1/events/{eid}")[2])
        assert ev["data"]["$redacted"] is True
        assert ev["data"]["sha256"] == hashlib.sha256(b'{"card":"4111"}').hexdigest()
        ok(srv, "RedactRun", {"runId": rid})
        run = ok(srv, "GetRun", {"id": rid})
        assert run["input"]["$redacted"] and run["output"]["$redacted"]
        row = ok(srv, "GetRunSteps", {"runId": rid})["steps"][0]["id"]
        ok(srv, "RedactStep", {"stepId": row})
        assert ok(srv, "GetRunSteps", {"runId": rid})["steps"][0]["output"]["$redacted"]
        rid2 = ok(srv, "Emit", {"event": "go", "data": {}})["runIds"][0]
        status, out = rpc(srv, "RedactRun", {"runId": rid2})
        assert status == 400 and out["code"] == "failed_precondition"
        assert rpc(srv, "RedactEvent", {"eventId": "evt_nope"})[0] == 404


def test_push_registration_is_refused_until_push_mode_exists(tmp_path):
    with InProcessServer(make_settings(tmp_path)) as srv:
        status, out = rpc(srv, "RegisterFunction", {"id": "p", "preferredMode": "EXECUTION_MODE_PUSH",
                                                    "endpointUrl": "http://127.0.0.1:9/x"})
        assert status == 501 and out["code"] == "unimplemented" and "push" in out["message"]
        assert rpc(srv, "GetFunction", {"id": "p"})[0] == 404
