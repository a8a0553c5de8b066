"""Byte-exact tests for the sans-I/O HTTP/1.1 core (``ironflow_pkg/http11.py``).

Design habits 1, 5, 6, 9: every valid input must produce the same events however it is split
across ``feed()`` calls (each byte boundary, byte by byte), every malformed input the same
``HttpError`` status, and nothing but ``HttpError`` may ever escape the parser.
References: RFC 9112 (message syntax), RFC 9110 (semantics), spec README §4 (h2c preface).
"""

from __future__ import annotations

import dataclasses
import random
import time
from typing import Any

import pytest

from ironflow_pkg import http11
from ironflow_pkg.http11 import (
    CLOSED, CONTINUE_100, H2_GOAWAY, LAST_CHUNK, NEED_DATA, PAUSED, REASONS, Data, EndOfMessage,
    H2Preface, HttpError, Limits, Request, RequestParser, chunk, response_head, validate_header,
)

from http_corpus import CHUNKED, MALFORMED, VALID, post, req

H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
SMALL = Limits(max_head_bytes=300, max_request_line=80, max_headers=6, max_body_bytes=64,
               max_chunk_line=24)


# --- driver ----------------------------------------------------------------------------------------


def _check_event(ev: Any) -> None:
    """Only the documented event types may come out, each well-formed."""
    if isinstance(ev, Request):
        assert isinstance(ev.method, str) and ev.method
        assert ev.version in ("1.0", "1.1")
        assert isinstance(ev.path, str) and isinstance(ev.query, str)
        assert ev.content_length is None or ev.content_length >= 0
        assert all(k == k.lower() and v == v.strip(" \t") for k, v in ev.headers)
    elif isinstance(ev, Data):
        assert isinstance(ev.data, bytes) and ev.data  # never an empty Data event
    else:
        assert isinstance(ev, (EndOfMessage, H2Preface)) or ev in (NEED_DATA, PAUSED, CLOSED), ev


def run(chunks: list[bytes], limits: Limits | None = None, eof: bool = False) -> list[Any]:
    """Feed ``chunks`` one by one, draining events after each, and return the normalised event
    list: consecutive Data merged, PAUSED answered with start_next_cycle, an HttpError recorded
    as ``("error", status)`` (parsing stops there). Also checks the event grammar
    Request (Data)* EndOfMessage PAUSED, and that no other exception escapes."""
    p = RequestParser(limits)
    out: list[Any] = []
    phase = "head"  # head -> body -> done -> head ...
    body_len = 0
    current: Request | None = None

    def drain() -> bool:
        nonlocal phase, body_len, current
        while True:
            try:
                ev = p.next_event()
            except HttpError as e:
                assert e.status in (None, 400, 413, 414, 417, 431, 501, 505), e.status
                out.append(("error", e.status))
                return False
            _check_event(ev)
            if ev is NEED_DATA:
                assert not p._eof, "NEED_DATA after feed_eof()"
                return True
            if ev is PAUSED:
                assert phase == "done"
                out.append("PAUSED")
                p.start_next_cycle()
                phase = "head"
                continue
            if ev is CLOSED:
                assert phase == "head"
                out.append("CLOSED")
                return False
            if isinstance(ev, H2Preface):
                assert phase == "head" and not out
                out.append(ev)
                return False
            if isinstance(ev, Request):
                assert phase == "head"
                phase, body_len, current = "body", 0, ev
                out.append(ev)
            elif isinstance(ev, Data):
                assert phase == "body"
                body_len += len(ev.data)
                if current is not None and current.content_length is not None:
                    assert body_len <= current.content_length
                if isinstance(out[-1], Data):
                    out[-1] = Data(out[-1].data + ev.data)
                else:
                    out.append(ev)
            else:
                assert isinstance(ev, EndOfMessage) and phase == "body"
                if current is not None and current.content_length is not None:
                    assert body_len == current.content_length
                phase = "done"
                out.append(ev)

    for c in chunks:
        p.feed(c)
        if not drain():
            return out
    if eof:
        p.feed_eof()
        drain()
    return out


def splits(data: bytes) -> list[list[bytes]]:
    """Every two-way split (including empty feeds at both ends) plus byte by byte."""
    cases = [[data[:i], data[i:]] for i in range(len(data) + 1)]
    cases.append([data[i:i + 1] for i in range(len(data))])
    return cases


def assert_split_invariant(data: bytes, limits: Limits | None = None, eof: bool = False) -> list[Any]:
    whole = run([data], limits, eof)
    for chunks in splits(data):
        got = run(chunks, limits, eof)
        assert got == whole, (chunks if len(chunks) == 2 else "byte-by-byte", got, whole)
    return whole


def events(data: bytes, limits: Limits | None = None) -> list[Any]:
    """Raw (un-normalised) events from feeding ``data`` whole, until NEED_DATA / PAUSED."""
    p = RequestParser(limits)
    p.feed(data)
    out = []
    while True:
        ev = p.next_event()
        out.append(ev)
        if ev in (NEED_DATA, PAUSED, CLOSED) or isinstance(ev, H2Preface):
            return out


def error_of(data: bytes, limits: Limits | None = None, eof: bool = False) -> int | None:
    got = run([data], limits, eof)
    assert got and got[-1][0] == "error", got
    return got[-1][1]


def one(data: bytes, limits: Limits | None = None) -> Request:
    got = run([data], limits)
    assert isinstance(got[0], Request), got
    return got[0]


# --- corpus: valid inputs, every split -----------------------------------------------------------


@pytest.mark.parametrize("name", sorted(VALID))
def test_valid_corpus_every_split(name: str) -> None:
    data, expected = VALID[name]
    got = assert_split_invariant(data)
    want_len = 0
    for attrs, body in expected:
        req_ev = got[want_len]
        assert isinstance(req_ev, Request), got
        for k, v in attrs.items():
            assert getattr(req_ev, k) == v, (k, getattr(req_ev, k), v)
        want_len += 1
        if body:
            assert got[want_len] == Data(body)
            want_len += 1
        assert got[want_len:want_len + 2] == [EndOfMessage(), "PAUSED"], got
        want_len += 2
    assert len(got) == want_len, got
    # With EOF after the last message: a clean CLOSED, under every split too.
    assert assert_split_invariant(data, eof=True) == got + ["CLOSED"]


