"""Settings: the one source of truth for configuration (design.md habit 14).

Built from command-line flags, ``IRONFLOW_*`` environment variables and defaults, in that order
of precedence (features.md §21). Values are parsed and validated here, so the rest of the code
gets typed values and a bad setting stops the start with a message naming the variable.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from .logs import redact

VERSION = "0.53.0"

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
_KEY_RE = re.compile(r"^ifkey_[0-9a-f]{32}$")


class ConfigError(Exception):
    """A setting that cannot be used; the message names it and says what is accepted."""


def parse_duration(value: str, name: str) -> float:
    """Seconds from ``500ms``, ``30s``, ``5m``, ``2h``, ``7d`` or plain seconds (``3``, ``0.5``)."""
    m = _DURATION_RE.match(str(value))
    if not m:
        raise ConfigError(f"{name}: {value!r} is not a duration (use e.g. 500ms, 30s, 5m, 2h, 7d "
                          f"or plain seconds)")
    return float(m.group(1)) * _UNIT_SECONDS[m.group(2)]


def parse_bool(value: str, name: str) -> bool:
    v = str(value).strip().lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"{name}: {value!r} is not a boolean (use true or false)")


def parse_int(value: str, name: str, lo: int | None = None, hi: int | None = None) -> int:
    try:
        n = int(str(value).strip())
    except ValueError:
        raise ConfigError(f"{name}: {value!r} is not an integer") from None
    if (lo is not None and n < lo) or (hi is not None and n > hi):
        raise ConfigError(f"{name}: {n} is out of range [{lo}, {hi}]")
    return n


def parse_float(value: str, name: str) -> float:
    try:
        return float(str(value).strip())
    except ValueError:
        raise ConfigError(f"{name}: {value!r} is not a number") from None


@dataclass(frozen=True)
class Settings:
    host: str = "0.0.0.0"
    port: int = 9123
    data_dir: str = "./ironflow-data"
    db_path: str = ""  # resolved to <data_dir>/ironflow.db
    dev: bool = False
    bootstrap_api_key: str = field(default="", metadata={"secret": True})
    bootstrap_key_file: str = ""
    master_key: str = field(default="", metadata={"secret": True})
    jwt_secret: str = field(default="", metadata={"secret": True})
    signing_key: str = field(default="", metadata={"secret": True})
    lease_ttl: float = 30.0
    lease_grace: float = 5.0
    worker_timeout: float = 90.0
    poll_max_wait: float = 25.0
    metrics_enabled: bool = False
    cors_origins: tuple[str, ...] = ("*",)
    max_request_bytes: int = 32 * 1024 * 1024
    node_id: str = ""
    log_level: str = "info"
    log_format: str = "json"
    integrity_check: bool = False
    #: Seconds an idle keep-alive connection is kept (spec README §6.3).
    idle_timeout: float = 120.0
    #: Concurrent connection cap.
    max_connections: int = 2048
    #: Shutdown grace for in-flight requests (features.md §17).
    shutdown_grace: float = 10.0
    #: Event schema enforcement on emit: off, warn or reject (features.md §9.2).
    event_schema_enforcement: str = "off"
    #: Test-only fault injection (acceptance.md, Conventions): a JSON object, never in production.
    test_faults: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        """The settings as a dict with secrets masked, for the start-up log line."""
        out: dict[str, Any] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if f.metadata.get("secret"):
                v = redact(v)
            elif isinstance(v, tuple):
                v = list(v)
            out[f.name] = v
        return out


#: environment variable -> (settings field, parser)
_ENV: dict[str, tuple[str, Any]] = {
    "IRONFLOW_HOST": ("host", str),
    "IRONFLOW_PORT": ("port", lambda v, n: parse_int(v, n, 0, 65535)),
    "IRONFLOW_DATA_DIR": ("data_dir", str),
    "IRONFLOW_DB_PATH": ("db_path", str),
    "IRONFLOW_DEV": ("dev", parse_bool),
    "IRONFLOW_BOOTSTRAP_API_KEY": ("bootstrap_api_key", str),
    "IRONFLOW_MASTER_KEY": ("master_key", str),
    "IRONFLOW_JWT_SECRET": ("jwt_secret", str),
    "IRONFLOW_SIGNING_KEY": ("signing_key", str),
    "IRONFLOW_LEASE_TTL": ("lease_ttl", parse_duration),
    "IRONFLOW_LEASE_GRACE": ("lease_grace", parse_duration),
    "IRONFLOW_WORKER_TIMEOUT": ("worker_timeout", parse_duration),
    "IRONFLOW_POLL_MAX_WAIT": ("poll_max_wait", parse_duration),
    "IRONFLOW_METRICS_ENABLED": ("metrics_enabled", parse_bool),
    "IRONFLOW_CORS_ORIGINS": ("cors_origins", lambda v, n: tuple(
        o.strip() for o in v.split(",") if o.strip()) or ("*",)),
    "IRONFLOW_MAX_REQUEST_BYTES": ("max_request_bytes", lambda v, n: parse_int(v, n, 1024)),
    "IRONFLOW_NODE_ID": ("node_id", str),
    "LOG_LEVEL": ("log_level", str),
    "LOG_FORMAT": ("log_format", str),
    "IRONFLOW_INTEGRITY_CHECK": ("integrity_check", parse_bool),
    "IRONFLOW_IDLE_TIMEOUT": ("idle_timeout", parse_duration),
    "IRONFLOW_MAX_CONNECTIONS": ("max_connections", lambda v, n: parse_int(v, n, 1)),
    "IRONFLOW_EVENT_SCHEMA_ENFORCEMENT": ("event_schema_enforcement", str),
    "IRONFLOW_TEST_FAULTS": ("test_faults", lambda v, n: parse_faults(v, n)),
}


def parse_faults(value: str, name: str) -> dict[str, Any]:
    try:
        faults = json.loads(value)
    except ValueError:
        raise ConfigError(f"{name}: must be a JSON object") from None
    if not isinstance(faults, dict):
        raise ConfigError(f"{name}: must be a JSON object")
    rs = faults.get("report_status", [])
    if not isinstance(rs, list) or not all(isinstance(x, int) and 400 <= x <= 599 for x in rs):
        raise ConfigError(f"{name}: report_status must be a list of HTTP error statuses")
    return faults


def _call(parser: Any, value: str, name: str) -> Any:
    return parser(value) if parser is str else parser(value, name)


def load_settings(flags: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> Settings:
    """Flags (already parsed by the CLI; ``None`` = not given) win over environment variables,
    which win over defaults."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for var, (name, parser) in _ENV.items():
        raw = env.get(var)
        if raw is not None and raw != "":
            values[name] = _call(parser, raw, var)
    for name, value in flags.items():
        if value is not None:
            values[name] = value

    url = env.get("IRONFLOW_DATABASE_URL", "")
    if url:
        if not url.startswith("sqlite:///"):
            raise ConfigError("IRONFLOW_DATABASE_URL: only sqlite:///PATH is supported by this "
                              "server (PostgreSQL is not); unset it or use --db")
        # sqlite:///relative/path and sqlite:////absolute/path (the usual URL convention)
        values.setdefault("db_path", url[len("sqlite:///"):])

    s = Settings(**values)
    if s.log_level.lower() not in ("trace", "debug", "info", "warn", "warning", "error"):
        raise ConfigError(f"LOG_LEVEL: {s.log_level!r} is not one of trace, debug, info, warn, error")
    if s.event_schema_enforcement not in ("off", "warn", "reject"):
        raise ConfigError("IRONFLOW_EVENT_SCHEMA_ENFORCEMENT: must be off, warn or reject")
    if s.log_format.lower() not in ("json", "text"):
        raise ConfigError(f"LOG_FORMAT: {s.log_format!r} is not json or text")
    if s.bootstrap_api_key and not _KEY_RE.match(s.bootstrap_api_key):
        raise ConfigError("IRONFLOW_BOOTSTRAP_API_KEY: must be 'ifkey_' followed by 32 lowercase "
                          "hex characters")
    if s.master_key and not re.fullmatch(r"[0-9a-fA-F]{64}", s.master_key):
        raise ConfigError("IRONFLOW_MASTER_KEY: must be 64 hex characters (a 256-bit key)")
    if not 0 <= s.port <= 65535:
        raise ConfigError(f"--port: {s.port} is out of range [0, 65535]")
    if s.lease_ttl <= 0:
        raise ConfigError("IRONFLOW_LEASE_TTL: must be positive")
    db = s.db_path or os.path.join(s.data_dir, "ironflow.db")
    return replace(s, db_path=db, log_level=s.log_level.lower(), log_format=s.log_format.lower())
