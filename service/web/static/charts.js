// Small SVG charts drawn by hand (no library, nothing fetched): a metric-vs-epoch line chart,
// a parallel-coordinates plot of hyperparameters against the metric (or the objectives), and
// the scatter of two objectives with their Pareto front.

const SVG = "http://www.w3.org/2000/svg";
const PALETTE = [
  "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
  "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#7f7f7f",
];

// Trials on a multi-objective sweep's Pareto front, and the others.
export const FRONT_COLOR = "#d4620b";
export const OFF_FRONT_COLOR = "#8c959f";
const PC_MARGIN = { left: 50, right: 60, top: 34, bottom: 22 };

export function trialColor(number) {
  return PALETTE[Math.abs(number) % PALETTE.length];
}

function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value != null) node.setAttribute(key, String(value));
  }
  for (const child of children) {
    if (child == null) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function title(text) {
  return svg("title", {}, text);
}

/** About `count` round tick values covering [min, max]. */
export function niceTicks(min, max, count = 5) {
  if (!(max > min)) return [min];
  const rawStep = (max - min) / count;
  const power = 10 ** Math.floor(Math.log10(rawStep));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * power).find((s) => s >= rawStep) || 10 * power;
  const ticks = [];
  for (let v = Math.ceil(min / step) * step; v <= max + step * 1e-9; v += step) {
    ticks.push(Number(v.toPrecision(12)));
  }
  return ticks;
}

function tickLabel(value) {
  if (value === 0) return "0";
  const abs = Math.abs(value);
  if (abs < 1e-3 || abs >= 1e5) return value.toExponential(0);
  return String(Number(value.toPrecision(4)));
}

function paddedExtent(values) {
  let min = Math.min(...values);
  let max = Math.max(...values);
  if (min === max) {
    const pad = Math.abs(min) * 0.1 || 1;
    return [min - pad, max + pad];
  }
  const pad = (max - min) * 0.06;
  return [min - pad, max + pad];
}

function follow(node, href) {
  if (!href) return;
  node.addEventListener("click", () => {
    window.location.href = href;
  });
}

/**
 * A line per series over steps: `series` = [{id, number, state, points: [[step, value]], href,
 * best, label}]. Lines of trials that ended early (stopped, cancelled, failed) are dashed and
 * end in a cross, so a run cut short shows against the full `xMax` axis.
 */
