"""Read-only SQL over REST (``POST /api/v1/sql``) and Connect (``QueryService/ExecuteSQL``),
one service underneath (features.md §12, rest-api.md §2.6)."""

from __future__ import annotations

import asyncio
from typing import Any

from .api_engine import env_of, read_object
from .app import App, json_response
from .connect import ConnectRouter
from .errors import ApiError
from .journal import Journal
from .server import HttpRequest, Response
from .sqlquery import SqlResult, execute_sql

#: Queries run on threads and may take up to 30 s each: at most this many at once, so SQL cannot
#: starve the journal's own readers.
MAX_CONCURRENT_QUERIES = 4


class QueryRoutes:
    def __init__(self, app: App, rpc: ConnectRouter, journal: Journal) -> None:
        self.journal = journal
        self._slots = asyncio.Semaphore(MAX_CONCURRENT_QUERIES)
        app.router.add("POST", "/api/v1/sql", self.rest)
        rpc.add("QueryService", "ExecuteSQL", self.connect)
        app.features.add("sql")

    async def run(self, env: str, query: Any, timeout_ms: Any, max_rows: Any) -> SqlResult:
        if not isinstance(query, str):
            raise ApiError("invalid_argument", "query: a SQL string is required")
        target, uri = self.journal.read_target
        async with self._slots:
            return await asyncio.to_thread(execute_sql, target, env, query, timeout_ms or 0,
                                           max_rows or 0, uri=uri)

    async def rest(self, req: HttpRequest, p: dict[str, str]) -> Response:
        body = read_object(req)
        result = await self.run(env_of(req), body.get("query", body.get("sql")),
                                body.get("timeout_ms"), body.get("max_rows"))
        return json_response(result.rest())

    async def connect(self, req: HttpRequest, m: dict[str, Any]) -> dict[str, Any]:
        result = await self.run(env_of(req), m.get("query") or "", m.get("timeout_ms"),
                                m.get("max_rows"))
        return result.proto()
