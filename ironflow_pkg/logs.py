"""Structured logging on the stdlib ``logging`` module (spec README §6.4, features.md §21).

One JSON object per line on stderr by default (``LOG_FORMAT=json``), or a compact line for
people (``LOG_FORMAT=text``). ``LOG_LEVEL`` is ``trace|debug|info|warn|error``.

Structured fields travel in ``extra={"fields": {...}}`` (or through :func:`log_event`) and are
merged into the top level of the JSON object. Never put API keys, secret values or signing
keys in a log line (spec README §6.4); pass them through :func:`redact` when they must be shown.

Only the ``ironflow`` logger tree is configured: the root logger and its handlers are left
alone, and ``ironflow`` keeps propagating (so pytest's ``caplog`` still sees records).
"""

from __future__ import annotations

import json
import logging
import sys
import time
import traceback
from typing import IO, Any, Mapping

from .jsonutil import fmt_ts

__all__ = [
    "LOGGER_NAME",
    "TRACE",
    "JsonFormatter",
    "TextFormatter",
    "get_logger",
    "log_event",
    "parse_level",
    "redact",
    "setup_logging",
]

LOGGER_NAME = "ironflow"

#: Custom level below DEBUG for very chatty output (frames, wire bytes).
TRACE = 5
logging.addLevelName(TRACE, "TRACE")

_LEVELS: dict[str, int] = {
    "trace": TRACE,
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}

# Names written in log lines; "warn" matches the LOG_LEVEL spelling.
_LEVEL_NAMES: dict[int, str] = {
    TRACE: "trace",
    logging.DEBUG: "debug",
    logging.INFO: "info",
    logging.WARNING: "warn",
    logging.ERROR: "error",
    logging.CRITICAL: "critical",
}

_FORMATS = ("json", "text")

# Keys the JSON formatter owns; a structured field with one of these names is written as
# "field.<name>" instead of overwriting it.
_RESERVED = frozenset({"ts", "level", "logger", "msg", "exc", "stack"})

#: Marks the handler setup_logging installed, so a second call replaces it.
_HANDLER_MARK = "_ironflow_handler"


def parse_level(level: str | int) -> int:
    """``"trace"|"debug"|"info"|"warn"|"warning"|"error"`` (any case) or an int -> level number."""
    if isinstance(level, int) and not isinstance(level, bool):
        return level
    if isinstance(level, str):
        num = _LEVELS.get(level.strip().lower())
        if num is not None:
            return num
    raise ValueError(
        f"unknown log level {level!r}: set LOG_LEVEL (or --log-level) to one of "
        "trace, debug, info, warn, error"
    )


def _level_name(levelno: int, fallback: str) -> str:
    return _LEVEL_NAMES.get(levelno) or fallback.lower()


def _timestamp(created: float) -> str:
    """RFC 3339 UTC with milliseconds: ``2026-11-29T21:00:28.818Z``."""
    return fmt_ts(created)


def _safe_str(value: Any) -> str:
    try:
        return str(value)
    except Exception:
        try:
            return repr(value)
        except Exception:
            return f"<unprintable {type(value).__name__}>"


def _message(record: logging.LogRecord) -> str:
    try:
        return record.getMessage()
    except Exception:
        # Bad %-args must not lose the line.
        return f"{_safe_str(record.msg)} {_safe_str(record.args)}"


def _fields(record: logging.LogRecord) -> Mapping[Any, Any]:
    fields = getattr(record, "fields", None)
    return fields if isinstance(fields, Mapping) else {}


def _exc_text(formatter: logging.Formatter, record: logging.LogRecord) -> str | None:
    try:
        if record.exc_info and record.exc_info[0] is not None:
            if not record.exc_text:
                record.exc_text = formatter.formatException(record.exc_info)
            return record.exc_text
        return record.exc_text or None
    except Exception:
        return "<traceback unavailable>"


