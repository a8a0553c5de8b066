// Runs: a filterable, paged list, and one run's detail with its step timeline. Both update live
// from the run's system events (websocket.md §5.5) while something is in flight.

import { navigate } from "../app.js";
import { api, live, qs } from "../api.js";
import {
  act, badge, clear, confirmDialog, dl, emptyState, fmtDuration, fmtTime, h, jsonBlock, link,
  pageHead, panel, parseTime, table, throttle, timeEl,
} from "../ui.js";

// rest-api.md §2.3: the statuses the list accepts.
const STATUSES = ["running", "waiting", "waiting_for_capacity", "paused", "completed", "failed", "cancelled"];
const TERMINAL = new Set(["completed", "failed", "cancelled"]);
const RANGES = [["", "Any time"], ["15m", "Last 15 minutes"], ["1h", "Last hour"], ["24h", "Last 24 hours"], ["7d", "Last 7 days"]];
const RANGE_MS = { "15m": 9e5, "1h": 36e5, "24h": 864e5, "7d": 6048e5 };
const PAGE = 25;

export function runDuration(r) {
  const start = parseTime(r.started_at) ?? parseTime(r.created_at);
  const end = parseTime(r.ended_at) ?? (TERMINAL.has(r.status) ? null : Date.now());
  return start !== null && end !== null ? end - start : null;
}

export function runsTable(runs, { showFunction = true, empty = "No runs match." } = {}) {
  return table([
    { label: "Run", cell: (r) => link(`/runs/${encodeURIComponent(r.id)}`, h("span", { class: "mono trunc" }, r.id)) },
    showFunction ? { label: "Function", cell: (r) => link(`/functions/${encodeURIComponent(r.function_id)}`, r.function_id) } : null,
    { label: "Status", cell: (r) => badge(r.status) },
    { label: "Trigger", cell: (r) => h("span", { class: "mono small" }, r.event_name || "—"), class: "hide-sm" },
    { label: "Attempt", cell: (r) => `${r.attempt}/${r.max_attempts}`, class: "num hide-sm" },
    { label: "Started", cell: (r) => timeEl(r.created_at), class: "nowrap" },
    { label: "Duration", cell: (r) => fmtDuration(runDuration(r)), class: "num nowrap hide-sm" },
  ].filter(Boolean), runs, { empty });
}

// ---- list -------------------------------------------------------------------------------------

export async function renderList(el, ctx) {
  const q = ctx.query;
  const state = {
    status: q.get("status") || "", function_id: q.get("function_id") || "", range: q.get("range") || "",
    search: q.get("search") || "", cursor: q.get("cursor") || "",
  };
  const back = []; // cursors of the pages before this one (the API pages forwards only)
  const fns = (await api.rpc("IronflowService", "ListFunctions", { limit: 1000 })).functions || [];

  const status = h("select", { id: "f-status", "aria-label": "Status" }, h("option", { value: "" }, "All statuses"),
    STATUSES.map((s) => h("option", { value: s }, s.replace(/_/g, " "))));
  const fn = h("select", { id: "f-function", "aria-label": "Function" }, h("option", { value: "" }, "All functions"),
    fns.map((f) => h("option", { value: f.id }, f.name && f.name !== f.id ? `${f.name} (${f.id})` : f.id)));
  const range = h("select", { id: "f-range", "aria-label": "Time range" }, RANGES.map(([v, l]) => h("option", { value: v }, l)));
  const search = h("input", { id: "f-search", type: "search", placeholder: "Run id, function or event name", "aria-label": "Search" });
  status.value = state.status; fn.value = state.function_id; range.value = state.range; search.value = state.search;
  const results = h("div");
  const count = h("span", { class: "sub" });

  const load = async () => {
    const since = RANGE_MS[state.range] ? new Date(Date.now() - RANGE_MS[state.range]).toISOString() : "";
    const out = await api.get(`/api/v1/runs${qs({ status: state.status, function_id: state.function_id, search: state.search, since, limit: PAGE, cursor: state.cursor })}`);
    if (!ctx.alive()) return;
    ctx.setQuery({ status: state.status, function_id: state.function_id, range: state.range, search: state.search, cursor: state.cursor });
    count.textContent = `${out.total_count ?? out.count} run${(out.total_count ?? out.count) === 1 ? "" : "s"}`;
    const newer = h("button", { class: "btn small", type: "button", disabled: !state.cursor, "data-action": "newer" }, "← Newer");
    const older = h("button", { class: "btn small", type: "button", disabled: !out.next_cursor, "data-action": "older" }, "Older →");
    newer.addEventListener("click", () => { state.cursor = back.pop() || ""; load(); });
    older.addEventListener("click", () => { back.push(state.cursor); state.cursor = out.next_cursor; load(); });
    clear(results, runsTable(out.runs || [], { empty: "No runs match these filters." }),
      h("div", { class: "pager" }, newer, older));
  };
  const refilter = () => {
    Object.assign(state, { status: status.value, function_id: fn.value, range: range.value, search: search.value.trim(), cursor: "" });
    back.length = 0;
    load().catch(showError);
  };
  const showError = (e) => clear(results, h("div", { class: "state-error", role: "alert" }, e.message));
  for (const s of [status, fn, range]) s.addEventListener("change", refilter);
  let typing;
  search.addEventListener("input", () => { clearTimeout(typing); typing = setTimeout(refilter, 300); });
  ctx.onCleanup(() => clearTimeout(typing));

  await load();
  clear(el, pageHead("Runs", { sub: count }),
    h("div", { class: "filters", role: "search" },
      h("label", { class: "field" }, "Status", status), h("label", { class: "field" }, "Function", fn),
      h("label", { class: "field" }, "Time", range), h("label", { class: "field grow" }, "Search", search)),
    panel(null, results, { flush: true }));
  // Live: the first page follows new and finishing runs.
  const refresh = throttle(() => { if (ctx.alive() && !state.cursor) load().catch(() => {}); }, 1500);
  ctx.onCleanup(live.subscribe("system.run.>", refresh));
}

