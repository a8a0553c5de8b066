#!/usr/bin/env python3
"""WebSocket echo server on the project's own stack, for Autobahn|Testsuite.

    python3 scripts/ws_echo.py 9001

serves ``ws://127.0.0.1:9001/`` (any GET path upgrades): text is echoed as text, binary as
binary, permessage-deflate is accepted (RFC 7692). The message limit is raised to 64 MiB so the
suite's large-message cases (9.x, up to 16 MiB) measure speed instead of hitting 1009.

Driving Autobahn's fuzzingclient (it connects to us; run it in Docker with host networking)::

    mkdir -p autobahn/reports && cat > autobahn/fuzzingclient.json <<'EOF'
    {"outdir": "./reports/servers",
     "servers": [{"agent": "ironflow", "url": "ws://127.0.0.1:9001"}],
     "cases": ["*"], "exclude-cases": [], "exclude-agent-cases": {}}
    EOF
    docker run -it --rm --network host -v "$PWD/autobahn:/config" -v "$PWD/autobahn/reports:/reports" \
        crossbario/autobahn-testsuite wstest -m fuzzingclient -s /config/fuzzingclient.json

then open ``autobahn/reports/servers/index.html``. Cases 12.x/13.x exercise permessage-deflate.
"""

from __future__ import annotations

import asyncio
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ironflow_pkg.errors import dumps, from_status  # noqa: E402
from ironflow_pkg.server import HttpRequest, HttpServer, Response  # noqa: E402
from ironflow_pkg.websocket import DeflateOptions, WsLimits  # noqa: E402
from ironflow_pkg.ws_asyncio import WebSocketSession, websocket_response  # noqa: E402

#: Autobahn 9.x sends messages up to 16 MiB; leave room.
ECHO_LIMITS = WsLimits(max_message_size=64 * 1024 * 1024, max_frame_payload=64 * 1024 * 1024 + 4096)


async def echo(session: WebSocketSession) -> None:
    while True:
        msg = await session.recv()
        if msg is None:
            return
        await session.send(msg)


def render_error(status: int, message: str) -> Response:
    err = from_status(status, message)
    return Response(status, [("Content-Type", "application/json; charset=utf-8")], dumps(err.rest_body()))


def make_handler(limits: WsLimits | None = ECHO_LIMITS, deflate: DeflateOptions | None = None,
                 **options):
    """An HttpServer handler that upgrades every GET and echoes (options go to
    :func:`websocket_response`)."""

    async def handler(req: HttpRequest) -> Response:
        return websocket_response(req, echo, deflate=deflate or DeflateOptions(), limits=limits,
                                  **options)

    return handler


async def main(port: int) -> None:
    server = HttpServer(make_handler(), render_error)
    host, bound = await server.start("127.0.0.1", port)
    print(f"ws echo listening on ws://{host}:{bound}/", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await server.shutdown(1.0)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: ws_echo.py PORT")
    try:
        asyncio.run(main(int(sys.argv[1])))
    except KeyboardInterrupt:
        pass
