"""asyncio layer for WebSockets: drives a sans-I/O :class:`~ironflow_pkg.websocket.WebSocketConnection`
over the stream pair the HTTP server hands over after a ``101``.

* :func:`websocket_response` validates the upgrade request and returns the ``101``
  :class:`~ironflow_pkg.server.Response` whose ``upgrade`` callable runs :func:`serve_websocket`
  (or a JSON error response: 400, 403, 426).
* :func:`serve_websocket` runs one connection: a reader task feeds the protocol core and answers
  pings, a keep-alive task pings idle peers and drops dead ones, and the application ``handler``
  gets a :class:`WebSocketSession` (``recv`` / ``send`` / ``close``).

Timers live here only (habit 8): ping interval, pong timeout, closing-handshake timeout, write
timeout. A protocol error never escapes: the connection is closed with the core's close code.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any

from .errors import dumps, from_status
from .server import Response
from .websocket import (BinaryMessage, CloseCode, CloseReceived, DeflateOptions, HandshakeError,
                        Ping, Pong, ProtocolFailure, TextMessage, WebSocketConnection, WsLimits,
                        check_handshake)

__all__ = ["WebSocketSession", "ConnectionClosed", "serve_websocket", "websocket_response",
           "PING_INTERVAL", "PING_TIMEOUT", "CLOSE_TIMEOUT"]

log = logging.getLogger("ironflow.ws")

#: Bytes per socket read.
READ_SIZE = 65536
#: Idle time before we ping a client (ironflow-py pings every 20 s; websocket.md §1.2 asks ≤30 s).
PING_INTERVAL = 20.0
#: A pinged client that sends nothing back within this is considered dead.
PING_TIMEOUT = 20.0
#: After our close frame, how long we wait for the peer's before dropping TCP (§7.1.1).
CLOSE_TIMEOUT = 5.0
#: A peer that reads nothing for this long while we write is dropped (slow consumer).
WRITE_TIMEOUT = 30.0
#: Messages received but not yet taken by ``recv``; beyond it we stop reading the socket, so
#: TCP flow control pushes back on the client instead of our memory growing.
MAX_QUEUE = 32

_END = object()


class ConnectionClosed(Exception):
    """``send`` on a closed WebSocket. ``code`` is the close code seen (1006 for a dropped TCP)."""

    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(f"WebSocket closed ({code} {reason})".strip())
        self.code = code
        self.reason = reason


class WebSocketSession:
    """What a WebSocket handler sees. One task may ``recv`` while others ``send``."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 conn: WebSocketConnection, *, ping_interval: float | None,
                 ping_timeout: float, close_timeout: float, write_timeout: float,
                 request: Any = None, subprotocol: str | None = None) -> None:
        self.conn = conn
        self.request = request
        self.subprotocol = subprotocol
        self._reader = reader
        self._writer = writer
        self._ping_interval = ping_interval
        self._ping_timeout = ping_timeout
        self._close_timeout = close_timeout
        self._write_timeout = write_timeout
        self._queue: asyncio.Queue[Any] = asyncio.Queue(MAX_QUEUE)
        self._finished = False  # recv() has seen the end
        self._done = asyncio.Event()  # the reader stopped: the connection is over
        self._rx = asyncio.Event()  # set on every read (liveness for the keep-alive)
        self._transport_closed = False
        #: Close code of the connection once known (peer's code, ours on failure, 1006 on drop).
        self.close_code: int | None = None
        self.close_reason = ""

    # -- public API --------------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """True once a close frame was sent or received or the TCP connection ended."""
        return self._done.is_set() or self.conn.close_sent or self.conn.closed

    async def recv(self) -> str | bytes | None:
        """The next message (str for text, bytes for binary), or None once the connection closed."""
        if self._finished:
            return None
        item = await self._queue.get()
        if item is _END:
            self._finished = True
            return None
        return item

    async def send(self, data: str | bytes) -> None:
        """Send one message (text for ``str``, binary for bytes). ConnectionClosed when closed."""
        if self.closed:
            raise ConnectionClosed(self.close_code or CloseCode.ABNORMAL, self.close_reason)
        frame = self.conn.send_text(data) if isinstance(data, str) else self.conn.send_binary(data)
        await self._write(frame)

    async def close(self, code: int = CloseCode.NORMAL, reason: str = "") -> None:
        """Closing handshake (§7.1.2): send our close, wait up to the close timeout for the
        peer's, then close TCP. Idempotent."""
        if not self.conn.close_sent and not self._done.is_set():
            self.close_code = self.close_code or code
            self.close_reason = self.close_reason or reason
            try:
                await self._write(self.conn.send_close(code, reason))
            except ConnectionClosed:
                pass
        try:
            await asyncio.wait_for(self._done.wait(), self._close_timeout)
        except asyncio.TimeoutError:
            pass
        self._close_transport()

    # -- internals -----------------------------------------------------------------------------

    async def _write(self, data: bytes) -> None:
        if not data or self._transport_closed:
            if self._transport_closed:
                raise ConnectionClosed(self.close_code or CloseCode.ABNORMAL, self.close_reason)
            return
        w = self._writer
        try:
            w.write(data)
            if w.transport.get_write_buffer_size():
                await asyncio.wait_for(w.drain(), self._write_timeout)
        except (OSError, ConnectionError, asyncio.TimeoutError):
            self._close_transport(abort=True)
            raise ConnectionClosed(self.close_code or CloseCode.ABNORMAL, self.close_reason) from None

    def _close_transport(self, abort: bool = False) -> None:
        if self._transport_closed:
            return
        self._transport_closed = True
        t = self._writer.transport
        if abort:
            t.abort()
        else:
            t.close()  # flushes what is buffered, then closes: the server closes first (§7.1.1)
        self._done.set()

    async def _flush_auto(self) -> None:
        out = self.conn.data_to_send()
        if out:
            try:
                await self._write(out)
            except ConnectionClosed:
                pass

    async def _read_loop(self, leftover: bytes) -> None:
        conn = self.conn
        try:
            data = leftover
            while True:
                if data:
                    conn.receive_data(data)
                    self._rx.set()
                if await self._process():
                    return
                if self._transport_closed:
                    return
                data = await self._reader.read(READ_SIZE)
                if not data:
                    conn.receive_data(b"")
                    await self._process()
                    self.close_code = self.close_code or CloseCode.ABNORMAL
                    return
        except (OSError, ConnectionError):
            self.close_code = self.close_code or CloseCode.ABNORMAL
        finally:
            self._close_transport()
            await self._end_queue()

    async def _process(self) -> bool:
        """Handle the events buffered so far; True when the connection is over."""
        over = False
        for ev in self.conn.events():
            if isinstance(ev, TextMessage | BinaryMessage):
                await self._flush_auto()  # pongs before a possibly blocking put
                await self._queue.put(ev.data)
            elif isinstance(ev, Ping | Pong):
                pass  # the pong is queued by the core; Pong liveness is self._rx
            elif isinstance(ev, CloseReceived):
                if self.close_code is None:
                    self.close_code, self.close_reason = ev.code, ev.reason
                over = True
            elif isinstance(ev, ProtocolFailure):
                log.info("websocket protocol error: %s %s", ev.code, ev.reason)
                self.close_code, self.close_reason = ev.code, ev.reason
                over = True
        await self._flush_auto()
        return over or self.conn.closed

    async def _end_queue(self) -> None:
        while True:
            try:
                self._queue.put_nowait(_END)
                return
            except asyncio.QueueFull:
                # Nobody is reading: drop the oldest unread message to make room for the end.
                self._queue.get_nowait()

    async def _keepalive(self) -> None:
        """Ping a peer that has been silent for ``ping_interval``; drop it when nothing at all
        comes back within ``ping_timeout`` (a pong or any other frame proves it alive)."""
        interval = self._ping_interval
        assert interval is not None
        while not self.closed:
            self._rx.clear()
            try:
                await asyncio.wait_for(self._rx.wait(), interval)
                continue  # traffic: not idle
            except asyncio.TimeoutError:
                pass
            if self.closed:
                return
            self._rx.clear()
            try:
                await self._write(self.conn.send_ping(os.urandom(4)))
            except ConnectionClosed:
                return
            try:
                await asyncio.wait_for(self._rx.wait(), self._ping_timeout)
            except asyncio.TimeoutError:
                log.info("websocket peer did not answer a ping; closing")
                self.close_code, self.close_reason = CloseCode.INTERNAL_ERROR, "ping timeout"
                try:
                    await self._write(self.conn.send_close(CloseCode.INTERNAL_ERROR, "ping timeout"))
                except ConnectionClosed:
                    pass
                # A dead peer will not answer the close: do not wait for it.
                self._close_transport(abort=False)
                return


