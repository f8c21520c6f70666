"""Ingestion under real concurrency on PostgreSQL: racing re-sends and a racing new day."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from conftest import require_service
from emporium.delivery.models import CourierDevice, DevicePosition, TelemetryMinute
from emporium.delivery.storage import partitions
from emporium.delivery.tests.support import device_client, make_device, point, post_json
from tests.support.concurrency import run_concurrently


@pytest.mark.django_db(transaction=True)
def test_the_same_batch_sent_eight_times_at_once_is_stored_once() -> None:
    require_service("DATABASE_URL")
    device, token = make_device()
    start = (timezone.now() - timedelta(minutes=30)).replace(second=0, microsecond=0)
    batch = [
        point(device, start + timedelta(seconds=2 * index), 50 + index / 1e4, 8.0, speed=3.0)
        for index in range(200)
    ]

    results: list[dict[str, Any]] = run_concurrently(
        lambda _: post_json(device_client(token), batch).json(), list(range(8)), workers=8
    )

    assert sorted(result["accepted"] for result in results) == [0] * 7 + [200]
    assert sum(result["duplicates"] for result in results) == 7 * 200
    minutes = TelemetryMinute.objects.filter(device=device)
    assert sum(minute.point_count for minute in minutes) == 200
    assert DevicePosition.objects.get(device=device).recorded_at == start + timedelta(seconds=398)


@pytest.mark.django_db(transaction=True)
def test_devices_racing_into_a_day_without_a_partition_all_get_stored() -> None:
    require_service("DATABASE_URL")
    day = timezone.now().astimezone(UTC).date() - timedelta(days=6)
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {partitions.partition_name(day)}")
    devices = [make_device(f"racer {index}") for index in range(6)]
    moment = datetime.combine(day, time(9), tzinfo=UTC)

    def send(entry: tuple[CourierDevice, str]) -> dict[str, Any]:
        device, token = entry
        return post_json(device_client(token), [point(device, moment)]).json()

    results = run_concurrently(send, devices, workers=6)

    assert [result["accepted"] for result in results] == [1] * 6
    assert day in partitions.telemetry_partitions_list()
