"""KV store: buckets of keys with per-bucket revisions, history, TTL and conditional writes
(rest-api.md §3.12, features.md §8).

Bucket metadata and the latest entry of every key are hot state, so conditional writes are
decided on the event loop without a race. Small values are kept in memory with their entry (a GET
needs no journal read, within :data:`INLINE_BUDGET` bytes in all); larger ones are read from the
journal on demand. Every change is committed before it is answered and then offered to watchers.

A change becomes the key's latest entry when it is queued (so the next conditional write sees
it) but is marked in flight until its commit: a read waits for that commit instead of serving a
value that is not durable yet, and a failed write puts the previous entry back.
"""

from __future__ import annotations

import asyncio
import base64
import re
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import conditional
from .errors import ApiError
from .journal import Journal
from .jsonutil import fmt_ts, name_matches, now_ts

BUCKET_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MAX_KEY_BYTES = 1024
MAX_HISTORY = 64
DEFAULT_MAX_VALUE = 1024 * 1024
#: Values up to this size live in memory with their key's latest entry...
INLINE_MAX = 4096
#: ...as long as all inline values together stay under this (per process; beyond, journal reads).
INLINE_BUDGET = 64 * 1024 * 1024


@dataclass
class Latest:
    """The newest kept revision of a key."""

    revision: int
    operation: str  # "put" | "delete"
    size: int
    created_at: str
    expires_at: float | None
    #: The value itself when it is kept in memory (see INLINE_MAX), else None.
    value: bytes | None = None
    #: While the write holding this entry is queued: resolves at its COMMIT (or fails).
    commit: asyncio.Future[Any] | None = None
    #: While in flight: the entry this one replaced (what a failure falls back to).
    prev: Latest | None = None
    #: Its write failed: never served; readers and rollbacks walk past it to ``prev``.
    failed: bool = False

    def live(self, now: float) -> bool:
        return self.operation == "put" and (self.expires_at is None or now < self.expires_at)


def _committed(entry: Latest | None) -> Latest | None:
    """``entry``, or the newest entry before it whose write did not fail."""
    while entry is not None and entry.failed:
        entry = entry.prev
    return entry


@dataclass
class Bucket:
    env_id: str
    name: str
    description: str
    ttl_seconds: int
    history: int
    max_bytes: int
    max_value_size: int
    revision: int
    created_at: str
    keys: dict[str, Latest] = field(default_factory=dict)
    #: Deleted: writes still in flight settle without touching the store's accounting.
    dropped: bool = False

    def live_keys(self, now: float) -> dict[str, Latest]:
        return {k: e for k, e in self.keys.items() if e.live(now)}

    def info(self, now: float) -> dict[str, Any]:
        live = self.live_keys(now)
        out: dict[str, Any] = {"name": self.name, "values": len(live),
                               "bytes": sum(e.size for e in live.values()), "history": self.history,
                               "created_at": self.created_at}
        if self.description:
            out["description"] = self.description
        if self.ttl_seconds:
            out["ttl_seconds"] = self.ttl_seconds
        return out


def validate_key(key: str) -> str:
    raw = key.encode("utf-8", "surrogatepass")
    if not key or len(raw) > MAX_KEY_BYTES or not key.isprintable():
        raise ApiError("invalid_argument", "key: 1-1024 bytes of UTF-8 without control characters")
    return key


def _int(body: dict[str, Any], name: str, default: int, lo: int, hi: int | None = None) -> int:
    v = body.get(name)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, int) or v < lo or (hi is not None and v > hi):
        raise ApiError("invalid_argument", f"{name}: an integer in [{lo}, {hi or '∞'}] is required")
    return v


Change = dict[str, Any]