Handler = Callable[[WebSocketSession], Awaitable[None]]


async def serve_websocket(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, leftover: bytes,
                          conn: WebSocketConnection, handler: Handler, *,
                          ping_interval: float | None = PING_INTERVAL,
                          ping_timeout: float = PING_TIMEOUT, close_timeout: float = CLOSE_TIMEOUT,
                          write_timeout: float = WRITE_TIMEOUT, request: Any = None,
                          subprotocol: str | None = None) -> None:
    """Run one WebSocket connection until it is closed. ``leftover`` holds bytes that arrived
    after the HTTP head (the first frames may already be there). ``ping_interval=None`` turns
    the keep-alive off. Never raises for protocol or network errors."""
    session = WebSocketSession(reader, writer, conn, ping_interval=ping_interval,
                               ping_timeout=ping_timeout, close_timeout=close_timeout,
                               write_timeout=write_timeout, request=request, subprotocol=subprotocol)
    rtask = asyncio.create_task(session._read_loop(leftover))
    ktask = asyncio.create_task(session._keepalive()) if ping_interval else None
    try:
        try:
            await handler(session)
        except ConnectionClosed:
            pass
        except asyncio.CancelledError:
            # Server shutdown past its grace period: say so (1001) and go.
            if not session.closed:
                try:
                    writer.write(conn.send_close(CloseCode.GOING_AWAY, "server shutting down"))
                except Exception:  # pragma: no cover - best effort on the way out
                    pass
            raise
        except Exception:
            log.exception("websocket handler failed")
            await session.close(CloseCode.INTERNAL_ERROR, "internal error")
        else:
            await session.close(CloseCode.NORMAL)
    finally:
        session._close_transport(abort=not session.conn.closed and not session._done.is_set())
        for t in (rtask, ktask):
            if t is not None and not t.done():
                t.cancel()
        await asyncio.wait([t for t in (rtask, ktask) if t is not None], timeout=1.0)


