"""Connect protocol adapter (connect.md): routing, codecs, compression, streams, errors.

Handlers work on plain dicts keyed by proto field names, whatever codec the client used:
unary handlers are ``async (request, message) -> message``; server-streaming handlers are
async generators ``(request, message) -> AsyncIterator[message]``. This module decodes the
request (binary protobuf or proto3 JSON, gzip or identity, POST or the GET form), calls the
handler and encodes the answer with the same codec; errors become Connect error bodies (§6) or
end-of-stream envelopes (§4.3).
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from .envelope import EnvelopeError, EnvelopeReader, end_stream, envelope
from .errors import ApiError, dumps
from .proto import jsoncodec, wirecodec
from .proto.descriptors import MethodDesc, Schema, load_schema
from .server import HttpRequest, Response

Handler = Callable[[HttpRequest, dict[str, Any]], Awaitable[dict[str, Any]]]
StreamHandler = Callable[[HttpRequest, dict[str, Any]], AsyncIterator[dict[str, Any]]]

#: Decoded (decompressed) request message cap (connect.md §3.1): beyond it resource_exhausted.
MAX_MESSAGE_BYTES = 32 * 1024 * 1024
#: Unary responses above this size are gzipped when the client accepts it (connect.md §3.3).
COMPRESS_ABOVE = 64 * 1024
JSON_CT = "application/json"
PROTO_CT = "application/proto"
STREAM_JSON_CT = "application/connect+json"
STREAM_PROTO_CT = "application/connect+proto"
BIDI_MESSAGE = "bidirectional streaming requires HTTP/2, which this server does not support"


def payload(msg: dict[str, Any], name: str) -> Any:
    """connect.md §10: ``<name>_value`` when present, else the Struct field, else None."""
    key = f"{name}_value"
    if key in msg:
        return msg[key]
    return msg.get(name)


def set_payload(msg: dict[str, Any], name: str, value: Any) -> None:
    """Objects go in the Struct field, anything else in ``<name>_value`` (connect.md §10)."""
    if isinstance(value, dict):
        msg[name] = value
    else:
        msg[f"{name}_value"] = value


def connect_error(err: ApiError) -> Response:
    headers = [("Content-Type", JSON_CT)] + err.response_headers()
    return Response(err.status, headers, dumps(err.connect_body()))


@dataclass(frozen=True)
class Codec:
    name: str
    decode: Callable[[Schema, str, bytes], dict[str, Any]]
    encode: Callable[[Schema, str, dict[str, Any]], bytes]


def _json_decode(schema: Schema, name: str, data: bytes) -> dict[str, Any]:
    return jsoncodec.from_json_bytes(schema, name, data) if data else {}


JSON = Codec("json", _json_decode, jsoncodec.to_json_bytes)
PROTO = Codec("proto", wirecodec.decode, wirecodec.encode)
_DECODE_ERRORS = (jsoncodec.DecodeError, wirecodec.WireDecodeError)
#: request content type -> (codec, is a streaming content type)
_CONTENT_TYPES = {JSON_CT: (JSON, False), PROTO_CT: (PROTO, False),
                  STREAM_JSON_CT: (JSON, True), STREAM_PROTO_CT: (PROTO, True)}


class ConnectRouter:
    """The method table: ``/ironflow.v1.<Service>/<Method>`` -> handler."""

    def __init__(self, schema: Schema | None = None) -> None:
        self.schema = schema or load_schema()
        self._unary: dict[str, Handler] = {}
        self._streams: dict[str, StreamHandler] = {}

    def add(self, service: str, method: str, handler: Handler) -> None:
        desc = self.schema.method(service, method)  # KeyError for a method not in the schema
        if desc.kind != "unary":
            raise ValueError(f"{service}/{method} is {desc.kind}: use add_stream")
        self._unary[desc.path] = handler

    def add_stream(self, service: str, method: str, handler: StreamHandler) -> None:
        desc = self.schema.method(service, method)
        if desc.kind != "server_stream":
            raise ValueError(f"{service}/{method} is {desc.kind}, not a server stream")
        self._streams[desc.path] = handler

    def implemented(self) -> list[str]:
        return sorted([*self._unary, *self._streams])

    async def __call__(self, req: HttpRequest) -> Response:
        try:
            return await self._dispatch(req)
        except ApiError as e:
            return connect_error(e)

    # -- routing and protocol checks -------------------------------------------------------------

    async def _dispatch(self, req: HttpRequest) -> Response:
        desc = self.schema.method_by_path(req.path)
        if desc is None:
            raise ApiError("unimplemented", f"unknown method {req.path}", status=404)
        if desc.kind == "bidi_stream":
            raise ApiError("unimplemented", BIDI_MESSAGE)
        if req.method == "GET" and desc.no_side_effects and desc.kind == "unary":
            codec, body = _get_form(req)
            return await self._unary_call(req, desc, codec, body, compressed=False)
        if req.method != "POST":
            raise ApiError("unimplemented", "method not allowed", status=405,
                           headers=[("Allow", "POST")])
        version = req.header("connect-protocol-version")
        if version is not None and version.strip() != "1":
            raise ApiError("invalid_argument", "connect-protocol-version must be 1")
        ctype = (req.header("content-type") or "").split(";")[0].strip().lower()
        if not ctype and not req.body:
            ctype = JSON_CT  # a bodiless POST without a type: the all-defaults JSON message
        found = _CONTENT_TYPES.get(ctype)
        streaming = desc.kind == "server_stream"
        if found is None or found[1] != streaming:
            raise ApiError("unimplemented", f"unsupported content type {ctype or '(none)'} for "
                           f"this {'streaming' if streaming else 'unary'} method", status=415)
        codec = found[0]
        if streaming:
            return await self._stream_call(req, desc, codec)
        return await self._unary_call(req, desc, codec, req.body, compressed=True)

    # -- unary -----------------------------------------------------------------------------------

    async def _unary_call(self, req: HttpRequest, desc: MethodDesc, codec: Codec, body: bytes,
                          compressed: bool) -> Response:
        handler = self._unary.get(desc.path)
        if handler is None:
            raise ApiError("unimplemented", f"{_short(desc)} is not implemented by this server yet")
        if compressed:
            body = _decompress(body, req.header("content-encoding"))
        elif len(body) > MAX_MESSAGE_BYTES:
            raise ApiError("resource_exhausted", "message too large")
        msg = self._decode(codec, desc.input_type, body)
        timeout = _timeout(req)
        if timeout is None:
            out = await handler(req, msg)
        else:
            try:
                out = await asyncio.wait_for(handler(req, msg), timeout)
            except asyncio.TimeoutError:
                raise ApiError("deadline_exceeded", "the call's deadline passed") from None
        data = codec.encode(self.schema, desc.output_type, out)
        headers = [("Content-Type", PROTO_CT if codec is PROTO else JSON_CT)]
        if len(data) > COMPRESS_ABOVE and _accepts_gzip(req.header("accept-encoding")):
            data = gzip.compress(data, compresslevel=5, mtime=0)
            headers.append(("Content-Encoding", "gzip"))
        return Response(200, headers, data)

    def _decode(self, codec: Codec, name: str, body: bytes) -> dict[str, Any]:
        try:
            return codec.decode(self.schema, name, body)
        except _DECODE_ERRORS as e:
            raise ApiError("invalid_argument", f"cannot decode request: {e}") from None

    # -- server streaming --------------------------------------------------------------------------

    async def _stream_call(self, req: HttpRequest, desc: MethodDesc, codec: Codec) -> Response:
        ctype = STREAM_PROTO_CT if codec is PROTO else STREAM_JSON_CT
        # connect.md §4.3: after routing, every failure is a 200 with an end-of-stream error.
        try:
            msg = self._stream_request(req, desc, codec)
            handler = self._streams.get(desc.path)
            if handler is None:
                raise ApiError("unimplemented", f"{_short(desc)} is not implemented by this server yet")
            timeout = _timeout(req)
        except ApiError as e:
            return Response(200, [("Content-Type", ctype)], stream=_only_end(e))
        return Response(200, [("Content-Type", ctype)],
                        stream=self._produce(req, desc, codec, handler, msg, timeout))

    def _stream_request(self, req: HttpRequest, desc: MethodDesc, codec: Codec) -> dict[str, Any]:
        reader = EnvelopeReader(MAX_MESSAGE_BYTES)
        try:
            envs = reader.feed(req.body)
        except EnvelopeError as e:
            raise ApiError(e.code, e.message) from None
        if reader.pending or len(envs) != 1 or envs[0].end_stream:
            raise ApiError("unimplemented", "server streaming requires exactly one request message")
        data = envs[0].payload
        if envs[0].compressed:
            enc = (req.header("connect-content-encoding") or "").strip().lower()
            if enc != "gzip":
                raise ApiError("unimplemented", "compressed message without a supported "
                               "Connect-Content-Encoding")
            data = _gunzip(data)
        return self._decode(codec, desc.input_type, data)

    async def _produce(self, req: HttpRequest, desc: MethodDesc, codec: Codec,
                       handler: StreamHandler, msg: dict[str, Any],
                       timeout: float | None) -> AsyncIterator[bytes]:
        gen = handler(req, msg)
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        try:
            while True:
                try:
                    if deadline is None:
                        item = await gen.__anext__()
                    else:
                        item = await asyncio.wait_for(gen.__anext__(), max(0.0, deadline - loop.time()))
                except StopAsyncIteration:
                    break
                yield envelope(codec.encode(self.schema, desc.output_type, item))
            yield end_stream()
        except asyncio.TimeoutError:
            yield end_stream("deadline_exceeded", "the stream's deadline passed")
        except ApiError as e:
            yield end_stream(e.code, e.message)
        except (jsoncodec.EncodeError, wirecodec.WireEncodeError):
            yield end_stream("internal", "internal error")
            raise
        finally:
            await gen.aclose()


async def _only_end(err: ApiError) -> AsyncIterator[bytes]:
    yield end_stream(err.code, err.message)


def _short(desc: MethodDesc) -> str:
    return f"{desc.service.rsplit('.', 1)[-1]}/{desc.name}"


def _get_form(req: HttpRequest) -> tuple[Codec, bytes]:
    """connect.md §8: ``?connect=v1&encoding=proto|json&message=…[&base64=1][&compression=gzip]``."""
    # latin-1 keeps percent-decoded bytes as they are (binary proto may travel unencoded)
    q = dict(parse_qsl(req.query, keep_blank_values=True, encoding="latin-1"))
    enc = q.get("encoding", "")
    if enc not in ("json", "proto"):
        raise ApiError("invalid_argument", "encoding must be json or proto")
    raw = q.get("message", "")
    if q.get("base64") == "1":
        try:
            data = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
        except (ValueError, TypeError):
            raise ApiError("invalid_argument", "message is not URL-safe base64") from None
    else:
        data = raw.encode("latin-1")
    comp = q.get("compression", "identity") or "identity"
    data = _decompress(data, comp)
    return (PROTO if enc == "proto" else JSON), data


def _decompress(body: bytes, encoding: str | None) -> bytes:
    enc = (encoding or "identity").strip().lower()
    if enc in ("identity", ""):
        if len(body) > MAX_MESSAGE_BYTES:
            raise ApiError("resource_exhausted", "message too large")
        return body
    if enc == "gzip":
        return _gunzip(body)
    raise ApiError("unimplemented", f"unsupported content-encoding {enc}",
                   headers=[("Accept-Encoding", "gzip, identity")])


def _gunzip(data: bytes) -> bytes:
    """gunzip with the size cap enforced while inflating (a zip bomb stops at the limit)."""
    try:
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        out = d.decompress(data, MAX_MESSAGE_BYTES + 1)
        if len(out) > MAX_MESSAGE_BYTES or d.unconsumed_tail:
            raise ApiError("resource_exhausted", "message too large")
        if not d.eof:
            raise ApiError("invalid_argument", "cannot decode request: truncated gzip data")
    except zlib.error as e:
        raise ApiError("invalid_argument", f"cannot decode request: bad gzip: {e}") from None
    return out


def _accepts_gzip(value: str | None) -> bool:
    return bool(value) and any(p.split(";")[0].strip().lower() == "gzip" for p in value.split(","))


def _timeout(req: HttpRequest) -> float | None:
    raw = req.header("connect-timeout-ms")
    if raw is None:
        return None
    raw = raw.strip()
    if not raw.isdigit() or len(raw) > 10:
        raise ApiError("invalid_argument", "connect-timeout-ms must be 1-10 digits")
    return int(raw) / 1000.0
