"""Operator actions on runs and functions (features.md §2.1, §3.4): step injection and patching,
paused-state introspection, deletion, function history and rollback, rerun.

They work on the engine's hot state and journal through the same rules as the engine itself:
change memory, persist, answer after commit.
"""

from __future__ import annotations

import hashlib
import sqlite3
from typing import Any

from .engine import Engine
from .errors import ApiError
from .functions import FunctionDef
from .jsonutil import canonical, dumps, loads, now_ts
from .runs import Run, RunStatus, Step

S = RunStatus
MAX_DELETE_RUNS = 10000


def _find_step(run: Run, ref: str) -> Step:
    """A step row by step id (the latest row for it) or by row id."""
    for s in reversed(run.steps):
        if ref in (s.step_id, s.id):
            return s
    raise ApiError("not_found", f"step not found: {ref}")


async def _hot(engine: Engine, env: str, rid: str) -> Run:
    run = engine.runs.get(rid)
    if run is None or run.env_id != env:
        loaded = await engine.load_run(env, rid)
        if loaded is None:
            raise ApiError("not_found", f"run not found: {rid}")
        return loaded
    return run


async def inject_step_output(engine: Engine, env: str, rid: str, step_ref: str, new_output: Any,
                             reason: str, actor: str) -> Any:
    """InjectStepOutput: the run must be paused; returns the previous output."""
    run = await _hot(engine, env, rid)
    if run.status != S.PAUSED or rid not in engine.runs:
        raise ApiError("failed_precondition", "InjectStepOutput needs a paused run")
    step = _find_step(run, step_ref)
    previous = step.output
    _overwrite(step, new_output)
    step.injected = True
    await engine._persist(runs=[run], steps=[(run, step)])
    return previous


async def patch_step(engine: Engine, env: str, step_row_id: str, output: Any, reason: str,
                     actor: str) -> tuple[Run, Step]:
    """PatchStep: the run must be paused or failed."""
    row = await engine.journal.read(lambda c: c.execute(
        "SELECT run_id FROM steps WHERE (id = ? OR step_id = ?) AND env_id = ?",
        (step_row_id, step_row_id, env)).fetchone())
    if row is None:
        raise ApiError("not_found", f"step not found: {step_row_id}")
    run = await _hot(engine, env, row["run_id"])
    if run.status not in (S.PAUSED, S.FAILED):
        raise ApiError("failed_precondition", "PatchStep needs a paused or failed run")
    if run.id not in engine.runs:  # a failed run is not hot: bring it back to edit its log
        run = await engine._rehydrate(run)
    step = _find_step(run, step_row_id)
    _overwrite(step, output)
    step.patched_at = now_ts()
    step.patched_by = actor or "dev"
    await engine._persist(runs=[run], steps=[(run, step)])
    return run, step


def _overwrite(step: Step, output: Any) -> None:
    if step.original_output is None and not step.injected and not step.patched_at:
        step.original_output = step.output
    step.output = output
    step.status = "completed"
    step.error = None
    step.updated_at = now_ts()


async def paused_state(engine: Engine, env: str, rid: str) -> dict[str, Any]:
    run = await _hot(engine, env, rid)
    steps = await engine.run_steps(env, rid)
    out = []
    hint = ""
    for s in steps:
        if s.status in ("completed", "failed") and s.stored_status != "superseded":
            info: dict[str, Any] = {"id": s.step_id, "name": s.name, "injected": s.injected,
                                    "step_type": s.step_type, "status": s.status}
            if s.output is not None:
                info["output"] = dumps(s.output).encode()
            if s.error is not None:
                info["error"] = dumps(s.error).encode()
            if s.ended_at:
                info["completed_at"] = s.ended_at
            out.append(info)
        elif s.status in ("sleeping", "waiting", "running"):
            hint = s.name
    return {"steps": out, "next_step_hint": hint, "pause_reason": run.pause_reason}


