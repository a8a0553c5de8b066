"""WebSocket transport tests: a raw-socket stdlib client (handshake + masked frames) against the
``scripts/ws_echo.py`` handler on an in-process port-0 loopback :class:`HttpServer`."""

from __future__ import annotations

import asyncio
import json
import base64
import importlib.util
import os
import socket
import threading
import time
import zlib
from typing import Any

import pytest

from ironflow_pkg.server import HttpServer
from ironflow_pkg.websocket import WsLimits, accept_key, encode_frame
from ironflow_pkg import ws_asyncio
from ironflow_pkg.ws_asyncio import websocket_response

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOST = "127.0.0.1"
T = 3.0


def _load_echo() -> Any:
    spec = importlib.util.spec_from_file_location("ws_echo_script", os.path.join(ROOT, "scripts", "ws_echo.py"))
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(mod)
    return mod


ws_echo = _load_echo()


class LoopThread:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def call(self, coro: Any, timeout: float = 10.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        async def cancel_rest() -> None:
            me = asyncio.current_task()
            rest = [t for t in asyncio.all_tasks() if t is not me]
            for t in rest:
                t.cancel()
            if rest:
                await asyncio.wait(rest, timeout=2.0)

        try:
            self.call(cancel_rest(), 5.0)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)
            if not self.thread.is_alive():
                self.loop.close()


@pytest.fixture
def serve():
    made: list[tuple[LoopThread, HttpServer]] = []

    def factory(**options: Any) -> int:
        lt = LoopThread()
        server = HttpServer(ws_echo.make_handler(**options), ws_echo.render_error)
        _, port = lt.call(server.start(HOST, 0))
        made.append((lt, server))
        return port

    yield factory
    for lt, server in made:
        try:
            lt.call(server.shutdown(0.5), 10)
        finally:
            lt.stop()


class Client:
    """A minimal RFC 6455 client over a blocking socket."""

    def __init__(self, port: int, extensions: str | None = None, path: str = "/",
                 extra: str = "", rcvbuf: int | None = None) -> None:
        if rcvbuf is None:
            self.sock = socket.create_connection((HOST, port), timeout=T)
        else:  # a fixed receive buffer (set before connecting, so the window stays small)
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            self.sock.settimeout(T)
            self.sock.connect((HOST, port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.key = base64.b64encode(os.urandom(16)).decode()
        req = (f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {self.key}\r\n"
               f"Sec-WebSocket-Version: 13\r\n")
        if extensions:
            req += f"Sec-WebSocket-Extensions: {extensions}\r\n"
        req += extra + "\r\n"
        self.sock.sendall(req.encode())
        self.buf = bytearray()
        while b"\r\n\r\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                break
            self.buf += data
        head, _, rest = bytes(self.buf).partition(b"\r\n\r\n")
        self.buf = bytearray(rest)
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1])
        self.headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
        self.inflater = zlib.decompressobj(-15)

    def send_frame(self, opcode: int, payload: bytes, fin: bool = True, rsv1: bool = False) -> None:
        self.sock.sendall(encode_frame(opcode, payload, fin=fin, rsv1=rsv1, mask=os.urandom(4)))

    def _need(self, n: int) -> bytes:
        while len(self.buf) < n:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError
            self.buf += data
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def recv_frame(self) -> tuple[bool, bool, int, bytes]:
        b0, b1 = self._need(2)
        assert not b1 & 0x80, "server frames are unmasked"
        n = b1 & 0x7F
        if n == 126:
            n = int.from_bytes(self._need(2), "big")
        elif n == 127:
            n = int.from_bytes(self._need(8), "big")
        return bool(b0 & 0x80), bool(b0 & 0x40), b0 & 0x0F, self._need(n)

    def recv_message(self) -> tuple[int, bytes]:
        fin, rsv1, op, payload = self.recv_frame()
        assert fin
        if rsv1:
            payload = self.inflater.decompress(payload + b"\x00\x00\xff\xff")
        return op, payload

    def recv_message_fragments(self) -> tuple[int, bytes]:
        """One data message, reassembled from however many frames the server used."""
        fin, _, op, payload = self.recv_frame()
        parts = [payload]
        while not fin:
            fin, _, cont, payload = self.recv_frame()
            assert cont == 0
            parts.append(payload)
        return op, b"".join(parts)

    def at_eof(self) -> bool:
        try:
            return self.sock.recv(1) == b""
        except (ConnectionResetError, socket.timeout):
            return False

    def close(self) -> None:
        self.sock.close()


