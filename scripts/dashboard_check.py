#!/usr/bin/env python3
"""Drive the web dashboard in headless Chromium and screenshot every page.

    python3 scripts/dashboard_check.py [--out DIR] [--keep-open] [--pyz dist/ironflow.pyz]

It starts ``ironflow serve --dev`` on a free loopback port, seeds it with ``scripts/demo_seed.py``
(a pull worker keeps serving runs in a thread), launches Chromium with the DevTools protocol
(spoken here over a minimal RFC 6455 client: standard library only), visits each dashboard page,
waits for the page contract (``<html data-state="ready" data-view="...">``), screenshots it to
``DIR/<nn>-<name>.png`` and runs the flows: emit an event and watch its run complete live, dark
theme, phone width, HTML escaping, and sign-in against a second server that requires an API key.
Any console error, uncaught exception or error log entry of the page fails the check.

One line per check (``ok  name`` / ``FAIL name: reason``), then a summary; exit 1 on any failure.
Exits 0 with a message when no Chromium is installed. Everything it starts is stopped by its
process (group) id and its temp dirs are removed, unless ``--keep-open``. A watchdog ends the
script after ``DEADLINE_S`` whatever hangs.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parent.parent
BROWSERS = ("chromium", "chromium-browser", "google-chrome")
#: The whole run must end by itself (the brief: ~3 minutes), even if something hangs.
DEADLINE_S = 175.0
#: The dashboard contract: a page reaches data-state=ready within this (the brief: 10 s).
PAGE_TIMEOUT_S = 10.0
#: After two pages in a row timed out the app is broken everywhere; 10 s more per page would only
#: push the run past its deadline before the later checks could report anything.
SHORT_TIMEOUT_S = 3.0
#: A fresh page that stays "ready" on the wrong view this long will not change its mind.
WRONG_VIEW_S = 2.0
#: A live run sleeps ~1 s between steps; the page must show "completed" within this.
LIVE_TIMEOUT_S = 15.0
#: One DevTools command (a screenshot of a phone page at 2x is the slowest).
CDP_TIMEOUT_S = 10.0
SERVER_START_S = 20.0
#: CDP screenshots arrive as one multi-MB base64 text message; anything far beyond is a bug.
WS_MAX_MESSAGE = 64 << 20
DESKTOP = {"width": 1366, "height": 900, "deviceScaleFactor": 1, "mobile": False}
PHONE = {"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": True}
#: Requests the page makes itself; their 4xx/5xx are answers the page handles (sign-in 401 ...).
API_PREFIXES = ("/api/", "/ironflow.v1.", "/ws")
CHROMIUM_FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--remote-debugging-port=0"]


#: Set by the watchdog: checks still finishing in the main thread stay quiet after the verdict.
STOPPING = threading.Event()


class CheckFailed(Exception):
    """A check's expectation did not hold; the message says what the page showed instead."""


# --- a minimal RFC 6455 client: what CDP needs and nothing more --------------------------------

