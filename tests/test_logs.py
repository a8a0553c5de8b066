"""Structured logging (spec README §6.4; LOG_LEVEL / LOG_FORMAT in features.md §21)."""

from __future__ import annotations

import io
import json
import logging
import re

import pytest

from ironflow_pkg.logs import (
    TRACE,
    JsonFormatter,
    TextFormatter,
    get_logger,
    log_event,
    parse_level,
    redact,
    setup_logging,
)

TS_RE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")


@pytest.fixture(autouse=True)
def _restore_ironflow_logger():
    logger = logging.getLogger("ironflow")
    handlers, level = list(logger.handlers), logger.level
    yield
    logger.handlers[:] = handlers
    logger.setLevel(level)


def _lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_have_core_keys_and_merged_fields():
    s = io.StringIO()
    setup_logging("info", "json", s)
    log = get_logger("http")
    log.info("request %s", "done", extra={"fields": {"status": 200, "path": "/x"}})
    log_event(log, "warn", "slow", duration_ms=1500.5, route="/api")
    (first, second) = _lines(s)
    assert list(first)[:4] == ["ts", "level", "logger", "msg"]
    assert TS_RE.fullmatch(first["ts"])
    assert first["level"] == "info"
    assert first["logger"] == "ironflow.http"
    assert first["msg"] == "request done"
    assert first["status"] == 200 and first["path"] == "/x"
    assert second == {**second, "level": "warn", "msg": "slow", "duration_ms": 1500.5, "route": "/api"}
    assert "exc" not in first


def test_fields_do_not_overwrite_reserved_keys():
    s = io.StringIO()
    setup_logging("info", "json", s)
    log_event(get_logger(), "info", "real", msg="fake", level="fake", ts="fake", logger="fake")
    (line,) = _lines(s)
    assert line["msg"] == "real" and line["level"] == "info" and TS_RE.fullmatch(line["ts"])
    assert line["logger"] == "ironflow"
    assert line["field.msg"] == "fake" and line["field.level"] == "fake" and line["field.ts"] == "fake"


def test_exception_traceback_included():
    s = io.StringIO()
    setup_logging("info", "json", s)
    try:
        raise RuntimeError("kaboom")
    except RuntimeError:
        get_logger("engine").exception("step failed", extra={"fields": {"run_id": "r1"}})
        log_event(get_logger("engine"), "error", "again", exc_info=True)
    a, b = _lines(s)
    assert a["level"] == "error" and a["run_id"] == "r1"
    assert "Traceback (most recent call last)" in a["exc"]
    assert "RuntimeError: kaboom" in a["exc"]
    assert "RuntimeError: kaboom" in b["exc"]


def test_unserializable_values_and_broken_records_never_raise():
    class Weird:
        def __str__(self):
            return "weird!"

    class Broken:
        def __str__(self):
            raise RuntimeError("no str")

        __repr__ = __str__

    s = io.StringIO()
    setup_logging("info", "json", s)
    log = get_logger()
    log.info("objs", extra={"fields": {"w": Weird(), "b": b"\x00", "set": {1}, "nan": float("nan"),
                                       "nested": {(1, 2): "tuple key"}, "broken": Broken()}})
    log.info("not a mapping", extra={"fields": ["x"]})
    cyclic: dict = {}
    cyclic["self"] = cyclic
    log.info("cycle", extra={"fields": {"c": cyclic}})
    lines = _lines(s)
    assert len(lines) == 3
    objs = lines[0]
    assert objs["w"] == "weird!" and objs["b"] == "b'\\x00'" and objs["nan"] == "nan"
    assert objs["nested"] == {"(1, 2)": "tuple key"}
    assert objs["broken"] == "<unprintable Broken>"
    assert lines[1]["msg"] == "not a mapping"
    assert lines[2]["msg"] == "cycle"
    for line in s.getvalue().splitlines():
        json.loads(line, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))


def test_bad_format_args_do_not_raise():
    # (Fed to the formatters directly: pytest's own capture handler re-raises such errors.)
    rec = logging.LogRecord("ironflow", logging.INFO, __file__, 1, "bad %d args", ("nan",), None)
    assert "bad %d args" in json.loads(JsonFormatter().format(rec))["msg"]
    assert "bad %d args" in TextFormatter().format(rec)


def test_json_formatter_direct_non_ascii():
    rec = logging.LogRecord("ironflow.x", logging.INFO, __file__, 1, "héllo ✓", None, None)
    rec.fields = {"k": "ü"}
    out = JsonFormatter().format(rec)
    assert "\n" not in out
    assert json.loads(out)["msg"] == "héllo ✓"


def test_timestamp_is_utc_with_millis():
    rec = logging.LogRecord("ironflow", logging.INFO, __file__, 1, "m", None, None)
    rec.created = 1795986028.8187  # 2026-11-29T21:00:28.818Z
    assert json.loads(JsonFormatter().format(rec))["ts"] == "2026-11-29T21:00:28.818Z"


