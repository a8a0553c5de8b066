"""Tests for ironflow_pkg.sqlquery: read-only SQL over per-environment views (features.md §12).

Every test runs against a real migrated journal file written through ``Journal.write_sync``, with
rows in two environments. Environment B's values all carry the marker ``zqenvb`` so "env A never
sees env B" is checked by scanning every returned cell.
"""

from __future__ import annotations

import json
import random
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from ironflow_pkg.errors import ApiError
from ironflow_pkg.journal import Journal
from ironflow_pkg.sqlquery import (
    DEFAULT_MAX_ROWS,
    DEFAULT_TIMEOUT_MS,
    MAX_MAX_ROWS,
    MAX_TIMEOUT_MS,
    VIEW_COLUMNS,
    SqlQueryError,
    SqlResult,
    _open,
    clamp_limits,
    execute_sql,
    single_statement,
)

ENV_A = "env_default"
ENV_B = "env_zqenvb"
MARK_B = "zqenvb"  # appears in every text value of environment B, never in A's
MARK_A = "envamark"  # appears in every text value of environment A, never in B's
TS = "2024-05-01T10:00:00.000Z"


def _seed(conn: sqlite3.Connection) -> None:
    conn.execute(
        "INSERT INTO environments (id, name, org_id, project_id, created_at) "
        "VALUES (?, 'zqenvb', 'org_default', 'proj_default_default', ?)", (ENV_B, TS))
    for env, tag in ((ENV_A, MARK_A), (ENV_B, MARK_B)):
        # events: 3 per env; the first was emitted by a run
        for i in range(3):
            conn.execute(
                "INSERT INTO events (id, env_id, name, data, metadata, source, version, "
                "idempotency_key, emitted_by, run_ids, created_at) "
                "VALUES (?, ?, ?, ?, ?, 'api', 1, ?, ?, ?, ?)",
                (f"evt_{tag}_{i}", env, f"order.{tag}", json.dumps({"n": i, "who": tag,
                                                                  "items": [tag, i]}),
                 json.dumps({"m": tag}), f"idem_{tag}_{i}" if i == 0 else None,
                 f"run_{tag}_0" if i == 0 else "",
                 json.dumps([f"run_{tag}_0"]) if i == 0 else "[]", TS))
        config = {"id": f"fn_{tag}", "name": f"Fn {tag}", "preferred_mode": "pull",
                  "triggers": [{"event": f"order.{tag}", "expression": "", "cron": ""}]}
        conn.execute(
            "INSERT INTO functions (env_id, id, config, status, version, created_at, updated_at) "
            "VALUES (?, ?, ?, 'active', 2, ?, ?)", (env, f"fn_{tag}", json.dumps(config), TS, TS))
        for i in range(2):
            conn.execute(
                "INSERT INTO runs (id, env_id, function_id, function_version, event_id, "
                "event_name, status, attempt, max_attempts, retry, input, output, error, "
                "lease_token, worker_id, parent_run_id, created_at, started_at, updated_at) "
                "VALUES (?, ?, ?, 2, ?, ?, ?, 1, 3, '{}', ?, ?, NULL, ?, ?, ?, ?, ?, ?)",
                (f"run_{tag}_{i}", env, f"fn_{tag}", f"evt_{tag}_0", f"order.{tag}",
                 "completed" if i == 0 else "running", json.dumps({"in": tag, "i": i}),
                 json.dumps({"out": tag}) if i == 0 else None, f"secret_lease_{tag}",
                 f"worker_{tag}" if i == 1 else "", f"run_{tag}_0" if i == 1 else "",
                 TS, TS, TS))
            conn.execute(
                "INSERT INTO steps (id, run_id, env_id, sequence, step_id, name, step_type, "
                "status, output, attempt, duration_ms, started_at, ended_at, created_at, "
                "updated_at) VALUES (?, ?, ?, 1, ?, ?, 'run', 'completed', ?, 1, 12, ?, ?, ?, ?)",
                (f"stp_{tag}_{i}", f"run_{tag}_{i}", env, f"s_{tag}", f"step {tag}",
                 json.dumps({"v": tag}), TS, TS, TS, TS))
        conn.execute(
            "INSERT INTO topic_messages (id, env_id, topic, data, run_id, created_at) "
            "VALUES (?, ?, ?, ?, '', ?)", (f"msg_{tag}", env, f"topic.{tag}",
                                          json.dumps({"t": tag}), TS))
    conn.execute("INSERT INTO api_keys (id, env_id, name, key_hash, key_prefix, created_at) "
                 "VALUES ('key_1', ?, 'k', 'hash_zqsecret', 'pfx', ?)", (ENV_A, TS))
    conn.execute("INSERT INTO server_meta (key, value) VALUES ('node_zqsecret', 'v')")


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    path = str(tmp_path_factory.mktemp("sqlquery") / "journal.db")
    journal = Journal(path)
    journal.open()
    journal.write_sync(_seed)
    try:
        yield path  # the journal stays open: WAL mode, as in the server
    finally:
        journal.close()


