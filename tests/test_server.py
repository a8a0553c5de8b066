"""The asyncio transport (``ironflow_pkg/server.py``) over real loopback sockets.

Transport-only tests build an :class:`HttpServer` with a tiny handler (:class:`Probe`) on an event
loop running in a background thread; full-app tests use :class:`InProcessServer`. Every socket has
a timeout and every wait is bounded, so a hanging server fails a test instead of the suite.
"""

from __future__ import annotations

import asyncio
import json
import re
import select
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from ironflow_pkg.app import error_response
from ironflow_pkg.errors import from_status
from ironflow_pkg.http11 import H2_GOAWAY, Limits
from ironflow_pkg.server import HttpRequest, HttpServer, Response, TransportLimits

from support import InProcessServer, make_settings, raw_exchange, split_responses

HOST = "127.0.0.1"
#: Default socket timeout: long enough for a loaded CI box, short enough to fail fast.
T = 3.0


# --- harness ----------------------------------------------------------------------------------


def render_error(status: int, message: str) -> Response:
    """The app's transport-error rendering: JSON ``{"error","message","code"}``."""
    return error_response(from_status(status, message))


class LoopThread:
    """An asyncio event loop running in a daemon thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def call(self, coro: Any, timeout: float = 10.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def submit(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def soon(self, fn: Callable[..., Any], *args: Any) -> None:
        self.loop.call_soon_threadsafe(fn, *args)

    def stop(self) -> None:
        async def _cancel_rest() -> None:
            me = asyncio.current_task()
            rest = [t for t in asyncio.all_tasks() if t is not me]
            for t in rest:
                t.cancel()
            if rest:
                await asyncio.wait(rest, timeout=2.0)
            await self.loop.shutdown_asyncgens()

        try:
            self.call(_cancel_rest(), 5.0)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)
            if not self.thread.is_alive():
                self.loop.close()


class Probe:
    """A tiny handler whose routes exercise one transport feature each. Thread-safe flags
    (``threading.Event``) let the test thread observe what happened inside the loop."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()  # set from the test via LoopThread.soon(probe.gate.set)
        self.started = threading.Event()
        self.stream_exit = threading.Event()  # GeneratorExit seen inside a producer
        self.stream_closed = threading.Event()  # the producer's finally ran
        self.gone = threading.Event()  # HttpRequest.disconnected() fired
        self.cancelled = threading.Event()  # a handler was cancelled (shutdown past grace)
        self.finished = threading.Event()
        self.bodies: list[bytes] = []
        self.producer: Any = None  # the last /endless generator

    async def __call__(self, req: HttpRequest) -> Response:
        p = req.path
        if p == "/hello":
            return Response(200, [("Content-Type", "text/plain")], b"hello")
        if p == "/echo":
            self.bodies.append(req.body)
            return Response(200, [("Content-Type", "application/octet-stream"),
                                 ("X-Method", req.method)], req.body)
        if p == "/boom":
            raise RuntimeError("secret-internal-detail /etc/passwd")
        if p == "/slow":
            self.started.set()
            try:
                await asyncio.sleep(float(req.query or "0.5"))
            except asyncio.CancelledError:
                self.cancelled.set()
                raise
            self.finished.set()
            return Response(200, [("Content-Type", "text/plain")], b"slow done")
        if p == "/stream":  # fixed pieces, byte-exact framing
            async def pieces():
                for piece in (b"a", b"bc", b"", b"def", b"x" * 300):
                    yield piece
            return Response(200, [("Content-Type", "text/plain")], stream=pieces())
        if p == "/gated":  # chunk 2 only after the test opens the gate
            async def gated():
                yield b"chunk-1"
                await asyncio.wait_for(self.gate.wait(), 5)
                yield b"chunk-2"
            return Response(200, [("Content-Type", "text/plain")], stream=gated())
        if p == "/endless":
            async def endless():
                try:
                    while True:
                        yield b"x" * 4096
                        await asyncio.sleep(0.005)
                except GeneratorExit:
                    self.stream_exit.set()
                    raise
                finally:
                    self.stream_closed.set()
            self.producer = endless()
            return Response(200, [("Content-Type", "text/plain")], stream=self.producer)
        if p == "/upgrade":
            async def take_over(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                                extra: bytes) -> None:
                writer.write(b"EXTRA[" + extra + b"]")
                await writer.drain()
                while True:
                    data = await asyncio.wait_for(reader.read(1024), 5)
                    if not data:
                        break
                    writer.write(data.upper())
                    await writer.drain()
                    if b"bye" in data:
                        break
            return Response(101, [("Upgrade", "echo"), ("Connection", "Upgrade")],
                            upgrade=take_over)
        if p == "/nodelay":
            # The upgrade hand-off gives the handler the writer: the accepted socket itself.
            async def report(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                             extra: bytes) -> None:
                sock = writer.get_extra_info("socket")
                value = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
                writer.write(b"NODELAY=%d" % (1 if value else 0))
                await writer.drain()
            return Response(101, [("Upgrade", "probe"), ("Connection", "Upgrade")],
                            upgrade=report)
        if p == "/wait-gone":
            gone = req.disconnected()
            self.started.set()
            try:
                await asyncio.wait_for(gone.wait(), 5)
                self.gone.set()
            except asyncio.TimeoutError:
                pass
            return Response(200, [], b"too late")
        if p == "/watch":  # asks for the disconnect watch, then answers (long-poll style)
            req.disconnected()
            await asyncio.sleep(float(req.query or "0"))
            return Response(200, [("Content-Type", "text/plain")], b"watched")
        if p == "/flood":  # writes big pieces as fast as the peer allows
            async def flood():
                try:
                    while True:
                        yield b"x" * (1 << 20)
                finally:
                    self.stream_closed.set()
            return Response(200, [("Content-Type", "text/plain")], stream=flood())
        if p == "/inject":  # a buggy handler: a header value with CR LF in it
            return Response(200, [("X-Bad", "x\r\nInjected: yes")], b"never")
        if p == "/stream-gone":  # a producer that stops when the client goes away
            gone = req.disconnected()

            async def until_gone():
                yield b"tick"
                try:
                    await asyncio.wait_for(gone.wait(), 5)
                    self.gone.set()
                except asyncio.TimeoutError:
                    pass
            return Response(200, [("Content-Type", "text/plain")], stream=until_gone())
        if p == "/stream-watch":  # the producer itself asks for the disconnect watch
            async def watching():
                req.disconnected()
                yield b"one"
                await asyncio.sleep(0)
                yield b"two"
            return Response(200, [("Content-Type", "text/plain")], stream=watching())
        return Response(404, [("Content-Type", "text/plain")], b"no such probe")


