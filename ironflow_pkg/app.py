"""Application wiring: the request pipeline and the operational endpoints.

Every request goes through :meth:`App.handle`: CORS preflight, routing by surface (spec README
§1), authentication and environment resolution, the route handler, then one place that turns
errors into responses, adds CORS headers, counts metrics and writes the access log line.
Domain areas add their routes to :attr:`App.router`; adapters stay thin.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl

from .auth import DEV_PRINCIPAL, AuthStore, Principal, now_rfc3339
from .jsonutil import fmt_ts
from .logs import AccessLog
from .config import VERSION, Settings
from .errors import ApiError, dumps, from_status
from .http11 import Limits
from .journal import Journal
from .metrics import Registry, standard_metrics
from .router import MethodNotAllowed, Router, RouteNotFound
from .server import HttpRequest, HttpServer, Response, TransportLimits

log = logging.getLogger("ironflow.app")

JSON_TYPE = "application/json; charset=utf-8"
RouteHandler = Callable[[HttpRequest, dict[str, str]], Awaitable[Response]]

_EXPOSE = ("Connect-Protocol-Version, Grpc-Status, Grpc-Message, Retry-After, Ironflow-Poll-Wait, "
           "X-Ironflow-Environment-ID")
_PROTECTED_PREFIXES = ("/api/", "/ironflow.v1.", "/ws")
#: Paths that never fall through to the dashboard (spec README §1, rows 2-10).
_NOT_DASHBOARD = frozenset(("/health", "/ready", "/metrics", "/ws"))
_ALLOW_METHODS = "GET, POST, PUT, PATCH, DELETE, OPTIONS"


def json_response(obj: Any, status: int = 200, headers: list[tuple[str, str]] | None = None) -> Response:
    h = [("Content-Type", JSON_TYPE)]
    if headers:
        h.extend(headers)
    return Response(status=status, headers=h, body=dumps(obj))


def error_response(err: ApiError, connect: bool = False) -> Response:
    body = err.connect_body() if connect else err.rest_body()
    return json_response(body, err.status, err.response_headers())


def query_params(req: HttpRequest) -> dict[str, str]:
    """Decoded query parameters (first value wins)."""
    out: dict[str, str] = {}
    if req.query:
        for k, v in parse_qsl(req.query, keep_blank_values=True):
            out.setdefault(k, v)
    return out


class App:
    """The server: settings, journal, auth, metrics, router and the HTTP transport."""

    def __init__(self, settings: Settings, *, journal: Journal | None = None) -> None:
        self.settings = settings
        self.metrics_registry = Registry()
        self.metrics = standard_metrics(self.metrics_registry)
        self.journal = journal or Journal(
            settings.db_path, integrity_check=settings.integrity_check,
            on_commit=self._observe_commit, logger=logging.getLogger("ironflow.journal"))
        self.auth = AuthStore(self.journal)
        self.router = Router()
        self.started_at = now_rfc3339()
        self.ready_issues: dict[str, str] = {}
        self._probe_at = 0.0
        self._probe_error: str | None = None
        self._req_ids = itertools.count(1)
        self._req_prefix = os.urandom(3).hex()
        self._cors_any = "*" in settings.cors_origins
        self._cors = set(settings.cors_origins)
        self.new_bootstrap_key: str | None = None
        self.access = AccessLog()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._health_cache: tuple[int, bytes, bytes] = (-1, b"", b"")
        self._health_status = 200
        #: Feature names (rest-api.md §5.3) of the areas this build serves; each area adds its own.
        self.features: set[str] = set()
        #: Lifecycle hooks of the areas wired onto this app (wiring.py): run in order on open and
        #: start, in reverse on stop.
        self.on_open: list[Callable[[], None]] = []
        self.on_start: list[Callable[[], Awaitable[None]]] = []
        self.on_stop: list[Callable[[], Awaitable[None]]] = []
        #: Serves every other ``GET``/``HEAD`` (spec README §1 row 11: the dashboard), public.
        self.fallback: RouteHandler | None = None
        #: Handles every ``/ironflow.v1.*`` request once authenticated (the Connect adapter).
        self.connect_handler: Callable[[HttpRequest], Awaitable[Response]] | None = None
        #: Warnings found by the areas at start-up, shown by /health and /ready.
        self.extra_warnings: list[str] = []
        #: Readiness checks: each returns (component, problem) or None when healthy.
        self.ready_checks: list[Callable[[], tuple[str, str] | None]] = []
        limits = TransportLimits(
            parser=Limits(max_body_bytes=settings.max_request_bytes),
            idle_timeout=settings.idle_timeout, max_connections=settings.max_connections,
            shutdown_grace=settings.shutdown_grace)
        self.http = HttpServer(self.handle, self.render_transport_error, limits,
                               on_connections_change=self.metrics.connections_open.set)
        self._add_builtin_routes()

    # -- lifecycle -----------------------------------------------------------------------------

    def open(self) -> None:
        """Open the journal and load hot state (blocking; before the loop serves)."""
        self.journal.open()
        self.auth.load()
        for hook in self.on_open:
            hook()
        if not self.settings.dev or self.settings.bootstrap_api_key or self.settings.bootstrap_key_file:
            self.new_bootstrap_key = self.auth.ensure_bootstrap(
                key=self.settings.bootstrap_api_key, key_file=self.settings.bootstrap_key_file,
                dev=self.settings.dev)

    async def start(self) -> tuple[str, int]:
        self._loop = asyncio.get_running_loop()
        for hook in self.on_start:
            await hook()
        try:
            return await self.http.start(self.settings.host, self.settings.port)
        except OSError:
            for hook in reversed(self.on_stop):
                await hook()
            raise

    async def stop(self) -> None:
        """Graceful stop: readiness turns 503 at once, connections drain, journal closes."""
        self.ready_issues["shutdown"] = "server is shutting down"
        await self.http.shutdown()
        for hook in reversed(self.on_stop):
            await hook()
        await asyncio.to_thread(self.journal.close)
        self.access.flush()

    def _observe_commit(self, batch: int, seconds: float) -> None:
        # Called from the journal writer thread; metric children are thread-safe.
        self.metrics.journal_commit_seconds.observe(seconds)
        self.metrics.journal_batch_size.observe(batch)

    # -- request pipeline ----------------------------------------------------------------------

    def render_transport_error(self, status: int, message: str) -> Response:
        err = from_status(status, message)
        if status == 503:
            err.retry_after = 1  # connection cap or shutdown: worth retrying shortly
        return error_response(err)

    async def handle(self, req: HttpRequest) -> Response:
        rid = req.header("x-request-id")
        req.request_id = rid if rid and len(rid) <= 64 and rid.isascii() and rid.isprintable() \
            else f"{self._req_prefix}-{next(self._req_ids)}"
        template = "unmatched"
        connect = req.path.startswith("/ironflow.v1.")
        try:
            if req.method == "OPTIONS":
                template = "OPTIONS"
                resp = self._preflight(req)
            elif connect and self.connect_handler is not None:
                template = "/ironflow.v1.{service}/{method}"
                await self._authenticate(req, "key")
                resp = await self.connect_handler(req)
            else:
                try:
                    match = self.router.match(req.method, req.path)
                except RouteNotFound:
                    # Credentials are checked before "not found" on protected surfaces, so an
                    # anonymous caller learns nothing about which routes exist.
                    if req.path.startswith(_PROTECTED_PREFIXES):
                        await self._authenticate(req, "key")
                    if connect:
                        template = "/ironflow.v1.{service}/{method}"
                        raise ApiError("unimplemented",
                                       f"{req.path.lstrip('/')} is not implemented by this server")
                    if (self.fallback is None or req.method not in ("GET", "HEAD")
                            or req.path.startswith(("/api/", "/ironflow.v1.", "/ws/"))
                            or req.path in _NOT_DASHBOARD):
                        raise
                    match = None
                if match is None:
                    template = "dashboard"
                    resp = await self.fallback(req, {})
                else:
                    template = match.route.template
                    await self._authenticate(req, match.route.auth)
                    resp = await match.route.handler(req, match.params)
        except ApiError as e:
            resp = error_response(e, connect=connect and not isinstance(e, MethodNotAllowed))
        except Exception:
            log.exception("unhandled error", extra={"fields": {"request_id": req.request_id,
                                                               "path": req.path}})
            resp = error_response(ApiError("internal", f"internal error (request id {req.request_id})"),
                                  connect=connect)
        self._cors_headers(req, resp)
        resp.headers.append(("X-Request-ID", req.request_id))
        env = req.state.get("env")
        if env is not None:  # spec README §3.2: the server MAY echo the resolved environment
            resp.headers.append(("X-Ironflow-Environment-ID", env.id))
        self._account(req, resp, template)
        return resp

    async def _authenticate(self, req: HttpRequest, auth_class: str) -> None:
        if auth_class == "public":
            return
        principal: Principal | None
        if self.settings.dev:
            principal = DEV_PRINCIPAL
        else:
            principal = None
            token = _bearer(req.header("authorization"))
            if token is None and req.head.upgrade is not None:
                token = query_params(req).get("token")  # WebSocket upgrades (spec README §3.1)
            if token:
                principal = self.auth.authenticate(token)
            if principal is None:
                raise ApiError("unauthenticated",
                               "missing or invalid API key" if token else "API key required",
                               headers=[("WWW-Authenticate", 'Bearer realm="ironflow"')])
        requested = (req.header("x-ironflow-environment-id") or req.header("x-ironflow-environment")
                     or query_params(req).get("env"))
        env = self.auth.resolve_environment(requested, principal)
        req.state["principal"] = principal
        req.state["env"] = env

    def _preflight(self, req: HttpRequest) -> Response:
        headers = [("Access-Control-Allow-Methods", _ALLOW_METHODS),
                   ("Access-Control-Max-Age", "7200")]
        asked = req.header("access-control-request-headers")
        if asked:
            headers.append(("Access-Control-Allow-Headers", asked))
        if req.header("access-control-request-method") is None:
            headers.append(("Allow", _ALLOW_METHODS))
        return Response(status=204, headers=headers)

    def _cors_headers(self, req: HttpRequest, resp: Response) -> None:
        origin = req.header("origin")
        if origin and (origin in self._cors):
            resp.headers.append(("Access-Control-Allow-Origin", origin))
            resp.headers.append(("Access-Control-Allow-Credentials", "true"))
            resp.headers.append(("Vary", "Origin"))
        elif self._cors_any:
            resp.headers.append(("Access-Control-Allow-Origin", "*"))
        else:
            return  # an origin we do not serve gets no CORS grant
        resp.headers.append(("Access-Control-Expose-Headers", _EXPOSE))

    def _account(self, req: HttpRequest, resp: Response, template: str) -> None:
        took = time.perf_counter() - req.started
        if self.settings.metrics_enabled:
            m = self.metrics
            m.http_requests_total.labels(req.method, template, resp.status).inc()
            m.http_request_duration_seconds.labels(req.method, template).observe(took)
        if self.access.enabled():
            self.access.log(self._loop, request_id=req.request_id, method=req.method, path=req.path,
                            status=resp.status, ms=round(took * 1000, 3))

    # -- built-in routes -----------------------------------------------------------------------

    def _add_builtin_routes(self) -> None:
        r = self.router
        r.add("GET", "/health", self._health, auth="public")
        r.add("GET", "/ready", self._ready, auth="public")
        r.add("GET", "/metrics", self._metrics, auth="public")
        r.add("GET", "/api/v1/capabilities", self._capabilities, auth="public")

    def warnings(self) -> list[str]:
        out = []
        if self.settings.dev:
            out.append("dev mode: authentication disabled")
        if not self.settings.master_key:
            out.append("IRONFLOW_MASTER_KEY not set: secrets are stored unencrypted")
        return out + self.extra_warnings

    async def _health(self, req: HttpRequest, params: dict[str, str]) -> Response:
        # Liveness is polled hard by orchestrators and benchmarks: the body around the
        # timestamp is rebuilt once a second (journal state and warnings change rarely).
        now = time.time()
        sec = int(now)
        cached_sec, head, tail = self._health_cache
        if cached_sec != sec:
            alive = self.journal.alive
            warnings = self.warnings() + ([] if alive else ["journal is not available"])
            head = b'{"status":"' + (b"ok" if alive else b"unhealthy") + b'","timestamp":"'
            tail = b'","version":"' + VERSION.encode() + b'","warnings":' + dumps(warnings) + b"}"
            self._health_cache = (sec, head, tail)
            self._health_status = 200 if alive else 503
        body = head + fmt_ts(now).encode() + tail
        return Response(self._health_status, [("Content-Type", JSON_TYPE)], body)

    async def _ready(self, req: HttpRequest, params: dict[str, str]) -> Response:
        issues = dict(self.ready_issues)
        now = time.monotonic()
        if now - self._probe_at > 1.0:  # one real write probe per second at most
            self._probe_at = now
            try:
                await self.journal.write(_write_probe)
                self._probe_error = None
            except Exception as e:  # any failure of the probe is the answer
                self._probe_error = f"write probe failed: {type(e).__name__}"
        if self._probe_error:
            issues["database"] = self._probe_error
        for check in self.ready_checks:
            problem = check()
            if problem is not None:
                issues[problem[0]] = problem[1]
        if issues:
            return json_response({"status": "not_ready", "issues": issues,
                                  "warnings": self._ready_warnings()}, 503, [("Retry-After", "1")])
        return json_response({"status": "ready", "issues": {}, "warnings": self._ready_warnings()})

    def _ready_warnings(self) -> dict[str, str]:
        return {f"warning_{i}": w for i, w in enumerate(self.extra_warnings, 1)}

    async def _metrics(self, req: HttpRequest, params: dict[str, str]) -> Response:
        if not self.settings.metrics_enabled:
            raise ApiError("not_found", "metrics are disabled (set IRONFLOW_METRICS_ENABLED=true)")
        return Response(200, [("Content-Type", Registry.CONTENT_TYPE)],
                        self.metrics_registry.render().encode())

    async def _capabilities(self, req: HttpRequest, params: dict[str, str]) -> Response:
        return json_response({"transports": ["rest"], "features": sorted(self.features),
                              "version": VERSION, "auth_required": not self.settings.dev})



def _bearer(value: str | None) -> str | None:
    if not value:
        return None
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def _write_probe(conn: Any) -> None:
    conn.execute("INSERT OR REPLACE INTO server_meta (key, value) VALUES ('ready_probe', ?)",
                 (now_rfc3339(),))

