#!/usr/bin/env python3
"""Realtime benchmark: WebSocket fan-out, durable KV puts/gets, memory per idle WebSocket.

This is a benchmark, not a test. It starts the real server the way users do
(``python3 ironflow.py serve --dev --host 127.0.0.1 --port P --db TMP/bench.db`` from the repo
root, ``LOG_LEVEL=warn``), waits for ``GET /health`` 200 and measures:

1. ``fan-out``  one publisher (this process, one keep-alive connection, sequential
                ``POST /ironflow.v1.PubSubService/Publish`` Connect JSON calls as fast as they
                return) to N ``/ws`` subscribers of ``topic:bench.t``. The subscribers live in a
                separate process (this script re-executed with ``--ws-client``): raw sockets, a
                hand-rolled handshake and masked frames, one ``selectors`` loop. It counts the
                event frames delivered and the time from the first publish (a timestamp in the
                data) to the last delivery: delivered frames/s = N*M/elapsed. Latency per
                delivery (receive time - send timestamp) and per message (last of its N
                deliveries - send timestamp) as p50/p99. CLOCK_MONOTONIC is shared by processes.
2. ``kv``       durable ``PUT`` and ``GET /api/v1/kv/buckets/b/keys/k`` over 64 keep-alive
                connections (the load generator of ``bench_http.py``, one request in flight per
                connection, every connection on the same key) against raw sqlite3 commits in the
                same run (WAL, synchronous=FULL, one row per commit, sequential, same duration).
3. ``memory``   server RSS (VmRSS) before and after opening N idle ``/ws`` connections,
                (after - before)/N in KiB; goal <= 10 KiB. "Idle" = upgraded and subscribed
                to one pattern (``topic:bench.t``), nothing published. RSS is the process's
                user-space memory; kernel socket buffers are not in it. Measured on a fresh
                server after a small warm-up; a second round on the same server shows the
                marginal cost of N more with the first N still open.
4. ``heap``     the same idle ``/ws`` connections on an in-process copy of the app (a child
                process with ``tracemalloc`` on): traced Python heap per connection, exact
                and allocator-independent. Then the generic WebSocket layer (the
                ``scripts/ws_echo.py`` handler) idle without and with permessage-deflate
                negotiated, and with deflate after one message each way, where the zlib
                contexts exist (context takeover keeps them; ``server_no_context_takeover``
                drops the compressor after each message). ``/ws`` itself never negotiates
                deflate (websocket.md §1.1).

Loopback only, bounded by timeouts. Every process started here is stopped by its PID (SIGTERM,
then SIGKILL) and the temp dir is removed, also on Ctrl-C and errors.

    python3 scripts/bench_realtime.py [--subscribers 1000] [--messages 200] [--seconds 3]
        [--kv-connections 64] [--mem-connections 1000] [--heap-connections 300]
        [--only fanout,kv,memory,heap]

A quick run: ``--subscribers 200 --messages 50 --seconds 1 --mem-connections 300
--heap-connections 100``.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import resource
import select
import selectors
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import threading
import time
import zlib
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_http import (HOST, ROOT, Bench, Interrupted, _on_sigterm, _proc_cpu,  # noqa: E402
                        free_port, load_client, stop_process, wait_healthy)

TOPIC = "bench.t"
BUCKET = "b"
KEY = "k"
VALUE = b"0123456789abcdef" * 4  # 64 bytes
MEM_GOAL_KIB = 10.0
READY_TIMEOUT = 60.0
SUBSCRIBE_MSG = json.dumps({"type": "subscribe",
                            "subscription": {"pattern": f"topic:{TOPIC}", "options": {}}},
                           separators=(",", ":")).encode()


# -- WebSocket client process (child mode) -----------------------------------------------------

def raise_nofile(need: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        target = need if hard == resource.RLIM_INFINITY else min(need, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            pass


def ws_frame(payload: bytes, opcode: int = 1) -> bytes:
    """One masked client frame (FIN set)."""
    mask = os.urandom(4)
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    pad = (4 - n % 4) % 4
    words = int.from_bytes(payload + b"\0" * pad, "big")
    reps = (n + pad) // 4
    full = int.from_bytes(mask * reps, "big") if reps else 0
    masked = (words ^ full).to_bytes(n + pad, "big")[:n] if reps else b""
    return head + mask + masked


class _Ws:
    __slots__ = ("sock", "buf", "open", "subscribed", "closed")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""
        self.open = False  # 101 received
        self.subscribed = False
        self.closed = False


def _emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def ws_client(port: int, n: int, messages: int, idle: bool, timeout: float) -> int:
    """Open ``n`` /ws connections, subscribe each to ``topic:bench.t``, print ``{"ready":..}``.

    Fan-out mode: count event frames until n*messages arrived (or no progress for a while), then
    print the results. Idle mode: wait until stdin says anything (or closes), then close all."""
    raise_nofile(n + 64)
    mono = time.monotonic
    sel = selectors.DefaultSelector()
    conns: list[_Ws] = []
    key = base64.b64encode(os.urandom(16)).decode()
    req = (f"GET /ws HTTP/1.1\r\nHost: {HOST}:{port}\r\nUpgrade: websocket\r\n"
           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
           f"Sec-WebSocket-Version: 13\r\n\r\n").encode()
    sub_frame = ws_frame(SUBSCRIBE_MSG)
    for _ in range(n):
        s = socket.create_connection((HOST, port), timeout=10.0)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(req)
        s.setblocking(False)
        c = _Ws(s)
        conns.append(c)
        sel.register(s, selectors.EVENT_READ, c)

    delivered = 0
    closed = 0
    lat: list[float] = []
    last_per_msg: dict[int, float] = {}
    sent_ts: dict[int, float] = {}
    first_ts = None
    last_rx = 0.0
    want = n * messages
    pending_open = n
    pending_sub = n
    ready_sent = False
    deadline = mono() + READY_TIMEOUT
    last_progress = mono()
    cpu0 = 0.0

    def handle_frames(c: _Ws) -> None:
        nonlocal delivered, closed, first_ts, last_rx, pending_sub
        buf = c.buf
        pos = 0
        end = len(buf)
        while end - pos >= 2:
            b0 = buf[pos]
            ln = buf[pos + 1] & 0x7F
            hp = pos + 2
            if ln == 126:
                if end - pos < 4:
                    break
                ln = int.from_bytes(buf[pos + 2:pos + 4], "big")
                hp = pos + 4
            elif ln == 127:
                if end - pos < 10:
                    break
                ln = int.from_bytes(buf[pos + 2:pos + 10], "big")
                hp = pos + 10
            if end - hp < ln:
                break
            payload = buf[hp:hp + ln]
            pos = hp + ln
            op = b0 & 0x0F
            if op == 1:
                if payload.startswith(b'{"type":"event"'):
                    t = mono()
                    delivered += 1
                    last_rx = t
                    i = payload.find(b'"ts":')
                    if i >= 0:
                        j = payload.find(b"}", i)
                        ts = float(payload[i + 5:j])
                        k = payload.find(b'"n":')
                        mi = int(payload[k + 4:payload.find(b",", k)])
                        lat.append(t - ts)
                        last_per_msg[mi] = t
                        sent_ts[mi] = ts
                        if first_ts is None or ts < first_ts:
                            first_ts = ts
                elif b'"subscription_result"' in payload[:40]:
                    if b'"status":"ok"' not in payload:
                        raise SystemExit(f"subscribe failed: {payload[:300]!r}")
                    if not c.subscribed:
                        c.subscribed = True
                        pending_sub -= 1
                elif b'"type":"error"' in payload[:40]:
                    raise SystemExit(f"server error frame: {payload[:300]!r}")
            elif op == 9:  # ping -> pong
                try:
                    c.sock.send(ws_frame(payload, 0xA))
                except OSError:
                    pass
            elif op == 8:
                if not c.closed:
                    c.closed = True
                    closed += 1
        c.buf = buf[pos:]

    stdin_fd = sys.stdin.fileno() if idle else -1
    stdin_registered = False
    while True:
        now = mono()
        if not ready_sent and pending_sub == 0:
            ready_sent = True
            cpu0 = sum(os.times()[:2])
            _emit({"ready": n})
            last_progress = now
            if idle and not stdin_registered:
                sel.register(stdin_fd, selectors.EVENT_READ, None)
                stdin_registered = True
        if not ready_sent and now > deadline:
            raise SystemExit(f"timeout: {n - pending_open}/{n} upgraded, "
                             f"{n - pending_sub}/{n} subscribed")
        if ready_sent and not idle:
            if delivered >= want:
                break
            if now - last_progress > timeout:
                break
        before = delivered
        for skey, _ in sel.select(0.5):
            c = skey.data
            if c is None:  # stdin (idle mode): anything, or EOF, means close now
                os.read(stdin_fd, 4096)
                stdin_registered = False
                sel.unregister(stdin_fd)
                for cc in conns:
                    try:
                        cc.sock.setblocking(True)
                        cc.sock.settimeout(0.2)
                        cc.sock.send(ws_frame(struct.pack("!H", 1000), 8))
                    except OSError:
                        pass
                    cc.sock.close()
                sel.close()
                _emit({"closed": n})
                return 0
            try:
                data = c.sock.recv(262144)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:
                sel.unregister(c.sock)
                if not c.closed:
                    c.closed = True
                    closed += 1
                if not c.open or not c.subscribed:
                    raise SystemExit("server closed a connection during set-up")
                continue
            c.buf = c.buf + data if c.buf else data
            if not c.open:
                i = c.buf.find(b"\r\n\r\n")
                if i < 0:
                    continue
                if not c.buf.startswith(b"HTTP/1.1 101"):
                    raise SystemExit(f"handshake refused: {c.buf[:200]!r}")
                c.open = True
                pending_open -= 1
                c.buf = c.buf[i + 4:]
                c.sock.send(sub_frame)
            if c.buf:
                handle_frames(c)
        if delivered != before:
            last_progress = mono()
    cpu1 = sum(os.times()[:2])
    for c in conns:
        c.sock.close()
    sel.close()

    lat.sort()
    per_msg = sorted(last_per_msg[i] - sent_ts[i] for i in last_per_msg)

    def pct(v: list[float], p: float) -> float | None:
        return v[min(len(v) - 1, int(p * len(v)))] * 1000 if v else None

    elapsed = (last_rx - first_ts) if first_ts is not None else 0.0
    _emit({"delivered": delivered, "expected": want, "closed": closed, "elapsed": elapsed,
           "fps": delivered / elapsed if elapsed > 0 else 0.0,
           "lat_p50_ms": pct(lat, 0.50), "lat_p99_ms": pct(lat, 0.99),
           "msg_p50_ms": pct(per_msg, 0.50), "msg_p99_ms": pct(per_msg, 0.99),
           "messages_seen": len(last_per_msg), "cli_cpu": cpu1 - cpu0})
    return 0


def _recv_frame(sock: socket.socket, buf: bytearray) -> tuple[int, bytes]:
    """One server frame (blocking): (opcode, payload)."""
    def need(n: int) -> bytes:
        while len(buf) < n:
            data = sock.recv(65536)
            if not data:
                raise EOFError("server closed")
            buf.extend(data)
        out = bytes(buf[:n])
        del buf[:n]
        return out
    b0, b1 = need(2)
    n = b1 & 0x7F
    if n == 126:
        n = int.from_bytes(need(2), "big")
    elif n == 127:
        n = int.from_bytes(need(8), "big")
    return b0 & 0x0F, need(n)


def echo_client(port: int, n: int, deflate: bool, message: bool) -> int:
    """Open ``n`` connections to the echo server (offering permessage-deflate with ``deflate``),
    with ``message`` send one text message (compressed when negotiated) and read its echo, print
    ``{"ready": n, "deflate": negotiated}``, then idle until stdin says anything."""
    raise_nofile(n + 64)
    text = json.dumps({"type": "event", "topic": "bench.t", "data": {"n": 1, "pad": "x" * 100}})
    socks = []
    negotiated = 0
    for _ in range(n):
        s = socket.create_connection((HOST, port), timeout=10.0)
        key = base64.b64encode(os.urandom(16)).decode()
        ext = "Sec-WebSocket-Extensions: permessage-deflate\r\n" if deflate else ""
        s.sendall((f"GET / HTTP/1.1\r\nHost: {HOST}:{port}\r\nUpgrade: websocket\r\n"
                   f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                   f"Sec-WebSocket-Version: 13\r\n{ext}\r\n").encode())
        buf = bytearray()
        while b"\r\n\r\n" not in buf:
            data = s.recv(65536)
            if not data:
                raise SystemExit("echo server closed during the handshake")
            buf.extend(data)
        head, _, rest = bytes(buf).partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            raise SystemExit(f"handshake refused: {head[:200]!r}")
        on = b"permessage-deflate" in head.lower()
        negotiated += on
        buf = bytearray(rest)
        if message:
            if on:
                c = zlib.compressobj(6, zlib.DEFLATED, -15)
                payload = c.compress(text.encode()) + c.flush(zlib.Z_SYNC_FLUSH)
                s.sendall(_rsv1(ws_frame(payload[:-4], 1)))  # RSV1: compressed (RFC 7692)
            else:
                s.sendall(ws_frame(text.encode(), 1))
            op, _ = _recv_frame(s, buf)
            if op != 1:
                raise SystemExit(f"unexpected echo opcode {op}")
        socks.append(s)
    _emit({"ready": n, "deflate": negotiated})
    sys.stdin.readline()
    for s in socks:
        try:
            s.sendall(ws_frame(struct.pack("!H", 1000), 8))
        except OSError:
            pass
        s.close()
    _emit({"closed": n})
    return 0


def _rsv1(frame: bytes) -> bytes:
    return bytes((frame[0] | 0x40,)) + frame[1:]


def heap_server(db_dir: str) -> int:
    """The app in this process with tracemalloc on, plus two echo servers (deflate with and
    without server_no_context_takeover); prints the ports, then answers ``snap`` lines on stdin
    with the traced heap after a full collection."""
    import asyncio
    import gc
    import tracemalloc
    tracemalloc.start(1)
    sys.path.insert(0, ROOT)
    from ironflow_pkg.config import load_settings
    from ironflow_pkg.server import HttpServer
    from ironflow_pkg.websocket import DeflateOptions
    from ironflow_pkg.wiring import build_app
    import ws_echo  # scripts/ws_echo.py: the generic layer's echo handler

    settings = load_settings({"host": HOST, "port": 0, "db_path": os.path.join(db_dir, "heap.db"),
                              "dev": True}, environ={})
    app = build_app(settings)
    app.open()
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    def call(coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, loop).result(30)
    _, port = call(app.start())
    echo = HttpServer(ws_echo.make_handler(deflate=DeflateOptions()), ws_echo.render_error)
    snct = HttpServer(ws_echo.make_handler(deflate=DeflateOptions(server_no_context_takeover=True)),
                      ws_echo.render_error)
    _, echo_port = call(echo.start(HOST, 0))
    _, snct_port = call(snct.start(HOST, 0))
    _emit({"ws": port, "echo": echo_port, "echo_snct": snct_port})
    for line in sys.stdin:
        if line.strip() != "snap":
            break
        gc.collect()
        _emit({"traced": tracemalloc.get_traced_memory()[0]})
    for srv in (echo, snct):
        call(srv.shutdown(1.0))
    call(app.stop())
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    return 0


# -- KV load generator (child mode) ------------------------------------------------------------

def kv_requests() -> tuple[bytes, bytes]:
    path = f"/api/v1/kv/buckets/{BUCKET}/keys/{KEY}"
    put = (f"PUT {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
           f"Content-Length: {len(VALUE)}\r\n\r\n").encode() + VALUE
    get = f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    return put, get


def raw_sqlite(path: str, seconds: float) -> dict[str, Any]:
    """Sequential one-row commits with WAL + synchronous=FULL for ``seconds``."""
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("CREATE TABLE IF NOT EXISTS kv (k TEXT PRIMARY KEY, v BLOB, rev INTEGER)")
        perf = time.perf_counter
        n = 0
        t0 = perf()
        end = t0 + seconds
        while True:
            db.execute("BEGIN IMMEDIATE")
            db.execute("INSERT OR REPLACE INTO kv (k, v, rev) VALUES (?, ?, ?)", (f"k{n % 64}", VALUE, n))
            db.execute("COMMIT")
            n += 1
            if perf() >= end:
                break
        window = perf() - t0
    finally:
        db.close()
    return {"commits": n, "window": window, "cps": n / window}


# -- orchestration -----------------------------------------------------------------------------

def _close_client(proc: subprocess.Popen[Any], timeout: float) -> None:
    """Tell a client process to close its sockets and wait for its acknowledgement line."""
    assert proc.stdin is not None
    proc.stdin.write("close\n")
    proc.stdin.flush()
    _read_line(proc, timeout)


def _read_line(proc: subprocess.Popen[Any], timeout: float) -> dict[str, Any]:
    """Next JSON line from a child's stdout, within ``timeout`` seconds."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise RuntimeError("child process did not answer in time")
        r, _, _ = select.select([proc.stdout], [], [], min(left, 0.5))
        if r:
            line = proc.stdout.readline()
            if not line:
                proc.wait(5)
                raise RuntimeError(f"child process exited (code {proc.returncode})")
            return json.loads(line)
        if proc.poll() is not None:
            raise RuntimeError(f"child process exited (code {proc.returncode})")


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


