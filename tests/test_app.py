"""The request pipeline through a real socket: auth per route class, environments, CORS,
operational endpoints and the error model."""

from __future__ import annotations

import json

import pytest

from support import InProcessServer, make_settings

KEY = "ifkey_" + "0123456789abcdef" * 2
OTHER = "ifkey_" + "f" * 32


@pytest.fixture
def authed(tmp_path):
    with InProcessServer(make_settings(tmp_path, dev=False, bootstrap_api_key=KEY)) as srv:
        yield srv


@pytest.fixture
def dev(tmp_path):
    with InProcessServer(make_settings(tmp_path, dev=True, metrics_enabled=True)) as srv:
        yield srv


def bearer(key):
    return {"Authorization": f"Bearer {key}"}


def body(raw):
    return json.loads(raw)


def test_health_public_and_shape(authed):
    status, headers, raw = authed.request("GET", "/health")
    assert status == 200 and headers["content-type"] == "application/json; charset=utf-8"
    b = body(raw)
    assert b["status"] == "ok" and b["version"] == "0.53.0" and isinstance(b["warnings"], list)
    assert b["timestamp"].endswith("Z") and len(b["timestamp"]) == 24


def test_dev_mode_warns(dev):
    assert "dev mode: authentication disabled" in body(dev.request("GET", "/health")[2])["warnings"]


def test_ready(authed):
    status, _, raw = authed.request("GET", "/ready")
    assert status == 200 and body(raw) == {"status": "ready", "issues": {}, "warnings": {}}


def test_capabilities_public(authed, dev):
    b = body(authed.request("GET", "/api/v1/capabilities")[2])
    assert b["auth_required"] is True and b["version"] == "0.53.0"
    assert isinstance(b["transports"], list) and isinstance(b["features"], list)
    assert body(dev.request("GET", "/api/v1/capabilities")[2])["auth_required"] is False


def test_metrics_disabled_is_404(authed):
    status, _, raw = authed.request("GET", "/metrics")
    assert status == 404 and body(raw)["code"] == "not_found"


def test_metrics_exposition(dev):
    dev.request("GET", "/health")
    dev.request("GET", "/api/v1/nope")
    dev.request("GET", "/some/page")  # the dashboard shell
    status, headers, raw = dev.request("GET", "/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain; version=0.0.4")
    text = raw.decode()
    assert 'ironflow_http_requests_total{method="GET",path="/health",status_code="200"}' in text
    assert 'ironflow_http_requests_total{method="GET",path="unmatched",status_code="404"}' in text
    assert 'ironflow_http_requests_total{method="GET",path="dashboard",status_code="200"}' in text
    assert "ironflow_http_request_duration_seconds_bucket" in text
    assert "ironflow_connections_open" in text and "ironflow_journal_commit_seconds_count" in text


# -- auth per route class: no key / bad key / good key ---------------------------------------

ROUTES = [
    ("GET", "/api/v1/routes-that-do-not-exist", 404),  # REST: authenticated 404
    ("POST", "/ironflow.v1.ProjectionService/ListProjections", 501),  # Connect: not built yet
    ("GET", "/ws", 400),  # WebSocket route without upgrade
]


@pytest.mark.parametrize("method,path,good_status", ROUTES)
def test_protected_routes(authed, method, path, good_status):
    ct = {"Content-Type": "application/json"}
    status, headers, raw = authed.request(method, path, b"{}" if method == "POST" else None, ct)
    assert status == 401
    b = body(raw)
    assert b["code"] == "unauthenticated"
    assert headers["www-authenticate"].startswith("Bearer")
    status, _, raw = authed.request(method, path, b"{}" if method == "POST" else None, bearer(OTHER))
    assert status == 401 and body(raw)["code"] == "unauthenticated"
    status, _, raw = authed.request(method, path, b"{}" if method == "POST" else None,
                                    {"Authorization": "Basic " + KEY})
    assert status == 401
    status, _, raw = authed.request(method, path, b"{}" if method == "POST" else None,
                                    {**ct, **bearer(KEY)})
    assert status == good_status


def test_connect_errors_use_connect_shape(authed):
    _, _, raw = authed.request("POST", "/ironflow.v1.ProjectionService/ListProjections", b"{}")
    assert set(body(raw)) == {"code", "message"}
    _, _, raw = authed.request("POST", "/ironflow.v1.ProjectionService/ListProjections", b"{}",
                               {"Content-Type": "application/json", **bearer(KEY)})
    b = body(raw)
    assert b["code"] == "unimplemented" and "ProjectionService/ListProjections" in b["message"]


def test_rest_error_shape(authed):
    status, _, raw = authed.request("GET", "/api/v1/nothing", headers=bearer(KEY))
    assert status == 404 and body(raw) == {"error": "not found", "message": "not found", "code": "not_found"}