// ---- detail -----------------------------------------------------------------------------------

/** Lay steps out on one time axis; overlapping invoke steps get separate lanes (parallel branches). */
export function layoutSteps(run, steps) {
  const now = Date.now();
  const rows = steps.map((s) => {
    let start = parseTime(s.started_at);
    let end = parseTime(s.ended_at);
    const kind = s.step_type;
    if (kind === "sleep" && end === null) end = Math.min(parseTime(s.sleep_until) ?? now, now);
    if (start !== null && end === null) end = TERMINAL.has(s.status) ? start + (s.duration_ms || 0) : now;
    return { s, start, end, kind };
  });
  const known = rows.filter((r) => r.start !== null);
  // The axis starts when the run started (queue time before it is in the summary).
  const t0 = Math.min(parseTime(run.started_at) ?? parseTime(run.created_at) ?? Infinity, ...known.map((r) => r.start));
  const runEnd = parseTime(run.ended_at) ?? (TERMINAL.has(run.status) ? null : now);
  const t1 = Math.max(runEnd ?? 0, ...known.map((r) => r.end), t0 + 1);
  const laneEnds = [];
  for (const r of rows) {
    r.lane = 0;
    r.parallel = false;
    if (r.start === null || r.kind !== "invoke") continue;
    let lane = laneEnds.findIndex((e) => e <= r.start);
    if (lane < 0) { lane = laneEnds.length; laneEnds.push(r.end); } else laneEnds[lane] = r.end;
    r.lane = lane;
  }
  // A step is on a parallel branch when its time overlaps another step's (step.parallel / map).
  const timed = rows.filter((r) => r.start !== null && r.kind === "invoke");
  for (const a of timed) a.parallel = timed.some((b) => b !== a && a.start < b.end && b.start < a.end);
  return { rows, t0, t1 };
}

function barClass(r) {
  if (r.kind === "sleep" || r.kind === "wait_for_event") return r.s.status === "completed" ? "gap" : "waiting";
  if (r.s.status === "failed" || r.s.status === "timed_out") return "bad";
  if (r.s.status === "running") return "running";
  return "ok";
}

const KIND_LABEL = { sleep: "sleep", wait_for_event: "wait", invoke_function: "invoke", compensate: "undo" };

