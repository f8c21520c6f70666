"""Where telemetry is written: raw points, daily partitions, minute rollups, last positions.

PostgreSQL: points are COPYed (binary) into a per-connection temporary staging
table, then moved with one ``INSERT … SELECT … ON CONFLICT DO NOTHING
RETURNING`` into the table partitioned by day; the returned rows are exactly
the points that were new, which is what the rollups and the duplicate count
need. SQLite: the points the device already stored in the batch's time range
are read first, under the write lock the transaction holds from BEGIN
IMMEDIATE, and only new ones are inserted (``ON CONFLICT DO NOTHING`` stays as
the backstop). Both paths add to the minute rollups and move the device's
last position in the same transaction as the points.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from emporium.delivery.models import DevicePosition, TelemetryMinute
from emporium.delivery.rollups import Fix, MinuteDelta, minute_deltas
from emporium.delivery.validation import ValidPoint

logger = logging.getLogger(__name__)

POINT_TABLE = "delivery_telemetry_point"
STAGING_TABLE = "delivery_telemetry_staging"
MINUTE_TABLE = TelemetryMinute._meta.db_table
_POINT_COLUMNS = "device_id, recorded_at, latitude, longitude, speed, heading, accuracy"
_STAGING_TYPES = ["int8", "timestamptz", "float8", "float8", "float8", "float8", "float8"]
_PARTITION_NAME = re.compile(rf"^{POINT_TABLE}_p(\d{{8}})$")
# Serialises partition DDL between processes: the key is arbitrary but fixed.
_PARTITION_LOCK_KEY = 0x7E1E_0001


def _is_postgresql() -> bool:
    return connection.vendor == "postgresql"


# -- partitions ------------------------------------------------------------------------


def partition_name(day: date) -> str:
    return f"{POINT_TABLE}_p{day:%Y%m%d}"


def _day_start_literal(day: date) -> str:
    return datetime.combine(day, time.min, tzinfo=UTC).isoformat()


def _partitions_missing(cursor: Any, days: Sequence[date]) -> list[date]:
    # Reads pg_class with an ordinary MVCC query rather than to_regclass(): a name
    # lookup may answer from the backend's catalog cache, which can still hold
    # "no such table" after another session created it.
    cursor.execute(
        "SELECT relname FROM pg_class WHERE relname = ANY(%s) AND relnamespace = "
        "(SELECT relnamespace FROM pg_class WHERE oid = %s::regclass)",
        [[partition_name(day) for day in days], POINT_TABLE],
    )
    existing = {name for (name,) in cursor.fetchall()}
    return [day for day in days if partition_name(day) not in existing]


def telemetry_partitions_ensure(*, days: Iterable[date]) -> list[date]:
    """Creates the daily partitions that do not exist yet; returns the days created.

    Called before every batch is stored, for the days the batch touches, so a
    point for a day the periodic task has not prepared is stored instead of
    failing. DDL runs under an advisory lock so two processes never race on
    the same CREATE. On SQLite there are no partitions and nothing happens.
    """
    wanted = sorted(set(days))
    if not wanted or not _is_postgresql():
        return []
    with connection.cursor() as cursor:
        missing = _partitions_missing(cursor, wanted)
    if not missing:
        return []
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_PARTITION_LOCK_KEY])
        # Another process may have made some while this one waited for the lock.
        created = _partitions_missing(cursor, missing)
        for day in created:
            # Names and bounds come from date objects, never from input text.
            cursor.execute(
                f"CREATE TABLE {partition_name(day)} PARTITION OF {POINT_TABLE} "
                f"FOR VALUES FROM ('{_day_start_literal(day)}') "
                f"TO ('{_day_start_literal(day + timedelta(days=1))}')"
            )
    if created:
        logger.info("created telemetry partitions for %s", ", ".join(map(str, created)))
    return created


def telemetry_partitions_list() -> list[date]:
    """The days that have a partition (PostgreSQL), in order; empty on SQLite."""
    if not _is_postgresql():
        return []
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT child.relname FROM pg_inherits "
            "JOIN pg_class child ON child.oid = pg_inherits.inhrelid "
            "WHERE pg_inherits.inhparent = to_regclass(%s)",
            [POINT_TABLE],
        )
        names = [name for (name,) in cursor.fetchall()]
    days = []
    for name in names:
        match = _PARTITION_NAME.match(name)
        if match:
            days.append(datetime.strptime(match.group(1), "%Y%m%d").replace(tzinfo=UTC).date())
    return sorted(days)


@dataclass
class MaintenanceReport:
    created: list[date] = field(default_factory=list)
    dropped: list[date] = field(default_factory=list)
    minutes_deleted: int = 0


def retention_cutoff(now: datetime) -> datetime:
    """Points older than this are refused on arrival and dropped by maintenance."""
    return now - timedelta(days=settings.EMPORIUM_TELEMETRY_RETENTION_DAYS)


def telemetry_partitions_maintain(*, now: datetime | None = None) -> MaintenanceReport:
    """Creates today's partition and the next few; drops days past the retention.

    A day is dropped once all of it is older than the retention cutoff, which
    is also the oldest timestamp ingestion accepts, so a dropped day is never
    recreated by a late point. Rollups are kept longer, by their own setting.
    Running it twice does nothing the second time.
    """
    now = now or timezone.now()
    today = now.astimezone(UTC).date()
    report = MaintenanceReport()
    report.created = telemetry_partitions_ensure(
        days=[
            today + timedelta(days=offset)
            for offset in range(settings.EMPORIUM_TELEMETRY_PARTITIONS_AHEAD_DAYS + 1)
        ]
    )
    first_kept_day = retention_cutoff(now).astimezone(UTC).date()
    if _is_postgresql():
        stale = [day for day in telemetry_partitions_list() if day < first_kept_day]
        for day in stale:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_PARTITION_LOCK_KEY])
                cursor.execute(f"DROP TABLE IF EXISTS {partition_name(day)}")
            report.dropped.append(day)
    else:
        boundary = connection.ops.adapt_datetimefield_value(
            datetime.combine(first_kept_day, time.min, tzinfo=UTC)
        )
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                f"SELECT DISTINCT substr(recorded_at, 1, 10) FROM {POINT_TABLE} "  # noqa: S608
                "WHERE recorded_at < %s",
                [boundary],
            )
            report.dropped = sorted(date.fromisoformat(day) for (day,) in cursor.fetchall())
            cursor.execute(f"DELETE FROM {POINT_TABLE} WHERE recorded_at < %s", [boundary])  # noqa: S608
    minute_cutoff = now - timedelta(days=settings.EMPORIUM_TELEMETRY_ROLLUP_RETENTION_DAYS)
    report.minutes_deleted, _ = TelemetryMinute.objects.filter(minute__lt=minute_cutoff).delete()
    if report.dropped:
        logger.info("dropped telemetry for %s", ", ".join(map(str, report.dropped)))
    return report


# -- points ----------------------------------------------------------------------------


def _insert_postgresql(device_id: int, points: Sequence[ValidPoint]) -> list[Fix]:
    with connection.cursor() as cursor:
        # One staging table per connection, emptied at every commit. It is created
        # once (IF NOT EXISTS is a catalog lookup afterwards, not a new table per
        # batch, which would bloat the catalog) and emptied first in case an outer
        # transaction already used it.
        cursor.execute(
            f"CREATE TEMPORARY TABLE IF NOT EXISTS {STAGING_TABLE} ("
            "device_id bigint NOT NULL, recorded_at timestamptz NOT NULL, "
            "latitude double precision NOT NULL, longitude double precision NOT NULL, "
            "speed double precision, heading double precision, accuracy double precision"
            ") ON COMMIT DELETE ROWS"
        )
        cursor.execute(f"DELETE FROM {STAGING_TABLE}")  # noqa: S608
        raw_cursor: Any = cursor.cursor  # psycopg 3's own cursor, for COPY
        with raw_cursor.copy(
            f"COPY {STAGING_TABLE} ({_POINT_COLUMNS}) FROM STDIN (FORMAT BINARY)"
        ) as copy:
            copy.set_types(_STAGING_TYPES)
            for point in points:
                copy.write_row(
                    (
                        device_id,
                        point.recorded_at,
                        point.latitude,
                        point.longitude,
                        point.speed,
                        point.heading,
                        point.accuracy,
                    )
                )
        cursor.execute(
            f"INSERT INTO {POINT_TABLE} ({_POINT_COLUMNS}) "  # noqa: S608
            f"SELECT {_POINT_COLUMNS} FROM {STAGING_TABLE} "
            "ON CONFLICT DO NOTHING "
            "RETURNING recorded_at, latitude, longitude, speed, heading, accuracy"
        )
        rows = cursor.fetchall()
    return [_fix_of(row) for row in rows]


def _insert_sqlite(device_id: int, points: Sequence[ValidPoint]) -> list[Fix]:
    adapt = connection.ops.adapt_datetimefield_value
    rows = [
        (
            device_id,
            str(adapt(point.recorded_at)),
            point.latitude,
            point.longitude,
            point.speed,
            point.heading,
            point.accuracy,
        )
        for point in points
    ]
    # Django stores SQLite datetimes as text that sorts in time order.
    stamps = [row[1] for row in rows]
    with connection.cursor() as cursor:
        cursor.execute(
            # CAST: the text as stored, not the datetime Django's converter would make.
            f"SELECT CAST(recorded_at AS TEXT) FROM {POINT_TABLE} "  # noqa: S608
            "WHERE device_id = %s AND recorded_at BETWEEN %s AND %s",
            [device_id, min(stamps), max(stamps)],
        )
        stored = {stamp for (stamp,) in cursor.fetchall()}
        fresh = [
            (row, point) for row, point in zip(rows, points, strict=True) if row[1] not in stored
        ]
        if not fresh:
            return []
        cursor.executemany(
            f"INSERT INTO {POINT_TABLE} ({_POINT_COLUMNS}) "  # noqa: S608
            "VALUES (%s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (device_id, recorded_at) DO NOTHING",
            [row for row, _ in fresh],
        )
    return [
        Fix(point.recorded_at, point.latitude, point.longitude, point.speed) for _, point in fresh
    ]


def _fix_of(row: Sequence[Any]) -> Fix:
    return Fix(recorded_at=row[0], latitude=row[1], longitude=row[2], speed=row[3])


def _minutes_add(device_id: int, deltas: Sequence[MinuteDelta]) -> None:
    """Adds each delta to its stored minute, creating the minute when it is new.

    Additive, so two batches of the same device committed in either order
    give the same minute; portable between PostgreSQL and SQLite (3.24+).
    """
    if not deltas:
        return
    adapt = connection.ops.adapt_datetimefield_value
    table = MINUTE_TABLE
    values: list[Any] = []
    for delta in deltas:
        values.extend(
            [
                device_id,
                adapt(delta.minute),
                delta.point_count,
                delta.latitude_sum,
                delta.longitude_sum,
                adapt(delta.first_recorded_at),
                adapt(delta.last_recorded_at),
                delta.distance_m,
                delta.max_speed,
            ]
        )
    rows_sql = ", ".join(["(%s, %s, %s, %s, %s, %s, %s, %s, %s)"] * len(deltas))
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (device_id, minute, point_count, latitude_sum, "  # noqa: S608
            "longitude_sum, first_recorded_at, last_recorded_at, distance_m, max_speed) "
            f"VALUES {rows_sql} "
            "ON CONFLICT (device_id, minute) DO UPDATE SET "
            f"point_count = {table}.point_count + excluded.point_count, "
            f"latitude_sum = {table}.latitude_sum + excluded.latitude_sum, "
            f"longitude_sum = {table}.longitude_sum + excluded.longitude_sum, "
            f"first_recorded_at = CASE WHEN excluded.first_recorded_at < {table}.first_recorded_at "
            f"THEN excluded.first_recorded_at ELSE {table}.first_recorded_at END, "
            f"last_recorded_at = CASE WHEN excluded.last_recorded_at > {table}.last_recorded_at "
            f"THEN excluded.last_recorded_at ELSE {table}.last_recorded_at END, "
            f"distance_m = {table}.distance_m + excluded.distance_m, "
            f"max_speed = CASE WHEN {table}.max_speed IS NULL "
            f"OR excluded.max_speed > {table}.max_speed "
            f"THEN excluded.max_speed ELSE {table}.max_speed END",
            values,
        )


def _position_lock(device_id: int) -> DevicePosition:
    """The device's last-position row, locked until commit (created on its first batch).

    Two batches of one device are stored one after the other, so each measures
    its distance from the point the other left; other devices are not held up.
    """
    position = DevicePosition.objects.select_for_update().filter(device_id=device_id).first()
    if position is None:
        DevicePosition.objects.bulk_create(
            [DevicePosition(device_id=device_id)], ignore_conflicts=True
        )
        position = DevicePosition.objects.select_for_update().get(device_id=device_id)
    return position


def telemetry_points_store(*, device_id: int, points: Sequence[ValidPoint]) -> int:
    """Stores new points of one device with their rollups; returns how many were new.

    ``points`` hold no two equal timestamps (the caller drops those); points
    already stored are skipped, so sending a batch again changes nothing.
    """
    if not points:
        return 0
    telemetry_partitions_ensure(days={point.recorded_at.date() for point in points})
    with transaction.atomic():
        position = _position_lock(device_id)
        if _is_postgresql():
            inserted = _insert_postgresql(device_id, points)
        else:
            inserted = _insert_sqlite(device_id, points)
        if not inserted:
            return 0
        anchor = (
            Fix(position.recorded_at, position.latitude, position.longitude, position.speed)
            if position.recorded_at is not None
            and position.latitude is not None
            and position.longitude is not None
            else None
        )
        _minutes_add(device_id, minute_deltas(fixes=inserted, anchor=anchor))
        newest = max(inserted, key=lambda fix: fix.recorded_at)
        if position.recorded_at is None or newest.recorded_at > position.recorded_at:
            _position_move(device_id, newest, points)
    return len(inserted)


def _position_move(device_id: int, newest: Fix, points: Sequence[ValidPoint]) -> None:
    source = next(point for point in points if point.recorded_at == newest.recorded_at)
    DevicePosition.objects.filter(device_id=device_id).update(
        recorded_at=source.recorded_at,
        latitude=source.latitude,
        longitude=source.longitude,
        speed=source.speed,
        heading=source.heading,
        accuracy=source.accuracy,
    )