def test_handshake_and_echo_text_binary(serve):
    c = Client(serve())
    assert c.status == 101
    assert c.headers["sec-websocket-accept"] == accept_key(c.key)
    assert c.headers["upgrade"].lower() == "websocket"
    assert "sec-websocket-extensions" not in c.headers
    c.send_frame(1, "héllo".encode())
    assert c.recv_message() == (1, "héllo".encode())
    c.send_frame(2, b"\x00\xff" * 40000)
    assert c.recv_message() == (2, b"\x00\xff" * 40000)
    c.close()


def test_bad_handshake_json_errors(serve):
    port = serve()
    s = socket.create_connection((HOST, port), timeout=T)
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n")
    data = s.recv(65536)
    s.close()
    assert data.startswith(b"HTTP/1.1 426 ")
    assert b"Sec-WebSocket-Version: 13\r\n" in data
    assert b'"code":"failed_precondition"' in data
    s = socket.create_connection((HOST, port), timeout=T)
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    data = s.recv(65536)
    s.close()
    assert data.startswith(b"HTTP/1.1 400 ") and b'"code":"invalid_argument"' in data


def test_fragmented_message_with_interleaved_ping(serve):
    c = Client(serve())
    c.send_frame(1, b"frag", fin=False)
    c.send_frame(9, b"pp")
    c.send_frame(0, b"men", fin=False)
    c.send_frame(0, b"ted")
    assert c.recv_frame() == (True, False, 10, b"pp")
    assert c.recv_message() == (1, b"fragmented")
    c.close()


def test_10_1_1_autofragmented_text_echoed(serve):
    """Autobahn 10.1.1: a 65,536-byte text message sent in 1,300-byte fragments."""
    c = Client(serve())
    payload = b"*" * 65536
    chunks = [payload[i:i + 1300] for i in range(0, len(payload), 1300)]
    for i, chunk in enumerate(chunks):
        c.send_frame(1 if i == 0 else 0, chunk, fin=i == len(chunks) - 1)
    assert c.recv_message() == (1, payload)
    c.close()


@pytest.mark.parametrize("fragment", [None, 65536, 4 * 1024 * 1024])
def test_9_large_messages_echoed(serve, fragment):
    """Autobahn 9.1-9.4 style: a 4 MiB binary message whole or in fragments, echoed intact."""
    c = Client(serve())
    payload = os.urandom(1024) * 4096
    if fragment is None:
        c.send_frame(2, payload)
    else:
        parts = [payload[i:i + fragment] for i in range(0, len(payload), fragment)]
        for i, part in enumerate(parts):
            c.send_frame(2 if i == 0 else 0, part, fin=i == len(parts) - 1)
    op, got = c.recv_message_fragments()
    assert op == 2 and got == payload
    c.close()


def test_9_7_many_small_messages_in_order(serve):
    """Autobahn 9.7/9.8 style: 1,000 small messages back to back, echoed in order."""
    c = Client(serve())
    msgs = [f"m{i:04d}-".encode() * 2 for i in range(1000)]
    c.sock.sendall(b"".join(encode_frame(1, m, mask=os.urandom(4)) for m in msgs))
    assert [c.recv_message() for _ in msgs] == [(1, m) for m in msgs]
    c.close()


def test_ping_answered(serve):
    c = Client(serve())
    c.send_frame(9, b"hello?")
    assert c.recv_frame() == (True, False, 10, b"hello?")
    c.close()


