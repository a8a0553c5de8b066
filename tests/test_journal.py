"""Tests for ironflow_pkg.journal and ironflow_pkg.migrations (stdlib + pytest only)."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import queue
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from ironflow_pkg.journal import (
    Journal,
    JournalClosed,
    JournalError,
    JournalTimeout,
    backup_database,
)
from ironflow_pkg.migrations import (
    MIGRATIONS,
    Migration,
    MigrationError,
    apply_migrations,
    split_statements,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
CRASH_CHILD = Path(__file__).resolve().parent / "journal_crash_child.py"


def _create_items(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, value TEXT NOT NULL)")


def _insert(i: int, value: str = "v"):
    def fn(conn: sqlite3.Connection) -> int:
        conn.execute("INSERT INTO items (id, value) VALUES (?, ?)", (i, value))
        return i

    return fn


def _count(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT COUNT(*) FROM items").fetchone()[0])


def _ids(conn: sqlite3.Connection) -> set[int]:
    return {int(r[0]) for r in conn.execute("SELECT id FROM items")}


@pytest.fixture
def journal(tmp_path: Path):
    j = Journal(str(tmp_path / "j.db"))
    j.open()
    j.write_sync(_create_items)
    yield j
    j.close()


# --- migrations ---------------------------------------------------------------------------------


def test_migrations_from_empty_then_reopen_does_not_rerun(tmp_path: Path, caplog) -> None:
    path = str(tmp_path / "sub" / "dir" / "j.db")  # parent directories are created
    caplog.set_level(logging.INFO, logger="ironflow.journal")
    with Journal(path) as j:
        assert j.schema_version == len(MIGRATIONS)
        env = j.read_sync(
            lambda c: c.execute("SELECT * FROM environments WHERE id = 'env_default'").fetchone()
        )
        assert env["name"] == "default"
        assert env["org_id"] == "org_default"
        assert env["project_id"] == "proj_default_default"
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", env["created_at"])
        first = j.read_sync(lambda c: [tuple(r) for r in c.execute("SELECT * FROM schema_version")])
    assert [r[0] for r in first] == [m.version for m in MIGRATIONS]
    applied = [r for r in caplog.records if r.getMessage() == "migration applied"]
    assert [(r.fields["version"], r.fields["name"]) for r in applied] == [
        (m.version, m.name) for m in MIGRATIONS]

    caplog.clear()
    with Journal(path) as j:
        assert j.schema_version == len(MIGRATIONS)
        again = j.read_sync(lambda c: [tuple(r) for r in c.execute("SELECT * FROM schema_version")])
        envs = j.read_sync(lambda c: c.execute("SELECT COUNT(*) FROM environments").fetchone()[0])
    assert again == first  # same rows, same applied_at: nothing re-ran
    assert envs == 1
    assert not any(r.getMessage() == "migration applied" for r in caplog.records)
    assert any("up to date" in r.getMessage() for r in caplog.records)


def test_foundation_tables_and_foreign_keys(journal: Journal) -> None:
    tables = journal.read_sync(
        lambda c: {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    )
    assert {"environments", "api_keys", "server_meta", "schema_version"} <= tables
    indexes = journal.read_sync(
        lambda c: [r["name"] for r in c.execute("PRAGMA index_list(api_keys)")]
    )
    assert "api_keys_env_id" in indexes

    def bad_key(c: sqlite3.Connection) -> None:
        c.execute(
            "INSERT INTO api_keys (id, env_id, name, key_hash, key_prefix, created_at) "
            "VALUES ('k1', 'env_missing', 'n', 'h', 'p', 'now')"
        )

    with pytest.raises(sqlite3.IntegrityError):  # foreign_keys=ON on the writer
        journal.write_sync(bad_key)


def test_newer_database_is_refused(tmp_path: Path) -> None:
    path = str(tmp_path / "j.db")
    with Journal(path):
        pass
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO schema_version VALUES (999, 'future', 'x')")
    conn.commit()
    conn.close()
    with pytest.raises(JournalError, match="newer"):
        Journal(path).open()


def test_failed_migration_rolls_back_alone(tmp_path: Path) -> None:
    conn = sqlite3.connect(str(tmp_path / "m.db"), isolation_level=None)
    steps = list(MIGRATIONS) + [
        Migration(
            len(MIGRATIONS) + 1, "broken", "CREATE TABLE half (x); INSERT INTO nope VALUES (1)"
        )
    ]
    with pytest.raises(MigrationError, match="broken"):
        apply_migrations(conn, migrations=steps)
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "half" not in tables
    assert conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0] == len(MIGRATIONS)
    assert apply_migrations(conn) == len(MIGRATIONS)  # idempotent
    conn.close()


def test_split_statements_respects_comments_strings_and_triggers() -> None:
    sql = """
    -- a comment; with a semicolon
    CREATE TABLE a (x TEXT DEFAULT 'a;b');
    CREATE TRIGGER t AFTER INSERT ON a BEGIN INSERT INTO a VALUES ('c'); END;
    /* trailing */
    """
    parts = split_statements(sql)
    assert len(parts) == 3
    assert "'a;b'" in parts[0]
    assert parts[1].rstrip().endswith("END;")


# --- pragmas ------------------------------------------------------------------------------------


def test_writer_pragmas_wal_full_and_readers_query_only(journal: Journal) -> None:
    def pragmas(c: sqlite3.Connection) -> tuple:
        return (
            c.execute("PRAGMA journal_mode").fetchone()[0],
            c.execute("PRAGMA synchronous").fetchone()[0],
            c.execute("PRAGMA foreign_keys").fetchone()[0],
            c.execute("PRAGMA busy_timeout").fetchone()[0],
        )

    assert journal.write_sync(pragmas) == ("wal", 2, 1, 5000)  # 2 == FULL
    assert journal.read_sync(lambda c: c.execute("PRAGMA query_only").fetchone()[0]) == 1
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        journal.read_sync(lambda c: c.execute("INSERT INTO items VALUES (1, 'x')"))


# --- group commit -------------------------------------------------------------------------------


def test_group_commit_under_concurrency(tmp_path: Path) -> None:
    batches: list[int] = []
    j = Journal(str(tmp_path / "j.db"), on_commit=lambda size, secs: batches.append(size))
    j.open()
    j.write_sync(_create_items)
    start_commits, start_writes = j.stats.commits, j.stats.writes
    n = 500

    def fn_for(i: int):
        if i % 50 == 25:  # a few failures sprinkled through the batches

            def boom(conn: sqlite3.Connection) -> None:
                conn.execute("INSERT INTO items VALUES (?, 'doomed')", (i,))
                raise ValueError(f"boom {i}")

            return boom
        return _insert(i)

    async def main() -> list:
        return await asyncio.gather(*(j.write(fn_for(i)) for i in range(n)), return_exceptions=True)

    results = asyncio.run(main())
    failed = {i for i in range(n) if i % 50 == 25}
    for i, r in enumerate(results):
        if i in failed:
            assert isinstance(r, ValueError) and str(r) == f"boom {i}"
        else:
            assert r == i
    commits = j.stats.commits - start_commits
    writes = j.stats.writes - start_writes
    assert writes == n
    assert commits < writes // 4, (commits, writes)
    assert j.stats.max_batch_size > 1
    assert sum(batches[-commits:]) == n
    assert j.read_sync(_ids) == set(range(n)) - failed
    j.close()


def test_failing_write_in_mid_batch_fails_only_its_caller(journal: Journal) -> None:
    release = threading.Event()
    entered = threading.Event()

    def blocker(conn: sqlite3.Connection) -> str:
        entered.set()
        release.wait(5)
        return "blocked"

    def failing(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO items VALUES (2, 'rolled back')")
        raise KeyError("mine")

    async def main() -> list:
        first = asyncio.ensure_future(journal.write(blocker))
        await asyncio.to_thread(entered.wait, 5)  # writer is busy: the next three queue up
        commits_before = journal.stats.commits
        rest = [asyncio.ensure_future(journal.write(f)) for f in (_insert(1), failing, _insert(3))]
        await asyncio.sleep(0.05)
        release.set()
        out = await asyncio.gather(first, *rest, return_exceptions=True)
        return [out, journal.stats.commits - commits_before, journal.stats.last_batch_size]

    out, commits, batch = asyncio.run(main())
    assert out[0] == "blocked" and out[1] == 1 and out[3] == 3
    assert isinstance(out[2], KeyError)
    assert batch == 3 and commits == 2  # blocker's own batch, then [1, failing, 3] together
    assert journal.read_sync(_ids) == {1, 3}


def test_write_fn_may_not_end_the_transaction(journal: Journal) -> None:
    with pytest.raises(JournalError, match="must not"):
        journal.write_sync(lambda c: (c.execute("INSERT INTO items VALUES (7, 'x')"), c.commit()))
    with pytest.raises(JournalError, match="must not"):
        journal.write_sync(lambda c: c.execute("ROLLBACK"))
    # a write function may still use its own savepoints
    def own_savepoint(c: sqlite3.Connection) -> None:
        c.execute("SAVEPOINT mine")
        c.execute("INSERT INTO items VALUES (8, 'x')")
        c.execute("RELEASE mine")

    journal.write_sync(own_savepoint)
    assert journal.read_sync(_ids) == {8}


def test_writer_survives_errors_callbacks_and_cancellation(tmp_path: Path) -> None:
    def bad_callback(size: int, secs: float) -> None:
        raise RuntimeError("callback bug")

    j = Journal(str(tmp_path / "j.db"), on_commit=bad_callback)
    j.open()
    j.write_sync(_create_items)
    with pytest.raises(ZeroDivisionError):
        j.write_sync(lambda c: 1 / 0)
    with pytest.raises(sqlite3.OperationalError):
        j.write_sync(lambda c: c.execute("INSERT INTO nowhere VALUES (1)"))

    async def cancelled_then_more() -> int:
        task = asyncio.ensure_future(j.write(_insert(10)))
        await asyncio.sleep(0)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return await j.write(_insert(11))

    assert asyncio.run(cancelled_then_more()) == 11
    assert j.write_sync(_insert(12)) == 12
    assert {11, 12} <= j.read_sync(_ids)
    j.close()


def test_sync_calls_refuse_the_event_loop_thread(journal: Journal) -> None:
    async def main() -> None:
        with pytest.raises(JournalError, match="await"):
            journal.write_sync(_insert(1))
        with pytest.raises(JournalError, match="await"):
            journal.read_sync(_count)

    asyncio.run(main())
    with pytest.raises(JournalError, match="itself"):  # would deadlock the writer thread
        journal.write_sync(lambda c: journal.write_sync(_insert(1)))
    with pytest.raises(JournalError, match="write connection"):
        journal.write_sync(lambda c: journal.read_sync(_count))
    assert journal.write_sync(_insert(2)) == 2


# --- reads --------------------------------------------------------------------------------------


def test_read_sees_committed_data(journal: Journal) -> None:
    async def main() -> tuple:
        await asyncio.gather(*(journal.write(_insert(i)) for i in range(20)))
        count = await journal.read(_count)
        rows = await journal.read(
            lambda c: c.execute("SELECT * FROM items WHERE id = 3").fetchone()
        )
        return count, rows

    count, row = asyncio.run(main())
    assert count == 20
    assert row["value"] == "v"  # sqlite3.Row


def test_long_read_is_cut_off(journal: Journal) -> None:
    endless = "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n) SELECT MAX(x) FROM n"
    started = time.monotonic()
    with pytest.raises(JournalTimeout):
        journal.read_sync(lambda c: c.execute(endless).fetchone(), timeout=0.2)
    assert time.monotonic() - started < 3
    assert journal.read_sync(_count) == 0  # the reader connection is still usable


# --- crash safety -------------------------------------------------------------------------------


def test_acknowledged_writes_survive_sigkill(tmp_path: Path) -> None:
    db = str(tmp_path / "crash.db")
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.Popen(
        [sys.executable, str(CRASH_CHILD), db, "8", "30"],
        cwd=str(REPO_ROOT), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    acked: set[int] = set()
    ready = False
    deadline = time.monotonic() + 15
    try:
        while len(acked) < 200 and time.monotonic() < deadline:
            try:
                line = lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                break
            if line == "ready\n":
                ready = True
            elif line.endswith("\n"):
                acked.add(int(line))
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    reader.join(timeout=10)
    while True:  # acks already in the pipe when the kill landed count too
        try:
            line = lines.get_nowait()
        except queue.Empty:
            break
        if line is not None and line.endswith("\n") and line != "ready\n":
            acked.add(int(line))
    stderr = proc.stderr.read() if proc.stderr else ""
    for pipe in (proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()
    assert ready, f"child never became ready: {stderr}"
    assert len(acked) >= 200, f"only {len(acked)} acks: {stderr}"
    assert proc.returncode == -signal.SIGKILL

    with Journal(db, integrity_check=True) as j:
        present = j.read_sync(lambda c: {int(r[0]) for r in c.execute("SELECT id FROM acks")})
    missing = acked - present
    assert not missing, f"{len(missing)} acknowledged writes lost, e.g. {sorted(missing)[:5]}"


# --- lifecycle ----------------------------------------------------------------------------------


def test_close_is_idempotent_drains_queue_and_refuses_later_work(tmp_path: Path) -> None:
    path = str(tmp_path / "j.db")
    j = Journal(path)
    with pytest.raises(JournalClosed):
        j.write_sync(_insert(0))  # not open yet
    j.open()
    j.write_sync(_create_items)
    gate = threading.Event()

    def slow(conn: sqlite3.Connection) -> str:
        gate.wait(5)
        return "slow"

    async def main() -> list:
        tasks = [asyncio.ensure_future(j.write(slow))]
        tasks += [asyncio.ensure_future(j.write(_insert(i))) for i in range(50)]
        await asyncio.sleep(0.02)  # all 51 are queued behind the slow one
        threading.Timer(0.05, gate.set).start()
        j.close()  # waits for every queued write
        j.close()
        with pytest.raises(JournalClosed):
            await j.write(_insert(99))
        with pytest.raises(JournalClosed):
            await j.read(_count)
        return await asyncio.gather(*tasks)

    results = asyncio.run(main())
    assert results == ["slow", *range(50)]
    assert j.closed
    with pytest.raises(JournalClosed):
        j.write_sync(_insert(100))
    with pytest.raises(JournalError):
        j.open()  # a closed journal stays closed
    with Journal(path) as again:
        assert again.read_sync(_ids) == set(range(50))


def test_integrity_check_ok_and_garbage_file_unreadable(tmp_path: Path) -> None:
    good = str(tmp_path / "good.db")
    with Journal(good) as j:
        j.write_sync(_create_items)
    with Journal(good, integrity_check=True) as j:
        assert j.schema_version == len(MIGRATIONS)

    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not a sqlite database\n" * 200)
    with pytest.raises(JournalError, match="unreadable") as info:
        Journal(str(garbage)).open()
    assert str(garbage) in str(info.value)


# --- backup -------------------------------------------------------------------------------------


def test_backup_while_writing(journal: Journal, tmp_path: Path) -> None:
    for i in range(300):
        journal.write_sync(_insert(i, "x" * 500))
    stop = threading.Event()

    def keep_writing() -> None:
        i = 1000
        while not stop.is_set():
            journal.write_sync(_insert(i, "y" * 500))
            i += 1

    writer = threading.Thread(target=keep_writing)
    writer.start()
    try:
        time.sleep(0.05)
        committed_before = journal.read_sync(_ids)
        steps: list[tuple[int, int]] = []
        dest = tmp_path / "backups" / "copy.db"
        journal.backup(str(dest), pages=8, progress=lambda rem, total: steps.append((rem, total)))
    finally:
        stop.set()
        writer.join(10)
    assert len(steps) > 1 and steps[-1][0] == steps[-1][1] > 0  # (pages copied, total)
    copy = sqlite3.connect(str(dest))
    assert copy.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert committed_before <= {r[0] for r in copy.execute("SELECT id FROM items")}
    copy.close()
    assert sorted(os.listdir(dest.parent)) == ["copy.db"]  # no partial files left behind

    with pytest.raises(JournalError, match="exists"):
        journal.backup(str(dest))

    # the CLI path: no running Journal needed
    second = tmp_path / "second.db"
    backup_database(str(dest), str(second))
    with Journal(str(second), integrity_check=True) as restored:
        assert restored.read_sync(_count) >= len(committed_before)
    with pytest.raises(JournalError, match="unreadable"):
        backup_database(str(tmp_path / "missing.db"), str(tmp_path / "x.db"))


# --- in-memory ----------------------------------------------------------------------------------


def test_memory_journal_with_readers() -> None:
    with Journal(":memory:", readers=3) as a, Journal(":memory:") as b:
        a.write_sync(_create_items)
        assert a.schema_version == len(MIGRATIONS)

        async def main() -> tuple:
            async def reads() -> int:
                total = 0
                for _ in range(50):
                    total += await a.read(_count)
                return total

            await asyncio.gather(reads(), *(a.write(_insert(i)) for i in range(200)), reads())
            query_only = await a.read(lambda c: c.execute("PRAGMA query_only").fetchone()[0])
            return await a.read(_count), query_only

        count, query_only = asyncio.run(main())
        assert count == 200 and query_only == 1
        # each ":memory:" journal is its own database
        tables = b.read_sync(lambda c: {r[0] for r in c.execute("SELECT name FROM sqlite_master")})
        assert "items" not in tables
