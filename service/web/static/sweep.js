// One sweep: header with progress and lifecycle buttons, best trial, metric-vs-epoch chart,
// parallel coordinates, and the sortable trials table. Refreshes itself while the sweep runs.
// A multi-objective sweep (`metrics`) shows its Pareto front in place of the best trial: the
// front's trials, the scatter of two objectives, the front marked in the parallel coordinates,
// and a filter of the trials table to the front.
import {
  FRONT_COLOR, OFF_FRONT_COLOR, lineChart, metricColor, parallelCoordinates, scatterPlot, trialColor,
} from "/static/charts.js";
import {
  ACTIVE_TRIAL_STATES, ApiError, TERMINAL_SWEEP_STATES, api, apiAll, clearNotice, durationSeconds, el,
  flatten, fmtDuration, fmtNumber, fmtTime, fmtValue, metricOf, objectivesOf, parameterSpec, poll,
  progressBar, replace, setupPage, showApiError, showNotice, stateBadge, wandbLink,
} from "/static/common.js";

const POLL_MS = 2000;
const HISTORY_FETCHES_AT_ONCE = 4;
const sweepId = decodeURIComponent(window.location.pathname.split("/")[2] || "");
const view = {
  sweep: null,
  trials: [],
  histories: new Map(), // trial id -> {state, epochs, history}
  sort: { key: "number", descending: false },
  chartMetric: null,
  front: null, // a multi-objective sweep's Pareto front: [{id, number, state, objectives}, ...]
  frontOnly: false,
  failed: false,
  signature: "",
};

setupPage([el("span", { id: "crumb-sweep", class: "mono" }, sweepId)]);

async function refresh() {
  try {
    const [sweep, trials] = await Promise.all([
      api(`/sweeps/${encodeURIComponent(sweepId)}`),
      apiAll(`/sweeps/${encodeURIComponent(sweepId)}/trials`, { order: "number" }),
    ]);
    const front = objectivesOf(sweep.spec).length > 1 ? await loadFront() : null;
    await loadHistories(trials);
    view.sweep = sweep;
    view.trials = trials;
    view.front = front;
    if (view.failed) clearNotice();
    view.failed = false;
    renderIfChanged();
  } catch (error) {
    if (!(error instanceof ApiError)) throw error;
    view.failed = true;
    showApiError(error, "Could not read this sweep");
    if (!view.sweep) {
      const message = error.status === 404 ? `No sweep '${sweepId}'.` : "No data.";
      replace(document.getElementById("page"), el("p", { class: "empty" }, message, " ", el("a", { href: "/" }, "All sweeps")));
    }
    return error.status === 0 || error.status >= 500; // keep trying only if the controller is down
  }
  const trialsActive = view.trials.some((t) => ACTIVE_TRIAL_STATES.includes(t.state));
  return !TERMINAL_SWEEP_STATES.includes(view.sweep.state) || trialsActive;
}

/** The Pareto front from `/best`: none yet (404) is an empty front. */
async function loadFront() {
  try {
    const best = await api(`/sweeps/${encodeURIComponent(sweepId)}/best`);
    return Array.isArray(best.front) ? best.front : [];
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) return [];
    throw error;
  }
}

/** Ids of the trials on the front (empty for a sweep with one objective). */
function frontIds() {
  return new Set((view.front || []).map((t) => t.id));
}

/** A trial's value of each objective: its final metric of that name (as `/best` reads it). */
function objectiveValues(trial, objectives) {
  const values = {};
  for (const o of objectives) {
    const value = (trial.metrics || {})[o.name];
    values[o.name] = typeof value === "number" && Number.isFinite(value) ? value : null;
  }
  return values;
}

/** Fetches the per-epoch history of trials that are new or changed since the last look. */
async function loadHistories(trials) {
  const stale = trials.filter((trial) => {
    const known = view.histories.get(trial.id);
    const reported = trial.epochs > 0 || Object.keys(trial.metrics || {}).length > 0;
    return reported && (!known || known.state !== trial.state || known.epochs !== trial.epochs);
  });
  const queue = [...stale];
  const worker = async () => {
    for (let trial = queue.shift(); trial; trial = queue.shift()) {
      const detail = await api(`/trials/${encodeURIComponent(trial.id)}`);
      view.histories.set(trial.id, { state: trial.state, epochs: trial.epochs, history: detail.history });
    }
  };
  await Promise.all(Array.from({ length: HISTORY_FETCHES_AT_ONCE }, worker));
}

