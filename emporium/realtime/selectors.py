"""Reads of the real-time streams: what a reconnecting client missed."""

from __future__ import annotations

from django.db.models import QuerySet

from emporium.accounts.models import User
from emporium.realtime.models import OrderEvent


def order_events_since(*, user: User, since: int, limit: int) -> list[OrderEvent]:
    """The caller's own order events with an id above ``since``, oldest first.

    Staff get their own orders' events too, not everyone's: this is a
    personal stream. ``limit + 1`` rows are read so the caller can tell
    whether more follow; one range of the (user, id) index.
    """
    queryset: QuerySet[OrderEvent] = OrderEvent.objects.filter(user=user, pk__gt=since).order_by(
        "pk"
    )
    return list(queryset[: limit + 1])
