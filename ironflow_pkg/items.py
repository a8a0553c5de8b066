"""The item log and its live fan-out (websocket.md §5): user events and topic messages share one
global sequence; subscriptions match items by pattern, namespace and filter.

Sequences are allocated inside the journal's write transaction (:func:`next_seq`), so they are
gap-tolerant, strictly increasing and survive restarts. Items are published to the hub right
after their write committed, in commit order.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import ApiError
from .expr import Expression, ExprError, compile_expr
from .journal import Journal
from .jsonutil import dumps, loads, name_matches, now_ts

#: Replays read at most this many items (features.md §22).
MAX_REPLAY = 1000
PREFIXES = ("events:", "topic:", "entity:")


def next_seq(conn: sqlite3.Connection) -> int:
    """Allocate the next global item sequence (inside the caller's write transaction)."""
    return conn.execute("UPDATE item_counter SET seq = seq + 1 WHERE id = 1 RETURNING seq").fetchone()[0]


def store_system_event(conn: sqlite3.Connection, env: str, subject: str, data: Any, now: str,
                       event_id: str) -> "Item":
    """Write a system event into the item log (inside the caller's transaction)."""
    seq = next_seq(conn)
    conn.execute("INSERT INTO system_events (seq, id, env_id, subject, data, created_at) "
                 "VALUES (?, ?, ?, ?, ?, ?)", (seq, event_id, env, subject, dumps(data), now))
    return Item(seq, env, "default", "system", subject, event_id, data, None, "system", now)


class SystemEvents:
    """System events of the stores (config, secrets) and the function registry
    (websocket.md §5.5): stored in the item log after the change committed, then published."""

    def __init__(self, journal: Journal, publish: Callable[[Item], None]) -> None:
        self.journal = journal
        self.publish = publish

    async def emit(self, env: str, subject: str, data: Any) -> None:
        from .engine import new_id  # the engine imports this module: resolved at call time
        now, eid = now_ts(), new_id("evt")
        item = await self.journal.write(lambda c: store_system_event(c, env, subject, data, now, eid))
        self.publish(item)


@dataclass(frozen=True)
class Item:
    seq: int
    env_id: str
    namespace: str
    kind: str  # "events" | "topic" | "system"
    name: str  # event name, topic, or the full system subject
    id: str
    data: Any
    metadata: dict[str, Any] | None
    source: str
    timestamp: str

    @property
    def subject(self) -> str:
        return self.name if self.kind == "system" else f"{self.kind}:{self.name}"


@dataclass(frozen=True)
class Pattern:
    kind: str
    subject: str

    def matches(self, item: Item) -> bool:
        return item.kind == self.kind and name_matches(self.subject, item.name)


def parse_pattern(text: Any) -> Pattern:
    if not isinstance(text, str) or not text:
        raise ApiError("invalid_argument", "pattern: required")
    return _parse_pattern(text)


@functools.lru_cache(maxsize=1024)
def _parse_pattern(text: str) -> Pattern:
    # Cached: many subscribers share a few patterns, and a Pattern is immutable.
    if text.startswith("system."):
        tokens = text.split(".")
        if "" in tokens or any(t == ">" for t in tokens[:-1]):
            raise ApiError("invalid_argument", f"pattern {text!r}: invalid subject")
        return Pattern("system", text)
    for prefix in PREFIXES:
        if text.startswith(prefix):
            subject = text[len(prefix):]
            tokens = subject.split(".")
            if not subject or "" in tokens or any(t == ">" for t in tokens[:-1]):
                raise ApiError("invalid_argument", f"pattern {text!r}: invalid subject")
            return Pattern(prefix[:-1], subject)
    raise ApiError("invalid_argument", "pattern needs a namespace prefix")


def compile_filter(text: str) -> Expression | None:
    if not text:
        return None
    try:
        return compile_expr(text)
    except ExprError as e:
        raise ApiError("invalid_argument", f"filter: {e}") from None


def filter_vars(item: Item) -> dict[str, Any]:
    return {"data": item.data, "metadata": item.metadata or {}, "name": item.name,
            "source": item.source, "topic": item.name}


class Subscription:
    """One live subscription: a matcher plus a delivery callback (the transport's queue).

    ``cursor`` is the sequence of the last item delivered. A paused subscription (the ``block``
    backpressure mode, websocket.md §2.6) takes no live items; :meth:`ItemHub.resume` later
    delivers what it missed from the journal, starting after the cursor.
    """

    __slots__ = ("id", "env", "pattern", "namespace", "filter", "deliver", "cursor", "held",
                 "paused", "stopped")

    def __init__(self, sid: str, env: str, pattern: Pattern, namespace: str,
                 filter_expr: Expression | None, deliver: Callable[[Item], None]) -> None:
        self.id, self.env, self.pattern, self.namespace = sid, env, pattern, namespace
        self.filter = filter_expr
        self.deliver = deliver
        #: Items with a sequence at or below this were already delivered (replay seam).
        self.cursor = 0
        #: While stored items are read (replay, resume), live items wait here.
        self.held: list[Item] | None = None
        #: Set by the consumer (``block`` mode): live items are skipped, the journal keeps them.
        self.paused = False
        self.stopped = False

    @property
    def catching_up(self) -> bool:
        """True while stored items are delivered (replay, ``startAfterSequence``, resume): the
        consumer must then pause the subscription when its queue is full (``block``
        semantics, whatever its backpressure mode), as the journal keeps what it skips."""
        return self.held is not None

    def wants(self, item: Item) -> bool:
        return (item.env_id == self.env and item.namespace == self.namespace
                and self.pattern.matches(item)
                and (self.filter is None or self.filter.test(filter_vars(item))))

    def offer(self, item: Item) -> None:
        if self.paused or self.stopped or item.seq <= self.cursor or not self.wants(item):
            return
        if self.held is not None:
            self.held.append(item)
            return
        self.cursor = item.seq
        self.deliver(item)


_SOURCES = {
    "events": ("events", "name", "metadata, source", "namespace"),
    "topic": ("topic_messages", "topic", "NULL AS metadata, 'api' AS source", "namespace"),
    "system": ("system_events", "subject", "NULL AS metadata, 'system' AS source",
               "'default' AS namespace"),
}
#: Rows read per journal query while replaying or catching up.
PAGE_ROWS = 500


class ItemHub:
    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self.subs: dict[str, set[Subscription]] = {}

    def publish(self, item: Item) -> None:
        for sub in list(self.subs.get(item.env_id, ())):
            sub.offer(item)

    def count(self, env: str) -> int:
        return len(self.subs.get(env, ()))

    async def start(self, sub: Subscription, replay: int = 0, after: int | None = None) -> None:
        """Register ``sub``; first deliver the last ``replay`` stored matches, or every stored
        match after sequence ``after``, then live items with no gap and no duplicate."""
        self.subs.setdefault(sub.env, set()).add(sub)
        if not replay and after is None:
            head = await self._head()
            sub.cursor = max(sub.cursor, head)
            return
        if after is not None:
            sub.cursor = max(sub.cursor, after)
            await self._catch_up(sub)
            return
        sub.held = []
        try:
            for it in await self.history(sub, replay):
                if sub.paused or sub.stopped:
                    break  # the rest is read again from the cursor on resume
                if it.seq > sub.cursor:
                    sub.cursor = it.seq
                    sub.deliver(it)
        finally:
            held, sub.held = sub.held or [], None
        for it in held:
            sub.offer(it)

    def stop(self, sub: Subscription) -> None:
        sub.stopped = True
        subs = self.subs.get(sub.env)
        if subs is not None:
            subs.discard(sub)

    @staticmethod
    def pause(sub: Subscription) -> None:
        """Stop delivering live items to ``sub`` (websocket.md §2.6 ``block``); the cursor stays
        at the last delivered item, so :meth:`resume` loses nothing."""
        sub.paused = True

    async def resume(self, sub: Subscription) -> None:
        """Deliver every stored match after ``sub.cursor``, then go live again: no gap (the
        journal has every item the pause skipped) and no duplicate (live items that arrive
        during the catch-up are held and filtered by sequence). If the consumer pauses again
        meanwhile, this returns early and a later call continues from the new cursor."""
        if not sub.paused or sub.held is not None or sub.stopped:
            return
        sub.paused = False
        await self._catch_up(sub)

    async def _catch_up(self, sub: Subscription) -> None:
        sub.held = []
        done = False
        try:
            scan = sub.cursor
            while not sub.paused and not sub.stopped:
                items, last, full = await self._page(sub, scan)
                for it in items:
                    if sub.stopped:
                        break  # unsubscribed while the page was read: deliver nothing more
                    if it.seq > sub.cursor:
                        sub.cursor = it.seq
                        sub.deliver(it)
                        if sub.paused:
                            break
                if not full:
                    break  # caught up: everything committed later arrives live (held)
                scan = last
                if sub.held:
                    # Another page follows, and every held item is in the journal (an item is
                    # published after its write committed, so before that read starts): the
                    # pages deliver them. Dropping them here keeps what is held bounded by what
                    # arrives during one page read, however long the catch-up.
                    sub.held.clear()
            done = True
        finally:
            held, sub.held = sub.held or [], None
            if not done:
                sub.paused = True  # interrupted: live items must not jump the gap
        for it in held:
            sub.offer(it)  # skips what the catch-up delivered, and everything once paused again

    async def _head(self) -> int:
        return await self.journal.read(lambda c: c.execute(
            "SELECT seq FROM item_counter WHERE id = 1").fetchone()[0])

    def _rows_sql(self, sub: Subscription, where: str, order: str) -> str:
        table, name_col, extra, ns = _SOURCES[sub.pattern.kind]
        ns_where = "namespace = ?" if ns == "namespace" else "'default' = ?"
        return (f"SELECT seq, id, {name_col} AS name, data, {extra}, created_at, {ns} FROM "
                f"{table} WHERE env_id = ? AND {ns_where}{where} ORDER BY seq {order} "
                f"LIMIT {PAGE_ROWS}")

    def _items(self, sub: Subscription, rows: list[Any]) -> list[Item]:
        out = []
        for r in rows:
            it = Item(r["seq"], sub.env, r["namespace"], sub.pattern.kind, r["name"], r["id"],
                      loads(r["data"]), loads(r["metadata"]), r["source"], r["created_at"])
            if sub.wants(it):
                out.append(it)
        return out

    async def _page(self, sub: Subscription, after: int) -> tuple[list[Item], int, bool]:
        """Stored matches with sequence > ``after``, oldest first, from one page of rows; the
        last row's sequence; whether the page was full (more rows may follow)."""
        if sub.pattern.kind == "entity":
            return [], after, False  # entity streams do not exist yet: nothing stored can match
        sql = self._rows_sql(sub, " AND seq > ?", "ASC")
        args = (sub.env, sub.namespace, after)
        rows = await self.journal.read(lambda c: c.execute(sql, args).fetchall())
        if not rows:
            return [], after, False
        return self._items(sub, rows), rows[-1]["seq"], len(rows) >= PAGE_ROWS

    async def history(self, sub: Subscription, replay: int) -> list[Item]:
        """The last ``replay`` stored matches (at most :data:`MAX_REPLAY`), oldest first."""
        if sub.pattern.kind == "entity":
            return []  # entity streams do not exist yet: nothing stored can match
        # Scan newest first in pages and match in Python (patterns are token-based).
        out: list[Item] = []
        cursor = None
        while True:
            where = "" if cursor is None else " AND seq < ?"
            args = (sub.env, sub.namespace) if cursor is None else (sub.env, sub.namespace, cursor)
            sql = self._rows_sql(sub, where, "DESC")
            rows = await self.journal.read(lambda c, q=sql, a=args: c.execute(q, a).fetchall())
            if not rows:
                break
            out.extend(self._items(sub, rows))
            cursor = rows[-1]["seq"]
            if len(out) >= (replay or 0):
                break
        out = out[:min(replay, MAX_REPLAY)]
        out.reverse()
        return out