function renderIfChanged() {
  const signature = JSON.stringify([
    view.sweep, view.trials, view.sort, view.chartMetric, view.histories.size, view.front, view.frontOnly,
  ]);
  if (signature === view.signature) return;
  view.signature = signature;
  render();
}

function render() {
  const { sweep } = view;
  document.title = `${sweep.name} \u00b7 ktsweep`;
  replace(document.getElementById("crumb-sweep"), sweep.name);
  const objectives = objectivesOf(sweep.spec);
  let best = bestCard(sweep);
  if (objectives.length === 2) best = el("div", { class: "grid-2" }, frontCard(objectives), scatterCard(objectives));
  else if (objectives.length > 2) best = frontCard(objectives);
  replace(
    document.getElementById("page"),
    headerCard(sweep),
    best,
    el("div", { class: "grid-2" }, metricChartCard(sweep), parallelCard(sweep)),
    trialsCard(sweep),
  );
}

// --- header and lifecycle --------------------------------------------------------------------

function headerCard(sweep) {
  const metric = metricOf(sweep.spec);
  const objectives = objectivesOf(sweep.spec);
  const optimises = objectives.length
    ? objectives.map((o) => `${o.name} (${o.goal})`).join(", ")
    : `${metric.name || "no metric"} (${metric.goal})`;
  const buttons = [];
  if (sweep.state === "running") buttons.push(actionButton("pause", "Pause"));
  if (sweep.state === "paused") buttons.push(actionButton("resume", "Resume", "primary"));
  if (!TERMINAL_SWEEP_STATES.includes(sweep.state)) buttons.push(actionButton("cancel", "Cancel", "danger"));
  return el(
    "div",
    { class: "card", id: "sweep-header" },
    el(
      "div",
      { class: "chart-toolbar" },
      el("h1", { id: "sweep-name" }, sweep.name),
      el("span", { id: "sweep-state" }, stateBadge(sweep.state)),
      el("span", { class: "actions" }, buttons),
    ),
    el(
      "div",
      { class: "sub" },
      el("span", { class: "mono" }, sweep.id),
      ` \u00b7 ${sweep.spec.method || "?"} search \u00b7 ${optimises}`,
      ` \u00b7 started ${fmtTime(sweep.created_at)}`,
      sweep.finished_at ? ` \u00b7 ended ${fmtTime(sweep.finished_at)}` : "",
      sweep.spec.parallelism ? ` \u00b7 parallelism ${sweep.spec.parallelism}` : "",
    ),
    sweep.spec.description ? el("p", { class: "muted" }, sweep.spec.description) : null,
    el("div", { id: "sweep-progress" }, progressBar(sweep.trial_counts, sweep.spec.run_cap, true)),
  );
}

function actionButton(action, label, kind = "") {
  return el("button", { id: `${action}-button`, type: "button", class: kind, onclick: () => act(action) }, label);
}

const DONE = { pause: "paused", resume: "resumed", cancel: "cancelled" };

async function act(action) {
  const name = view.sweep ? view.sweep.name : sweepId;
  if (action === "cancel" && !window.confirm(`Cancel sweep '${name}'? Running trials are stopped.`)) return;
  try {
    view.sweep = await api(`/sweeps/${encodeURIComponent(sweepId)}/${action}`, { method: "POST" });
    showNotice("info", `Sweep '${name}' ${DONE[action]}.`);
    renderIfChanged();
  } catch (error) {
    if (!(error instanceof ApiError)) throw error;
    showApiError(error, `Refused to ${action} the sweep`);
  }
  refreshNow();
}

// --- best trial ------------------------------------------------------------------------------