class KVStore:
    def __init__(self, journal: Journal, clock: Callable[[], float] = time.time) -> None:
        self.journal = journal
        self.clock = clock
        self.buckets: dict[tuple[str, str], Bucket] = {}
        #: Bytes of values kept in memory (bounded by INLINE_BUDGET).
        self.inline_bytes = 0
        #: Called with (env, bucket, change) after every committed change (watch sockets).
        self.listeners: set[Callable[[str, str, Change], None]] = set()

    def load(self) -> None:
        def q(c: sqlite3.Connection) -> tuple[list[Any], list[Any]]:
            b = c.execute("SELECT * FROM kv_buckets").fetchall()
            e = c.execute("SELECT env_id, bucket, key, revision, operation, length(value) AS size, "
                          "CASE WHEN operation = 'put' AND length(value) <= ? THEN value END AS value, "
                          "created_at, expires_at FROM kv_entries k WHERE revision = (SELECT "
                          "max(revision) FROM kv_entries WHERE env_id = k.env_id AND bucket = "
                          "k.bucket AND key = k.key)", (INLINE_MAX,)).fetchall()
            return b, e
        buckets, entries = self.journal.read_sync(q)
        for r in buckets:
            self.buckets[(r["env_id"], r["name"])] = Bucket(
                r["env_id"], r["name"], r["description"], r["ttl_seconds"], r["history"],
                r["max_bytes"], r["max_value_size"], r["revision"], r["created_at"])
        now = self.clock()
        for r in entries:
            b = self.buckets.get((r["env_id"], r["bucket"]))
            if b is not None:
                entry = Latest(r["revision"], r["operation"], r["size"], r["created_at"],
                               r["expires_at"])
                if entry.live(now):  # an expired value can never be read: not worth memory
                    entry.value = self._inline(r["value"])
                self._set(b, r["key"], entry)

    # -- hot entries ---------------------------------------------------------------------------

    def _inline(self, value: bytes | None) -> bytes | None:
        """``value`` if it may be kept in memory now, else None."""
        if value is None or len(value) > INLINE_MAX or self.inline_bytes + len(value) > INLINE_BUDGET:
            return None
        return bytes(value)

    def _set(self, b: Bucket, key: str, entry: Latest | None) -> None:
        """Make ``entry`` the key's latest (None: no entry), keeping the inline byte count."""
        old = b.keys.pop(key, None)
        if entry is not None:
            b.keys[key] = entry
        if b.dropped:
            return  # its bytes left the count when the bucket was deleted
        if old is not None and old.value is not None:
            self.inline_bytes -= len(old.value)
        if entry is not None and entry.value is not None:
            self.inline_bytes += len(entry.value)

    def _release(self, env: str, bucket: str, key: str, entry: Latest) -> None:
        """Drop the inline value of an expired entry (it can never be read again)."""
        b = self.buckets.get((env, bucket))
        if b is not None and b.keys.get(key) is entry and entry.value is not None:
            self.inline_bytes -= len(entry.value)
            entry.value = None

    async def _commit(self, b: Bucket, key: str, entry: Latest,
                      fn: Callable[[sqlite3.Connection], Any], change: Change, *,
                      drop: bool = False) -> None:
        """Queue ``fn`` and make ``entry`` the key's latest while it is in flight; answer after
        COMMIT, then tell the watchers (even when the caller went away meanwhile). A failed write
        falls back to the newest entry before it that did not fail. ``drop``: once committed the
        key has no entry at all (purge)."""
        entry.prev = b.keys.get(key)
        fut = self.journal.submit(fn)
        entry.commit = fut
        self._set(b, key, entry)

        def settle(f: asyncio.Future[Any]) -> None:
            entry.commit = None
            ok = not f.cancelled() and f.exception() is None
            latest = b.keys.get(key) is entry
            if not ok:
                entry.failed = True  # successors walk past it (_committed)
                if latest:
                    self._set(b, key, _committed(entry.prev))
                return
            entry.prev = None  # committed: nothing falls back beyond it
            if latest and drop:
                self._set(b, key, None)
            self._notify(b.env_id, b.name, change)
        fut.add_done_callback(settle)
        # Shielded: a caller that goes away does not cancel the write (it will commit anyway).
        await asyncio.shield(fut)

    async def _settled(self, env: str, bucket: str, key: str) -> Latest | None:
        """The key's newest committed entry as of now: waits for the write in flight when the
        read started (never serves it before its COMMIT), not for writes queued after it."""
        b = self._bucket(env, bucket)
        cur = b.keys.get(key)
        while cur is not None and cur.commit is not None:
            try:
                await asyncio.shield(cur.commit)
            except Exception:  # that write failed: fall back to what stood before it
                pass
            if not cur.failed:
                break
            cur = cur.prev
        self._bucket(env, bucket)  # deleted meanwhile: not found
        return _committed(cur)

    def _bucket(self, env: str, name: str) -> Bucket:
        b = self.buckets.get((env, name))
        if b is None:
            raise ApiError("not_found", "bucket not found")
        return b

    # -- buckets -------------------------------------------------------------------------------

    async def create_bucket(self, env: str, body: dict[str, Any]) -> dict[str, Any]:
        name = body.get("name")
        if not isinstance(name, str) or not BUCKET_RE.match(name):
            raise ApiError("invalid_argument", "name: 1-64 characters of [A-Za-z0-9_-]")
        if name.startswith("SYS_"):
            raise ApiError("invalid_argument", "name: the SYS_ prefix is reserved")
        if (env, name) in self.buckets:
            raise ApiError("already_exists", f"bucket {name} already exists")
        desc = body.get("description") or ""
        if not isinstance(desc, str):
            raise ApiError("invalid_argument", "description: must be a string")
        b = Bucket(env, name, desc, _int(body, "ttl_seconds", 0, 0),
                   _int(body, "history", 1, 1, MAX_HISTORY), _int(body, "max_bytes", 0, 0),
                   _int(body, "max_value_size", DEFAULT_MAX_VALUE, 1), 0, now_ts())
        self.buckets[(env, name)] = b  # claimed now: a concurrent create gets 409

        def w(c: sqlite3.Connection) -> None:
            c.execute("INSERT INTO kv_buckets (env_id, name, description, ttl_seconds, history, "
                      "max_bytes, max_value_size, revision, created_at) VALUES (?,?,?,?,?,?,?,0,?)",
                      (env, name, b.description, b.ttl_seconds, b.history, b.max_bytes,
                       b.max_value_size, b.created_at))
        try:
            await self.journal.write(w)
        except BaseException:
            self.buckets.pop((env, name), None)
            raise
        return b.info(self.clock())

    def list_buckets(self, env: str) -> list[dict[str, Any]]:
        now = self.clock()
        return [b.info(now) for (e, n), b in sorted(self.buckets.items())
                if e == env and not n.startswith("SYS_")]

    def get_bucket(self, env: str, name: str) -> dict[str, Any]:
        return self._bucket(env, name).info(self.clock())

    async def delete_bucket(self, env: str, name: str) -> None:
        b = self._bucket(env, name)
        del self.buckets[(env, name)]
        b.dropped = True
        self.inline_bytes -= sum(len(e.value) for e in b.keys.values() if e.value is not None)

        def w(c: sqlite3.Connection) -> None:
            c.execute("DELETE FROM kv_entries WHERE env_id = ? AND bucket = ?", (env, name))
            c.execute("DELETE FROM kv_buckets WHERE env_id = ? AND name = ?", (env, name))
        await self.journal.write(w)
        self._notify(env, name, {"type": "bucket_deleted"})

    # -- keys ----------------------------------------------------------------------------------

    async def put(self, env: str, bucket: str, key: str, value: bytes,
                  if_match: str | None = None, if_none_match: str | None = None) -> int:
        b = self._bucket(env, bucket)
        validate_key(key)
        now = self.clock()
        if len(value) > b.max_value_size:
            raise ApiError("resource_exhausted", f"value of {len(value)} bytes exceeds the bucket's "
                           f"max_value_size {b.max_value_size}", status=413)
        cur = b.keys.get(key)
        live = cur is not None and cur.live(now)
        conditional.check(if_match, if_none_match, cur.revision if live else None)
        if b.max_bytes:
            used = sum(e.size for k, e in b.live_keys(now).items() if k != key)
            if used + len(value) > b.max_bytes:
                raise ApiError("resource_exhausted", "bucket max_bytes exceeded", status=413)
        b.revision += 1
        rev = b.revision
        expires = now + b.ttl_seconds if b.ttl_seconds else None
        created = fmt_ts(now)
        entry = Latest(rev, "put", len(value), created, expires, self._inline(value))
        await self._commit(b, key, entry, lambda c: self._write_entry(c, b, key, rev, "put", value,
                                                                      created, expires),
                           {"key": key, "value": value, "revision": rev, "operation": "put"})
        return rev

    def _write_entry(self, c: sqlite3.Connection, b: Bucket, key: str, rev: int, op: str,
                     value: bytes, created: str, expires: float | None) -> None:
        c.execute("INSERT INTO kv_entries (env_id, bucket, key, revision, operation, value, "
                  "created_at, expires_at) VALUES (?,?,?,?,?,?,?,?)",
                  (b.env_id, b.name, key, rev, op, value, created, expires))
        c.execute("UPDATE kv_buckets SET revision = ? WHERE env_id = ? AND name = ? AND revision < ?",
                  (rev, b.env_id, b.name, rev))
        # Keep only the newest `history` revisions of the key.
        c.execute("DELETE FROM kv_entries WHERE env_id = ? AND bucket = ? AND key = ? AND revision "
                  "NOT IN (SELECT revision FROM kv_entries WHERE env_id = ? AND bucket = ? AND "
                  "key = ? ORDER BY revision DESC LIMIT ?)",
                  (b.env_id, b.name, key, b.env_id, b.name, key, b.history))

    async def get(self, env: str, bucket: str, key: str) -> dict[str, Any]:
        while True:
            cur = await self._settled(env, bucket, key)
            if cur is None or not cur.live(self.clock()):
                if cur is not None and cur.value is not None:
                    self._release(env, bucket, key, cur)
                raise ApiError("not_found", "key not found")
            rev, value = cur.revision, cur.value
            if value is None:
                row = await self.journal.read(lambda c: c.execute(
                    "SELECT value FROM kv_entries WHERE env_id = ? AND bucket = ? AND key = ? "
                    "AND revision = ?", (env, bucket, key, rev)).fetchone())
                if row is None:  # overwritten and trimmed meanwhile: report the newer state
                    continue
                value = bytes(row["value"])
            return {"key": key, "value": base64.b64encode(value).decode(), "revision": rev,
                    "operation": "put", "created_at": cur.created_at}

    async def delete(self, env: str, bucket: str, key: str, purge: bool = False) -> int:
        b = self._bucket(env, bucket)
        cur = b.keys.get(key)
        if cur is None or not cur.live(self.clock()):
            raise ApiError("not_found", "key not found")
        b.revision += 1
        rev = b.revision
        created = now_ts()
        tombstone = Latest(rev, "delete", 0, created, None)
        change = {"key": key, "value": b"", "revision": rev, "operation": "delete"}
        if purge:
            def w(c: sqlite3.Connection) -> None:
                c.execute("DELETE FROM kv_entries WHERE env_id = ? AND bucket = ? AND key = ?",
                          (env, bucket, key))
                c.execute("UPDATE kv_buckets SET revision = ? WHERE env_id = ? AND name = ?",
                          (rev, env, bucket))
            await self._commit(b, key, tombstone, w, change, drop=True)
        else:
            await self._commit(b, key, tombstone, lambda c: self._write_entry(
                c, b, key, rev, "delete", b"", created, None), change)
        return rev

    def list_keys(self, env: str, bucket: str, pattern: str = "") -> list[str]:
        b = self._bucket(env, bucket)
        keys = sorted(b.live_keys(self.clock()))
        return [k for k in keys if name_matches(pattern, k)] if pattern else keys

    def _notify(self, env: str, bucket: str, change: Change) -> None:
        for fn in list(self.listeners):
            fn(env, bucket, change)
