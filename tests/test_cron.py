"""Cron expressions (features.md §2.3): parsing, next fire times, DST, rejects.

Expected times in the tables are worked out by hand from the calendar (2025-01-01 is a
Wednesday; Europe/Berlin springs forward 2025-03-30 02:00 CET -> 03:00 CEST and falls back
2025-10-26 03:00 CEST -> 02:00 CET; America/New_York springs forward 2025-03-09 02:00 EST ->
03:00 EDT and falls back 2025-11-02 02:00 EDT -> 01:00 EST). The brute-force checks at the end
compare ``next_after`` with an independent minute-by-minute scan.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pytest

from ironflow_pkg.cron import MAX_EXPR_LEN, CronError, CronSchedule, parse_cron

UTC = timezone.utc


def _zone_available(key: str) -> bool:
    try:
        ZoneInfo(key)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return False
    return True


needs_tzdata = pytest.mark.skipif(
    not all(_zone_available(k) for k in ("Europe/Berlin", "America/New_York", "Asia/Kolkata")),
    reason="IANA time zone data not installed")


def u(text: str) -> datetime:
    """A UTC instant from compact ISO text (``2025-01-01T00:00`` or with seconds/fraction)."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# (expression, start instant, expected next fire time strictly after it) — all UTC unless noted.
