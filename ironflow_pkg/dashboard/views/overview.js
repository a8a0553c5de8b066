// Overview: headline counts, runs by status, and runs started/completed over the last hour.
// Every query reads a bounded index range (migration 0009), however long the history is.

import { api, live, qs, sqlObjects } from "../api.js";
import { badge, clear, fmtNum, h, link, pageHead, panel, table, throttle, timeEl } from "../ui.js";

const BUCKETS = 12; // 5-minute buckets over the last hour
const BUCKET_MIN = 5;
const STATUS_ORDER = ["running", "waiting", "waiting_for_capacity", "paused", "completed", "failed", "cancelled"];
const STATUS_FILL = { completed: "ok", failed: "bad", running: "info", waiting: "warn", paused: "warn", waiting_for_capacity: "warn" };

function sqlTime(ms) {
  return new Date(ms).toISOString(); // the journal's own format: 2026-12-07T01:22:45.750Z
}

async function load() {
  const now = Date.now();
  const since = sqlTime(now - BUCKETS * BUCKET_MIN * 60000);
  const day = sqlTime(now - 86400000);
  const bucket = (col) => `CAST((julianday(${col}) - julianday('${since}')) * 1440 / ${BUCKET_MIN} AS INTEGER)`;
  const [fns, workers, open, byStatus, events, started, ended, recent] = await Promise.all([
    api.rpc("IronflowService", "ListFunctions", {}),
    api.get("/api/v1/workers"),
    api.sql("SELECT status, count(*) AS n FROM runs WHERE status NOT IN ('completed', 'failed', 'cancelled') GROUP BY status"),
    api.sql(`SELECT status, count(*) AS n FROM runs WHERE created_at >= '${day}' GROUP BY status`),
    api.sql(`SELECT count(*) AS n FROM events WHERE timestamp >= '${since}'`),
    api.sql(`SELECT ${bucket("created_at")} AS b, count(*) AS n FROM runs WHERE created_at >= '${since}' GROUP BY b`),
    api.sql(`SELECT ${bucket("ended_at")} AS b, status, count(*) AS n FROM runs
             WHERE ended_at >= '${since}' AND status IN ('completed', 'failed') GROUP BY b, status`),
    api.get(`/api/v1/runs${qs({ limit: 8 })}`),
  ]);
  const series = { started: new Array(BUCKETS).fill(0), completed: new Array(BUCKETS).fill(0), failed: new Array(BUCKETS).fill(0) };
  const add = (list, b, n) => { b = Number(b); if (b >= 0 && b < BUCKETS) list[b] += Number(n); };
  for (const r of sqlObjects(started)) if (r.b !== null) add(series.started, r.b, r.n);
  for (const r of sqlObjects(ended)) if (r.b !== null) add(series[r.status], r.b, r.n);
  const counts = (res) => Object.fromEntries(sqlObjects(res).map((r) => [r.status, Number(r.n)]));
  return {
    now, series,
    statuses: counts(byStatus), // runs created in the last 24 hours
    open: counts(open), // every run not finished, however old
    functions: (fns.functions || []).length,
    workers: workers.workers || [],
    events: Number(sqlObjects(events)[0].n),
    recent: recent.runs || [],
  };
}

function card(label, value, hint, href) {
  return h("div", { class: "card" }, h("div", { class: "label" }, label),
    href ? link(href, h("span", { class: "value" }, fmtNum(value))) : h("div", { class: "value" }, fmtNum(value)),
    hint ? h("div", { class: "hint" }, hint) : null);
}

