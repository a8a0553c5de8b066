"""asyncio layer for WebSockets: drives a sans-I/O :class:`~ironflow_pkg.websocket.WebSocketConnection`
over the socket the HTTP server hands over after a ``101``.

* :func:`websocket_response` validates the upgrade request and returns the ``101``
  :class:`~ironflow_pkg.server.Response` whose ``upgrade`` callable runs :func:`serve_websocket`
  (or a JSON error response: 400, 403, 426).
* :func:`serve_websocket` runs one connection in the connection's own task: it makes the
  :class:`WebSocketSession` the transport's protocol and awaits the application ``handler``
  (``recv`` / ``send`` / ``post`` / ``close``).

Memory per idle connection is a design goal (README: 10 KiB), so an open socket owns no task,
queue, event or timer of its own:

* Reading is callback driven (``data_received`` feeds the core): pings are answered, pongs and
  close frames seen at once, even while the handler is busy. ``recv`` awaits one future made only
  while it waits. Undelivered messages beyond :data:`MAX_QUEUE` pause reading (TCP pushes back).
* Writing goes straight to the transport. Only while the transport is above its high-water mark
  do frames wait in a deque (made on demand, dropped when empty), with a count per tag so the
  application can apply backpressure per subscription (websocket.md §2.6); ``resume_writing``
  flushes it.
* Timers (habit 8) live in one :class:`_Sweeper` per event loop that checks every session a few
  times per ping interval: ping an idle peer, drop one that did not answer within the pong
  timeout (websocket.md §1.2), end a closing handshake the peer does not finish (RFC 6455
  §7.1.1), drop a peer that reads nothing while we have data for it (write timeout).

A protocol error never escapes: the connection is closed with the core's close code.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from .errors import dumps, from_status
from .server import Response
from .websocket import (BinaryMessage, CloseCode, CloseReceived, DeflateOptions, DeflateParams,
                        HandshakeError, ProtocolFailure, TextMessage, WebSocketConnection,
                        WsLimits, check_handshake)

__all__ = ["WebSocketSession", "ConnectionClosed", "serve_websocket", "websocket_response",
           "PING_INTERVAL", "PING_TIMEOUT", "CLOSE_TIMEOUT", "WRITE_TIMEOUT", "MAX_QUEUE",
           "MAX_BACKLOG_BYTES"]

log = logging.getLogger("ironflow.ws")

#: Idle time before we ping a client (ironflow-py pings every 20 s; websocket.md §1.2 asks ≤30 s).
PING_INTERVAL = 20.0
#: A pinged client that sends nothing back within this is considered dead.
PING_TIMEOUT = 20.0
#: After our close frame, how long we wait for the peer's before dropping TCP (§7.1.1).
CLOSE_TIMEOUT = 5.0
#: A peer that reads nothing for this long while we have data for it is dropped (slow consumer).
WRITE_TIMEOUT = 30.0
#: Bytes of frames one connection may have waiting for a socket that reads too slowly; beyond it
#: the connection closes 1011 "slow consumer". Frame counts alone do not bound memory when frames
#: are large (websocket.md §2.6 counts frames; 10,000 frames of 1 MiB would be 10 GiB).
MAX_BACKLOG_BYTES = 32 * 1024 * 1024
#: Messages received but not yet taken by ``recv``; beyond it we stop reading the socket, so
#: TCP flow control pushes back on the client instead of our memory growing.
MAX_QUEUE = 32
#: The sweeper wakes this many times per shortest timeout (the timing precision), at least
#: every :data:`SWEEP_MAX` seconds and at most every :data:`SWEEP_MIN`.
SWEEP_DIVISOR = 4
SWEEP_MAX = 1.0
SWEEP_MIN = 0.005

_now = time.monotonic  # the event loop's clock (BaseEventLoop.time)


class ConnectionClosed(Exception):
    """``send`` on a closed WebSocket. ``code`` is the close code seen (1006 for a dropped TCP)."""

    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(f"WebSocket closed ({code} {reason})".strip())
        self.code = code
        self.reason = reason


class _Timing:
    """The timeouts and the backlog limit of a route, shared by its connections (one object,
    not five slots)."""

    __slots__ = ("ping_interval", "ping_timeout", "close_timeout", "write_timeout", "sweep",
                 "max_backlog")

    def __init__(self, ping_interval: float | None, ping_timeout: float, close_timeout: float,
                 write_timeout: float, max_backlog: int = MAX_BACKLOG_BYTES) -> None:
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.close_timeout = close_timeout
        self.write_timeout = write_timeout
        self.max_backlog = max_backlog
        shortest = min(t for t in (ping_interval, ping_timeout, close_timeout, write_timeout)
                       if t is not None)
        self.sweep = max(SWEEP_MIN, min(SWEEP_MAX, shortest / SWEEP_DIVISOR))


_timings: dict[tuple[Any, ...], _Timing] = {}


def _timing(ping_interval: float | None, ping_timeout: float, close_timeout: float,
            write_timeout: float, max_backlog: int = MAX_BACKLOG_BYTES) -> _Timing:
    key = (ping_interval, ping_timeout, close_timeout, write_timeout, max_backlog)
    t = _timings.get(key)
    if t is None:
        if len(_timings) > 64:  # callers use a handful of constant sets; never grow unbounded
            _timings.clear()
        t = _timings[key] = _Timing(*key)
    return t


class _Sweeper:
    """The timers of every WebSocket on one event loop: one task, alive while sockets are open."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.sessions: set[WebSocketSession] = set()
        self.period = SWEEP_MAX
        self.task: asyncio.Task[None] | None = None

    def add(self, s: WebSocketSession) -> None:
        self.sessions.add(s)
        self.period = min(self.period, s._timing.sweep)
        if self.task is None:
            self.task = self.loop.create_task(self._run())

    def discard(self, s: WebSocketSession) -> None:
        self.sessions.discard(s)
        if not self.sessions:
            # The last socket closed: stop now (no task outlives the connections) and let the
            # next socket start a fresh sweeper.
            self._retire()
            if self.task is not None and self.task is not asyncio.current_task():
                self.task.cancel()
            self.task = None

    def _drop(self, s: WebSocketSession) -> None:
        try:
            s._close_transport(abort=True)
        except Exception:  # pragma: no cover - the transport itself is broken
            log.exception("aborting a websocket failed")
        if s in self.sessions and not s._over:
            self.sessions.discard(s)  # do not retry (and log) it on every sweep

    def _retire(self) -> None:
        if _sweepers.get(self.loop) is self:
            del _sweepers[self.loop]

    async def _run(self) -> None:
        try:
            while self.sessions:
                await asyncio.sleep(self.period)
                now = _now()
                for s in list(self.sessions):
                    try:
                        s._tick(now)
                    except Exception:
                        # A bug in one session's check must not end the timers of every other
                        # socket: log it and drop that connection (its timers cannot be trusted).
                        log.exception("websocket timer check failed; dropping the connection")
                        self._drop(s)
        finally:
            self._retire()


