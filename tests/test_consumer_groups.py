"""Consumer-group delivery over ``/ws`` when a member's socket is closing (websocket.md §2.5):
an item the member's socket can no longer take goes to another member instead of being counted
as acknowledged (auto) or waiting in flight on a consumer that will never ack it (manual).

Unit level: the real group manager and ``/ws`` connection logic over an in-memory journal, on
the fake session of ``test_pubsub_backpressure`` (``post`` returns False once it is closing).
"""

from __future__ import annotations

import asyncio
import functools
import json
from types import SimpleNamespace

import pytest

from ironflow_pkg.consumer_groups import GroupManager
from ironflow_pkg.items import ItemHub
from ironflow_pkg.subscriptions import PubSub, _WsConnection
from test_pubsub_backpressure import ENV, FakeDropped, FakeSession, journal, put  # noqa: F401


def _pubsub(journal_: object) -> SimpleNamespace:
    hub = ItemHub(journal_)  # type: ignore[arg-type]
    ns = SimpleNamespace(hub=hub, dropped=FakeDropped(), groups=GroupManager(journal_, hub))  # type: ignore[arg-type]
    ns._group_for = functools.partial(PubSub._group_for, ns)
    return ns


async def _join(ws: _WsConnection, session: FakeSession, ack_mode: str) -> str:
    await ws._handle(json.dumps({"type": "subscribe", "subscription": {
        "pattern": "topic:g.>", "options": {"consumerGroup": "g1", "ackMode": ack_mode}}}))
    (result,) = json.loads(session.waiting.popleft()[1])["results"]
    assert result["status"] == "ok", result
    return result["subscriptionId"]


def _events(session: FakeSession) -> list[str]:
    return [m["eventId"] for m in (json.loads(t) for _, t in session.waiting) if m["type"] == "event"]


@pytest.mark.parametrize("ack_mode", ["auto", "manual"])
def test_items_for_a_closing_member_go_to_a_live_member(journal, ack_mode):  # noqa: F811
    async def main() -> None:
        ps = _pubsub(journal)
        s1, s2 = FakeSession(), FakeSession()
        w1, w2 = _WsConnection(ps, ENV, s1), _WsConnection(ps, ENV, s2)  # type: ignore[arg-type]
        m1 = await _join(w1, s1, ack_mode)
        m2 = await _join(w2, s2, ack_mode)
        await asyncio.sleep(0)
        g = ps.groups.get(ENV, "default", "g1")
        # Socket 1 starts closing (e.g. 1011 slow consumer on another subscription, or a ping
        # timeout) while its handler has not left the group yet.
        s1.start_close(1011, "slow consumer")
        seqs = await put(journal, ps.hub, 10, topic="g.t")
        await asyncio.sleep(0)
        assert len(_events(s2)) == 10  # every item, none lost on the closing socket
        assert m1 not in g.members and m2 in g.members
        if ack_mode == "auto":
            assert g.cursor == seqs[-1] and not g.outstanding and not g.pending
        else:
            assert {d.member_id for d in g.inflight.values()} == {m2} and len(g.inflight) == 10
            assert g.members[m2].inflight == 10
            for eid in _events(s2):
                await w2._handle(json.dumps({"type": "ack", "eventId": eid}))
            assert g.cursor == seqs[-1] and not g.inflight

    asyncio.run(main())


def test_item_waits_in_pending_when_the_only_member_is_closing(journal):  # noqa: F811
    async def main() -> None:
        ps = _pubsub(journal)
        s1 = FakeSession()
        w1 = _WsConnection(ps, ENV, s1)  # type: ignore[arg-type]
        await _join(w1, s1, "auto")
        await asyncio.sleep(0)
        g = ps.groups.get(ENV, "default", "g1")
        s1.start_close(1000)
        seqs = await put(journal, ps.hub, 3, topic="g.t")
        await asyncio.sleep(0)
        assert not g.members and [it.seq for it, _ in g.pending] == seqs
        assert g.cursor < seqs[0]  # not acknowledged
        # The next member gets them.
        s2 = FakeSession()
        w2 = _WsConnection(ps, ENV, s2)  # type: ignore[arg-type]
        await _join(w2, s2, "auto")
        await asyncio.sleep(0)
        assert len(_events(s2)) == 3 and g.cursor == seqs[-1]

    asyncio.run(main())
