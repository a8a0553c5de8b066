"""The embedded sqlite3 journal: one writer thread with group commit, a few reader connections.

Everything durable in ironflow goes through :class:`Journal`. The rules (design.md, habit 11):

* exactly one writer connection, created inside and used only by one dedicated writer thread;
* ``journal_mode=WAL`` (checked to have taken effect), ``synchronous=FULL``, ``foreign_keys=ON``,
  ``busy_timeout``; explicit ``BEGIN IMMEDIATE`` (connections use ``isolation_level=None``);
* **group commit**: the writer blocks for one queued write, drains whatever else is queued (up to
  ``max_batch``) and runs them all in ONE transaction, each in its own SAVEPOINT so a failing write
  rolls back alone. Callers are answered only after ``COMMIT`` returned: acknowledged means
  durable. One fsync then pays for many logical writes;
* reads run on ``readers`` separate ``query_only`` connections, each owned by its own thread, so
  they never wait for the writer (WAL gives them a consistent snapshot);
* migrations (:mod:`ironflow_pkg.migrations`) run at open, ``close()`` is idempotent and drains;
* ``":memory:"`` (tests) is a shared-cache in-memory database private to one Journal. It has no
  WAL, so there a write batch and reads take turns (a writer-preferring lock) instead of
  overlapping.

Write functions receive the writer connection and run *inside* the journal's transaction; they
must not BEGIN/COMMIT/ROLLBACK it (an authorizer refuses such statements with a clear error).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import queue
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Iterator, TypeVar

from ironflow_pkg.migrations import MigrationError, apply_migrations

__all__ = [
    "Journal",
    "JournalClosed",
    "JournalError",
    "JournalStats",
    "JournalTimeout",
    "backup_database",
]

T = TypeVar("T")

# --- limits and tunables: each a named constant with its reason (habit 4) ------------------------
DEFAULT_READERS = 2  # reads are short; two connections keep one slow read from stalling the rest
DEFAULT_MAX_BATCH = 256  # bounds one transaction so a single commit's latency stays predictable
DEFAULT_BUSY_TIMEOUT_MS = 5000  # another process (CLI backup, sqlite3 shell) may hold a lock
DEFAULT_BACKUP_PAGES = 1024  # pages per backup step: progress granularity without per-page overhead
PROGRESS_HANDLER_OPS = 1000  # sqlite VM instructions between deadline checks of a timed read
STATEMENT_CACHE_SIZE = 256  # prepared statements kept per connection; the hot set is small
MEMORY_PATH = ":memory:"

# Internal transaction statements carry a comment so their text never equals what a write
# function might run: sqlite3 caches prepared statements by SQL text, and a cached statement
# would skip the authorizer that stops write functions from ending our transaction.
_SAVEPOINT = "ironflow_write"
_SQL_BEGIN = "BEGIN IMMEDIATE /* ironflow journal */"
_SQL_COMMIT = "COMMIT /* ironflow journal */"
_SQL_ROLLBACK = "ROLLBACK /* ironflow journal */"
_SQL_SAVEPOINT = f"SAVEPOINT {_SAVEPOINT} /* ironflow journal */"
_SQL_RELEASE = f"RELEASE {_SAVEPOINT} /* ironflow journal */"
_SQL_ROLLBACK_TO = f"ROLLBACK TO {_SAVEPOINT} /* ironflow journal */"

_STOP = object()  # queue sentinel: finish what is queued before it, then exit the thread


class JournalError(Exception):
    """Base class for journal failures; the message says what happened and what to do."""


class JournalClosed(JournalError):
    """The journal is closed (or was never opened); no reads or writes are accepted."""


class JournalTimeout(JournalError):
    """A read ran past its deadline and was interrupted by the progress handler."""


@dataclass
class JournalStats:
    """Counters kept by the writer thread (plain attributes, read them any time)."""

    commits: int = 0  # transactions committed
    writes: int = 0  # write functions executed (succeeded or failed)
    failed_writes: int = 0  # write functions whose caller received an error
    last_batch_size: int = 0  # write functions in the most recent batch
    max_batch_size: int = 0  # largest batch seen
    commit_seconds: float = 0.0  # total wall time of committed batches, BEGIN..COMMIT


@dataclass
class _Job:
    """One queued unit of work and where to deliver its outcome (asyncio or blocking caller)."""

    fn: Callable[[sqlite3.Connection], Any]
    loop: asyncio.AbstractEventLoop | None = None
    afut: asyncio.Future[Any] | None = None
    cfut: concurrent.futures.Future[Any] | None = None
    timeout: float | None = None  # reads only


_Outcome = tuple[_Job, Any, BaseException | None]


_Settle = tuple[asyncio.Future[Any], Any, BaseException | None]  # future, value, error


def _resolve_async(items: list[_Settle]) -> None:
    """Runs on the caller's loop: settle futures, skipping ones the caller already cancelled."""
    for fut, value, exc in items:
        if fut.done():
            continue
        if exc is not None:
            fut.set_exception(exc)
        else:
            fut.set_result(value)


