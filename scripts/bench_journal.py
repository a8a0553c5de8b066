#!/usr/bin/env python3
"""Benchmark the journal's group commit against one-row-per-transaction sqlite3.

Both runs use the same durability settings (journal_mode=WAL, synchronous=FULL), so every
acknowledged row has been fsync'd. The baseline commits one row per transaction from one thread,
as naive code would; the journal run has ``--concurrency`` asyncio tasks each awaiting
``Journal.write`` for one row at a time, which the writer thread groups into shared commits.

    python3 scripts/bench_journal.py [--seconds 3] [--concurrency 64] [--dir /path/on/real/disk]

Everything is written to a temporary directory that is removed afterwards. Stdlib only.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ironflow_pkg.journal import Journal  # noqa: E402

PAYLOAD = "x" * 100  # a small event-sized row
CREATE_SQL = "CREATE TABLE bench (id INTEGER PRIMARY KEY, payload TEXT NOT NULL)"
INSERT_SQL = "INSERT INTO bench (payload) VALUES (?)"


def run_baseline(path: str, seconds: float) -> dict[str, float]:
    """One thread, one row per BEGIN IMMEDIATE ... COMMIT, until the time is up."""
    conn = sqlite3.connect(path, isolation_level=None)
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise SystemExit(f"WAL not available on {path} (got {mode!r})")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute(CREATE_SQL)
    rows = 0
    started = time.perf_counter()
    deadline = started + seconds
    while time.perf_counter() < deadline:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(INSERT_SQL, (PAYLOAD,))
        conn.execute("COMMIT")
        rows += 1
    elapsed = time.perf_counter() - started
    stored = conn.execute("SELECT COUNT(*) FROM bench").fetchone()[0]
    conn.close()
    assert stored == rows, (stored, rows)
    return {"rows": rows, "seconds": elapsed, "commits": rows}


def run_journal(path: str, seconds: float, concurrency: int) -> dict[str, float]:
    """``concurrency`` tasks, each awaiting one single-row write at a time."""
    journal = Journal(path)
    journal.open()
    journal.write_sync(lambda c: c.execute(CREATE_SQL))
    commits_before = journal.stats.commits

    def insert(conn: sqlite3.Connection) -> None:
        conn.execute(INSERT_SQL, (PAYLOAD,))

    async def main() -> tuple[int, float]:
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + seconds
        done = 0

        async def worker() -> None:
            nonlocal done
            while loop.time() < deadline:
                await journal.write(insert)
                done += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return done, loop.time() - started

    rows, elapsed = asyncio.run(main())
    commits = journal.stats.commits - commits_before
    stored = journal.read_sync(lambda c: c.execute("SELECT COUNT(*) FROM bench").fetchone()[0])
    journal.close()
    assert stored == rows, (stored, rows)
    return {"rows": rows, "seconds": elapsed, "commits": commits}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=3.0,
                        help="duration of each run (default 3)")
    parser.add_argument("--concurrency", type=int, default=64,
                        help="concurrent journal writers (default 64)")
    parser.add_argument("--dir", default=None, help="parent directory for the temporary databases")
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.concurrency < 1:
        parser.error("--seconds must be > 0 and --concurrency >= 1")

    workdir = tempfile.mkdtemp(prefix="ironflow-bench-", dir=args.dir)
    try:
        print(f"sqlite {sqlite3.sqlite_version}, python {sys.version.split()[0]}, dir {workdir}")
        print(f"each run {args.seconds:g} s, WAL + synchronous=FULL, {len(PAYLOAD)}-byte rows")
        base = run_baseline(os.path.join(workdir, "baseline.db"), args.seconds)
        base_rate = base["rows"] / base["seconds"]
        print(
            f"baseline  sqlite3, 1 row/commit, sequential: {base['rows']:>8d} rows "
            f"{base_rate:>10.0f} rows/s  commits {base['commits']:d}"
        )
        jour = run_journal(os.path.join(workdir, "journal.db"), args.seconds, args.concurrency)
        jour_rate = jour["rows"] / jour["seconds"]
        avg_batch = jour["rows"] / jour["commits"] if jour["commits"] else 0.0
        print(
            f"journal   group commit, {args.concurrency} writers:    {jour['rows']:>8d} rows "
            f"{jour_rate:>10.0f} rows/s  commits {jour['commits']:d}  avg batch {avg_batch:.1f}"
        )
        print(f"ratio journal/baseline: {jour_rate / base_rate:.2f}x")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
