#!/usr/bin/env python3
"""Dashboard serving benchmark: how fast the server hands out the web UI's files.

    python3 scripts/bench_dashboard.py [--seconds 3] [--connections 32]

Measured in one run against one ``ironflow serve --dev`` (LOG_LEVEL=warn), with the load
generator of ``scripts/bench_http.py`` (a separate process, keep-alive connections):

* ``/health``: the baseline of the ratios (the cheapest route of the same server);
* the app shell at a deep link (``GET /runs/run_x``: ``index.html``, ``no-cache`` + ETag);
* the biggest module with ``Accept-Encoding: gzip`` (precompressed at start-up) and without.

It also prints what a first visit downloads: every file of the build, raw and gzipped. The
figures go to README's performance table.
"""

from __future__ import annotations

import argparse
import gzip
import os
import re
import signal
import sys
from typing import Any

SCRIPTS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(SCRIPTS)
for p in (SCRIPTS, ROOT):
    if p not in sys.path:
        sys.path.insert(0, p)

from bench_connect import Bench as ConnectBench  # noqa: E402  (same orchestration)
from bench_http import Interrupted, _on_sigterm  # noqa: E402

from ironflow_pkg.api_dashboard import load_files  # noqa: E402


def raw_get(path: str, *headers: str) -> bytes:
    lines = [f"GET {path} HTTP/1.1", "Host: x", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


class Bench(ConnectBench):
    def http_part(self) -> None:
        self.start_server()
        shell = self.expect("shell", "GET", "/runs/run_x", want_ctype="text/html")
        m = re.search(rb'/assets/([0-9a-f]+)/app\.js', shell)
        if m is None:
            raise RuntimeError("the shell names no /assets/<build>/app.js")
        build = m.group(1).decode()
        files = load_files()
        biggest = max((n for n in files if n.endswith(".js")), key=lambda n: len(files[n]))
        asset = f"/assets/{build}/{biggest}"
        self.expect("asset", "GET", asset, want_ctype="text/javascript")
        targets = [("/health", raw_get("/health")),
                   ("shell", raw_get("/runs/run_x")),
                   (f"{biggest} gzip", raw_get(asset, "Accept-Encoding: gzip")),
                   (f"{biggest} raw", raw_get(asset))]
        for name, request in targets:
            res = self.run_client(request)
            res["target"] = name
            self.results.append(res)
            print(f"  {name:<22} {res['rps']:>9.0f} req/s", file=sys.stderr, flush=True)
        self.stop_server()


def report(results: list[dict[str, Any]]) -> None:
    base = results[0]["rps"] or 1.0
    print()
    print(f"{'target':<22} {'req/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'errors':>6} {'vs /health':>10}")
    for r in results:
        print(f"{r['target']:<22} {r['rps']:>9.0f} {r['p50_ms']:>7.3f} {r['p99_ms']:>7.3f} "
              f"{r['errors']:>6} {r['rps'] / base:>9.2f}x")
    files = load_files()
    raw = sum(len(b) for b in files.values())
    packed = sum(len(gzip.compress(b, 9)) for b in files.values())
    print(f"\nfirst visit downloads {len(files)} files: {raw / 1024:.1f} KiB raw, "
          f"{packed / 1024:.1f} KiB gzipped (every later visit: the shell, revalidated by ETag)")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=3.0, help="measured seconds per target (3)")
    p.add_argument("--connections", type=int, default=32, help="keep-alive connections (32)")
    args = p.parse_args(argv)
    signal.signal(signal.SIGTERM, _on_sigterm)
    bench = Bench(args)
    try:
        bench.http_part()
    except (Interrupted, KeyboardInterrupt):
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        bench.cleanup()
    report(bench.results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
