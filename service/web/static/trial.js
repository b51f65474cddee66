// One trial: state and times, hyperparameters, latest metrics, a chart per metric over epochs,
// the traceback of a failed trial, its W&B run and checkpoint. Refreshes itself while it runs.
import { lineChart, trialColor } from "/static/charts.js";
import {
  ACTIVE_TRIAL_STATES, ApiError, api, clearNotice, durationSeconds, el, flatten, fmtDuration,
  fmtNumber, fmtTime, fmtValue, metricOf, poll, replace, setupPage, showApiError, stateBadge,
  wandbLink,
} from "/static/common.js";

const POLL_MS = 2000;
const trialId = decodeURIComponent(window.location.pathname.split("/")[2] || "");
const view = { trial: null, sweep: null, failed: false, signature: "" };

const sweepCrumb = el("a", { id: "crumb-sweep", href: "#" }, "sweep");
setupPage([sweepCrumb, el("span", { id: "crumb-trial", class: "mono" }, trialId)]);

async function refresh() {
  try {
    const trial = await api(`/trials/${encodeURIComponent(trialId)}`);
    if (!view.sweep || view.sweep.id !== trial.sweep_id || ACTIVE_TRIAL_STATES.includes(trial.state)) {
      view.sweep = await api(`/sweeps/${encodeURIComponent(trial.sweep_id)}`);
    }
    view.trial = trial;
    if (view.failed) clearNotice();
    view.failed = false;
    const signature = JSON.stringify([trial, view.sweep.best_trial && view.sweep.best_trial.id]);
    if (signature !== view.signature) {
      view.signature = signature;
      render();
    }
  } catch (error) {
    if (!(error instanceof ApiError)) throw error;
    view.failed = true;
    showApiError(error, "Could not read this trial");
    if (!view.trial) {
      const message = error.status === 404 ? `No trial '${trialId}'.` : "No data.";
      replace(document.getElementById("page"), el("p", { class: "empty" }, message, " ", el("a", { href: "/" }, "All sweeps")));
    }
    return error.status === 0 || error.status >= 500;
  }
  return ACTIVE_TRIAL_STATES.includes(view.trial.state);
}

function render() {
  const { trial, sweep } = view;
  const metric = metricOf(sweep.spec);
  document.title = `Trial #${trial.number} of ${sweep.name} \u00b7 ktsweep`;
  sweepCrumb.href = `/sweeps/${encodeURIComponent(sweep.id)}`;
  replace(sweepCrumb, sweep.name);
  replace(document.getElementById("crumb-trial"), `trial #${trial.number}`);
  const isBest = sweep.best_trial && sweep.best_trial.id === trial.id;
  const header = el(
    "div",
    { class: "card", id: "trial-header" },
    el(
      "div",
      { class: "chart-toolbar" },
      el("h1", {}, `Trial #${trial.number}`),
      el("span", { id: "trial-state" }, stateBadge(trial.state)),
      isBest ? el("span", { class: "badge state-paused", id: "best-badge" }, "best in sweep") : null,
    ),
    el(
      "dl",
      { class: "facts" },
      el("dt", {}, "sweep"),
      el("dd", {}, el("a", { href: `/sweeps/${encodeURIComponent(sweep.id)}` }, sweep.name), " ", el("span", { class: "mono muted" }, trial.id)),
      el("dt", {}, metric.name || "objective"),
      el("dd", {}, el("strong", { id: "trial-objective" }, fmtNumber(trial.objective)), metric.name ? ` (${metric.goal})` : ""),
      el("dt", {}, "epochs"),
      el("dd", { id: "trial-epochs" }, `${trial.epochs} of ${epochsPlanned(sweep)}`),
      el("dt", {}, "attempts"),
      el("dd", {}, String(trial.attempts)),
      el("dt", {}, "node"),
      el("dd", { id: "trial-node", class: "mono" }, nodeText(trial.node)),
      el("dt", {}, "started"),
      el("dd", {}, fmtTime(trial.started_at)),
      el("dt", {}, "finished"),
      el("dd", {}, fmtTime(trial.finished_at)),
      el("dt", {}, "duration"),
      el("dd", {}, fmtDuration(durationSeconds(trial))),
      el("dt", {}, "W&B run"),
      el("dd", { id: "trial-wandb" }, wandbLink(trial.wandb)),
      el("dt", {}, "checkpoint"),
      el("dd", { id: "trial-checkpoint", class: "mono" }, trial.checkpoint || "\u2013"),
    ),
  );
  replace(
    document.getElementById("page"),
    header,
    trial.error ? errorCard(trial) : null,
    el("div", { class: "grid-2" }, hyperparametersCard(trial), latestMetricsCard(trial)),
    historyCard(trial, sweep),
  );
}

