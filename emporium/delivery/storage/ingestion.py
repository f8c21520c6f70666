"""Storing a device's batch of points: the one entry point, whatever the database.

Both paths add to the minute rollups and move the device's last position in
the same transaction as the points: ``postgresql`` in one statement,
``sqlite`` in steps.
"""

from __future__ import annotations

from django.db import IntegrityError, transaction

from emporium.delivery.storage.partitions import batch_partitions_ensure, is_postgresql
from emporium.delivery.storage.postgresql import points_store_postgresql
from emporium.delivery.storage.sqlite import points_store_sqlite
from emporium.delivery.validation import PointBatch


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
    if not is_postgresql():
        with transaction.atomic():
            return points_store_sqlite(device_id=device_id, batch=batch)
    batch_partitions_ensure(batch=batch)
    try:
        with transaction.atomic():
            return points_store_postgresql(device_id=device_id, batch=batch)
    except IntegrityError as error:
        if not _no_partition_for_row(error):
            raise
    # A partition this process had seen was dropped since: make it again.
    batch_partitions_ensure(batch=batch, recheck=True)
    with transaction.atomic():
        return points_store_postgresql(device_id=device_id, batch=batch)
