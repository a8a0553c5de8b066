"""Crash tests with real processes: SIGKILL the server mid-burst, mid-sleep, mid-lease, while
reports are in flight and with emitters and workers all busy; restart it on the same database and
check the durability promises.

"Acknowledged means durable" (design.md): every emit that got a 2xx exists after the crash, every
report that got a 2xx is reflected, every run completes exactly once, and no step that was
reported (checkpointed) runs again (worker-protocol.md §2.8-§2.10, §3.5, §3.6.1; acceptance.md
A6, A7, A18, A19, A21, A34, B24).

The test process plays the worker with raw HTTP (worker-protocol.md §2): it registers, polls,
acks and reports with the fence, and counts the step bodies it "executes": a step is executed
only when its id is not in the assignment's ``completed_steps`` memo, like the SDK does.
Every wait is bounded; the server runs with a 1 s lease TTL and a 300 ms reclaim grace.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections import Counter, defaultdict
from datetime import datetime, timezone
from typing import Any, Callable

import pytest

from support import ServerProcess

FAST_LEASES = {"IRONFLOW_LEASE_TTL": "1", "IRONFLOW_LEASE_GRACE": "300ms"}
LEASE_RECLAIM_S = 1.3  # TTL + grace: after this a silent lease is reclaimed
JSON_HEADERS = {"Content-Type": "application/json"}
RPC = "/ironflow.v1.IronflowService/"
NOT_FINISHED = "waiting_for_capacity,running,waiting,paused"
TRANSPORT_ERRORS = (OSError, http.client.HTTPException)


# -- plumbing ----------------------------------------------------------------------------------------


class Conn:
    """One keep-alive HTTP/1.1 connection (reopened after a transport failure).

    ``call`` raises ``TRANSPORT_ERRORS`` when no answer arrived (server killed, connection reset):
    for a crash test "no answer" and "an error answer" are different facts."""

    def __init__(self, port: int, timeout: float = 10.0) -> None:
        self.port = port
        self.timeout = timeout
        self._c: http.client.HTTPConnection | None = None

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        if self._c is None:
            self._c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
        data = None if body is None else json.dumps(body).encode()
        try:
            self._c.request(method, path, body=data, headers=JSON_HEADERS)
            resp = self._c.getresponse()
            raw = resp.read()
        except BaseException:
            self.close()
            raise
        if resp.will_close:
            self.close()
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = raw
        return resp.status, parsed

    def close(self) -> None:
        if self._c is not None:
            self._c.close()
            self._c = None


def rpc(conn: Conn, method: str, body: dict[str, Any]) -> tuple[int, Any]:
    return conn.call("POST", RPC + method, body)


def rfc3339(t: float) -> str:
    """RFC 3339 UTC with milliseconds and ``Z`` (truncated, never later than ``t``)."""
    dt = datetime.fromtimestamp(t, timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def parse_rfc3339(s: str) -> float:
    return datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc).timestamp()


def step_row(run_id: str, name: str, output: Any) -> dict[str, Any]:
    """A StepResult as the SDK reports a completed ``step.run`` (worker-protocol.md §3.3)."""
    now = rfc3339(time.time())
    return {"id": f"{run_id}:{name}:0", "name": name, "type": "invoke", "status": "completed",
            "output": output, "started_at": now, "ended_at": now, "duration_ms": 0}


def fence(job: dict[str, Any]) -> dict[str, Any]:
    return {"execution_seq": job["execution_seq"], "lease_token": job["lease_token"]}


def memo_of(job: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["step_id"]: s for s in job["completed_steps"]}


def is_stale(status: int, body: Any) -> bool:
    return status == 409 and isinstance(body, dict) and body.get("error") == "STALE_EXECUTION"


def wait_until(pred: Callable[[], bool], timeout: float, what: str, every: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)


class SimWorker:
    """A pull worker speaking raw HTTP (worker-protocol.md §2.1)."""

    def __init__(self, port: int, wid: str, capacity: int = 10, functions: tuple[str, ...] = ("f",)) -> None:
        self.wid = wid
        self.capacity = capacity
        self.functions = functions
        self.conn = Conn(port)
        self.lost_registrations = 0

    def retarget(self, port: int) -> None:
        """The server came back on a new port (same database)."""
        self.conn.close()
        self.conn = Conn(port)

    def register(self) -> None:
        for fid in self.functions:
            st, body = rpc(self.conn, "RegisterFunction", {"id": fid, "triggers": [{"event": "e.go"}]})
            assert st == 200, (st, body)
        st, body = self.conn.call("POST", f"/api/v1/workers/{self.wid}/register",
                                  {"function_ids": list(self.functions),
                                   "max_concurrent_jobs": self.capacity})
        assert st == 200 and body["status"] == "registered", (st, body)

    def poll(self, available: int | None = None, wait: float = 1.0) -> list[dict[str, Any]]:
        """One long poll; a 404 (session lost, §2.1) re-registers with the same id, like the SDK."""
        n = available or self.capacity
        st, body = self.conn.call("GET", f"/api/v1/workers/{self.wid}/jobs?available={n}&wait={wait:g}")
        if st == 404:
            self.lost_registrations += 1
            self.register()
            return []
        if st == 204:
            return []
        assert st == 200 and isinstance(body, dict), (st, body)
        assert body["jobs"], "a 200 poll answer must carry jobs (§2.5 rule 5)"
        return body["jobs"]

    def poll_until_job(self, timeout: float, available: int = 1) -> tuple[dict[str, Any], float]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            jobs = self.poll(available, wait=min(1.0, max(0.1, deadline - time.monotonic())))
            if jobs:
                assert len(jobs) == 1, jobs
                return jobs[0], time.time()
        raise AssertionError(f"worker {self.wid}: no job within {timeout} s")

    def heartbeat(self, jobs: list[dict[str, Any]] = ()) -> tuple[int, Any]:
        return self.conn.call("POST", f"/api/v1/workers/{self.wid}/heartbeat",
                              {"worker_id": self.wid, "active_jobs": len(jobs),
                               "jobs": [{"job_id": j["job_id"]} for j in jobs]})

    def ack(self, job: dict[str, Any]) -> tuple[int, Any]:
        return self.conn.call("PUT", f"/api/v1/workers/{self.wid}/jobs/{job['job_id']}/ack",
                              {"run_id": job["run_id"], **fence(job)})

    def report(self, job: dict[str, Any], status: str, steps: list[dict[str, Any]] = (),
               step_offset: int | None = None, **extra: Any) -> tuple[int, Any]:
        body = {"status": status, "steps": list(steps),
                "step_offset": job["step_sequence_base"] if step_offset is None else step_offset,
                **fence(job), **extra}
        return self.conn.call("PUT", f"/api/v1/workers/{self.wid}/jobs/{job['job_id']}", body)


@pytest.fixture
def servers(tmp_path: Any):
    """``start(**env)`` starts a server child on the test's one database; all are killed at the end."""
    started: list[ServerProcess] = []
    db = str(tmp_path / "ironflow.db")

    def start(**env: str) -> ServerProcess:
        srv = ServerProcess(db, env={**FAST_LEASES, **env}).start()
        started.append(srv)
        return srv

    yield start
    for srv in started:
        srv.kill()