class TransportServer:
    """An :class:`HttpServer` with a :class:`Probe` handler on 127.0.0.1:<free port>."""

    def __init__(self, limits: TransportLimits | None = None) -> None:
        self.lt = LoopThread()
        self.probe = Probe()
        self.server = HttpServer(self.probe, render_error, limits)
        _, self.port = self.lt.call(self.server.start(HOST, 0))
        self._down = False

    def shutdown(self, grace: float | None = None) -> Any:
        """Start a graceful shutdown; returns the concurrent future."""
        self._down = True
        return self.lt.submit(self.server.shutdown(grace))

    def connections(self) -> int:
        async def n() -> int:
            return self.server.connections
        return self.lt.call(n())

    def close(self) -> None:
        try:
            if not self._down:
                self.lt.call(self.server.shutdown(0.5), 10)
        finally:
            self.lt.stop()


@pytest.fixture
def serve():
    made: list[TransportServer] = []

    def factory(**limits: Any) -> TransportServer:
        parser_kw = limits.pop("parser", None)
        if parser_kw is not None:
            limits["parser"] = Limits(**parser_kw)
        s = TransportServer(TransportLimits(**limits) if limits else None)
        made.append(s)
        return s

    yield factory
    for s in made:
        s.close()


@pytest.fixture(scope="module")
def app_server(tmp_path_factory):
    settings = make_settings(tmp_path_factory.mktemp("app"))
    srv = InProcessServer(settings)

    async def boom(req: HttpRequest, params: dict[str, str]) -> Response:
        raise ValueError("secret-app-detail at /srv/ironflow/internal.py line 42")

    srv.app.router.add("GET", "/test/boom", boom, auth="public")
    with srv:
        yield srv


@dataclass
class Resp:
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes
    head: bytes  # raw status line + header block, with the empty line
    framing: bytes  # raw body bytes as they came on the wire (chunked framing kept)

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k == name.lower():
                return v
        return None

    def json(self) -> Any:
        return json.loads(self.body)


