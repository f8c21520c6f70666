"""The figures the publisher sends: orders and revenue from the database, traffic from the store."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.db import connections

from emporium.core.tests.factories import OrderFactory
from emporium.dashboard import publisher
from emporium.dashboard.collector import LocalCounts, bucket_of, bucket_value, second_store
from emporium.dashboard.selectors import metrics_read, orders_last_minute
from emporium.orders.models import Order, OrderStatus

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _publisher_connection_closed() -> Iterator[None]:
    """The publisher keeps its thread's connection open; the test database must not be."""
    yield
    publisher.database_executor().submit(connections.close_all).result(timeout=30)


def order_at(moment: datetime, total: str, status: str = OrderStatus.PENDING_PAYMENT) -> Order:
    order = OrderFactory(total_amount=Decimal(total), order_status=status)
    Order.objects.filter(pk=order.pk).update(created_at=moment)
    return order


def test_orders_and_revenue_of_the_last_minute() -> None:
    now = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC)
    order_at(now - timedelta(seconds=61), "1000.00")  # too old
    order_at(now - timedelta(seconds=60), "500.00")  # exactly a minute ago: the window is open
    order_at(now - timedelta(seconds=59, microseconds=999_000), "12.34")
    order_at(now - timedelta(seconds=30), "7.66", status=OrderStatus.CANCELLED)
    order_at(now, "80.00")
    order_at(now + timedelta(milliseconds=1), "5000.00")  # after the moment asked about

    figures = orders_last_minute(now=now)

    assert figures.orders == 3
    assert figures.revenue == Decimal("100.00")


def test_no_orders_is_zero_not_none() -> None:
    figures = orders_last_minute(now=datetime(2026, 11, 22, tzinfo=UTC))
    assert figures.orders == 0
    assert figures.revenue == Decimal("0.00")


def test_metrics_event_carries_every_figure() -> None:
    second = int(time.time())
    at = datetime.fromtimestamp(second, tz=UTC)
    order_at(at - timedelta(seconds=10), "19.99")
    order_at(at - timedelta(seconds=20), "0.01")
    counts = LocalCounts()
    for _ in range(18):
        counts.request(duration_ms=4.0, second=second - 1)
    counts.request(duration_ms=900.0, second=second - 3)
    counts.request(duration_ms=900.0, second=second - 5)
    counts.request(duration_ms=900.0, second=second - 6)  # outside the five seconds
    counts.telemetry_points(count=50, second=second - 2)
    counts.flush(second_store())

    event = metrics_read(second=second).as_event()

    assert event == {
        "type": "metrics",
        "ts": at.isoformat().replace("+00:00", "Z"),
        "orders_per_minute": 2,
        "revenue_per_minute": "20.00",
        "requests_per_second": 4.0,  # 20 requests over 5 seconds
        "p95_ms": round(bucket_value(bucket_of(900.0)), 2),  # rank 19 of 20: a slow one
        "telemetry_points_per_second": 10.0,
        "websocket_connections": 0,
    }


class RecordingLayer:
    """Stands in for the channel layer, which belongs to the realtime app."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        self.sent.append((group, message))


def test_one_publisher_per_second_sends_the_figures() -> None:
    order_at(datetime.now(tz=UTC) - timedelta(seconds=5), "42.00")
    second = int(time.time())
    layer = RecordingLayer()

    async def two_publishers() -> list[Any]:
        return await asyncio.gather(
            publisher.publish_second(second=second, layer=layer),
            publisher.publish_second(second=second, layer=layer),
        )

    results = asyncio.run(two_publishers())

    assert sum(result is not None for result in results) == 1
    assert len(layer.sent) == 1
    group, message = layer.sent[0]
    assert group == "dashboard"
    assert message["type"] == "dashboard.event"
    assert message["event"]["type"] == "metrics"
    assert message["event"]["orders_per_minute"] == 1
    assert message["event"]["revenue_per_minute"] == "42.00"
    # The next second is a new claim.
    assert asyncio.run(publisher.publish_second(second=second + 1, layer=layer)) is not None
    assert len(layer.sent) == 2


def test_the_claim_is_shared_through_the_cache() -> None:
    assert publisher.publish_claim(second=1_000) is True
    assert publisher.publish_claim(second=1_000) is False
    assert publisher.publish_claim(second=1_001) is True