def q(db: str, sql: str, env: str = ENV_A, **kw: Any) -> SqlResult:
    return execute_sql(db, env, sql, **kw)


def refused(db: str, sql: str, env: str = ENV_A, code: str = "invalid_argument",
            **kw: Any) -> SqlQueryError:
    with pytest.raises(SqlQueryError) as info:
        execute_sql(db, env, sql, **kw)
    assert info.value.code == code, (sql, info.value.message)
    assert "_ironflow_sql_" not in info.value.message  # inner view names never leak
    return info.value


def cells(result: SqlResult) -> list[str]:
    return [c for row in result.rows for c in row if c is not None]


def assert_only(result: SqlResult, env: str) -> None:
    other = MARK_B if env == ENV_A else MARK_A
    leaked = [c for c in cells(result) if other in c]
    assert not leaked, leaked


# --- views: columns and contents -----------------------------------------------------------------


def test_view_columns_are_exactly_the_documented_ones(db: str) -> None:
    expected = {
        "events": ["id", "name", "data", "metadata", "source", "timestamp", "version",
                   "idempotency_key", "entity_id", "entity_type", "entity_version", "seq",
                   "run_id", "emitted_by"],
        "runs": ["id", "function_id", "event_id", "event_name", "status", "attempt",
                 "max_attempts", "input", "output", "error", "worker_id", "parent_run_id",
                 "created_at", "started_at", "ended_at", "updated_at"],
        "steps": ["id", "run_id", "step_id", "name", "step_type", "sequence", "status", "output",
                  "error", "attempt", "duration_ms", "started_at", "ended_at"],
        "functions": ["id", "name", "mode", "status", "version", "triggers", "created_at",
                      "updated_at"],
        "topic_messages": ["id", "topic", "data", "seq", "timestamp"],
    }
    for view, columns in expected.items():
        assert q(db, f"SELECT * FROM {view}").columns == columns, view
        assert VIEW_COLUMNS[view] == columns
    assert VIEW_COLUMNS["projections"] == ["name", "mode", "status", "last_event_seq", "updated_at"]
    assert VIEW_COLUMNS["projection_state"] == [
        "projection_name", "partition_key", "state", "last_event_id", "last_event_seq",
        "updated_at"]


@pytest.mark.parametrize("view", ["projections", "projection_state"])
def test_projection_views_absent_until_their_tables_exist(db: str, view: str) -> None:
    err = refused(db, f"SELECT * FROM {view}")
    assert "no such table" in err.message


@pytest.mark.parametrize("sql", [
    "SELECT env_id FROM runs", "SELECT lease_token FROM runs", "SELECT retry FROM runs",
    "SELECT config FROM functions", "SELECT run_ids FROM events", "SELECT created_at FROM events",
    "SELECT stored_status FROM steps", "SELECT env_id FROM topic_messages",
])
def test_undocumented_columns_do_not_exist(db: str, sql: str) -> None:
    assert "no such column" in refused(db, sql).message


def test_events_view_maps_columns(db: str) -> None:
    r = q(db, "SELECT id, timestamp, run_id, emitted_by, entity_id, entity_type, entity_version, "
              "idempotency_key, version, seq, source FROM events ORDER BY seq")
    assert len(r.rows) == 3
    first, second = r.rows[0], r.rows[1]
    assert first[:4] == [f"evt_{MARK_A}_0", TS, f"run_{MARK_A}_0", f"run_{MARK_A}_0"]
    assert first[4:7] == [None, None, None]  # no entity columns in the journal yet
    assert first[7] == f"idem_{MARK_A}_0" and first[8] == "1" and first[10] == "api"
    assert int(first[9]) < int(second[9])
    assert second[2] is None and second[3] is None  # '[]' -> NULL, '' -> NULL