NEXT_CASES: list[tuple[str, str, str]] = [
    # every minute; strictly-after; seconds and fractions truncated
    ("* * * * *", "2025-01-01T00:00:00", "2025-01-01T00:01:00"),
    ("* * * * *", "2025-01-01T00:00:30", "2025-01-01T00:01:00"),
    ("* * * * *", "2025-01-01T00:00:59.999999", "2025-01-01T00:01:00"),
    ("* * * * *", "2024-12-31T23:59:00", "2025-01-01T00:00:00"),
    ("*/1 * * * *", "2025-01-01T10:10:10", "2025-01-01T10:11:00"),
    # minute steps, ranges, lists
    ("*/15 * * * *", "2025-01-01T00:00:00", "2025-01-01T00:15:00"),
    ("*/15 * * * *", "2025-01-01T00:14:59", "2025-01-01T00:15:00"),
    ("*/15 * * * *", "2025-01-01T00:50:00", "2025-01-01T01:00:00"),
    ("0 * * * *", "2025-01-01T10:00:00", "2025-01-01T11:00:00"),
    ("5 * * * *", "2025-01-01T10:04:59", "2025-01-01T10:05:00"),
    ("10-20/5 * * * *", "2025-01-01T00:00:00", "2025-01-01T00:10:00"),
    ("10-20/5 * * * *", "2025-01-01T00:10:00", "2025-01-01T00:15:00"),
    ("10-20/5 * * * *", "2025-01-01T00:20:00", "2025-01-01T01:10:00"),
    ("5/20 * * * *", "2025-01-01T00:45:00", "2025-01-01T01:05:00"),
    ("15,45 * * * *", "2025-01-01T00:15:00", "2025-01-01T00:45:00"),
    ("15,45 * * * *", "2025-01-01T00:45:00", "2025-01-01T01:15:00"),
    ("1-3,58-59 * * * *", "2025-01-01T00:03:00", "2025-01-01T00:58:00"),
    # hours
    ("0 9-17/4 * * *", "2025-01-01T00:00:00", "2025-01-01T09:00:00"),
    ("0 9-17/4 * * *", "2025-01-01T09:00:00", "2025-01-01T13:00:00"),
    ("0 9-17/4 * * *", "2025-01-01T17:00:00", "2025-01-02T09:00:00"),
    ("0 0,12 * * *", "2025-01-01T06:00:00", "2025-01-01T12:00:00"),
    ("0-59/30 0-23/12 * * *", "2025-01-01T00:30:00", "2025-01-01T12:00:00"),
    ("0 0 * * *", "2025-01-01T00:00:00", "2025-01-02T00:00:00"),
    ("30 12 * * *", "2025-01-01T12:30:01", "2025-01-02T12:30:00"),
    # months and names
    ("0 0 1 jan,JUL *", "2025-01-01T00:00:00", "2025-07-01T00:00:00"),
    ("0 12 * FEB-apr *", "2025-01-01T00:00:00", "2025-02-01T12:00:00"),
    ("0 0 * 2 *", "2025-02-28T00:00:00", "2026-02-01T00:00:00"),
    ("0 0 1 * *", "2025-12-15T00:00:00", "2026-01-01T00:00:00"),
    ("0 0 1 1 *", "2025-01-01T00:00:00", "2026-01-01T00:00:00"),
    ("59 23 31 12 *", "2025-01-01T00:00:00", "2025-12-31T23:59:00"),
    ("59 23 31 12 *", "2025-12-31T23:59:00", "2026-12-31T23:59:00"),
    ("0 0 * 11/1 *", "2025-01-01T00:00:00", "2025-11-01T00:00:00"),
    # weekdays: 0 and 7 are Sunday; names; ranges through SUN
    ("0 0 * * MON", "2025-01-01T00:00:00", "2025-01-06T00:00:00"),
    ("0 0 * * mon-fri", "2025-01-03T00:00:00", "2025-01-06T00:00:00"),
    ("0 0 * * 1-5", "2025-01-04T12:00:00", "2025-01-06T00:00:00"),
    ("0 0 * * 0", "2025-01-01T00:00:00", "2025-01-05T00:00:00"),
    ("0 0 * * 7", "2025-01-01T00:00:00", "2025-01-05T00:00:00"),
    ("0 0 * * SUN", "2025-01-01T00:00:00", "2025-01-05T00:00:00"),
    ("0 0 * * FRI-SUN", "2025-01-03T00:00:00", "2025-01-04T00:00:00"),
    ("0 0 * * 5-7", "2025-01-05T00:00:00", "2025-01-10T00:00:00"),
    ("0 0 * * sat,Sun", "2025-01-05T00:00:00", "2025-01-11T00:00:00"),
    ("0 0 * * */2", "2025-01-01T00:00:00", "2025-01-02T00:00:00"),  # Sun,Tue,Thu,Sat; Jan 2 = Thu
    # day-of-month / day-of-week OR rule when both are restricted
    ("0 0 13 * FRI", "2025-01-01T00:00:00", "2025-01-03T00:00:00"),  # a Friday
    ("0 0 13 * FRI", "2025-01-10T00:00:00", "2025-01-13T00:00:00"),  # the 13th (a Monday)
    ("0 0 13 * FRI", "2025-06-12T00:00:00", "2025-06-13T00:00:00"),  # both
    ("0 0 13 * FRI", "2025-06-13T00:00:00", "2025-06-20T00:00:00"),
    ("0 0 13 * *", "2025-01-10T00:00:00", "2025-01-13T00:00:00"),
    ("0 0 * * FRI", "2025-01-10T00:00:00", "2025-01-17T00:00:00"),
    ("0 0 ? * FRI", "2025-01-10T00:00:00", "2025-01-17T00:00:00"),  # ? is *: AND rule
    ("0 0 13 * ?", "2025-01-10T00:00:00", "2025-01-13T00:00:00"),
    ("0 0 1 * MON", "2025-01-01T00:00:00", "2025-01-06T00:00:00"),
    ("0 0 29 2 MON", "2025-01-01T00:00:00", "2025-02-03T00:00:00"),
    ("0 0 */2 * *", "2025-01-01T00:00:00", "2025-01-03T00:00:00"),
    ("0 0 */2 * *", "2025-01-31T00:00:00", "2025-02-01T00:00:00"),
    # leap years and month ends
    ("0 0 29 2 *", "2025-01-01T00:00:00", "2028-02-29T00:00:00"),
    ("0 0 29 2 *", "2024-02-29T00:00:00", "2028-02-29T00:00:00"),
    ("0 0 29 2 *", "2096-03-01T00:00:00", "2104-02-29T00:00:00"),  # 2100 is not a leap year
    ("0 0 31 * *", "2025-01-01T00:00:00", "2025-01-31T00:00:00"),
    ("0 0 31 * *", "2025-01-31T00:00:00", "2025-03-31T00:00:00"),
    ("0 0 31 * *", "2025-03-31T00:00:00", "2025-05-31T00:00:00"),
    ("0 0 31 * *", "2025-05-31T00:00:00", "2025-07-31T00:00:00"),
    ("0 0 31 * *", "2025-07-31T00:00:00", "2025-08-31T00:00:00"),
    ("0 0 30 * *", "2025-01-30T00:00:00", "2025-03-30T00:00:00"),
    # macros
    ("@yearly", "2025-06-01T00:00:00", "2026-01-01T00:00:00"),
    ("@annually", "2025-01-01T00:00:00", "2026-01-01T00:00:00"),
    ("@monthly", "2025-01-31T12:00:00", "2025-02-01T00:00:00"),
    ("@weekly", "2025-01-01T00:00:00", "2025-01-05T00:00:00"),
    ("@daily", "2025-01-01T23:59:59", "2025-01-02T00:00:00"),
    ("@midnight", "2025-01-01T00:00:00", "2025-01-02T00:00:00"),
    ("@hourly", "2025-01-01T10:59:59.500000", "2025-01-01T11:00:00"),
    ("@HOURLY", "2025-01-01T11:00:00", "2025-01-01T12:00:00"),
    # @every: multiples of the interval since the Unix epoch (2025-01-01T00:00Z = 1735689600 s,
    # a multiple of 86400, hence of 90, 300, 2700 and 5400; 1735689600 mod 7 = 1)
    ("@every 90s", "2025-01-01T00:00:00", "2025-01-01T00:01:30"),
    ("@every 90s", "2025-01-01T00:01:00", "2025-01-01T00:01:30"),
    ("@every 90s", "2025-01-01T00:01:30", "2025-01-01T00:03:00"),
    ("@every 1m30s", "2025-01-01T00:01:29.999", "2025-01-01T00:01:30"),
    ("@every 1.5m", "2025-01-01T00:00:00", "2025-01-01T00:01:30"),
    ("@every 5m", "2025-01-01T00:07:12", "2025-01-01T00:10:00"),
    ("@every 45m", "2025-01-01T00:50:00", "2025-01-01T01:30:00"),
    ("@every 1h30m", "2025-01-01T01:00:00", "2025-01-01T01:30:00"),
    ("@every 1h30m", "2025-01-01T01:30:00", "2025-01-01T03:00:00"),
    ("@every 2h", "2025-01-01T01:00:00", "2025-01-01T02:00:00"),
    ("@every 1d", "2025-01-01T05:00:00", "2025-01-02T00:00:00"),
    ("@every 7s", "2025-01-01T00:00:00", "2025-01-01T00:00:06"),
    ("@every 7s", "2024-12-31T23:59:59", "2025-01-01T00:00:06"),
    ("@every 1s", "2025-01-01T00:00:00.500", "2025-01-01T00:00:01"),
    ("@every 1000ms", "2025-01-01T00:00:00", "2025-01-01T00:00:01"),
    # whitespace between fields
    ("  0 \t 0   * * *  ", "2025-01-01T00:00:00", "2025-01-02T00:00:00"),
]