def get_run(conn: Conn, run_id: str) -> dict[str, Any]:
    st, body = rpc(conn, "GetRun", {"id": run_id})
    assert st == 200, (run_id, st, body)
    return body


def run_steps(conn: Conn, run_id: str) -> list[dict[str, Any]]:
    st, body = rpc(conn, "GetRunSteps", {"runId": run_id})
    assert st == 200, (run_id, st, body)
    return body.get("steps") or []


def unfinished_runs(conn: Conn) -> int:
    st, body = conn.call("GET", f"/api/v1/runs?status={NOT_FINISHED}&limit=1")
    assert st == 200, (st, body)
    return body["total_count"]


def assert_nothing_redispatched(worker: SimWorker) -> None:
    """After TTL + grace no lease can still be pending recovery: a poll must stay empty."""
    time.sleep(LEASE_RECLAIM_S + 0.3)
    jobs = worker.poll(wait=0.5)
    assert jobs == [], f"a finished run was dispatched again: {jobs}"


def heartbeat_loop(w: SimWorker, jobs: list[dict[str, Any]], stop: threading.Event) -> None:
    """Heartbeat every 0.25 s until ``stop`` or the server stops answering."""
    while not stop.wait(0.25):
        try:
            w.heartbeat(jobs)
        except TRANSPORT_ERRORS:
            return


def emit(conn: Conn, data: dict[str, Any]) -> dict[str, Any]:
    st, body = conn.call("POST", "/api/v1/events", {"name": "e.go", "data": data})
    assert st == 200, (st, body)
    assert len(body["run_ids"]) == 1, body
    return body


# -- 1. mid-burst -----------------------------------------------------------------------------------


