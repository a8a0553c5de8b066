"""Small shared helpers: compact JSON, RFC 3339 times, event paths and name patterns."""

from __future__ import annotations

import json
import re
import time
from datetime import datetime, timezone
from typing import Any


def dumps(obj: Any) -> str:
    """Compact JSON text (what JSON columns store)."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def loads(text: str | None, default: Any = None) -> Any:
    return default if text is None else json.loads(text)


_sec_cache: list[Any] = [-1, ""]


def fmt_ts(epoch: float) -> str:
    """Unix seconds -> RFC 3339 UTC with milliseconds and Z (spec README §3.4)."""
    ms = int(epoch * 1000)  # truncated: a timestamp never claims a later millisecond
    sec = ms // 1000
    cache = _sec_cache
    if cache[0] != sec:  # strftime once per second; hot paths format many times a second
        cache[1] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
        cache[0] = sec
    return f"{cache[1]}.{ms % 1000:03d}Z"


def now_ts() -> str:
    return fmt_ts(time.time())


_TS_RE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:?\d{2})?$")


def parse_ts(text: str) -> float:
    """RFC 3339 (any fraction, Z or offset; no offset = UTC) -> Unix seconds. ValueError if bad."""
    m = _TS_RE.match(text.strip())
    if not m:
        raise ValueError(f"not an RFC 3339 timestamp: {text!r}")
    y, mo, d, h, mi, s = (int(g) for g in m.groups()[:6])
    frac = float(m.group(7)) if m.group(7) else 0.0
    tz = m.group(8)
    dt = datetime(y, mo, d, h, mi, s, tzinfo=timezone.utc)
    epoch = dt.timestamp() + frac
    if tz and tz not in ("Z", "z"):
        sign = 1 if tz[0] == "+" else -1
        digits = tz[1:].replace(":", "")
        epoch -= sign * (int(digits[:2]) * 3600 + int(digits[2:]) * 60)
    return epoch


_DURATION_RE = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d)$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> float:
    """Duration string ``^\\d+(\\.\\d+)?(ms|s|m|h|d)$`` (spec README §3.4) -> seconds."""
    m = _DURATION_RE.match(text.strip())
    if not m:
        raise ValueError(f"not a duration: {text!r} (use e.g. 500ms, 30s, 5m, 2h, 7d)")
    return float(m.group(1)) * _UNITS[m.group(2)]


_MISSING = object()


def path_get(obj: Any, path: str) -> Any:
    """Value at a dotted path (worker-protocol.md §3.6.2 grammar): a leading ``event.`` or ``$.``
    is ignored, numeric segments index lists. Returns :data:`MISSING` when absent."""
    p = path.strip()
    if p.startswith("event."):
        p = p[6:]
    elif p.startswith("$."):
        p = p[2:]
    if not p:
        return _MISSING
    cur = obj
    for seg in p.split("."):
        if isinstance(cur, dict):
            if seg not in cur:
                return _MISSING
            cur = cur[seg]
        elif isinstance(cur, list) and seg.isdigit():
            i = int(seg)
            if i >= len(cur):
                return _MISSING
            cur = cur[i]
        else:
            return _MISSING
    return cur


MISSING = _MISSING


def data_path_get(data: Any, path: str) -> Any:
    """Concurrency/throttle/debounce key paths are into the event *data*; a leading ``data.`` or
    ``event.data.`` is stripped (features.md §2.5)."""
    p = path.strip()
    for prefix in ("event.data.", "data."):
        if p.startswith(prefix):
            p = p[len(prefix):]
            break
    return path_get({"d": data}, "d." + p) if p else MISSING


def canonical(value: Any) -> str:
    """Canonical JSON text of a value (lane keys, deep comparisons)."""
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def name_matches(pattern: str, name: str) -> bool:
    """Event name patterns: ``*`` matches one ``.``-token, ``>`` (last) matches one or more."""
    if pattern == name:
        return True
    if "*" not in pattern and ">" not in pattern:
        return False
    pt = pattern.split(".")
    nt = name.split(".")
    for i, p in enumerate(pt):
        if p == ">":
            return i == len(pt) - 1 and len(nt) > i
        if i >= len(nt):
            return False
        if p != "*" and p != nt[i]:
            return False
    return len(pt) == len(nt)
