"""KV and config watch sockets (websocket.md §3-§4): change feeds over WebSocket.

A watcher registers a listener on its store and gets one JSON text frame per committed change,
in revision order; only changes made after the upgrade are sent unless ``include_current=true``.
Client data frames are ignored. A watcher that falls too far behind is closed with 1011 (slow
consumer) rather than buffering without bound.
"""

from __future__ import annotations

import asyncio
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

#: Frames queued for one watcher before it counts as a slow consumer.
MAX_PENDING = 1000
#: websocket.md §1.2: the server pings every 30 s and drops a peer silent for 30 s more.
PING_INTERVAL = 30.0
PING_TIMEOUT = 30.0
_STOP = object()


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


class _Feed:
    """A bounded queue of frames for one socket; overflow ends the feed as a slow consumer."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        self.overflow = False

    def push(self, frame: Any) -> None:
        if self.queue.qsize() >= MAX_PENDING:
            self.overflow = True
            self.queue.put_nowait(_STOP)
            return
        self.queue.put_nowait(frame)

    async def pump(self, session: WebSocketSession) -> None:
        """Send frames until the feed ends or the client goes away."""
        ignore = asyncio.ensure_future(_drain_client(session))
        try:
            while True:
                get = asyncio.ensure_future(self.queue.get())
                done, _ = await asyncio.wait({get, ignore}, return_when=asyncio.FIRST_COMPLETED)
                if get not in done:
                    get.cancel()
                    return  # the client closed
                frame = get.result()
                if frame is _STOP:
                    if self.overflow:
                        await session.close(1011, "slow consumer")
                    return
                if isinstance(frame, tuple):  # (error frame, close code)
                    await session.send(_dumps(frame[0]))
                    await session.close(frame[1], frame[0]["message"])
                    return
                await session.send(_dumps(frame))
        finally:
            ignore.cancel()


async def _drain_client(session: WebSocketSession) -> None:
    while await session.recv() is not None:
        pass  # websocket.md §1.2: client data frames on watch routes are ignored


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
            feed = _Feed()

            def on_change(e: str, b: str, change: dict[str, Any]) -> None:
                if e != env or b != bucket:
                    return
                if change.get("type") == "bucket_deleted":
                    feed.push(({"type": "error", "message": "bucket deleted"}, 1000))
                elif not pattern or name_matches(pattern, change["key"]):
                    feed.push({"type": "kv_update", "bucket": bucket, "key": change["key"],
                               "value": base64.b64encode(change["value"]).decode(),
                               "revision": change["revision"], "operation": change["operation"]})
            self.kv.listeners.add(on_change)
            try:
                if include:
                    for key in self.kv.list_keys(env, bucket, pattern):
                        try:
                            entry = await self.kv.get(env, bucket, key)
                        except ApiError:
                            continue  # deleted meanwhile: its change frame follows
                        await session.send(_dumps({"type": "kv_update", "bucket": bucket, "key": key,
                                                   "value": entry["value"],
                                                   "revision": entry["revision"],
                                                   "operation": "put"}))
                await feed.pump(session)
            finally:
                self.kv.listeners.discard(on_change)
        return self._upgrade(req, handler)

    async def config_watch(self, req: HttpRequest, p: dict[str, str]) -> Response:
        env, name = env_of(req), p["name"]
        include = (query_params(req).get("include_current") or "").lower() == "true"

        async def handler(session: WebSocketSession) -> None:
            feed = _Feed()

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
                await feed.pump(session)
            finally:
                self.config.listeners.discard(on_change)
        return self._upgrade(req, handler)
