"""Domain events that tell customers something, and what each one tells whom.

Each handled event becomes one :class:`~emporium.notifications.services.Message`
per recipient with the dedup key ``event:<event id>``: a re-delivered event
(the relay publishes at least once) finds its messages already decided and
sends nothing again. Order and payment events have one recipient, the order's
owner; a price drop or a restock goes to everyone with the product in their
wishlist, in chunks of :data:`RECIPIENT_CHUNK` (each its own transaction, so a
product wishlisted by a million users never makes one giant transaction).
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal, InvalidOperation
from typing import Any

from emporium.integrations import events
from emporium.notifications.models import NotificationKind
from emporium.notifications.services import Message, SendOutcome, notifications_send
from emporium.orders.models import Order
from emporium.wishlists.models import WishlistItem

RECIPIENT_CHUNK = 1_000


def _money(value: Any) -> str:
    try:
        return f"{Decimal(str(value)):.2f}"
    except (InvalidOperation, ValueError):
        return str(value)


_ORDER_TEXT: dict[str, tuple[str, str, str]] = {
    events.ORDER_PLACED: (
        NotificationKind.ORDER_PLACED,
        "Order {order_id} placed",
        "We received your order {order_id} ({total}). We will tell you when it ships.",
    ),
    events.ORDER_PAID: (
        NotificationKind.ORDER_PAID,
        "Payment received for order {order_id}",
        "Your payment of {total} for order {order_id} went through.",
    ),
    events.ORDER_SHIPPED: (
        NotificationKind.ORDER_SHIPPED,
        "Order {order_id} has shipped",
        "Your order {order_id} is on its way.",
    ),
    events.ORDER_DELIVERED: (
        NotificationKind.ORDER_DELIVERED,
        "Order {order_id} was delivered",
        "Your order {order_id} was delivered. Enjoy!",
    ),
    events.ORDER_CANCELLED: (
        NotificationKind.ORDER_CANCELLED,
        "Order {order_id} was cancelled",
        "Your order {order_id} was cancelled. Any payment taken will be refunded.",
    ),
}


def _order_messages(event_type: str, event_id: str, payload: dict[str, Any]) -> list[Message]:
    kind, title, body = _ORDER_TEXT[event_type]
    order_id = payload["order_id"]
    text = {"order_id": order_id, "total": _money(payload.get("total_amount", ""))}
    data = {"order_id": order_id}
    if "to" in payload:
        data["order_status"] = payload["to"]
    return [
        Message(
            recipient_id=int(payload["user_id"]),
            kind=kind,
            title=title.format(**text),
            body=body.format(**text),
            data=data,
            dedup_key=f"event:{event_id}",
        )
    ]


def _payment_failed_messages(event_id: str, payload: dict[str, Any]) -> list[Message]:
    order_id = payload["order_id"]
    owner = Order.objects.filter(pk=order_id).values_list("user_id", flat=True).first()
    if owner is None:
        return []
    return [
        Message(
            recipient_id=owner,
            kind=NotificationKind.PAYMENT_FAILED,
            title=f"Payment failed for order {order_id}",
            body=f"We could not take the payment for order {order_id}. Please try again.",
            data={"order_id": order_id, "payment_id": payload.get("payment_id")},
            dedup_key=f"event:{event_id}",
        )
    ]


def wishlisters(*, product_id: int) -> Iterator[list[int]]:
    """Ids of the users with ``product_id`` in their wishlist, in chunks (keyset on user id)."""
    after = 0
    while True:
        chunk = list(
            WishlistItem.objects.filter(product_id=product_id, wishlist__user_id__gt=after)
            .order_by("wishlist__user_id")
            .values_list("wishlist__user_id", flat=True)[:RECIPIENT_CHUNK]
        )
        if not chunk:
            return
        yield chunk
        after = chunk[-1]


def _wishlist_text(
    event_type: str, payload: dict[str, Any]
) -> tuple[str, str, str, dict[str, Any]]:
    name = payload.get("name") or f"product {payload['product_id']}"
    data: dict[str, Any] = {"product_id": payload["product_id"]}
    if event_type == events.PRODUCT_PRICE_DROPPED:
        old, new = _money(payload["old_price"]), _money(payload["new_price"])
        data.update(old_price=old, new_price=new)
        return (
            NotificationKind.PRICE_DROPPED,
            f"Price drop: {name}",
            f"{name} from your wishlist now costs {new} (was {old}).",
            data,
        )
    data["stock_quantity"] = payload.get("stock_quantity")
    return (
        NotificationKind.BACK_IN_STOCK,
        f"Back in stock: {name}",
        f"{name} from your wishlist is available again.",
        data,
    )


def event_notify(*, event_id: str, event_type: str, payload: dict[str, Any]) -> SendOutcome:
    """Sends what ``event_type`` tells its recipients; a second call for one event sends nothing."""
    total = SendOutcome()
    if event_type in _ORDER_TEXT:
        return notifications_send(messages=_order_messages(event_type, event_id, payload))
    if event_type == events.PAYMENT_FAILED:
        return notifications_send(messages=_payment_failed_messages(event_id, payload))
    if event_type in (events.PRODUCT_PRICE_DROPPED, events.PRODUCT_BACK_IN_STOCK):
        kind, title, body, data = _wishlist_text(event_type, payload)
        for chunk in wishlisters(product_id=int(payload["product_id"])):
            outcome = notifications_send(
                messages=[
                    Message(
                        recipient_id=user_id,
                        kind=kind,
                        title=title[:200],
                        body=body,
                        data=data,
                        dedup_key=f"event:{event_id}",
                    )
                    for user_id in chunk
                ]
            )
            total.in_app += outcome.in_app
            total.external += outcome.external
            total.held += outcome.held
            total.skipped += outcome.skipped
    return total


HANDLED_EVENTS: tuple[str, ...] = (
    *_ORDER_TEXT,
    events.PAYMENT_FAILED,
    events.PRODUCT_PRICE_DROPPED,
    events.PRODUCT_BACK_IN_STOCK,
)
