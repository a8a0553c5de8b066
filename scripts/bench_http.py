#!/usr/bin/env python3
"""HTTP/1.1 throughput benchmark: ironflow's ``GET /health`` against a bare asyncio server.

This is a benchmark, not a test. It runs three targets one after the other, each alone on the
machine with the load generator:

* ``baseline``      a bare ``asyncio.start_server`` HTTP/1.1 server (this script re-executed
                    with ``--baseline-server PORT``): ``readuntil(b"\\r\\n\\r\\n")`` and a fixed
                    ``{"status":"ok"}`` answer with Content-Length, keep-alive, TCP_NODELAY.
                    The "fastest reasonable pure-asyncio" reference.
* ``ironflow/warn`` ``python3 ironflow.py serve --dev ...`` with ``LOG_LEVEL=warn`` (the
                    per-request access log, at info level, is off). The headline figure.
* ``ironflow/info`` the same with the default ``LOG_LEVEL`` (info: one access-log line per
                    request, written to a file in the temp dir).

The load generator is this script re-executed with ``--client``: one process, one ``selectors``
loop over N keep-alive connections (no pipelining: one request in flight per connection), so the
client stays cheap and client and server each get a core of a 2-core machine. It warms up for
0.5 s, then counts completed requests for ``--seconds`` and reports req/s, p50/p99 latency and
the CPU time used in the window (``srv cpu%``, ``cli cpu%``; ``other%`` is what every other
process on the machine used: when it is high the req/s figures are noise). ``srv us/req`` is
server CPU per request, the figure least sensitive to the client and to other load.

Loopback only. Every process started here is stopped by its PID (SIGTERM, then SIGKILL after a
timeout) and the temp dir is removed, also on Ctrl-C and errors.

    python3 scripts/bench_http.py [--seconds 3] [--connections 32] [--skip-baseline]
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOST = "127.0.0.1"
WARMUP = 0.5
GOAL = 0.60
START_TIMEOUT = 15.0
STOP_TIMEOUT = 5.0
#: Share of one core used by other processes during a window above which figures are flagged.
NOISY_OTHER = 0.25
REQUEST = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"


# -- baseline server (child mode) ------------------------------------------------------------

BASELINE_BODY = b'{"status":"ok"}'
BASELINE_RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                     b"Content-Length: " + str(len(BASELINE_BODY)).encode() + b"\r\n\r\n"
                     + BASELINE_BODY)


async def _baseline_conn(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        while True:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(BASELINE_RESPONSE)
            await writer.drain()
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, OSError):
        pass
    finally:
        writer.close()


async def _baseline_main(port: int) -> None:
    server = await asyncio.start_server(_baseline_conn, HOST, port, reuse_address=True, backlog=1024)
    parent = os.getppid()
    async with server:
        while os.getppid() == parent:  # exit by itself should the benchmark die without cleanup
            await asyncio.sleep(0.5)


def baseline_server(port: int) -> int:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    # asyncio receives into a fresh 256 KiB buffer per read. glibc serves that size with mmap
    # until a large mmapped block has been freed once (its threshold is dynamic), so in a fresh
    # small process every read costs mmap + mremap + munmap and the reference runs at about half
    # speed, depending on luck. Freeing one 1 MiB block settles the threshold (ironflow's larger
    # start-up does the same by itself), making the reference stable.
    bytearray(1 << 20)
    try:
        asyncio.run(_baseline_main(port))
    except KeyboardInterrupt:
        pass
    return 0


# -- load generator (child mode) -------------------------------------------------------------

def _proc_cpu(pid: int) -> float | None:
    """CPU seconds (user + system) used so far by ``pid``, from /proc (Linux); None elsewhere."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def _system_busy() -> float | None:
    """CPU seconds all CPUs spent busy so far (from /proc/stat, Linux); None elsewhere."""
    try:
        with open("/proc/stat", "rb") as f:
            v = [int(x) for x in f.readline().split()[1:9]]
        # user + nice + system + steal; irq/softirq time is left out because on loopback most of
        # it is this benchmark's own packet processing.
        return (v[0] + v[1] + v[2] + v[7]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


class _ClientConn:
    __slots__ = ("sock", "buf", "need", "t0", "ok")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""
        self.need = -1  # total bytes of the current response once its head is parsed
        self.t0 = 0.0
        self.ok = True  # status 200; other answers count as errors, not as requests


def load_client(port: int, conns: int, seconds: float, server_pid: int,
                request: bytes = REQUEST) -> int:
    """Drive ``conns`` keep-alive connections sending ``request`` (no pipelining); print one
    JSON line of results on stdout."""
    perf = time.perf_counter
    sel = selectors.DefaultSelector()
    clients: list[_ClientConn] = []
    for _ in range(conns):
        s = socket.create_connection((HOST, port), timeout=5.0)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.setblocking(False)
        c = _ClientConn(s)
        clients.append(c)
        sel.register(s, selectors.EVENT_READ, c)

    latencies: list[float] = []
    record = latencies.append
    errors = 0
    t_start = perf()
    warm_end = t_start + WARMUP
    end = warm_end + seconds
    measuring = False
    srv0 = cli0 = 0.0
    sys0: float | None = None
    m_start = warm_end
    for c in clients:
        c.t0 = perf()
        c.sock.send(request)

    open_conns = len(clients)
    now = perf()
    while now < end and open_conns:
        events = sel.select(0.5)
        for key, _ in events:
            c = key.data
            try:
                data = c.sock.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:  # the server closed the connection: an error, and one connection fewer
                errors += 1
                sel.unregister(c.sock)
                c.sock.close()
                open_conns -= 1
                continue
            buf = c.buf + data if c.buf else data
            if c.need < 0:
                i = buf.find(b"\r\n\r\n")
                if i < 0:
                    c.buf = buf
                    continue
                head = buf[:i].lower()
                c.ok = head[9:12] == b"200"
                j = head.find(b"\r\ncontent-length:")
                if j < 0:
                    raise SystemExit(f"response without Content-Length: {buf[:i]!r}")
                k = head.find(b"\r\n", j + 2)
                c.need = i + 4 + int(head[j + 17:k if k >= 0 else len(head)])
            if len(buf) < c.need:
                c.buf = buf
                continue
            if len(buf) > c.need:
                raise SystemExit("unexpected bytes after a response (no pipelining was asked for)")
            t = perf()
            if t >= warm_end:
                if not measuring:  # first completion in the window: take the CPU baselines
                    measuring = True
                    m_start = t
                    srv0 = _proc_cpu(server_pid) or 0.0
                    cli0 = sum(os.times()[:2])
                    sys0 = _system_busy()
                if t < end:
                    if c.ok:
                        record(t - c.t0)
                    else:
                        errors += 1
            c.buf = b""
            c.need = -1
            c.t0 = t
            try:
                c.sock.send(request)
            except OSError:
                errors += 1
                sel.unregister(c.sock)
                c.sock.close()
                open_conns -= 1
        now = perf()
    m_end = perf()
    srv1 = _proc_cpu(server_pid)
    cli1 = sum(os.times()[:2])
    sys1 = _system_busy()
    for c in clients:
        try:
            sel.unregister(c.sock)
        except (KeyError, ValueError):
            pass
        c.sock.close()
    sel.close()

    window = m_end - m_start
    latencies.sort()
    n = len(latencies)

    def pct(p: float) -> float:
        return latencies[min(n - 1, int(p * n))] * 1000 if n else float("nan")

    srv_cpu = srv1 - srv0 if srv1 is not None and measuring else None
    cli_cpu = cli1 - cli0 if measuring else None
    other = None  # CPU used by everything else on the machine: a noise indicator
    if sys0 is not None and sys1 is not None and srv_cpu is not None and cli_cpu is not None:
        other = max(0.0, (sys1 - sys0) - srv_cpu - cli_cpu)
    print(json.dumps({
        "requests": n, "window": window, "rps": n / window if window > 0 else 0.0,
        "p50_ms": pct(0.50), "p99_ms": pct(0.99), "errors": errors,
        "srv_cpu": srv_cpu, "cli_cpu": cli_cpu, "other_cpu": other,
    }), flush=True)
    return 0


# -- orchestration -----------------------------------------------------------------------------

class Interrupted(Exception):
    pass


def _on_sigterm(signum: int, frame: Any) -> None:
    raise Interrupted(f"signal {signum}")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def stop_process(proc: subprocess.Popen[Any]) -> None:
    """SIGTERM by PID, then SIGKILL if it has not exited within STOP_TIMEOUT."""
    if proc.poll() is not None:
        return
    try:
        proc.terminate()
        proc.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(STOP_TIMEOUT)
    except KeyboardInterrupt:
        proc.kill()
        proc.wait(STOP_TIMEOUT)
        raise


def wait_healthy(proc: subprocess.Popen[Any], port: int, log_path: str | None) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    last = "no answer"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            conn = http.client.HTTPConnection(HOST, port, timeout=1.0)
            try:
                conn.request("GET", "/health")
                resp = conn.getresponse()
                resp.read()
                if resp.status == 200:
                    return
                last = f"status {resp.status}"
            finally:
                conn.close()
        except (OSError, http.client.HTTPException) as e:
            last = f"{type(e).__name__}: {e}"
        time.sleep(0.05)
    tail = ""
    if log_path and os.path.exists(log_path):
        with open(log_path, errors="replace") as f:
            tail = "".join(line[:400].rstrip("\n") + "\n" for line in f.readlines()[-5:])
    state = f"exited with {proc.returncode}" if proc.poll() is not None else "still starting"
    raise RuntimeError(f"server on port {port} not healthy within {START_TIMEOUT:.0f} s "
                       f"({state}; last: {last})\n{tail}")


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.procs: list[subprocess.Popen[Any]] = []
        self.tmp = tempfile.mkdtemp(prefix="ironflow-bench-http-")
        self.results: list[dict[str, Any]] = []

    def spawn(self, argv: list[str], **kw: Any) -> subprocess.Popen[Any]:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, **kw)
        self.procs.append(proc)
        return proc

    def cleanup(self) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not skip clean-up
        for proc in reversed(self.procs):
            try:
                stop_process(proc)
            except Exception:  # keep going: every process must be reaped
                try:
                    proc.kill()
                except OSError:
                    pass
        self.procs.clear()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def run_client(self, port: int, server_pid: int) -> dict[str, Any]:
        a = self.args
        argv = [sys.executable, os.path.abspath(__file__), "--client", str(port),
                "--connections", str(a.connections), "--seconds", str(a.seconds),
                "--server-pid", str(server_pid)]
        proc = self.spawn(argv, stdout=subprocess.PIPE, text=True)
        try:
            out, _ = proc.communicate(timeout=WARMUP + a.seconds + 15)
        except subprocess.TimeoutExpired:
            raise RuntimeError("load generator did not finish in time") from None
        finally:
            stop_process(proc)
            self.procs.remove(proc)
        if proc.returncode != 0:
            raise RuntimeError(f"load generator failed (exit {proc.returncode})")
        return json.loads(out.strip().splitlines()[-1])

    def run_target(self, name: str, argv: list[str], env: dict[str, str] | None, port: int,
                   cwd: str | None = None) -> dict[str, Any]:
        log_path = os.path.join(self.tmp, f"{name.replace('/', '-')}.log")
        with open(log_path, "wb") as log_file:
            proc = self.spawn(argv, cwd=cwd, env=env, stdout=log_file, stderr=subprocess.STDOUT)
        try:
            wait_healthy(proc, port, log_path)
            res = self.run_client(port, proc.pid)
        finally:
            stop_process(proc)
            self.procs.remove(proc)
        res["target"] = name
        res["log_bytes"] = os.path.getsize(log_path)
        self.results.append(res)
        print(f"  {name:<15} {res['rps']:>10.0f} req/s", file=sys.stderr, flush=True)
        return res

    def baseline(self) -> dict[str, Any]:
        port = free_port()
        argv = [sys.executable, os.path.abspath(__file__), "--baseline-server", str(port)]
        return self.run_target("baseline", argv, None, port)

    def ironflow(self, level: str | None) -> dict[str, Any]:
        port = free_port()
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("IRONFLOW_") and k not in ("LOG_LEVEL", "LOG_FORMAT")}
        if level is not None:
            env["LOG_LEVEL"] = level
        argv = [sys.executable, "ironflow.py", "serve", "--dev", "--host", HOST,
                "--port", str(port), "--db", os.path.join(self.tmp, "bench.db")]
        return self.run_target(f"ironflow/{level or 'info'}", argv, env, port, cwd=ROOT)


