#!/usr/bin/env python3
"""Connect benchmark: unary calls/s over JSON and binary vs the same REST call; codec MB/s vs json.

This is a benchmark, not a test. Two parts, in one run:

1. **Calls/s.** Starts the real server as users do (``python3 ironflow.py serve --dev ...`` from
   the repo root, ``LOG_LEVEL=warn``, a SQLite file in a temp dir), registers a function over
   Connect JSON (``RegisterFunction``), emits one matching event over REST so there is a run to
   read, then measures the same read three ways, one after the other:

   * ``rest``          ``GET /api/v1/runs/<id>``
   * ``connect/json``  ``POST /ironflow.v1.IronflowService/GetRun``, ``application/json``
                       body ``{"id":"<id>"}``
   * ``connect/proto`` the same method, ``application/proto``, body = the ``GetRunRequest``
                       protobuf bytes (``wirecodec.encode`` in this process)

   Both Connect requests carry ``Connect-Protocol-Version: 1`` as Connect clients send it. Every
   answer is checked once (status, content type, the run id decoded with the matching codec)
   before it is measured. The load generator is the one of ``scripts/bench_http.py``, rebuilt
   here around a request given on the command line (that script's generator sends a fixed
   ``GET /health``): this script re-executed with ``--client`` is one process with one
   ``selectors`` loop over N keep-alive connections, one request in flight per connection, 0.5 s
   of warm-up, then ``--seconds`` of counting. Reported: calls/s, p50/p99 latency, server CPU per
   call (the figure least sensitive to the client and to other load), and the ratios
   connect/json / rest and connect/proto / rest.

2. **Codec throughput**, in this process, no server: for three payloads (a ``Run`` with a ~1 KB
   ``input`` Struct; a ``ListRunsResponse`` of 50 runs; a ``TriggerRequest`` with a ~10 KB
   ``data`` Struct) the time per message of ``jsoncodec.to_json_bytes`` / ``from_json_bytes``,
   ``wirecodec.encode`` / ``decode`` and, as the baseline, the stdlib ``json.dumps`` /
   ``json.loads`` of the equivalent plain JSON object (the proto3 JSON form,
   ``jsoncodec.to_json``) with the settings jsoncodec uses (compact separators,
   ``ensure_ascii=False``, UTF-8 bytes), so the stdlib and jsoncodec produce the very same bytes.
   MB/s = 10^6 bytes per second of each codec's own encoded size; ``x json`` = stdlib time per
   message / codec time per message on the same payload (> 1: faster than the stdlib). Each cell
   is the best of ``--codec-repeat`` batches of at least ``--codec-seconds`` (0.5 s) each, timed
   with ``time.perf_counter``, garbage collector off during a batch (as ``timeit`` does).

Loopback only. Every process started here is stopped by its PID (SIGTERM, then SIGKILL after a
timeout) and the temp dir is removed, also on Ctrl-C and errors.

    python3 scripts/bench_connect.py [--seconds 3] [--connections 32]
                                     [--codec-seconds 0.5] [--codec-repeat 3]
                                     [--skip-http] [--skip-codec]
"""

from __future__ import annotations

import argparse
import functools
import gc
import http.client
import itertools
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
from typing import Any, Callable

SCRIPTS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(SCRIPTS)
if SCRIPTS not in sys.path:
    sys.path.insert(0, SCRIPTS)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from bench_http import (  # noqa: E402  (the shared helpers of the HTTP benchmark)
    HOST,
    NOISY_OTHER,
    STOP_TIMEOUT,
    WARMUP,
    Interrupted,
    _fmt,
    _on_sigterm,
    _proc_cpu,
    _system_busy,
    free_port,
    load_client,
    pct_of,
    stop_process,
    wait_healthy,
)

SERVICE = "/ironflow.v1.IronflowService"
FUNCTION_ID = "bf"
EVENT_NAME = "b.e"
SETUP_TIMEOUT = 10.0
#: Targets, in the order they run; the first is the reference of the ratios.
TARGETS = ("rest", "connect/json", "connect/proto")


# -- load generator (child mode) -------------------------------------------------------------

# -- orchestration -----------------------------------------------------------------------------

