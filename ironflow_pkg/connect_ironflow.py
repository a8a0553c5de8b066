"""IronflowService over Connect: translate messages (proto field names, plain dicts) to engine
calls and engine state back to messages. One service layer: these call the same
:class:`~ironflow_pkg.engine.Engine` methods as the REST routes."""

from __future__ import annotations

import asyncio
import json
import platform
from typing import Any

from . import runops
from .config import VERSION
from .jsonutil import now_ts
from .api_engine import emitted_by, env_of, list_runs
from .connect import ConnectRouter, payload, set_payload
from .engine import Engine
from .errors import ApiError
from .functions import NUMBER_STATUS
from .jsonutil import fmt_ts
from .runs import NUMBER_RUN_STATUS, RUN_STATUS_NUMBER, STEP_STATUS_NUMBER, STEP_TYPE_NUMBER, Run, Step
from .server import HttpRequest

SYNC_DEFAULT_MS = 30000
SYNC_MAX_MS = 300000


def run_msg(r: Run) -> dict[str, Any]:
    m: dict[str, Any] = {
        "id": r.id, "function_id": r.function_id, "event_id": r.event_id,
        "execution_mode": 1 if r.execution_mode == "push" else 2, "worker_id": r.worker_id,
        "actor_id": r.actor_id, "status": RUN_STATUS_NUMBER[r.status], "attempt": r.attempt,
        "max_attempts": r.max_attempts, "pause_requested": r.pause_requested,
        "pause_reason": r.pause_reason, "function_version": r.function_version,
        "resume_from_step": r.resume_from_step, "parent_run_id": r.parent_run_id,
        "parent_step_id": r.parent_step_id, "environment_id": r.env_id, "version": r.row_version,
        "claimed_by": r.claimed_by, "cancellation_cause": r.cancellation_cause,
        "event_name": r.event_name, "created_at": r.created_at, "updated_at": r.updated_at,
    }
    set_payload(m, "input", r.input)
    if r.output is not None or r.status.value == "completed":
        set_payload(m, "output", r.output)
    if r.error:
        m["error"] = error_msg(r.error)
        m["error_value"] = r.error
    for k in ("started_at", "ended_at", "claimed_at"):
        if getattr(r, k):
            m[k] = getattr(r, k)
    if r.timeout_at is not None:
        m["timeout_at"] = fmt_ts(r.timeout_at)
    return m


def error_msg(e: Any) -> dict[str, Any]:
    if not isinstance(e, dict):
        return {"message": str(e)}
    out: dict[str, Any] = {"message": str(e.get("message") or ""), "code": str(e.get("code") or ""),
                           "stack": str(e.get("stack") or ""), "retryable": bool(e.get("retryable"))}
    if isinstance(e.get("details"), dict):
        out["details"] = e["details"]
    ra = e.get("retry_after_ms")
    if isinstance(ra, (int, float)) and not isinstance(ra, bool):
        out["retry_after_ms"] = int(ra)
    return out


def step_msg(run_id: str, s: Step) -> dict[str, Any]:
    m: dict[str, Any] = {
        "id": s.id, "run_id": run_id, "step_id": s.step_id,
        "step_type": STEP_TYPE_NUMBER.get(s.step_type, 0), "sequence": s.sequence,
        "status": STEP_STATUS_NUMBER.get(s.status, 0), "attempt": s.attempt,
        "duration_ms": s.duration_ms, "patched_by": s.patched_by,
        "compensation_for": s.compensation_for, "wait_event_name": s.wait_event_name,
        "stored_status": s.stored_status, "child_run_id": s.child_run_id,
    }
    if s.output is not None or s.status == "completed":
        set_payload(m, "output", s.output)
    if s.error is not None:
        m["error"] = error_msg(s.error)
        m["error_value"] = s.error
    if s.original_output is not None:
        set_payload(m, "original_output", s.original_output)
    for k in ("started_at", "ended_at", "patched_at", "sleep_until", "wait_timeout", "created_at",
              "updated_at"):
        if getattr(s, k):
            m[k] = getattr(s, k)
    return m


def _status_name(v: Any) -> str:
    if isinstance(v, int):
        return NUMBER_STATUS.get(v, "")
    return {"FUNCTION_STATUS_ACTIVE": "active", "FUNCTION_STATUS_PAUSED": "paused",
            "FUNCTION_STATUS_ARCHIVED": "archived"}.get(str(v), str(v).lower())