_sweepers: dict[asyncio.AbstractEventLoop, _Sweeper] = {}


def _sweeper() -> _Sweeper:
    loop = asyncio.get_running_loop()
    sw = _sweepers.get(loop)
    if sw is None:
        sw = _sweepers[loop] = _Sweeper(loop)
    return sw


class WebSocketSession(asyncio.Protocol):
    """What a WebSocket handler sees, and the transport's protocol after the upgrade.

    One task may ``recv`` while others ``send``/``post``. ``post`` is synchronous (for fan-out
    callbacks); ``queued(tag)`` counts the frames of that tag still waiting for the socket, and
    ``on_drain`` (if set) is called after waiting frames were handed to the socket.
    """

    __slots__ = ("conn", "subprotocol", "close_code", "close_reason", "on_drain", "_timing",
                 "_transport", "_stream_protocol", "_sweeper", "_inbox", "_waiter", "_backlog",
                 "_backlog_bytes", "_counts", "_close_frame", "_paused", "_drained", "_end", "_over",
                 "_reading_paused", "_last_rx", "_ping_sent", "_close_at", "_paused_at")

    def __init__(self, conn: WebSocketConnection, timing: _Timing,
                 subprotocol: str | None = None) -> None:
        self.conn = conn
        self.subprotocol = subprotocol
        #: Close code of the connection once known (peer's code, ours on failure, 1006 on drop).
        self.close_code: int | None = None
        self.close_reason = ""
        #: Called (no arguments) after frames waiting in the backlog went to the socket.
        self.on_drain: Callable[[], None] | None = None
        self._timing = timing
        self._transport: Any = None
        self._stream_protocol: Any = None
        self._sweeper: _Sweeper | None = None
        self._inbox: deque[str | bytes] | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._backlog: deque[tuple[str, bytes]] | None = None
        self._backlog_bytes = 0
        self._counts: dict[str, int] | None = None
        self._close_frame: bytes | None = None  # our close, sent once the backlog is out
        self._paused = False  # the transport is above its high-water mark
        self._drained: asyncio.Future[None] | None = None
        self._end: asyncio.Future[None] | None = None
        self._over = False  # the TCP connection is gone
        self._reading_paused = False
        self._last_rx = 0.0
        self._ping_sent = 0.0
        self._close_at = 0.0
        self._paused_at = 0.0

    # -- public API --------------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """True once a close frame was sent or received or the TCP connection ended."""
        return self._over or self.conn.close_sent or self.conn.closed

    async def recv(self) -> str | bytes | None:
        """The next message (str for text, bytes for binary), or None once the connection is
        :attr:`closed` (also as soon as our close frame was sent: nothing can be answered any
        more) and the messages received before are taken."""
        while True:
            inbox = self._inbox
            if inbox:
                msg = inbox.popleft()
                if not inbox:
                    self._inbox = None
                if self._reading_paused and len(inbox) < MAX_QUEUE // 2 and not self._over:
                    self._reading_paused = False
                    self._transport.resume_reading()
                    # The peer's frames (its pongs too) waited for us: the pause is not its
                    # silence. Its keep-alive clock starts again now.
                    now = _now()
                    self._last_rx = now
                    if self._ping_sent:
                        self._ping_sent = now
                return msg
            if self._over or self.conn.closed or self.conn.close_sent:
                return None
            self._waiter = w = asyncio.get_running_loop().create_future()
            try:
                await w
            finally:
                self._waiter = None

    def post(self, data: str | bytes, tag: str = "") -> bool:
        """Queue one message (text for ``str``) without waiting; False when the connection is
        closing or closed (the message is dropped). ``tag`` names whose frame it is for
        :meth:`queued`."""
        if self._over or self.conn.close_sent:
            return False
        conn = self.conn
        frame = conn.send_text(data) if isinstance(data, str) else conn.send_binary(data)
        bl = self._backlog
        if bl is None and not self._paused:
            self._transport.write(frame)
            return True
        if self._backlog_bytes + len(frame) > self._timing.max_backlog:
            self.start_close(CloseCode.INTERNAL_ERROR, "slow consumer", discard=True)
            return False
        if bl is None:
            bl = self._backlog = deque()
        bl.append((tag, frame))
        self._backlog_bytes += len(frame)
        if tag:
            counts = self._counts
            if counts is None:
                counts = self._counts = {}
            counts[tag] = counts.get(tag, 0) + 1
        return True

    def queued(self, tag: str) -> int:
        """Frames of ``tag`` waiting for the socket (not yet handed to the transport)."""
        counts = self._counts
        return counts.get(tag, 0) if counts else 0

    async def send(self, data: str | bytes) -> None:
        """Send one message (text for ``str``, binary for bytes) and wait until the socket took
        it (flow control). ConnectionClosed when closed."""
        if not self.post(data):
            raise ConnectionClosed(self.close_code or CloseCode.ABNORMAL, self.close_reason)
        if self._backlog is not None or self._paused:
            await self._wait_drained()

    def start_close(self, code: int = CloseCode.NORMAL, reason: str = "", *,
                    discard: bool = False) -> None:
        """Begin the closing handshake without waiting: our close frame goes out after the
        frames already queued (or at once, dropping them, with ``discard``). Once it went to
        the socket the peer has ``close_timeout`` seconds to answer before TCP is closed; while
        it waits behind queued frames, the write timeout drops a peer that reads nothing."""
        if self._over or self.conn.close_sent:
            return
        if self.close_code is None:
            self.close_code, self.close_reason = code, reason
        frame = self.conn.send_close(code, reason)
        if discard:
            self._drop_backlog()
        if self._backlog is not None:
            self._close_frame = frame  # _flush writes it and starts the close timeout
        else:
            self._transport.write(frame)
            self._close_at = _now() + self._timing.close_timeout
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)  # recv() returns None: the handler can let go of its resources

    async def close(self, code: int = CloseCode.NORMAL, reason: str = "") -> None:
        """Closing handshake (§7.1.2): send our close (after the frames already queued), wait
        for the peer's, then close TCP; returns once the TCP connection is gone. Idempotent.

        The sweeper bounds the wait: the close timeout from when our close frame reached the
        socket, the write timeout while it waits behind frames a peer does not read."""
        self.start_close(code, reason)
        if not self._over:
            end = self._end
            if end is None or end.done():
                end = self._end = asyncio.get_running_loop().create_future()
            await end  # connection_lost resolves it

    # -- asyncio.Protocol ----------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        self._last_rx = _now()
        self._ping_sent = 0.0  # any frame proves the peer alive
        self.conn.receive_data(data)
        self._process()

    def eof_received(self) -> bool | None:
        self.conn.receive_data(b"")
        self._process()
        return None  # let the transport close itself

    def connection_lost(self, exc: Exception | None) -> None:
        self._over = True
        if self.close_code is None:
            self.close_code = CloseCode.ABNORMAL
        self._backlog = self._counts = None
        self._close_frame = None
        self._paused = False
        if self._sweeper is not None:
            self._sweeper.discard(self)
            self._sweeper = None
        for fut in (self._waiter, self._drained, self._end):
            if fut is not None and not fut.done():
                fut.set_result(None)
        self._drained = self._end = None
        # The HTTP server's stream objects still wait for this (StreamWriter.wait_closed).
        sp, self._stream_protocol = self._stream_protocol, None
        if sp is not None:
            sp.connection_lost(exc)

    def pause_writing(self) -> None:
        self._paused = True
        self._paused_at = _now()

    def resume_writing(self) -> None:
        self._paused = False
        self._flush()

    # -- internals -----------------------------------------------------------------------------

    def _attach(self, transport: Any, leftover: bytes) -> None:
        """Become the transport's protocol. ``leftover`` holds every byte that arrived after the
        HTTP head and was not parsed yet."""
        self._stream_protocol = transport.get_protocol()
        self._transport = transport
        if transport.is_closing():
            self._over = True
            self.close_code = CloseCode.ABNORMAL
            return
        transport.set_protocol(self)
        self._last_rx = _now()
        self._sweeper = _sweeper()
        self._sweeper.add(self)
        try:
            if not transport.is_reading():  # the stream protocol may have paused it
                transport.resume_reading()
        except (AttributeError, RuntimeError):  # pragma: no cover - non-socket transports
            pass
        if leftover:
            self.data_received(leftover)

    def _process(self) -> None:
        """Handle the events buffered so far."""
        conn = self.conn
        over = False
        got = False
        for ev in conn.events():
            t = type(ev)
            if t is TextMessage or t is BinaryMessage:
                inbox = self._inbox
                if inbox is None:
                    inbox = self._inbox = deque()
                inbox.append(ev.data)  # type: ignore[union-attr]
                got = True
            elif t is CloseReceived:
                if self.close_code is None:
                    self.close_code, self.close_reason = ev.code, ev.reason  # type: ignore[union-attr]
                over = True
            elif t is ProtocolFailure:
                log.info("websocket protocol error: %s %s", ev.code, ev.reason)  # type: ignore[union-attr]
                self.close_code, self.close_reason = ev.code, ev.reason  # type: ignore[union-attr]
                over = True
            # Ping and Pong are informational: the core queued the pong; liveness is _last_rx.
        out = conn.data_to_send()
        if over or conn.closed:
            # The handshake is over (or failed): no data frame may follow a close. Our own close,
            # if it still waited behind queued frames, goes out now.
            self._drop_backlog()
            if self._close_frame is not None:
                out = self._close_frame + out
                self._close_frame = None
        if out and not self._over:
            self._transport.write(out)  # control frames do not wait behind the backlog
        if over or conn.closed:
            self._close_transport()  # the server closes TCP first (§7.1.1)
        elif self._inbox is not None and len(self._inbox) >= MAX_QUEUE and not self._reading_paused:
            self._reading_paused = True
            self._transport.pause_reading()
        if got or over or conn.closed:
            w = self._waiter
            if w is not None and not w.done():
                w.set_result(None)

    def _flush(self) -> None:
        """Hand waiting frames to the transport until it is full again."""
        bl = self._backlog
        tagged = False
        if bl is not None:
            t = self._transport
            counts = self._counts
            while bl and not self._paused:
                tag, frame = bl.popleft()
                if tag and counts is not None:
                    n = counts[tag] - 1
                    if n:
                        counts[tag] = n
                    else:
                        del counts[tag]
                    tagged = True
                self._backlog_bytes -= len(frame)
                t.write(frame)  # may call pause_writing() at once
            if not bl:
                self._backlog = None
                if not counts:
                    self._counts = None
                if self._close_frame is not None:
                    t.write(self._close_frame)
                    self._close_frame = None
                    # §7.1.1: the peer's time to answer starts now that it can read our close.
                    self._close_at = _now() + self._timing.close_timeout
        if self._backlog is None and not self._paused:
            d = self._drained
            if d is not None:
                self._drained = None
                if not d.done():
                    d.set_result(None)
        if tagged and self.on_drain is not None:
            self.on_drain()

    async def _wait_drained(self) -> None:
        while (self._backlog is not None or self._paused) and not self._over:
            d = self._drained
            if d is None or d.done():
                d = self._drained = asyncio.get_running_loop().create_future()
            await d
        if self._over:
            raise ConnectionClosed(self.close_code or CloseCode.ABNORMAL, self.close_reason)

    def _drop_backlog(self) -> None:
        self._backlog = None
        self._backlog_bytes = 0
        self._counts = None

    def _close_transport(self, abort: bool = False) -> None:
        """Close TCP: gracefully (what the transport buffered is flushed first) or, with
        ``abort``, at once, also when a graceful close already started and waits on a peer that
        reads nothing. A graceful close gets a deadline: the sweeper aborts it after the close
        timeout (a peer that stopped reading would otherwise hold the socket forever)."""
        t = self._transport
        if self._over or t is None:
            return
        if abort:
            t.abort()  # connection_lost follows on the next loop turn
            return
        if not t.is_closing():
            t.close()  # flushes what is buffered, then closes
        if not self._close_at:
            self._close_at = _now() + self._timing.close_timeout

    def _tick(self, now: float) -> None:
        """The sweeper's check (a few times per ping interval)."""
        if self._over:
            return
        timing = self._timing
        if self._close_at and now >= self._close_at:
            # §7.1.1: the peer did not finish the closing handshake in time. Close TCP; if a
            # graceful close already runs (it waits until the peer reads what is buffered) or
            # data is still buffered, drop it: a peer that reads nothing never lets it finish.
            t = self._transport
            self._close_transport(abort=t.is_closing() or bool(t.get_write_buffer_size()))
            return
        if self._paused and now - self._paused_at >= timing.write_timeout:
            log.info("websocket peer reads nothing; dropping it")
            self.close_code = self.close_code or CloseCode.ABNORMAL
            self._close_transport(abort=True)
            return
        interval = timing.ping_interval
        if not interval or self.conn.close_sent or self._reading_paused:
            # Reading paused by us (the handler takes no message): the peer's pongs wait
            # unread in the socket, so its silence proves nothing; recv() restarts the clock.
            return
        if self._ping_sent:
            if now - self._ping_sent >= timing.ping_timeout:
                log.info("websocket peer did not answer a ping; closing")
                self.start_close(CloseCode.INTERNAL_ERROR, "ping timeout", discard=True)
                # A dead peer will not answer the close, nor read what is buffered: do not
                # wait for it (a graceful close would wait for the buffer to drain).
                self._close_transport(abort=True)
        elif now - self._last_rx >= interval:
            self._ping_sent = now
            self._transport.write(self.conn.send_ping(os.urandom(4)))