def test_websocket_token_query_parameter(authed):
    hdr = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
           "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
    assert authed.request("GET", "/ws", headers=hdr)[0] == 401
    assert authed.request("GET", f"/ws?token={OTHER}", headers=hdr)[0] == 401
    from test_ws_asyncio import Client
    c = Client(authed.port, path=f"/ws?token={KEY}")
    try:
        assert c.status == 101
    finally:
        c.close()
    # ?token= is only for WebSocket upgrades, never for plain requests
    assert authed.request("GET", f"/api/v1/nothing?token={KEY}")[0] == 401


def test_dev_mode_needs_no_key(dev):
    assert dev.request("GET", "/api/v1/nothing")[0] == 404


# -- environments (spec README §3.2) ---------------------------------------------------------

def test_environment_selection(authed):
    h = bearer(KEY)
    for hdr in ("X-Ironflow-Environment-ID", "X-Ironflow-Environment"):
        assert authed.request("GET", "/api/v1/nothing", headers={**h, hdr: "env_default"})[0] == 404
        assert authed.request("GET", "/api/v1/nothing", headers={**h, hdr: "default"})[0] == 404
        status, _, raw = authed.request("GET", "/api/v1/nothing", headers={**h, hdr: "env_nope"})
        assert status == 404 and body(raw)["message"] == "environment not found"


def test_env_scoped_key_cannot_cross(tmp_path):
    from ironflow_pkg.auth import generate_key
    with InProcessServer(make_settings(tmp_path, dev=False, bootstrap_api_key=KEY)) as srv:
        def add_env(conn):
            conn.execute("INSERT INTO environments (id, name, org_id, project_id, created_at) "
                         "VALUES ('env_staging', 'staging', 'org_default', 'proj_default_default', 'x')")
        srv.app.journal.write_sync(add_env)
        srv.app.auth.load()
        scoped = generate_key()
        srv.app.auth.create_key_sync(scoped, "scoped", ("developer",), env_id="env_staging", env_scoped=True)
        h = bearer(scoped)
        status, headers, _ = srv.request("GET", "/api/v1/nothing", headers=h)
        assert status == 404 and headers["x-ironflow-environment-id"] == "env_staging"  # own env
        status, headers, _ = srv.request("GET", "/api/v1/workers", headers=bearer(KEY))
        assert status == 200 and headers["x-ironflow-environment-id"] == "env_default"
        assert "x-ironflow-environment-id" not in srv.request("GET", "/api/v1/workers")[1]  # no key
        status, _, raw = srv.request("GET", "/api/v1/nothing", headers={**h, "X-Ironflow-Environment": "default"})
        assert status == 403 and body(raw)["code"] == "permission_denied"


# -- CORS, routing errors ----------------------------------------------------------------------

def test_cors_preflight_and_headers(dev):
    status, headers, raw = dev.request("OPTIONS", "/api/v1/anything", headers={
        "Origin": "https://app.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type"})
    assert status == 204 and raw == b""
    assert headers["access-control-allow-methods"] == "GET, POST, PUT, PATCH, DELETE, OPTIONS"
    assert headers["access-control-allow-headers"] == "authorization, content-type"
    assert headers["access-control-max-age"] == "7200"
    _, headers, _ = dev.request("GET", "/health", headers={"Origin": "https://app.example"})
    assert headers["access-control-allow-origin"] == "*"
    assert "Ironflow-Poll-Wait" in headers["access-control-expose-headers"]


def test_cors_allow_list(tmp_path):
    with InProcessServer(make_settings(tmp_path, cors_origins=("https://ok.example",))) as srv:
        _, h, _ = srv.request("GET", "/health", headers={"Origin": "https://ok.example"})
        assert h["access-control-allow-origin"] == "https://ok.example" and h["vary"] == "Origin"
        _, h, _ = srv.request("GET", "/health", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in h


def test_405_lists_allowed_methods(dev):
    status, headers, raw = dev.request("DELETE", "/health")
    assert status == 405 and headers["allow"] == "GET, HEAD, OPTIONS"
    assert body(raw)["error"] == "method not allowed"


@pytest.mark.parametrize("path", ["/api/v1/a/../b", "/api/v1/a/%2e%2e/b", "/api/v1//x", "/api/v1/%00"])
def test_path_tricks_rejected(dev, path):
    status, _, raw = dev.request("GET", path)
    assert status == 400 and body(raw)["code"] == "invalid_argument"


def test_request_id_echo(dev):
    _, h, _ = dev.request("GET", "/health", headers={"X-Request-ID": "abc-123"})
    assert h["x-request-id"] == "abc-123"
    _, h, _ = dev.request("GET", "/health")
    assert h["x-request-id"]


def test_handler_crash_is_500_without_internals(dev):
    async def boom(req, params):
        raise RuntimeError("secret internals /etc/passwd")
    dev.app.router.add("GET", "/api/v1/boom", boom)
    status, headers, raw = dev.request("GET", "/api/v1/boom")
    b = body(raw)
    assert status == 500 and b["code"] == "internal"
    assert "secret" not in raw.decode() and "Traceback" not in raw.decode()
    assert headers["x-request-id"] in b["message"]
    assert dev.request("GET", "/health")[0] == 200
