"""asyncio transport: the one place that owns sockets.

One task per connection drives a sans-I/O :class:`~ironflow_pkg.http11.RequestParser`, reads the
body, calls the application's handler and writes its :class:`Response` (fixed body, chunked
stream, or a protocol upgrade hand-off). Requests on one connection are handled one at a time,
so pipelined requests are answered in order. Timers live here only: idle keep-alive, head-read
(slowloris) and body-read timeouts.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any

from . import http11
from .http11 import HttpError, Limits, RequestParser

log = logging.getLogger("ironflow.http")

#: Bytes per socket read: large enough for a typical request and its body in one call.
READ_SIZE = 65536
#: Stop reading ahead (pipelined data) while a handler runs once this much is buffered.
MAX_READ_AHEAD = 1024 * 1024


@dataclass(frozen=True)
class TransportLimits:
    """Connection-level limits (the parser's own limits are in :class:`http11.Limits`)."""

    parser: Limits = field(default_factory=Limits)
    #: Idle keep-alive connections are closed after this (spec README §6.3: 120 s).
    idle_timeout: float = 120.0
    #: A request head must arrive completely within this once its first byte arrived; the
    #: slowloris defence.
    head_timeout: float = 10.0
    #: Longest silence allowed while a request body is being received.
    body_timeout: float = 30.0
    #: Concurrent connections; the next one is answered 503 and closed.
    max_connections: int = 2048
    #: In-flight requests get this long to finish on shutdown (features.md §17: 10 s).
    shutdown_grace: float = 10.0
    #: A peer that reads nothing for this long while we write is dropped (a stalled reader must
    #: not pin a connection and its buffers forever).
    write_timeout: float = 60.0
    #: After an error response, unread request bytes are drained this long before closing, so
    #: the kernel does not reset the connection and destroy the response (lingering close).
    linger: float = 1.0


class HttpRequest:
    """What a handler sees: the parsed head, the complete body and connection facts."""

    __slots__ = ("head", "body", "peer", "request_id", "started", "state", "_conn")

    def __init__(self, head: http11.Request, body: bytes, peer: Any, conn: _Connection) -> None:
        self.head = head
        self.body = body
        self.peer = peer
        self.request_id = ""
        self.started = time.perf_counter()
        #: Free-form per-request state for the application (auth principal, route, env...).
        self.state: dict[str, Any] = {}
        self._conn = conn

    @property
    def method(self) -> str:
        return self.head.method

    @property
    def path(self) -> str:
        return self.head.path

    @property
    def query(self) -> str:
        return self.head.query

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.head.header(name, default)

    def disconnected(self) -> asyncio.Event:
        """An event set when the peer goes away while this request is being handled.

        Watching costs a read task, so it starts only when a handler asks (long polls, streams).
        """
        return self._conn.watch_disconnect()


@dataclass
class Response:
    """A response. ``body`` is sent with Content-Length; ``stream`` (an async iterator of bytes)
    is sent chunked and flushed per item; ``upgrade`` takes over the socket after the head of a
    101 response is written."""

    status: int = 200
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    stream: AsyncIterator[bytes] | None = None
    upgrade: Callable[[asyncio.StreamReader, asyncio.StreamWriter, bytes], Awaitable[None]] | None = None
    close: bool = False


Handler = Callable[[HttpRequest], Awaitable[Response]]
#: Renders a transport-level error (malformed request, limits) as a Response.
ErrorRenderer = Callable[[int, str], Response]

_NO_BODY_STATUS = frozenset({204, 304})


class _DateCache:
    """RFC 9110 §6.6.1: an origin server with a clock sends Date. Formatting once a second."""

    def __init__(self) -> None:
        self._sec = -1
        self._value = ""

    def get(self) -> str:
        now = int(time.time())
        if now != self._sec:
            self._sec = now
            self._value = formatdate(now, usegmt=True)
        return self._value


_date = _DateCache()


class HttpServer:
    """Accepts connections and serves them with ``handler``."""

    def __init__(self, handler: Handler, render_error: ErrorRenderer,
                 limits: TransportLimits | None = None,
                 on_connections_change: Callable[[int], None] | None = None) -> None:
        self.handler = handler
        self.render_error = render_error
        self.limits = limits or TransportLimits()
        self._server: asyncio.base_events.Server | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._conns: set[_Connection] = set()
        self._closing = False
        self._on_conn_change = on_connections_change

    @property
    def connections(self) -> int:
        return len(self._conns)

    @property
    def closing(self) -> bool:
        return self._closing

    async def start(self, host: str, port: int) -> tuple[str, int]:
        """Bind and listen. Raises OSError (e.g. address in use) for the caller to report."""
        self._server = await asyncio.start_server(
            self._accept, host, port, reuse_address=True, backlog=1024, limit=READ_SIZE)
        self._sweeper = asyncio.create_task(self._sweep())
        sock = self._server.sockets[0]
        name = sock.getsockname()
        return name[0], name[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:  # not a TCP socket (tests over unix sockets)
                pass
        conn = _Connection(self, reader, writer)
        if self._closing or len(self._conns) >= self.limits.max_connections:
            await conn.reject(503, "server busy" if not self._closing else "server shutting down")
            return
        self._conns.add(conn)
        if self._on_conn_change:
            self._on_conn_change(len(self._conns))
        try:
            await conn.run()
        finally:
            self._conns.discard(conn)
            if self._on_conn_change:
                self._on_conn_change(len(self._conns))

    async def _sweep(self) -> None:
        """Enforce read deadlines (idle, head, body) for every connection a few times a second."""
        lim = self.limits
        period = max(0.02, min(0.25, lim.idle_timeout / 4, lim.head_timeout / 4, lim.body_timeout / 4))
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            for c in list(self._conns):
                c.expire(now)

    async def shutdown(self, grace: float | None = None) -> None:
        """Stop accepting, close idle connections, give in-flight requests ``grace`` seconds,
        then cancel what is left."""
        self._closing = True
        if self._server is not None:
            self._server.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
        for c in list(self._conns):
            c.close_if_idle()
        grace = self.limits.shutdown_grace if grace is None else grace
        deadline = time.monotonic() + grace
        while self._conns and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for c in list(self._conns):
            c.abort()
        # Give aborted connection tasks one turn to run their clean-up.
        for _ in range(20):
            if not self._conns:
                break
            await asyncio.sleep(0.01)
        if self._server is not None:
            try:
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
            except (asyncio.TimeoutError, RuntimeError):
                pass


class _Connection:
    """One client connection: read, parse, dispatch, write; repeat while keep-alive holds."""

    def __init__(self, server: HttpServer, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
        self.server = server
        self.reader = reader
        self.writer = writer
        self.parser = RequestParser(server.limits.parser)
        self.peer = writer.get_extra_info("peername")
        self.idle = True
        self._task = asyncio.current_task()
        self._watch: asyncio.Task[None] | None = None
        self._gone: asyncio.Event | None = None
        #: Monotonic deadline of the read in progress (None when not reading). The server's
        #: sweeper cancels reads past it: no per-read timer or wait_for task on the hot path.
        self.read_deadline: float | None = None
        self.timed_out = False
        #: Set once a 101 head is written: the protocol that takes the socket over.
        self._upgrade: Callable[[asyncio.StreamReader, asyncio.StreamWriter, bytes], Awaitable[None]] | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    async def reject(self, status: int, message: str) -> None:
        resp = self.server.render_error(status, message)
        try:
            self.writer.write(self._head_bytes(resp, None, len(resp.body), close=True) + resp.body)
            await asyncio.wait_for(self.writer.drain(), 2.0)
        except (OSError, asyncio.TimeoutError):
            pass
        await self._close()

    def expire(self, now: float) -> None:
        """Called by the sweeper: cancel a read that is past its deadline."""
        d = self.read_deadline
        if d is not None and now >= d and not self.timed_out and self._task is not None:
            self.timed_out = True
            self._task.cancel()

    def close_if_idle(self) -> None:
        if self.idle and self._task is not None:
            self._task.cancel()

    def abort(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _close(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
        w = self.writer
        try:
            if w.can_write_eof() and not w.is_closing():
                w.write_eof()
        except OSError:
            pass
        w.close()
        try:
            await asyncio.wait_for(w.wait_closed(), 2.0)
        except (OSError, asyncio.TimeoutError, asyncio.CancelledError):
            pass

    async def run(self) -> None:
        try:
            await self._serve()
        except asyncio.CancelledError:
            pass
        except (ConnectionError, OSError):
            pass  # the peer went away: a normal end for a connection
        except Exception:  # pragma: no cover - a transport bug must not kill the server
            log.exception("connection handler crashed")
        finally:
            try:
                await self._close()
            except asyncio.CancelledError:
                pass

    # -- reading -------------------------------------------------------------------------------

    async def _read_more(self, timeout: float) -> bool:
        """Feed the parser one read. False when the peer closed. TimeoutError past ``timeout``."""
        self.read_deadline = time.monotonic() + timeout
        try:
            data = await self.reader.read(READ_SIZE)
        except asyncio.CancelledError:
            if not self.timed_out:
                raise
            self.timed_out = False
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            raise asyncio.TimeoutError from None
        finally:
            self.read_deadline = None
        if not data:
            self.parser.feed_eof()
            return False
        self.parser.feed(data)
        return True

    async def _next_event(self, timeout: float, idle_timeout: float | None = None) -> Any:
        """Next parser event, reading as needed.

        ``idle_timeout`` (when given) applies while nothing of the next message has arrived;
        from the first byte on, the whole phase must complete within ``timeout`` seconds.
        """
        p = self.parser
        deadline: float | None = None
        while True:
            ev = p.next_event()
            if ev is not http11.NEED_DATA:
                return ev
            if idle_timeout is not None and p.buffered == 0 and deadline is None:
                await self._read_more(idle_timeout)
                continue
            if deadline is None:
                deadline = time.monotonic() + timeout
            left = deadline - time.monotonic()
            if left <= 0:
                raise asyncio.TimeoutError
            await self._read_more(left)

    def watch_disconnect(self) -> asyncio.Event:
        if self._gone is None:
            self._gone = asyncio.Event()
            self._watch = asyncio.create_task(self._watch_eof(self._gone))
        return self._gone

    async def _watch_eof(self, gone: asyncio.Event) -> None:
        try:
            while self.parser.buffered < MAX_READ_AHEAD:
                data = await self.reader.read(READ_SIZE)
                if not data:
                    self.parser.feed_eof()
                    gone.set()
                    return
                self.parser.feed(data)
        except (OSError, ConnectionError):
            gone.set()

    async def _stop_watch(self) -> None:
        watch, self._watch = self._watch, None
        self._gone = None
        if watch is not None:
            watch.cancel()
            # Wait for the cancelled read to unwind before this task reads again: a StreamReader
            # allows one waiting reader at a time ("read() called while another coroutine is
            # already waiting"). On 3.11 wait_for's extra task hid the race; 3.12+ reads inline.
            await asyncio.wait([watch])

    # -- the request loop ----------------------------------------------------------------------

    async def _serve(self) -> None:
        lim = self.server.limits
        parser = self.parser
        while True:
            self.idle = True
            if self.server.closing and parser.buffered == 0:
                return
            try:
                # The head deadline starts with the message's first byte: a slow trickle of
                # header bytes is cut off (slowloris); an idle keep-alive closes quietly.
                head = await self._next_event(lim.head_timeout, lim.idle_timeout)
                if head is http11.CLOSED:
                    return
            except asyncio.TimeoutError:
                if parser.buffered:
                    await self._fail(HttpError(408, "request head timed out"))
                return
            except HttpError as e:
                await self._fail(e)
                return
            self.idle = False
            if isinstance(head, http11.H2Preface):
                # spec README §4: no HTTP/2; tell an h2c client to use HTTP/1.1 and close.
                self.writer.write(http11.H2_GOAWAY)
                await self.writer.drain()
                return
            if not isinstance(head, http11.Request):  # pragma: no cover - parser contract
                return
            try:
                body = await self._read_body(head)
            except asyncio.TimeoutError:
                await self._fail(HttpError(408, "request body timed out"))
                return
            except HttpError as e:
                await self._fail(e)
                return
            req = HttpRequest(head, body, self.peer, self)
            try:
                resp = await self.server.handler(req)
            except Exception:  # the app renders its own errors; this is a last resort
                log.exception("unhandled error in request handler")
                resp = self.server.render_error(500, "internal error")
            # A disconnect watch keeps running while the response (a stream) is written, and
            # is finished before anyone else reads: the upgrade hand-off or the next request.
            try:
                if resp.upgrade is not None:
                    await self._stop_watch()
                keep = await self._write(req, resp)
            finally:
                await self._stop_watch()
            upgrade, self._upgrade = self._upgrade, None
            if upgrade is not None:
                # The 101 head is out and the socket belongs to the new protocol. Nothing of the
                # request stays referenced while it runs (a WebSocket may stay open for hours).
                del req, resp, head, body
                await upgrade(self.reader, self.writer, parser.take_trailing_data())
                return
            if not keep:
                return
            parser.start_next_cycle()

    async def _read_body(self, head: http11.Request) -> bytes:
        lim = self.server.limits
        if head.expect_continue:
            # RFC 9110 §10.1.1: tell the client to send the body it announced. A body too large
            # for us was already refused by the parser (413) before this point.
            self.writer.write(http11.CONTINUE_100)
        parts: list[bytes] = []
        while True:
            ev = await self._next_event(lim.body_timeout)
            if isinstance(ev, http11.Data):
                parts.append(ev.data)
            elif isinstance(ev, http11.EndOfMessage):
                break
            else:  # pragma: no cover - parser contract
                raise HttpError(400, "unexpected parser state")
        if not parts:
            return b""
        return parts[0] if len(parts) == 1 else b"".join(parts)

    async def _fail(self, err: HttpError) -> None:
        if err.status is not None:
            resp = self.server.render_error(err.status, err.message)
            try:
                self.writer.write(self._head_bytes(resp, None, len(resp.body), close=True) + resp.body)
                await self._drain()
                if self.writer.can_write_eof():
                    self.writer.write_eof()
                await self._linger()
            except (OSError, ConnectionError, asyncio.TimeoutError):
                pass

    async def _linger(self) -> None:
        """Discard what the peer still sends, briefly, so our answer is not lost to a reset."""
        deadline = time.monotonic() + self.server.limits.linger
        budget = 1024 * 1024
        while budget > 0:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            data = await asyncio.wait_for(self.reader.read(READ_SIZE), left)
            if not data:
                return
            budget -= len(data)

    # -- writing -------------------------------------------------------------------------------

    def _head_bytes(self, resp: Response, req: http11.Request | None, length: int | None,
                    close: bool) -> bytes:
        headers = [("Date", _date.get())]
        headers.extend(resp.headers)
        if length is not None:
            headers.append(("Content-Length", str(length)))
        elif resp.status not in _NO_BODY_STATUS and resp.status >= 200 and req is not None \
                and req.version == "1.1":
            headers.append(("Transfer-Encoding", "chunked"))
        if close:
            headers.append(("Connection", "close"))
        elif req is not None and req.version == "1.0":
            headers.append(("Connection", "keep-alive"))
        return http11.response_head(resp.status, headers)

    async def _drain(self) -> None:
        # write() already sent what the socket took; only a backlog needs waiting for (with a
        # timeout, so a peer that stops reading cannot pin the connection).
        transport = self.writer.transport
        if transport.get_write_buffer_size() == 0 and not transport.is_closing():
            return
        await asyncio.wait_for(self.writer.drain(), self.server.limits.write_timeout)

    async def _write(self, req: HttpRequest, resp: Response) -> bool:
        """Write ``resp``; return whether the connection stays open for another request."""
        try:
            return await self._write_checked(req, resp)
        except asyncio.TimeoutError:
            return False  # the peer stopped reading
        except http11.InvalidHeader:
            # A handler produced a header that would break framing (CR/LF injection). Heads are
            # built before any byte of the response is written, so a clean 500 is still possible.
            log.error("invalid response header from handler", exc_info=True)
            if resp.stream is not None:
                await _aclose(resp.stream)
            err = self.server.render_error(500, "internal error")
            err.close = True
            try:
                return await self._write_checked(req, err)
            except (asyncio.TimeoutError, http11.InvalidHeader):
                return False

    async def _write_checked(self, req: HttpRequest, resp: Response) -> bool:
        head = req.head
        w = self.writer
        keep = head.keep_alive and not resp.close and not self.server.closing
        if resp.upgrade is not None:
            w.write(self._head_bytes(resp, head, None, close=False))
            await self._drain()
            self.idle = False
            self._upgrade = resp.upgrade  # run by _serve once this request is let go
            return False
        no_body = resp.status in _NO_BODY_STATUS or resp.status < 200
        if resp.stream is None or no_body:
            if resp.stream is not None:
                await _aclose(resp.stream)
            body = b"" if no_body else resp.body
            length = None if no_body else len(body)
            data = self._head_bytes(resp, head, length, close=not keep)
            if head.method != "HEAD":
                data += body
            w.write(data)
            await self._drain()
            return keep
        # Streaming: chunked for HTTP/1.1; HTTP/1.0 has no chunking, so the body ends at close.
        chunked = head.version == "1.1"
        if not chunked:
            keep = False
        w.write(self._head_bytes(resp, head, None, close=not keep))
        if head.method == "HEAD":
            await _aclose(resp.stream)
            await self._drain()
            return keep
        stream = resp.stream
        try:
            async for piece in stream:
                if piece:
                    w.write(http11.chunk(piece) if chunked else piece)
                    await self._drain()  # flushed per message (Connect streams, long polls)
            if chunked:
                w.write(http11.LAST_CHUNK)
            await self._drain()
        except (OSError, ConnectionError):
            await _aclose(stream)
            return False
        except Exception:
            # The body is already under way: the only honest signal left is an abrupt close.
            log.exception("stream producer failed")
            await _aclose(stream)
            return False
        return keep


async def _aclose(stream: Any) -> None:
    close = getattr(stream, "aclose", None)
    if close is not None:
        try:
            await close()
        except Exception:  # pragma: no cover - a producer failing at close is logged only
            log.exception("stream close failed")