function bestCard(sweep) {
  const best = sweep.best_trial;
  const metric = metricOf(sweep.spec);
  if (!sweep.spec.metric) {
    return el("div", { class: "card", id: "best-trial" }, el("h2", {}, "Best trial"), el("p", { class: "empty", id: "no-metric" }, "This sweep has no metric, so no trial is best. Its trials and what they logged are below."));
  }
  if (!best) {
    return el("div", { class: "card", id: "best-trial" }, el("h2", {}, "Best trial"), el("p", { class: "empty" }, "No finished trial with the metric yet."));
  }
  const hps = flatten(best.hyperparameters);
  return el(
    "div",
    { class: "card", id: "best-trial", "data-trial-id": best.id },
    el("h2", {}, "Best trial"),
    el(
      "dl",
      { class: "facts" },
      el("dt", {}, "trial"),
      el("dd", {}, el("a", { href: `/trials/${encodeURIComponent(best.id)}` }, `#${best.number}`), " ", stateBadge(best.state)),
      el("dt", {}, metric.name || "objective"),
      el("dd", {}, el("strong", { id: "best-value" }, fmtNumber(best.objective))),
      el("dt", {}, "hyperparameters"),
      el("dd", { class: "mono" }, Object.entries(hps).map(([k, v]) => `${k}=${fmtValue(v)}`).join("  ")),
      el("dt", {}, "epochs"),
      el("dd", {}, String(best.epochs)),
      el("dt", {}, "W&B run"),
      el("dd", {}, wandbLink(best.wandb)),
      el("dt", {}, "checkpoint"),
      el("dd", { class: "mono" }, best.checkpoint || "\u2013"),
    ),
  );
}

// --- Pareto front ----------------------------------------------------------------------------

function frontCard(objectives) {
  const front = view.front || [];
  const heading = el("h2", {}, "Pareto front");
  if (!front.length) {
    return el(
      "div",
      { class: "card", id: "pareto-front" },
      heading,
      el("p", { class: "empty" }, "No finished trial with a value of every objective yet."),
    );
  }
  const head = el(
    "tr",
    {},
    el("th", { class: "num" }, "#"),
    el("th", {}, "state"),
    objectives.map((o) => el("th", { class: "num", title: o.goal }, `${o.name} ${o.goal === "maximize" ? "\u2191" : "\u2193"}`)),
    el("th", {}, "hyperparameters"),
  );
  const rows = front.map((t) => {
    const href = `/trials/${encodeURIComponent(t.id)}`;
    const hps = flatten(t.hyperparameters);
    return el(
      "tr",
      { "data-trial-id": t.id },
      el("td", { class: "num nowrap" }, el("a", { class: "trial-link", href }, `#${t.number}`)),
      el("td", {}, stateBadge(t.state)),
      objectives.map((o) =>
        el("td", { class: "num front-objective", "data-objective": o.name }, fmtNumber((t.objectives || {})[o.name])),
      ),
      el("td", { class: "mono" }, Object.entries(hps).map(([k, v]) => `${k}=${fmtValue(v)}`).join("  ")),
    );
  });
  return el(
    "div",
    { class: "card", id: "pareto-front" },
    heading,
    el(
      "p",
      { class: "muted small" },
      `${front.length} ${front.length === 1 ? "trial" : "trials"} that no other finished trial beats in every objective (\u2191 higher is better, \u2193 lower).`,
    ),
    el("div", { class: "table-wrap" }, el("table", { id: "front-table" }, el("thead", {}, head), el("tbody", {}, rows))),
  );
}

function scatterCard(objectives) {
  const [x, y] = objectives;
  const onFront = frontIds();
  const points = view.trials
    .filter((t) => t.state === "completed" || t.state === "stopped")
    .map((t) => ({ trial: t, values: objectiveValues(t, objectives) }))
    .filter(({ values }) => values[x.name] != null && values[y.name] != null)
    .map(({ trial, values }) => ({
      id: trial.id,
      x: values[x.name],
      y: values[y.name],
      front: onFront.has(trial.id),
      href: `/trials/${encodeURIComponent(trial.id)}`,
      label:
        `trial #${trial.number} \u00b7 ${trial.state} \u00b7 ${x.name} ${fmtNumber(values[x.name])} \u00b7 ` +
        `${y.name} ${fmtNumber(values[y.name])}${onFront.has(trial.id) ? " \u00b7 on the Pareto front" : ""}`,
    }));
  const body = points.length
    ? [
        el("div", { id: "pareto-scatter" }, scatterPlot({ points, x, y })),
        el(
          "div",
          { class: "legend" },
          el("span", {}, legendDot(FRONT_COLOR), "on the Pareto front (line: its edge)"),
          el("span", {}, legendDot(OFF_FRONT_COLOR), "dominated"),
          el("span", {}, "completed and stopped trials \u00b7 click a point to open its trial"),
        ),
      ]
    : el("p", { class: "empty" }, "No finished trial with both objectives yet.");
  return el("div", { class: "card" }, el("h2", {}, `${y.name} vs ${x.name}`), body);
}

