"""Reads of the outbox."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db.models import Count, Min

from emporium.integrations.models import OutboxEvent


@dataclass(frozen=True)
class OutboxBacklog:
    events: int  # recorded, not yet published
    oldest_created_at: datetime | None  # None when nothing waits


def outbox_backlog() -> OutboxBacklog:
    """How many events wait for the relay and since when: one statement on the partial index."""
    waiting = OutboxEvent.objects.filter(published_at__isnull=True).aggregate(
        events=Count("id"), oldest=Min("created_at")
    )
    return OutboxBacklog(events=int(waiting["events"]), oldest_created_at=waiting["oldest"])
