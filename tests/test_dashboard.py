"""The dashboard's files (features.md §19): what is served where, with which headers, and what
never falls through to it. The pages themselves are driven in Chromium by
``scripts/dashboard_check.py``; the API calls they make are covered by the API tests."""

from __future__ import annotations

import gzip
import json
import re

import pytest

from ironflow_pkg.api_dashboard import CSP, Dashboard, _accepts_gzip, _etag_matches, load_files
from support import ServerProcess, make_settings, InProcessServer

FILES = load_files()
DASH = Dashboard(FILES)
TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
         ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    with InProcessServer(make_settings(tmp_path_factory.mktemp("dash"))) as s:
        yield s


def asset_url(name: str) -> str:
    return f"/assets/{DASH.build}/{name}"


# -- the app shell --------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/", "/runs", "/runs/run_0123?tab=steps", "/functions/a%2Fb",
                                  "/no/such/page", "/events/evt_1/", "/index.html", "/assets",
                                  "/healthz", "/wsx"])
def test_deep_links_answer_the_shell(srv, path):
    status, h, body = srv.request("GET", path)
    assert status == 200
    assert h["content-type"] == "text/html; charset=utf-8"
    assert h["cache-control"] == "no-cache"
    assert h["content-security-policy"] == CSP
    assert h["x-content-type-options"] == "nosniff" and h["x-frame-options"] == "DENY"
    text = body.decode()
    assert f'src="/assets/{DASH.build}/app.js"' in text and "__BUILD__" not in text


def test_shell_references_only_files_that_exist(srv):
    _, _, body = srv.request("GET", "/")
    refs = re.findall(r'(?:href|src)="(/[^"]*)"', body.decode())
    assert len(refs) >= 4
    for ref in refs:
        if ref.startswith("/assets/"):
            status, _, _ = srv.request("GET", ref)
            assert status == 200, ref