# Zoned cases: (expression, start instant in UTC, expected UTC instant).
TZ_CASES: list[tuple[str, str, str]] = [
    # Berlin winter (UTC+1) and summer (UTC+2)
    ("CRON_TZ=Europe/Berlin 0 9 * * *", "2025-01-15T00:00:00", "2025-01-15T08:00:00"),
    ("CRON_TZ=Europe/Berlin 0 9 * * *", "2025-07-15T00:00:00", "2025-07-15T07:00:00"),
    # spring forward: 02:30 does not exist on 2025-03-30, so that day does not fire
    ("CRON_TZ=Europe/Berlin 30 2 * * *", "2025-03-29T02:00:00", "2025-03-31T00:30:00"),
    # hourly: 02:00 local does not exist, the next hour is 03:00 CEST = 01:00Z
    ("CRON_TZ=Europe/Berlin 0 * * * *", "2025-03-30T00:00:00", "2025-03-30T01:00:00"),
    ("CRON_TZ=Europe/Berlin 59 1 * * *", "2025-03-29T12:00:00", "2025-03-30T00:59:00"),
    ("CRON_TZ=Europe/Berlin 0 3 * * *", "2025-03-29T12:00:00", "2025-03-30T01:00:00"),
    # fall back: 02:30 happens twice on 2025-10-26; it fires at the first (CEST, 00:30Z) only
    ("CRON_TZ=Europe/Berlin 30 2 * * *", "2025-10-25T23:00:00", "2025-10-26T00:30:00"),
    ("CRON_TZ=Europe/Berlin 30 2 * * *", "2025-10-26T00:30:00", "2025-10-27T01:30:00"),
    ("CRON_TZ=Europe/Berlin 30 2 * * *", "2025-10-26T01:00:00", "2025-10-27T01:30:00"),
    ("CRON_TZ=Europe/Berlin 0 3 * * *", "2025-10-25T12:00:00", "2025-10-26T02:00:00"),
    # the repeated hour is silent for sub-hourly schedules too: 02:30 CEST, then 03:00 CET
    ("CRON_TZ=Europe/Berlin */30 * * * *", "2025-10-26T00:30:00", "2025-10-26T02:00:00"),
    # New York: fall back 2025-11-02, 01:30 EDT (05:30Z) fires, 01:30 EST (06:30Z) does not
    ("CRON_TZ=America/New_York 30 1 * * *", "2025-11-02T04:00:00", "2025-11-02T05:30:00"),
    ("CRON_TZ=America/New_York 30 1 * * *", "2025-11-02T05:30:00", "2025-11-03T06:30:00"),
    # spring forward 2025-03-09: 02:15 does not exist
    ("CRON_TZ=America/New_York 15 2 * * *", "2025-03-08T12:00:00", "2025-03-10T06:15:00"),
    # TZ= alias; weekday rule read in local time (Fri 10:00 EST -> Mon 09:00 EDT)
    ("TZ=America/New_York 0 9 * * MON-FRI", "2025-03-07T15:00:00", "2025-03-10T13:00:00"),
    ("CRON_TZ=America/New_York 0 0 * * *", "2025-01-01T00:00:00", "2025-01-01T05:00:00"),
    ("CRON_TZ=America/New_York @daily", "2025-07-01T00:00:00", "2025-07-01T04:00:00"),
    ("CRON_TZ=Asia/Kolkata 0 0 * * *", "2025-01-01T00:00:00", "2025-01-01T18:30:00"),
    ("CRON_TZ=UTC 0 0 * * *", "2025-01-01T00:00:00", "2025-01-02T00:00:00"),
    # @every ignores the zone: the epoch grid is absolute
    ("CRON_TZ=Asia/Kolkata @every 1h", "2025-01-01T00:10:00", "2025-01-01T01:00:00"),
]