function epochsPlanned(sweep) {
  return (sweep.spec.trial && sweep.spec.trial.fit && sweep.spec.trial.fit.epochs) || "?";
}

function errorCard(trial) {
  return el(
    "div",
    { class: "card", id: "trial-error" },
    el("h2", {}, trial.state === "failed" ? "Why it failed" : "Error"),
    el("pre", { class: "traceback" }, trial.error),
  );
}

function hyperparametersCard(trial) {
  const rows = Object.entries(flatten(trial.hyperparameters)).map(([key, value]) =>
    el("tr", {}, el("th", {}, key), el("td", { class: "mono" }, fmtValue(value))),
  );
  return el("div", { class: "card" }, el("h2", {}, "Hyperparameters"), el("table", { id: "trial-hyperparameters" }, el("tbody", {}, rows)));
}

function latestMetricsCard(trial) {
  const rows = Object.entries(trial.metrics || {}).map(([key, value]) =>
    el("tr", {}, el("th", {}, key), el("td", { class: "num" }, fmtNumber(value))),
  );
  return el(
    "div",
    { class: "card" },
    el("h2", {}, "Latest metrics"),
    rows.length ? el("table", { id: "trial-metrics" }, el("tbody", {}, rows)) : el("p", { class: "empty" }, "Nothing reported yet."),
  );
}

function historyCard(trial, sweep) {
  const metric = metricOf(sweep.spec);
  const names = [];
  for (const entry of trial.history) for (const key of Object.keys(entry.metrics)) if (!names.includes(key)) names.push(key);
  // The sweep's metric first, then the rest in the order they were reported.
  names.sort((a, b) => Number(b === metric.name) - Number(a === metric.name));
  if (!names.length) {
    return el("div", { class: "card" }, el("h2", {}, "History"), el("p", { class: "empty" }, "No epochs reported yet."));
  }
  const charts = names.map((name) => {
    const points = trial.history.filter((e) => e.metrics[name] != null).map((e) => [e.step, e.metrics[name]]);
    const series = [{ id: trial.id, number: trial.number, state: trial.state, label: `trial #${trial.number}`, points, color: trialColor(trial.number) }];
    return el(
      "div",
      { class: "card history-chart", "data-metric": name },
      el("h2", {}, name),
      lineChart({ series, xMax: Number(epochsPlanned(sweep)) || 1, yLabel: name, xLabel: "epoch", height: 240 }),
    );
  });
  const table = el(
    "table",
    { id: "trial-history" },
    el("thead", {}, el("tr", {}, el("th", { class: "num" }, "epoch"), names.map((n) => el("th", { class: "num" }, n)))),
    el(
      "tbody",
      {},
      trial.history.map((entry) =>
        el("tr", {}, el("td", { class: "num" }, String(entry.step)), names.map((n) => el("td", { class: "num" }, fmtNumber(entry.metrics[n])))),
      ),
    ),
  );
  return [
    el("div", { class: "grid-2", id: "history-charts" }, charts),
    el("div", { class: "card" }, el("h2", {}, "History"), el("div", { class: "table-wrap" }, table)),
  ];
}

poll(refresh, POLL_MS);

// Where the trial's latest attempt ran: "hostname (ip)", or a dash before it has started.
function nodeText(node) {
  if (!node) return "\u2013";
  const name = node.hostname || node.ip || node.id || "\u2013";
  return node.ip && node.ip !== name ? `${name} (${node.ip})` : name;
}
