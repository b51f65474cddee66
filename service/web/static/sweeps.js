// The sweeps list: name, state, progress by trial state against run_cap, best metric (or the
// size of a multi-objective sweep's Pareto front), times.
import {
  ApiError, api, clearNotice, el, fmtNumber, fmtTime, metricOf, objectivesOf, poll, progressBar, replace,
  setupPage, showApiError, stateBadge,
} from "/static/common.js";

const POLL_MS = 3000;
const PAGE = 50;
const view = { state: "", items: [], nextCursor: null, shown: PAGE, loaded: false, failed: false };

setupPage();
document.title = "Sweeps \u00b7 ktsweep";

async function refresh() {
  try {
    const query = new URLSearchParams({ limit: String(Math.min(view.shown, 500)) });
    if (view.state) query.set("state", view.state);
    const page = await api(`/sweeps?${query}`);
    view.items = page.items;
    view.nextCursor = page.next_cursor;
    view.loaded = true;
    if (view.failed) clearNotice();
    view.failed = false;
    render();
  } catch (error) {
    if (!(error instanceof ApiError)) throw error;
    view.failed = true;
    showApiError(error, "Could not list the sweeps");
    if (!view.loaded) replace(document.getElementById("page"), el("p", { class: "empty" }, "No data."));
  }
  return true;
}

function render() {
  const filter = el(
    "select",
    {
      id: "state-filter",
      "aria-label": "Only sweeps in this state",
      onchange: (event) => {
        view.state = event.target.value;
        view.shown = PAGE;
        refresh();
      },
    },
    ["", "running", "paused", "finished", "cancelled", "failed"].map((state) =>
      el("option", { value: state, selected: state === view.state }, state || "all states"),
    ),
  );
  const head = el(
    "div",
    { class: "chart-toolbar" },
    el("h1", {}, "Sweeps"),
    el("span", { class: "muted" }, `${view.items.length}${view.nextCursor ? "+" : ""} shown`),
    filter,
  );
  const rows = view.items.map(sweepRow);
  const table = el(
    "table",
    { id: "sweeps-table" },
    el(
      "thead",
      {},
      el("tr", {}, ["Name", "State", "Progress", "Best", "Method", "Started", "Finished"].map((h) => el("th", {}, h))),
    ),
    el("tbody", {}, rows),
  );
  const more = view.nextCursor
    ? el(
        "button",
        {
          id: "load-more",
          type: "button",
          onclick: () => {
            view.shown += PAGE;
            refresh();
          },
        },
        "Load more",
      )
    : null;
  const body = view.items.length
    ? [el("div", { class: "table-wrap" }, table), more]
    : el(
        "p",
        { class: "empty" },
        "No sweeps yet. Submit one with `ktsweep submit examples/digits/sweep.yaml`.",
      );
  replace(document.getElementById("page"), el("div", { class: "card" }, head, body));
}

function sweepRow(sweep) {
  const href = `/sweeps/${encodeURIComponent(sweep.id)}`;
  const metric = metricOf(sweep.spec);
  const best = sweep.best_trial;
  let bestCell = best
    ? el(
        "span",
        {},
        el("a", { class: "best-value", href: `/trials/${encodeURIComponent(best.id)}` }, fmtNumber(best.objective)),
        el("span", { class: "muted small" }, ` ${metric.name || "metric"} (#${best.number})`),
      )
    : el("span", { class: "muted" }, "\u2013");
  // A multi-objective sweep has no single best trial: it has a Pareto front.
  if (objectivesOf(sweep.spec).length > 1 && sweep.pareto_front_size) {
    const size = sweep.pareto_front_size;
    bestCell = el(
      "a",
      { class: "front-size", href },
      `${size} ${size === 1 ? "trial" : "trials"} on the Pareto front`,
    );
  }
  return el(
    "tr",
    {
      class: "clickable",
      "data-sweep-id": sweep.id,
      onclick: (event) => {
        if (!event.target.closest("a")) window.location.href = href;
      },
    },
    el("td", {}, el("a", { class: "sweep-name", href }, sweep.name), el("div", { class: "muted small mono" }, sweep.id)),
    el("td", { class: "sweep-state" }, stateBadge(sweep.state)),
    el("td", { class: "sweep-progress" }, progressBar(sweep.trial_counts, sweep.spec.run_cap)),
    el("td", { class: "sweep-best" }, bestCell),
    el("td", {}, sweep.spec.method || "\u2013"),
    el("td", {}, fmtTime(sweep.created_at)),
    el("td", {}, fmtTime(sweep.finished_at)),
  );
}

poll(refresh, POLL_MS);
