"""Byte-exact tests of the sans-I/O WebSocket core (RFC 6455 server role + RFC 7692).

Cases follow Autobahn|Testsuite sections 1-13; frames are fed whole, split at every byte
boundary and byte by byte, and must give the same events and the same bytes to send.
"""

from __future__ import annotations

import zlib

import pytest

from ironflow_pkg.websocket import (
    BinaryMessage, CloseReceived, ConnectionState, DeflateOptions, DeflateParams, HandshakeError,
    LocalProtocolError, Ping, Pong, ProtocolFailure, TextMessage, WebSocketConnection, WsLimits,
    accept_key, check_handshake, encode_frame, valid_close_code,
)

MASK = b"\x37\xfa\x21\x3d"


def cf(opcode: int, payload: bytes = b"", fin: bool = True, rsv1: bool = False, rsv: int = 0,
       mask: bytes | None = MASK) -> bytes:
    """A client frame (masked). ``rsv`` sets raw RSV bits (0x40/0x20/0x10)."""
    f = bytearray(encode_frame(opcode, payload, fin=fin, rsv1=rsv1, mask=mask))
    f[0] |= rsv
    return bytes(f)


def sf(opcode: int, payload: bytes = b"", rsv1: bool = False) -> bytes:
    """A server frame (unmasked)."""
    return encode_frame(opcode, payload, rsv1=rsv1)


def close_payload(code: int, reason: bytes = b"") -> bytes:
    return code.to_bytes(2, "big") + reason


def run(data: bytes, chunks: list[int] | None = None, *, deflate: DeflateParams | None = None,
        limits: WsLimits | None = None) -> tuple[list, bytes, WebSocketConnection]:
    conn = WebSocketConnection(deflate, limits)
    events: list = []
    out = bytearray()
    cuts = [0] + (chunks or []) + [len(data)]
    for a, b in zip(cuts, cuts[1:]):
        conn.receive_data(data[a:b])
        events.extend(conn.events())
        out += conn.data_to_send()
    return events, bytes(out), conn


def check_all_splits(data: bytes, **kw) -> tuple[list, bytes]:
    """Whole, split at every boundary, and byte by byte: identical results."""
    events, out, _ = run(data, **kw)
    for i in range(1, len(data)):
        assert run(data, [i], **kw)[:2] == (events, out), f"split at {i}"
    assert run(data, list(range(1, len(data))), **kw)[:2] == (events, out), "byte by byte"
    return events, out


def fail_code(events: list, out: bytes) -> int:
    """Assert the connection failed and return the code of the close frame it queued."""
    assert isinstance(events[-1], ProtocolFailure), events
    ev = events[-1]
    assert out.endswith(sf(8, close_payload(ev.code, ev.reason.encode()))), out
    return ev.code


# --- handshake (RFC 6455 §4) ------------------------------------------------------------------

