"""WebSocket protocol core (RFC 6455, server role) with permessage-deflate (RFC 7692), sans-I/O.

Two halves, both pure:

* the opening handshake: :func:`check_handshake` validates an upgrade request's headers and
  returns a :class:`HandshakeResult` with the ``101`` response headers, or raises
  :class:`HandshakeError` carrying the HTTP status to answer with (400, 403, 426);
* the framing layer: a :class:`WebSocketConnection` is fed bytes with
  :meth:`~WebSocketConnection.receive_data` and yields small frozen events from
  :meth:`~WebSocketConnection.events` (:class:`TextMessage`, :class:`BinaryMessage`,
  :class:`Ping`, :class:`Pong`, :class:`CloseReceived`, :class:`ProtocolFailure`). Outgoing frames
  are built by ``send_*`` methods, which return the bytes to write.

**Automatic replies.** The connection answers by itself where RFC 6455 leaves no choice: a pong
for every ping (§5.5.2), the close echo for a received close (§5.5.1) and the close frame that
fails the connection on a protocol error (§7.1.7). Those bytes are queued; the caller collects
them with :meth:`~WebSocketConnection.data_to_send` after draining :meth:`events` and writes them
(before anything it sends itself). :class:`Ping` and :class:`Pong` events are informational.

The module reads no clock and does no I/O: ping intervals and close timeouts belong to the
asyncio layer (``ws_asyncio.py``). Section numbers below are RFC 6455 unless marked RFC 7692.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import enum
import hashlib
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "GUID", "accept_key", "check_handshake", "HandshakeResult", "HandshakeError",
    "DeflateParams", "DeflateOptions", "WsLimits", "WebSocketConnection", "ConnectionState",
    "TextMessage", "BinaryMessage", "Ping", "Pong", "CloseReceived", "ProtocolFailure",
    "WebSocketError", "LocalProtocolError", "CloseCode", "MAX_MESSAGE_SIZE", "MAX_FRAME_PAYLOAD",
    "encode_frame", "valid_close_code", "negotiate_deflate", "Event",
]

#: §1.3: the fixed GUID concatenated with the client's key.
GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

#: Largest message (after decompression) a client may send. features.md / websocket.md §1.2:
#: 1 MiB, the same bound ironflow-py's client applies to us. Beyond it: close 1009.
MAX_MESSAGE_SIZE = 1024 * 1024
#: Largest single frame payload. A deflated frame of incompressible data is a little larger than
#: its content, hence the slack over the message limit. Beyond it: close 1009.
MAX_FRAME_PAYLOAD = MAX_MESSAGE_SIZE + 4096
#: §5.5: control frame payloads are at most 125 bytes.
MAX_CONTROL_PAYLOAD = 125
#: §5.5.1: a close reason must fit a control frame after the 2-byte code.
MAX_CLOSE_REASON = 123


class CloseCode(enum.IntEnum):
    """§7.4.1 status codes used by this server."""

    NORMAL = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    UNSUPPORTED_DATA = 1003
    NO_STATUS = 1005  # never on the wire: "close frame had no payload"
    ABNORMAL = 1006  # never on the wire: "connection dropped without a close frame"
    INVALID_DATA = 1007
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    MANDATORY_EXTENSION = 1010
    INTERNAL_ERROR = 1011


def valid_close_code(code: int) -> bool:
    """§7.4.1/§7.4.2: codes a peer may put in a close frame. 1004-1006 and 1015 are reserved
    (never sent), 1012-2999 are unassigned or reserved for extensions; 3000-4999 are for
    libraries and applications."""
    return 1000 <= code <= 1003 or 1007 <= code <= 1011 or 3000 <= code <= 4999


# --- errors -----------------------------------------------------------------------------------


class HandshakeError(Exception):
    """The upgrade request is refused. ``status`` is the HTTP answer (400, 403, 426) and
    ``headers`` any header it must carry (426 -> ``Sec-WebSocket-Version: 13``)."""

    def __init__(self, status: int, message: str,
                 headers: list[tuple[str, str]] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or []


class WebSocketError(Exception):
    """The peer broke the protocol. ``code`` is the close code to fail the connection with."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"{code} {reason}")
        self.code = code
        self.reason = reason


class LocalProtocolError(Exception):
    """Our own caller misused the connection (sending after close, oversized control frame)."""


