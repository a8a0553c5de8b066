"""Cron expressions: parse once, then ask for the next fire time (features.md §2.3).

Pure engine helper: no I/O beyond ``zoneinfo`` reading its zone data, no clock reads — callers
pass the instant to search from. The scheduler (engine layer) owns time and persistence.

Grammar (strict; anything else raises :class:`CronError`, a ``ValueError``)::

    expr    := [("CRON_TZ=" | "TZ=") zone " "+] (fields | macro)
    fields  := minute hour day-of-month month day-of-week      (space/tab separated)
    field   := item ("," item)*
    item    := ("*" | "?" | value | value "-" value | value) ["/" step]
    macro   := "@yearly" | "@annually" | "@monthly" | "@weekly" | "@daily" | "@midnight"
             | "@hourly" | "@every " duration

* ``value`` is a decimal number, or a name: ``JAN``..``DEC`` in the month field, ``SUN``..``SAT``
  in the day-of-week field (case-insensitive, also inside ranges and lists).
* Day-of-week accepts 0-7 where both 0 and 7 are Sunday. ``FRI-SUN`` is read as Fri, Sat, Sun
  (a range that *ends* at the name SUN ends at 7); the numeric ``5-0`` is an inverted range.
* ``a/n`` means ``a-max/n``; ``*`` and ``a/n`` in day-of-week stop at 6, so ``*/2`` is Sun, Tue,
  Thu, Sat. A step must be 1..(size of the field).
* ``?`` is allowed only in day-of-month and day-of-week, where it means ``*``.
* Day rule (Vixie cron): when both day-of-month and day-of-week are restricted a day matches if
  *either* matches; otherwise both must. A day field counts as unrestricted only when it is
  exactly ``*``, ``?`` or ``*/1`` — ``*/2`` is a restriction (as in robfig/cron; Vixie cron would
  treat any field starting with ``*`` as unrestricted).
* Schedules that can never fire (``0 0 30 2 *``, ``0 0 31 4,6,9,11 *``) are rejected at parse
  time; with the OR rule or an unrestricted day-of-month every schedule fires at least yearly.

Time zones: fields are read in UTC unless a ``CRON_TZ=<IANA zone>`` prefix (alias ``TZ=``)
names a zone known to ``zoneinfo``. Wall-clock semantics apply in that zone:

* A wall-clock time skipped by a spring-forward transition does not fire that day (no
  catch-up at the next valid minute). Schedules that cover the whole hour simply continue at the
  first valid minute (``0 * * * *`` fires at 03:00 local when 02:00 does not exist).
* A wall-clock time repeated by a fall-back transition fires once, at its *first* occurrence.
  This applies to every schedule, so a sub-hourly schedule (``*/15 * * * *``) pauses for the
  repeated hour; use UTC or ``@every`` for strictly periodic jobs.

``@every <duration>``: Go-style durations (``90s``, ``5m``, ``1h30m``, ``2h``, ``1d``; units
``ns us µs ms s m h d``, decimals allowed as in Go) that total a whole number of seconds, at least
1 s and at most :data:`MAX_EVERY_SECONDS`. It fires at the instants that are whole multiples of
the interval counted from the Unix epoch (1970-01-01T00:00:00Z). **Decision**: this makes the
fire times deterministic across restarts and identical on every node, with no stored phase
(a start-relative ``@every`` as in robfig/cron would shift at every restart). A ``CRON_TZ``
prefix is accepted with ``@every`` but has no effect (the epoch grid is absolute).

Resolution is one second: :meth:`CronSchedule.next_after` ignores sub-second parts of its input
and returns whole-second instants (whole minutes for field schedules).
"""

from __future__ import annotations

import bisect
import calendar
import re
from dataclasses import dataclass, field
from datetime import MAXYEAR, datetime, timedelta, timezone, tzinfo
from fractions import Fraction
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = ["CronError", "CronSchedule", "parse_cron", "MAX_EXPR_LEN", "MAX_EVERY_SECONDS",
           "SEARCH_HORIZON_YEARS"]

