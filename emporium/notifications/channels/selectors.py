"""Reads: dead letters for staff, a user's device tokens."""

from __future__ import annotations

from django.db.models import QuerySet

from emporium.notifications.channels.models import Delivery, DeliveryStatus, DeviceToken


def dead_letter_list(
    *, channel: str | None = None, error_contains: str | None = None
) -> QuerySet[Delivery]:
    """Parked deliveries, most recently parked first (the partial index on dead rows)."""
    rows = Delivery.objects.filter(status=DeliveryStatus.DEAD)
    if channel:
        rows = rows.filter(channel=channel)
    if error_contains:
        rows = rows.filter(last_error__icontains=error_contains)
    return rows.order_by("-finished_at", "-id")


def device_token_list(*, user_id: int) -> QuerySet[DeviceToken]:
    return DeviceToken.objects.filter(user_id=user_id).order_by("id")
