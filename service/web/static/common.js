// Shared by every page: the API client with the signed-in token, the sign-in box, notices,
// DOM and formatting helpers, and polling for live updates.

const TOKEN_KEY = "ktsweep.token";
export const TERMINAL_SWEEP_STATES = ["finished", "cancelled", "failed"];
export const ACTIVE_TRIAL_STATES = ["pending", "running"];
export const TRIAL_STATES = ["completed", "running", "pending", "stopped", "failed", "cancelled"];

/** An error answer from the API: its status and the `detail` it sent back. */
export class ApiError extends Error {
  constructor(status, statusText, detail) {
    super(describeDetail(detail) || statusText || `HTTP ${status}`);
    this.status = status;
    this.statusText = statusText;
    this.detail = detail;
  }
}

function describeDetail(detail) {
  if (detail == null) return "";
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) {
    return detail.map((p) => `${p.path || "request"}: ${p.msg}`).join("; ");
  }
  return JSON.stringify(detail);
}

export function getToken() {
  return sessionStorage.getItem(TOKEN_KEY) || localStorage.getItem(TOKEN_KEY) || "";
}

// The ready URL a controller prints (`/?token=...`, as Jupyter's) signs this tab in; the token
// then leaves the address bar, so it is neither bookmarked nor sent on as a referrer.
(function signInFromUrl() {
  const url = new URL(window.location.href);
  const token = url.searchParams.get("token");
  if (!token) return;
  sessionStorage.setItem(TOKEN_KEY, token);
  url.searchParams.delete("token");
  window.history.replaceState(null, "", url.pathname + url.search + url.hash);
})();

function setToken(token, remember) {
  sessionStorage.removeItem(TOKEN_KEY);
  localStorage.removeItem(TOKEN_KEY);
  if (token) (remember ? localStorage : sessionStorage).setItem(TOKEN_KEY, token);
}

/** Calls the JSON API under /api/v1 with the signed-in token; throws ApiError on 4xx/5xx. */
export async function api(path, options = {}) {
  const headers = { Accept: "application/json" };
  const token = getToken();
  if (token) headers.Authorization = `Bearer ${token}`;
  let response;
  try {
    response = await fetch(`/api/v1${path}`, { ...options, headers, cache: "no-store" });
  } catch (error) {
    throw new ApiError(0, "the controller did not answer", `${error.message}; is it still running?`);
  }
  let body = null;
  try {
    body = await response.json();
  } catch (_error) {
    body = null;
  }
  if (!response.ok) throw new ApiError(response.status, response.statusText, body && body.detail);
  return body;
}

/** Every page of a list endpoint, following `next_cursor`. */
export async function apiAll(path, params = {}) {
  const items = [];
  let cursor = null;
  do {
    const query = new URLSearchParams({ ...params, limit: "500" });
    if (cursor) query.set("cursor", cursor);
    const page = await api(`${path}?${query}`);
    items.push(...page.items);
    cursor = page.next_cursor;
  } while (cursor);
  return items;
}

