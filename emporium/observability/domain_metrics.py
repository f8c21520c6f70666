"""The domain's Prometheus metrics: what the shop did, counted where it happens.

Names and labels are those the dashboards and alerts are written against. Each
metric is changed at the one place its event happens: checkout in
``orders.services.order_place``, payment outcomes where a payment is settled
(``payments.services``), the breaker by a listener on it, telemetry in
``delivery.services.telemetry_batch_ingest``, sockets in ``realtime.hub``,
Celery tasks by signal receivers (``observability.task_metrics``), the outbox
by its relay and its backlog and the queues by the relay's sampler
(``integrations.backlog``). Hot paths count once per request or batch: an
increment costs about 0.3 µs in one process and 0.6 µs in multiprocess mode,
so they count whether or not ``METRICS_ENABLED`` is on.

This module imports nothing of Django or of the apps, so every layer may
import it (it sits in the lowest layer of the import contract). Under
prometheus-client's multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``) each
gauge says how the processes' values combine: an open-socket count is the sum
over live processes, a measured value is the one set most recently.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

# -- checkout and payments (web processes and workers) ------------------------------

CHECKOUT_ORDERS = Counter("emporium_checkout_orders", "Orders placed by checkout.")
CHECKOUT_REFUSALS = Counter(
    "emporium_checkout_refusals",
    "Checkouts refused, by the error code the client was answered with.",
    ["reason"],
)
PAYMENTS = Counter(
    "emporium_payments",
    "Payments settled, by outcome: succeeded, declined, rejected, failed (no answer in time), "
    "refunded, late_success (charged after it was given up; refunded).",
    ["outcome"],
)
PAYMENT_BREAKER_OPEN = Gauge(
    "emporium_payment_breaker_open",
    "1 while the payment provider's circuit breaker is open, as this process last saw it.",
    multiprocess_mode="mostrecent",
)

# -- delivery telemetry ----------------------------------------------------------------

TELEMETRY_POINTS = Counter(
    "emporium_telemetry_points",
    "Telemetry points received, by result (accepted, duplicate, rejected).",
    ["result"],
)
TELEMETRY_INGEST_DURATION = Histogram(
    "emporium_telemetry_ingest_duration_seconds",
    "Time to validate and store one telemetry batch.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)

# -- WebSockets ------------------------------------------------------------------------

WEBSOCKET_CONNECTIONS = Gauge(
    "emporium_websocket_connections",
    "WebSocket connections open now.",
    multiprocess_mode="livesum",
)
WEBSOCKET_MESSAGES_SENT = Counter(
    "emporium_websocket_messages_sent", "Messages written to WebSocket clients."
)
WEBSOCKET_MESSAGES_DROPPED = Counter(
    "emporium_websocket_messages_dropped",
    "Messages a client never got: slow_client (a full buffer closed the socket), "
    "superseded (a snapshot stream's oldest entry gave way to a newer one).",
    ["reason"],
)

# -- Celery (workers, beat) --------------------------------------------------------------

CELERY_TASKS = Counter(
    "emporium_celery_tasks",
    "Task runs, by task name and outcome (succeeded, failed, retried).",
    ["task", "outcome"],
)
CELERY_TASK_DURATION = Histogram(
    "emporium_celery_task_duration_seconds",
    "Run time of a task, by task name.",
    ["task"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0),
)
BEAT_SCHEDULES_SENT = Counter(
    "emporium_beat_schedules_sent", "Periodic tasks sent by beat, by schedule entry.", ["schedule"]
)

# -- the broker's queues and the outbox (measured by the relay) ------------------------

QUEUE_MESSAGES = Gauge(
    "emporium_queue_messages",
    "Messages ready in a RabbitMQ queue (the dead-letter queue included).",
    ["queue"],
    multiprocess_mode="mostrecent",
)
QUEUE_CONSUMERS = Gauge(
    "emporium_queue_consumers",
    "Consumers attached to a RabbitMQ queue.",
    ["queue"],
    multiprocess_mode="mostrecent",
)
OUTBOX_BACKLOG = Gauge(
    "emporium_outbox_backlog", "Outbox events not yet published.", multiprocess_mode="mostrecent"
)
OUTBOX_OLDEST_AGE = Gauge(
    "emporium_outbox_oldest_age_seconds",
    "Age of the oldest unpublished outbox event; 0 when none is waiting.",
    multiprocess_mode="mostrecent",
)
OUTBOX_EVENTS_RELAYED = Counter(
    "emporium_outbox_events_relayed",
    "Outbox events the relay handled, by outcome: published, parked (follow-up gave up), "
    "retried (follow-up failed), broker_unavailable (not published).",
    ["outcome"],
)

# -- the dashboard's publisher ------------------------------------------------------------

DASHBOARD_PUBLISHES = Counter(
    "emporium_dashboard_publishes", "Seconds of dashboard figures published."
)

# -- database replicas (emporium.core.db.replicas; every process that routes reads) ---------

REPLICA_LAG = Gauge(
    "emporium_database_replication_lag_seconds",
    "Replay lag of a read replica at its last probe: 0 when it has replayed all it received "
    "while streaming, else the age of the newest transaction it replayed.",
    ["replica"],
    multiprocess_mode="mostrecent",
)
REPLICA_UP = Gauge(
    "emporium_database_replica_up",
    "1 if the last probe found the replica usable for reads (up, a replica, lag within bound).",
    ["replica"],
    multiprocess_mode="mostrecent",
)