# --- events -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TextMessage:
    data: str


@dataclass(frozen=True, slots=True)
class BinaryMessage:
    data: bytes


@dataclass(frozen=True, slots=True)
class Ping:
    """A ping arrived; its pong is already queued (see :meth:`WebSocketConnection.data_to_send`)."""

    payload: bytes


@dataclass(frozen=True, slots=True)
class Pong:
    payload: bytes


@dataclass(frozen=True, slots=True)
class CloseReceived:
    """The peer's close frame. ``code`` is 1005 when the frame had no payload. Our echo is queued
    unless we had sent a close already. Nothing more comes from this connection."""

    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class ProtocolFailure:
    """The peer broke the protocol; a close frame with ``code`` is queued and the connection
    parses nothing more (§7.1.7 "fail the WebSocket connection"). Close the TCP connection
    after writing :meth:`WebSocketConnection.data_to_send`."""

    code: int
    reason: str


Event = TextMessage | BinaryMessage | Ping | Pong | CloseReceived | ProtocolFailure


# --- handshake --------------------------------------------------------------------------------


def accept_key(sec_websocket_key: str) -> str:
    """§4.2.2 item 5.4: base64(SHA-1(key + GUID))."""
    digest = hashlib.sha1((sec_websocket_key.strip() + GUID).encode("ascii")).digest()
    return base64.b64encode(digest).decode("ascii")


@dataclass(frozen=True)
class DeflateOptions:
    """What the server is willing to accept for permessage-deflate (RFC 7692 §7)."""

    #: Reset our compressor after every message even when the client does not ask for it
    #: (saves memory per connection, costs ratio).
    server_no_context_takeover: bool = False
    #: Ask the client to reset its compressor per message (only honoured when it offered it).
    client_no_context_takeover: bool = False
    #: Largest LZ77 window we compress with (9-15; zlib cannot compress with 8).
    server_max_window_bits: int = 15
    #: Window we ask the client to limit itself to, when it signalled it can (8-15).
    client_max_window_bits: int = 15
    #: zlib compression level for outgoing messages.
    compress_level: int = 6
    #: Messages shorter than this are sent uncompressed (RFC 7692 §6: per-message choice).
    min_compress_size: int = 0


@dataclass(frozen=True)
class DeflateParams:
    """The negotiated permessage-deflate parameters of one connection."""

    server_no_context_takeover: bool = False
    client_no_context_takeover: bool = False
    server_max_window_bits: int = 15
    client_max_window_bits: int = 15
    #: False when the client asked for a window zlib cannot produce (8): we then accept the
    #: extension but send every message uncompressed (RSV1 clear), which RFC 7692 §6 allows.
    compress: bool = True
    compress_level: int = 6
    min_compress_size: int = 0

    def header_value(self, offered: dict[str, str | None]) -> str:
        parts = ["permessage-deflate"]
        if self.server_no_context_takeover:
            parts.append("server_no_context_takeover")
        if self.client_no_context_takeover:
            parts.append("client_no_context_takeover")
        if "server_max_window_bits" in offered or self.server_max_window_bits < 15:
            parts.append(f"server_max_window_bits={self.server_max_window_bits}")
        if "client_max_window_bits" in offered and self.client_max_window_bits < 15:
            parts.append(f"client_max_window_bits={self.client_max_window_bits}")
        return "; ".join(parts)


@dataclass(frozen=True)
class HandshakeResult:
    """A valid upgrade request: the 101 response headers and what was negotiated."""

    headers: list[tuple[str, str]]
    accept: str
    subprotocol: str | None = None
    deflate: DeflateParams | None = None


def _header_values(headers: Sequence[tuple[str, str]] | Mapping[str, str], name: str) -> list[str]:
    items = headers.items() if isinstance(headers, Mapping) else headers
    return [v for k, v in items if k.lower() == name]


def _tokens(values: list[str]) -> list[str]:
    return [p.strip().lower() for v in values for p in v.split(",") if p.strip()]