function timeline(run, steps, onSelect) {
  if (!steps.length) {
    return h("div", { "data-role": "timeline" }, emptyState("No steps recorded yet.",
      TERMINAL.has(run.status) ? "The handler finished without durable steps." : "Steps appear here as the worker reports them."));
  }
  const { rows, t0, t1 } = layoutSteps(run, steps);
  const span = t1 - t0;
  const axis = h("div", { class: "tl-axis", "aria-hidden": "true" }, h("span", null, "Step"),
    h("div", { class: "ticks" }, [0, 0.25, 0.5, 0.75, 1].map((f) => h("span", null, f ? `+${fmtDuration(span * f)}` : "0"))),
    h("span", { class: "tl-dur" }, "Duration"));
  const list = rows.map((r) => {
    const bar = h("div", { class: `tl-bar ${barClass(r)}` });
    if (r.start !== null) {
      bar.style.left = `${(100 * (r.start - t0)) / span}%`;
      bar.style.width = `${Math.max(0.4, (100 * (r.end - r.start)) / span)}%`;
    } else bar.hidden = true;
    const dur = r.kind === "sleep" || r.kind === "wait_for_event" ? (r.start !== null ? r.end - r.start : null) : r.s.duration_ms;
    const row = h("div", { class: `tl-row${r.parallel ? " parallel" : ""}`, role: "button", tabindex: "0", "data-step": r.s.step_id,
      "aria-label": `${r.s.name}: ${r.s.status}, ${fmtDuration(dur)}` },
      h("div", { class: "tl-name" }, h("span", { class: `tl-dot ${barClass(r)}`, title: r.s.status }),
        h("span", { class: "n", title: `${r.s.name} (${r.s.status})` }, r.s.name),
        KIND_LABEL[r.kind] ? h("span", { class: "tl-lane" }, KIND_LABEL[r.kind]) : null,
        r.parallel ? h("span", { class: "tl-lane par", title: "parallel branch" }, `∥ ${r.lane + 1}`) : null),
      h("div", { class: "tl-track" }, bar),
      h("div", { class: "tl-dur" }, fmtDuration(dur)));
    const pick = () => onSelect(r.s, row);
    row.addEventListener("click", pick);
    row.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); pick(); } });
    return row;
  });
  return h("div", { class: "timeline", "data-role": "timeline" }, axis, list);
}

function stepDetail(s) {
  return h("div", { class: "step-detail" },
    h("h3", null, `Step “${s.name}”`),
    dl([["Step id", h("span", { class: "mono" }, s.step_id)], ["Type", s.step_type], ["Status", badge(s.status)],
      ["Attempt", String(s.attempt)], ["Started", fmtTime(s.started_at)], ["Ended", fmtTime(s.ended_at)],
      ["Sleeps until", s.sleep_until ? fmtTime(s.sleep_until) : undefined],
      ["Waits for", s.wait_event_name || undefined],
      ["Child run", s.child_run_id ? link(`/runs/${encodeURIComponent(s.child_run_id)}`, s.child_run_id) : undefined],
      ["Patched", s.patched_at ? `${fmtTime(s.patched_at)} by ${s.patched_by || "operator"}` : undefined]]),
    s.error ? [h("h3", null, "Error"), errorBox(s.error)] : null,
    s.output !== null && s.output !== undefined ? [h("h3", null, "Output"), jsonBlock(s.output)] : null);
}

function errorBox(err) {
  if (typeof err !== "object" || err === null) return h("div", { class: "error-box" }, h("div", { class: "msg" }, String(err)));
  return h("div", { class: "error-box" },
    h("div", { class: "msg" }, err.message || "error"),
    h("div", { class: "small muted" }, [err.code ? `code ${err.code}` : null, err.retryable !== undefined ? (err.retryable ? "retryable" : "not retryable") : null].filter(Boolean).join(" · ")),
    err.stack ? h("pre", { class: "json stack" }, err.stack) : null,
    err.details ? jsonBlock(err.details) : null);
}

function attempts(run, steps) {
  const by = new Map();
  for (const s of steps) {
    const a = by.get(s.attempt) || { attempt: s.attempt, steps: 0, failed: null, last: null };
    a.steps++;
    if (s.status === "failed" && !a.failed) a.failed = s;
    a.last = s.ended_at || s.started_at || a.last;
    by.set(s.attempt, a);
  }
  if (!by.has(run.attempt)) by.set(run.attempt, { attempt: run.attempt, steps: 0, failed: null, last: null });
  const list = [...by.values()].sort((a, b) => a.attempt - b.attempt);
  return table([
    { label: "Attempt", cell: (a) => `${a.attempt} of ${run.max_attempts}`, class: "nowrap" },
    { label: "Steps", cell: (a) => String(a.steps), class: "num" },
    { label: "Outcome", cell: (a) => (a.failed ? h("span", null, badge("failed"), " ", a.failed.name) : a.attempt === run.attempt ? badge(run.status) : badge("retrying")) },
    { label: "Last activity", cell: (a) => (a.last ? timeEl(a.last) : "—"), class: "nowrap" },
  ], list);
}