def test_runs_steps_functions_topic_messages_contents(db: str) -> None:
    runs = q(db, "SELECT id, status, worker_id, parent_run_id, attempt, max_attempts, output "
                 "FROM runs ORDER BY id")
    assert runs.rows == [
        [f"run_{MARK_A}_0", "completed", None, None, "1", "3", json.dumps({"out": MARK_A})],
        [f"run_{MARK_A}_1", "running", f"worker_{MARK_A}", f"run_{MARK_A}_0", "1", "3", None],
    ]
    steps = q(db, "SELECT id, run_id, step_id, name, step_type, sequence, duration_ms FROM steps "
                  "ORDER BY id")
    assert steps.rows[0] == [f"stp_{MARK_A}_0", f"run_{MARK_A}_0", f"s_{MARK_A}", f"step {MARK_A}",
                             "run", "1", "12"]
    fns = q(db, "SELECT id, name, mode, status, version, triggers FROM functions")
    assert fns.rows == [[f"fn_{MARK_A}", f"Fn {MARK_A}", "pull", "active", "2",
                         json.dumps([{"event": f"order.{MARK_A}", "expression": "", "cron": ""}],
                                    separators=(",", ":"))]]
    msgs = q(db, "SELECT id, topic, data, timestamp FROM topic_messages")
    assert msgs.rows == [[f"msg_{MARK_A}", f"topic.{MARK_A}", json.dumps({"t": MARK_A}), TS]]


def test_json_extract_works_on_json_columns(db: str) -> None:
    r = q(db, "SELECT json_extract(data, '$.n'), json_extract(data, '$.items[0]'), "
              "json_extract(metadata, '$.m') FROM events ORDER BY seq")
    assert r.rows == [[str(i), MARK_A, MARK_A] for i in range(3)]
    assert q(db, "SELECT json_extract(input, '$.in') FROM runs WHERE json_extract(input, '$.i') = 1"
             ).rows == [[MARK_A]]
    assert q(db, "SELECT json_extract(output, '$.v') FROM steps LIMIT 1").rows == [[MARK_A]]
    assert q(db, "SELECT json_extract(triggers, '$[0].event') FROM functions").rows == [
        [f"order.{MARK_A}"]]
    assert q(db, "SELECT data ->> '$.t' FROM topic_messages").rows == [[MARK_A]]
    r = q(db, "SELECT e.id, j.value FROM events e, json_each(e.data, '$.items') j "
              "WHERE j.type = 'text'")
    assert len(r.rows) == 3 and all(row[1] == MARK_A for row in r.rows)
    r = q(db, "WITH t AS (SELECT key FROM json_tree((SELECT data FROM events LIMIT 1))) "
              "SELECT count(*) FROM t")
    assert int(r.rows[0][0]) > 3


# --- environment isolation -----------------------------------------------------------------------

ISOLATION_QUERIES = [
    "SELECT * FROM events", "SELECT * FROM runs", "SELECT * FROM steps",
    "SELECT * FROM functions", "SELECT * FROM topic_messages",
    "SELECT * FROM temp.runs", "SELECT * FROM temp.events",
    "SELECT id FROM events UNION SELECT id FROM runs UNION SELECT id FROM steps "
    "UNION SELECT id FROM functions UNION SELECT id FROM topic_messages",
    "SELECT id FROM runs UNION ALL SELECT event_id FROM runs UNION ALL SELECT name FROM events",
    "SELECT r.id, e.id, s.id FROM runs r JOIN events e ON e.id = r.event_id "
    "LEFT JOIN steps s ON s.run_id = r.id",
    "SELECT r.id, e.data FROM runs r CROSS JOIN events e",
    "SELECT * FROM runs WHERE id IN (SELECT id FROM runs) OR event_id IN (SELECT id FROM events)",
    "SELECT (SELECT group_concat(id) FROM runs), (SELECT group_concat(data) FROM events)",
    "SELECT * FROM (SELECT * FROM (SELECT * FROM runs))",
    "WITH x AS (SELECT * FROM runs), y AS (SELECT * FROM events) SELECT x.id, y.id FROM x, y",
    "WITH runs AS (SELECT * FROM events) SELECT * FROM runs",
    "WITH events AS (SELECT id, data FROM temp.events) SELECT * FROM events",
    "WITH RECURSIVE chain(id, depth) AS (SELECT id, 0 FROM runs WHERE parent_run_id IS NULL "
    "UNION ALL SELECT r.id, depth + 1 FROM runs r JOIN chain c ON r.parent_run_id = c.id "
    "WHERE depth < 5) SELECT * FROM chain",
    "SELECT count(*), group_concat(id) FROM steps",
    "SELECT id, row_number() OVER (ORDER BY id), lag(id) OVER (ORDER BY id) FROM events",
    "SELECT j.value FROM events e, json_each(e.data) j",
    "SELECT * FROM events WHERE id LIKE '%zqenvb%' OR name LIKE '%zqenvb%' OR data LIKE '%zqenvb%'",
    "SELECT * FROM runs WHERE rowid > 0 OR rowid IS NULL",
    "SELECT * FROM functions f JOIN runs r ON r.function_id = f.id",
    "SELECT DISTINCT topic FROM topic_messages ORDER BY 1",
]


