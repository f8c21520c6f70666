"""``manage.py dashboard_publisher`` as production runs it: its own process, Redis pub/sub."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import redis
from django.utils import timezone

from emporium.core.tests.factories import OrderFactory
from emporium.observability.tests.metric_samples import scraped_value
from emporium.orders.models import Order
from emporium.realtime.transport import channel_for
from tests.support.processes import database_url_for_current_test_db, free_port

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.django_db(transaction=True)
def test_the_command_publishes_figures_every_second_until_stopped(
    redis_url: str, database_url: str
) -> None:
    order = OrderFactory(total_amount=Decimal("9.99"))
    Order.objects.filter(pk=order.pk).update(created_at=timezone.now() - timedelta(seconds=5))
    subscriber = redis.Redis.from_url(redis_url).pubsub(ignore_subscribe_messages=True)
    subscriber.subscribe(channel_for(redis_url, "dashboard"))
    metrics_port = free_port()
    process = subprocess.Popen(
        [sys.executable, "manage.py", "dashboard_publisher"],
        cwd=ROOT,
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.settings.test",
            "DATABASE_URL": database_url_for_current_test_db(),
            "REDIS_URL": redis_url,
            "METRICS_PORT": str(metrics_port),
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    events = []
    published: float | None = None
    try:
        deadline = time.monotonic() + 60
        while len(events) < 2 and time.monotonic() < deadline:
            message = subscriber.get_message(timeout=1.0)
            if message is not None:
                events.append(json.loads(message["data"]))
        # Counted after the send: the second one may still be on its way to the counter.
        while time.monotonic() < deadline and (published or 0) < len(events):
            published = scraped_value(
                f"http://127.0.0.1:{metrics_port}/metrics", "emporium_dashboard_publishes_total"
            )
            time.sleep(0.1)
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
        subscriber.close()

    assert len(events) == 2, output
    assert [event["type"] for event in events] == ["metrics", "metrics"]
    assert events[0]["orders_per_minute"] == 1
    assert events[0]["revenue_per_minute"] == "9.99"
    assert events[1]["ts"] > events[0]["ts"]  # one a second, each second once
    assert (published or 0) >= 2  # its /metrics counts what it sent
    assert process.returncode == 0
    assert b"dashboard publisher: stopped" in output