@pytest.mark.parametrize("name", sorted(VALID))
def test_valid_corpus_three_way_splits(name: str) -> None:
    data = VALID[name][0]
    whole = run([data])
    rnd = random.Random(name)
    for _ in range(40):
        a, b = sorted(rnd.randrange(len(data) + 1) for _ in range(2))
        assert run([data[:a], data[a:b], data[b:]]) == whole


# --- corpus: malformed / smuggling inputs, every split ------------------------------------------


def test_malformed_corpus_is_large_enough() -> None:
    assert len(MALFORMED) >= 60


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_corpus_every_split(name: str) -> None:
    data, status = MALFORMED[name]
    got = assert_split_invariant(data)
    assert got[-1] == ("error", status), got
    # The verdict does not depend on the peer closing right after, either.
    assert assert_split_invariant(data, eof=True)[-1] == ("error", status)


def test_malformed_events_before_error() -> None:
    # A chunked body is handed out as it arrives; the framing error comes after the good part.
    data = MALFORMED["chunk_data_not_crlf"][0]
    got = run([data])
    assert isinstance(got[0], Request) and got[1:] == [Data(b"hello"), ("error", 400)]
    # The first pipelined request is complete and valid before the second one fails.
    got = run([MALFORMED["pipelined_second_cl_te"][0]])
    assert got[1:3] == [EndOfMessage(), "PAUSED"] and got[-1] == ("error", 400)


# --- request line (RFC 9112 §3) ---------------------------------------------------------------------