@pytest.mark.parametrize("sql", ISOLATION_QUERIES)
def test_env_a_never_sees_env_b(db: str, sql: str) -> None:
    result_a = q(db, sql, ENV_A)
    assert_only(result_a, ENV_A)
    result_b = q(db, sql, ENV_B)
    assert_only(result_b, ENV_B)


def test_each_environment_sees_its_own_rows(db: str) -> None:
    for env, tag in ((ENV_A, MARK_A), (ENV_B, MARK_B)):
        counts = q(db, "SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM runs), "
                       "(SELECT count(*) FROM steps), (SELECT count(*) FROM functions), "
                       "(SELECT count(*) FROM topic_messages)", env)
        assert counts.rows == [["3", "2", "2", "1", "1"]]
        assert all(tag in c for c in cells(q(db, "SELECT id FROM runs", env)))


def test_counts_without_columns(db: str) -> None:
    """count(*) over views, CTEs, subqueries and json_each reads no column: still allowed."""
    assert q(db, "SELECT count(*) FROM runs").rows == [["2"]]
    assert q(db, "SELECT count(*) FROM events, runs").rows == [["6"]]
    assert q(db, "WITH x AS (SELECT 1 UNION ALL SELECT 2) SELECT count(*) FROM x").rows == [["2"]]
    assert q(db, GEN.format(7).replace("SELECT n FROM c", "SELECT count(*) FROM c")).rows == [
        ["7"]]
    assert q(db, "SELECT count(*) FROM (SELECT 1 FROM runs)").rows == [["2"]]
    assert q(db, "SELECT count(*) FROM json_each('[1,2,3]')").rows == [["3"]]
    assert q(db, "SELECT EXISTS (SELECT 1 FROM steps)").rows == [["1"]]
    assert q(db, "SELECT count(*) FROM runs", ENV_B).rows == [["2"]]


def test_unknown_environment_sees_nothing(db: str) -> None:
    assert q(db, "SELECT count(*) FROM events", "env_nobody").rows == [["0"]]
    # a quote in the environment id is data, not SQL
    assert q(db, "SELECT count(*) FROM runs", "env' OR '1'='1").rows == [["0"]]


# --- refusals ------------------------------------------------------------------------------------