class RealtimeBench(Bench):
    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__(args)
        self.out: dict[str, Any] = {}

    def start_server(self, name: str) -> tuple[subprocess.Popen[Any], int]:
        port = free_port()
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("IRONFLOW_") and k not in ("LOG_LEVEL", "LOG_FORMAT")}
        env["LOG_LEVEL"] = "warn"
        db_dir = os.path.join(self.tmp, name)
        os.makedirs(db_dir, exist_ok=True)
        log_path = os.path.join(db_dir, "server.log")
        argv = [sys.executable, "ironflow.py", "serve", "--dev", "--host", HOST,
                "--port", str(port), "--db", os.path.join(db_dir, "bench.db")]
        with open(log_path, "wb") as log_file:
            proc = self.spawn(argv, cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT)
        wait_healthy(proc, port, log_path)
        return proc, port

    def stop(self, proc: subprocess.Popen[Any]) -> None:
        try:
            stop_process(proc)
        finally:
            if proc in self.procs:
                self.procs.remove(proc)

    def ws_proc(self, port: int, n: int, messages: int, idle: bool) -> subprocess.Popen[Any]:
        argv = [sys.executable, os.path.abspath(__file__), "--ws-client", str(port),
                "--subscribers", str(n), "--messages", str(messages)]
        if idle:
            argv.append("--idle")
        return subprocess_spawn(self, argv)

    @staticmethod
    def call(conn: http.client.HTTPConnection, method: str, path: str, body: bytes | None,
             ctype: str = "application/json") -> tuple[int, bytes]:
        conn.request(method, path, body=body, headers={"Content-Type": ctype} if body is not None else {})
        r = conn.getresponse()
        return r.status, r.read()

    # 1. fan-out
    def fanout(self) -> None:
        a = self.args
        proc, port = self.start_server("fanout")
        try:
            cli = self.ws_proc(port, a.subscribers, a.messages, idle=False)
            try:
                t0 = time.monotonic()
                ready = _read_line(cli, READY_TIMEOUT + 5)
                print(f"  fan-out: {ready['ready']} subscribers ready in "
                      f"{time.monotonic() - t0:.2f} s", file=sys.stderr, flush=True)
                time.sleep(0.2)
                conn = http.client.HTTPConnection(HOST, port, timeout=30.0)
                conn.connect()
                conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                srv0 = _proc_cpu(proc.pid) or 0.0
                p0 = time.monotonic()
                for i in range(a.messages):
                    body = ('{"topic":"%s","data":{"n":%d,"ts":%.9f}}'
                            % (TOPIC, i, time.monotonic())).encode()
                    st, rb = self.call(conn, "POST", "/ironflow.v1.PubSubService/Publish", body)
                    if st != 200:
                        raise RuntimeError(f"Publish failed: {st} {rb[:200]!r}")
                pub_elapsed = time.monotonic() - p0
                conn.close()
                res = _read_line(cli, 120.0)
                srv1 = _proc_cpu(proc.pid) or 0.0
            finally:
                self.stop(cli)
        finally:
            self.stop(proc)
        res["pub_elapsed"] = pub_elapsed
        res["pub_rate"] = a.messages / pub_elapsed if pub_elapsed > 0 else 0.0
        res["srv_cpu"] = srv1 - srv0
        self.out["fanout"] = res
        print(f"  fan-out: {res['delivered']}/{res['expected']} frames, {res['fps']:.0f} frames/s",
              file=sys.stderr, flush=True)

    # 2. KV
    def kv(self) -> None:
        a = self.args
        raw = raw_sqlite(os.path.join(self.tmp, "raw.db"), a.seconds)
        print(f"  raw sqlite: {raw['cps']:.0f} commits/s", file=sys.stderr, flush=True)
        proc, port = self.start_server("kv")
        try:
            conn = http.client.HTTPConnection(HOST, port, timeout=10.0)
            st, rb = self.call(conn, "POST", "/api/v1/kv/buckets", json.dumps({"name": BUCKET}).encode())
            if st not in (200, 201):
                raise RuntimeError(f"create bucket failed: {st} {rb[:200]!r}")
            st, rb = self.call(conn, "PUT", f"/api/v1/kv/buckets/{BUCKET}/keys/{KEY}", VALUE,
                               "application/octet-stream")
            if st != 200:
                raise RuntimeError(f"put failed: {st} {rb[:200]!r}")
            st, rb = self.call(conn, "GET", f"/api/v1/kv/buckets/{BUCKET}/keys/{KEY}", None)
            if st != 200:
                raise RuntimeError(f"get failed: {st} {rb[:200]!r}")
            conn.close()
            res = {}
            for op in ("put", "get"):
                argv = [sys.executable, os.path.abspath(__file__), "--kv-client", str(port),
                        "--op", op, "--kv-connections", str(a.kv_connections),
                        "--seconds", str(a.seconds), "--server-pid", str(proc.pid)]
                cli = subprocess_spawn(self, argv)
                try:
                    res[op] = _read_line(cli, a.seconds + 30)
                finally:
                    self.stop(cli)
                print(f"  kv {op}: {res[op]['rps']:.0f} req/s ({res[op]['errors']} errors)",
                      file=sys.stderr, flush=True)
        finally:
            self.stop(proc)
        self.out["kv"] = {"raw": raw, **res}

    # 3. memory
    def warm_up(self, proc: subprocess.Popen[Any]) -> None:
        """Let a client process connect, then close and wait for it (touches the code paths)."""
        try:
            _read_line(proc, READY_TIMEOUT + 5)
            _close_client(proc, 15)
        finally:
            self.stop(proc)

    def memory(self) -> None:
        a = self.args
        n = a.mem_connections
        proc, port = self.start_server("memory")
        rounds = []
        try:
            # Warm-up: a few connections open, subscribe, close (code paths and caches touched).
            self.warm_up(self.ws_proc(port, 20, 0, idle=True))
            # Rounds accumulate: round k opens N more while the earlier rounds stay open, so
            # round 2 is the marginal cost on a warmed-up heap (freed memory would otherwise
            # be reused and make a close-and-reopen round look free).
            clients: list[subprocess.Popen[Any]] = []
            try:
                for r in range(a.mem_rounds):
                    time.sleep(1.0)
                    before = rss_kib(proc.pid)
                    cli = self.ws_proc(port, n, 0, idle=True)
                    clients.append(cli)
                    _read_line(cli, READY_TIMEOUT + 5)
                    time.sleep(1.0)  # let the server settle (pending writes, tasks)
                    after = rss_kib(proc.pid)
                    rounds.append({"n": n, "open": n * (r + 1), "before": before, "after": after,
                                   "per_conn": (after - before) / n})
                    print(f"  memory round {r + 1}: {before} -> {after} KiB, "
                          f"{(after - before) / n:.2f} KiB/conn", file=sys.stderr, flush=True)
                for cli in clients:
                    _close_client(cli, 30)
            finally:
                for cli in clients:
                    self.stop(cli)
        finally:
            self.stop(proc)
        self.out["memory"] = rounds

    # 4. Python heap (tracemalloc) per idle connection
    def heap(self) -> None:
        a = self.args
        n = a.heap_connections
        db_dir = os.path.join(self.tmp, "heap")
        os.makedirs(db_dir, exist_ok=True)
        srv = subprocess_spawn(self, [sys.executable, os.path.abspath(__file__), "--heap-server", db_dir])
        rows = []
        try:
            ports = _read_line(srv, READY_TIMEOUT)
            assert srv.stdin is not None

            def traced() -> int:
                srv.stdin.write("snap\n")
                srv.stdin.flush()
                return int(_read_line(srv, 60)["traced"])

            def echo_proc(port: int, k: int, deflate: bool, message: bool) -> subprocess.Popen[Any]:
                argv = [sys.executable, os.path.abspath(__file__), "--echo-client", str(port),
                        "--subscribers", str(k)]
                argv += ["--deflate"] if deflate else []
                argv += ["--send-one"] if message else []
                return subprocess_spawn(self, argv)

            cases = [
                ("/ws, subscribed to one pattern", lambda k: self.ws_proc(ports["ws"], k, 0, idle=True), n, None),
                ("echo handler, no extension", lambda k: echo_proc(ports["echo"], k, False, False), n, 0),
                ("echo, deflate negotiated, no message yet",
                 lambda k: echo_proc(ports["echo"], k, True, False), n, 1),
                ("echo, deflate, 1 message each way",
                 lambda k: echo_proc(ports["echo"], k, True, True), min(n, 100), 1),
                ("  same, server_no_context_takeover",
                 lambda k: echo_proc(ports["echo_snct"], k, True, True), min(n, 100), 1),
            ]
            # Warm-up: code paths, caches and first-use allocations of both servers.
            for _, make, _, _ in cases[:2] + cases[3:4]:
                self.warm_up(make(10))
            for label, make, k, want_deflate in cases:
                time.sleep(0.5)
                before = traced()
                cli = make(k)
                try:
                    ready = _read_line(cli, READY_TIMEOUT + 5)
                    if want_deflate is not None and bool(ready.get("deflate")) != bool(want_deflate):
                        raise RuntimeError(f"{label}: deflate negotiated on {ready.get('deflate')} of {k}")
                    time.sleep(0.5)
                    after = traced()
                    _close_client(cli, 30)
                finally:
                    self.stop(cli)
                rows.append({"case": label, "n": k, "per_conn": (after - before) / k})
                print(f"  heap {label}: {(after - before) / k / 1024:.2f} KiB/conn (n={k})",
                      file=sys.stderr, flush=True)
            srv.stdin.write("quit\n")
            srv.stdin.flush()
            srv.wait(30)
        finally:
            self.stop(srv)
        self.out["heap"] = rows