class TestRequestLine:
    def test_byte_exact_get(self) -> None:
        evs = events(b"GET /a/b?c=d HTTP/1.1\r\nHost: h\r\n\r\n")
        assert evs == [
            Request(method="GET", target="/a/b?c=d", path="/a/b", query="c=d", version="1.1",
                    headers=(("host", "h"),), keep_alive=True, expect_continue=False,
                    content_length=0, upgrade=None, authority="h"),
            EndOfMessage(), PAUSED,
        ]

    def test_methods_are_case_sensitive_tokens(self) -> None:
        assert one(req(b"get / HTTP/1.1")).method == "get"
        assert one(req(b"PROPFIND / HTTP/1.1")).method == "PROPFIND"

    @pytest.mark.parametrize("version,status", [
        (b"HTTP/2.0", 505), (b"HTTP/0.9", 505), (b"HTTP/9.9", 505), (b"http/1.1", 400),
        (b"HTTP/1.1x", 400), (b"HTTP/ 1.1", 400), (b"HTTP/1.", 400), (b"", 400),
    ])
    def test_bad_versions(self, version: bytes, status: int) -> None:
        assert error_of(b"GET / " + version + b"\r\nHost: a\r\n\r\n") == status

    @pytest.mark.parametrize("minor", [b"2", b"5", b"9"])
    def test_higher_minor_versions_are_11(self, minor: bytes) -> None:
        r = one(req(b"GET / HTTP/1." + minor))
        assert r.version == "1.1" and r.keep_alive

    def test_non_tchar_method_bytes(self) -> None:
        tchar = set(b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
        for b in range(256):
            if b in (0x0A, 0x20):  # line / field separators: other grammar rules apply
                continue
            data = req(b"G" + bytes([b]) + b"T / HTTP/1.1")
            if b in tchar:
                assert isinstance(run([data])[0], Request), b
            else:
                assert error_of(data) == 400, b

    def test_target_bytes(self) -> None:
        # RFC 9112 §3.2 / RFC 3986: visible ASCII minus '#'; whitespace splits the line.
        for b in range(256):
            if b in (0x0A, 0x20, 0x25):  # LF ends the line, SP separates, '%' needs hex digits
                continue
            data = req(b"GET /a" + bytes([b]) + b"z HTTP/1.1")
            if 0x21 <= b <= 0x7E and b != 0x23:
                assert one(data).path.startswith("/a"), b
            else:
                assert error_of(data) == 400, b

    @pytest.mark.parametrize("pct", [b"%41", b"%4a", b"%4A", b"%fF", b"%00", b"%25"])
    def test_valid_percent_escapes_kept_raw(self, pct: bytes) -> None:
        r = one(req(b"GET /x" + pct + b"?q=" + pct + b" HTTP/1.1"))
        assert r.path == "/x" + pct.decode() and r.query == "q=" + pct.decode()

    def test_query_keeps_question_marks(self) -> None:
        r = one(req(b"GET /p?a=?b&c HTTP/1.1"))
        assert (r.path, r.query) == ("/p", "a=?b&c")

    def test_absolute_form_ignores_host(self) -> None:
        # RFC 9112 §3.2.2: the server uses the target's authority, not Host.
        r = one(req(b"POST http://api.example/v1/x?y=1 HTTP/1.1", b"Content-Length: 0"))
        assert (r.path, r.query, r.authority) == ("/v1/x", "y=1", "api.example")
        assert r.header("host") == "example.com"
        assert r.target == "http://api.example/v1/x?y=1"

    def test_authority_form_only_for_connect(self) -> None:
        r = one(req(b"CONNECT [::1]:8443 HTTP/1.1"))
        assert (r.method, r.path, r.authority) == ("CONNECT", "", "[::1]:8443")
        assert error_of(req(b"POST example.com:443 HTTP/1.1")) == 400
        assert error_of(req(b"CONNECT example.com:https HTTP/1.1")) == 400

    def test_asterisk_form_only_for_options(self) -> None:
        assert one(req(b"OPTIONS * HTTP/1.1")).path == "*"
        for m in (b"GET", b"HEAD", b"POST", b"options"):
            assert error_of(req(m + b" * HTTP/1.1")) == 400, m

    def test_one_leading_empty_line_is_ignored(self) -> None:
        # RFC 9112 §2.2: SHOULD ignore at least one empty line before the request line.
        assert one(b"\n" + req(b"GET / HTTP/1.1")).path == "/"
        assert one(b"\r\n" + req(b"GET / HTTP/1.1")).path == "/"
        assert error_of(b"\r\n\n" + req(b"GET / HTTP/1.1")) == 400


# --- header fields (RFC 9112 §5, RFC 9110 §5.5) ----------------------------------------------------


class TestHeaderFields:
    def test_names_lowercased_values_stripped_latin1(self) -> None:
        r = one(req(b"GET / HTTP/1.1", b"X-Thing:   v1  ", b"x-thing:v2", b"X-Bin: \x80\xff"))
        assert r.headers == (("host", "example.com"), ("x-thing", "v1"), ("x-thing", "v2"),
                             ("x-bin", "\x80\xff"))
        assert r.header("X-THING") == "v1"
        assert r.header("missing") is None and r.header("missing", "d") == "d"

    def test_header_list_splits_and_trims(self) -> None:
        r = one(req(b"GET / HTTP/1.1", b"Accept: a, b,,  c ", b"accept: d"))
        assert r.header_list("ACCEPT") == ["a", "b", "c", "d"]
        assert r.header_list("nope") == []

    def test_value_bytes(self) -> None:
        # field-value = VCHAR / obs-text / SP / HTAB; CR, LF (mid-line), NUL, controls, DEL: 400.
        for b in range(256):
            if b == 0x0A:  # a bare LF ends the line (RFC 9112 §2.2)
                continue
            data = req(b"GET / HTTP/1.1", b"X: a" + bytes([b]) + b"z")
            if b == 0x09 or 0x20 <= b <= 0x7E or b >= 0x80:
                assert one(data).header("x") == "a" + chr(b) + "z", b
            else:
                assert error_of(data) == 400, b

    def test_name_bytes(self) -> None:
        tchar = set(b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
        for b in range(256):
            if b in (0x0A, 0x3A):  # LF ends the line, ':' ends the name
                continue
            data = req(b"GET / HTTP/1.1", b"X" + bytes([b]) + b"Y: v")
            if b in tchar:
                assert isinstance(run([data])[0], Request), b
            else:
                assert error_of(data) == 400, b

    def test_no_whitespace_before_colon(self) -> None:
        for ws in (b" ", b"\t", b"  "):
            assert error_of(req(b"GET / HTTP/1.1", b"X" + ws + b": v")) == 400

    def test_obs_fold_rejected(self) -> None:
        # RFC 9112 §5.2: a server MAY reject obs-fold with 400 — we always do.
        for cont in (b" more", b"\tmore", b" ", b"\t"):
            assert error_of(req(b"GET / HTTP/1.1", b"X: a", cont)) == 400

    def test_bare_lf_accepted_bare_cr_rejected(self) -> None:
        # RFC 9112 §2.2: bare LF MAY be accepted; a bare CR MUST be rejected or replaced.
        r = one(b"GET / HTTP/1.1\nHost: h\r\nX: 1\n\r\n")
        assert r.headers == (("host", "h"), ("x", "1"))
        assert error_of(b"GET / HTTP/1.1\rHost: h\r\n\r\n") == 400
        assert error_of(b"GET / HTTP/1.1\r\nHost: h\rX: 1\r\n\r\n") == 400
        assert error_of(b"GET / HTTP/1.1\r\nHost: h\r\n\r\r\n") == 400

    def test_lone_cr_before_lf_is_part_of_terminator_only_once(self) -> None:
        assert error_of(b"GET / HTTP/1.1\r\nHost: h\r\r\n\r\n") == 400

    def test_host_rules(self) -> None:
        assert error_of(req(b"GET / HTTP/1.1", host=False)) == 400
        assert error_of(req(b"GET / HTTP/1.1", b"HOST: example.com")) == 400
        r = one(req(b"GET / HTTP/1.0", host=False))
        assert r.authority == "" and r.header("host") is None
        r = one(req(b"GET / HTTP/1.1", b"Host:", host=False))  # empty Host is valid (RFC 9112 §3.2)
        assert r.authority == ""
        r = one(req(b"GET / HTTP/1.1", b"Host: [::1]:9123", host=False))
        assert r.authority == "[::1]:9123"


# --- body framing (RFC 9112 §6) -------------------------------------------------------------------


class TestFraming:
    def test_content_length_body_byte_exact(self) -> None:
        evs = events(post(b"Content-Length: 5", body=b"hello"))
        assert evs[1:] == [Data(b"hello"), EndOfMessage(), PAUSED]

    def test_content_length_body_arrives_in_pieces(self) -> None:
        p = RequestParser()
        p.feed(post(b"Content-Length: 10", body=b"abc"))
        assert isinstance(p.next_event(), Request)
        assert p.next_event() == Data(b"abc")
        assert p.next_event() is NEED_DATA
        p.feed(b"defghijklmnop")  # 7 body bytes + 6 bytes of the next message
        assert p.next_event() == Data(b"defghij")
        assert p.next_event() == EndOfMessage()
        assert p.next_event() is PAUSED
        assert p.buffered == 6

    def test_identical_content_lengths_accepted(self) -> None:
        for fields in ([b"Content-Length: 2, 2"], [b"Content-Length: 2", b"Content-Length: 2"],
                       [b"Content-Length: 2,2, 02"]):
            got = run([post(*fields, body=b"ok")])
            assert got[0].content_length == 2 and got[1] == Data(b"ok")

    def test_content_length_many_leading_zeros(self) -> None:
        # A syntactically valid but very long number must not crash the parser (int() has a
        # 4300-digit limit in CPython 3.11+).
        got = run([post(b"Content-Length: " + b"0" * 5000 + b"2", body=b"ok")])
        assert got[0].content_length == 2 and got[1] == Data(b"ok")
        assert error_of(post(b"Content-Length: " + b"1" * 4301)) == 413
        assert error_of(post(b"Content-Length: " + b"1" * 5000, b"Content-Length: 1")) == 400

    def test_transfer_encoding_is_case_insensitive(self) -> None:
        for te in (b"chunked", b"Chunked", b"CHUNKED", b" chunked\t"):
            got = run([post(b"Transfer-Encoding:" + te, body=b"1\r\nx\r\n0\r\n\r\n")])
            assert got[0].content_length is None and got[1] == Data(b"x"), te

    def test_transfer_encoding_status_codes(self) -> None:
        # RFC 9112 §6.1: TE + CL is a smuggling signal -> 400 and close; unknown coding -> 501.
        assert error_of(post(b"Transfer-Encoding: gzip", b"Content-Length: 1")) == 400
        assert error_of(post(b"Transfer-Encoding: br")) == 501
        assert error_of(post(b"Transfer-Encoding: deflate, chunked")) == 501
        assert error_of(post(b"Transfer-Encoding: chunked, gzip")) == 501
        assert error_of(post(b"Transfer-Encoding: chunked", b"Transfer-Encoding: chunked")) == 400
        assert error_of(req(b"PUT / HTTP/1.0", CHUNKED, host=False)) == 400

    def test_chunked_byte_exact(self) -> None:
        evs = events(post(CHUNKED, body=b"3\r\nabc\r\n1;x=1\r\nd\r\n0\r\nT: v\r\n\r\n"))
        assert evs[0].content_length is None
        assert evs[1:] == [Data(b"abc"), Data(b"d"), EndOfMessage(), PAUSED]

    def test_chunked_large_sizes_and_hex(self) -> None:
        body = bytes(range(256)) * 3
        got = run([post(CHUNKED, body=b"%X\r\n" % len(body) + body + b"\r\n0\r\n\r\n")])
        assert got[1] == Data(body)

    @pytest.mark.parametrize("line", [b"", b"g", b"-1", b"0x1", b"1 1", b" 1", b"1" * 17,
                                      b"f" * 17, b";ext", b"\x001"])
    def test_invalid_chunk_size(self, line: bytes) -> None:
        assert error_of(post(CHUNKED, body=line + b"\r\nx\r\n0\r\n\r\n")) == 400

    def test_chunk_extension_forms(self) -> None:
        for ext in (b";a", b";a=b", b';a="b c"', b" ;a", b"\t;a=b;c=d", b";\x80\xff"):
            got = run([post(CHUNKED, body=b"1" + ext + b"\r\nx\r\n0" + ext + b"\r\n\r\n")])
            assert got[1:3] == [Data(b"x"), EndOfMessage()], ext
        for bad in (b";\x00", b";\x1f", b";\x7f", b";a\rb"):
            assert error_of(post(CHUNKED, body=b"1" + bad + b"\r\nx\r\n0\r\n\r\n")) == 400, bad

    def test_chunk_data_must_end_with_crlf(self) -> None:
        for tail in (b"\n", b"\r", b"X", b"\rX", b" \r\n", b"\n\r"):
            got = run([post(CHUNKED, body=b"1\r\nx" + tail + b"0\r\n\r\n")])
            assert got[-1] == ("error", 400), tail

    def test_trailers_tolerated_and_dropped(self) -> None:
        got = run([post(CHUNKED, body=b"0\r\nX-A: 1\r\nX-B:\r\n\r\n")])
        assert got[1:] == [EndOfMessage(), "PAUSED"]
        assert got[0].header("x-a") is None  # dropped (RFC 9112 §7.1.2)

    def test_zero_length_body_event_order(self) -> None:
        assert events(req(b"GET / HTTP/1.1"))[1:] == [EndOfMessage(), PAUSED]


# --- connection management (RFC 9112 §9) ------------------------------------------------------------


class TestConnection:
    @pytest.mark.parametrize("version,conn,keep", [
        (b"1.1", None, True), (b"1.1", b"close", False), (b"1.1", b"Close", False),
        (b"1.1", b"keep-alive", True), (b"1.1", b"upgrade, close", False),
        (b"1.0", None, False), (b"1.0", b"keep-alive", True), (b"1.0", b"KEEP-ALIVE", True),
        (b"1.0", b"keep-alive, close", False), (b"1.0", b"close", False),
        (b"1.0", b"foo, keep-alive", True),
    ])
    def test_keep_alive(self, version: bytes, conn: bytes | None, keep: bool) -> None:
        fields = [b"Connection: " + conn] if conn is not None else []
        assert one(req(b"GET / HTTP/" + version, *fields)).keep_alive is keep

    def test_keep_alive_from_multiple_connection_fields(self) -> None:
        assert one(req(b"GET / HTTP/1.1", b"Connection: foo", b"Connection: close")).keep_alive is False

    def test_pipelined_requests_wait_for_start_next_cycle(self) -> None:
        first = post(b"Content-Length: 3", body=b"abc")
        second = req(b"GET /2 HTTP/1.1")
        p = RequestParser()
        p.feed(first + second)
        r1 = p.next_event()
        assert isinstance(r1, Request) and r1.path == "/p"
        assert p.next_event() == Data(b"abc")
        assert p.next_event() == EndOfMessage()
        for _ in range(3):
            assert p.next_event() is PAUSED  # nothing more until the response is written
        assert p.buffered == len(second)
        p.start_next_cycle()
        r2 = p.next_event()
        assert isinstance(r2, Request) and r2.path == "/2"
        assert p.next_event() == EndOfMessage()
        assert p.next_event() is PAUSED
        p.start_next_cycle()
        assert p.next_event() is NEED_DATA
        p.feed_eof()
        assert p.next_event() is CLOSED
        assert p.next_event() is CLOSED

    def test_start_next_cycle_too_early(self) -> None:
        p = RequestParser()
        with pytest.raises(RuntimeError):
            p.start_next_cycle()
        p.feed(post(b"Content-Length: 3", body=b"ab"))
        p.next_event()
        p.next_event()
        with pytest.raises(RuntimeError):
            p.start_next_cycle()

    def test_paused_survives_eof(self) -> None:
        p = RequestParser()
        p.feed(req(b"GET / HTTP/1.1"))
        p.feed_eof()
        assert isinstance(p.next_event(), Request)
        assert p.next_event() == EndOfMessage()
        assert p.next_event() is PAUSED
        p.start_next_cycle()
        assert p.next_event() is CLOSED

    def test_large_pipelined_bodies_across_compaction(self) -> None:
        # Bodies past the 64 KiB compaction threshold keep offsets right for what follows.
        big = bytes(random.Random(7).randrange(256) for _ in range(150_000))
        data = (post(b"Content-Length: %d" % len(big), body=big)
                + post(CHUNKED, body=b"%x\r\n" % len(big) + big + b"\r\n0\r\n\r\n")
                + req(b"GET /last HTTP/1.1"))
        whole = run([data])
        assert [type(e).__name__ if not isinstance(e, str) else e for e in whole] == [
            "Request", "Data", "EndOfMessage", "PAUSED", "Request", "Data", "EndOfMessage",
            "PAUSED", "Request", "EndOfMessage", "PAUSED"]
        assert whole[1] == Data(big) and whole[5] == Data(big) and whole[8].path == "/last"
        rnd = random.Random(99)
        for _ in range(10):
            cuts = sorted(rnd.randrange(len(data)) for _ in range(rnd.randrange(1, 30)))
            chunks = [data[a:b] for a, b in zip([0] + cuts, cuts + [len(data)])]
            assert run(chunks) == whole
        assert run([data[i:i + 1000] for i in range(0, len(data), 1000)]) == whole


# --- Expect: 100-continue (RFC 9110 §10.1.1) ---------------------------------------------------------


class TestExpect:
    def test_flag_set_only_for_11_with_body(self) -> None:
        assert one(post(b"Expect: 100-continue", b"Content-Length: 1")).expect_continue
        assert one(post(b"Expect: 100-continue", CHUNKED)).expect_continue
        assert not one(post(b"Expect: 100-continue", b"Content-Length: 0")).expect_continue
        assert not one(req(b"POST / HTTP/1.0", b"Expect: 100-continue", b"Content-Length: 1",
                           host=False)).expect_continue

    def test_head_is_available_before_the_body(self) -> None:
        p = RequestParser()
        p.feed(post(b"Expect: 100-continue", b"Content-Length: 4"))
        r = p.next_event()
        assert isinstance(r, Request) and r.expect_continue
        assert p.next_event() is NEED_DATA
        p.feed(b"body")
        assert p.next_event() == Data(b"body")

    def test_other_expectations_417(self) -> None:
        for v in (b"200-ok", b"100-continue;x=1", b"continue"):
            assert error_of(post(b"Expect: " + v, b"Content-Length: 1")) == 417, v


# --- Upgrade and h2c (RFC 9110 §7.8, spec README §4) ------------------------------------------------


class TestUpgrade:
    def test_upgrade_needs_connection_token(self) -> None:
        assert one(req(b"GET / HTTP/1.1", b"Upgrade: h2c", b"Connection: Upgrade")).upgrade == "h2c"
        assert one(req(b"GET / HTTP/1.1", b"Upgrade: h2c", b"Connection: close")).upgrade is None
        assert one(req(b"GET / HTTP/1.1", b"Connection: upgrade")).upgrade is None

    def test_take_trailing_data_after_upgrade(self) -> None:
        frame = b"\x81\x85\x01\x02\x03\x04" + bytes(c ^ m for c, m in zip(b"hello", b"\x01\x02\x03\x04\x01"))
        head = req(b"GET /ws HTTP/1.1", b"Connection: Upgrade", b"Upgrade: websocket",
                   b"Sec-WebSocket-Version: 13")
        data = head + frame
        for i in range(len(head), len(data) + 1):  # the frame arrives with or after the head
            p = RequestParser()
            p.feed(data[:i])
            r = p.next_event()
            assert isinstance(r, Request) and r.upgrade == "websocket"
            assert p.next_event() == EndOfMessage()
            assert p.next_event() is PAUSED
            p.feed(data[i:])
            assert p.buffered == len(frame)
            assert p.take_trailing_data() == frame
            assert p.buffered == 0 and p.take_trailing_data() == b""

    def test_h2c_preface(self) -> None:
        p = RequestParser()
        p.feed(H2_PREFACE + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        assert p.next_event() == H2Preface()
        assert p.take_trailing_data() == b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"

    def test_h2c_preface_every_split(self) -> None:
        assert assert_split_invariant(H2_PREFACE) == [H2Preface()]
        assert assert_split_invariant(H2_PREFACE + b"\x00\x00\x12\x04") == [H2Preface()]

    def test_h2c_preface_prefix_waits(self) -> None:
        for i in range(len(H2_PREFACE)):
            assert run([H2_PREFACE[:i]]) == [], i

    def test_h2c_preface_truncated_by_eof(self) -> None:
        for i in range(1, len(H2_PREFACE)):
            assert error_of(H2_PREFACE[:i], eof=True) in (None, 400), i

    def test_pri_request_that_is_not_the_preface(self) -> None:
        # "PRI * HTTP/2.0" then something other than "SM": an ordinary (unsupported) request.
        assert error_of(b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n") == 505
        assert one(req(b"PRI /x HTTP/1.1")).method == "PRI"

    def test_preface_only_first_on_the_connection(self) -> None:
        got = assert_split_invariant(req(b"GET / HTTP/1.1") + H2_PREFACE)
        assert got[-1] == ("error", 505)


# --- EOF handling ---------------------------------------------------------------------------------


class TestEof:
    def test_clean_close_between_messages(self) -> None:
        assert run([b""], eof=True) == ["CLOSED"]
        assert run([b"\r\n"], eof=True) == ["CLOSED"]
        got = run([req(b"GET / HTTP/1.1")], eof=True)
        assert got[-1] == "CLOSED"

    @pytest.mark.parametrize("data", [
        post(b"Content-Length: 5", body=b"hel"),
        post(b"Content-Length: 5"),
        post(CHUNKED),
        post(CHUNKED, body=b"5"),
        post(CHUNKED, body=b"5;ext=1"),
        post(CHUNKED, body=b"5\r"),
        post(CHUNKED, body=b"5\r\nhe"),
        post(CHUNKED, body=b"5\r\nhello"),
        post(CHUNKED, body=b"5\r\nhello\r"),
        post(CHUNKED, body=b"5\r\nhello\r\n"),
        post(CHUNKED, body=b"5\r\nhello\r\n0"),
        post(CHUNKED, body=b"5\r\nhello\r\n0\r\n"),
        post(CHUNKED, body=b"5\r\nhello\r\n0\r\nX-T"),
        post(CHUNKED, body=b"5\r\nhello\r\n0\r\nX-T: 1\r\n"),
        post(CHUNKED, body=b"5\r\nhello\r\n0\r\nX-T: 1\r\n\r"),
    ])
    def test_eof_mid_body_is_silent_error(self, data: bytes) -> None:
        # The peer vanished mid-message: no response makes sense -> HttpError(None).
        got = assert_split_invariant(data, eof=True)
        assert isinstance(got[0], Request) and got[-1] == ("error", None), got

    def test_eof_mid_head(self) -> None:
        data = req(b"GET / HTTP/1.1", b"X: y")
        for i in range(1, len(data)):
            got = run([data[:i]], eof=True)
            assert len(got) == 1 and got[0][0] == "error" and got[0][1] in (None, 400), (i, got)

    def test_feed_after_eof(self) -> None:
        p = RequestParser()
        p.feed_eof()
        with pytest.raises(RuntimeError):
            p.feed(b"x")
        p.feed_eof()  # idempotent

    def test_error_state_is_final(self) -> None:
        p = RequestParser()
        p.feed(b"BAD\r\n\r\n")
        with pytest.raises(HttpError) as ei:
            p.next_event()
        assert ei.value.status == 400 and ei.value.message
        with pytest.raises(RuntimeError):
            p.next_event()


# --- limits (design habit 4) ---------------------------------------------------------------------


class TestLimits:
    def test_defaults(self) -> None:
        lim = Limits()
        assert (lim.max_head_bytes, lim.max_request_line, lim.max_headers, lim.max_body_bytes,
                lim.max_chunk_line) == (65536, 8192, 128, 32 * 1024 * 1024, 4096)
        with pytest.raises(dataclasses.FrozenInstanceError):
            lim.max_headers = 1  # type: ignore[misc]

    def test_endless_header_line_raises_while_buffering(self) -> None:
        p = RequestParser()
        p.feed(b"GET / HTTP/1.1\r\nX: ")
        fed = 0
        with pytest.raises(HttpError) as ei:
            while True:
                assert p.next_event() is NEED_DATA
                p.feed(b"a" * 1000)
                fed += 1000
                assert fed < 70_000, "buffered without bound"
        assert ei.value.status == 431
        assert p.buffered <= 65536 + 1000

    def test_endless_request_line_raises_414(self) -> None:
        p = RequestParser()
        p.feed(b"GET /")
        with pytest.raises(HttpError) as ei:
            for _ in range(20):
                assert p.next_event() is NEED_DATA
                p.feed(b"a" * 1000)
        assert ei.value.status == 414

    def test_endless_chunk_size_line_raises_400(self) -> None:
        p = RequestParser()
        p.feed(post(CHUNKED, body=b"5;"))
        assert isinstance(p.next_event(), Request)
        with pytest.raises(HttpError) as ei:
            for _ in range(10):
                assert p.next_event() is NEED_DATA
                p.feed(b"x" * 1000)
        assert ei.value.status == 400

    def test_request_line_limit_boundary(self) -> None:
        # max_request_line counts the line and its CR (what is buffered before the LF).
        lim = Limits(max_request_line=40)
        line = b"GET /" + b"a" * 20 + b" HTTP/1.1"  # 34 bytes
        pad = 40 - 1 - len(line)
        ok = b"GET /" + b"a" * (20 + pad) + b" HTTP/1.1"
        assert len(ok) + 1 == 40
        assert isinstance(run([req(ok)], lim)[0], Request)
        too_long = b"GET /" + b"a" * (21 + pad) + b" HTTP/1.1"
        assert assert_split_invariant(req(too_long), lim)[-1] == ("error", 414)
        # The default limit: 8 KiB.
        assert error_of(req(b"GET /" + b"a" * 8200 + b" HTTP/1.1")) == 414
        assert isinstance(run([req(b"GET /" + b"a" * 8000 + b" HTTP/1.1")])[0], Request)

    def test_head_limit_boundary(self) -> None:
        base = req(b"GET / HTTP/1.1", b"X: ")
        lim = Limits(max_head_bytes=len(base) + 10)
        ok = req(b"GET / HTTP/1.1", b"X: " + b"a" * 10)
        assert len(ok) == lim.max_head_bytes
        assert assert_split_invariant(ok, lim)[0].header("x") == "a" * 10
        bad = req(b"GET / HTTP/1.1", b"X: " + b"a" * 11)
        assert assert_split_invariant(bad, lim)[-1] == ("error", 431)
        # Many small fields add up too.
        many = req(b"GET / HTTP/1.1", *[b"X: 1"] * 20)
        assert error_of(many, Limits(max_head_bytes=100)) == 431

    def test_default_head_limit(self) -> None:
        assert error_of(req(b"GET / HTTP/1.1", b"X: " + b"a" * 70_000)) == 431
        spread = req(b"GET / HTTP/1.1", *[b"X-%d: %s" % (i, b"v" * 1000) for i in range(70)])
        assert error_of(spread) == 431

    def test_header_count(self) -> None:
        assert isinstance(run([req(b"GET / HTTP/1.1", *[b"X: 1"] * 127)])[0], Request)
        assert error_of(req(b"GET / HTTP/1.1", *[b"X: 1"] * 128)) == 431  # + Host = 129
        lim = Limits(max_headers=3)
        assert isinstance(run([req(b"GET / HTTP/1.1", b"A: 1", b"B: 2")], lim)[0], Request)
        assert assert_split_invariant(req(b"GET / HTTP/1.1", b"A: 1", b"B: 2", b"C: 3"), lim)[-1] \
            == ("error", 431)

    def test_content_length_over_limit_413_at_head(self) -> None:
        lim = Limits(max_body_bytes=10)
        assert run([post(b"Content-Length: 10", body=b"x" * 10)], lim)[1] == Data(b"x" * 10)
        p = RequestParser(lim)
        p.feed(post(b"Content-Length: 11"))  # no body byte has arrived: refused at the head
        with pytest.raises(HttpError) as ei:
            p.next_event()
        assert ei.value.status == 413

    def test_chunked_cumulative_limit(self) -> None:
        lim = Limits(max_body_bytes=10)
        ok = post(CHUNKED, body=b"5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n")
        assert assert_split_invariant(ok, lim)[1] == Data(b"helloworld")
        bad = post(CHUNKED, body=b"5\r\nhello\r\n5\r\nworld\r\n1\r\n!\r\n0\r\n\r\n")
        got = assert_split_invariant(bad, lim)
        assert got[1:] == [Data(b"helloworld"), ("error", 413)]
        # A single announced chunk over the limit is refused before its data arrives.
        assert run([post(CHUNKED, body=b"b\r\n")], lim)[-1] == ("error", 413)
        assert error_of(post(CHUNKED, body=b"ffffffffffffffff\r\n")) == 413

    def test_chunk_line_limit(self) -> None:
        lim = Limits(max_chunk_line=10)
        assert run([post(CHUNKED, body=b"1;abcdef\r\nx\r\n0\r\n\r\n")], lim)[1] == Data(b"x")
        got = assert_split_invariant(post(CHUNKED, body=b"1;abcdefghij\r\nx\r\n0\r\n\r\n"), lim)
        assert got[-1] == ("error", 400)

    def test_trailers_count_against_head_limit(self) -> None:
        lim = Limits(max_head_bytes=200)
        ok = post(CHUNKED, body=b"0\r\n" + b"T: " + b"v" * 150 + b"\r\n\r\n")
        assert run([ok], lim)[1] == EndOfMessage()
        bad = post(CHUNKED, body=b"0\r\n" + b"T: " + b"v" * 250 + b"\r\n\r\n")
        assert assert_split_invariant(bad, lim)[-1] == ("error", 431)
        many = post(CHUNKED, body=b"0\r\n" + b"T: vvvvvvvvvvvvvvvvvvvv\r\n" * 10 + b"\r\n")
        assert assert_split_invariant(many, lim)[-1] == ("error", 431)
        p = RequestParser(lim)  # an endless trailer line is cut off while buffering
        p.feed(post(CHUNKED, body=b"0\r\nT: "))
        assert isinstance(p.next_event(), Request)
        with pytest.raises(HttpError) as ei:
            for _ in range(10):
                assert p.next_event() is NEED_DATA
                p.feed(b"v" * 50)
        assert ei.value.status == 431

    def test_small_limits_corpus_split_invariant(self) -> None:
        # Every corpus entry under tight limits: whichever check fires, it fires the same way
        # however the bytes are split.
        for name, (data, _) in sorted({**VALID, **MALFORMED}.items()):
            if len(data) > 400:
                continue
            assert_split_invariant(data, SMALL)


# --- response writer -----------------------------------------------------------------------------


class TestWriter:
    def test_response_head_byte_exact(self) -> None:
        assert response_head(200, []) == b"HTTP/1.1 200 OK\r\n\r\n"
        assert response_head(404, [("Content-Type", "application/json"), ("Content-Length", "2")]) \
            == b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n"
        assert response_head(204, (("Set-Cookie", "a=1"), ("Set-Cookie", "b=2"))) \
            == b"HTTP/1.1 204 No Content\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\n"
        assert response_head(200, [], reason="Fine") == b"HTTP/1.1 200 Fine\r\n\r\n"
        assert response_head(299, []) == b"HTTP/1.1 299 Unknown\r\n\r\n"
        assert response_head(200, [("X-Latin", "caf\xe9"), ("X-Tab", "a\tb"), ("X-Empty", "")]) \
            == b"HTTP/1.1 200 OK\r\nX-Latin: caf\xe9\r\nX-Tab: a\tb\r\nX-Empty: \r\n\r\n"

    @pytest.mark.parametrize("status,line", [
        (100, b"100 Continue"), (101, b"101 Switching Protocols"), (201, b"201 Created"),
        (304, b"304 Not Modified"), (400, b"400 Bad Request"), (413, b"413 Content Too Large"),
        (414, b"414 URI Too Long"), (417, b"417 Expectation Failed"),
        (422, b"422 Unprocessable Content"), (431, b"431 Request Header Fields Too Large"),
        (500, b"500 Internal Server Error"), (501, b"501 Not Implemented"),
        (505, b"505 HTTP Version Not Supported"),
    ])
    def test_reason_phrases(self, status: int, line: bytes) -> None:
        assert response_head(status, []) == b"HTTP/1.1 " + line + b"\r\n\r\n"

    def test_every_parser_status_has_a_reason(self) -> None:
        for status in (400, 408, 413, 414, 417, 431, 501, 505):
            assert status in REASONS

    @pytest.mark.parametrize("name,value", [
        ("X", "a\r\nInjected: 1"), ("X", "a\nb"), ("X", "a\rb"), ("X", "a\x00b"), ("X", "\x7f"),
        ("X", "a\x0bb"), ("X", "\u20ac"), ("X\r\nY", "v"), ("X: Y", "v"), ("", "v"), ("X Y", "v"),
        ("X\n", "v"), ("Caf\xe9", "v"), ("X(", "v"),
    ])
    def test_injection_raises_value_error(self, name: str, value: str) -> None:
        with pytest.raises(ValueError):
            validate_header(name, value)
        with pytest.raises(ValueError):
            response_head(200, [("Ok", "fine"), (name, value)])

    @pytest.mark.parametrize("reason", ["OK\r\nX-Injected: 1", "a\nb", "a\rb", "a\x00"])
    def test_reason_injection_raises_value_error(self, reason: str) -> None:
        with pytest.raises(ValueError):
            response_head(200, [], reason=reason)

    def test_chunk_framing(self) -> None:
        assert chunk(b"hello") == b"5\r\nhello\r\n"
        assert chunk(b"") == b""
        assert chunk(b"x" * 255) == b"ff\r\n" + b"x" * 255 + b"\r\n"
        assert chunk(b"\r\n" * 2048) == b"1000\r\n" + b"\r\n" * 2048 + b"\r\n"
        assert chunk(bytearray(b"ab")) == b"2\r\nab\r\n"
        assert chunk(memoryview(b"abc")) == b"3\r\nabc\r\n"
        assert LAST_CHUNK == b"0\r\n\r\n"
        assert CONTINUE_100 == b"HTTP/1.1 100 Continue\r\n\r\n"

    def test_chunks_round_trip_through_parser(self) -> None:
        pieces = [b"a", b"\r\n", bytes(range(256)), b"0\r\n\r\n", b"z" * 4097]
        body = b"".join(chunk(x) for x in pieces) + chunk(b"") + LAST_CHUNK
        got = assert_split_invariant(post(CHUNKED, body=body))
        assert got[1] == Data(b"".join(pieces)) and got[2] == EndOfMessage()

    def test_h2_goaway_bytes(self) -> None:
        # spec README §4: empty SETTINGS then GOAWAY(last stream 0, HTTP_1_1_REQUIRED = 0x0d).
        assert H2_GOAWAY == bytes([0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00]) + bytes(
            [0x00, 0x00, 0x08, 0x07, 0x00, 0x00, 0x00, 0x00, 0x00,
             0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0D])
        assert len(H2_GOAWAY) == 26
        settings, goaway = H2_GOAWAY[:9], H2_GOAWAY[9:]
        assert int.from_bytes(settings[:3], "big") == 0 and settings[3] == 0x4
        assert int.from_bytes(goaway[:3], "big") == 8 and goaway[3] == 0x7
        assert int.from_bytes(goaway[5:9], "big") == 0  # stream 0
        assert int.from_bytes(goaway[13:17], "big") == 0x0D

    def test_public_api(self) -> None:
        for name in http11.__all__:
            assert hasattr(http11, name), name


# --- fuzz: mutated corpus, only HttpError or valid events ---------------------------------------


def _mutate(rnd: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(rnd.randrange(1, 4)):
        op = rnd.randrange(6)
        if not b:
            b += bytes([rnd.randrange(256)])
            continue
        i = rnd.randrange(len(b))
        if op == 0:  # flip a bit
            b[i] ^= 1 << rnd.randrange(8)
        elif op == 1:  # replace with an interesting byte
            b[i] = rnd.choice(b"\x00\t\n\r :;,=\"%#\x7f\x80\xff0aAfFgG-+ ")
        elif op == 2:  # insert
            b[i:i] = rnd.choice([b"\r\n", b"\n", b"\r", b" ", b"\t", b"0", b"chunked", b",",
                                 b"Content-Length: 3\r\n", b"Transfer-Encoding: chunked\r\n",
                                 b"\r\n\r\n", bytes([rnd.randrange(256)])])
        elif op == 3:  # truncate
            del b[i:]
        elif op == 4:  # delete a span
            del b[i:i + rnd.randrange(1, 8)]
        else:  # duplicate a span
            j = min(len(b), i + rnd.randrange(1, 40))
            b[i:i] = b[i:j]
    return bytes(b)


def test_fuzz_mutated_corpus() -> None:
    rnd = random.Random(1234)
    seeds = [d for d, _ in VALID.values()] + [d for d, _ in MALFORMED.values() if len(d) < 600]
    started = time.monotonic()
    outcomes: dict[str, int] = {}
    for n in range(4000):
        data = _mutate(rnd, rnd.choice(seeds))
        limits = SMALL if n % 4 == 3 else None
        eof = n % 2 == 0
        whole = run([data], limits, eof)  # asserts only HttpError / valid events escape
        cuts = sorted(rnd.randrange(len(data) + 1) for _ in range(rnd.randrange(1, 6)))
        chunks = [data[a:b] for a, b in zip([0] + cuts, cuts + [len(data)])]
        assert run(chunks, limits, eof) == whole, data
        last = whole[-1] if whole else "NEED_DATA"
        key = "error" if isinstance(last, tuple) else type(last).__name__ if not isinstance(last, str) else last
        outcomes[key] = outcomes.get(key, 0) + 1
    assert time.monotonic() - started < 12
    # The mutations reach both accepting and rejecting paths.
    assert outcomes.get("error", 0) > 500 and outcomes.get("PAUSED", 0) + outcomes.get("CLOSED", 0) > 100


def test_fuzz_byte_by_byte_sample() -> None:
    rnd = random.Random(1234)
    seeds = [d for d, _ in VALID.values()]
    for _ in range(300):
        data = _mutate(rnd, rnd.choice(seeds))
        assert run([data[i:i + 1] for i in range(len(data))], eof=True) == run([data], eof=True)