def test_kill_mid_burst_every_acknowledged_event_survives_and_every_run_completes_once(servers):
    srv = servers()
    SimWorker(srv.port, "w-setup").register()  # RegisterFunction f (+ a session we never use)

    threads_n, kill_at_acks, max_attempts, burst_s = 4, 250, 400, 1.0
    lock = threading.Condition()
    acked: dict[str, dict[str, Any]] = {}  # event_id -> {"data", "run_ids"}
    attempted = [0]
    unanswered: list[dict[str, Any]] = []  # emits that got no answer (sent or not)
    surprises: list[Any] = []  # non-2xx or transport errors before the kill
    killed = threading.Event()

    def emitter(t: int) -> None:
        conn = Conn(srv.port, timeout=5)
        i = 0
        while not killed.is_set():
            with lock:
                if attempted[0] >= max_attempts:
                    return
                attempted[0] += 1
            data = {"t": t, "i": i}
            req = {"name": "e.go", "data": data, "idempotency_key": f"burst-{t}-{i}"}
            i += 1
            try:
                st, body = conn.call("POST", "/api/v1/events", req)
            except TRANSPORT_ERRORS as e:
                with lock:
                    unanswered.append(req)
                    if not killed.is_set():
                        surprises.append(repr(e))
                if killed.is_set():
                    return
                continue
            with lock:
                if 200 <= st < 300:
                    acked[body["event_id"]] = {"data": data, "run_ids": body["run_ids"]}
                    lock.notify_all()
                elif not killed.is_set():
                    surprises.append((st, body))
        conn.close()

    threads = [threading.Thread(target=emitter, args=(t,), daemon=True) for t in range(threads_n)]
    started = time.monotonic()
    for th in threads:
        th.start()
    with lock:
        lock.wait_for(lambda: len(acked) >= kill_at_acks or attempted[0] >= max_attempts,
                      timeout=burst_s)
        killed.set()  # before the kill: from now on a transport error is expected
    srv.kill()
    for th in threads:
        th.join(10)
        assert not th.is_alive(), "an emitter thread hung after the kill"
    elapsed = time.monotonic() - started
    assert surprises == [], f"errors before the kill: {surprises[:5]}"
    assert len(acked) >= 20, f"only {len(acked)} emits acknowledged in {elapsed:.2f} s"
    assert attempted[0] < max_attempts, "the burst ended before the kill: not a mid-burst crash"
    run_ids = {rid for v in acked.values() for rid in v["run_ids"]}
    assert len(run_ids) == len(acked)

    # Restart on the same database: every acknowledged event and run is there.
    srv = servers()
    conn = Conn(srv.port)
    for eid, v in acked.items():
        st, body = conn.call("GET", f"/api/v1/events/{eid}")
        assert st == 200, f"acknowledged event {eid} lost: {st} {body}"
        assert body["data"] == v["data"] and body["run_ids"] == v["run_ids"], body
    for rid in run_ids:
        assert get_run(conn, rid)["status"] == "RUN_STATUS_WAITING_FOR_CAPACITY"
    st, body = conn.call("GET", "/api/v1/events?name=e.go&limit=1")
    assert st == 200
    stored = body["approx_total"]
    assert len(acked) <= stored <= attempted[0], (len(acked), stored, attempted[0])

    # The client retries what got no answer with the same idempotency key: an emit that was
    # committed before the kill answers duplicate (same event, no second run); others are new.
    duplicates = 0
    for req in unanswered:
        st, body = conn.call("POST", "/api/v1/events", req)
        assert st == 200 and len(body["run_ids"]) == 1, (st, body)
        assert body["event_id"] not in acked, "an idempotency key maps to two answers"
        duplicates += bool(body["duplicate"])
        acked[body["event_id"]] = {"data": req["data"], "run_ids": body["run_ids"]}
    assert stored == len(acked) - len(unanswered) + duplicates, (stored, duplicates)
    st, body = conn.call("GET", "/api/v1/events?name=e.go&limit=1")
    assert body["approx_total"] == attempted[0] == len(acked), "one event per idempotency key"
    run_ids = {rid for v in acked.values() for rid in v["run_ids"]}
    assert len(run_ids) == len(acked)

    # Workers complete everything; count assignments and accepted terminal reports per run.
    assigned: Counter[str] = Counter()
    accepted: dict[str, list[int]] = defaultdict(list)
    problems: list[Any] = []
    stop = threading.Event()

    def work(k: int) -> None:
        w = SimWorker(srv.port, f"w-burst-{k}", capacity=10)
        try:
            w.register()
            while not stop.is_set():
                for job in w.poll(wait=0.5):
                    rid = job["run_id"]
                    with lock:
                        assigned[rid] += 1
                    st, body = w.ack(job)
                    if st != 200:
                        problems.append(("ack", job["job_id"], st, body))
                        continue
                    st, body = w.report(job, "completed", [step_row(rid, "a", job["event"]["data"])],
                                        output={"run_id": rid, "seq": job["execution_seq"]})
                    if st != 200:
                        problems.append(("report", job["job_id"], st, body))
                        continue
                    with lock:
                        accepted[rid].append(job["execution_seq"])
        except Exception as e:  # surfaced by the main thread's assertions
            problems.append(repr(e))

    workers = [threading.Thread(target=work, args=(k,), daemon=True) for k in range(4)]
    for th in workers:
        th.start()
    try:
        def all_done() -> bool:
            with lock:
                done = run_ids <= set(accepted)
            return bool(problems) or (done and unfinished_runs(conn) == 0)
        wait_until(all_done, 20, "every run to complete", every=0.2)
    finally:
        stop.set()
        for th in workers:
            th.join(10)
    assert problems == [], problems[:5]
    assert set(accepted) == run_ids, "a run nobody asked for, or one never dispatched"
    doubles = {rid: n for rid, n in assigned.items() if n != 1}
    assert doubles == {}, f"runs dispatched more than once: {doubles}"
    twice = {rid: seqs for rid, seqs in accepted.items() if len(seqs) != 1}
    assert twice == {}, f"runs completed more than once: {twice}"
    for rid in run_ids:
        run = get_run(conn, rid)
        assert run["status"] == "RUN_STATUS_COMPLETED", run
        assert run["output"] == {"run_id": rid, "seq": accepted[rid][0]}, run
    assert_nothing_redispatched(SimWorker(srv.port, "w-burst-0", capacity=10))


