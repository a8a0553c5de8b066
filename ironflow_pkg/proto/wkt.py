"""Conversions for the well-known types, shared by the JSON and the binary codec.

In-memory forms (what handlers see; connect.md §7, §9):

* ``google.protobuf.Timestamp`` -> ``str``, RFC 3339 in UTC with a ``Z`` and 0, 3, 6 or 9
  fraction digits, whichever is the shortest exact form (``"2026-11-29T21:00:28.818Z"``,
  ``"2026-11-29T21:00:28Z"``). Nanosecond precision survives; the canonical string is also the
  JSON output, so an in-memory timestamp is emitted unchanged.
* ``google.protobuf.Duration`` -> ``float`` seconds (``1.5``); nanoseconds are rounded to the
  nearest representable double.
* ``google.protobuf.FieldMask`` -> ``list[str]`` of snake_case paths.

Every function raises :class:`ValueError` with a short reason on bad input; codecs wrap it.
"""

from __future__ import annotations

import math
import re
from datetime import date, datetime, timedelta, timezone
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

from .parser import default_json_name

__all__ = [
    "MAX_DURATION_SECONDS",
    "MAX_TIMESTAMP_SECONDS",
    "MIN_TIMESTAMP_SECONDS",
    "camel_to_snake",
    "duration_from_parts",
    "duration_to_parts",
    "fieldmask_from_json",
    "fieldmask_to_json",
    "format_duration",
    "format_timestamp",
    "normalize_timestamp",
    "parse_duration",
    "parse_timestamp",
    "snake_to_camel",
    "timestamp_from_datetime",
    "timestamp_from_unix_ms",
    "timestamp_to_datetime",
    "timestamp_to_unix_ms",
]

#: Timestamp range of the protobuf spec: 0001-01-01T00:00:00Z .. 9999-12-31T23:59:59.999999999Z.
MIN_TIMESTAMP_SECONDS = -62135596800
MAX_TIMESTAMP_SECONDS = 253402300799
#: Duration range of the protobuf spec: +-10,000 years.
MAX_DURATION_SECONDS = 315576000000
_NANOS = 1_000_000_000
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()

# Full names of the well-known types both codecs special-case.
STRUCT = "google.protobuf.Struct"
VALUE = "google.protobuf.Value"
LIST_VALUE = "google.protobuf.ListValue"
NULL_VALUE = "google.protobuf.NullValue"
TIMESTAMP = "google.protobuf.Timestamp"
DURATION = "google.protobuf.Duration"
FIELD_MASK = "google.protobuf.FieldMask"
EMPTY = "google.protobuf.Empty"
ANY = "google.protobuf.Any"
#: wrapper message -> the scalar type of its single ``value`` field
WRAPPERS = {
    "google.protobuf.DoubleValue": "double", "google.protobuf.FloatValue": "float",
    "google.protobuf.Int64Value": "int64", "google.protobuf.UInt64Value": "uint64",
    "google.protobuf.Int32Value": "int32", "google.protobuf.UInt32Value": "uint32",
    "google.protobuf.BoolValue": "bool", "google.protobuf.StringValue": "string",
    "google.protobuf.BytesValue": "bytes",
}

_TIMESTAMP_RE = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?"
    r"(?:[Zz]|([+-])(\d{2}):(\d{2}))\Z", re.ASCII)