FORBIDDEN = [
    # more than one statement, including ';' hidden behind strings and comments
    "SELECT 1; SELECT 2",
    "SELECT 1;SELECT * FROM main.api_keys",
    "SELECT ';'; DELETE FROM runs",
    "SELECT 1 /* ; */; PRAGMA user_version",
    "SELECT 1 -- comment ;\n; SELECT 2",
    "SELECT \"a;b\" FROM runs; SELECT 1",
    "SELECT [x;y] FROM runs; SELECT 1",
    "SELECT `x;` FROM runs; SELECT 1",
    "SELECT 'it''s;' ; SELECT 1",
    "SELECT 1; /* only a comment */ SELECT 2",
    # not SELECT / WITH
    "PRAGMA user_version", "PRAGMA table_info(runs)", "ATTACH DATABASE ':memory:' AS x",
    "DETACH DATABASE temp", "INSERT INTO runs (id) VALUES ('x')", "UPDATE runs SET status = 'x'",
    "DELETE FROM runs", "CREATE TEMP TABLE t (a)", "CREATE TEMP VIEW v AS SELECT 1",
    "DROP VIEW runs", "DROP VIEW temp.runs", "ALTER TABLE runs ADD COLUMN x", "BEGIN",
    "COMMIT", "ROLLBACK", "SAVEPOINT s", "VACUUM", "VACUUM INTO '/tmp/ironflow-sql-leak.db'",
    "REINDEX", "ANALYZE", "EXPLAIN SELECT * FROM runs", "EXPLAIN QUERY PLAN SELECT 1",
    "VALUES (1)", "REPLACE INTO runs (id) VALUES ('x')", "(SELECT 1)", "'SELECT 1'",
    # WITH ... write
    "WITH x AS (SELECT 1) INSERT INTO runs (id) SELECT * FROM x",
    "WITH x AS (SELECT 1) DELETE FROM runs",
    "WITH x AS (SELECT 1) UPDATE runs SET status = 'x'",
    "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 3) "
    "INSERT INTO topic_messages (id) SELECT n FROM c",
    # reading what is not a view
    "SELECT * FROM main.runs", "SELECT * FROM main.events", "SELECT id FROM main.steps",
    "SELECT * FROM main.api_keys", "SELECT * FROM api_keys", "SELECT * FROM server_meta",
    "SELECT * FROM environments", "SELECT * FROM function_history", "SELECT * FROM cron_ticks",
    "SELECT * FROM debounce_lanes", "SELECT * FROM main.schema_migrations",
    "SELECT * FROM sqlite_master", "SELECT * FROM sqlite_schema", "SELECT * FROM main.sqlite_master",
    "SELECT * FROM sqlite_temp_master", "SELECT * FROM temp.sqlite_master",
    "SELECT * FROM sqlite_temp_schema", "SELECT * FROM sqlite_sequence",
    "SELECT name FROM pragma_table_info('runs')", "SELECT * FROM pragma_database_list",
    "SELECT * FROM pragma_table_list", "SELECT * FROM dbstat",
    "SELECT count(*) FROM runs WHERE id IN (SELECT id FROM main.runs)",
    "SELECT r.id FROM runs r JOIN main.runs m ON m.id = r.id",
    "SELECT id FROM runs UNION SELECT id FROM main.runs",
    "SELECT (SELECT key_hash FROM api_keys LIMIT 1)",
    "SELECT * FROM runs WHERE EXISTS (SELECT 1 FROM main.api_keys)",
    # "table used, no column read" (row counts of other environments' or internal tables)
    "SELECT count(*) FROM main.runs", "SELECT count(*) FROM main.events",
    "SELECT count(*) FROM api_keys", "SELECT count(*) FROM main.api_keys",
    "SELECT count(*) FROM server_meta", "SELECT count(*) FROM environments",
    "SELECT count(*) FROM sqlite_master", "SELECT count(*) FROM sqlite_temp_master",
    "SELECT count(*) FROM pragma_table_info('api_keys')", "SELECT count(*) FROM dbstat",
    "SELECT 1 FROM api_keys", "SELECT EXISTS (SELECT 1 FROM server_meta)",
    "SELECT (SELECT count(*) FROM API_KEYS)", "SELECT count(*) FROM (SELECT 1 FROM main.runs)",
    "WITH x AS (SELECT count(*) FROM api_keys) SELECT * FROM x",
    "SELECT (SELECT count(*) FROM api_keys), (WITH api_keys AS (SELECT 1) "
    "SELECT count(*) FROM api_keys)",
    # a CTE named like a view cannot lend its name to a read of a table
    "WITH runs AS (SELECT * FROM main.runs) SELECT * FROM runs",
    "WITH events AS (SELECT * FROM main.api_keys) SELECT * FROM events",
    "WITH api_keys AS (SELECT * FROM main.api_keys) SELECT * FROM api_keys",
    "WITH sqlite_master AS (SELECT * FROM main.sqlite_master) SELECT * FROM sqlite_master",
    "WITH RECURSIVE runs(n) AS (SELECT 1 UNION ALL SELECT n FROM main.runs) SELECT * FROM runs",
    # functions
    "SELECT load_extension('/tmp/x.so')", "SELECT load_extension('libc')",
    "SELECT fts3_tokenizer('simple')", "SELECT readfile('/etc/passwd')",
    "SELECT writefile('/tmp/x', 'y')",
    # bindings and junk
    "SELECT ?", "SELECT :name", "SELECT", "SELECT FROM runs", "WITH", "SELECT * FROM nope",
    "SELECT nope()", "SELECT 'unterminated", "SELECT \"unterminated", "SELECT [unterminated",
    "SELECT 1 /* unterminated comment", "SELECT json_extract('not json', '$.a')",
]


@pytest.mark.parametrize("sql", FORBIDDEN)
def test_forbidden_is_invalid_argument(db: str, sql: str) -> None:
    err = refused(db, sql)
    assert isinstance(err, ApiError) and err.status == 400


@pytest.mark.parametrize("sql", ["", " ", "\n\t  ", ";", " ; ; ", "-- just a comment",
                                 "/* c */", "/* c */ -- d\n"])
def test_empty_query_is_refused(db: str, sql: str) -> None:
    assert "empty" in refused(db, sql).message


@pytest.mark.parametrize("sql", [
    "SELECT 1;", "SELECT 1 ;  ", "SELECT 1; -- trailing comment", "SELECT 1; /* c */ ;;",
    "  -- leading comment\n/* and another */ select 1", "SELECT 1 -- no newline at the end",
    "select ';' AS \"x;y\"", "SELECT 1 AS [a;b], 2 AS `c;d`, 'e;''f' AS g",
    "WITH x AS (SELECT 1) SELECT * FROM x", "with recursive x(n) as (select 1) select * from x",
    "SELECT/**/1", "sElEcT 1",
])
def test_single_statement_forms_that_are_fine(db: str, sql: str) -> None:
    assert len(q(db, sql).rows) == 1


