"""A raw-HTTP pull-worker simulator and small Connect JSON / REST client for engine tests.

Nothing here uses an SDK: every call is the JSON request a pull worker (worker-protocol.md §2)
or a Connect JSON client (connect.md) would send over loopback HTTP/1.1.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

from support import http_request

JSON_HEADERS = {"Content-Type": "application/json", "X-Ironflow-SDK": "python/0.53.0"}
TS_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
STALE = {"error": "STALE_EXECUTION", "code": "aborted"}


def ts_in(seconds: float) -> str:
    """RFC 3339 UTC with milliseconds and ``Z``, ``seconds`` from now."""
    t = datetime.now(timezone.utc) + timedelta(seconds=seconds)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def eventually(fn: Callable[[], Any], timeout: float = 5.0, interval: float = 0.02,
               what: str = "condition") -> Any:
    """Call ``fn`` until it returns a truthy value; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = fn()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last={last!r}")
        time.sleep(interval)


class Api:
    """Connect JSON + REST calls against one server port."""

    def __init__(self, port: int) -> None:
        self.port = port

    # -- transport ---------------------------------------------------------------------------------

    def call(self, method: str, path: str, body: Any = None, *, headers: dict[str, str] | None = None,
             timeout: float = 10.0) -> tuple[int, dict[str, str], Any]:
        raw = None if body is None else json.dumps(body).encode()
        h = dict(JSON_HEADERS)
        h.update(headers or {})
        status, rh, data = http_request(self.port, method, path, raw, h, timeout)
        parsed: Any = None
        if data:
            try:
                parsed = json.loads(data)
            except ValueError:
                parsed = data
        return status, rh, parsed

    def rpc(self, method: str, body: dict[str, Any] | None = None,
            timeout: float = 10.0) -> tuple[int, Any]:
        status, _, out = self.call("POST", f"/ironflow.v1.IronflowService/{method}", body or {},
                                   timeout=timeout)
        return status, out

    def rpc_ok(self, method: str, body: dict[str, Any] | None = None, timeout: float = 10.0) -> Any:
        status, out = self.rpc(method, body, timeout)
        assert status == 200, (method, body, status, out)
        return out

    # -- functions and events ------------------------------------------------------------------------

    def register_fn(self, fid: str, event: str | None = None, **extra: Any) -> dict[str, Any]:
        body: dict[str, Any] = {"id": fid, "triggers": [{"event": event}] if event else []}
        body.setdefault("retry", {"maxAttempts": 3, "initialDelayMs": 100})
        body.update(extra)
        return self.rpc_ok("RegisterFunction", body)

    def emit(self, event: str, data: Any = None, **extra: Any) -> dict[str, Any]:
        body: dict[str, Any] = {"event": event}
        if data is not None:
            body["data"] = data
        body.update(extra)
        return self.rpc_ok("Emit", body)

    def emit_one(self, event: str, data: Any = None, **extra: Any) -> str:
        out = self.emit(event, data, **extra)
        assert len(out.get("runIds") or []) == 1, out
        return out["runIds"][0]

    # -- runs ---------------------------------------------------------------------------------------------

    def run(self, run_id: str) -> dict[str, Any]:
        return self.rpc_ok("GetRun", {"id": run_id})

    def status(self, run_id: str) -> str:
        return self.run(run_id)["status"]

    def steps(self, run_id: str) -> list[dict[str, Any]]:
        return self.rpc_ok("GetRunSteps", {"runId": run_id}).get("steps") or []

    def wait_status(self, run_id: str, status: str, timeout: float = 5.0) -> dict[str, Any]:
        want = status if status.startswith("RUN_STATUS_") else "RUN_STATUS_" + status.upper()

        seen: list[str] = []

        def check() -> dict[str, Any] | None:
            r = self.run(run_id)
            seen[:] = [r["status"]]
            return r if r["status"] == want else None
        try:
            return eventually(check, timeout, what=f"run {run_id} {want}")
        except AssertionError as e:
            raise AssertionError(f"{e} (status stayed {seen})") from None

    def rest_run(self, run_id: str) -> dict[str, Any]:
        status, _, out = self.call("GET", f"/api/v1/runs/{run_id}")
        assert status == 200, (status, out)
        return out


