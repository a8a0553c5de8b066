"""Connect streaming envelopes (connect.md §4.1), sans-I/O.

An envelope is ``[flags: 1 byte][length: 4 bytes big-endian][payload]``. Flag ``0x01`` marks a
compressed payload, ``0x02`` the end-of-stream message (JSON whatever the codec).
:class:`EnvelopeReader` is fed bytes and hands back complete envelopes; the writer functions
return bytes. No I/O, no clock.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any

FLAG_COMPRESSED = 0x01
FLAG_END_STREAM = 0x02
_HEADER = struct.Struct(">BI")


class EnvelopeError(ValueError):
    """Malformed envelope framing; ``code`` is the Connect code to answer with."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Envelope:
    flags: int
    payload: bytes

    @property
    def compressed(self) -> bool:
        return bool(self.flags & FLAG_COMPRESSED)

    @property
    def end_stream(self) -> bool:
        return bool(self.flags & FLAG_END_STREAM)


class EnvelopeReader:
    """Incremental envelope parser with a per-message size limit (checked from the header,
    before the payload is buffered)."""

    def __init__(self, max_message_bytes: int) -> None:
        self.max = max_message_bytes
        self._buf = bytearray()
        self._pos = 0

    def feed(self, data: bytes) -> list[Envelope]:
        self._buf += data
        out: list[Envelope] = []
        while len(self._buf) - self._pos >= _HEADER.size:
            flags, length = _HEADER.unpack_from(self._buf, self._pos)
            if flags & ~(FLAG_COMPRESSED | FLAG_END_STREAM):
                raise EnvelopeError("invalid_argument", f"unknown envelope flags 0x{flags:02x}")
            if length > self.max:
                raise EnvelopeError("resource_exhausted",
                                    f"message of {length} bytes exceeds the {self.max} byte limit")
            start = self._pos + _HEADER.size
            if len(self._buf) - start < length:
                break
            out.append(Envelope(flags, bytes(self._buf[start:start + length])))
            self._pos = start + length
        if self._pos:
            del self._buf[:self._pos]
            self._pos = 0
        return out

    @property
    def pending(self) -> int:
        """Bytes of an incomplete envelope still buffered (non-zero at the end = truncated)."""
        return len(self._buf)


def envelope(payload: bytes, flags: int = 0) -> bytes:
    return _HEADER.pack(flags, len(payload)) + payload


def end_stream(code: str | None = None, message: str = "",
               metadata: dict[str, list[str]] | None = None) -> bytes:
    """The end-of-stream envelope: ``{}`` on success, ``{"error": {...}}`` otherwise."""
    body: dict[str, Any] = {}
    if code is not None:
        body["error"] = {"code": code, "message": message}
    if metadata:
        body["metadata"] = metadata
    return envelope(json.dumps(body, separators=(",", ":")).encode(), FLAG_END_STREAM)
