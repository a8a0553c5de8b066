// Workers: the pull-worker sessions the server knows (worker-protocol.md §2.13), refreshed live.

import { api } from "../api.js";
import { clear, fmtNum, fmtTime, h, link, pageHead, panel, table, timeEl } from "../ui.js";

const REFRESH_MS = 5000;

function workersTable(workers) {
  return table([
    { label: "Worker", cell: (w) => h("div", null, h("strong", { class: "mono" }, w.id), w.hostname ? h("div", { class: "muted small" }, w.hostname) : null) },
    { label: "Functions", cell: (w) => (w.function_ids || []).map((f) => link(`/functions/${encodeURIComponent(f)}`, h("span", { class: "tag" }, f))) },
    { label: "Active jobs", cell: (w) => `${fmtNum(w.active_jobs || 0)} / ${fmtNum(w.max_concurrent || 0)}`, class: "num nowrap" },
    { label: "Transport", cell: (w) => w.transport || "rest", class: "hide-sm" },
    { label: "Last heartbeat", cell: (w) => h("span", { title: fmtTime(w.last_heartbeat) }, timeEl(w.last_heartbeat)), class: "nowrap" },
    { label: "Connected", cell: (w) => timeEl(w.registered_at), class: "nowrap hide-sm" },
  ], workers, { empty: "No workers connected. Start an app that uses an Ironflow SDK worker and point it at this server." });
}

export async function render(el, ctx) {
  const body = h("div");
  const sub = h("span", { class: "sub" });
  const load = async () => {
    const out = await api.get("/api/v1/workers");
    if (!ctx.alive()) return;
    const ws = out.workers || [];
    sub.textContent = `${ws.length} connected · ${fmtNum(ws.reduce((a, w) => a + (w.active_jobs || 0), 0))} active jobs`;
    clear(body, workersTable(ws));
  };
  await load();
  clear(el, pageHead("Workers", { sub }), panel(null, body, { flush: true }));
  const timer = setInterval(() => load().catch(() => {}), REFRESH_MS);
  ctx.onCleanup(() => clearInterval(timer));
}