def test_text_format_shape():
    rec = logging.LogRecord("ironflow.http", logging.INFO, __file__, 1, "msg", None, None)
    rec.created = 1795986028.8187
    rec.fields = {"key": "value", "key2": "value2"}
    assert TextFormatter().format(rec) == "2026-11-29T21:00:28.818Z INFO  ironflow.http  msg key=value key2=value2"
    rec.fields = {"spaced": "a b", "empty": "", "n": 3, "lst": [1, "x"], "q": 'say "hi"'}
    rec.levelno, rec.levelname = logging.WARNING, "WARNING"
    assert TextFormatter().format(rec) == (
        '2026-11-29T21:00:28.818Z WARN  ironflow.http  msg spaced="a b" empty="" n=3 lst=[1,"x"] '
        'q="say \\"hi\\""'
    )


def test_text_format_via_setup_with_exception():
    s = io.StringIO()
    setup_logging("debug", "text", s)
    try:
        raise ValueError("bad")
    except ValueError:
        log_event(get_logger("journal"), "error", "commit failed", exc_info=True, batch=3)
    out = s.getvalue()
    first = out.splitlines()[0]
    assert re.fullmatch(r"\S+Z ERROR ironflow\.journal  commit failed batch=3", first)
    assert "ValueError: bad" in out


def test_setup_is_idempotent_and_reconfigures():
    s1, s2 = io.StringIO(), io.StringIO()
    logger = setup_logging("info", "json", s1)
    assert logger is logging.getLogger("ironflow")
    setup_logging("info", "json", s1)
    get_logger("x").info("once")
    assert len(s1.getvalue().splitlines()) == 1
    setup_logging("warn", "text", s2)
    get_logger("x").info("dropped")
    get_logger("x").warning("kept")
    assert len(s1.getvalue().splitlines()) == 1
    assert s2.getvalue().count("\n") == 1 and "WARN " in s2.getvalue()
    ours = [h for h in logger.handlers if getattr(h, "_ironflow_handler", False)]
    assert len(ours) == 1


def test_setup_leaves_root_logger_alone():
    root = logging.getLogger()
    before = list(root.handlers), root.level
    setup_logging("debug", "json", io.StringIO())
    assert (list(root.handlers), root.level) == before


def test_default_stream_is_stderr(capsys):
    setup_logging("info", "json")
    get_logger().info("to stderr")
    captured = capsys.readouterr()
    assert captured.out == ""
    assert json.loads(captured.err.splitlines()[-1])["msg"] == "to stderr"


def test_trace_level():
    s = io.StringIO()
    setup_logging("trace", "json", s)
    log_event(get_logger("ws"), "trace", "frame", opcode=1)
    log_event(get_logger("ws"), TRACE, "frame2")
    a, b = _lines(s)
    assert a["level"] == "trace" and a["opcode"] == 1 and b["level"] == "trace"
    s2 = io.StringIO()
    setup_logging("debug", "json", s2)
    log_event(get_logger("ws"), "trace", "hidden")
    assert s2.getvalue() == ""


@pytest.mark.parametrize(
    "name, level",
    [
        ("trace", 5),
        ("debug", logging.DEBUG),
        ("info", logging.INFO),
        ("INFO", logging.INFO),
        (" warn ", logging.WARNING),
        ("warning", logging.WARNING),
        ("error", logging.ERROR),
        (logging.ERROR, logging.ERROR),
    ],
)
def test_parse_level(name, level):
    assert parse_level(name) == level


@pytest.mark.parametrize("bad", ["verbose", "", "fatal", None, True])
def test_unknown_level_is_actionable(bad):
    with pytest.raises(ValueError, match="LOG_LEVEL.*trace, debug, info, warn, error"):
        parse_level(bad)
    with pytest.raises(ValueError):
        setup_logging(bad, "json", io.StringIO())


def test_unknown_format():
    with pytest.raises(ValueError, match="LOG_FORMAT"):
        setup_logging("info", "xml", io.StringIO())
    setup_logging("info", "TEXT", io.StringIO())


def test_get_logger_names():
    assert get_logger().name == "ironflow"
    assert get_logger("http").name == "ironflow.http"
    assert get_logger("ironflow.http").name == "ironflow.http"


@pytest.mark.parametrize(
    "value, shown",
    [
        ("", ""),
        (None, ""),
        ("ifkey_abcdef0123456789abcdef", "ifkey_ab…"),
        ("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", "01234567…"),
        ("short", "…"),
        ("fifteen-chars!!", "…"),
        ("sixteen-chars!!!", "sixteen-…"),
    ],
)
def test_redact(value, shown):
    assert redact(value) == shown