INVALID: list[str] = [
    "",
    "   ",
    "* * * *",
    "* * * * * *",
    "0 0 0 * * * *",
    "60 * * * *",
    "61 * * * *",
    "* 24 * * *",
    "* * 0 * *",
    "* * 32 * *",
    "* * * 0 *",
    "* * * 13 *",
    "* * * * 8",
    "5-1 * * * *",
    "* * * * 5-0",
    "* * * DEC-JAN *",
    "*/0 * * * *",
    "0 0 1-31/0 * *",
    "*/61 * * * *",
    "*/ * * * *",
    "*/a * * * *",
    "*/5/2 * * * *",
    "1,,2 * * * *",
    "1, * * * *",
    ",1 * * * *",
    "1- * * * *",
    "-1 * * * *",
    "1-2-3 * * * *",
    "1.5 * * * *",
    "a * * * *",
    "** * * * *",
    "? * * * *",
    "* ? * * *",
    "* * * ? *",
    "* * * FOO *",
    "* * * MON *",
    "* * * * JAN",
    "* * * * FUNDAY",
    "* * * * MONDAY",
    "0 0 * * $",
    "0 0 * * * # comment",
    "0\n0 * * *",
    "0 0 * * *\n",
    "0 0 30 2 *",
    "0 0 31 4,6,9,11 *",
    "0 0 30-31 feb *",
    "@every",
    "@every 500ms",
    "@every 0s",
    "@every 0",
    "@every 5",
    "@every 1x",
    "@every -5s",
    "@every 1.5s",
    "@every 1h 30m",
    "@every 1000000d",
    "@foo",
    "@daily extra",
    "@ daily",
    "CRON_TZ=Mars/Olympus 0 0 * * *",
    "CRON_TZ= 0 0 * * *",
    "CRON_TZ=Europe/Berlin",
    "CRON_TZ=Europe/Berlin   ",
    "CRON_TZ=../../etc/passwd 0 0 * * *",
    "CRON_TZ=/etc/localtime 0 0 * * *",
    "CRON_TZ=europe/berlin 0 0 * * *",
    "CRON_TZ=Europe 0 0 * * *",
    "CRON_TZ=Europe/Berlin 61 * * * *",
    "CRON_TZ=Europe/Berlin @every 1x",
    "* * * * " + "*" * (MAX_EXPR_LEN - 7),
    "0 0 * * *" + " " * (MAX_EXPR_LEN - 8),
]


