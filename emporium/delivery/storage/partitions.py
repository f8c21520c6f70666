"""The daily partitions of the point table: made ahead of need, dropped past the retention.

On SQLite there are no partitions: maintenance deletes the expired points instead.
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

from emporium.delivery.models import TelemetryMinute
from emporium.delivery.storage.tables import POINT_TABLE
from emporium.delivery.validation import PG_EPOCH, PointBatch

logger = logging.getLogger(__name__)

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


def is_postgresql() -> bool:
    return connection.vendor == "postgresql"


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
    if not wanted or not is_postgresql():
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


def batch_days(batch: PointBatch) -> set[date]:
    """The UTC days the batch touches (its timestamps may carry any offset)."""
    first = (PG_EPOCH + timedelta(microseconds=min(batch.micros))).date()
    last = (PG_EPOCH + timedelta(microseconds=max(batch.micros))).date()
    return {first + timedelta(days=offset) for offset in range((last - first).days + 1)}


def batch_partitions_ensure(*, batch: PointBatch, recheck: bool = False) -> None:
    """Makes sure the batch's days have a partition, asking the server only for days
    this process has not seen one for (every day with ``recheck``)."""
    days = batch_days(batch)
    if recheck:
        _days_with_partition.difference_update(days)
    if not days <= _days_with_partition:
        telemetry_partitions_ensure(days=days)
        _days_with_partition.update(days)


def telemetry_partitions_list() -> list[date]:
    """The days that have a partition (PostgreSQL), in order; empty on SQLite."""
    if not is_postgresql():
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
    if is_postgresql():
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
