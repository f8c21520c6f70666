"""Where telemetry is written: raw points, daily partitions, minute rollups, last positions.

PostgreSQL: after the device's position row is locked, one statement does
the rest. The batch travels as six arrays in PostgreSQL's binary format
(packed here without a Python step per point) and is unnested; the points the
device has stored over the batch's time span are read in the same statement,
the batch's points not among them are inserted, and from them and the stored
points around them the same statement adds to the minute rollups and moves
the last position. No row comes back to Python: the result is the number of
new points.

SQLite: the points the device already stored in the batch's time range are
read first, under the write lock the transaction holds from BEGIN IMMEDIATE,
and only new ones are inserted (``ON CONFLICT DO NOTHING`` stays as the
backstop); the rollups are computed in Python by the same rule. Both paths
add to the minute rollups and move the device's last position in the same
transaction as the points.
"""

from __future__ import annotations

import logging
import re
import struct
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import psycopg
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from psycopg.adapt import Dumper
from psycopg.pq import Format

from emporium.delivery.models import DevicePosition, TelemetryMinute
from emporium.delivery.rollups import EARTH_RADIUS_M, Fix, MinuteDelta, minute_deltas
from emporium.delivery.validation import PG_EPOCH, PointBatch, ValidPoint

logger = logging.getLogger(__name__)

POINT_TABLE = "delivery_telemetry_point"
MINUTE_TABLE = TelemetryMinute._meta.db_table
POSITION_TABLE = DevicePosition._meta.db_table
_POINT_COLUMNS = "device_id, recorded_at, latitude, longitude, speed, heading, accuracy"
_PARTITION_NAME = re.compile(rf"^{POINT_TABLE}_p(\d{{8}})$")
# Serialises partition DDL between processes: the key is arbitrary but fixed.
_PARTITION_LOCK_KEY = 0x7E1E_0001
# UTC days this process has seen a partition for. A batch whose days are all
# here skips the pg_class check (a round trip per batch). The set can be wrong
# only if a partition was dropped since (maintenance drops days older than
# ingestion accepts; tests roll back the ones they create): the insert then
# fails for want of a partition, and the batch is stored again after the
# check, in a new transaction or savepoint.
_days_with_partition: set[date] = set()


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
            _days_with_partition.discard(day)
    else:
        boundary = connection.ops.adapt_datetimefield_value(
            datetime.combine(first_kept_day, time.min, tzinfo=UTC)
        )
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                f"SELECT DISTINCT substr(recorded_at, 1, 10) FROM {POINT_TABLE} "  # noqa: S608 (constant table names)
                "WHERE recorded_at < %s",
                [boundary],
            )
            report.dropped = sorted(date.fromisoformat(day) for (day,) in cursor.fetchall())
            cursor.execute(f"DELETE FROM {POINT_TABLE} WHERE recorded_at < %s", [boundary])  # noqa: S608 (constant table names)
    minute_cutoff = now - timedelta(days=settings.EMPORIUM_TELEMETRY_ROLLUP_RETENTION_DAYS)
    report.minutes_deleted, _ = TelemetryMinute.objects.filter(minute__lt=minute_cutoff).delete()
    if report.dropped:
        logger.info("dropped telemetry for %s", ", ".join(map(str, report.dropped)))
    return report


# -- points ----------------------------------------------------------------------------

_FLOAT8_OID, _FLOAT8_ARRAY_OID = 701, 1022
_TIMESTAMPTZ_OID, _TIMESTAMPTZ_ARRAY_OID = 1184, 1185
_LENGTH_8 = struct.pack(">i", 8)
# Minutes are cut on absolute time (date_bin), which needs no time zone lookup per row.
_EPOCH_SQL = "timestamptz '2000-01-01 00:00:00+00'"


class _PackedArray(bytes):
    """A one-dimensional array already in PostgreSQL's binary format."""


class _PackedFloat8Array(_PackedArray):
    pass


class _PackedTimestamptzArray(_PackedArray):
    pass


class _PackedDumper(Dumper):
    format = Format.BINARY

    def dump(self, obj: Any) -> bytes:
        return bytes(obj)


class _Float8ArrayDumper(_PackedDumper):
    oid = _FLOAT8_ARRAY_OID


