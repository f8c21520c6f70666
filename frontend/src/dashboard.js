// The live dashboard page: figures, charts and courier positions from /ws/dashboard/.
//
// Everything the page shows comes from two kinds of events on one socket:
// {"type": "metrics", ...} once a second and {"type": "positions", ...} after
// telemetry is stored. The current state is also on `window.emporiumDashboard`
// for people (and browser tests) who want to look inside.

import { MetricCharts } from "./charts.js";
import { PositionsView } from "./positions.js";
import { connect, socketUrl } from "./socket.js";

const FIGURE_FORMATS = {
  orders_per_minute: (value) => String(value),
  revenue_per_minute: (value) => Number.parseFloat(value).toFixed(2),
  requests_per_second: (value) => value.toFixed(1),
  p95_ms: (value) => `${value.toFixed(1)} ms`,
  telemetry_points_per_second: (value) => value.toFixed(1),
  websocket_connections: (value) => String(value),
};

function showFigures(event) {
  for (const [field, format] of Object.entries(FIGURE_FORMATS)) {
    const target = document.getElementById(`figure-${field}`);
    const value = event[field];
    if (target) target.textContent = value === null || value === undefined ? "–" : format(value);
  }
  const time = document.getElementById("latest-time");
  if (time) time.textContent = new Date(Date.parse(event.ts)).toLocaleTimeString([], { hour12: false });
}

// The metrics events of the last minutes, rendered into the page by the server.
function historyEvents(root) {
  try {
    const events = JSON.parse(root.dataset.history || "[]");
    return Array.isArray(events) ? events : [];
  } catch {
    return [];
  }
}

function start() {
  const root = document.getElementById("dashboard");
  if (!root) return;
  const windowMinutes = Number.parseInt(root.dataset.windowMinutes || "15", 10);
  const status = document.getElementById("connection");
  const charts = new MetricCharts(document, windowMinutes);
  const positions = new PositionsView(document);
  const state = {
    connection: "connecting",
    metricsReceived: 0,
    positionsReceived: 0,
    lastMetrics: null,
    charts: charts.charts,
    positions,
    historyPoints: 0,
  };
  window.emporiumDashboard = state;
  const history = historyEvents(root);
  charts.seed(history);
  state.historyPoints = history.length;
  if (history.length) showFigures(history[history.length - 1]);

  const handlers = {
    metrics(event) {
      state.metricsReceived += 1;
      state.lastMetrics = event;
      showFigures(event);
      charts.add(event);
    },
    positions(event) {
      if (!Array.isArray(event.positions)) return;
      state.positionsReceived += 1;
      positions.add(event.positions);
    },
  };

  connect({
    url: socketUrl(root.dataset.socketPath, window.location),
    onEvent(event) {
      const handle = handlers[event.type];
      if (handle) handle(event);
    },
    onState({ state: connection, text }) {
      if (state.connection === "open" && connection !== "open") charts.gap(Date.now());
      state.connection = connection;
      status.dataset.state = connection;
      status.textContent = text;
    },
  });
  window.setInterval(() => positions.forgetSilent(), 30000);
}

if (document.readyState === "loading") {
  document.addEventListener("DOMContentLoaded", start);
} else {
  start();
}