def _deliver(outcomes: list[_Outcome]) -> None:
    """Hand results to their callers: one ``call_soon_threadsafe`` per event loop per batch."""
    per_loop: dict[asyncio.AbstractEventLoop, list[_Settle]] = {}
    for job, value, exc in outcomes:
        if isinstance(exc, StopIteration):  # futures refuse StopIteration (it breaks generators)
            exc = JournalError(f"function raised StopIteration: {exc!r}")
        if job.cfut is not None:
            if not job.cfut.done():
                if exc is not None:
                    job.cfut.set_exception(exc)
                else:
                    job.cfut.set_result(value)
        elif job.loop is not None and job.afut is not None:
            per_loop.setdefault(job.loop, []).append((job.afut, value, exc))
    for loop, items in per_loop.items():
        try:
            loop.call_soon_threadsafe(_resolve_async, items)
        except RuntimeError:  # loop already closed: nobody is waiting for these answers
            pass


def _unreadable(path: str, exc: BaseException) -> JournalError:
    return JournalError(f"database unreadable: {path}: {exc}")


def _integrity_problems(conn: sqlite3.Connection, limit: int = 10) -> list[str]:
    """Rows of ``PRAGMA integrity_check`` other than the single "ok"."""
    rows = [str(r[0]) for r in conn.execute(f"PRAGMA integrity_check({int(limit)})").fetchall()]
    return [] if rows == ["ok"] else rows


class _NoLock:
    """File databases: WAL lets readers and the writer run side by side, nothing to guard."""

    def shared(self) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()

    exclusive = shared


