"""Recording domain events, and what follow-up work each one starts.

Services call :func:`event_record` inside their transaction. Work that must
happen after the change (sending an e-mail, charging a card) is attached to
an event type with :func:`on_event`; the relay starts it once the event is
safely published, so a rolled-back change never sends anything and a
committed one never loses its follow-up, even with the broker down.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.db import transaction

from emporium.core import correlation
from emporium.integrations.models import OutboxEvent

ORDER_PLACED = "order.placed"
ORDER_PAID = "order.paid"
ORDER_CANCELLED = "order.cancelled"
ORDER_SHIPPED = "order.shipped"
ORDER_DELIVERED = "order.delivered"
PAYMENT_REQUESTED = "payment.requested"
PAYMENT_FAILED = "payment.failed"
PAYMENT_REFUND_REQUESTED = "payment.refund_requested"
PAYMENT_RECONCILE_REQUESTED = "payment.reconcile_requested"
STOCK_LOW = "stock.low"
# A product got cheaper, or became available after having none: wishlists hear of it.
PRODUCT_PRICE_DROPPED = "product.price_dropped"
PRODUCT_BACK_IN_STOCK = "product.back_in_stock"

EventHandler = Callable[[OutboxEvent], None]
_handlers: dict[str, list[EventHandler]] = {}
_after_commit_hooks: list[Callable[[], object]] = []


def on_event(event_type: str) -> Callable[[EventHandler], EventHandler]:
    """Registers follow-up work for an event type (called once the event is relayed)."""

    def register(handler: EventHandler) -> EventHandler:
        _handlers.setdefault(event_type, []).append(handler)
        return handler

    return register


def handlers_for(event_type: str) -> list[EventHandler]:
    return list(_handlers.get(event_type, ()))


def after_event_commit(hook: Callable[[], object]) -> None:
    """Registers what runs after a transaction that recorded events commits."""
    _after_commit_hooks.append(hook)


def event_record(
    *, event_type: str, aggregate_type: str, aggregate_id: object, payload: dict[str, Any]
) -> OutboxEvent:
    event = OutboxEvent.objects.create(
        event_type=event_type,
        aggregate_type=aggregate_type,
        aggregate_id=str(aggregate_id),
        payload=payload,
        correlation=correlation.carrier(),
    )
    event_hooks_after_commit()
    return event


def event_hooks_after_commit() -> None:
    """Arranges the after-commit hooks; for writers that record events in SQL themselves."""
    for hook in _after_commit_hooks:
        transaction.on_commit(hook)
