// The shell: boots the app, asks the server whether a key is needed, routes URLs to views
// (history API, so every page has a URL that can be bookmarked) and keeps the nav in step.
//
// Contract with scripts/dashboard_check.py: <html data-view="<name>" data-state="loading|ready|error">.

import { api, authEvents, live, session } from "./api.js";
import { clear, errorState, h } from "./ui.js";
import * as overview from "./views/overview.js";
import * as functions from "./views/functions.js";
import * as runs from "./views/runs.js";
import * as events from "./views/events.js";
import * as workers from "./views/workers.js";
import * as stores from "./views/stores.js";
import * as misc from "./views/misc.js";

// [pattern, view name, nav entry, render(main, ctx)]
const ROUTES = [
  [/^\/$/, "overview", "overview", overview.render],
  [/^\/functions\/?$/, "functions", "functions", functions.renderList],
  [/^\/functions\/([^/]+)$/, "function", "functions", functions.renderDetail],
  [/^\/runs\/?$/, "runs", "runs", runs.renderList],
  [/^\/runs\/([^/]+)$/, "run", "runs", runs.renderDetail],
  [/^\/events\/?$/, "events", "events", events.renderList],
  [/^\/events\/([^/]+)$/, "event", "events", events.renderDetail],
  [/^\/workers\/?$/, "workers", "workers", workers.render],
  [/^\/kv\/?$/, "kv", "kv", stores.renderBuckets],
  [/^\/kv\/([^/]+)$/, "kv-bucket", "kv", stores.renderBucket],
  [/^\/config\/?$/, "config", "config", stores.renderConfigs],
  [/^\/config\/([^/]+)$/, "config-doc", "config", stores.renderConfig],
  [/^\/secrets\/?$/, "secrets", "secrets", stores.renderSecrets],
  [/^\/sql\/?$/, "sql", "sql", stores.renderSql],
  [/^\/(streams|projections|webhooks|audit)(\/.*)?$/, "unavailable", null, misc.renderUnavailable],
];

const root = document.documentElement;
const main = document.getElementById("main");
const nav = document.getElementById("nav");
let server = { authRequired: false, version: "", features: [] };
let cleanups = [];
let generation = 0;

function setState(view, state) {
  root.dataset.view = view;
  root.dataset.state = state;
}

function match(pathname) {
  for (const [re, view, navKey, render] of ROUTES) {
    const m = re.exec(pathname);
    if (m) return { view, navKey, render, params: m.slice(1).map(decodeURIComponent) };
  }
  return { view: "notfound", navKey: null, render: misc.renderNotFound, params: [] };
}