class IronflowService:
    def __init__(self, router: ConnectRouter, engine: Engine) -> None:
        self.e = engine
        self.started_at = now_ts()
        add = router.add
        svc = "IronflowService"
        for name in ("RegisterFunction", "GetFunction", "ListFunctions", "UpdateFunctionStatus",
                     "DeleteFunction", "Emit", "Trigger", "TriggerBatch", "TriggerSync",
                     "InvokeFunction", "InvokeFunctionSync", "GetRun", "ListRuns", "GetRunSteps",
                     "CancelRun", "PauseRun", "ResumeRun", "InjectStepOutput", "PatchStep",
                     "GetPausedState", "DeleteRun", "DeleteRuns", "ListFunctionHistory",
                     "GetFunctionAtVersion", "RollbackFunction", "Health", "Info", "RedactEvent",
                     "RedactRun", "RedactStep"):
            add(svc, name, getattr(self, name))

    # -- functions --------------------------------------------------------------------------------

    async def RegisterFunction(self, req: HttpRequest, m: dict[str, Any]) -> dict[str, Any]:
        fd, created = await self.e.register_function(env_of(req), m, actor=emitted_by(req))
        return {"function": fd.proto(self.e.next_run(fd)), "created": created}

    async def GetFunction(self, req: HttpRequest, m: dict[str, Any]) -> dict[str, Any]:
        fd = self.e.get_function(env_of(req), str(m.get("id") or ""))
        return fd.proto(self.e.next_run(fd))

    async def ListFunctions(self, req: HttpRequest, m: dict[str, Any]) -> dict[str, Any]:
        fns = self.e.list_functions(env_of(req))
        st = _status_name(m.get("status") or 0)
        if st:
            fns = [f for f in fns if f.status == st]
        if m.get("mode"):
            fns = [f for f in fns if f.mode == str(m["mode"]).lower()]
        if m.get("name"):
            fns = [f for f in fns if m["name"] in f.config["name"]]
        limit = m.get("limit") or 100
        offset = max(m.get("offset") or 0, 0)
        page = fns[offset:offset + min(limit, 1000)]
        return {"functions": [f.proto(self.e.next_run(f)) for f in page], "total_count": len(fns),
                "next_cursor": ""}

    async def UpdateFunctionStatus(self, req: HttpRequest, m: dict[str, Any]) -> dict[str, Any]:
        fid = str(m.get("id") or m.get("function_id") or "")
        fd = await self.e.set_function_status(env_of(req), fid, _status_name(m.get("status") or 0),
                                              actor=emitted_by(req))
        return fd.proto(self.e.next_run(fd))

    async def DeleteFunction(self, req: HttpRequest, m: dict[str, Any]) -> dict[str, Any]:
        await self.e.delete_function(env_of(req), str(m.get("id") or ""), actor=emitted_by(req))
        return {}

    # -- events -----------------------------------------------------------------------------------

    async def _trigger(self, req: HttpRequest, m: dict[str, Any]) -> dict[str, Any]:
        data = payload(m, "data")
        if data is None and "data_value" not in m:
            data = {}
        return await self.e.emit(env_of(req), m.get("event") or "", data,
                                 metadata=m.get("metadata") or None,
                                 idempotency_key=m.get("idempotency_key") or None,
                                 version=m.get("version") or 1, emitted_by=emitted_by(req))

    async def Emit(self, req: HttpRequest, m: dict[str, Any]) -> dict[str, Any]:
        out = await self._trigger(req, m)
        return {"run_ids": out["run_ids"], "event_id": out["event_id"]}

    Trigger = Emit

    async def TriggerBatch(self, req: HttpRequest, m: dict[str, Any]) -> dict[str, Any]:
        results = []
        for item in m.get("events") or []:
            try:
                out = await self._trigger(req, item)
                results.append({"run_ids": out["run_ids"], "event_id": out["event_id"]})
            except ApiError as e:
                results.append({"run_ids": [], "event_id": "",
                                "error": {"code": e.code, "message": e.message}})
        return {"results": results}

    async def TriggerSync(self, req: HttpRequest, m: dict[str, Any]) -> dict[str, Any]:
        timeout = _sync_timeout(m.get("timeout_ms"))
        probe = {"id": "", "name": m.get("event") or "", "data": payload(m, "data")}
        if any(fd.config.get("debounce") for fd in self.e.triggered(env_of(req), probe)):
            raise ApiError("failed_precondition", "TriggerSync cannot wait on a debounced function")
        out = await self._trigger(req, m)
        results = await asyncio.gather(*(self._await_run(env_of(req), rid, timeout)
                                         for rid in out["run_ids"]))
        return {"event_id": out["event_id"], "results": list(results)}

    async def InvokeFunction(self, req: HttpRequest, m: dict[str, Any]) -> dict[str, Any]:
        run, event_id, _ = await self.e.start_invoke(env_of(req), str(m.get("function_id") or ""),
                                                     payload(m, "data"),
                                                     m.get("idempotency_key") or None,
                                                     emitted_by=emitted_by(req))
        return {"run_id": run.id, "event_id": event_id}

    async def InvokeFunctionSync(self, req: HttpRequest, m: dict[str, Any]) -> dict[str, Any]:
        env = env_of(req)
        timeout = _sync_timeout(m.get("timeout_ms"))
        run, _, _ = await self.e.start_invoke(env, str(m.get("function_id") or ""),
                                              payload(m, "data"), m.get("idempotency_key") or None,
                                              emitted_by=emitted_by(req))
        gone = req.disconnected()
        waiter = asyncio.ensure_future(self._await_run(env, run.id, timeout))
        gone_task = asyncio.ensure_future(gone.wait())
        done, _ = await asyncio.wait({waiter, gone_task}, return_when=asyncio.FIRST_COMPLETED)
        gone_task.cancel()
        if waiter not in done:
            # features.md §1.2: a caller that disconnects before the end cancels the run.
            waiter.cancel()
            if run.id in self.e.runs:
                await self.e.cancel(env, run.id, "caller disconnected")
            raise ApiError("canceled", "caller disconnected")
        return {"result": waiter.result()}

    async def _await_run(self, env: str, rid: str, timeout: float) -> dict[str, Any]:
        run = await self.e.wait_terminal(rid, timeout)
        timed_out = run is None
        if run is None:
            run = await self.e.load_run(env, rid)
        assert run is not None
        out: dict[str, Any] = {"run_id": run.id, "function_id": run.function_id,
                               "status": RUN_STATUS_NUMBER[run.status], "wait_timed_out": timed_out,
                               "duration_ms": 0}
        if run.output is not None:
            set_payload(out, "output", run.output)
        if run.error:
            out["error"] = error_msg(run.error)
        return out

    # -- runs -------------------------------------------------------------------------------------

    async def GetRun(self, req: HttpRequest, m: dict[str, Any]) -> dict[str, Any]:
        run = await self.e.load_run(env_of(req), str(m.get("id") or ""))
        if run is None:
            raise ApiError("not_found", f"run not found: {m.get('id')}")
        return run_msg(run)

    async def ListRuns(self, req: HttpRequest, m: dict[str, Any]) -> dict[str, Any]:
        statuses = [NUMBER_RUN_STATUS[s].value for s in (m.get("statuses") or [])
                    if s in NUMBER_RUN_STATUS]
        if m.get("status") in NUMBER_RUN_STATUS:
            statuses.append(NUMBER_RUN_STATUS[m["status"]].value)
        limit = m.get("limit") or 50
        page = await list_runs(self.e, env_of(req), function_id=m.get("function_id") or "",
                               statuses=statuses, since=m.get("since"), until=m.get("until"),
                               event_id=m.get("event_id") or "", search=m.get("search") or "",
                               limit=max(1, min(limit, 1000)), cursor=m.get("cursor") or "",
                               offset=max(m.get("offset") or 0, 0))
        return {"runs": [run_msg(r) for r in page["runs"]], "next_cursor": page["next_cursor"],
                "total_count": page["total_count"]}

    async def GetRunSteps(self, req: HttpRequest, m: dict[str, Any]) -> dict[str, Any]:
        rid = str(m.get("run_id") or "")
        steps = await self.e.run_steps(env_of(req), rid)
        return {"steps": [step_msg(rid, s) for s in steps]}

    async def CancelRun(self, req: HttpRequest, m: dict[str, Any]) -> dict[str, Any]:
        run = await self.e.cancel(env_of(req), str(m.get("id") or ""), str(m.get("reason") or ""))
        return run_msg(run)

    async def PauseRun(self, req: HttpRequest, m: dict[str, Any]) -> dict[str, Any]:
        status = await self.e.pause(env_of(req), str(m.get("run_id") or ""))
        return {"status": status}

    async def ResumeRun(self, req: HttpRequest, m: dict[str, Any]) -> dict[str, Any]:
        run = await self.e.resume(env_of(req), str(m.get("run_id") or ""), str(m.get("from_step") or ""))
        return run_msg(run)


    # -- operator actions -------------------------------------------------------------------------

    async def InjectStepOutput(self, req: HttpRequest, m: dict[str, Any]) -> dict[str, Any]:
        raw = m.get("new_output") or b""
        try:
            value = json.loads(raw) if raw else None
        except ValueError:
            raise ApiError("invalid_argument", "new_output: must be JSON text") from None
        prev = await runops.inject_step_output(self.e, env_of(req), str(m.get("run_id") or ""),
                                               str(m.get("step_id") or ""), value,
                                               str(m.get("reason") or ""), emitted_by(req))
        out: dict[str, Any] = {"step_id": str(m.get("step_id") or "")}
        if prev is not None:
            out["previous_output"] = json.dumps(prev).encode()
        return out

    async def PatchStep(self, req: HttpRequest, m: dict[str, Any]) -> dict[str, Any]:
        run, step = await runops.patch_step(self.e, env_of(req), str(m.get("step_id") or ""),
                                            payload(m, "output"), str(m.get("reason") or ""),
                                            emitted_by(req))
        return step_msg(run.id, step)

    async def GetPausedState(self, req: HttpRequest, m: dict[str, Any]) -> dict[str, Any]:
        return await runops.paused_state(self.e, env_of(req), str(m.get("run_id") or ""))

    async def DeleteRun(self, req: HttpRequest, m: dict[str, Any]) -> dict[str, Any]:
        await runops.delete_run(self.e, env_of(req), str(m.get("id") or ""))
        return {}

    async def DeleteRuns(self, req: HttpRequest, m: dict[str, Any]) -> dict[str, Any]:
        status = NUMBER_RUN_STATUS[m["status"]].value if m.get("status") in NUMBER_RUN_STATUS else ""
        n = await runops.delete_matching_runs(self.e, env_of(req), str(m.get("function_id") or ""),
                                              status, m.get("until"))
        return {"deleted": n}

    async def ListFunctionHistory(self, req: HttpRequest, m: dict[str, Any]) -> dict[str, Any]:
        return await runops.function_history(self.e, env_of(req), str(m.get("function_id") or ""),
                                             m.get("limit") or 50, m.get("from_version") or 0)

    async def GetFunctionAtVersion(self, req: HttpRequest, m: dict[str, Any]) -> dict[str, Any]:
        return {"entry": await runops.function_at_version(self.e, env_of(req),
                                                          str(m.get("function_id") or ""),
                                                          m.get("version") or 0)}

    async def RollbackFunction(self, req: HttpRequest, m: dict[str, Any]) -> dict[str, Any]:
        fd = await runops.rollback_function(self.e, env_of(req), str(m.get("function_id") or ""),
                                            m.get("version") or 0, str(m.get("change_reason") or ""),
                                            emitted_by(req))
        return {"function": fd.proto(self.e.next_run(fd))}

    async def RedactEvent(self, req: HttpRequest, m: dict[str, Any]) -> dict[str, Any]:
        await runops.redact_event(self.e, env_of(req), str(m.get("event_id") or ""))
        return {}

    async def RedactRun(self, req: HttpRequest, m: dict[str, Any]) -> dict[str, Any]:
        await runops.redact_run(self.e, env_of(req), str(m.get("run_id") or ""))
        return {}

    async def RedactStep(self, req: HttpRequest, m: dict[str, Any]) -> dict[str, Any]:
        await runops.redact_step(self.e, env_of(req), str(m.get("step_id") or ""))
        return {}

    async def Health(self, req: HttpRequest, m: dict[str, Any]) -> dict[str, Any]:
        alive = self.e.journal.alive
        sched = self.e.scheduler_alive()
        comp = {"database": {"status": "healthy" if alive else "unhealthy"},
                "scheduler": {"status": "healthy" if sched else "unhealthy"},
                "dispatcher": {"status": "healthy" if sched else "unhealthy"}}
        return {"status": "healthy" if alive and sched else "unhealthy", "timestamp": now_ts(),
                "components": comp}

    async def Info(self, req: HttpRequest, m: dict[str, Any]) -> dict[str, Any]:
        env = env_of(req)
        return {"version": VERSION, "go_version": f"python {platform.python_version()}",
                "started_at": self.started_at, "function_count": len(self.e.list_functions(env)),
                "active_runs": sum(1 for r in self.e.runs.values() if r.env_id == env),
                "connected_workers": sum(1 for (e, _) in self.e.workers if e == env)}


def _sync_timeout(ms: Any) -> float:
    ms = ms if isinstance(ms, int) and ms > 0 else SYNC_DEFAULT_MS
    return min(ms, SYNC_MAX_MS) / 1000.0