def http_request(method: str, path: str, body: bytes | None = None,
                 ctype: str | None = None) -> bytes:
    """The raw HTTP/1.1 request the load generator sends (and the sanity check mirrors)."""
    lines = [f"{method} {path} HTTP/1.1", "Host: x"]
    if body is not None:
        lines += [f"Content-Type: {ctype}", f"Content-Length: {len(body)}"]
        if path.startswith(SERVICE + "/"):
            lines.append("Connect-Protocol-Version: 1")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.procs: list[subprocess.Popen[Any]] = []
        self.tmp = tempfile.mkdtemp(prefix="ironflow-bench-connect-")
        self.results: list[dict[str, Any]] = []
        self.server: subprocess.Popen[Any] | None = None
        self.port = 0
        self.log_path = os.path.join(self.tmp, "server.log")

    def spawn(self, argv: list[str], **kw: Any) -> subprocess.Popen[Any]:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, **kw)
        self.procs.append(proc)
        return proc

    def reap(self, proc: subprocess.Popen[Any]) -> None:
        stop_process(proc)
        if proc in self.procs:
            self.procs.remove(proc)

    def cleanup(self) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not skip clean-up
        for proc in reversed(self.procs):
            try:
                stop_process(proc)
            except Exception:  # keep going: every process must be reaped
                try:
                    proc.kill()
                    proc.wait(STOP_TIMEOUT)
                except (OSError, subprocess.TimeoutExpired):
                    pass
        self.procs.clear()
        shutil.rmtree(self.tmp, ignore_errors=True)

    # -- server ----------------------------------------------------------------------------------

    def start_server(self) -> None:
        self.port = free_port()
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("IRONFLOW_") and k not in ("LOG_LEVEL", "LOG_FORMAT")}
        env["LOG_LEVEL"] = "warn"
        argv = [sys.executable, "ironflow.py", "serve", "--dev", "--host", HOST,
                "--port", str(self.port), "--db", os.path.join(self.tmp, "bench.db")]
        with open(self.log_path, "wb") as log_file:
            self.server = self.spawn(argv, cwd=ROOT, env=env, stdout=log_file,
                                     stderr=subprocess.STDOUT)
        wait_healthy(self.server, self.port, self.log_path)

    def stop_server(self) -> None:
        if self.server is not None:
            self.reap(self.server)
            self.server = None

    def call(self, method: str, path: str, body: bytes | None = None,
             ctype: str | None = None) -> tuple[int, str, bytes]:
        """One request over http.client with exactly the headers the load generator sends."""
        conn = http.client.HTTPConnection(HOST, self.port, timeout=SETUP_TIMEOUT)
        try:
            conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
            conn.putheader("Host", "x")
            if body is not None:
                conn.putheader("Content-Type", ctype or "")
                conn.putheader("Content-Length", str(len(body)))
                if path.startswith(SERVICE + "/"):
                    conn.putheader("Connect-Protocol-Version", "1")
            conn.endheaders(body)
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, resp.getheader("Content-Type") or "", data
        finally:
            conn.close()

    def expect(self, what: str, method: str, path: str, body: bytes | None = None,
               ctype: str | None = None, want_ctype: str = "application/json") -> bytes:
        status, got_ctype, data = self.call(method, path, body, ctype)
        if status != 200 or got_ctype.split(";")[0].strip() != want_ctype:
            raise RuntimeError(f"{what}: {method} {path} answered {status} {got_ctype}: "
                               f"{data[:300]!r}")
        return data

    def setup_run(self) -> str:
        """Register ``bf`` over Connect JSON, emit one ``b.e`` over REST; return its run id."""
        self.expect("RegisterFunction", "POST", f"{SERVICE}/RegisterFunction",
                    json.dumps({"id": FUNCTION_ID, "triggers": [{"event": EVENT_NAME}]}).encode(),
                    "application/json")
        out = json.loads(self.expect("emit", "POST", "/api/v1/events",
                                     json.dumps({"name": EVENT_NAME, "data": {"k": 1}}).encode(),
                                     "application/json"))
        run_ids = out.get("run_ids") or []
        if len(run_ids) != 1:
            raise RuntimeError(f"emit: expected one run id, got {out!r}")
        return run_ids[0]

    def build_targets(self, run_id: str) -> list[tuple[str, bytes, int]]:
        """(name, raw request, response body bytes) per target, each answer checked once."""
        from ironflow_pkg.proto import jsoncodec, wirecodec
        from ironflow_pkg.proto.descriptors import load_schema

        schema = load_schema()
        rest_path = f"/api/v1/runs/{run_id}"
        get_run = f"{SERVICE}/GetRun"
        json_body = json.dumps({"id": run_id}, separators=(",", ":")).encode()
        proto_body = wirecodec.encode(schema, "ironflow.v1.GetRunRequest", {"id": run_id})

        rest = self.expect("rest", "GET", rest_path)
        rest_run = json.loads(rest)
        cj = self.expect("connect/json", "POST", get_run, json_body, "application/json")
        cj_run = jsoncodec.from_json_bytes(schema, "ironflow.v1.Run", cj)
        cp = self.expect("connect/proto", "POST", get_run, proto_body, "application/proto",
                         want_ctype="application/proto")
        cp_run = wirecodec.decode(schema, "ironflow.v1.Run", cp)
        for name, run in (("rest", rest_run), ("connect/json", cj_run), ("connect/proto", cp_run)):
            if run.get("id") != run_id or run.get("function_id") != FUNCTION_ID:
                raise RuntimeError(f"{name}: answer is not run {run_id}: {run!r}")
        if cj_run != cp_run:
            raise RuntimeError("connect/json and connect/proto decode to different runs:\n"
                               f"{cj_run!r}\n{cp_run!r}")
        return [
            ("rest", http_request("GET", rest_path), len(rest)),
            ("connect/json", http_request("POST", get_run, json_body, "application/json"),
             len(cj)),
            ("connect/proto", http_request("POST", get_run, proto_body, "application/proto"),
             len(cp)),
        ]

    def run_client(self, request: bytes) -> dict[str, Any]:
        a = self.args
        assert self.server is not None
        argv = [sys.executable, os.path.abspath(__file__), "--client", str(self.port),
                "--connections", str(a.connections), "--seconds", str(a.seconds),
                "--server-pid", str(self.server.pid), "--request-hex", request.hex()]
        proc = self.spawn(argv, stdout=subprocess.PIPE, text=True)
        try:
            out, _ = proc.communicate(timeout=WARMUP + a.seconds + 15)
        except subprocess.TimeoutExpired:
            raise RuntimeError("load generator did not finish in time") from None
        finally:
            self.reap(proc)
        if proc.returncode != 0:
            raise RuntimeError(f"load generator failed (exit {proc.returncode})")
        return json.loads(out.strip().splitlines()[-1])

    def http_part(self) -> None:
        self.start_server()
        run_id = self.setup_run()
        targets = self.build_targets(run_id)
        print(f"  run {run_id}; request bytes: " + ", ".join(
            f"{name} {len(req)}" for name, req, _ in targets), file=sys.stderr, flush=True)
        for name, request, resp_bytes in targets:
            if self.server is None or self.server.poll() is not None:
                raise RuntimeError("the server exited during the benchmark")
            res = self.run_client(request)
            res["target"] = name
            res["resp_bytes"] = resp_bytes
            self.results.append(res)
            print(f"  {name:<14} {res['rps']:>9.0f} calls/s", file=sys.stderr, flush=True)
        self.stop_server()