Handler = Callable[[WebSocketSession], Awaitable[None]]


async def serve_websocket(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, leftover: bytes,
                          conn: WebSocketConnection, handler: Handler, *,
                          ping_interval: float | None = PING_INTERVAL,
                          ping_timeout: float = PING_TIMEOUT, close_timeout: float = CLOSE_TIMEOUT,
                          write_timeout: float = WRITE_TIMEOUT, subprotocol: str | None = None,
                          timing: _Timing | None = None,
                          max_backlog_bytes: int = MAX_BACKLOG_BYTES) -> None:
    """Run one WebSocket connection until it is closed, in the calling task. ``leftover`` holds
    bytes that arrived after the HTTP head (the first frames may already be there).
    ``ping_interval=None`` turns the keep-alive off. Never raises for protocol or network errors."""
    if timing is None:
        timing = _timing(ping_interval, ping_timeout, close_timeout, write_timeout,
                         max_backlog_bytes)
    session = WebSocketSession(conn, timing, subprotocol)
    transport = writer.transport
    # From here on the session gets the socket's bytes. What the stream reader buffered before
    # the switch is taken out of it: it saw its last byte (feed_eof), so read() cannot block.
    session._attach(transport, b"")
    reader.feed_eof()
    try:
        pending = leftover + await reader.read()
    except (OSError, ConnectionError):
        pending = leftover
    if pending and not session._over:
        session.data_received(pending)
    del reader, writer, leftover, pending  # nothing of the HTTP side stays referenced here
    try:
        try:
            await handler(session)
        except ConnectionClosed:
            pass
        except asyncio.CancelledError:
            # Server shutdown past its grace period: say so (1001) and go.
            session.start_close(CloseCode.GOING_AWAY, "server shutting down", discard=True)
            raise
        except Exception:
            log.exception("websocket handler failed")
            await session.close(CloseCode.INTERNAL_ERROR, "internal error")
        else:
            await session.close(CloseCode.NORMAL)
    finally:
        session._close_transport(abort=not session.conn.closed and not session.conn.close_sent)


