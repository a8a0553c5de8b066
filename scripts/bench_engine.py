#!/usr/bin/env python3
"""Engine benchmark: durable events/s, durable steps/s, emit-to-poll latency, timer lateness.

This is a benchmark, not a test. Loopback only, stdlib only. It starts the real server the way
users do, from the repository root::

    LOG_LEVEL=warn python3 ironflow.py serve --dev --host 127.0.0.1 --port <free> --db <tmp>/bench.db

waits for ``GET /health`` == 200, and drives it with lean load generators, each a separate
process (this script re-executed with ``--phase NAME``) so that server and client each get a core
of a 2-core machine. The clients hand-roll HTTP/1.1 on keep-alive connections (a ``selectors``
loop over raw sockets for the throughput phase, asyncio streams for the worker simulations, raw
blocking sockets for the latency probe) and parse only the status line and Content-Length.

Phases (figures, goals):

``baseline``  ``GET /health``-style requests against a bare ``asyncio.start_server`` HTTP/1.1
              server (``bench_http.baseline_server``), same client, same connection count: the
              "fastest reasonable pure-asyncio" reference for the events ratio.
``events``    ``POST /api/v1/events {"name":"bench.e","data":{"i":n}}`` (no function matches)
              over ``--connections`` keep-alive connections for ``--seconds``: durable events/s
              (every 200 is after the journal commit) and its ratio to the baseline. Goal >= 0.5.
``steps``     function ``bench`` (RegisterFunction, Connect JSON), worker ``w1``
              (max_concurrent_jobs = --runs), ``--runs`` ``bench.go`` events; then a simulated
              worker (asyncio, one poll connection + ``--worker-conns`` request connections)
              polls ``available=<runs>&wait=1``, acks every job, sends ``--steps`` ``progress``
              checkpoints each carrying one new step, then ``completed``. steps/s = runs*steps /
              (first poll sent .. last report answered). Goal >= 5,000 steps/s.
``latency``   function ``benchlat`` and worker ``w2``: the worker holds ``GET ...?available=1&
              wait=20``; the client emits ``bench.lat`` on another connection and measures the
              time until the poll's 200 has arrived (also the emit's own 200); ``--samples``
              times (after 10 warm-up rounds), each job then acked and completed. Goal p50 <= 1 ms,
              p99 <= 5 ms.
``timers``    function ``nap`` and worker ``w3`` (max_concurrent_jobs 4000): ``--sleepers`` runs
              (``bench.nap`` events over 64 connections), whose first segments (polled
              ``available=1000``) report ``yielded`` with a sleep. A calibration batch (5 %, 400 to
              2000 runs, extra to ``--sleepers`` unless ``--wakers`` leaves that many over) sleeps
              for an hour: timing its yields tells when the creation will be over, and the wake
              window of ``--window`` s starts ``--lead`` s after that. The ``--wakers`` runs (all
              by default) get ``until`` values spread evenly over the window. For every
              re-dispatched job: lateness = (its poll response arrived) - (its ``until``); woken
              jobs are then reported ``completed``. Creation segments are reported without an ack
              (worker-protocol.md §2.7: a report with a valid fence is accepted for a job that was
              never acked). Goal p99 <= 20 ms. When all sleepers wake within a few seconds the
              server's wake dispatch rate, not timer precision, sets the lateness; ``--wakers N``
              keeps the others asleep (1 h) and measures timer precision with that many sleeping.
              The default is 50,000 sleepers: 100,000 took about 3 minutes to create on the
              (busy) 2-core development machine, over the 5-minute budget of a default run.

``srv cpu%``/``cli cpu%`` are the CPU used by the server / the load generator in the measured
window, ``other%`` what every other process used (when high, the figures are noise);
``srv us/op`` is server CPU per operation. With ``--metrics`` the server runs with
``IRONFLOW_METRICS_ENABLED=true`` (off by default, as users start it) and the table also shows the
journal's group commits per phase (from ``/metrics``). ``--profile PATH`` runs the server under
``python3 -m cProfile -o PATH`` (event-loop thread only; slows it down) for bottleneck hunting.

Every process started here is stopped by its PID (SIGTERM, then SIGKILL) and the temp dir is
removed, also on Ctrl-C and errors; children also get SIGTERM should this script die (Linux
PR_SET_PDEATHSIG).

    python3 scripts/bench_engine.py [--seconds 3] [--connections 64] [--runs 100] [--steps 20]
        [--worker-conns 16] [--samples 200] [--sleepers 50000] [--wakers N] [--window 5]
        [--phases events,steps,latency,timers] [--skip-baseline] [--metrics] [--profile PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import select
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_http import (  # noqa: E402  (the sibling benchmark; reused, not edited)
    HOST, _proc_cpu, _system_busy, baseline_server, free_port, stop_process, wait_healthy,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WARMUP = 0.5
PHASES = ("events", "steps", "latency", "timers")
GOAL_EVENTS_RATIO = 0.5
GOAL_STEPS = 5000.0
GOAL_LAT_P50_MS = 1.0
GOAL_LAT_P99_MS = 5.0
GOAL_TIMER_P99_MS = 20.0
NOISY_OTHER = 0.25
#: Creating this many sleepers in more than SLOW_CREATION seconds is flagged in the report.
SLOW_CREATION = 180.0
TIMER_POLL_BATCH = 1000
TIMER_WORKER_CAP = 4000
TIMER_EMIT_CONNS = 64
LATENCY_WARMUP = 10


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def pct(sorted_values: list[float], p: float) -> float:
    n = len(sorted_values)
    return sorted_values[min(n - 1, int(p * n))] if n else float("nan")


class CpuWindow:
    """Server / client / other-process CPU seconds over a window (Linux /proc; None elsewhere)."""

    def __init__(self, server_pid: int) -> None:
        self.pid = server_pid
        self.srv0 = _proc_cpu(server_pid)
        self.cli0 = sum(os.times()[:2])
        self.sys0 = _system_busy()
        self.t0 = time.perf_counter()

    def done(self) -> dict[str, Any]:
        srv1, cli1, sys1 = _proc_cpu(self.pid), sum(os.times()[:2]), _system_busy()
        srv = srv1 - self.srv0 if srv1 is not None and self.srv0 is not None else None
        cli = cli1 - self.cli0
        other = None
        if srv is not None and sys1 is not None and self.sys0 is not None:
            other = max(0.0, (sys1 - self.sys0) - srv - cli)
        return {"srv_cpu": srv, "cli_cpu": cli, "other_cpu": other,
                "cpu_window": time.perf_counter() - self.t0}


def _content_length(head: bytes) -> int:
    i = head.find(b"\r\ncontent-length:")
    if i < 0:
        i = head.lower().find(b"\r\ncontent-length:")
        if i < 0:
            return 0
    j = head.find(b"\r\n", i + 2)
    return int(head[i + 17:j if j >= 0 else len(head)])


def _request(method: str, path: str, body: bytes | None = None) -> bytes:
    if body is None:
        return (f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\r\n"
                ).encode()
    return (f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def rfc3339_ms(t: float) -> tuple[str, float]:
    """RFC 3339 UTC ms ``Z`` text for ``t`` and the exact instant that text denotes."""
    ms = int(round(t * 1000))
    s, frac = divmod(ms, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(s)) + f".{frac:03d}Z", ms / 1000.0


# -- throughput client (child mode): baseline GET or durable emits ------------------------------

EMIT_HEAD = b"POST /api/v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: "
GET_REQUEST = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"


def throughput_client(port: int, conns: int, seconds: float, server_pid: int, emit: bool) -> dict[str, Any]:
    """``conns`` keep-alive connections, one request in flight each, one ``selectors`` loop."""
    perf = time.perf_counter
    counter = 0

    def next_request() -> bytes:
        nonlocal counter
        if not emit:
            return GET_REQUEST
        counter += 1
        body = b'{"name":"bench.e","data":{"i":%d}}' % counter
        return EMIT_HEAD + b"%d\r\n\r\n" % len(body) + body

    sel = selectors.DefaultSelector()
    socks = []
    state: dict[socket.socket, list[Any]] = {}  # sock -> [buf, need, t0]
    for _ in range(conns):
        s = socket.create_connection((HOST, port), timeout=5.0)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.setblocking(False)
        socks.append(s)
        state[s] = [b"", -1, 0.0]
        sel.register(s, selectors.EVENT_READ)
    latencies: list[float] = []
    record = latencies.append
    errors = 0
    warm_end = perf() + WARMUP
    end = warm_end + seconds
    cpu: CpuWindow | None = None
    m_start = warm_end
    for s in socks:
        state[s][2] = perf()
        s.send(next_request())
    open_conns = len(socks)
    now = perf()
    while now < end and open_conns:
        for key, _ in sel.select(0.5):
            s = key.fileobj
            st = state[s]
            try:
                data = s.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:
                errors += 1
                sel.unregister(s)
                open_conns -= 1
                continue
            buf = st[0] + data if st[0] else data
            if st[1] < 0:
                i = buf.find(b"\r\n\r\n")
                if i < 0:
                    st[0] = buf
                    continue
                if buf[9:12] != b"200":
                    errors += 1
                st[1] = i + 4 + _content_length(buf[:i + 2])
            if len(buf) < st[1]:
                st[0] = buf
                continue
            t = perf()
            if t >= warm_end:
                if cpu is None:
                    cpu = CpuWindow(server_pid)
                    m_start = t
                if t < end:
                    record(t - st[2])
            st[0], st[1], st[2] = b"", -1, t
            s.send(next_request())
        now = perf()
    m_end = perf()
    res = cpu.done() if cpu is not None else {}
    for s in socks:
        s.close()
    sel.close()
    latencies.sort()
    window = m_end - m_start
    n = len(latencies)
    res.update({"ops": n, "window": window, "rate": n / window if window > 0 else 0.0,
                "p50_ms": pct(latencies, 0.5) * 1000, "p99_ms": pct(latencies, 0.99) * 1000,
                "errors": errors, "conns": conns})
    return res


# -- asyncio HTTP/1.1 client pieces (worker simulations) ----------------------------------------

class AConn:
    """One keep-alive connection; one request at a time; hand-rolled HTTP/1.1."""

    __slots__ = ("r", "w")

    def __init__(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        self.r, self.w = r, w

    @classmethod
    async def open(cls, port: int) -> "AConn":
        r, w = await asyncio.open_connection(HOST, port, limit=1 << 20)
        w.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(r, w)

    async def call(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        self.w.write(_request(method, path, body))
        head = await self.r.readuntil(b"\r\n\r\n")
        n = _content_length(head)
        data = await self.r.readexactly(n) if n else b""
        return int(head[9:12]), data

    def close(self) -> None:
        self.w.close()


class Pool:
    def __init__(self, conns: list[AConn]) -> None:
        self.conns = conns
        self.q: asyncio.Queue[AConn] = asyncio.Queue()
        for c in conns:
            self.q.put_nowait(c)

    @classmethod
    async def open(cls, port: int, n: int) -> "Pool":
        return cls([await AConn.open(port) for _ in range(n)])

    async def call(self, method: str, path: str, body: bytes | None = None,
                   ok: tuple[int, ...] = (200,), times: list[float] | None = None) -> bytes:
        """One request on a free connection; ``times`` gets its duration (queueing excluded)."""
        c = await self.q.get()
        try:
            t = time.perf_counter()
            status, data = await c.call(method, path, body)
            if times is not None:
                times.append(time.perf_counter() - t)
        finally:
            self.q.put_nowait(c)
        if status not in ok:
            raise RuntimeError(f"{method} {path} -> {status}: {data[:300]!r}")
        return data

    def close(self) -> None:
        for c in self.conns:
            c.close()


async def setup_function(pool: Pool, fid: str, event: str, wid: str, cap: int) -> None:
    await pool.call("POST", "/ironflow.v1.IronflowService/RegisterFunction",
                    json.dumps({"id": fid, "triggers": [{"event": event}]}).encode())
    await pool.call("POST", f"/api/v1/workers/{wid}/register",
                    json.dumps({"function_ids": [fid], "max_concurrent_jobs": cap}).encode())


def fence(job: dict[str, Any]) -> str:
    return f'"execution_seq":{job["execution_seq"]},"lease_token":"{job["lease_token"]}"'


# -- steps phase (child mode) -------------------------------------------------------------------

async def steps_phase(port: int, server_pid: int, runs: int, steps: int, conns: int) -> dict[str, Any]:
    pool = await Pool.open(port, conns)
    poller = await AConn.open(port)
    try:
        await setup_function(pool, "bench", "bench.go", "w1", runs)
        await asyncio.gather(*(pool.call("POST", "/api/v1/events",
                                         b'{"name":"bench.go","data":{"i":%d}}' % i)
                               for i in range(runs)))
        latencies: list[float] = []
        perf = time.perf_counter

        async def put(path: str, body: bytes) -> None:
            await pool.call("PUT", path, body, times=latencies)

        async def run_job(job: dict[str, Any]) -> None:
            jid, rid, f = job["job_id"], job["run_id"], fence(job)
            base = job.get("step_sequence_base", 0)
            path = f"/api/v1/workers/w1/jobs/{jid}"
            await put(path + "/ack", f'{{"run_id":"{rid}",{f}}}'.encode())
            for i in range(steps):
                await put(path, (
                    f'{{"status":"progress","steps":[{{"id":"{rid}:s{i}:0","name":"s{i}",'
                    f'"type":"invoke","status":"completed","output":{i}}}],'
                    f'"step_offset":{base + i},{f}}}').encode())
            await put(path, f'{{"status":"completed","output":null,"steps":[],'
                            f'"step_offset":{base + steps},{f}}}'.encode())

        cpu = CpuWindow(server_pid)
        t0 = perf()
        tasks: list[asyncio.Task[None]] = []
        last_run_id = ""
        polls = 0
        deadline = time.monotonic() + 60
        while len(tasks) < runs:
            if time.monotonic() > deadline:
                raise RuntimeError(f"steps: only {len(tasks)}/{runs} jobs assigned in 60 s")
            status, data = await poller.call("GET", f"/api/v1/workers/w1/jobs?available={runs}&wait=1")
            polls += 1
            if status == 200:
                for job in json.loads(data)["jobs"]:
                    tasks.append(asyncio.create_task(run_job(job)))
                    last_run_id = job["run_id"]
            elif status != 204:
                raise RuntimeError(f"steps: poll -> {status}: {data[:300]!r}")
        await asyncio.gather(*tasks)
        elapsed = perf() - t0
        res = cpu.done()
        # spot check: the last run is completed
        last = json.loads(await pool.call("GET", f"/api/v1/runs/{last_run_id}"))
        run_status = (last.get("run") or last).get("status")
        latencies.sort()
        total = runs * steps
        res.update({"ops": total, "window": elapsed, "rate": total / elapsed, "polls": polls,
                    "requests": len(latencies) + polls, "p50_ms": pct(latencies, 0.5) * 1000,
                    "p99_ms": pct(latencies, 0.99) * 1000, "errors": 0, "conns": conns,
                    "run_status": run_status})
        return res
    finally:
        pool.close()
        poller.close()


# -- latency phase (child mode) -----------------------------------------------------------------

class SConn:
    """Blocking keep-alive connection split into send / receive for the latency probe."""

    def __init__(self, port: int) -> None:
        self.s = socket.create_connection((HOST, port), timeout=30.0)
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.need = -1

    def send(self, method: str, path: str, body: bytes | None = None) -> None:
        self.s.sendall(_request(method, path, body))

    def feed(self) -> tuple[int, bytes] | None:
        """Read what is there (blocking once); return (status, body) when a response is complete."""
        data = self.s.recv(262144)
        if not data:
            raise RuntimeError("server closed the connection")
        self.buf += data
        return self._parse()

    def _parse(self) -> tuple[int, bytes] | None:
        if self.need < 0:
            i = self.buf.find(b"\r\n\r\n")
            if i < 0:
                return None
            self.need = i + 4 + _content_length(self.buf[:i + 2])
        if len(self.buf) < self.need:
            return None
        head_end = self.buf.find(b"\r\n\r\n") + 4
        status, body = int(self.buf[9:12]), self.buf[head_end:self.need]
        self.buf, self.need = self.buf[self.need:], -1
        return status, body

    def call(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        self.send(method, path, body)
        while True:
            r = self._parse() if self.buf else None
            if r is None:
                r = self.feed()
            if r is not None:
                return r

    def close(self) -> None:
        self.s.close()


def latency_phase(port: int, server_pid: int, samples: int) -> dict[str, Any]:
    a, b = SConn(port), SConn(port)  # a: the worker's held poll, b: the emitter (and acks)
    try:
        for path, body in (("/ironflow.v1.IronflowService/RegisterFunction",
                            {"id": "benchlat", "triggers": [{"event": "bench.lat"}]}),
                           ("/api/v1/workers/w2/register",
                            {"function_ids": ["benchlat"], "max_concurrent_jobs": 4})):
            st, data = b.call("POST", path, json.dumps(body).encode())
            if st != 200:
                raise RuntimeError(f"latency setup {path} -> {st}: {data[:200]!r}")
        poll_lat: list[float] = []
        emit_lat: list[float] = []
        perf = time.perf_counter
        cpu = None
        t_start = perf()
        for k in range(LATENCY_WARMUP + samples):
            if k == LATENCY_WARMUP:
                cpu = CpuWindow(server_pid)
                t_start = perf()
            a.send("GET", "/api/v1/workers/w2/jobs?available=1&wait=20")
            time.sleep(0.005)  # let the server park the poll
            t0 = perf()
            b.send("POST", "/api/v1/events", b'{"name":"bench.lat","data":{"k":%d}}' % k)
            poll_res = emit_res = None
            t_poll = t_emit = 0.0
            while poll_res is None or emit_res is None:
                ready, _, _ = select.select([a.s, b.s], [], [], 30.0)
                if not ready:
                    raise RuntimeError("latency: no answer within 30 s")
                for s in ready:
                    if s is a.s:
                        poll_res = a.feed()
                        if poll_res is not None:
                            t_poll = perf()
                    else:
                        emit_res = b.feed()
                        if emit_res is not None:
                            t_emit = perf()
            if poll_res[0] != 200 or emit_res[0] != 200:
                raise RuntimeError(f"latency: poll -> {poll_res[0]}, emit -> {emit_res[0]}: "
                                   f"{poll_res[1][:200]!r}")
            if k >= LATENCY_WARMUP:
                poll_lat.append(t_poll - t0)
                emit_lat.append(t_emit - t0)
            job = json.loads(poll_res[1])["jobs"][0]
            jid, f = job["job_id"], fence(job)
            for path, body in ((f"/api/v1/workers/w2/jobs/{jid}/ack", f'{{"run_id":"{job["run_id"]}",{f}}}'),
                               (f"/api/v1/workers/w2/jobs/{jid}",
                                f'{{"status":"completed","output":null,"steps":[],"step_offset":0,{f}}}')):
                st, data = b.call("PUT", path, body.encode())
                if st != 200:
                    raise RuntimeError(f"latency: {path} -> {st}: {data[:200]!r}")
        window = perf() - t_start
        res = cpu.done() if cpu is not None else {}
        poll_lat.sort()
        emit_lat.sort()
        res.update({"ops": len(poll_lat), "window": window, "rate": len(poll_lat) / window,
                    "p50_ms": pct(poll_lat, 0.5) * 1000, "p99_ms": pct(poll_lat, 0.99) * 1000,
                    "max_ms": poll_lat[-1] * 1000 if poll_lat else float("nan"),
                    "emit_p50_ms": pct(emit_lat, 0.5) * 1000, "emit_p99_ms": pct(emit_lat, 0.99) * 1000,
                    "errors": 0, "conns": 2})
        return res
    finally:
        a.close()
        b.close()


# -- timers phase (child mode) ------------------------------------------------------------------

async def timers_phase(port: int, server_pid: int, n: int, wakers: int, window: float, conns: int,
                       lead: float) -> dict[str, Any]:
    """Create sleeping runs, then measure the lateness of every wake-up inside the window.

    ``far`` runs (``n - wakers``, at least a calibration batch) yield first with a sleep of an
    hour (they stay asleep for the whole benchmark); timing their yields tells how long the
    ``wakers`` yields will take, which places the wake window after the end of the creation.
    """
    perf = time.perf_counter
    calib = min(2000, max(400, n // 20))
    far = max(n - wakers, calib)
    total = wakers + far
    pool = await Pool.open(port, TIMER_EMIT_CONNS)
    poller = await AConn.open(port)
    stop_progress = asyncio.Event()
    counts = {"emitted": 0, "yielded": 0, "woken": 0, "completed": 0}
    phase = ["emitting"]

    async def progress() -> None:
        t0 = perf()
        while not stop_progress.is_set():
            try:
                await asyncio.wait_for(stop_progress.wait(), 5.0)
            except asyncio.TimeoutError:
                pass
            if not stop_progress.is_set():
                log(f"  timers: {perf() - t0:5.0f} s {phase[0]:<9} emitted {counts['emitted']}, "
                    f"yielded {counts['yielded']} / {total}, woken {counts['woken']}, "
                    f"completed {counts['completed']} / {wakers}")

    prog = asyncio.create_task(progress())
    try:
        await setup_function(pool, "nap", "bench.nap", "w3", TIMER_WORKER_CAP)
        # 1. create the runs: emits over many keep-alive connections
        t_create = time.time()
        next_i = 0

        async def emitter() -> None:
            nonlocal next_i
            while next_i < total:
                i = next_i
                next_i += 1
                await pool.call("POST", "/api/v1/events", b'{"name":"bench.nap","data":{"i":%d}}' % i)
                counts["emitted"] += 1

        await asyncio.gather(*(emitter() for _ in range(TIMER_EMIT_CONNS)))
        emit_s = time.time() - t_create
        pool.close()
        log(f"  timers: {total} runs emitted in {emit_s:.1f} s ({total / emit_s:.0f}/s); "
            f"{far} yield a 1 h sleep first (calibration), then {wakers} wake in a {window:g} s window")
        # 2. first segments yield a sleep
        phase[0] = "yielding"
        pool = await Pool.open(port, conns)
        work: asyncio.Queue[tuple[str, dict[str, Any]] | None] = asyncio.Queue()
        untils: dict[str, float] = {}
        lateness: list[float] = []
        overlap = 0  # wakes that arrived while runs were still being yielded
        k_yield = 0
        marks = {"yield0": 0.0, "far_done": 0.0, "yield_end": 0.0, "window_start": 0.0}
        window_set = asyncio.Event()
        far_until, _ = rfc3339_ms(time.time() + 3600)

        async def reporter() -> None:
            nonlocal k_yield
            while True:
                item = await work.get()
                if item is None:
                    return
                kind, job = item
                jid, rid, f = job["job_id"], job["run_id"], fence(job)
                base = job.get("step_sequence_base", 0)
                if kind == "yield":
                    k = k_yield
                    k_yield += 1
                    if k < far:
                        text = far_until
                    else:
                        await window_set.wait()
                        text, untils[rid] = rfc3339_ms(
                            marks["window_start"] + window * (k - far) / wakers)
                    body = (f'{{"status":"yielded","steps":[],"step_offset":{base},{f},'
                            f'"yield":{{"step_id":"{rid}:nap:0","type":"sleep","until":"{text}"}}}}')
                    await pool.call("PUT", f"/api/v1/workers/w3/jobs/{jid}", body.encode())
                    counts["yielded"] += 1
                    if counts["yielded"] == far // 4:  # time the steady state, not the ramp-up
                        marks["yield0"] = perf()
                    if counts["yielded"] == far:
                        # calibration over: place the window after the expected end of creation
                        rate = (far - far // 4) / max(1e-3, perf() - marks["yield0"])
                        est = wakers / rate * 1.5
                        marks["window_start"] = time.time() + est + lead
                        log(f"  timers: {far} yields at {rate:.0f}/s; wake window starts in "
                            f"{est + lead:.1f} s")
                        window_set.set()
                    if counts["yielded"] == total:
                        marks["yield_end"] = time.time()
                else:
                    body = f'{{"status":"completed","output":null,"steps":[],"step_offset":{base},{f}}}'
                    await pool.call("PUT", f"/api/v1/workers/w3/jobs/{jid}", body.encode())
                    counts["completed"] += 1

        reporters = [asyncio.create_task(reporter()) for _ in range(conns)]
        polls = 0
        cpu: CpuWindow | None = None
        first_wake = last_wake = 0.0
        while counts["woken"] < wakers:
            if window_set.is_set() and time.time() > marks["window_start"] + window + 60 + wakers / 1000:
                log(f"  timers: deadline passed with {counts['woken']}/{wakers} woken")
                break
            if cpu is None and counts["yielded"] == total:
                cpu = CpuWindow(server_pid)  # the wake window's CPU, from the last yield on
                phase[0] = "waking"
            status, data = await poller.call(
                "GET", f"/api/v1/workers/w3/jobs?available={TIMER_POLL_BATCH}&wait=1")
            arrived = time.time()
            polls += 1
            if status == 204:
                continue
            if status != 200:
                raise RuntimeError(f"timers: poll -> {status}: {data[:300]!r}")
            for job in json.loads(data)["jobs"]:
                if job["execution_seq"] == 1:
                    work.put_nowait(("yield", job))
                    continue
                until = untils.get(job["run_id"])
                if until is None:
                    raise RuntimeError(f"timers: unexpected job {job['job_id']} (a far sleeper woke?)")
                lateness.append(arrived - until)
                if counts["yielded"] < total:
                    overlap += 1
                counts["woken"] += 1
                first_wake = first_wake or arrived
                last_wake = arrived
                work.put_nowait(("complete", job))
        phase[0] = "finishing"
        for _ in reporters:
            work.put_nowait(None)
        await asyncio.gather(*reporters)
        res = cpu.done() if cpu is not None else {}
        stop_progress.set()
        lateness.sort()
        ws = marks["window_start"]
        span = last_wake - ws if last_wake else 0.0
        return {**res, "ops": len(lateness), "window": span,
                "rate": len(lateness) / span if span > 0 else 0.0,
                "p50_ms": pct(lateness, 0.5) * 1000, "p99_ms": pct(lateness, 0.99) * 1000,
                "max_ms": lateness[-1] * 1000 if lateness else float("nan"),
                "min_ms": lateness[0] * 1000 if lateness else float("nan"),
                "errors": wakers - len(lateness), "conns": conns, "sleepers": total,
                "wakers": wakers, "far": far, "emit_s": emit_s, "emit_rate": total / emit_s,
                "create_s": (marks["yield_end"] or time.time()) - t_create,
                "slack_s": ws - marks["yield_end"] if marks["yield_end"] else None,
                "overlap": overlap, "polls": polls, "wake_window": window}
    finally:
        stop_progress.set()
        prog.cancel()
        pool.close()
        poller.close()


# -- orchestration --------------------------------------------------------------------------------

class Interrupted(Exception):
    pass


def _on_sigterm(signum: int, frame: Any) -> None:
    raise Interrupted(f"signal {signum}")


def _die_with_parent() -> None:
    """Child pre-exec: SIGTERM this child should the benchmark die (Linux; best effort)."""
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def read_metrics(port: int) -> dict[str, float] | None:
    try:
        c = SConn(port)
        try:
            st, body = c.call("GET", "/metrics")
        finally:
            c.close()
    except OSError:
        return None
    if st != 200:
        return None
    out = {}
    for line in body.decode().splitlines():
        for name in ("ironflow_journal_commit_seconds_count", "ironflow_journal_batch_size_sum",
                     "ironflow_journal_commit_seconds_sum"):
            if line.startswith(name + " "):
                out[name] = float(line.split()[1])
    return out


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.procs: list[subprocess.Popen[Any]] = []
        self.tmp = tempfile.mkdtemp(prefix="ironflow-bench-engine-")
        self.results: dict[str, dict[str, Any]] = {}

    def spawn(self, argv: list[str], **kw: Any) -> subprocess.Popen[Any]:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent, **kw)
        self.procs.append(proc)
        return proc

    def reap(self, proc: subprocess.Popen[Any]) -> None:
        try:
            stop_process(proc)
        finally:
            if proc in self.procs:
                self.procs.remove(proc)

    def cleanup(self) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not skip clean-up
        for proc in reversed(self.procs):
            try:
                stop_process(proc)
            except Exception:
                try:
                    proc.kill()
                except OSError:
                    pass
        self.procs.clear()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def child(self, phase: str, port: int, server_pid: int, timeout: float) -> dict[str, Any]:
        a = self.args
        argv = [sys.executable, os.path.abspath(__file__), "--phase", phase, "--port", str(port),
                "--server-pid", str(server_pid), "--seconds", str(a.seconds),
                "--connections", str(a.connections), "--runs", str(a.runs), "--steps", str(a.steps),
                "--worker-conns", str(a.worker_conns), "--samples", str(a.samples),
                "--sleepers", str(a.sleepers), "--wakers", str(a.wakers), "--window", str(a.window),
                "--lead", str(a.lead)]
        proc = self.spawn(argv, stdout=subprocess.PIPE, text=True)
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"{phase}: load generator did not finish within {timeout:.0f} s") from None
        finally:
            self.reap(proc)
        if proc.returncode != 0:
            raise RuntimeError(f"{phase}: load generator failed (exit {proc.returncode})")
        return json.loads(out.strip().splitlines()[-1])

    def baseline(self) -> None:
        port = free_port()
        log_path = os.path.join(self.tmp, "baseline.log")
        with open(log_path, "wb") as lf:
            proc = self.spawn([sys.executable, os.path.abspath(__file__), "--baseline-server",
                               str(port)], stdout=lf, stderr=subprocess.STDOUT)
        try:
            wait_healthy(proc, port, log_path)
            log("phase baseline: bare asyncio GET ...")
            res = self.child("baseline", port, proc.pid, WARMUP + self.args.seconds + 20)
        finally:
            self.reap(proc)
        self.results["baseline"] = res
        log(f"  baseline {res['rate']:.0f} req/s")

    def ironflow(self, phases: list[str]) -> None:
        a = self.args
        port = free_port()
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("IRONFLOW_") and k not in ("LOG_LEVEL", "LOG_FORMAT")}
        env["LOG_LEVEL"] = "warn"
        if a.metrics:
            env["IRONFLOW_METRICS_ENABLED"] = "true"
        log_path = os.path.join(self.tmp, "server.log")
        prof = ["-m", "cProfile", "-o", os.path.abspath(a.profile)] if a.profile else []
        argv = [sys.executable, *prof, "ironflow.py", "serve", "--dev", "--host", HOST, "--port", str(port),
                "--db", os.path.join(self.tmp, "bench.db")]
        with open(log_path, "wb") as lf:
            proc = self.spawn(argv, cwd=ROOT, env=env, stdout=lf, stderr=subprocess.STDOUT)
        try:
            wait_healthy(proc, port, log_path)
            timeouts = {"events": WARMUP + a.seconds + 30, "steps": 180.0,
                        "latency": 60.0 + a.samples * 0.5,
                        "timers": a.lead + a.window + 300.0 + a.sleepers * 0.01}
            for phase in phases:
                log(f"phase {phase} ...")
                m0 = read_metrics(port) if a.metrics else None
                res = self.child(phase, port, proc.pid, timeouts[phase])
                m1 = read_metrics(port) if a.metrics else None
                if m0 and m1:
                    res["commits"] = m1["ironflow_journal_commit_seconds_count"] - m0["ironflow_journal_commit_seconds_count"]
                    res["writes"] = m1["ironflow_journal_batch_size_sum"] - m0["ironflow_journal_batch_size_sum"]
                    res["commit_s"] = m1["ironflow_journal_commit_seconds_sum"] - m0["ironflow_journal_commit_seconds_sum"]
                if proc.poll() is not None:
                    raise RuntimeError(f"server exited with {proc.returncode} during {phase}")
                self.results[phase] = res
                log(f"  {phase}: {summary(phase, res)}")
        finally:
            self.reap(proc)
            try:
                with open(log_path, errors="replace") as f:
                    lines = [ln for ln in f.read().splitlines() if ln.strip()]
                if lines:
                    log(f"server log ({len(lines)} lines at warn+), last: {lines[-1][:300]}")
            except OSError:
                pass


def summary(phase: str, r: dict[str, Any]) -> str:
    if phase in ("latency",):
        return f"p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms"
    if phase == "timers":
        return f"lateness p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms"
    return f"{r['rate']:.0f}/s"


def _f(v: Any, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def report(results: dict[str, dict[str, Any]], args: argparse.Namespace) -> bool:
    rows = [("baseline", "bare asyncio GET", "req"), ("events", "POST /api/v1/events", "event"),
            ("steps", f"{args.runs} runs x {args.steps} steps", "step"),
            ("latency", "emit -> held poll 200", "sample"),
            ("timers", "sleep lateness", "wake")]
    print()
    print(f"{'phase':<9} {'what':<24} {'conns':>5} {'ops':>7} {'seconds':>7} {'ops/s':>8} "
          f"{'p50 ms':>7} {'p99 ms':>7} {'err':>4} {'srv%':>5} {'cli%':>5} {'oth%':>5} "
          f"{'srv us/op':>9} {'commits':>8} {'wr/cmt':>6}")
    noisy = []
    for key, what, _ in rows:
        r = results.get(key)
        if r is None:
            continue
        w = r.get("cpu_window") or r["window"]
        def share(v: float | None) -> float | None:
            return None if v is None or not w else 100 * v / w
        srv = r.get("srv_cpu")
        us = 1e6 * srv / r["ops"] if srv is not None and r["ops"] else None
        if key in ("latency", "timers"):
            us = None  # CPU per sample/wake mixes in the surrounding work; not comparable
        commits = r.get("commits")
        wr = r["writes"] / commits if commits else None
        print(f"{key:<9} {what:<24} {r['conns']:>5} {r['ops']:>7} {r['window']:>7.2f} "
              f"{r['rate']:>8.0f} {r['p50_ms']:>7.3f} {r['p99_ms']:>7.3f} {r['errors']:>4} "
              f"{_f(share(srv), '5.0f'):>5} {_f(share(r.get('cli_cpu')), '5.0f'):>5} "
              f"{_f(share(r.get('other_cpu')), '5.0f'):>5} {_f(us, '9.1f'):>9} "
              f"{_f(commits, '8.0f'):>8} {_f(wr, '6.1f'):>6}")
        oth = share(r.get("other_cpu"))
        if oth is not None and oth > 100 * NOISY_OTHER:
            noisy.append(f"{key} {oth:.0f}%")
    print("(ops/s: events or steps per second; for latency/timers p50/p99 are the figure: "
          "latency = emit sent -> poll 200 arrived, timers = poll 200 arrived - until)")
    if noisy:
        print(f"note: other processes used CPU during the runs ({', '.join(noisy)} of a core): "
              "figures are unreliable; rerun on a quiet machine")
    print()
    ok = True

    def goal(text: str, passed: bool | None) -> None:
        nonlocal ok
        if passed is None:
            print(f"goal {text}: n/a")
            return
        ok = ok and passed
        print(f"goal {text}: {'PASS' if passed else 'FAIL'}")

    base, ev = results.get("baseline"), results.get("events")
    if ev is not None:
        ratio = ev["rate"] / base["rate"] if base and base["rate"] else None
        if ratio is not None:
            print(f"events: {ev['rate']:.0f} durable events/s vs bare asyncio {base['rate']:.0f} req/s"
                  f" = {ratio:.2f}x")
            if ev.get("srv_cpu") and base.get("srv_cpu"):
                ue, ub = 1e6 * ev["srv_cpu"] / ev["ops"], 1e6 * base["srv_cpu"] / base["ops"]
                print(f"        server CPU per request: emit {ue:.0f} us vs baseline {ub:.0f} us "
                      f"({ue / ub:.1f}x)")
        goal(f"durable events/s ratio to bare asyncio >= {GOAL_EVENTS_RATIO:.2f}x", None if ratio is None
             else ratio >= GOAL_EVENTS_RATIO)
    st = results.get("steps")
    if st is not None:
        print(f"steps: {st['ops']} steps in {st['window']:.3f} s = {st['rate']:.0f} steps/s "
              f"({st['requests']} requests incl. {st['polls']} polls, {args.worker_conns} worker "
              f"connections; per-request p50 {st['p50_ms']:.2f} ms p99 {st['p99_ms']:.2f} ms; "
              f"last run {st.get('run_status')})")
        if st.get("commits"):
            print(f"       journal: {st['commits']:.0f} commits, {st['writes'] / st['commits']:.1f} "
                  f"writes/commit, {1000 * st['commit_s'] / st['commits']:.2f} ms/commit")
        goal(f"durable steps/s >= {GOAL_STEPS:.0f}", st["rate"] >= GOAL_STEPS)
    la = results.get("latency")
    if la is not None:
        print(f"latency: emit -> held poll 200: p50 {la['p50_ms']:.3f} ms, p99 {la['p99_ms']:.3f} ms, "
              f"max {la['max_ms']:.3f} ms ({la['ops']} samples); emit's own 200: "
              f"p50 {la['emit_p50_ms']:.3f} ms, p99 {la['emit_p99_ms']:.3f} ms")
        goal(f"emit -> poll p50 <= {GOAL_LAT_P50_MS:g} ms", la["p50_ms"] <= GOAL_LAT_P50_MS)
        goal(f"emit -> poll p99 <= {GOAL_LAT_P99_MS:g} ms", la["p99_ms"] <= GOAL_LAT_P99_MS)
    ti = results.get("timers")
    if ti is not None:
        slack = ti.get("slack_s")
        print(f"timers: {ti['sleepers']} sleeping runs created in {ti['create_s']:.1f} s (emits "
              f"{ti['emit_s']:.1f} s at {ti['emit_rate']:.0f}/s, then first segments yielding); "
              f"{ti['far']} sleep 1 h, {ti['wakers']} wake over a {ti['wake_window']:g} s window "
              f"({ti['wakers'] / ti['wake_window']:.0f} wakes/s asked); {ti['ops']} woken, "
              f"dispatched at {ti['rate']:.0f}/s, last {ti['window']:.2f} s after the window start")
        print(f"        lateness p50 {ti['p50_ms']:.1f} ms, p99 {ti['p99_ms']:.1f} ms, "
              f"min {ti['min_ms']:.1f} ms, max {ti['max_ms']:.1f} ms; creation ended "
              f"{_f(slack, '.1f')} s before the window; {ti['overlap']} wakes during creation")
        if ti["ops"] and ti["rate"] < 0.9 * ti["wakers"] / ti["wake_window"]:
            print(f"        note: wakes were dispatched slower than asked ({ti['rate']:.0f}/s < "
                  f"{ti['wakers'] / ti['wake_window']:.0f}/s): the lateness is mostly that backlog; "
                  "--wakers N measures timer precision with the others asleep")
        if ti["create_s"] > SLOW_CREATION:
            print(f"        note: creating {ti['sleepers']} sleepers took {ti['create_s']:.0f} s "
                  f"(> {SLOW_CREATION:.0f} s)")
        goal(f"timer lateness p99 <= {GOAL_TIMER_P99_MS:g} ms ({ti['sleepers']} sleeping, "
             f"{ti['wakers']} waking in {ti['wake_window']:g} s)",
             ti["p99_ms"] <= GOAL_TIMER_P99_MS and ti["errors"] == 0)
    return ok


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=3.0, help="measured seconds, events/baseline (3)")
    p.add_argument("--connections", type=int, default=64, help="keep-alive connections, events (64)")
    p.add_argument("--runs", type=int, default=100, help="concurrent runs, steps phase (100)")
    p.add_argument("--steps", type=int, default=20, help="steps per run, steps phase (20)")
    p.add_argument("--worker-conns", type=int, default=16,
                   help="worker request connections, steps and timers phases (16)")
    p.add_argument("--samples", type=int, default=200, help="latency samples (200)")
    p.add_argument("--sleepers", type=int, default=50000,
                   help="sleeping runs, timers phase (50000; 100000 takes ~3 min to create)")
    p.add_argument("--wakers", type=int, default=0,
                   help="sleepers that wake in the window; the others sleep 1 h (0 = all)")
    p.add_argument("--window", type=float, default=5.0, help="seconds the wake-ups are spread over (5)")
    p.add_argument("--lead", type=float, default=3.0,
                   help="extra seconds between the expected end of creation and the window (3)")
    p.add_argument("--phases", default=",".join(PHASES), help=f"subset of {','.join(PHASES)}")
    p.add_argument("--skip-baseline", action="store_true", help="no bare asyncio reference")
    p.add_argument("--profile", metavar="PATH",
                   help="run the server under cProfile (python3 -m cProfile -o PATH); slows it down")
    p.add_argument("--metrics", action="store_true",
                   help="run the server with IRONFLOW_METRICS_ENABLED=true and report journal commits")
    p.add_argument("--baseline-server", type=int, metavar="PORT", help=argparse.SUPPRESS)
    p.add_argument("--phase", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    p.add_argument("--server-pid", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    phases = [x for x in args.phases.split(",") if x]
    if any(x not in PHASES for x in phases):
        p.error(f"--phases: choose from {','.join(PHASES)}")
    if (args.seconds <= 0 or args.connections < 1 or args.runs < 1 or args.steps < 1
            or args.worker_conns < 1 or args.samples < 1 or args.sleepers < 1 or args.window <= 0
            or not 0 <= args.wakers <= args.sleepers):
        p.error("counts must be >= 1 and durations > 0")

    if args.baseline_server is not None:
        return baseline_server(args.baseline_server)
    if args.phase is not None:
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
        try:
            if args.phase in ("baseline", "events"):
                res = throughput_client(args.port, args.connections, args.seconds, args.server_pid,
                                        emit=args.phase == "events")
            elif args.phase == "steps":
                res = asyncio.run(steps_phase(args.port, args.server_pid, args.runs, args.steps,
                                              args.worker_conns))
            elif args.phase == "latency":
                res = latency_phase(args.port, args.server_pid, args.samples)
            else:
                res = asyncio.run(timers_phase(args.port, args.server_pid, args.sleepers,
                                               args.wakers or args.sleepers, args.window,
                                               args.worker_conns, args.lead))
        except KeyboardInterrupt:
            return 130
        print(json.dumps(res), flush=True)
        return 0

    signal.signal(signal.SIGTERM, _on_sigterm)
    bench = Bench(args)
    log(f"bench_engine: python {sys.version.split()[0]}, {os.cpu_count()} cpus, phases "
        f"{','.join(phases)}, server LOG_LEVEL=warn{' + metrics' if args.metrics else ''}")
    t0 = time.monotonic()
    try:
        if "events" in phases and not args.skip_baseline:
            bench.baseline()
        bench.ironflow(phases)
    except (KeyboardInterrupt, Interrupted):
        log("\nbench_engine: interrupted, cleaning up")
        return 130
    except RuntimeError as e:
        log(f"bench_engine: {e}")
        return 1
    finally:
        bench.cleanup()
    ok = report(bench.results, args)
    print(f"total {time.monotonic() - t0:.0f} s; all goals {'PASS' if ok else 'not met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