async function show() {
  const gen = ++generation;
  for (const fn of cleanups.splice(0)) { try { fn(); } catch (e) { console.warn(e); } }
  closeMenu();
  if (server.authRequired && !session.key) return signIn();
  const url = new URL(location.href);
  const route = match(url.pathname);
  for (const a of nav.querySelectorAll("a[data-nav]")) {
    if (a.dataset.nav === route.navKey) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  setState(route.view, "loading");
  clear(main, h("div", { class: "loading" }, "Loading…"));
  const ctx = {
    params: route.params,
    query: url.searchParams,
    server,
    alive: () => gen === generation,
    onCleanup: (fn) => cleanups.push(fn),
    // Replace the query string without a new history entry (filters, paging).
    setQuery(params) {
      const u = new URL(location.href);
      u.search = new URLSearchParams(Object.entries(params).filter(([, v]) => v !== "" && v != null)).toString();
      history.replaceState(null, "", u);
    },
  };
  try {
    const el = h("div", { class: "view" });
    await route.render(el, ctx);
    if (gen !== generation) return;
    clear(main, el);
    document.title = `${(main.querySelector("h1") || {}).textContent || "Ironflow"} · Ironflow`;
    setState(route.view, "ready");
  } catch (e) {
    if (gen !== generation) return;
    if (e.status === 401) return; // the sign-in screen takes over
    console.warn(e);
    clear(main, errorState(e));
    setState(route.view, "error");
  }
}

export function navigate(href, replace = false) {
  if (replace) history.replaceState(null, "", href);
  else history.pushState(null, "", href);
  show();
  main.focus({ preventScroll: true });
  window.scrollTo(0, 0);
}

function signIn() {
  setState("signin", "loading");
  const input = h("input", { id: "signin-key", type: "password", autocomplete: "off", placeholder: "ifkey_…", required: true, "aria-describedby": "signin-help" });
  const err = h("div", { class: "form-error", "data-role": "signin-error", role: "alert", hidden: true });
  const submit = h("button", { class: "btn primary", id: "signin-submit", type: "submit" }, "Sign in");
  const form = h("form", { class: "panel" },
    h("h1", null, "Sign in"),
    h("p", { class: "muted", id: "signin-help" }, "This server requires an API key. It is kept in this tab's session storage only."),
    h("div", { class: "form-row" }, h("label", { class: "field", for: "signin-key" }, "API key"), input),
    err, h("div", { class: "actions" }, submit));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    submit.disabled = true;
    session.key = input.value.trim();
    try {
      await api.get("/api/v1/workers"); // any authenticated read proves the key
      await showChrome();
      show();
    } catch (ex) {
      session.key = "";
      err.hidden = false;
      err.textContent = ex.status === 401 || ex.status === 403 ? "That key was not accepted." : ex.message;
      submit.disabled = false;
      input.focus();
    }
  });
  clear(main, h("div", { class: "signin" }, form));
  document.querySelector("[data-action=signout]").hidden = true;
  setState("signin", "ready");
  input.focus();
}

authEvents.addEventListener("environment", (e) => {
  document.querySelector("[data-role=env]").textContent = e.detail;
});

authEvents.addEventListener("unauthenticated", () => {
  // The sign-in form reports a refused key itself; a 401 elsewhere means the key was revoked.
  if (!server.authRequired || root.dataset.view === "signin") return;
  session.key = "";
  generation++;
  signIn();
});

function closeMenu() {
  nav.classList.remove("open");
  document.querySelector("[data-action=menu]").setAttribute("aria-expanded", "false");
}

// Nav entries of areas this server build does not serve (GET /api/v1/capabilities `features`).
const AREA_FEATURE = { streams: "entity-streams", projections: "projections", webhooks: "webhooks", audit: "audit" };

async function showChrome() {
  for (const [nav, feature] of Object.entries(AREA_FEATURE)) {
    const a = document.querySelector(`a[data-nav=${nav}]`);
    const missing = !server.features.includes(feature);
    a.classList.toggle("soon", missing);
    if (missing) a.title = "Not available in this version";
  }
  document.querySelector("[data-role=env]").textContent = session.resolvedEnv || session.env;
  document.querySelector("[data-role=version]").textContent = server.version ? `v${server.version}` : "";
  document.querySelector("[data-action=signout]").hidden = !server.authRequired;
}

async function boot() {
  try {
    const caps = await api.get("/api/v1/capabilities");
    server = { authRequired: !!caps.auth_required, version: caps.version || "", features: caps.features || [] };
  } catch (e) {
    setState("boot", "error");
    clear(main, errorState(e));
    return;
  }
  document.addEventListener("click", (e) => {
    const a = e.target.closest("a[data-link]");
    if (!a || e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
    const url = new URL(a.href, location.href);
    if (url.origin !== location.origin) return;
    e.preventDefault();
    navigate(url.pathname + url.search);
  });
  window.addEventListener("popstate", show);
  document.querySelector("[data-action=menu]").addEventListener("click", (e) => {
    const open = nav.classList.toggle("open");
    e.currentTarget.setAttribute("aria-expanded", String(open));
  });
  document.addEventListener("keydown", (e) => { if (e.key === "Escape") closeMenu(); });
  document.querySelector("[data-action=signout]").addEventListener("click", () => {
    session.key = "";
    navigate("/");
  });
  live.status.addEventListener("change", (e) => {
    document.querySelector("[data-role=live]").classList.toggle("on", e.detail);
  });
  await showChrome();
  show();
}

boot();
