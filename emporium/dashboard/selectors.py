"""The figures the live dashboard shows, read from the database and the shared store."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db.models import Count, Sum
from django.db.models.functions import TruncSecond
from redis.exceptions import RedisError

from emporium.dashboard.collector import (
    SECOND_TTL_SECONDS,
    SecondCounts,
    SecondStore,
    figures_of,
    second_store,
    traffic_figures,
)
from emporium.orders.models import Order
from emporium.realtime import connections_open

logger = logging.getLogger(__name__)

ORDER_WINDOW = timedelta(seconds=60)
# Requests/s, p95 and telemetry points/s are taken over this many whole seconds,
# enough for a p95 that does not jump with every slow request.
TRAFFIC_WINDOW_SECONDS = 5
# The charts start with this much history: as far back as the shared store keeps every
# second a point needs (SECOND_TTL_SECONDS), less a margin for seconds about to expire.
HISTORY_SECONDS = SECOND_TTL_SECONDS - TRAFFIC_WINDOW_SECONDS - 10


@dataclass(frozen=True)
class OrderFigures:
    orders: int
    revenue: Decimal


def orders_last_minute(*, now: datetime) -> OrderFigures:
    """Orders placed in the minute up to ``now`` and their total value.

    Every placed order counts, whatever happened to it since (a minute is too
    short for payment outcomes to settle). One range scan of the
    ``(created_at, id)`` index plus the matching rows.
    """
    figures = Order.objects.filter(
        created_at__gt=now - ORDER_WINDOW, created_at__lte=now
    ).aggregate(orders=Count("id"), revenue=Sum("total_amount"))
    return OrderFigures(orders=figures["orders"], revenue=figures["revenue"] or Decimal("0.00"))


def websocket_connections() -> int | None:
    """Open WebSocket connections in every server process; None if they cannot be counted."""
    try:
        return connections_open()
    except (RedisError, OSError):  # one figure missing must not stop the others
        logger.warning("could not read the open WebSocket connections", exc_info=True)
        return None


@dataclass(frozen=True)
class Metrics:
    at: datetime
    orders_per_minute: int
    revenue_per_minute: Decimal
    requests_per_second: float
    p95_ms: float | None
    telemetry_points_per_second: float
    websocket_connections: int | None

    def as_event(self) -> dict[str, Any]:
        """The ``metrics`` event the dashboard page draws (JSON-ready)."""
        return {
            "type": "metrics",
            "ts": self.at.isoformat().replace("+00:00", "Z"),
            "orders_per_minute": self.orders_per_minute,
            "revenue_per_minute": f"{self.revenue_per_minute:.2f}",
            "requests_per_second": round(self.requests_per_second, 2),
            "p95_ms": None if self.p95_ms is None else round(self.p95_ms, 2),
            "telemetry_points_per_second": round(self.telemetry_points_per_second, 2),
            "websocket_connections": self.websocket_connections,
        }


def metrics_read(*, second: int, store: SecondStore | None = None) -> Metrics:
    """The figures as of the start of wall-clock ``second`` (UNIX time).

    Traffic figures cover the whole seconds before ``second``: those are
    complete, and each process has flushed them just after they ended.
    """
    at = datetime.fromtimestamp(second, tz=UTC)
    orders = orders_last_minute(now=at)
    traffic = traffic_figures(
        last_second=second - 1, window_seconds=TRAFFIC_WINDOW_SECONDS, store=store
    )
    return Metrics(
        at=at,
        orders_per_minute=orders.orders,
        revenue_per_minute=orders.revenue,
        requests_per_second=traffic.requests_per_second,
        p95_ms=traffic.p95_ms,
        telemetry_points_per_second=traffic.telemetry_points_per_second,
        websocket_connections=websocket_connections(),
    )


def _orders_by_second(*, first: int, last: int) -> dict[int, tuple[int, Decimal]]:
    """Orders placed in each whole second from ``first`` to ``last``: one grouped query."""
    rows = (
        Order.objects.filter(
            created_at__gte=datetime.fromtimestamp(first, tz=UTC),
            created_at__lt=datetime.fromtimestamp(last + 1, tz=UTC),
        )
        .annotate(second=TruncSecond("created_at"))
        .values("second")
        .annotate(orders=Count("id"), revenue=Sum("total_amount"))
    )
    return {
        int(row["second"].timestamp()): (row["orders"], row["revenue"] or Decimal("0.00"))
        for row in rows
    }


def metrics_history(
    *, second: int, seconds: int = HISTORY_SECONDS, store: SecondStore | None = None
) -> list[Metrics]:
    """The figures as ``metrics_read`` gave them for each of the ``seconds`` seconds up to
    ``second``, oldest first, so that the charts start with the recent past.

    One grouped query for the orders and one read of the shared store for the
    traffic, whatever the number of points. The open WebSockets of the past are
    not kept anywhere, so they are None. An order's minute is counted by whole
    seconds here (``metrics_read`` uses the exact time), which moves an order
    at most one point earlier or later.
    """
    points = range(second - seconds + 1, second + 1)
    order_window = int(ORDER_WINDOW.total_seconds())
    orders = _orders_by_second(first=points[0] - order_window, last=points[-1] - 1)
    traffic = (store or second_store()).read_each(
        range(points[0] - TRAFFIC_WINDOW_SECONDS, points[-1])
    )
    history = []
    for point in points:
        placed = [
            orders.get(each, (0, Decimal("0.00"))) for each in range(point - order_window, point)
        ]
        window = SecondCounts()
        for each in range(point - TRAFFIC_WINDOW_SECONDS, point):
            window.add(traffic[each])
        figures = figures_of(window, window_seconds=TRAFFIC_WINDOW_SECONDS)
        history.append(
            Metrics(
                at=datetime.fromtimestamp(point, tz=UTC),
                orders_per_minute=sum(count for count, _ in placed),
                revenue_per_minute=sum((revenue for _, revenue in placed), Decimal("0.00")),
                requests_per_second=figures.requests_per_second,
                p95_ms=figures.p95_ms,
                telemetry_points_per_second=figures.telemetry_points_per_second,
                websocket_connections=None,
            )
        )
    return history