def report_http(results: list[dict[str, Any]], args: argparse.Namespace) -> None:
    print()
    print(f"unary GetRun of one run, {args.connections} keep-alive connections, "
          f"{args.seconds:g} s per target, LOG_LEVEL=warn")
    print(f"{'target':<14} {'requests':>9} {'calls/s':>9} {'p50 ms':>7} {'p99 ms':>7} "
          f"{'errors':>6} {'resp B':>6} {'srv cpu%':>8} {'cli cpu%':>8} {'other%':>6} "
          f"{'srv us/call':>11}")
    for r in results:
        w = r["window"]
        srv = r.get("srv_cpu")
        us = 1e6 * srv / r["requests"] if srv is not None and r["requests"] else None
        r["us_call"] = us
        print(f"{r['target']:<14} {r['requests']:>9} {r['rps']:>9.0f} {r['p50_ms']:>7.3f} "
              f"{r['p99_ms']:>7.3f} {r['errors']:>6} {r['resp_bytes']:>6} "
              f"{_fmt(pct_of(srv, w), '8.0f'):>8} {_fmt(pct_of(r.get('cli_cpu'), w), '8.0f'):>8} "
              f"{_fmt(pct_of(r.get('other_cpu'), w), '6.0f'):>6} {_fmt(us, '11.1f'):>11}")
    noisy = [f"{r['target']} {pct_of(r['other_cpu'], r['window']):.0f}%" for r in results
             if r.get("other_cpu") is not None and r["other_cpu"] / r["window"] > NOISY_OTHER]
    if noisy:
        print(f"note: other processes used CPU during the runs ({', '.join(noisy)} of a core); "
              "calls/s is unreliable, srv us/call less so; rerun on a quiet machine")
    by = {r["target"]: r for r in results}
    rest = by.get("rest")
    if not rest or not rest["rps"]:
        return
    for name, label in (("connect/json", "JSON/REST  "), ("connect/proto", "binary/REST")):
        r = by.get(name)
        if r is None:
            continue
        line = f"ratio {label} calls/s = {r['rps'] / rest['rps']:.2f}x"
        if r.get("us_call") and rest.get("us_call"):
            line += f"   server CPU per call = {r['us_call'] / rest['us_call']:.2f}x"
        print(line)


