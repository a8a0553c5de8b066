"""Child process for the journal crash test (tests/test_journal.py).

Usage: python journal_crash_child.py DB_PATH [CONCURRENCY] [MAX_SECONDS]

Opens a Journal on DB_PATH, prints "ready", then runs CONCURRENCY asyncio writers that insert
rows forever (at most MAX_SECONDS, a safety bound) and print each id on its own line only AFTER
``await journal.write(...)`` returned, i.e. after the commit holding it was acknowledged. The test
SIGKILLs this process mid-stream and checks that every printed id survived.
"""

from __future__ import annotations

import asyncio
import itertools
import sys

from ironflow_pkg.journal import Journal


async def main(path: str, concurrency: int, max_seconds: float) -> None:
    journal = Journal(path)
    journal.open()
    await journal.write(
        lambda c: c.execute(
            "CREATE TABLE IF NOT EXISTS acks (id INTEGER PRIMARY KEY, payload TEXT NOT NULL)"
        )
    )
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max_seconds
    ids = itertools.count(1)

    async def writer() -> None:
        while loop.time() < deadline:
            row_id = next(ids)
            await journal.write(
                lambda c, i=row_id: c.execute(
                    "INSERT INTO acks (id, payload) VALUES (?, ?)", (i, "x" * 64)
                )
            )
            # One small write(2) per line: a kill can cut between lines, never inside one
            # that the parent will count (it only counts lines ending in a newline).
            sys.stdout.write(f"{row_id}\n")
            sys.stdout.flush()

    await asyncio.gather(*(writer() for _ in range(concurrency)))
    journal.close()


if __name__ == "__main__":
    db_path = sys.argv[1]
    workers = int(sys.argv[2]) if len(sys.argv) > 2 else 8
    limit = float(sys.argv[3]) if len(sys.argv) > 3 else 30.0
    asyncio.run(main(db_path, workers, limit))