function legendDot(color) {
  const node = el("i", { class: "dot" });
  node.style.background = color;
  return node;
}

// --- charts ----------------------------------------------------------------------------------

function metricChartCard(sweep) {
  const metric = metricOf(sweep.spec);
  const names = new Set();
  for (const { history } of view.histories.values()) {
    for (const entry of history) for (const key of Object.keys(entry.metrics)) names.add(key);
  }
  const objectives = objectivesOf(sweep.spec);
  const reported = objectives.map((o) => o.name).find((name) => names.has(name));
  const chosen = view.chartMetric || metric.name || reported || [...names][0] || "";
  if (chosen) names.add(chosen);
  const bestId = sweep.best_trial && sweep.best_trial.id;
  const onFront = frontIds();
  const series = view.trials
    .filter((t) => view.histories.has(t.id))
    .map((t) => ({
      id: t.id,
      number: t.number,
      state: t.state,
      best: t.id === bestId || onFront.has(t.id),
      label: `trial #${t.number}`,
      href: `/trials/${encodeURIComponent(t.id)}`,
      points: view.histories
        .get(t.id)
        .history.filter((e) => e.metrics[chosen] != null)
        .map((e) => [e.step, e.metrics[chosen]]),
    }))
    .filter((s) => s.points.length);
  const select = el(
    "select",
    {
      id: "chart-metric",
      "aria-label": "Metric to plot",
      onchange: (event) => {
        view.chartMetric = event.target.value;
        renderIfChanged();
      },
    },
    [...names].sort().map((name) => el("option", { value: name, selected: name === chosen }, name)),
  );
  const epochs = (sweep.spec.trial && sweep.spec.trial.fit && sweep.spec.trial.fit.epochs) || 1;
  const body = series.length
    ? [
        el("div", { id: "metric-chart" }, lineChart({ series, xMax: epochs, yLabel: chosen, xLabel: "epoch" })),
        el(
          "div",
          { class: "legend" },
          el("span", {}, el("i", { class: "solid" }), "completed / running"),
          el("span", {}, el("i", { class: "dash" }), "\u00d7 ended early (stopped, cancelled, failed)"),
          el("span", {}, `thick: ${objectives.length ? "on the Pareto front" : "best trial"} \u00b7 click a line to open its trial`),
        ),
      ]
    : el("p", { class: "empty" }, "No trial has reported a metric yet.");
  return el(
    "div",
    { class: "card" },
    el("div", { class: "chart-toolbar" }, el("h2", {}, "Metric by epoch"), select),
    body,
  );
}

function hyperparameterAxes(sweep, rows) {
  const keys = [];
  for (const row of rows) for (const key of Object.keys(row.values)) if (!keys.includes(key)) keys.push(key);
  return keys.map((key) => {
    const spec = parameterSpec(sweep.spec, key) || {};
    const values = rows.map((r) => r.values[key]).filter((v) => v != null);
    const numeric = values.every((v) => typeof v === "number");
    let kind = "linear";
    if (!numeric) kind = "category";
    else if (String(spec.distribution || "").includes("log") || spec.sampling === "log") kind = "log";
    const categories = !numeric && Array.isArray(spec.values) ? spec.values : null;
    return { key, label: key, kind, categories };
  });
}