async def delete_runs(engine: Engine, env: str, run_ids: list[str]) -> int:
    """Delete terminal runs with their steps (features.md §3.4)."""
    if not run_ids:
        return 0
    for rid in run_ids:
        if rid in engine.runs:
            raise ApiError("failed_precondition", f"run {rid} is not finished")

    def w(conn: sqlite3.Connection) -> int:
        n = 0
        for rid in run_ids:
            conn.execute("DELETE FROM steps WHERE run_id = ? AND env_id = ?", (rid, env))
            n += conn.execute("DELETE FROM runs WHERE id = ? AND env_id = ? AND status IN "
                              "('completed','failed','cancelled')", (rid, env)).rowcount
        return n
    return await engine._persist(extra=w)


async def delete_run(engine: Engine, env: str, rid: str) -> None:
    run = await engine.load_run(env, rid)
    if run is None:
        raise ApiError("not_found", f"run not found: {rid}")
    if not run.terminal or rid in engine.runs:
        raise ApiError("failed_precondition", "only finished runs can be deleted")
    await delete_runs(engine, env, [rid])


async def delete_matching_runs(engine: Engine, env: str, function_id: str, status: str,
                               until: str | None) -> int:
    if not (function_id or status or until):
        raise ApiError("invalid_argument", "DeleteRuns needs at least one filter")
    if status and status not in ("completed", "failed", "cancelled"):
        raise ApiError("failed_precondition", "only finished runs can be deleted")
    where, args = ["env_id = ?", "status IN ('completed','failed','cancelled')"], [env]
    if function_id:
        where.append("function_id = ?")
        args.append(function_id)
    if status:
        where.append("status = ?")
        args.append(status)
    if until:
        where.append("created_at <= ?")
        args.append(until)
    rows = await engine.journal.read(lambda c: c.execute(
        f"SELECT id FROM runs WHERE {' AND '.join(where)} LIMIT ?", (*args, MAX_DELETE_RUNS)).fetchall())
    return await delete_runs(engine, env, [r["id"] for r in rows])


# -- function history ------------------------------------------------------------------------

def _entry(row: sqlite3.Row, env: str) -> dict[str, Any]:
    snap = FunctionDef(env, loads(row["snapshot"]), "active", row["version"], row["recorded_at"],
                       row["recorded_at"])
    return {"event_id": f"fnh_{row['function_id']}_{row['version']}", "entity_version": row["version"],
            "function_id": row["function_id"], "function_snapshot": snap.proto(),
            "actor_id": row["actor_id"], "change_reason": row["change_reason"],
            "change_type": row["change_type"], "recorded_at": row["recorded_at"]}


async def function_history(engine: Engine, env: str, fid: str, limit: int,
                           from_version: int) -> dict[str, Any]:
    limit = max(1, min(limit or 50, 200))
    rows = await engine.journal.read(lambda c: c.execute(
        "SELECT * FROM function_history WHERE env_id = ? AND function_id = ? AND version >= ? "
        "ORDER BY version LIMIT ?", (env, fid, from_version or 0, limit + 1)).fetchall())
    if not rows and (env, fid) not in engine.functions:
        raise ApiError("not_found", f"function not found: {fid}")
    return {"entries": [_entry(r, env) for r in rows[:limit]], "has_more": len(rows) > limit}


async def function_at_version(engine: Engine, env: str, fid: str, version: int) -> dict[str, Any]:
    row = await engine.journal.read(lambda c: c.execute(
        "SELECT * FROM function_history WHERE env_id = ? AND function_id = ? AND version = ?",
        (env, fid, version)).fetchone())
    if row is None:
        raise ApiError("not_found", f"function {fid} has no version {version}")
    return _entry(row, env)


