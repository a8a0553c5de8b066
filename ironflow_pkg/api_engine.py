"""REST adapters for the engine: the pull-worker protocol and the events/functions/runs routes.

Adapters only translate HTTP to service calls (design.md): parse and validate the request,
call :class:`~ironflow_pkg.engine.Engine`, shape the JSON answer.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from .app import App, json_response, query_params
from .engine import Engine, event_wire
from .flowcontrol import lane_view
from .errors import STATUS_CODE, ApiError
from .jsonutil import fmt_ts, loads, parse_ts
from .runs import RunStatus, run_from_row, run_rest, step_rest
from .server import HttpRequest, Response


def read_json(req: HttpRequest, *, required: bool = True) -> Any:
    """The JSON body; an empty body is ``{}``; malformed JSON is 400 invalid_argument."""
    if not req.body:
        return {}
    try:
        return json.loads(req.body)
    except (ValueError, UnicodeDecodeError) as e:
        raise ApiError("invalid_argument", f"request body is not valid JSON: {e}") from None


def read_object(req: HttpRequest) -> dict[str, Any]:
    body = read_json(req)
    if not isinstance(body, dict):
        raise ApiError("invalid_argument", "request body must be a JSON object")
    return body


def env_of(req: HttpRequest) -> str:
    return req.state["env"].id


def emitted_by(req: HttpRequest) -> str:
    p = req.state.get("principal")
    return f"apikey:{p.key_id}" if p is not None and p.key_id else ""


def encode_cursor(values: list[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


def decode_cursor(text: str) -> list[Any]:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        values = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ApiError("invalid_argument", "cursor: malformed") from None
    if not isinstance(values, list):
        raise ApiError("invalid_argument", "cursor: malformed")
    return values


def int_param(q: dict[str, str], name: str, default: int, cap: int) -> int:
    raw = q.get(name)
    if raw is None or raw == "":
        return default
    try:
        v = int(raw)
    except ValueError:
        raise ApiError("invalid_argument", f"{name}: must be an integer") from None
    return default if v <= 0 else min(v, cap)


def ts_param(q: dict[str, str], name: str) -> str | None:
    raw = q.get(name)
    if not raw:
        return None
    try:
        return fmt_ts(parse_ts(raw))
    except ValueError:
        raise ApiError("invalid_argument", f"{name}: not an RFC 3339 timestamp") from None


class EngineRoutes:
    def __init__(self, app: App, engine: Engine) -> None:
        self.app = app
        self.engine = engine
        #: Test faults (IRONFLOW_TEST_FAULTS report_status): statuses for the next terminal reports.
        self.report_faults: list[int] = []
        r = app.router
        for verb in ("POST", "PUT"):
            r.add(verb, "/api/v1/workers/{wid}/register", self.register)
            r.add(verb, "/api/v1/workers/{wid}/heartbeat", self.heartbeat)
        r.add("GET", "/api/v1/workers", self.list_workers)
        r.add("GET", "/api/v1/workers/{wid}/jobs", self.poll)
        r.add("PUT", "/api/v1/workers/{wid}/jobs/{job}/ack", self.ack)
        r.add("PUT", "/api/v1/workers/{wid}/jobs/{job}", self.update)
        r.add("POST", "/api/v1/events", self.emit)
        r.add("GET", "/api/v1/events", self.list_events)
        r.add("GET", "/api/v1/events/names", self.event_names)
        r.add("GET", "/api/v1/events/{id}", self.get_event)
        r.add("GET", "/api/v1/functions", self.list_functions)
        r.add("GET", "/api/v1/runs", self.list_runs)
        r.add("GET", "/api/v1/runs/{id}", self.get_run)
        r.add("POST", "/api/v1/runs/{id}/rerun", self.rerun)
        r.add("GET", "/api/v1/debounce/entries", self.debounce_entries)
        r.add("DELETE", "/api/v1/debounce/entries/{env}/{fn}/{key}", self.cancel_debounce)
        app.features.update({"functions", "runs", "events", "pull-rest"})

    # -- workers (worker-protocol.md §2) ---------------------------------------------------------

    async def register(self, req: HttpRequest, p: dict[str, str]) -> Response:
        body = read_object(req)
        return json_response(self.engine.register_worker(env_of(req), p["wid"], body))

    async def heartbeat(self, req: HttpRequest, p: dict[str, str]) -> Response:
        self.engine.heartbeat(env_of(req), p["wid"], read_object(req))
        return json_response({"status": "ok"})

    async def list_workers(self, req: HttpRequest, p: dict[str, str]) -> Response:
        env = env_of(req)
        ws = [s.info() for (e, _), s in sorted(self.engine.workers.items()) if e == env]
        return json_response({"workers": ws, "count": len(ws)})

    async def poll(self, req: HttpRequest, p: dict[str, str]) -> Response:
        q = query_params(req)
        try:
            available = int(q.get("available") or 1)
            wait = float(q.get("wait") or 0)
        except ValueError:
            raise ApiError("invalid_argument", "available and wait must be numbers") from None
        gone = req.disconnected() if wait > 0 else None
        jobs, held = await self.engine.poll(env_of(req), p["wid"], available, wait, gone)
        if jobs:
            return json_response({"jobs": jobs})
        # worker-protocol.md §2.5 rule 5: never 200 {"jobs": []}; say how long the poll was held.
        held_s = int(round(held)) if wait > 0 else 0
        return Response(204, [("Ironflow-Poll-Wait", str(max(held_s, 1) if wait > 0 else 0))])

    async def ack(self, req: HttpRequest, p: dict[str, str]) -> Response:
        await self.engine.ack(env_of(req), p["wid"], p["job"], read_object(req))
        return json_response({"status": "acked"})

    async def update(self, req: HttpRequest, p: dict[str, str]) -> Response:
        body = read_object(req)
        if self.report_faults and body.get("status") != "progress":
            status = self.report_faults.pop(0)
            raise ApiError(STATUS_CODE.get(status, "unavailable"), "injected test fault", status=status)
        await self.engine.report(env_of(req), p["wid"], p["job"], body)
        return json_response({"status": "ok"})

    # -- events -----------------------------------------------------------------------------------

    async def emit(self, req: HttpRequest, p: dict[str, str]) -> Response:
        body = read_object(req)
        name = body.get("name", body.get("event"))
        idem = body.get("idempotency_key", body.get("idempotencyKey"))
        if idem is not None and not isinstance(idem, str):
            raise ApiError("invalid_argument", "idempotency_key: must be a string")
        meta = body.get("metadata")
        if meta is not None and not isinstance(meta, dict):
            raise ApiError("invalid_argument", "metadata: must be an object")
        version = body.get("version", 1)
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise ApiError("invalid_argument", "version: must be an integer >= 1")
        data = body.get("data", {})
        out = await self.engine.emit(env_of(req), name, data, metadata=meta,
                                     idempotency_key=idem or None, version=version,
                                     emitted_by=emitted_by(req))
        return json_response({"id": out["event_id"], "event_id": out["event_id"],
                              "run_ids": out["run_ids"], "duplicate": out["duplicate"]})

    async def get_event(self, req: HttpRequest, p: dict[str, str]) -> Response:
        env = env_of(req)
        row = await self.engine.journal.read(lambda c: c.execute(
            "SELECT * FROM events WHERE id = ? AND env_id = ?", (p["id"], env)).fetchone())
        if row is None:
            raise ApiError("not_found", "event not found")
        return json_response(_event_rest(row))

    async def list_events(self, req: HttpRequest, p: dict[str, str]) -> Response:
        q = query_params(req)
        env = env_of(req)
        limit = int_param(q, "limit", 20, 100)
        if q.get("cursor") and q.get("before"):
            raise ApiError("invalid_argument", "cursor and before are exclusive")
        where, args = ["env_id = ?"], [env]
        if q.get("name"):
            where.append("name = ?")
            args.append(q["name"])
        if q.get("names"):
            names = [n for n in q["names"].split(",") if n]
            where.append(f"name IN ({','.join('?' * len(names))})")
            args.extend(names)
        if q.get("source"):
            srcs = [s for s in q["source"].split(",") if s]
            where.append(f"source IN ({','.join('?' * len(srcs))})")
            args.extend(srcs)
        if q.get("search"):
            where.append("(instr(name, ?) > 0 OR instr(id, ?) > 0 OR instr(data, ?) > 0)")
            args.extend([q["search"]] * 3)
        for key, op in (("since", ">="), ("until", "<=")):
            v = ts_param(q, key)
            if v:
                where.append(f"created_at {op} ?")
                args.append(v)
        base_where, base_args = list(where), list(args)
        order = "DESC"
        if q.get("cursor"):
            (seq,) = _cursor_ints(q["cursor"], 1)
            where.append("seq < ?")
            args.append(seq)
        elif q.get("before"):
            (seq,) = _cursor_ints(q["before"], 1)
            where.append("seq > ?")
            args.append(seq)
            order = "ASC"
        sql = f"SELECT * FROM events WHERE {' AND '.join(where)} ORDER BY seq {order} LIMIT ?"

        def run(c: Any) -> tuple[list[Any], int]:
            rows = c.execute(sql, (*args, limit + 1)).fetchall()
            total = c.execute(f"SELECT count(*) FROM (SELECT 1 FROM events WHERE "
                              f"{' AND '.join(base_where)} LIMIT 10001)", base_args).fetchone()[0]
            return rows, total
        rows, total = await self.engine.journal.read(run)
        more = len(rows) > limit
        rows = rows[:limit]
        if order == "ASC":
            rows.reverse()
        out: dict[str, Any] = {"events": [_event_rest(r) for r in rows], "count": len(rows),
                               "limit": limit, "approx_total": min(total, 10000),
                               "approx_total_capped": total > 10000}
        has_next = more if order == "DESC" else bool(rows)
        has_prev = bool(q.get("cursor")) if order == "DESC" else more
        out["has_next"], out["has_prev"] = has_next, has_prev
        if rows and has_next:
            out["next_cursor"] = encode_cursor([rows[-1]["seq"]])
        if rows and has_prev:
            out["prev_cursor"] = encode_cursor([rows[0]["seq"]])
        return json_response(out)

    async def event_names(self, req: HttpRequest, p: dict[str, str]) -> Response:
        q = query_params(req)
        where, args = ["env_id = ?"], [env_of(req)]
        if q.get("source"):
            srcs = [s for s in q["source"].split(",") if s]
            where.append(f"source IN ({','.join('?' * len(srcs))})")
            args.extend(srcs)
        for key, op in (("since", ">="), ("until", "<=")):
            v = ts_param(q, key)
            if v:
                where.append(f"created_at {op} ?")
                args.append(v)
        sql = (f"SELECT name, count(*) AS n, (SELECT count(*) FROM (SELECT 1 FROM events WHERE "
               f"{' AND '.join(where)} LIMIT 10001)) AS total FROM (SELECT name FROM events WHERE "
               f"{' AND '.join(where)} ORDER BY seq DESC LIMIT 10000) GROUP BY name ORDER BY n DESC, name")
        rows = await self.engine.journal.read(lambda c: c.execute(sql, (*args, *args)).fetchall())
        total = rows[0]["total"] if rows else 0
        return json_response({"names": [{"name": r["name"], "count": r["n"]} for r in rows],
                              "scanned": min(total, 10000), "scan_cap": 10000,
                              "truncated": total > 10000})

    # -- functions and runs ------------------------------------------------------------------------

    async def list_functions(self, req: HttpRequest, p: dict[str, str]) -> Response:
        q = query_params(req)
        fns = self.engine.list_functions(env_of(req))
        if q.get("status"):
            fns = [f for f in fns if f.status == q["status"]]
        if q.get("mode"):
            fns = [f for f in fns if f.mode == q["mode"]]
        if q.get("name"):
            fns = [f for f in fns if q["name"] in f.config["name"]]
        total = len(fns)
        limit = int_param(q, "limit", 100, 1000)
        offset = int_param(q, "offset", 0, 1 << 31)
        page = fns[offset:offset + limit]
        return json_response({"functions": [f.rest(self.engine.next_run(f)) for f in page],
                              "count": len(page), "total_count": total})

    async def list_runs(self, req: HttpRequest, p: dict[str, str]) -> Response:
        q = query_params(req)
        statuses = [s for s in (q.get("status") or "").split(",") if s]
        for s in statuses:
            if s not in {x.value for x in RunStatus}:
                raise ApiError("invalid_argument", f"status: unknown run status {s!r}")
        page = await list_runs(self.engine, env_of(req), function_id=q.get("function_id") or "",
                               statuses=statuses, since=ts_param(q, "since"),
                               until=ts_param(q, "until"), event_id=q.get("event_id") or "",
                               search=q.get("search") or "",
                               limit=int_param(q, "limit", 50, 1000), cursor=q.get("cursor") or "",
                               offset=int_param(q, "offset", 0, 1 << 31))
        return json_response({"runs": [run_rest(r) for r in page["runs"]],
                              "next_cursor": page["next_cursor"], "total_count": page["total_count"],
                              "count": len(page["runs"])})

    async def get_run(self, req: HttpRequest, p: dict[str, str]) -> Response:
        env = env_of(req)
        run = await self.engine.load_run(env, p["id"])
        if run is None:
            raise ApiError("not_found", "run not found")
        steps = await self.engine.run_steps(env, p["id"])
        return json_response({**run_rest(run), "steps": [step_rest(run.id, s) for s in steps]})


    async def rerun(self, req: HttpRequest, p: dict[str, str]) -> Response:
        from .runops import rerun
        run = await rerun(self.engine, env_of(req), p["id"], emitted_by(req))
        return json_response(run_rest(run), 201)

    async def debounce_entries(self, req: HttpRequest, p: dict[str, str]) -> Response:
        return json_response([lane_view(lane, period)
                              for lane, period in self.engine.debounce_entries(env_of(req))])

    async def cancel_debounce(self, req: HttpRequest, p: dict[str, str]) -> Response:
        env = env_of(req)
        if p["env"] not in (env, req.state["env"].name):
            raise ApiError("not_found", "debounce entry not found")
        # rest-api.md §3.7: the key is URL-safe base64 without padding; "-" is the global lane.
        raw = p["key"]
        if raw == "-":
            key = ""
        else:
            try:
                key = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode("utf-8")
            except (ValueError, UnicodeDecodeError):
                raise ApiError("invalid_argument", "key: not URL-safe base64") from None
        await self.engine.cancel_debounce(env, p["fn"], key)
        return Response(204)


def _cursor_ints(text: str, n: int) -> list[int]:
    values = decode_cursor(text)
    if len(values) != n or not all(isinstance(v, int) for v in values):
        raise ApiError("invalid_argument", "cursor: malformed")
    return values


def _event_rest(row: Any) -> dict[str, Any]:
    ev = event_wire(row)
    run_ids = loads(row["run_ids"], [])
    out = {"id": ev["id"], "name": ev["name"], "data": ev["data"], "timestamp": ev["timestamp"],
           "created_at": row["created_at"], "source": ev["source"], "version": ev["version"],
           "processed": True, "sequence": row["seq"]}
    for k in ("idempotency_key", "metadata"):
        if k in ev:
            out[k] = ev[k]
    if row["emitted_by"]:
        out["emitted_by"] = row["emitted_by"]
    if run_ids:
        out["run_id"] = run_ids[0]
        out["run_ids"] = run_ids
    return out


async def list_runs(engine: Engine, env: str, *, function_id: str = "", statuses: list[str] = (),
                    since: str | None = None, until: str | None = None, event_id: str = "",
                    search: str = "", limit: int = 50, cursor: str = "",
                    offset: int = 0) -> dict[str, Any]:
    """Runs newest first by (created_at, id), keyset cursor or offset (rest-api.md §2.3).

    Reads committed rows; hot runs are overlaid so a list shows the latest in-memory state."""
    where, args = ["env_id = ?"], [env]
    if function_id:
        where.append("function_id = ?")
        args.append(function_id)
    if statuses:
        where.append(f"status IN ({','.join('?' * len(statuses))})")
        args.extend(statuses)
    if since:
        where.append("created_at >= ?")
        args.append(since)
    if until:
        where.append("created_at <= ?")
        args.append(until)
    if event_id:
        where.append("event_id = ?")
        args.append(event_id)
    if search:
        where.append("(instr(id, ?) > 0 OR instr(function_id, ?) > 0 OR instr(event_name, ?) > 0)")
        args.extend([search] * 3)
    count_where, count_args = list(where), list(args)
    if cursor:
        values = decode_cursor(cursor)
        if len(values) != 2 or not all(isinstance(v, str) for v in values):
            raise ApiError("invalid_argument", "cursor: malformed")
        where.append("(created_at < ? OR (created_at = ? AND id < ?))")
        args.extend([values[0], values[0], values[1]])
        offset = 0
    sql = (f"SELECT * FROM runs WHERE {' AND '.join(where)} ORDER BY created_at DESC, id DESC "
           f"LIMIT ? OFFSET ?")

    def q(c: Any) -> tuple[list[Any], int]:
        rows = c.execute(sql, (*args, limit + 1, offset)).fetchall()
        total = c.execute(f"SELECT count(*) FROM runs WHERE {' AND '.join(count_where)}",
                          count_args).fetchone()[0]
        return rows, total
    rows, total = await engine.journal.read(q)
    more = len(rows) > limit
    rows = rows[:limit]
    runs = [engine.runs.get(r["id"]) or run_from_row(r, {}) for r in rows]
    next_cursor = encode_cursor([rows[-1]["created_at"], rows[-1]["id"]]) if more and rows else ""
    return {"runs": runs, "next_cursor": next_cursor, "total_count": total}
