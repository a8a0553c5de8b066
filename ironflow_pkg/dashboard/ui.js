// Small DOM helpers. Everything that shows server data goes through text nodes (never an
// HTML string parser), so an event payload such as "<img onerror=...>" is displayed, not run.

/** h("a", {href: "/x", class: "btn", onclick: fn}, "text", child) -> element */
export function h(tag, attrs, ...children) {
  const el = document.createElementNS(tag === "svg" || SVG_TAGS.has(tag) ? SVG_NS : HTML_NS, tag);
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v === undefined || v === null || v === false) continue;
      if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
      else if (k === "value" && "value" in el) el.value = v;
      else el.setAttribute(k, v === true ? "" : String(v));
    }
  }
  append(el, children);
  return el;
}

const HTML_NS = "http://www.w3.org/1999/xhtml";
const SVG_NS = "http://www.w3.org/2000/svg";
const SVG_TAGS = new Set(["path", "line", "polyline", "rect", "text", "g", "circle", "title"]);

function append(el, children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else if (c instanceof Node) el.appendChild(c);
    else el.appendChild(document.createTextNode(String(c)));
  }
}

export function clear(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** An in-app link: the router intercepts clicks on [data-link]. */
export const link = (href, ...children) => h("a", { href, "data-link": true }, ...children);

// ---- formatting -------------------------------------------------------------------------------

export function parseTime(s) {
  if (!s) return null;
  const t = Date.parse(s);
  return Number.isNaN(t) ? null : t;
}

export function fmtAgo(s) {
  const t = parseTime(s);
  if (t === null) return "—";
  const d = (Date.now() - t) / 1000;
  if (Math.abs(d) < 5) return "just now";
  const future = d < 0;
  const a = Math.abs(d);
  const txt = a < 60 ? `${Math.round(a)}s` : a < 3600 ? `${Math.round(a / 60)}m`
    : a < 86400 ? `${Math.round(a / 3600)}h` : `${Math.round(a / 86400)}d`;
  return future ? `in ${txt}` : `${txt} ago`;
}

export function fmtTime(s) {
  const t = parseTime(s);
  return t === null ? "—" : new Date(t).toLocaleString();
}

/** A <time> showing "3m ago" with the full local time on hover. */
export function timeEl(s) {
  return h("time", { datetime: s || "", title: s ? fmtTime(s) : "" }, fmtAgo(s));
}

export function fmtDuration(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return "—";
  if (ms < 1) return "<1 ms";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(ms < 10000 ? 2 : 1)} s`;
  const pair = (big, bigUnit, small, smallUnit) => (small ? `${big}${bigUnit} ${small}${smallUnit}` : `${big}${bigUnit}`);
  if (ms < 3600000) return pair(Math.floor(ms / 60000), "m", Math.floor((ms % 60000) / 1000), "s");
  if (ms < 86400000) return pair(Math.floor(ms / 3600000), "h", Math.floor((ms % 3600000) / 60000), "m");
  return pair(Math.floor(ms / 86400000), "d", Math.floor((ms % 86400000) / 3600000), "h");
}

export const fmtNum = (n) => (n === null || n === undefined ? "—" : Number(n).toLocaleString());

const STATUS_KIND = {
  completed: "ok", active: "ok", ok: "ok", connected: "ok",
  failed: "bad", timed_out: "bad", dead: "bad", archived: "",
  cancelled: "", deleted: "",
  running: "info running", pending: "info", sleeping: "warn", waiting: "warn",
  waiting_for_capacity: "warn", paused: "warn", retrying: "warn",
};

/** Lowercase status from REST ("failed") or proto enum names ("RUN_STATUS_FAILED"). */
export function normStatus(s) {
  return String(s || "").replace(/^(RUN_STATUS_|FUNCTION_STATUS_|STEP_STATUS_)/, "").toLowerCase();
}

export function badge(status, attrs) {
  const s = normStatus(status) || "unknown";
  return h("span", { class: `badge ${STATUS_KIND[s] ?? ""}`, ...attrs }, s.replace(/_/g, " "));
}

// ---- blocks -----------------------------------------------------------------------------------

const COLLAPSE_CHARS = 600;

/** Pretty JSON in a <pre>; long payloads start collapsed with a toggle. */
export function jsonBlock(value, { label } = {}) {
  const text = value === undefined ? "undefined" : JSON.stringify(value, null, 2);
  const pre = h("pre", { class: "json", "aria-label": label || "JSON" }, text);
  if (text.length <= COLLAPSE_CHARS && text.split("\n").length <= 14) return pre;
  pre.classList.add("collapsed");
  const btn = h("button", { class: "btn small json-toggle", type: "button", "aria-expanded": "false" },
    `Show all (${fmtNum(text.length)} chars)`);
  btn.addEventListener("click", () => {
    const open = pre.classList.toggle("collapsed") === false;
    btn.setAttribute("aria-expanded", String(open));
    btn.textContent = open ? "Collapse" : `Show all (${fmtNum(text.length)} chars)`;
  });
  return h("div", { class: "json-wrap" }, pre, btn);
}

/** A one-line preview of a JSON value for table cells. */
export function jsonPreview(value, max = 90) {
  const s = value === undefined ? "" : JSON.stringify(value);
  return s.length > max ? s.slice(0, max - 1) + "…" : s;
}

/** columns: [{label, cell: row => node|string, class?}] */
export function table(columns, rows, { empty = "Nothing here yet.", onRow } = {}) {
  if (!rows.length) return emptyState(empty);
  const head = h("tr", null, columns.map((c) => h("th", { class: c.class || null, scope: "col" }, c.label)));
  const body = rows.map((r) => {
    const tr = h("tr", null, columns.map((c) => h("td", { class: c.class || null }, c.cell(r))));
    if (onRow) onRow(tr, r);
    return tr;
  });
  return h("div", { class: "table-wrap" }, h("table", null, h("thead", null, head), h("tbody", null, body)));
}

export function emptyState(title, hint) {
  return h("div", { class: "empty" }, h("div", { class: "big" }, title), hint ? h("div", null, hint) : null);
}

export function errorState(err) {
  const msg = err && err.message ? err.message : String(err);
  return h("div", { class: "state-error", role: "alert", "data-role": "error" },
    h("strong", null, "Something went wrong. "), msg);
}

export function pageHead(title, { sub, actions, crumbs } = {}) {
  return h("div", null,
    crumbs ? h("div", { class: "crumbs" }, crumbs) : null,
    h("div", { class: "page-head" }, h("h1", null, title), sub ? h("span", { class: "sub" }, sub) : null,
      actions ? h("div", { class: "actions" }, actions) : null));
}

export function panel(title, body, { actions, flush } = {}) {
  return h("section", { class: `panel${flush ? " flush" : ""}` },
    title ? h("div", { class: "panel-head" }, h("h2", null, title),
      actions ? h("div", { class: "actions" }, actions) : null) : null,
    body);
}

/** A definition list from [[term, node], ...]; rows whose value is undefined are skipped. */
export function dl(pairs) {
  return h("dl", { class: "kv" }, pairs.filter((p) => p[1] !== undefined)
    .map(([k, v]) => [h("dt", null, k), h("dd", null, v === null || v === "" ? "—" : v)]));
}

export function toast(message, kind) {
  const box = document.querySelector("[data-role=toasts]");
  const t = h("div", { class: `toast ${kind || ""}`, role: "status" }, message);
  box.appendChild(t);
  setTimeout(() => t.remove(), 4500);
}

/** A modal confirmation; resolves true when the user confirms. */
export function confirmDialog(title, text, confirmLabel = "Confirm", danger = false) {
  return new Promise((resolve) => {
    const ok = h("button", { class: `btn ${danger ? "danger" : "primary"}`, type: "button", "data-action": "confirm" }, confirmLabel);
    const cancel = h("button", { class: "btn", type: "button" }, "Cancel");
    const dlg = h("dialog", { "aria-labelledby": "dlg-title" },
      h("h2", { id: "dlg-title" }, title), h("p", null, text), h("div", { class: "actions" }, cancel, ok));
    const done = (v) => { dlg.close(); dlg.remove(); resolve(v); };
    ok.addEventListener("click", () => done(true));
    cancel.addEventListener("click", () => done(false));
    dlg.addEventListener("cancel", (e) => { e.preventDefault(); done(false); });
    document.body.appendChild(dlg);
    dlg.showModal();
    cancel.focus();
  });
}

/** Run an action from a button: disable it meanwhile, toast the outcome. */
export async function act(button, fn, okMessage) {
  button.disabled = true;
  try {
    await fn();
    if (okMessage) toast(okMessage);
  } catch (e) {
    toast(e.message || String(e), "bad");
  } finally {
    button.disabled = false;
  }
}

/** Calls fn at most once per `ms`, trailing call included (live refreshes). */
export function throttle(fn, ms) {
  let timer = null;
  let again = false;
  return () => {
    if (timer) { again = true; return; }
    fn();
    timer = setTimeout(function tick() {
      if (again) { again = false; fn(); timer = setTimeout(tick, ms); } else timer = null;
    }, ms);
  };
}