class WebSocket:
    """Blocking client WebSocket over one TCP socket: text messages in and out."""

    GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 §1.3

    def __init__(self, url: str, timeout: float = 5.0) -> None:
        u = urllib.parse.urlsplit(url)
        self.sock = socket.create_connection((u.hostname, u.port or 80), timeout=timeout)
        self.buf = bytearray()
        key = base64.b64encode(os.urandom(16)).decode()
        # No Origin header: Chromium refuses DevTools sockets from unlisted origins, not from none.
        self.sock.sendall((f"GET {u.path or '/'} HTTP/1.1\r\nHost: {u.netloc}\r\n"
                           "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                           f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in self.buf:
            self._fill(deadline)
        head, _, rest = bytes(self.buf).partition(b"\r\n\r\n")
        self.buf = bytearray(rest)
        accept = base64.b64encode(hashlib.sha1((key + self.GUID).encode()).digest()).decode()
        if not head.startswith(b"HTTP/1.1 101") or accept.encode() not in head:  # §4.2.2 item 5.4
            raise ConnectionError(f"WebSocket handshake refused: {head[:200]!r}")

    def _fill(self, deadline: float) -> None:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("WebSocket read timed out")
        self.sock.settimeout(left)
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise ConnectionError("WebSocket closed by peer")
        self.buf += chunk

    def _take(self, n: int, deadline: float) -> bytes:
        while len(self.buf) < n:
            self._fill(deadline)
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def _send_frame(self, opcode: int, payload: bytes) -> None:
        n = len(payload)
        head = bytes([0x80 | opcode])  # FIN: we never fragment what we send
        if n < 126:
            head += bytes([0x80 | n])  # 0x80: clients must mask every frame (§5.3)
        elif n < 1 << 16:
            head += bytes([0x80 | 126]) + n.to_bytes(2, "big")
        else:
            head += bytes([0x80 | 127]) + n.to_bytes(8, "big")
        key = os.urandom(4)
        self.sock.sendall(head + key + _mask(payload, key))

    def send_text(self, text: str) -> None:
        self._send_frame(0x1, text.encode())

    def recv_text(self, timeout: float) -> str:
        """The next whole data message, continuation frames joined (§5.4); pings answered."""
        deadline = time.monotonic() + timeout
        parts: list[bytes] = []
        size = 0
        while True:
            b0, b1 = self._take(2, deadline)
            fin, opcode, n = b0 & 0x80, b0 & 0x0F, b1 & 0x7F
            if n == 126:
                n = int.from_bytes(self._take(2, deadline), "big")
            elif n == 127:
                n = int.from_bytes(self._take(8, deadline), "big")
            key = self._take(4, deadline) if b1 & 0x80 else b""
            payload = self._take(n, deadline)
            if key:
                payload = _mask(payload, key)
            if opcode == 0x8:
                raise ConnectionError("WebSocket closed by peer")
            if opcode == 0x9:
                self._send_frame(0xA, payload)
                continue
            if opcode == 0xA:
                continue
            size += n
            if size > WS_MAX_MESSAGE:
                raise ConnectionError(f"WebSocket message over {WS_MAX_MESSAGE} bytes")
            parts.append(payload)
            if fin:
                return b"".join(parts).decode()

    def close(self) -> None:
        try:
            self._send_frame(0x8, (1000).to_bytes(2, "big"))
        except OSError:
            pass
        self.sock.close()


def _mask(data: bytes, key: bytes) -> bytes:
    """RFC 6455 §5.3 masking as one big-int XOR: a byte loop over MBs of payload is slow."""
    n = len(data)
    mask = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(mask, "big")).to_bytes(n, "big")


# --- Chrome DevTools protocol --------------------------------------------------------------------

class Cdp:
    """Commands matched to replies by id; events buffered as console errors of the current page."""

    def __init__(self, ws: WebSocket) -> None:
        self.ws = ws
        self.next_id = 0
        self.page = "about:blank"  # label for errors: which page was open when they happened
        self.errors: list[str] = []

    def call(self, method: str, params: dict[str, Any] | None = None,
             timeout: float = CDP_TIMEOUT_S) -> dict[str, Any]:
        self.next_id += 1
        my_id = self.next_id
        self.ws.send_text(json.dumps({"id": my_id, "method": method, "params": params or {}}))
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"CDP {method}: no reply in {timeout:.0f} s")
            msg = json.loads(self.ws.recv_text(left))
            if "method" in msg:
                self._event(msg["method"], msg.get("params", {}))
            elif msg.get("id") == my_id:
                if "error" in msg:
                    raise CheckFailed(f"CDP {method}: {msg['error'].get('message')}")
                return msg.get("result", {})

    def _event(self, method: str, p: dict[str, Any]) -> None:
        if method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            text = " ".join(str(a.get("value", a.get("description", a.get("type"))))
                            for a in p.get("args", []))
            self.errors.append(f"[{self.page}] console.{p['type']}: {text}")
        elif method == "Runtime.exceptionThrown":
            d = p.get("exceptionDetails", {})
            text = d.get("exception", {}).get("description") or d.get("text", "")
            self.errors.append(f"[{self.page}] uncaught: {text.splitlines()[0] if text else '?'}"
                               f" ({d.get('url', '')}:{d.get('lineNumber', '?')})")
        elif method == "Log.entryAdded":
            e = p.get("entry", {})
            if e.get("level") == "error" and not _ignored_log(e):
                self.errors.append(f"[{self.page}] log/{e.get('source')}: {e.get('text')} {e.get('url', '')}")

    def evaluate(self, expr: str) -> Any:
        """The value of ``expr`` in the page; None while a navigation swaps the document."""
        try:
            r = self.call("Runtime.evaluate", {"expression": expr, "returnByValue": True,
                                               "awaitPromise": True})
        except CheckFailed as e:
            if "context" in str(e).lower():  # "Execution context was destroyed" / "Cannot find context"
                return None
            raise
        if "exceptionDetails" in r:
            d = r["exceptionDetails"]
            raise CheckFailed(f"script failed: {d.get('exception', {}).get('description') or d.get('text')}")
        return r.get("result", {}).get("value")

    def wait(self, expr: str, timeout: float, what: str) -> Any:
        """Poll ``expr`` until it is truthy; CheckFailed naming ``what`` when time runs out."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expr)
            if value:
                return value
            if time.monotonic() > deadline:
                raise CheckFailed(f"timed out after {timeout:.0f} s waiting for {what}")
            time.sleep(0.1)


def _ignored_log(entry: dict[str, Any]) -> bool:
    """Network errors of API calls are answers the page handles; only its own logs count."""
    if entry.get("source") != "network":
        return False
    path = urllib.parse.urlsplit(entry.get("url", "")).path
    return path.startswith(API_PREFIXES) or path == "/favicon.ico"


# --- processes ------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.loads(resp.read())


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class Processes:
    """Everything this script started, stopped by its own id (group) at the end."""

    def __init__(self, keep_open: bool) -> None:
        self.keep_open = keep_open
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.dirs: list[Path] = []
        self.lock = threading.Lock()

    def tempdir(self, prefix: str) -> Path:
        d = Path(tempfile.mkdtemp(prefix=prefix))
        self.dirs.append(d)
        return d

    def spawn(self, name: str, cmd: list[str], log: Path, env: dict[str, str] | None = None,
              cwd: Path = REPO) -> subprocess.Popen[bytes]:
        # A session of its own: Chromium forks zygotes and renderers; stopping the group we made
        # stops exactly them and nothing else on the machine.
        with open(log, "wb") as out:
            p = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, start_new_session=True)
        self.procs.append((name, p))
        return p

    def stop_all(self) -> None:
        with self.lock:
            if self.keep_open:
                for name, p in self.procs:
                    print(f"kept open: {name} pid {p.pid} (stop with: kill -- -{p.pid})")
                for d in self.dirs:
                    print(f"kept: {d}")
                return
            for _, p in reversed(self.procs):
                _stop(p)
            self.procs.clear()
            for d in self.dirs:
                shutil.rmtree(d, ignore_errors=True)
            self.dirs.clear()


def _stop(p: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the process group we created, SIGKILL after 5 s; the group is ours alone."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(p.pid, sig)  # the group: Chromium's zygotes and renderers go too
        except ProcessLookupError:
            break
        try:
            p.wait(5)
            if sig == signal.SIGTERM:  # leader gone; children that lingered get SIGKILL next
                continue
        except subprocess.TimeoutExpired:
            pass


def start_server(procs: Processes, pyz: str | None, dev: bool,
                 env_extra: dict[str, str]) -> str:
    """``ironflow serve`` on a free port (the start contract); its URL once /health says 200."""
    tmp = procs.tempdir("ironflow-dash-srv-")
    port = free_port()
    entry = [str(REPO / pyz)] if pyz else [str(REPO / "ironflow.py")]
    cmd = [sys.executable, *entry, "serve", *(["--dev"] if dev else []), "--host", "127.0.0.1",
           "--port", str(port), "--db", str(tmp / "db.sqlite")]
    log = tmp / "server.log"
    # An IRONFLOW_* or LOG_* setting of the caller's shell (IRONFLOW_DEV=1 ...) would change what
    # is being checked; the servers get only what this script decides.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IRONFLOW_", "LOG_"))}
    url = f"http://127.0.0.1:{port}"
    p = procs.spawn(f"server {url}" + ("" if dev else " (auth)"), cmd, log, env={**env, **env_extra})
    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:
        if p.poll() is not None:
            raise CheckFailed(f"server exited with {p.returncode}:\n{tail(log)}")
        try:
            with urllib.request.urlopen(url + "/health", timeout=1) as resp:
                if resp.status == 200:
                    return url
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.1)
    raise CheckFailed(f"/health not 200 within {SERVER_START_S:.0f} s:\n{tail(log)}")


def start_browser(procs: Processes, exe: str) -> Cdp:
    """Headless Chromium with a fresh profile; a CDP session on its page target."""
    tmp = procs.tempdir("ironflow-dash-chromium-")
    profile, log = tmp / "profile", tmp / "chromium.log"
    profile.mkdir()
    p = procs.spawn("chromium", [exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
                    log, cwd=profile)
    port_file = profile / "DevToolsActivePort"
    deadline = time.monotonic() + 20
    while not (port_file.exists() and port_file.read_text().strip()):
        if p.poll() is not None or time.monotonic() > deadline:
            raise CheckFailed(f"no DevToolsActivePort (exit {p.poll()}):\n{tail(log)}")
        time.sleep(0.05)
    base = f"http://127.0.0.1:{port_file.read_text().split()[0]}"
    procs.procs[-1] = (f"chromium (DevTools {base})", p)
    pages = [t for t in http_json(base + "/json/list") if t.get("type") == "page"]
    if not pages:
        req = urllib.request.Request(base + "/json/new?about:blank", method="PUT")
        with urllib.request.urlopen(req, timeout=5) as resp:
            pages = [json.loads(resp.read())]
    return Cdp(WebSocket(pages[0]["webSocketDebuggerUrl"]))


# --- the checks -------------------------------------------------------------------------------------

class Report:
    def __init__(self) -> None:
        self.failed: list[str] = []
        self.passed = 0

    def check(self, name: str, fn: Callable[[], str | None]) -> bool:
        """Run one check; any exception is its failure, reported, never fatal to the others."""
        try:
            note = fn()
        except CheckFailed as e:
            return self._fail(name, str(e))
        except (OSError, TimeoutError, ConnectionError, ValueError, KeyError, IndexError) as e:
            return self._fail(name, f"{type(e).__name__}: {e}")
        return self.ok(name, note)

    def ok(self, name: str, note: str | None = None) -> bool:
        self.passed += 1
        self._print(f"ok   {name}" + (f"  ({note})" if note else ""))
        return True

    def _fail(self, name: str, reason: str) -> bool:
        self.failed.append(name)
        self._print(f"FAIL {name}: {reason}")
        return False

    @staticmethod
    def _print(line: str) -> None:
        if not STOPPING.is_set():
            print(line, flush=True)


# Mid-navigation an evaluate can land in a document without a root element yet: report "not fresh".
PAGE_STATE_JS = """(() => { const d = document.documentElement?.dataset;
  if (!d) return {fresh: false};
  return {fresh: !window.__dcOld, state: d.state || null, view: d.view || null,
          error: (document.querySelector('[data-role=error]')?.textContent || '').trim()}; })()"""


def js_call(fn: str, *args: Any) -> str:
    return f"({fn})({', '.join(json.dumps(a) for a in args)})"


CLICK_JS = "sel => { const el = document.querySelector(sel); if (!el) return false; el.click(); return true; }"
SET_JS = """(sel, v) => { const el = document.querySelector(sel); if (!el) return false; el.value = v;
  for (const t of ['input', 'change']) el.dispatchEvent(new Event(t, {bubbles: true})); return true; }"""
TEXT_JS = "sel => (document.querySelector(sel)?.textContent || '').trim()"
# With mobile emulation, content wider than the screen makes Chromium widen the layout viewport
# (innerWidth grows past the device width), so scrollWidth <= innerWidth alone would pass. The
# culprits are measured against the device width: the innermost elements whose box or visible
# overflow reaches past it, unless a scrolling/clipping ancestor contains them.
OVERFLOW_JS = """(w => {
  const clipped = el => { for (let a = el.parentElement; a && a !== document.body; a = a.parentElement)
    if (getComputedStyle(a).overflowX !== 'visible') return true; return false; };
  const wide = [];
  for (const el of document.querySelectorAll('body *')) {
    const r = el.getBoundingClientRect();
    const right = getComputedStyle(el).overflowX === 'visible' ? Math.max(r.right, r.left + el.scrollWidth) : r.right;
    if (r.width && right > w + 1 && !clipped(el)) wide.push([el, Math.round(right)]); }
  const name = el => el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') +
    (el.classList.length ? '.' + [...el.classList].join('.') : '');
  const leaves = wide.filter(([a]) => !wide.some(([b]) => b !== a && a.contains(b)));
  return {sw: document.documentElement.scrollWidth, iw: window.innerWidth,
          wide: leaves.slice(0, 4).map(([el, right]) => `${name(el)} (right ${right})`),
          meta: document.querySelector('meta[name=viewport]')?.content || null}; })"""
ESCAPE_JS = """({mainB: document.querySelector('main b') !== null, hasMain: document.querySelector('main') !== null,
  bold: [...document.querySelectorAll('b')].some(b => b.textContent === 'not bold'),
  text: document.body.innerText.includes('<b>not bold</b>')})"""
COLOURS_JS = """[document.documentElement, document.body].map(e => getComputedStyle(e).backgroundColor).join(' / ')"""


class Session:
    """One browser tab driven through the dashboard, writing numbered screenshots."""

    def __init__(self, cdp: Cdp, out: Path) -> None:
        self.cdp, self.out = cdp, out
        self.shot_no = 0
        self.timeouts = 0  # page waits in a row that ran out of time
        self.base = ""

    def timeout(self) -> float:
        return SHORT_TIMEOUT_S if self.timeouts >= 2 else PAGE_TIMEOUT_S

    def goto(self, path: str) -> None:
        """Full navigation; the old document is marked so a wait never reads its dataset."""
        self.cdp.page = path
        self.cdp.evaluate("window.__dcOld = 1")
        r = self.cdp.call("Page.navigate", {"url": self.base + path})
        if r.get("errorText"):
            raise CheckFailed(f"navigation to {path} failed: {r['errorText']}")

    def wait_view(self, view: str, fresh: bool = True) -> None:
        """Until data-state=ready and data-view=``view``; data-state=error fails at once."""
        start = time.monotonic()
        deadline = start + self.timeout()
        s: dict[str, Any] = {}
        wrong_since = None
        while time.monotonic() < deadline:
            s = self.cdp.evaluate(PAGE_STATE_JS) or {}
            if s.get("fresh") or not fresh:
                if s.get("state") == "error":
                    raise CheckFailed(f"data-state=error, [data-role=error]: {s.get('error')!r}")
                if s.get("state") == "ready" and s.get("view") == view:
                    self.timeouts = 0
                    return
                # A fresh document settled on another view is an answer, not slowness: stop
                # after WRONG_VIEW_S rather than the full timeout (keeps the run bounded).
                if fresh and s.get("state") == "ready":
                    wrong_since = wrong_since or time.monotonic()
                    if time.monotonic() - wrong_since > WRONG_VIEW_S:
                        break
                else:
                    wrong_since = None
            time.sleep(0.1)
        else:
            self.timeouts += 1
        raise CheckFailed(f"after {time.monotonic() - start:.0f} s data-state={s.get('state')!r} "
                          f"data-view={s.get('view')!r} (expected ready/{view!r})")

    def shot(self, name: str) -> None:
        self.shot_no += 1
        data = self.cdp.call("Page.captureScreenshot", {"format": "png"})["data"]
        (self.out / f"{self.shot_no:02d}-{name}.png").write_bytes(base64.b64decode(data))

    def page(self, name: str, path: str, view: str,
             extra: Callable[[], str | None] | None = None) -> Callable[[], str | None]:
        """A check: open ``path``, expect ``view``, run ``extra``; screenshot whatever happened."""
        def run() -> str | None:
            seen = len(self.cdp.errors)
            self.goto(path)
            try:
                self.wait_view(view)
                note = extra() if extra else None
            finally:
                self.shot(name)
            if len(self.cdp.errors) > seen:  # also in the final list; here it names the page
                raise CheckFailed("page logged errors: " + "; ".join(e[:200] for e in self.cdp.errors[seen:]))
            return note
        return run

    def click(self, sel: str) -> None:
        if not self.cdp.evaluate(js_call(CLICK_JS, sel)):
            raise CheckFailed(f"no element {sel} on {self.cdp.page}")

    def set_value(self, sel: str, value: str) -> None:
        """Type into a field the way the page listens for it: ``input`` (and ``change``) events."""
        if not self.cdp.evaluate(js_call(SET_JS, sel, value)):
            raise CheckFailed(f"no element {sel} on {self.cdp.page}")

    def text(self, sel: str) -> str:
        return self.cdp.evaluate(js_call(TEXT_JS, sel))

    def wait_selector(self, sel: str, timeout: float, nonempty: bool = False) -> None:
        """Until ``sel`` is shown (not merely present: forms keep a hidden error box ready)."""
        cond = (f"(el => !!el && el.checkVisibility() && (!{json.dumps(nonempty)} || "
                f"!!el.textContent.trim()))(document.querySelector({json.dumps(sel)}))")
        self.cdp.wait(cond, timeout, f"visible {sel}{' with text' if nonempty else ''} on {self.cdp.page}")


def check_console_capture(cdp: Cdp) -> str:
    """Self-test: a console.error and an uncaught exception on about:blank must be recorded."""
    before = len(cdp.errors)
    cdp.evaluate("console.error('dashboard_check self-test'); setTimeout(() => { throw new Error('self-test throw') }); 1")
    deadline = time.monotonic() + 3
    while len(cdp.errors) < before + 2 and time.monotonic() < deadline:
        cdp.evaluate("new Promise(r => setTimeout(r, 50))")
    caught = cdp.errors[before:]
    del cdp.errors[before:]
    if len(caught) < 2:
        raise CheckFailed(f"expected 2 recorded errors, got {caught}")
    return "console.error and uncaught exception both recorded"


def ids(url: str) -> dict[str, str]:
    """Ids of the seeded rows the detail pages need (empty string when the seed lacks one)."""
    def first(path: str, key: str) -> str:
        rows = http_json(url + path)[key]
        return rows[0]["id"] if rows else ""
    placed = http_json(url + "/api/v1/events?name=order.placed&limit=20")["events"]
    noted = [e["id"] for e in placed if "note" in (e.get("data") or {})]
    return {"completed": first("/api/v1/runs?function_id=order-fulfilment&status=completed&limit=1", "runs"),
            "failed": first("/api/v1/runs?function_id=send-invoice&status=failed&limit=1", "runs"),
            "event": first("/api/v1/events?limit=1", "events"),
            "noted_event": noted[0] if noted else ""}


def desktop_pages(s: Session, r: Report, row: dict[str, str]) -> str:
    """Every page of the contract at desktop width; returns the light background colours."""
    def timeline() -> str:
        n = s.cdp.evaluate("document.querySelector('[data-role=timeline]') === null ? -1 : "
                           "document.querySelectorAll('[data-role=timeline] [data-step]').length")
        if n < 0:
            raise CheckFailed("no [data-role=timeline] on the run page")
        if n < 3:
            raise CheckFailed(f"[data-role=timeline] has {n} [data-step] elements, expected >= 3")
        # The demo's last segment runs two branches side by side (demo_seed._parallel).
        par = s.cdp.evaluate("document.querySelectorAll('[data-role=timeline] .tl-row.parallel').length")
        if par < 2:
            raise CheckFailed(f"{par} steps marked as parallel branches, expected the demo's 2")
        return f"{n} steps, {par} on parallel branches"

    def smtp() -> None:
        if not s.cdp.evaluate("document.body.innerText.includes('SMTP relay refused')"):
            raise CheckFailed("page text lacks 'SMTP relay refused'")

    def escaped() -> str:
        e = s.cdp.evaluate(ESCAPE_JS)
        if e["mainB"] or e["bold"]:
            raise CheckFailed("event data rendered as HTML: a <b> element exists (main b / b 'not bold')")
        if not e["text"]:
            raise CheckFailed("text '<b>not bold</b>' not in document.body.innerText")
        return "" if e["hasMain"] else "note: page has no <main>"

    light = ""

    def overview() -> None:
        nonlocal light
        light = s.cdp.evaluate(COLOURS_JS)

    table: list[tuple[str, str, str, Callable[[], Any] | None]] = [
        ("overview", "/", "overview", overview),
        ("functions", "/functions", "functions", None),
        ("function", "/functions/order-fulfilment", "function", None),
        ("runs", "/runs", "runs", None),
        ("runs-failed", "/runs?status=failed", "runs", None),
        ("run-completed", f"/runs/{row['completed']}", "run", timeline),
        ("run-failed", f"/runs/{row['failed']}", "run", smtp),
        ("events", "/events", "events", None),
        ("event", f"/events/{row['event']}", "event", None),
        ("event-escaping", f"/events/{row['noted_event']}", "event", escaped),
        ("workers", "/workers", "workers", None),
        ("kv", "/kv", "kv", None), ("config", "/config", "config", None),
        ("secrets", "/secrets", "secrets", None), ("sql", "/sql", "sql", None),
        ("projections", "/projections", "unavailable", None),
        ("notfound", "/no/such/page", "notfound", None),
    ]
    for name, path, view, extra in table:
        r.check(f"page {name} {path}", s.page(name, path, view, extra))
    return light


def emit_flow(s: Session, r: Report, url: str) -> None:
    """The issue's "done when": emit from /events, follow the run, watch it complete live."""
    def placed_count() -> int:
        return http_json(url + "/api/v1/events?name=order.placed&limit=1")["approx_total"]

    def open_form() -> None:
        s.goto("/events")
        s.wait_view("events")
        s.click("[data-action=emit-open]")
        for sel in ("#emit-name", "#emit-data", "#emit-submit"):
            s.wait_selector(sel, 5)

    def invalid_json() -> str:
        open_form()
        before = placed_count()
        s.set_value("#emit-name", "order.placed")
        s.set_value("#emit-data", "{bad")
        s.click("#emit-submit")
        try:
            s.wait_selector("[data-role=emit-error]", 5, nonempty=True)
        finally:
            s.shot("emit-invalid-json")
        time.sleep(0.5)  # let a stray request land before counting
        if placed_count() != before:
            raise CheckFailed("an event was emitted although #emit-data was not JSON")
        return f"error shown: {s.text('[data-role=emit-error]')[:60]!r}"

    def live_run() -> str:
        if s.cdp.evaluate("document.querySelector('#emit-submit') === null"):
            open_form()
        s.set_value("#emit-name", "order.placed")
        s.set_value("#emit-data", json.dumps({"order": "ord_live", "customer": "zoe", "items": 2}))
        s.click("#emit-submit")
        s.wait_selector("[data-role=emitted-run]", PAGE_TIMEOUT_S)
        # The live tail (/ws, "events:>") shows the event without a reload.
        s.cdp.wait("[...document.querySelectorAll('[data-role=tail] .tail-item')]"
                   ".some(e => e.textContent.includes('ord_live'))", 5, "the event in the live tail")
        s.shot("emit-done")
        s.click("[data-role=emitted-run]")
        s.cdp.page = "emitted run"
        s.wait_view("run", fresh=False)  # a client-side route keeps the window; a full load does not
        s.cdp.evaluate("window.__dcLive = 1")
        first = s.text("[data-role=run-status]")
        s.shot("live-run-before")
        try:
            s.cdp.wait(js_call(TEXT_JS, "[data-role=run-status]") + " === 'completed'", LIVE_TIMEOUT_S,
                       "[data-role=run-status] 'completed'")
        except CheckFailed as e:
            raise CheckFailed(f"{e}; it still shows {s.text('[data-role=run-status]')!r}") from None
        finally:
            s.shot("live-run-after")
        if not s.cdp.evaluate("window.__dcLive === 1"):
            raise CheckFailed("the page reloaded while waiting; it must update live")
        return f"status {first!r} -> 'completed' without reload"

    r.check("emit: invalid JSON is refused", invalid_json)
    r.check("emit: event starts a run that completes live", live_run)