class _TimestamptzArrayDumper(_PackedDumper):
    oid = _TIMESTAMPTZ_ARRAY_OID


def _array_binary(values: Sequence[Any], element_oid: int, code: str) -> bytes:
    """Packs 8-byte values (``code`` "d" or "q"; None is NULL) as a binary array.

    The format is a header (dimensions, a has-NULL flag, the element type, then
    the length and lower bound of the one dimension) and, per element, its byte
    length (-1 for NULL) and its bytes. Without NULLs the values are packed in
    one call and the length words woven in with strided slices, so no Python
    code runs per element.
    """
    count = len(values)
    has_null = None in values
    header = struct.pack(">iiiii", 1, 1 if has_null else 0, element_oid, count, 1)
    if not has_null:
        packed = struct.pack(f">{count}{code}", *values)
        body = bytearray(12 * count)
        for offset in range(4):
            body[offset::12] = _LENGTH_8[offset : offset + 1] * count
        for offset in range(8):
            body[4 + offset :: 12] = packed[offset::8]
        return header + bytes(body)
    layout = "".join("i" if value is None else "i" + code for value in values)
    words: list[Any] = []
    for value in values:
        if value is None:
            words.append(-1)
        else:
            words.extend((8, value))
    return header + struct.pack(">" + layout, *words)


def _float8_array(values: Sequence[float | None]) -> _PackedFloat8Array:
    return _PackedFloat8Array(_array_binary(values, _FLOAT8_OID, "d"))


def _haversine_sql(lat_a: str, lon_a: str, lat_b: str, lon_b: str) -> str:
    """The great-circle distance in metres, as ``rollups.haversine_m`` computes it."""
    return (
        f"(2 * {EARTH_RADIUS_M} * asin(least(1.0, sqrt("
        f"power(sin((radians({lat_b}) - radians({lat_a})) / 2), 2) "
        f"+ cos(radians({lat_a})) * cos(radians({lat_b})) "
        f"* power(sin(radians({lon_b} - {lon_a}) / 2), 2)))))"
    )