#: Longest accepted expression, prefix included: real schedules are short, and a cap keeps a
#: hostile registration from making the parser chew on megabytes.
MAX_EXPR_LEN = 256
#: Longest ``@every`` interval (about 100 years): anything longer is a mistake and would run
#: past ``datetime``'s range.
MAX_EVERY_SECONDS = 100 * 366 * 86400
#: How far ``next_after`` searches before giving up. The longest gap a valid schedule can have is
#: 8 years (``0 0 29 2 *`` across 2100, which is not a leap year); 12 leaves headroom.
SEARCH_HORIZON_YEARS = 12

_UTC = timezone.utc
_EPOCH = datetime(1970, 1, 1, tzinfo=_UTC)
_MINUTE = timedelta(minutes=1)

# Spelled out rather than taken from calendar.month_abbr, which follows the locale.
_MONTH_NAMES = {name: i + 1 for i, name in enumerate(
    ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"))}
_DOW_NAMES = {"SUN": 0, "MON": 1, "TUE": 2, "WED": 3, "THU": 4, "FRI": 5, "SAT": 6}
#: Most days a month can have (February counts 29: a leap year will come).
_MONTH_MAX_DAYS = (0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)

_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

_TZ_PREFIX_RE = re.compile(r"^(CRON_TZ|TZ)=(\S*)(?:[ \t]+(.*))?\Z", re.DOTALL)
# IANA keys are ASCII letters, digits and "_+-/"; checked before zoneinfo touches the disk.
_ZONE_KEY_RE = re.compile(r"^[A-Za-z0-9_+\-]+(?:/[A-Za-z0-9_+\-]+)*$")
_FIELD_CHARS_RE = re.compile(r"^[A-Za-z0-9*?,/\-]+$")
_SEP_RE = re.compile(r"[ \t]+")
_DUR_PART_RE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h|d)", re.ASCII)
_DUR_UNIT_NS = {"ns": 1, "us": 10**3, "µs": 10**3, "μs": 10**3, "ms": 10**6, "s": 10**9,
                "m": 60 * 10**9, "h": 3600 * 10**9, "d": 86400 * 10**9}


class CronError(ValueError):
    """An expression that cannot be used; the message says what is wrong and where.

    It is the caller's fault, so the API layer replies ``invalid_argument`` (features.md §2.1).
    """

    code = "invalid_argument"


@dataclass(frozen=True)
class _Field:
    """Static description of one of the five fields."""

    name: str
    lo: int          # smallest value
    hi: int          # largest value reached by ``*`` and ``a/n``
    accept_hi: int   # largest value accepted literally (7 for day-of-week)
    names: dict[str, int]
    question: bool   # ``?`` allowed


_FIELDS = (
    _Field("minute", 0, 59, 59, {}, False),
    _Field("hour", 0, 23, 23, {}, False),
    _Field("day-of-month", 1, 31, 31, {}, True),
    _Field("month", 1, 12, 12, _MONTH_NAMES, False),
    _Field("day-of-week", 0, 6, 7, _DOW_NAMES, True),
)


def _value(f: _Field, text: str, whole: str) -> tuple[int, bool]:
    """One number or name of field ``f``; returns (value, was the name SUN)."""
    if not text:
        raise CronError(f"cron: {f.name} field '{whole}' has a missing value")
    if text.isdigit():
        v = int(text)
        if not f.lo <= v <= f.accept_hi:
            raise CronError(f"cron: {f.name} field '{whole}' out of range {f.lo}-{f.accept_hi}")
        return v, False
    up = text.upper()
    if up in f.names:
        return f.names[up], f.accept_hi == 7 and up == "SUN"
    raise CronError(f"cron: {f.name} field '{whole}' has an invalid value '{text}'")


def _parse_field(f: _Field, text: str) -> tuple[frozenset[int], bool]:
    """Expand one field into its set of values; also report whether it is unrestricted."""
    if not _FIELD_CHARS_RE.match(text):
        raise CronError(f"cron: {f.name} field '{text}' contains invalid characters")
    values: set[int] = set()
    for item in text.split(","):
        if not item:
            raise CronError(f"cron: {f.name} field '{text}' has an empty list item")
        base, slash, step_text = item.partition("/")
        step = 1
        if slash:
            if not step_text.isdigit():
                raise CronError(f"cron: {f.name} field '{item}' has an invalid step '{step_text}'")
            step = int(step_text)
            span = f.hi - f.lo + 1
            if not 1 <= step <= span:
                raise CronError(f"cron: {f.name} field '{item}' step {step} out of range 1-{span}")
        if base in ("*", "?"):
            if base == "?" and not f.question:
                raise CronError(f"cron: {f.name} field '{item}': '?' is only allowed in "
                                f"day-of-month and day-of-week")
            lo, hi = f.lo, f.hi
        elif "-" in base:
            a, _, b = base.partition("-")
            lo, _ = _value(f, a, item)
            hi, hi_is_sun = _value(f, b, item)
            if hi_is_sun and lo > 0:
                hi = 7  # FRI-SUN: a range ending at the name SUN ends at 7 (= Sunday)
            if lo > hi:
                raise CronError(f"cron: {f.name} field '{item}' is an inverted range "
                                f"({lo} > {hi})")
        else:
            lo, _ = _value(f, base, item)
            hi = max(f.hi, lo) if slash else lo
        values.update(range(lo, hi + 1, step))
    if f.accept_hi == 7 and 7 in values:  # day-of-week: 7 is Sunday
        values.discard(7)
        values.add(0)
    unrestricted = text in ("*", "?", "*/1", "?/1")
    return frozenset(values), unrestricted


def _parse_every(spec: str, whole: str) -> int:
    """Seconds in a Go-style duration such as ``1h30m``; whole seconds, at least one."""
    if not spec:
        raise CronError(f"cron: '{whole}' needs a duration, e.g. '@every 5m'")
    pos, total = 0, Fraction(0)
    while pos < len(spec):
        m = _DUR_PART_RE.match(spec, pos)
        if not m:
            raise CronError(f"cron: '@every' duration '{spec}' is invalid (use e.g. 90s, 5m, "
                            f"1h30m, 2h, 1d)")
        total += Fraction(m.group(1)) * _DUR_UNIT_NS[m.group(2)]
        pos = m.end()
    seconds = total / 10**9
    if seconds < 1:
        raise CronError(f"cron: '@every' duration '{spec}' is shorter than 1s")
    if seconds.denominator != 1:
        raise CronError(f"cron: '@every' duration '{spec}' is not a whole number of seconds")
    if seconds > MAX_EVERY_SECONDS:
        raise CronError(f"cron: '@every' duration '{spec}' is longer than "
                        f"{MAX_EVERY_SECONDS // 86400}d")
    return int(seconds)


def _load_zone(key: str) -> tzinfo:
    if not key:
        raise CronError("cron: CRON_TZ= needs a zone name, e.g. 'CRON_TZ=Europe/Berlin 0 9 * * *'")
    if not _ZONE_KEY_RE.match(key) or ".." in key:
        raise CronError(f"cron: unknown time zone '{key}'")
    try:
        return ZoneInfo(key)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise CronError(f"cron: unknown time zone '{key}'") from None


@dataclass(frozen=True)
class CronSchedule:
    """A parsed cron expression. Build it with :func:`parse_cron` (or ``CronSchedule(expr)``).

    ``expr`` is the original text and ``tz`` the zone the fields are read in (``"UTC"`` unless a
    ``CRON_TZ=``/``TZ=`` prefix names one). Instances are immutable, hashable and compare by
    ``expr``.
    """

    expr: str
    tz: str = field(init=False)
    _zone: tzinfo = field(init=False, repr=False, compare=False)
    _every: int | None = field(init=False, repr=False, compare=False)
    _minutes: tuple[int, ...] = field(init=False, repr=False, compare=False)
    _hours: tuple[int, ...] = field(init=False, repr=False, compare=False)
    _doms: frozenset[int] = field(init=False, repr=False, compare=False)
    _months: tuple[int, ...] = field(init=False, repr=False, compare=False)
    _dows: frozenset[int] = field(init=False, repr=False, compare=False)
    _day_or: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        expr = self.expr
        if not isinstance(expr, str):
            raise CronError(f"cron: expression must be a string, got {type(expr).__name__}")
        if len(expr) > MAX_EXPR_LEN:
            raise CronError(f"cron: expression is {len(expr)} characters, limit {MAX_EXPR_LEN}")
        body = expr.strip(" \t")
        if not body:
            raise CronError("cron: expression is empty")
        tz_name, zone = "UTC", _UTC
        m = _TZ_PREFIX_RE.match(body)
        if m:
            tz_name, zone = m.group(2), _load_zone(m.group(2))
            body = (m.group(3) or "").strip(" \t")
            if not body:
                raise CronError(f"cron: '{expr}' has a time zone but no schedule")
        set_ = object.__setattr__
        set_(self, "tz", tz_name)
        set_(self, "_zone", zone)
        set_(self, "_every", None)
        if body.startswith("@"):
            parts = _SEP_RE.split(body, 1)
            word = parts[0].lower()
            rest = parts[1].strip(" \t") if len(parts) > 1 else ""
            if word == "@every":
                set_(self, "_every", _parse_every(rest, body))
                for name in ("_minutes", "_hours", "_months"):
                    set_(self, name, ())
                set_(self, "_doms", frozenset())
                set_(self, "_dows", frozenset())
                set_(self, "_day_or", False)
                return
            if word not in _MACROS:
                raise CronError(f"cron: unknown macro '{word}' (use @yearly, @annually, "
                                f"@monthly, @weekly, @daily, @midnight, @hourly or @every)")
            if rest:
                raise CronError(f"cron: macro '{word}' takes no arguments, got '{rest}'")
            body = _MACROS[word]
        texts = _SEP_RE.split(body)
        if len(texts) != 5:
            raise CronError(f"cron: expected 5 fields (minute hour day-of-month month "
                            f"day-of-week), got {len(texts)}")
        parsed = [_parse_field(f, t) for f, t in zip(_FIELDS, texts)]
        (minutes, _), (hours, _), (doms, dom_star), (months, _), (dows, dow_star) = parsed
        day_or = not dom_star and not dow_star
        if not day_or and not dom_star:
            # Only day-of-month constrains the day: some chosen month must be long enough.
            if not any(min(doms) <= _MONTH_MAX_DAYS[mo] for mo in months):
                raise CronError(f"cron: '{expr}' never fires (day-of-month {min(doms)} does not "
                                f"occur in month(s) {','.join(map(str, sorted(months)))})")
        set_(self, "_minutes", tuple(sorted(minutes)))
        set_(self, "_hours", tuple(sorted(hours)))
        set_(self, "_doms", doms)
        set_(self, "_months", tuple(sorted(months)))
        set_(self, "_dows", dows)
        set_(self, "_day_or", day_or)

    # -- queries -----------------------------------------------------------------------------

    def next_after(self, t: datetime) -> datetime:
        """The first fire time strictly after ``t``, as an aware UTC datetime.

        ``t`` must be aware (any zone); its sub-second part is ignored for ``@every`` and its
        seconds for field schedules, which fire at whole minutes. Raises :class:`CronError`
        when nothing fires within :data:`SEARCH_HORIZON_YEARS` or before ``datetime``'s limit.
        """
        if t.tzinfo is None or t.utcoffset() is None:
            raise ValueError("cron: next_after needs an aware datetime")
        try:
            if self._every is not None:
                delta = t - _EPOCH  # floor to whole seconds: timedelta keeps days/seconds >= 0
                secs = delta.days * 86400 + delta.seconds
                return _EPOCH + timedelta(seconds=(secs // self._every + 1) * self._every)
            return self._next_fields(t)
        except OverflowError:
            raise CronError(f"cron: '{self.expr}' has no fire time after {t.isoformat()} "
                            f"within the datetime range") from None

    def matches(self, t: datetime) -> bool:
        """Whether ``t`` (aware, truncated to the whole second) is a fire time.

        Consistent with :meth:`next_after`: a wall-clock time skipped by DST never matches and
        the second occurrence of a repeated wall-clock time does not match.
        """
        if t.tzinfo is None or t.utcoffset() is None:
            raise ValueError("cron: matches needs an aware datetime")
        exact = t.astimezone(_UTC).replace(microsecond=0)
        try:
            return self.next_after(exact - timedelta(seconds=1)) == exact
        except CronError:
            return False

    # -- search ------------------------------------------------------------------------------

    def _day_ok(self, year: int, month: int, day: int) -> bool:
        dom_ok = day in self._doms
        dow_ok = (calendar.weekday(year, month, day) + 1) % 7 in self._dows  # Mon=0 -> cron 1
        return (dom_ok or dow_ok) if self._day_or else (dom_ok and dow_ok)

    def _next_wall(self, w: datetime, limit_year: int) -> datetime | None:
        """First naive wall-clock minute >= ``w`` matching the fields, or None past the limit.

        Skips whole months, days and hours rather than stepping minute by minute, so each call
        costs at most a few hundred cheap iterations even for yearly schedules.
        """
        months, hours, minutes = self._months, self._hours, self._minutes
        while True:
            if w.year > limit_year:
                return None
            if w.month not in months:
                i = bisect.bisect_right(months, w.month)
                if i == len(months):
                    if w.year + 1 > limit_year:
                        return None
                    w = datetime(w.year + 1, months[0], 1)
                else:
                    w = datetime(w.year, months[i], 1)
                continue
            if not self._day_ok(w.year, w.month, w.day):
                w = datetime(w.year, w.month, w.day) + timedelta(days=1)
                continue
            if w.hour not in hours:
                i = bisect.bisect_right(hours, w.hour)
                if i == len(hours):
                    w = datetime(w.year, w.month, w.day) + timedelta(days=1)
                else:
                    w = w.replace(hour=hours[i], minute=0)
                continue
            if w.minute not in minutes:
                i = bisect.bisect_right(minutes, w.minute)
                if i == len(minutes):
                    w = w.replace(minute=0) + timedelta(hours=1)
                else:
                    w = w.replace(minute=minutes[i])
                continue
            return w

    def _next_fields(self, t: datetime) -> datetime:
        zone = self._zone
        local = t.astimezone(zone)
        limit_year = min(local.year + SEARCH_HORIZON_YEARS, MAXYEAR)
        w = local.replace(tzinfo=None, second=0, microsecond=0, fold=0) + _MINUTE
        while True:
            found = self._next_wall(w, limit_year)
            if found is None:
                if limit_year == MAXYEAR:
                    raise OverflowError  # reported by next_after as "beyond datetime range"
                raise CronError(f"cron: '{self.expr}' never fires within "
                                f"{SEARCH_HORIZON_YEARS} years after {t.isoformat()}")
            # Each wall-clock time fires once, at its first occurrence (fold=0). A time that
            # does not survive the round trip through UTC was skipped by spring-forward.
            instant = found.replace(tzinfo=zone, fold=0).astimezone(_UTC)
            exists = instant.astimezone(zone).replace(tzinfo=None) == found
            # Wall times of the repeated hour can map to instants at or before t when t lies in
            # its second pass; those already fired.
            if exists and instant > t:
                return instant
            w = found + _MINUTE


def parse_cron(expr: str) -> CronSchedule:
    """Parse ``expr`` (see the module docstring) or raise :class:`CronError`."""
    return CronSchedule(expr)