def actions_flow(s: Session, r: Report, url: str, completed_run: str) -> None:
    """The buttons behind a confirmation: function pause/activate, run pause/resume/cancel, rerun.

    The run under test belongs to a function no worker serves, so it stays queued
    (waiting_for_capacity) until the buttons move it: nothing races the clicks."""
    def post(path: str, body: dict[str, Any]) -> Any:
        req = urllib.request.Request(url + path, json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=5) as resp:
            return json.loads(resp.read())

    def confirm(action: str) -> None:
        s.click(f"[data-action={action}]")
        s.wait_selector("dialog [data-action=confirm]", 5)
        s.click("dialog [data-action=confirm]")

    def wait_text(sel: str, want: str) -> None:
        s.cdp.wait(js_call(TEXT_JS, sel) + f" === {json.dumps(want)}", PAGE_TIMEOUT_S,
                   f"{sel} {want!r} on {s.cdp.page}")

    def function_toggle() -> str:
        s.goto("/functions/nightly-report")
        s.wait_view("function")
        confirm("pause")
        wait_text("[data-role=function-status]", "paused")
        s.shot("function-paused")
        confirm("activate")
        wait_text("[data-role=function-status]", "active")
        return "active -> paused -> active"

    def run_buttons() -> str:
        post("/ironflow.v1.IronflowService/RegisterFunction",
             {"id": "manual-approval", "triggers": [{"event": "approval.requested"}]})
        run_id = post("/api/v1/events", {"name": "approval.requested", "data": {"doc": 7}})["run_ids"][0]
        s.goto(f"/runs/{run_id}")
        s.wait_view("run")
        seen = [s.text("[data-role=run-status]")]
        for action, want in (("pause", "paused"), ("resume", None), ("cancel", "cancelled")):
            confirm(action)
            if want is None:  # resumed: back in the queue, whatever its exact waiting state
                s.cdp.wait(js_call(TEXT_JS, "[data-role=run-status]") + " !== 'paused'", PAGE_TIMEOUT_S,
                           "[data-role=run-status] to leave 'paused'")
            else:
                wait_text("[data-role=run-status]", want)
            seen.append(s.text("[data-role=run-status]"))
        s.shot("run-cancelled")
        if http_json(f"{url}/api/v1/runs/{run_id}")["status"] != "cancelled":
            raise CheckFailed("the page says cancelled but the server does not")
        return " -> ".join(seen)

    def rerun() -> str:
        s.goto(f"/runs/{completed_run}")
        s.wait_view("run")
        confirm("rerun")
        s.cdp.wait(f"location.pathname.startsWith('/runs/') && location.pathname !== '/runs/{completed_run}'",
                   PAGE_TIMEOUT_S, "navigation to the new run")
        s.wait_view("run", fresh=False)
        fresh = s.cdp.evaluate("location.pathname").rsplit("/", 1)[1]
        s.shot("rerun")
        return f"new run {fresh}"

    r.check("actions: pause and activate a function", function_toggle)
    r.check("actions: pause, resume and cancel a run", run_buttons)
    r.check("actions: rerun a run", rerun)