# One statement stores a batch and everything that follows from it. Its
# sub-statements share one snapshot, taken after the device's position row was
# locked, so "stored" sees every point of the device committed before this
# batch, and no other batch of the device can commit one meanwhile.
# - "stored" is the device's points from the batch's first timestamp to its
#   last, plus the one just before and the one just after: one range scan of
#   the primary key, nearly empty for a device that sends in time order.
# - "fresh" is the batch minus those: exactly the new points (repeats inside
#   the batch were dropped before). They are inserted with a plain INSERT: no
#   ON CONFLICT, whose speculative insertion cost about 2 ms per 1,000 rows
#   here, is needed, since the lock keeps every writer of the device's points
#   out; the primary key would still refuse a duplicate, as an error.
# - Distance stays the length of the path through all stored points in time
#   order: each segment that touches a new point is added to the minute of its
#   later point, and each stored segment a new point now splits is taken away
#   from the minute that counted it (rollups.minute_deltas does the same).
_INGEST_SQL = f"""
WITH batch AS (
    SELECT * FROM unnest(%(recorded_at)b, %(latitude)b, %(longitude)b,
                         %(speed)b, %(heading)b, %(accuracy)b)
        AS batch (recorded_at, latitude, longitude, speed, heading, accuracy)
), stored AS (
    SELECT recorded_at, latitude, longitude FROM {POINT_TABLE}
    WHERE device_id = %(device_id)s::bigint
        AND recorded_at BETWEEN %(low)s::timestamptz AND %(high)s::timestamptz
    UNION ALL
    (SELECT recorded_at, latitude, longitude FROM {POINT_TABLE}
     WHERE device_id = %(device_id)s::bigint AND recorded_at < %(low)s::timestamptz
     ORDER BY recorded_at DESC LIMIT 1)
    UNION ALL
    (SELECT recorded_at, latitude, longitude FROM {POINT_TABLE}
     WHERE device_id = %(device_id)s::bigint AND recorded_at > %(high)s::timestamptz
     ORDER BY recorded_at LIMIT 1)
), fresh AS (
    SELECT * FROM batch
    WHERE NOT EXISTS (SELECT FROM stored WHERE stored.recorded_at = batch.recorded_at)
), inserted AS (
    INSERT INTO {POINT_TABLE} ({_POINT_COLUMNS})
    SELECT %(device_id)s::bigint, recorded_at, latitude, longitude, speed, heading, accuracy
    FROM fresh
), merged AS (
    SELECT recorded_at, latitude, longitude, true AS new FROM fresh
    UNION ALL
    SELECT recorded_at, latitude, longitude, false FROM stored
), steps AS (
    SELECT recorded_at, new, latitude, longitude,
        lag(latitude) OVER by_time AS from_latitude,
        lag(longitude) OVER by_time AS from_longitude,
        lag(new) OVER by_time AS from_new
    FROM merged WINDOW by_time AS (ORDER BY recorded_at)
), stored_steps AS (
    SELECT recorded_at, latitude, longitude,
        lag(latitude) OVER by_time AS from_latitude,
        lag(longitude) OVER by_time AS from_longitude
    FROM stored WINDOW by_time AS (ORDER BY recorded_at)
), distance AS (
    SELECT recorded_at,
        {_haversine_sql("from_latitude", "from_longitude", "latitude", "longitude")} AS metres
    FROM steps
    WHERE from_latitude IS NOT NULL AND (new OR from_new)
    UNION ALL
    SELECT old.recorded_at,
        -{
    _haversine_sql("old.from_latitude", "old.from_longitude", "old.latitude", "old.longitude")
}
    FROM stored_steps old JOIN steps now ON now.recorded_at = old.recorded_at AND NOT now.new
    WHERE now.from_new AND old.from_latitude IS NOT NULL
), minute_points AS (
    SELECT date_bin('1 minute', recorded_at, {_EPOCH_SQL}) AS minute, count(*) AS point_count,
        sum(latitude) AS latitude_sum, sum(longitude) AS longitude_sum,
        min(recorded_at) AS first_at, max(recorded_at) AS last_at, max(speed) AS max_speed
    FROM fresh GROUP BY 1
), minute_distance AS (
    SELECT date_bin('1 minute', recorded_at, {_EPOCH_SQL}) AS minute, sum(metres) AS metres
    FROM distance GROUP BY 1
), minutes AS (
    INSERT INTO {MINUTE_TABLE} (device_id, minute, point_count, latitude_sum, longitude_sum,
        first_recorded_at, last_recorded_at, distance_m, max_speed)
    SELECT %(device_id)s::bigint, minute, points.point_count, points.latitude_sum,
        points.longitude_sum, points.first_at, points.last_at, coalesce(moved.metres, 0),
        points.max_speed
    FROM minute_points points LEFT JOIN minute_distance moved USING (minute)
    ON CONFLICT (device_id, minute) DO UPDATE SET
        point_count = {MINUTE_TABLE}.point_count + excluded.point_count,
        latitude_sum = {MINUTE_TABLE}.latitude_sum + excluded.latitude_sum,
        longitude_sum = {MINUTE_TABLE}.longitude_sum + excluded.longitude_sum,
        first_recorded_at = least({MINUTE_TABLE}.first_recorded_at, excluded.first_recorded_at),
        last_recorded_at = greatest({MINUTE_TABLE}.last_recorded_at, excluded.last_recorded_at),
        distance_m = {MINUTE_TABLE}.distance_m + excluded.distance_m,
        max_speed = greatest({MINUTE_TABLE}.max_speed, excluded.max_speed)
    RETURNING 1
), distance_only AS (
    -- A minute with no new point whose distance changes (one of its stored points
    -- got a new neighbour) exists already; only its distance moves. These rows
    -- are not among those "minutes" writes, so no row is changed twice.
    UPDATE {MINUTE_TABLE} minute_row SET distance_m = minute_row.distance_m + moved.metres
    FROM minute_distance moved
    WHERE minute_row.device_id = %(device_id)s::bigint AND minute_row.minute = moved.minute
        AND NOT EXISTS (SELECT FROM minute_points points WHERE points.minute = moved.minute)
    RETURNING 1
), newest AS (
    SELECT * FROM fresh ORDER BY recorded_at DESC LIMIT 1
), position_moved AS (
    UPDATE {POSITION_TABLE} position SET recorded_at = newest.recorded_at,
        latitude = newest.latitude, longitude = newest.longitude, speed = newest.speed,
        heading = newest.heading, accuracy = newest.accuracy
    FROM newest
    WHERE position.device_id = %(device_id)s::bigint
        AND (position.recorded_at IS NULL OR position.recorded_at < newest.recorded_at)
    RETURNING 1
)
SELECT count(*) FROM fresh
"""  # noqa: S608 (table names are constants; every value is a bound parameter)

