"""Read-only ad-hoc SQL over the caller's environment (features.md §12, rest-api.md §2.6).

``QueryService/ExecuteSQL`` and ``POST /api/v1/sql`` both call :func:`execute_sql` (blocking: run
it in a thread, e.g. ``await asyncio.to_thread(execute_sql, ...)``). The query never touches the
journal's pooled connections: every call opens its own connection, so a 30 s query can neither
stall journal reads nor leave state behind. Layers of defence, each sufficient for its part:

1. **Text check** (:func:`single_statement`): exactly one statement whose first keyword is
   ``SELECT`` or ``WITH``; a tokenizer that understands strings, quoted identifiers and comments
   finds the statement's end, and anything but whitespace/comments/``;`` after it is refused.
   ``sqlite3.complete_statement`` double-checks there is no unterminated string or comment.
2. **Read-only connection**: ``mode=ro`` URI for a file, then ``PRAGMA query_only=ON``, and
   ``SQLITE_LIMIT_ATTACHED=0``.
3. **Views** in the connection's TEMP schema, named like the documented tables, shadow the real
   ones and expose only the documented columns of the caller's environment rows. Each public view
   reads an *inner* view with a per-connection random name; only the inner view reads ``main``.
4. **Authorizer**, installed after the views: reads of ``main`` tables are allowed only when
   sqlite reports the innermost view as one of the secret inner names. (sqlite reports a CTE's
   name in the same argument, so ``WITH runs AS (SELECT * FROM main.api_keys) SELECT * FROM runs``
   reports ``source='runs'``; a public name is therefore never trusted, and the inner names are
   unguessable 128-bit nonces that never appear in replies.) Everything that is not a SELECT,
   a read of our views or of ``json_each``/``json_tree``, an ordinary function or a recursive CTE
   is denied: PRAGMA (statements and ``pragma_*`` functions), ATTACH/DETACH, writes, DDL,
   transactions, ``load_extension``, ``sqlite_master``/``sqlite_temp_master``, ``dbstat``.
   ``SELECT count(*) FROM x`` reads no column and sqlite then names no schema, so a CTE and an
   unqualified table look alike: such a read passes only if ``x`` names nothing in ``main``
   (else a row count of another environment's or an internal table would leak).
5. **Progress handler** enforcing the deadline (``deadline_exceeded``), plus ``SQLITE_LIMIT_*``
   caps on value size and query length.

Decisions (documented for the adapters):

* Cells are strings: ``int``/``float`` via ``str()``; TEXT as-is (invalid UTF-8 replaced with
  U+FFFD, never an error); BLOB as upper-case hex, like sqlite's ``hex()`` (no journal column is a
  BLOB; use ``CAST(x AS TEXT)`` to read a blob as text); SQL NULL is ``None`` (REST ``null``,
  Connect ``""``).
* ``timeout_ms``/``max_rows`` <= 0 mean the default; larger than the maximum is clamped.
* ``total_rows`` is the number of rows returned; ``truncated`` says more rows existed (only one
  extra row is ever stepped to find out). Rows are also cut (``truncated``) before their cells
  would add up to more than ``MAX_RESULT_CHARS`` (32 Mi characters), so ``SELECT
  randomblob(60000000)`` times 10000 rows cannot exhaust memory.
* A connection per call, no cache. Measured on a migrated journal file: setup (connect, schema
  parse + introspection ~0.6 ms, 10 CREATE TEMP VIEW ~0.8 ms, authorizer) costs 2-3 ms per call
  against ~0.1 ms for a pooled journal read. For an ad-hoc query endpoint that is noise next to
  the query itself, and it buys simplicity and safety: no stale views after a migration, no
  per-(db, env) connection pile-up or eviction policy, no connection shared across threads, a
  fresh nonce every call. Revisit (cache keyed by db, env and ``schema_version``) only if
  profiling ever shows SQL setup mattering.
* ``SQLITE_BUSY``/``SQLITE_LOCKED`` (the in-memory shared-cache journal locks tables while a write
  batch runs) are retried until the deadline, then reported as ``deadline_exceeded``. (In that
  test-only mode a running query also delays the journal's next write batch until it ends.) Failures
  that are the server's (I/O error, corruption, unopenable file) are re-raised unchanged so the
  app's one error boundary turns them into ``internal``.
* Views: the documented columns. A documented column the schema does not have yet is NULL
  (``entity_id``/``entity_type``/``entity_version`` today). Sentinel empty strings in the journal
  (``runs.worker_id``, ``runs.parent_run_id``, ``events.emitted_by``) read as NULL.
  ``events.timestamp`` is ``created_at``; ``events.run_id`` is the first id of ``run_ids``;
  ``functions.name/mode/triggers`` come from the stored config JSON. ``projections`` and
  ``projection_state`` exist only once those tables exist. ``proj_*`` tables (SQL projections,
  features.md §6.4) are exposed only if they have an ``env_id`` column (filtered, without it): a
  table that cannot be filtered by environment is never readable.
"""