# -- codec throughput (in-process) -------------------------------------------------------------


def _ts(i: int, ms: int = 0) -> str:
    """A canonical RFC 3339 timestamp (millisecond precision, never a whole second)."""
    ms = 1 + (i * 7919 + ms) % 999
    return f"2026-05-28T{20 + i // 3600 % 4:02d}:{i // 60 % 60:02d}:{i % 60:02d}.{ms:03d}Z"


def order_input(i: int) -> dict[str, Any]:
    """An order-like nested object, about 1 KB as compact JSON."""
    return {
        "order_id": f"ord_7f3a9c2e51b84d{i:04d}",
        "customer": {
            "id": f"cus_0192af{i:03d}", "email": "ana.lopez@example.com", "name": "Ana López",
            "tier": "gold", "marketing_opt_in": False,
            "address": {"line1": "Calle Mayor 12, 3º B", "city": "Madrid",
                        "postal_code": "28013", "country": "ES"},
        },
        "items": [{"sku": f"SKU-{1000 + k}", "name": f"Linen shirt, size {'SMLX'[k % 4]}",
                   "qty": k + 1, "unit_price": round(19.99 + 5.5 * k, 2),
                   "tags": ["apparel", "summer"], "gift": k % 2 == 0} for k in range(4)],
        "totals": {"subtotal": 149.85, "tax": 31.47, "shipping": 4.95, "total": 186.27,
                   "currency": "EUR"},
        "payment": {"method": "card", "last4": "4242", "captured": True, "authorization": None},
        "notes": "Leave at the front desk if nobody answers.",
        "channel": "web", "retry_ids": [1, 2, 3],
    }


def make_run(i: int, input_obj: dict[str, Any]) -> dict[str, Any]:
    """A Run in the in-memory form (proto field names, enum numbers, canonical timestamps)."""
    run: dict[str, Any] = {
        "id": f"run_8ac50060435c485287bd9a78af1c{i:04x}",
        "function_id": "process-order",
        "event_id": f"evt_9af12966746642cf8dc03c56591{i:05x}",
        "execution_mode": 2,
        "worker_id": f"wrk_{i % 4}",
        "input": input_obj,
        "status": 3,
        "attempt": 1 + i % 3,
        "max_attempts": 25,
        "started_at": _ts(i, 1),
        "ended_at": _ts(i, 2),
        "created_at": _ts(i, 0),
        "updated_at": _ts(i, 2),
        "function_version": 3,
        "timeout_at": _ts(i, 3),
        "environment_id": "env_default",
        "version": 4,
        "event_name": "order.placed",
    }
    if i % 10 == 9:  # a few failed runs, with an error instead of an output
        run["status"] = 4
        run["error"] = {"message": "payment gateway timeout", "code": "UPSTREAM_TIMEOUT",
                        "retryable": True, "details": {"gateway": "stripe", "after_ms": 30000}}
    else:
        run["output"] = {"status": "shipped", "tracking": f"1Z999AA1012345{i:04d}",
                         "carrier": "UPS"}
    return run