function parallelCard(sweep) {
  const objectives = objectivesOf(sweep.spec);
  if (objectives.length) return objectiveParallelCard(sweep, objectives);
  const metric = metricOf(sweep.spec);
  const bestId = sweep.best_trial && sweep.best_trial.id;
  const rows = view.trials.map((t) => ({
    id: t.id,
    values: flatten(t.hyperparameters),
    metric: t.objective != null ? t.objective : metric.name ? t.metrics[metric.name] : null,
    best: t.id === bestId,
    href: `/trials/${encodeURIComponent(t.id)}`,
    label: `trial #${t.number} \u00b7 ${t.state} \u00b7 ${metric.name || "metric"} ${fmtNumber(t.objective)}`,
  }));
  const axes = hyperparameterAxes(sweep, rows);
  const swatch = (t) => {
    const node = el("i");
    node.style.background = metricColor(t);
    return node;
  };
  const body = rows.length
    ? [
        el(
          "div",
          { id: "parallel-chart" },
          parallelCoordinates({ axes, rows, metricLabel: metric.name || "metric", goal: metric.goal }),
        ),
        el(
          "div",
          { class: "legend" },
          el("span", {}, "worse ", swatch(0), swatch(0.5), swatch(1), " better"),
          el("span", {}, "thick: best trial"),
          el("span", {}, "grey dashed: no metric yet"),
        ),
      ]
    : el("p", { class: "empty" }, "No trials yet.");
  return el("div", { class: "card" }, el("h2", {}, "Hyperparameters vs metric"), body);
}

/** Hyperparameters against every objective, the Pareto front's lines marked. */
function objectiveParallelCard(sweep, objectives) {
  const onFront = frontIds();
  const rows = view.trials.map((t) => {
    const values = objectiveValues(t, objectives);
    const shown = objectives.map((o) => `${o.name} ${fmtNumber(values[o.name])}`).join(" \u00b7 ");
    return {
      id: t.id,
      values: flatten(t.hyperparameters),
      objectives: values,
      front: onFront.has(t.id),
      href: `/trials/${encodeURIComponent(t.id)}`,
      label: `trial #${t.number} \u00b7 ${t.state} \u00b7 ${shown}${onFront.has(t.id) ? " \u00b7 on the Pareto front" : ""}`,
    };
  });
  const axes = hyperparameterAxes(sweep, rows);
  const body = rows.length
    ? [
        el("div", { id: "parallel-chart" }, parallelCoordinates({ axes, rows, objectives })),
        el(
          "div",
          { class: "legend" },
          el("span", {}, legendDot(FRONT_COLOR), "thick: on the Pareto front"),
          el("span", {}, legendDot(OFF_FRONT_COLOR), "dominated or not finished"),
          el("span", {}, "dashed: missing an objective"),
        ),
      ]
    : el("p", { class: "empty" }, "No trials yet.");
  return el("div", { class: "card" }, el("h2", {}, "Hyperparameters vs objectives"), body);
}

// --- trials table ----------------------------------------------------------------------------

