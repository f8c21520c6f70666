"""Emporium's Grafana dashboards, declared once and written as provisioned JSON.

Every panel is a title, a unit and its PromQL queries; this script lays them
out and writes ``deploy/grafana/dashboards/<uid>.json``, the files Grafana's
provisioning (``provisioning/dashboards/emporium.yml``) loads:

    python deploy/grafana/dashboards.py           # write the JSON files
    python deploy/grafana/dashboards.py --check   # fail if they differ from this definition

Queries use fixed ``[5m]`` windows rather than Grafana's ``$__rate_interval``, so
that each one is a complete PromQL expression: the dashboards' test evaluates
every one of them against a Prometheus scraping a running Emporium
(tests/test_dashboards_live.py). Where a figure can legitimately have no
series at all (no 5xx answer yet, no message ever dropped) the query adds
``or vector(0)`` so that the panel shows 0 rather than "No data".
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DIRECTORY = Path(__file__).resolve().parent / "dashboards"
# The data source's uid in provisioning/datasources/prometheus.yml.
DATASOURCE = {"type": "prometheus", "uid": "prometheus"}
WINDOW = "5m"
QUANTILES = (0.5, 0.95, 0.99)
# The checkout is POST on the order list route.
CHECKOUT = 'route="api/orders/", method="POST"'


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str


@dataclass(frozen=True)
class Panel:
    title: str
    queries: tuple[Query, ...]
    unit: str = "short"
    description: str = ""
    kind: str = "timeseries"  # or "stat"
    width: int = 12


@dataclass(frozen=True)
class Row:
    title: str
    panels: tuple[Panel, ...]


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title: str
    description: str
    rows: tuple[Row, ...] = field(default_factory=tuple)


def rate(metric: str, selector: str = "", by: str = "") -> str:
    grouping = f" by ({by})" if by else ""
    matchers = f"{{{selector}}}" if selector else ""
    return f"sum{grouping} (rate({metric}{matchers}[{WINDOW}]))"


def quantile(value: float, histogram: str, selector: str = "", by: str = "") -> str:
    labels = f"{by}, le" if by else "le"
    return f"histogram_quantile({value}, {rate(histogram + '_bucket', selector, labels)})"


def quantile_queries(histogram: str, selector: str = "") -> tuple[Query, ...]:
    """p50, p95 and p99 of a histogram, one series each."""
    return tuple(
        Query(quantile(value, histogram, selector), f"p{round(value * 100)}") for value in QUANTILES
    )


def per_route_quantile(value: float) -> Panel:
    return Panel(
        f"p{round(value * 100)} latency by route",
        (
            Query(
                quantile(value, "emporium_http_request_duration_seconds", by="route"), "{{route}}"
            ),
        ),
        unit="s",
    )


def ratio(numerator: str, denominator: str) -> str:
    """A share that is 0, not absent, while the numerator has no series yet."""
    return f"({numerator} or vector(0)) / {denominator}"


HTTP = "emporium_http_requests_total"

API = Dashboard(
    uid="emporium-api",
    title="Emporium API",
    description="Throughput, latency and errors of the HTTP API, per route; process health.",
    rows=(
        Row(
            "Throughput",
            (
                Panel("Requests by route", (Query(rate(HTTP, by="route"), "{{route}}"),), "reqps"),
                Panel(
                    "Requests by status",
                    (Query(rate(HTTP, by="status"), "{{status}}"),),
                    "reqps",
                ),
            ),
        ),
        Row(
            "Latency",
            (
                Panel(
                    "Latency of all requests",
                    quantile_queries("emporium_http_request_duration_seconds"),
                    "s",
                ),
                *(per_route_quantile(value) for value in QUANTILES),
            ),
        ),
        Row(
            "Errors",
            (
                Panel(
                    "Share of 5xx answers",
                    (Query(ratio(rate(HTTP, 'status=~"5.."'), rate(HTTP)), "5xx"),),
                    "percentunit",
                    "The figure EmporiumHighErrorRate alerts on (above 5 %).",
                ),
                Panel(
                    "4xx and 5xx answers by route and status",
                    (
                        Query(
                            rate(HTTP, 'status=~"[45].."', by="route, status"),
                            "{{route}} {{status}}",
                        ),
                    ),
                    "reqps",
                ),
            ),
        ),
        Row(
            "Processes",
            (
                Panel(
                    "Targets up",
                    (Query('sum by (job) (up{job=~"emporium-.*"})', "{{job}}"),),
                    description="Processes of each job that answered their last scrape.",
                ),
                Panel(
                    "Dependencies seen by readiness",
                    (Query("min by (dependency) (emporium_dependency_up)", "{{dependency}}"),),
                    description="1 when every web process reached it at its last readiness probe.",
                ),
            ),
        ),
    ),
)

CHECKOUT_AND_PAYMENTS = Dashboard(
    uid="emporium-checkout",
    title="Emporium checkout and payments",
    description="Orders placed and refused, the checkout's latency, payments and the breaker.",
    rows=(
        Row(
            "Checkout",
            (
                Panel(
                    "Orders placed",
                    (Query(rate("emporium_checkout_orders_total"), "orders"),),
                    "ops",
                ),
                Panel(
                    "Checkouts refused by reason",
                    (Query(rate("emporium_checkout_refusals_total", by="reason"), "{{reason}}"),),
                    "ops",
                ),
                Panel(
                    "Checkout latency",
                    quantile_queries("emporium_http_request_duration_seconds", CHECKOUT),
                    "s",
                ),
                Panel(
                    "Share of checkouts refused",
                    (
                        Query(
                            ratio(
                                rate("emporium_checkout_refusals_total"),
                                f"({rate('emporium_checkout_refusals_total')}"
                                f" + {rate('emporium_checkout_orders_total')})",
                            ),
                            "refused",
                        ),
                    ),
                    "percentunit",
                ),
            ),
        ),
        Row(
            "Payments",
            (
                Panel(
                    "Payments by outcome",
                    (Query(rate("emporium_payments_total", by="outcome"), "{{outcome}}"),),
                    "ops",
                ),
                Panel(
                    "Payment breaker",
                    (Query("max(emporium_payment_breaker_open)", "open"),),
                    description="1 while the provider's circuit breaker is open in any process.",
                    kind="stat",
                ),
            ),
        ),
    ),
)

ASYNC = Dashboard(
    uid="emporium-async",
    title="Emporium queues, outbox and tasks",
    description="RabbitMQ queues, the outbox relay, Celery tasks, beat and the publisher.",
    rows=(
        Row(
            "Queues",
            (
                Panel(
                    "Messages ready by queue",
                    (Query("max by (queue) (emporium_queue_messages)", "{{queue}}"),),
                ),
                Panel(
                    "Consumers by queue",
                    (Query("max by (queue) (emporium_queue_consumers)", "{{queue}}"),),
                ),
                Panel(
                    "Dead-letter queue",
                    (
                        Query(
                            'max(emporium_queue_messages{queue="emporium.dead"})',
                            "parked messages",
                        ),
                    ),
                    description="Messages that failed their delivery limit, waiting for a person.",
                ),
            ),
        ),
        Row(
            "Outbox",
            (
                Panel("Outbox backlog", (Query("max(emporium_outbox_backlog)", "events"),)),
                Panel(
                    "Oldest undelivered event",
                    (Query("max(emporium_outbox_oldest_age_seconds)", "age"),),
                    "s",
                ),
                Panel(
                    "Events relayed by outcome",
                    (
                        Query(
                            rate("emporium_outbox_events_relayed_total", by="outcome"),
                            "{{outcome}}",
                        ),
                    ),
                    "ops",
                ),
            ),
        ),
        Row(
            "Tasks",
            (
                Panel(
                    "Task runs by task and outcome",
                    (
                        Query(
                            rate("emporium_celery_tasks_total", by="task, outcome"),
                            "{{task}} {{outcome}}",
                        ),
                    ),
                    "ops",
                ),
                Panel(
                    "p95 task duration by task",
                    (
                        Query(
                            quantile(0.95, "emporium_celery_task_duration_seconds", by="task"),
                            "{{task}}",
                        ),
                    ),
                    "s",
                ),
                Panel(
                    "Beat schedules sent",
                    (
                        Query(
                            rate("emporium_beat_schedules_sent_total", by="schedule"),
                            "{{schedule}}",
                        ),
                    ),
                    "ops",
                ),
                Panel(
                    "Dashboard figures published",
                    (Query(rate("emporium_dashboard_publishes_total"), "publishes"),),
                    "ops",
                ),
            ),
        ),
    ),
)

DATA = Dashboard(
    uid="emporium-data",
    title="Emporium database and cache",
    description="Database work per request, replica lag, and the cache's hit ratio.",
    rows=(
        Row(
            "Database",
            (
                Panel(
                    "Queries per request by route (mean)",
                    (
                        Query(
                            f"{rate('emporium_http_request_db_queries_sum', by='route')}"
                            f" / {rate('emporium_http_request_db_queries_count', by='route')}",
                            "{{route}}",
                        ),
                    ),
                ),
                Panel(
                    "p95 queries per request by route",
                    (
                        Query(
                            quantile(0.95, "emporium_http_request_db_queries", by="route"),
                            "{{route}}",
                        ),
                    ),
                ),
                Panel(
                    "p95 database time per request by route",
                    (
                        Query(
                            quantile(0.95, "emporium_http_request_db_duration_seconds", by="route"),
                            "{{route}}",
                        ),
                    ),
                    "s",
                ),
                Panel(
                    "Share of request time spent in the database",
                    (
                        Query(
                            f"{rate('emporium_http_request_db_duration_seconds_sum')}"
                            f" / {rate('emporium_http_request_duration_seconds_sum')}",
                            "database",
                        ),
                    ),
                    "percentunit",
                ),
                Panel(
                    "Replica lag",
                    (
                        Query(
                            "max by (replica) (emporium_database_replication_lag_seconds)",
                            "{{replica}}",
                        ),
                    ),
                    "s",
                    "How far each read replica is behind the primary, as the app servers' "
                    "probes last measured it.",
                ),
                Panel(
                    "Replicas usable for reads",
                    (
                        Query(
                            "min by (replica) (emporium_database_replica_up)",
                            "{{replica}}",
                        ),
                    ),
                    "short",
                    "1 while the app servers send reads to the replica; 0 while it is down, "
                    "lagging past the bound or promoted (its reads go to the primary).",
                ),
            ),
        ),
        Row(
            "Cache",
            (
                Panel(
                    "Cache hit ratio by namespace",
                    (
                        Query(
                            rate("emporium_cache_requests_total", 'result="hit"', by="namespace")
                            + " / "
                            + rate("emporium_cache_requests_total", by="namespace"),
                            "{{namespace}}",
                        ),
                    ),
                    "percentunit",
                ),
                Panel(
                    "Cache requests by namespace and result",
                    (
                        Query(
                            rate("emporium_cache_requests_total", by="namespace, result"),
                            "{{namespace}} {{result}}",
                        ),
                    ),
                    "ops",
                ),
            ),
        ),
    ),
)

LIVE = Dashboard(
    uid="emporium-live",
    title="Emporium telemetry and WebSockets",
    description="Courier telemetry ingestion and the WebSocket servers.",
    rows=(
        Row(
            "Telemetry",
            (
                Panel(
                    "Points by result",
                    (Query(rate("emporium_telemetry_points_total", by="result"), "{{result}}"),),
                    "ops",
                ),
                Panel(
                    "Share of points rejected",
                    (
                        Query(
                            ratio(
                                rate("emporium_telemetry_points_total", 'result="rejected"'),
                                rate("emporium_telemetry_points_total"),
                            ),
                            "rejected",
                        ),
                    ),
                    "percentunit",
                    "The figure EmporiumTelemetryRejections alerts on (above 10 %).",
                ),
                Panel(
                    "Ingest latency per batch",
                    quantile_queries("emporium_telemetry_ingest_duration_seconds"),
                    "s",
                ),
                Panel(
                    "Batches ingested",
                    (Query(rate("emporium_telemetry_ingest_duration_seconds_count"), "batches"),),
                    "reqps",
                ),
            ),
        ),
        Row(
            "WebSockets",
            (
                Panel(
                    "Open connections",
                    (
                        Query(
                            'sum by (instance) (emporium_websocket_connections{job="emporium-ws"})',
                            "{{instance}}",
                        ),
                    ),
                    description="Per WebSocket server (every process exports the gauge, at 0).",
                ),
                Panel(
                    "Messages sent",
                    (Query(rate("emporium_websocket_messages_sent_total"), "sent"),),
                    "ops",
                ),
                Panel(
                    "Messages dropped by reason",
                    (
                        Query(
                            f"{rate('emporium_websocket_messages_dropped_total', by='reason')}"
                            " or vector(0)",
                            "{{reason}}",
                        ),
                    ),
                    "ops",
                    "slow_client: a full buffer closed the socket; superseded: a snapshot "
                    "stream's oldest entry gave way to a newer one.",
                ),
            ),
        ),
    ),
)

DASHBOARDS = (API, CHECKOUT_AND_PAYMENTS, ASYNC, DATA, LIVE)


# -- layout ------------------------------------------------------------------------------

PANEL_HEIGHT = 8
GRID_WIDTH = 24


def _target(query: Query, ref_id: str) -> dict[str, Any]:
    return {
        "datasource": DATASOURCE,
        "expr": query.expr,
        "legendFormat": query.legend,
        "range": True,
        "refId": ref_id,
    }


def _panel(panel: Panel, panel_id: int, x: int, y: int) -> dict[str, Any]:
    options: dict[str, Any]
    if panel.kind == "stat":
        options = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}}
    else:
        options = {
            "legend": {"calcs": ["mean", "max"], "displayMode": "table", "placement": "bottom"},
            "tooltip": {"mode": "multi", "sort": "desc"},
        }
    return {
        "datasource": DATASOURCE,
        "description": panel.description,
        "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
        "gridPos": {"h": PANEL_HEIGHT, "w": panel.width, "x": x, "y": y},
        "id": panel_id,
        "options": options,
        "targets": [
            _target(query, chr(ord("A") + index)) for index, query in enumerate(panel.queries)
        ],
        "title": panel.title,
        "type": panel.kind,
    }


def dashboard_json(dashboard: Dashboard) -> dict[str, Any]:
    """Grafana's dashboard model: rows across the full width, panels left to right."""
    panels: list[dict[str, Any]] = []
    y = 0
    for row in dashboard.rows:
        panels.append(
            {
                "collapsed": False,
                "gridPos": {"h": 1, "w": GRID_WIDTH, "x": 0, "y": y},
                "id": len(panels) + 1,
                "panels": [],
                "title": row.title,
                "type": "row",
            }
        )
        y += 1
        x = 0
        for panel in row.panels:
            if x + panel.width > GRID_WIDTH:
                x, y = 0, y + PANEL_HEIGHT
            panels.append(_panel(panel, len(panels) + 1, x, y))
            x += panel.width
        y += PANEL_HEIGHT
    return {
        "annotations": {"list": []},
        "description": dashboard.description,
        "editable": False,
        "links": [
            {"asDropdown": True, "tags": ["emporium"], "title": "Emporium", "type": "dashboards"}
        ],
        "panels": panels,
        "refresh": "30s",
        "schemaVersion": 39,
        "tags": ["emporium"],
        "templating": {"list": []},
        "time": {"from": "now-6h", "to": "now"},
        "timezone": "browser",
        "title": dashboard.title,
        "uid": dashboard.uid,
        "version": 1,
    }


def rendered() -> dict[Path, str]:
    """Each dashboard's file and its text, as committed."""
    return {
        DIRECTORY / f"{dashboard.uid}.json": json.dumps(dashboard_json(dashboard), indent=2) + "\n"
        for dashboard in DASHBOARDS
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--check", action="store_true", help="fail if the JSON files differ from the definition"
    )
    arguments = parser.parse_args(argv)
    files = rendered()
    if arguments.check:
        stale = sorted(
            str(path.name)
            for path, text in files.items()
            if not path.exists() or path.read_text() != text
        )
        extra = sorted(path.name for path in DIRECTORY.glob("*.json") if path not in files)
        if stale or extra:
            print(
                "deploy/grafana/dashboards differs from its definition: "
                f"out of date {stale}, not defined {extra}; run python {Path(__file__).name}",
                file=sys.stderr,
            )
            return 1
        return 0
    DIRECTORY.mkdir(exist_ok=True)
    for path, text in files.items():
        path.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