def themes_and_phone(s: Session, r: Report, run_id: str, light: str) -> None:
    def dark() -> str:
        s.cdp.call("Emulation.setEmulatedMedia",
                   {"features": [{"name": "prefers-color-scheme", "value": "dark"}]})
        s.page("dark-run", f"/runs/{run_id}", "run")()
        s.page("dark-overview", "/", "overview")()
        colours = s.cdp.evaluate(COLOURS_JS)
        if light and colours == light:
            raise CheckFailed(f"background is the same as in light mode ({colours})")
        return f"background {light} -> {colours}"

    def no_overflow() -> str:
        o = s.cdp.evaluate(js_call(OVERFLOW_JS, PHONE["width"]))
        if not o["meta"]:
            raise CheckFailed("no <meta name=viewport content='width=device-width, ...'>")
        if o["sw"] > o["iw"] + 1 or o["iw"] > PHONE["width"] or o["wide"]:
            raise CheckFailed(f"horizontal overflow at {PHONE['width']} px: scrollWidth {o['sw']}, "
                              f"innerWidth {o['iw']}; too wide: {', '.join(o['wide']) or '?'}")
        return f"scrollWidth {o['sw']} <= innerWidth {o['iw']}"

    r.check("dark theme", dark)
    s.cdp.call("Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": "light"}]})
    s.cdp.call("Emulation.setDeviceMetricsOverride", PHONE)
    r.check("phone width /", s.page("phone-overview", "/", "overview", no_overflow))
    r.check("phone width /runs", s.page("phone-runs", "/runs", "runs", no_overflow))
    s.cdp.call("Emulation.setDeviceMetricsOverride", DESKTOP)