from __future__ import annotations

import secrets
import sqlite3
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any

from ironflow_pkg.errors import ApiError

__all__ = [
    "DEFAULT_MAX_ROWS",
    "DEFAULT_TIMEOUT_MS",
    "MAX_MAX_ROWS",
    "MAX_TIMEOUT_MS",
    "SqlQueryError",
    "SqlResult",
    "VIEW_COLUMNS",
    "clamp_limits",
    "execute_sql",
    "single_statement",
]

# --- limits: each a named constant with its reason (habit 4) -------------------------------------
DEFAULT_TIMEOUT_MS = 5000  # features.md §12 / §22
MAX_TIMEOUT_MS = 30000  # features.md §12 / §22: one query holds one thread at most this long
DEFAULT_MAX_ROWS = 1000  # features.md §12 / §22
MAX_MAX_ROWS = 10000  # features.md §12 / §22: bounds the reply size in rows
MAX_QUERY_CHARS = 100_000  # a hand-written query; anything longer is not one
MAX_VALUE_BYTES = 64 * 1024 * 1024  # SQLITE_LIMIT_LENGTH: > the 32 MiB body limit an event came in
MAX_RESULT_CHARS = 32 * 1024 * 1024  # reply budget (features.md §22: 32 MiB REST response)
PROGRESS_OPS = 1000  # sqlite VM instructions between deadline checks (~tens of microseconds)
LOCK_RETRY_SECONDS = 0.005  # pause between retries while a shared-cache write holds a table lock

#: Functions refused even though they are "ordinary": file/extension access or raw pointers.
DENIED_FUNCTIONS = frozenset({
    "load_extension", "fts3_tokenizer", "readfile", "writefile", "edit", "fts5",
    "sqlite_dbpage", "zipfile", "sqlar_compress", "sqlar_uncompress",
})
#: Eponymous table-valued functions readable by queries (pre-initialised before the authorizer,
#: because their first use per connection would need an authorized write to sqlite_master).
TABLE_FUNCTIONS = ("json_each", "json_tree")

_NOT_A_SELECT = "query must begin with SELECT or WITH (read-only queries only)"
_SPACE = " \t\n\v\f\r"  # sqlite's whitespace (sqlite3Isspace)
_QUOTES = {"'": "'", '"': '"', "`": "`", "[": "]"}
_SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_INTERRUPT, _SQLITE_AUTH = 5, 6, 9, 23
_SERVER_FAULTS = frozenset({
    3,  # SQLITE_PERM
    7,  # SQLITE_NOMEM
    10,  # SQLITE_IOERR
    11,  # SQLITE_CORRUPT
    13,  # SQLITE_FULL
    14,  # SQLITE_CANTOPEN
    15,  # SQLITE_PROTOCOL
    26,  # SQLITE_NOTADB
})


