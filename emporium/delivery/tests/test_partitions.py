"""Daily partitions (PostgreSQL), on-demand creation, retention, and the midnight boundary."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from io import StringIO

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from conftest import require_service
from emporium.delivery import tasks
from emporium.delivery.models import TelemetryMinute
from emporium.delivery.storage import partitions
from emporium.delivery.tests.support import (
    device_client,
    is_postgresql,
    make_device,
    point,
    post_json,
    stored_points,
)

pytestmark = pytest.mark.django_db


def _midnight(days_ago: int) -> datetime:
    day = timezone.now().astimezone(UTC).date() - timedelta(days=days_ago)
    return datetime.combine(day, time.min, tzinfo=UTC)


def _partition_of_each_row(device_id: int) -> list[tuple[str, datetime]]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT tableoid::regclass::text, recorded_at FROM delivery_telemetry_point "
            "WHERE device_id = %s ORDER BY recorded_at",
            [device_id],
        )
        return list(cursor.fetchall())


def _partitions() -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT child.relname FROM pg_inherits "
            "JOIN pg_class child ON child.oid = pg_inherits.inhrelid "
            "WHERE pg_inherits.inhparent = 'delivery_telemetry_point'::regclass"
        )
        return {name for (name,) in cursor.fetchall()}


def _insert_raw(device_id: int, moment: datetime) -> None:
    """A row written past ingestion's checks, as if stored before the retention moved on."""
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO delivery_telemetry_point (device_id, recorded_at, latitude, longitude) "
            "VALUES (%s, %s, %s, %s)",
            [device_id, connection.ops.adapt_datetimefield_value(moment), 1.0, 2.0],
        )


def test_points_across_midnight_are_stored_on_both_days_with_one_minute_each() -> None:
    device, token = make_device()
    midnight = _midnight(days_ago=2)
    moments = [midnight + timedelta(seconds=offset) for offset in (-2, -1, 0, 1)]

    response = post_json(
        device_client(token),
        [point(device, moment, 10.0, 10.0 + index / 1000) for index, moment in enumerate(moments)],
    )

    assert response.json() == {"accepted": 4, "duplicates": 0, "rejected": []}
    assert [row[0] for row in stored_points(device)] == moments
    minutes = list(
        TelemetryMinute.objects.filter(device=device)
        .order_by("minute")
        .values_list("minute", "point_count", "first_recorded_at", "last_recorded_at")
    )
    assert minutes == [
        (midnight - timedelta(minutes=1), 2, moments[0], moments[1]),
        (midnight, 2, moments[2], moments[3]),
    ]


def test_on_postgresql_each_row_lives_in_the_partition_of_its_utc_day() -> None:
    require_service("DATABASE_URL")
    assert is_postgresql()
    device, token = make_device()
    midnight = _midnight(days_ago=2)
    before, after = midnight - timedelta(microseconds=1), midnight

    post_json(device_client(token), [point(device, before), point(device, after)])

    day_before = partitions.partition_name(before.date())
    day_after = partitions.partition_name(after.date())
    assert _partition_of_each_row(device.pk) == [(day_before, before), (day_after, after)]
    assert {day_before, day_after} <= _partitions()


def test_on_postgresql_a_day_without_a_partition_gets_one_on_demand() -> None:
    require_service("DATABASE_URL")
    device, token = make_device()
    moment = _midnight(days_ago=5) + timedelta(hours=13)
    name = partitions.partition_name(moment.date())
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {name}")
    assert name not in _partitions()

    response = post_json(device_client(token), [point(device, moment)])

    assert response.status_code == 200
    assert response.json()["accepted"] == 1
    assert _partition_of_each_row(device.pk) == [(name, moment)]


def test_on_postgresql_a_partition_dropped_after_a_batch_used_it_is_made_again() -> None:
    """The process remembers days with a partition; a stale memory costs a retry, not a 4xx."""
    require_service("DATABASE_URL")
    device, token = make_device()
    client = device_client(token)
    moment = _midnight(days_ago=6) + timedelta(hours=9)
    name = partitions.partition_name(moment.date())
    assert post_json(client, [point(device, moment)]).json()["accepted"] == 1
    assert moment.date() in partitions._days_with_partition
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE {name}")

    later = moment + timedelta(seconds=1)
    response = post_json(client, [point(device, later)])

    assert response.status_code == 200
    assert response.json() == {"accepted": 1, "duplicates": 0, "rejected": []}
    assert _partition_of_each_row(device.pk) == [(name, later)]
    minutes = TelemetryMinute.objects.filter(device=device).values_list("minute", "point_count")
    # The first minute row survived the drop (rollups live in their own table).
    assert list(minutes) == [(moment.replace(second=0), 2)]


def test_on_postgresql_partitions_have_the_unique_btree_and_the_brin_index() -> None:
    require_service("DATABASE_URL")
    day = _midnight(days_ago=3).date()
    partitions.telemetry_partitions_ensure(days=[day])

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexdef FROM pg_indexes WHERE tablename = %s ORDER BY indexdef",
            [partitions.partition_name(day)],
        )
        definitions = [row[0] for row in cursor.fetchall()]
        cursor.execute(
            "SELECT pg_get_expr(relpartbound, oid) FROM pg_class WHERE relname = %s",
            [partitions.partition_name(day)],
        )
        bound = cursor.fetchone()[0]

    assert len(definitions) == 2
    assert "UNIQUE INDEX" in definitions[1]
    assert "USING btree (device_id, recorded_at)" in definitions[1]
    assert "USING brin (recorded_at)" in definitions[0]
    assert bound == (
        f"FOR VALUES FROM ('{day} 00:00:00+00') TO ('{day + timedelta(days=1)} 00:00:00+00')"
    )