class Client:
    """A blocking loopback client with a small response reader (a test helper, not a parser)."""

    def __init__(self, port: int, timeout: float = T) -> None:
        self.sock = socket.create_connection((HOST, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.eof = False

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> bool:
        if self.eof:
            return False
        try:
            got = self.sock.recv(65536)
        except ConnectionResetError:
            got = b""
        if not got:
            self.eof = True
            return False
        self.buf += got
        return True

    def read_until(self, delim: bytes) -> bytes:
        while True:
            i = self.buf.find(delim)
            if i >= 0:
                out = bytes(self.buf[:i + len(delim)])
                del self.buf[:i + len(delim)]
                return out
            if not self._fill():
                raise EOFError(f"closed before {delim!r}; have {bytes(self.buf[:200])!r}")

    def read_exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not self._fill():
                raise EOFError(f"closed after {len(self.buf)} of {n} bytes")
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def read_to_close(self) -> bytes:
        while self._fill():
            pass
        out = bytes(self.buf)
        self.buf.clear()
        return out

    def read_response(self, head_request: bool = False) -> Resp:
        head = self.read_until(b"\r\n\r\n")
        lines = head[:-4].decode("latin-1").split("\r\n")
        _version, status_s, reason = lines[0].split(" ", 2)
        status = int(status_s)
        headers = []
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers.append((k.strip().lower(), v.strip()))
        h = dict(headers)
        framing = b""
        if head_request or status in (204, 304) or 100 <= status < 200:
            body = b""
        elif "content-length" in h:
            body = framing = self.read_exact(int(h["content-length"]))
        elif h.get("transfer-encoding") == "chunked":
            parts, raw = [], bytearray()
            while True:
                size_line = self.read_until(b"\r\n")
                raw += size_line
                size = int(size_line.split(b";")[0], 16)
                if size == 0:
                    raw += self.read_until(b"\r\n")  # no trailers from this server
                    break
                data = self.read_exact(size + 2)
                raw += data
                assert data.endswith(b"\r\n"), data[-10:]
                parts.append(data[:-2])
            body, framing = b"".join(parts), bytes(raw)
        else:
            body = framing = self.read_to_close()
        return Resp(status, reason, headers, body, head, framing)

    def closed_within(self, timeout: float) -> bool:
        """True if the server closes (EOF or reset) within ``timeout`` s with no further bytes."""
        if self.buf:
            return False
        self.sock.settimeout(timeout)
        try:
            got = self.sock.recv(65536)
        except socket.timeout:
            return False
        except ConnectionResetError:
            got = b""
        if got:
            self.buf += got
            return False
        self.eof = True
        return True


_DATE_RE = re.compile(rb"Date: [^\r]*\r\n")


def no_date(raw: bytes) -> bytes:
    """Responses carry a Date header; blank it out for byte-exact comparisons."""
    return _DATE_RE.sub(b"Date: *\r\n", raw)


def get(path: str, extra: str = "", version: str = "1.1") -> bytes:
    host = "Host: t\r\n" if version == "1.1" else ""
    return f"GET {path} HTTP/{version}\r\n{host}{extra}\r\n".encode()


def assert_json_error(resp: Resp | tuple[int, dict[str, str], bytes], status: int) -> dict[str, Any]:
    if isinstance(resp, Resp):
        got_status, ctype, body = resp.status, resp.header("content-type"), resp.body
    else:
        got_status, ctype, body = resp[0], resp[1].get("content-type"), resp[2]
    assert got_status == status, body
    assert ctype is not None and ctype.startswith("application/json")
    obj = json.loads(body)
    assert {"error", "message", "code"} <= set(obj), obj
    return obj


def wait_until(cond: Callable[[], bool], timeout: float = T) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.01)
    return cond()


# --- keep-alive and pipelining ------------------------------------------------------------------


def test_keep_alive_serves_several_requests_on_one_connection(serve):
    s = serve()
    with Client(s.port) as c:
        for i in range(5):
            body = b"n=%d" % i
            c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            r = c.read_response()
            assert (r.status, r.body) == (200, body)
            assert r.header("connection") is None  # HTTP/1.1 default is persistent
            assert r.header("date")
        c.send(get("/hello"))
        assert c.read_response().body == b"hello"


def test_pipelined_requests_in_one_write_are_answered_in_order_byte_exact(serve):
    s = serve()
    data = (get("/hello")
            + b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc"
            + get("/nope")
            + get("/hello", "Connection: close\r\n"))
    raw = raw_exchange(s.port, data, timeout=T)
    assert no_date(raw) == (
        b"HTTP/1.1 200 OK\r\nDate: *\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello"
        b"HTTP/1.1 200 OK\r\nDate: *\r\nContent-Type: application/octet-stream\r\n"
        b"X-Method: POST\r\nContent-Length: 3\r\n\r\nabc"
        b"HTTP/1.1 404 Not Found\r\nDate: *\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n"
        b"\r\nno such probe"
        b"HTTP/1.1 200 OK\r\nDate: *\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n"
        b"Connection: close\r\n\r\nhello")


def test_pipelined_chunked_post_then_get(serve):
    s = serve()
    data = (b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nX-Trailer: yes\r\n\r\n"
            + get("/hello", "Connection: close\r\n"))
    got = split_responses(raw_exchange(s.port, data, timeout=T))
    assert [(st, body) for st, _, body in got] == [(200, b"hello, world"), (200, b"hello")]
    assert got[1][1]["connection"] == "close"


def test_pipelined_requests_while_the_handler_watches_for_disconnect(serve):
    # The disconnect watch reads ahead while the handler runs; the pipelined request it reads
    # must still be answered, after the first, on the same connection.
    s = serve()
    data = get("/watch?0.2") + get("/hello", "Connection: close\r\n")
    got = split_responses(raw_exchange(s.port, data, timeout=T))
    assert [(st, body) for st, _, body in got] == [(200, b"watched"), (200, b"hello")]


def test_connection_stays_usable_after_a_handler_used_disconnected(serve):
    # Regression: the cancelled watch task must be finished before the connection reads again,
    # or StreamReader raises "read() called while another coroutine is already waiting".
    s = serve()
    with Client(s.port) as c:
        for _ in range(3):
            c.send(get("/watch"))
            assert c.read_response().body == b"watched"
            c.send(get("/hello"))
            assert c.read_response().body == b"hello"


# --- HTTP/1.0 -----------------------------------------------------------------------------------


def test_http10_connection_closes_after_response(serve):
    s = serve()
    with Client(s.port) as c:
        c.send(get("/hello", version="1.0"))
        r = c.read_response()
        assert r.head.startswith(b"HTTP/1.1 200 OK\r\n")  # a server sends its own version
        assert (r.body, r.header("connection")) == (b"hello", "close")
        assert c.closed_within(T)


def test_http10_keep_alive_when_asked(serve):
    s = serve()
    with Client(s.port) as c:
        for _ in range(2):
            c.send(get("/hello", "Connection: keep-alive\r\n", version="1.0"))
            r = c.read_response()
            assert (r.status, r.body, r.header("connection")) == (200, b"hello", "keep-alive")
        c.send(get("/hello", version="1.0"))
        assert c.read_response().header("connection") == "close"
        assert c.closed_within(T)


def test_streaming_to_http10_is_close_delimited(serve):
    s = serve()
    with Client(s.port) as c:
        c.send(get("/stream", "Connection: keep-alive\r\n", version="1.0"))
        r = c.read_response()  # no Content-Length, no chunking: reads to close
        assert r.status == 200
        assert r.header("transfer-encoding") is None and r.header("content-length") is None
        assert r.header("connection") == "close"
        assert r.body == b"abcdef" + b"x" * 300
        assert c.eof


# --- Expect: 100-continue -----------------------------------------------------------------------


def test_expect_100_continue_before_body(serve):
    s = serve()
    with Client(s.port) as c:
        c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        assert c.read_exact(25) == b"HTTP/1.1 100 Continue\r\n\r\n"
        # Nothing else may come before the body is sent.
        assert not c.closed_within(0.2) and not c.buf
        c.sock.settimeout(T)
        c.send(b"12345")
        r = c.read_response()
        assert (r.status, r.body) == (200, b"12345")
        c.send(get("/hello"))
        assert c.read_response().body == b"hello"


def test_expect_100_continue_with_too_large_length_gets_413_and_close(serve):
    s = serve(parser={"max_body_bytes": 1000})
    with Client(s.port) as c:
        c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\nExpect: 100-continue\r\n\r\n")
        raw = c.read_to_close()
    assert raw.startswith(b"HTTP/1.1 413 Content Too Large\r\n")
    assert b"100 Continue" not in raw
    (st, headers, body), = split_responses(raw)
    assert headers["connection"] == "close"
    assert json.loads(body)["code"] == "resource_exhausted"


# --- request bodies -----------------------------------------------------------------------------


def test_content_length_body_split_across_many_writes(serve):
    s = serve()
    body = bytes(range(256)) * 200  # 51,200 bytes, every byte value
    with Client(s.port) as c:
        c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % len(body))
        for i in range(0, len(body), 512):
            c.send(body[i:i + 512])
        r = c.read_response()
    assert r.status == 200 and r.body == body