def _error_response(err: HandshakeError) -> Response:
    """The project's JSON error body (``{"error","message","code"}``, as app.error_response)."""
    api = from_status(err.status, err.message)
    if err.status == 426:
        api.code = "failed_precondition"
    headers = [("Content-Type", "application/json; charset=utf-8")] + list(err.headers)
    return Response(status=err.status, headers=headers, body=dumps(api.rest_body()))


class _Upgrade:
    """The 101 response's ``upgrade`` callable: only what the connection needs, nothing of the
    request (the HTTP server keeps this object for as long as the socket is open)."""

    __slots__ = ("handler", "deflate", "limits", "timing", "subprotocol")

    def __init__(self, handler: Handler, deflate: DeflateParams | None, limits: WsLimits | None,
                 timing: _Timing, subprotocol: str | None) -> None:
        self.handler = handler
        self.deflate = deflate
        self.limits = limits
        self.timing = timing
        self.subprotocol = subprotocol

    def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 leftover: bytes) -> Awaitable[None]:
        return serve_websocket(reader, writer, leftover, WebSocketConnection(self.deflate, self.limits),
                               self.handler, subprotocol=self.subprotocol, timing=self.timing)


def websocket_response(request_head: Any, handler: Handler, *,
                       deflate: DeflateOptions | bool | None = None,
                       limits: WsLimits | None = None,
                       select_subprotocol: Callable[[list[str]], str | None] | None = None,
                       check_origin: Callable[[str | None], bool] | None = None,
                       ping_interval: float | None = PING_INTERVAL,
                       ping_timeout: float = PING_TIMEOUT,
                       close_timeout: float = CLOSE_TIMEOUT,
                       write_timeout: float = WRITE_TIMEOUT,
                       max_backlog_bytes: int = MAX_BACKLOG_BYTES) -> Response:
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
    up = _Upgrade(handler, result.deflate, limits,
                  _timing(ping_interval, ping_timeout, close_timeout, write_timeout,
                          max_backlog_bytes),
                  result.subprotocol)
    return Response(status=101, headers=list(result.headers), upgrade=up)