@pytest.mark.parametrize("expr,start,expected", NEXT_CASES)
def test_next_after(expr: str, start: str, expected: str) -> None:
    got = parse_cron(expr).next_after(u(start))
    assert got == u(expected)
    assert got.tzinfo is UTC and got.microsecond == 0
    assert parse_cron(expr).matches(got)


@needs_tzdata
@pytest.mark.parametrize("expr,start,expected", TZ_CASES)
def test_next_after_in_zone(expr: str, start: str, expected: str) -> None:
    got = parse_cron(expr).next_after(u(start))
    assert got == u(expected)
    assert got.tzinfo is UTC


@pytest.mark.parametrize("expr", INVALID)
def test_invalid_expressions(expr: str) -> None:
    with pytest.raises(CronError) as info:
        parse_cron(expr)
    assert str(info.value).startswith("cron: ")


def test_table_sizes() -> None:
    assert len(NEXT_CASES) + len(TZ_CASES) >= 60
    assert len(INVALID) >= 30


def test_error_messages_name_the_problem() -> None:
    cases = {
        "61 * * * *": "cron: minute field '61' out of range 0-59",
        "* * * * 8": "cron: day-of-week field '8' out of range 0-7",
        "5-1 * * * *": "cron: minute field '5-1' is an inverted range (5 > 1)",
        "*/0 * * * *": "cron: minute field '*/0' step 0 out of range 1-60",
        "* * * *": "cron: expected 5 fields (minute hour day-of-month month day-of-week), got 4",
        "@every 500ms": "cron: '@every' duration '500ms' is shorter than 1s",
    }
    for expr, message in cases.items():
        with pytest.raises(CronError) as info:
            parse_cron(expr)
        assert str(info.value) == message
    with pytest.raises(CronError, match="never fires"):
        parse_cron("0 0 30 2 *")
    with pytest.raises(CronError, match="unknown time zone 'Mars/Olympus'"):
        parse_cron("CRON_TZ=Mars/Olympus 0 0 * * *")
    with pytest.raises(CronError, match="limit 256"):
        parse_cron("*" * 257)


def test_cron_error_is_value_error_with_code() -> None:
    assert issubclass(CronError, ValueError)
    assert CronError.code == "invalid_argument"


def test_non_string_rejected() -> None:
    with pytest.raises(CronError):
        parse_cron(5)  # type: ignore[arg-type]


def test_schedule_attributes_and_equality() -> None:
    s = parse_cron("0 9 * * MON-FRI")
    assert s.expr == "0 9 * * MON-FRI" and s.tz == "UTC"
    assert s == CronSchedule("0 9 * * MON-FRI") and hash(s) == hash(parse_cron(s.expr))
    assert s != parse_cron("0 9 * * 1-5")  # compared by original text
    assert "_minutes" not in repr(s)
    with pytest.raises(AttributeError):
        s.expr = "x"  # type: ignore[misc]


@needs_tzdata
def test_tz_prefix_sets_tz() -> None:
    assert parse_cron("CRON_TZ=Europe/Berlin 0 9 * * *").tz == "Europe/Berlin"
    assert parse_cron("TZ=America/New_York @hourly").tz == "America/New_York"
    assert parse_cron("CRON_TZ=Europe/Berlin 0 9 * * *").expr == "CRON_TZ=Europe/Berlin 0 9 * * *"


def test_seven_and_zero_are_the_same_sunday() -> None:
    start = u("2025-01-01T00:00")
    times = {parse_cron(e).next_after(start) for e in ("0 0 * * 0", "0 0 * * 7", "0 0 * * SUN",
                                                         "0 0 * * sun", "0 0 * * 0,7", "@weekly")}
    assert times == {u("2025-01-05T00:00")}