def test_chunked_body_split_into_tiny_writes(serve):
    s = serve()
    pieces = [b"hello", b" ", b"\x00\r\n\xff" * 10, b"world" * 50]
    wire = b"".join(b"%x;n=v\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\nT: 1\r\n\r\n"
    req = b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n" + wire
    with Client(s.port) as c:
        for i in range(0, len(req), 7):  # cuts through size lines, CRLFs and data
            c.send(req[i:i + 7])
        r = c.read_response()
    assert r.status == 200 and r.body == b"".join(pieces)


def test_head_request_has_length_but_no_body_and_connection_stays_usable(serve):
    s = serve()
    with Client(s.port) as c:
        c.send(b"HEAD /hello HTTP/1.1\r\nHost: t\r\n\r\n")
        r = c.read_response(head_request=True)
        assert r.status == 200 and r.header("content-length") == "5"
        c.send(get("/hello"))
        # If the HEAD response had carried body bytes, this would read "helloHTTP/..." garbage.
        r2 = c.read_response()
        assert (r2.status, r2.body) == (200, b"hello")


def test_head_of_a_streamed_response_sends_no_body_and_closes_the_producer(serve):
    s = serve()
    with Client(s.port) as c:
        c.send(b"HEAD /endless HTTP/1.1\r\nHost: t\r\n\r\n")
        r = c.read_response(head_request=True)
        assert r.status == 200 and r.header("transfer-encoding") == "chunked"
        # never iterated, but closed (aclose on an unstarted generator just drops its frame)
        assert wait_until(lambda: s.probe.producer is not None
                          and s.probe.producer.ag_frame is None)
        c.send(get("/hello"))
        assert c.read_response().body == b"hello"


# --- CORS preflight through the app ---------------------------------------------------------------


def test_options_preflight_through_the_app(app_server):
    with Client(app_server.port) as c:
        c.send(b"OPTIONS /api/v1/events HTTP/1.1\r\nHost: t\r\nOrigin: http://example.test\r\n"
               b"Access-Control-Request-Method: POST\r\n"
               b"Access-Control-Request-Headers: content-type, x-ironflow-environment-id\r\n\r\n")
        r = c.read_response()
        assert r.status == 204 and r.body == b""
        assert r.header("access-control-allow-methods") == "GET, POST, PUT, PATCH, DELETE, OPTIONS"
        assert r.header("access-control-allow-headers") == "content-type, x-ironflow-environment-id"
        assert r.header("access-control-max-age") == "7200"
        assert r.header("access-control-allow-origin") == "*"
        assert r.header("content-length") is None and r.header("transfer-encoding") is None
        c.send(get("/health"))
        r2 = c.read_response()
        assert r2.status == 200 and r2.json()["status"] == "ok"


# --- streaming responses ------------------------------------------------------------------------


def test_stream_chunked_framing_is_byte_exact(serve):
    s = serve()
    with Client(s.port) as c:
        c.send(get("/stream"))
        r = c.read_response()
        assert no_date(r.head) == (b"HTTP/1.1 200 OK\r\nDate: *\r\nContent-Type: text/plain\r\n"
                                   b"Transfer-Encoding: chunked\r\n\r\n")
        # The empty piece is skipped: an empty chunk would end the body.
        assert r.framing == (b"1\r\na\r\n2\r\nbc\r\n3\r\ndef\r\n12c\r\n" + b"x" * 300
                             + b"\r\n0\r\n\r\n")
        c.send(get("/hello"))  # still keep-alive after a chunked body
        assert c.read_response().body == b"hello"


def test_stream_chunks_are_flushed_as_produced(serve):
    s = serve()
    with Client(s.port) as c:
        c.send(get("/gated"))
        c.read_until(b"\r\n\r\n")
        # chunk 1 arrives while the producer is still blocked on the gate
        assert c.read_exact(len(b"7\r\nchunk-1\r\n")) == b"7\r\nchunk-1\r\n"
        assert not c.closed_within(0.1) and not c.buf  # nothing more until the gate opens
        c.sock.settimeout(T)
        s.lt.soon(s.probe.gate.set)
        assert c.read_exact(len(b"7\r\nchunk-2\r\n0\r\n\r\n")) == b"7\r\nchunk-2\r\n0\r\n\r\n"


def test_client_hangup_mid_stream_closes_the_generator(serve):
    s = serve()
    c = Client(s.port)
    c.send(get("/endless"))
    c.read_until(b"\r\n\r\n")
    c.read_until(b"\r\n")  # first chunk size line
    c.close()
    assert s.probe.stream_exit.wait(T), "producer never saw GeneratorExit"
    assert s.probe.stream_closed.wait(T)
    assert wait_until(lambda: s.connections() == 0)
    with Client(s.port) as c2:
        c2.send(get("/hello"))
        assert c2.read_response().body == b"hello"


# --- upgrade hand-off ---------------------------------------------------------------------------


def test_upgrade_hands_over_the_socket_with_early_bytes(serve):
    s = serve()
    with Client(s.port) as c:
        c.send(b"GET /upgrade HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n"
               b"early-bytes")
        head = c.read_until(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
        assert b"Upgrade: echo\r\n" in head
        assert b"Content-Length" not in head and b"Transfer-Encoding" not in head
        assert c.read_exact(len(b"EXTRA[early-bytes]")) == b"EXTRA[early-bytes]"
        c.send(b"ping")
        assert c.read_exact(4) == b"PING"
        c.send(b"bye")
        assert c.read_exact(3) == b"BYE"
        assert c.closed_within(T)  # the hand-off ended: the transport closes the socket


def test_accepted_sockets_have_tcp_nodelay(serve):
    # Checked on the server's own accepted socket (reached through the upgrade hand-off's
    # writer). Note asyncio's selector transport also sets TCP_NODELAY on TCP sockets, so this
    # pins the observable fact rather than which line of code set it.
    s = serve()
    with Client(s.port) as c:
        c.send(b"GET /nodelay HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: probe\r\n\r\n")
        c.read_until(b"\r\n\r\n")
        assert c.read_to_close() == b"NODELAY=1"


# --- disconnect notification --------------------------------------------------------------------


def test_disconnected_event_fires_when_client_closes_during_slow_handler(serve):
    s = serve()
    c = Client(s.port)
    c.send(get("/wait-gone"))
    assert s.probe.started.wait(T)
    c.close()
    assert s.probe.gone.wait(T), "disconnected() never fired"
    assert wait_until(lambda: s.connections() == 0)


def test_disconnected_event_covers_a_streamed_response(serve):
    # The handler takes the event, the stream producer waits on it: the watch must still run
    # while the body is being streamed (long polls, server streams).
    s = serve()
    c = Client(s.port)
    c.send(get("/stream-gone"))
    c.read_until(b"\r\n\r\n")
    assert c.read_exact(len(b"4\r\ntick\r\n")) == b"4\r\ntick\r\n"
    c.close()
    assert s.probe.gone.wait(T), "disconnected() never fired during the stream"
    assert wait_until(lambda: s.connections() == 0)


def test_keep_alive_after_a_stream_producer_used_disconnected(serve):
    s = serve()
    with Client(s.port) as c:
        for _ in range(3):
            c.send(get("/stream-watch"))
            assert c.read_response().body == b"onetwo"
            c.send(get("/hello"))
            assert c.read_response().body == b"hello"


# --- strictness over the wire -------------------------------------------------------------------


def test_te_and_cl_together_is_400_and_close_even_with_more_pipelined(serve):
    s = serve()
    data = (b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"
            b"0\r\n\r\n" + get("/hello") + get("/hello"))
    raw = raw_exchange(s.port, data, timeout=T)
    got = split_responses(raw)
    assert len(got) == 1, raw  # no second response: the smuggled request is never parsed
    st, headers, body = got[0]
    assert st == 400 and headers["connection"] == "close"
    obj = json.loads(body)
    assert obj["code"] == "invalid_argument" and "Transfer-Encoding" in obj["message"]
    assert s.probe.bodies == []


@pytest.mark.parametrize("head,status", [
    (b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400),
    (b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3, 4\r\n\r\nabcd", 400),
    (b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
    (b"GET /hello HTTP/1.1\r\nHost: t\r\nX-A: one\r\n  two\r\n\r\n", 400),
])
def test_framing_errors_over_the_wire(app_server, head, status):
    raw = raw_exchange(app_server.port, head + get("/health"), timeout=T)
    got = split_responses(raw)
    assert len(got) == 1, raw
    st, headers, body = got[0]
    assert st == status and headers["connection"] == "close"
    assert headers["content-type"].startswith("application/json")
    obj = json.loads(body)
    assert set(obj) >= {"error", "message", "code"}
    assert obj["error"] == obj["message"]


def test_handler_exception_is_500_without_internals_and_server_keeps_serving(serve, app_server):
    s = serve()
    with Client(s.port) as c:
        c.send(get("/boom"))
        r = c.read_response()
        obj = assert_json_error(r, 500)
        assert obj["code"] == "internal"
        assert b"secret" not in r.body and b"Traceback" not in r.body and b"passwd" not in r.body
        c.send(get("/hello"))
        assert c.read_response().body == b"hello"
    # and the same through the whole app pipeline
    with Client(app_server.port) as c:
        c.send(get("/test/boom"))
        r = c.read_response()
        obj = assert_json_error(r, 500)
        assert obj["code"] == "internal"
        assert b"secret" not in r.body and b"Traceback" not in r.body and b".py" not in r.body
        c.send(get("/health"))
        assert c.read_response().status == 200


def test_invalid_response_header_never_splits_the_response(serve):
    # A handler bug must not become response splitting: the head is validated before anything
    # is written and the client gets a plain 500 instead.
    s = serve()
    raw = raw_exchange(s.port, get("/inject"), timeout=T)
    assert b"Injected" not in raw and b"never" not in raw
    assert raw.startswith(b"HTTP/1.1 500 "), raw[:80]
    with Client(s.port) as c:
        c.send(get("/hello"))
        assert c.read_response().body == b"hello"


# --- limits and timeouts ------------------------------------------------------------------------


def test_huge_header_block_is_431_and_close(serve):
    s = serve()
    raw = raw_exchange(s.port, get("/hello", "X-Big: " + "a" * (70 * 1024) + "\r\n"), timeout=T)
    (st, headers, body), = split_responses(raw)
    assert st == 431 and headers["connection"] == "close"
    assert json.loads(body)["code"] == "resource_exhausted"


def test_too_many_headers_is_431(serve):
    s = serve()
    many = "".join(f"X-H{i}: v\r\n" for i in range(200))
    raw = raw_exchange(s.port, get("/hello", many), timeout=T)
    (st, headers, _), = split_responses(raw)
    assert st == 431 and headers["connection"] == "close"


@pytest.mark.parametrize("chunked", [False, True])
def test_body_over_configured_max_is_413(serve, chunked):
    s = serve(parser={"max_body_bytes": 1000})
    body = b"z" * 1500
    if chunked:
        req = (b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"2ee\r\n" + body[:750] + b"\r\n2ee\r\n" + body[750:] + b"\r\n0\r\n\r\n")
    else:
        req = b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1500\r\n\r\n" + body
    raw = raw_exchange(s.port, req, timeout=T)
    (st, headers, _), = split_responses(raw)
    assert st == 413 and headers["connection"] == "close"
    assert s.probe.bodies == []
    # exactly at the limit is fine
    ok = split_responses(raw_exchange(
        s.port, b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\nConnection: close\r\n\r\n"
        + b"y" * 1000, timeout=T))
    assert ok[0][0] == 200 and ok[0][2] == b"y" * 1000


def test_slowloris_head_is_cut_off(serve):
    s = serve(head_timeout=1.0, idle_timeout=10.0)
    trickle = get("/hello", "X-Slow: " + "s" * 60 + "\r\n")
    c = Client(s.port)
    start = time.monotonic()
    try:
        for b in trickle:
            try:
                c.send(bytes([b]))
            except OSError:
                break
            r, _, _ = select.select([c.sock], [], [], 0.2)
            if r or time.monotonic() - start > 3.0:
                break
        c.sock.settimeout(T)
        raw = c.read_to_close()
    finally:
        c.close()
    took = time.monotonic() - start
    assert took < 2.2, took
    assert raw == b"" or raw.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), raw[:80]
    if raw:
        (st, headers, body), = split_responses(raw)
        assert headers["connection"] == "close" and json.loads(body)["code"] == "deadline_exceeded"


def test_idle_keep_alive_connection_is_closed_after_idle_timeout(serve):
    s = serve(idle_timeout=0.5)
    with Client(s.port) as c:
        c.send(get("/hello"))
        assert c.read_response().body == b"hello"
        start = time.monotonic()
        assert c.closed_within(3.0)
        took = time.monotonic() - start
    assert 0.35 <= took < 2.0, took
    # a connection that never sends anything is closed quietly (no 408 for an idle socket)
    start = time.monotonic()
    assert raw_exchange(s.port, b"", timeout=3.0) == b""
    assert time.monotonic() - start < 2.0


@pytest.mark.parametrize("partial", [
    b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc",
    b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
])
def test_stalled_body_times_out_with_408(serve, partial):
    s = serve(body_timeout=0.5, head_timeout=10.0, idle_timeout=10.0)
    start = time.monotonic()
    raw = raw_exchange(s.port, partial, timeout=3.0)
    took = time.monotonic() - start
    assert took < 2.0, took
    (st, headers, body), = split_responses(raw)
    assert st == 408 and headers["connection"] == "close"
    assert s.probe.bodies == []


def test_max_connections_third_gets_503_and_close(serve):
    s = serve(max_connections=2)
    c1, c2 = Client(s.port), Client(s.port)
    try:
        for c in (c1, c2):  # make sure both are registered (served once) before the third
            c.send(get("/hello"))
            assert c.read_response().status == 200
        with Client(s.port) as c3:
            raw = c3.read_to_close()
        (st, headers, body), = split_responses(raw)
        assert st == 503 and headers["connection"] == "close"
        assert json.loads(body)["code"] == "unavailable"
        # the first two are unaffected
        c1.send(get("/hello"))
        assert c1.read_response().body == b"hello"
        c2.close()
        assert wait_until(lambda: s.connections() == 1)
        with Client(s.port) as c4:
            c4.send(get("/hello"))
            assert c4.read_response().body == b"hello"
    finally:
        c1.close()
        c2.close()


#: spec README §4: SETTINGS (9 bytes) + GOAWAY(last-stream-id 0, HTTP_1_1_REQUIRED = 0x0d), the
#: GOAWAY being a 9-byte frame header with length 8 plus its 8-byte payload: 17 bytes, 26 in all.
SPEC_H2_REPLY = (bytes.fromhex("000000040000000000")
                 + bytes.fromhex("000008070000000000" "00000000" "0000000d"))


def test_h2c_prior_knowledge_preface_gets_settings_and_goaway(serve):
    s = serve()
    with Client(s.port) as c:
        c.send(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        raw = c.read_to_close()  # ... then the server closes
    assert raw == SPEC_H2_REPLY and len(raw) == 26
    assert H2_GOAWAY == SPEC_H2_REPLY


# --- graceful shutdown --------------------------------------------------------------------------


def test_graceful_shutdown_finishes_in_flight_closes_idle_refuses_new(serve):
    s = serve()
    idle = Client(s.port)
    busy = Client(s.port)
    try:
        idle.send(get("/hello"))
        assert idle.read_response().status == 200
        busy.send(get("/slow?0.8"))
        assert s.probe.started.wait(T)
        fut = s.shutdown(grace=5.0)
        assert idle.closed_within(1.0), "idle keep-alive connection was not closed"
        assert not s.probe.finished.is_set()  # the idle close did not wait for the slow one
        try:
            with Client(s.port, timeout=1.0) as late:
                late.send(get("/hello"))
                raw = late.read_to_close()
            assert raw == b"" or raw.startswith(b"HTTP/1.1 503 "), raw[:60]
        except (ConnectionRefusedError, ConnectionResetError):
            pass  # the listener is closed: refused
        r = busy.read_response()
        assert (r.status, r.body) == (200, b"slow done")
        assert r.header("connection") == "close"
        assert busy.closed_within(T)
        fut.result(T)
        assert not s.probe.cancelled.is_set()
    finally:
        idle.close()
        busy.close()


def test_shutdown_grace_cuts_off_a_request_that_takes_too_long(serve):
    s = serve()
    with Client(s.port) as c:
        c.send(get("/slow?5"))
        assert s.probe.started.wait(T)
        start = time.monotonic()
        fut = s.shutdown(grace=0.3)
        fut.result(T)
        assert time.monotonic() - start < 2.0
        assert c.read_to_close() == b""  # cut off: no response, just the close
    assert s.probe.cancelled.wait(T)
    assert not s.probe.finished.is_set()


# --- malformed corpus smoke run -----------------------------------------------------------------

H = b"Host: t\r\n"
MALFORMED: list[tuple[bytes, int | None]] = [
    # (bytes sent before half-closing, expected status or None = any 4xx/5xx or a bare close)
    (b"GET / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 1\r\nContent-Length: 2\r\n\r\nab", 400),
    (b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip\r\n\r\n", 501),
    (b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked, gzip\r\n\r\n", 501),
    (b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked, chunked\r\n\r\n", 400),
    (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\n" + H + b"X: a\r\n b\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\n Host: t\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost : t\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\n" + H + H + b"\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400),
    (b"GET / HTTP/2.0\r\n" + H + b"\r\n", 505),
    (b"GET / HTTP/1.1 x\r\n" + H + b"\r\n", 400),
    (b"GET  / HTTP/1.1\r\n" + H + b"\r\n", 400),
    (b"GET / http/1.1\r\n" + H + b"\r\n", 400),
    (b"G(T / HTTP/1.1\r\n" + H + b"\r\n", 400),
    (b"GET /\x01 HTTP/1.1\r\n" + H + b"\r\n", 400),
    (b"GET /%zz HTTP/1.1\r\n" + H + b"\r\n", 400),
    (b"GET /a#b HTTP/1.1\r\n" + H + b"\r\n", 400),
    (b"GET * HTTP/1.1\r\n" + H + b"\r\n", 400),
    (b"GET ftp://x/ HTTP/1.1\r\n" + H + b"\r\n", 400),
    (b"CONNECT /x HTTP/1.1\r\n" + H + b"\r\n", 400),
    (b"GET / HTTP/1.1\r\n" + H + b"X: a\x00b\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\n" + H + b"X: a\rb\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\n" + H + b"no-colon-here\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\n" + H + b": empty-name\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\n" + H + b"Content-Length: -1\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\n" + H + b"Content-Length: +5\r\n\r\nabcde", 400),
    (b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 0x10\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 99999999999999999999\r\n\r\n", 413),
    (b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n" + b"1" * 17 + b"\r\n", 400),
    (b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n0\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n3;\x01\r\nabc\r\n0\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n0\r\nT: a\r\n b\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\n" + H + b"Expect: 200-ok\r\nContent-Length: 1\r\n\r\na", 417),
    (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n" + H + b"\r\n", 414),
    (b"GET / HTTP/1.1\r\n" + H + b"".join(b"X%d: v\r\n" % i for i in range(150)) + b"\r\n", 431),
    (b"\r\n\r\n\r\nGET / HTTP/1.1\r\n" + H + b"\r\n", 400),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 400),
    (b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + b"\x00" * 40, 400),
    (b"GET / HTTP/1.1\r\n" + H + b"X-Half", 400),  # the peer half-closes inside a field line
    (b"GET / HTTP/1.1\r\n" + H, None),  # ...or at a line boundary (the parser just closes)
    (b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 10\r\n\r\nabc", None),  # gone mid-body
    (b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n5\r\nab", None),
]


def test_malformed_corpus_smoke_over_the_wire(app_server):
    assert len(MALFORMED) >= 40
    for data, expected in MALFORMED:
        raw = raw_exchange(app_server.port, data, timeout=T, shutdown_write=True)
        if not raw:
            assert expected is None, f"closed without an answer to {data[:60]!r}"
            continue
        assert raw.startswith(b"HTTP/1.1 "), (data[:60], raw[:60])
        got = split_responses(raw)
        assert len(got) == 1, (data[:60], raw)
        st, headers, body = got[0]
        assert 400 <= st < 600, (data[:60], st)
        if expected is not None:
            assert st == expected, (data[:60], st, body)
        assert headers["connection"] == "close"
        assert {"error", "message", "code"} <= set(json.loads(body))
    status, _, body = app_server.request("GET", "/health", timeout=T)
    assert status == 200 and json.loads(body)["status"] == "ok"


def test_a_peer_that_never_reads_is_dropped_after_write_timeout(serve):
    # /flood writes forever; this client never reads, so socket buffers fill and drain()
    # blocks. The write timeout must end the connection and close the producer.
    s = serve(write_timeout=0.5)
    sock = socket.create_connection((HOST, s.port), timeout=T)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    try:
        sock.sendall(get("/flood"))
        assert s.probe.stream_closed.wait(10), "producer was not closed after the write timeout"
        deadline = time.monotonic() + 5
        while s.connections() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert s.connections() == 0
    finally:
        sock.close()