def sign_in(s: Session, r: Report, key: str) -> None:
    def wrong_key() -> str:
        s.set_value("#signin-key", "ifkey_" + secrets.token_hex(16))  # well-formed: the server says no
        s.click("#signin-submit")
        try:
            s.wait_selector("[data-role=signin-error]", 5, nonempty=True)
        finally:
            s.shot("signin-wrong-key")
        return repr(s.text("[data-role=signin-error]"))

    def right_key() -> None:
        s.set_value("#signin-key", key)
        s.click("#signin-submit")
        try:
            s.wait_view("overview", fresh=False)
        finally:
            s.shot("signin-overview")

    if r.check("auth: / shows sign-in", s.page("signin", "/", "signin")):
        r.check("auth: a wrong key shows [data-role=signin-error]", wrong_key)
        r.check("auth: the right key opens the overview", right_key)


def worker_thread(demo_seed: Any, url: str, until: float, errors: list[str]) -> threading.Thread:
    """The seeded pull worker, still serving: runs the dashboard starts must complete."""
    def serve() -> None:
        try:
            demo_seed.work(demo_seed.Client(url, None), until, idle_exit=False)
        except BaseException as e:  # demo_seed raises SystemExit on an API error
            errors.append(f"{type(e).__name__}: {e}")
    t = threading.Thread(target=serve, name="demo-worker", daemon=True)
    t.start()
    return t


