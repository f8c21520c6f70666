"""The charts' starting history: the same figures the publisher sent, second by second."""

from __future__ import annotations

import html
import json
import random
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.test import Client

from emporium.core.tests.factories import OrderFactory, StaffFactory
from emporium.dashboard.collector import SecondCounts, bucket_of, second_store
from emporium.dashboard.selectors import HISTORY_SECONDS, metrics_history, metrics_read
from emporium.orders.models import Order

pytestmark = pytest.mark.django_db


def _order_at(moment: datetime, total: str) -> None:
    order = OrderFactory(total_amount=Decimal(total))
    Order.objects.filter(pk=order.pk).update(created_at=moment)


def test_each_point_of_the_history_is_what_the_publisher_sent_then(
    django_assert_max_num_queries: Any,
) -> None:
    rng = random.Random(7)
    # A second of its own in the store, so that no other test's traffic is in the window.
    last = 1_600_000_000 + rng.randrange(1_000_000)
    store = second_store()
    store.add(
        {
            second: SecondCounts(
                requests={bucket_of(rng.uniform(1, 200)): rng.randrange(1, 4)},
                telemetry_points=rng.randrange(0, 30),
            )
            for second in range(last - HISTORY_SECONDS - 5, last)
            if rng.random() < 0.7
        }
    )
    # Orders at fractions of a second, never on a whole second (the one place the two differ).
    for _ in range(25):
        offset = rng.randrange(HISTORY_SECONDS + 60) + rng.uniform(0.1, 0.9)
        _order_at(datetime.fromtimestamp(last - offset, tz=UTC), f"{rng.randrange(1, 90)}.50")

    with django_assert_max_num_queries(1):
        history = metrics_history(second=last, store=store)

    assert len(history) == HISTORY_SECONDS
    assert history[-1].at == datetime.fromtimestamp(last, tz=UTC)
    assert [point.at for point in history] == sorted(point.at for point in history)
    for point in [*history[:: max(1, HISTORY_SECONDS // 12)], history[-1]]:
        expected = metrics_read(second=int(point.at.timestamp()), store=store)
        assert point.orders_per_minute == expected.orders_per_minute, point.at
        assert point.revenue_per_minute == expected.revenue_per_minute, point.at
        assert point.requests_per_second == expected.requests_per_second, point.at
        assert point.p95_ms == expected.p95_ms, point.at
        assert point.telemetry_points_per_second == expected.telemetry_points_per_second
        assert point.websocket_connections is None
    assert any(point.orders_per_minute for point in history)
    assert any(point.requests_per_second for point in history)


def test_the_page_carries_the_history_for_the_charts(client: Client) -> None:
    _order_at(datetime.now(tz=UTC) - timedelta(seconds=20), "12.00")
    client.force_login(StaffFactory())

    response: Any = client.get("/dashboard/")

    match = re.search(r'data-history="([^"]*)"', response.content.decode())
    assert match is not None
    events = json.loads(html.unescape(match.group(1)))
    assert len(events) == HISTORY_SECONDS
    assert {event["type"] for event in events} == {"metrics"}
    assert events[-1]["orders_per_minute"] == 1
    assert events[-1]["revenue_per_minute"] == "12.00"
