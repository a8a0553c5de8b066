"""Helpers for tests that talk to a real server over loopback.

* :class:`ServerProcess` runs ``ironflow.py serve`` (or ``dist/ironflow.pyz`` when
  ``IRONFLOW_TEST_PYZ=1``) as a child process, the way users and the interop checks start it.
* :class:`InProcessServer` runs an :class:`~ironflow_pkg.app.App` on a port-0 loopback socket in a
  background thread: fast, for tests of the HTTP surface.
* :func:`raw_exchange` sends raw bytes and collects the raw answer (byte-exact protocol tests).
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYZ = os.path.join(ROOT, "dist", "ironflow.pyz")


def server_argv() -> list[str]:
    if os.environ.get("IRONFLOW_TEST_PYZ") == "1":
        return [sys.executable, PYZ]
    return [sys.executable, os.path.join(ROOT, "ironflow.py")]


class ServerProcess:
    """A server child process on a free port (``--port 0``; the port is read from its log)."""

    def __init__(self, db: str, *, dev: bool = True, env: dict[str, str] | None = None,
                 args: list[str] | None = None, start_timeout: float = 15.0) -> None:
        self.db = db
        self.dev = dev
        self.extra_env = env or {}
        self.args = args or []
        self.start_timeout = start_timeout
        self.proc: subprocess.Popen[str] | None = None
        self.port = 0
        self.lines: list[str] = []
        self._reader: threading.Thread | None = None
        self._listening = threading.Event()

    def start(self) -> ServerProcess:
        argv = server_argv() + ["serve", "--host", "127.0.0.1", "--port", "0", "--db", self.db]
        if self.dev:
            argv.append("--dev")
        argv += self.args
        env = {k: v for k, v in os.environ.items() if not k.startswith("IRONFLOW_")}
        env.update({"PYTHONUNBUFFERED": "1", "LOG_FORMAT": "json"})
        env.update(self.extra_env)
        self.proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self._listening.clear()
        self._reader = threading.Thread(target=self._read_output, daemon=True)
        self._reader.start()
        if not self._listening.wait(self.start_timeout):
            self.kill()
            raise RuntimeError("server did not start:\n" + "\n".join(self.lines[-20:]))
        return self

    def _read_output(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            line = line.rstrip("\n")
            self.lines.append(line)
            if '"listening"' in line:
                try:
                    self.port = int(json.loads(line)["port"])
                except (ValueError, KeyError):
                    continue
                self._listening.set()

    def logs(self) -> list[dict[str, Any]]:
        out = []
        for line in list(self.lines):
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
        return out

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None, timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
        return http_request(self.port, method, path, body, headers, timeout)

    def terminate(self, timeout: float = 15.0) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        if self._reader:
            self._reader.join(5)
        return code

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        if self._reader:
            self._reader.join(5)

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.kill()


def http_request(port: int, method: str, path: str, body: bytes | None = None,
                 headers: dict[str, str] | None = None,
                 timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
    finally:
        conn.close()


class InProcessServer:
    """An App serving on 127.0.0.1:<free port> from a background event loop thread."""

    def __init__(self, settings: Any) -> None:
        from ironflow_pkg.wiring import build_app
        self.app = build_app(settings)
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> InProcessServer:
        self.app.open()
        self._thread.start()
        _, self.port = asyncio.run_coroutine_threadsafe(self.app.start(), self.loop).result(10)
        return self

    def call(self, coro: Any, timeout: float = 10.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None, timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
        return http_request(self.port, method, path, body, headers, timeout)

    def __exit__(self, *exc: object) -> None:
        try:
            self.call(self.app.stop(), 30)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
            self.loop.close()


def make_settings(tmp_path: Any, **kw: Any) -> Any:
    from ironflow_pkg.config import load_settings
    flags = {"host": "127.0.0.1", "port": 0, "db_path": str(tmp_path / "ironflow.db"), "dev": True}
    flags.update(kw)
    return load_settings(flags, environ={})


def raw_exchange(port: int, data: bytes | list[bytes], *, timeout: float = 3.0,
                 pause: float = 0.0, shutdown_write: bool = False) -> bytes:
    """Send ``data`` (pieces sent separately, ``pause`` seconds apart) and read until the server
    closes or ``timeout`` passes with no bytes."""
    pieces = [data] if isinstance(data, bytes) else data
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    out = bytearray()
    try:
        for p in pieces:
            s.sendall(p)
            if pause:
                time.sleep(pause)
        if shutdown_write:
            s.shutdown(socket.SHUT_WR)
        while True:
            try:
                got = s.recv(65536)
            except (socket.timeout, ConnectionResetError):
                break
            if not got:
                break
            out += got
    finally:
        s.close()
    return bytes(out)


def split_responses(raw: bytes) -> list[tuple[int, dict[str, str], bytes]]:
    """Split a byte stream of Content-Length framed responses (test helper, not a parser)."""
    out = []
    while raw:
        head, sep, rest = raw.partition(b"\r\n\r\n")
        if not sep:
            raise AssertionError(f"incomplete response: {raw[:200]!r}")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        n = int(headers.get("content-length", "0"))
        out.append((status, headers, rest[:n]))
        raw = rest[n:]
    return out