def test_single_statement_returns_the_statement_only() -> None:
    assert single_statement("SELECT 1; -- c") == "SELECT 1"
    assert single_statement("SELECT ';' ;") == "SELECT ';' "
    assert single_statement("SELECT 1") == "SELECT 1"
    with pytest.raises(SqlQueryError):
        single_statement("SELECT 1\x00; DROP TABLE runs")
    with pytest.raises(SqlQueryError):
        single_statement("SELECT '\ud800'")
    with pytest.raises(SqlQueryError):
        single_statement(b"SELECT 1")  # type: ignore[arg-type]
    with pytest.raises(SqlQueryError):
        single_statement("SELECT " + "1," * 60000 + "1")  # longer than MAX_QUERY_CHARS


def test_connection_is_read_only_even_without_the_authorizer(db: str) -> None:
    conn, _ = _open(db, False, ENV_A, time.monotonic() + 5)
    try:
        conn.set_authorizer(None)
        with pytest.raises(sqlite3.OperationalError):
            conn.execute("INSERT INTO main.server_meta (key, value) VALUES ('x', 'y')")
        with pytest.raises(sqlite3.OperationalError):
            conn.execute("CREATE TEMP TABLE t (a)")  # query_only covers TEMP too
        with pytest.raises(sqlite3.OperationalError):
            conn.execute("ATTACH DATABASE ':memory:' AS other")  # SQLITE_LIMIT_ATTACHED = 0
    finally:
        conn.close()


def test_error_messages_do_not_name_inner_views(db: str) -> None:
    for sql in ("SELECT nope FROM runs", "SELECT runs.nope FROM runs",
                "SELECT * FROM runs JOIN events USING (nope)", "SELECT * FROM sqlite_temp_master"):
        refused(db, sql)  # asserts the message does not contain the inner prefix


# --- limits, timeouts, cells ---------------------------------------------------------------------

GEN = "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < {}) SELECT n FROM c"


def test_max_rows_truncates(db: str) -> None:
    r = q(db, GEN.format(10), max_rows=4)
    assert r.rows == [["1"], ["2"], ["3"], ["4"]] and r.total_rows == 4 and r.truncated
    r = q(db, GEN.format(4), max_rows=4)
    assert r.total_rows == 4 and not r.truncated
    r = q(db, GEN.format(DEFAULT_MAX_ROWS + 5))  # default applies
    assert r.total_rows == DEFAULT_MAX_ROWS and r.truncated
    r = q(db, GEN.format(MAX_MAX_ROWS + 5), max_rows=MAX_MAX_ROWS * 10)  # clamped
    assert r.total_rows == MAX_MAX_ROWS and r.truncated
    assert q(db, "SELECT * FROM runs WHERE 0").rows == []


def test_limits_are_clamped() -> None:
    assert clamp_limits(0, 0) == (DEFAULT_TIMEOUT_MS, DEFAULT_MAX_ROWS)
    assert clamp_limits(-5, -5) == (DEFAULT_TIMEOUT_MS, DEFAULT_MAX_ROWS)
    assert clamp_limits(10**9, 10**9) == (MAX_TIMEOUT_MS, MAX_MAX_ROWS)
    assert clamp_limits(250, 7) == (250, 7)
    for bad in (True, 1.5, "10", None):
        with pytest.raises(SqlQueryError):
            clamp_limits(bad, 1)  # type: ignore[arg-type]
        with pytest.raises(SqlQueryError):
            clamp_limits(1, bad)  # type: ignore[arg-type]


def test_heavy_recursive_cte_hits_the_deadline(db: str) -> None:
    started = time.monotonic()
    err = refused(db, "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c) "
                      "SELECT count(*) FROM c", code="deadline_exceeded", timeout_ms=300)
    elapsed = time.monotonic() - started
    assert 0.29 <= elapsed < 0.3 + 1.0, elapsed
    assert err.status == 504


def test_heavy_join_hits_the_deadline(db: str) -> None:
    started = time.monotonic()
    refused(db, "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 3000) "
                "SELECT count(*) FROM c a, c b, events e WHERE a.n * b.n = -1",
            code="deadline_exceeded", timeout_ms=200)
    assert time.monotonic() - started < 0.2 + 1.0


def test_timeout_above_the_maximum_is_clamped_not_refused(db: str) -> None:
    assert q(db, "SELECT 1", timeout_ms=MAX_TIMEOUT_MS * 100).rows == [["1"]]


def test_cells_are_strings(db: str) -> None:
    r = q(db, "SELECT 1, -7, 1.5, 1e300, NULL, 'txt', x'00ff10', CAST(x'4142' AS TEXT), "
              "CAST(x'ff' AS TEXT), 9223372036854775807, '', typeof(NULL)")
    assert r.rows == [["1", "-7", "1.5", "1e+300", None, "txt", "00FF10", "AB", "\ufffd",
                       "9223372036854775807", "", "null"]]
    assert r.columns[0] == "1" and r.columns[5] == "'txt'"


