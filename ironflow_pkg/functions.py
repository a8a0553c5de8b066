"""Function definitions: validation, normalization and the in-memory registry.

A definition is kept as a ``RegisterFunctionRequest``-shaped dict keyed by proto field names
(worker-protocol.md §2.2). Validation errors name the offending field (400 invalid_argument).
Compiled trigger expressions and cron schedules live next to it in :class:`FunctionDef`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from .cron import CronError, CronSchedule, parse_cron
from .errors import ApiError
from .expr import Expression, ExprError, compile_expr
from .jsonutil import canonical

ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

#: features.md §2.4 defaults.
DEFAULT_RETRY = {"max_attempts": 25, "initial_delay_ms": 1000, "backoff_factor": 2.0,
                 "max_delay_ms": 300000, "on_exhausted": "pause"}
DEFAULT_TIMEOUT_MS = 600000
STATUSES = ("active", "paused", "archived")
STATUS_NUMBER = {"active": 1, "paused": 2, "archived": 3}
NUMBER_STATUS = {v: k for k, v in STATUS_NUMBER.items()}
MODE_NUMBER = {"push": 1, "pull": 2}

#: Config fields that define the function (everything RegisterFunction stores).
CONFIG_FIELDS = ("id", "name", "description", "triggers", "retry", "timeout_ms", "concurrency",
                 "preferred_mode", "endpoint_url", "actor_key", "recording",
                 "recording_profile", "metadata", "debounce", "cancel_on", "circuit_breaker",
                 "throttle")


def bad(field_name: str, message: str) -> ApiError:
    return ApiError("invalid_argument", f"{field_name}: {message}", details={"field": field_name})


def _int(v: Any, name: str, lo: int | None = None) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or (isinstance(v, float) and not v.is_integer()):
        if isinstance(v, str) and v.strip().lstrip("-").isdigit():
            v = int(v)
        else:
            raise bad(name, "must be an integer")
    v = int(v)
    if lo is not None and v < lo:
        raise bad(name, f"must be >= {lo}")
    return v


def _str(v: Any, name: str) -> str:
    if v is None:
        return ""
    if not isinstance(v, str):
        raise bad(name, "must be a string")
    return v


def normalize(req: dict[str, Any], defaults: dict[str, Any] | None = None) -> dict[str, Any]:
    """Validate a RegisterFunctionRequest dict (proto field names) and return the stored config."""
    fid = _str(req.get("id"), "id")
    if not ID_RE.match(fid):
        raise bad("id", "must be 1-128 characters of [A-Za-z0-9._:-]")
    out: dict[str, Any] = {"id": fid, "name": _str(req.get("name"), "name") or fid,
                           "description": _str(req.get("description"), "description")}
    triggers = req.get("triggers") or []
    if not isinstance(triggers, list):
        raise bad("triggers", "must be a list")
    norm_triggers = []
    for i, t in enumerate(triggers):
        if not isinstance(t, dict):
            raise bad(f"triggers[{i}]", "must be an object")
        ev, ex, cr = (_str(t.get(k), f"triggers[{i}].{k}") for k in ("event", "expression", "cron"))
        if not ev and not cr:
            raise bad(f"triggers[{i}]", "needs an event and/or a cron schedule")
        if ev and (len(ev) > 256 or any(c.isspace() for c in ev)):
            raise bad(f"triggers[{i}].event", "must be 1-256 characters without whitespace")
        if ex:
            try:
                compile_expr(ex)
            except ExprError as e:
                raise bad(f"triggers[{i}].expression", str(e)) from None
        if cr:
            try:
                parse_cron(cr)
            except CronError as e:
                raise bad(f"triggers[{i}].cron", str(e)) from None
        norm_triggers.append({"event": ev, "expression": ex, "cron": cr})
    out["triggers"] = norm_triggers

    d = defaults or DEFAULT_RETRY
    retry_in = req.get("retry") or {}
    if not isinstance(retry_in, dict):
        raise bad("retry", "must be an object")
    retry = {
        "max_attempts": _int(retry_in.get("max_attempts") or 0, "retry.max_attempts", 0) or d["max_attempts"],
        "initial_delay_ms": _int(retry_in.get("initial_delay_ms") or 0, "retry.initial_delay_ms", 0) or d["initial_delay_ms"],
        "backoff_factor": float(retry_in.get("backoff_factor") or 0) or d["backoff_factor"],
        "max_delay_ms": _int(retry_in.get("max_delay_ms") or 0, "retry.max_delay_ms", 0) or d["max_delay_ms"],
        "on_exhausted": _str(retry_in.get("on_exhausted"), "retry.on_exhausted") or d["on_exhausted"],
    }
    if retry["on_exhausted"] not in ("pause", "fail"):
        raise bad("retry.on_exhausted", "must be 'pause' or 'fail'")
    if retry["backoff_factor"] < 1.0:
        raise bad("retry.backoff_factor", "must be >= 1")
    out["retry"] = retry
    out["timeout_ms"] = _int(req.get("timeout_ms") or 0, "timeout_ms", 0) or DEFAULT_TIMEOUT_MS

    mode = req.get("preferred_mode") or 0
    if isinstance(mode, str):
        mode = {"EXECUTION_MODE_PUSH": 1, "EXECUTION_MODE_PULL": 2, "push": 1, "pull": 2}.get(mode, 0)
    out["preferred_mode"] = "push" if mode == 1 else "pull"
    out["endpoint_url"] = _str(req.get("endpoint_url"), "endpoint_url")
    if out["preferred_mode"] == "push" and not re.match(r"^https?://", out["endpoint_url"]):
        raise bad("endpoint_url", "a push function needs an http(s):// endpoint URL")

    conc = req.get("concurrency")
    if conc:
        out["concurrency"] = {"limit": _int(conc.get("limit"), "concurrency.limit", 1),
                              "key": _str(conc.get("key"), "concurrency.key")}
    thr = req.get("throttle")
    if thr:
        out["throttle"] = {"limit": _int(thr.get("limit"), "throttle.limit", 1),
                           "period_ms": _int(thr.get("period_ms"), "throttle.period_ms", 1000),
                           "key": _str(thr.get("key"), "throttle.key")}
    deb = req.get("debounce")
    if deb:
        period = _int(deb.get("period_ms"), "debounce.period_ms", 1000)
        max_wait = _int(deb.get("max_wait_ms") or 0, "debounce.max_wait_ms", 0)
        if max_wait and max_wait < period:
            raise bad("debounce.max_wait_ms", "must be 0 or >= period_ms")
        out["debounce"] = {"period_ms": period, "key": _str(deb.get("key"), "debounce.key"),
                           "max_wait_ms": max_wait}
    cb = req.get("circuit_breaker")
    if cb:
        out["circuit_breaker"] = {k: _int(cb.get(k) or 0, f"circuit_breaker.{k}", 0)
                                  for k in ("failure_threshold", "open_duration_ms", "max_open_duration_ms")}
    cancel_on = req.get("cancel_on") or []
    out["cancel_on"] = []
    for i, c in enumerate(cancel_on):
        ev = _str((c or {}).get("event"), f"cancel_on[{i}].event")
        if not ev:
            raise bad(f"cancel_on[{i}].event", "is required")
        out["cancel_on"].append({"event": ev, "match": _str(c.get("match"), f"cancel_on[{i}].match")})
    out["actor_key"] = _str(req.get("actor_key"), "actor_key")
    secrets = req.get("secrets") or []
    if not isinstance(secrets, list) or not all(isinstance(s, str) and s for s in secrets):
        raise bad("secrets", "must be a list of secret names")
    out["secrets"] = list(secrets)
    out["recording"] = bool(req.get("recording") or False)
    profile = _str(req.get("recording_profile"), "recording_profile")
    if profile and profile not in ("all", "run_lifecycle", "steps"):
        raise bad("recording_profile", "must be all, run_lifecycle or steps")
    out["recording_profile"] = profile
    meta = req.get("metadata")
    if meta is not None and not isinstance(meta, dict):
        raise bad("metadata", "must be an object")
    out["metadata"] = meta or {}
    return out


@dataclass
class FunctionDef:
    """A registered function with its compiled parts."""

    env_id: str
    config: dict[str, Any]
    status: str
    version: int
    created_at: str
    updated_at: str
    expressions: list[Expression | None] = field(default_factory=list)
    crons: list[CronSchedule | None] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.expressions = [compile_expr(t["expression"]) if t["expression"] else None
                            for t in self.config["triggers"]]
        self.crons = [parse_cron(t["cron"]) if t["cron"] else None for t in self.config["triggers"]]

    @property
    def id(self) -> str:
        return self.config["id"]

    @property
    def mode(self) -> str:
        return self.config["preferred_mode"]

    def same_config(self, other: dict[str, Any]) -> bool:
        return canonical(self.config) == canonical(other)

    def rest(self, next_run: str | None = None) -> dict[str, Any]:
        """REST shape (rest-api.md §2.2)."""
        c = self.config
        return {
            "id": c["id"], "name": c["name"], "description": c["description"],
            "triggers": c["triggers"], "retry": c["retry"], "timeout_ms": c["timeout_ms"],
            "concurrency": c.get("concurrency"), "throttle": c.get("throttle"),
            "debounce": c.get("debounce"), "circuit_breaker": c.get("circuit_breaker"),
            "cancel_on": c["cancel_on"], "actor_key": c["actor_key"], "secrets": c["secrets"],
            "mode": c["preferred_mode"], "endpoint_url": c["endpoint_url"], "status": self.status,
            "version": self.version, "recording": c["recording"],
            "recording_profile": c["recording_profile"], "metadata": c["metadata"],
            "next_run": next_run, "created_at": self.created_at, "updated_at": self.updated_at,
        }

    def proto(self, next_run: str | None = None) -> dict[str, Any]:
        """``Function`` message (proto field names) for the Connect adapters."""
        c = self.config
        out = {k: c[k] for k in ("id", "name", "description", "triggers", "retry", "timeout_ms",
                                  "endpoint_url", "actor_key", "recording",
                                  "recording_profile", "metadata", "cancel_on")}
        out["preferred_mode"] = MODE_NUMBER[c["preferred_mode"]]
        for k in ("concurrency", "throttle", "debounce", "circuit_breaker"):
            if c.get(k):
                out[k] = c[k]
        out.update(status=STATUS_NUMBER[self.status], version=self.version,
                   created_at=self.created_at, updated_at=self.updated_at)
        if next_run:
            out["next_run"] = next_run
        return out