GOOD = [("Host", "x"), ("Upgrade", "websocket"), ("Connection", "keep-alive, Upgrade"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="), ("Sec-WebSocket-Version", "13")]


def hs(replace: dict[str, str | None] | None = None, extra: list[tuple[str, str]] | None = None,
       method: str = "GET", **kw):
    headers = []
    replace = {k.lower(): v for k, v in (replace or {}).items()}
    for k, v in GOOD:
        if k.lower() in replace:
            if replace[k.lower()] is not None:
                headers.append((k, replace[k.lower()]))
        else:
            headers.append((k, v))
    headers += extra or []
    return check_handshake(headers, method, **kw)


def test_accept_key_golden():
    assert accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_handshake_ok_headers():
    r = hs()
    assert r.headers == [("Upgrade", "websocket"), ("Connection", "Upgrade"),
                         ("Sec-WebSocket-Accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")]
    assert r.subprotocol is None and r.deflate is None


def test_handshake_accepts_mapping_and_case():
    r = check_handshake({"upgrade": "WebSocket", "connection": "UPGRADE",
                         "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
                         "sec-websocket-version": "13"}, "GET")
    assert r.accept == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


@pytest.mark.parametrize("replace,method,status", [
    ({}, "POST", 400),
    ({"Upgrade": None}, "GET", 400),
    ({"Upgrade": "h2c"}, "GET", 400),
    ({"Connection": "keep-alive"}, "GET", 400),
    ({"Connection": None}, "GET", 400),
    ({"Sec-WebSocket-Key": None}, "GET", 400),
    ({"Sec-WebSocket-Key": "not base64!"}, "GET", 400),
    ({"Sec-WebSocket-Key": "AAAA"}, "GET", 400),  # 3 bytes
    ({"Sec-WebSocket-Key": "AAAAAAAAAAAAAAAAAAAAAAAA"}, "GET", 400),  # 18 bytes
    ({"Sec-WebSocket-Version": "8"}, "GET", 426),
    ({"Sec-WebSocket-Version": None}, "GET", 426),
])
def test_handshake_rejections(replace, method, status):
    with pytest.raises(HandshakeError) as ei:
        hs(replace, method=method)
    assert ei.value.status == status
    if status == 426:
        assert ei.value.headers == [("Sec-WebSocket-Version", "13")]


def test_handshake_origin_hook():
    assert hs(extra=[("Origin", "https://ok")], check_origin=lambda o: o == "https://ok")
    with pytest.raises(HandshakeError) as ei:
        hs(extra=[("Origin", "https://evil")], check_origin=lambda o: o == "https://ok")
    assert ei.value.status == 403
    with pytest.raises(HandshakeError):
        hs(check_origin=lambda o: o is not None)


def test_handshake_subprotocol_hook():
    r = hs(extra=[("Sec-WebSocket-Protocol", "chat, superchat")],
           select_subprotocol=lambda offered: "superchat" if "superchat" in offered else None)
    assert r.subprotocol == "superchat"
    assert ("Sec-WebSocket-Protocol", "superchat") in r.headers
    r = hs(extra=[("Sec-WebSocket-Protocol", "chat")], select_subprotocol=lambda offered: None)
    assert r.subprotocol is None and all(k != "Sec-WebSocket-Protocol" for k, _ in r.headers)


def ext(value: str, options: DeflateOptions | None = DeflateOptions()):
    r = hs(extra=[("Sec-WebSocket-Extensions", value)], deflate=options)
    got = [v for k, v in r.headers if k == "Sec-WebSocket-Extensions"]
    return r.deflate, (got[0] if got else None)


@pytest.mark.parametrize("offer,answer,params", [
    ("permessage-deflate", "permessage-deflate", DeflateParams()),
    ("permessage-deflate; client_max_window_bits", "permessage-deflate", DeflateParams()),
    ("permessage-deflate; server_no_context_takeover",
     "permessage-deflate; server_no_context_takeover", DeflateParams(server_no_context_takeover=True)),
    ("permessage-deflate; client_no_context_takeover",
     "permessage-deflate; client_no_context_takeover", DeflateParams(client_no_context_takeover=True)),
    ("permessage-deflate; server_max_window_bits=10",
     "permessage-deflate; server_max_window_bits=10", DeflateParams(server_max_window_bits=10)),
    ('permessage-deflate; server_max_window_bits="12"',
     "permessage-deflate; server_max_window_bits=12", DeflateParams(server_max_window_bits=12)),
    ("permessage-deflate; server_max_window_bits=8",
     "permessage-deflate; server_max_window_bits=8",
     DeflateParams(server_max_window_bits=8, compress=False)),
    ("permessage-deflate; client_max_window_bits=9", "permessage-deflate; client_max_window_bits=9",
     DeflateParams(client_max_window_bits=9)),
    # an unacceptable first offer is declined and the next one taken
    ("permessage-deflate; foo=1, permessage-deflate; server_no_context_takeover",
     "permessage-deflate; server_no_context_takeover", DeflateParams(server_no_context_takeover=True)),
    ("x-webkit-deflate-frame, permessage-deflate", "permessage-deflate", DeflateParams()),
])
def test_deflate_negotiation(offer, answer, params):
    got, header = ext(offer)
    assert header == answer
    assert got == params


@pytest.mark.parametrize("offer", [
    "permessage-deflate; unknown",
    "permessage-deflate; server_max_window_bits",  # server_max_window_bits needs a value
    "permessage-deflate; server_max_window_bits=7",
    "permessage-deflate; server_max_window_bits=16",
    "permessage-deflate; server_max_window_bits=010",
    "permessage-deflate; client_max_window_bits=abc",
    "permessage-deflate; server_no_context_takeover=1",
    "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
    "x-webkit-deflate-frame",
])
def test_deflate_declined(offer):
    assert ext(offer) == (None, None)


def test_deflate_not_enabled_ignores_offer():
    assert ext("permessage-deflate", None) == (None, None)


def test_deflate_server_options_in_answer():
    got, header = ext("permessage-deflate; client_max_window_bits",
                      DeflateOptions(server_no_context_takeover=True, client_max_window_bits=10,
                                     server_max_window_bits=11))
    assert header == ("permessage-deflate; server_no_context_takeover; server_max_window_bits=11; "
                      "client_max_window_bits=10")
    assert got.server_max_window_bits == 11 and got.client_max_window_bits == 10
    # client_max_window_bits is only answered when the client offered it (RFC 7692 §7.1.2.2)
    _, header = ext("permessage-deflate", DeflateOptions(client_max_window_bits=10))
    assert header == "permessage-deflate"


# --- 1. framing -------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [0, 1, 125, 126, 127, 128, 65535, 65536])
def test_1_1_text_lengths(n):
    payload = b"*" * n
    events, out, _ = run(cf(1, payload))
    assert events == [TextMessage("*" * n)] and out == b""
    assert sf(1, payload)[:2] == bytes([0x81, n if n < 126 else 126 if n < 65536 else 127])


@pytest.mark.parametrize("n", [0, 125, 126, 65536])
def test_1_2_binary_lengths(n):
    payload = bytes(range(256)) * (n // 256) + bytes(n % 256)
    events, out, _ = run(cf(2, payload))
    assert events == [BinaryMessage(payload)] and out == b""


def test_1_splits_representative_frames():
    for n in (0, 5, 126, 300):
        events, out = check_all_splits(cf(1, b"a" * n) + cf(2, b"\x00\xfe" * n))
        assert events == [TextMessage("a" * n), BinaryMessage(b"\x00\xfe" * n)]


def test_1_64bit_length_and_split():
    data = cf(2, b"z" * 70000)
    assert data[1] == 0x80 | 127
    events, _, _ = run(data, [1, 2, 5, 10, 13, 14, 15, 40000])
    assert events == [BinaryMessage(b"z" * 70000)]


def test_server_frame_bytes_exact():
    c = WebSocketConnection()
    assert c.send_text("Hello") == b"\x81\x05Hello"
    assert c.send_binary(b"\x01\x02") == b"\x82\x02\x01\x02"
    assert c.send_ping(b"p") == b"\x89\x01p"
    assert c.send_pong(b"") == b"\x8a\x00"
    assert c.send_binary(b"x" * 126)[:4] == b"\x82\x7e\x00\x7e"
    assert c.send_binary(b"x" * 65536)[:10] == b"\x82\x7f" + (65536).to_bytes(8, "big")
    assert c.send_close(1000, "bye") == b"\x88\x05\x03\xe8bye"
    with pytest.raises(LocalProtocolError):
        c.send_text("after close")


def test_rfc_example_masked_hello():
    # RFC 6455 §5.7: a single-frame masked text message "Hello".
    events, _, _ = run(bytes.fromhex("818537fa213d7f9f4d5158"))
    assert events == [TextMessage("Hello")]


def test_unmasked_client_frame_1002():
    events, out, _ = run(cf(1, b"hi", mask=None))
    assert fail_code(events, out) == 1002


def test_non_minimal_length_1002():
    data = bytes([0x81, 0x80 | 126, 0, 5]) + MASK + b"hello"
    assert fail_code(*run(data)[:2]) == 1002
    data = bytes([0x82, 0x80 | 127]) + (5).to_bytes(8, "big") + MASK + b"hello"
    assert fail_code(*run(data)[:2]) == 1002


def test_64bit_length_msb_1002():
    data = bytes([0x82, 0x80 | 127]) + (1 << 63).to_bytes(8, "big") + MASK
    assert fail_code(*run(data)[:2]) == 1002


# --- 2. pings and pongs -----------------------------------------------------------------------


@pytest.mark.parametrize("payload", [b"", b"Hello, world!", bytes(range(125)), b"\xff\xfe\x00"])
def test_2_ping_answered_with_same_payload(payload):
    events, out = check_all_splits(cf(9, payload))
    assert events == [Ping(payload)]
    assert out == sf(10, payload)


def test_2_5_ping_too_long_1002():
    events, out, _ = run(cf(9, b"x" * 126))
    assert fail_code(events, out) == 1002
    # detected from the header alone, before the payload is buffered
    events, out, _ = run(cf(9, b"x" * 126)[:4])
    assert fail_code(events, out) == 1002


def test_2_unsolicited_pong_no_reply():
    events, out = check_all_splits(cf(10, b"unsolicited"))
    assert events == [Pong(b"unsolicited")] and out == b""


def test_2_10_many_pings_many_pongs():
    data = b"".join(cf(9, b"payload-%d" % i) for i in range(10))
    events, out = check_all_splits(data)
    assert events == [Ping(b"payload-%d" % i) for i in range(10)]
    assert out == b"".join(sf(10, b"payload-%d" % i) for i in range(10))


# --- 3. reserved bits -------------------------------------------------------------------------


@pytest.mark.parametrize("opcode", [1, 2, 9, 10, 8])
@pytest.mark.parametrize("rsv", [0x40, 0x20, 0x10, 0x70])
def test_3_reserved_bits_1002(opcode, rsv):
    data = cf(1, b"before") + cf(opcode, b"x" if opcode != 8 else close_payload(1000), rsv=rsv) \
        + cf(1, b"after")
    events, out = check_all_splits(data)
    assert events[0] == TextMessage("before")
    assert fail_code(events, out) == 1002
    assert TextMessage("after") not in events


# --- 4. opcodes -------------------------------------------------------------------------------


@pytest.mark.parametrize("opcode", [3, 4, 5, 6, 7, 11, 12, 13, 14, 15])
def test_4_reserved_opcodes_1002(opcode):
    events, out = check_all_splits(cf(1, b"ok") + cf(opcode, b"xyz") + cf(9, b"no pong"))
    assert events[0] == TextMessage("ok")
    assert fail_code(events, out) == 1002
    assert out == sf(8, close_payload(1002, b"reserved opcode %#x" % opcode))


# --- 5. fragmentation -------------------------------------------------------------------------


def test_5_1_fragmented_ping_1002():
    assert fail_code(*run(cf(9, b"frag", fin=False) + cf(0, b"ment"))[:2]) == 1002


def test_5_2_fragmented_pong_1002():
    assert fail_code(*run(cf(10, b"frag", fin=False) + cf(0, b"ment"))[:2]) == 1002


def test_5_3_text_in_fragments():
    events, out = check_all_splits(cf(1, b"frag", fin=False) + cf(0, b"men", fin=False) + cf(0, b"ted"))
    assert events == [TextMessage("fragmented")] and out == b""


def test_5_6_ping_between_fragments():
    data = cf(1, b"frag", fin=False) + cf(9, b"ping") + cf(0, b"ment")
    events, out = check_all_splits(data)
    assert events == [Ping(b"ping"), TextMessage("fragment")]
    assert out == sf(10, b"ping")


def test_5_8_many_fragments_and_pings():
    data = b"".join(cf(2 if i == 0 else 0, bytes([i]), fin=(i == 19)) + cf(9, bytes([i]))
                    for i in range(20))
    events, out, _ = run(data)
    assert events[-2] == BinaryMessage(bytes(range(20)))
    assert [e for e in events if isinstance(e, Ping)] == [Ping(bytes([i])) for i in range(20)]
    assert out == b"".join(sf(10, bytes([i])) for i in range(20))


@pytest.mark.parametrize("fin", [True, False])
def test_5_9_continuation_without_start_1002(fin):
    data = cf(0, b"fragment", fin=fin) + cf(1, b"never")
    events, out = check_all_splits(data)
    assert fail_code(events, out) == 1002 and len(events) == 1


def test_5_18_new_data_frame_inside_fragmented_message_1002():
    events, out = check_all_splits(cf(1, b"frag", fin=False) + cf(1, b"ment"))
    assert fail_code(events, out) == 1002


def test_5_empty_fragments():
    events, _ = check_all_splits(cf(1, b"", fin=False) + cf(0, b"", fin=False) + cf(0, b""))
    assert events == [TextMessage("")]


# --- 6. UTF-8 ---------------------------------------------------------------------------------

VALID_UTF8 = ["", "Hello-µ@ßöäüàá-UTF-8!!", "κόσμε", "\U0010ffff", "\ud7ff\ue000\ufffd",
              "\x00\x7f\x80\u07ff\u0800\uffff\U00010000"]

INVALID_UTF8 = [
    b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80\x65\x64\x69\x74\x65\x64",  # 6.3.1 surrogate
    b"\x80", b"\xbf", b"\x80\xbf",  # lone continuation bytes
    b"\xc0\xaf", b"\xe0\x80\xaf", b"\xf0\x80\x80\xaf",  # overlong "/"
    b"\xc1\xbf", b"\xe0\x9f\xbf", b"\xf0\x8f\xbf\xbf",  # maximal overlongs
    b"\xed\xa0\x80", b"\xed\xbf\xbf", b"\xed\xa0\x80\xed\xb0\x80",  # surrogates
    b"\xf4\x90\x80\x80", b"\xf5\x80\x80\x80", b"\xf8\x88\x80\x80\x80", b"\xfc\x84\x80\x80\x80\x80",
    b"\xfe", b"\xff", b"\xfe\xfe\xff\xff",
    b"\xc2", b"\xe0\xa0", b"\xf0\x90\x80",  # truncated at message end
    b"\xc2\x41", b"\xe1\x80\x41",  # continuation missing mid-message
]


@pytest.mark.parametrize("text", VALID_UTF8)
def test_6_valid_utf8_every_fragment_split(text):
    raw = text.encode("utf-8")
    for i in range(len(raw) + 1):
        data = cf(1, raw[:i], fin=False) + cf(0, raw[i:])
        events, out, _ = run(data)
        assert events == [TextMessage(text)] and out == b"", i


@pytest.mark.parametrize("raw", INVALID_UTF8)
def test_6_invalid_utf8_1007_every_fragment_split(raw):
    events, out, _ = run(cf(1, raw))
    assert fail_code(events, out) == 1007
    for i in range(len(raw) + 1):
        events, out, _ = run(cf(1, raw[:i], fin=False) + cf(0, raw[i:]))
        assert fail_code(events, out) == 1007, i
    # byte-per-frame fragmentation (Autobahn 6.2.4 style)
    data = b"".join(cf(1 if i == 0 else 0, raw[i:i + 1], fin=(i == len(raw) - 1))
                    for i in range(len(raw)))
    assert fail_code(*run(data)[:2]) == 1007


@pytest.mark.parametrize("prefix", [b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xf4\x90",
                                    b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0",
                                    b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xe0\x80",
                                    b"\xce\xba\xc0"])
def test_6_4_fail_fast_before_message_end(prefix):
    # 6.4.x: the invalid prefix arrives in a non-final fragment, and within a partially received
    # frame: the connection fails right then, without waiting for the rest.
    events, out, _ = run(cf(1, prefix, fin=False))
    assert fail_code(events, out) == 1007
    frame = cf(1, prefix + b"edited" * 100)
    events, out, _ = run(frame[:6 + 2 + len(prefix)])  # header (2 + 2 ext + 4 mask) + prefix
    assert fail_code(events, out) == 1007


def test_6_valid_prefix_waits():
    events, out, _ = run(cf(1, b"\xce\xba\xe1\xbd", fin=False))
    assert events == [] and out == b""


def test_binary_is_not_utf8_checked():
    assert run(cf(2, b"\xff\xfe"))[0] == [BinaryMessage(b"\xff\xfe")]


# --- 7. close handling ------------------------------------------------------------------------

VALID_CODES = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999]
INVALID_CODES = [0, 999, 1004, 1005, 1006, 1012, 1013, 1014, 1015, 1016, 1100, 2000, 2999, 5000,
                 65535]


def test_7_1_1_close_echo_and_state():
    events, out = check_all_splits(cf(8, close_payload(1000, b"bye")))
    assert events == [CloseReceived(1000, "bye")]
    assert out == b"\x88\x02\x03\xe8"


def test_7_1_empty_close_answered_1000():
    events, out = check_all_splits(cf(8))
    assert events == [CloseReceived(1005, "")]
    assert out == sf(8, close_payload(1000))


def test_7_1_nothing_after_close():
    data = cf(8, close_payload(1000)) + cf(1, b"ignored") + cf(9, b"ignored")
    events, out, conn = run(data)
    assert events == [CloseReceived(1000, "")] and out == sf(8, close_payload(1000))
    assert conn.closed
    conn.receive_data(cf(1, b"later"))
    assert list(conn.events()) == [] and conn.data_to_send() == b""


def test_7_3_1_byte_close_payload_1002():
    assert fail_code(*run(cf(8, b"\x03"))[:2]) == 1002


def test_7_3_max_reason():
    reason = b"r" * 123
    events, _ = check_all_splits(cf(8, close_payload(1000, reason)))
    assert events == [CloseReceived(1000, "r" * 123)]
    assert fail_code(*run(cf(8, close_payload(1000, reason + b"r")))[:2]) == 1002


def test_7_5_invalid_utf8_reason_1007():
    assert fail_code(*run(cf(8, close_payload(1000, b"\xce\xba\xe1\xbd\xb9\xcf\x83\xed\xa0\x80")))[:2]) == 1007


@pytest.mark.parametrize("code", VALID_CODES)
def test_7_7_valid_codes_echoed(code):
    events, out, _ = run(cf(8, close_payload(code)))
    assert events == [CloseReceived(code, "")]
    assert out == sf(8, close_payload(code))
    assert valid_close_code(code)


@pytest.mark.parametrize("code", INVALID_CODES)
def test_7_9_invalid_codes_1002(code):
    events, out, _ = run(cf(8, close_payload(code)))
    assert fail_code(events, out) == 1002
    assert not valid_close_code(code)


def test_7_server_initiated_close():
    conn = WebSocketConnection()
    assert conn.send_close(1001, "going") == b"\x88\x07\x03\xe9going"
    assert conn.state is ConnectionState.CLOSE_SENT
    # messages still arriving are delivered; pings are no longer answered (close already sent)
    conn.receive_data(cf(1, b"late") + cf(9, b"p") + cf(8, close_payload(1001)))
    assert list(conn.events()) == [TextMessage("late"), Ping(b"p"), CloseReceived(1001, "")]
    assert conn.data_to_send() == b""
    assert conn.closed


def test_7_close_reason_trimmed_to_valid_utf8():
    frame = WebSocketConnection().send_close(1000, "é" * 100)
    assert len(frame) == 2 + 2 + 122
    frame[4:].decode("utf-8")


def test_eof_without_close():
    conn = WebSocketConnection()
    conn.receive_data(cf(1, b"part")[:5])
    conn.receive_data(b"")
    assert list(conn.events()) == []
    assert conn.closed and conn.close_code == 1006


# --- 9. limits --------------------------------------------------------------------------------


def test_9_frame_too_big_from_header():
    lim = WsLimits(max_message_size=1000, max_frame_payload=1000)
    header_only = cf(2, b"x" * 1001)[:8]
    events, out, _ = run(header_only, limits=lim)
    assert fail_code(events, out) == 1009
    assert run(cf(2, b"x" * 1000), limits=lim)[0] == [BinaryMessage(b"x" * 1000)]


def test_9_message_too_big_across_fragments():
    lim = WsLimits(max_message_size=1000, max_frame_payload=1000)
    data = cf(1, b"x" * 600, fin=False) + cf(0, b"x" * 401)[:8]
    assert fail_code(*run(data, limits=lim)[:2]) == 1009
    data = cf(1, b"x" * 600, fin=False) + cf(0, b"x" * 400)
    assert run(data, limits=lim)[0] == [TextMessage("x" * 1000)]


def test_9_default_limit_one_mib():
    events, out, _ = run(cf(2, b"x" * (1024 * 1024 + 1))[:14])
    assert fail_code(events, out) == 1009
    assert run(cf(2, b"x" * (1024 * 1024)))[0] == [BinaryMessage(b"x" * (1024 * 1024))]


# --- 12/13. permessage-deflate ----------------------------------------------------------------


def client_deflate(messages: list[bytes], wbits: int = 15, takeover: bool = True) -> list[bytes]:
    """Compress like an RFC 7692 client: sync flush, tail stripped, context kept or reset."""
    out = []
    c = zlib.compressobj(6, zlib.DEFLATED, -wbits)
    for m in messages:
        if not takeover:
            c = zlib.compressobj(6, zlib.DEFLATED, -wbits)
        data = c.compress(m) + c.flush(zlib.Z_SYNC_FLUSH)
        assert data.endswith(b"\x00\x00\xff\xff")
        out.append(data[:-4])
    return out


def server_inflate(frames: bytes, takeover: bool = True) -> list[tuple[int, bytes]]:
    """Parse server frames (unmasked) and inflate compressed ones like a client would."""
    msgs = []
    d = zlib.decompressobj(-15)
    pos = 0
    while pos < len(frames):
        b0, b1 = frames[pos], frames[pos + 1]
        n, pos = b1 & 0x7F, pos + 2
        if n == 126:
            n, pos = int.from_bytes(frames[pos:pos + 2], "big"), pos + 2
        elif n == 127:
            n, pos = int.from_bytes(frames[pos:pos + 8], "big"), pos + 8
        payload, pos = frames[pos:pos + n], pos + n
        if b0 & 0x40:
            if not takeover:
                d = zlib.decompressobj(-15)
            payload = d.decompress(payload + b"\x00\x00\xff\xff")
        msgs.append((b0 & 0x0F, payload))
    return msgs


MSGS = [b"Hello, hello, hello!", b"", b"Hello, hello, hello! again", bytes(range(256)) * 20,
        "κόσμε κόσμε".encode()]


@pytest.mark.parametrize("takeover", [True, False])
@pytest.mark.parametrize("wbits", [9, 12, 15])
def test_12_deflate_receive_round_trip(takeover, wbits):
    params = DeflateParams(client_no_context_takeover=not takeover, client_max_window_bits=wbits)
    frames = b"".join(cf(2, p, rsv1=True) for p in client_deflate(MSGS, wbits, takeover))
    events, out, _ = run(frames, deflate=params)
    assert events == [BinaryMessage(m) for m in MSGS] and out == b""


def test_12_deflate_client_max_window_8_receivable():
    params = DeflateParams(client_max_window_bits=8)
    # zlib cannot compress with an 8-bit raw window; a 9-bit stream that only references the last
    # 256 bytes is what an 8-bit client produces. Short messages stay within that.
    frames = b"".join(cf(1, p, rsv1=True) for p in client_deflate([b"abcabcabc", b"abc"], 9))
    assert run(frames, deflate=params)[0] == [TextMessage("abcabcabc"), TextMessage("abc")]


def test_12_deflate_splits_and_fragments():
    params = DeflateParams()
    [p1, p2] = client_deflate([b"fragmented and compressed " * 4, b"second"])
    data = cf(1, p1[:7], fin=False, rsv1=True) + cf(9, b"x") + cf(0, p1[7:]) + cf(1, p2, rsv1=True)
    events, out = check_all_splits(data, deflate=params)
    assert events == [Ping(b"x"), TextMessage("fragmented and compressed " * 4), TextMessage("second")]
    assert out == sf(10, b"x")


def test_12_bfinal_messages():
    # RFC 7692 §7.2.3.4: a message may end with a BFINAL block (Z_FINISH, no tail to strip).
    def finished(m: bytes) -> bytes:
        c = zlib.compressobj(6, zlib.DEFLATED, -15)
        return c.compress(m) + c.flush(zlib.Z_FINISH)

    frames = cf(1, finished(b"one one one"), rsv1=True) + cf(1, finished(b"two"), rsv1=True)
    events, out = check_all_splits(frames, deflate=DeflateParams())
    assert events == [TextMessage("one one one"), TextMessage("two")] and out == b""


def test_12_uncompressed_message_with_deflate_negotiated():
    events, _, _ = run(cf(1, b"plain"), deflate=DeflateParams())
    assert events == [TextMessage("plain")]


def test_12_rsv1_on_continuation_1002():
    [p] = client_deflate([b"hello hello"])
    data = cf(1, p[:3], fin=False, rsv1=True) + cf(0, p[3:], rsv1=True)
    assert fail_code(*run(data, deflate=DeflateParams())[:2]) == 1002


def test_12_rsv1_on_control_1002():
    assert fail_code(*run(cf(9, b"x", rsv1=True), deflate=DeflateParams())[:2]) == 1002


def test_12_rsv1_without_negotiation_1002():
    [p] = client_deflate([b"hello"])
    assert fail_code(*run(cf(1, p, rsv1=True))[:2]) == 1002


def test_12_invalid_deflate_data_1007():
    assert fail_code(*run(cf(2, b"\xff\xff\xff\xff", rsv1=True), deflate=DeflateParams())[:2]) == 1007


def test_12_compressed_invalid_utf8_1007():
    [p] = client_deflate([b"\xce\xba\xed\xa0\x80"])
    assert fail_code(*run(cf(1, p, rsv1=True), deflate=DeflateParams())[:2]) == 1007


def test_13_zip_bomb_limited_on_decompressed_size():
    lim = WsLimits(max_message_size=100_000, max_frame_payload=200_000)
    [p] = client_deflate([b"\x00" * 50_000_000])
    assert len(p) < 100_000
    events, out, _ = run(cf(2, p, rsv1=True), deflate=DeflateParams(), limits=lim)
    assert fail_code(events, out) == 1009
    [p] = client_deflate([b"\x00" * 100_000])
    assert run(cf(2, p, rsv1=True), deflate=DeflateParams(), limits=lim)[0] == [BinaryMessage(b"\x00" * 100_000)]


@pytest.mark.parametrize("takeover", [True, False])
@pytest.mark.parametrize("wbits", [9, 11, 15])
def test_13_deflate_send_round_trip(takeover, wbits):
    conn = WebSocketConnection(DeflateParams(server_no_context_takeover=not takeover,
                                             server_max_window_bits=wbits))
    frames = b"".join(conn.send_binary(m) for m in MSGS) + conn.send_text("κόσμε")
    got = server_inflate(frames, takeover)
    assert got == [(2, m) for m in MSGS] + [(1, "κόσμε".encode())]
    assert conn.send_binary(MSGS[0])[0] == 0xC2  # FIN + RSV1 + binary
    assert conn.send_ping(b"p") == b"\x89\x01p"  # control frames never compressed


def test_13_context_takeover_shrinks_repeats():
    msg = b"a fairly repetitive message body, a fairly repetitive message body" * 2
    keep = WebSocketConnection(DeflateParams())
    reset = WebSocketConnection(DeflateParams(server_no_context_takeover=True))
    keep.send_binary(msg)
    reset.send_binary(msg)
    assert len(keep.send_binary(msg)) < len(reset.send_binary(msg))


def test_13_empty_compressed_message_bytes():
    conn = WebSocketConnection(DeflateParams())
    f = conn.send_text("")
    assert f[0] == 0xC1 and server_inflate(f) == [(1, b"")]


def test_13_window_8_sends_uncompressed():
    conn = WebSocketConnection(DeflateParams(server_max_window_bits=8, compress=False))
    assert conn.send_text("hi") == b"\x81\x02hi"


def test_idle_connection_holds_no_zlib_or_decoder_state():
    """Memory per idle socket: zlib contexts and the UTF-8 decoder exist only while needed."""
    conn = WebSocketConnection(DeflateParams(server_no_context_takeover=True,
                                             client_no_context_takeover=True))
    assert not hasattr(conn, "__dict__")
    [p] = client_deflate([b"hello hello hello"], takeover=False)
    conn.receive_data(cf(1, p, rsv1=True))
    assert list(conn.events()) == [TextMessage("hello hello hello")]
    conn.send_text("hello back, hello back")
    assert conn._inflater is None and conn._deflater is None and conn._utf8 is None
    keep = WebSocketConnection(DeflateParams())  # context takeover: the compressor must stay
    keep.send_text("x" * 10)
    assert keep._deflater is not None