export function lineChart({ series, xMax = 1, xLabel = "epoch", yLabel = "", width = 760, height = 300 }) {
  const margin = { left: 58, right: 18, top: 14, bottom: 40 };
  const plotW = width - margin.left - margin.right;
  const plotH = height - margin.top - margin.bottom;
  const root = svg("svg", {
    class: "chart line-chart",
    viewBox: `0 0 ${width} ${height}`,
    role: "img",
    "aria-label": `${yLabel} by ${xLabel}, one line per trial`,
  });
  const drawn = series.filter((s) => s.points.length > 0);
  if (!drawn.length) return root;

  const xs = drawn.flatMap((s) => s.points.map((p) => p[0]));
  const ys = drawn.flatMap((s) => s.points.map((p) => p[1]));
  const x0 = Math.min(1, ...xs);
  const x1 = Math.max(xMax, ...xs, x0 + 1);
  const [y0, y1] = paddedExtent(ys);
  const sx = (x) => margin.left + ((x - x0) / (x1 - x0)) * plotW;
  const sy = (y) => margin.top + plotH - ((y - y0) / (y1 - y0)) * plotH;

  const axes = svg("g", { class: "axis" });
  for (const tick of niceTicks(y0, y1, 5)) {
    if (tick < y0 || tick > y1) continue;
    axes.append(
      svg("line", { class: "gridline", x1: margin.left, x2: width - margin.right, y1: sy(tick), y2: sy(tick) }),
      svg("text", { x: margin.left - 6, y: sy(tick) + 4, "text-anchor": "end" }, tickLabel(tick)),
    );
  }
  const xTicks = x1 - x0 <= 12 ? range(Math.ceil(x0), Math.floor(x1)) : niceTicks(x0, x1, 8);
  for (const tick of xTicks) {
    axes.append(
      svg("line", { x1: sx(tick), x2: sx(tick), y1: margin.top + plotH, y2: margin.top + plotH + 4 }),
      svg("text", { x: sx(tick), y: margin.top + plotH + 16, "text-anchor": "middle" }, tickLabel(tick)),
    );
  }
  axes.append(
    svg("line", { x1: margin.left, x2: width - margin.right, y1: margin.top + plotH, y2: margin.top + plotH }),
    svg("line", { x1: margin.left, x2: margin.left, y1: margin.top, y2: margin.top + plotH }),
    svg("text", { x: margin.left + plotW / 2, y: height - 6, "text-anchor": "middle" }, xLabel),
    svg(
      "text",
      { x: 14, y: margin.top + plotH / 2, "text-anchor": "middle", transform: `rotate(-90 14 ${margin.top + plotH / 2})` },
      yLabel,
    ),
  );
  root.append(axes);

  // The best trial is drawn last so it stays on top.
  const ordered = [...drawn].sort((a, b) => Number(Boolean(a.best)) - Number(Boolean(b.best)));
  for (const s of ordered) {
    const color = s.color || trialColor(s.number || 0);
    const d = s.points.map((p, i) => `${i ? "L" : "M"}${sx(p[0]).toFixed(1)} ${sy(p[1]).toFixed(1)}`).join(" ");
    const ended = ["stopped", "cancelled", "failed"].includes(s.state);
    const last = s.points[s.points.length - 1];
    const path = svg(
      "path",
      {
        class: `trial-line ${s.state || ""}${s.best ? " best" : ""}`,
        d: s.points.length === 1 ? `${d} l0.01 0` : d,
        stroke: color,
        "data-trial-id": s.id,
        "data-state": s.state,
        "data-points": s.points.length,
        "data-last-step": last[0],
      },
      title(`${s.label} \u00b7 ${s.state} \u00b7 ${yLabel} ${tickLabel(last[1])} at ${xLabel} ${last[0]}`),
    );
    follow(path, s.href);
    const group = svg("g", { class: "series" }, path);
    const [ex, ey] = [sx(last[0]), sy(last[1])];
    if (ended) {
      const mark = svg("path", {
        class: "stop-mark",
        d: `M${ex - 5} ${ey - 5} L${ex + 5} ${ey + 5} M${ex - 5} ${ey + 5} L${ex + 5} ${ey - 5}`,
        stroke: color,
        "data-trial-id": s.id,
      });
      mark.append(title(`${s.label} ${s.state} after ${xLabel} ${last[0]}`));
      group.append(mark);
    } else {
      group.append(svg("circle", { class: "end-dot", cx: ex, cy: ey, r: 3, fill: color }));
    }
    root.append(group);
  }
  return root;
}

function range(from, to) {
  const out = [];
  for (let v = from; v <= to; v += 1) out.push(v);
  return out;
}

function numericScale(values, log) {
  const usable = log ? values.filter((v) => v > 0).map(Math.log10) : values;
  const [lo, hi] = paddedExtent(usable.length ? usable : [0]);
  const position = (v) => ((log ? Math.log10(v) : v) - lo) / (hi - lo);
  let ticks;
  if (log) {
    ticks = range(Math.ceil(lo), Math.floor(hi)).map((p) => 10 ** p);
    if (ticks.length < 2) ticks = [10 ** lo, 10 ** hi].map((v) => Number(v.toPrecision(2)));
  } else {
    ticks = niceTicks(lo, hi, 4).filter((t) => t >= lo && t <= hi);
  }
  return { position, ticks };
}

/**
 * One vertical axis per hyperparameter and a last one for the metric; one polyline per row.
 * `axes` = [{key, label, kind: "linear" | "log" | "category", categories}], `rows` =
 * [{id, values: {key: value}, metric, href, best, label}]. Lines are coloured by the metric,
 * from worst (purple) to best (green) by `goal`, the best row thicker; a row without a metric stops before that axis.
 *
 * With `objectives` (a multi-objective sweep: [{name, goal}]) the last axes are the objectives
 * instead, read from each row's `objectives: {name: value}`; rows on the Pareto front
 * (`front: true`) are drawn on top, coloured and thick, the others in grey, and a row missing
 * an objective is dashed.
 */