# -- 2. mid-sleep -----------------------------------------------------------------------------------


@pytest.mark.parametrize("down_past_wake", [False, True], ids=["restart-before-wake", "down-past-wake"])
def test_kill_mid_sleep_resumes_after_wake_with_memo_and_never_reruns_a_step(servers, down_past_wake):
    sleep_s = 2.0
    srv = servers()
    w = SimWorker(srv.port, "w-sleep")
    w.register()
    conn = Conn(srv.port)
    rid = emit(conn, {"order": 1})["run_ids"][0]
    executed: Counter[str] = Counter()

    # Segment 1: a (checkpointed), then sleep "nap".
    job1, _ = w.poll_until_job(5)
    assert (job1["run_id"], job1["execution_seq"], job1["completed_steps"]) == (rid, 1, [])
    assert w.ack(job1)[0] == 200
    executed["a"] += 1
    st, body = w.report(job1, "progress", [step_row(rid, "a", {"x": 1})], step_offset=0)
    assert (st, body) == (200, {"status": "ok"})
    until = rfc3339(time.time() + sleep_s)
    st, body = w.report(job1, "yielded", [], step_offset=1,
                        **{"yield": {"step_id": f"{rid}:nap:0", "type": "sleep", "until": until}})
    assert st == 200, (st, body)
    assert get_run(conn, rid)["status"] == "RUN_STATUS_WAITING"
    wake = parse_rfc3339(until)

    srv.kill()
    if down_past_wake:
        time.sleep(max(0.0, wake - time.time()) + 0.5)
    srv = servers()
    restarted_at = time.time()
    w.retarget(srv.port)
    conn = Conn(srv.port)

    # Worker sessions are in memory (§2.9): heartbeat and poll answer 404 until re-registration.
    assert w.heartbeat()[0] == 404
    assert w.poll(wait=0) == [] and w.lost_registrations == 1
    early: list[dict[str, Any]] = []
    if time.time() < wake - 0.5:  # still asleep after the restart (timing-tolerant checks)
        status = get_run(conn, rid)["status"]
        assert status == "RUN_STATUS_WAITING" or time.time() >= wake, status
        early = w.poll(wait=0)

    if early:
        job2, got_at = early[0], time.time()
    else:
        job2, got_at = w.poll_until_job(sleep_s + 8)
    assert got_at >= wake - 0.01, f"segment 2 started {wake - got_at:.3f} s before the wake time"
    if down_past_wake:
        assert got_at - restarted_at < 3.0, "an overdue sleep must be dispatched right after start-up"
    assert job2["run_id"] == rid and job2["execution_seq"] == 2 and job2["attempt"] == 1, job2
    assert job2["lease_token"] != job1["lease_token"]
    assert job2["step_sequence_base"] == 2, job2
    memo = memo_of(job2)
    assert set(memo) == {f"{rid}:a:0", f"{rid}:nap:0"}, job2["completed_steps"]
    assert memo[f"{rid}:a:0"]["output"] == {"x": 1}
    assert memo[f"{rid}:nap:0"]["status"] == "completed" and memo[f"{rid}:nap:0"]["output"] is None

    # Segment 2 replays the handler from the top: only bodies missing from the memo run.
    assert w.ack(job2)[0] == 200
    new_steps = []
    outputs = {}
    for name in ("a", "b"):
        sid = f"{rid}:{name}:0"
        if sid in memo:
            outputs[name] = memo[sid]["output"]
        else:
            executed[name] += 1
            outputs[name] = {"x": 2}
            new_steps.append(step_row(rid, name, outputs[name]))
    st, body = w.report(job2, "completed", new_steps, output=outputs)
    assert st == 200, (st, body)

    assert executed == {"a": 1, "b": 1}, executed
    run = get_run(conn, rid)
    assert run["status"] == "RUN_STATUS_COMPLETED" and run["output"] == {"a": {"x": 1}, "b": {"x": 2}}, run
    rows = run_steps(conn, rid)
    assert [(s["stepId"], s["status"]) for s in rows] == [
        (f"{rid}:a:0", "STEP_STATUS_COMPLETED"), (f"{rid}:nap:0", "STEP_STATUS_COMPLETED"),
        (f"{rid}:b:0", "STEP_STATUS_COMPLETED")], rows
    assert_nothing_redispatched(w)