def test_client_close_handshake(serve):
    c = Client(serve())
    c.send_frame(8, (1000).to_bytes(2, "big") + b"bye")
    assert c.recv_frame() == (True, False, 8, (1000).to_bytes(2, "big"))
    assert c.at_eof()  # the server closes TCP first (§7.1.1)
    c.close()


def test_protocol_error_closes_1002(serve):
    c = Client(serve())
    c.sock.sendall(encode_frame(1, b"unmasked"))
    fin, _, op, payload = c.recv_frame()
    assert op == 8 and int.from_bytes(payload[:2], "big") == 1002
    assert c.at_eof()
    c.close()


def test_oversized_message_1009(serve):
    c = Client(serve(limits=WsLimits(max_message_size=1000, max_frame_payload=2000)))
    c.send_frame(2, b"x" * 1000)
    assert c.recv_message() == (2, b"x" * 1000)
    c.send_frame(2, b"x" * 600, fin=False)
    c.send_frame(0, b"x" * 600)
    _, _, op, payload = c.recv_frame()
    assert op == 8 and int.from_bytes(payload[:2], "big") == 1009
    c.close()


def test_default_limit_is_one_mib(serve):
    c = Client(serve(limits=None))
    c.send_frame(2, b"y" * (1024 * 1024 + 1))
    _, _, op, payload = c.recv_frame()
    assert op == 8 and int.from_bytes(payload[:2], "big") == 1009
    c.close()


def test_deflate_negotiated_and_working(serve):
    c = Client(serve(), extensions="permessage-deflate; client_max_window_bits")
    assert c.status == 101
    assert c.headers["sec-websocket-extensions"].startswith("permessage-deflate")
    comp = zlib.compressobj(6, zlib.DEFLATED, -15)
    for text in ("hello hello hello hello", "hello again, hello again"):
        data = comp.compress(text.encode()) + comp.flush(zlib.Z_SYNC_FLUSH)
        c.send_frame(1, data[:-4], rsv1=True)
        op, payload = c.recv_message()
        assert (op, payload) == (1, text.encode())
    c.send_frame(2, b"raw, not compressed")  # per-message choice (RFC 7692 §6)
    assert c.recv_message() == (2, b"raw, not compressed")
    c.close()


def test_deflate_bomb_closed_1009(serve):
    c = Client(serve(limits=WsLimits(max_message_size=100_000, max_frame_payload=200_000)),
               extensions="permessage-deflate")
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    data = comp.compress(b"\x00" * 10_000_000) + comp.flush(zlib.Z_SYNC_FLUSH)
    assert len(data) < 20_000
    c.send_frame(2, data[:-4], rsv1=True)
    _, _, op, payload = c.recv_frame()
    assert op == 8 and int.from_bytes(payload[:2], "big") == 1009
    c.close()


def test_idle_client_without_pong_is_closed(serve):
    c = Client(serve(ping_interval=0.1, ping_timeout=0.2))
    fin, _, op, payload = c.recv_frame()
    assert op == 9 and len(payload) == 4  # the server's ping; we do not answer
    t0 = time.monotonic()
    _, _, op, payload = c.recv_frame()
    assert op == 8 and int.from_bytes(payload[:2], "big") == 1011
    assert c.at_eof()
    assert time.monotonic() - t0 < 2.0
    c.close()


def test_idle_client_answering_pings_stays(serve):
    c = Client(serve(ping_interval=0.1, ping_timeout=0.3))
    for _ in range(3):
        _, _, op, payload = c.recv_frame()
        assert op == 9
        c.send_frame(10, payload)
    c.send_frame(1, b"still here")
    while True:
        _, _, op, payload = c.recv_frame()
        if op == 1:
            assert payload == b"still here"
            break
        assert op == 9
        c.send_frame(10, payload)
    c.close()


def test_first_frame_in_same_packet_as_handshake(serve):
    port = serve()
    s = socket.create_connection((HOST, port), timeout=T)
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
              + encode_frame(1, b"early", mask=b"\x01\x02\x03\x04"))
    data = b""
    while not data.endswith(b"early"):
        chunk = s.recv(65536)
        assert chunk
        data += chunk
    s.close()
    assert data.startswith(b"HTTP/1.1 101 ")
    assert b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in data
    assert data.endswith(b"\x81\x05early")