def _parse_extensions(values: list[str]) -> list[tuple[str, list[tuple[str, str | None]]]]:
    """RFC 6455 §9.1 Sec-WebSocket-Extensions grammar, leniently: a list of offers, each an
    extension token and ``;``-separated params (``name`` or ``name=value``, value maybe quoted).
    Raises ValueError on garbage (the caller answers 400)."""
    offers: list[tuple[str, list[tuple[str, str | None]]]] = []
    for value in values:
        for offer in _split_outside_quotes(value, ","):
            offer = offer.strip()
            if not offer:
                continue
            parts = _split_outside_quotes(offer, ";")
            name = parts[0].strip().lower()
            if not name:
                raise ValueError("empty extension name")
            params: list[tuple[str, str | None]] = []
            for p in parts[1:]:
                p = p.strip()
                if not p:
                    raise ValueError("empty extension parameter")
                if "=" in p:
                    k, _, v = p.partition("=")
                    v = v.strip()
                    if len(v) >= 2 and v[0] == v[-1] == '"':
                        v = v[1:-1]
                    params.append((k.strip().lower(), v))
                else:
                    params.append((p.lower(), None))
            offers.append((name, params))
    return offers


def _split_outside_quotes(s: str, sep: str) -> list[str]:
    out, cur, quoted = [], [], False
    for ch in s:
        if ch == '"':
            quoted = not quoted
        if ch == sep and not quoted:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    out.append("".join(cur))
    return out


def _window_bits(value: str | None) -> int | None:
    """RFC 7692 §7.1.2: 1*DIGIT in 8..15 without leading zero. None = invalid."""
    if value is None or not value.isdigit() or value.startswith("0"):
        return None
    bits = int(value)
    return bits if 8 <= bits <= 15 else None


def negotiate_deflate(params: list[tuple[str, str | None]],
                      options: DeflateOptions) -> tuple[DeflateParams, dict[str, str | None]] | None:
    """Accept one permessage-deflate offer, or None to decline it (unknown, repeated or invalid
    parameter: RFC 7692 §5.1 says such an offer must not be accepted)."""
    seen: dict[str, str | None] = {}
    for k, v in params:
        if k in seen:
            return None
        seen[k] = v
    snct = cnct = False
    smwb = options.server_max_window_bits
    cmwb = 15
    for k, v in seen.items():
        if k == "server_no_context_takeover":
            if v is not None:
                return None
            snct = True
        elif k == "client_no_context_takeover":
            if v is not None:
                return None
            cnct = True
        elif k == "server_max_window_bits":
            bits = _window_bits(v)
            if bits is None:
                return None
            smwb = min(smwb, bits)
        elif k == "client_max_window_bits":
            if v is None:  # §7.1.2.2: the client can limit its window if we ask
                cmwb = options.client_max_window_bits
            else:
                bits = _window_bits(v)
                if bits is None:
                    return None
                cmwb = min(bits, options.client_max_window_bits)
        else:
            return None
    snct = snct or options.server_no_context_takeover
    # We can only ask the client to drop context when it offered to (§7.1.1.2 lets the server
    # add it anyway, but a strict client may then fail; keep to what was offered or configured).
    cnct = cnct or options.client_no_context_takeover
    compress = smwb >= 9  # zlib rejects an 8-bit window for raw deflate
    return (DeflateParams(snct, cnct, smwb, cmwb, compress, options.compress_level,
                          options.min_compress_size), seen)


