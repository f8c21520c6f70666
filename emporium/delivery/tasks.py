"""Periodic telemetry housekeeping."""

from __future__ import annotations

from celery import shared_task

from emporium.delivery.storage.partitions import telemetry_partitions_maintain as maintain


@shared_task(
    name="delivery.telemetry_partitions_maintain",
    ignore_result=True,
    acks_late=True,
    time_limit=300,
    soft_time_limit=240,
)
def telemetry_partitions_maintain() -> dict[str, list[str] | int]:
    """Creates the coming days' partitions and drops those past the retention.

    Idempotent: a second run finds every partition in place and nothing old
    left, and does nothing. Runs hourly from beat, so a missed run is made up
    well before midnight (ingestion also creates a missing day on demand).
    """
    report = maintain()
    return {
        "created": [day.isoformat() for day in report.created],
        "dropped": [day.isoformat() for day in report.dropped],
        "minutes_deleted": report.minutes_deleted,
    }