def _sanitize(value: Any, depth: int = 0) -> Any:
    """A JSON-safe copy: str keys, finite numbers, no cycles (depth-capped), str() otherwise."""
    if value is None or isinstance(value, (bool, str, int)):
        return value
    if isinstance(value, float):
        return value if value == value and value not in (float("inf"), float("-inf")) else _safe_str(value)
    if depth >= 20:
        return _safe_str(value)
    if isinstance(value, Mapping):
        try:
            return {_safe_str(k): _sanitize(v, depth + 1) for k, v in value.items()}
        except Exception:
            return _safe_str(value)
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_sanitize(v, depth + 1) for v in value]
    return _safe_str(value)


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), default=_safe_str, allow_nan=False)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, the structured fields, exc."""

    def format(self, record: logging.LogRecord) -> str:
        try:
            out: dict[str, Any] = {
                "ts": _timestamp(record.created),
                "level": _level_name(record.levelno, record.levelname),
                "logger": record.name,
                "msg": _message(record),
            }
            for key, value in _fields(record).items():
                k = key if isinstance(key, str) else _safe_str(key)
                out[f"field.{k}" if k in _RESERVED else k] = value
            exc = _exc_text(self, record)
            if exc:
                out["exc"] = exc
            if record.stack_info:
                out["stack"] = record.stack_info
            try:
                return _dumps(out)
            except Exception:
                # NaN, non-str dict keys deep inside, cycles, a __str__ that raises...
                return _dumps(_sanitize(out))
        except Exception:
            try:
                return _dumps({"ts": _timestamp(time.time()), "level": "error", "logger": LOGGER_NAME,
                               "msg": "log record could not be formatted",
                               "original": _safe_str(getattr(record, "msg", None))})
            except Exception:
                return '{"level":"error","msg":"log record could not be formatted"}'


def _text_value(value: Any) -> str:
    if isinstance(value, str):
        s = value
    elif isinstance(value, (Mapping, list, tuple)):
        try:
            return _dumps(_sanitize(value))
        except Exception:
            s = _safe_str(value)
    else:
        s = _safe_str(value)
    # Quote whatever would make key=value ambiguous to read back.
    if s == "" or any(c in s for c in ' "=\n\r\t\\'):
        return json.dumps(s, ensure_ascii=False)
    return s


class TextFormatter(logging.Formatter):
    """For people: ``2026-11-29T21:00:28.818Z INFO  ironflow.http  msg key=value``."""

    def format(self, record: logging.LogRecord) -> str:
        try:
            level = _level_name(record.levelno, record.levelname).upper()
            parts = [f"{_timestamp(record.created)} {level:<5} {record.name}  {_message(record)}"]
            for key, value in _fields(record).items():
                parts.append(f"{_safe_str(key)}={_text_value(value)}")
            line = " ".join(parts)
            exc = _exc_text(self, record)
            if exc:
                line += "\n" + exc
            if record.stack_info:
                line += "\n" + record.stack_info
            return line
        except Exception:
            return f"{_timestamp(time.time())} ERROR {LOGGER_NAME}  log record could not be formatted"


def setup_logging(level: str | int = "info", fmt: str = "json", stream: IO[str] | None = None) -> logging.Logger:
    """Configure the ``ironflow`` logger tree and return the ``ironflow`` logger.

    ``level``: trace, debug, info, warn/warning, error (ValueError otherwise).
    ``fmt``: ``json`` (default) or ``text``. ``stream``: defaults to ``sys.stderr``.
    Calling it again replaces the handler it installed before (no duplicate lines).
    """
    levelno = parse_level(level)
    fmt_name = fmt.strip().lower() if isinstance(fmt, str) else fmt
    if fmt_name not in _FORMATS:
        raise ValueError(f"unknown log format {fmt!r}: set LOG_FORMAT to 'json' or 'text'")

    logger = logging.getLogger(LOGGER_NAME)
    for h in list(logger.handlers):
        if getattr(h, _HANDLER_MARK, False):
            logger.removeHandler(h)
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    setattr(handler, _HANDLER_MARK, True)
    handler.setFormatter(JsonFormatter() if fmt_name == "json" else TextFormatter())
    logger.addHandler(handler)
    logger.setLevel(levelno)
    return logger


def get_logger(name: str = "") -> logging.Logger:
    """``ironflow`` or a logger under it: ``get_logger("http")`` -> ``ironflow.http``."""
    if not name or name == LOGGER_NAME:
        return logging.getLogger(LOGGER_NAME)
    if name.startswith(LOGGER_NAME + "."):
        return logging.getLogger(name)
    return logging.getLogger(f"{LOGGER_NAME}.{name}")


def log_event(logger: logging.Logger, level: str | int, msg: str, /, exc_info: Any = None, **fields: Any) -> None:
    """Log ``msg`` with structured ``fields``: ``log_event(log, "info", "run started", run_id=r)``.

    ``level`` is a name accepted by :func:`parse_level` or a level number.
    """
    levelno = parse_level(level)
    if logger.isEnabledFor(levelno):
        logger.log(levelno, msg, exc_info=exc_info, extra={"fields": fields}, stacklevel=2)


def redact(value: str | None) -> str:
    """Mask a secret for display: the first 8 characters then ``…``; ``""`` stays ``""``.

    Values shorter than 16 characters show no prefix at all (``…``): 8 characters would be
    half of such a secret.
    """
    if not value:
        return ""
    s = value if isinstance(value, str) else _safe_str(value)
    if len(s) < 16:
        return "…"
    return s[:8] + "…"


class AccessLog:
    """The per-request access line, off the ``logging`` hot path.

    One line per request is the most frequent log output, and a LogRecord, a formatter and a
    flushed write each cost more than the request itself. Lines are formatted directly in the
    configured format (JSON or text, same shape as the formatters above) and written in batches
    by the event loop a few times a second. When no ironflow handler is installed (embedding,
    tests), lines go through ``logging`` as usual.
    """

    #: Buffered lines are written at least this often.
    FLUSH_SECONDS = 0.05

    def __init__(self, name: str = LOGGER_NAME + ".access") -> None:
        self.logger = logging.getLogger(name)
        self._buf: list[str] = []
        self._handle: Any = None

    def _handler(self) -> logging.StreamHandler[Any] | None:
        for h in logging.getLogger(LOGGER_NAME).handlers:
            if getattr(h, _HANDLER_MARK, False):
                return h  # type: ignore[return-value]
        return None

    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)

    def log(self, loop: Any, **fields: Any) -> None:
        h = self._handler()
        if h is None or loop is None:
            self.logger.info("request", extra={"fields": fields})
            return
        ts = _timestamp(time.time())
        if isinstance(h.formatter, TextFormatter):
            kv = " ".join(f"{k}={_text_value(v)}" for k, v in fields.items())
            line = f"{ts} INFO  {self.logger.name}  request {kv}\n"
        else:
            body = json.dumps(fields, separators=(",", ":"), ensure_ascii=False, default=str)
            line = (f'{{"ts":"{ts}","level":"info","logger":"{self.logger.name}","msg":"request",'
                    f'{body[1:]}\n')
        self._buf.append(line)
        if self._handle is None:
            self._handle = loop.call_later(self.FLUSH_SECONDS, self.flush)

    def flush(self) -> None:
        self._handle = None
        if not self._buf:
            return
        data, self._buf = "".join(self._buf), []
        h = self._handler()
        if h is None:
            return
        try:
            h.acquire()
            try:
                h.stream.write(data)
                h.stream.flush()
            finally:
                h.release()
        except (OSError, ValueError):
            pass  # a closed or broken log stream must never break request handling
