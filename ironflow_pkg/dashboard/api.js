// Talking to the server: REST, Connect JSON, the read-only SQL endpoint and the /ws socket.
// The API key (when auth is on) lives in sessionStorage and goes out as a Bearer token.

const KEY_STORE = "ironflow.apiKey";
const ENV_STORE = "ironflow.environment";

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message || `request failed (${status})`);
    this.status = status;
    this.code = code || "unknown";
  }
}

export const session = {
  get key() { return sessionStorage.getItem(KEY_STORE) || ""; },
  set key(v) { v ? sessionStorage.setItem(KEY_STORE, v) : sessionStorage.removeItem(KEY_STORE); },
  get env() { return sessionStorage.getItem(ENV_STORE) || ""; },
  set env(v) { v ? sessionStorage.setItem(ENV_STORE, v) : sessionStorage.removeItem(ENV_STORE); },
  /** The environment the server resolved for this tab (echoed in X-Ironflow-Environment-ID). */
  resolvedEnv: "",
};

// "unauthenticated" when the server says the key is missing or wrong (the shell shows sign-in);
// "environment" when the server names the environment this tab works in.
export const authEvents = new EventTarget();

function headers(extra) {
  const h = { Accept: "application/json", ...extra };
  if (session.key) h.Authorization = `Bearer ${session.key}`;
  if (session.env) h["X-Ironflow-Environment"] = session.env;
  return h;
}

async function request(method, path, body, extraHeaders) {
  const init = { method, headers: headers(extraHeaders), cache: "no-store" };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let resp;
  try {
    resp = await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, "unavailable", "The server cannot be reached. Is it running?");
  }
  const env = resp.headers.get("X-Ironflow-Environment-ID");
  if (env && env !== session.resolvedEnv) {
    session.resolvedEnv = env;
    authEvents.dispatchEvent(new CustomEvent("environment", { detail: env }));
  }
  const text = await resp.text();
  let data = null;
  if (text) {
    try { data = JSON.parse(text); } catch { data = { message: text.slice(0, 300) }; }
  }
  if (!resp.ok) {
    if (resp.status === 401) authEvents.dispatchEvent(new Event("unauthenticated"));
    const msg = (data && (data.message || data.error)) || resp.statusText;
    throw new ApiError(resp.status, data && data.code, msg);
  }
  return data;
}

export const api = {
  get: (path) => request("GET", path),
  post: (path, body) => request("POST", path, body === undefined ? {} : body),
  put: (path, body) => request("PUT", path, body),
  patch: (path, body) => request("PATCH", path, body),
  del: (path) => request("DELETE", path),
  /** A Connect unary call with the JSON codec (connect.md §2). */
  rpc: (service, method, body) =>
    request("POST", `/ironflow.v1.${service}/${method}`, body || {}, { "Connect-Protocol-Version": "1" }),
  /** Read-only SQL (rest-api.md §2.6): rows come back as arrays of strings. */
  sql: (query, maxRows = 1000) => request("POST", "/api/v1/sql", { query, max_rows: maxRows }),
};

/** Rows of a SQL answer as objects keyed by column name. */
export function sqlObjects(result) {
  return result.rows.map((row) => Object.fromEntries(result.columns.map((c, i) => [c, row[i]])));
}

export function qs(params) {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== "") p.set(k, String(v));
  }
  const s = p.toString();
  return s ? `?${s}` : "";
}

/**
 * One shared /ws connection (websocket.md §2) for every live view. `subscribe(pattern, onItem)`
 * returns an unsubscribe function; subscriptions are re-sent after a reconnect.
 */
const LINGER_MS = 5000;

class Live {
  constructor() {
    this.ws = null;
    this.subs = new Map(); // local id -> {pattern, onItem, serverId}
    this.pending = []; // local ids waiting for a subscription_result, in order
    this.nextId = 1;
    this.retry = 0;
    this.status = new EventTarget();
  }

  subscribe(pattern, onItem) {
    const id = this.nextId++;
    this.subs.set(id, { pattern, onItem, serverId: null });
    this.connect();
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.send(id);
    return () => this.unsubscribe(id);
  }

  unsubscribe(id) {
    const sub = this.subs.get(id);
    this.subs.delete(id);
    if (sub && sub.serverId && this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify({ type: "unsubscribe", subscriptionId: sub.serverId }));
    }
    // Keep an idle socket a little while: the next page usually subscribes again at once.
    clearTimeout(this.linger);
    if (this.subs.size === 0 && this.ws) this.linger = setTimeout(() => this.closeIdle(), LINGER_MS);
  }

  closeIdle() {
    if (this.subs.size || !this.ws) return;
    const ws = this.ws;
    this.ws = null;
    ws.close(1000);
    this.setOnline(false);
  }

  send(id) {
    const sub = this.subs.get(id);
    this.pending.push(id);
    this.ws.send(JSON.stringify({ type: "subscribe", subscription: { pattern: sub.pattern, options: {} } }));
  }

  connect() {
    if (this.ws || this.subs.size === 0) return;
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const q = new URLSearchParams();
    if (session.key) q.set("token", session.key);
    if (session.env) q.set("env", session.env);
    const query = q.toString();
    const ws = new WebSocket(`${proto}//${location.host}/ws${query ? "?" + query : ""}`);
    this.ws = ws;
    this.pending = [];
    ws.onopen = () => {
      this.retry = 0;
      this.setOnline(true);
      for (const [id, sub] of this.subs) { sub.serverId = null; this.send(id); }
    };
    ws.onmessage = (m) => this.receive(m.data);
    ws.onclose = () => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.setOnline(false);
      if (this.subs.size) {
        const wait = Math.min(10000, 500 * 2 ** this.retry++);
        setTimeout(() => this.connect(), wait);
      }
    };
  }

  receive(raw) {
    let msg;
    try { msg = JSON.parse(raw); } catch { return; }
    if (msg.type === "subscription_result") {
      for (const r of msg.results || []) {
        const id = this.pending.shift();
        const sub = this.subs.get(id);
        if (!sub) continue;
        if (r.status === "ok") sub.serverId = r.subscriptionId;
        else console.warn("subscription refused", r.pattern, r.message);
      }
    } else if (msg.type === "event") {
      for (const sub of this.subs.values()) {
        if (sub.serverId === msg.subscriptionId) sub.onItem(msg);
      }
    }
  }

  setOnline(on) {
    this.status.dispatchEvent(new CustomEvent("change", { detail: on }));
  }
}

export const live = new Live();