export function parallelCoordinates({
  axes, rows, metricLabel, goal = "maximize", objectives = null, width = 760, height = 320,
}) {
  if (objectives) return objectiveCoordinates({ axes, rows, objectives, width, height });
  const margin = PC_MARGIN;
  const plotH = height - margin.top - margin.bottom;
  const root = svg("svg", {
    class: "chart parallel-coordinates",
    viewBox: `0 0 ${width} ${height}`,
    role: "img",
    "aria-label": `hyperparameters against ${metricLabel}, one line per trial`,
  });
  if (!rows.length) return root;
  const all = [...axes, { key: "__metric", label: metricLabel, kind: "linear", metric: true }];
  const scales = parallelScales(all, rows, (axis, r) => (axis.metric ? r.metric : r.values[axis.key]), width, margin);
  const y = (fraction) => margin.top + plotH - fraction * plotH;

  const metrics = rows.map((r) => r.metric).filter((v) => v != null);
  const [m0, m1] = [Math.min(...metrics), Math.max(...metrics)];
  const goodness = (v) => {
    if (v == null || !(m1 > m0)) return 1;
    const t = (v - m0) / (m1 - m0);
    return goal === "minimize" ? 1 - t : t;
  };

  const lines = svg("g", { class: "pc-lines" });
  const ordered = [...rows].sort((a, b) => goodness(a.metric) - goodness(b.metric) || Number(Boolean(a.best)) - Number(Boolean(b.best)));
  for (const row of ordered) {
    const points = [];
    for (const scale of scales) {
      const value = scale.axis.metric ? row.metric : row.values[scale.axis.key];
      if (value == null) continue;
      points.push(`${scale.x.toFixed(1)} ${y(scale.position(value)).toFixed(1)}`);
    }
    if (!points.length) continue;
    const color = row.metric == null ? "#afb8c1" : metricColor(goodness(row.metric));
    const path = svg(
      "path",
      {
        class: `pc-line${row.metric == null ? " no-metric" : ""}${row.best ? " best" : ""}`,
        d: `M${points.join(" L")}`,
        stroke: color,
        "data-trial-id": row.id,
      },
      title(row.label),
    );
    follow(path, row.href);
    lines.append(path);
  }
  root.append(lines);
  drawParallelAxes(root, scales, y, margin.top, plotH);
  return root;
}

/** One scale per axis, spread evenly across the width; values of each axis by `valueOf`. */
function parallelScales(all, rows, valueOf, width, margin) {
  const step = all.length > 1 ? (width - margin.left - margin.right) / (all.length - 1) : 0;
  return all.map((axis, i) => {
    const x = margin.left + i * step;
    const values = rows.map((r) => valueOf(axis, r)).filter((v) => v != null);
    if (axis.kind === "category") {
      const seen = axis.categories ? [...axis.categories] : [];
      for (const v of values) if (!seen.some((c) => String(c) === String(v))) seen.push(v);
      const index = (v) => seen.findIndex((c) => String(c) === String(v));
      const position = (v) => (seen.length > 1 ? index(v) / (seen.length - 1) : 0.5);
      return { axis, x, position, ticks: seen, category: true };
    }
    const numbers = values.filter((v) => typeof v === "number");
    const log = axis.kind === "log" && numbers.length > 0 && numbers.every((v) => v > 0);
    return { axis, x, ...numericScale(numbers, log) };
  });
}

/** The axes with their titles and ticks; `stagger` sets every other title higher, so long
 * titles of close axes do not overlap. */
function drawParallelAxes(root, scales, y, top, plotH, stagger = false) {
  for (const [i, scale] of scales.entries()) {
    const group = svg("g", { class: "pc-axis", "data-key": scale.axis.key });
    group.append(
      svg("line", { x1: scale.x, x2: scale.x, y1: top, y2: top + plotH }),
      svg(
        "text",
        { class: "axis-title", x: scale.x, y: top - (stagger && i % 2 === 0 ? 28 : 14), "text-anchor": "middle" },
        scale.axis.label + (scale.axis.kind === "log" ? " (log)" : ""),
      ),
    );
    for (const tick of scale.ticks) {
      const ty = y(scale.position(tick));
      group.append(
        svg("line", { x1: scale.x - 3, x2: scale.x + 3, y1: ty, y2: ty }),
        svg("text", { x: scale.x + 6, y: ty + 4 }, scale.category ? String(tick) : tickLabel(tick)),
      );
    }
    root.append(group);
  }
}

