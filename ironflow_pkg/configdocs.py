"""Config documents: named JSON objects per environment with a revision (rest-api.md §3.6).

The revision of every document is hot state so conditional writes are decided without a race;
every change is committed before it is answered and then offered to watchers.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import conditional
from .errors import ApiError
from .journal import Journal
from .jsonutil import dumps, loads, now_ts

MAX_NAME = 256


@dataclass
class Doc:
    data: dict[str, Any]
    revision: int
    created_at: str
    updated_at: str


def validate_name(name: str) -> str:
    if not name or len(name) > MAX_NAME or not name.isprintable():
        raise ApiError("invalid_argument", "name: 1-256 printable characters")
    return name


class ConfigStore:
    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self.docs: dict[tuple[str, str], Doc] = {}
        #: Called with (env, name, change) after every committed change (watch sockets).
        self.listeners: set[Callable[[str, str, dict[str, Any]], None]] = set()

    def load(self) -> None:
        rows = self.journal.read_sync(lambda c: c.execute("SELECT * FROM config_docs").fetchall())
        for r in rows:
            self.docs[(r["env_id"], r["name"])] = Doc(loads(r["data"]), r["revision"],
                                                       r["created_at"], r["updated_at"])

    def get(self, env: str, name: str) -> dict[str, Any]:
        d = self.docs.get((env, name))
        if d is None:
            raise ApiError("not_found", "config not found")
        return {"name": name, "data": d.data, "revision": d.revision, "updatedAt": d.updated_at}

    def list(self, env: str) -> list[dict[str, Any]]:
        return [{"name": n, "revision": d.revision, "updatedAt": d.updated_at}
                for (e, n), d in sorted(self.docs.items()) if e == env]

    async def set(self, env: str, name: str, data: Any, if_match: str | None = None,
                  if_none_match: str | None = None, merge: bool = False) -> tuple[dict[str, Any], bool]:
        """Full replace (``merge=False``) or shallow merge where ``null`` removes a key.
        Returns (``{name, revision}``, created)."""
        validate_name(name)
        if not isinstance(data, dict):
            raise ApiError("invalid_argument", "the config document must be a JSON object")
        cur = self.docs.get((env, name))
        conditional.check(if_match, if_none_match, cur.revision if cur else None)
        now = now_ts()
        if merge and cur is not None:
            new = {**cur.data}
            for k, v in data.items():
                if v is None:
                    new.pop(k, None)
                else:
                    new[k] = v
        else:
            new = {k: v for k, v in data.items() if not (merge and v is None)}
        doc = Doc(new, (cur.revision if cur else 0) + 1, cur.created_at if cur else now, now)
        self.docs[(env, name)] = doc

        def w(c: sqlite3.Connection) -> None:
            c.execute("INSERT INTO config_docs (env_id, name, data, revision, created_at, updated_at) "
                      "VALUES (?,?,?,?,?,?) ON CONFLICT(env_id, name) DO UPDATE SET data = "
                      "excluded.data, revision = excluded.revision, updated_at = excluded.updated_at",
                      (env, name, dumps(new), doc.revision, doc.created_at, now))
        await self.journal.write(w)
        self._notify(env, name, {"operation": "updated", "data": new, "revision": doc.revision})
        return {"name": name, "revision": doc.revision}, cur is None

    async def delete(self, env: str, name: str, if_match: str | None = None) -> None:
        cur = self.docs.get((env, name))
        if if_match is not None:
            conditional.check(if_match, None, cur.revision if cur else None)
        if cur is None:
            return  # idempotent (rest-api.md §3.6)
        del self.docs[(env, name)]
        await self.journal.write(lambda c: c.execute(
            "DELETE FROM config_docs WHERE env_id = ? AND name = ?", (env, name)))
        # websocket.md §4: a delete reports the revision it produced.
        self._notify(env, name, {"operation": "deleted", "data": None, "revision": cur.revision + 1})

    def _notify(self, env: str, name: str, change: dict[str, Any]) -> None:
        for fn in list(self.listeners):
            fn(env, name, change)