function actions(run, reload) {
  const btn = (label, action, cls) => h("button", { class: `btn ${cls || ""}`, type: "button", "data-action": action }, label);
  const out = [];
  const s = run.status;
  const wire = (b, title, text, label, fn, done, danger) => {
    b.addEventListener("click", async () => {
      if (!(await confirmDialog(title, text, label, danger))) return;
      await act(b, fn, done);
      reload();
    });
    out.push(b);
  };
  if (!TERMINAL.has(s)) {
    if (s !== "paused") {
      wire(btn("Pause", "pause"), "Pause this run?", "The run stops before its next step and waits until you resume it.",
        "Pause", () => api.rpc("IronflowService", "PauseRun", { runId: run.id }), "Run paused");
    } else {
      wire(btn("Resume", "resume", "primary"), "Resume this run?", "The run continues from its next step.",
        "Resume", () => api.rpc("IronflowService", "ResumeRun", { runId: run.id }), "Run resumed");
    }
    wire(btn("Cancel", "cancel", "danger"), "Cancel this run?", "A cancelled run stops for good; its worker's lease is fenced out.",
      "Cancel run", () => api.rpc("IronflowService", "CancelRun", { id: run.id, reason: "cancelled from the dashboard" }), "Run cancelled", true);
  }
  const rerun = btn("Rerun", "rerun");
  rerun.addEventListener("click", async () => {
    if (!(await confirmDialog("Rerun with the same input?", `Starts a new run of ${run.function_id} with this run's input.`, "Rerun"))) return;
    await act(rerun, async () => {
      const fresh = await api.post(`/api/v1/runs/${encodeURIComponent(run.id)}/rerun`, {});
      navigate(`/runs/${encodeURIComponent(fresh.id)}`);
    }, "New run started");
  });
  out.push(rerun);
  return out;
}

export async function renderDetail(el, ctx) {
  const id = ctx.params[0];
  let selected = null;
  const body = h("div");
  const head = h("div");
  const paint = (run) => {
    const steps = run.steps || [];
    const detail = h("div");
    const select = (s, row) => {
      selected = s.step_id;
      for (const r of body.querySelectorAll(".tl-row.selected")) r.classList.remove("selected");
      row.classList.add("selected");
      clear(detail, stepDetail(s));
    };
    clear(head, pageHead(run.function_id, {
      crumbs: [link("/runs", "Runs"), " / ", h("span", { class: "mono" }, run.id)],
      sub: badge(run.status, { "data-role": "run-status" }),
      actions: actions(run, () => reloadNow()),
    }));
    const tl = timeline(run, steps, select);
    clear(body,
      run.error ? panel("Error", errorBox(run.error)) : null,
      h("div", { class: "grid two" },
        panel("Summary", dl([
          ["Function", link(`/functions/${encodeURIComponent(run.function_id)}`, `${run.function_id} v${run.function_version}`)],
          ["Trigger", run.event_id ? link(`/events/${encodeURIComponent(run.event_id)}`, run.event_name || run.event_id) : run.event_name],
          ["Status", h("span", null, badge(run.status), run.pause_reason ? ` (${run.pause_reason})` : "")],
          ["Attempt", `${run.attempt} of ${run.max_attempts}`],
          ["Worker", run.worker_id || undefined],
          ["Parent run", run.parent_run_id ? link(`/runs/${encodeURIComponent(run.parent_run_id)}`, run.parent_run_id) : undefined],
          ["Created", fmtTime(run.created_at)], ["Started", fmtTime(run.started_at)], ["Ended", fmtTime(run.ended_at)],
          ["Duration", fmtDuration(runDuration(run))],
          ["Cancelled because", run.cancellation_cause || undefined],
        ])),
        panel("Attempts", attempts(run, steps), { flush: true })),
      panel(`Steps (${steps.length})`, [tl, detail]),
      h("div", { class: "grid two" }, panel("Input", jsonBlock(run.input)), panel("Output", run.output === null || run.output === undefined
        ? h("p", { class: "muted" }, TERMINAL.has(run.status) ? "No output." : "Not finished yet.") : jsonBlock(run.output))));
    if (selected) {
      const row = [...body.querySelectorAll("[data-step]")].find((r) => r.dataset.step === selected);
      const s = steps.find((x) => x.step_id === selected);
      if (row && s) select(s, row);
    }
  };
  const reloadNow = async () => {
    try {
      const run = await api.get(`/api/v1/runs/${encodeURIComponent(id)}`);
      if (ctx.alive()) paint(run);
    } catch (e) { /* the next change or tick retries */ }
  };
  paint(await api.get(`/api/v1/runs/${encodeURIComponent(id)}`));
  clear(el, head, body);
  // Live while in flight: every change of this run arrives as a system event.
  const refresh = throttle(reloadNow, 300);
  ctx.onCleanup(live.subscribe(`system.run.${id}.>`, refresh));
  const timer = setInterval(() => {
    const st = document.querySelector("[data-role=run-status]");
    if (st && !TERMINAL.has(st.textContent.trim())) refresh();
  }, 3000);
  ctx.onCleanup(() => clearInterval(timer));
}
