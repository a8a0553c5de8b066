"""Connect protocol adapter (connect.md): routing, codecs, compression, errors.

Handlers are ``async (request, message: dict) -> dict`` on plain dicts keyed by proto field
names, whatever codec the client used. This module decodes the request, calls the handler and
encodes the answer with the same codec; errors become Connect JSON error bodies (§6).
"""

from __future__ import annotations

import asyncio
import gzip
import zlib
from collections.abc import Awaitable, Callable
from typing import Any

from .errors import ApiError, dumps
from .proto import jsoncodec
from .proto.descriptors import Schema, load_schema
from .server import HttpRequest, Response

Handler = Callable[[HttpRequest, dict[str, Any]], Awaitable[dict[str, Any]]]

#: Decompressed request cap (connect.md §3.1): beyond it resource_exhausted.
MAX_MESSAGE_BYTES = 32 * 1024 * 1024
JSON_CT = "application/json"
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


class ConnectRouter:
    """The method table: ``/ironflow.v1.<Service>/<Method>`` -> handler."""

    def __init__(self, schema: Schema | None = None) -> None:
        self.schema = schema or load_schema()
        self._handlers: dict[str, Handler] = {}

    def add(self, service: str, method: str, handler: Handler) -> None:
        desc = self.schema.method(service, method)  # KeyError for a method not in the schema
        self._handlers[desc.path] = handler

    async def __call__(self, req: HttpRequest) -> Response:
        try:
            return await self._dispatch(req)
        except ApiError as e:
            return connect_error(e)

    async def _dispatch(self, req: HttpRequest) -> Response:
        desc = self.schema.method_by_path(req.path)
        if desc is None:
            raise ApiError("unimplemented", f"unknown method {req.path}", status=404)
        if desc.kind == "bidi_stream":
            raise ApiError("unimplemented", BIDI_MESSAGE)
        if req.method != "POST":
            raise ApiError("unimplemented", "method not allowed", status=405,
                           headers=[("Allow", "POST")])
        version = req.header("connect-protocol-version")
        if version is not None and version.strip() != "1":
            raise ApiError("invalid_argument", "connect-protocol-version must be 1")
        ctype = (req.header("content-type") or "").split(";")[0].strip().lower()
        handler = self._handlers.get(desc.path)
        if ctype != JSON_CT and not (ctype == "" and not req.body):
            if ctype in ("application/proto", "application/connect+proto", "application/connect+json"):
                raise ApiError("unimplemented", f"the {ctype} codec is not implemented by this "
                               "server yet; use application/json")
            raise ApiError("unimplemented", f"unsupported content type {ctype or '(none)'}",
                           status=415)
        if desc.kind != "unary":
            raise ApiError("unimplemented", f"{desc.service}/{desc.name}: server streaming is not "
                           "implemented by this server yet")
        if handler is None:
            raise ApiError("unimplemented", f"{desc.service}/{desc.name} is not implemented by this "
                           "server yet")
        body = _decompress(req)
        try:
            msg = jsoncodec.from_json_bytes(self.schema, desc.input_type, body) if body else {}
        except jsoncodec.DecodeError as e:
            raise ApiError("invalid_argument", f"cannot decode request: {e}") from None
        timeout = _timeout(req)
        if timeout is None:
            out = await handler(req, msg)
        else:
            try:
                out = await asyncio.wait_for(handler(req, msg), timeout)
            except asyncio.TimeoutError:
                raise ApiError("deadline_exceeded", "the call's deadline passed") from None
        data = jsoncodec.to_json_bytes(self.schema, desc.output_type, out)
        return Response(200, [("Content-Type", JSON_CT)], data)


def _decompress(req: HttpRequest) -> bytes:
    enc = (req.header("content-encoding") or "identity").strip().lower()
    if enc in ("identity", ""):
        body = req.body
    elif enc == "gzip":
        try:
            d = zlib.decompressobj(16 + zlib.MAX_WBITS)
            body = d.decompress(req.body, MAX_MESSAGE_BYTES + 1)
            if len(body) > MAX_MESSAGE_BYTES or d.unconsumed_tail:
                raise ApiError("resource_exhausted", "message too large")
        except (zlib.error, gzip.BadGzipFile) as e:
            raise ApiError("invalid_argument", f"cannot decode request: bad gzip: {e}") from None
    else:
        raise ApiError("unimplemented", f"unsupported content-encoding {enc}",
                       headers=[("Accept-Encoding", "gzip, identity")])
    return body


def _timeout(req: HttpRequest) -> float | None:
    raw = req.header("connect-timeout-ms")
    if raw is None:
        return None
    raw = raw.strip()
    if not raw.isdigit() or len(raw) > 10:
        raise ApiError("invalid_argument", "connect-timeout-ms must be 1-10 digits")
    return int(raw) / 1000.0
