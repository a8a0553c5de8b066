// Events: list with filters and paging, detail (payload and the runs it started), an emit form
// that validates its JSON before sending, and a live tail over /ws.

import { api, live, qs } from "../api.js";
import { badge, clear, dl, fmtTime, h, jsonBlock, jsonPreview, link, pageHead, panel, table, timeEl } from "../ui.js";
import { runsTable } from "./runs.js";

const PAGE = 25;
const TAIL_MAX = 50;

function emitForm(onDone) {
  const name = h("input", { id: "emit-name", type: "text", placeholder: "order.placed", required: true, autocomplete: "off", spellcheck: "false" });
  const data = h("textarea", { id: "emit-data", rows: "7", spellcheck: "false" }, "{\n  \n}");
  const err = h("div", { class: "form-error", "data-role": "emit-error", role: "alert", hidden: true });
  const result = h("div", { "data-role": "emit-result", "aria-live": "polite" });
  const submit = h("button", { class: "btn primary", type: "submit", id: "emit-submit" }, "Emit event");
  const fail = (msg) => { err.hidden = false; err.textContent = msg; };
  const form = h("form", { class: "panel", "data-role": "emit-form", hidden: true, novalidate: true },
    h("h2", null, "Emit an event"),
    h("div", { class: "form-row" }, h("label", { class: "field", for: "emit-name" }, "Event name"), name),
    h("div", { class: "form-row" }, h("label", { class: "field", for: "emit-data" }, "Data (JSON)"), data),
    err, h("div", { class: "filters" }, submit), result);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    err.hidden = true;
    const n = name.value.trim();
    if (!n) return fail("The event needs a name.");
    if (/\s/.test(n)) return fail("Event names cannot contain whitespace.");
    let payload;
    try {
      payload = data.value.trim() ? JSON.parse(data.value) : {};
    } catch (ex) {
      return fail(`Data is not valid JSON: ${ex.message}`);
    }
    submit.disabled = true;
    try {
      const out = await api.post("/api/v1/events", { name: n, data: payload });
      const runs = out.run_ids || [];
      clear(result, h("p", null, "Emitted ", link(`/events/${encodeURIComponent(out.event_id)}`, h("span", { class: "mono" }, out.event_id)),
        runs.length ? [". It started ", runs.map((r, i) => [i ? ", " : "", link(`/runs/${encodeURIComponent(r)}`, h("span", { class: "mono" }, r))])]
          : ". No function listens to this event."));
      // The run links, marked for the browser check (scripts/dashboard_check.py).
      for (const a of result.querySelectorAll("a[href^='/runs/']")) a.dataset.role = "emitted-run";
      onDone();
    } catch (ex) {
      fail(ex.message);
    } finally {
      submit.disabled = false;
    }
  });
  return form;
}