class _Head:
    def __init__(self, headers: list[tuple[str, str]], method: str = "GET") -> None:
        self.headers = tuple((k.lower(), v) for k, v in headers)
        self.method = method


_GOOD = [("Upgrade", "websocket"), ("Connection", "Upgrade"),
         ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="), ("Sec-WebSocket-Version", "13")]


def test_websocket_response_shapes():
    async def h(session: Any) -> None:
        return None

    ok = websocket_response(_Head(_GOOD + [("Sec-WebSocket-Protocol", "a, b")]), h,
                            select_subprotocol=lambda offered: offered[-1])
    assert ok.status == 101 and ok.upgrade is not None
    assert ("Sec-WebSocket-Accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=") in ok.headers
    assert ("Sec-WebSocket-Protocol", "b") in ok.headers
    bad = websocket_response(_Head(_GOOD[1:]), h)
    assert bad.status == 400 and bad.upgrade is None
    assert json.loads(bad.body)["code"] == "invalid_argument"
    denied = websocket_response(_Head(_GOOD + [("Origin", "https://evil")]), h,
                                check_origin=lambda o: False)
    assert denied.status == 403 and json.loads(denied.body)["code"] == "permission_denied"


def test_handler_exception_closes_1011():
    async def boom(session: Any) -> None:
        await session.recv()
        raise RuntimeError("app bug")

    async def http_handler(req: Any) -> Any:
        return websocket_response(req, boom)

    lt = LoopThread()
    server = HttpServer(http_handler, ws_echo.render_error)
    try:
        _, port = lt.call(server.start(HOST, 0))
        c = Client(port)
        c.send_frame(1, b"trigger")
        _, _, op, payload = c.recv_frame()
        assert op == 8 and int.from_bytes(payload[:2], "big") == 1011
        c.send_frame(8, payload[:2])
        assert c.at_eof()
        c.close()
    finally:
        try:
            lt.call(server.shutdown(0.5), 10)
        finally:
            lt.stop()


# -- the session's queue, timers and per-connection footprint ------------------------------------


class _Probe:
    """A handler that records its session and waits for the test's instructions."""

    def __init__(self) -> None:
        self.sessions: list[Any] = []
        self.drained = 0
        self.ended = 0  # handlers that returned (recv gave None)

    async def __call__(self, session: Any) -> None:
        self.sessions.append(session)
        session.on_drain = self._on_drain
        while await session.recv() is not None:
            pass
        self.ended += 1

    def _on_drain(self) -> None:
        self.drained += 1


def _probe_server(**options: Any) -> tuple[LoopThread, HttpServer, _Probe, int]:
    probe = _Probe()

    async def http_handler(req: Any) -> Any:
        return websocket_response(req, probe, **options)

    lt = LoopThread()
    server = HttpServer(http_handler, ws_echo.render_error)
    _, port = lt.call(server.start(HOST, 0))
    return lt, server, probe, port


def _stop(lt: LoopThread, server: HttpServer) -> None:
    try:
        lt.call(server.shutdown(0.5), 10)
    finally:
        lt.stop()


def _wait(pred: Any, timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.005)


def test_post_queues_beyond_the_transport_and_counts_per_tag():
    lt, server, probe, port = _probe_server()
    try:
        c = Client(port, rcvbuf=16384)
        _wait(lambda: probe.sessions)
        s = probe.sessions[0]
        payload = "z" * 4000

        async def flood() -> tuple[int, int]:
            for i in range(2000):  # ~8 MB: more than the kernel and the transport hold
                assert s.post(f"{i:05d}{payload}", "a" if i % 2 else "b")
            return s.queued("a"), s.queued("b")
        qa, qb = lt.call(flood())
        assert qa > 0 and qb > 0 and abs(qa - qb) <= 1  # waiting frames are counted per tag
        assert lt.call(_async(lambda: s.queued("nobody"))) == 0
        for i in range(2000):  # every frame, in order, once the client reads
            op, data = c.recv_message()
            assert op == 1 and data[:5] == f"{i:05d}".encode()
        assert lt.call(_async(lambda: (s.queued("a"), s.queued("b")))) == (0, 0)
        assert probe.drained > 0
        c.close()
    finally:
        _stop(lt, server)


async def _async(fn: Any) -> Any:
    return fn()


def test_backlog_is_bounded_in_bytes_then_the_slow_consumer_is_closed_1011():
    """Frame counts alone do not bound memory when frames are big: past max_backlog_bytes of
    waiting frames the connection closes 1011 "slow consumer" and the backlog is dropped."""
    lt, server, probe, port = _probe_server(max_backlog_bytes=1024 * 1024)
    try:
        c = Client(port, rcvbuf=16384)
        _wait(lambda: probe.sessions)
        s = probe.sessions[0]
        big = "b" * 64 * 1024

        async def flood() -> tuple[int, int]:
            accepted = 0
            for _ in range(200):  # 12.5 MiB offered, far more than the socket takes
                if not s.post(big, "t"):
                    break
                accepted += 1
            return accepted, s.queued("t")
        accepted, queued = lt.call(flood())
        assert accepted < 200 and queued == 0, (accepted, queued)
        assert s._backlog_bytes == 0
        got = []
        while True:  # what the socket already held, then our close
            op, data = c.recv_message_fragments()
            if op == 8:
                assert int.from_bytes(data[:2], "big") == 1011 and data[2:] == b"slow consumer"
                break
            got.append(len(data))
        assert all(n == len(big) for n in got)
        c.close()
    finally:
        _stop(lt, server)


def test_close_waits_behind_queued_frames_then_times_out_without_answer():
    lt, server, probe, port = _probe_server(close_timeout=0.3)
    try:
        c = Client(port)
        _wait(lambda: probe.sessions)
        s = probe.sessions[0]

        async def post_and_close() -> None:
            s.post("one")
            s.post("two")
            s.start_close(1000, "bye")
        lt.call(post_and_close())
        assert c.recv_message() == (1, b"one")
        assert c.recv_message() == (1, b"two")
        _, _, op, payload = c.recv_frame()
        assert op == 8 and payload == (1000).to_bytes(2, "big") + b"bye"
        t0 = time.monotonic()
        assert c.at_eof()  # we never answer: the server drops TCP after close_timeout
        assert time.monotonic() - t0 < 2.0
        assert lt.call(_async(lambda: s.post("late"))) is False
        c.close()
    finally:
        _stop(lt, server)


def test_peer_that_reads_nothing_is_dropped_after_write_timeout():
    lt, server, probe, port = _probe_server(write_timeout=0.3, ping_interval=None)
    try:
        c = Client(port, rcvbuf=8192)
        _wait(lambda: probe.sessions)
        s = probe.sessions[0]

        async def flood() -> None:
            for _ in range(3000):
                s.post("y" * 4000)
        lt.call(flood())
        _wait(lambda: s.closed, 5.0)
        assert s.close_code == 1006
        c.close()
    finally:
        _stop(lt, server)


def test_one_task_per_connection_and_one_timer_task_per_loop():
    lt, server, probe, port = _probe_server()
    try:
        before = lt.call(_async(lambda: len(asyncio.all_tasks())))
        clients = [Client(port) for _ in range(10)]
        _wait(lambda: len(probe.sessions) == 10)
        for c in clients:  # pings are answered by the protocol, not by a task
            c.send_frame(9, b"p")
            assert c.recv_frame() == (True, False, 10, b"p")
        after = lt.call(_async(lambda: len(asyncio.all_tasks())))
        # The caller's task is counted both times; each socket adds its connection task; the
        # keep-alive sweeper is one task for all of them.
        assert after - before == 10 + 1
        for c in clients:
            c.send_frame(8, (1000).to_bytes(2, "big"))
            c.recv_frame()
            c.close()
        _wait(lambda: lt.call(_async(lambda: len(asyncio.all_tasks()))) == before)
    finally:
        _stop(lt, server)


def _sweeping(lt: LoopThread, s: Any) -> bool:
    async def q() -> bool:
        sw = ws_asyncio._sweepers.get(asyncio.get_running_loop())
        return sw is not None and s in sw.sessions
    return lt.call(q())


@pytest.mark.parametrize("path", ["slow_consumer", "ping_timeout", "close", "peer_eof"])
def test_closing_socket_whose_peer_reads_nothing_is_dropped(path):
    """Once a close started, a peer that reads nothing (our frames stuck in the transport) must
    not hold the socket: TCP is aborted, connection_lost runs, the session leaves the sweeper
    and the handler's recv() returns. The write timeout is long here, so only the close path
    can end the connection within the test -- except for ``close()``, whose close frame waits
    behind the queued frames: that one is the write timeout's to end (it used to be ignored
    once a close had started)."""
    ping = {"ping_interval": 0.1, "ping_timeout": 0.2} if path == "ping_timeout" else {"ping_interval": None}
    write_timeout = 0.5 if path == "close" else 60.0
    lt, server, probe, port = _probe_server(close_timeout=0.2, write_timeout=write_timeout, **ping)
    try:
        c = Client(port, rcvbuf=4096)
        _wait(lambda: probe.sessions)
        s = probe.sessions[0]

        async def flood() -> None:
            for _ in range(3000):  # ~12 MB: the transport pauses, frames wait in the backlog
                s.post("y" * 4000, "t")
            assert s._paused
        lt.call(flood())
        if path == "slow_consumer":
            lt.call(_async(lambda: s.start_close(1011, "slow consumer", discard=True)))
        elif path == "close":
            lt.loop.call_soon_threadsafe(lambda: asyncio.ensure_future(s.close(1000, "bye")))
        elif path == "peer_eof":
            c.sock.shutdown(socket.SHUT_WR)  # half-close: the server sees EOF with data buffered
        # ping_timeout: the client never answers the server's pings
        _wait(lambda: lt.call(_async(lambda: s._over)), 3.0)
        assert not _sweeping(lt, s)
        _wait(lambda: probe.ended == 1, 3.0)
        c.close()
    finally:
        _stop(lt, server)


def test_sweeper_survives_an_exception_in_one_session(caplog):
    """A failing check of one socket is logged and drops that socket; the timers of the others
    keep running."""
    class Fake:
        def __init__(self, fail: bool) -> None:
            self._timing = ws_asyncio._timing(None, 0.02, 0.02, 0.02)
            self._over = False
            self.fail = fail
            self.ticks = 0
            self.aborted = 0

        def _tick(self, now: float) -> None:
            self.ticks += 1
            if self.fail:
                raise RuntimeError("bug in a check")

        def _close_transport(self, abort: bool = False) -> None:
            self.aborted += abort

    async def main() -> tuple[Fake, Fake, bool]:
        sw = ws_asyncio._Sweeper(asyncio.get_running_loop())
        bad, good = Fake(True), Fake(False)
        sw.add(bad)  # type: ignore[arg-type]
        sw.add(good)  # type: ignore[arg-type]
        await asyncio.sleep(0.2)
        task = sw.task
        assert task is not None
        alive = not task.done()
        sw.sessions.clear()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return bad, good, alive
    with caplog.at_level("ERROR", logger="ironflow.ws"):
        bad, good, alive = asyncio.run(main())
    assert alive and good.ticks >= 5
    assert bad.ticks == 1 and bad.aborted == 1
    assert "timer check failed" in caplog.text


def test_recv_returns_none_as_soon_as_the_session_starts_closing():
    """The handler lets go of its resources (subscriptions, consumer-group memberships) when our
    close frame goes out, not only once the peer answered it."""
    lt, server, probe, port = _probe_server(close_timeout=5.0)
    try:
        c = Client(port)
        _wait(lambda: probe.sessions)
        s = probe.sessions[0]
        lt.call(_async(lambda: s.start_close(1011, "slow consumer")))
        _wait(lambda: probe.ended == 1, 1.0)
        assert not lt.call(_async(lambda: s._over))  # the closing handshake still runs
        _, _, op, payload = c.recv_frame()
        assert op == 8 and int.from_bytes(payload[:2], "big") == 1011
        c.send_frame(8, payload[:2])
        assert c.at_eof()
        c.close()
    finally:
        _stop(lt, server)


@pytest.mark.parametrize("how", ["start_close", "close"])
def test_close_frame_behind_a_backlog_waits_for_a_reading_peer(how):
    """The close timeout runs from when our close frame reaches the socket, not while it waits
    behind frames the peer is still reading: a peer that reads slowly gets every frame and
    then the close frame (1000), not a dropped connection (1006)."""
    lt, server, probe, port = _probe_server(close_timeout=0.2, write_timeout=30.0, ping_interval=None)
    try:
        c = Client(port, rcvbuf=4096)
        _wait(lambda: probe.sessions)
        s = probe.sessions[0]
        n = 1500

        async def flood() -> None:
            for i in range(n):
                s.post(f"{i:05d}" + "y" * 4000)
            assert s._backlog is not None
            if how == "start_close":
                s.start_close(1000, "bucket deleted")
            else:
                asyncio.ensure_future(s.close(1000, "bucket deleted"))
        lt.call(flood())
        time.sleep(0.6)  # three close timeouts while the peer has not read yet
        c.sock.settimeout(5)
        for i in range(n):
            op, data = c.recv_message()
            assert op == 1 and data[:5] == f"{i:05d}".encode()
        _, _, op, payload = c.recv_frame()
        assert op == 8 and payload == (1000).to_bytes(2, "big") + b"bucket deleted"
        c.send_frame(8, payload[:2])
        assert c.at_eof()
        _wait(lambda: lt.call(_async(lambda: s._over)), 3.0)
        assert s.close_code == 1000
        c.close()
    finally:
        _stop(lt, server)


def test_busy_handler_does_not_make_a_live_peer_time_out():
    """While the handler takes no message, reading stops at MAX_QUEUE (TCP pushes back), so the
    peer's pongs are not seen: that time is ours, not the peer's, and must not end in a ping
    timeout."""
    gate: list[asyncio.Event] = []
    sessions: list[Any] = []
    got: list[Any] = []

    async def busy(session: Any) -> None:
        sessions.append(session)
        gate.append(asyncio.Event())
        await gate[0].wait()  # busy elsewhere: takes no message meanwhile
        while (msg := await session.recv()) is not None:
            got.append(msg)

    async def http_handler(req: Any) -> Any:
        return websocket_response(req, busy, ping_interval=0.1, ping_timeout=0.2)

    lt = LoopThread()
    server = HttpServer(http_handler, ws_echo.render_error)
    try:
        _, port = lt.call(server.start(HOST, 0))
        c = Client(port)
        _wait(lambda: gate)
        n = ws_asyncio.MAX_QUEUE + 8
        c.sock.sendall(b"".join(encode_frame(1, b"m%d" % i, mask=os.urandom(4)) for i in range(n)))
        _wait(lambda: lt.call(_async(lambda: sessions[0]._reading_paused)))

        def answer_pings(seconds: float) -> None:
            c.sock.settimeout(0.05)
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                try:
                    _, _, op, payload = c.recv_frame()
                except socket.timeout:
                    continue
                assert op != 8, f"closed: {payload!r}"
                if op == 9:
                    c.send_frame(10, payload)
        answer_pings(1.0)  # five ping timeouts while the handler is busy
        lt.loop.call_soon_threadsafe(gate[0].set)
        answer_pings(0.6)
        assert len(got) == n
        assert not lt.call(_async(lambda: sessions[0].closed))
        c.close()
    finally:
        _stop(lt, server)