async def rollback_function(engine: Engine, env: str, fid: str, version: int, reason: str,
                            actor: str) -> FunctionDef:
    """Re-apply an old snapshot as a new version (change type ``rollback``)."""
    entry = await function_at_version(engine, env, fid, version)
    old = await engine.journal.read(lambda c: c.execute(
        "SELECT snapshot FROM function_history WHERE env_id = ? AND function_id = ? AND version = ?",
        (env, fid, version)).fetchone())
    config = loads(old["snapshot"])
    cur = engine.get_function(env, fid)
    if cur.same_config(config):
        return cur
    fd = FunctionDef(env, config, cur.status, cur.version + 1, cur.created_at, now_ts())

    def w(conn: sqlite3.Connection) -> None:
        conn.execute("UPDATE functions SET config = ?, version = ?, updated_at = ? WHERE env_id = ? "
                     "AND id = ?", (dumps(config), fd.version, fd.updated_at, env, fid))
        conn.execute("INSERT OR REPLACE INTO function_history VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                     (env, fid, fd.version, "rollback", dumps(config),
                      reason or f"rollback to version {entry['entity_version']}", actor, fd.updated_at))
    engine.functions[(env, fid)] = fd
    await engine._persist(extra=w)
    engine._arm_cron(fd)
    return fd


async def rerun(engine: Engine, env: str, rid: str, actor: str) -> Run:
    """The dashboard's rerun: a new run of the same function with the original input and
    ``metadata.rerun_of`` on its event (features.md §3.4)."""
    old = await engine.load_run(env, rid)
    if old is None:
        raise ApiError("not_found", f"run not found: {rid}")
    run, _, _ = await engine.start_invoke(env, old.function_id, old.input, None, emitted_by=actor,
                                          metadata={"rerun_of": rid})
    return run


# -- redaction (features.md §1.3) --------------------------------------------------------------

def redacted(value: Any) -> dict[str, Any]:
    """The placeholder that replaces redacted data: the hash of the original canonical JSON."""
    if isinstance(value, dict) and value.get("$redacted") is True:
        return value  # idempotent: redacting twice keeps the first placeholder
    return {"$redacted": True, "sha256": hashlib.sha256(canonical(value).encode()).hexdigest(),
            "redactedAt": now_ts()}


async def redact_event(engine: Engine, env: str, event_id: str) -> None:
    row = await engine.journal.read(lambda c: c.execute(
        "SELECT data FROM events WHERE id = ? AND env_id = ?", (event_id, env)).fetchone())
    if row is None:
        raise ApiError("not_found", f"event not found: {event_id}")
    placeholder = redacted(loads(row["data"]))
    for run in engine.runs.values():  # hot runs carry their triggering event in memory
        if run.event.get("id") == event_id:
            run.event = {**run.event, "data": placeholder}
    await engine._persist(extra=lambda c: c.execute(
        "UPDATE events SET data = ? WHERE id = ? AND env_id = ?", (dumps(placeholder), event_id, env)))


async def redact_run(engine: Engine, env: str, rid: str) -> None:
    run = await engine.load_run(env, rid)
    if run is None:
        raise ApiError("not_found", f"run not found: {rid}")
    if not run.terminal or rid in engine.runs:
        raise ApiError("failed_precondition", "only finished runs can be redacted")
    inp, out = redacted(run.input), (None if run.output is None else redacted(run.output))
    await engine._persist(extra=lambda c: c.execute(
        "UPDATE runs SET input = ?, output = ? WHERE id = ? AND env_id = ?",
        (dumps(inp), None if out is None else dumps(out), rid, env)))


async def redact_step(engine: Engine, env: str, step_row_id: str) -> None:
    row = await engine.journal.read(lambda c: c.execute(
        "SELECT s.run_id, s.output, s.original_output, r.status FROM steps s JOIN runs r ON "
        "r.id = s.run_id WHERE s.id = ? AND s.env_id = ?", (step_row_id, env)).fetchone())
    if row is None:
        raise ApiError("not_found", f"step not found: {step_row_id}")
    if row["status"] not in ("completed", "failed", "cancelled") or row["run_id"] in engine.runs:
        raise ApiError("failed_precondition", "only steps of finished runs can be redacted")
    out = None if row["output"] is None else dumps(redacted(loads(row["output"])))
    orig = None if row["original_output"] is None else dumps(redacted(loads(row["original_output"])))
    await engine._persist(extra=lambda c: c.execute(
        "UPDATE steps SET output = ?, original_output = ? WHERE id = ?", (out, orig, step_row_id)))