def check_handshake(headers: Sequence[tuple[str, str]] | Mapping[str, str], method: str = "GET", *,
                    select_subprotocol: Callable[[list[str]], str | None] | None = None,
                    check_origin: Callable[[str | None], bool] | None = None,
                    deflate: DeflateOptions | None = None) -> HandshakeResult:
    """Validate a client's opening handshake (§4.2.1) and build the 101 answer (§4.2.2).

    ``select_subprotocol`` gets the offered Sec-WebSocket-Protocol list and returns the chosen
    one or None (no header in the answer). ``check_origin`` gets the Origin header (None when
    absent); False -> 403. ``deflate`` enables permessage-deflate negotiation (None = never).
    """
    if method != "GET":
        raise HandshakeError(400, "WebSocket upgrade requires GET")
    if "websocket" not in _tokens(_header_values(headers, "upgrade")):
        raise HandshakeError(400, "missing or invalid Upgrade: websocket header")
    if "upgrade" not in _tokens(_header_values(headers, "connection")):
        raise HandshakeError(400, "Connection header must contain Upgrade")
    versions = _header_values(headers, "sec-websocket-version")
    if len(versions) != 1 or versions[0].strip() != "13":
        # §4.2.2 item 4 / §4.4: tell the client which version we speak.
        raise HandshakeError(426, "unsupported Sec-WebSocket-Version (only 13)",
                             [("Sec-WebSocket-Version", "13")])
    keys = _header_values(headers, "sec-websocket-key")
    if len(keys) != 1:
        raise HandshakeError(400, "exactly one Sec-WebSocket-Key header is required")
    key = keys[0].strip()
    try:
        raw = base64.b64decode(key.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raw = b""
    if len(raw) != 16:  # §4.1 item 7: base64 of a 16-byte nonce
        raise HandshakeError(400, "Sec-WebSocket-Key must be base64 of 16 bytes")
    if check_origin is not None:
        origins = _header_values(headers, "origin")
        if not check_origin(origins[0].strip() if origins else None):
            raise HandshakeError(403, "origin not allowed")
    accept = accept_key(key)
    out = [("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Accept", accept)]
    subprotocol = None
    if select_subprotocol is not None:
        offered = [p.strip() for v in _header_values(headers, "sec-websocket-protocol")
                   for p in v.split(",") if p.strip()]
        if offered:
            subprotocol = select_subprotocol(offered)
            if subprotocol is not None:
                if subprotocol not in offered:
                    raise ValueError("select_subprotocol returned a protocol the client did not offer")
                out.append(("Sec-WebSocket-Protocol", subprotocol))
    negotiated = None
    if deflate is not None:
        try:
            offers = _parse_extensions(_header_values(headers, "sec-websocket-extensions"))
        except ValueError as e:
            raise HandshakeError(400, f"malformed Sec-WebSocket-Extensions: {e}") from None
        for name, params in offers:
            if name != "permessage-deflate":
                continue  # unknown extensions are declined by omission (§9.1)
            got = negotiate_deflate(params, deflate)
            if got is not None:
                negotiated, offered_params = got
                out.append(("Sec-WebSocket-Extensions", negotiated.header_value(offered_params)))
                break
    return HandshakeResult(out, accept, subprotocol, negotiated)


# --- framing ----------------------------------------------------------------------------------

OP_CONT, OP_TEXT, OP_BINARY = 0x0, 0x1, 0x2
OP_CLOSE, OP_PING, OP_PONG = 0x8, 0x9, 0xA
_DATA_OPS = frozenset({OP_CONT, OP_TEXT, OP_BINARY})
_CONTROL_OPS = frozenset({OP_CLOSE, OP_PING, OP_PONG})
_SYNC_TAIL = b"\x00\x00\xff\xff"  # RFC 7692 §7.2.1: stripped by senders, re-appended here


@dataclass(frozen=True)
class WsLimits:
    """Receive limits; each is checked from the frame header, before payload is buffered."""

    max_message_size: int = MAX_MESSAGE_SIZE
    max_frame_payload: int = MAX_FRAME_PAYLOAD


_DEFAULT_LIMITS = WsLimits()


class ConnectionState(enum.Enum):
    OPEN = "open"
    #: We sent a close frame and wait for the peer's.
    CLOSE_SENT = "close_sent"
    #: The peer's close arrived (and was answered); nothing more is parsed.
    CLOSED = "closed"
    #: Protocol failure or EOF: nothing more is parsed.
    FAILED = "failed"


def encode_frame(opcode: int, payload: bytes, fin: bool = True, rsv1: bool = False,
                 mask: bytes | None = None) -> bytes:
    """One frame (§5.2). Servers send unmasked frames; ``mask`` exists for client-role tests."""
    b0 = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    n = len(payload)
    mbit = 0x80 if mask is not None else 0
    if n < 126:
        head = bytes((b0, mbit | n))
    elif n < 65536:
        head = bytes((b0, mbit | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((b0, mbit | 127)) + n.to_bytes(8, "big")
    if mask is None:
        return head + payload
    return head + mask + _unmask(payload, mask, 0)


def _unmask(data: bytes | bytearray, mask: bytes, offset: int) -> bytes:
    """XOR with the 4-byte mask starting at key position ``offset`` (§5.3). One big-int XOR is
    the fastest pure-stdlib way for payloads of any size."""
    n = len(data)
    if n == 0:
        return b""
    r = offset & 3
    key = mask[r:] + mask[:r]
    stream = key * ((n >> 2) + 1)
    return (int.from_bytes(data, "little") ^ int.from_bytes(stream[:n], "little")).to_bytes(n, "little")


# UTF-8 second-byte ranges for lead bytes whose first continuation is restricted (RFC 3629 §4):
# catches overlongs (E0, F0), surrogates (ED) and code points above U+10FFFF (F4) as soon as the
# second byte arrives, which CPython's incremental decoder only reports at the sequence's end.
_SECOND_BYTE = {0xE0: (0xA0, 0xBF), 0xED: (0x80, 0x9F), 0xF0: (0x90, 0xBF), 0xF4: (0x80, 0x8F)}

_utf8_decoder = codecs.getincrementaldecoder("utf-8")

# parser states
_S_HEADER = 0
_S_PAYLOAD = 1


class WebSocketConnection:
    """One server-side WebSocket connection after the 101 (§5, §6, §7).

    Feed bytes with :meth:`receive_data` (``b""`` = the peer closed TCP), drain :meth:`events`,
    then write :meth:`data_to_send`. Build outgoing frames with ``send_*``.
    """

    # Slots and lazily made parts: a connection is mostly idle, and an idle one should cost a few
    # hundred bytes (the zlib contexts, ~300 KiB together, exist only while compressing).
    __slots__ = ("limits", "deflate", "state", "_buf", "_pos", "_pstate", "_out", "_events", "_eof",
                 "_fin", "_opcode", "_mask", "_remaining", "_frame_off", "_msg_op",
                 "_msg_compressed", "_msg_size", "_msg_wire", "_parts", "_utf8", "_inflater",
                 "_deflater", "close_code", "close_reason", "close_sent")

    def __init__(self, deflate: DeflateParams | None = None, limits: WsLimits | None = None) -> None:
        self.limits = limits or _DEFAULT_LIMITS
        self.deflate = deflate
        self.state = ConnectionState.OPEN
        self._buf = bytearray()
        self._pos = 0
        self._pstate = _S_HEADER
        self._out = bytearray()
        self._events: list[Event] = []
        self._eof = False
        # current frame
        self._fin = False
        self._opcode = 0
        self._mask = b""
        self._remaining = 0
        self._frame_off = 0
        # current data message: its pieces (str for text, bytes for binary) while it arrives
        self._msg_op: int | None = None
        self._msg_compressed = False
        self._msg_size = 0  # decompressed bytes so far
        self._msg_wire = 0  # bytes on the wire so far (compressed or not)
        self._parts: list[Any] = []
        self._utf8: codecs.IncrementalDecoder | None = None  # only while a text message arrives
        self._inflater: Any = None
        self._deflater: Any = None
        self.close_code: int | None = None
        self.close_reason = ""
        self.close_sent = False

    # -- input -----------------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Add bytes from the peer; ``b""`` means the TCP stream ended."""
        if not data:
            self._eof = True
            return
        if self.state in (ConnectionState.CLOSED, ConnectionState.FAILED):
            return  # §5.5.1: nothing after the close frame counts
        self._buf += data

    def events(self) -> Iterator[Event]:
        """Yield every event the buffered bytes make up. Resumable after any split."""
        while True:
            if self._events:
                yield self._events.pop(0)
                continue
            if self.state in (ConnectionState.CLOSED, ConnectionState.FAILED):
                return
            try:
                progressed = self._step()
            except WebSocketError as e:
                self._fail(e.code, e.reason)
                continue
            if not progressed:
                if self._eof:
                    # §7.1.5: TCP closed without a close frame: 1006, nothing to send.
                    self.state = ConnectionState.FAILED
                    self.close_code = self.close_code or CloseCode.ABNORMAL
                self._compact()
                return

    def data_to_send(self) -> bytes:
        """Bytes the connection queued by itself (pongs, close echo, failure close)."""
        out = bytes(self._out)
        self._out.clear()
        return out

    @property
    def closed(self) -> bool:
        """True once no further frames will be parsed or may be sent."""
        return self.state in (ConnectionState.CLOSED, ConnectionState.FAILED)

    def _compact(self) -> None:
        if self._pos:
            if self._pos >= len(self._buf):
                self._buf.clear()
            else:
                del self._buf[:self._pos]
            self._pos = 0

    def _fail(self, code: int, reason: str) -> None:
        if not self.close_sent:
            self._out += self._close_frame(code, reason)
            self.close_sent = True
        self.state = ConnectionState.FAILED
        self.close_code = code
        self.close_reason = reason
        self._buf.clear()
        self._pos = 0
        self._events.append(ProtocolFailure(code, reason))

    def _step(self) -> bool:
        if self._pstate == _S_HEADER:
            return self._parse_header()
        return self._parse_payload()

    def _parse_header(self) -> bool:
        buf, pos = self._buf, self._pos
        avail = len(buf) - pos
        if avail < 2:
            return False
        b0, b1 = buf[pos], buf[pos + 1]
        fin = bool(b0 & 0x80)
        rsv = b0 & 0x70
        opcode = b0 & 0x0F
        masked = bool(b1 & 0x80)
        n = b1 & 0x7F
        # Validate what the first two bytes tell before waiting for the rest (fail fast).
        if opcode not in _DATA_OPS and opcode not in _CONTROL_OPS:
            raise WebSocketError(CloseCode.PROTOCOL_ERROR, f"reserved opcode {opcode:#x}")  # §5.2
        if not masked:
            raise WebSocketError(CloseCode.PROTOCOL_ERROR, "client frames must be masked")  # §5.1
        compressed = False
        if rsv:
            # §5.2: RSV bits only with an extension that defines them; RFC 7692 §6: RSV1 marks
            # the first frame of a compressed data message, nothing else.
            if rsv != 0x40 or self.deflate is None or opcode not in (OP_TEXT, OP_BINARY):
                raise WebSocketError(CloseCode.PROTOCOL_ERROR, "reserved bits set")
            compressed = True
        if opcode in _CONTROL_OPS:
            if not fin:
                raise WebSocketError(CloseCode.PROTOCOL_ERROR, "fragmented control frame")  # §5.5
            if n > MAX_CONTROL_PAYLOAD:
                raise WebSocketError(CloseCode.PROTOCOL_ERROR, "control frame payload > 125")
        elif opcode == OP_CONT:
            if self._msg_op is None:
                raise WebSocketError(CloseCode.PROTOCOL_ERROR, "continuation without a message")
        elif self._msg_op is not None:
            raise WebSocketError(CloseCode.PROTOCOL_ERROR, "new message inside a fragmented one")  # §5.4
        hlen = 2 + (2 if n == 126 else 8 if n == 127 else 0) + 4
        if avail < hlen:
            return False
        if n == 126:
            length = int.from_bytes(buf[pos + 2:pos + 4], "big")
            if length < 126:  # §5.2: "the minimal number of bytes MUST be used"
                raise WebSocketError(CloseCode.PROTOCOL_ERROR, "non-minimal length encoding")
        elif n == 127:
            length = int.from_bytes(buf[pos + 2:pos + 10], "big")
            if length >> 63:
                raise WebSocketError(CloseCode.PROTOCOL_ERROR, "64-bit length with MSB set")
            if length < 65536:
                raise WebSocketError(CloseCode.PROTOCOL_ERROR, "non-minimal length encoding")
        else:
            length = n
        lim = self.limits
        if opcode in _DATA_OPS:
            # Limits are checked from the header, before any payload is buffered.
            if length > lim.max_frame_payload:
                raise WebSocketError(CloseCode.MESSAGE_TOO_BIG, "frame too big")
            # Uncompressed: wire size is message size. Compressed: the decompressed size is
            # enforced while inflating; the wire size gets the frame slack for expansion.
            deflated = compressed or (opcode == OP_CONT and self._msg_compressed)
            wire_limit = lim.max_frame_payload if deflated else lim.max_message_size
            if self._msg_wire + length > wire_limit:
                raise WebSocketError(CloseCode.MESSAGE_TOO_BIG, "message too big")
        self._mask = bytes(buf[pos + hlen - 4:pos + hlen])
        self._pos = pos + hlen
        self._fin = fin
        self._opcode = opcode
        self._remaining = length
        self._frame_off = 0
        if opcode in (OP_TEXT, OP_BINARY):
            self._start_message(opcode, compressed)
        self._pstate = _S_PAYLOAD
        return True

    def _start_message(self, opcode: int, compressed: bool) -> None:
        self._msg_op = opcode
        self._msg_compressed = compressed
        self._msg_size = 0
        self._msg_wire = 0
        self._parts = []
        if opcode == OP_TEXT:
            self._utf8 = _utf8_decoder()
        if compressed:
            d = self.deflate
            assert d is not None
            if self._inflater is None or d.client_no_context_takeover:
                # A 15-bit window decodes any smaller window; fresh per message only when the
                # client promised not to reuse its context (RFC 7692 §7.1.1.2).
                self._inflater = zlib.decompressobj(-15)

    def _parse_payload(self) -> bool:
        buf = self._buf
        avail = len(buf) - self._pos
        opcode = self._opcode
        if opcode in _CONTROL_OPS:
            if avail < self._remaining:
                return False
            end = self._pos + self._remaining
            payload = _unmask(buf[self._pos:end], self._mask, 0)
            self._pos = end
            self._remaining = 0
            self._pstate = _S_HEADER
            self._control(opcode, payload)
            return True
        take = min(avail, self._remaining)
        if take == 0 and self._remaining:
            return False
        if take:
            chunk = _unmask(buf[self._pos:self._pos + take], self._mask, self._frame_off)
            self._pos += take
            self._frame_off += take
            self._remaining -= take
            self._msg_wire += take
            self._data(chunk)
        if self._remaining == 0:
            self._pstate = _S_HEADER
            if self._fin:
                self._finish_message()
        return True

    def _data(self, chunk: bytes) -> None:
        if self._msg_compressed:
            self._inflate(chunk)
        else:
            self._msg_size += len(chunk)
            self._deliver(chunk)

    def _inflate(self, chunk: bytes) -> None:
        """Decompress with the message limit applied to the *output* while inflating: a few
        kilobytes of deflate cannot expand into gigabytes here (zip bomb)."""
        d = self._inflater
        if d is None:  # the stream ended with a BFINAL block earlier in this message
            if chunk is not _SYNC_TAIL:
                raise WebSocketError(CloseCode.INVALID_DATA, "data after the final deflate block")
            return
        limit = self.limits.max_message_size
        data = chunk
        while data:
            room = limit - self._msg_size
            try:
                out = d.decompress(data, room + 1)
            except zlib.error:
                raise WebSocketError(CloseCode.INVALID_DATA, "invalid deflate data") from None
            self._msg_size += len(out)
            if self._msg_size > limit:
                raise WebSocketError(CloseCode.MESSAGE_TOO_BIG, "message too big")
            if out:
                self._deliver(out)
            data = d.unconsumed_tail
            if d.eof:
                # RFC 7692 §7.2.3.4: a sender may end a message with a BFINAL block. That ends
                # the raw deflate stream: only our re-appended 00 00 ff ff may follow, and the
                # next message starts a fresh stream.
                self._inflater = None
                if d.unused_data or data:
                    raise WebSocketError(CloseCode.INVALID_DATA, "data after the final deflate block")
                return

    def _deliver(self, piece: bytes) -> None:
        if self._msg_op == OP_TEXT:
            dec = self._utf8
            assert dec is not None
            try:
                text = dec.decode(piece, False)
            except UnicodeDecodeError:
                raise WebSocketError(CloseCode.INVALID_DATA, "invalid UTF-8 in text message") from None
            pending = dec.getstate()[0]
            if len(pending) >= 2:
                rng = _SECOND_BYTE.get(pending[0])
                if rng is not None and not (rng[0] <= pending[1] <= rng[1]):
                    raise WebSocketError(CloseCode.INVALID_DATA, "invalid UTF-8 in text message")
            if text:
                self._parts.append(text)
        else:
            self._parts.append(piece)

    def _finish_message(self) -> None:
        if self._msg_compressed:
            self._inflate(_SYNC_TAIL)
            if self.deflate is not None and self.deflate.client_no_context_takeover:
                self._inflater = None
        if self._msg_op == OP_TEXT:
            dec = self._utf8
            assert dec is not None
            try:
                tail = dec.decode(b"", True)
            except UnicodeDecodeError:
                raise WebSocketError(CloseCode.INVALID_DATA, "truncated UTF-8 in text message") from None
            if tail:
                self._parts.append(tail)
            ev: Event = TextMessage("".join(self._parts))
            self._utf8 = None  # made again by the next text message: idle sockets hold none
        else:
            ev = BinaryMessage(b"".join(self._parts))
        self._msg_op = None
        self._msg_compressed = False
        self._parts = []
        self._msg_size = self._msg_wire = 0
        self._events.append(ev)

    def _control(self, opcode: int, payload: bytes) -> None:
        if opcode == OP_PING:
            if not self.close_sent:
                self._out += encode_frame(OP_PONG, payload)  # §5.5.2: same payload
            self._events.append(Ping(payload))
        elif opcode == OP_PONG:
            self._events.append(Pong(payload))
        else:
            self._close_received(payload)

    def _close_received(self, payload: bytes) -> None:
        # §5.5.1 / §7.1.5: an empty payload means "no status" (1005); one byte is malformed.
        if len(payload) == 1:
            raise WebSocketError(CloseCode.PROTOCOL_ERROR, "close payload of one byte")
        if payload:
            code = int.from_bytes(payload[:2], "big")
            if not valid_close_code(code):
                raise WebSocketError(CloseCode.PROTOCOL_ERROR, f"invalid close code {code}")
            try:
                reason = payload[2:].decode("utf-8")
            except UnicodeDecodeError:
                raise WebSocketError(CloseCode.INVALID_DATA, "close reason is not UTF-8") from None
        else:
            code, reason = CloseCode.NO_STATUS, ""
        if not self.close_sent:
            # §5.5.1: answer with a close, echoing the status code.
            echo = code if code != CloseCode.NO_STATUS else CloseCode.NORMAL
            self._out += self._close_frame(echo, "")
            self.close_sent = True
        self.state = ConnectionState.CLOSED
        self.close_code = code
        self.close_reason = reason
        self._buf.clear()
        self._pos = 0
        self._events.append(CloseReceived(code, reason))

    # -- output ----------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self.close_sent:
            raise LocalProtocolError("cannot send after the close frame")

    def _message(self, opcode: int, payload: bytes) -> bytes:
        self._check_open()
        d = self.deflate
        if d is not None and d.compress and len(payload) >= d.min_compress_size:
            c = self._deflater
            if c is None:
                c = zlib.compressobj(d.compress_level, zlib.DEFLATED, -d.server_max_window_bits)
                # Without context takeover the compressor is dropped after each message: an
                # idle connection then holds no zlib state (~260 KiB at the default window).
                if not d.server_no_context_takeover:
                    self._deflater = c
            data = c.compress(payload) + c.flush(zlib.Z_SYNC_FLUSH)
            if data.endswith(_SYNC_TAIL):  # RFC 7692 §7.2.1: remove the tail
                data = data[:-4]
            if not data:
                data = b"\x00"  # §7.2.3.6: an empty deflate block for an empty message
            return encode_frame(opcode, data, rsv1=True)
        return encode_frame(opcode, payload)

    def send_text(self, text: str) -> bytes:
        return self._message(OP_TEXT, text.encode("utf-8"))

    def send_binary(self, data: bytes) -> bytes:
        return self._message(OP_BINARY, bytes(data))

    def send_ping(self, payload: bytes = b"") -> bytes:
        self._check_open()
        if len(payload) > MAX_CONTROL_PAYLOAD:
            raise LocalProtocolError("ping payload > 125 bytes")
        return encode_frame(OP_PING, bytes(payload))

    def send_pong(self, payload: bytes = b"") -> bytes:
        """An unsolicited pong (§5.5.3, a heartbeat). Replies to pings are automatic."""
        self._check_open()
        if len(payload) > MAX_CONTROL_PAYLOAD:
            raise LocalProtocolError("pong payload > 125 bytes")
        return encode_frame(OP_PONG, bytes(payload))

    def send_close(self, code: int = CloseCode.NORMAL, reason: str = "") -> bytes:
        """Start (or, after :class:`CloseReceived`, nothing: the echo was queued) the closing
        handshake. ``code`` 1005 sends a close without payload."""
        self._check_open()
        self.close_sent = True
        if self.state is ConnectionState.OPEN:
            self.state = ConnectionState.CLOSE_SENT
        return self._close_frame(code, reason)

    @staticmethod
    def _close_frame(code: int, reason: str) -> bytes:
        if code == CloseCode.NO_STATUS:
            return encode_frame(OP_CLOSE, b"")
        raw = reason.encode("utf-8")
        if len(raw) > MAX_CLOSE_REASON:
            # Trim on a character boundary: the reason must stay valid UTF-8.
            raw = raw[:MAX_CLOSE_REASON].decode("utf-8", "ignore").encode("utf-8")
        return encode_frame(OP_CLOSE, int(code).to_bytes(2, "big") + raw)