def subprocess_spawn(bench: Bench, argv: list[str]) -> subprocess.Popen[Any]:
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    bench.procs.append(proc)
    return proc


def _f(v: float | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def report(out: dict[str, Any], args: argparse.Namespace) -> None:
    print()
    print(f"{'measure':<34} {'value':>14}  notes")
    fo = out.get("fanout")
    if fo:
        print(f"{'fan-out delivered frames/s':<34} {fo['fps']:>14.0f}  "
              f"{args.subscribers} subs x {args.messages} msgs, {fo['delivered']}/{fo['expected']} "
              f"delivered in {fo['elapsed']:.3f} s, {fo['closed']} closed")
        print(f"{'fan-out publish calls/s':<34} {fo['pub_rate']:>14.0f}  "
              f"one publisher, sequential Connect JSON, {fo['pub_elapsed']:.3f} s")
        print(f"{'fan-out delivery latency p50/p99':<34} "
              f"{_f(fo['lat_p50_ms'], '.1f') + '/' + _f(fo['lat_p99_ms'], '.1f'):>14}  "
              "ms, publish send -> frame received, every delivery")
        print(f"{'fan-out per-message p50/p99':<34} "
              f"{_f(fo['msg_p50_ms'], '.1f') + '/' + _f(fo['msg_p99_ms'], '.1f'):>14}  "
              f"ms, publish send -> last of its {args.subscribers} deliveries")
        el = fo["elapsed"]
        if el > 0:
            print(f"{'fan-out cpu (srv / subscriber proc)':<34} "
                  f"{'%.0f%% / %.0f%%' % (100 * fo['srv_cpu'] / el, 100 * fo['cli_cpu'] / el):>14}  "
                  f"of one core over the delivery window; srv {1e6 * fo['srv_cpu'] / max(1, fo['delivered']):.1f} us/frame")
    kv = out.get("kv")
    if kv:
        raw = kv["raw"]["cps"]
        print(f"{'raw sqlite commits/s':<34} {raw:>14.0f}  WAL, synchronous=FULL, sequential, "
              f"{kv['raw']['window']:.2f} s")
        for op in ("put", "get"):
            r = kv[op]
            print(f"{'kv ' + op + 's/s':<34} {r['rps']:>14.0f}  {args.kv_connections} conns, "
                  f"p50 {r['p50_ms']:.2f} ms p99 {r['p99_ms']:.2f} ms, {r['errors']} errors")
    mem = out.get("memory")
    if mem:
        for i, r in enumerate(mem, 1):
            print(f"{'memory per idle ws (round %d)' % i:<34} {r['per_conn']:>11.2f} KiB  "
                  f"RSS, +{r['n']} upgraded /ws subscribed to one pattern (open {r['open']}), "
                  f"{r['before']} -> {r['after']} KiB")
    heap = out.get("heap")
    if heap:
        for r in heap:
            print(f"{'heap: ' + r['case']:<48} {r['per_conn'] / 1024:>9.2f} KiB  "
                  f"tracemalloc, n={r['n']}")
    print()
    if kv and kv["raw"]["cps"]:
        raw = kv["raw"]["cps"]
        print(f"ratio kv puts/raw sqlite commits = {kv['put']['rps'] / raw:.2f}x")
        print(f"ratio kv gets/raw sqlite commits = {kv['get']['rps'] / raw:.2f}x")
    if fo and fo.get("pub_rate"):
        print(f"ratio fan-out frames/s / publish calls/s = {fo['fps'] / fo['pub_rate']:.0f}x")
    if mem:
        head = mem[0]["per_conn"]
        print(f"memory per idle ws goal <= {MEM_GOAL_KIB:.0f} KiB: "
              f"{'PASS' if head <= MEM_GOAL_KIB else 'FAIL'} ({head:.2f} KiB RSS, round 1)")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--subscribers", type=int, default=1000, help="fan-out subscribers (1000)")
    p.add_argument("--messages", type=int, default=200, help="fan-out messages published (200)")
    p.add_argument("--seconds", type=float, default=3.0, help="KV / raw sqlite seconds (3)")
    p.add_argument("--kv-connections", type=int, default=64, help="KV keep-alive connections (64)")
    p.add_argument("--mem-connections", type=int, default=1000, help="idle ws connections (1000)")
    p.add_argument("--mem-rounds", type=int, default=2, help="memory rounds on one server (2)")
    p.add_argument("--heap-connections", type=int, default=300,
                   help="idle connections per tracemalloc case (300; 100 at most with zlib state)")
    p.add_argument("--only", default="fanout,kv,memory,heap",
                   help="comma list: fanout,kv,memory,heap")
    p.add_argument("--echo-client", type=int, metavar="PORT", help=argparse.SUPPRESS)
    p.add_argument("--deflate", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--send-one", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--heap-server", metavar="DIR", help=argparse.SUPPRESS)
    p.add_argument("--ws-client", type=int, metavar="PORT", help=argparse.SUPPRESS)
    p.add_argument("--idle", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--kv-client", type=int, metavar="PORT", help=argparse.SUPPRESS)
    p.add_argument("--op", choices=("put", "get"), help=argparse.SUPPRESS)
    p.add_argument("--server-pid", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--progress-timeout", type=float, default=10.0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.subscribers < 1 or args.messages < 0 or args.seconds <= 0 or args.kv_connections < 1 \
            or args.mem_connections < 1 or args.mem_rounds < 1 or args.heap_connections < 1:
        p.error("invalid sizes")

    if args.heap_server is not None:
        return heap_server(args.heap_server)
    if args.echo_client is not None:
        try:
            return echo_client(args.echo_client, args.subscribers, args.deflate, args.send_one)
        except KeyboardInterrupt:
            return 130

    if args.ws_client is not None:
        try:
            return ws_client(args.ws_client, args.subscribers, args.messages, args.idle,
                             args.progress_timeout)
        except KeyboardInterrupt:
            return 130
    if args.kv_client is not None:
        put, get = kv_requests()
        try:
            return load_client(args.kv_client, args.kv_connections, args.seconds,
                               args.server_pid, request=put if args.op == "put" else get)
        except KeyboardInterrupt:
            return 130

    parts = [s.strip() for s in args.only.split(",") if s.strip()]
    bad = set(parts) - {"fanout", "kv", "memory", "heap"}
    if bad:
        p.error(f"unknown --only parts: {', '.join(sorted(bad))}")
    signal.signal(signal.SIGTERM, _on_sigterm)
    raise_nofile(max(args.subscribers, args.mem_connections) + 256)
    bench = RealtimeBench(args)
    print(f"bench_realtime: python {sys.version.split()[0]}, {os.cpu_count()} cpus, "
          f"temp {bench.tmp}", file=sys.stderr, flush=True)
    try:
        if "fanout" in parts:
            bench.fanout()
        if "kv" in parts:
            bench.kv()
        if "memory" in parts:
            bench.memory()
        if "heap" in parts:
            bench.heap()
    except (KeyboardInterrupt, Interrupted):
        print("\nbench_realtime: interrupted, cleaning up", file=sys.stderr)
        return 130
    except (RuntimeError, OSError, ValueError, KeyError) as e:
        print(f"bench_realtime: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    finally:
        bench.cleanup()
    report(bench.out, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