class SqlQueryError(ApiError):
    """The query was refused (``invalid_argument``) or ran out of time (``deadline_exceeded``).

    An :class:`~ironflow_pkg.errors.ApiError`, so the adapters render it like any other
    (400 / 504 on REST, the Connect code as is).
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(code, message)


def _invalid(message: str) -> SqlQueryError:
    return SqlQueryError("invalid_argument", message)


@dataclass
class SqlResult:
    """Rows of string cells in ``columns`` order (rest-api.md §2.6)."""

    columns: list[str]
    rows: list[list[str | None]]
    total_rows: int
    truncated: bool

    def rest(self) -> dict[str, Any]:
        """The REST body: ``null`` for SQL NULL."""
        return {"columns": self.columns, "rows": self.rows, "total_rows": self.total_rows,
                "truncated": self.truncated}

    def proto(self) -> dict[str, Any]:
        """``ExecuteSQLResponse`` (proto field names): NULL becomes ``""``, no ``truncated``."""
        return {"columns": self.columns,
                "rows": [{"values": ["" if v is None else v for v in row]} for row in self.rows],
                "total_rows": self.total_rows}


# --- the text check ------------------------------------------------------------------------------


def _skip_quoted(query: str, i: int) -> int:
    """Index just past the quoted token starting at ``query[i]``; doubled quotes escape."""
    close = _QUOTES[query[i]]
    j = i + 1
    while True:
        k = query.find(close, j)
        if k < 0:
            kind = "string" if query[i] == "'" else "quoted identifier"
            raise _invalid(f"unterminated {kind} starting at offset {i}")
        if close != "]" and query.startswith(close, k + 1):  # '' "" `` are escapes; ]] is not
            j = k + 2
            continue
        return k + 1


def _is_word_char(ch: str) -> bool:
    return ch.isalnum() or ch in "_$" or ord(ch) >= 0x80


def single_statement(query: str) -> str:
    """Return the one statement in ``query`` (without its ``;``) or raise ``invalid_argument``.

    features.md §12: exactly one statement beginning with ``SELECT`` or ``WITH``. The tokenizer
    follows sqlite's: ``'...'`` strings and ``"..."``/``[...]``/`` `...` `` identifiers (doubled
    quote escapes), ``-- ...`` and ``/* ... */`` comments. After the first top-level ``;`` only
    whitespace, comments and more ``;`` may follow.
    """
    if not isinstance(query, str):
        raise _invalid("query must be a string")
    if len(query) > MAX_QUERY_CHARS:
        raise _invalid(f"query is longer than {MAX_QUERY_CHARS} characters")
    if "\x00" in query:
        raise _invalid("query contains a NUL character")
    try:
        query.encode("utf-8")
    except UnicodeEncodeError:
        raise _invalid("query is not valid UTF-8 text") from None
    n = len(query)
    i = 0
    first: str | None = None  # first keyword, upper-cased
    end: int | None = None  # offset of the statement-ending ';'
    while i < n:
        ch = query[i]
        if ch in _SPACE:
            i += 1
        elif query.startswith("--", i):
            k = query.find("\n", i)
            i = n if k < 0 else k + 1
        elif query.startswith("/*", i):
            k = query.find("*/", i + 2)
            if k < 0:
                raise _invalid(f"unterminated comment starting at offset {i}")
            i = k + 2
        elif ch == ";":
            if first is None:
                raise _invalid("query is empty before ';'")
            if end is None:
                end = i
            i += 1
        elif end is not None:
            raise _invalid("only one statement is allowed (found more after ';')")
        elif ch in _QUOTES:
            if first is None:
                raise _invalid(_NOT_A_SELECT)
            i = _skip_quoted(query, i)
        else:
            if first is None:
                k = i
                while k < n and _is_word_char(query[k]):
                    k += 1
                first = query[i:k].upper()
                if first not in ("SELECT", "WITH"):
                    raise _invalid(_NOT_A_SELECT)
                i = k
            else:
                i += 1
    if first is None:
        raise _invalid("query is empty")
    statement = query[:end] if end is not None else query
    # independent second opinion: sqlite's own scanner must see one complete statement
    if not sqlite3.complete_statement(statement + "\n;"):
        raise _invalid("query is not a complete SQL statement")
    return statement


def clamp_limits(timeout_ms: int = 0, max_rows: int = 0) -> tuple[int, int]:
    """Apply defaults (``<= 0``) and maxima (features.md §12); non-integers are refused."""
    for name, value in (("timeout_ms", timeout_ms), ("max_rows", max_rows)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise _invalid(f"{name} must be an integer")
    timeout_ms = DEFAULT_TIMEOUT_MS if timeout_ms <= 0 else min(timeout_ms, MAX_TIMEOUT_MS)
    max_rows = DEFAULT_MAX_ROWS if max_rows <= 0 else min(max_rows, MAX_MAX_ROWS)
    return timeout_ms, max_rows


# --- the views -----------------------------------------------------------------------------------

# Public view -> (journal table, [(column, [(expression, columns it needs), ...])]). The first
# alternative whose columns all exist is used; none -> NULL. {c} in an expression is filled in
# with the quoted column. Order = the documented column order (features.md §12).
_Alt = tuple[str, tuple[str, ...]]


def _col(name: str) -> list[_Alt]:
    return [("{0}", (name,))]


def _blank_null(name: str) -> list[_Alt]:
    return [("NULLIF({0}, '')", (name,))]


def _json(column: str, path: str) -> list[_Alt]:
    return [(f"CASE WHEN json_valid({{0}}) THEN json_extract({{0}}, '{path}') END", (column,))]


_VIEWS: dict[str, tuple[str, list[tuple[str, list[_Alt]]]]] = {
    "events": ("events", [
        ("id", _col("id")), ("name", _col("name")), ("data", _col("data")),
        ("metadata", _col("metadata")), ("source", _col("source")),
        ("timestamp", _col("timestamp") + _col("created_at")), ("version", _col("version")),
        ("idempotency_key", _col("idempotency_key")), ("entity_id", _col("entity_id")),
        ("entity_type", _col("entity_type")), ("entity_version", _col("entity_version")),
        ("seq", _col("seq")), ("run_id", _blank_null("run_id") + _json("run_ids", "$[0]")),
        ("emitted_by", _blank_null("emitted_by")),
    ]),
    "runs": ("runs", [
        (c, _col(c)) for c in ("id", "function_id", "event_id", "event_name", "status", "attempt",
                               "max_attempts", "input", "output", "error")
    ] + [
        ("worker_id", _blank_null("worker_id")), ("parent_run_id", _blank_null("parent_run_id")),
    ] + [
        (c, _col(c)) for c in ("created_at", "started_at", "ended_at", "updated_at")
    ]),
    "steps": ("steps", [
        (c, _col(c)) for c in ("id", "run_id", "step_id", "name", "step_type", "sequence",
                               "status", "output", "error", "attempt", "duration_ms",
                               "started_at", "ended_at")
    ]),
    "functions": ("functions", [
        ("id", _col("id")), ("name", _json("config", "$.name")),
        ("mode", _json("config", "$.preferred_mode")), ("status", _col("status")),
        ("version", _col("version")), ("triggers", _json("config", "$.triggers")),
        ("created_at", _col("created_at")), ("updated_at", _col("updated_at")),
    ]),
    "projections": ("projections", [
        (c, _col(c)) for c in ("name", "mode", "status", "last_event_seq", "updated_at")
    ]),
    "projection_state": ("projection_state", [
        (c, _col(c)) for c in ("projection_name", "partition_key", "state", "last_event_id",
                               "last_event_seq", "updated_at")
    ]),
    "topic_messages": ("topic_messages", [
        ("id", _col("id")), ("topic", _col("topic")), ("data", _col("data")),
        ("seq", _col("seq")), ("timestamp", _col("timestamp") + _col("created_at")),
    ]),
}

#: The documented views and their columns (for callers and tests).
VIEW_COLUMNS: dict[str, list[str]] = {
    view: [column for column, _ in columns] for view, (_, columns) in _VIEWS.items()
}


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _view_statements(
    tables: dict[str, list[str]], env_id: str, nonce: str
) -> tuple[list[str], dict[str, str]]:
    """CREATE TEMP VIEW statements and {inner view name: public name}."""
    env = _literal(env_id)
    statements: list[str] = []
    inner_names: dict[str, str] = {}

    def add(public: str, table: str, select_list: list[str]) -> None:
        inner = f"_ironflow_sql_{nonce}_{len(inner_names)}"
        inner_names[inner] = public
        statements.append(
            f"CREATE TEMP VIEW {_ident(inner)} AS SELECT {', '.join(select_list)} "
            f"FROM main.{_ident(table)} WHERE env_id = {env}"
        )
        statements.append(f"CREATE TEMP VIEW {_ident(public)} AS SELECT * FROM temp.{_ident(inner)}")

    for public, (table, columns) in _VIEWS.items():
        have = tables.get(table)
        if have is None or "env_id" not in have:
            continue  # no table (yet) or no way to filter it by environment: no view
        select_list = []
        for column, alternatives in columns:
            expr = "NULL"
            for template, needs in alternatives:
                if all(need in have for need in needs):
                    expr = template.format(*(_ident(need) for need in needs))
                    break
            select_list.append(f"{expr} AS {_ident(column)}")
        add(public, table, select_list)
    for table, have in sorted(tables.items()):
        # SQL projection tables (features.md §6.4), only when they can be filtered by environment
        if table.lower().startswith("proj_") and "env_id" in have and table.lower() not in _VIEWS:
            add(table, table, [_ident(c) for c in have if c != "env_id"])
    return statements, inner_names


# --- the connection ------------------------------------------------------------------------------


class _Guard:
    """The authorizer; see the module docstring (layer 4)."""

    def __init__(self, inner: dict[str, str], table_functions: set[str],
                 main_names: set[str]) -> None:
        self.inner_public = inner  # secret inner view name -> public view name
        self.inner = set(inner)
        self.temp_views = set(inner) | set(inner.values())
        self.table_functions = table_functions
        self.main_names = main_names  # lower-cased names of every object in main's schema
        self.denied: str | None = None  # the first refusal, for a clear error message

    def __call__(self, action: int, arg1: str | None, arg2: str | None, db: str | None,
                 source: str | None) -> int:
        if action == sqlite3.SQLITE_SELECT or action == sqlite3.SQLITE_RECURSIVE:
            return sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_READ:
            return self._read(arg1 or "", arg2, db, source)
        if action == sqlite3.SQLITE_FUNCTION:
            if (arg2 or "").lower() in DENIED_FUNCTIONS:
                return self._deny(f"function {arg2}()")
            return sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_PRAGMA:
            return self._deny(f"PRAGMA {arg1}")
        if action in (sqlite3.SQLITE_ATTACH, sqlite3.SQLITE_DETACH):
            return self._deny("ATTACH/DETACH")
        return self._deny("statements other than SELECT")

    def _read(self, table: str, column: str | None, db: str | None, source: str | None) -> int:
        if table in self.table_functions:
            return sqlite3.SQLITE_OK  # json_each / json_tree (source may name a CTE)
        if db == "main":
            if source in self.inner:
                return sqlite3.SQLITE_OK  # our inner view reading its journal table
        elif db == "temp":
            if table in self.temp_views:
                return sqlite3.SQLITE_OK  # a column of one of our (already filtered) views
        elif column == "":
            # "table used, no column read" (SELECT count(*) FROM x) names no schema when x is a
            # CTE - or an unqualified table, which would leak a row count across environments.
            # Only names that are nothing in main (nor sqlite_*/pragma_* objects) pass.
            name = table.lower()
            if name not in self.main_names and not name.startswith(("sqlite_", "pragma_")):
                return sqlite3.SQLITE_OK
        where = f"{db}.{table}" if db else table
        return self._deny(f"reading {where}")

    def _deny(self, what: str) -> int:
        if self.denied is None:
            self.denied = what
        return sqlite3.SQLITE_DENY


def _open(db: str, uri: bool, env_id: str, deadline: float) -> tuple[sqlite3.Connection, _Guard]:
    """A read-only connection with the environment's views and the authorizer installed."""
    target = db if uri else "file:" + urllib.parse.quote(db) + "?mode=ro"
    busy = max(0.0, deadline - time.monotonic())
    # cached_statements=0: every execute is prepared afresh, so the authorizer sees every query
    conn = sqlite3.connect(target, uri=True, isolation_level=None, timeout=busy,
                           cached_statements=0)
    try:
        conn.text_factory = lambda raw: raw.decode("utf-8", "replace")
        conn.setlimit(sqlite3.SQLITE_LIMIT_ATTACHED, 0)
        conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, MAX_VALUE_BYTES)
        conn.setlimit(sqlite3.SQLITE_LIMIT_SQL_LENGTH, MAX_QUERY_CHARS * 4 + 65536)
        main_names = {str(name).lower() for (name,) in conn.execute(
            "SELECT name FROM main.sqlite_master")} | {"sqlite_master", "sqlite_schema"}
        tables: dict[str, list[str]] = {}
        for table, column in conn.execute(
            "SELECT m.name, p.name FROM main.sqlite_master AS m, pragma_table_info(m.name, 'main')"
            " AS p WHERE m.type = 'table' ORDER BY m.name, p.cid"
        ):
            tables.setdefault(table, []).append(column)
        nonce = secrets.token_hex(16)
        statements, inner = _view_statements(tables, env_id, nonce)
        for statement in statements:
            conn.execute(statement)
        functions = {f for f in TABLE_FUNCTIONS if f not in main_names}  # never a real table
        for f in functions:
            conn.execute(f"SELECT * FROM {f}('[]')").fetchall()  # initialise the eponymous vtab
        conn.execute("PRAGMA query_only = ON")
        guard = _Guard(inner, functions, main_names)
        conn.set_authorizer(guard)  # last: our own setup above needed what queries may not do
        conn.set_progress_handler(lambda: 1 if time.monotonic() > deadline else 0, PROGRESS_OPS)
    except BaseException:
        conn.close()
        raise
    return conn, guard