/** The parallel coordinates of a multi-objective sweep: see `parallelCoordinates`. */
function objectiveCoordinates({ axes, rows, objectives, width, height }) {
  const names = objectives.map((o) => o.name).join(", ");
  const root = svg("svg", {
    class: "chart parallel-coordinates",
    viewBox: `0 0 ${width} ${height}`,
    role: "img",
    "aria-label": `hyperparameters against ${names}, one line per trial, the Pareto front marked`,
  });
  if (!rows.length) return root;
  const all = [
    ...axes,
    ...objectives.map((o) => ({
      key: `objective:${o.name}`,
      label: `${o.name} (${o.goal === "maximize" ? "max" : "min"})`,
      kind: "linear",
      objective: o.name,
    })),
  ];
  const valueOf = (axis, row) => (axis.objective != null ? (row.objectives || {})[axis.objective] : row.values[axis.key]);
  // Room above for two rows of titles, and on the right for half of the last one.
  const lastTitle = all[all.length - 1].label.length;
  const margin = { ...PC_MARGIN, top: PC_MARGIN.top + 14, right: Math.max(PC_MARGIN.right, Math.ceil(lastTitle * 3.6) + 8) };
  const plotH = height - margin.top - margin.bottom;
  const scales = parallelScales(all, rows, valueOf, width, margin);
  const y = (fraction) => margin.top + plotH - fraction * plotH;

  const lines = svg("g", { class: "pc-lines" });
  // The front is drawn last so it stays on top.
  const ordered = [...rows].sort((a, b) => Number(Boolean(a.front)) - Number(Boolean(b.front)));
  for (const row of ordered) {
    const points = [];
    for (const scale of scales) {
      const value = valueOf(scale.axis, row);
      if (value == null) continue;
      points.push(`${scale.x.toFixed(1)} ${y(scale.position(value)).toFixed(1)}`);
    }
    if (!points.length) continue;
    const incomplete = objectives.some((o) => (row.objectives || {})[o.name] == null);
    const path = svg(
      "path",
      {
        class: `pc-line${incomplete ? " no-metric" : ""}${row.front ? " front" : " dominated"}`,
        d: `M${points.join(" L")}`,
        stroke: row.front ? FRONT_COLOR : OFF_FRONT_COLOR,
        "data-trial-id": row.id,
      },
      title(row.label),
    );
    follow(path, row.href);
    lines.append(path);
  }
  root.append(lines);
  drawParallelAxes(root, scales, y, margin.top, plotH, true);
  return root;
}

/** Each side of two values that is worse by `goal`. */
function worse(a, b, goal) {
  return goal === "maximize" ? Math.min(a, b) : Math.max(a, b);
}

/**
 * Two objectives against each other: `points` = [{id, x, y, front, href, label}], one circle
 * per trial, each a link to it; the front's points are highlighted and joined by the step line
 * that bounds what they dominate. `x` and `y` = {name, goal}. An objective whose positive values
 * span two orders of magnitude or more (a parameter count, say) gets a log axis.
 */