function trialsCard(sweep) {
  const metric = metricOf(sweep.spec);
  const objectives = objectivesOf(sweep.spec);
  const bestId = sweep.best_trial && sweep.best_trial.id;
  const onFront = frontIds();
  const hpKeys = [];
  for (const t of view.trials) for (const key of Object.keys(flatten(t.hyperparameters))) if (!hpKeys.includes(key)) hpKeys.push(key);
  // A multi-objective sweep has a column per objective in place of the one metric.
  const scoreColumns = objectives.length
    ? objectives.map((o) => ({
        key: `objective:${o.name}`,
        label: o.name,
        num: true,
        goal: o.goal,
        value: (t) => objectiveValues(t, [o])[o.name],
      }))
    : [{ key: "metric", label: metric.name || "objective", num: true, goal: metric.goal, value: (t) => t.objective }];
  const columns = [
    { key: "number", label: "#", num: true, value: (t) => t.number },
    { key: "state", label: "state", value: (t) => t.state },
    ...hpKeys.map((key) => ({ key: `hp:${key}`, label: key, num: true, value: (t) => flatten(t.hyperparameters)[key] })),
    ...scoreColumns,
    { key: "epochs", label: "epochs", num: true, value: (t) => t.epochs },
    { key: "duration", label: "duration", num: true, value: (t) => durationSeconds(t) },
    { key: "wandb", label: "W&B run", sortable: false },
  ];
  const column = columns.find((c) => c.key === view.sort.key) || columns[0];
  // Ties (two trials at the same metric, say) keep trial order in both directions.
  const frontOnly = objectives.length > 0 && view.frontOnly;
  const listed = frontOnly ? view.trials.filter((t) => onFront.has(t.id)) : view.trials;
  const sorted = [...listed].sort(
    (a, b) => compare(column.value(a), column.value(b), view.sort.descending) || a.number - b.number,
  );
  const head = el(
    "tr",
    {},
    columns.map((c) => {
      const sortable = c.sortable !== false;
      const active = c.key === view.sort.key;
      return el(
        "th",
        {
          class: `${c.num ? "num " : ""}${sortable ? "sortable" : ""}`,
          "data-key": c.key,
          "aria-sort": active ? (view.sort.descending ? "descending" : "ascending") : null,
          title: sortable ? "Sort" : null,
          onclick: sortable
            ? () => {
                view.sort = { key: c.key, descending: active ? !view.sort.descending : c.goal === "maximize" };
                renderIfChanged();
              }
            : null,
        },
        c.label,
      );
    }),
  );
  const rows = sorted.map((t) => {
    const href = `/trials/${encodeURIComponent(t.id)}`;
    const hps = flatten(t.hyperparameters);
    return el(
      "tr",
      {
        class: `clickable${t.id === bestId ? " best" : ""}${onFront.has(t.id) ? " front" : ""}`,
        "data-trial-id": t.id,
        "data-number": t.number,
        onclick: (event) => {
          if (!event.target.closest("a, button, code")) window.location.href = href;
        },
      },
      el("td", { class: "num nowrap" }, swatch(trialColor(t.number)), el("a", { class: "trial-link", href }, `#${t.number}`)),
      el("td", { class: "trial-state" }, stateBadge(t.state)),
      hpKeys.map((key) => el("td", { class: "num mono" }, fmtValue(hps[key]))),
      objectives.length
        ? objectives.map((o) =>
            el("td", { class: "num trial-objective", "data-objective": o.name }, fmtNumber(objectiveValues(t, [o])[o.name])),
          )
        : el("td", { class: "num trial-metric" }, fmtNumber(t.objective)),
      el("td", { class: "num trial-epochs" }, String(t.epochs)),
      el("td", { class: "num" }, fmtDuration(durationSeconds(t))),
      el("td", { class: "trial-wandb" }, wandbLink(t.wandb)),
    );
  });
  const filter = objectives.length
    ? el(
        "label",
        { class: "front-filter", title: "Show only the trials on the Pareto front" },
        el("input", {
          id: "front-only",
          type: "checkbox",
          checked: view.frontOnly,
          onchange: (event) => {
            view.frontOnly = event.target.checked;
            renderIfChanged();
          },
        }),
        ` front only (${onFront.size})`,
      )
    : null;
  const count = frontOnly ? `${listed.length} of ${view.trials.length}` : String(view.trials.length);
  let body = el("p", { class: "empty" }, "No trials yet.");
  if (listed.length) {
    body = el("div", { class: "table-wrap" }, el("table", { id: "trials-table" }, el("thead", {}, head), el("tbody", {}, rows)));
  } else if (view.trials.length) {
    body = el("p", { class: "empty", id: "no-front" }, "No trial is on the Pareto front yet.");
  }
  return el(
    "div",
    { class: "card" },
    filter ? el("div", { class: "chart-toolbar" }, el("h2", {}, `Trials (${count})`), filter) : el("h2", {}, `Trials (${count})`),
    body,
  );
}

function swatch(color) {
  const node = el("i", { class: "swatch", "aria-hidden": "true" });
  node.style.background = color;
  return node;
}

/** Orders values (numbers numerically, text alphabetically); missing values always last. */
function compare(a, b, descending) {
  if (a == null && b == null) return 0;
  if (a == null) return 1;
  if (b == null) return -1;
  const order = typeof a === "number" && typeof b === "number" ? a - b : String(a).localeCompare(String(b));
  return descending ? -order : order;
}

const refreshNow = poll(refresh, POLL_MS);
window.addEventListener("ktsweep:token", () => {
  view.signature = "";
});