_POSITION_LOCK_SQL = f"SELECT 1 FROM {POSITION_TABLE} WHERE device_id = %s FOR UPDATE"  # noqa: S608 (constant table names)


class _PreparingCursor(psycopg.Cursor[Any]):
    """Binds on the server and prepares what it runs: the ingestion statement is
    planned once per connection (planning it cost about 0.9 ms per batch).

    Protocol-level prepared statements, as pgbouncer 1.21+ relays them in
    transaction mode with ``max_prepared_statements`` set. Django's own
    cursors (client-side binding) never prepare, so nothing else changes.
    """

    def execute(self, query: Any, params: Any = None, **options: Any) -> Any:
        options.setdefault("prepare", True)
        return super().execute(query, params, **options)


def _binary_cursor() -> Any:
    """A psycopg cursor binding parameters on the server, wrapped like Django's own.

    Django's psycopg cursors bind on the client (values become SQL text);
    the packed arrays travel as binary parameters, so this cursor is made
    directly on the same connection, in the same transaction, and wrapped
    the way Django wraps its cursors (query logging, error translation).
    """
    connection.ensure_connection()
    raw = connection.connection
    if raw not in _adapted_connections:
        raw.adapters.register_dumper(_PackedFloat8Array, _Float8ArrayDumper)
        raw.adapters.register_dumper(_PackedTimestamptzArray, _TimestamptzArrayDumper)
        if raw.prepare_threshold is None:
            # Django turns preparing off for the connection; an explicit
            # prepare=True then still does nothing unless a threshold is set.
            # Only _PreparingCursor asks, so a high one changes nothing else.
            raw.prepare_threshold = 1_000_000
        _adapted_connections.add(raw)
    wrapper: Any = connection
    return wrapper._prepare_cursor(_PreparingCursor(raw))


_adapted_connections: weakref.WeakSet[Any] = weakref.WeakSet()


def _position_lock_postgresql(cursor: Any, device_id: int) -> None:
    """Locks the device's position row until commit, creating it on the first batch.

    Two batches of one device are stored one after the other, so each sees the
    points the other stored; other devices are not held up.
    """
    cursor.execute(_POSITION_LOCK_SQL, [device_id])
    if cursor.fetchone() is None:
        cursor.execute(
            f"INSERT INTO {POSITION_TABLE} (device_id) VALUES (%s) "  # noqa: S608 (constant table names)
            "ON CONFLICT (device_id) DO NOTHING",
            [device_id],
        )
        cursor.execute(_POSITION_LOCK_SQL, [device_id])


def _store_postgresql(device_id: int, batch: PointBatch) -> int:
    params = {
        "device_id": device_id,
        "low": PG_EPOCH + timedelta(microseconds=min(batch.micros)),
        "high": PG_EPOCH + timedelta(microseconds=max(batch.micros)),
        "recorded_at": _PackedTimestamptzArray(_array_binary(batch.micros, _TIMESTAMPTZ_OID, "q")),
        "latitude": _float8_array(batch.latitude),
        "longitude": _float8_array(batch.longitude),
        "speed": _float8_array(batch.speed),
        "heading": _float8_array(batch.heading),
        "accuracy": _float8_array(batch.accuracy),
    }
    with _binary_cursor() as cursor:
        _position_lock_postgresql(cursor, device_id)
        cursor.execute(_INGEST_SQL, params)
        (inserted,) = cursor.fetchone()
    return int(inserted)


def _insert_sqlite(device_id: int, points: Sequence[ValidPoint]) -> tuple[list[Fix], list[Fix]]:
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
            Fix(_sqlite_datetime(moment), latitude, longitude)
            for moment, latitude, longitude in cursor.fetchall()
        ]
        cursor.executemany(
            f"INSERT INTO {POINT_TABLE} ({_POINT_COLUMNS}) "  # noqa: S608 (constant table names)
            "VALUES (%s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (device_id, recorded_at) DO NOTHING",
            [row for row, _ in fresh],
        )
    inserted = [
        Fix(point.recorded_at, point.latitude, point.longitude, point.speed) for _, point in fresh
    ]
    return inserted, around