def step_output(step: dict[str, Any]) -> Any:
    """A Connect Step's output: ``output`` (Struct) or ``outputValue`` (Value)."""
    if "output" in step:
        return step["output"]
    return step.get("outputValue")


def run_output(run: dict[str, Any]) -> Any:
    if "output" in run:
        return run["output"]
    return run.get("outputValue")


def step_result(run_id: str, name: str, output: Any = None, *, n: int = 0, status: str = "completed",
                error: dict[str, Any] | None = None) -> dict[str, Any]:
    """A StepResult as the SDK reports it (worker-protocol.md §3.3)."""
    sr: dict[str, Any] = {"id": f"{run_id}:{name}:{n}", "name": name, "type": "invoke",
                          "status": status, "started_at": ts_in(0), "ended_at": ts_in(0),
                          "duration_ms": 0}
    if status == "completed":
        sr["output"] = output
    if error is not None:
        sr["error"] = error
    return sr


class Worker:
    """A pull worker speaking worker-protocol.md §2 with raw JSON requests."""

    def __init__(self, api: Api, wid: str, function_ids: list[str], max_concurrent_jobs: int = 10) -> None:
        self.api = api
        self.wid = wid
        self.function_ids = list(function_ids)
        self.max_concurrent_jobs = max_concurrent_jobs

    @property
    def base(self) -> str:
        return f"/api/v1/workers/{self.wid}"

    def register(self, verb: str = "POST") -> dict[str, Any]:
        status, _, out = self.api.call(verb, f"{self.base}/register", {
            "worker_id": self.wid, "hostname": "test-host", "function_ids": self.function_ids,
            "max_concurrent_jobs": self.max_concurrent_jobs, "labels": {"zone": "a"},
            "version": {"sdk": "0.53.0", "runtime": "python-3.11"}})
        assert status == 200, (status, out)
        return out

    def heartbeat(self, jobs: list[dict[str, Any]] = ()) -> tuple[int, Any]:
        status, _, out = self.api.call("POST", f"{self.base}/heartbeat", {
            "worker_id": self.wid, "active_jobs": len(jobs),
            "jobs": [{"job_id": j["job_id"], "started_at": ts_in(0)} for j in jobs]})
        return status, out

    def poll(self, available: int = 1, wait: float = 0) -> tuple[int, dict[str, str], list[dict[str, Any]]]:
        q = f"available={available}"
        if wait:
            q += f"&wait={wait:g}"
        status, headers, out = self.api.call("GET", f"{self.base}/jobs?{q}", timeout=wait + 10)
        if status == 200:
            assert isinstance(out, dict) and isinstance(out.get("jobs"), list), out
            # worker-protocol.md §2.5 rule 5: never 200 {"jobs": []}.
            assert out["jobs"], "server answered 200 with an empty job list"
            return status, headers, out["jobs"]
        return status, headers, []

    def take(self, wait: float = 3.0, available: int = 1) -> dict[str, Any]:
        """Poll (holding up to ``wait`` s in total) until exactly one job arrives."""
        jobs = self.take_many(1, wait, available)
        assert len(jobs) == 1, jobs
        return jobs[0]

    def take_many(self, n: int, wait: float = 3.0, available: int | None = None) -> list[dict[str, Any]]:
        deadline = time.monotonic() + wait
        got: list[dict[str, Any]] = []
        while len(got) < n:
            left = deadline - time.monotonic()
            assert left > 0, f"expected {n} jobs within {wait}s, got {len(got)}"
            status, _, jobs = self.poll(available or (n - len(got)), wait=round(max(left, 0.1), 2))
            assert status in (200, 204), status
            got.extend(jobs)
        return got

    def idle(self) -> bool:
        """True when an immediate poll has nothing for this worker."""
        status, _, jobs = self.poll(available=10, wait=0)
        assert status in (200, 204), status
        return status == 204

    # -- fenced calls ---------------------------------------------------------------------------------

    def ack(self, job: dict[str, Any], *, job_id: str | None = None, **override: Any) -> tuple[int, Any]:
        body = {"run_id": job["run_id"], "execution_seq": job["execution_seq"],
                "lease_token": job["lease_token"]}
        body.update(override)
        status, _, out = self.api.call("PUT", f"{self.base}/jobs/{job_id or job['job_id']}/ack", body)
        return status, out

    def report(self, job: dict[str, Any], status: str, *, steps: list[dict[str, Any]] | None = None,
               step_offset: int | None = None, job_id: str | None = None, **extra: Any) -> tuple[int, Any]:
        body: dict[str, Any] = {"status": status, "execution_seq": job["execution_seq"],
                                "lease_token": job["lease_token"]}
        if steps is not None:
            body["steps"] = steps
            body["step_offset"] = job.get("step_sequence_base", 0) if step_offset is None else step_offset
        elif step_offset is not None:
            body["step_offset"] = step_offset
        body.update(extra)
        code, _, out = self.api.call("PUT", f"{self.base}/jobs/{job_id or job['job_id']}", body)
        return code, out

    def progress(self, job: dict[str, Any], steps: list[dict[str, Any]], step_offset: int | None = None) -> tuple[int, Any]:
        return self.report(job, "progress", steps=steps, step_offset=step_offset)

    def complete(self, job: dict[str, Any], output: Any = None, steps: list[dict[str, Any]] | None = None,
                 step_offset: int | None = None) -> tuple[int, Any]:
        return self.report(job, "completed", steps=steps or [], step_offset=step_offset, output=output)

    def fail(self, job: dict[str, Any], message: str = "boom", *, code: str = "ERROR",
             retryable: bool = True, retry_after_ms: int | None = None,
             steps: list[dict[str, Any]] | None = None) -> tuple[int, Any]:
        err: dict[str, Any] = {"message": message, "code": code, "retryable": retryable}
        if retry_after_ms is not None:
            err["retry_after_ms"] = retry_after_ms
        return self.report(job, "failed", steps=steps or [], error=err)

    def yield_(self, job: dict[str, Any], y: dict[str, Any], steps: list[dict[str, Any]] | None = None,
               step_offset: int | None = None) -> tuple[int, Any]:
        return self.report(job, "yielded", steps=steps or [], step_offset=step_offset, **{"yield": y})

    def sleep(self, job: dict[str, Any], name: str, seconds: float,
              steps: list[dict[str, Any]] | None = None) -> tuple[int, Any]:
        return self.yield_(job, {"step_id": f"{job['run_id']}:{name}:0", "type": "sleep",
                                 "until": ts_in(seconds)}, steps)

    def wait_for_event(self, job: dict[str, Any], name: str, event: str, timeout: str = "1h",
                       steps: list[dict[str, Any]] | None = None, **filt: Any) -> tuple[int, Any]:
        f = {"event": event, "timeout": timeout}
        f.update(filt)
        return self.yield_(job, {"step_id": f"{job['run_id']}:{name}:0", "type": "wait_for_event",
                                 "event_filter": f}, steps)

    def invoke(self, job: dict[str, Any], fid: str, data: Any, timeout_ms: int = 10000,
               kind: str = "invoke_function", steps: list[dict[str, Any]] | None = None) -> tuple[int, Any]:
        y: dict[str, Any] = {"step_id": f"{job['run_id']}:{fid}:0", "type": kind, "function_id": fid,
                             "input": data}
        if kind == "invoke_function":
            y["invoke_timeout_ms"] = timeout_ms
        return self.yield_(job, y, steps)


class Heartbeater:
    """Background heartbeats every ``interval`` seconds listing ``jobs`` (a mutable list)."""

    def __init__(self, worker: Worker, jobs: list[dict[str, Any]], interval: float = 0.25) -> None:
        self.worker = worker
        self.jobs = jobs
        self.interval = interval
        self.statuses: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            status, _ = self.worker.heartbeat(list(self.jobs))
            self.statuses.append(status)
            self._stop.wait(self.interval)

    def __enter__(self) -> Heartbeater:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
