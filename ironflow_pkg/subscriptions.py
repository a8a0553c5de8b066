"""Live subscriptions over Connect (``PubSubService``) and the ``/ws`` socket (websocket.md §2),
both on the one :class:`~ironflow_pkg.items.ItemHub`, and consumer groups on both
(:mod:`ironflow_pkg.consumer_groups`).

Backpressure is per subscription and the same on both transports (websocket.md §2.6): frames
waiting for the consumer are counted; at :data:`SOFT_LIMIT` ``drop`` discards new items and
``block`` pauses the subscription (the journal keeps what it skips; it catches up from its
sequence cursor once the queue is below :data:`RESUME_BELOW`); ``buffer`` gives up on the
consumer beyond :data:`HARD_LIMIT` (1011 on ``/ws``, ``resource_exhausted`` on Connect).
Stored items (``replay``, ``startAfterSequence``, a resume) are always delivered the ``block``
way, whatever the mode: history is read at the consumer's pace, never dropped, and never counts
as a slow consumer; ``drop`` and ``buffer`` apply to live items.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from .api_engine import emitted_by, env_of
from .app import App
from .connect import ConnectRouter, payload, set_payload
from .consumer_groups import Group, GroupManager, Member
from .engine import Engine, new_id
from .errors import ApiError
from .items import Item, ItemHub, Subscription, compile_filter, parse_pattern
from .journal import Journal
from .jsonutil import dumps
from .server import HttpRequest, Response
from .topics import publish, validate_topic
from .ws_asyncio import WebSocketSession, websocket_response

log = logging.getLogger("ironflow.pubsub")

#: websocket.md §2.6: frames queued for one subscription before the backpressure mode applies
#: (``drop`` discards, ``block`` pauses the subscription), the level below which a blocked
#: subscription resumes from its cursor, and the hard cap of the ``buffer`` mode (then the
#: connection is closed as a slow consumer).
SOFT_LIMIT = 1000
RESUME_BELOW = 500
HARD_LIMIT = 10000
#: websocket.md §1.2: the client's message limit; a larger event frame carries a stub instead.
MAX_WS_MESSAGE = 1024 * 1024


def _opt(opts: dict[str, Any], *names: str) -> Any:
    for n in names:
        if n in opts and opts[n] is not None:
            return opts[n]
    return None


def subscription_from(env: str, pattern: Any, opts: dict[str, Any],
                      deliver: Callable[[Item], None]) -> tuple[Subscription, int, int | None]:
    """Validate subscribe options (websocket.md §2.2); returns (subscription, replay, after)."""
    pat = parse_pattern(pattern)
    replay = _opt(opts, "replay") or 0
    after = _opt(opts, "start_after_sequence", "startAfterSequence")
    if isinstance(replay, bool) or not isinstance(replay, int) or not 0 <= replay <= 1000:
        raise ApiError("invalid_argument", "replay: an integer 0-1000")
    if after is not None and (isinstance(after, bool) or not isinstance(after, int) or after < 0):
        raise ApiError("invalid_argument", "startAfterSequence: an integer >= 0")
    if replay and after is not None:
        raise ApiError("invalid_argument", "replay and startAfterSequence are exclusive")
    flt = _opt(opts, "filter") or ""
    if not isinstance(flt, str):
        raise ApiError("invalid_argument", "filter: must be a string")
    ns = _opt(opts, "namespace") or "default"
    sub = Subscription(new_id("sub"), env, pat, str(ns), compile_filter(flt), deliver)
    return sub, replay, after


def _backpressure(opts: dict[str, Any]) -> str:
    v = _opt(opts, "backpressure")
    return {1: "drop", 2: "block", 3: "buffer", "BACKPRESSURE_MODE_DROP": "drop",
            "BACKPRESSURE_MODE_BLOCK": "block", "BACKPRESSURE_MODE_BUFFER": "buffer"}.get(
        v, v if v in ("drop", "block", "buffer") else "buffer")


class PubSub:
    def __init__(self, app: App, rpc: ConnectRouter, engine: Engine, journal: Journal,
                 hub: ItemHub) -> None:
        self.engine, self.journal, self.hub = engine, journal, hub
        self.groups = GroupManager(journal, hub)
        app.on_start.append(self.groups.start)
        app.on_stop.append(self.groups.stop)
        engine.on_item = hub.publish
        for m in ("Publish", "Emit", "ListTopics", "GetTopicStats", "CreateConsumerGroup",
                  "GetConsumerGroup", "ListConsumerGroups", "UpdateConsumerGroup",
                  "DeleteConsumerGroup", "AckEvent"):
            rpc.add("PubSubService", m, getattr(self, m))
        rpc.add_stream("PubSubService", "Subscribe", self.Subscribe)
        rpc.add_stream("PubSubService", "JoinConsumerGroup", self.JoinConsumerGroup)
        app.router.add("GET", "/ws", self.ws)
        app.features.add("pubsub")
        #: websocket.md §2.6: frames discarded by ``drop`` subscriptions ("count them in metrics").
        self.dropped = app.metrics_registry.counter(
            "ironflow_subscription_frames_dropped_total",
            "Items not delivered to a drop-mode subscription whose queue was full, by transport.",
            ("transport",))

    # -- unary ---------------------------------------------------------------------------------

    async def Publish(self, req: HttpRequest, m: dict[str, Any]) -> dict[str, Any]:
        data = payload(m, "data")
        return await publish(self.journal, env_of(req), m.get("topic"), {} if data is None else data,
                             m.get("idempotency_key"), req.header("x-ironflow-run-id") or "",
                             on_item=self.hub.publish)

    async def Emit(self, req: HttpRequest, m: dict[str, Any]) -> dict[str, Any]:
        data = payload(m, "data")
        if data is None and "data_value" not in m:
            data = {}
        out = await self.engine.emit(env_of(req), m.get("event") or "", data,
                                     metadata=m.get("metadata") or None,
                                     idempotency_key=m.get("idempotency_key") or None,
                                     version=m.get("version") or 1, emitted_by=emitted_by(req),
                                     namespace=m.get("namespace") or "default")
        return {"run_ids": out["run_ids"], "event_id": out["event_id"]}

    async def ListTopics(self, req: HttpRequest, m: dict[str, Any]) -> dict[str, Any]:
        env = env_of(req)
        rows = await self.journal.read(lambda c: c.execute(
            "SELECT topic, count(*) AS n, min(created_at) AS first, max(created_at) AS last FROM "
            "topic_messages WHERE env_id = ? GROUP BY topic ORDER BY topic", (env,)).fetchall())
        return {"topics": [{"name": r["topic"], "message_count": r["n"],
                            "consumer_count": self._consumers(env, r["topic"]),
                            "first_message_at": r["first"], "last_message_at": r["last"]}
                           for r in rows]}

    async def GetTopicStats(self, req: HttpRequest, m: dict[str, Any]) -> dict[str, Any]:
        env, topic = env_of(req), validate_topic(m.get("topic"))
        row = await self.journal.read(lambda c: c.execute(
            "SELECT count(*) AS n, min(seq) AS lo, max(seq) AS hi FROM topic_messages WHERE "
            "env_id = ? AND topic = ?", (env, topic)).fetchone())
        # features.md §7.1: lag = messages not yet settled by the slowest matching group.
        probe = Item(0, env, "default", "topic", topic, "", None, None, "", "")
        cursors = [g.cursor for (e, _, _), g in self.groups.groups.items()
                   if e == env and g.sub is not None and g.sub.pattern.matches(probe)]
        lag = 0
        if cursors:
            low = min(cursors)
            lag = await self.journal.read(lambda c: c.execute(
                "SELECT count(*) FROM topic_messages WHERE env_id = ? AND topic = ? AND seq > ?",
                (env, topic, low)).fetchone()[0])
        return {"name": topic, "message_count": row["n"], "consumer_count": self._consumers(env, topic),
                "lag": lag, "first_seq": row["lo"] or 0, "last_seq": row["hi"] or 0}

    def _consumers(self, env: str, topic: str) -> int:
        probe = Item(0, env, "default", "topic", topic, "", None, None, "", "")
        return sum(1 for s in self.hub.subs.get(env, ()) if s.pattern.matches(probe))

    # -- consumer groups (features.md §7.3) --------------------------------------------------------

    async def CreateConsumerGroup(self, req: HttpRequest, m: dict[str, Any]) -> dict[str, Any]:
        return (await self.groups.create(env_of(req), m)).message()

    async def GetConsumerGroup(self, req: HttpRequest, m: dict[str, Any]) -> dict[str, Any]:
        return self.groups.get(env_of(req), m.get("namespace") or "", m.get("name") or "").message()

    async def ListConsumerGroups(self, req: HttpRequest, m: dict[str, Any]) -> dict[str, Any]:
        env, ns = env_of(req), m.get("namespace") or ""
        items = [g for (e, n, _), g in sorted(self.groups.groups.items())
                 if e == env and (not ns or n == ns)
                 and (not m.get("status") or g.message()["status"] == m["status"])]
        limit = m.get("limit") or 100
        return {"groups": [g.message() for g in items[:limit]], "next_cursor": "",
                "total_count": len(items)}

    async def UpdateConsumerGroup(self, req: HttpRequest, m: dict[str, Any]) -> dict[str, Any]:
        group = m.get("group") or {}
        return (await self.groups.update(env_of(req), group, list(m.get("update_mask") or []))).message()

    async def DeleteConsumerGroup(self, req: HttpRequest, m: dict[str, Any]) -> dict[str, Any]:
        await self.groups.delete(env_of(req), m.get("namespace") or "", m.get("name") or "")
        return {}

    async def AckEvent(self, req: HttpRequest, m: dict[str, Any]) -> dict[str, Any]:
        kind = {1: "ack", 2: "nak", 3: "term"}.get(m.get("ack_type") or 0)
        if kind is None:
            raise ApiError("invalid_argument", "ack_type: ACK, NAK or TERM")
        g = self.groups.get(env_of(req), m.get("namespace") or "", m.get("group_name") or "")
        self.groups.ack(g, m.get("consumer_id") or "", m.get("event_id") or "", kind,
                        m.get("redeliver_delay_ms") or 0)
        return {}

    async def JoinConsumerGroup(self, req: HttpRequest, m: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        g = self.groups.get(env_of(req), m.get("namespace") or "", m.get("group_name") or "")
        async for ev in self._member_stream(req, g, m.get("consumer_id") or ""):
            yield ev

    async def _member_stream(self, req: HttpRequest, g: Group,
                             consumer_id: str) -> AsyncIterator[dict[str, Any]]:
        queue: asyncio.Queue[tuple[Item | None, int]] = asyncio.Queue()
        def deliver(item: Item | None, attempt: int) -> bool:
            queue.put_nowait((item, attempt))  # type: ignore[arg-type]
            return True
        member = self.groups.join(g, consumer_id, deliver)  # type: ignore[arg-type]
        gone = req.disconnected()
        try:
            while True:
                got, value = await _unless_gone(queue.get(), gone)
                if not got:
                    return
                item, attempt = value
                if item is None:
                    raise ApiError("not_found", "consumer group deleted")
                ev = _subscription_event(member.id, item, True)
                ev["delivery_attempt"] = attempt
                yield ev
        finally:
            self.groups.leave(g, member)

    # -- Connect server stream -------------------------------------------------------------------

    async def Subscribe(self, req: HttpRequest, m: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        opts = m.get("options") or {}
        if opts.get("consumer_group"):
            # features.md §7.2: Subscribe with a consumer group behaves like JoinConsumerGroup.
            g = await self._group_for(env_of(req), m.get("pattern"), opts)
            async for ev in self._member_stream(req, g, ""):
                yield ev
            return
        mode = _backpressure(opts)
        queue = _StreamQueue(self.hub, mode, self.dropped.labels("connect").inc)
        sub, replay, after = subscription_from(env_of(req), m.get("pattern"), opts, queue)
        queue.sub = sub
        include = bool(_opt(opts, "include_metadata"))
        gone = req.disconnected()
        try:
            await self.hub.start(sub, replay, after)
            while True:
                if queue.ready():
                    item = await queue.get()
                else:
                    got, item = await _unless_gone(queue.get(), gone)
                    if not got:
                        return  # the client went away: release the subscription
                yield _subscription_event(sub.id, item, include)
        finally:
            self.hub.stop(sub)

    async def _group_for(self, env: str, pattern: Any, opts: dict[str, Any]) -> Group:
        """websocket.md §2.5: join the group, creating it from the subscription when missing."""
        if _opt(opts, "replay") or _opt(opts, "start_after_sequence", "startAfterSequence") is not None:
            raise ApiError("invalid_argument", "replay and startAfterSequence do not apply to consumer groups")
        ns = _opt(opts, "namespace") or "default"
        name = _opt(opts, "consumer_group", "consumerGroup")
        try:
            return self.groups.get(env, ns, name)
        except ApiError:
            return await self.groups.create(env, {
                "namespace": ns, "name": name, "pattern": pattern,
                "filter_expr": _opt(opts, "filter") or "",
                "ack_mode": _opt(opts, "ack_mode", "ackMode") or "auto"})

    # -- /ws (websocket.md §2) -------------------------------------------------------------------

    async def ws(self, req: HttpRequest, p: dict[str, str]) -> Response:
        if req.head.upgrade is None or req.head.upgrade.lower() != "websocket":
            raise ApiError("invalid_argument", "websocket upgrade required")
        # websocket.md §1.1: no permessage-deflate; §1.2: ping every 30 s, drop after 30 s more.
        return websocket_response(req, _WsHandler(self, env_of(req)), deflate=None,
                                  ping_interval=30.0, ping_timeout=30.0)


async def _unless_gone(aw: Awaitable[Any], gone: asyncio.Event) -> tuple[bool, Any]:
    """Await ``aw`` unless the client goes away first: ``(True, result)`` or ``(False, None)``."""
    get = asyncio.ensure_future(aw)
    stop = asyncio.ensure_future(gone.wait())
    done, _ = await asyncio.wait({get, stop}, return_when=asyncio.FIRST_COMPLETED)
    stop.cancel()
    if get not in done:
        get.cancel()
        return False, None
    return True, get.result()


def _subscription_event(sid: str, item: Item, include: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"subscription_id": sid, "event_id": item.id, "topic": item.name,
                           "sequence": item.seq, "delivery_attempt": 1}
    set_payload(out, "data", item.data)
    if include:
        meta: dict[str, Any] = {"timestamp": item.timestamp, "source": item.source,
                                "namespace": item.namespace}
        if item.metadata:
            meta["custom"] = item.metadata
        out["metadata"] = meta
    return out


class _StreamQueue:
    """The items waiting for one Connect ``Subscribe`` stream, with the subscription's
    backpressure mode (websocket.md §2.6, the same rules as ``/ws``): at :data:`SOFT_LIMIT`
    queued items ``drop`` discards new ones and ``block`` pauses the subscription until the
    stream has taken the queue below :data:`RESUME_BELOW`, then catches up from the journal;
    ``buffer`` ends the stream (``resource_exhausted``) beyond :data:`HARD_LIMIT`.

    It is the subscription's delivery callback (``__call__``)."""

    __slots__ = ("hub", "sub", "mode", "items", "waiter", "overflow", "on_drop")

    def __init__(self, hub: ItemHub, mode: str, on_drop: Callable[[], None]) -> None:
        self.hub = hub
        self.sub: Subscription | None = None
        self.mode = mode
        self.items: deque[Item] = deque()
        self.waiter: asyncio.Future[None] | None = None
        self.overflow = False
        self.on_drop = on_drop

    def __call__(self, item: Item) -> None:
        n = len(self.items)
        sub = self.sub
        # Stored items (replay, startAfterSequence, resume) always go at the consumer's pace:
        # block semantics; drop and buffer apply to live items only.
        mode = "block" if sub is not None and sub.catching_up else self.mode
        if n >= SOFT_LIMIT and mode == "drop":
            self.on_drop()
            return
        if n >= HARD_LIMIT:  # "buffer" ("block" paused long before)
            self.overflow = True
        else:
            self.items.append(item)
            if mode == "block" and n + 1 >= SOFT_LIMIT and sub is not None:
                self.hub.pause(sub)
        w = self.waiter
        if w is not None and not w.done():
            w.set_result(None)

    def ready(self) -> bool:
        return bool(self.items) or self.overflow

    async def get(self) -> Item:
        """The next item (waits for one). ``resource_exhausted`` once ``buffer`` overflowed."""
        while True:
            if self.overflow:
                raise ApiError("resource_exhausted", "slow consumer")
            if self.items:
                item = self.items.popleft()
                sub = self.sub
                if sub is not None and sub.paused and len(self.items) < RESUME_BELOW:
                    await self.hub.resume(sub)  # appends what the pause skipped, in order
                return item
            self.waiter = asyncio.get_running_loop().create_future()
            try:
                await self.waiter
            finally:
                self.waiter = None


