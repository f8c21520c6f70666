"""SQLite (the embedded profile): the same result as PostgreSQL's one statement, in steps.

The points the device already stored in the batch's time range are read
first, under the write lock the transaction holds from BEGIN IMMEDIATE, and
only new ones are inserted (``ON CONFLICT DO NOTHING`` stays as the
backstop); the rollups are computed in Python by ``rollups.minute_deltas``
and added with the upsert PostgreSQL runs too (``tables.minute_upsert_sql``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from django.db import connection
from django.db.models import Q

from emporium.delivery.locks import device_position_lock
from emporium.delivery.models import DevicePosition
from emporium.delivery.rollups import (
    DISTANCE_FIELD,
    MINUTE_FIELDS,
    Fix,
    MinuteDelta,
    minute_deltas,
)
from emporium.delivery.storage.tables import (
    MINUTE_COLUMNS,
    MINUTE_TABLE,
    POINT_COLUMNS,
    POINT_TABLE,
    minute_upsert_sql,
)
from emporium.delivery.validation import PointBatch, ValidPoint


def _insert(device_id: int, points: Sequence[ValidPoint]) -> tuple[list[Fix], list[Fix]]:
    """Inserts the new points; returns them and the stored points around them.

    The stored points are those between the first and the last new point and
    the one just before and after, read before inserting, as on PostgreSQL.
    """
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
            f"SELECT CAST(recorded_at AS TEXT) FROM {POINT_TABLE} "  # noqa: S608 (constant table names)
            "WHERE device_id = %s AND recorded_at BETWEEN %s AND %s",
            [device_id, min(stamps), max(stamps)],
        )
        stored = {stamp for (stamp,) in cursor.fetchall()}
        fresh = [
            (row, point) for row, point in zip(rows, points, strict=True) if row[1] not in stored
        ]
        if not fresh:
            return [], []
        fresh_stamps = [row[1] for row, _ in fresh]
        low, high = min(fresh_stamps), max(fresh_stamps)
        cursor.execute(
            f"SELECT recorded_at, latitude, longitude FROM {POINT_TABLE} "  # noqa: S608 (constant table names)
            "WHERE device_id = %s AND recorded_at BETWEEN %s AND %s "
            f"UNION ALL SELECT * FROM (SELECT recorded_at, latitude, longitude FROM {POINT_TABLE} "
            "WHERE device_id = %s AND recorded_at < %s ORDER BY recorded_at DESC LIMIT 1) "
            f"UNION ALL SELECT * FROM (SELECT recorded_at, latitude, longitude FROM {POINT_TABLE} "
            "WHERE device_id = %s AND recorded_at > %s ORDER BY recorded_at LIMIT 1)",
            [device_id, low, high, device_id, low, device_id, high],
        )
        around = [
            Fix(_stored_datetime(moment), latitude, longitude)
            for moment, latitude, longitude in cursor.fetchall()
        ]
        cursor.executemany(
            f"INSERT INTO {POINT_TABLE} ({POINT_COLUMNS}) "  # noqa: S608 (constant table names)
            "VALUES (%s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (device_id, recorded_at) DO NOTHING",
            [row for row, _ in fresh],
        )
    inserted = [
        Fix(point.recorded_at, point.latitude, point.longitude, point.speed) for _, point in fresh
    ]
    return inserted, around


def _stored_datetime(value: Any) -> datetime:
    """A stored SQLite time (UTC, as text or as the driver parsed it) as an aware datetime."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    parsed = datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _minutes_add(device_id: int, deltas: Sequence[MinuteDelta]) -> None:
    """Adds each delta to its stored minute, creating the minute when it is new."""
    adapt = connection.ops.adapt_datetimefield_value
    shifts = [delta for delta in deltas if not delta.point_count]
    if shifts:
        # Minutes whose distance alone changes exist already (see rollups.minute_deltas).
        with connection.cursor() as cursor:
            cursor.executemany(
                f"UPDATE {MINUTE_TABLE} SET {DISTANCE_FIELD} = {DISTANCE_FIELD} + %s "  # noqa: S608 (constant names)
                "WHERE device_id = %s AND minute = %s",
                [(delta.distance_m, device_id, adapt(delta.minute)) for delta in shifts],
            )
    deltas = [delta for delta in deltas if delta.point_count]
    if not deltas:
        return
    values: list[Any] = []
    for delta in deltas:
        values.extend([device_id, adapt(delta.minute)])
        for field in MINUTE_FIELDS:
            value = getattr(delta, field.name)
            values.append(adapt(value) if isinstance(value, datetime) else value)
        values.append(delta.distance_m)
    row_sql = "(" + ", ".join(["%s"] * len(MINUTE_COLUMNS)) + ")"
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {MINUTE_TABLE} ({', '.join(MINUTE_COLUMNS)}) "  # noqa: S608 (constant names)
            f"VALUES {', '.join([row_sql] * len(deltas))} {minute_upsert_sql()}",
            values,
        )


def points_store_sqlite(*, device_id: int, batch: PointBatch) -> int:
    """Stores a non-empty batch in the caller's transaction; returns how many points were new."""
    points = batch.points()
    with connection.cursor() as cursor:
        device_position_lock(device_id=device_id, cursor=cursor)
    inserted, around = _insert(device_id, points)
    if not inserted:
        return 0
    _minutes_add(device_id, minute_deltas(fixes=inserted, stored=around))
    newest = max(inserted, key=lambda fix: fix.recorded_at)
    source = next(point for point in points if point.recorded_at == newest.recorded_at)
    # Moved only forward, as PostgreSQL's statement moves it: an older batch arriving
    # late leaves the newer position.
    DevicePosition.objects.filter(
        Q(recorded_at__isnull=True) | Q(recorded_at__lt=source.recorded_at), device_id=device_id
    ).update(
        recorded_at=source.recorded_at,
        latitude=source.latitude,
        longitude=source.longitude,
        speed=source.speed,
        heading=source.heading,
        accuracy=source.accuracy,
    )
    return len(inserted)
