"""HTTP/1.1 protocol core (sans-I/O), server role.

A :class:`RequestParser` is fed bytes with :meth:`RequestParser.feed` and hands back small frozen
events from :meth:`RequestParser.next_event`: a :class:`Request` head, :class:`Data` chunks of the
body, :class:`EndOfMessage`, or one of the sentinels :data:`NEED_DATA` (feed more bytes) and
:data:`PAUSED` (a message is complete; call :meth:`RequestParser.start_next_cycle` once its
response is written — pipelined bytes wait in the buffer, so responses go out in order).

Framing and syntax errors raise :class:`HttpError`, which carries the status to answer with
(400, 413, 414, 417, 431, 501, 505) or ``None`` when no answer is possible (the peer vanished
mid-message). After an ``HttpError`` the connection must be closed: the parser cannot know where
the next message starts.

The writer half is a handful of pure functions (:func:`response_head`, :func:`chunk`) that turn
responses into bytes. The module does no I/O and reads no clock; the asyncio layer
(``server.py``) owns sockets and timers.

References are to RFC 9112 (HTTP/1.1 message syntax) and RFC 9110 (semantics).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NamedTuple

__all__ = [
    "Limits", "Request", "Data", "EndOfMessage", "H2Preface", "HttpError", "RequestParser",
    "NEED_DATA", "PAUSED", "CLOSED", "response_head", "chunk", "LAST_CHUNK", "REASONS",
    "CONTINUE_100", "H2_GOAWAY", "validate_header", "InvalidHeader",
]


@dataclass(frozen=True)
class Limits:
    """Parser limits. Each is checked while bytes are buffered, never after the fact."""

    #: Whole request head (request line + header fields). Beyond it: 431 (RFC 6585 §5).
    max_head_bytes: int = 64 * 1024
    #: Request line alone. Beyond it: 414 URI Too Long (RFC 9112 §3 recommends >= 8000 octets).
    max_request_line: int = 8 * 1024
    #: Number of header fields. Guards the per-field bookkeeping cost. Beyond it: 431.
    max_headers: int = 128
    #: Request body (Content-Length or decoded chunked size). Beyond it: 413.
    max_body_bytes: int = 32 * 1024 * 1024
    #: One chunk-size line including extensions. A longer one is an attack, not a client: 400.
    max_chunk_line: int = 4096


class _Sentinel:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


#: Not enough bytes buffered to produce the next event.
NEED_DATA = _Sentinel("NEED_DATA")
#: The current request is complete; nothing more until :meth:`RequestParser.start_next_cycle`.
PAUSED = _Sentinel("PAUSED")
#: The peer closed the connection cleanly between two messages.
CLOSED = _Sentinel("CLOSED")


class Request(NamedTuple):
    """A parsed request head (immutable; a NamedTuple because it is built once per request).

    ``path`` is the raw (still percent-encoded) path of the target: routers must split it on
    ``/`` *before* decoding (rest-api.md §1.2). ``headers`` keep arrival order with lower-cased
    names; values are latin-1 decoded and stripped of surrounding whitespace.
    """

    method: str
    target: str
    path: str
    query: str
    version: str  # "1.1" or "1.0"
    headers: tuple[tuple[str, str], ...]
    keep_alive: bool
    expect_continue: bool
    #: Body framing: an exact length (0 = no body), or ``None`` for chunked.
    content_length: int | None
    #: The ``Upgrade`` header value when the client asks for a protocol switch, else ``None``.
    upgrade: str | None = None
    #: Authority from an absolute-form or authority-form target, or the Host header.
    authority: str = ""

    def header(self, name: str, default: str | None = None) -> str | None:
        """First value of header ``name`` (case-insensitive), or ``default``."""
        name = name.lower()
        for k, v in self.headers:
            if k == name:
                return v
        return default

    def header_list(self, name: str) -> list[str]:
        """All values of header ``name``, comma-split into trimmed, non-empty elements."""
        name = name.lower()
        out: list[str] = []
        for k, v in self.headers:
            if k == name:
                out.extend(p.strip() for p in v.split(",") if p.strip())
        return out


@dataclass(frozen=True)
class Data:
    """A piece of the request body (already de-chunked)."""

    data: bytes


@dataclass(frozen=True, slots=True)
class EndOfMessage:
    """The request body is complete. Trailer fields of a chunked body are parsed and dropped
    (RFC 9112 §7.1.2 lets a recipient discard them)."""


_END = EndOfMessage()


@dataclass(frozen=True)
class H2Preface:
    """The connection opened with the HTTP/2 prior-knowledge preface (spec README §4)."""


class HttpError(Exception):
    """A request that cannot be processed. ``status`` is the response to send, or ``None`` when
    the peer is gone and no response makes sense. The connection is always closed afterwards."""

    def __init__(self, status: int | None, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# --- grammar (RFC 9110 §5.6.2 token, §5.5 field-value; RFC 9112 §3 request line) -------------

_TCHAR = rb"!#$%&'*+\-.^_`|~0-9A-Za-z"
_TOKEN_RE = re.compile(rb"[" + _TCHAR + rb"]+\Z")
# field-value: VCHAR, obs-text, SP, HTAB. No CR, LF, NUL or other controls (RFC 9110 §5.5).
_FIELD_VALUE_RE = re.compile(rb"[\t\x20-\x7e\x80-\xff]*\Z")
# request-target: visible ASCII only; '#' (fragment) is never part of a request-target.
_TARGET_RE = re.compile(rb"[\x21-\x22\x24-\x7e]+\Z")
_BAD_PCT_RE = re.compile(rb"%(?![0-9A-Fa-f]{2})")
_VERSION_RE = re.compile(rb"HTTP/([0-9])\.([0-9])\Z")
_ABSOLUTE_RE = re.compile(rb"([A-Za-z][A-Za-z0-9+\-.]*)://([^/?]*)(.*)\Z", re.S)
_AUTHORITY_RE = re.compile(rb"[A-Za-z0-9\-._~!$&'()*+,;=:\[\]%]+:[0-9]+\Z")
_HOST_RE = re.compile(rb"[A-Za-z0-9\-._~!$&'()*+,;=:\[\]%@]*\Z")
_HEX_RE = re.compile(rb"[0-9A-Fa-f]+\Z")
# A whole block of field lines, each ``token ":" field-value CRLF`` (what _split_field checks
# line by line).
_FIELD_BLOCK_RE = re.compile(rb"(?:[" + _TCHAR + rb"]+:[\t\x20-\x7e\x80-\xff]*\r\n)*\Z")
_CHUNK_EXT_RE = re.compile(rb"[\t\x20-\x7e\x80-\xff]*\Z")

_H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# parser states
_S_HEAD = 0  # reading the request line and header fields
_S_BODY_LENGTH = 1  # Content-Length body
_S_CHUNK_SIZE = 2  # expecting a chunk-size line
_S_CHUNK_DATA = 3  # inside chunk data
_S_CHUNK_CRLF = 4  # expecting the CRLF after chunk data
_S_TRAILERS = 5  # trailer section after the last chunk
_S_DONE = 6  # message complete, waiting for start_next_cycle
_S_ERROR = 7  # an HttpError was raised; nothing more


class RequestParser:
    """Incremental request parser for one connection (server role).

    Bytes live in one ``bytearray`` with a read offset; consumed bytes are dropped in bulk, and
    line searches resume where the previous search stopped, so no byte is scanned twice.
    """

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self._buf = bytearray()
        self._pos = 0
        self._scan = 0  # where the search for the next "\n" resumes
        self._eof = False
        self._state = _S_HEAD
        self._first = True  # no request seen yet on this connection (h2 preface check)
        self._reset_head()

    # -- feeding -------------------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        """Append bytes received from the peer."""
        if self._eof:
            raise RuntimeError("feed() after feed_eof()")
        if data:
            self._buf += data

    def feed_eof(self) -> None:
        """The peer closed its sending side."""
        self._eof = True

    @property
    def buffered(self) -> int:
        """Bytes received but not yet consumed (pipelined requests, upgrade payload)."""
        return len(self._buf) - self._pos

    def take_trailing_data(self) -> bytes:
        """Hand over unconsumed bytes (after a protocol upgrade) and empty the buffer (and the
        last head's raw fields: the parser stays referenced for as long as the socket is open)."""
        out = bytes(self._buf[self._pos:])
        self._buf.clear()
        self._pos = self._scan = 0
        self._reset_head()
        return out

    def start_next_cycle(self) -> None:
        """Begin parsing the next pipelined request once the previous response is written."""
        if self._state != _S_DONE:
            raise RuntimeError("start_next_cycle() before the request was complete")
        self._state = _S_HEAD
        self._reset_head()

    # -- events --------------------------------------------------------------------------------

    def next_event(self) -> Request | Data | EndOfMessage | H2Preface | _Sentinel:
        """Return the next event, or ``NEED_DATA`` / ``PAUSED`` / ``CLOSED``. Raises HttpError."""
        if self._state == _S_ERROR:
            raise RuntimeError("parser is in an error state")
        try:
            ev = self._next()
        except HttpError:
            self._state = _S_ERROR
            raise
        self._compact()
        return ev

    def _next(self) -> Request | Data | EndOfMessage | H2Preface | _Sentinel:
        st = self._state
        if st == _S_HEAD:
            return self._parse_head()
        if st == _S_BODY_LENGTH:
            return self._parse_body_length()
        if st in (_S_CHUNK_SIZE, _S_CHUNK_DATA, _S_CHUNK_CRLF, _S_TRAILERS):
            return self._parse_chunked()
        return PAUSED

    # -- head ----------------------------------------------------------------------------------

    def _reset_head(self) -> None:
        self._req_line: bytes | None = None
        self._fields: list[tuple[bytes, bytes]] = []
        self._head_bytes = 0
        self._remaining = 0
        self._body_total = 0
        self._trailer_bytes = 0

    def _readline(self, limit: int, status: int, what: str, in_body: bool = False) -> bytes | None:
        """Next line without its terminator, or None if incomplete.

        RFC 9112 §2.2: a recipient MAY accept a bare LF as line terminator and ignore a preceding
        CR; a bare CR anywhere else is rejected by the value/target grammars.
        """
        nl = self._buf.find(b"\n", max(self._scan, self._pos))
        if nl < 0:
            self._scan = len(self._buf)
            if len(self._buf) - self._pos > limit:
                raise HttpError(status, f"{what} too large")
            if self._eof:
                # Inside a body the peer vanished mid-message: nothing to answer (as for data).
                partial = self._pos != len(self._buf) and not in_body
                raise HttpError(400 if partial else None, "incomplete message")
            return None
        if nl - self._pos > limit:
            raise HttpError(status, f"{what} too large")
        end = nl - 1 if nl > self._pos and self._buf[nl - 1] == 0x0D else nl
        line = bytes(self._buf[self._pos:end])
        self._pos = self._scan = nl + 1
        return line

    def _parse_head(self) -> Request | H2Preface | _Sentinel:
        lim = self.limits
        if self._req_line is None and self._scan <= self._pos and not self._head_bytes:
            fast = self._parse_head_block()
            if fast is not None:
                return fast
        while True:
            if self._req_line is None:
                if self._first and self._buf[self._pos:self._pos + 3] == b"PRI":
                    have = bytes(self._buf[self._pos:self._pos + len(_H2_PREFACE)])
                    if _H2_PREFACE.startswith(have):
                        if len(have) < len(_H2_PREFACE):
                            if self._eof:
                                raise HttpError(None, "incomplete message")
                            return NEED_DATA
                        self._pos += len(_H2_PREFACE)
                        self._state = _S_ERROR
                        return H2Preface()
                if self._pos == len(self._buf) and self._eof:
                    return CLOSED
                start = self._pos
                line = self._readline(lim.max_request_line, 414, "request line")
                if line is None:
                    return NEED_DATA
                if not line:
                    # RFC 9112 §2.2: ignore at least one empty line before the request line.
                    if self._head_bytes > 0:
                        raise HttpError(400, "too many empty lines before the request line")
                    self._head_bytes = self._pos - start
                    continue
                self._head_bytes += self._pos - start
                self._req_line = line
                self._first = False
                continue
            start = self._pos
            line = self._readline(lim.max_head_bytes - self._head_bytes, 431, "request header")
            if line is None:
                return NEED_DATA
            self._head_bytes += self._pos - start
            if self._head_bytes > lim.max_head_bytes:
                raise HttpError(431, "request header too large")
            if not line:
                return self._finish_head()
            if line[0] in (0x20, 0x09):
                raise HttpError(400, "obsolete line folding is not allowed")  # RFC 9112 §5.2
            if len(self._fields) >= lim.max_headers:
                raise HttpError(431, "too many header fields")
            self._fields.append(_split_field(line))

    def _parse_head_block(self) -> Request | None:
        """Fast path: the whole head is buffered with CRLF line ends; parse it in one go.

        Returns None when the incremental parser must decide (incomplete head, bare LF line
        ends, a leading empty line, a possible h2 preface, an oversized head) - that path gives
        the same answers, just line by line.
        """
        pos = self._pos
        buf = self._buf
        end = buf.find(b"\r\n\r\n", pos)
        lim = self.limits
        if end <= pos or end + 4 - pos > lim.max_head_bytes:
            return None
        block = bytes(buf[pos:end])
        if ((self._first and block[:3] == b"PRI") or block[:2] == b"\r\n"
                or block.count(b"\n") != block.count(b"\r\n")):
            return None
        lines = block.split(b"\r\n")
        if len(lines[0]) + 1 > lim.max_request_line:  # counted with its CR, as _readline does
            raise HttpError(414, "request line too large")
        if len(lines) - 1 > lim.max_headers:
            raise HttpError(431, "too many header fields")
        rest = block[len(lines[0]) + 2:]
        if not rest or _FIELD_BLOCK_RE.match(rest + b"\r\n"):
            # One regex call validates every field line; then splitting cannot fail.
            fields = [(n, v.strip(b" \t")) for n, _, v in
                      (line.partition(b":") for line in lines[1:])]
        else:  # find the offending line for the precise answer
            fields = []
            for line in lines[1:]:
                if line[:1] in (b" ", b"\t"):
                    raise HttpError(400, "obsolete line folding is not allowed")  # RFC 9112 §5.2
                fields.append(_split_field(line))
        self._pos = self._scan = end + 4
        self._head_bytes = end + 4 - pos
        self._req_line = lines[0]
        self._fields = fields
        self._first = False
        return self._finish_head()

    def _finish_head(self) -> Request:
        method, target, version = _split_request_line(self._req_line or b"")
        headers: list[tuple[str, str]] = []
        lengths: list[bytes] = []
        te: list[bytes] = []
        hosts: list[bytes] = []
        conn_tokens: set[str] = set()
        expect: list[bytes] = []
        upgrade: str | None = None
        for name, value in self._fields:
            lname = name.lower()
            if lname == b"content-length":
                lengths.extend(p.strip() for p in value.split(b","))
            elif lname == b"transfer-encoding":
                te.extend(p.strip().lower() for p in value.split(b","))
            elif lname == b"host":
                hosts.append(value)
            elif lname == b"connection":
                conn_tokens.update(p.strip().lower().decode("latin-1") for p in value.split(b","))
            elif lname == b"expect":
                expect.append(value.strip().lower())
            elif lname == b"upgrade":
                upgrade = value.decode("latin-1")
            headers.append((lname.decode("ascii"), value.decode("latin-1")))

        if version == "1.1" and len(hosts) != 1:
            raise HttpError(400, "exactly one Host header is required")  # RFC 9112 §3.2
        if len(hosts) > 1:
            raise HttpError(400, "more than one Host header")
        if hosts and not _HOST_RE.match(hosts[0]):
            raise HttpError(400, "invalid Host header")

        path, query, authority = _split_target(method, target)
        if not authority and hosts:
            authority = hosts[0].decode("latin-1")

        # Body framing: RFC 9112 §6.1-§6.3.
        content_length: int | None = 0
        if te:
            if lengths:
                # A classic request-smuggling vector: answer 400 and close (RFC 9112 §6.1).
                raise HttpError(400, "both Transfer-Encoding and Content-Length")
            if version == "1.0":
                raise HttpError(400, "Transfer-Encoding in an HTTP/1.0 request")
            unknown = [c for c in te if c != b"chunked"]
            if unknown:
                raise HttpError(501, "unsupported transfer coding: " +
                                unknown[0].decode("latin-1", "replace")[:40])
            if len(te) != 1:
                raise HttpError(400, "chunked applied more than once")
            content_length = None
        elif lengths:
            if any(not v.isdigit() for v in lengths):
                raise HttpError(400, "invalid Content-Length")
            # Compare digit strings without leading zeros (equal strings <=> equal numbers) and
            # never int() an unbounded one: CPython refuses > 4300 digits with ValueError.
            values = {v.lstrip(b"0") or b"0" for v in lengths}
            if len(values) != 1:
                raise HttpError(400, "conflicting Content-Length values")
            digits = values.pop()
            if len(digits) > 20 or int(digits) > self.limits.max_body_bytes:
                raise HttpError(413, "request body too large")
            content_length = int(digits)

        if version == "1.1":
            keep_alive = "close" not in conn_tokens
        else:
            keep_alive = "keep-alive" in conn_tokens and "close" not in conn_tokens

        expect_continue = False
        if expect:
            if any(e != b"100-continue" for e in expect):
                raise HttpError(417, "unsupported expectation")  # RFC 9110 §10.1.1
            # HTTP/1.0 clients cannot use 100 Continue; the expectation is ignored.
            expect_continue = version == "1.1" and content_length != 0

        if upgrade is not None and "upgrade" not in conn_tokens:
            upgrade = None  # Upgrade only counts when listed in Connection (RFC 9110 §7.8)

        req = Request(
            method=method, target=target.decode("ascii"), path=path, query=query, version=version,
            headers=tuple(headers), keep_alive=keep_alive, expect_continue=expect_continue,
            content_length=content_length, upgrade=upgrade, authority=authority,
        )
        if content_length is None:
            self._state = _S_CHUNK_SIZE
        elif content_length > 0:
            self._state = _S_BODY_LENGTH
            self._remaining = content_length
        else:
            self._state = _S_BODY_LENGTH  # remaining 0: the next event is EndOfMessage
            self._remaining = 0
        return req

    # -- bodies --------------------------------------------------------------------------------

    def _parse_body_length(self) -> Data | EndOfMessage | _Sentinel:
        if self._remaining == 0:
            self._state = _S_DONE
            return _END
        avail = len(self._buf) - self._pos
        if avail == 0:
            if self._eof:
                raise HttpError(None, "connection closed inside the request body")
            return NEED_DATA
        n = min(avail, self._remaining)
        data = bytes(self._buf[self._pos:self._pos + n])
        self._pos += n
        self._scan = self._pos
        self._remaining -= n
        return Data(data)

    def _parse_chunked(self) -> Data | EndOfMessage | _Sentinel:
        lim = self.limits
        while True:
            st = self._state
            if st == _S_CHUNK_SIZE:
                line = self._readline(lim.max_chunk_line, 400, "chunk size line", True)
                if line is None:
                    return NEED_DATA
                size = _parse_chunk_size(line)
                self._body_total += size
                if self._body_total > lim.max_body_bytes:
                    raise HttpError(413, "request body too large")
                if size == 0:
                    self._state = _S_TRAILERS
                    continue
                self._remaining = size
                self._state = _S_CHUNK_DATA
            elif st == _S_CHUNK_DATA:
                avail = len(self._buf) - self._pos
                if avail == 0:
                    if self._eof:
                        raise HttpError(None, "connection closed inside a chunk")
                    return NEED_DATA
                n = min(avail, self._remaining)
                data = bytes(self._buf[self._pos:self._pos + n])
                self._pos += n
                self._scan = self._pos
                self._remaining -= n
                if self._remaining == 0:
                    self._state = _S_CHUNK_CRLF
                return Data(data)
            elif st == _S_CHUNK_CRLF:
                # Chunk data must be followed by exactly CRLF (RFC 9112 §7.1); being strict here
                # is what stops chunk-boundary smuggling.
                have = bytes(self._buf[self._pos:self._pos + 2])
                if have != b"\r\n"[:len(have)]:
                    raise HttpError(400, "chunk data not followed by CRLF")
                if len(have) < 2:
                    if self._eof:
                        raise HttpError(None, "connection closed inside a chunk")
                    return NEED_DATA
                self._pos += 2
                self._scan = self._pos
                self._state = _S_CHUNK_SIZE
            else:  # _S_TRAILERS
                start = self._pos
                line = self._readline(lim.max_head_bytes - self._trailer_bytes, 431, "trailer section",
                                      True)
                if line is None:
                    return NEED_DATA
                self._trailer_bytes += self._pos - start
                if not line:
                    self._state = _S_DONE
                    return _END
                if line[0] in (0x20, 0x09):
                    raise HttpError(400, "obsolete line folding is not allowed")
                _split_field(line)  # validated, then dropped

    def _compact(self) -> None:
        # Drop consumed bytes in bulk once they dominate the buffer: amortised O(1) per byte.
        if self._pos and (self._pos == len(self._buf) or self._pos > 65536):
            del self._buf[:self._pos]
            self._scan -= self._pos
            self._pos = 0
            if self._scan < 0:
                self._scan = 0


def _split_field(line: bytes) -> tuple[bytes, bytes]:
    colon = line.find(b":")
    if colon <= 0:
        raise HttpError(400, "malformed header field")
    name = line[:colon]
    # No whitespace is allowed between field name and colon (RFC 9112 §5.1): 400.
    if not _TOKEN_RE.match(name):
        raise HttpError(400, "invalid header field name")
    value = line[colon + 1:].strip(b" \t")
    if not _FIELD_VALUE_RE.match(value):
        raise HttpError(400, "invalid header field value")
    return name, value


def _split_request_line(line: bytes) -> tuple[str, bytes, str]:
    parts = line.split(b" ")
    if len(parts) != 3:
        raise HttpError(400, "malformed request line")
    method, target, version = parts
    if not _TOKEN_RE.match(method):
        raise HttpError(400, "invalid method")
    m = _VERSION_RE.match(version)
    if not m:
        raise HttpError(400, "invalid HTTP version")
    if m.group(1) != b"1":
        raise HttpError(505, "HTTP version not supported")
    if not target or not _TARGET_RE.match(target) or _BAD_PCT_RE.search(target):
        raise HttpError(400, "invalid request target")
    # HTTP/1.x minor versions above 1 are treated as 1.1 (RFC 9110 §2.5).
    return method.decode("ascii"), target, "1.0" if m.group(2) == b"0" else "1.1"


def _split_target(method: str, target: bytes) -> tuple[str, str, str]:
    """Return (raw path, raw query, authority) for the four target forms of RFC 9112 §3.2."""
    if method == "CONNECT":
        if not _AUTHORITY_RE.match(target):
            raise HttpError(400, "CONNECT needs an authority-form target")
        return "", "", target.decode("ascii")
    if target == b"*":
        if method != "OPTIONS":
            raise HttpError(400, "asterisk-form target is only for OPTIONS")
        return "*", "", ""
    authority = ""
    if target[:1] != b"/":
        m = _ABSOLUTE_RE.match(target)
        if not m:
            raise HttpError(400, "invalid request target")
        # absolute-form: the server MUST accept it and ignores Host (RFC 9112 §3.2.2).
        if m.group(1).lower() not in (b"http", b"https") or not m.group(2):
            raise HttpError(400, "invalid absolute-form target")
        authority = m.group(2).decode("ascii")
        target = m.group(3) or b"/"
        if target[:1] == b"?":
            target = b"/" + target
    q = target.find(b"?")
    if q >= 0:
        return target[:q].decode("ascii"), target[q + 1:].decode("ascii"), authority
    return target.decode("ascii"), "", authority


def _parse_chunk_size(line: bytes) -> int:
    semi = line.find(b";")
    size_part = (line if semi < 0 else line[:semi]).rstrip(b" \t")
    if semi >= 0 and not _CHUNK_EXT_RE.match(line[semi:]):
        raise HttpError(400, "invalid chunk extension")
    # 16 hex digits already exceed any body limit; longer sizes are overflow attempts.
    if not _HEX_RE.match(size_part) or len(size_part) > 16:
        raise HttpError(400, "invalid chunk size")
    return int(size_part, 16)


# --- writer ---------------------------------------------------------------------------------

REASONS: dict[int, str] = {
    100: "Continue", 101: "Switching Protocols", 200: "OK", 201: "Created", 202: "Accepted",
    204: "No Content", 206: "Partial Content", 301: "Moved Permanently", 302: "Found",
    304: "Not Modified", 307: "Temporary Redirect", 308: "Permanent Redirect", 400: "Bad Request",
    401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
    406: "Not Acceptable", 408: "Request Timeout", 409: "Conflict", 410: "Gone",
    411: "Length Required", 412: "Precondition Failed", 413: "Content Too Large",
    414: "URI Too Long", 415: "Unsupported Media Type", 417: "Expectation Failed",
    422: "Unprocessable Content", 426: "Upgrade Required", 428: "Precondition Required",
    429: "Too Many Requests", 431: "Request Header Fields Too Large", 500: "Internal Server Error",
    501: "Not Implemented", 502: "Bad Gateway", 503: "Service Unavailable",
    504: "Gateway Timeout", 505: "HTTP Version Not Supported",
}

CONTINUE_100 = b"HTTP/1.1 100 Continue\r\n\r\n"
LAST_CHUNK = b"0\r\n\r\n"
#: SETTINGS (empty) + GOAWAY(last stream 0, HTTP_1_1_REQUIRED) for an h2c preface (spec README §4).
H2_GOAWAY = bytes.fromhex("000000040000000000") + bytes.fromhex("000008070000000000000000000000000d")

_NAME_OK = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
_VALUE_OK = re.compile(r"[\t\x20-\x7e\x80-\xff]*\Z")


class InvalidHeader(ValueError):
    """A response header that would break the framing; raised before anything is written."""


_GOOD_NAMES: set[str] = set()


def validate_header(name: str, value: str) -> None:
    """Refuse response header names/values that would break framing (CR/LF injection)."""
    if name not in _GOOD_NAMES:
        if not _NAME_OK.match(name):
            raise InvalidHeader(f"invalid response header name {name!r}")
        if len(_GOOD_NAMES) < 256:  # names are a small fixed set: remember the good ones
            _GOOD_NAMES.add(name)
    # isprintable() is False for every control character: the common case skips the regex.
    if not (value.isprintable() and value.isascii()) and not _VALUE_OK.match(value):
        raise InvalidHeader(f"invalid response header value for {name}")


def response_head(status: int, headers: list[tuple[str, str]] | tuple[tuple[str, str], ...],
                  reason: str | None = None) -> bytes:
    """Status line and header block, ending with the empty line. Always ``HTTP/1.1`` (RFC 9110
    §2.5: a server sends its own highest version). Names and values are validated."""
    reason = reason or REASONS.get(status, "Unknown")
    if not _VALUE_OK.match(reason):  # reason-phrase = *( HTAB / SP / VCHAR / obs-text )
        raise ValueError(f"invalid reason phrase {reason!r}")
    out = [f"HTTP/1.1 {status} {reason}\r\n"]
    for name, value in headers:
        validate_header(name, value)
        out.append(f"{name}: {value}\r\n")
    out.append("\r\n")
    return "".join(out).encode("latin-1")


def chunk(data: bytes) -> bytes:
    """One chunk of a chunked body. Empty data yields nothing (an empty chunk would end it)."""
    if not data:
        return b""
    return b"%x\r\n%s\r\n" % (len(data), data)
