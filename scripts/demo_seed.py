#!/usr/bin/env python3
"""Fill a running ironflow server with a little realistic data, for the dashboard.

    python3 scripts/demo_seed.py --url http://127.0.0.1:9123 [--token KEY] [--worker-seconds 0]

It registers three functions (one with steps and a sleep, one that fails, one cron), emits events,
and plays a pull worker over plain HTTP (stdlib ``urllib``) until those runs finish. With
``--worker-seconds N`` the worker keeps serving new runs for N more seconds, so an event emitted
from the dashboard triggers a run that completes while you watch. Standard library only.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
import urllib.error
import urllib.request
from typing import Any

WORKER = "demo-worker-1"
FUNCTIONS = [
    {"id": "order-fulfilment", "name": "Order fulfilment",
     "description": "Reserve stock, charge the card, wait a moment, then ship.",
     "triggers": [{"event": "order.placed"}],
     "retry": {"maxAttempts": 3, "initialDelayMs": 200},
     "concurrency": {"limit": 5, "key": "event.data.customer"}},
    {"id": "send-invoice", "name": "Send invoice", "triggers": [{"event": "invoice.requested"}],
     "retry": {"maxAttempts": 1}},
    {"id": "nightly-report", "name": "Nightly report",
     "triggers": [{"event": "report.nightly", "cron": "0 2 * * *"}]},
]


class Client:
    def __init__(self, url: str, token: str | None) -> None:
        self.url, self.token = url.rstrip("/"), token

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                raw = resp.read()
                return resp.status, (json.loads(raw) if raw else None)
        except urllib.error.HTTPError as e:
            raw = e.read()
            return e.code, (json.loads(raw) if raw else None)

    def ok(self, method: str, path: str, body: Any = None) -> Any:
        status, out = self.call(method, path, body)
        if status >= 300:
            raise SystemExit(f"{method} {path} -> {status} {out}")
        return out

    def rpc(self, method: str, body: dict[str, Any]) -> Any:
        return self.ok("POST", f"/ironflow.v1.IronflowService/{method}", body)


def _ts(at: float) -> str:
    return dt.datetime.fromtimestamp(at, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _step(job: dict[str, Any], name: str, output: Any, ms: float,
          status: str = "completed") -> dict[str, Any]:
    """Run a pretend step: take ``ms`` of wall time, as the user's code would."""
    started = time.time()
    time.sleep(ms / 1000)
    ended = time.time()
    row: dict[str, Any] = {"id": f"{job['run_id']}:{name}:0", "name": name, "type": "invoke",
                           "status": status, "started_at": _ts(started),
                           "ended_at": _ts(ended), "duration_ms": int((ended - started) * 1000)}
    if status == "completed":
        row["output"] = output
    else:
        row["error"] = output
    return row


def _parallel(job: dict[str, Any], branches: list[tuple[str, Any, float]]) -> list[dict[str, Any]]:
    """Pretend branches that run side by side (``step.parallel``): one start, their own ends."""
    started = time.time()
    rows = []
    for name, output, ms in sorted(branches, key=lambda b: b[2]):
        time.sleep(max(0.0, started + ms / 1000 - time.time()))
        ended = time.time()
        rows.append({"id": f"{job['run_id']}:{name}:0", "name": name, "type": "invoke",
                     "status": "completed", "output": output, "started_at": _ts(started),
                     "ended_at": _ts(ended), "duration_ms": int((ended - started) * 1000)})
    return rows