def test_on_postgresql_ensure_creates_only_what_is_missing() -> None:
    require_service("DATABASE_URL")
    days = [_midnight(days_ago=8).date() + timedelta(days=offset) for offset in range(3)]
    for day in days:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP TABLE IF EXISTS {partitions.partition_name(day)}")

    first = partitions.telemetry_partitions_ensure(days=days[:2])
    second = partitions.telemetry_partitions_ensure(days=days)

    assert first == days[:2]
    assert second == days[2:]
    assert partitions.telemetry_partitions_ensure(days=days) == []
    assert set(days) <= set(partitions.telemetry_partitions_list())


def test_on_postgresql_maintenance_creates_days_ahead_and_drops_expired_days() -> None:
    require_service("DATABASE_URL")
    now = timezone.now()
    today = now.astimezone(UTC).date()
    retention = settings.EMPORIUM_TELEMETRY_RETENTION_DAYS
    first_kept = (now - timedelta(days=retention)).astimezone(UTC).date()
    expired = first_kept - timedelta(days=1)
    kept = first_kept
    device, _ = make_device()
    partitions.telemetry_partitions_ensure(days=[expired, kept])
    _insert_raw(device.pk, datetime.combine(expired, time(12), tzinfo=UTC))
    _insert_raw(device.pk, datetime.combine(kept, time(12), tzinfo=UTC))

    report = partitions.telemetry_partitions_maintain(now=now)

    ahead = [today + timedelta(days=offset) for offset in range(4)]
    assert expired in report.dropped
    assert kept not in report.dropped
    remaining = set(partitions.telemetry_partitions_list())
    assert set(ahead) <= remaining
    assert expired not in remaining
    assert kept in remaining
    assert [row[0].date() for row in stored_points(device)] == [kept]
    again = partitions.telemetry_partitions_maintain(now=now)
    assert (again.created, again.dropped) == ([], [])


def test_maintenance_removes_expired_points_on_either_database() -> None:
    """SQLite deletes the rows; PostgreSQL drops the day's partition with them."""
    now = timezone.now()
    first_kept = (now - timedelta(days=settings.EMPORIUM_TELEMETRY_RETENTION_DAYS)).date()
    device, _ = make_device()
    old = datetime.combine(first_kept - timedelta(days=1), time(23, 59, 59), tzinfo=UTC)
    young = datetime.combine(first_kept, time.min, tzinfo=UTC)
    partitions.telemetry_partitions_ensure(days=[old.date(), young.date()])
    _insert_raw(device.pk, old)
    _insert_raw(device.pk, young)

    report = partitions.telemetry_partitions_maintain(now=now)

    assert old.date() in report.dropped
    assert young.date() not in report.dropped
    assert [row[0] for row in stored_points(device)] == [young]
    if not is_postgresql():
        assert (report.created, report.dropped) == ([], [old.date()])


def test_maintenance_deletes_minute_rollups_past_their_own_retention() -> None:
    device, _ = make_device()
    now = timezone.now().replace(second=0, microsecond=0)
    keep_days = settings.EMPORIUM_TELEMETRY_ROLLUP_RETENTION_DAYS
    for minute in (now - timedelta(days=keep_days, minutes=1), now - timedelta(days=keep_days - 1)):
        TelemetryMinute.objects.create(
            device=device,
            minute=minute,
            point_count=1,
            latitude_sum=1.0,
            longitude_sum=1.0,
            first_recorded_at=minute,
            last_recorded_at=minute,
        )

    report = partitions.telemetry_partitions_maintain(now=now)

    assert report.minutes_deleted == 1
    assert list(TelemetryMinute.objects.values_list("minute", flat=True)) == [
        now - timedelta(days=keep_days - 1)
    ]


def test_the_management_command_reports_what_it_did() -> None:
    output = StringIO()

    call_command("telemetry_partitions", stdout=output)

    lines = output.getvalue().splitlines()
    assert lines[0].startswith("created: ")
    assert lines[1].startswith("dropped: ")
    assert lines[2] == "minute rollups deleted: 0"
    if is_postgresql():
        listed = StringIO()
        call_command("telemetry_partitions", "--list", stdout=listed)
        today = timezone.now().astimezone(UTC).date()
        assert today.isoformat() in listed.getvalue().splitlines()


def test_the_celery_task_runs_maintenance_and_is_scheduled_by_beat() -> None:
    result = tasks.telemetry_partitions_maintain()

    assert set(result) == {"created", "dropped", "minutes_deleted"}
    assert settings.CELERY_BEAT_SCHEDULE["telemetry-partitions-maintain"] == {
        "task": "delivery.telemetry_partitions_maintain",
        "schedule": 3600.0,
    }
    if is_postgresql():
        today = timezone.now().astimezone(UTC).date()
        assert today in partitions.telemetry_partitions_list()


def test_partition_names_follow_the_utc_day() -> None:
    assert partitions.partition_name(date(2025, 1, 2)) == "delivery_telemetry_point_p20250102"
