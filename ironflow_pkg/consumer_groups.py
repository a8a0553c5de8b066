"""Consumer groups (features.md §7.3, websocket.md §2.5): each matching item goes to one member.

A group is a durable definition plus a cursor (every item at or below it is settled). Its live
state is in memory: a subscription on the item hub feeds ``pending``; members take items
round-robin up to ``max_inflight``; MANUAL acks settle, NAK redelivers after a delay, TERM drops,
unacked items are redelivered after ``redeliver_delay_ms`` and dropped after
``max_redeliveries``. After a restart the group resumes from its cursor, so unsettled items are
delivered again (at-least-once).
"""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .engine import new_id
from .errors import ApiError
from .items import Item, ItemHub, Subscription, compile_filter, parse_pattern
from .journal import Journal
from .jsonutil import dumps, loads, now_ts

ACK_MODES = {1: "auto", 2: "manual", "ACK_MODE_AUTO": "auto", "ACK_MODE_MANUAL": "manual",
             "auto": "auto", "manual": "manual"}
STATUS_NUMBER = {"active": 1, "paused": 2, "deleted": 3}
NUMBER_STATUS = {v: k for k, v in STATUS_NUMBER.items()}
#: The group cursor is written at most this often (seconds); a crash replays a little more.
CURSOR_FLUSH = 0.5
UPDATABLE = ("pattern", "filter_expr", "ack_mode", "backpressure", "max_inflight",
             "max_redeliveries", "redeliver_delay_ms", "metadata", "status")


@dataclass
class Member:
    id: str
    consumer_id: str
    #: Hands an item (and its delivery attempt) to the consumer; returns False when the member
    #: cannot take it any more (its connection is closing): the item then goes to another
    #: member and this one leaves the group.
    deliver: Callable[[Item, int], bool]
    inflight: int = 0


@dataclass
class Delivery:
    item: Item
    attempt: int
    member_id: str
    timer: asyncio.TimerHandle | None = None


@dataclass
class Group:
    env: str
    namespace: str
    name: str
    id: str
    config: dict[str, Any]
    status: str
    created_at: str
    updated_at: str
    cursor: int
    members: dict[str, Member] = field(default_factory=dict)
    pending: deque[tuple[Item, int]] = field(default_factory=deque)
    inflight: dict[str, Delivery] = field(default_factory=dict)
    outstanding: set[int] = field(default_factory=set)
    high: int = 0  # highest sequence ever accepted
    sub: Subscription | None = None
    rr: itertools.count = field(default_factory=itertools.count)

    def message(self) -> dict[str, Any]:
        c = self.config
        out = {"id": self.id, "namespace": self.namespace, "name": self.name, "pattern": c["pattern"],
               "filter_expr": c["filter_expr"], "ack_mode": 2 if c["ack_mode"] == "manual" else 1,
               "backpressure": c["backpressure"], "max_inflight": c["max_inflight"],
               "max_redeliveries": c["max_redeliveries"],
               "redeliver_delay_ms": c["redeliver_delay_ms"], "status": STATUS_NUMBER[self.status],
               "member_count": len(self.members), "created_at": self.created_at,
               "updated_at": self.updated_at}
        if c.get("metadata"):
            out["metadata"] = c["metadata"]
        return out


def _config(m: dict[str, Any], base: dict[str, Any] | None = None) -> dict[str, Any]:
    c = dict(base or {"pattern": "", "filter_expr": "", "ack_mode": "auto", "backpressure": 3,
                      "max_inflight": 100, "max_redeliveries": 3, "redeliver_delay_ms": 5000,
                      "metadata": {}})
    for k in ("pattern", "filter_expr", "metadata"):
        if m.get(k) is not None:
            c[k] = m[k]
    if m.get("ack_mode"):
        c["ack_mode"] = ACK_MODES.get(m["ack_mode"], c["ack_mode"])
    if m.get("backpressure"):
        c["backpressure"] = m["backpressure"]
    for k in ("max_inflight", "max_redeliveries", "redeliver_delay_ms"):
        if m.get(k):
            if not isinstance(m[k], int) or m[k] < 0:
                raise ApiError("invalid_argument", f"{k}: a non-negative integer")
            c[k] = m[k]
    parse_pattern(c["pattern"])
    compile_filter(c["filter_expr"])
    return c


