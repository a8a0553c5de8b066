"""Backpressure of live subscriptions (websocket.md §2.6): ``buffer``, ``drop`` and ``block`` on
``/ws`` and on the Connect ``Subscribe`` stream.

Unit level: the real item hub over an in-memory journal and the real ``/ws`` connection logic
(:class:`~ironflow_pkg.subscriptions._WsConnection`) on a fake session whose socket takes nothing
until the test drains it, so a slow consumer is deterministic and fast. One short end-to-end test
runs ``block`` over a real socket.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter, deque
from types import SimpleNamespace
from typing import Any

import pytest

from ironflow_pkg.items import PAGE_ROWS, Item, ItemHub, Subscription, parse_pattern
from ironflow_pkg.journal import Journal
from ironflow_pkg.subscriptions import (HARD_LIMIT, RESUME_BELOW, SOFT_LIMIT, _StreamQueue,
                                        _WsConnection, subscription_from)
from ironflow_pkg.topics import publish
from support import InProcessServer, make_settings
from test_subscriptions import subscribe, ws_recv
from test_ws_asyncio import Client

ENV = "env_default"


class FakeSession:
    """The part of WebSocketSession that ``_WsConnection`` uses; its socket takes frames only
    when :meth:`drain` is called (a consumer that does not read)."""

    def __init__(self) -> None:
        self.waiting: deque[tuple[str, str]] = deque()
        self.counts: Counter[str] = Counter()
        self.peak: Counter[str] = Counter()
        self.sent: list[str] = []
        self.on_drain: Any = None
        self.close_code: int | None = None

    @property
    def closed(self) -> bool:
        return self.close_code is not None

    def post(self, data: str, tag: str = "") -> bool:
        if self.closed:
            return False
        self.waiting.append((tag, data))
        if tag:
            self.counts[tag] += 1
            self.peak[tag] = max(self.peak[tag], self.counts[tag])
        return True

    def queued(self, tag: str) -> int:
        return self.counts[tag]

    def start_close(self, code: int, reason: str = "", *, discard: bool = False) -> None:
        self.close_code = code
        if discard:
            self.waiting.clear()
            self.counts.clear()

    def drain(self, n: int) -> None:
        for _ in range(min(n, len(self.waiting))):
            tag, text = self.waiting.popleft()
            if tag:
                self.counts[tag] -= 1
            self.sent.append(text)
        if self.on_drain is not None:
            self.on_drain()


class FakeDropped:
    def __init__(self) -> None:
        self.n = 0

    def labels(self, *_: Any) -> FakeDropped:
        return self

    def inc(self) -> None:
        self.n += 1


@pytest.fixture
def journal():
    j = Journal(":memory:")
    j.open()
    yield j
    j.close()


async def put(journal: Journal, hub: ItemHub, n: int, topic: str = "bp.t") -> list[int]:
    """Publish ``n`` topic messages (stored, then offered live); their sequences in order."""
    seqs: list[int] = []
    for start in range(0, n, 500):
        outs = await asyncio.gather(*[publish(journal, ENV, topic, {"i": start + i}, None,
                                              on_item=hub.publish)
                                      for i in range(min(500, n - start))])
        seqs.extend(o["sequence"] for o in outs)
    return sorted(seqs)


def offer(hub: ItemHub, n: int, first: int = 1) -> list[int]:
    """Offer ``n`` live items without storing them (modes that never read the journal)."""
    for seq in range(first, first + n):
        hub.publish(Item(seq, ENV, "default", "topic", "bp.t", f"evt_{seq}", {"i": seq}, None,
                         "api", "2026-01-01T00:00:00Z"))
    return list(range(first, first + n))


async def settle(ws: _WsConnection) -> None:
    """Let resume tasks (journal reads) finish."""
    for _ in range(200):
        busy = [e.resuming for e in (ws.subs or {}).values() if e.resuming is not None]
        if not busy:
            await asyncio.sleep(0)
            if not [e for e in (ws.subs or {}).values() if e.resuming is not None]:
                return
            continue
        await asyncio.wait(busy, timeout=5)
    raise AssertionError("resume did not settle")


def event_seqs(texts: list[str], sid: str) -> list[int]:
    out = []
    for t in texts:
        m = json.loads(t)
        if m.get("type") == "event" and m["subscriptionId"] == sid:
            out.append(m["meta"]["sequence"])
    return out


async def ws_subscribe(ws: _WsConnection, session: FakeSession, mode: str, **opts: Any) -> str:
    await ws._handle(json.dumps({"type": "subscribe", "subscription": {
        "pattern": "topic:bp.>", "options": {"backpressure": mode, "includeMetadata": True, **opts}}}))
    result = json.loads(session.waiting.popleft()[1])
    assert result["results"][0]["status"] == "ok", result
    return result["results"][0]["subscriptionId"]


def ws_connection(journal: Journal) -> tuple[_WsConnection, FakeSession, ItemHub, FakeDropped]:
    hub = ItemHub(journal)
    dropped = FakeDropped()
    session = FakeSession()
    ws = _WsConnection(SimpleNamespace(hub=hub, dropped=dropped), ENV, session)  # type: ignore[arg-type]
    session.on_drain = ws._drained
    return ws, session, hub, dropped


def test_ws_block_pauses_at_soft_limit_and_resumes_without_gap_or_duplicate(journal):
    async def main() -> None:
        ws, session, hub, _ = ws_connection(journal)
        sid = await ws_subscribe(ws, session, "block")
        sub = ws.subs[sid].sub
        published = await put(journal, hub, 3000)
        # The consumer read nothing: the queue stopped at the soft limit, the rest is not queued.
        assert session.peak[sid] == SOFT_LIMIT and session.queued(sid) == SOFT_LIMIT
        assert sub.paused and sub.cursor == published[SOFT_LIMIT - 1]
        # Drain slowly while more items arrive live (some during catch-ups).
        more = 0
        for _ in range(100):  # bounded: a lost item fails the test instead of hanging it
            if len(event_seqs(session.sent, sid)) >= len(published):
                break
            session.drain(150)
            if more < 4:
                published += await put(journal, hub, 100)
                more += 1
            await settle(ws)
            assert session.queued(sid) <= SOFT_LIMIT
        assert event_seqs(session.sent, sid) == published  # each once, in sequence order
        assert session.peak[sid] <= SOFT_LIMIT
        assert not sub.paused and sub.held is None
        # Live again: a new item is delivered at once.
        (last,) = await put(journal, hub, 1)
        session.drain(10)
        assert event_seqs(session.sent, sid)[-1] == last

    asyncio.run(main())


@pytest.mark.parametrize("when", ["before_a_read", "after_the_last_read"])
def test_hub_resume_seam_has_no_gap_and_no_duplicate(journal, when):
    """Items committed while the catch-up reads the journal arrive live (held) and may also be in
    a page: each is delivered once, in order, and the subscription is live afterwards."""
    async def main() -> None:
        hub = ItemHub(journal)
        got: list[int] = []
        sub = Subscription("sub_t", ENV, parse_pattern("topic:bp.>"), "default", None,
                           lambda it: got.append(it.seq))
        await hub.start(sub)
        first = await put(journal, hub, 10)
        hub.pause(sub)
        skipped = await put(journal, hub, PAGE_ROWS * 2 + 50)  # three pages
        assert got == first
        real_page = hub._page
        during: list[int] = []

        async def page(s: Subscription, after: int) -> Any:
            if when == "before_a_read" and not during:
                during.extend(await put(journal, hub, 5))  # in the page and offered live
            out = await real_page(s, after)
            if when == "after_the_last_read" and not out[2] and not during:
                during.extend(await put(journal, hub, 5))  # offered live only
            return out
        hub._page = page  # type: ignore[method-assign]
        await hub.resume(sub)
        assert sub.held is None and not sub.paused
        assert got == sorted(first + skipped + during)
        more = await put(journal, hub, 3)
        assert got[-3:] == more

    asyncio.run(main())


def test_ws_block_resumes_only_below_the_resume_level(journal):
    async def main() -> None:
        ws, session, hub, _ = ws_connection(journal)
        sid = await ws_subscribe(ws, session, "block")
        sub = ws.subs[sid].sub
        await put(journal, hub, SOFT_LIMIT + 200)
        session.drain(SOFT_LIMIT - RESUME_BELOW)  # exactly RESUME_BELOW left: still paused
        await settle(ws)
        assert sub.paused and session.queued(sid) == RESUME_BELOW
        session.drain(1)
        await settle(ws)
        assert not sub.paused and session.queued(sid) == RESUME_BELOW - 1 + 200

    asyncio.run(main())


def test_ws_block_with_start_after_sequence_pages_through_history(journal):
    async def main() -> None:
        ws, session, hub, _ = ws_connection(journal)
        published = await put(journal, hub, 2500)  # stored before anyone subscribed
        sid = await ws_subscribe(ws, session, "block", startAfterSequence=published[99])
        # _handle ran the catch-up: it stopped at the soft limit.
        assert session.queued(sid) == SOFT_LIMIT and ws.subs[sid].sub.paused
        for _ in range(50):
            if len(event_seqs(session.sent, sid)) >= 2400:
                break
            session.drain(300)
            await settle(ws)
        assert event_seqs(session.sent, sid) == published[100:]

    asyncio.run(main())


def test_ws_drop_discards_beyond_soft_limit_and_counts(journal):
    async def main() -> None:
        ws, session, hub, dropped = ws_connection(journal)
        sid = await ws_subscribe(ws, session, "drop")
        published = offer(hub, SOFT_LIMIT + 300)
        assert session.peak[sid] == SOFT_LIMIT and dropped.n == 300
        session.drain(10_000)
        assert event_seqs(session.sent, sid) == published[:SOFT_LIMIT]

    asyncio.run(main())


def test_ws_buffer_closes_slow_consumer_beyond_hard_limit(journal):
    async def main() -> None:
        ws, session, hub, _ = ws_connection(journal)
        sid = await ws_subscribe(ws, session, "buffer")
        offer(hub, HARD_LIMIT + 5)
        assert session.peak[sid] == HARD_LIMIT
        assert session.close_code == 1011 and ws.slow

    asyncio.run(main())


def test_connect_stream_queue_block_mode(journal):
    async def main() -> None:
        hub = ItemHub(journal)
        q = _StreamQueue(hub, "block", lambda: None)
        sub, _, _ = subscription_from(ENV, "topic:bp.>", {"backpressure": "BACKPRESSURE_MODE_BLOCK"}, q)
        q.sub = sub
        await hub.start(sub)
        published = await put(journal, hub, 3000)
        assert len(q.items) == SOFT_LIMIT and sub.paused
        got: list[int] = []
        more = 0
        while len(got) < len(published):
            got.append((await asyncio.wait_for(q.get(), 5)).seq)
            assert len(q.items) <= SOFT_LIMIT
            if len(got) % 700 == 0 and more < 3:
                published += await put(journal, hub, 50)
                more += 1
        assert got == published
        assert not q.items and not sub.paused

    asyncio.run(main())


def test_connect_stream_queue_drop_and_buffer(journal):
    async def main() -> None:
        hub = ItemHub(journal)
        drops: list[int] = []
        q = _StreamQueue(hub, "drop", lambda: drops.append(1))
        sub, _, _ = subscription_from(ENV, "topic:bp.>", {"backpressure": 1}, q)
        q.sub = sub
        await hub.start(sub)
        offer(hub, SOFT_LIMIT + 20)
        assert len(q.items) == SOFT_LIMIT and len(drops) == 20
        hub.stop(sub)

        q = _StreamQueue(hub, "buffer", lambda: None)
        sub, _, _ = subscription_from(ENV, "topic:bp.>", {}, q)
        q.sub = sub
        await hub.start(sub)
        offer(hub, HARD_LIMIT + 1, first=SOFT_LIMIT + 21)
        assert len(q.items) == HARD_LIMIT and q.overflow
        with pytest.raises(Exception, match="slow consumer"):
            await q.get()

    asyncio.run(main())


def test_ws_block_end_to_end_over_a_socket(tmp_path):
    """A client that does not read while 3,000 x 4 KiB items are published: the server pauses
    the subscription (its queue holds ~1,000 frames, not 3,000) and, once the client reads,
    every item arrives exactly once in sequence order."""
    n, size = 3000, 4096
    with InProcessServer(make_settings(tmp_path)) as srv:
        hub = srv.app.engine.on_item.__self__
        # A fixed 64 KiB receive window (no autotuning to tens of MiB): the server's socket
        # and transport can hold only a few MiB, the rest must wait on the server.
        c = Client(srv.port, path="/ws", rcvbuf=65536)
        assert c.status == 101
        sid = subscribe(c, "topic:bp.>", backpressure="block", includeMetadata=True)["subscriptionId"]
        t0 = time.monotonic()
        pad = "x" * size

        async def burst() -> list[int]:
            outs = await asyncio.gather(*[publish(srv.app.journal, ENV, "bp.t", {"i": i, "pad": pad},
                                                  None, on_item=hub.publish) for i in range(n)])
            return sorted(o["sequence"] for o in outs)
        published = srv.call(burst(), 30)
        (sub,) = [s for s in hub.subs[ENV] if s.id == sid]
        assert sub.paused  # the socket took what it could; the rest waits in the journal
        got = []
        c.sock.settimeout(5)
        while len(got) < n:
            m = ws_recv(c)
            assert m["type"] == "event" and m["subscriptionId"] == sid
            got.append(m["meta"]["sequence"])
        assert got == published
        assert time.monotonic() - t0 < 10
        c.close()


# -- stored items go at the consumer's pace, whatever the mode (websocket.md §2.6) ---------------


async def drain_stream(q: _StreamQueue, n: int) -> list[int]:
    return [(await asyncio.wait_for(q.get(), 5)).seq for _ in range(n)]


@pytest.mark.parametrize("mode", ["buffer", "drop"])
def test_connect_start_after_sequence_catch_up_follows_the_consumer(journal, mode):
    """startAfterSequence over more stored items than the limits: the catch-up pauses at the
    soft limit and continues as the stream is read; buffer does not fail as a slow consumer,
    drop discards no history."""
    async def main() -> None:
        hub = ItemHub(journal)
        stored = HARD_LIMIT + 500 if mode == "buffer" else 3000
        published = await put(journal, hub, stored)
        drops: list[int] = []
        q = _StreamQueue(hub, mode, lambda: drops.append(1))
        sub, _, after = subscription_from(ENV, "topic:bp.>", {"startAfterSequence": 0,
                                                              "backpressure": mode}, q)
        q.sub = sub
        await hub.start(sub, 0, after)
        assert len(q.items) == SOFT_LIMIT and not q.overflow and not drops
        assert await drain_stream(q, stored) == published
        assert not drops and not sub.paused
        # Live afterwards, with the subscription's own mode.
        (last,) = await put(journal, hub, 1)
        assert (await q.get()).seq == last

    asyncio.run(main())


@pytest.mark.parametrize("mode", ["buffer", "drop"])
def test_ws_start_after_sequence_catch_up_follows_the_consumer(journal, mode):
    async def main() -> None:
        ws, session, hub, dropped = ws_connection(journal)
        stored = HARD_LIMIT + 100 if mode == "buffer" else 3000
        published = await put(journal, hub, stored)
        sid = await ws_subscribe(ws, session, mode, startAfterSequence=0)
        assert session.close_code is None and not ws.slow and dropped.n == 0
        assert session.queued(sid) == SOFT_LIMIT
        for _ in range(100):
            if len(event_seqs(session.sent, sid)) >= stored:
                break
            session.drain(700)
            await settle(ws)
            assert session.queued(sid) <= SOFT_LIMIT
        assert event_seqs(session.sent, sid) == published
        assert session.close_code is None and dropped.n == 0
        # Live again, with the subscription's own mode: drop discards beyond the soft limit.
        live = offer(hub, SOFT_LIMIT + 10, first=published[-1] + 1)
        if mode == "drop":
            assert dropped.n == 10
        session.drain(10_000)
        assert event_seqs(session.sent, sid)[stored:] == live[:SOFT_LIMIT if mode == "drop" else None]

    asyncio.run(main())


def test_catch_up_holds_only_what_arrives_during_one_page(journal):
    """Live items that arrive while a long catch-up reads the journal are held; each page the
    catch-up reads next also has them, so what is held does not grow with the catch-up."""
    async def main() -> None:
        hub = ItemHub(journal)
        stored = await put(journal, hub, PAGE_ROWS * 6)
        got: list[int] = []
        sub = Subscription("sub_t", ENV, parse_pattern("topic:bp.>"), "default", None,
                           lambda it: got.append(it.seq))
        real_page = hub._page
        held_sizes: list[int] = []
        live: list[int] = []

        async def page(s: Subscription, after: int) -> Any:
            held_sizes.append(len(s.held or ()))
            if len(live) < 200:
                live.extend(await put(journal, hub, 20))  # stored, then offered live (held)
            return await real_page(s, after)
        hub._page = page  # type: ignore[method-assign]
        hub.subs.setdefault(ENV, set())
        await hub.start(sub, 0, 0)
        assert max(held_sizes) <= 20, held_sizes
        assert got == sorted(stored + live)
        assert sub.held is None and not sub.paused

    asyncio.run(main())


# -- nothing is delivered after unsubscribe ---------------------------------------------------


def test_hub_stop_during_a_catch_up_page_delivers_nothing_more(journal):
    """Stopped while a page is read: neither that page nor the live items held meanwhile are
    delivered."""
    async def main() -> None:
        hub = ItemHub(journal)
        await put(journal, hub, 100)
        got: list[int] = []
        sub = Subscription("sub_t", ENV, parse_pattern("topic:bp.>"), "default", None,
                           lambda it: got.append(it.seq))
        real_page = hub._page

        async def page(s: Subscription, after: int) -> Any:
            out = await real_page(s, after)
            await put(journal, hub, 5)  # committed after the read: offered live, held
            assert s.held
            hub.stop(s)  # unsubscribe arrives meanwhile
            return out
        hub._page = page  # type: ignore[method-assign]
        await hub.start(sub, 0, 0)
        assert got == []
        # A stopped subscription takes no live item either.
        sub.offer(Item(10**6, ENV, "default", "topic", "bp.t", "evt_x", {}, None, "api", "t"))
        assert got == []

    asyncio.run(main())


def test_ws_unsubscribe_during_a_resume_stops_delivery(journal):
    async def main() -> None:
        ws, session, hub, _ = ws_connection(journal)
        await put(journal, hub, 2000)
        sid = await ws_subscribe(ws, session, "block", startAfterSequence=0)
        entry = ws.subs[sid]
        assert entry.sub.paused
        session.drain(600)  # below the resume level: a catch-up task starts
        resuming = entry.resuming
        assert resuming is not None
        await asyncio.sleep(0)  # it awaits its first page read
        await ws._handle(json.dumps({"type": "unsubscribe", "subscriptionId": sid}))
        mark = len(session.waiting)
        await asyncio.gather(resuming, return_exceptions=True)
        await asyncio.sleep(0.05)
        assert len(session.waiting) == mark  # nothing posted after the unsubscribe
        assert resuming.done() and entry.resuming is None
        entry(Item(10**6, ENV, "default", "topic", "bp.t", "evt_x", {}, None, "api", "t"))
        assert len(session.waiting) == mark

    asyncio.run(main())
