// Functions: the list, and one function's configuration, version history and recent runs.

import { navigate } from "../app.js";
import { api, qs } from "../api.js";
import { act, badge, clear, confirmDialog, dl, fmtDuration, fmtTime, h, jsonBlock, link, normStatus, pageHead, panel, table, timeEl } from "../ui.js";
import { runsTable } from "./runs.js";

const MODE = { EXECUTION_MODE_PULL: "pull", EXECUTION_MODE_PUSH: "push" };

function triggers(fn) {
  const t = fn.triggers || [];
  if (!t.length) return h("span", { class: "muted" }, "invoke only");
  return t.map((tr) => h("span", null,
    tr.event ? h("span", { class: "tag" }, tr.event) : null,
    tr.cron ? h("span", { class: "tag", title: "cron schedule" }, `⏱ ${tr.cron}`) : null,
    tr.expression ? h("span", { class: "tag", title: "trigger expression" }, `if ${tr.expression}`) : null));
}

export async function renderList(el) {
  const out = await api.rpc("IronflowService", "ListFunctions", { limit: 1000 });
  const fns = out.functions || [];
  clear(el, pageHead("Functions", { sub: `${fns.length} registered` }),
    panel(null, table([
      { label: "Function", cell: (f) => h("div", null, link(`/functions/${encodeURIComponent(f.id)}`, h("strong", null, f.name || f.id)),
        f.name && f.name !== f.id ? h("div", { class: "muted small mono" }, f.id) : null) },
      { label: "Triggers", cell: triggers },
      { label: "Mode", cell: (f) => MODE[f.preferredMode] || "pull", class: "hide-sm" },
      { label: "Status", cell: (f) => badge(f.status) },
      { label: "Version", cell: (f) => `v${f.version || 1}`, class: "num hide-sm" },
      { label: "Next cron run", cell: (f) => (f.nextRun ? timeEl(f.nextRun) : "—"), class: "nowrap hide-sm" },
      { label: "Updated", cell: (f) => timeEl(f.updatedAt), class: "nowrap hide-sm" },
    ], fns, { empty: "No functions yet. Start a worker that registers some (see README)." }), { flush: true }));
}

function configPanel(fn) {
  const r = fn.retry || {};
  const c = fn.concurrency;
  const th = fn.throttle;
  const d = fn.debounce;
  return panel("Configuration", dl([
    ["Mode", MODE[fn.preferredMode] || "pull"],
    ["Endpoint", fn.endpointUrl || undefined],
    ["Triggers", triggers(fn)],
    ["Next cron run", fn.nextRun ? h("span", null, fmtTime(fn.nextRun), " ", h("span", { class: "muted" }, "(", timeEl(fn.nextRun), ")")) : undefined],
    ["Retry", `${r.maxAttempts || "default"} attempts, first delay ${fmtDuration(Number(r.initialDelayMs || 0))}, ×${r.backoffFactor || 2} up to ${fmtDuration(Number(r.maxDelayMs || 0))}, then ${r.onExhausted || "fail"}`],
    ["Timeout", fmtDuration(Number(fn.timeoutMs || 0))],
    ["Concurrency", c && c.limit ? `${c.limit}${c.key ? ` per ${c.key}` : ""}` : "unlimited"],
    ["Throttle", th && th.limit ? `${th.limit} per ${fmtDuration(Number(th.periodMs))}${th.key ? ` per ${th.key}` : ""}` : "none"],
    ["Debounce", d && Number(d.periodMs) ? `${fmtDuration(Number(d.periodMs))}${d.key ? ` by ${d.key}` : ""}${Number(d.maxWaitMs) ? `, max wait ${fmtDuration(Number(d.maxWaitMs))}` : ""}` : "none"],
    ["Cancel on", (fn.cancelOn || []).length ? fn.cancelOn.map((x) => h("span", { class: "tag" }, x.event)) : undefined],
    ["Actor key", fn.actorKey || undefined],
    ["Created", fmtTime(fn.createdAt)],
    ["Updated", fmtTime(fn.updatedAt)],
  ]));
}

export async function renderDetail(el, ctx) {
  const id = ctx.params[0];
  const [fn, history, runs] = await Promise.all([
    api.rpc("IronflowService", "GetFunction", { id }),
    api.rpc("IronflowService", "ListFunctionHistory", { functionId: id, limit: 20 }),
    api.get(`/api/v1/runs${qs({ function_id: id, limit: 10 })}`),
  ]);
  const status = normStatus(fn.status);
  const paused = status === "paused";
  const toggle = h("button", { class: `btn ${paused ? "primary" : ""}`, type: "button", "data-action": paused ? "activate" : "pause" },
    paused ? "Activate" : "Pause");
  toggle.addEventListener("click", async () => {
    const next = paused ? "FUNCTION_STATUS_ACTIVE" : "FUNCTION_STATUS_PAUSED";
    const ok = await confirmDialog(paused ? "Activate function?" : "Pause function?",
      paused ? `New events will start runs of ${id} again; queued runs resume.`
        : `New runs of ${id} will wait (as waiting for capacity) until the function is activated again.`,
      paused ? "Activate" : "Pause");
    if (!ok) return;
    await act(toggle, () => api.rpc("IronflowService", "UpdateFunctionStatus", { id, status: next }),
      paused ? "Function activated" : "Function paused");
    navigate(location.pathname, true);
  });
  const entries = history.entries || [];
  clear(el,
    pageHead(fn.name || id, {
      crumbs: [link("/functions", "Functions"), " / ", id],
      sub: h("span", null, badge(fn.status, { "data-role": "function-status" }), " ", `v${fn.version || 1}`),
      actions: [link(`/runs?function_id=${encodeURIComponent(id)}`, h("span", { class: "btn" }, "All runs")),
        status === "archived" ? null : toggle],
    }),
    fn.description ? h("p", { class: "muted" }, fn.description) : null,
    h("div", { class: "grid two" },
      configPanel(fn),
      panel("Version history", table([
        { label: "Version", cell: (e) => `v${e.entityVersion || e.functionSnapshot?.version || "?"}`, class: "num" },
        { label: "Change", cell: (e) => (Number(e.entityVersion) === 1 && e.changeType === "update" ? "registered" : (e.changeType || "—").replace(/_/g, " ")) },
        { label: "Reason", cell: (e) => e.changeReason || h("span", { class: "muted" }, "—") },
        { label: "When", cell: (e) => timeEl(e.recordedAt), class: "nowrap" },
      ], entries, { empty: "No history recorded." }), { flush: true })),
    panel("Recent runs", runsTable(runs.runs || [], { showFunction: false }), { flush: true }),
    fn.metadata && Object.keys(fn.metadata).length ? panel("Metadata", jsonBlock(fn.metadata)) : null);
}