class _WriterPreferringLock:
    """Many readers or one writer; a waiting writer stops new readers from entering.

    Used for ":memory:" only: shared-cache databases use table locks that fail at once with
    SQLITE_LOCKED (the busy handler never retries them), and busy readers could starve the writer.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writing = False
        self._writers_waiting = 0

    @contextlib.contextmanager
    def shared(self) -> Iterator[None]:
        with self._cond:
            while self._writing or self._writers_waiting:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if self._readers == 0:
                    self._cond.notify_all()

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._cond:
            self._writers_waiting += 1
            while self._writing or self._readers:
                self._cond.wait()
            self._writers_waiting -= 1
            self._writing = True
        try:
            yield
        finally:
            with self._cond:
                self._writing = False
                self._cond.notify_all()


class Journal:
    """The sqlite3 journal: serialised group-committed writes, pooled reads. See module docs."""

    def __init__(
        self,
        path: str,
        *,
        integrity_check: bool = False,
        readers: int = DEFAULT_READERS,
        max_batch: int = DEFAULT_MAX_BATCH,
        busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS,
        on_commit: Callable[[int, float], None] | None = None,
        logger: logging.Logger | None = None,
        read_timeout: float | None = None,
    ) -> None:
        """Configure the journal; nothing touches the disk until :meth:`open`.

        ``path`` is a file path or ``":memory:"`` (a private shared-cache in-memory database
        that the reader connections can see). ``on_commit(batch_size, seconds)`` is called on the
        writer thread after every commit. ``read_timeout`` (seconds) is the default deadline for
        reads; ``None`` means no limit.
        """
        if readers < 1:
            raise ValueError("readers must be >= 1")
        if max_batch < 1:
            raise ValueError("max_batch must be >= 1")
        if busy_timeout_ms < 0:
            raise ValueError("busy_timeout_ms must be >= 0")
        self.path = path
        self.is_memory = path == MEMORY_PATH
        # A unique name per Journal: two in-memory journals in one process must not share data.
        self._uri = f"file:ironflow-mem-{uuid.uuid4().hex}?mode=memory&cache=shared"
        self._integrity_check = integrity_check
        self._reader_count = readers
        self._max_batch = max_batch
        self._busy_timeout_ms = busy_timeout_ms
        self._on_commit = on_commit
        self._log = logger or logging.getLogger("ironflow.journal")
        self._read_timeout = read_timeout
        self.stats = JournalStats()
        self._schema_version = 0
        self._state = "new"  # new -> opening -> open -> closed
        self._lock = threading.Lock()
        self._write_queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._read_queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._writer_thread: threading.Thread | None = None
        self._reader_threads: list[threading.Thread] = []
        self._in_write_fn = False  # writer thread only: guards the authorizer
        self._denied: str | None = None
        # keeps a write batch and reads apart for ":memory:"; a no-op for WAL files
        self._rw: _WriterPreferringLock | _NoLock = (
            _WriterPreferringLock() if self.is_memory else _NoLock()
        )

    def __repr__(self) -> str:
        return f"<Journal {self.path!r} {self._state} v{self._schema_version}>"

    @property
    def schema_version(self) -> int:
        """Schema version after migrations (0 before :meth:`open`)."""
        return self._schema_version

    @property
    def read_target(self) -> tuple[str, bool]:
        """(path or URI, is a URI) for opening an extra read-only connection elsewhere
        (the SQL query service opens its own, with its own authorizer)."""
        return (self._uri, True) if self.is_memory else (self.path, False)

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has been called."""
        return self._state == "closed"

    @property
    def alive(self) -> bool:
        """True while open with the writer and every reader thread running (health checks)."""
        threads = [self._writer_thread, *self._reader_threads]
        return self._state == "open" and all(t is not None and t.is_alive() for t in threads)

    # --- connections -----------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        """A new connection with explicit transaction control and Row results."""
        conn = sqlite3.connect(
            self._uri if self.is_memory else self.path, uri=self.is_memory, isolation_level=None,
            timeout=self._busy_timeout_ms / 1000.0, cached_statements=STATEMENT_CACHE_SIZE,
        )
        conn.row_factory = sqlite3.Row
        return conn

    def _configure_writer(self, conn: sqlite3.Connection) -> None:
        """Durability pragmas; WAL is verified because sqlite silently keeps the old mode."""
        conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_ms)}")
        if not self.is_memory:
            mode = str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]).lower()
            if mode != "wal":
                raise JournalError(
                    f"journal_mode=WAL did not take effect for {self.path} (still {mode!r}); "
                    "put the database on a local filesystem that supports shared memory"
                )
        conn.execute("PRAGMA synchronous = FULL")  # acknowledged means fsync'd, WAL included
        conn.execute("PRAGMA foreign_keys = ON")

    def _open_error(self, exc: BaseException) -> JournalError:
        """Turn whatever failed during open into a JournalError an operator can act on."""
        if isinstance(exc, JournalError):
            return exc
        if isinstance(exc, MigrationError):
            return JournalError(f"cannot migrate {self.path}: {exc}")
        if isinstance(exc, (sqlite3.DatabaseError, OSError)):
            return _unreadable(self.path, exc)
        return JournalError(f"cannot open journal {self.path}: {exc!r}")

    # --- lifecycle -------------------------------------------------------------------------------

    def open(self) -> None:
        """Create the file if needed, start the writer (migrations, checks) and the readers.

        Raises :class:`JournalError` if the database is unreadable, not sqlite, cannot use WAL,
        fails ``integrity_check`` or cannot be migrated; nothing is left running in that case.
        """
        with self._lock:
            if self._state != "new":
                raise JournalError(
                    f"journal {self.path} cannot be opened twice (state: {self._state})"
                )
            self._state = "opening"
        try:
            if not self.is_memory:
                parent = os.path.dirname(os.path.abspath(self.path))
                try:
                    os.makedirs(parent, exist_ok=True)
                except OSError as exc:
                    raise JournalError(
                        f"cannot create directory for journal {self.path}: {exc}"
                    ) from exc
            self._writer_thread = self._spawn(self._writer_main, "ironflow-journal-writer")
            for index in range(self._reader_count):
                name = f"ironflow-journal-reader-{index}"
                self._reader_threads.append(self._spawn(self._reader_main, name))
        except BaseException:
            if self._writer_thread is not None:
                self._write_queue.put(_STOP)  # state is "opening": nothing else was queued
            self._shutdown_threads()
            with self._lock:
                self._state = "closed"
            raise
        with self._lock:
            closed_meanwhile = self._state == "closed"
            if not closed_meanwhile:
                self._state = "open"
        if closed_meanwhile:  # close() ran in another thread while we were opening
            self._write_queue.put(_STOP)
            self._shutdown_threads()
            raise JournalClosed(f"journal {self.path} was closed while opening")

    def _spawn(
        self, target: Callable[[threading.Event, list[BaseException]], None], name: str
    ) -> threading.Thread:
        """Start a thread that creates its own connection; wait until it is ready or failed."""
        ready = threading.Event()
        errors: list[BaseException] = []
        # daemon: an unclosed journal must not hang interpreter exit (unacknowledged work is lost,
        # acknowledged work is already durable)
        thread = threading.Thread(target=target, args=(ready, errors), name=name, daemon=True)
        thread.start()
        ready.wait()
        if errors:
            thread.join()
            raise self._open_error(errors[0]) from errors[0]
        return thread

    def close(self) -> None:
        """Stop accepting work, finish everything already queued, stop threads, close connections.

        Idempotent and safe to call from any thread (including from a write function's
        ``on_commit`` callback, where it does not wait for itself).
        """
        with self._lock:
            previous = self._state
            self._state = "closed"
            if previous == "open":
                self._write_queue.put(_STOP)  # after every write accepted before this point
        if previous == "open":
            self._shutdown_threads()

    def _shutdown_threads(self) -> None:
        """Join the writer (it drains first), then send every reader its stop sentinel."""
        current = threading.current_thread()
        writer = self._writer_thread
        if writer is not None and writer is not current:
            writer.join()
        for _ in self._reader_threads:
            self._read_queue.put(_STOP)
        for thread in self._reader_threads:
            if thread is not current:
                thread.join()

    def __enter__(self) -> Journal:
        self.open()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- writing ---------------------------------------------------------------------------------

    def _submit(self, target: queue.SimpleQueue[Any], job: _Job) -> None:
        with self._lock:
            if self._state != "open":
                if self._state == "closed":
                    raise JournalClosed(f"journal {self.path} is closed")
                raise JournalClosed(f"journal {self.path} is not open; call open() first")
            target.put(job)

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(conn)`` on the writer thread inside a group-committed transaction.

        Returns ``fn``'s result once the transaction holding it has COMMITted (durable). If ``fn``
        raises, only its own savepoint is rolled back and the exception is raised here. If the
        commit itself fails, every write in the batch raises :class:`JournalError`. Cancelling
        the awaiting task does not withdraw the write: once queued it will still run.
        """
        return await self.submit(fn)

    def submit(self, fn: Callable[[sqlite3.Connection], T]) -> asyncio.Future[T]:
        """Queue ``fn`` now (FIFO with every other write) and return the future :meth:`write`
        awaits; it resolves after COMMIT. For callers that need the write ordered at once but
        need not wait for it."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        self._submit(self._write_queue, _Job(fn, loop=loop, afut=fut))
        return fut

    def write_sync(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Blocking :meth:`write` for CLI and start-up code. Never call it from an event loop."""
        self._refuse_loop_thread("write_sync", "write")
        if threading.current_thread() is self._writer_thread:
            raise JournalError("write_sync() inside a write function would wait for itself forever")
        cfut: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._submit(self._write_queue, _Job(fn, cfut=cfut))
        return cfut.result()

    @staticmethod
    def _refuse_loop_thread(name: str, async_name: str) -> None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return
        raise JournalError(
            f"Journal.{name}() would block the event loop; use 'await journal.{async_name}(...)'"
        )

    def _authorize(
        self, action: int, arg1: str | None, arg2: str | None, db: str | None, src: str | None
    ) -> int:
        """Refuse transaction control from write functions (they run inside our transaction)."""
        if not self._in_write_fn:
            return sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_TRANSACTION:
            self._denied = str(arg1)
            return sqlite3.SQLITE_DENY
        if action == sqlite3.SQLITE_SAVEPOINT and (arg2 or "").lower() == _SAVEPOINT:
            self._denied = f"{arg1} {arg2}"
            return sqlite3.SQLITE_DENY
        return sqlite3.SQLITE_OK

    def _writer_main(self, ready: threading.Event, errors: list[BaseException]) -> None:
        """Writer thread: owns the one writer connection from creation to close."""
        conn: sqlite3.Connection | None = None
        try:
            conn = self._connect()
            self._configure_writer(conn)
            self._schema_version = apply_migrations(conn, self._log)
            if self._integrity_check:
                started = time.perf_counter()
                problems = _integrity_problems(conn)
                if problems:
                    raise JournalError(
                        f"integrity_check failed for {self.path}: {'; '.join(problems)} "
                        "- restore from a backup"
                    )
                self._log.info("integrity check passed", extra={"fields": {
                    "path": self.path, "ms": round((time.perf_counter() - started) * 1000, 1)}})
            conn.set_authorizer(self._authorize)
        except BaseException as exc:
            errors.append(exc)
            if conn is not None:
                conn.close()
            ready.set()
            return
        ready.set()
        self._log.info("journal open", extra={"fields": {
            "path": self.path, "schema_version": self._schema_version,
            "readers": self._reader_count}})
        try:
            self._writer_loop(conn)
        finally:
            conn.close()

    def _writer_loop(self, conn: sqlite3.Connection) -> None:
        """Block for one write, drain the queue into a batch, run it; until the stop sentinel."""
        q = self._write_queue
        while True:
            first = q.get()
            if first is _STOP:
                return
            batch: list[_Job] = [first]
            stop = False
            while len(batch) < self._max_batch:
                try:
                    item = q.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stop = True
                    break
                batch.append(item)
            try:
                with self._rw.exclusive():
                    outcomes = self._run_batch(conn, batch)
            except BaseException as exc:  # a journal bug: report it, keep the writer alive
                self._log.exception("journal writer batch failed unexpectedly",
                                    extra={"fields": {"batch": len(batch)}})
                try:
                    if conn.in_transaction:
                        conn.execute(_SQL_ROLLBACK)
                except sqlite3.Error:
                    pass
                outcomes = [
                    (job, None, JournalError(f"write failed, transaction rolled back: {exc!r}"))
                    for job in batch
                ]
            _deliver(outcomes)
            if stop:
                return

    def _run_one(self, conn: sqlite3.Connection, job: _Job) -> tuple[bool, Any]:
        """Run one write function in its own savepoint; returns (ok, result or exception)."""
        conn.execute(_SQL_SAVEPOINT)
        self._in_write_fn, self._denied = True, None
        try:
            value = job.fn(conn)
        except BaseException as exc:
            self._in_write_fn = False
            self._undo_savepoint(conn)
            if self._denied is None:
                return False, exc
            denied = JournalError(
                "write functions run inside the journal's transaction and must not "
                f"begin, commit or roll it back (refused: {self._denied})"
            )
            denied.__cause__ = exc
            return False, denied
        self._in_write_fn = False
        try:
            conn.execute(_SQL_RELEASE)
        except sqlite3.Error as exc:
            self._undo_savepoint(conn)
            return False, JournalError(f"could not release savepoint: {exc}")
        return True, value

    def _undo_savepoint(self, conn: sqlite3.Connection) -> None:
        """Roll back one write function's savepoint; if even that fails, the whole transaction."""
        if not conn.in_transaction:
            return
        try:
            conn.execute(_SQL_ROLLBACK_TO)
            conn.execute(_SQL_RELEASE)
        except sqlite3.Error:
            self._log.exception("journal could not roll back a savepoint; rolling back the batch")
            try:
                conn.execute(_SQL_ROLLBACK)
            except sqlite3.Error:
                pass

    def _run_batch(self, conn: sqlite3.Connection, batch: list[_Job]) -> list[_Outcome]:
        """One transaction for the whole batch; answers are returned only after COMMIT."""
        started = time.perf_counter()
        outcomes: list[_Outcome] = []
        pending: list[tuple[_Job, Any]] = []  # succeeded, waiting for COMMIT
        in_tx = False
        for index, job in enumerate(batch):
            if not in_tx:
                try:
                    conn.execute(_SQL_BEGIN)
                    in_tx = True
                except sqlite3.Error as exc:
                    # e.g. another process held the write lock past busy_timeout: fail the rest
                    # of the batch now rather than waiting busy_timeout once per write
                    message = f"cannot start a write transaction on {self.path}: {exc}"
                    outcomes.extend((j, None, JournalError(message)) for j in batch[index:])
                    break
            ok, value = self._run_one(conn, job)
            if not conn.in_transaction:
                # sqlite rolled the whole transaction back on its own (disk full, I/O error):
                # earlier writes of this batch are gone too, so their callers must hear it.
                lost = JournalError(f"transaction rolled back by sqlite on {self.path}")
                outcomes.append((job, None, value if not ok else lost))
                outcomes.extend((j, None, JournalError(str(lost))) for j, _ in pending)
                pending.clear()
                in_tx = False
            elif ok:
                pending.append((job, value))
            else:
                outcomes.append((job, None, value))
        if in_tx:
            try:
                conn.execute(_SQL_COMMIT)
            except sqlite3.Error as exc:
                try:
                    if conn.in_transaction:
                        conn.execute(_SQL_ROLLBACK)
                except sqlite3.Error:
                    pass
                self._log.error("journal commit failed", extra={"fields": {
                    "path": self.path, "writes": len(pending), "error": str(exc)}})
                for j, _ in pending:
                    err = JournalError(f"commit failed on {self.path}: {exc}")
                    err.__cause__ = exc
                    outcomes.append((j, None, err))
            else:
                elapsed = time.perf_counter() - started
                self.stats.commits += 1
                self.stats.commit_seconds += elapsed
                outcomes.extend((j, v, None) for j, v in pending)
                if self._on_commit is not None:
                    try:
                        self._on_commit(len(batch), elapsed)
                    except Exception:
                        self._log.exception("journal on_commit callback failed")
        stats = self.stats
        stats.writes += len(batch)
        stats.failed_writes += sum(1 for _, _, exc in outcomes if exc is not None)
        stats.last_batch_size = len(batch)
        stats.max_batch_size = max(stats.max_batch_size, len(batch))
        return outcomes

    # --- reading ---------------------------------------------------------------------------------

    async def read(
        self, fn: Callable[[sqlite3.Connection], T], *, timeout: float | None = None
    ) -> T:
        """Run ``fn(conn)`` on a pooled read-only connection; sees only committed data.

        ``timeout`` (seconds, default the journal's ``read_timeout``) interrupts a long query via
        a progress handler and raises :class:`JournalTimeout`.
        """
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        self._submit(self._read_queue, _Job(fn, loop=loop, afut=fut, timeout=timeout))
        return await fut

    def read_sync(
        self, fn: Callable[[sqlite3.Connection], T], *, timeout: float | None = None
    ) -> T:
        """Blocking :meth:`read` for CLI and start-up code. Never call it from an event loop."""
        self._refuse_loop_thread("read_sync", "read")
        if threading.current_thread() is self._writer_thread:
            # in ":memory:" mode the reader would wait for this very batch; everywhere it would
            # miss the batch's own uncommitted writes: read through the connection you were given
            raise JournalError("read_sync() inside a write function: use the write connection")
        cfut: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._submit(self._read_queue, _Job(fn, cfut=cfut, timeout=timeout))
        return cfut.result()

    def _reader_main(self, ready: threading.Event, errors: list[BaseException]) -> None:
        """Reader thread: owns one query_only connection, serves the shared read queue."""
        try:
            conn = self._connect()
            conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_ms)}")
            conn.execute("PRAGMA query_only = ON")
        except BaseException as exc:
            errors.append(exc)
            ready.set()
            return
        ready.set()
        try:
            while True:
                job = self._read_queue.get()
                if job is _STOP:
                    return
                try:
                    outcome: _Outcome = (job, self._run_read(conn, job), None)
                except BaseException as exc:
                    outcome = (job, None, exc)
                _deliver([outcome])
        finally:
            conn.close()

    def _run_read(self, conn: sqlite3.Connection, job: _Job) -> Any:
        timeout = job.timeout if job.timeout is not None else self._read_timeout
        if timeout is not None:
            deadline = time.monotonic() + timeout
            conn.set_progress_handler(
                lambda: 1 if time.monotonic() > deadline else 0, PROGRESS_HANDLER_OPS
            )
        try:
            with self._rw.shared():
                return job.fn(conn)
        except sqlite3.OperationalError as exc:
            if timeout is not None and time.monotonic() > deadline and "interrupt" in str(exc):
                raise JournalTimeout(f"read exceeded {timeout:g} s and was interrupted") from exc
            raise
        finally:
            if timeout is not None:
                conn.set_progress_handler(None, 0)
            self._end_read(conn)

    @staticmethod
    def _end_read(conn: sqlite3.Connection) -> None:
        """Never leave a read transaction open: it would pin the WAL and block checkpoints."""
        if conn.in_transaction:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass

    # --- backup ----------------------------------------------------------------------------------

    def backup(
        self,
        dest_path: str,
        *,
        pages: int = DEFAULT_BACKUP_PAGES,
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        """Hot backup to ``dest_path`` while writes continue; see :func:`backup_database`."""
        if self._state != "open":
            raise JournalClosed(f"journal {self.path} is not open")
        source = self._uri if self.is_memory else self.path
        with self._rw.shared():
            backup_database(source, dest_path, progress=progress, pages=pages,
                            uri=self.is_memory, logger=self._log)


def backup_database(
    src_path: str,
    dest_path: str,
    progress: Callable[[int, int], None] | None = None,
    *,
    pages: int = DEFAULT_BACKUP_PAGES,
    logger: logging.Logger | None = None,
    uri: bool = False,
) -> None:
    """Copy a live database to ``dest_path`` with sqlite's online backup API.

    Works with or without a running :class:`Journal` (the CLI uses it directly); with
    ``uri=True`` ``src_path`` is an sqlite URI (how a ":memory:" journal backs itself up).

    The copy is a consistent snapshot taken when the backup starts: the source connection holds
    one WAL read transaction for the whole copy, so concurrent commits neither block it nor force
    the backup to restart. ``progress(pages_copied, total_pages)`` is called after each step of
    ``pages`` pages. The copy is written to a temporary file, checked with ``PRAGMA
    integrity_check``, switched to ``journal_mode=DELETE`` (one self-contained file) and only
    then linked to ``dest_path``. Refuses to overwrite an existing ``dest_path``.
    """
    log = logger or logging.getLogger("ironflow.journal")
    if os.path.lexists(dest_path):
        raise JournalError(f"backup destination already exists, refusing to overwrite: {dest_path}")
    if not uri and not os.path.isfile(src_path):
        raise JournalError(f"database unreadable: {src_path}: no such file")
    dest_dir = os.path.dirname(os.path.abspath(dest_path))
    try:
        os.makedirs(dest_dir, exist_ok=True)
    except OSError as exc:
        raise JournalError(f"cannot create backup directory for {dest_path}: {exc}") from exc
    tmp_name = f".{os.path.basename(dest_path)}.partial-{uuid.uuid4().hex[:8]}"
    tmp_path = os.path.join(dest_dir, tmp_name)
    exists = JournalError(f"backup destination already exists, refusing to overwrite: {dest_path}")
    started = time.perf_counter()
    try:
        try:
            src = sqlite3.connect(src_path, uri=uri, isolation_level=None)
        except sqlite3.Error as exc:
            raise _unreadable(src_path, exc) from exc
        try:
            try:
                src.execute("PRAGMA query_only = ON")
                src.execute("BEGIN")  # pin one snapshot for every backup step
                src.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
            except sqlite3.DatabaseError as exc:
                raise _unreadable(src_path, exc) from exc
            dst = sqlite3.connect(tmp_path, isolation_level=None)
            try:
                def _step(status: int, remaining: int, total: int) -> None:
                    if progress is not None:
                        progress(total - remaining, total)

                src.backup(dst, pages=pages, progress=_step)
                problems = _integrity_problems(dst)
                if problems:
                    raise JournalError(f"backup copy failed integrity_check: {'; '.join(problems)}")
                dst.execute("PRAGMA journal_mode = DELETE")
            finally:
                dst.close()
        finally:
            if src.in_transaction:
                src.execute("ROLLBACK")
            src.close()
        try:
            os.link(tmp_path, dest_path)  # atomic and never overwrites (EEXIST)
        except FileExistsError:
            raise exists from None
        except OSError:  # filesystem without hard links: best effort check-then-rename
            if os.path.lexists(dest_path):
                raise exists from None
            os.replace(tmp_path, dest_path)
    except sqlite3.Error as exc:
        raise JournalError(f"backup of {src_path} to {dest_path} failed: {exc}") from exc
    finally:
        for leftover in (tmp_path, tmp_path + "-journal", tmp_path + "-wal", tmp_path + "-shm"):
            try:
                os.unlink(leftover)
            except FileNotFoundError:
                pass
    log.info("backup written", extra={"fields": {
        "source": "<memory>" if uri else src_path, "dest": dest_path,
        "ms": round((time.perf_counter() - started) * 1000, 1)}})