def run_checks(args: argparse.Namespace, exe: str, procs: Processes, r: Report, out: Path) -> None:
    sys.path.insert(0, str(REPO / "scripts"))
    sys.dont_write_bytecode = True  # a check leaves no scripts/__pycache__ behind
    import demo_seed  # noqa: E402 - a sibling script, not a package

    url = start_server(procs, args.pyz, dev=True, env_extra={})
    r.ok("server starts", url + (f" from {args.pyz}" if args.pyz else ""))

    def seed() -> str:
        try:
            demo_seed.seed(demo_seed.Client(url, None), worker_seconds=0)
        except SystemExit as e:
            raise CheckFailed(f"demo_seed: {e}") from None
        return "functions, events and finished runs"
    r.check("seed demo data", seed)
    worker_errors: list[str] = []
    worker_thread(demo_seed, url, time.time() + DEADLINE_S, worker_errors)

    cdp = start_browser(procs, exe)
    for domain in ("Runtime", "Log", "Page"):
        cdp.call(f"{domain}.enable")
    cdp.call("Emulation.setDeviceMetricsOverride", DESKTOP)
    r.check("browser: console errors are captured", lambda: check_console_capture(cdp))
    s = Session(cdp, out)
    s.base = url
    row = ids(url)
    light = desktop_pages(s, r, row)
    emit_flow(s, r, url)
    actions_flow(s, r, url, row["completed"])
    themes_and_phone(s, r, row["completed"], light)
    if worker_errors:  # only a failure while the browser needed it; at shutdown it is expected
        r._fail("demo worker", "; ".join(worker_errors))

    key = "ifkey_" + secrets.token_hex(16)
    s.base = start_server(procs, args.pyz, dev=False, env_extra={"IRONFLOW_BOOTSTRAP_API_KEY": key})
    sign_in(s, r, key)

    def console() -> str:
        if cdp.errors:
            raise CheckFailed(f"{len(cdp.errors)} error(s):\n    " + "\n    ".join(e[:400] for e in cdp.errors))
        return "no console errors, exceptions or error logs"
    r.check("browser console clean", console)
    if not args.keep_open:
        try:
            cdp.call("Browser.close", timeout=3)
        except (OSError, TimeoutError, CheckFailed):
            pass
        cdp.ws.close()


