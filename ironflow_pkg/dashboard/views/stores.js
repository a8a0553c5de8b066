// Stores: KV buckets and keys, config documents, secrets (names and dates only — values never
// leave the server), and a read-only SQL console.

import { api } from "../api.js";
import { clear, dl, emptyState, fmtNum, fmtTime, h, jsonBlock, link, pageHead, panel, table, timeEl } from "../ui.js";

const enc = encodeURIComponent;

/** KV values are raw bytes, base64 on read: show JSON when they are JSON, else text, else bytes. */
export function decodeValue(b64) {
  let bytes;
  try {
    bytes = Uint8Array.from(atob(b64 || ""), (c) => c.charCodeAt(0));
  } catch {
    return { kind: "base64", text: b64 };
  }
  let text;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    return { kind: "binary", text: `${bytes.length} bytes (base64) ${b64}` };
  }
  try { return { kind: "json", value: JSON.parse(text) }; } catch { return { kind: "text", text }; }
}

export async function renderBuckets(el) {
  const out = await api.get("/api/v1/kv/buckets");
  const buckets = out.buckets || [];
  clear(el, pageHead("KV buckets", { sub: `${buckets.length} bucket${buckets.length === 1 ? "" : "s"}` }),
    panel(null, table([
      { label: "Bucket", cell: (b) => link(`/kv/${enc(b.name)}`, h("strong", null, b.name)) },
      { label: "Description", cell: (b) => b.description || h("span", { class: "muted" }, "—"), class: "hide-sm" },
      { label: "Keys", cell: (b) => fmtNum(b.values), class: "num" },
      { label: "Bytes", cell: (b) => fmtNum(b.bytes), class: "num hide-sm" },
      { label: "TTL", cell: (b) => (b.ttl_seconds ? `${b.ttl_seconds}s` : "none"), class: "hide-sm" },
      { label: "History", cell: (b) => String(b.history), class: "num hide-sm" },
      { label: "Created", cell: (b) => timeEl(b.created_at), class: "nowrap" },
    ], buckets, { empty: "No KV buckets. Create one with the SDK or POST /api/v1/kv/buckets." }), { flush: true }));
}

export async function renderBucket(el, ctx) {
  const name = ctx.params[0];
  const [bucket, keys] = await Promise.all([
    api.get(`/api/v1/kv/buckets/${enc(name)}`),
    api.get(`/api/v1/kv/buckets/${enc(name)}/keys`),
  ]);
  const valueBox = h("div", null, h("p", { class: "muted" }, "Select a key to see its value."));
  const show = async (key) => {
    clear(valueBox, h("p", { class: "muted" }, "Loading…"));
    try {
      const e = await api.get(`/api/v1/kv/buckets/${enc(name)}/keys/${key.split("/").map(enc).join("/")}`);
      const v = decodeValue(e.value);
      clear(valueBox, h("h3", null, key), dl([["Revision", String(e.revision)], ["Written", fmtTime(e.created_at)], ["Encoding", v.kind]]),
        v.kind === "json" ? jsonBlock(v.value) : h("pre", { class: "json" }, v.text));
    } catch (ex) {
      clear(valueBox, h("div", { class: "state-error", role: "alert" }, ex.message));
    }
  };
  const list = keys.keys || [];
  clear(el, pageHead(name, { crumbs: [link("/kv", "KV"), " / ", name], sub: bucket.description || "" }),
    h("div", { class: "grid two" },
      panel(`Keys (${list.length})`, list.length ? h("div", { class: "table-wrap" }, h("table", null, h("tbody", null,
        list.map((k) => {
          const b = h("button", { class: "btn ghost small mono", type: "button" }, k);
          b.addEventListener("click", () => show(k));
          return h("tr", null, h("td", null, b));
        })))) : emptyState("This bucket is empty."), { flush: true }),
      panel("Value", valueBox)),
    panel("Bucket", dl([["Keys", fmtNum(bucket.values)], ["Bytes", fmtNum(bucket.bytes)], ["TTL", bucket.ttl_seconds ? `${bucket.ttl_seconds}s` : "none"],
      ["History depth", String(bucket.history)], ["Created", fmtTime(bucket.created_at)]])));
}

