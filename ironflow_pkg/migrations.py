"""Ordered, forward-only schema migrations for the ironflow journal.

The schema is plain SQL text in ``ironflow_pkg/schema/NNNN_name.sql`` files, loaded into
:data:`MIGRATIONS`, one :class:`Migration` per version.
:func:`apply_migrations` brings a connection's database up to the newest version, each migration
in its own ``BEGIN IMMEDIATE`` transaction together with its row in ``schema_version``, so a crash
half-way through a migration leaves the database at the previous version, never in between.

Rules for adding a migration (design.md, habit 11):

* append only: never edit or reorder a migration that has shipped; fix forward with a new one;
* versions are consecutive integers starting at 1 (checked at import time);
* every domain table carries ``env_id`` (multi-tenancy is in the data model from day one);
* statements must not manage transactions themselves (no BEGIN/COMMIT in the SQL text).

This module knows nothing about the journal's threads; it only needs a ``sqlite3.Connection``
opened with ``isolation_level=None`` (explicit transaction control).
"""

from __future__ import annotations

import logging
import re
import sqlite3
from importlib import resources
import time
from dataclasses import dataclass

__all__ = [
    "MIGRATIONS",
    "Migration",
    "MigrationError",
    "apply_migrations",
    "current_version",
    "split_statements",
]

# RFC 3339 UTC timestamp with milliseconds and a "Z" suffix, e.g. 2024-05-01T10:11:12.345Z.
# sqlite's %f is "SS.SSS", so this yields exactly millisecond precision.
SQL_NOW = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"

# Bookkeeping table: one row per applied migration. Created outside the numbered migrations
# because it is how we learn which of them have run.
_VERSION_TABLE_SQL = """
CREATE TABLE IF NOT EXISTS schema_version (
    version    INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    applied_at TEXT NOT NULL
)
"""


class MigrationError(Exception):
    """A migration could not be applied, or the database is newer than this build.

    The journal wraps this into its own ``JournalError``; the message names the migration and the
    reason so an operator can act on it.
    """


@dataclass(frozen=True)
class Migration:
    """One schema step: ``version`` (1, 2, ...), a short ``name`` and its ``sql`` text."""

    version: int
    name: str
    sql: str


def load_migrations(package: str = "ironflow_pkg.schema") -> list[Migration]:
    """Read ``NNNN_name.sql`` files shipped inside the package, in version order.

    Read through :mod:`importlib.resources`, so the same code works from the source tree and
    from inside ``ironflow.pyz`` (design.md habit 13).
    """
    out: list[Migration] = []
    for entry in resources.files(package).iterdir():
        m = _FILE_RE.match(entry.name)
        if m:
            out.append(Migration(int(m.group(1)), m.group(2), entry.read_text(encoding="utf-8")))
    return sorted(out, key=lambda mig: mig.version)


_FILE_RE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

MIGRATIONS: list[Migration] = load_migrations()


def _check_migration_list(migrations: list[Migration]) -> None:
    """Fail loudly at import time if the list is not versions 1..N in order."""
    for index, migration in enumerate(migrations, start=1):
        if migration.version != index:
            raise MigrationError(
                f"migration list is broken: position {index} holds version {migration.version} "
                f"({migration.name!r}); versions must be 1..N, in order, with no gaps"
            )


_check_migration_list(MIGRATIONS)


def split_statements(sql: str) -> list[str]:
    """Split SQL text into complete statements.

    ``sqlite3.complete_statement`` understands string literals, comments and trigger bodies,
    so a ``;`` inside any of those does not end a statement. Needed because
    ``executescript`` would COMMIT any open transaction first, and each migration must run
    inside the transaction we opened.
    """
    statements: list[str] = []
    buffer = ""
    for piece in sql.split(";"):
        buffer += piece + ";"
        if sqlite3.complete_statement(buffer):
            statement = buffer.strip()
            if _has_code(statement):
                statements.append(statement)
            buffer = ""
    if _has_code(buffer.rstrip(";")):
        raise MigrationError(f"incomplete SQL statement at end of migration: {buffer.strip()!r}")
    return statements


def _has_code(statement: str) -> bool:
    """True if the text holds anything besides whitespace, ``;`` and ``--`` comments."""
    for line in statement.splitlines():
        code = line.split("--", 1)[0].strip().strip(";").strip()
        if code:
            return True
    return False


def current_version(conn: sqlite3.Connection) -> int:
    """Highest applied migration version, 0 for an empty database."""
    row = conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
    ).fetchone()
    if row is None:
        return 0
    value = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0]
    return int(value or 0)


def apply_migrations(
    conn: sqlite3.Connection,
    logger: logging.Logger | None = None,
    migrations: list[Migration] | None = None,
) -> int:
    """Apply every pending migration in order and return the resulting schema version.

    Idempotent: versions already recorded in ``schema_version`` are skipped, so calling this on
    every start-up is cheap. Each migration and its version row commit together; the version is
    re-checked inside the write transaction so two processes starting at once cannot apply the
    same step twice. A database newer than this build raises :class:`MigrationError` (forward
    only: we never guess how to run against a schema we do not know).
    """
    log = logger or logging.getLogger("ironflow.journal")
    steps = MIGRATIONS if migrations is None else migrations
    _check_migration_list(steps)
    newest = len(steps)

    conn.execute(_VERSION_TABLE_SQL)
    version = current_version(conn)
    if version > newest:
        raise MigrationError(
            f"database schema version {version} is newer than this build supports ({newest}); "
            "refusing to open it - run a newer ironflow or restore a matching backup"
        )
    pending = [m for m in steps if m.version > version]
    if not pending:
        log.info("schema up to date", extra={"fields": {"schema_version": version}})
        return version

    log.info("applying migrations", extra={"fields": {"from_version": version, "to_version": newest,
                                                      "pending": len(pending)}})
    for migration in pending:
        started = time.perf_counter()
        try:
            conn.execute("BEGIN IMMEDIATE")
            done = conn.execute(
                "SELECT 1 FROM schema_version WHERE version = ?", (migration.version,)
            ).fetchone()
            if done is None:
                for statement in split_statements(migration.sql):
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO schema_version (version, name, applied_at) "
                    f"VALUES (?, ?, {SQL_NOW})",
                    (migration.version, migration.name),
                )
            conn.execute("COMMIT")
        except (sqlite3.Error, MigrationError) as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise MigrationError(
                f"migration {migration.version} ({migration.name}) failed and was rolled back: "
                f"{exc}"
            ) from exc
        fields = {"version": migration.version, "name": migration.name,
                  "ms": round((time.perf_counter() - started) * 1000.0, 1)}
        if done is None:
            log.info("migration applied", extra={"fields": fields})
        else:
            log.info("migration already applied by another process", extra={"fields": fields})
    return current_version(conn)