# -- 3. mid-lease -----------------------------------------------------------------------------------


def test_kill_mid_lease_old_fence_is_stale_and_the_recovered_segment_memoizes_the_checkpoint(servers):
    srv = servers()
    w = SimWorker(srv.port, "w-lease")
    w.register()
    conn = Conn(srv.port)
    rid = emit(conn, {"order": 3})["run_ids"][0]
    executed: Counter[str] = Counter()

    job1, _ = w.poll_until_job(5)
    assert w.ack(job1)[0] == 200
    executed["a"] += 1
    assert w.report(job1, "progress", [step_row(rid, "a", {"x": 1})], step_offset=0)[0] == 200
    srv.kill()  # the worker "is" mid-handler: its terminal report never reached this server

    srv = servers()
    w.retarget(srv.port)
    conn = Conn(srv.port)
    assert w.poll(wait=0) == [] and w.lost_registrations == 1  # 404 -> re-registered
    job2, _ = w.poll_until_job(LEASE_RECLAIM_S + 8)
    assert job2["run_id"] == rid and job2["job_id"] == f"{rid}-2", job2
    assert job2["execution_seq"] == job1["execution_seq"] + 1 and job2["attempt"] == job1["attempt"]
    assert job2["lease_token"] != job1["lease_token"]
    assert job2["step_sequence_base"] == 1, job2
    memo = memo_of(job2)
    assert set(memo) == {f"{rid}:a:0"} and memo[f"{rid}:a:0"]["output"] == {"x": 1}, memo

    # The old holder is fenced out everywhere (§2.10), and nothing it sends is written.
    for st, body in (w.ack(job1),
                     w.report(job1, "progress", [step_row(rid, "z", 0)], step_offset=1),
                     w.report(job1, "completed", [], step_offset=1, output={"from": "old"})):
        assert is_stale(st, body), (st, body)

    assert w.ack(job2)[0] == 200
    new_steps = []
    for name in ("a", "b"):
        if f"{rid}:{name}:0" not in memo:
            executed[name] += 1
            new_steps.append(step_row(rid, name, {"x": 2}))
    assert w.report(job2, "completed", new_steps, output={"from": "seq2"})[0] == 200
    assert is_stale(*w.report(job1, "completed", [], step_offset=1, output={"from": "old"}))

    assert executed == {"a": 1, "b": 1}, executed
    run = get_run(conn, rid)
    assert run["status"] == "RUN_STATUS_COMPLETED" and run["output"] == {"from": "seq2"}, run
    assert [s["stepId"] for s in run_steps(conn, rid)] == [f"{rid}:a:0", f"{rid}:b:0"]
    assert_nothing_redispatched(w)


def test_kill_mid_lease_a_live_fence_is_still_accepted_after_restart(servers):
    """§2.1: ack/checkpoint/report are judged by the fence alone, so finished work is not thrown
    away because the session was lost in a restart (lease TTL 5 s here: still live)."""
    env = {"IRONFLOW_LEASE_TTL": "5"}
    srv = servers(**env)
    w = SimWorker(srv.port, "w-live")
    w.register()
    conn = Conn(srv.port)
    rid = emit(conn, {"order": 4})["run_ids"][0]
    job, _ = w.poll_until_job(5)
    assert w.ack(job)[0] == 200
    assert w.report(job, "progress", [step_row(rid, "a", {"x": 1})], step_offset=0)[0] == 200
    srv.kill()

    srv = servers(**env)
    w.retarget(srv.port)
    conn = Conn(srv.port)
    assert w.heartbeat([job])[0] == 404  # the session is gone ...
    st, body = w.report(job, "progress", [step_row(rid, "a", {"x": 1}), step_row(rid, "b", {"x": 2})],
                        step_offset=0)
    assert st == 200, (st, body)  # ... the fence is not
    st, body = w.report(job, "completed", [], step_offset=2, output={"done": True})
    assert st == 200, (st, body)
    # A retry of the same terminal report (answer lost) is idempotent (§2.8).
    assert w.report(job, "completed", [], step_offset=2, output={"done": True})[0] == 200
    run = get_run(conn, rid)
    assert run["status"] == "RUN_STATUS_COMPLETED" and run["output"] == {"done": True}, run
    assert [s["stepId"] for s in run_steps(conn, rid)] == [f"{rid}:a:0", f"{rid}:b:0"]
    w.register()
    assert w.poll(wait=0.5) == []


# -- 4. kill during many concurrent reports ------------------------------------------------------------