class GroupManager:
    def __init__(self, journal: Journal, hub: ItemHub) -> None:
        self.journal = journal
        self.hub = hub
        self.groups: dict[tuple[str, str, str], Group] = {}
        self._dirty: set[tuple[str, str, str]] = set()
        self._flush: asyncio.TimerHandle | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        rows = await self.journal.read(lambda c: c.execute(
            "SELECT * FROM consumer_groups WHERE status != 'deleted'").fetchall())
        for r in rows:
            g = Group(r["env_id"], r["namespace"], r["name"], r["id"], loads(r["config"]),
                      r["status"], r["created_at"], r["updated_at"], r["cursor"])
            self.groups[(g.env, g.namespace, g.name)] = g
            await self._subscribe(g, after=g.cursor)

    async def stop(self) -> None:
        if self._flush is not None:
            self._flush.cancel()
        await self._write_cursors()

    async def _subscribe(self, g: Group, after: int | None) -> None:
        c = g.config
        sub = Subscription(new_id("sub"), g.env, parse_pattern(c["pattern"]), g.namespace,
                           compile_filter(c["filter_expr"]), lambda item: self._accept(g, item))
        g.sub = sub
        await self.hub.start(sub, 0, after)  # after=None: new items only

    def _accept(self, g: Group, item: Item) -> None:
        g.high = max(g.high, item.seq)
        g.outstanding.add(item.seq)
        g.pending.append((item, 1))
        self._dispatch(g)

    # -- CRUD ------------------------------------------------------------------------------------

    def get(self, env: str, namespace: str, name: str) -> Group:
        g = self.groups.get((env, namespace or "default", name))
        if g is None:
            raise ApiError("not_found", f"consumer group not found: {name}")
        return g

    async def create(self, env: str, m: dict[str, Any]) -> Group:
        ns, name = m.get("namespace") or "default", m.get("name") or ""
        if not isinstance(name, str) or not name or len(name) > 256:
            raise ApiError("invalid_argument", "name: 1-256 characters")
        if (env, ns, name) in self.groups:
            raise ApiError("already_exists", f"consumer group {name} already exists")
        now = now_ts()
        g = Group(env, ns, name, new_id("cg"), _config(m), "active", now, now, 0)
        self.groups[(env, ns, name)] = g
        await self._subscribe(g, after=None)  # groups start at new items only
        g.cursor = g.high = g.sub.cursor if g.sub else 0
        try:
            await self.journal.write(lambda c: self._save(c, g))
        except BaseException:
            del self.groups[(env, ns, name)]
            if g.sub is not None:
                self.hub.stop(g.sub)
            raise
        return g

    async def update(self, env: str, m: dict[str, Any], mask: list[str]) -> Group:
        g = self.get(env, m.get("namespace") or "", m.get("name") or "")
        paths = mask or list(UPDATABLE)
        bad = [p for p in paths if p not in UPDATABLE]
        if bad:
            raise ApiError("invalid_argument", f"update_mask: unknown path {bad[0]}")
        new = _config({k: m.get(k) for k in paths if k != "status"}, g.config)
        if "status" in paths and m.get("status"):
            status = NUMBER_STATUS.get(m["status"]) if isinstance(m["status"], int) else None
            if status not in ("active", "paused"):
                raise ApiError("invalid_argument", "status: ACTIVE or PAUSED")
            g.status = status
        pattern_changed = (new["pattern"], new["filter_expr"]) != (g.config["pattern"], g.config["filter_expr"])
        g.config, g.updated_at = new, now_ts()
        await self.journal.write(lambda c: self._save(c, g))
        if pattern_changed and g.sub is not None:
            self.hub.stop(g.sub)
            await self._subscribe(g, after=None)
        self._dispatch(g)
        return g

    async def delete(self, env: str, namespace: str, name: str) -> None:
        g = self.get(env, namespace, name)
        g.status = "deleted"
        del self.groups[(g.env, g.namespace, g.name)]
        if g.sub is not None:
            self.hub.stop(g.sub)
        for d in g.inflight.values():
            if d.timer is not None:
                d.timer.cancel()
        await self.journal.write(lambda c: c.execute(
            "UPDATE consumer_groups SET status = 'deleted', updated_at = ? WHERE id = ?",
            (now_ts(), g.id)))
        for member in list(g.members.values()):
            member.deliver(None, 0)  # type: ignore[arg-type]  # end of stream: group deleted

    def _save(self, c: sqlite3.Connection, g: Group) -> None:
        c.execute("INSERT INTO consumer_groups (id, env_id, namespace, name, config, status, cursor, "
                  "created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT(id) DO UPDATE SET "
                  "config = excluded.config, status = excluded.status, updated_at = excluded.updated_at",
                  (g.id, g.env, g.namespace, g.name, dumps(g.config), g.status, g.cursor,
                   g.created_at, g.updated_at))

    # -- members and delivery ---------------------------------------------------------------------

    def join(self, g: Group, consumer_id: str, deliver: Callable[[Item, int], bool]) -> Member:
        m = Member(new_id("sub"), consumer_id, deliver)
        g.members[m.id] = m
        # Deliver on the next loop turn: the caller first records the member it gets back.
        asyncio.get_running_loop().call_soon(self._dispatch, g)
        return m

    def leave(self, g: Group, m: Member) -> None:
        g.members.pop(m.id, None)  # its in-flight items come back when their timers expire

    def _dispatch(self, g: Group) -> None:
        if g.status != "active":
            return
        manual = g.config["ack_mode"] == "manual"
        limit = g.config["max_inflight"] or 100
        while g.pending and g.members:
            members = list(g.members.values())
            start = next(g.rr)
            target = None
            for i in range(len(members)):
                cand = members[(start + i) % len(members)]
                if cand.inflight < limit:
                    target = cand
                    break
            if target is None:
                return
            item, attempt = g.pending.popleft()
            if target.deliver(item, attempt) is False:
                # The member's connection is closing: the item was not handed over. It goes
                # to the next member (or waits in pending), neither settled nor in flight on a
                # consumer that will never ack it; the member is gone for good.
                g.pending.appendleft((item, attempt))
                self.leave(g, target)
                continue
            if manual:
                target.inflight += 1
                d = Delivery(item, attempt, target.id)
                d.timer = asyncio.get_running_loop().call_later(
                    g.config["redeliver_delay_ms"] / 1000.0, self._expired, g, item.id)
                g.inflight[item.id] = d
            else:
                self._settle(g, item.seq)  # AUTO: acknowledged once handed to the member

    def _expired(self, g: Group, event_id: str) -> None:
        d = g.inflight.pop(event_id, None)
        if d is None:
            return
        self._release(g, d)
        self._retry(g, d)

    def _release(self, g: Group, d: Delivery) -> None:
        m = g.members.get(d.member_id)
        if m is not None and m.inflight > 0:
            m.inflight -= 1

    def _retry(self, g: Group, d: Delivery, delay: float = 0.0) -> None:
        if d.attempt > g.config["max_redeliveries"]:
            self._settle(g, d.item.seq)  # dropped after max_redeliveries redeliveries
            self._dispatch(g)
            return
        def again() -> None:
            g.pending.appendleft((d.item, d.attempt + 1))
            self._dispatch(g)
        if delay > 0:
            asyncio.get_running_loop().call_later(delay, again)
        else:
            again()

    def ack(self, g: Group, member_id: str, event_id: str, kind: str, delay_ms: int = 0) -> None:
        if member_id not in g.members:
            raise ApiError("not_found", "consumer not found in the group")
        d = g.inflight.pop(event_id, None)
        if d is None:
            return  # not in flight: acknowledged silently
        if d.timer is not None:
            d.timer.cancel()
        self._release(g, d)
        if kind == "ack" or kind == "term":
            self._settle(g, d.item.seq)
            self._dispatch(g)
        else:  # nak
            self._retry(g, d, (delay_ms or g.config["redeliver_delay_ms"]) / 1000.0)

    # -- cursor ------------------------------------------------------------------------------------

    def _settle(self, g: Group, seq: int) -> None:
        g.outstanding.discard(seq)
        cursor = (min(g.outstanding) - 1) if g.outstanding else g.high
        if cursor > g.cursor:
            g.cursor = cursor
            self._dirty.add((g.env, g.namespace, g.name))
            if self._flush is None:
                self._flush = asyncio.get_running_loop().call_later(
                    CURSOR_FLUSH, lambda: asyncio.ensure_future(self._write_cursors()))

    async def _write_cursors(self) -> None:
        self._flush = None
        dirty, self._dirty = self._dirty, set()
        rows = [(self.groups[k].cursor, self.groups[k].id) for k in dirty if k in self.groups]
        if rows:
            await self.journal.write(lambda c: c.executemany(
                "UPDATE consumer_groups SET cursor = ? WHERE id = ?", rows))
