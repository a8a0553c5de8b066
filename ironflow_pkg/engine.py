"""The durable execution engine: events -> runs -> segments leased to pull workers.

Hot state lives in memory (hot runs with their step logs, ready queues, timers, waiters, worker
sessions, held polls); the journal is the truth and everything here is rebuilt from it at
start-up (:meth:`Engine.load`). Every operation runs on the event loop: it checks and changes the
memory state synchronously, queues the matching SQL on the journal, and answers only after the
journal committed it (acknowledged means durable). The journal's queue is FIFO, so durable state
changes in the same order as memory.

Specification: worker-protocol.md §2-§4, features.md §1-§3.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import secrets
import sqlite3
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from .errors import ApiError
from .flowcontrol import FlowControl, Key, Lane, cron_tick_sql, lane_key
from .functions import FunctionDef, normalize
from .items import Item, next_seq, store_system_event
from .journal import Journal
from .jsonutil import (MISSING, canonical, data_path_get, dumps, fmt_ts, loads, name_matches,
                       now_ts, parse_duration, parse_ts, path_get)
from .runs import TERMINAL, Run, RunStatus, Step, run_from_row, save_run, save_step, step_from_row

log = logging.getLogger("ironflow.engine")
S = RunStatus

RESERVED_PREFIXES = ("system.", "events:", "topic:", "entity:", "public.", "ironflow.")
#: Long-poll hold cap (spec README §6.3).
MAX_POLL_WAIT = 25.0
#: Checkpoint batch cap (features.md §22).
MAX_STEPS_PER_BODY = 500
DEFAULT_WAIT_TIMEOUT = 7 * 86400.0
DEFAULT_INVOKE_TIMEOUT_MS = 30000


_ID_PREFIX = secrets.token_hex(8)  # 64 random bits per process
_id_counter = itertools.count(int.from_bytes(secrets.token_bytes(4), "big"))


def new_id(prefix: str) -> str:
    """``<prefix>_<32 hex>``: a per-process random half and a counter. Unique without a system
    call per id (ids are minted on every event, run and step)."""
    return f"{prefix}_{_ID_PREFIX}{next(_id_counter) & 0xFFFFFFFFFFFFFFFF:016x}"


def stale() -> ApiError:
    """The fence error (worker-protocol.md §2.7): the literal STALE_EXECUTION in ``error``."""
    return ApiError("aborted", "execution is stale", error="STALE_EXECUTION")


def validate_event_name(name: Any, field_name: str = "name") -> str:
    if not isinstance(name, str) or not name:
        raise ApiError("invalid_argument", f"{field_name}: event name is required")
    if len(name) > 256 or not name.isprintable() or any(c.isspace() for c in name):
        raise ApiError("invalid_argument", f"{field_name}: 1-256 characters without whitespace "
                       "or control characters")
    if name.startswith(RESERVED_PREFIXES):
        raise ApiError("invalid_argument", f"{field_name}: the prefix of {name!r} is reserved")
    return name


@dataclass
class WorkerSession:
    env_id: str
    id: str
    function_ids: list[str]
    max_concurrent: int
    hostname: str = ""
    labels: dict[str, Any] = field(default_factory=dict)
    version: dict[str, Any] = field(default_factory=dict)
    registered_at: str = ""
    last_seen: float = 0.0
    last_heartbeat: str = ""
    leased: set[str] = field(default_factory=set)

    def info(self) -> dict[str, Any]:
        return {"id": self.id, "hostname": self.hostname, "function_ids": self.function_ids,
                "labels": self.labels, "max_concurrent": self.max_concurrent,
                "active_jobs": len(self.leased), "last_heartbeat": self.last_heartbeat,
                "registered_at": self.registered_at, "transport": "rest", "version": self.version}


class Engine:
    def __init__(self, journal: Journal, *, lease_ttl: float = 30.0, lease_grace: float = 5.0,
                 worker_timeout: float = 90.0, poll_max_wait: float = MAX_POLL_WAIT,
                 clock: Callable[[], float] = time.time) -> None:
        self.journal = journal
        self.lease_ttl = lease_ttl
        self.lease_grace = lease_grace
        self.worker_timeout = worker_timeout
        self.poll_max_wait = min(poll_max_wait, MAX_POLL_WAIT)
        self.clock = clock
        self.functions: dict[tuple[str, str], FunctionDef] = {}
        self.runs: dict[str, Run] = {}  # hot (non-terminal) runs
        self.workers: dict[tuple[str, str], WorkerSession] = {}
        self._ready: dict[tuple[str, str], deque[str]] = {}
        self._ready_seq = itertools.count(1)
        self._active: dict[tuple[str, str, str], set[str]] = {}
        self._timers: list[tuple[float, int, str, str]] = []
        self._timer_seq = itertools.count()
        self._timer_wake = asyncio.Event()
        self._pollers: dict[str, set[asyncio.Event]] = {}
        self._watchers: dict[str, list[asyncio.Future[Run]]] = {}
        self._idem_pending: dict[tuple[str, str], asyncio.Future[dict[str, Any]]] = {}
        #: Runs waiting for an event, per environment (entries are checked lazily).
        self._event_waiters: dict[str, dict[str, Run]] = {}
        self._task: asyncio.Task[None] | None = None
        self.last_tick = 0.0
        self.flow = FlowControl()
        #: Schema enforcement on emit: (env, name, version, data) -> schema hash or "" (raises
        #: ApiError to refuse the emit). The schema registry installs its own.
        self.validate_event: Callable[[str, str, int, Any], str] = lambda env, n, v, d: ""
        #: Receives every stored event as an item of the log, right after its commit (the
        #: subscription hub installs itself here).
        self.on_item: Callable[[Item], None] | None = None
        #: Resolves a function's declared secrets at dispatch: the values, or the name of the
        #: first missing one. The secrets store installs its own.
        self.secrets: Callable[[str, list[str]], Any] = self._no_secret_store

    # == lifecycle =================================================================================

    def load(self) -> None:
        """Rebuild hot state from the journal (start-up recovery, worker-protocol.md §2.9)."""
        def q(conn: sqlite3.Connection) -> tuple[list[Any], list[Any], list[Any], dict[str, Any]]:
            fns = conn.execute("SELECT env_id, id, config, status, version, created_at, updated_at "
                               "FROM functions").fetchall()
            runs = conn.execute("SELECT * FROM runs WHERE status NOT IN "
                                "('completed','failed','cancelled') ORDER BY created_at, id").fetchall()
            steps = conn.execute("SELECT s.* FROM steps s JOIN runs r ON r.id = s.run_id WHERE "
                                 "r.status NOT IN ('completed','failed','cancelled') "
                                 "ORDER BY s.run_id, s.sequence").fetchall()
            lanes = conn.execute("SELECT * FROM debounce_lanes").fetchall()
            ticks = conn.execute("SELECT env_id, function_id, trigger_index, max(fire_time) AS t "
                                 "FROM cron_ticks GROUP BY env_id, function_id, trigger_index").fetchall()
            starts = conn.execute("SELECT env_id, function_id, throttle_key, claimed_at FROM runs "
                                  "WHERE execution_seq > 0 AND claimed_at >= ? ORDER BY claimed_at",
                                  (fmt_ts(self.clock() - 86400),)).fetchall()
            ev_ids = {r["event_id"] for r in runs} | {r["event_id"] for r in lanes}
            events: dict[str, Any] = {}
            for eid in ev_ids:
                row = conn.execute("SELECT * FROM events WHERE id = ?", (eid,)).fetchone()
                if row is not None:
                    events[eid] = event_wire(row)
            return fns, runs, steps, events, lanes, ticks, starts
        fns, runs, steps, events, lanes, ticks, starts = self.journal.read_sync(q)
        for t in ticks:
            self.flow.cron_last[(t["env_id"], t["function_id"], str(t["trigger_index"]))] = parse_ts(t["t"])
        for ln in lanes:
            lane = Lane(ln["env_id"], ln["function_id"], ln["lane_key"], ln["function_version"],
                        events.get(ln["event_id"], {"id": ln["event_id"]}), ln["armed_at"], ln["fires_at"])
            self.flow.lanes[(lane.env_id, lane.function_id, lane.key)] = lane
            self._timer(lane.fires_at, "debounce", _tkey((lane.env_id, lane.function_id, lane.key)))
        for r in fns:
            fd = FunctionDef(r["env_id"], loads(r["config"]), r["status"], r["version"],
                             r["created_at"], r["updated_at"])
            self.functions[(fd.env_id, fd.id)] = fd
            self._arm_cron(fd)
        for r in starts:
            fd = self.functions.get((r["env_id"], r["function_id"]))
            if fd is not None and fd.config.get("throttle") and r["claimed_at"]:
                # Approximation after a restart: the latest segment start stands for the first.
                self.flow.record_start(fd, r["throttle_key"], parse_ts(r["claimed_at"]))
        by_run: dict[str, list[Step]] = {}
        for s in steps:
            by_run.setdefault(s["run_id"], []).append(step_from_row(s))
        now = self.clock()
        for row in runs:
            run = run_from_row(row, events.get(row["event_id"], {}))
            run.steps = by_run.get(run.id, [])
            self.runs[run.id] = run
            self._restore(run, now)
        log.info("engine state rebuilt", extra={"fields": {"functions": len(self.functions),
                                                            "open_runs": len(self.runs)}})

    def _restore(self, run: Run, now: float) -> None:
        """Re-arm queues, timers and waiters for one open run after a restart."""
        if run.timeout_at is not None:
            self._timer(run.timeout_at, "timeout", run.id)
        if run.status == S.WAITING_FOR_CAPACITY:
            self._enqueue(run)
        elif run.status == S.RUNNING:
            self._add_active(run)
            # The lease is persisted; it expires (or already has) and the segment is recovered.
            self._timer((run.lease_expires_at or now) + self.lease_grace, "lease", run.id)
        if run.wait is not None and run.status in (S.WAITING, S.PAUSED):
            self._arm_wait(run)

    def scheduler_alive(self, max_age: float = 5.0) -> bool:
        """The scheduler loop ticked within ``max_age`` seconds (rest-api.md §5.2 readiness)."""
        return time.monotonic() - self.last_tick <= max_age

    async def start(self) -> None:
        self.last_tick = time.monotonic()
        self._task = asyncio.create_task(self._scheduler())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        for evs in self._pollers.values():
            for ev in evs:
                ev.set()

    # == durable writes ============================================================================

    def _persist(self, runs: list[Run] = (), steps: list[tuple[Run, Step]] = (),
                 extra: Callable[[sqlite3.Connection], Any] | None = None,
                 settle: list[Run] = (),
                 events: list[tuple[str, str, dict[str, Any]]] = ()) -> Awaitable[Any]:
        """Queue the journal write for these rows now (FIFO with every other change) and return
        an awaitable that resolves once it is committed. Callers await it before answering.
        Status changes of the runs become system events in the same transaction."""
        runs, steps = list(runs), list(steps)
        settled: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        now = now_ts()
        system: list[tuple[str, str, dict[str, Any]]] = list(events)
        for r in runs:
            r.updated_at = now
            r.row_version += 1
            r.settled = settled
            if r.status != r.published_status:
                system.append(_run_event(r))
                r.published_status = r.status
        for r, st in steps:
            system.append(_step_event(r, st))
        for r in settle:
            r.settled = settled
        stored: list[Item] = []

        def w(conn: sqlite3.Connection) -> Any:
            result = extra(conn) if extra is not None else None
            for r in runs:
                save_run(conn, r)
            for r, s in steps:
                save_step(conn, r, s)
            for env, subject, data in system:
                stored.append(store_system_event(conn, env, subject, data, now, new_id("evt")))
            return result
        return self._committed(self.journal.submit(w), runs, settled, stored)

    async def _committed(self, fut: asyncio.Future[Any], runs: list[Run],
                         settled: asyncio.Future[None], stored: list[Item] = ()) -> Any:
        try:
            result = await fut
        except ApiError:
            settled.set_result(None)
            raise
        except Exception as e:
            settled.set_result(None)
            log.error("journal write failed", extra={"fields": {"error": repr(e)}})
            raise ApiError("unavailable", "storage is unavailable, retry shortly", retry_after=1) from e
        settled.set_result(None)
        if self.on_item is not None:
            for item in stored:
                self.on_item(item)
        for r in runs:
            if r.terminal:
                self.runs.pop(r.id, None)
                for watcher in self._watchers.pop(r.id, []):
                    if not watcher.done():
                        watcher.set_result(r)
        return result

    # == functions =================================================================================

    async def register_function(self, env: str, req: dict[str, Any],
                                actor: str = "") -> tuple[FunctionDef, bool]:
        config = normalize(req)
        if config["preferred_mode"] == "push":
            # Nothing would ever execute a push function yet: refuse instead of queueing forever.
            raise ApiError("unimplemented", "push mode is not implemented by this server yet; "
                           "run the function with a pull worker")
        key = (env, config["id"])
        cur = self.functions.get(key)
        now = now_ts()
        if cur is not None and cur.same_config(config):
            return cur, False
        created = cur is None
        fd = FunctionDef(env, config, cur.status if cur else "active",
                         1 if created else cur.version + 1, cur.created_at if cur else now, now)
        reason = str(req.get("change_reason") or "")

        def w(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT INTO functions (env_id, id, config, status, version, created_at, "
                         "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(env_id, id) DO UPDATE "
                         "SET config = excluded.config, version = excluded.version, "
                         "updated_at = excluded.updated_at",
                         (env, fd.id, dumps(config), fd.status, fd.version, fd.created_at, now))
            conn.execute("INSERT OR REPLACE INTO function_history (env_id, function_id, version, "
                         "change_type, snapshot, change_reason, actor_id, recorded_at) "
                         "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                         (env, fd.id, fd.version, "update", dumps(config), reason, actor, now))
        self.functions[key] = fd
        await self._persist(extra=w, events=[_function_event(fd, "registered" if created else "updated")])
        self._arm_cron(fd)
        self._kick(env)
        return fd, created

    def get_function(self, env: str, fid: str) -> FunctionDef:
        fd = self.functions.get((env, fid))
        if fd is None:
            raise ApiError("not_found", f"function not found: {fid}")
        return fd

    def next_run(self, fd: FunctionDef) -> str | None:
        """Next cron fire time across the function's cron triggers (features.md §2.3)."""
        from datetime import datetime, timezone
        now = datetime.fromtimestamp(self.clock(), timezone.utc)
        times = [c.next_after(now) for c in fd.crons if c is not None]
        return fmt_ts(min(times).timestamp()) if times and fd.status != "archived" else None

    def list_functions(self, env: str) -> list[FunctionDef]:
        return sorted((f for (e, _), f in self.functions.items() if e == env), key=lambda f: f.id)

    async def set_function_status(self, env: str, fid: str, status: str, actor: str = "") -> FunctionDef:
        fd = self.get_function(env, fid)
        if status not in ("active", "paused", "archived"):
            raise ApiError("invalid_argument", "status: must be active, paused or archived")
        if fd.status == status:
            return fd
        fd.status = status
        fd.version += 1
        fd.updated_at = now_ts()

        def w(conn: sqlite3.Connection) -> None:
            conn.execute("UPDATE functions SET status = ?, version = ?, updated_at = ? "
                         "WHERE env_id = ? AND id = ?", (status, fd.version, fd.updated_at, env, fid))
            conn.execute("INSERT OR REPLACE INTO function_history VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                         (env, fid, fd.version, "status_change", dumps(fd.config), "", actor,
                          fd.updated_at))
        await self._persist(extra=w, events=[_function_event(fd, "status_changed")])
        self._arm_cron(fd)
        self._kick(env)
        return fd

    async def delete_function(self, env: str, fid: str, actor: str = "") -> None:
        fd = self.get_function(env, fid)
        del self.functions[(env, fid)]
        for k in [k for k in self.flow.cron_next if k[:2] == (env, fid)]:
            del self.flow.cron_next[k]
        lanes = [ln for k, ln in self.flow.lanes.items() if k[:2] == (env, fid)]
        for ln in lanes:
            del self.flow.lanes[(ln.env_id, ln.function_id, ln.key)]
        changed = []
        for run in list(self.runs.values()):
            if run.env_id == env and run.function_id == fid and run.status in (
                    S.WAITING_FOR_CAPACITY, S.WAITING, S.PAUSED):
                self._finish(run, S.FAILED, error={"message": f"function not found: {fid}",
                                                   "code": "FUNCTION_NOT_FOUND", "retryable": False})
                changed.append(run)
        now = now_ts()

        def w(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM functions WHERE env_id = ? AND id = ?", (env, fid))
            for ln in lanes:
                ln.delete(conn)
            conn.execute("INSERT OR REPLACE INTO function_history VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                         (env, fid, fd.version + 1, "delete", dumps(fd.config), "", actor, now))
        await self._persist(runs=changed, extra=w, events=[_function_event(fd, "deleted")])

    # == events ====================================================================================

    async def emit(self, env: str, name: str, data: Any, *, metadata: dict[str, Any] | None = None,
                   idempotency_key: str | None = None, version: int = 1, source: str = "api",
                   emitted_by: str = "", namespace: str = "default") -> dict[str, Any]:
        """features.md §1.1: store, cancelOn, waiters, triggers; answer after commit."""
        validate_event_name(name)
        if idempotency_key:
            key = (env, idempotency_key)
            pending = self._idem_pending.get(key)
            if pending is not None:
                first = await asyncio.shield(pending)
                return {**first, "duplicate": True}
            found = await self.journal.read(lambda c: c.execute(
                "SELECT id, run_ids FROM events WHERE env_id = ? AND idempotency_key = ?",
                (env, idempotency_key)).fetchone())
            if key in self._idem_pending:  # another emit claimed it while we read
                first = await asyncio.shield(self._idem_pending[key])
                return {**first, "duplicate": True}
            if found is not None:
                return {"event_id": found["id"], "run_ids": loads(found["run_ids"]), "duplicate": True}
            fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
            self._idem_pending[key] = fut
            try:
                result = await self._emit(env, name, data, metadata, idempotency_key, version,
                                          source, emitted_by, namespace)
            except BaseException as e:
                fut.set_exception(e)
                fut.exception()  # consumed: waiters re-raise their own copy
                raise
            else:
                fut.set_result(result)
            finally:
                self._idem_pending.pop(key, None)
            return result
        return await self._emit(env, name, data, metadata, None, version, source, emitted_by,
                                namespace)

    def _event(self, env: str, name: str, data: Any, metadata: dict[str, Any] | None,
               idem: str | None, version: int, source: str, emitted_by: str) -> dict[str, Any]:
        ev: dict[str, Any] = {"id": new_id("evt"), "name": name, "data": data, "timestamp": now_ts(),
                              "version": version or 1, "source": source}
        if idem:
            ev["idempotency_key"] = idem
        if metadata:
            ev["metadata"] = metadata
        if emitted_by:
            ev["emittedBy"] = emitted_by
        return ev

    async def _emit(self, env: str, name: str, data: Any, metadata: dict[str, Any] | None,
                    idem: str | None, version: int, source: str, emitted_by: str,
                    namespace: str = "default") -> dict[str, Any]:
        schema_hash = self.validate_event(env, name, version, data)
        ev = self._event(env, name, data, metadata, idem, version, source, emitted_by)
        changed: list[Run] = []
        steps: list[tuple[Run, Step]] = []
        self._apply_cancel_on(env, ev, changed)
        self._resolve_waiters(env, ev, changed, steps)
        new_runs = []
        lanes: list[Lane] = []
        for fd in self.triggered(env, ev):
            if fd.config.get("debounce"):
                lane = self.flow.debounce(fd, ev, self.clock())
                lanes.append(lane)
                self._timer(lane.fires_at, "debounce", _tkey((lane.env_id, lane.function_id, lane.key)))
                continue
            new_runs.append(self._new_run(fd, ev, data))
        run_ids = [r.id for r in new_runs]

        def w(conn: sqlite3.Connection) -> int:
            seq = _insert_event(conn, env, ev, run_ids, schema_hash, namespace)
            for lane in lanes:
                lane.save(conn)
            return seq
        seq = await self._persist(runs=changed + new_runs, steps=steps, extra=w)
        self._publish(env, ev, seq, namespace)
        for r in new_runs:
            if not r.terminal:
                self._enqueue(r)
        return {"event_id": ev["id"], "run_ids": run_ids, "duplicate": False}

    def _publish(self, env: str, ev: dict[str, Any], seq: int, namespace: str = "default") -> None:
        if self.on_item is not None:
            self.on_item(Item(seq, env, namespace, "events", ev["name"], ev["id"], ev["data"],
                              ev.get("metadata"), ev["source"], ev["timestamp"]))

    def triggered(self, env: str, ev: dict[str, Any]) -> list[FunctionDef]:
        """Functions an event starts (features.md §1.1 step 6), in function-id order."""
        out = []
        for fd in self.list_functions(env):
            if fd.status not in ("active", "paused"):
                continue
            for i, t in enumerate(fd.config["triggers"]):
                if not t["event"] or not name_matches(t["event"], ev["name"]):
                    continue
                expr = fd.expressions[i]
                if expr is not None and not expr.test({"event": ev, "data": ev.get("data")}):
                    continue
                out.append(fd)
                break
        return out

    async def invoke(self, env: str, fid: str, data: Any, idempotency_key: str | None = None,
                     metadata: dict[str, Any] | None = None, parent: tuple[Run, str] | None = None,
                     emitted_by: str = "") -> tuple[Run, dict[str, Any], bool]:
        """Start exactly one run of ``fid`` with a synthetic ``invoke/<fid>`` event."""
        fd = self.functions.get((env, fid))
        if fd is None or fd.status == "archived":
            raise ApiError("not_found", f"function not found: {fid}")
        if idempotency_key:
            found = await self.journal.read(lambda c: c.execute(
                "SELECT e.id AS event_id, r.* FROM events e JOIN runs r ON r.event_id = e.id "
                "WHERE e.env_id = ? AND e.idempotency_key = ?", (env, idempotency_key)).fetchone())
            if found is not None:
                run = self.runs.get(found["id"]) or run_from_row(found, {})
                return run, {"id": found["event_id"]}, True
        ev = self._event(env, f"invoke/{fid}", data, metadata, idempotency_key, 1, "invoke", emitted_by)
        run = self._new_run(fd, ev, data)
        if parent is not None:
            run.parent_run_id, run.parent_step_id = parent[0].id, parent[1]
        return run, ev, False

    def _new_run(self, fd: FunctionDef, ev: dict[str, Any], data: Any) -> Run:
        now = self.clock()
        retry = dict(fd.config["retry"])
        run = Run(id=new_id("run"), env_id=fd.env_id, function_id=fd.id,
                  function_version=fd.version, event_id=ev["id"], event_name=ev["name"], event=ev,
                  status=S.WAITING_FOR_CAPACITY, max_attempts=retry["max_attempts"], retry=retry,
                  input=data, created_at=ev["timestamp"], updated_at=ev["timestamp"],
                  execution_mode=fd.mode, timeout_at=now + fd.config["timeout_ms"] / 1000.0)
        conc = fd.config.get("concurrency")
        if conc and conc.get("key"):
            v = data_path_get(data, conc["key"])
            run.concurrency_key = "" if v is MISSING else canonical(v)
        thr = fd.config.get("throttle")
        if thr:
            key = lane_key(thr["key"], data)
            if key is None:
                # features.md §2.5: an unresolvable throttle key fails the run at once.
                run.status = S.FAILED
                run.ended_at = ev["timestamp"]
                run.error = {"message": f"throttle key {thr['key']!r} not found in the event data",
                             "code": "THROTTLE_KEY_UNRESOLVED", "retryable": False}
                return run
            run.throttle_key = key
        if fd.config["actor_key"]:
            v = path_get({**ev, "data": data}, fd.config["actor_key"])
            run.actor_id = "" if v is MISSING else (v if isinstance(v, str) else canonical(v))
        self.runs[run.id] = run
        self._timer(run.timeout_at, "timeout", run.id)
        return run

    async def start_invoke(self, env: str, fid: str, data: Any, idempotency_key: str | None,
                           emitted_by: str = "", metadata: dict[str, Any] | None = None) -> tuple[Run, str, bool]:
        run, ev, dup = await self.invoke(env, fid, data, idempotency_key, metadata, emitted_by=emitted_by)
        if not dup:
            seq = await self._persist(runs=[run], extra=lambda c: _insert_event(c, env, ev, [run.id]))
            self._publish(env, ev, seq)
            if not run.terminal:
                self._enqueue(run)
        return run, ev["id"], dup

    def _apply_cancel_on(self, env: str, ev: dict[str, Any], changed: list[Run]) -> None:
        if not any(e == env and any(name_matches(c["event"], ev["name"]) for c in f.config["cancel_on"])
                   for (e, _), f in self.functions.items()):
            return
        for run in list(self.runs.values()):
            if run.env_id != env or run.terminal or run.event_id == ev["id"]:
                continue
            fd = self.functions.get((env, run.function_id))
            if fd is None or not fd.config["cancel_on"]:
                continue
            for spec in fd.config["cancel_on"]:
                if not name_matches(spec["event"], ev["name"]):
                    continue
                if spec["match"]:
                    a = path_get(ev, spec["match"])
                    b = path_get(run.event, spec["match"])
                    if a is MISSING or b is MISSING or canonical(a) != canonical(b):
                        continue
                self._finish(run, S.CANCELLED, error={"message": f"cancelled by event {ev['name']}",
                                                      "code": "CANCELLED"}, cause="cancel-on-event")
                changed.append(run)
                break

    # == waits =====================================================================================

    def _arm_wait(self, run: Run) -> None:
        w = run.wait or {}
        if w.get("kind") == "sleep" or w.get("kind") == "retry":
            self._timer(w["until"], "wake", run.id)
        elif w.get("kind") in ("event", "invoke"):
            self._timer(w["deadline"], "wait_deadline", run.id)
            if w["kind"] == "event":
                self._event_waiters.setdefault(run.env_id, {})[run.id] = run

    def _resolve_waiters(self, env: str, ev: dict[str, Any], changed: list[Run],
                         steps: list[tuple[Run, Step]]) -> None:
        waiters = self._event_waiters.get(env, {})
        for run in list(waiters.values()):
            w = run.wait
            if run.terminal or not w or w.get("kind") != "event":
                waiters.pop(run.id, None)
                continue
            if not name_matches(w["event"], ev["name"]):
                continue
            match = w.get("match") or ""
            if match:
                got = path_get(ev, match)
                if got is MISSING:
                    continue
                if w.get("match_value") is not None:
                    text = got if isinstance(got, str) else dumps(got)
                    if text != w["match_value"]:
                        continue
                else:
                    want = path_get(run.event, match)
                    if want is MISSING or canonical(want) != canonical(got):
                        continue
            waiters.pop(run.id, None)
            step = run.steps[w["seq"]]
            step.status, step.output = "completed", _event_output(ev)
            step.ended_at = step.updated_at = now_ts()
            run.wait = None
            steps.append((run, step))
            self._wake(run)
            changed.append(run)

    def _wake(self, run: Run) -> None:
        """A wait resolved: make the run runnable (a paused run stays paused until resumed)."""
        run.wake_at = None
        if run.status == S.WAITING:
            run.transition(S.WAITING_FOR_CAPACITY)
            self._enqueue(run)

    # == dispatch ==================================================================================

    def _enqueue(self, run: Run) -> None:
        run.ready_seq = next(self._ready_seq)
        self._ready.setdefault((run.env_id, run.function_id), deque()).append(run.id)
        self._kick(run.env_id)

    def _kick(self, env: str) -> None:
        for ev in self._pollers.get(env, ()):
            ev.set()

    def _lane(self, run: Run) -> tuple[str, str, str]:
        return (run.env_id, run.function_id, run.concurrency_key)

    def _add_active(self, run: Run) -> None:
        self._active.setdefault(self._lane(run), set()).add(run.id)

    def _release(self, run: Run) -> None:
        lane = self._active.get(self._lane(run))
        if lane is not None:
            lane.discard(run.id)
        for (env, _), s in self.workers.items():
            if env == run.env_id:
                s.leased.discard(run.id)
        self._kick(run.env_id)

    def _pick(self, session: WorkerSession) -> Run | None:
        best: tuple[int, deque[str], Run] | None = None
        for fid in session.function_ids:
            fd = self.functions.get((session.env_id, fid))
            if fd is None or fd.status == "paused" or fd.mode != "pull":
                continue
            archived = fd.status == "archived"  # in-flight runs continue (features.md §2.1)
            q = self._ready.get((session.env_id, fid))
            while q:
                run = self.runs.get(q[0])
                if run is None or run.status != S.WAITING_FOR_CAPACITY or run.ready_seq == 0:
                    q.popleft()  # stale entry: the run moved on
                    continue
                break
            if not q:
                continue
            conc = fd.config.get("concurrency")
            thr = fd.config.get("throttle")
            now = self.clock()
            for rid in q:
                run = self.runs[rid]
                if run.status != S.WAITING_FOR_CAPACITY or (archived and run.execution_seq == 0):
                    continue
                if conc and len(self._active.get(self._lane(run), ())) >= conc["limit"]:
                    continue
                if thr and run.execution_seq == 0:
                    ok, free_at = self.flow.throttle_allows(fd, run.throttle_key, now)
                    if not ok:
                        self._timer(free_at, "kick", run.env_id)
                        continue
                if best is None or run.ready_seq < best[0]:
                    best = (run.ready_seq, q, run)
                break
        if best is None:
            return None
        best[1].remove(best[2].id)
        return best[2]

    def _assign(self, session: WorkerSession, run: Run) -> None:
        now = self.clock()
        run.transition(S.RUNNING)
        run.ready_seq = 0
        run.execution_seq += 1
        run.lease_token = secrets.token_hex(16)
        run.lease_expires_at = now + self.lease_ttl
        run.acked = False
        run.claimed_by = run.worker_id = session.id
        run.claimed_at = fmt_ts(now)
        if run.execution_seq == 1:
            fd = self.functions.get((run.env_id, run.function_id))
            if fd is not None and fd.config.get("throttle"):
                self.flow.record_start(fd, run.throttle_key, now)
        session.leased.add(run.id)
        self._add_active(run)
        self._timer(run.lease_expires_at + self.lease_grace, "lease", run.id)

    def assignment(self, run: Run, secrets_map: dict[str, str] | None = None) -> dict[str, Any]:
        """JobAssignment (worker-protocol.md §2.6)."""
        memo = []
        for s in run.steps:
            if s.stored_status == "superseded":
                continue
            if s.status == "completed" or (s.status == "failed" and s.step_type == "invoke_function"):
                row = {"step_id": s.step_id, "name": s.name, "output": s.output, "status": s.status}
                if s.status == "failed":
                    row["error"] = s.error if isinstance(s.error, dict) else {"message": str(s.error)}
                memo.append(row)
        # Several completed rows for one step id: the highest sequence wins.
        by_id: dict[str, dict[str, Any]] = {}
        for row in memo:
            by_id[row["step_id"]] = row
        job: dict[str, Any] = {
            "job_id": run.job_id, "run_id": run.id, "function_id": run.function_id,
            "attempt": run.attempt, "event": run.event, "completed_steps": list(by_id.values()),
            "step_sequence_base": len(run.steps), "execution_seq": run.execution_seq,
            "lease_token": run.lease_token, "lease_expires_at": fmt_ts(run.lease_expires_at or 0),
            "max_attempts": run.max_attempts, "on_exhausted": run.retry.get("on_exhausted", "pause"),
        }
        if secrets_map is not None:
            job["context"] = {"secrets": secrets_map}
        if run.actor_id:
            job["actor_id"] = run.actor_id
        return job

    # == workers ===================================================================================

    def register_worker(self, env: str, wid: str, body: dict[str, Any]) -> dict[str, Any]:
        if not wid or len(wid) > 256 or not wid.isprintable():
            raise ApiError("invalid_argument", "worker_id: 1-256 printable characters")
        fids = body.get("function_ids")
        if not isinstance(fids, list) or not all(isinstance(f, str) for f in fids):
            raise ApiError("invalid_argument", "function_ids: a list of function ids is required")
        mcj = body.get("max_concurrent_jobs")
        if isinstance(mcj, bool) or not isinstance(mcj, int) or mcj < 1:
            raise ApiError("invalid_argument", "max_concurrent_jobs: an integer >= 1 is required")
        now = self.clock()
        old = self.workers.get((env, wid))
        s = WorkerSession(env, wid, list(fids), mcj, str(body.get("hostname") or ""),
                          body.get("labels") if isinstance(body.get("labels"), dict) else {},
                          body.get("version") if isinstance(body.get("version"), dict) else {},
                          fmt_ts(now), now, fmt_ts(now))
        # Leases are fenced by token, not session: keep the live ones this worker still holds.
        s.leased = {rid for rid in (old.leased if old else ())
                    if rid in self.runs and self.runs[rid].status == S.RUNNING
                    and self.runs[rid].claimed_by == wid}
        for run in self.runs.values():
            if run.env_id == env and run.status == S.RUNNING and run.claimed_by == wid:
                s.leased.add(run.id)
        self.workers[(env, wid)] = s
        out: dict[str, Any] = {"status": "registered"}
        ignored = [f for f in fids if (env, f) not in self.functions
                   or self.functions[(env, f)].mode != "pull"]
        if ignored:
            out["ignored_function_ids"] = ignored
        self._kick(env)
        return out

    def session(self, env: str, wid: str) -> WorkerSession:
        s = self.workers.get((env, wid))
        if s is None:
            raise ApiError("not_found", "worker not registered", error="worker not registered")
        s.last_seen = self.clock()
        return s

    def heartbeat(self, env: str, wid: str, body: dict[str, Any]) -> None:
        s = self.session(env, wid)
        s.last_heartbeat = fmt_ts(s.last_seen)
        jobs = body.get("jobs") if isinstance(body.get("jobs"), list) else []
        now = self.clock()
        for j in jobs:
            jid = j.get("job_id") if isinstance(j, dict) else None
            run = self._run_for_job(jid)
            if run is None or run.status != S.RUNNING or run.claimed_by != wid:
                continue
            if run.lease_expires_at is not None and now <= run.lease_expires_at + self.lease_grace:
                run.lease_expires_at = now + self.lease_ttl
                self._timer(run.lease_expires_at + self.lease_grace, "lease", run.id)

    def _run_for_job(self, job_id: Any) -> Run | None:
        if not isinstance(job_id, str) or "-" not in job_id:
            return None
        rid, _, seq = job_id.rpartition("-")
        run = self.runs.get(rid)
        if run is None or not seq.isdigit() or int(seq) != run.execution_seq:
            return None
        return run

    async def poll(self, env: str, wid: str, available: int, wait: float,
                   gone: asyncio.Event | None = None) -> tuple[list[dict[str, Any]], float]:
        """Long poll (worker-protocol.md §2.5). Returns (assignments, seconds held)."""
        s = self.session(env, wid)
        wait = max(0.0, min(wait, self.poll_max_wait))
        started = time.monotonic()
        deadline = started + wait
        while True:
            picked = []
            free = min(max(available, 1), s.max_concurrent - len(s.leased))
            while len(picked) < free:
                run = self._pick(s)
                if run is None:
                    break
                self._assign(s, run)
                picked.append(run)
            if picked:
                jobs = []
                for run in picked:
                    fd = self.functions.get((run.env_id, run.function_id))
                    names = fd.config["secrets"] if fd is not None else []
                    values = None
                    if names:
                        values = await self.secrets(run.env_id, names)
                        if isinstance(values, str):  # the name of a missing secret
                            # features.md §2.9 Decision: a missing secret fails the run.
                            self._finish(run, S.FAILED, error={
                                "message": f"secret not found: {values}", "code": "SECRET_NOT_FOUND",
                                "retryable": False})
                            continue
                    jobs.append(self.assignment(run, values))
                # The assignment is queued in order but not awaited: handing out a job is not an
                # acknowledged write, and a fence lost in a crash only gets the worker a 409.
                asyncio.ensure_future(self._background(self._persist(runs=picked)))
                if gone is not None and gone.is_set() and jobs:
                    # §2.5 rule 6: the poller left before the answer could reach it.
                    await self._unassign([r for r in picked if r.status == S.RUNNING])
                    return [], time.monotonic() - started
                if not jobs:
                    continue
                return jobs, time.monotonic() - started
            left = deadline - time.monotonic()
            if left <= 0 or (gone is not None and gone.is_set()):
                return [], time.monotonic() - started
            ev = asyncio.Event()
            self._pollers.setdefault(env, set()).add(ev)
            waits = [asyncio.ensure_future(ev.wait())]
            if gone is not None:
                waits.append(asyncio.ensure_future(gone.wait()))
            try:
                await asyncio.wait(waits, timeout=left, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for t in waits:
                    t.cancel()
                self._pollers[env].discard(ev)
            s = self.session(env, wid)

    @staticmethod
    async def _background(done: Awaitable[Any]) -> None:
        try:
            await done
        except ApiError:
            pass  # logged by _committed; the next change of these runs rewrites their rows

    async def _unassign(self, runs: list[Run]) -> None:
        """Undo assignments nobody received: the fences die, the segments queue again."""
        for run in runs:
            self._end_segment(run)
            run.transition(S.WAITING_FOR_CAPACITY)
            self._enqueue(run)
        await self._persist(runs=runs)

    @staticmethod
    async def _no_secret_store(env: str, names: list[str]) -> dict[str, str] | str:
        """Without a secrets store every declared secret is missing: the first name."""
        return names[0]

    # == fenced calls ==============================================================================

    def _fenced(self, job_id: str, body: dict[str, Any]) -> Run:
        run = self._run_for_job(job_id)
        seq, token = body.get("execution_seq"), body.get("lease_token")
        if (run is None or run.status != S.RUNNING or isinstance(seq, bool) or seq != run.execution_seq
                or not run.lease_token or token != run.lease_token):
            raise stale()
        return run

    async def ack(self, env: str, wid: str, job_id: str, body: dict[str, Any]) -> None:
        run = self._fenced(job_id, body)
        if run.env_id != env:
            raise stale()
        now = self.clock()
        run.acked = True
        run.worker_id = wid
        run.lease_expires_at = now + self.lease_ttl
        if run.started_at is None:
            run.started_at = fmt_ts(now)
        self._timer(run.lease_expires_at + self.lease_grace, "lease", run.id)
        await self._persist(runs=[run])

    async def report(self, env: str, wid: str, job_id: str, body: dict[str, Any]) -> None:
        status = body.get("status")
        if status not in ("progress", "completed", "failed", "yielded"):
            raise ApiError("invalid_argument", "status: must be progress, completed, failed or yielded")
        try:
            run = self._fenced(job_id, body)
        except ApiError:
            if status != "progress" and await self._repeat_of_finished(job_id, body, status):
                return
            raise
        if run.env_id != env:
            raise stale()
        steps = self._store_steps(run, body)
        changed = [run]
        children: list[tuple[dict[str, Any], Run]] = []
        if status == "progress":
            run.lease_expires_at = self.clock() + self.lease_ttl
            self._timer(run.lease_expires_at + self.lease_grace, "lease", run.id)
            if run.pause_requested:  # Decision (features.md §3.4): pause at the next checkpoint
                self._end_segment(run)
                self._pause(run, "injection")
            else:
                # The hot path of a long run: store the steps and the renewed lease only.
                lease, rid = run.lease_expires_at, run.id
                await self._persist(steps=steps, settle=[run], extra=lambda c: c.execute(
                    "UPDATE runs SET lease_expires_at = ? WHERE id = ?", (lease, rid)))
                return
        else:
            run.last_fence_seq, run.last_fence_token = run.execution_seq, run.lease_token
            run.last_fence_status = status
            self._end_segment(run)
            if status == "completed":
                run.output = body.get("output")
                self._finish(run, S.COMPLETED)
            elif status == "failed":
                self._on_failed(run, body.get("error"))
            else:
                await self._on_yield(run, body.get("yield"), body["_yield_seq"], steps, changed,
                                     children)

        def insert_children(conn: sqlite3.Connection) -> list[int]:
            return [_insert_event(conn, env, ev, [child.id]) for ev, child in children]
        seqs = await self._persist(runs=changed, steps=steps,
                                   extra=insert_children if children else None)
        for (ev, child), seq in zip(children, seqs or []):
            self._publish(env, ev, seq)
            self._enqueue(child)
        for r in changed:
            if r.terminal:
                await self._child_finished(r)

    async def _repeat_of_finished(self, job_id: str, body: dict[str, Any], status: str) -> bool:
        rid, _, seq = str(job_id).rpartition("-")
        row = await self.journal.read(lambda c: c.execute(
            "SELECT last_fence_seq, last_fence_token, last_fence_status FROM runs WHERE id = ?",
            (rid,)).fetchone())
        return (row is not None and row["last_fence_seq"] == body.get("execution_seq")
                and str(row["last_fence_seq"]) == seq and row["last_fence_token"]
                and row["last_fence_token"] == body.get("lease_token")
                and row["last_fence_status"] == status)

    def _store_steps(self, run: Run, body: dict[str, Any]) -> list[tuple[Run, Step]]:
        items = body.get("steps") or []
        if not isinstance(items, list):
            raise ApiError("invalid_argument", "steps: must be a list")
        if len(items) > MAX_STEPS_PER_BODY:
            raise ApiError("invalid_argument", f"steps: at most {MAX_STEPS_PER_BODY} per body")
        off = body.get("step_offset")
        off = off if isinstance(off, int) and not isinstance(off, bool) else len(run.steps)
        off = min(max(off, 0), len(run.steps))  # Decision: clamp, never leave a gap
        out = []
        now = now_ts()
        for i, sr in enumerate(items):
            if not isinstance(sr, dict) or not isinstance(sr.get("id"), str):
                raise ApiError("invalid_argument", f"steps[{i}].id: required")
            seq = off + i
            prev = run.steps[seq] if seq < len(run.steps) else None
            st = Step(id=prev.id if prev else new_id("stp"), sequence=seq, step_id=sr["id"],
                      name=str(sr.get("name") or ""), step_type=_step_type(sr.get("type")),
                      status="completed" if sr.get("status") == "completed" else
                      ("failed" if sr.get("status") == "failed" else str(sr.get("status") or "completed")),
                      output=sr.get("output"), error=sr.get("error"), attempt=run.attempt,
                      started_at=sr.get("started_at"), ended_at=sr.get("ended_at"),
                      duration_ms=sr.get("duration_ms") if isinstance(sr.get("duration_ms"), int) else 0,
                      compensation_for=str(sr.get("compensation_for") or ""),
                      created_at=prev.created_at if prev else now, updated_at=now)
            if seq < len(run.steps):
                run.steps[seq] = st
            else:
                run.steps.append(st)
            out.append((run, st))
        body["_yield_seq"] = off + len(items)
        return out

    def _end_segment(self, run: Run) -> None:
        """The live segment is over: its fence dies, the slot is freed."""
        run.lease_token = ""
        run.lease_expires_at = None
        run.claimed_by = ""
        self._release(run)

    def _finish(self, run: Run, status: RunStatus, error: dict[str, Any] | None = None,
                cause: str = "") -> None:
        if run.status == S.RUNNING:
            self._end_segment(run)
        run.transition(status)
        run.wait = None
        run.wake_at = None
        run.ended_at = now_ts()
        if error is not None:
            run.error = error
        if cause:
            run.cancellation_cause = cause

    def _pause(self, run: Run, reason: str) -> None:
        run.transition(S.PAUSED)
        run.pause_requested = False
        run.pause_reason = reason

    def _on_failed(self, run: Run, err: Any) -> None:
        err = err if isinstance(err, dict) else {"message": str(err or "failed")}
        err.setdefault("code", "ERROR")
        run.error = err
        retryable = bool(err.get("retryable", False))
        if not retryable:
            self._finish(run, S.FAILED)
            return
        if run.attempt < run.max_attempts:
            pol = run.retry
            ra = err.get("retry_after_ms")
            base = ra if isinstance(ra, (int, float)) and ra > 0 else \
                pol["initial_delay_ms"] * pol["backoff_factor"] ** (run.attempt - 1)
            delay = min(pol["max_delay_ms"], base) / 1000.0
            run.attempt += 1
            until = self.clock() + delay
            if run.pause_requested:
                self._pause(run, "injection")
                run.wait = {"kind": "retry", "until": until}
            else:
                run.transition(S.WAITING)
                run.wait = {"kind": "retry", "until": until}
            run.wake_at = until
            self._timer(until, "wake", run.id)
            return
        if run.retry.get("on_exhausted") == "fail":
            self._finish(run, S.FAILED)
        else:
            self._pause(run, "")

    async def _on_yield(self, run: Run, y: Any, seq: int, steps: list[tuple[Run, Step]],
                        changed: list[Run], children: list[tuple[dict[str, Any], Run]]) -> None:
        now = self.clock()
        ts = fmt_ts(now)
        problem = _yield_problem(y)
        if problem:
            # worker-protocol.md §3.6 Decision: a malformed yield fails the segment for good.
            run.error = {"message": f"invalid yield: {problem}", "code": "INVALID_YIELD",
                         "retryable": False}
            self._finish(run, S.FAILED)
            return
        kind, sid = y["type"], y["step_id"]
        # §2.8 step 7: the yield row goes at step_offset + len(steps).
        seq = min(seq, len(run.steps))
        prev = run.steps[seq] if seq < len(run.steps) else None
        step = Step(id=prev.id if prev else new_id("stp"), sequence=seq, step_id=sid,
                    name=_step_name(sid), attempt=run.attempt, started_at=ts,
                    created_at=prev.created_at if prev else ts, updated_at=ts)
        if prev is None:
            run.steps.append(step)
        else:
            run.steps[seq] = step
        steps.append((run, step))
        wait: dict[str, Any]
        if kind == "sleep":
            until = parse_ts(y["until"])
            step.step_type, step.status, step.sleep_until = "sleep", "sleeping", fmt_ts(until)
            wait = {"kind": "sleep", "until": until, "seq": seq}
            run.wake_at = until
        elif kind == "wait_for_event":
            f = y["event_filter"]
            timeout = parse_duration(str(f.get("timeout") or "7d"))
            step.step_type, step.status = "wait_for_event", "waiting"
            step.wait_event_name = str(f.get("event") or "")
            step.wait_timeout = fmt_ts(now + timeout)
            mv = f.get("match_value")
            wait = {"kind": "event", "event": step.wait_event_name, "match": str(f.get("match") or ""),
                    "match_value": None if mv is None else (mv if isinstance(mv, str) else dumps(mv)),
                    "deadline": now + timeout, "timeout": str(f.get("timeout") or "7d"), "seq": seq,
                    "payload": f.get("payload")}
        else:
            fid = str(y.get("function_id") or "")
            step.step_type, step.name = "invoke_function", fid or step.name
            try:
                child, ev, _ = await self.invoke(run.env_id, fid, y.get("input"),
                                                 metadata={"parent_run_id": run.id,
                                                           "parent_step_id": sid},
                                                 parent=(run, sid))
            except ApiError:
                step.status, step.ended_at = "failed", ts
                step.error = {"message": f"function not found: {fid}", "function_id": fid}
                self._requeue_after_yield(run)
                return
            step.child_run_id = child.id
            changed.append(child)
            children.append((ev, child))
            if kind == "invoke_function_async":
                step.status, step.output, step.ended_at = "completed", {"run_id": child.id}, ts
                self._requeue_after_yield(run)
                return
            ms = y.get("invoke_timeout_ms")
            ms = ms if isinstance(ms, (int, float)) and ms > 0 else DEFAULT_INVOKE_TIMEOUT_MS
            step.status = "running"
            wait = {"kind": "invoke", "child": child.id, "deadline": now + ms / 1000.0,
                    "timeout_ms": int(ms), "seq": seq}
        run.wait = wait
        if run.pause_requested:
            self._pause(run, "sleep" if wait["kind"] == "sleep" else "wait_event")
        else:
            run.transition(S.WAITING)
        self._arm_wait(run)
        if wait["kind"] == "sleep" and wait["until"] <= now:
            self._fire_wake(run)

    def _requeue_after_yield(self, run: Run) -> None:
        if run.pause_requested:
            self._pause(run, "injection")
        else:
            run.transition(S.WAITING_FOR_CAPACITY)
            self._enqueue(run)

    # == operator actions ==========================================================================

    async def cancel(self, env: str, rid: str, reason: str = "") -> Run:
        run = self.runs.get(rid)
        if run is None or run.env_id != env:
            if await self.load_run(env, rid) is None:
                raise ApiError("not_found", f"run not found: {rid}")
            raise ApiError("failed_precondition", "run is already finished")
        self._finish(run, S.CANCELLED, error={"message": reason or "cancelled", "code": "CANCELLED"},
                     cause="user")
        await self._persist(runs=[run])
        await self._child_finished(run)
        return run

    async def pause(self, env: str, rid: str) -> str:
        run = self.runs.get(rid)
        if run is None or run.env_id != env:
            if await self.load_run(env, rid) is None:
                raise ApiError("not_found", f"run not found: {rid}")
            raise ApiError("failed_precondition", "run is already finished")
        if run.status == S.PAUSED:
            return "paused"
        if run.status == S.RUNNING:
            run.pause_requested = True
            await self._persist(runs=[run])
            return "pause_requested"
        reason = "injection"
        if run.status == S.WAITING and run.wait:
            reason = "sleep" if run.wait.get("kind") == "sleep" else "wait_event"
        self._pause(run, reason)
        await self._persist(runs=[run])
        return "paused"

    async def resume(self, env: str, rid: str, from_step: str = "") -> Run:
        run = self.runs.get(rid)
        if run is None:
            row_run = await self.load_run(env, rid)
            if row_run is None:
                raise ApiError("not_found", f"run not found: {rid}")
            if row_run.status != S.FAILED:
                raise ApiError("failed_precondition", f"run is {row_run.status.value}")
            run = await self._rehydrate(row_run)
        if run.env_id != env:
            raise ApiError("not_found", f"run not found: {rid}")
        if run.status not in (S.PAUSED, S.FAILED):
            raise ApiError("failed_precondition", f"run is {run.status.value}, not paused or failed")
        steps: list[tuple[Run, Step]] = []
        if from_step:
            idx = next((s.sequence for s in run.steps if from_step in (s.step_id, s.id)), None)
            if idx is None:
                raise ApiError("not_found", f"step not found: {from_step}")
            for s in run.steps[idx:]:
                s.stored_status = "superseded"
                steps.append((run, s))
            run.resume_from_step = from_step
        exhausted = run.status == S.FAILED or (run.pause_reason == "" and run.error is not None)
        if exhausted:
            policy_max = int(run.retry.get("max_attempts", 25))
            run.attempt += 1
            run.max_attempts = run.attempt + policy_max - 1
            run.error = None
            run.ended_at = None
        run.pause_reason = ""
        run.pause_requested = False
        if run.wait is not None:  # the wait has not resolved yet: its timers/waiters are armed
            run.transition(S.WAITING)
        else:
            run.wake_at = None
            run.transition(S.WAITING_FOR_CAPACITY)
            self._enqueue(run)
        await self._persist(runs=[run], steps=steps)
        return run

    async def _rehydrate(self, run: Run) -> Run:
        """Bring a finished run back into hot state (ResumeRun of a failed run)."""
        def q(conn: sqlite3.Connection) -> tuple[Any, list[Any]]:
            ev = conn.execute("SELECT * FROM events WHERE id = ?", (run.event_id,)).fetchone()
            st = conn.execute("SELECT * FROM steps WHERE run_id = ? ORDER BY sequence", (run.id,)).fetchall()
            return ev, st
        ev, st = await self.journal.read(q)
        run.event = event_wire(ev) if ev is not None else {}
        run.steps = [step_from_row(r) for r in st]
        self.runs[run.id] = run
        fd = self.functions.get((run.env_id, run.function_id))
        if fd is not None:  # a fresh run-timeout budget, or a timed-out run would fail at once
            run.timeout_at = self.clock() + fd.config["timeout_ms"] / 1000.0
            self._timer(run.timeout_at, "timeout", run.id)
        return run

    async def load_run(self, env: str, rid: str) -> Run | None:
        """A run as committed: a hot run with a write in flight is read once that write landed,
        so readers never see state that a crash could still take back."""
        run = self.runs.get(rid)
        if run is not None and run.settled is not None and not run.settled.done():
            await asyncio.shield(run.settled)
            run = self.runs.get(rid) or run
        if run is not None and run.env_id == env:
            return run
        row = await self.journal.read(lambda c: c.execute(
            "SELECT * FROM runs WHERE id = ? AND env_id = ?", (rid, env)).fetchone())
        return None if row is None else run_from_row(row, {})

    async def run_steps(self, env: str, rid: str) -> list[Step]:
        run = self.runs.get(rid)
        if run is not None and run.env_id == env:
            return list(run.steps)
        if await self.load_run(env, rid) is None:
            raise ApiError("not_found", f"run not found: {rid}")
        rows = await self.journal.read(lambda c: c.execute(
            "SELECT * FROM steps WHERE run_id = ? ORDER BY sequence", (rid,)).fetchall())
        return [step_from_row(r) for r in rows]

    async def wait_terminal(self, run_id: str, timeout: float) -> Run | None:
        run = self.runs.get(run_id)
        if run is None:
            return None
        fut: asyncio.Future[Run] = asyncio.get_running_loop().create_future()
        self._watchers.setdefault(run_id, []).append(fut)
        try:
            return await asyncio.wait_for(asyncio.shield(fut), timeout)
        except asyncio.TimeoutError:
            return None

    # == parent/child ==============================================================================

    async def _child_finished(self, child: Run) -> None:
        """Resolve a parent waiting on ``child`` (worker-protocol.md §3.6.3)."""
        if not child.parent_run_id:
            return
        parent = self.runs.get(child.parent_run_id)
        if parent is None or not parent.wait or parent.wait.get("kind") != "invoke" \
                or parent.wait.get("child") != child.id:
            return
        step = parent.steps[parent.wait["seq"]]
        step.ended_at = step.updated_at = now_ts()
        if child.status == S.COMPLETED:
            step.status, step.output = "completed", child.output
        else:
            msg = (child.error or {}).get("message") or child.status.value
            step.status = "failed"
            step.error = {"message": msg, "cause": msg, "function_id": child.function_id,
                          "child_run_id": child.id, "code": (child.error or {}).get("code", "")}
        parent.wait = None
        self._wake(parent)
        await self._persist(runs=[parent], steps=[(parent, step)])

    # == timers ====================================================================================

    def _timer(self, when: float, kind: str, rid: str) -> None:
        heapq.heappush(self._timers, (when, next(self._timer_seq), kind, rid))
        if self._timers[0][2] == kind and self._timers[0][3] == rid:
            self._timer_wake.set()

    async def _scheduler(self) -> None:
        while True:
            self.last_tick = time.monotonic()
            now = self.clock()
            due = []
            while self._timers and self._timers[0][0] <= now:
                due.append(heapq.heappop(self._timers))
            changed: list[Run] = []
            steps: list[tuple[Run, Step]] = []
            finished: list[Run] = []
            for when, _, kind, rid in due:
                if kind in ("cron", "debounce", "kick"):
                    try:
                        await self._on_flow_timer(kind, rid, when, now)
                    except Exception:
                        log.exception("flow timer failed", extra={"fields": {"key": rid, "kind": kind}})
                    continue
                run = self.runs.get(rid)
                if run is None:
                    continue
                try:
                    self._on_timer(run, kind, now, changed, steps, finished)
                except Exception:
                    log.exception("timer handler failed", extra={"fields": {"run_id": rid, "kind": kind}})
            self._expire_workers(now)
            if changed or steps:
                try:
                    await self._persist(runs=_unique(changed), steps=steps)
                except ApiError:
                    pass  # logged by _persist; the timers re-fire after the rebuild at restart
                for r in finished:
                    await self._child_finished(r)
            delay = 1.0 if not self._timers else max(0.0, min(1.0, self._timers[0][0] - self.clock()))
            self._timer_wake.clear()
            try:
                await asyncio.wait_for(self._timer_wake.wait(), delay)
            except asyncio.TimeoutError:
                pass

    def _on_timer(self, run: Run, kind: str, now: float, changed: list[Run],
                  steps: list[tuple[Run, Step]], finished: list[Run]) -> None:
        if kind == "timeout":
            if run.timeout_at is not None and now >= run.timeout_at and not run.terminal:
                self._finish(run, S.FAILED, error={"message": "run timed out", "code": "RUN_TIMEOUT",
                                                   "retryable": False})
                changed.append(run)
                finished.append(run)
        elif kind == "lease":
            if run.status == S.RUNNING and run.lease_expires_at is not None \
                    and now > run.lease_expires_at + self.lease_grace - 0.001:
                # worker-protocol.md §2.10: recover the segment, same attempt, memo kept.
                self._end_segment(run)
                if run.pause_requested:
                    self._pause(run, "injection")
                else:
                    run.transition(S.WAITING_FOR_CAPACITY)
                    self._enqueue(run)
                changed.append(run)
        elif kind == "wake":
            if run.wake_at is not None and now >= run.wake_at - 0.001 and run.wait \
                    and run.wait.get("kind") in ("sleep", "retry"):
                self._fire_wake(run, steps)
                changed.append(run)
        elif kind == "wait_deadline":
            w = run.wait
            if not w or now < w["deadline"] - 0.001:
                return
            step = run.steps[w["seq"]]
            step.ended_at = step.updated_at = now_ts()
            if w["kind"] == "event":
                step.status = "timed_out"
                run.wait = None
                self._finish(run, S.FAILED, error={
                    "code": "WAIT_TIMEOUT", "retryable": False,
                    "message": f"wait_for_event '{step.name}' timed out after {w.get('timeout')}"})
                finished.append(run)
            else:
                step.status = "failed"
                step.error = {"message": f"invoke timed out after {w['timeout_ms']}ms",
                              "function_id": step.name, "child_run_id": w["child"]}
                run.wait = None
                self._wake(run)
            steps.append((run, step))
            changed.append(run)

    # == flow control =============================================================================

    def _arm_cron(self, fd: FunctionDef) -> None:
        for k in [k for k in self.flow.cron_next if k[:2] == (fd.env_id, fd.id)]:
            del self.flow.cron_next[k]
        for k, t in self.flow.cron_due(fd, self.clock()):
            self._timer(t, "cron", _tkey(k))

    async def _on_flow_timer(self, kind: str, key: str, when: float, now: float) -> None:
        if kind == "kick":
            self._kick(key)
            return
        k = _untkey(key)
        if kind == "debounce":
            lane = self.flow.lanes.get(k)
            if lane is None or now < lane.fires_at - 0.001:
                return  # cancelled, or extended by a later event (its own timer will fire)
            del self.flow.lanes[k]
            fd = self.functions.get(k[:2])
            runs = [] if fd is None or fd.status == "archived" else \
                [self._new_run(fd, lane.event, lane.event.get("data"))]
            await self._persist(runs=runs, extra=lane.delete)
            for r in runs:
                if not r.terminal:
                    self._enqueue(r)
            return
        # cron: one tick event and one run of the owning function only (features.md §2.3)
        if self.flow.cron_next.get(k) != when:
            return  # the function changed or was removed since this timer was set
        fd = self.functions.get(k[:2])
        if fd is None or fd.status == "archived":
            return
        idx = int(k[2])
        trig = fd.config["triggers"][idx]
        fire = fmt_ts(when)
        ev = self._event(fd.env_id, trig["event"] or f"cron/{fd.id}",
                         {"scheduled_at": fire, "cron": trig["cron"]}, None, None, 1, "cron", "")
        run = self._new_run(fd, ev, ev["data"])
        self.flow.cron_last[k] = when

        def w(conn: sqlite3.Connection) -> int:
            cron_tick_sql(conn, k, fire, ev["id"])
            return _insert_event(conn, fd.env_id, ev, [run.id])
        self._arm_cron(fd)
        seq = await self._persist(runs=[run], extra=w)
        self._publish(fd.env_id, ev, seq)
        if not run.terminal:
            self._enqueue(run)

    def debounce_entries(self, env: str) -> list[tuple[Lane, int]]:
        out = []
        for (e, fid, _), lane in sorted(self.flow.lanes.items()):
            fd = self.functions.get((e, fid))
            if e == env and fd is not None:
                out.append((lane, fd.config["debounce"]["period_ms"]))
        return out

    async def cancel_debounce(self, env: str, fid: str, key: str) -> None:
        lane = self.flow.lanes.pop((env, fid, key), None)
        if lane is None:
            raise ApiError("not_found", "debounce entry not found")
        await self._persist(extra=lane.delete)

    def _fire_wake(self, run: Run, steps: list[tuple[Run, Step]] | None = None) -> None:
        w = run.wait or {}
        if w.get("kind") == "sleep":
            step = run.steps[w["seq"]]
            step.status, step.output = "completed", None
            step.ended_at = step.updated_at = now_ts()
            if steps is not None:
                steps.append((run, step))
        run.wait = None
        self._wake(run)

    def _expire_workers(self, now: float) -> None:
        for key, s in list(self.workers.items()):
            if now - s.last_seen > self.worker_timeout:
                del self.workers[key]


def _step_event(r: Run, st: Step) -> tuple[str, str, dict[str, Any]]:
    """system.run.<run_id>.step.<step_token>.<created|completed|failed> (websocket.md §5.5); the
    token is the step id with '.' and ':' replaced so that it stays one subject token."""
    token = st.step_id.replace(".", "_").replace(":", "_")
    kind = st.status if st.status in ("completed", "failed") else "created"
    data: dict[str, Any] = {"run_id": r.id, "step_id": st.step_id, "name": st.name,
                            "type": st.step_type, "status": st.status}
    if st.status == "completed":
        data["output"] = st.output
    if st.error is not None:
        data["error"] = st.error
    return r.env_id, f"system.run.{r.id}.step.{token}.{kind}", data


def _function_event(fd: FunctionDef, kind: str) -> tuple[str, str, dict[str, Any]]:
    """system.function.<id>.<kind> (websocket.md §5.5)."""
    return fd.env_id, f"system.function.{fd.id}.{kind}", {
        "function_id": fd.id, "version": fd.version, "status": fd.status, "mode": fd.mode}


def _run_event(r: Run) -> tuple[str, str, dict[str, Any]]:
    """The system event of a run's status change (websocket.md §5.5)."""
    base = {"run_id": r.id, "function_id": r.function_id, "status": r.status.value}
    prev = r.published_status
    if prev is None:
        return r.env_id, f"system.run.{r.id}.created", {**base, "event_id": r.event_id}
    if r.status == S.COMPLETED:
        return r.env_id, f"system.run.{r.id}.completed", {**base, "output": r.output}
    if r.status == S.FAILED:
        err = r.error or {}
        return r.env_id, f"system.run.{r.id}.failed", {
            **base, "error": {"message": err.get("message", ""), "code": err.get("code", "")}}
    if r.status == S.CANCELLED:
        return r.env_id, f"system.run.{r.id}.cancelled", {**base, "cause": r.cancellation_cause}
    if prev in (S.PAUSED, S.FAILED):
        return r.env_id, f"system.run.{r.id}.resumed", base
    return r.env_id, f"system.run.{r.id}.updated", {**base, "attempt": r.attempt}


def _tkey(k: Key) -> str:
    return "\x1f".join(k)


def _untkey(s: str) -> Key:
    a, b, c = s.split("\x1f")
    return (a, b, c)


def _unique(runs: list[Run]) -> list[Run]:
    seen: dict[str, Run] = {}
    for r in runs:
        seen[r.id] = r
    return list(seen.values())


def _yield_problem(y: Any) -> str:
    """What is wrong with a yield object (worker-protocol.md §3.6), or "" when it is usable."""
    if not isinstance(y, dict):
        return "yield must be an object"
    sid, kind = y.get("step_id"), y.get("type")
    if not isinstance(sid, str) or not sid:
        return "step_id is required"
    if kind == "sleep":
        try:
            parse_ts(str(y.get("until") or ""))
        except ValueError:
            return "sleep needs an RFC 3339 'until'"
    elif kind == "wait_for_event":
        f = y.get("event_filter")
        if not isinstance(f, dict) or not isinstance(f.get("event"), str) or not f["event"]:
            return "wait_for_event needs event_filter.event"
        if f.get("timeout") is not None:
            try:
                parse_duration(str(f["timeout"]))
            except ValueError:
                return f"event_filter.timeout {f['timeout']!r} is not a duration"
        for k in ("match", "match_value"):
            if f.get(k) is not None and not isinstance(f[k], (str, int, float, bool)):
                return f"event_filter.{k} must be a scalar"
    elif kind in ("invoke_function", "invoke_function_async"):
        if not isinstance(y.get("function_id"), str) or not y["function_id"]:
            return f"{kind} needs function_id"
    else:
        return f"unknown yield type {kind!r}"
    return ""


def _step_type(t: Any) -> str:
    return t if t in ("invoke", "sleep", "wait_for_event", "compensate", "invoke_function") else "invoke"


def _step_name(step_id: str) -> str:
    """The last unescaped segment before the counter of a step id (worker-protocol.md §3.4)."""
    parts: list[str] = []
    cur = ""
    i = 0
    while i < len(step_id):
        c = step_id[i]
        if c == "\\" and i + 1 < len(step_id):
            cur += step_id[i + 1]
            i += 2
            continue
        if c == ":":
            parts.append(cur)
            cur = ""
        else:
            cur += c
        i += 1
    parts.append(cur)
    return parts[-2] if len(parts) >= 2 else step_id


def _event_output(ev: dict[str, Any]) -> dict[str, Any]:
    return {k: ev[k] for k in ("id", "name", "data", "timestamp", "version", "source", "metadata",
                               "idempotency_key", "emittedBy") if k in ev}


def event_wire(row: sqlite3.Row) -> dict[str, Any]:
    ev: dict[str, Any] = {"id": row["id"], "name": row["name"], "data": loads(row["data"]),
                          "timestamp": row["created_at"], "version": row["version"],
                          "source": row["source"]}
    if row["idempotency_key"]:
        ev["idempotency_key"] = row["idempotency_key"]
    meta = loads(row["metadata"])
    if meta:
        ev["metadata"] = meta
    if row["emitted_by"]:
        ev["emittedBy"] = row["emitted_by"]
    return ev


def _insert_event(conn: sqlite3.Connection, env: str, ev: dict[str, Any], run_ids: list[str],
                  schema_hash: str = "", namespace: str = "default") -> int:
    """Store an event with the next global item sequence (websocket.md §5.1); returns it."""
    seq = next_seq(conn)
    conn.execute("INSERT INTO events (seq, id, env_id, name, data, metadata, source, version, "
                 "idempotency_key, emitted_by, run_ids, created_at, schema_hash, namespace) "
                 "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                 (seq, ev["id"], env, ev["name"], dumps(ev["data"]),
                  dumps(ev["metadata"]) if ev.get("metadata") else None,
                  ev["source"], ev["version"], ev.get("idempotency_key"), ev.get("emittedBy", ""),
                  dumps(run_ids), ev["timestamp"], schema_hash, namespace))
    return seq