export function scatterPlot({ points, x, y, width = 760, height = 340 }) {
  const margin = { left: 66, right: 18, top: 14, bottom: 42 };
  const plotW = width - margin.left - margin.right;
  const plotH = height - margin.top - margin.bottom;
  const axisTitle = (objective, log) => `${objective.name} (${objective.goal})${log ? " (log)" : ""}`;
  const root = svg("svg", {
    class: "chart scatter-plot",
    viewBox: `0 0 ${width} ${height}`,
    role: "img",
    "aria-label": `${y.name} against ${x.name}, one point per finished trial, the Pareto front highlighted`,
    "data-x": x.name,
    "data-y": y.name,
  });
  if (!points.length) return root;
  const wantsLog = (values) => values.every((v) => v > 0) && Math.max(...values) / Math.min(...values) >= 100;
  const xs = points.map((p) => p.x);
  const ys = points.map((p) => p.y);
  const [xLog, yLog] = [wantsLog(xs), wantsLog(ys)];
  const xScale = numericScale(xs, xLog);
  const yScale = numericScale(ys, yLog);
  const sx = (v) => margin.left + xScale.position(v) * plotW;
  const sy = (v) => margin.top + plotH - yScale.position(v) * plotH;

  const axes = svg("g", { class: "axis" });
  for (const tick of yScale.ticks) {
    axes.append(
      svg("line", { class: "gridline", x1: margin.left, x2: width - margin.right, y1: sy(tick), y2: sy(tick) }),
      svg("text", { x: margin.left - 6, y: sy(tick) + 4, "text-anchor": "end" }, tickLabel(tick)),
    );
  }
  for (const tick of xScale.ticks) {
    axes.append(
      svg("line", { class: "gridline", x1: sx(tick), x2: sx(tick), y1: margin.top, y2: margin.top + plotH }),
      svg("text", { x: sx(tick), y: margin.top + plotH + 16, "text-anchor": "middle" }, tickLabel(tick)),
    );
  }
  axes.append(
    svg("line", { x1: margin.left, x2: width - margin.right, y1: margin.top + plotH, y2: margin.top + plotH }),
    svg("line", { x1: margin.left, x2: margin.left, y1: margin.top, y2: margin.top + plotH }),
    svg("text", { class: "axis-title x-title", x: margin.left + plotW / 2, y: height - 6, "text-anchor": "middle" }, axisTitle(x, xLog)),
    svg(
      "text",
      {
        class: "axis-title y-title",
        x: 14,
        y: margin.top + plotH / 2,
        "text-anchor": "middle",
        transform: `rotate(-90 14 ${margin.top + plotH / 2})`,
      },
      axisTitle(y, yLog),
    ),
  );
  root.append(axes);

  // The front as a staircase: between two neighbours along x, through the corner that is
  // worse than both in each objective, so the line bounds the region the front dominates.
  const front = points.filter((p) => p.front).sort((a, b) => a.x - b.x || a.y - b.y);
  if (front.length) {
    const steps = [`M${sx(front[0].x).toFixed(1)} ${sy(front[0].y).toFixed(1)}`];
    for (let i = 1; i < front.length; i += 1) {
      const [p, q] = [front[i - 1], front[i]];
      const corner = [worse(p.x, q.x, x.goal), worse(p.y, q.y, y.goal)];
      steps.push(`L${sx(corner[0]).toFixed(1)} ${sy(corner[1]).toFixed(1)}`, `L${sx(q.x).toFixed(1)} ${sy(q.y).toFixed(1)}`);
    }
    root.append(svg("path", { class: "front-line", d: steps.join(" "), stroke: FRONT_COLOR }));
  }

  const marks = svg("g", { class: "points" });
  const ordered = [...points].sort((a, b) => Number(Boolean(a.front)) - Number(Boolean(b.front)));
  for (const p of ordered) {
    const circle = svg("circle", {
      class: `point${p.front ? " front" : ""}`,
      cx: sx(p.x).toFixed(1),
      cy: sy(p.y).toFixed(1),
      r: p.front ? 6 : 4.5,
      fill: p.front ? FRONT_COLOR : OFF_FRONT_COLOR,
      "data-trial-id": p.id,
    });
    marks.append(svg("a", { class: "point-link", href: p.href, "data-trial-id": p.id }, circle, title(p.label)));
  }
  root.append(marks);
  return root;
}

/** Purple (worst) to teal to green (best); dark enough to read on white. */
export function metricColor(t) {
  const stops = [
    [68, 1, 84],
    [33, 145, 140],
    [76, 175, 80],
  ];
  const scaled = Math.min(Math.max(t, 0), 1) * (stops.length - 1);
  const i = Math.min(Math.floor(scaled), stops.length - 2);
  const f = scaled - i;
  const c = stops[i].map((v, k) => Math.round(v + (stops[i + 1][k] - v) * f));
  return `rgb(${c[0]}, ${c[1]}, ${c[2]})`;
}