#: The canonical output form: UTC "Z", 0/3/6/9 fraction digits (trailing "000" groups dropped).
_CANONICAL_RE = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{3}|\d{6}|\d{9}))?Z\Z", re.ASCII)
_MONTH_DAYS = (0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_DURATION_RE = re.compile(r"(-)?(\d+)(?:\.(\d{1,9}))?s\Z", re.ASCII)


def _fraction(nanos: int) -> str:
    """0, 3, 6 or 9 digits: the shortest of those that is exact (protobuf JSON output)."""
    if nanos == 0:
        return ""
    if nanos % 1_000_000 == 0:
        return f".{nanos // 1_000_000:03d}"
    if nanos % 1_000 == 0:
        return f".{nanos // 1_000:06d}"
    return f".{nanos:09d}"


# --- Timestamp ---------------------------------------------------------------------------------


def parse_timestamp(text: str) -> tuple[int, int]:
    """RFC 3339 with any offset -> (seconds since the epoch, nanos 0..999999999)."""
    m = _TIMESTAMP_RE.match(text)
    if m is None:
        raise ValueError("invalid RFC 3339 timestamp")
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    try:
        ordinal = date(year, month, day).toordinal()
    except ValueError:
        raise ValueError("invalid date in timestamp") from None
    if hour > 23 or minute > 59 or second > 59:
        raise ValueError("invalid time of day in timestamp")
    seconds = (ordinal - _EPOCH_ORDINAL) * 86400 + hour * 3600 + minute * 60 + second
    if m.group(8):
        oh, om = int(m.group(9)), int(m.group(10))
        if oh > 23 or om > 59:
            raise ValueError("invalid UTC offset in timestamp")
        offset = oh * 3600 + om * 60
        seconds -= offset if m.group(8) == "+" else -offset
    frac = m.group(7)
    nanos = int(frac.ljust(9, "0")) if frac else 0
    if not MIN_TIMESTAMP_SECONDS <= seconds <= MAX_TIMESTAMP_SECONDS:
        raise ValueError("timestamp out of range (years 1-9999)")
    return seconds, nanos


def format_timestamp(seconds: int, nanos: int = 0) -> str:
    """(seconds, nanos) -> canonical RFC 3339 UTC string."""
    if not 0 <= nanos < _NANOS:
        raise ValueError("timestamp nanos out of range")
    if not MIN_TIMESTAMP_SECONDS <= seconds <= MAX_TIMESTAMP_SECONDS:
        raise ValueError("timestamp out of range (years 1-9999)")
    days, rem = divmod(seconds, 86400)
    d = date.fromordinal(days + _EPOCH_ORDINAL)
    hour, rem = divmod(rem, 3600)
    minute, second = divmod(rem, 60)
    return (f"{d.year:04d}-{d.month:02d}-{d.day:02d}T{hour:02d}:{minute:02d}:{second:02d}"
            f"{_fraction(nanos)}Z")


def normalize_timestamp(text: str) -> str:
    """Any RFC 3339 string -> the canonical in-memory/JSON form."""
    m = _CANONICAL_RE.match(text)
    if m is not None:  # fast path: already canonical (every in-memory timestamp), just validate
        year, month, day = int(m.group(1)), int(m.group(2)), int(m.group(3))
        frac = m.group(7)
        if (year and 1 <= month <= 12 and 1 <= day
                and (day <= _MONTH_DAYS[month]
                     or (month == 2 and day == 29 and year % 4 == 0
                         and (year % 100 != 0 or year % 400 == 0)))
                and int(m.group(4)) < 24 and int(m.group(5)) < 60 and int(m.group(6)) < 60
                and (frac is None or not frac.endswith("000"))):
            return text
    return format_timestamp(*parse_timestamp(text))


def timestamp_from_datetime(dt: datetime) -> str:
    """A ``datetime`` (naive = UTC) -> canonical string (microsecond precision)."""
    offset = dt.utcoffset()
    seconds = ((dt.toordinal() - _EPOCH_ORDINAL) * 86400 + dt.hour * 3600 + dt.minute * 60
               + dt.second)
    if offset is not None:
        seconds -= offset.days * 86400 + offset.seconds
    return format_timestamp(seconds, dt.microsecond * 1000)


def timestamp_to_datetime(text: str) -> datetime:
    """Canonical (or any RFC 3339) string -> aware UTC ``datetime`` (nanos truncated to µs)."""
    seconds, nanos = parse_timestamp(text)
    return datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(seconds=seconds,
                                                                 microseconds=nanos // 1000)


def timestamp_from_unix_ms(ms: int) -> str:
    """Milliseconds since the epoch -> canonical string."""
    seconds, rem = divmod(int(ms), 1000)
    return format_timestamp(seconds, rem * 1_000_000)


def timestamp_to_unix_ms(text: str) -> int:
    """RFC 3339 string -> milliseconds since the epoch (floor)."""
    seconds, nanos = parse_timestamp(text)
    return seconds * 1000 + nanos // 1_000_000


# --- Duration ----------------------------------------------------------------------------------


def parse_duration(text: str) -> tuple[int, int]:
    """``"-1.500s"`` -> (seconds, nanos), both carrying the sign (protobuf convention)."""
    m = _DURATION_RE.match(text)
    if m is None:
        raise ValueError('invalid duration (expected "<decimal>s")')
    seconds = int(m.group(2)) if len(m.group(2)) <= 20 else MAX_DURATION_SECONDS + 1
    frac = m.group(3)
    nanos = int(frac.ljust(9, "0")) if frac else 0
    if seconds > MAX_DURATION_SECONDS:
        raise ValueError("duration out of range")
    if m.group(1):
        seconds, nanos = -seconds, -nanos
    return seconds, nanos


def format_duration(seconds: int, nanos: int = 0) -> str:
    """(seconds, nanos) -> ``"1.500s"`` / ``"30s"`` / ``"-0.000000001s"``."""
    if abs(seconds) > MAX_DURATION_SECONDS or abs(nanos) >= _NANOS:
        raise ValueError("duration out of range")
    if (seconds < 0 < nanos) or (nanos < 0 < seconds):
        raise ValueError("duration seconds and nanos must have the same sign")
    sign = "-" if seconds < 0 or nanos < 0 else ""
    return f"{sign}{abs(seconds)}{_fraction(abs(nanos))}s"


def duration_to_parts(value: float | int | timedelta) -> tuple[int, int]:
    """In-memory seconds (or a ``timedelta``) -> (seconds, nanos) with a common sign."""
    if isinstance(value, timedelta):
        total = (value.days * 86400 + value.seconds) * _NANOS + value.microseconds * 1000
    elif isinstance(value, bool):
        raise ValueError("a duration is a number of seconds, not a bool")
    elif isinstance(value, int):
        total = value * _NANOS
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("duration must be finite")
        try:  # repr() is the shortest exact decimal, so 1.1 means 1.100000000s, not 1.0999...
            total = int((Decimal(repr(value)) * _NANOS).to_integral_value(ROUND_HALF_EVEN))
        except InvalidOperation:
            raise ValueError("invalid duration") from None
    else:
        raise ValueError(f"a duration is a number of seconds, not {type(value).__name__}")
    sign = -1 if total < 0 else 1
    seconds, nanos = divmod(abs(total), _NANOS)
    if seconds > MAX_DURATION_SECONDS:
        raise ValueError("duration out of range")
    return sign * seconds, sign * nanos


def duration_from_parts(seconds: int, nanos: int = 0) -> float:
    """(seconds, nanos) -> float seconds (correctly rounded)."""
    if (seconds < 0 < nanos) or (nanos < 0 < seconds):
        raise ValueError("duration seconds and nanos must have the same sign")
    sign = "-" if seconds < 0 or nanos < 0 else ""
    return float(f"{sign}{abs(seconds)}.{abs(nanos):09d}")


# --- FieldMask ---------------------------------------------------------------------------------


def snake_to_camel(path: str) -> str:
    """``update_mask.max_in_flight`` -> ``updateMask.maxInFlight`` (protoc's JSON name rule)."""
    return default_json_name(path)


def camel_to_snake(path: str) -> str:
    """``maxInFlight`` -> ``max_in_flight``; snake_case input comes back unchanged."""
    if path.islower() or not any("A" <= ch <= "Z" for ch in path):
        return path
    return "".join(f"_{ch.lower()}" if "A" <= ch <= "Z" else ch for ch in path)


def fieldmask_to_json(paths: list[str] | tuple[str, ...]) -> str:
    """snake_case paths -> one comma-separated lowerCamel string."""
    out = []
    for p in paths:
        if not isinstance(p, str):
            raise ValueError("field mask paths must be strings")
        camel = snake_to_camel(p)
        if camel_to_snake(camel) != p:
            raise ValueError(f"field mask path {p!r} has no lowerCamelCase JSON form")
        out.append(camel)
    return ",".join(out)


def fieldmask_from_json(text: str) -> list[str]:
    """Comma-separated paths, lowerCamel or snake_case -> snake_case paths (``""`` -> [])."""
    if text == "":
        return []
    out = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            raise ValueError("empty path in field mask")
        out.append(camel_to_snake(part))
    return out