@pytest.mark.parametrize("down_past_lease", [False, True], ids=["quick-restart", "down-past-lease"])
def test_kill_during_concurrent_reports_every_accepted_report_survives_and_retries_never_double(
        servers, down_past_lease):
    """quick-restart: the leases are still live after the restart, retries are accepted by fence.
    down-past-lease: the leases expired while the server was down; start-up recovers the segments
    (§2.9), so a retry is 200 only when its report had been committed (an idempotent repeat,
    §2.8) and 409 STALE_EXECUTION otherwise, and the recovered segment completes the run."""
    n_runs, n_threads = 60, 6
    srv = servers()
    w = SimWorker(srv.port, "w-reports", capacity=n_runs)
    w.register()
    conn = Conn(srv.port)
    run_ids = [emit(conn, {"n": i})["run_ids"][0] for i in range(n_runs)]

    jobs: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + 10
    while len(jobs) < n_runs and time.monotonic() < deadline:
        for job in w.poll(wait=0.5):
            jobs[job["run_id"]] = job
    assert set(jobs) == set(run_ids)
    # Like the SDK, heartbeat every 0.25 s listing the held jobs, so a slow machine cannot lose a
    # lease (TTL 1 s) before the reports; the heartbeats stop at the kill.
    hb_stop = threading.Event()
    hb_thread = threading.Thread(target=heartbeat_loop, daemon=True,
                                 args=(SimWorker(srv.port, w.wid), list(jobs.values()), hb_stop))
    hb_thread.start()
    executed: Counter[tuple[str, str]] = Counter()
    for job in jobs.values():
        assert w.ack(job)[0] == 200
    for rid, job in jobs.items():
        executed[(rid, "a")] += 1
        assert w.report(job, "progress", [step_row(rid, "a", {"n": rid})], step_offset=0)[0] == 200

    def final_report(job: dict[str, Any]) -> dict[str, Any]:
        rid = job["run_id"]
        return {"status": "completed", "steps": [step_row(rid, "b", 1)],
                "step_offset": job["step_sequence_base"] + (0 if f"{rid}:a:0" in memo_of(job) else 1),
                "output": {"run_id": rid, "seq": job["execution_seq"]}, **fence(job)}

    # N completed reports from several keep-alive connections; the thread that sees the
    # kill_after-th 2xx SIGKILLs the server while the others are mid-request or not yet sent.
    kill_after = n_runs // 3
    lock = threading.Lock()
    outcome: dict[str, str] = {}  # run_id -> "accepted" | "no-answer" | "unsent" | "rejected <st>"
    killed = threading.Event()
    port = srv.port
    server_to_kill = srv

    def reporter(mine: list[dict[str, Any]]) -> None:
        c = Conn(port, timeout=5)
        for job in mine:
            rid = job["run_id"]
            if killed.is_set():
                outcome[rid] = "unsent"
                continue
            try:
                st, body = c.call("PUT", f"/api/v1/workers/{w.wid}/jobs/{job['job_id']}", final_report(job))
            except TRANSPORT_ERRORS:
                outcome[rid] = "no-answer"
                continue
            kill = False
            with lock:
                outcome[rid] = "accepted" if st == 200 else f"rejected {st} {body}"
                if st == 200 and sum(v == "accepted" for v in outcome.values()) == kill_after:
                    killed.set()
                    kill = True
            if kill:
                server_to_kill.kill()
        c.close()

    ordered = [jobs[r] for r in run_ids]
    threads = [threading.Thread(target=reporter, args=(ordered[k::n_threads],), daemon=True)
               for k in range(n_threads)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(15)
        assert not th.is_alive(), "a reporter thread hung"
    hb_stop.set()
    hb_thread.join(10)
    assert killed.is_set(), f"the server was never killed: {Counter(outcome.values())}"
    rejected = {r: o for r, o in outcome.items() if o.startswith("rejected")}
    assert rejected == {}, rejected
    accepted_before = {r for r, o in outcome.items() if o == "accepted"}
    retry = [r for r in run_ids if outcome[r] in ("no-answer", "unsent")]
    assert len(accepted_before) >= kill_after and retry, Counter(outcome.values())
    if down_past_lease:
        time.sleep(LEASE_RECLAIM_S + 0.5)

    srv = servers()
    w.retarget(srv.port)
    conn = Conn(srv.port)
    accepted_fences: dict[str, set[int]] = defaultdict(set)
    for rid in accepted_before:
        accepted_fences[rid].add(jobs[rid]["execution_seq"])
        run = get_run(conn, rid)
        assert run["status"] == "RUN_STATUS_COMPLETED", f"accepted report lost: {run}"
        assert run["output"] == {"run_id": rid, "seq": jobs[rid]["execution_seq"]}, run

    # The worker retries what got no answer against the new server with the same fence.
    stale_runs = []
    for rid in retry:
        job = jobs[rid]
        st, body = w.conn.call("PUT", f"/api/v1/workers/{w.wid}/jobs/{job['job_id']}", final_report(job))
        if st == 200:
            accepted_fences[rid].add(job["execution_seq"])
            run = get_run(conn, rid)
            assert run["status"] == "RUN_STATUS_COMPLETED", run
            assert run["output"] == {"run_id": rid, "seq": job["execution_seq"]}, run
        else:
            assert is_stale(st, body), (rid, outcome[rid], st, body)
            stale_runs.append(rid)

    if down_past_lease:  # never sent: never committed, and the fence died at start-up
        unsent = {r for r in retry if outcome[r] == "unsent"}
        assert unsent <= set(stale_runs), f"expired fences accepted after restart: {unsent - set(stale_runs)}"

    # Runs fenced out are recovered after lease expiry and completed by the (re-registered) worker.
    redispatched: Counter[str] = Counter()
    deadline = time.monotonic() + LEASE_RECLAIM_S + 10
    while (time.monotonic() < deadline
           and not all(accepted_fences[r] for r in run_ids)):
        for job in w.poll(wait=0.5):
            rid = job["run_id"]
            redispatched[rid] += 1
            assert f"{rid}:a:0" in memo_of(job), f"checkpointed step a not memoized: {job}"
            assert w.ack(job)[0] == 200
            st, body = w.report(job, "completed", **{k: v for k, v in final_report(job).items()
                                                      if k in ("steps", "step_offset", "output")})
            assert st == 200, (st, body)
            accepted_fences[rid].add(job["execution_seq"])
    assert set(redispatched) <= set(stale_runs), \
        f"runs whose completion was accepted were dispatched again: {set(redispatched) - set(stale_runs)}"
    missing = [r for r in run_ids if not accepted_fences[r]]
    assert missing == [], f"{len(missing)} runs never completed"
    doubles = {r: f for r, f in accepted_fences.items() if len(f) != 1}
    assert doubles == {}, f"runs completed by two fences: {doubles}"
    for rid in run_ids:
        run = get_run(conn, rid)
        (seq,) = accepted_fences[rid]
        assert run["status"] == "RUN_STATUS_COMPLETED", run
        assert run["output"] == {"run_id": rid, "seq": seq}, run
        assert [s["stepId"] for s in run_steps(conn, rid)] == [f"{rid}:a:0", f"{rid}:b:0"]
    # Repeating an accepted terminal report is idempotent across the restart (§2.8).
    for rid in sorted(accepted_before)[:5]:
        job = jobs[rid]
        st, body = w.conn.call("PUT", f"/api/v1/workers/{w.wid}/jobs/{job['job_id']}", final_report(job))
        assert st == 200, (st, body)
    assert all(n == 1 for n in executed.values()) and len(executed) == n_runs
    assert unfinished_runs(conn) == 0
    assert_nothing_redispatched(w)


# -- 5. everything at once ------------------------------------------------------------------------------


def test_kill_mid_pipeline_no_acknowledged_step_runs_again_and_every_run_completes_once(servers):
    """Emitters and workers run together (poll, ack, checkpoint step a, complete) when the server
    is SIGKILLed. After the restart the clients retry what got no answer (emits by idempotency
    key, reports with their fence) and the workers re-register and drain the queue. A step body
    reported in a 2xx-answered checkpoint or report must never execute again; a run completes
    under exactly one fence; every acknowledged emit has its run completed."""
    srv = servers()
    SimWorker(srv.port, "w-setup").register()
    lock = threading.Condition()
    killed = threading.Event()
    max_emits = 240
    emitted: dict[str, str] = {}  # idempotency key -> run id (acknowledged emits)
    attempted = [0]
    unanswered_emits: list[dict[str, Any]] = []
    terminal_ok: dict[str, set[int]] = defaultdict(set)  # run id -> fences whose completion got 2xx
    a_durable: set[str] = set()  # runs whose step a was in a 2xx-answered report
    a_executed: Counter[str] = Counter()
    violations: list[Any] = []
    surprises: list[Any] = []
    interrupted: list[tuple[str, dict[str, Any], dict[str, Any]]] = []  # (wid, job, final body)

    def emitter(t: int) -> None:
        conn = Conn(srv.port, timeout=5)
        i = 0
        while not killed.is_set():
            with lock:
                if attempted[0] >= max_emits:
                    return
                attempted[0] += 1
            req = {"name": "e.go", "data": {"t": t, "i": i}, "idempotency_key": f"pipe-{t}-{i}"}
            i += 1
            try:
                st, body = conn.call("POST", "/api/v1/events", req)
            except TRANSPORT_ERRORS as e:
                with lock:
                    unanswered_emits.append(req)
                    if not killed.is_set():
                        surprises.append(("emit", repr(e)))
                if killed.is_set():
                    return
                continue
            with lock:
                if st == 200:
                    emitted[req["idempotency_key"]] = body["run_ids"][0]
                    lock.notify_all()
                else:
                    surprises.append(("emit", st, body))
            time.sleep(0.004)  # keep the burst going while the workers run

    def process(w: SimWorker, job: dict[str, Any]) -> None:
        """Run the handler ``a`` -> return; transport errors propagate to the caller."""
        rid, base = job["run_id"], job["step_sequence_base"]
        memo = memo_of(job)
        st, body = w.ack(job)
        if is_stale(st, body):
            return  # dropped, like the SDK does
        if st != 200:
            surprises.append(("ack", st, body))
            return
        output = {"run_id": rid, "seq": job["execution_seq"]}
        final = {"status": "completed", "steps": [], "step_offset": base, "output": output, **fence(job)}
        if f"{rid}:a:0" not in memo:
            with lock:
                if rid in a_durable:
                    violations.append(("step a executed again after a 2xx report", rid, job["execution_seq"]))
                a_executed[rid] += 1
            row = step_row(rid, "a", {"v": 1})
            final["steps"] = [row]  # until a checkpoint is accepted, the final report carries it
            try:
                st, body = w.report(job, "progress", [row], step_offset=base)
            except TRANSPORT_ERRORS:
                interrupted.append((w.wid, job, final))
                raise
            if is_stale(st, body):
                return
            if st != 200:
                surprises.append(("progress", st, body))
                return
            with lock:
                a_durable.add(rid)
            final["steps"], final["step_offset"] = [], base + 1
        try:
            st, body = w.conn.call("PUT", f"/api/v1/workers/{w.wid}/jobs/{job['job_id']}", final)
        except TRANSPORT_ERRORS:
            interrupted.append((w.wid, job, final))
            raise
        settle(rid, job["execution_seq"], final, st, body)

    def settle(rid: str, seq: int, final: dict[str, Any], st: int, body: Any) -> None:
        if st == 200:
            with lock:
                terminal_ok[rid].add(seq)
                if final["steps"]:
                    a_durable.add(rid)
                lock.notify_all()
        elif not is_stale(st, body):
            surprises.append(("report", st, body))

    def work(port: int, wid: str, stop: threading.Event) -> None:
        w = SimWorker(port, wid, capacity=8)
        try:
            w.register()
            while not stop.is_set():
                for job in w.poll(wait=0.5):
                    process(w, job)
        except TRANSPORT_ERRORS as e:
            if not killed.is_set():
                surprises.append(("worker", wid, repr(e)))
        except Exception as e:
            surprises.append(("worker", wid, repr(e)))

    wids = [f"w-pipe-{k}" for k in range(3)]
    never = threading.Event()
    threads = [threading.Thread(target=emitter, args=(t,), daemon=True) for t in range(3)]
    threads += [threading.Thread(target=work, args=(srv.port, wid, never), daemon=True) for wid in wids]
    for th in threads:
        th.start()
    with lock:
        lock.wait_for(lambda: len(terminal_ok) >= 25 and len(emitted) >= 60, timeout=3.0)
        killed.set()
    srv.kill()
    for th in threads:
        th.join(10)
        assert not th.is_alive(), "a client thread hung after the kill"
    assert surprises == [], surprises[:5]
    assert terminal_ok, "no run completed before the kill"
    completed_before = {r for r, f in terminal_ok.items() if f}
    assert set(emitted.values()) - completed_before, "every run was finished before the kill"

    srv = servers()
    conn = Conn(srv.port)
    for req in unanswered_emits:  # the client retries by idempotency key
        st, body = conn.call("POST", "/api/v1/events", req)
        assert st == 200, (st, body)
        emitted[req["idempotency_key"]] = body["run_ids"][0]
    assert len(emitted) == attempted[0] and len(set(emitted.values())) == len(emitted)
    for wid, job, final in interrupted:  # the worker retries unanswered reports with their fence
        st, body = conn.call("PUT", f"/api/v1/workers/{wid}/jobs/{job['job_id']}", final)
        settle(job["run_id"], job["execution_seq"], final, st, body)
    for rid in completed_before:
        run = get_run(conn, rid)
        assert run["status"] == "RUN_STATUS_COMPLETED", f"accepted completion lost: {run}"

    stop = threading.Event()
    threads = [threading.Thread(target=work, args=(srv.port, wid, stop), daemon=True) for wid in wids]
    for th in threads:
        th.start()
    run_ids = set(emitted.values())

    def all_done() -> bool:
        with lock:
            done = all(terminal_ok.get(r) for r in run_ids)
        return bool(surprises or violations) or (done and unfinished_runs(conn) == 0)
    try:
        wait_until(all_done, 20, "every run to complete", every=0.2)
    finally:
        stop.set()
        for th in threads:
            th.join(10)
    assert surprises == [], surprises[:5]
    assert violations == [], violations[:5]
    doubles = {r: f for r, f in terminal_ok.items() if len(f) != 1}
    assert doubles == {}, f"runs completed under two fences: {doubles}"
    assert set(terminal_ok) == run_ids
    for rid in run_ids:
        run = get_run(conn, rid)
        (seq,) = terminal_ok[rid]
        assert run["status"] == "RUN_STATUS_COMPLETED" and run["output"] == {"run_id": rid, "seq": seq}, run
        assert [s["stepId"] for s in run_steps(conn, rid)] == [f"{rid}:a:0"], rid
        assert a_executed[rid] >= 1
    assert_nothing_redispatched(SimWorker(srv.port, wids[0], capacity=8))