def _error_response(err: HandshakeError) -> Response:
    """The project's JSON error body (``{"error","message","code"}``, as app.error_response)."""
    api = from_status(err.status, err.message)
    if err.status == 426:
        api.code = "failed_precondition"
    headers = [("Content-Type", "application/json; charset=utf-8")] + list(err.headers)
    return Response(status=err.status, headers=headers, body=dumps(api.rest_body()))


def websocket_response(request_head: Any, handler: Handler, *,
                       deflate: DeflateOptions | bool | None = None,
                       limits: WsLimits | None = None,
                       select_subprotocol: Callable[[list[str]], str | None] | None = None,
                       check_origin: Callable[[str | None], bool] | None = None,
                       ping_interval: float | None = PING_INTERVAL,
                       ping_timeout: float = PING_TIMEOUT,
                       close_timeout: float = CLOSE_TIMEOUT) -> Response:
    """Validate the upgrade request (an ``http11.Request`` or a ``server.HttpRequest``) and
    return the 101 Response that runs ``handler``, or a JSON error Response (400/403/426).

    ``deflate=True`` accepts permessage-deflate with default :class:`DeflateOptions`.
    """
    head = getattr(request_head, "head", request_head)
    if deflate is True:
        deflate = DeflateOptions()
    try:
        result = check_handshake(head.headers, head.method, select_subprotocol=select_subprotocol,
                                 check_origin=check_origin, deflate=deflate or None)
    except HandshakeError as e:
        return _error_response(e)

    async def upgrade(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                      leftover: bytes) -> None:
        conn = WebSocketConnection(result.deflate, limits)
        await serve_websocket(reader, writer, leftover, conn, handler, ping_interval=ping_interval,
                              ping_timeout=ping_timeout, close_timeout=close_timeout,
                              request=request_head, subprotocol=result.subprotocol)

    return Response(status=101, headers=list(result.headers), upgrade=upgrade)
