"""The dashboard's files: a small single-page app served at ``/`` (features.md §19).

The files live in ``ironflow_pkg/dashboard/`` and are read once at start-up through
:mod:`importlib.resources`, so the same code serves them from the source tree and from the
``.pyz``. Nothing is fetched from anywhere else: no CDN, no web font, no build step.

URLs:

* ``/assets/<build>/<file>`` — the app's modules, styles and icons. ``<build>`` is a digest of
  every file, so a URL's content never changes and the answer can be cached for a year
  (``immutable``); the ES modules import each other by relative URL and so stay inside one build.
  A file of another build answers 404 (an old tab reloads the shell and gets the new build).
* every other ``GET``/``HEAD`` the API does not own — ``index.html`` with the build filled in,
  ``Cache-Control: no-cache`` (revalidated by ETag), so a bookmarked deep link such as
  ``/runs/run_123`` opens the app, which then routes on the client.

Every answer carries a content-security policy that allows only this origin (no inline script,
no remote source of any kind) and forbids framing.
"""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass
from importlib import resources
from typing import Any

from .server import HttpRequest, Response

PACKAGE_DIR = "dashboard"
ASSET_PREFIX = "/assets/"
#: Placeholder in index.html replaced by the current build id.
BUILD_TOKEN = "__BUILD__"
#: Below this size gzip does not pay for its header and the CPU.
GZIP_MIN_BYTES = 1024

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".json": "application/json; charset=utf-8",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".txt": "text/plain; charset=utf-8",
}

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
       "form-action 'self'; frame-ancestors 'none'")
SECURITY_HEADERS = [
    ("Content-Security-Policy", CSP),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Frame-Options", "DENY"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
]
LONG_CACHE = "public, max-age=31536000, immutable"


@dataclass(frozen=True)
class Asset:
    body: bytes
    gzipped: bytes | None
    content_type: str
    etag: str


def _asset(body: bytes, name: str) -> Asset:
    ext = name[name.rfind("."):] if "." in name else ""
    packed = gzip.compress(body, 9, mtime=0) if len(body) >= GZIP_MIN_BYTES else None
    if packed is not None and len(packed) >= len(body):
        packed = None
    etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
    return Asset(body, packed, CONTENT_TYPES.get(ext, "application/octet-stream"), etag)


def load_files(package: str = __package__ or "ironflow_pkg") -> dict[str, bytes]:
    """Every file under the dashboard folder, keyed by its path relative to it ("views/runs.js")."""
    out: dict[str, bytes] = {}

    def walk(node: Any, prefix: str) -> None:
        for entry in node.iterdir():
            name = entry.name
            if name.startswith(".") or name == "__pycache__" or name.endswith((".py", ".pyc")):
                continue
            if entry.is_dir():
                walk(entry, prefix + name + "/")
            else:
                out[prefix + name] = entry.read_bytes()
    walk(resources.files(package) / PACKAGE_DIR, "")
    return out


class Dashboard:
    """Serves the dashboard files; wire :meth:`serve` as ``App.fallback``."""

    def __init__(self, files: dict[str, bytes] | None = None) -> None:
        files = load_files() if files is None else files
        if "index.html" not in files:
            raise RuntimeError("dashboard files are missing index.html")
        digest = hashlib.sha256()
        for name in sorted(files):
            digest.update(name.encode() + b"\0" + hashlib.sha256(files[name]).digest())
        self.build = digest.hexdigest()[:12]
        self.assets = {name: _asset(body, name) for name, body in files.items() if name != "index.html"}
        shell = files["index.html"].replace(BUILD_TOKEN.encode(), self.build.encode())
        self.shell = _asset(shell, "index.html")

    async def serve(self, req: HttpRequest, params: dict[str, str]) -> Response:
        path = req.path
        if path.startswith(ASSET_PREFIX):
            build, _, name = path[len(ASSET_PREFIX):].partition("/")
            asset = self.assets.get(name) if build == self.build else None
            if asset is None:
                return Response(404, [("Content-Type", "text/plain; charset=utf-8"),
                                      ("Cache-Control", "no-cache"), *SECURITY_HEADERS],
                                b"not found\n")
            return self._answer(req, asset, LONG_CACHE)
        return self._answer(req, self.shell, "no-cache")

    def _answer(self, req: HttpRequest, asset: Asset, cache: str) -> Response:
        headers = [("Content-Type", asset.content_type), ("Cache-Control", cache),
                   ("ETag", asset.etag), *SECURITY_HEADERS]
        if asset.gzipped is not None:
            headers.append(("Vary", "Accept-Encoding"))
        if _etag_matches(req.header("if-none-match"), asset.etag):
            return Response(304, headers, b"")
        body = asset.body
        if asset.gzipped is not None and _accepts_gzip(req.header("accept-encoding")):
            headers.append(("Content-Encoding", "gzip"))
            body = asset.gzipped
        return Response(200, headers, body)


def _etag_matches(header: str | None, etag: str) -> bool:
    """RFC 9110 §13.1.2 weak comparison: ``*`` or any listed tag, with or without ``W/``."""
    if not header:
        return False
    for tag in header.split(","):
        tag = tag.strip()
        if tag == "*" or tag.removeprefix("W/") == etag:
            return True
    return False


def _accepts_gzip(header: str | None) -> bool:
    """True when ``Accept-Encoding`` lists gzip (or ``*``) with a non-zero quality."""
    if not header:
        return False
    for item in header.split(","):
        coding, _, params = item.strip().partition(";")
        if coding.strip().lower() not in ("gzip", "x-gzip", "*"):
            continue
        q = params.strip().lower()
        if q.startswith("q="):
            try:
                return float(q[2:]) > 0
            except ValueError:
                return False
        return True
    return False