export async function renderList(el, ctx) {
  const q = ctx.query;
  const state = { name: q.get("name") || "", search: q.get("search") || "", cursor: q.get("cursor") || "", before: "" };
  const results = h("div");
  const count = h("span", { class: "sub" });
  const load = async () => {
    const out = await api.get(`/api/v1/events${qs({ name: state.name, search: state.search, limit: PAGE, cursor: state.cursor, before: state.before })}`);
    if (!ctx.alive()) return;
    ctx.setQuery({ name: state.name, search: state.search, cursor: state.cursor });
    count.textContent = `${out.approx_total ?? out.count}${out.approx_total_capped ? "+" : ""} events`;
    const newer = h("button", { class: "btn small", type: "button", disabled: !out.has_prev, "data-action": "newer" }, "← Newer");
    const older = h("button", { class: "btn small", type: "button", disabled: !out.has_next, "data-action": "older" }, "Older →");
    newer.addEventListener("click", () => { state.before = out.prev_cursor || ""; state.cursor = ""; load(); });
    older.addEventListener("click", () => { state.cursor = out.next_cursor || ""; state.before = ""; load(); });
    clear(results, table([
      { label: "Event", cell: (e) => link(`/events/${encodeURIComponent(e.id)}`, h("strong", { class: "mono small" }, e.name)) },
      { label: "Data", cell: (e) => h("span", { class: "mono small trunc muted" }, jsonPreview(e.data)), class: "hide-sm" },
      { label: "Source", cell: (e) => e.source || "—", class: "hide-sm" },
      { label: "Received", cell: (e) => timeEl(e.timestamp), class: "nowrap" },
    ], out.events || [], { empty: state.name || state.search ? "No events match." : "No events yet. Emit one above." }),
    h("div", { class: "pager" }, newer, older));
  };
  const name = h("input", { id: "f-name", type: "search", placeholder: "exact name", "aria-label": "Event name", value: state.name });
  const search = h("input", { id: "f-search", type: "search", placeholder: "name, id or payload text", "aria-label": "Search", value: state.search });
  let typing;
  const refilter = () => {
    clearTimeout(typing);
    typing = setTimeout(() => {
      Object.assign(state, { name: name.value.trim(), search: search.value.trim(), cursor: "", before: "" });
      load().catch((e) => clear(results, h("div", { class: "state-error", role: "alert" }, e.message)));
    }, 300);
  };
  name.addEventListener("input", refilter);
  search.addEventListener("input", refilter);
  ctx.onCleanup(() => clearTimeout(typing));

  const form = emitForm(() => { if (!state.cursor && !state.before) load(); });
  const open = h("button", { class: "btn primary", type: "button", "data-action": "emit-open", "aria-expanded": "false" }, "Emit event");
  open.addEventListener("click", () => {
    form.hidden = !form.hidden;
    open.setAttribute("aria-expanded", String(!form.hidden));
    if (!form.hidden) form.querySelector("#emit-name").focus();
  });

  // Live tail: every event as it is stored (websocket.md §2, pattern "events:>").
  const tailList = h("div", { class: "tail", "data-role": "tail" }, h("div", { class: "empty" }, "Waiting for events…"));
  let tailCount = 0;
  const paused = h("input", { type: "checkbox", id: "tail-pause" });
  ctx.onCleanup(live.subscribe("events:>", (msg) => {
    if (paused.checked) return;
    if (!tailCount++) tailList.replaceChildren();
    const at = new Date().toLocaleTimeString();
    tailList.prepend(h("div", { class: "tail-item fresh" }, h("span", { class: "muted small" }, at),
      link(`/events/${encodeURIComponent(msg.eventId)}`, h("span", { class: "mono small" }, msg.topic)),
      h("span", { class: "data" }, jsonPreview(msg.data, 160))));
    while (tailList.children.length > TAIL_MAX) tailList.lastChild.remove();
    if (!state.cursor && !state.before) throttledLoad();
  }));
  let pending = null;
  const throttledLoad = () => { if (!pending) pending = setTimeout(() => { pending = null; if (ctx.alive()) load().catch(() => {}); }, 1000); };
  ctx.onCleanup(() => clearTimeout(pending));

  await load();
  clear(el, pageHead("Events", { sub: count, actions: open }), form,
    h("div", { class: "filters", role: "search" }, h("label", { class: "field grow" }, "Name", name), h("label", { class: "field grow" }, "Search", search)),
    panel(null, results, { flush: true }),
    panel("Live tail", tailList, { flush: true, actions: h("label", { class: "small muted" }, paused, " Pause") }));
}

export async function renderDetail(el, ctx) {
  const id = ctx.params[0];
  const [ev, runs] = await Promise.all([
    api.get(`/api/v1/events/${encodeURIComponent(id)}`),
    api.get(`/api/v1/runs${qs({ event_id: id, limit: 50 })}`),
  ]);
  clear(el,
    pageHead(ev.name, { crumbs: [link("/events", "Events"), " / ", h("span", { class: "mono" }, ev.id)],
      sub: ev.processed ? badge("processed", { class: "badge ok" }) : badge("pending") }),
    h("div", { class: "grid two" },
      panel("Details", dl([
        ["Id", h("span", { class: "mono" }, ev.id)], ["Name", ev.name], ["Source", ev.source || "—"],
        ["Received", fmtTime(ev.timestamp)], ["Schema version", String(ev.version ?? 1)],
        ["Idempotency key", ev.idempotency_key || undefined], ["Emitted by", ev.emittedBy || ev.emitted_by || undefined],
        ["Sequence", ev.sequence !== undefined ? String(ev.sequence) : undefined],
      ])),
      panel("Payload", jsonBlock(ev.data, { label: "Event data" }))),
    ev.metadata ? panel("Metadata", jsonBlock(ev.metadata)) : null,
    panel(`Runs started (${(runs.runs || []).length})`, runsTable(runs.runs || [], { empty: "This event started no runs." }), { flush: true }));
}
