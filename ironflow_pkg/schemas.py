"""Event schema registry and enforcement (features.md §9).

Schemas are JSON Schema Draft 2020-12 documents (``ironflow_pkg/jsonschema.py``), registered per
(environment, event name, version). The compiled registry is hot state; the journal is the
truth. Enforcement (``IRONFLOW_EVENT_SCHEMA_ENFORCEMENT``: off / warn / reject) runs inside the
engine's emit through :meth:`SchemaRegistry.check`.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from dataclasses import dataclass
from typing import Any

from .errors import ApiError
from .journal import Journal
from .jsonschema import CompiledSchema, SchemaError, compile_schema, schema_hash
from .jsonutil import dumps, fmt_ts, loads, now_ts

log = logging.getLogger("ironflow.schemas")
MODES = ("off", "warn", "reject")
#: CheckEnforcement scans at most this many recent events (features.md §9.2).
TRAFFIC_SCAN_CAP = 10000


@dataclass
class SchemaEntry:
    env_id: str
    event_name: str
    version: int
    schema_json: str
    description: str
    created_at: str
    updated_at: str
    compiled: CompiledSchema
    hash: str

    def info(self) -> dict[str, Any]:
        """SchemaInfo / GetSchemaResponse (proto field names)."""
        return {"event_name": self.event_name, "version": self.version,
                "schema_json": self.schema_json, "description": self.description,
                "created_at": self.created_at, "environment_id": self.env_id}

    def rest(self, status: str | None = None) -> dict[str, Any]:
        out = {**self.info(), "schema": json.loads(self.schema_json)}
        if status:
            out["status"] = status
        return out


def compile_document(text: str, field: str = "schema_json") -> tuple[CompiledSchema, Any]:
    try:
        doc = json.loads(text)
    except (ValueError, TypeError):
        raise ApiError("invalid_argument", f"{field}: not valid JSON") from None
    if not isinstance(doc, dict):
        raise ApiError("invalid_argument", f"{field}: a JSON Schema object is required")
    try:
        return compile_schema(doc, strict_refs_local_only=True), doc
    except SchemaError as e:
        raise ApiError("invalid_argument", f"{field}: {e}") from None


class SchemaRegistry:
    def __init__(self, journal: Journal, mode: str = "off") -> None:
        if mode not in MODES:
            raise ValueError(f"enforcement mode must be one of {MODES}")
        self.journal = journal
        self.mode = mode
        self.entries: dict[tuple[str, str, int], SchemaEntry] = {}
        self.warnings = 0

    def load(self) -> None:
        rows = self.journal.read_sync(lambda c: c.execute("SELECT * FROM event_schemas").fetchall())
        for r in rows:
            try:
                compiled, doc = compile_document(r["schema_json"])
            except ApiError as e:  # a stored schema this build cannot compile: keep it visible
                log.error("stored schema does not compile", extra={"fields": {
                    "event_name": r["event_name"], "version": r["version"], "error": e.message}})
                continue
            self.entries[(r["env_id"], r["event_name"], r["version"])] = SchemaEntry(
                r["env_id"], r["event_name"], r["version"], r["schema_json"], r["description"],
                r["created_at"], r["updated_at"], compiled, schema_hash(doc))

    # -- enforcement -------------------------------------------------------------------------

    def check(self, env: str, name: str, version: int, data: Any) -> str:
        """Validate an emit (features.md §9.2). Returns the schema hash when valid, "" when no
        schema applies or enforcement is off; raises invalid_argument in reject mode."""
        if self.mode == "off":
            return ""
        entry = self.entries.get((env, name, version or 1))
        if entry is None:
            return ""
        errors = entry.compiled.validate(data)
        if not errors:
            return entry.hash
        first = errors[0]
        message = (f"event {name!r} v{entry.version} does not match its schema: "
                   f"{first.path or '/'}: {first.message}")
        if self.mode == "reject":
            raise ApiError("invalid_argument", message,
                           details={"errors": [{"path": e.path, "keyword": e.keyword,
                                                "message": e.message} for e in errors[:20]]})
        self.warnings += 1
        log.warning("schema violation (warn mode)", extra={"fields": {
            "event": name, "version": entry.version, "error": message}})
        return ""

    # -- registry ------------------------------------------------------------------------------

    def get(self, env: str, name: str, version: int = 0) -> SchemaEntry:
        if version:
            entry = self.entries.get((env, name, version))
        else:
            found = [e for (en, n, _), e in self.entries.items() if en == env and n == name]
            entry = max(found, key=lambda e: e.version) if found else None
        if entry is None:
            raise ApiError("not_found", "schema not found")
        return entry

    def list(self, env: str, name: str = "") -> list[SchemaEntry]:
        return sorted((e for (en, n, _), e in self.entries.items()
                       if en == env and (not name or n == name)),
                      key=lambda e: (e.event_name, e.version))

    async def register(self, env: str, name: str, version: int, text: str, description: str,
                       reason: str, actor: str) -> tuple[SchemaEntry, str]:
        if not isinstance(name, str) or not name or len(name) > 256 or any(c.isspace() for c in name):
            raise ApiError("invalid_argument", "event_name: 1-256 characters without whitespace")
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise ApiError("invalid_argument", "version: an integer >= 1 is required")
        compiled, doc = compile_document(text)
        key = (env, name, version)
        prev = self.entries.get(key)
        now = now_ts()
        entry = SchemaEntry(env, name, version, text, description or "",
                            prev.created_at if prev else now, now, compiled, schema_hash(doc))
        status = "updated" if prev else "created"

        def w(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT INTO event_schemas (env_id, event_name, version, schema_json, "
                         "description, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?) "
                         "ON CONFLICT(env_id, event_name, version) DO UPDATE SET schema_json = "
                         "excluded.schema_json, description = excluded.description, "
                         "updated_at = excluded.updated_at",
                         (env, name, version, text, entry.description, entry.created_at, now))
            _history(conn, env, name, version, status, prev, actor, reason, now)
        await self.journal.write(w)
        self.entries[key] = entry
        return entry, status

    async def delete(self, env: str, name: str, version: int, reason: str, actor: str) -> None:
        prev = self.get(env, name, version)
        now = now_ts()

        def w(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM event_schemas WHERE env_id = ? AND event_name = ? AND "
                         "version = ?", (env, name, prev.version))
            _history(conn, env, name, prev.version, "deleted", prev, actor, reason, now)
        await self.journal.write(w)
        self.entries.pop((env, name, prev.version), None)

    async def history(self, env: str, name: str, version: int, limit: int,
                      before: int) -> dict[str, Any]:
        limit = max(1, min(limit or 50, 200))
        where, args = ["env_id = ?", "event_name = ?"], [env, name]
        if version:
            where.append("version = ?")
            args.append(version)
        if before:
            where.append("revision < ?")
            args.append(before)
        rows = await self.journal.read(lambda c: c.execute(
            f"SELECT * FROM event_schema_history WHERE {' AND '.join(where)} ORDER BY revision DESC "
            f"LIMIT ?", (*args, limit + 1)).fetchall())
        entries = [_history_entry(r) for r in rows[:limit]]
        more = len(rows) > limit
        return {"entries": entries, "has_more": more,
                "next_before_revision": entries[-1]["revision"] if more and entries else 0}

    async def revision(self, env: str, name: str, version: int, revision: int) -> dict[str, Any]:
        row = await self.journal.read(lambda c: c.execute(
            "SELECT * FROM event_schema_history WHERE env_id = ? AND event_name = ? AND "
            "revision = ? AND (? = 0 OR version = ?)", (env, name, revision, version, version)).fetchone())
        if row is None:
            raise ApiError("not_found", "schema revision not found")
        return _history_entry(row)

    async def check_enforcement(self, env: str, name: str, window_hours: int) -> dict[str, Any]:
        window_hours = window_hours if window_hours and window_hours > 0 else 24
        entries = self.list(env, name)
        since = fmt_ts(time.time() - window_hours * 3600)
        out = []
        for e in entries:
            rows = await self.journal.read(lambda c, e=e: c.execute(
                "SELECT version, schema_hash, count(*) AS n FROM (SELECT version, schema_hash FROM "
                "events WHERE env_id = ? AND name = ? AND created_at >= ? ORDER BY seq DESC LIMIT ?) "
                "GROUP BY version, schema_hash ORDER BY version, schema_hash",
                (env, e.event_name, since, TRAFFIC_SCAN_CAP + 1)).fetchall())
            total = sum(r["n"] for r in rows)
            out.append({"event_name": e.event_name, "version": e.version, "schema_hash": e.hash,
                        "asserts": e.compiled.asserts, "compile_error": "",
                        "traffic": [{"version": r["version"], "schema_hash": r["schema_hash"],
                                     "count": r["n"]} for r in rows],
                        "traffic_truncated": total > TRAFFIC_SCAN_CAP})
        return {"mode": self.mode, "schemas": out, "traffic_window_hours": window_hours,
                "total_schemas": len(out)}


def _history(conn: sqlite3.Connection, env: str, name: str, version: int, change: str,
             prev: SchemaEntry | None, actor: str, reason: str, now: str) -> None:
    previous = None if prev is None else dumps({
        "event_name": prev.event_name, "environment_id": prev.env_id, "version": prev.version,
        "schema_json": prev.schema_json, "description": prev.description})
    conn.execute("INSERT INTO event_schema_history (env_id, event_name, version, change_type, "
                 "previous_definition, actor_id, change_reason, recorded_at) "
                 "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                 (env, name, version, change, previous, actor, reason or "", now))


def _history_entry(row: sqlite3.Row) -> dict[str, Any]:
    out: dict[str, Any] = {"event_id": f"esh_{row['revision']}", "revision": row["revision"],
                           "actor_id": row["actor_id"], "change_reason": row["change_reason"],
                           "change_type": row["change_type"], "recorded_at": row["recorded_at"]}
    prev = loads(row["previous_definition"])
    if prev:
        out["previous_definition"] = prev
    return out
