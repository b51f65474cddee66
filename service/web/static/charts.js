// Small SVG charts drawn by hand (no library, nothing fetched): a metric-vs-epoch line chart
// and a parallel-coordinates plot of hyperparameters against the metric.

const SVG = "http://www.w3.org/2000/svg";
const PALETTE = [
  "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
  "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#7f7f7f",
];

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
 */
export function parallelCoordinates({ axes, rows, metricLabel, goal = "maximize", width = 760, height = 320 }) {
  const margin = { left: 50, right: 60, top: 34, bottom: 22 };
  const plotH = height - margin.top - margin.bottom;
  const root = svg("svg", {
    class: "chart parallel-coordinates",
    viewBox: `0 0 ${width} ${height}`,
    role: "img",
    "aria-label": `hyperparameters against ${metricLabel}, one line per trial`,
  });
  if (!rows.length) return root;
  const all = [...axes, { key: "__metric", label: metricLabel, kind: "linear", metric: true }];
  const step = all.length > 1 ? (width - margin.left - margin.right) / (all.length - 1) : 0;
  const scales = all.map((axis, i) => {
    const x = margin.left + i * step;
    const values = rows.map((r) => (axis.metric ? r.metric : r.values[axis.key])).filter((v) => v != null);
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

  for (const scale of scales) {
    const group = svg("g", { class: "pc-axis", "data-key": scale.axis.key });
    group.append(
      svg("line", { x1: scale.x, x2: scale.x, y1: margin.top, y2: margin.top + plotH }),
      svg(
        "text",
        { class: "axis-title", x: scale.x, y: margin.top - 14, "text-anchor": "middle" },
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