def codec_payloads() -> list[tuple[str, str, dict[str, Any]]]:
    """(label, message name, in-memory message)."""
    run = make_run(0, order_input(0))
    small_inputs = [{"order_id": f"ord_{i:06d}", "customer_id": f"cus_{i % 97:04d}",
                     "total": round(10.5 + i * 3.25, 2), "currency": "EUR", "items": i % 5 + 1,
                     "express": i % 3 == 0} for i in range(50)]
    runs = {"runs": [make_run(i, small_inputs[i]) for i in range(50)],
            "next_cursor": "eyJjcmVhdGVkX2F0IjoiMjAyNi0wNS0yOFQyMDoyNjo0MC4xMjNaIn0",
            "total_count": 1234}
    readings = [{"ts": _ts(i), "sensor": f"temp-{i % 8}",
                 "value": round(20 + (i * 37 % 100) / 10, 1), "unit": "C", "ok": i % 17 != 0,
                 "labels": {"site": "plant-3", "line": i % 4}}
                for i in range(84)]
    trigger = {"event": "telemetry.batch",
               "data": {"device_id": "dev_00af31", "firmware": "4.2.1", "seq": 918273,
                        "readings": readings},
               "idempotency_key": "telemetry-dev_00af31-918273",
               "metadata": {"source": "ingest-gw", "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736"},
               "version": 2}
    return [("Run (1 KB input)", "ironflow.v1.Run", run),
            ("ListRunsResponse x50", "ironflow.v1.ListRunsResponse", runs),
            ("TriggerRequest (10 KB data)", "ironflow.v1.TriggerRequest", trigger)]


def _batch(fn: Callable[[], Any], n: int) -> float:
    gc_was_on = gc.isenabled()
    gc.disable()
    try:
        perf = time.perf_counter
        t0 = perf()
        for _ in itertools.repeat(None, n):
            fn()
        return perf() - t0
    finally:
        if gc_was_on:
            gc.enable()


def time_per_call(fn: Callable[[], Any], min_seconds: float, repeat: int) -> tuple[float, int]:
    """Best seconds per call over ``repeat`` batches of at least ``min_seconds`` each."""
    n = 1
    while True:  # calibrate on batches of >= 50 ms
        t = _batch(fn, n)
        if t >= 0.05:
            break
        n = max(n * 2, int(n * 0.06 / t) + 1) if t > 0 else n * 10
    n = max(1, int(n * min_seconds * 1.1 / t) + 1)
    best = float("inf")
    for _ in range(repeat):
        t = _batch(fn, n)
        while t < min_seconds:  # the machine got faster than calibrated: lengthen the batch
            n = int(n * min_seconds * 1.1 / t) + 1
            t = _batch(fn, n)
        best = min(best, t / n)
    return best, n


def codec_part(args: argparse.Namespace) -> list[dict[str, Any]]:
    from ironflow_pkg.proto import jsoncodec, wirecodec
    from ironflow_pkg.proto.descriptors import load_schema

    schema = load_schema()
    rows: list[dict[str, Any]] = []
    for label, name, msg in codec_payloads():
        plain = jsoncodec.to_json(schema, name, msg)  # the proto3 JSON form, as plain JSON

        def std_dumps(plain: Any = plain) -> bytes:
            return json.dumps(plain, ensure_ascii=False, separators=(",", ":")).encode("utf-8")

        json_bytes = jsoncodec.to_json_bytes(schema, name, msg)
        std_bytes = std_dumps()
        wire_bytes = wirecodec.encode(schema, name, msg)
        # the codecs must agree on the payload before their speed means anything
        if std_bytes != json_bytes:
            raise RuntimeError(f"{label}: json.dumps of the proto3 JSON form differs from "
                               "jsoncodec.to_json_bytes")
        if jsoncodec.from_json_bytes(schema, name, json_bytes) != msg:
            raise RuntimeError(f"{label}: jsoncodec round trip changed the message")
        if wirecodec.decode(schema, name, wire_bytes) != msg:
            raise RuntimeError(f"{label}: wirecodec round trip changed the message")
        if json.loads(std_bytes) != plain:
            raise RuntimeError(f"{label}: json round trip changed the object")
        extra = ""
        struct_field = {"ironflow.v1.Run": "input", "ironflow.v1.TriggerRequest": "data"}.get(name)
        if struct_field:
            size = len(std_dumps(plain[struct_field]))
            extra = f", {struct_field} Struct {size} B"
        print(f"  {label}: JSON {len(json_bytes)} B, binary {len(wire_bytes)} B{extra}",
              file=sys.stderr, flush=True)

        cells = [
            ("encode", "stdlib json", std_dumps, len(std_bytes)),
            ("encode", "jsoncodec", functools.partial(jsoncodec.to_json_bytes, schema, name, msg),
             len(json_bytes)),
            ("encode", "wirecodec", functools.partial(wirecodec.encode, schema, name, msg),
             len(wire_bytes)),
            ("decode", "stdlib json", functools.partial(json.loads, std_bytes), len(std_bytes)),
            ("decode", "jsoncodec",
             functools.partial(jsoncodec.from_json_bytes, schema, name, json_bytes),
             len(json_bytes)),
            ("decode", "wirecodec", functools.partial(wirecodec.decode, schema, name, wire_bytes),
             len(wire_bytes)),
        ]
        base: dict[str, float] = {}
        for op, impl, fn, size in cells:
            sec, n = time_per_call(fn, args.codec_seconds, args.codec_repeat)
            if impl == "stdlib json":
                base[op] = sec
            rows.append({"payload": label, "op": op, "impl": impl, "bytes": size,
                         "us": sec * 1e6, "mbps": size / sec / 1e6, "x_json": base[op] / sec,
                         "iterations": n})
    return rows


