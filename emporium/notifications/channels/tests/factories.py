from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from emporium.accounts.models import User
from emporium.notifications.channels.services import DeliveryRequest


def delivery_requests(
    users: Sequence[User],
    *,
    channel: str,
    key: str = "event-1",
    kind: str = "order.paid",
    **extra: Any,
) -> list[DeliveryRequest]:
    return [
        DeliveryRequest(
            recipient_id=user.pk,
            kind=kind,
            channel=channel,
            title=extra.get("title", "Your order is paid"),
            body=extra.get("body", "Order 42 is paid and being packed."),
            data=extra.get("data", {"order_id": 42, "url": "https://shop.example/orders/42"}),
            dedup_key=f"{key}:{user.pk}",
            critical=extra.get("critical", False),
        )
        for user in users
    ]