/** Builds an element: el("a", {href: "/x", class: "y"}, "text", child). Text is never parsed. */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value == null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children.flat()) {
    if (child == null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function replace(node, ...children) {
  node.replaceChildren();
  append(node, children);
}

// --- notices ---------------------------------------------------------------------------------

export function showNotice(kind, ...content) {
  const box = document.getElementById("notice");
  box.className = kind;
  const close = el("button", { class: "close", title: "Dismiss", onclick: clearNotice }, "\u00d7");
  replace(box, close, ...content);
}

export function clearNotice() {
  const box = document.getElementById("notice");
  box.className = "";
  box.replaceChildren();
}

/** Says clearly what the API refused and what to do about it. */
export function showApiError(error, doing) {
  const status = error.status ? `${error.status} ${error.statusText || ""}`.trim() : "no answer";
  const parts = [el("strong", {}, `${doing}: the API answered ${status}. `), error.message];
  if (error.status === 401) {
    parts.push(
      el("br"),
      getToken()
        ? "The token you signed in with was not accepted; sign in with one of the tokens in KTSWEEP_API_TOKENS."
        : "Sign in with a token (top right) from KTSWEEP_API_TOKENS, then try again.",
    );
    const input = document.getElementById("token-input");
    if (input) input.focus();
  }
  showNotice("error", ...parts);
}

// --- sign-in box -----------------------------------------------------------------------------

/** Draws the page frame: top bar with the sign-in box, the notice area. */
export function setupPage(crumbs = []) {
  const nav = document.getElementById("crumbs");
  const items = [el("a", { href: "/" }, "Sweeps")];
  for (const crumb of crumbs) items.push(" / ", crumb);
  replace(nav, ...items);
  renderSignIn();
}

function renderSignIn() {
  const box = document.getElementById("signin");
  if (getToken()) {
    replace(
      box,
      el("span", { id: "signed-in" }, "Signed in"),
      el("button", { id: "signout", type: "button", onclick: () => signOut() }, "Sign out"),
    );
    return;
  }
  const input = el("input", {
    id: "token-input",
    type: "password",
    placeholder: "API token",
    autocomplete: "off",
    "aria-label": "API token",
  });
  const remember = el("input", { id: "token-remember", type: "checkbox" });
  const form = el(
    "form",
    {
      id: "signin-form",
      onsubmit: (event) => {
        event.preventDefault();
        const token = input.value.trim();
        if (!token) return;
        setToken(token, remember.checked);
        renderSignIn();
        clearNotice();
        window.dispatchEvent(new Event("ktsweep:token"));
      },
    },
    input,
    " ",
    el("label", { title: "Keep the token in this browser after the tab closes" }, remember, " remember"),
    " ",
    el("button", { id: "signin-button", type: "submit" }, "Sign in"),
  );
  replace(box, form);
}

function signOut() {
  setToken("", false);
  renderSignIn();
  window.dispatchEvent(new Event("ktsweep:token"));
}

// --- formatting ------------------------------------------------------------------------------

export function fmtNumber(value, digits = 4) {
  if (value == null || Number.isNaN(value)) return "\u2013";
  if (typeof value !== "number") return String(value);
  if (Number.isInteger(value)) return String(value);
  const abs = Math.abs(value);
  if (abs !== 0 && (abs < 1e-3 || abs >= 1e6)) return value.toExponential(2);
  return String(Number(value.toPrecision(digits)));
}

export function fmtValue(value) {
  if (value == null) return "\u2013";
  if (typeof value === "number") return fmtNumber(value);
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

export function fmtTime(iso) {
  if (!iso) return "\u2013";
  const date = new Date(iso);
  const pad = (n) => String(n).padStart(2, "0");
  return (
    `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ` +
    `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`
  );
}

/** Seconds a trial ran: finished - started, or until now while it runs. */
export function durationSeconds(item) {
  if (!item.started_at) return null;
  const end = item.finished_at ? new Date(item.finished_at) : new Date();
  return Math.max(0, (end - new Date(item.started_at)) / 1000);
}

export function fmtDuration(seconds) {
  if (seconds == null) return "\u2013";
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} min ${Math.round(seconds % 60)} s`;
  return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

export function stateBadge(state) {
  return el("span", { class: `badge state-${state}`, "data-state": state }, state);
}

/** Flattens nested hyperparameters ({a: {b: 1}} -> {"a.b": 1}), as W&B nests `parameters`. */
export function flatten(object, prefix = "", out = {}) {
  for (const [key, value] of Object.entries(object || {})) {
    const path = prefix ? `${prefix}.${key}` : key;
    if (value && typeof value === "object" && !Array.isArray(value)) flatten(value, path, out);
    else out[path] = value;
  }
  return out;
}

/** The spec entry of a (flattened) hyperparameter, following nested `parameters`. */
export function parameterSpec(spec, path) {
  let node = { parameters: (spec && spec.parameters) || {} };
  for (const part of path.split(".")) {
    node = node && node.parameters && node.parameters[part];
    if (!node) return null;
  }
  return node;
}

export function metricOf(spec) {
  const metric = (spec && spec.metric) || {};
  return { name: metric.name || null, goal: metric.goal === "minimize" ? "minimize" : "maximize" };
}

/**
 * The objectives of a multi-objective sweep (its `metrics` list: [{name, goal, target}]), or
 * an empty list for a sweep with one `metric` or none. A goal left out is `minimize`.
 */
export function objectivesOf(spec) {
  const metrics = spec && Array.isArray(spec.metrics) ? spec.metrics : [];
  return metrics
    .filter((m) => m && m.name)
    .map((m) => ({ name: m.name, goal: m.goal === "maximize" ? "maximize" : "minimize", target: m.target ?? null }));
}

/** A bar split by trial state, against the run cap (or the trial total without one). */
export function progressBar(counts, runCap, wide = false) {
  const total = counts.total || 0;
  const cap = Math.max(runCap || total, total, 1);
  const bar = el("div", { class: wide ? "progress wide" : "progress", role: "img" });
  const described = [];
  for (const state of TRIAL_STATES) {
    const count = counts[state] || 0;
    if (!count) continue;
    const segment = el("span", { class: `seg-${state}`, title: `${count} ${state}` });
    segment.style.width = `${(100 * count) / cap}%`;
    bar.append(segment);
    described.push(`${count} ${state}`);
  }
  const finished = ["completed", "stopped", "failed", "cancelled"]
    .map((state) => counts[state] || 0)
    .reduce((a, b) => a + b, 0);
  const capText = runCap ? `${runCap}` : "no cap";
  bar.setAttribute("aria-label", `${finished} of ${capText} trials finished`);
  const label = el(
    "div",
    { class: "progress-label" },
    el("span", { class: "progress-count" }, `${finished} / ${capText}`),
    described.length ? ` \u00b7 ${described.join(", ")}` : " \u00b7 no trials yet",
  );
  return el("div", { class: "progress-cell" }, bar, label);
}

/** W&B run link: the URL when online, else the run folder's `wandb sync` command to copy. */
export function wandbLink(wandb) {
  if (!wandb) return el("span", { class: "muted" }, "\u2013");
  if (wandb.url) {
    return el("a", { class: "wandb-url", href: wandb.url, target: "_blank", rel: "noopener" }, "W&B run \u2197");
  }
  if (wandb.sync_command) {
    const code = el("code", { class: "sync-command", title: wandb.run_dir || "" }, wandb.sync_command);
    const copy = el(
      "button",
      {
        type: "button",
        title: "Copy the command that uploads this offline run",
        onclick: async (event) => {
          event.stopPropagation();
          try {
            await navigator.clipboard.writeText(wandb.sync_command);
            copy.textContent = "copied";
          } catch (_error) {
            window.getSelection().selectAllChildren(code);
          }
        },
      },
      "copy",
    );
    return el("span", { class: "sync" }, code, copy);
  }
  if (wandb.mode === "disabled") return el("span", { class: "muted" }, "W&B disabled");
  return el("span", { class: "muted" }, "not yet");
}

// --- live updates ----------------------------------------------------------------------------

/**
 * Runs `refresh` now and again every `intervalMs` while it returns true (more to watch);
 * waits while the tab is hidden, and again at once when the user signs in or out.
 */
export function poll(refresh, intervalMs) {
  let timer = null;
  let running = false;
  const tick = async () => {
    clearTimeout(timer);
    if (running || document.hidden) return;
    running = true;
    let again = true;
    try {
      again = await refresh();
    } finally {
      running = false;
    }
    if (again !== false) timer = setTimeout(tick, intervalMs);
  };
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden) tick();
  });
  window.addEventListener("ktsweep:token", tick);
  tick();
  return tick;
}
