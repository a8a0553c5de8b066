"""KV hot state against a journal whose commits the test controls: reads never serve a change
that is not committed, a failed write puts the previous entry back, small values are answered
from memory within a budget."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import pytest

from ironflow_pkg import kv as kvmod
from ironflow_pkg.journal import JournalError
from ironflow_pkg.kv import KVStore


class FakeJournal:
    """``submit`` hands back a future the test resolves; ``read`` answers from ``rows``."""

    def __init__(self) -> None:
        self.pending: list[asyncio.Future[Any]] = []
        self.reads = 0
        self.rows: dict[int, bytes] = {}

    def submit(self, fn: Any) -> asyncio.Future[Any]:
        fut = asyncio.get_running_loop().create_future()
        self.pending.append(fut)
        return fut

    async def write(self, fn: Any) -> None:
        return None

    async def read(self, fn: Any) -> Any:
        self.reads += 1
        return fn(self)

    # the sqlite connection surface kv.get uses inside read()
    def execute(self, sql: str, args: tuple[Any, ...]) -> Any:
        value = self.rows.get(args[-1])

        class Cursor:
            def fetchone(self_inner) -> Any:
                return None if value is None else {"value": value}
        return Cursor()

    def commit_all(self, exc: BaseException | None = None) -> None:
        for f in self.pending:
            if not f.done():
                f.set_exception(exc) if exc else f.set_result(None)
        self.pending.clear()


async def _store() -> tuple[KVStore, FakeJournal]:
    j = FakeJournal()
    s = KVStore(j)  # type: ignore[arg-type]
    await s.create_bucket("env", {"name": "b", "history": 4})
    return s, j


async def _spin() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def value_of(entry: dict[str, Any]) -> bytes:
    return base64.b64decode(entry["value"])


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_get_waits_for_the_commit_and_answers_from_memory():
    async def main() -> None:
        s, j = await _store()
        put = asyncio.create_task(s.put("env", "b", "k", b"v1"))
        await _spin()
        get = asyncio.create_task(s.get("env", "b", "k"))
        await _spin()
        assert not put.done() and not get.done(), "nothing is answered before COMMIT"
        j.commit_all()
        assert await put == 1
        assert value_of(await get) == b"v1"
        assert j.reads == 0, "a small value is served from memory"
        assert s.inline_bytes == 2
    run(main())


def test_failed_write_restores_the_previous_entry():
    async def main() -> None:
        s, j = await _store()
        first = asyncio.create_task(s.put("env", "b", "k", b"old"))
        await _spin()
        j.commit_all()
        await first
        second = asyncio.create_task(s.put("env", "b", "k", b"newer"))
        await _spin()
        get = asyncio.create_task(s.get("env", "b", "k"))
        await _spin()
        j.commit_all(JournalError("disk full"))
        with pytest.raises(JournalError):
            await second
        e = await get
        assert value_of(e) == b"old" and e["revision"] == 1
        assert s.inline_bytes == 3
        # a failed delete leaves the key readable too
        d = asyncio.create_task(s.delete("env", "b", "k"))
        await _spin()
        j.commit_all(JournalError("disk full"))
        with pytest.raises(JournalError):
            await d
        assert value_of(await s.get("env", "b", "k")) == b"old"
    run(main())


def test_a_caller_that_goes_away_does_not_undo_its_write():
    async def main() -> None:
        s, j = await _store()
        put = asyncio.create_task(s.put("env", "b", "k", b"v"))
        await _spin()
        put.cancel()
        await _spin()
        j.commit_all()  # the journal commits it anyway (Journal.write docs)
        await _spin()
        assert value_of(await s.get("env", "b", "k")) == b"v"
    run(main())


def test_large_values_are_read_from_the_journal():
    async def main() -> None:
        s, j = await _store()
        big = b"x" * (kvmod.INLINE_MAX + 1)
        put = asyncio.create_task(s.put("env", "b", "k", big))
        await _spin()
        j.commit_all()
        rev = await put
        j.rows[rev] = big
        assert value_of(await s.get("env", "b", "k")) == big and j.reads == 1
        assert s.inline_bytes == 0
    run(main())


def test_inline_budget_purge_and_bucket_delete(monkeypatch):
    monkeypatch.setattr(kvmod, "INLINE_BUDGET", 10)

    async def main() -> None:
        s, j = await _store()
        for key, value in (("a", b"12345"), ("b", b"67890"), ("c", b"overflow")):
            t = asyncio.create_task(s.put("env", "b", key, value))
            await _spin()
            j.commit_all()
            j.rows[await t] = value
        assert s.inline_bytes == 10  # "c" did not fit: it is read from the journal
        assert value_of(await s.get("env", "b", "c")) == b"overflow" and j.reads == 1
        purge = asyncio.create_task(s.delete("env", "b", "a", purge=True))
        await _spin()
        assert s.list_keys("env", "b") == ["b", "c"]
        j.commit_all()
        await purge
        assert "a" not in s.buckets[("env", "b")].keys and s.inline_bytes == 5
        await s.delete_bucket("env", "b")
        assert s.inline_bytes == 0
    run(main())


def test_a_failed_batch_falls_back_past_every_failed_write():
    """P committed; A then B queued in one group commit that fails: the key is P again, not A."""
    async def main() -> None:
        s, j = await _store()
        first = asyncio.create_task(s.put("env", "b", "k", b"P"))
        await _spin()
        j.commit_all()
        await first
        a = asyncio.create_task(s.put("env", "b", "k", b"A"))
        b = asyncio.create_task(s.put("env", "b", "k", b"B"))
        await _spin()
        j.commit_all(JournalError("batch failed"))
        for t in (a, b):
            with pytest.raises(JournalError):
                await t
        e = await s.get("env", "b", "k")
        assert value_of(e) == b"P" and e["revision"] == 1
        assert s.inline_bytes == 1
        # and a conditional write is decided against P's revision, not A's
        c = asyncio.create_task(s.put("env", "b", "k", b"C", if_match='"1"'))
        await _spin()
        j.commit_all()
        assert await c == 4
    run(main())


def test_a_read_is_not_starved_by_a_stream_of_writes():
    """A read waits for the write in flight when it started, not for the ones queued after."""
    async def main() -> None:
        s, j = await _store()
        first = asyncio.create_task(s.put("env", "b", "k", b"v1"))
        await _spin()
        get = asyncio.create_task(s.get("env", "b", "k"))
        await _spin()
        j.commit_all()  # v1 commits; the reader has not looked again yet...
        second = asyncio.create_task(s.put("env", "b", "k", b"v2"))  # ...and v2 is queued
        e = await asyncio.wait_for(get, 2)
        assert value_of(e) == b"v1"
        j.commit_all()
        await first, await second
    run(main())


def test_watchers_hear_a_write_whose_caller_went_away():
    async def main() -> None:
        s, j = await _store()
        heard: list[Any] = []
        s.listeners.add(lambda env, bucket, change: heard.append(change["revision"]))
        put = asyncio.create_task(s.put("env", "b", "k", b"v"))
        await _spin()
        put.cancel()
        await _spin()
        j.commit_all()
        await _spin()
        assert heard == [1]
    run(main())


def test_inline_count_never_drifts(monkeypatch):
    async def main() -> None:
        s, j = await _store()
        # a write in flight when its bucket is deleted, which then fails
        put = asyncio.create_task(s.put("env", "b", "k", b"abcd"))
        await _spin()
        await s.delete_bucket("env", "b")
        j.commit_all(JournalError("gone"))
        with pytest.raises(JournalError):
            await put
        assert s.inline_bytes == 0
        # an expired value is released when a read finds it expired
        clock = [1000.0]
        s.clock = lambda: clock[0]
        await s.create_bucket("env", {"name": "t", "ttl_seconds": 5})
        put = asyncio.create_task(s.put("env", "t", "k", b"xyz"))
        await _spin()
        j.commit_all()
        await put
        assert s.inline_bytes == 3
        clock[0] += 10
        with pytest.raises(Exception):
            await s.get("env", "t", "k")
        assert s.inline_bytes == 0
    run(main())
