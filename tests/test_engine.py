"""The engine through real loopback HTTP, driven exactly like a pull worker would drive it.

No SDK: a small worker simulator (tests/engine_helpers.py) sends the raw JSON requests of
worker-protocol.md §2 (register, heartbeat, long poll, ack, progress/completed/failed/yielded
reports with the fence and the step tail), and a Connect JSON client calls IronflowService the way
ironflow-py's RegisterFunction / the JSON codec does. Short leases (TTL 1 s, grace 0.3 s) keep the
recovery scenarios fast.

Spec: worker-protocol.md §2-§4, features.md §1-§4, acceptance.md A.1-A.8, B.3, B.5.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time

import pytest

from engine_helpers import (STALE, TS_RE, Api, Heartbeater, Worker, eventually, run_output,
                            step_output, step_result, ts_in)
from support import InProcessServer, ServerProcess, http_request, make_settings

TTL = 1.0
GRACE = 0.3


@pytest.fixture
def srv(tmp_path):
    with InProcessServer(make_settings(tmp_path, lease_ttl=TTL, lease_grace=GRACE)) as s:
        yield s


@pytest.fixture
def api(srv):
    return Api(srv.port)


def assert_stale(status, body):
    """worker-protocol.md §2.7/§2.8: 409 {"error":"STALE_EXECUTION","code":"aborted",...}."""
    assert status == 409, (status, body)
    assert isinstance(body, dict) and body.get("error") == STALE["error"], body
    assert body.get("code") == STALE["code"], body


def setup_fn(api, fid="flow", event="flow.go", wid="w1", max_jobs=10, **extra):
    api.register_fn(fid, event, **extra)
    w = Worker(api, wid, [fid], max_jobs)
    w.register()
    return w


def memo(job):
    """completed_steps keyed by step id."""
    return {row["step_id"]: row for row in job["completed_steps"]}


# == registration (worker-protocol.md §2.2, §2.3, §2.4) ================================================

def test_register_function_is_an_idempotent_upsert(api):
    body = {"id": "flow", "triggers": [{"event": "flow.go"}],
            "retry": {"maxAttempts": 3, "initialDelayMs": 100},
            "metadata": {"__ironflow_code_hash": "0123456789abcdef"}}
    first = api.rpc_ok("RegisterFunction", body)
    assert first["created"] is True and first["function"]["version"] == 1
    assert first["function"]["preferredMode"] == "EXECUTION_MODE_PULL"
    again = api.rpc_ok("RegisterFunction", body)
    assert again.get("created", False) is False and again["function"]["version"] == 1
    # The snake_case spelling of the same definition is the same definition.
    snake = {"id": "flow", "triggers": [{"event": "flow.go"}],
             "retry": {"max_attempts": 3, "initial_delay_ms": 100},
             "metadata": {"__ironflow_code_hash": "0123456789abcdef"}}
    assert api.rpc_ok("RegisterFunction", snake)["function"]["version"] == 1
    assert api.rpc_ok("GetFunction", {"id": "flow"})["version"] == 1
    # A new code hash is a change: version + 1, still not "created".
    changed = dict(body, metadata={"__ironflow_code_hash": "fedcba9876543210"})
    out = api.rpc_ok("RegisterFunction", changed)
    assert out.get("created", False) is False and out["function"]["version"] == 2
    assert api.rpc_ok("GetFunction", {"id": "flow"})["metadata"] == {"__ironflow_code_hash": "fedcba9876543210"}
    assert api.rpc_ok("RegisterFunction", changed)["function"]["version"] == 2


@pytest.mark.parametrize("body", [
    {"id": ""},
    {"id": "bad id"},
    {"id": "x" * 129},
    {"id": "f", "triggers": [{}]},
    {"id": "f", "triggers": [{"event": "a", "expression": "event.data.x >"}]},
    {"id": "f", "retry": {"onExhausted": "explode"}},
])
def test_register_function_validation(api, body):
    status, out = api.rpc("RegisterFunction", body)
    assert status == 400 and out["code"] == "invalid_argument", out


def test_worker_register_heartbeat_and_unknown_sessions(api):
    api.register_fn("flow", "flow.go")
    ghost = Worker(api, "ghost", ["flow"])
    status, out = ghost.heartbeat()
    assert status == 404 and out["code"] == "not_found", out
    assert out["error"] == "worker not registered"  # not SHOUTING_SNAKE (worker-protocol.md §1)
    status, _, _ = ghost.poll(wait=0)
    assert status == 404
    w = Worker(api, "w1", ["flow", "not-yet"])
    assert w.register("POST") == {"status": "registered", "ignored_function_ids": ["not-yet"]}
    assert w.register("PUT")["status"] == "registered"  # Go SDK verb, same semantics
    assert w.heartbeat() == (200, {"status": "ok"})
    status, _, out = api.call("PUT", "/api/v1/workers/w1/heartbeat", {"worker_id": "w1", "jobs": []})
    assert status == 200
    for bad in ({"function_ids": ["flow"]}, {"function_ids": ["flow"], "max_concurrent_jobs": 0},
                {"max_concurrent_jobs": 1}, {"function_ids": "flow", "max_concurrent_jobs": 1}):
        status, _, out = api.call("POST", "/api/v1/workers/w2/register", bad)
        assert status == 400 and out["code"] == "invalid_argument", (bad, out)


# == long poll (worker-protocol.md §2.5) ==================================================================

def test_poll_answers_204_with_poll_wait_header(api):
    w = setup_fn(api)
    t0 = time.monotonic()
    status, headers, jobs = w.poll(wait=0)
    assert status == 204 and jobs == [] and time.monotonic() - t0 < 0.5
    assert headers.get("ironflow-poll-wait", "0") == "0"
    t0 = time.monotonic()
    status, headers, _ = w.poll(wait=1)
    held = time.monotonic() - t0
    assert status == 204 and 0.9 <= held < 3
    assert int(headers["ironflow-poll-wait"]) > 0
    # absent `wait` = answer at once
    t0 = time.monotonic()
    status, _, _ = api.call("GET", "/api/v1/workers/w1/jobs")
    assert status == 204 and time.monotonic() - t0 < 0.5


def test_held_poll_gets_a_job_well_under_a_second_after_emit(api):
    w = setup_fn(api)
    result = {}

    def poller():
        result["status"], _, result["jobs"] = w.poll(wait=5)
        result["t"] = time.monotonic()
    th = threading.Thread(target=poller)
    th.start()
    time.sleep(0.4)
    t_emit = time.monotonic()
    run_id = api.emit_one("flow.go", {"x": 1})
    th.join(8)
    assert result["status"] == 200 and [j["run_id"] for j in result["jobs"]] == [run_id]
    assert result["t"] - t_emit < 0.5


def test_job_assignment_shape(api):
    w = setup_fn(api)
    out = api.emit("flow.go", {"customer": "c1"}, idempotencyKey="k1", metadata={"traceId": "t-1"})
    run_id = out["runIds"][0]
    job = w.take()
    assert job["job_id"] == f"{run_id}-1" and job["run_id"] == run_id
    assert job["function_id"] == "flow"
    for k in ("attempt", "execution_seq", "step_sequence_base", "max_attempts"):
        assert type(job[k]) is int, (k, job[k])
    assert job["attempt"] == 1 and job["execution_seq"] == 1 and job["step_sequence_base"] == 0
    assert job["max_attempts"] == 3 and job["on_exhausted"] == "pause"
    assert job["completed_steps"] == []
    assert re.fullmatch(r"[0-9a-f]{32}", job["lease_token"])
    if "lease_expires_at" in job:
        assert TS_RE.match(job["lease_expires_at"])
    assert "context" not in job  # no secrets declared
    assert all(v is not None for v in job.values()), job
    ev = job["event"]
    assert ev["id"] == out["eventId"] and ev["name"] == "flow.go" and ev["data"] == {"customer": "c1"}
    assert TS_RE.match(ev["timestamp"]) and type(ev["version"]) is int and ev["version"] == 1
    assert ev["source"] == "api" and ev["idempotency_key"] == "k1"
    assert ev["metadata"] == {"traceId": "t-1"}
    assert all(v is not None for v in ev.values()), ev
    assert ev.get("emittedBy", "x") != ""  # only when known (dev mode: absent)


def test_assignment_event_data_key_is_always_present(api):
    w = setup_fn(api)
    api.emit("flow.go")                         # no data -> {}
    api.rpc_ok("Emit", {"event": "flow.go", "dataValue": [1, 2], "version": 2})  # non-object payload
    jobs = w.take_many(2, available=2)
    assert [j["event"]["data"] for j in jobs] == [{}, [1, 2]]
    assert [j["event"]["version"] for j in jobs] == [1, 2]


def test_on_exhausted_is_sent_from_the_retry_policy(api):
    w = setup_fn(api, retry={"maxAttempts": 4, "onExhausted": "fail"})
    api.emit_one("flow.go")
    job = w.take()
    assert job["max_attempts"] == 4 and job["on_exhausted"] == "fail"


def test_capacity_and_available_are_respected(api):
    w = setup_fn(api, max_jobs=2)
    runs = [api.emit_one("flow.go", {"i": i}) for i in range(5)]
    status, _, jobs = w.poll(available=5)
    assert status == 200 and [j["run_id"] for j in jobs] == runs[:2]  # oldest first, capped at 2
    assert w.poll(available=5)[0] == 204
    assert w.complete(jobs[0], output=1)[0] == 200
    status, _, more = w.poll(available=5)
    assert status == 200 and [j["run_id"] for j in more] == [runs[2]]
    # a second worker with room for 10 still gets only `available` jobs
    w2 = Worker(api, "w2", ["flow"], 10)
    w2.register()
    status, _, one = w2.poll(available=1)
    assert status == 200 and len(one) == 1 and one[0]["run_id"] == runs[3]


def test_reregistering_keeps_live_leases_and_counts_them(api):
    w = setup_fn(api, max_jobs=1)
    api.emit_one("flow.go")
    api.emit_one("flow.go")
    job = w.take()
    assert w.ack(job)[0] == 200
    w.register()  # replace the session: the leased job still counts against capacity
    assert w.idle()
    assert w.complete(job, output="ok")[0] == 200
    assert len(w.take_many(1)) == 1


# == ack and fencing (worker-protocol.md §2.7-§2.9) =====================================================

def test_ack_fencing(api):
    w = setup_fn(api)
    run_id = api.emit_one("flow.go")
    job = w.take()
    assert_stale(*w.ack(job, lease_token="0" * 32))
    assert_stale(*w.ack(job, execution_seq=2))
    assert_stale(*w.ack(job, execution_seq=True))
    assert_stale(*w.ack(job, job_id=f"{run_id}-7"))
    assert_stale(*w.ack(job, job_id="run_doesnotexist-1"))
    status, body = w.ack(job)
    assert (status, body) == (200, {"status": "acked"})
    assert w.ack(job) == (200, {"status": "acked"})  # repeated ack with the same fence
    run = api.run(run_id)
    assert run["status"] == "RUN_STATUS_RUNNING" and run["workerId"] == "w1" and run.get("startedAt")


def test_stale_body_shape_and_unknown_job_on_report(api):
    w = setup_fn(api)
    api.emit_one("flow.go")
    job = w.take()
    status, body = w.report(job, "completed", job_id="run_nope-1", output=1)
    assert_stale(status, body)
    assert body["message"] == "execution is stale"
    status, body = w.report(job, "progress", steps=[], lease_token="f" * 32)
    assert_stale(status, body)


def test_report_before_ack_is_accepted(api):
    w = setup_fn(api)
    run_id = api.emit_one("flow.go")
    job = w.take()
    status, body = w.report(job, "failed", steps=[], error={
        "message": "function not found on worker", "code": "FUNCTION_NOT_FOUND", "retryable": False})
    assert (status, body) == (200, {"status": "ok"})
    run = api.wait_status(run_id, "failed")
    assert run["error"]["code"] == "FUNCTION_NOT_FOUND"
    assert w.idle()


def test_checkpoint_persists_steps_and_renews_the_lease(api):
    w = setup_fn(api)
    other = Worker(api, "w2", ["flow"])
    other.register()
    run_id = api.emit_one("flow.go")
    job = w.take()
    assert w.ack(job)[0] == 200
    steps = [step_result(run_id, "a", {"x": 1})]
    assert w.progress(job, steps, 0) == (200, {"status": "ok"})
    rows = api.steps(run_id)
    assert [r["stepId"] for r in rows] == [f"{run_id}:a:0"]
    assert rows[0]["status"] == "STEP_STATUS_COMPLETED" and step_output(rows[0]) == {"x": 1}
    # Checkpoints alone keep the lease alive well past TTL + grace.
    end = time.monotonic() + 1.9  # well past TTL + grace
    i = 1
    while time.monotonic() < end:
        time.sleep(0.35)
        steps.append(step_result(run_id, f"s{i}", i))
        assert w.progress(job, steps, 0)[0] == 200
        assert other.idle()
        i += 1
    assert w.complete(job, output="done", steps=[], step_offset=len(steps))[0] == 200
    run = api.run(run_id)
    assert run["status"] == "RUN_STATUS_COMPLETED" and run.get("outputValue") == "done"
    assert len(api.steps(run_id)) == len(steps)


def test_step_offset_upsert_semantics(api):
    w = setup_fn(api)
    run_id = api.emit_one("flow.go")
    job = w.take()
    w.ack(job)
    a, b, c, z = (f"{run_id}:{n}:0" for n in "abcz")

    def rows():
        return [(s["sequence"], s["step_id"], s["output"]) for s in api.rest_run(run_id)["steps"]]
    assert w.progress(job, [step_result(run_id, "a", 1)], 0)[0] == 200
    # a retried checkpoint re-sends the same offset with a longer list: overwrite, no duplicates
    assert w.progress(job, [step_result(run_id, "a", 2), step_result(run_id, "b", 3)], 0)[0] == 200
    assert rows() == [(0, a, 2), (1, b, 3)]
    # an offset beyond the row count is clamped: appended, no gap
    assert w.progress(job, [step_result(run_id, "c", 4)], 10)[0] == 200
    assert rows() == [(0, a, 2), (1, b, 3), (2, c, 4)]
    # a negative offset is treated as 0
    assert w.progress(job, [step_result(run_id, "z", 5)], -3)[0] == 200
    assert rows() == [(0, z, 5), (1, b, 3), (2, c, 4)]
    assert w.complete(job, output=None, steps=[], step_offset=3)[0] == 200
    assert api.wait_status(run_id, "completed")


def test_completed_output_and_idempotent_terminal_report(api):
    w = setup_fn(api)
    run_id = api.emit_one("flow.go", {"n": 1})
    job = w.take()
    w.ack(job)
    steps = [step_result(run_id, "a", {"x": 1})]
    assert w.complete(job, output={"x": 1}, steps=steps, step_offset=0) == (200, {"status": "ok"})
    run = api.run(run_id)
    assert run["status"] == "RUN_STATUS_COMPLETED" and run_output(run) == {"x": 1}
    assert run.get("endedAt")
    # the worker retried its report (lost response): same fence, same status -> 200, applied once
    assert w.complete(job, output={"x": 1}, steps=steps, step_offset=0)[0] == 200
    assert len(api.steps(run_id)) == 1
    # but a checkpoint or a different terminal status on the finished fence is stale
    assert_stale(*w.progress(job, steps, 0))
    assert_stale(*w.fail(job, retryable=False))
    assert_stale(*w.sleep(job, "nap", 1))
    assert_stale(*w.ack(job))
    rest = api.rest_run(run_id)
    assert rest["status"] == "completed" and rest["output"] == {"x": 1}
    assert rest["steps"][0]["step_id"] == f"{run_id}:a:0"
    assert w.idle()


# == failures and retries (worker-protocol.md §3.10, features.md §2.4) ===================================

def test_retryable_failure_is_retried_with_backoff_and_memo(api):
    w = setup_fn(api, retry={"maxAttempts": 3, "initialDelayMs": 300, "backoffFactor": 2})
    run_id = api.emit_one("flow.go")
    j1 = w.take()
    w.ack(j1)
    once = step_result(run_id, "once", "done-once")
    assert w.progress(j1, [once], 0)[0] == 200
    assert w.fail(j1, "transient")[0] == 200
    t_fail = time.monotonic()
    run = api.run(run_id)
    assert run["status"] == "RUN_STATUS_WAITING" and run["attempt"] == 2
    assert w.idle()  # not before the delay
    j2 = w.take(wait=3)
    assert time.monotonic() - t_fail >= 0.25
    assert j2["attempt"] == 2 and j2["execution_seq"] == 2 and j2["step_sequence_base"] == 1
    assert memo(j2)[once["id"]]["output"] == "done-once"
    w.ack(j2)
    assert w.fail(j2, "transient again")[0] == 200
    t_fail = time.monotonic()
    j3 = w.take(wait=3)
    assert time.monotonic() - t_fail >= 0.55  # 300 ms * 2^(2-1)
    assert j3["attempt"] == 3 and j3["execution_seq"] == 3
    assert w.complete(j3, output="finally")[0] == 200
    run = api.wait_status(run_id, "completed")
    assert run["attempt"] == 3 and run_output(run) == "finally"


def test_retry_after_ms_is_honoured(api):
    w = setup_fn(api, retry={"maxAttempts": 3, "initialDelayMs": 100})
    run_id = api.emit_one("flow.go")
    j1 = w.take()
    w.ack(j1)
    assert w.fail(j1, "later", code="RETRY_AFTER", retry_after_ms=900)[0] == 200
    t_fail = time.monotonic()
    time.sleep(0.4)
    assert w.idle()  # initial_delay_ms (100) would already have elapsed
    j2 = w.take(wait=3)
    assert time.monotonic() - t_fail >= 0.85
    assert j2["attempt"] == 2 and j2["run_id"] == run_id


def test_non_retryable_failure_fails_the_run(api):
    w = setup_fn(api)
    run_id = api.emit_one("flow.go")
    job = w.take()
    w.ack(job)
    assert w.fail(job, "nope", code="BAD_INPUT", retryable=False)[0] == 200
    run = api.wait_status(run_id, "failed")
    assert run["error"]["code"] == "BAD_INPUT" and run["error"]["message"] == "nope"
    assert run["error"].get("retryable", False) is False and run["attempt"] == 1
    time.sleep(0.3)
    assert w.idle()


def test_exhaustion_with_pause_then_resume(api):
    w = setup_fn(api, retry={"maxAttempts": 2, "initialDelayMs": 100, "onExhausted": "pause"})
    run_id = api.emit_one("flow.go")
    j1 = w.take()
    assert w.fail(j1, "e1")[0] == 200
    j2 = w.take(wait=3)
    assert j2["attempt"] == 2
    assert w.fail(j2, "e2")[0] == 200
    run = api.wait_status(run_id, "paused")
    assert run["pauseReason"] == "" and run["error"]["message"] == "e2"
    time.sleep(0.3)
    assert w.idle()
    api.rpc_ok("ResumeRun", {"runId": run_id})
    j3 = w.take(wait=3)
    assert j3["attempt"] == 3 and j3["execution_seq"] == 3
    assert j3["max_attempts"] == 3 + 2 - 1  # fresh budget (features.md §3.4)
    assert w.complete(j3, output="ok")[0] == 200
    assert api.wait_status(run_id, "completed")


def test_exhaustion_with_fail(api):
    w = setup_fn(api, retry={"maxAttempts": 2, "initialDelayMs": 100, "onExhausted": "fail"})
    run_id = api.emit_one("flow.go")
    assert w.fail(w.take(), "e1")[0] == 200
    j2 = w.take(wait=3)
    assert w.fail(j2, "e2", code="STEP_FAILED")[0] == 200
    run = api.wait_status(run_id, "failed")
    assert run["attempt"] == 2 and run["error"]["code"] == "STEP_FAILED"
    time.sleep(0.3)
    assert w.idle()


# == lease expiry and heartbeats (worker-protocol.md §2.4, §2.9, §2.10) =================================

def test_lease_expiry_reassigns_with_next_execution_seq(api):
    a = setup_fn(api, wid="wa")
    b = Worker(api, "wb", ["flow"])
    b.register()
    run_id = api.emit_one("flow.go")
    ja = a.take()
    assert a.ack(ja)[0] == 200
    step_a = step_result(run_id, "a", {"v": 1})
    assert a.progress(ja, [step_a], 0)[0] == 200
    t_last_renewal = time.monotonic()
    jb = b.take(wait=5)
    assert time.monotonic() - t_last_renewal >= TTL * 0.95
    assert jb["run_id"] == run_id and jb["job_id"] == f"{run_id}-2"
    assert jb["execution_seq"] == ja["execution_seq"] + 1 and jb["attempt"] == ja["attempt"]
    assert jb["lease_token"] != ja["lease_token"]
    assert jb["step_sequence_base"] == 1 and memo(jb)[step_a["id"]]["output"] == {"v": 1}
    # the old holder is fenced out of every call
    assert_stale(*a.ack(ja))
    assert_stale(*a.progress(ja, [step_a], 0))
    assert_stale(*a.complete(ja, output="from A"))
    assert b.ack(jb)[0] == 200
    assert b.complete(jb, output="from B", steps=[], step_offset=1)[0] == 200
    assert_stale(*a.complete(ja, output="from A"))
    run = api.wait_status(run_id, "completed")
    assert run_output(run) == "from B" and run["attempt"] == 1


def test_lease_expires_without_ack(api):
    a = setup_fn(api, wid="wa")
    run_id = api.emit_one("flow.go")
    ja = a.take()  # dropped: never acked (e.g. a malformed assignment)
    jb = a.take(wait=5)
    assert jb["run_id"] == run_id and jb["execution_seq"] == 2 and jb["attempt"] == 1
    assert_stale(*a.ack(ja))


def test_heartbeat_listing_the_job_keeps_the_lease(api):
    a = setup_fn(api, wid="wa")
    b = Worker(api, "wb", ["flow"])
    b.register()
    run_id = api.emit_one("flow.go")
    job = a.take()
    a.ack(job)
    with Heartbeater(a, [job], 0.25) as hb:
        end = time.monotonic() + 2 * TTL  # well past TTL + grace
        while time.monotonic() < end:
            assert b.idle(), "the job was re-assigned although its lease was renewed"
            time.sleep(0.2)
    assert hb.statuses and set(hb.statuses) == {200}
    assert a.complete(job, output="kept")[0] == 200
    assert api.wait_status(run_id, "completed")


def test_heartbeat_not_listing_the_job_does_not_keep_the_lease(api):
    a = setup_fn(api, wid="wa")
    b = Worker(api, "wb", ["flow"])
    b.register()
    run_id = api.emit_one("flow.go")
    job = a.take()
    a.ack(job)
    with Heartbeater(a, [], 0.25):
        jb = b.take(wait=5)
    assert jb["run_id"] == run_id and jb["execution_seq"] == 2
    assert_stale(*a.complete(job, output="late"))


# == yields: sleep (worker-protocol.md §3.6.1) ===========================================================

def test_sleep_yield_waits_then_redispatches_with_memo(api):
    w = setup_fn(api)
    run_id = api.emit_one("flow.go")
    j1 = w.take()
    w.ack(j1)
    step_a = step_result(run_id, "a", {"x": 1})
    t_yield = time.monotonic()
    assert w.sleep(j1, "nap", 0.8, steps=[step_a]) == (200, {"status": "ok"})
    assert api.run(run_id)["status"] == "RUN_STATUS_WAITING"
    rows = api.steps(run_id)
    assert [r["stepId"] for r in rows] == [step_a["id"], f"{run_id}:nap:0"]
    assert rows[1]["status"] == "STEP_STATUS_SLEEPING" and rows[1]["stepType"] == "STEP_TYPE_SLEEP"
    assert rows[1].get("sleepUntil")
    assert w.idle()
    j2 = w.take(wait=4)
    assert time.monotonic() - t_yield >= 0.75
    assert j2["execution_seq"] == 2 and j2["attempt"] == 1 and j2["step_sequence_base"] == 2
    assert j2["completed_steps"] == [
        {"step_id": step_a["id"], "name": "a", "output": {"x": 1}, "status": "completed"},
        {"step_id": f"{run_id}:nap:0", "name": "nap", "output": None, "status": "completed"},
    ]
    assert api.steps(run_id)[1]["status"] == "STEP_STATUS_COMPLETED"
    assert w.complete(j2, output="woke", steps=[step_result(run_id, "b", 2)], step_offset=2)[0] == 200
    assert api.wait_status(run_id, "completed")
    assert len(api.steps(run_id)) == 3


def test_sleep_until_in_the_past_wakes_at_once(api):
    w = setup_fn(api)
    run_id = api.emit_one("flow.go")
    j1 = w.take()
    assert w.yield_(j1, {"step_id": f"{run_id}:t:0", "type": "sleep", "until": ts_in(-5)})[0] == 200
    t0 = time.monotonic()
    j2 = w.take(wait=3)
    assert time.monotonic() - t0 < 0.8 and j2["execution_seq"] == 2


# == yields: wait_for_event (worker-protocol.md §3.6.2) ==================================================

def test_wait_for_event_early_event_nonmatching_then_match_value(api):
    w = setup_fn(api, event="order.placed")
    run_id = api.emit_one("order.placed", {"orderId": "o1"})
    j1 = w.take()
    w.ack(j1)
    api.emit("order.paid", {"orderId": "o1"})  # before the wait is registered: must not count
    assert w.wait_for_event(j1, "paid", "order.paid", match="data.orderId", match_value="o1")[0] == 200
    rows = api.steps(run_id)
    assert rows[-1]["status"] == "STEP_STATUS_WAITING" and rows[-1]["waitEventName"] == "order.paid"
    time.sleep(0.3)
    assert api.status(run_id) == "RUN_STATUS_WAITING" and w.idle()
    api.emit("order.paid", {"orderId": "o2"})
    api.emit("order.refunded", {"orderId": "o1"})
    time.sleep(0.3)
    assert api.status(run_id) == "RUN_STATUS_WAITING" and w.idle()
    ev = api.emit("order.paid", {"orderId": "o1"}, metadata={"traceId": "t"})
    j2 = w.take(wait=2)
    row = memo(j2)[f"{run_id}:paid:0"]
    assert row["status"] == "completed"
    out = row["output"]
    assert out["id"] == ev["eventId"] and out["name"] == "order.paid"
    assert out["data"] == {"orderId": "o1"} and TS_RE.match(out["timestamp"])
    assert out["version"] == 1 and out["source"] == "api" and out["metadata"] == {"traceId": "t"}
    assert w.complete(j2, output=out["data"])[0] == 200
    assert run_output(api.wait_status(run_id, "completed")) == {"orderId": "o1"}


def test_wait_for_event_match_without_value_compares_with_trigger(api):
    w = setup_fn(api, event="order.placed")
    run_id = api.emit_one("order.placed", {"orderId": "o7"})
    j1 = w.take()
    assert w.wait_for_event(j1, "paid", "order.paid", match="data.orderId")[0] == 200
    api.emit("order.paid", {"orderId": "o8"})
    api.emit("order.paid", {"other": "o7"})  # path absent in the incoming event
    time.sleep(0.3)
    assert api.status(run_id) == "RUN_STATUS_WAITING" and w.idle()
    ev = api.emit("order.paid", {"orderId": "o7"})
    j2 = w.take(wait=2)
    assert memo(j2)[f"{run_id}:paid:0"]["output"]["id"] == ev["eventId"]


def test_wait_for_event_non_string_match_value_and_wildcard(api):
    w = setup_fn(api)
    run_id = api.emit_one("flow.go")
    j1 = w.take()
    assert w.wait_for_event(j1, "n", "pay.*", match="event.data.n", match_value="5")[0] == 200
    api.emit("pay.done", {"n": 6})
    time.sleep(0.2)
    assert w.idle()
    ev = api.emit("pay.done", {"n": 5})  # 5 compared by its JSON text "5"
    j2 = w.take(wait=2)
    assert memo(j2)[f"{run_id}:n:0"]["output"]["id"] == ev["eventId"]


def test_wait_for_event_timeout_fails_the_run(api):
    w = setup_fn(api)
    run_id = api.emit_one("flow.go")
    j1 = w.take()
    assert w.wait_for_event(j1, "paid", "order.paid", timeout="1s")[0] == 200
    run = api.wait_status(run_id, "failed", timeout=4)
    assert run["error"]["code"] == "WAIT_TIMEOUT"
    assert run["error"]["message"] == "wait_for_event 'paid' timed out after 1s"
    assert run["error"].get("retryable", False) is False and run["attempt"] == 1
    assert api.steps(run_id)[-1]["status"] == "STEP_STATUS_TIMED_OUT"
    api.emit("order.paid", {})
    time.sleep(0.2)
    assert w.idle()


# == yields: invoke (worker-protocol.md §3.6.3, §3.6.4) ===================================================

def setup_parent_child(api, **child_extra):
    api.register_fn("parent", "p.go")
    api.register_fn("child", None, **child_extra)
    w = Worker(api, "w1", ["parent", "child"])
    w.register()
    return w


def test_invoke_child_success_resumes_parent(api):
    w = setup_parent_child(api)
    pr = api.emit_one("p.go", {"k": 1})
    jp = w.take()
    w.ack(jp)
    step_a = step_result(pr, "a", 1)
    assert w.invoke(jp, "child", {"n": 5}, 5000, steps=[step_a])[0] == 200
    assert api.status(pr) == "RUN_STATUS_WAITING"
    jc = w.take()
    assert jc["function_id"] == "child"
    ev = jc["event"]
    assert ev["name"] == "invoke/child" and ev["source"] == "invoke" and ev["data"] == {"n": 5}
    assert ev["metadata"] == {"parent_run_id": pr, "parent_step_id": f"{pr}:child:0"}
    child = api.run(jc["run_id"])
    assert child["parentRunId"] == pr and child["parentStepId"] == f"{pr}:child:0"
    prow = api.steps(pr)[1]
    assert prow["stepType"] == "STEP_TYPE_INVOKE_FUNCTION" and prow["childRunId"] == jc["run_id"]
    assert prow["status"] == "STEP_STATUS_RUNNING"
    assert w.ack(jc)[0] == 200
    assert w.complete(jc, output=50)[0] == 200
    jp2 = w.take(wait=2)
    assert jp2["run_id"] == pr and jp2["execution_seq"] == 2 and jp2["step_sequence_base"] == 2
    assert memo(jp2)[f"{pr}:child:0"] == {"step_id": f"{pr}:child:0", "name": "child",
                                          "output": 50, "status": "completed"}
    assert w.complete(jp2, output=50)[0] == 200
    assert run_output(api.wait_status(pr, "completed")) == 50
    # the synthetic event is stored and listed, with its source
    status, _, evs = api.call("GET", "/api/v1/events?name=invoke/child")
    assert status == 200 and [e["source"] for e in evs["events"]] == ["invoke"]


def test_invoke_child_failure_gives_parent_a_failed_memo_row(api):
    w = setup_parent_child(api)
    pr = api.emit_one("p.go")
    jp = w.take()
    assert w.invoke(jp, "child", {"n": 1})[0] == 200
    jc = w.take()
    assert w.fail(jc, "child dead", code="BAD", retryable=False)[0] == 200
    jp2 = w.take(wait=2)
    row = memo(jp2)[f"{pr}:child:0"]
    assert row["status"] == "failed" and row["output"] is None
    err = row["error"]
    assert err["message"] == "child dead" and err["child_run_id"] == jc["run_id"]
    assert err["function_id"] == "child" and err["code"] == "BAD"
    assert api.steps(pr)[0]["status"] == "STEP_STATUS_FAILED"


def test_invoke_child_paused_on_exhaustion_is_not_finished(api):
    w = setup_parent_child(api, retry={"maxAttempts": 1, "onExhausted": "pause"})
    pr = api.emit_one("p.go")
    jp = w.take()
    assert w.invoke(jp, "child", None, 10000)[0] == 200
    jc = w.take()
    assert w.fail(jc, "tired")[0] == 200
    api.wait_status(jc["run_id"], "paused")
    time.sleep(0.3)
    assert api.status(pr) == "RUN_STATUS_WAITING" and w.idle()


def test_invoke_timeout_resumes_parent_and_child_keeps_running(api):
    w = setup_parent_child(api)
    pr = api.emit_one("p.go")
    jp = w.take()
    t_yield = time.monotonic()
    assert w.invoke(jp, "child", {"n": 2}, timeout_ms=500)[0] == 200
    jc = w.take()
    w.ack(jc)
    jp2 = w.take(wait=3)
    assert jp2["run_id"] == pr and time.monotonic() - t_yield >= 0.45
    row = memo(jp2)[f"{pr}:child:0"]
    assert row["status"] == "failed"
    assert row["error"]["message"] == "invoke timed out after 500ms"
    assert row["error"]["child_run_id"] == jc["run_id"] and row["error"]["function_id"] == "child"
    assert api.status(jc["run_id"]) == "RUN_STATUS_RUNNING"  # not cancelled
    assert w.complete(jc, output="late")[0] == 200
    assert api.wait_status(jc["run_id"], "completed")
    assert api.steps(pr)[0]["status"] == "STEP_STATUS_FAILED"  # the late result is ignored
    assert w.complete(jp2, output="parent done")[0] == 200


def test_invoke_unknown_function_fails_the_memo_row(api):
    w = setup_parent_child(api)
    pr = api.emit_one("p.go")
    jp = w.take()
    assert w.invoke(jp, "nope", {})[0] == 200
    jp2 = w.take(wait=2)
    row = memo(jp2)[f"{pr}:nope:0"]
    assert row["status"] == "failed" and row["error"]["message"] == "function not found: nope"
    assert row["error"]["function_id"] == "nope"


def test_invoke_archived_function_fails_the_memo_row(api):
    w = setup_parent_child(api)
    api.rpc_ok("UpdateFunctionStatus", {"id": "child", "status": "FUNCTION_STATUS_ARCHIVED"})
    pr = api.emit_one("p.go")
    jp = w.take()
    assert w.invoke(jp, "child", {})[0] == 200
    row = memo(w.take(wait=2))[f"{pr}:child:0"]
    assert row["status"] == "failed" and row["error"]["message"] == "function not found: child"


def test_invoke_async_returns_the_child_run_id(api):
    w = setup_parent_child(api)
    pr = api.emit_one("p.go")
    jp = w.take()
    assert w.invoke(jp, "child", {"n": 3}, kind="invoke_function_async")[0] == 200
    jobs = {j["function_id"]: j for j in w.take_many(2, available=2)}
    child_id = jobs["child"]["run_id"]
    row = memo(jobs["parent"])[f"{pr}:child:0"]
    assert row == {"step_id": f"{pr}:child:0", "name": "child", "output": {"run_id": child_id},
                   "status": "completed"}
    assert api.run(child_id)["parentRunId"] == pr
    assert w.complete(jobs["child"], output=1)[0] == 200
    assert w.complete(jobs["parent"], output=child_id)[0] == 200
    assert api.wait_status(child_id, "completed") and api.wait_status(pr, "completed")


@pytest.mark.parametrize("y", [
    {"type": "teleport"},
    {"type": "sleep", "step_id": ""},
    "not an object",
])
def test_unknown_or_malformed_yield_fails_the_run(api, y):
    w = setup_fn(api)
    run_id = api.emit_one("flow.go")
    job = w.take()
    if isinstance(y, dict) and "step_id" not in y:
        y = dict(y, step_id=f"{run_id}:x:0")
    assert w.yield_(job, y) == (200, {"status": "ok"})
    run = api.wait_status(run_id, "failed")
    assert run["error"]["code"] == "INVALID_YIELD" and run["error"].get("retryable", False) is False
    assert w.idle()


# == operator actions (features.md §3.4, worker-protocol.md §2.11) =======================================

def test_cancel_while_leased_fences_the_worker(api):
    w = setup_fn(api)
    run_id = api.emit_one("flow.go")
    job = w.take()
    w.ack(job)
    run = api.rpc_ok("CancelRun", {"id": run_id, "reason": "stop it"})
    assert run["status"] == "RUN_STATUS_CANCELLED" and run["cancellationCause"] == "user"
    assert run["error"]["message"] == "stop it"
    assert_stale(*w.progress(job, [step_result(run_id, "a", 1)], 0))
    assert_stale(*w.complete(job, output=1))
    assert api.status(run_id) == "RUN_STATUS_CANCELLED"
    assert w.idle()
    status, out = api.rpc("CancelRun", {"id": run_id})
    assert status == 400 and out["code"] == "failed_precondition", out
    status, out = api.rpc("CancelRun", {"id": "run_unknown"})
    assert status == 404 and out["code"] == "not_found", out


def test_cancel_sleeping_run_is_never_dispatched_again(api):
    w = setup_fn(api)
    run_id = api.emit_one("flow.go")
    assert w.sleep(w.take(), "nap", 0.3)[0] == 200
    api.rpc_ok("CancelRun", {"id": run_id})
    time.sleep(0.6)
    assert api.status(run_id) == "RUN_STATUS_CANCELLED" and w.idle()


def test_cancelling_a_finished_run_is_failed_precondition(api):
    w = setup_fn(api)
    run_id = api.emit_one("flow.go")
    assert w.complete(w.take(), output=1)[0] == 200
    status, out = api.rpc("CancelRun", {"id": run_id, "reason": "late"})
    assert status == 400 and out["code"] == "failed_precondition", out
    assert api.status(run_id) == "RUN_STATUS_COMPLETED"


def test_pause_queued_run_then_resume(api):
    w = setup_fn(api)
    run_id = api.emit_one("flow.go")
    assert api.rpc_ok("PauseRun", {"runId": run_id}) == {"status": "paused"}
    run = api.run(run_id)
    assert run["status"] == "RUN_STATUS_PAUSED" and run["pauseReason"] == "injection"
    assert api.rpc_ok("PauseRun", {"runId": run_id}) == {"status": "paused"}
    time.sleep(0.2)
    assert w.idle()
    api.rpc_ok("ResumeRun", {"runId": run_id})
    job = w.take(wait=2)
    assert job["run_id"] == run_id and job["attempt"] == 1 and job["execution_seq"] == 1
    assert w.complete(job, output=1)[0] == 200
    assert api.wait_status(run_id, "completed")
    status, out = api.rpc("ResumeRun", {"runId": run_id})
    assert status == 400 and out["code"] == "failed_precondition"


def test_pause_running_run_pauses_at_segment_end(api):
    w = setup_fn(api)
    run_id = api.emit_one("flow.go")
    job = w.take()
    w.ack(job)
    assert api.rpc_ok("PauseRun", {"runId": run_id}) == {"status": "pause_requested"}
    assert api.run(run_id)["pauseRequested"] is True
    assert w.sleep(job, "nap", 0.2)[0] == 200
    run = api.wait_status(run_id, "paused")
    assert run["pauseReason"] == "sleep"
    time.sleep(0.5)
    assert w.idle()  # the timer fired but a paused run does not dispatch
    api.rpc_ok("ResumeRun", {"runId": run_id})
    j2 = w.take(wait=3)
    assert memo(j2)[f"{run_id}:nap:0"]["output"] is None


# == events (features.md §1.1) ============================================================================

def test_emit_idempotency_key(api):
    w = setup_fn(api)
    first = api.emit("flow.go", {"a": 1}, idempotencyKey="once")
    again = api.emit("flow.go", {"a": 2}, idempotencyKey="once")
    assert again == first and len(first["runIds"]) == 1
    status, _, rest = api.call("POST", "/api/v1/events", {"name": "flow.go", "idempotency_key": "once"})
    assert status == 200 and rest["duplicate"] is True
    assert rest["event_id"] == rest["id"] == first["eventId"] and rest["run_ids"] == first["runIds"]
    assert w.take()["run_id"] == first["runIds"][0]
    assert w.idle()
    status, _, runs = api.call("GET", "/api/v1/runs")
    assert runs["total_count"] == 1
    status, _, evs = api.call("GET", "/api/v1/events")
    assert evs["count"] == 1


def test_concurrent_emits_with_one_idempotency_key_create_one_run(api):
    setup_fn(api)
    results = []

    def go():
        results.append(api.emit("flow.go", {}, idempotencyKey="race"))
    threads = [threading.Thread(target=go) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(results) == 8 and len({r["eventId"] for r in results}) == 1
    assert len({tuple(r["runIds"]) for r in results}) == 1
    assert api.call("GET", "/api/v1/runs")[2]["total_count"] == 1


@pytest.mark.parametrize("name", ["system.run.x", "events:x", "topic:x", "entity:x", "public.x",
                                  "ironflow.file.x", "has space", "tab\there", "line\nbreak", "",
                                  "x" * 257])
def test_event_name_validation(api, name):
    status, out = api.rpc("Emit", {"event": name, "data": {}})
    assert status == 400 and out["code"] == "invalid_argument", (name, out)
    status, _, out = api.call("POST", "/api/v1/events", {"name": name, "data": {}})
    assert status == 400 and out["code"] == "invalid_argument", (name, out)
    assert isinstance(out["error"], str) and isinstance(out["message"], str)
    assert api.call("GET", "/api/v1/events")[2]["count"] == 0


def test_trigger_patterns_with_star_and_tail(api):
    api.register_fn("exact", "orders.created")
    api.register_fn("star", "orders.*")
    api.register_fn("tail", "orders.>")
    api.register_fn("mid", "*.created")

    def fns(event):
        return [api.run(r)["functionId"] for r in api.emit(event, {}).get("runIds", [])]
    assert fns("orders.created") == ["exact", "mid", "star", "tail"]  # function-id order
    assert fns("orders.eu.created") == ["tail"]
    assert fns("orders") == []
    assert fns("shipping.created") == ["mid"]
    assert fns("orders.created.x") == ["tail"]


def test_trigger_expression_filters_runs(api):
    api.register_fn("hi", None, triggers=[
        {"event": "job.new", "expression": 'event.data.priority > 5 && data.region in ["eu", "us"]'}])
    assert api.emit("job.new", {"priority": 3, "region": "eu"}).get("runIds", []) == []
    assert api.emit("job.new", {"priority": 9, "region": "ap"}).get("runIds", []) == []
    assert api.emit("job.new", {"region": "eu"}).get("runIds", []) == []  # error -> false
    assert len(api.emit("job.new", {"priority": 9, "region": "us"})["runIds"]) == 1


def test_paused_function_queues_runs_until_activated(api):
    w = setup_fn(api)
    fn = api.rpc_ok("UpdateFunctionStatus", {"id": "flow", "status": "FUNCTION_STATUS_PAUSED"})
    assert fn["status"] == "FUNCTION_STATUS_PAUSED"
    run_id = api.emit_one("flow.go")
    assert api.status(run_id) == "RUN_STATUS_WAITING_FOR_CAPACITY"
    # RegisterFunction (a worker restart) preserves the status
    api.register_fn("flow", "flow.go")
    assert api.rpc_ok("GetFunction", {"id": "flow"})["status"] == "FUNCTION_STATUS_PAUSED"
    time.sleep(0.2)
    assert w.idle()
    api.rpc_ok("UpdateFunctionStatus", {"id": "flow", "status": "FUNCTION_STATUS_ACTIVE"})
    assert w.take(wait=2)["run_id"] == run_id


def test_activation_wakes_a_held_poll(api):
    w = setup_fn(api)
    api.rpc_ok("UpdateFunctionStatus", {"id": "flow", "status": "FUNCTION_STATUS_PAUSED"})
    run_id = api.emit_one("flow.go")
    result = {}

    def poller():
        result["status"], _, result["jobs"] = w.poll(wait=5)
        result["t"] = time.monotonic()
    th = threading.Thread(target=poller)
    th.start()
    time.sleep(0.3)
    t0 = time.monotonic()
    api.rpc_ok("UpdateFunctionStatus", {"id": "flow", "status": "FUNCTION_STATUS_ACTIVE"})
    th.join(8)
    assert result["status"] == 200 and result["jobs"][0]["run_id"] == run_id
    assert result["t"] - t0 < 0.5


def test_archived_function_creates_no_runs(api):
    setup_fn(api)
    api.rpc_ok("UpdateFunctionStatus", {"id": "flow", "status": "FUNCTION_STATUS_ARCHIVED"})
    assert api.emit("flow.go", {}).get("runIds", []) == []
    status, out = api.rpc("InvokeFunction", {"functionId": "flow", "data": {}})
    assert status == 404 and out["code"] == "not_found"


def test_run_timeout_fails_the_run_and_kills_the_fence(api):
    w = setup_fn(api, timeoutMs=700)
    run_id = api.emit_one("flow.go")
    job = w.take()
    w.ack(job)
    run = api.wait_status(run_id, "failed", timeout=4)
    assert run["error"]["code"] == "RUN_TIMEOUT" and run["error"].get("retryable", False) is False
    assert_stale(*w.progress(job, [], 0))
    assert_stale(*w.complete(job, output=1))
    assert w.idle()


def test_run_timeout_counts_time_spent_waiting(api):
    w = setup_fn(api, timeoutMs=800)
    run_id = api.emit_one("flow.go")
    assert w.sleep(w.take(), "nap", 60)[0] == 200
    run = api.wait_status(run_id, "failed", timeout=4)
    assert run["error"]["code"] == "RUN_TIMEOUT"


def test_cancel_on_cancels_matching_runs(api):
    w = setup_fn(api, event="order.placed",
                 cancelOn=[{"event": "order.cancelled", "match": "data.orderId"}])
    r1 = api.emit_one("order.placed", {"orderId": "o1"})
    r2 = api.emit_one("order.placed", {"orderId": "o2"})
    j1 = w.take()
    assert j1["run_id"] == r1
    w.ack(j1)
    api.emit("order.cancelled", {"orderId": "o3"})
    assert api.status(r1) == "RUN_STATUS_RUNNING"
    api.emit("order.cancelled", {"orderId": "o1"})
    run = api.wait_status(r1, "cancelled")
    assert run["cancellationCause"] == "cancel-on-event"
    assert api.status(r2) == "RUN_STATUS_WAITING_FOR_CAPACITY"
    assert_stale(*w.complete(j1, output=1))
    assert w.take()["run_id"] == r2


def test_cancel_on_never_cancels_the_run_its_own_event_creates(api):
    api.register_fn("g", "x.ev", cancelOn=[{"event": "x.ev"}])
    r1 = api.emit_one("x.ev", {})
    assert api.status(r1) == "RUN_STATUS_WAITING_FOR_CAPACITY"
    r2 = api.emit_one("x.ev", {})
    assert api.status(r1) == "RUN_STATUS_CANCELLED"
    assert api.status(r2) == "RUN_STATUS_WAITING_FOR_CAPACITY"


def test_concurrency_limit_per_key(api):
    w = setup_fn(api, concurrency={"limit": 1, "key": "customerId"})
    r1 = api.emit_one("flow.go", {"customerId": "c1"})
    r2 = api.emit_one("flow.go", {"customerId": "c1"})
    r3 = api.emit_one("flow.go", {"customerId": "c2"})
    status, _, jobs = w.poll(available=3)
    assert status == 200 and sorted(j["run_id"] for j in jobs) == sorted([r1, r3])
    assert w.idle()
    by_run = {j["run_id"]: j for j in jobs}
    # a sleeping run holds no slot (worker-protocol.md §3.12)
    assert w.sleep(by_run[r3], "nap", 60)[0] == 200
    r4 = api.emit_one("flow.go", {"customerId": "c2"})
    assert w.take()["run_id"] == r4
    assert w.complete(by_run[r1], output=1)[0] == 200
    assert w.take(wait=2)["run_id"] == r2


def test_trigger_sync_waits_for_the_run(api):
    w = setup_fn(api)

    def worker():
        job = w.take(wait=5)
        w.ack(job)
        w.complete(job, output={"echo": job["event"]["data"]})
    th = threading.Thread(target=worker)
    th.start()
    out = api.rpc_ok("TriggerSync", {"event": "flow.go", "data": {"q": 1}, "timeoutMs": 5000}, timeout=15)
    th.join(10)
    assert out["eventId"].startswith("evt_")
    (res,) = out["results"]
    assert res["functionId"] == "flow" and res["status"] == "RUN_STATUS_COMPLETED"
    assert res["output"] == {"echo": {"q": 1}} and not res.get("waitTimedOut", False)


def test_invoke_function_rpc(api):
    api.register_fn("child", None)
    w = Worker(api, "w1", ["child"])
    w.register()
    out = api.rpc_ok("InvokeFunction", {"functionId": "child", "data": {"n": 1}})
    job = w.take()
    assert job["run_id"] == out["runId"] and job["event"]["id"] == out["eventId"]
    assert job["event"]["name"] == "invoke/child" and job["event"]["source"] == "invoke"
    assert job["event"]["data"] == {"n": 1}
    status, err = api.rpc("InvokeFunction", {"functionId": "ghost"})
    assert status == 404 and err["code"] == "not_found"


# == REST routes (rest-api.md §2.1-§2.4, §3.9, §3.25) ====================================================

def test_rest_post_event_shape_and_idempotency(api):
    setup_fn(api, event="t.ev")
    status, _, out = api.call("POST", "/api/v1/events", {"name": "t.ev", "data": {"a": 1}})
    assert status == 200 and set(out) >= {"id", "event_id", "run_ids", "duplicate"}
    assert out["id"] == out["event_id"] and len(out["run_ids"]) == 1 and out["duplicate"] is False
    body = {"event": "t.ev", "idempotencyKey": "k-1", "metadata": {"m": 1}}  # aliases
    s1, _, first = api.call("POST", "/api/v1/events", body)
    s2, _, again = api.call("POST", "/api/v1/events", body)
    assert s1 == s2 == 200 and first["duplicate"] is False and again["duplicate"] is True
    assert again["event_id"] == first["event_id"] and again["run_ids"] == first["run_ids"]
    assert api.call("GET", "/api/v1/runs")[2]["total_count"] == 2
    status, _, err = api.call("POST", "/api/v1/events", {"data": {}})
    assert status == 400 and err["code"] == "invalid_argument"
    status, _, err = api.call("POST", "/api/v1/events", {"name": "t.ev", "version": 0})
    assert status == 400 and err["code"] == "invalid_argument"
    status, _, err = http_raw(api, "POST", "/api/v1/events", b"{not json")
    assert status == 400 and err["code"] == "invalid_argument"


def http_raw(api, method, path, body):
    status, headers, data = http_request(api.port, method, path, body, {"Content-Type": "application/json"})
    return status, headers, json.loads(data) if data else None


def test_rest_events_paging_get_and_names(api):
    setup_fn(api, event="page.ev")
    ids = [api.emit("page.ev", {"i": i})["eventId"] for i in range(5)]
    api.emit("other.ev", {})
    seen = []
    path = "/api/v1/events?name=page.ev&limit=2"
    pages = 0
    while True:
        status, _, page = api.call("GET", path)
        assert status == 200 and page["limit"] == 2
        seen += [e["id"] for e in page["events"]]
        pages += 1
        if not page["has_next"]:
            assert not page.get("next_cursor")
            break
        assert page["next_cursor"]
        path = f"/api/v1/events?name=page.ev&limit=2&cursor={page['next_cursor']}"
        assert pages < 5
    assert sorted(seen) == sorted(ids) and len(seen) == 5 and pages == 3  # no gaps, no repeats
    stamps = [api.call("GET", f"/api/v1/events/{i}")[2]["timestamp"] for i in seen]
    assert stamps == sorted(stamps, reverse=True)  # newest first
    status, _, page = api.call("GET", "/api/v1/events?name=page.ev&limit=2")
    assert page["approx_total"] == 5 and page["has_prev"] is False
    status, _, page2 = api.call("GET", f"/api/v1/events?name=page.ev&limit=2&cursor={page['next_cursor']}")
    assert page2["has_prev"] is True and page2["prev_cursor"]
    status, _, back = api.call("GET", f"/api/v1/events?name=page.ev&limit=2&before={page2['prev_cursor']}")
    assert [e["id"] for e in back["events"]] == [e["id"] for e in page["events"]]
    status, _, err = api.call("GET", f"/api/v1/events?cursor={page['next_cursor']}&before={page2['prev_cursor']}")
    assert status == 400 and err["code"] == "invalid_argument"
    status, _, ev = api.call("GET", f"/api/v1/events/{ids[0]}")
    assert status == 200 and ev["id"] == ids[0] and ev["name"] == "page.ev"
    assert ev["data"] == {"i": 0} and ev["source"] == "api" and TS_RE.match(ev["timestamp"])
    assert ev["processed"] is True and ev["run_id"].startswith("run_")
    status, _, err = api.call("GET", "/api/v1/events/evt_nope")
    assert status == 404 and err["code"] == "not_found"
    status, _, err = api.call("GET", "/api/v1/events?cursor=!!!")
    assert status == 400 and err["code"] == "invalid_argument"
    status, _, names = api.call("GET", "/api/v1/events/names")
    assert status == 200
    assert {n["name"]: n["count"] for n in names["names"]} == {"page.ev": 5, "other.ev": 1}
    assert names["scan_cap"] == 10000 and names["truncated"] is False


def detail_event(api, run_id):
    return api.rest_run(run_id)["event_id"]


def test_rest_runs_list_filter_paging_and_detail(api):
    w = setup_fn(api)
    runs = [api.emit_one("flow.go", {"i": i}) for i in range(3)]
    job = w.take()
    assert job["run_id"] == runs[0]
    assert w.complete(job, output={"ok": True},
                      steps=[step_result(runs[0], "a", 1)], step_offset=0)[0] == 200
    status, _, out = api.call("GET", "/api/v1/runs?status=completed")
    assert status == 200 and [r["id"] for r in out["runs"]] == [runs[0]]
    assert out["runs"][0]["status"] == "completed" and out["runs"][0]["output"] == {"ok": True}
    status, _, out = api.call("GET", "/api/v1/runs?status=waiting_for_capacity,completed")
    assert out["total_count"] == 3
    everything = api.call("GET", "/api/v1/runs")[2]["runs"]
    newest_first = [r["id"] for r in sorted(everything, key=lambda r: (r["created_at"], r["id"]),
                                            reverse=True)]
    assert sorted(newest_first) == sorted(runs)
    status, _, p1 = api.call("GET", "/api/v1/runs?limit=2")
    assert [r["id"] for r in p1["runs"]] == newest_first[:2] and p1["next_cursor"]
    assert p1["total_count"] == 3 and p1["count"] == 2
    status, _, p2 = api.call("GET", f"/api/v1/runs?limit=2&cursor={p1['next_cursor']}")
    assert [r["id"] for r in p2["runs"]] == newest_first[2:] and p2["next_cursor"] == ""
    status, _, only = api.call("GET", f"/api/v1/runs?function_id=flow&event_id={detail_event(api, runs[1])}")
    assert [r["id"] for r in only["runs"]] == [runs[1]]
    assert api.call("GET", "/api/v1/runs?function_id=other")[2]["total_count"] == 0
    status, _, err = api.call("GET", "/api/v1/runs?status=bogus")
    assert status == 400 and err["code"] == "invalid_argument"
    detail = api.rest_run(runs[0])
    assert detail["status"] == "completed" and detail["function_id"] == "flow"
    assert detail["input"] == {"i": 0} and detail["event_name"] == "flow.go"
    assert detail["steps"][0]["step_id"] == f"{runs[0]}:a:0" and detail["steps"][0]["sequence"] == 0
    assert detail["steps"][0]["step_type"] == "invoke" and detail["steps"][0]["status"] == "completed"
    status, _, err = api.call("GET", "/api/v1/runs/run_nope")
    assert status == 404 and err["code"] == "not_found"


def test_rest_functions_and_workers(api):
    w = setup_fn(api, max_jobs=4)
    status, _, out = api.call("GET", "/api/v1/functions")
    assert status == 200 and out["count"] == out["total_count"] == 1
    (fn,) = out["functions"]
    assert fn["id"] == "flow" and fn["mode"] == "pull" and fn["status"] == "active"
    assert fn["version"] == 1 and fn["timeout_ms"] == 600000
    assert fn["retry"] == {"max_attempts": 3, "initial_delay_ms": 100, "backoff_factor": 2.0,
                           "max_delay_ms": 300000, "on_exhausted": "pause"}
    assert fn["triggers"] == [{"event": "flow.go", "expression": "", "cron": ""}]
    assert fn["concurrency"] is None and fn["next_run"] is None
    api.emit_one("flow.go")
    job = w.take()
    w.ack(job)
    status, _, out = api.call("GET", "/api/v1/workers")
    assert status == 200 and out["count"] == 1
    (info,) = out["workers"]
    assert info["id"] == "w1" and info["function_ids"] == ["flow"] and info["max_concurrent"] == 4
    assert info["active_jobs"] == 1 and info["transport"] == "rest"
    assert info["hostname"] == "test-host" and info["labels"] == {"zone": "a"}
    assert info["version"] == {"sdk": "0.53.0", "runtime": "python-3.11"}
    assert TS_RE.match(info["registered_at"]) and TS_RE.match(info["last_heartbeat"])


# == restart recovery (worker-protocol.md §2.9, features.md §3, acceptance B24) ==========================

SERVER_ENV = {"IRONFLOW_LEASE_TTL": "1s", "IRONFLOW_LEASE_GRACE": "300ms"}


def test_restart_recovers_sleeps_leases_and_acknowledged_events(tmp_path):
    db = str(tmp_path / "ironflow.db")
    with ServerProcess(db, env=SERVER_ENV) as s1:
        api = Api(s1.port)
        api.register_fn("sleeper", "s.go")
        api.register_fn("leased", "l.go")
        w = Worker(api, "w1", ["sleeper", "leased"])
        w.register()
        rs = api.emit_one("s.go")
        js = w.take()
        assert js["run_id"] == rs
        w.ack(js)
        assert w.sleep(js, "nap", 2.0, steps=[step_result(rs, "a", "A")])[0] == 200
        rl = api.emit_one("l.go")
        jl = w.take()
        assert jl["run_id"] == rl and w.ack(jl)[0] == 200
        acked = [api.emit("e.ev", {"i": i})["eventId"] for i in range(30)]
        s1.kill()  # SIGKILL: no orderly shutdown
    with ServerProcess(db, env=SERVER_ENV) as s2:
        api = Api(s2.port)
        w = Worker(api, "w1", ["sleeper", "leased"])
        assert w.poll(wait=0)[0] == 404  # sessions are in memory: registration lost
        w.register()
        for eid in acked:
            status, _, ev = api.call("GET", f"/api/v1/events/{eid}")
            assert status == 200 and ev["name"] == "e.ev", eid
        assert api.rpc_ok("GetFunction", {"id": "sleeper"})["version"] == 1
        jobs = {j["run_id"]: j for j in w.take_many(2, wait=8, available=2)}
        assert set(jobs) == {rs, rl}
        assert jobs[rl]["execution_seq"] == 2 and jobs[rl]["attempt"] == 1
        assert_stale(*w.complete(jl, output="old fence"))
        assert jobs[rs]["execution_seq"] == 2
        m = memo(jobs[rs])
        assert m[f"{rs}:a:0"]["output"] == "A" and m[f"{rs}:nap:0"]["output"] is None
        for j in jobs.values():
            assert w.ack(j)[0] == 200
            assert w.complete(j, output="after restart")[0] == 200
        assert api.wait_status(rs, "completed") and api.wait_status(rl, "completed")


def test_restart_keeps_finished_runs_and_valid_fences(tmp_path):
    """A valid fence is accepted after a restart even though the worker session is gone."""
    db = str(tmp_path / "ironflow.db")
    with ServerProcess(db, env={"IRONFLOW_LEASE_TTL": "30s"}) as s1:
        api = Api(s1.port)
        w = setup_fn(api)
        done = api.emit_one("flow.go")
        assert w.complete(w.take(), output={"v": 1})[0] == 200
        live = api.emit_one("flow.go")
        job = w.take()
        assert w.ack(job)[0] == 200
        assert w.progress(job, [step_result(live, "a", 1)], 0)[0] == 200
        s1.terminate()
    with ServerProcess(db, env={"IRONFLOW_LEASE_TTL": "30s"}) as s2:
        api = Api(s2.port)
        w = Worker(api, "w1", ["flow"])
        assert run_output(api.run(done)) == {"v": 1}
        assert [r["stepId"] for r in api.steps(live)] == [f"{live}:a:0"]
        assert w.complete(job, output="finished", steps=[], step_offset=1)[0] == 200
        assert run_output(api.wait_status(live, "completed")) == "finished"


# == more protocol edges ===================================================================================

def test_abandoned_held_poll_does_not_swallow_a_job(api):
    """worker-protocol.md §2.5 rule 6: a held poll whose client left must not keep an assignment."""
    w = setup_fn(api)
    s = socket.create_connection(("127.0.0.1", api.port), timeout=3)
    s.sendall(b"GET /api/v1/workers/w1/jobs?available=1&wait=5 HTTP/1.1\r\nHost: x\r\n"
              b"Content-Type: application/json\r\n\r\n")
    time.sleep(0.3)
    s.close()  # the worker started draining and abandoned its held poll
    time.sleep(0.3)
    run_id = api.emit_one("flow.go")
    job = eventually(lambda: w.poll(wait=0)[2], timeout=0.8, what="the job to stay available")
    assert job[0]["run_id"] == run_id and job[0]["execution_seq"] in (1, 2)


def test_ack_renews_the_lease(api):
    w = setup_fn(api)
    other = Worker(api, "w2", ["flow"])
    other.register()
    run_id = api.emit_one("flow.go")
    job = w.take()
    time.sleep(0.7)
    assert w.ack(job)[0] == 200
    time.sleep(0.8)  # 1.5 s after assignment > TTL + grace, but only 0.8 s after the ack
    assert other.idle()
    assert w.complete(job, output=1)[0] == 200
    assert api.wait_status(run_id, "completed")


def test_recovered_lease_frees_the_worker_slot(api):
    w = setup_fn(api, max_jobs=1)
    run_id = api.emit_one("flow.go")
    j1 = w.take()
    j2 = w.take(wait=5)  # same worker, capacity 1: only possible once the first lease is gone
    assert j2["run_id"] == run_id and j2["execution_seq"] == j1["execution_seq"] + 1


def test_cancel_frees_the_worker_slot(api):
    w = setup_fn(api, max_jobs=1)
    r1 = api.emit_one("flow.go")
    r2 = api.emit_one("flow.go")
    j1 = w.take()
    assert j1["run_id"] == r1 and w.idle()
    assert_stale(*w.ack(dict(j1, lease_token="0" * 32)))
    api.rpc_ok("CancelRun", {"id": r1})
    assert_stale(*w.ack(j1))
    assert w.take()["run_id"] == r2


def test_repeated_failed_report_does_not_retry_twice(api):
    w = setup_fn(api, retry={"maxAttempts": 5, "initialDelayMs": 200})
    run_id = api.emit_one("flow.go")
    j1 = w.take()
    assert w.fail(j1, "flaky")[0] == 200
    assert w.fail(j1, "flaky")[0] == 200  # lost response, retried report
    assert api.run(run_id)["attempt"] == 2
    j2 = w.take(wait=3)
    assert j2["attempt"] == 2 and j2["execution_seq"] == 2
    # the first segment's report is retried once more while the second one is live: no-op
    assert w.fail(j1, "flaky")[0] == 200
    assert api.run(run_id)["attempt"] == 2 and api.status(run_id) == "RUN_STATUS_RUNNING"
    assert w.complete(j2, output="ok")[0] == 200
    assert api.wait_status(run_id, "completed")["attempt"] == 2


def test_repeated_yield_report_adds_one_yield_row(api):
    w = setup_fn(api)
    run_id = api.emit_one("flow.go")
    job = w.take()
    y = {"step_id": f"{run_id}:nap:0", "type": "sleep", "until": ts_in(30)}
    assert w.yield_(job, y, steps=[step_result(run_id, "a", 1)], step_offset=0)[0] == 200
    assert w.yield_(job, y, steps=[step_result(run_id, "a", 1)], step_offset=0)[0] == 200
    assert [s["stepId"] for s in api.steps(run_id)] == [f"{run_id}:a:0", f"{run_id}:nap:0"]


def test_memo_rules(api):
    """worker-protocol.md §3.5: completed rows (highest sequence per step id), failed rows only for
    invoke steps, never pending yield rows."""
    w = setup_fn(api, retry={"maxAttempts": 3, "initialDelayMs": 50})
    run_id = api.emit_one("flow.go")
    j1 = w.take()
    steps = [step_result(run_id, "a", 1), step_result(run_id, "b", status="failed",
                                                        error={"message": "x", "retryable": True}),
             step_result(run_id, "a", 2)]
    assert w.fail(j1, "step failed", code="STEP_FAILED", steps=steps)[0] == 200
    j2 = w.take(wait=3)
    assert j2["completed_steps"] == [{"step_id": f"{run_id}:a:0", "name": "a", "output": 2,
                                      "status": "completed"}]
    assert j2["step_sequence_base"] == 3


def test_yield_row_names_follow_the_step_id_grammar(api):
    w = setup_fn(api)
    run_id = api.emit_one("flow.go")
    j1 = w.take()
    sid = f"{run_id}:fan:1:wake\\:up:0"
    assert w.yield_(j1, {"step_id": sid, "type": "sleep", "until": ts_in(-1)})[0] == 200
    j2 = w.take(wait=2)
    assert j2["completed_steps"] == [{"step_id": sid, "name": "wake:up", "output": None,
                                      "status": "completed"}]
    row = api.rest_run(run_id)["steps"][0]
    assert row["name"] == "wake:up" and row["step_type"] == "sleep" and row["status"] == "completed"


@pytest.mark.parametrize("y", [
    pytest.param({"type": "sleep", "until": "tomorrow"}, id="sleep-bad-until"),
    pytest.param({"type": "sleep"}, id="sleep-no-until"),
    pytest.param({"type": "wait_for_event"}, id="wait-no-filter"),
    pytest.param({"type": "wait_for_event", "event_filter": {"timeout": "1h"}}, id="wait-no-event"),
    pytest.param({"type": "wait_for_event", "event_filter": {"event": "a.b", "timeout": "soon"}},
                 id="wait-bad-timeout"),
    pytest.param({"type": "invoke_function", "input": {}}, id="invoke-no-function-id"),
])
def test_malformed_yield_fields_fail_with_invalid_yield(api, y):
    """worker-protocol.md §3.6: "An unknown type or a malformed yield -> failed, INVALID_YIELD"."""
    w = setup_fn(api)
    run_id = api.emit_one("flow.go")
    job = w.take()
    assert w.yield_(job, dict(y, step_id=f"{run_id}:x:0"))[0] == 200
    run = api.run(run_id)  # the report is answered after the outcome is committed
    assert run["status"] == "RUN_STATUS_FAILED", run["status"]
    assert run["error"]["code"] == "INVALID_YIELD"


def test_resume_failed_run_keeps_memo_and_from_step_supersedes(api):
    w = setup_fn(api)
    run_id = api.emit_one("flow.go")
    j1 = w.take()
    steps = [step_result(run_id, "a", 1), step_result(run_id, "b", 2)]
    assert w.fail(j1, "bad", retryable=False, steps=steps)[0] == 200
    api.wait_status(run_id, "failed")
    run = api.rpc_ok("ResumeRun", {"runId": run_id})
    assert run["status"] == "RUN_STATUS_WAITING_FOR_CAPACITY" and run["attempt"] == 2
    assert not run.get("error")
    j2 = w.take(wait=2)
    assert j2["attempt"] == 2 and j2["execution_seq"] == 2
    assert j2["max_attempts"] == 2 + 3 - 1  # attempt + policy max_attempts - 1
    assert set(memo(j2)) == {f"{run_id}:a:0", f"{run_id}:b:0"}
    assert w.fail(j2, "bad again", retryable=False)[0] == 200
    api.wait_status(run_id, "failed")
    api.rpc_ok("ResumeRun", {"runId": run_id, "fromStep": f"{run_id}:b:0"})
    j3 = w.take(wait=2)
    assert set(memo(j3)) == {f"{run_id}:a:0"}
    assert api.rest_run(run_id)["steps"][1]["stored_status"] == "superseded"


def test_pause_running_run_pauses_at_next_checkpoint(api):
    w = setup_fn(api)
    run_id = api.emit_one("flow.go")
    job = w.take()
    w.ack(job)
    assert api.rpc_ok("PauseRun", {"runId": run_id}) == {"status": "pause_requested"}
    assert w.progress(job, [step_result(run_id, "a", 1)], 0)[0] == 200
    run = api.run(run_id)
    assert run["status"] == "RUN_STATUS_PAUSED" and run["pauseReason"] == "injection"
    assert_stale(*w.progress(job, [step_result(run_id, "b", 2)], 1))
    assert w.idle()
    api.rpc_ok("ResumeRun", {"runId": run_id})
    j2 = w.take(wait=2)
    assert j2["attempt"] == 1 and j2["execution_seq"] == 2 and set(memo(j2)) == {f"{run_id}:a:0"}


def test_paused_waiting_run_resolves_but_waits_for_resume(api):
    w = setup_fn(api)
    run_id = api.emit_one("flow.go")
    assert w.wait_for_event(w.take(), "ev", "go.on")[0] == 200
    assert api.rpc_ok("PauseRun", {"runId": run_id}) == {"status": "paused"}
    assert api.run(run_id)["pauseReason"] == "wait_event"
    ev = api.emit("go.on", {"v": 1})
    time.sleep(0.3)
    assert api.status(run_id) == "RUN_STATUS_PAUSED" and w.idle()
    api.rpc_ok("ResumeRun", {"runId": run_id})
    assert memo(w.take(wait=2))[f"{run_id}:ev:0"]["output"]["id"] == ev["eventId"]


def test_resume_of_paused_unresolved_sleep_goes_back_to_waiting(api):
    w = setup_fn(api)
    run_id = api.emit_one("flow.go")
    assert w.sleep(w.take(), "nap", 60)[0] == 200
    assert api.rpc_ok("PauseRun", {"runId": run_id}) == {"status": "paused"}
    assert api.run(run_id)["pauseReason"] == "sleep"
    run = api.rpc_ok("ResumeRun", {"runId": run_id})
    assert run["status"] == "RUN_STATUS_WAITING" and run["attempt"] == 1
    assert w.idle()


def test_operator_actions_on_wrong_states(api):
    w = setup_fn(api)
    run_id = api.emit_one("flow.go")
    status, out = api.rpc("ResumeRun", {"runId": run_id})
    assert status == 400 and out["code"] == "failed_precondition"
    assert w.complete(w.take(), output=1)[0] == 200
    status, out = api.rpc("PauseRun", {"runId": run_id})
    assert status == 400 and out["code"] == "failed_precondition"
    for method, body in (("GetRun", {"id": "run_x"}), ("GetRunSteps", {"runId": "run_x"}),
                         ("PauseRun", {"runId": "run_x"}), ("ResumeRun", {"runId": "run_x"})):
        status, out = api.rpc(method, body)
        assert status == 404 and out["code"] == "not_found", (method, out)


def test_cancelling_a_parent_does_not_cancel_its_child(api):
    w = setup_parent_child(api)
    pr = api.emit_one("p.go")
    assert w.invoke(w.take(), "child", {"n": 1})[0] == 200
    jc = w.take()
    api.rpc_ok("CancelRun", {"id": pr})
    assert api.status(jc["run_id"]) == "RUN_STATUS_RUNNING"
    assert w.complete(jc, output=1)[0] == 200
    assert api.wait_status(jc["run_id"], "completed")
    assert api.status(pr) == "RUN_STATUS_CANCELLED" and w.idle()


def test_cancelled_child_fails_the_parent_memo_row(api):
    w = setup_parent_child(api)
    pr = api.emit_one("p.go")
    assert w.invoke(w.take(), "child", {"n": 1})[0] == 200
    jc = w.take()
    api.rpc_ok("CancelRun", {"id": jc["run_id"], "reason": "operator said no"})
    row = memo(w.take(wait=2))[f"{pr}:child:0"]
    assert row["status"] == "failed" and row["error"]["child_run_id"] == jc["run_id"]
    assert row["error"]["message"] == "operator said no"


def test_wait_for_event_ignores_synthetic_invoke_events(api):
    w = setup_parent_child(api)
    pr = api.emit_one("p.go")
    assert w.wait_for_event(w.take(), "w", "invoke/child")[0] == 200
    api.rpc_ok("InvokeFunction", {"functionId": "child", "data": {}})
    jc = w.take()
    assert jc["function_id"] == "child"
    time.sleep(0.2)
    assert api.status(pr) == "RUN_STATUS_WAITING" and w.idle()


def test_delete_function_fails_queued_and_waiting_runs(api):
    w = setup_fn(api)
    sleeping = api.emit_one("flow.go")
    assert w.sleep(w.take(), "nap", 60)[0] == 200
    queued = api.emit_one("flow.go")
    api.rpc_ok("DeleteFunction", {"id": "flow"})
    for rid in (sleeping, queued):
        run = api.wait_status(rid, "failed")
        assert run["error"]["code"] == "FUNCTION_NOT_FOUND"
    assert api.emit("flow.go", {}).get("runIds", []) == []
    status, out = api.rpc("GetFunction", {"id": "flow"})
    assert status == 404 and out["code"] == "not_found"


def test_retry_policy_is_snapshotted_at_run_creation(api):
    w = setup_fn(api, retry={"maxAttempts": 2, "initialDelayMs": 100, "onExhausted": "fail"})
    run_id = api.emit_one("flow.go")
    api.register_fn("flow", "flow.go", retry={"maxAttempts": 9, "onExhausted": "pause"})
    job = w.take()
    assert job["max_attempts"] == 2 and job["on_exhausted"] == "fail"
    assert api.run(run_id)["maxAttempts"] == 2


def test_function_registered_after_the_worker_is_served(api):
    w = Worker(api, "w1", ["later"])
    assert w.register()["ignored_function_ids"] == ["later"]
    api.register_fn("later", "later.go")
    run_id = api.emit_one("later.go")
    assert w.take()["run_id"] == run_id


def test_actor_key_is_sent_as_actor_id(api):
    w = setup_fn(api, actorKey="data.user")
    api.emit_one("flow.go", {"user": "u-1"})
    job = w.take()
    assert job["actor_id"] == "u-1"


def test_concurrency_limit_without_key(api):
    w = setup_fn(api, concurrency={"limit": 2})
    runs = [api.emit_one("flow.go", {"i": i}) for i in range(3)]
    status, _, jobs = w.poll(available=3)
    assert status == 200 and [j["run_id"] for j in jobs] == runs[:2]
    assert w.idle()
    assert w.fail(jobs[0], "x", retryable=False)[0] == 200
    assert w.take()["run_id"] == runs[2]


def test_invoke_function_rpc_idempotency_and_null_data(api):
    api.register_fn("child", None)
    w = Worker(api, "w1", ["child"])
    w.register()
    a = api.rpc_ok("InvokeFunction", {"functionId": "child", "idempotencyKey": "inv-1"})
    b = api.rpc_ok("InvokeFunction", {"functionId": "child", "idempotencyKey": "inv-1"})
    assert a["runId"] == b["runId"]
    job = w.take()
    assert "data" in job["event"]
    assert w.idle()


def test_worker_session_expires_without_calls(tmp_path):
    with InProcessServer(make_settings(tmp_path, lease_ttl=TTL, lease_grace=GRACE,
                                       worker_timeout=0.5)) as s:
        api = Api(s.port)
        w = setup_fn(api)
        assert w.heartbeat()[0] == 200
        eventually(lambda: api.call("GET", "/api/v1/workers")[2]["count"] == 0, timeout=3,
                   interval=0.1, what="the idle session to expire")
        status, out = w.heartbeat()
        assert status == 404 and out["code"] == "not_found"
        assert w.poll(wait=0)[0] == 404
        w.register()
        assert w.heartbeat()[0] == 200


@pytest.mark.parametrize("name", ["del\x7fchar", "c1\x9fchar"])
def test_event_name_rejects_every_control_character(api, name):
    status, out = api.rpc("Emit", {"event": name, "data": {}})
    assert status == 400 and out["code"] == "invalid_argument", (name, status, out)


def test_yield_row_is_written_at_step_offset_plus_len_steps(api):
    w = setup_fn(api)
    run_id = api.emit_one("flow.go")
    job = w.take()
    assert w.progress(job, [step_result(run_id, n, 1) for n in "abc"], 0)[0] == 200
    y = {"step_id": f"{run_id}:nap:0", "type": "sleep", "until": ts_in(30)}
    assert w.yield_(job, y, steps=[step_result(run_id, "b", 2)], step_offset=1)[0] == 200
    rows = [(s["sequence"], s["step_id"]) for s in api.rest_run(run_id)["steps"]]
    assert (2, f"{run_id}:nap:0") in rows, rows


def test_trigger_sync_times_out_with_the_current_status(api):
    setup_fn(api)
    t0 = time.monotonic()
    out = api.rpc_ok("TriggerSync", {"event": "flow.go", "data": {}, "timeoutMs": 300})
    assert 0.25 <= time.monotonic() - t0 < 2
    (res,) = out["results"]
    assert res["waitTimedOut"] is True and res["status"] == "RUN_STATUS_WAITING_FOR_CAPACITY"


def test_restart_recovers_invokes_waits_failed_runs_and_idempotency(tmp_path):
    db = str(tmp_path / "ironflow.db")
    names = ["parent", "child", "waiter", "failer"]
    env = {"IRONFLOW_LEASE_TTL": "60s"}  # the child's lease must outlive the restart
    with ServerProcess(db, env=env) as s1:
        api = Api(s1.port)
        api.register_fn("parent", "p.go")
        api.register_fn("child", None)
        api.register_fn("waiter", "w.go")
        api.register_fn("failer", "f.go")
        w = Worker(api, "w1", names)
        w.register()
        pr = api.emit_one("p.go")
        assert w.invoke(w.take(), "child", {"n": 1}, 20000)[0] == 200
        jc = w.take()
        assert w.ack(jc)[0] == 200
        wr = api.emit_one("w.go")
        assert w.wait_for_event(w.take(), "ev", "go.on")[0] == 200
        fr = api.emit_one("f.go")
        assert w.fail(w.take(), "bad", retryable=False, steps=[step_result(fr, "a", 1)])[0] == 200
        first = api.emit("x.ev", {}, idempotencyKey="k-restart")
        s1.kill()
    with ServerProcess(db, env=env) as s2:
        api = Api(s2.port)
        w = Worker(api, "w1", names)
        w.register()
        assert api.emit("x.ev", {}, idempotencyKey="k-restart") == first
        assert w.complete(jc, output=7)[0] == 200  # a valid fence outlives the restart
        ev = api.emit("go.on", {"z": 1})
        api.rpc_ok("ResumeRun", {"runId": fr})
        jobs = {j["run_id"]: j for j in w.take_many(3, wait=5, available=5)}
        assert set(jobs) == {pr, wr, fr}
        assert memo(jobs[pr])[f"{pr}:child:0"]["output"] == 7
        assert memo(jobs[wr])[f"{wr}:ev:0"]["output"]["id"] == ev["eventId"]
        assert jobs[fr]["attempt"] == 2 and set(memo(jobs[fr])) == {f"{fr}:a:0"}
        assert jobs[fr]["event"]["name"] == "f.go"


def test_missing_secret_fails_the_run_at_dispatch(api):
    """features.md §2.9 Decision: a declared secret that does not exist fails the run
    non-retryably with SECRET_NOT_FOUND; no assignment without its context.secrets."""
    w = setup_fn(api, secrets=["NOPE"])
    run_id = api.emit_one("flow.go")
    status, _, jobs = w.poll(wait=0.5)
    assert status == 204 and jobs == []
    run = api.wait_status(run_id, "failed")
    assert run["error"]["code"] == "SECRET_NOT_FOUND" and run["error"].get("retryable", False) is False
