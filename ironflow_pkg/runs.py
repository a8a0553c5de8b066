"""Runs: the state machine, the hot in-memory record and its row form.

features.md §3.1 is the transition table. :meth:`Run.transition` raises before anything changes
when a transition is illegal (design.md habit 2), so a bug shows up as an error, never as a run
in an impossible state.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from .jsonutil import dumps, fmt_ts, loads


class RunStatus(str, Enum):
    WAITING_FOR_CAPACITY = "waiting_for_capacity"
    RUNNING = "running"
    WAITING = "waiting"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


S = RunStatus
#: features.md §3.1. FAILED -> WAITING_FOR_CAPACITY is ResumeRun of a failed run.
TRANSITIONS: dict[RunStatus, frozenset[RunStatus]] = {
    S.WAITING_FOR_CAPACITY: frozenset({S.RUNNING, S.CANCELLED, S.PAUSED, S.FAILED}),
    S.RUNNING: frozenset({S.WAITING, S.WAITING_FOR_CAPACITY, S.COMPLETED, S.FAILED, S.PAUSED,
                          S.CANCELLED}),
    S.WAITING: frozenset({S.WAITING_FOR_CAPACITY, S.FAILED, S.CANCELLED, S.PAUSED}),
    S.PAUSED: frozenset({S.WAITING_FOR_CAPACITY, S.WAITING, S.CANCELLED, S.FAILED}),
    S.COMPLETED: frozenset(),
    S.FAILED: frozenset({S.WAITING_FOR_CAPACITY}),
    S.CANCELLED: frozenset(),
}
TERMINAL = frozenset({S.COMPLETED, S.FAILED, S.CANCELLED})

#: Connect enum numbers (proto RunStatus).
RUN_STATUS_NUMBER = {S.RUNNING: 2, S.COMPLETED: 3, S.FAILED: 4, S.CANCELLED: 5, S.PAUSED: 6,
                     S.WAITING_FOR_CAPACITY: 7, S.WAITING: 8}
NUMBER_RUN_STATUS = {v: k for k, v in RUN_STATUS_NUMBER.items()}
STEP_TYPE_NUMBER = {"invoke": 1, "sleep": 2, "wait_for_event": 3, "compensate": 4,
                    "invoke_function": 5}
STEP_STATUS_NUMBER = {"pending": 1, "running": 2, "completed": 3, "failed": 4, "sleeping": 5,
                      "waiting": 6, "timed_out": 7, "retrying": 8, "dead": 9}


class IllegalTransition(RuntimeError):
    pass


@dataclass
class Step:
    """One row of the step log (worker-protocol.md §3.4)."""

    id: str
    sequence: int
    step_id: str
    name: str = ""
    step_type: str = "invoke"
    status: str = "completed"
    output: Any = None
    error: Any = None
    attempt: int = 1
    started_at: str | None = None
    ended_at: str | None = None
    duration_ms: int = 0
    compensation_for: str = ""
    sleep_until: str | None = None
    wait_event_name: str = ""
    wait_timeout: str | None = None
    child_run_id: str = ""
    stored_status: str = ""
    original_output: Any = None
    patched_at: str | None = None
    patched_by: str = ""
    injected: bool = False
    created_at: str = ""
    updated_at: str = ""


@dataclass
class Run:
    """The hot record of a run. The journal row is written from it after every change."""

    id: str
    env_id: str
    function_id: str
    function_version: int
    event_id: str
    event_name: str
    event: dict[str, Any]
    status: RunStatus
    max_attempts: int
    retry: dict[str, Any]
    input: Any
    created_at: str
    updated_at: str
    attempt: int = 1
    output: Any = None
    error: dict[str, Any] | None = None
    execution_mode: str = "pull"
    execution_seq: int = 0
    lease_token: str = ""
    lease_expires_at: float | None = None
    acked: bool = False
    worker_id: str = ""
    claimed_by: str = ""
    claimed_at: str | None = None
    last_fence_seq: int = 0
    last_fence_status: str = ""
    last_fence_token: str = ""
    wake_at: float | None = None
    wait: dict[str, Any] | None = None
    pause_requested: bool = False
    pause_reason: str = ""
    parent_run_id: str = ""
    parent_step_id: str = ""
    actor_id: str = ""
    concurrency_key: str = ""
    throttle_key: str = ""
    timeout_at: float | None = None
    cancellation_cause: str = ""
    resume_from_step: str = ""
    row_version: int = 1
    started_at: str | None = None
    ended_at: str | None = None
    steps: list[Step] = field(default_factory=list)
    #: Position in the ready queue ordering (monotonic, in memory only).
    ready_seq: int = 0
    #: Resolved when the latest journal write of this run committed (in memory only).
    settled: Any = None
    #: The status last announced as a system event (None: the run is new).
    published_status: RunStatus | None = None

    @property
    def job_id(self) -> str:
        return f"{self.id}-{self.execution_seq}"

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    def transition(self, to: RunStatus) -> None:
        if to != self.status and to not in TRANSITIONS[self.status]:
            raise IllegalTransition(f"run {self.id}: {self.status.value} -> {to.value}")
        self.status = to


# -- rows ----------------------------------------------------------------------------------------

_RUN_COLS = ("id", "env_id", "function_id", "function_version", "event_id", "event_name", "status",
             "attempt", "max_attempts", "retry", "input", "output", "error", "execution_mode",
             "execution_seq", "lease_token", "lease_expires_at", "acked", "worker_id",
             "claimed_by", "claimed_at", "last_fence_seq", "last_fence_status", "last_fence_token",
             "wake_at", "wait",
             "pause_requested", "pause_reason", "parent_run_id", "parent_step_id", "actor_id",
             "concurrency_key", "throttle_key", "timeout_at", "cancellation_cause", "resume_from_step",
             "row_version", "created_at", "started_at", "ended_at", "updated_at")
_RUN_UPSERT = (f"INSERT INTO runs ({', '.join(_RUN_COLS)}) VALUES ({', '.join('?' * len(_RUN_COLS))}) "
               f"ON CONFLICT(id) DO UPDATE SET "
               + ", ".join(f"{c} = excluded.{c}" for c in _RUN_COLS[1:]))

_STEP_COLS = ("id", "run_id", "env_id", "sequence", "step_id", "name", "step_type", "status",
              "stored_status", "output", "error", "attempt", "started_at", "ended_at",
              "duration_ms", "compensation_for", "sleep_until", "wait_event_name", "wait_timeout",
              "child_run_id", "original_output", "patched_at", "patched_by", "injected",
              "created_at", "updated_at")
_STEP_UPSERT = (f"INSERT INTO steps ({', '.join(_STEP_COLS)}) VALUES ({', '.join('?' * len(_STEP_COLS))}) "
                f"ON CONFLICT(run_id, sequence) DO UPDATE SET "
                + ", ".join(f"{c} = excluded.{c}" for c in _STEP_COLS if c not in ("run_id", "sequence", "created_at")))


def _j(v: Any) -> str | None:
    return None if v is None else dumps(v)


def save_run(conn: sqlite3.Connection, r: Run) -> None:
    conn.execute(_RUN_UPSERT, (
        r.id, r.env_id, r.function_id, r.function_version, r.event_id, r.event_name, r.status.value,
        r.attempt, r.max_attempts, dumps(r.retry), dumps(r.input), _j(r.output), _j(r.error),
        r.execution_mode, r.execution_seq, r.lease_token, r.lease_expires_at, int(r.acked),
        r.worker_id, r.claimed_by, r.claimed_at, r.last_fence_seq, r.last_fence_status,
        r.last_fence_token, r.wake_at,
        _j(r.wait), int(r.pause_requested), r.pause_reason, r.parent_run_id, r.parent_step_id,
        r.actor_id, r.concurrency_key, r.throttle_key, r.timeout_at, r.cancellation_cause, r.resume_from_step,
        r.row_version, r.created_at, r.started_at, r.ended_at, r.updated_at))


def save_step(conn: sqlite3.Connection, r: Run, s: Step) -> None:
    conn.execute(_STEP_UPSERT, (
        s.id, r.id, r.env_id, s.sequence, s.step_id, s.name, s.step_type, s.status, s.stored_status,
        _j(s.output) if s.output is not None or s.status == "completed" else None, _j(s.error),
        s.attempt, s.started_at, s.ended_at, s.duration_ms, s.compensation_for, s.sleep_until,
        s.wait_event_name, s.wait_timeout, s.child_run_id, _j(s.original_output), s.patched_at,
        s.patched_by, int(s.injected), s.created_at, s.updated_at))


def run_from_row(row: sqlite3.Row, event: dict[str, Any]) -> Run:
    run = Run(
        id=row["id"], env_id=row["env_id"], function_id=row["function_id"],
        function_version=row["function_version"], event_id=row["event_id"],
        event_name=row["event_name"], event=event, status=RunStatus(row["status"]),
        max_attempts=row["max_attempts"], retry=loads(row["retry"], {}), input=loads(row["input"]),
        created_at=row["created_at"], updated_at=row["updated_at"], attempt=row["attempt"],
        output=loads(row["output"]), error=loads(row["error"]), execution_mode=row["execution_mode"],
        execution_seq=row["execution_seq"], lease_token=row["lease_token"],
        lease_expires_at=row["lease_expires_at"], acked=bool(row["acked"]),
        worker_id=row["worker_id"], claimed_by=row["claimed_by"], claimed_at=row["claimed_at"],
        last_fence_seq=row["last_fence_seq"], last_fence_status=row["last_fence_status"],
        last_fence_token=row["last_fence_token"],
        wake_at=row["wake_at"], wait=loads(row["wait"]), pause_requested=bool(row["pause_requested"]),
        pause_reason=row["pause_reason"], parent_run_id=row["parent_run_id"],
        parent_step_id=row["parent_step_id"], actor_id=row["actor_id"],
        concurrency_key=row["concurrency_key"], throttle_key=row["throttle_key"],
        timeout_at=row["timeout_at"],
        cancellation_cause=row["cancellation_cause"], resume_from_step=row["resume_from_step"],
        row_version=row["row_version"], started_at=row["started_at"], ended_at=row["ended_at"])
    run.published_status = run.status  # a stored run was announced when it was written
    return run


def step_from_row(row: sqlite3.Row) -> Step:
    return Step(
        id=row["id"], sequence=row["sequence"], step_id=row["step_id"], name=row["name"],
        step_type=row["step_type"], status=row["status"], output=loads(row["output"]),
        error=loads(row["error"]), attempt=row["attempt"], started_at=row["started_at"],
        ended_at=row["ended_at"], duration_ms=row["duration_ms"],
        compensation_for=row["compensation_for"], sleep_until=row["sleep_until"],
        wait_event_name=row["wait_event_name"], wait_timeout=row["wait_timeout"],
        child_run_id=row["child_run_id"], stored_status=row["stored_status"],
        original_output=loads(row["original_output"]), patched_at=row["patched_at"],
        patched_by=row["patched_by"], injected=bool(row["injected"]), created_at=row["created_at"],
        updated_at=row["updated_at"])


# -- views ---------------------------------------------------------------------------------------

def _ts(epoch: float | None) -> str | None:
    return None if epoch is None else fmt_ts(epoch)


def run_rest(r: Run) -> dict[str, Any]:
    """REST shape (rest-api.md §2.3)."""
    return {
        "id": r.id, "function_id": r.function_id, "function_version": r.function_version,
        "event_id": r.event_id, "event_name": r.event_name, "status": r.status.value,
        "attempt": r.attempt, "max_attempts": r.max_attempts, "execution_mode": r.execution_mode,
        "worker_id": r.worker_id, "actor_id": r.actor_id, "input": r.input, "output": r.output,
        "error": r.error, "pause_requested": r.pause_requested, "pause_reason": r.pause_reason,
        "parent_run_id": r.parent_run_id, "parent_step_id": r.parent_step_id,
        "cancellation_cause": r.cancellation_cause, "environment_id": r.env_id,
        "created_at": r.created_at, "started_at": r.started_at, "ended_at": r.ended_at,
        "updated_at": r.updated_at, "timeout_at": _ts(r.timeout_at),
    }


def step_rest(run_id: str, s: Step) -> dict[str, Any]:
    """REST shape (rest-api.md §2.4)."""
    return {
        "id": s.id, "run_id": run_id, "step_id": s.step_id, "name": s.name,
        "step_type": s.step_type, "sequence": s.sequence, "status": s.status,
        "stored_status": s.stored_status, "output": s.output, "error": s.error,
        "attempt": s.attempt, "duration_ms": s.duration_ms, "started_at": s.started_at,
        "ended_at": s.ended_at, "compensation_for": s.compensation_for,
        "child_run_id": s.child_run_id, "sleep_until": s.sleep_until,
        "wait_event_name": s.wait_event_name, "wait_timeout": s.wait_timeout,
        "original_output": s.original_output, "patched_at": s.patched_at,
        "patched_by": s.patched_by, "injected": s.injected,
    }