class _WsHandler:
    """The ``/ws`` upgrade's handler: runs a :class:`_WsConnection` (no closure per socket)."""

    __slots__ = ("pubsub", "env")

    def __init__(self, pubsub: PubSub, env: str) -> None:
        self.pubsub = pubsub
        self.env = env

    def __call__(self, session: WebSocketSession) -> Awaitable[None]:
        return _WsConnection(self.pubsub, self.env, session).run()


class _WsSub:
    """One plain ``/ws`` subscription: the hub's delivery callback (``__call__``), its frame
    options and its backpressure mode."""

    __slots__ = ("ws", "sub", "include", "mode", "resuming")

    def __init__(self, ws: _WsConnection, include: bool, mode: str) -> None:
        self.ws = ws
        self.sub: Subscription | None = None
        self.include = include
        self.mode = mode
        #: The task catching a blocked subscription up, while it runs.
        self.resuming: asyncio.Future[None] | None = None

    def __call__(self, item: Item) -> None:
        self.ws._deliver(self, item)


class _WsConnection:
    """One ``/ws`` socket: its subscriptions, consumer-group memberships and backpressure.

    Event frames are posted to the session without waiting; frames the socket cannot take yet
    wait in the session's backlog, counted per subscription (the §2.6 queue)."""

    __slots__ = ("pubsub", "hub", "env", "session", "subs", "members", "slow")

    def __init__(self, pubsub: PubSub, env: str, session: WebSocketSession) -> None:
        self.pubsub, self.hub, self.env, self.session = pubsub, pubsub.hub, env, session
        self.subs: dict[str, _WsSub] | None = None
        #: consumer-group memberships of this socket: member id -> (group, member)
        self.members: dict[str, tuple[Group, Member]] | None = None
        self.slow = False

    async def run(self) -> None:
        session = self.session
        session.on_drain = self._drained
        try:
            # recv() gives None as soon as the session starts closing (our close frame sent,
            # e.g. 1011 slow consumer or a ping timeout): the subscriptions and consumer-group
            # memberships end then, not when the closing handshake is over.
            while not self.slow:
                msg = await session.recv()
                if msg is None:
                    return
                await self._handle(msg)
                del msg  # not kept while the socket idles
        finally:
            session.on_drain = None
            for entry in (self.subs or {}).values():
                self.hub.stop(entry.sub)  # type: ignore[arg-type]
                if entry.resuming is not None:
                    entry.resuming.cancel()
            for g, member in (self.members or {}).values():
                self.pubsub.groups.leave(g, member)

    def _frame(self, obj: dict[str, Any]) -> None:
        self.session.post(dumps(obj))

    async def _handle(self, msg: str | bytes) -> None:
        if isinstance(msg, bytes):
            await self.session.close(1003, "binary frames are not supported")
            return
        try:
            m = json.loads(msg)
        except ValueError:
            m = None
        if not isinstance(m, dict):
            self._frame({"type": "error", "code": "invalid_argument", "message": "invalid JSON message"})
            return
        kind = m.get("type")
        if kind == "subscribe":
            specs = m.get("subscriptions") if isinstance(m.get("subscriptions"), list) else [m.get("subscription")]
            made = [await self._subscribe(s) for s in specs]
            # The result goes out before any replayed item, so the client knows the id first.
            self._frame({"type": "subscription_result", "results": [r for r, _ in made]})
            for _, start in made:
                if start is not None:
                    await self.hub.start(*start)
        elif kind == "unsubscribe":
            found = (self.subs or {}).pop(str(m.get("subscriptionId") or ""), None)
            if found is not None:
                self.hub.stop(found.sub)  # type: ignore[arg-type]
                if found.resuming is not None:
                    found.resuming.cancel()  # a catch-up in progress delivers nothing more
        elif kind == "ack":
            self._ack(m)
        else:
            self._frame({"type": "error", "code": "invalid_argument",
                         "message": f"unknown message type {kind!r}"})

    def _ack(self, m: dict[str, Any]) -> None:
        kind = str(m.get("ackType") or "ack").lower()
        if kind not in ("ack", "nak", "term"):
            self._frame({"type": "error", "code": "invalid_argument", "message": "ackType: ack, nak or term"})
            return
        eid = str(m.get("eventId") or "")
        for mid, (g, member) in (self.members or {}).items():
            if eid in g.inflight and g.inflight[eid].member_id == mid:
                if mid not in g.members:
                    return  # left the group (closing): its deliveries return to the group
                delay = m.get("redeliverDelay")
                self.pubsub.groups.ack(g, mid, eid, kind, delay if isinstance(delay, int) else 0)
                return  # an event not in flight on this socket is acknowledged silently

    async def _subscribe(self, spec: Any) -> tuple[dict[str, Any], tuple[Subscription, int, int | None] | None]:
        pattern = spec.get("pattern") if isinstance(spec, dict) else None
        opts = spec.get("options") if isinstance(spec, dict) and isinstance(spec.get("options"), dict) else {}
        include = bool(_opt(opts, "include_metadata", "includeMetadata"))
        if _opt(opts, "consumer_group", "consumerGroup"):
            try:
                parse_pattern(pattern)
                g = await self.pubsub._group_for(self.env, pattern, opts)
            except ApiError as e:
                return {"pattern": pattern, "status": "error", "code": e.code, "message": e.message}, None
            holder: list[Member] = []

            def deliver_group(item: Item | None, attempt: int) -> bool:
                mid = holder[0].id
                if item is None:
                    self._frame({"type": "subscription_error", "subscriptionId": mid,
                                 "code": "not_found", "message": "consumer group deleted",
                                 "retrying": False})
                    return True
                # False once the socket is closing: the group gives the item to another member
                # (auto mode would otherwise count it as acknowledged, and lose it).
                return self.session.post(_event_text(mid, item, include), mid)
            member = self.pubsub.groups.join(g, "", deliver_group)  # type: ignore[arg-type]
            holder.append(member)
            if self.members is None:
                self.members = {}
            self.members[member.id] = (g, member)
            return {"pattern": pattern, "status": "ok", "subscriptionId": member.id}, None
        entry = _WsSub(self, include, _backpressure(opts))
        try:
            sub, replay, after = subscription_from(self.env, pattern, opts, entry)
        except ApiError as e:
            return {"pattern": pattern, "status": "error", "code": e.code, "message": e.message}, None
        entry.sub = sub
        if self.subs is None:
            self.subs = {}
        self.subs[sub.id] = entry
        return {"pattern": pattern, "status": "ok", "subscriptionId": sub.id}, (sub, replay, after)

    def _deliver(self, entry: _WsSub, item: Item) -> None:
        """websocket.md §2.6, for one item of one subscription."""
        sub = entry.sub
        assert sub is not None
        if self.slow or sub.stopped:
            return  # closing as a slow consumer, or unsubscribed (no frame after unsubscribe)
        session = self.session
        sid = sub.id
        n = session.queued(sid)
        # Stored items (replay, startAfterSequence, resume) always go at the consumer's pace:
        # block semantics; drop and buffer apply to live items only.
        mode = "block" if sub.catching_up else entry.mode
        if n >= SOFT_LIMIT and mode == "drop":
            self.pubsub.dropped.labels("ws").inc()
            return
        if n >= HARD_LIMIT:  # "buffer" ("block" paused long before)
            self.slow = True
            session.start_close(1011, "slow consumer", discard=True)
            return
        session.post(_event_text(sid, item, entry.include), sid)
        if mode == "block" and n + 1 >= SOFT_LIMIT:
            # Take no further items; they stay in the journal and come back on resume.
            self.hub.pause(sub)

    def _drained(self) -> None:
        """The session handed queued frames to the socket: resume blocked subscriptions whose
        queue is below :data:`RESUME_BELOW`."""
        if not self.subs:
            return
        for entry in self.subs.values():
            sub = entry.sub
            if sub is not None and sub.paused and entry.resuming is None \
                    and self.session.queued(sub.id) < RESUME_BELOW:
                entry.resuming = asyncio.ensure_future(self._resume(entry))

    async def _resume(self, entry: _WsSub) -> None:
        sub = entry.sub
        assert sub is not None
        try:
            while sub.paused and not sub.stopped and sub.held is None and not self.session.closed \
                    and self.session.queued(sub.id) < RESUME_BELOW:
                await self.hub.resume(sub)
        except Exception:  # a journal failure ends this subscription's delivery, not the socket
            log.exception("resuming a blocked subscription failed")
            self._frame({"type": "subscription_error", "subscriptionId": sub.id,
                         "code": "unavailable", "message": "delivery stopped", "retrying": False})
            self.hub.stop(sub)
        finally:
            entry.resuming = None


#: The last event frame body made (item, include, text after the subscription id): one
#: publish fans the same item out to every subscriber, so the JSON is encoded once per item.
_last_tail: tuple[Item, bool, str] | None = None
_FRAME_HEAD = '{"type":"event","subscriptionId":"'


def _event_text(sid: str, item: Item, include: bool) -> str:
    """The ``event`` frame of websocket.md §2.3 (ids are minted by the server: no escaping)."""
    global _last_tail
    cached = _last_tail
    if cached is not None and cached[0] is item and cached[1] is include:
        tail = cached[2]
    else:
        body: dict[str, Any] = {"topic": item.name, "data": item.data, "eventId": item.id}
        if include:
            body["meta"] = {"timestamp": item.timestamp, "sequence": item.seq}
        tail = dumps(body)[1:]
        room = MAX_WS_MESSAGE - len(_FRAME_HEAD) - len(sid) - 2
        if len(tail) * 4 > room and len(tail.encode()) > room:  # websocket.md §1.2 Decision
            body["data"] = {"$truncated": True, "size": len(json.dumps(item.data))}
            tail = dumps(body)[1:]
        _last_tail = (item, include, tail)
    return _FRAME_HEAD + sid + '",' + tail