export async function renderConfigs(el) {
  const out = await api.get("/api/v1/config");
  const docs = out.configs || [];
  clear(el, pageHead("Config", { sub: `${docs.length} document${docs.length === 1 ? "" : "s"}` }),
    panel(null, table([
      { label: "Name", cell: (c) => link(`/config/${enc(c.name)}`, h("strong", null, c.name)) },
      { label: "Revision", cell: (c) => String(c.revision), class: "num" },
      { label: "Updated", cell: (c) => timeEl(c.updatedAt || c.updated_at), class: "nowrap" },
    ], docs, { empty: "No config documents yet." }), { flush: true }));
}

export async function renderConfig(el, ctx) {
  const name = ctx.params[0];
  const doc = await api.get(`/api/v1/config/${enc(name)}`);
  clear(el, pageHead(name, { crumbs: [link("/config", "Config"), " / ", name], sub: `revision ${doc.revision}` }),
    panel("Document", jsonBlock(doc.data)),
    panel(null, dl([["Updated", fmtTime(doc.updatedAt || doc.updated_at)]])));
}

export async function renderSecrets(el) {
  const out = await api.get("/api/v1/secrets");
  const secrets = Array.isArray(out) ? out : out.secrets || [];
  clear(el, pageHead("Secrets", { sub: "Names and dates only: values never leave the server." }),
    panel(null, table([
      { label: "Name", cell: (s) => h("strong", { class: "mono" }, s.name) },
      { label: "Description", cell: (s) => s.description || h("span", { class: "muted" }, "—"), class: "hide-sm" },
      { label: "Revision", cell: (s) => String(s.revision), class: "num" },
      { label: "Created", cell: (s) => timeEl(s.created_at), class: "nowrap hide-sm" },
      { label: "Updated", cell: (s) => timeEl(s.updated_at), class: "nowrap" },
    ], secrets, { empty: "No secrets stored." }), { flush: true }));
}

const SQL_EXAMPLE = "SELECT function_id, status, count(*) AS runs\nFROM runs\nGROUP BY function_id, status\nORDER BY runs DESC";

export async function renderSql(el, ctx) {
  const editor = h("textarea", { id: "sql-query", class: "sql-editor", rows: "6", spellcheck: "false", "aria-label": "SQL query" });
  editor.value = ctx.query.get("q") || SQL_EXAMPLE;
  const run = h("button", { class: "btn primary", type: "submit", id: "sql-run" }, "Run query");
  const out = h("div", { "data-role": "sql-result" });
  const form = h("form", null, editor, h("div", { class: "filters" }, run,
    h("span", { class: "muted small" }, "Read-only: one SELECT over the views events, runs, steps, functions, topic_messages. Ctrl+Enter runs.")));
  const exec = async () => {
    run.disabled = true;
    try {
      const t0 = performance.now();
      const res = await api.sql(editor.value, 1000);
      const ms = Math.round(performance.now() - t0);
      ctx.setQuery({ q: editor.value });
      clear(out, h("p", { class: "muted small" }, `${fmtNum(res.total_rows)} row${res.total_rows === 1 ? "" : "s"}${res.truncated ? " (truncated)" : ""} in ${ms} ms`),
        res.rows.length ? table(res.columns.map((c, i) => ({ label: c, cell: (row) => (row[i] === null ? h("span", { class: "muted" }, "NULL") : h("span", { class: "mono small" }, row[i])) })), res.rows)
          : emptyState("No rows."));
    } catch (e) {
      clear(out, h("div", { class: "form-error", role: "alert", "data-role": "sql-error" }, e.message));
    } finally {
      run.disabled = false;
    }
  };
  form.addEventListener("submit", (e) => { e.preventDefault(); exec(); });
  editor.addEventListener("keydown", (e) => { if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); exec(); } });
  clear(el, pageHead("SQL console"), panel(null, form), panel("Result", out));
  await exec();
}
