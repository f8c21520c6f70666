// Time-series charts of the metrics events, drawn with Chart.js.
//
// Each series keeps the last `windowMinutes` of points as {x: epoch ms, y}; the
// x axis is a plain linear scale labelled as clock time, so no date adapter is
// needed. Animation is off: one redraw a second is all the motion there is.

import {
  Chart,
  Legend,
  LinearScale,
  LineController,
  LineElement,
  PointElement,
  Tooltip,
} from "chart.js";

Chart.register(LineController, LineElement, PointElement, LinearScale, Legend, Tooltip);

const COLOURS = ["#1d4ed8", "#b45309", "#15803d", "#7c3aed", "#be123c"];

function clockTime(milliseconds) {
  return new Date(milliseconds).toLocaleTimeString([], { hour12: false });
}

// The charts and which figure of a metrics event each of their lines shows.
export const CHART_SPECS = [
  { id: "orders", canvas: "chart-orders", lines: [{ label: "orders / min", field: "orders_per_minute" }] },
  { id: "revenue", canvas: "chart-revenue", lines: [{ label: "revenue / min", field: "revenue_per_minute" }] },
  {
    id: "api",
    canvas: "chart-api",
    lines: [
      { label: "requests / s", field: "requests_per_second", axis: "y" },
      { label: "p95 ms", field: "p95_ms", axis: "latency" },
    ],
  },
  { id: "telemetry", canvas: "chart-telemetry", lines: [{ label: "points / s", field: "telemetry_points_per_second" }] },
  { id: "websockets", canvas: "chart-websockets", lines: [{ label: "connections", field: "websocket_connections" }] },
];

function numberOrNull(value) {
  if (value === null || value === undefined) return null;
  const number = typeof value === "number" ? value : Number.parseFloat(value);
  return Number.isFinite(number) ? number : null;
}

function makeChart(canvas, spec, colourOffset) {
  const hasLatency = spec.lines.some((line) => line.axis === "latency");
  const scales = {
    x: {
      type: "linear",
      ticks: { callback: clockTime, maxRotation: 0, autoSkipPadding: 24 },
    },
    y: { type: "linear", beginAtZero: true, position: "left" },
  };
  if (hasLatency) {
    scales.latency = {
      type: "linear",
      beginAtZero: true,
      position: "right",
      grid: { drawOnChartArea: false },
    };
  }
  return new Chart(canvas, {
    type: "line",
    data: {
      datasets: spec.lines.map((line, index) => {
        const colour = COLOURS[(colourOffset + index) % COLOURS.length];
        return {
          label: line.label,
          data: [],
          yAxisID: line.axis || "y",
          borderColor: colour,
          backgroundColor: colour,
          borderWidth: 2,
          pointRadius: 0,
          pointHitRadius: 6,
          tension: 0,
          spanGaps: false,
        };
      }),
    },
    options: {
      animation: false,
      parsing: false,
      normalized: true,
      maintainAspectRatio: false,
      interaction: { mode: "nearest", axis: "x", intersect: false },
      scales,
      plugins: {
        legend: { display: spec.lines.length > 1 },
        tooltip: { callbacks: { title: (items) => (items.length ? clockTime(items[0].parsed.x) : "") } },
      },
    },
  });
}

export class MetricCharts {
  constructor(document, windowMinutes) {
    this.windowMs = windowMinutes * 60 * 1000;
    this.charts = {};
    this.specs = CHART_SPECS;
    CHART_SPECS.forEach((spec, index) => {
      const canvas = document.getElementById(spec.canvas);
      if (canvas) this.charts[spec.id] = makeChart(canvas, spec, index);
    });
  }

  // Appends one metrics event to every chart and forgets points older than the window.
  add(event) {
    this.seed([event]);
  }

  // Appends metrics events, oldest first (the page's history, then each live one),
  // and redraws each chart once.
  seed(events) {
    let latest = null;
    for (const event of events) {
      const at = Date.parse(event.ts);
      if (!Number.isFinite(at)) continue;
      latest = Math.max(latest ?? at, at);
      for (const spec of this.specs) {
        const chart = this.charts[spec.id];
        if (!chart) continue;
        spec.lines.forEach((line, index) => {
          const data = chart.data.datasets[index].data;
          const last = data[data.length - 1];
          if (last && last.x >= at) return; // a repeated or late event
          data.push({ x: at, y: numberOrNull(event[line.field]) });
          this.#trim(data, at);
        });
      }
    }
    if (latest === null) return;
    for (const chart of Object.values(this.charts)) {
      this.#frame(chart, latest);
      chart.update("none");
    }
  }

  // How many points the first line of a chart holds (for people and tests looking in).
  points(id) {
    const chart = this.charts[id];
    return chart ? chart.data.datasets[0].data.length : 0;
  }

  // Breaks the lines where the stream was interrupted, instead of joining across the gap.
  gap(atMs) {
    for (const chart of Object.values(this.charts)) {
      for (const dataset of chart.data.datasets) {
        const last = dataset.data[dataset.data.length - 1];
        if (last && last.y !== null && last.x < atMs) dataset.data.push({ x: atMs, y: null });
      }
    }
  }

  #trim(data, now) {
    const oldest = now - this.windowMs;
    let drop = 0;
    while (drop < data.length && data[drop].x < oldest) drop += 1;
    if (drop) data.splice(0, drop);
  }

  // Shows the whole window once it is full; before that, what there is (at least a minute).
  #frame(chart, now) {
    const first = chart.data.datasets[0].data[0];
    const start = first ? Math.min(first.x, now - 60000) : now - 60000;
    chart.options.scales.x.min = Math.max(now - this.windowMs, start);
    chart.options.scales.x.max = now;
  }
}