def test_duplicate_and_expression_column_names(db: str) -> None:
    r = q(db, "SELECT id, id, count(*) AS n FROM runs GROUP BY id ORDER BY id")
    assert r.columns == ["id", "id", "n"] and r.total_rows == 2


def test_result_shapes(db: str) -> None:
    r = q(db, "SELECT id, output FROM runs ORDER BY id", max_rows=1)
    assert r.rest() == {"columns": ["id", "output"],
                        "rows": [[f"run_{MARK_A}_0", json.dumps({"out": MARK_A})]],
                        "total_rows": 1, "truncated": True}
    r = q(db, "SELECT id, output FROM runs ORDER BY id DESC")
    assert r.proto() == {"columns": ["id", "output"], "total_rows": 2, "rows": [
        {"values": [f"run_{MARK_A}_1", ""]}, {"values": [f"run_{MARK_A}_0", json.dumps(
            {"out": MARK_A})]}]}


def test_caller_bugs_are_not_sql_errors(db: str) -> None:
    with pytest.raises(ValueError):
        execute_sql(db, "", "SELECT 1")
    with pytest.raises(sqlite3.OperationalError):  # the server's fault: the app says internal
        execute_sql(db + ".missing", ENV_A, "SELECT 1")


# --- SQL projection tables and the projection views ----------------------------------------------


def test_projection_tables_when_they_exist(tmp_path: Path) -> None:
    path = str(tmp_path / "proj.db")
    with Journal(path) as journal:
        def setup(conn: sqlite3.Connection) -> None:
            conn.execute("CREATE TABLE projections (env_id TEXT, name TEXT, mode TEXT, "
                         "status TEXT, last_event_seq INTEGER, updated_at TEXT, secret TEXT)")
            conn.execute("CREATE TABLE projection_state (env_id TEXT, projection_name TEXT, "
                         "partition_key TEXT, state TEXT, last_event_seq INTEGER, updated_at TEXT)")
            conn.execute("CREATE TABLE proj_orders (env_id TEXT, order_id TEXT, total INTEGER)")
            conn.execute("CREATE TABLE proj_global (order_id TEXT)")  # cannot be env-filtered
            for env, tag in ((ENV_A, MARK_A), (ENV_B, MARK_B)):
                conn.execute("INSERT INTO projections VALUES (?, ?, 'managed', 'active', 3, ?, "
                             "'s')", (env, f"p_{tag}", TS))
                conn.execute("INSERT INTO projection_state VALUES (?, ?, '__global__', ?, 3, ?)",
                             (env, f"p_{tag}", json.dumps({"count": 3, "tag": tag}), TS))
                conn.execute("INSERT INTO proj_orders VALUES (?, ?, 5)", (env, f"o_{tag}"))
            conn.execute("INSERT INTO proj_global VALUES ('o_zqenvb')")

        journal.write_sync(setup)
        r = execute_sql(path, ENV_A, "SELECT * FROM projections")
        assert r.columns == VIEW_COLUMNS["projections"]
        assert r.rows == [[f"p_{MARK_A}", "managed", "active", "3", TS]]
        r = execute_sql(path, ENV_A, "SELECT *, json_extract(state, '$.count') FROM "
                                     "projection_state")
        assert r.columns == VIEW_COLUMNS["projection_state"] + ["json_extract(state, '$.count')"]
        assert r.rows[0][3] is None and r.rows[0][-1] == "3"  # last_event_id: no such column
        r = execute_sql(path, ENV_A, "SELECT * FROM proj_orders")
        assert r.columns == ["order_id", "total"] and r.rows == [[f"o_{MARK_A}", "5"]]
        r = execute_sql(path, ENV_B, "SELECT p.name, o.order_id FROM projections p, proj_orders o")
        assert r.rows == [[f"p_{MARK_B}", f"o_{MARK_B}"]]
        for sql in ("SELECT * FROM proj_global", "SELECT * FROM main.proj_orders",
                    "SELECT secret FROM projections"):
            with pytest.raises(SqlQueryError) as info:
                execute_sql(path, ENV_A, sql)
            assert info.value.code == "invalid_argument"


# --- the in-memory journal (URI) and its table locks ---------------------------------------------


