"""KV and config watch sockets (websocket.md §3-§4): change feeds over WebSocket.

A watcher registers a listener on its store and gets one JSON text frame per committed change,
in revision order; only changes made after the upgrade are sent unless ``include_current=true``.
Client data frames are ignored. A watcher that falls too far behind is closed with 1011 (slow
consumer) rather than buffering without bound.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from .api_engine import env_of
from .app import App, query_params
from .configdocs import ConfigStore
from .errors import ApiError
from .jsonutil import name_matches, now_ts
from .kv import KVStore
from .server import HttpRequest, Response
from .ws_asyncio import WebSocketSession, websocket_response

#: Frames queued for one watcher (waiting for the socket) before it counts as a slow consumer.
MAX_PENDING = 1000
#: websocket.md §1.2: the server pings every 30 s and drops a peer silent for 30 s more.
PING_INTERVAL = 30.0
PING_TIMEOUT = 30.0
_TAG = "w"


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


class _Feed:
    """Frames for one watch socket, posted as changes commit (no task or queue of its own: the
    session's backlog is the queue); overflow closes the socket as a slow consumer (1011)."""

    __slots__ = ("session", "held")

    def __init__(self, session: WebSocketSession, hold: bool = False) -> None:
        self.session = session
        #: While the current state is sent (``include_current``), changes wait here so that they
        #: follow it.
        self.held: list[tuple[dict[str, Any], int]] | None = [] if hold else None

    def push(self, frame: dict[str, Any], close_code: int = 0) -> None:
        """Send ``frame``; with ``close_code`` it is the last one (an error) and the socket closes."""
        if self.held is not None:
            if len(self.held) >= MAX_PENDING:
                self.session.start_close(1011, "slow consumer", discard=True)
                return
            self.held.append((frame, close_code))
            return
        s = self.session
        if s.queued(_TAG) >= MAX_PENDING:
            s.start_close(1011, "slow consumer", discard=True)
            return
        s.post(_dumps(frame), _TAG)
        if close_code:
            s.start_close(close_code, frame["message"])

    async def pump(self, sent: dict[str, int] | None = None) -> None:
        """Send what was held, then run until the socket closes (client data frames are
        ignored, websocket.md §1.2). ``sent``: key -> revision the current state already showed;
        held changes of that key up to that revision are not sent again (revision order)."""
        held, self.held = self.held, None
        for frame, code in held or ():
            if sent and frame.get("revision", 0) <= sent.get(frame.get("key", ""), 0):
                continue
            self.push(frame, code)
        while await self.session.recv() is not None:
            pass


class WatchRoutes:
    def __init__(self, app: App, kv: KVStore, config: ConfigStore) -> None:
        self.kv, self.config = kv, config
        app.router.add("GET", "/api/v1/kv/buckets/{bucket}/watch", self.kv_watch)
        app.router.add("GET", "/api/v1/config/{name}/watch", self.config_watch)

    def _upgrade(self, req: HttpRequest, handler: Any) -> Response:
        if req.head.upgrade is None or req.head.upgrade.lower() != "websocket":
            raise ApiError("invalid_argument", "websocket upgrade required")
        return websocket_response(req, handler, deflate=None, ping_interval=PING_INTERVAL,
                                  ping_timeout=PING_TIMEOUT)

    async def kv_watch(self, req: HttpRequest, p: dict[str, str]) -> Response:
        env, bucket = env_of(req), p["bucket"]
        q = query_params(req)
        pattern = q.get("key") or ""
        include = (q.get("include_current") or "").lower() == "true"

        async def handler(session: WebSocketSession) -> None:
            if (env, bucket) not in self.kv.buckets:
                # websocket.md §3: complete the upgrade, say why, close 1008.
                await session.send(_dumps({"type": "error", "message": "bucket not found"}))
                await session.close(1008, "bucket not found")
                return
            feed = _Feed(session, hold=include)

            def on_change(e: str, b: str, change: dict[str, Any]) -> None:
                if e != env or b != bucket:
                    return
                if change.get("type") == "bucket_deleted":
                    feed.push({"type": "error", "message": "bucket deleted"}, 1000)
                elif not pattern or name_matches(pattern, change["key"]):
                    feed.push({"type": "kv_update", "bucket": bucket, "key": change["key"],
                               "value": base64.b64encode(change["value"]).decode(),
                               "revision": change["revision"], "operation": change["operation"]})
            self.kv.listeners.add(on_change)
            sent: dict[str, int] = {}
            try:
                if include:
                    for key in self.kv.list_keys(env, bucket, pattern):
                        try:
                            entry = await self.kv.get(env, bucket, key)
                        except ApiError:
                            continue  # deleted meanwhile: its change frame follows
                        sent[key] = entry["revision"]
                        await session.send(_dumps({"type": "kv_update", "bucket": bucket, "key": key,
                                                   "value": entry["value"],
                                                   "revision": entry["revision"],
                                                   "operation": "put"}))
                await feed.pump(sent)
            finally:
                self.kv.listeners.discard(on_change)
        return self._upgrade(req, handler)

    async def config_watch(self, req: HttpRequest, p: dict[str, str]) -> Response:
        env, name = env_of(req), p["name"]
        include = (query_params(req).get("include_current") or "").lower() == "true"

        async def handler(session: WebSocketSession) -> None:
            feed = _Feed(session, hold=include)

            def on_change(e: str, n: str, change: dict[str, Any]) -> None:
                if e == env and n == name:
                    doc = self.config.docs.get((env, name))
                    feed.push({"type": "config_update", "name": name, "data": change["data"],
                               "revision": change["revision"],
                               "updatedAt": doc.updated_at if doc else now_ts()})
            self.config.listeners.add(on_change)
            try:
                if include and (env, name) in self.config.docs:
                    doc = self.config.get(env, name)
                    await session.send(_dumps({"type": "config_update", **doc}))
                await feed.pump()
            finally:
                self.config.listeners.discard(on_change)
        return self._upgrade(req, handler)