def test_input_in_other_zone_and_naive_rejected() -> None:
    s = parse_cron("0 12 * * *")
    plus2 = timezone(timedelta(hours=2))
    # 13:00+02:00 is 11:00Z: noon UTC is still ahead that day
    assert s.next_after(datetime(2025, 1, 1, 13, 0, tzinfo=plus2)) == u("2025-01-01T12:00")
    assert s.next_after(datetime(2025, 1, 1, 14, 0, tzinfo=plus2)) == u("2025-01-02T12:00")
    with pytest.raises(ValueError):
        s.next_after(datetime(2025, 1, 1))
    with pytest.raises(ValueError):
        s.matches(datetime(2025, 1, 1))


def test_matches() -> None:
    s = parse_cron("0 0 13 * FRI")
    assert s.matches(u("2025-01-03T00:00"))          # Friday
    assert s.matches(u("2025-01-13T00:00"))          # 13th
    assert s.matches(u("2025-01-13T00:00:00.250"))   # sub-second part ignored
    assert not s.matches(u("2025-01-13T00:00:30"))   # not a fire instant
    assert not s.matches(u("2025-01-14T00:00"))
    assert not s.matches(u("2025-01-13T00:01"))
    e = parse_cron("@every 90s")
    assert e.matches(u("2025-01-01T00:01:30"))
    assert not e.matches(u("2025-01-01T00:01:00"))


@needs_tzdata
def test_matches_respects_dst() -> None:
    s = parse_cron("CRON_TZ=Europe/Berlin 30 2 * * *")
    assert s.matches(u("2025-10-26T00:30"))       # 02:30 CEST, first occurrence
    assert not s.matches(u("2025-10-26T01:30"))   # 02:30 CET, the repeat
    assert s.matches(u("2025-03-29T01:30"))       # 02:30 CET the day before spring-forward
    assert not s.matches(u("2025-03-30T00:30"))   # would-be 02:30 (does not exist)
    assert not s.matches(u("2025-03-30T01:30"))   # 03:30 CEST


def test_every_sequence_is_epoch_aligned() -> None:
    s = parse_cron("@every 90s")
    t = u("2025-03-04T05:06:07")
    for _ in range(50):
        t = s.next_after(t)
        assert int(t.timestamp()) % 90 == 0
    # The same instant whatever the previous fire was: restarts do not shift the grid.
    # (05:06:00 and 05:07:30 are on the grid: 2025-03-04T00:00Z is a multiple of 86400.)
    for start in ("2025-03-04T05:06:00", "2025-03-04T05:06:31", "2025-03-04T05:07:29.9"):
        assert s.next_after(u(start)) == u("2025-03-04T05:07:30")


def test_every_brute_force_by_second() -> None:
    s = parse_cron("@every 1m15s")
    start = u("2025-05-05T05:05:05")
    fires = [start + timedelta(seconds=i) for i in range(1, 2 * 3600)
             if int((start + timedelta(seconds=i)).timestamp()) % 75 == 0]
    got, t = [], start
    while True:
        t = s.next_after(t)
        if t >= start + timedelta(seconds=2 * 3600):
            break
        got.append(t)
    assert got == fires


def test_impossible_schedules_rejected_possible_ones_accepted() -> None:
    # Day-of-week unrestricted (* ? */1): only day-of-month picks days, and it never occurs.
    for expr in ("0 0 30 2 *", "0 0 31 2,4,6,9,11 *", "0 0 31 apr *", "0 0 30,31 2 ?/1"):
        with pytest.raises(CronError, match="never fires"):
            parse_cron(expr)
    # With the OR rule the weekday still fires; 29 Feb and 31 in a 31-day month are fine.
    for expr in ("0 0 29 2 *", "0 0 31 4,5 *", "0 0 30 2 */2"):
        parse_cron(expr)
    assert parse_cron("0 0 30 2 MON").next_after(u("2025-01-01T00:00")) == u("2025-02-03T00:00")