def test_csp_allows_no_remote_source():
    directives = dict(d.strip().split(" ", 1) for d in CSP.split(";"))
    for name, value in directives.items():
        for source in value.split():
            assert source in ("'self'", "'none'", "data:"), (name, source)
    assert directives["default-src"] == "'self'" and directives["script-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'" and directives["object-src"] == "'none'"


def test_head_has_headers_and_no_body(srv):
    status, h, body = srv.request("HEAD", "/runs")
    assert status == 200 and body == b"" and h["content-type"].startswith("text/html")
    assert int(h["content-length"]) == len(DASH.shell.body)


def test_revalidation_with_etag(srv):
    _, h, _ = srv.request("GET", "/")
    status, h2, body = srv.request("GET", "/events", headers={"If-None-Match": h["etag"]})
    assert status == 304 and body == b"" and h2["etag"] == h["etag"]
    status, _, _ = srv.request("GET", "/", headers={"If-None-Match": 'W/' + h["etag"]})
    assert status == 304
    status, _, _ = srv.request("GET", "/", headers={"If-None-Match": '"other"'})
    assert status == 200


# -- assets ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(n for n in FILES if n != "index.html"))
def test_every_asset_is_served_with_its_type_and_a_long_cache(srv, name):
    status, h, body = srv.request("GET", asset_url(name))
    assert status == 200
    assert h["content-type"] == TYPES[name[name.rfind("."):]]
    assert h["cache-control"] == "public, max-age=31536000, immutable"
    assert h["content-security-policy"] == CSP
    assert body == FILES[name]


def test_gzip_only_when_asked(srv):
    name = max((n for n in FILES if n.endswith(".js")), key=lambda n: len(FILES[n]))
    status, h, body = srv.request("GET", asset_url(name), headers={"Accept-Encoding": "gzip, br"})
    assert status == 200 and h["content-encoding"] == "gzip" and h["vary"] == "Accept-Encoding"
    assert gzip.decompress(body) == FILES[name] and len(body) < len(FILES[name])
    status, h, body = srv.request("GET", asset_url(name), headers={"Accept-Encoding": "gzip;q=0"})
    assert "content-encoding" not in h and body == FILES[name]


@pytest.mark.parametrize("path", [
    "/assets/0000deadbeef/app.js",           # another build
    "/assets/{b}/nope.js",
    "/assets/{b}/index.html",                # the shell only at its own URLs (gets the build filled)
    "/assets/{b}/../api_dashboard.py",
    "/assets/{b}/%2e%2e/wiring.py",
    "/assets/{b}/views/../../wiring.py",
    "/assets/{b}/views/..%2f..%2fwiring.py",
    "/assets/{b}/__init__.py",
    "/assets/{b}/",
    "/assets/{b}",
])
def test_unknown_and_traversing_asset_paths_are_refused(srv, path):
    status, h, body = srv.request("GET", path.format(b=DASH.build))
    # Dot segments are refused by the router (400) before the dashboard sees them; the rest are 404.
    dot_segment = any(seg in ("..", "%2e%2e") for seg in path.split("/"))
    assert status == (400 if dot_segment else 404), (path, status)
    assert b"import" not in body and b"def " not in body


# -- what never falls through to the dashboard (spec README §1) ------------------------------------

@pytest.mark.parametrize("method,path,status", [
    ("GET", "/api/v1/nope", 404), ("GET", "/api/", 404), ("GET", "/api", 200),
    ("GET", "/ironflow.v1.Nope/Method", 404), ("GET", "/ws", 400), ("POST", "/", 404),
    ("PUT", "/runs", 404), ("DELETE", "/", 404), ("POST", "/health", 405),
])
def test_api_surfaces_never_answer_html(srv, method, path, status):
    got, h, body = srv.request(method, path)
    assert got == status, (path, got, body[:200])
    if path == "/api":  # not under "/api/": an ordinary dashboard path
        assert h["content-type"].startswith("text/html")
        return
    assert h["content-type"].startswith("application/json"), (path, h)
    json.loads(body)


def test_metrics_disabled_is_json_404(tmp_path):
    with InProcessServer(make_settings(tmp_path, metrics_enabled=False)) as s:
        status, h, _ = s.request("GET", "/metrics")
        assert status == 404 and h["content-type"].startswith("application/json")


def test_shell_is_public_but_the_api_is_not_when_auth_is_on(tmp_path):
    key = "ifkey_" + "ab" * 16
    with ServerProcess(str(tmp_path / "db.sqlite"), dev=False,
                       env={"IRONFLOW_BOOTSTRAP_API_KEY": key}) as s:
        status, h, body = s.request("GET", "/runs/run_1")
        assert status == 200 and b'type="module"' in body
        status, _, _ = s.request("GET", asset_url("app.js"))
        assert status == 200
        status, _, _ = s.request("GET", "/api/v1/workers")
        assert status == 401
        status, _, _ = s.request("GET", "/api/v1/workers", headers={"Authorization": f"Bearer {key}"})
        assert status == 200
        status, _, body = s.request("GET", "/api/v1/capabilities")
        assert json.loads(body)["auth_required"] is True


# -- the files themselves ---------------------------------------------------------------------------

JS = {n: b.decode() for n, b in FILES.items() if n.endswith(".js")}
IMPORT = re.compile(r"""(?:^|\s)import\s+(?:[^'";]*?\s+from\s+)?["']([^"']+)["']|import\(\s*["']([^"']+)["']\s*\)""",
                    re.M)


@pytest.mark.parametrize("name", sorted(JS))
def test_modules_import_only_files_of_the_same_build(name):
    base = name.rsplit("/", 1)[0] + "/" if "/" in name else ""
    for m in IMPORT.finditer(JS[name]):
        target = m.group(1) or m.group(2)
        assert target.startswith("./") or target.startswith("../"), (name, target)
        parts = (base + target).split("/")
        resolved: list[str] = []
        for p in parts:
            if p == "..":
                resolved.pop()
            elif p not in (".", ""):
                resolved.append(p)
        assert "/".join(resolved) in FILES, (name, target)


@pytest.mark.parametrize("name", sorted(n for n in FILES if not n.endswith(".png")))
def test_no_remote_references_and_no_html_injection_sinks(name):
    text = FILES[name].decode()
    # XML namespace names are identifiers, not fetched; anything else remote is a bug offline.
    remote = [u for u in re.findall(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}[^\s\"')]*", text, re.I)
              if "www.w3.org/" not in u]
    assert not remote, (name, remote)
    if name.endswith(".js"):
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(",
                     "new Function", "setAttribute(\"on", "javascript:"):
            assert sink not in text, (name, sink)
    if name.endswith(".html"):
        assert "<script>" not in text and " style=" not in text and " on" + "click=" not in text


def test_build_id_changes_with_any_file():
    changed = dict(FILES)
    changed["style.css"] = FILES["style.css"] + b"\n"
    assert Dashboard(changed).build != DASH.build
    assert Dashboard(dict(FILES)).build == DASH.build


def test_missing_index_is_a_start_up_error():
    with pytest.raises(RuntimeError):
        Dashboard({"app.js": b""})


# -- header helpers ---------------------------------------------------------------------------------

@pytest.mark.parametrize("header,ok", [
    (None, False), ("", False), ('"abc"', True), ('W/"abc"', True), ('"x", "abc"', True),
    ("*", True), ('"abcd"', False), ('abc', False),
])
def test_etag_matching(header, ok):
    assert _etag_matches(header, '"abc"') is ok


@pytest.mark.parametrize("header,ok", [
    (None, False), ("gzip", True), ("GZIP", True), ("br, gzip;q=0.5", True), ("gzip;q=0", False),
    ("gzip;q=0.0", False), ("identity", False), ("*", True), ("x-gzip", True), ("gzip;q=bad", False),
    ("deflate, br", False),
])
def test_accept_encoding(header, ok):
    assert _accepts_gzip(header) is ok


# -- the API calls the pages make, as they make them ----------------------------------------------

def _call(srv, method, path, body=None, connect=False):
    headers = {"Content-Type": "application/json"}
    if connect:
        headers["Connect-Protocol-Version"] = "1"
    status, _, raw = srv.request(method, path, None if body is None else json.dumps(body).encode(), headers)
    assert status < 300, (path, status, raw[:300])
    return json.loads(raw) if raw else None


def test_the_pages_api_calls(tmp_path):
    """Overview SQL, list filters and paging, run actions: the requests views/*.js send."""
    import datetime as dt
    with InProcessServer(make_settings(tmp_path)) as s:
        rpc = lambda m, b: _call(s, "POST", f"/ironflow.v1.IronflowService/{m}", b, connect=True)  # noqa: E731
        rpc("RegisterFunction", {"id": "f1", "triggers": [{"event": "a.b"}]})
        ids = [_call(s, "POST", "/api/v1/events", {"name": "a.b", "data": {"n": i}})["run_ids"][0] for i in range(3)]
        since = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        bucket = f"CAST((julianday(created_at) - julianday('{since}')) * 1440 / 5 AS INTEGER)"
        out = _call(s, "POST", "/api/v1/sql", {"query": f"SELECT {bucket} AS b, count(*) AS n FROM runs "
                                                        f"WHERE created_at >= '{since}' GROUP BY b", "max_rows": 1000})
        assert out["columns"] == ["b", "n"] and out["rows"] == [["11", "3"]]
        out = _call(s, "POST", "/api/v1/sql", {"query": f"SELECT count(*) AS n FROM events WHERE timestamp >= '{since}'"})
        assert out["rows"] == [["3"]]
        # runs list: filters and forward paging with the cursor
        page = _call(s, "GET", f"/api/v1/runs?function_id=f1&since={since}&limit=2")
        assert page["total_count"] == 3 and len(page["runs"]) == 2 and page["next_cursor"]
        rest = _call(s, "GET", f"/api/v1/runs?function_id=f1&since={since}&limit=2&cursor={page['next_cursor']}")
        assert [r["id"] for r in page["runs"] + rest["runs"]] == ids[::-1]
        assert _call(s, "GET", "/api/v1/runs?search=f1&status=waiting_for_capacity,running,waiting&limit=25")["count"] == 3
        # events list: forward and back
        ev = _call(s, "GET", "/api/v1/events?limit=2")
        older = _call(s, "GET", f"/api/v1/events?limit=2&cursor={ev['next_cursor']}")
        assert older["has_prev"] and _call(s, "GET", f"/api/v1/events?limit=2&before={older['prev_cursor']}")["events"] == ev["events"]
        assert _call(s, "GET", f"/api/v1/runs?event_id={ev['events'][0]['id']}&limit=50")["count"] == 1
        # run actions and function status, as the buttons send them
        assert rpc("PauseRun", {"runId": ids[0]})
        assert _call(s, "GET", f"/api/v1/runs/{ids[0]}")["status"] == "paused"
        rpc("ResumeRun", {"runId": ids[0]})
        rpc("CancelRun", {"id": ids[0], "reason": "cancelled from the dashboard"})
        assert _call(s, "GET", f"/api/v1/runs/{ids[0]}")["status"] == "cancelled"
        fresh = _call(s, "POST", f"/api/v1/runs/{ids[0]}/rerun", {})
        assert fresh["id"] != ids[0] and fresh["function_id"] == "f1"
        rpc("UpdateFunctionStatus", {"id": "f1", "status": "FUNCTION_STATUS_PAUSED"})
        assert rpc("GetFunction", {"id": "f1"})["status"] == "FUNCTION_STATUS_PAUSED"
        hist = rpc("ListFunctionHistory", {"functionId": "f1", "limit": 20})["entries"]
        assert hist[0]["changeType"] and hist[-1]["recordedAt"]