def report_codec(rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    print()
    print(f"codec throughput, best of {args.codec_repeat} batches of >= {args.codec_seconds:g} s "
          "per cell (MB = 10^6 bytes of each codec's own encoding; x json = stdlib time / "
          "codec time, same payload)")
    print(f"{'payload':<28} {'op':<6} {'impl':<11} {'bytes':>6} {'us/msg':>9} {'MB/s':>7} "
          f"{'x json':>6} {'iters':>7}")
    last = None
    for r in rows:
        if last is not None and r["payload"] != last:
            print()
        last = r["payload"]
        print(f"{r['payload']:<28} {r['op']:<6} {r['impl']:<11} {r['bytes']:>6} {r['us']:>9.1f} "
              f"{r['mbps']:>7.1f} {r['x_json']:>6.2f} {r['iterations']:>7}")


# -- entry point -------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=3.0, help="measured seconds per target (3)")
    p.add_argument("--connections", type=int, default=32, help="keep-alive connections (32)")
    p.add_argument("--codec-seconds", type=float, default=0.5,
                   help="minimum seconds per codec batch (0.5)")
    p.add_argument("--codec-repeat", type=int, default=3, help="codec batches per cell, best "
                   "kept (3)")
    p.add_argument("--skip-http", action="store_true", help="codec part only (no server)")
    p.add_argument("--skip-codec", action="store_true", help="calls/s part only")
    p.add_argument("--client", type=int, metavar="PORT", help=argparse.SUPPRESS)
    p.add_argument("--server-pid", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--request-hex", default="", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.seconds <= 0 or args.connections < 1 or args.connections > 1000:
        p.error("--seconds must be > 0 and --connections between 1 and 1000")
    if args.codec_seconds <= 0 or args.codec_repeat < 1:
        p.error("--codec-seconds must be > 0 and --codec-repeat >= 1")

    if args.client is not None:
        try:
            return load_client(args.client, args.connections, args.seconds, args.server_pid,
                               bytes.fromhex(args.request_hex))
        except KeyboardInterrupt:
            return 130
        except OSError as e:  # e.g. the server went away: one line, the parent reports it
            print(f"load generator: {type(e).__name__}: {e}", file=sys.stderr)
            return 1

    signal.signal(signal.SIGTERM, _on_sigterm)
    bench = Bench(args)
    codec_rows: list[dict[str, Any]] = []
    try:
        if not args.skip_http:
            print(f"bench: {args.connections} connections, {WARMUP} s warm-up + {args.seconds} s "
                  f"per target, GetRun on {HOST}, python {sys.version.split()[0]}, "
                  f"{os.cpu_count()} cpus", file=sys.stderr, flush=True)
            bench.http_part()
            report_http(bench.results, args)
            sys.stdout.flush()
        if not args.skip_codec:
            print("bench: codec throughput (in-process, no server)", file=sys.stderr, flush=True)
            codec_rows = codec_part(args)
            report_codec(codec_rows, args)
    except (KeyboardInterrupt, Interrupted):
        print("\nbench: interrupted, cleaning up", file=sys.stderr)
        return 130
    except (RuntimeError, OSError, http.client.HTTPException) as e:
        print(f"bench: {type(e).__name__ + ': ' if not isinstance(e, RuntimeError) else ''}{e}",
              file=sys.stderr)
        return 1
    finally:
        bench.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