def _cell(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.hex().upper()
    return str(value)


def _scrub(message: str, guard: _Guard | None) -> str:
    """Error texts never name the secret inner views (their names guard layer 4)."""
    if guard is not None:
        for inner, public in guard.inner_public.items():
            message = message.replace(inner, public)
    return message


def execute_sql(
    db_path_or_uri: str,
    env_id: str,
    query: str,
    timeout_ms: int = 0,
    max_rows: int = 0,
    *,
    uri: bool = False,
) -> SqlResult:
    """Run one read-only ``SELECT``/``WITH`` over ``env_id``'s views (features.md §12). Blocking.

    ``db_path_or_uri`` is the journal's file (opened ``mode=ro``), or with ``uri=True`` an sqlite
    URI used as given (the in-memory shared-cache journal of tests). Raises
    :class:`SqlQueryError` ``invalid_argument`` for anything refused or failing because of the
    query, ``deadline_exceeded`` when ``timeout_ms`` (clamped) runs out.
    """
    if not isinstance(env_id, str) or not env_id or "\x00" in env_id:
        raise ValueError("env_id must be a non-empty string")  # a caller bug, not the user's
    started = time.monotonic()
    timeout_ms, max_rows = clamp_limits(timeout_ms, max_rows)
    statement = single_statement(query)
    deadline = started + timeout_ms / 1000.0

    def timed_out(exc: BaseException | None = None) -> SqlQueryError:
        err = SqlQueryError("deadline_exceeded",
                            f"query exceeded its timeout of {timeout_ms} ms and was stopped")
        err.__cause__ = exc
        return err

    while True:
        guard: _Guard | None = None
        conn: sqlite3.Connection | None = None
        try:
            conn, guard = _open(db_path_or_uri, uri, env_id, deadline)
            cursor = conn.execute(statement)
            columns = [d[0] for d in cursor.description or ()]
            rows: list[list[str | None]] = []
            truncated = False
            budget = MAX_RESULT_CHARS
            for row in cursor:
                if len(rows) >= max_rows:
                    truncated = True  # stepped one row past the limit: that is all we need
                    break
                cells = [_cell(v) for v in row]
                budget -= sum(len(c) for c in cells if c is not None)
                if budget < 0:
                    truncated = True  # the reply would outgrow MAX_RESULT_CHARS: stop before it
                    break
                rows.append(cells)
            return SqlResult(columns=columns, rows=rows, total_rows=len(rows), truncated=truncated)
        except (sqlite3.Error, sqlite3.Warning) as exc:
            code = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF
            message = _scrub(str(exc), guard)
            if code in (_SQLITE_BUSY, _SQLITE_LOCKED):
                if time.monotonic() + LOCK_RETRY_SECONDS >= deadline:
                    raise timed_out(exc) from exc
                time.sleep(LOCK_RETRY_SECONDS)
                continue
            if code == _SQLITE_INTERRUPT or (
                time.monotonic() > deadline and "interrupt" in message.lower()
            ):
                raise timed_out(exc) from exc
            if guard is None or code in _SERVER_FAULTS:
                raise  # the server's problem (cannot open, I/O, corrupt): the app says internal
            if code == _SQLITE_AUTH or guard.denied is not None:
                views = ", ".join(sorted(set(guard.inner_public.values())))
                raise _invalid(f"not allowed: {guard.denied or 'this statement'} (only SELECT "
                               f"over the views {views} and json_each/json_tree)") from None
            raise _invalid(f"SQL error: {message}") from None
        finally:
            if conn is not None:
                conn.close()
