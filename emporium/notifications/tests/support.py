"""Helpers shared by the notifications tests."""

from __future__ import annotations

from typing import Any

from emporium.integrations import events
from emporium.integrations.models import OutboxEvent
from emporium.notifications.models import Notification


def record_event(event_type: str, payload: dict[str, Any], aggregate_id: object = 1) -> OutboxEvent:
    return events.event_record(
        event_type=event_type, aggregate_type="test", aggregate_id=aggregate_id, payload=payload
    )


def inbox(user: Any) -> list[tuple[str, str]]:
    """(kind, title) of the user's notifications, oldest first."""
    return [
        (row.kind, row.title) for row in Notification.objects.filter(recipient=user).order_by("pk")
    ]