def watchdog(procs: Processes) -> threading.Timer:
    def fire() -> None:
        STOPPING.set()
        print(f"FAIL overall: still running after {DEADLINE_S:.0f} s; stopping everything", flush=True)
        procs.stop_all()
        os._exit(1)
    t = threading.Timer(DEADLINE_S, fire)
    t.daemon = True
    t.start()
    return t


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(REPO / "dashboard-screenshots"), help="screenshot dir")
    p.add_argument("--keep-open", action="store_true", help="leave servers, Chromium and temp dirs")
    p.add_argument("--pyz", default=None, help="serve from this zipapp (e.g. dist/ironflow.pyz)")
    args = p.parse_args(argv)
    exe = next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)
    if exe is None:
        print(f"skip: no browser on PATH (looked for {', '.join(BROWSERS)}); nothing checked")
        return 0
    if args.pyz and not (REPO / args.pyz).is_file():
        print(f"FAIL --pyz: {REPO / args.pyz} does not exist (build it: python3 zipapp_build.py)")
        return 1
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("[0-9][0-9]-*.png"):  # numbering changes between runs; keep one run's set
        old.unlink()
    procs = Processes(args.keep_open)
    timer = watchdog(procs)
    r = Report()
    try:
        run_checks(args, exe, procs, r, out)
    except (CheckFailed, OSError, TimeoutError, ConnectionError) as e:  # setup: nothing to drive
        r._fail("setup", f"{type(e).__name__}: {e}")
    except KeyboardInterrupt:
        r._fail("interrupted", "Ctrl-C")
    finally:
        timer.cancel()
        procs.stop_all()
    print(f"\n{r.passed} passed, {len(r.failed)} failed; screenshots in {out}")
    return 1 if r.failed else 0


if __name__ == "__main__":
    sys.exit(main())