def pct_of(v: float | None, window: float) -> float | None:
    return None if v is None or window <= 0 else 100 * v / window


def _fmt(v: float | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def report(results: list[dict[str, Any]], args: argparse.Namespace) -> None:
    print()
    print(f"{'target':<15} {'conns':>5} {'seconds':>7} {'requests':>9} {'req/s':>9} "
          f"{'p50 ms':>7} {'p99 ms':>7} {'errors':>6} {'srv cpu%':>8} {'cli cpu%':>8} "
          f"{'other%':>6} {'srv us/req':>10}")
    for r in results:
        w = r["window"]
        srv = r.get("srv_cpu")
        cli = r.get("cli_cpu")
        oth = r.get("other_cpu")
        us_req = 1e6 * srv / r["requests"] if srv is not None and r["requests"] else None
        print(f"{r['target']:<15} {args.connections:>5} {w:>7.2f} {r['requests']:>9} "
              f"{r['rps']:>9.0f} {r['p50_ms']:>7.3f} {r['p99_ms']:>7.3f} {r['errors']:>6} "
              f"{_fmt(pct_of(srv, w), '8.0f'):>8} {_fmt(pct_of(cli, w), '8.0f'):>8} "
              f"{_fmt(pct_of(oth, w), '6.0f'):>6} {_fmt(us_req, '10.1f'):>10}")
    noisy = [f"{r['target']} {pct_of(r['other_cpu'], r['window']):.0f}%" for r in results
             if r.get("other_cpu") is not None and r["other_cpu"] / r["window"] > NOISY_OTHER]
    if noisy:
        print(f"note: other processes used CPU during the runs ({', '.join(noisy)} of a core); "
              "req/s is unreliable, srv us/req less so; rerun on a quiet machine")
    print()
    by = {r["target"]: r for r in results}
    base = by.get("baseline")
    if base is None or not base["rps"]:
        print("ratio ironflow/baseline = n/a (baseline skipped)")
        print(f"goal >= {GOAL:.2f}x: n/a")
        return
    warn = by["ironflow/warn"]["rps"] / base["rps"]
    info = by["ironflow/info"]["rps"] / base["rps"]
    print(f"ratio ironflow/baseline = {warn:.2f}x   (LOG_LEVEL=warn, headline)")
    print(f"ratio ironflow/baseline = {info:.2f}x   (LOG_LEVEL=info default, access log on)")
    cost = [(name, by[name]) for name in ("baseline", "ironflow/warn", "ironflow/info")]
    if all(r.get("srv_cpu") and r["requests"] for _, r in cost):
        us = {name: 1e6 * r["srv_cpu"] / r["requests"] for name, r in cost}
        print("server CPU per request: " + ", ".join(
            f"{name} {v:.1f} us ({v / us['baseline']:.1f}x)" for name, v in us.items()))
    print(f"goal >= {GOAL:.2f}x: {'PASS' if warn >= GOAL else 'FAIL'}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=3.0, help="measured seconds per target (3)")
    p.add_argument("--connections", type=int, default=32, help="keep-alive connections (32)")
    p.add_argument("--skip-baseline", action="store_true", help="measure ironflow only")
    p.add_argument("--baseline-server", type=int, metavar="PORT", help=argparse.SUPPRESS)
    p.add_argument("--client", type=int, metavar="PORT", help=argparse.SUPPRESS)
    p.add_argument("--server-pid", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.seconds <= 0 or args.connections < 1:
        p.error("--seconds must be > 0 and --connections >= 1")

    if args.baseline_server is not None:
        return baseline_server(args.baseline_server)
    if args.client is not None:
        try:
            return load_client(args.client, args.connections, args.seconds, args.server_pid)
        except KeyboardInterrupt:
            return 130

    signal.signal(signal.SIGTERM, _on_sigterm)
    bench = Bench(args)
    print(f"bench: {args.connections} connections, {WARMUP} s warm-up + {args.seconds} s per "
          f"target, GET /health on {HOST}, python {sys.version.split()[0]}, "
          f"{os.cpu_count()} cpus", file=sys.stderr, flush=True)
    try:
        if not args.skip_baseline:
            bench.baseline()
        bench.ironflow("warn")
        bench.ironflow(None)
    except (KeyboardInterrupt, Interrupted):
        print("\nbench: interrupted, cleaning up", file=sys.stderr)
        return 130
    except RuntimeError as e:
        print(f"bench: {e}", file=sys.stderr)
        return 1
    finally:
        bench.cleanup()
    report(bench.results, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