/** Inline SVG line chart, drawn here (no chart library). */
function chart(series, now) {
  const W = 600, H = 180, L = 34, R = 8, T = 10, B = 22;
  const max = Math.max(4, ...series.started, ...series.completed, ...series.failed);
  const step = (W - L - R) / (BUCKETS - 1);
  const y = (v) => T + (H - T - B) * (1 - v / max);
  const points = (vals) => vals.map((v, i) => `${(L + i * step).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
  const grid = [0, 0.5, 1].map((f) => {
    const v = Math.round(max * f);
    return [h("line", { class: "grid-line", x1: L, x2: W - R, y1: y(v), y2: y(v) }),
      h("text", { class: "axis", x: L - 6, y: y(v) + 3, "text-anchor": "end" }, String(v))];
  });
  const labels = [0, 4, 8, 11].map((i) => {
    const mins = (BUCKETS - 1 - i) * BUCKET_MIN;
    return h("text", { class: "axis", x: L + i * step, y: H - 6, "text-anchor": i === 11 ? "end" : "middle" },
      mins ? `-${mins}m` : "now");
  });
  return h("svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none", role: "img",
    "aria-label": `Runs per ${BUCKET_MIN} minutes over the last hour: ${series.started.reduce((a, b) => a + b, 0)} started` },
    grid, labels,
    h("polyline", { class: "started", points: points(series.started) }),
    h("polyline", { class: "completed", points: points(series.completed) }),
    h("polyline", { class: "failed", points: points(series.failed) }));
}

function statusBars(statuses) {
  const total = Object.values(statuses).reduce((a, b) => a + b, 0);
  if (!total) return h("p", { class: "muted" }, "No runs yet. Emit an event that a function listens to.");
  const keys = [...STATUS_ORDER.filter((s) => statuses[s]), ...Object.keys(statuses).filter((s) => !STATUS_ORDER.includes(s))];
  return h("div", { class: "status-bars" }, keys.map((s) => {
    const fill = h("div", { class: `fill ${STATUS_FILL[s] || ""}` });
    fill.style.width = `${Math.max(1, (100 * statuses[s]) / total)}%`;
    return h("div", { class: "status-bar" }, link(`/runs?status=${s}&range=24h`, badge(s)),
      h("div", { class: "track" }, fill), h("span", { class: "num" }, fmtNum(statuses[s])));
  }));
}

export async function render(el, ctx) {
  const body = h("div");
  const paint = (d) => {
    const active = (d.open.running || 0) + (d.open.waiting || 0) + (d.open.waiting_for_capacity || 0);
    const sum = (a) => a.reduce((x, y) => x + y, 0);
    clear(body,
      h("div", { class: "grid cards" },
        card("Functions", d.functions, null, "/functions"),
        card("Runs in flight", active, `${fmtNum(d.open.paused || 0)} paused · ${fmtNum(d.statuses.failed || 0)} failed in 24 h`, "/runs"),
        card("Events, last hour", d.events, null, "/events"),
        card("Workers connected", d.workers.length, d.workers.length ? `${fmtNum(d.workers.reduce((a, w) => a + (w.active_jobs || 0), 0))} active jobs` : "none polling", "/workers")),
      h("div", { class: "grid two" },
        panel("Throughput, last hour", [
          h("div", { class: "legend" },
            h("span", { class: "l-started" }, `started ${sum(d.series.started)}`),
            h("span", { class: "l-completed" }, `completed ${sum(d.series.completed)}`),
            h("span", { class: "l-failed" }, `failed ${sum(d.series.failed)}`)),
          chart(d.series, d.now)]),
        panel("Runs by status, last 24 hours", statusBars(d.statuses))),
      panel("Recent runs", table([
        { label: "Run", cell: (r) => link(`/runs/${encodeURIComponent(r.id)}`, h("span", { class: "mono trunc" }, r.id)) },
        { label: "Function", cell: (r) => link(`/functions/${encodeURIComponent(r.function_id)}`, r.function_id) },
        { label: "Status", cell: (r) => badge(r.status) },
        { label: "Started", cell: (r) => timeEl(r.created_at), class: "nowrap" },
      ], d.recent, { empty: "No runs yet." }), { flush: true, actions: link("/runs", "All runs →") }));
  };
  paint(await load());
  clear(el, pageHead("Overview", { sub: ctx.server.version ? `Ironflow server ${ctx.server.version}` : "" }), body);
  // Live: refresh when runs change (system events, websocket.md §2), at most every 5 s.
  const refresh = throttle(async () => {
    if (!ctx.alive()) return;
    try { paint(await load()); } catch (e) { /* keep the last good figures; the next change retries */ }
  }, 5000);
  ctx.onCleanup(live.subscribe("system.run.>", refresh));
  const timer = setInterval(refresh, 30000);
  ctx.onCleanup(() => clearInterval(timer));
}