def handle(c: Client, job: dict[str, Any]) -> None:
    """Play the user's function: what a real SDK worker would report for this job."""
    fence = {"execution_seq": job["execution_seq"], "lease_token": job["lease_token"]}
    path = f"/api/v1/workers/{WORKER}/jobs/{job['job_id']}"
    c.ok("PUT", path + "/ack", fence)
    done = {s["name"] for s in job["completed_steps"]}
    data = job["event"]["data"] or {}
    fn = job["function_id"]
    if fn == "order-fulfilment":
        if "nap" in done:  # second segment, after the sleep
            steps = [_step(job, "ship", {"carrier": "dhl", "tracking": "JD0142"}, 35)]
            steps += _parallel(job, [("email-customer", {"sent": True}, 40),
                                     ("update-crm", {"synced": True}, 25)])
            c.ok("PUT", path, {"status": "completed", "output": {"shipped": True, "order": data.get("order")},
                               "steps": steps, "step_offset": job["step_sequence_base"], **fence})
            return
        steps = [_step(job, "reserve-stock", {"reserved": data.get("items", 1)}, 12),
                 _step(job, "charge-card", {"charge_id": "ch_" + job["run_id"][-6:]}, 48)]
        c.ok("PUT", path, {"status": "yielded", "steps": steps, "step_offset": job["step_sequence_base"],
                           "yield": {"step_id": f"{job['run_id']}:nap:0", "type": "sleep",
                                     "until": _ts(time.time() + 1)}, **fence})
    elif fn == "send-invoice":
        err = {"message": "SMTP relay refused the connection", "retryable": False,
               "stack": "Traceback (most recent call last):\n  File \"invoice.py\", line 12, in send\n"
                        "    smtp.send(msg)\nConnectionRefusedError: [Errno 111] Connection refused"}
        steps = [_step(job, "render-pdf", {"pages": 2}, 20),
                 _step(job, "send-email", err, 30, status="failed")]
        c.ok("PUT", path, {"status": "failed", "steps": steps, "step_offset": job["step_sequence_base"],
                           "error": {**err, "code": "STEP_FAILED"}, **fence})
    else:
        c.ok("PUT", path, {"status": "completed", "output": {"rows": 42}, "steps": [],
                           "step_offset": job["step_sequence_base"], **fence})


def work(c: Client, until: float, idle_exit: bool) -> int:
    """Poll and handle jobs until ``until``; with ``idle_exit``, also stop once nothing is left."""
    handled = 0
    while time.time() < until:
        status, out = c.call("GET", f"/api/v1/workers/{WORKER}/jobs?available=10&wait=1")
        if status == 200:
            for job in out["jobs"]:
                handle(c, job)
                handled += 1
            continue
        if status == 404:  # session dropped: register again (worker-protocol.md §2.10)
            register_worker(c)
            continue
        if status != 204:
            raise SystemExit(f"poll -> {status} {out}")
        if idle_exit:
            runs = c.ok("GET", "/api/v1/runs?limit=100")["runs"]
            if not any(r["status"] in ("pending", "running", "waiting") for r in runs):
                return handled
    return handled


def register_worker(c: Client) -> None:
    c.ok("POST", f"/api/v1/workers/{WORKER}/register",
         {"function_ids": [f["id"] for f in FUNCTIONS], "max_concurrent_jobs": 10})


def seed(c: Client, worker_seconds: float = 0.0) -> None:
    for f in FUNCTIONS:
        c.rpc("RegisterFunction", f)
    register_worker(c)
    for i, customer in enumerate(["ada", "grace", "linus", "ada"]):
        c.ok("POST", "/api/v1/events", {"name": "order.placed",
                                         "data": {"order": f"ord_{1001 + i}", "customer": customer,
                                                  "items": i + 1, "note": "<b>not bold</b>"}})
    c.ok("POST", "/api/v1/events", {"name": "invoice.requested", "data": {"order": "ord_1001"}})
    c.ok("POST", "/api/v1/events", {"name": "report.nightly", "data": {"day": "yesterday"}})
    c.ok("POST", "/api/v1/events", {"name": "user.signed_up", "data": {"email": "ada@example.com"}})
    work(c, time.time() + 20, idle_exit=True)
    if worker_seconds > 0:
        work(c, time.time() + worker_seconds, idle_exit=False)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", default="http://127.0.0.1:9123")
    p.add_argument("--token", default=None, help="API key when the server runs with auth")
    p.add_argument("--worker-seconds", type=float, default=0.0,
                   help="keep serving runs this long after seeding")
    args = p.parse_args(argv)
    seed(Client(args.url, args.token), args.worker_seconds)
    print("seeded", args.url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