def test_memory_journal_uri_and_lock_retry() -> None:
    with Journal(":memory:") as journal:
        journal.write_sync(_seed)
        uri = journal._uri
        r = execute_sql(uri, ENV_A, "SELECT count(*) FROM runs", uri=True)
        assert r.rows == [["2"]]
        refused(uri, "SELECT * FROM main.api_keys", uri=True)

        holding = threading.Event()

        def slow_write(conn: sqlite3.Connection) -> None:
            conn.execute("UPDATE runs SET status = 'failed' WHERE id = ?", (f"run_{MARK_A}_1",))
            holding.set()
            time.sleep(0.25)

        writer = threading.Thread(target=journal.write_sync, args=(slow_write,))
        writer.start()
        try:
            assert holding.wait(5)
            # the write batch holds table locks: a short deadline runs out while waiting...
            refused(uri, "SELECT status FROM runs", code="deadline_exceeded", timeout_ms=50,
                    uri=True)
            # ...a longer one retries until the batch commits and then sees it
            r = execute_sql(uri, ENV_A, "SELECT status FROM runs ORDER BY id", 5000, uri=True)
            assert r.rows == [["completed"], ["failed"]]
        finally:
            writer.join()


# --- fuzz ----------------------------------------------------------------------------------------

FUZZ_TOKENS = [
    "SELECT", "WITH", "RECURSIVE", "FROM", "WHERE", "AS", "UNION", "ALL", "JOIN", "ON", "AND",
    "OR", "NOT", "IN", "IS", "NULL", "LIMIT", "ORDER BY", "GROUP BY", "*", ",", "(", ")", ";",
    "'", '"', "`", "[", "]", "--", "/*", "*/", "\n", "1", "0", "-1", "1e999", "x'00'", "'a'",
    "runs", "events", "steps", "functions", "topic_messages", "projections", "main.runs",
    "temp.runs", "api_keys", "server_meta", "sqlite_master", "sqlite_temp_master", "id", "data",
    "status", "json_extract(data, '$.n')", "json_each(data)", "load_extension('x')",
    "randomblob(8)", "PRAGMA", "ATTACH", "DETACH", "INSERT INTO", "UPDATE", "DELETE", "DROP",
    "CREATE", "TEMP", "VIEW", "TABLE", "BEGIN", "COMMIT", "VALUES", "?", ":p", "@p", "$p",
    "\x00", "\ud800", "\u00a0", "é", "count(*)", "zeroblob(2000000000)", "printf('%.*c', 5, 'x')",
    "c", "c(n)", "SELECT n+1 FROM c WHERE n < 50", "n",
]


def _fuzz_queries(rng: random.Random, count: int) -> list[str]:
    out = []
    for _ in range(count):
        kind = rng.random()
        if kind < 0.6:
            tokens = [rng.choice(FUZZ_TOKENS) for _ in range(rng.randint(1, 14))]
            if rng.random() < 0.7:
                tokens.insert(0, rng.choice(["SELECT", "WITH", "select", " SELECT"]))
            out.append(rng.choice([" ", "", "\t"]).join(tokens))
        elif kind < 0.75:  # a valid query, re-spaced, re-cased, commented
            base = rng.choice(ISOLATION_QUERIES)
            if rng.random() < 0.5:
                base = base.replace(" ", rng.choice(["  ", "\n", " /* ; */ ", "\t"]))
            if rng.random() < 0.5:
                base = base.lower() if rng.random() < 0.5 else base.upper()
            out.append(rng.choice(["", "-- c\n", "/* x */"]) + base + rng.choice(
                ["", ";", "; -- end", " LIMIT 3", " LIMIT 0"]))
        elif kind < 0.9:  # mutate a valid query
            base = list(rng.choice(ISOLATION_QUERIES))
            for _ in range(rng.randint(1, 4)):
                pos = rng.randrange(len(base) + 1)
                if rng.random() < 0.5 and base:
                    del base[min(pos, len(base) - 1)]
                else:
                    base.insert(pos, rng.choice(FUZZ_TOKENS))
            out.append("".join(base))
        else:  # raw noise
            alphabet = "SELECTWIHselectwih ;'\"`[]()-/*\n,.$?:@01x"
            out.append("".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40))))
    return out


def test_fuzz_only_ever_raises_sql_query_error(db: str) -> None:
    rng = random.Random(20240501)
    ok = refused_count = 0
    for sql in _fuzz_queries(rng, 600):
        try:
            result = execute_sql(db, ENV_A, sql, timeout_ms=200, max_rows=50)
        except SqlQueryError as exc:
            assert exc.code in ("invalid_argument", "deadline_exceeded"), (sql, exc.code)
            assert "_ironflow_sql_" not in exc.message
            refused_count += 1
        else:
            assert isinstance(result, SqlResult)
            assert_only(result, ENV_A)
            assert not any("zqsecret" in c or "secret_lease" in c for c in cells(result)), sql
            ok += 1
    assert ok > 20 and refused_count > 100  # the fuzz exercises both paths