def _sqlite_datetime(value: Any) -> datetime:
    """A stored SQLite time (UTC, as text or as the driver parsed it) as an aware datetime."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    parsed = datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _minutes_add(device_id: int, deltas: Sequence[MinuteDelta]) -> None:
    """Adds each delta to its stored minute, creating the minute when it is new.

    Additive, so two batches of the same device committed in either order
    give the same minute; portable between PostgreSQL and SQLite (3.24+).
    The embedded profile uses it; PostgreSQL does the same inside its one
    ingestion statement.
    """
    table = MINUTE_TABLE
    adapt = connection.ops.adapt_datetimefield_value
    shifts = [delta for delta in deltas if not delta.point_count]
    if shifts:
        # Minutes whose distance alone changes exist already (see rollups.minute_deltas).
        with connection.cursor() as cursor:
            cursor.executemany(
                f"UPDATE {table} SET distance_m = distance_m + %s "  # noqa: S608 (constant table names)
                "WHERE device_id = %s AND minute = %s",
                [(delta.distance_m, device_id, adapt(delta.minute)) for delta in shifts],
            )
    deltas = [delta for delta in deltas if delta.point_count]
    if not deltas:
        return
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
            f"INSERT INTO {table} (device_id, minute, point_count, latitude_sum, "  # noqa: S608 (constant table names)
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
    """The device's last-position row, locked until commit (created on its first batch)."""
    position = DevicePosition.objects.select_for_update().filter(device_id=device_id).first()
    if position is None:
        DevicePosition.objects.bulk_create(
            [DevicePosition(device_id=device_id)], ignore_conflicts=True
        )
        position = DevicePosition.objects.select_for_update().get(device_id=device_id)
    return position


def _store_sqlite(device_id: int, batch: PointBatch) -> int:
    points = batch.points()
    position = _position_lock(device_id)
    inserted, around = _insert_sqlite(device_id, points)
    if not inserted:
        return 0
    _minutes_add(device_id, minute_deltas(fixes=inserted, stored=around))
    newest = max(inserted, key=lambda fix: fix.recorded_at)
    if position.recorded_at is None or newest.recorded_at > position.recorded_at:
        source = next(point for point in points if point.recorded_at == newest.recorded_at)
        DevicePosition.objects.filter(device_id=device_id).update(
            recorded_at=source.recorded_at,
            latitude=source.latitude,
            longitude=source.longitude,
            speed=source.speed,
            heading=source.heading,
            accuracy=source.accuracy,
        )
    return len(inserted)


def _utc_days(batch: PointBatch) -> set[date]:
    """The UTC days the batch touches (its timestamps may carry any offset)."""
    low = min(batch.micros)
    high = max(batch.micros)
    first = (PG_EPOCH + timedelta(microseconds=low)).date()
    last = (PG_EPOCH + timedelta(microseconds=high)).date()
    return {first + timedelta(days=offset) for offset in range((last - first).days + 1)}


def _no_partition_for_row(error: IntegrityError) -> bool:
    cause = error.__cause__
    return getattr(cause, "sqlstate", None) == "23514" and "no partition" in str(cause)


def telemetry_points_store(*, device_id: int, batch: PointBatch) -> int:
    """Stores new points of one device with their rollups; returns how many were new.

    ``batch`` holds no two equal timestamps (``validation.point_batch`` drops
    them); points already stored are skipped, so sending a batch again changes
    nothing. The minute rollups and the device's last position change in the
    same transaction as the points.
    """
    if not len(batch):
        return 0
    if not _is_postgresql():
        with transaction.atomic():
            return _store_sqlite(device_id, batch)
    days = _utc_days(batch)
    if not days <= _days_with_partition:
        telemetry_partitions_ensure(days=days)
        _days_with_partition.update(days)
    try:
        with transaction.atomic():
            return _store_postgresql(device_id, batch)
    except IntegrityError as error:
        if not _no_partition_for_row(error):
            raise
    _days_with_partition.difference_update(days)
    telemetry_partitions_ensure(days=days)
    _days_with_partition.update(days)
    with transaction.atomic():
        return _store_postgresql(device_id, batch)