def test_next_after_is_fast() -> None:
    # Rare schedules skip by month/day/hour; a minute-by-minute search would take seconds.
    cases = [("0 0 29 2 *", u("2096-03-01T00:00")), ("59 23 31 12 *", u("2025-01-01T00:00")),
             ("0 0 13 * FRI", u("2025-01-01T00:00")), ("*/5 * * * *", u("2025-01-01T00:00"))]
    began = time.perf_counter()
    for _ in range(100):
        for expr, start in cases:
            parse_cron(expr).next_after(start)
    assert time.perf_counter() - began < 2.0


def test_far_future_raises_cron_error() -> None:
    with pytest.raises(CronError):
        parse_cron("0 0 29 2 *").next_after(datetime(9997, 1, 1, tzinfo=UTC))


# -- brute force: minute-by-minute scan vs. chained next_after ----------------------------------

Pred = Callable[[int, int, int, int, int], bool]  # minute, hour, day, month, cron weekday


def _cron_dow(d: datetime) -> int:
    return (d.weekday() + 1) % 7


BRUTE: list[tuple[str, str, str, Pred]] = [
    ("*/7 9-17 * * MON-FRI", "UTC", "2025-01-03T00:00",
     lambda m, h, d, mo, w: m % 7 == 0 and 9 <= h <= 17 and 1 <= w <= 5),
    ("0,30 */5 1,15,28 * SUN", "UTC", "2025-02-27T00:00",  # OR rule across a month end
     lambda m, h, d, mo, w: m in (0, 30) and h % 5 == 0 and (d in (1, 15, 28) or w == 0)),
    ("15 */2 */3 * *", "UTC", "2024-02-28T00:00",  # leap day in the window
     lambda m, h, d, mo, w: m == 15 and h % 2 == 0 and d % 3 == 1),
    ("@hourly", "UTC", "2024-12-30T00:00", lambda m, h, d, mo, w: m == 0),
    ("CRON_TZ=Europe/Berlin */20 1-3 * * *", "Europe/Berlin", "2025-03-29T00:00",
     lambda m, h, d, mo, w: m % 20 == 0 and 1 <= h <= 3),
    ("CRON_TZ=Europe/Berlin 30 2 * * *", "Europe/Berlin", "2025-03-29T00:00",
     lambda m, h, d, mo, w: m == 30 and h == 2),
    ("CRON_TZ=Europe/Berlin */10 * * * SUN", "Europe/Berlin", "2025-10-25T00:00",
     lambda m, h, d, mo, w: m % 10 == 0 and w == 0),
    ("CRON_TZ=America/New_York */10 0-2 * * *", "America/New_York", "2025-11-01T00:00",
     lambda m, h, d, mo, w: m % 10 == 0 and 0 <= h <= 2),
    ("CRON_TZ=America/New_York 5 * 9 3 *", "America/New_York", "2025-03-08T00:00",
     lambda m, h, d, mo, w: m == 5 and d == 9 and mo == 3),
    ("CRON_TZ=Australia/Lord_Howe */15 1-3 * * *", "Australia/Lord_Howe", "2025-10-04T00:00",
     lambda m, h, d, mo, w: m % 15 == 0 and 1 <= h <= 3),  # 30-minute DST shift
]


@pytest.mark.parametrize("expr,zone_key,start,pred", BRUTE, ids=[b[0] for b in BRUTE])
def test_brute_force_matches_next_after(expr: str, zone_key: str, start: str, pred: Pred) -> None:
    if zone_key != "UTC" and not _zone_available(zone_key):
        pytest.skip(f"no tzdata for {zone_key}")
    zone = UTC if zone_key == "UTC" else ZoneInfo(zone_key)
    s = parse_cron(expr)
    begin, end = u(start), u(start) + timedelta(days=3)
    expected = []
    t = begin + timedelta(minutes=1)
    while t < end:
        local = t.astimezone(zone)
        # Each UTC minute is one real instant; the second pass of a repeated hour has fold=1
        # and does not fire; skipped wall times never appear when converting from UTC.
        fires = local.fold == 0 and pred(local.minute, local.hour, local.day, local.month,
                                         _cron_dow(local))
        if fires:
            expected.append(t)
        assert s.matches(t) is fires, t
        t += timedelta(minutes=1)
    got, t = [], begin
    while True:
        t = s.next_after(t)
        if t >= end:
            break
        got.append(t)
    assert got == expected
    assert expected  # the window is not trivially empty
