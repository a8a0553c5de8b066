"""Flow-control state of the engine: cron schedules, debounce lanes, throttle windows.

Pure bookkeeping (no I/O, no clock reads: callers pass ``now``). The engine owns one
:class:`FlowControl`, asks it for decisions and persists what it says must be durable
(debounce lanes, cron ticks). features.md §2.3 (cron), §2.5 (throttle), §2.6 (debounce).
"""

from __future__ import annotations

import sqlite3
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from .functions import FunctionDef
from .jsonutil import MISSING, canonical, data_path_get, fmt_ts

Key = tuple[str, str, str]  # (env, function id, lane or trigger index)


def lane_key(path: str, data: Any) -> str | None:
    """Canonical JSON of the value at ``path`` in the event data; ``""`` for no path; None when
    the path does not resolve."""
    if not path:
        return ""
    v = data_path_get(data, path)
    return None if v is MISSING else canonical(v)


@dataclass
class Lane:
    env_id: str
    function_id: str
    key: str
    function_version: int
    event: dict[str, Any]
    armed_at: float
    fires_at: float

    def save(self, conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO debounce_lanes (env_id, function_id, lane_key, function_version, "
                     "event_id, armed_at, fires_at) VALUES (?, ?, ?, ?, ?, ?, ?) "
                     "ON CONFLICT(env_id, function_id, lane_key) DO UPDATE SET "
                     "event_id = excluded.event_id, fires_at = excluded.fires_at, "
                     "function_version = excluded.function_version",
                     (self.env_id, self.function_id, self.key, self.function_version,
                      self.event["id"], self.armed_at, self.fires_at))

    def delete(self, conn: sqlite3.Connection) -> None:
        conn.execute("DELETE FROM debounce_lanes WHERE env_id = ? AND function_id = ? AND "
                     "lane_key = ?", (self.env_id, self.function_id, self.key))


class FlowControl:
    def __init__(self) -> None:
        self.lanes: dict[Key, Lane] = {}
        #: Next expected fire time per (env, function, trigger index): a timer that fires for
        #: another time is stale (the function changed meanwhile).
        self.cron_next: dict[Key, float] = {}
        #: Last fired tick per (env, function, trigger index), from the journal at start-up.
        self.cron_last: dict[Key, float] = {}
        self.starts: dict[Key, deque[float]] = {}

    # -- debounce ----------------------------------------------------------------------------

    def debounce(self, fd: FunctionDef, ev: dict[str, Any], now: float) -> Lane:
        """Arm or extend the lane for this event (features.md §2.6) and return it."""
        cfg = fd.config["debounce"]
        key = lane_key(cfg["key"], ev.get("data"))
        key = "" if key is None else key  # unresolvable path: the global lane
        k = (fd.env_id, fd.id, key)
        lane = self.lanes.get(k)
        fires = now + cfg["period_ms"] / 1000.0
        if lane is None:
            lane = Lane(fd.env_id, fd.id, key, fd.version, ev, now, fires)
            self.lanes[k] = lane
        else:
            lane.event, lane.function_version = ev, fd.version
        if cfg.get("max_wait_ms"):
            fires = min(fires, lane.armed_at + cfg["max_wait_ms"] / 1000.0)
        lane.fires_at = fires
        return lane

    # -- cron --------------------------------------------------------------------------------

    def cron_due(self, fd: FunctionDef, now: float) -> list[tuple[Key, float]]:
        """Next fire time of each cron trigger; missed ticks are not replayed (Decision)."""
        out = []
        if fd.status == "archived":
            return out
        for idx, sched in enumerate(fd.crons):
            if sched is None:
                continue
            k = (fd.env_id, fd.id, str(idx))
            after = max(now, self.cron_last.get(k, 0.0))
            t = sched.next_after(datetime.fromtimestamp(after, timezone.utc)).timestamp()
            self.cron_next[k] = t
            out.append((k, t))
        return out

    # -- throttle ----------------------------------------------------------------------------

    def throttle_allows(self, fd: FunctionDef, key: str, now: float) -> tuple[bool, float]:
        """(may a run start now, when the window frees up)."""
        cfg = fd.config["throttle"]
        window = cfg["period_ms"] / 1000.0
        q = self.starts.setdefault((fd.env_id, fd.id, key), deque())
        while q and q[0] <= now - window:
            q.popleft()
        if len(q) < cfg["limit"]:
            return True, now
        return False, q[0] + window

    def record_start(self, fd: FunctionDef, key: str, now: float) -> None:
        self.starts.setdefault((fd.env_id, fd.id, key), deque()).append(now)


def cron_tick_sql(conn: sqlite3.Connection, k: Key, fire_time: str, event_id: str) -> None:
    conn.execute("INSERT OR IGNORE INTO cron_ticks (env_id, function_id, trigger_index, "
                 "fire_time, event_id) VALUES (?, ?, ?, ?, ?)",
                 (k[0], k[1], int(k[2]), fire_time, event_id))


def lane_view(lane: Lane, period_ms: int) -> dict[str, Any]:
    return {"environment_id": lane.env_id, "function_id": lane.function_id,
            "function_version": lane.function_version, "debounce_key": lane.key,
            "event_id": lane.event["id"], "armed_at": fmt_ts(lane.armed_at),
            "fires_at": fmt_ts(lane.fires_at), "period_ms": period_ms}

