"""Helpers for the checkout, workflow, expiry and idempotency tests.

The shared factories live in ``emporium/core/tests/factories.py``; what is here
fills carts, reads the outbox and takes a snapshot of everything a checkout or
a status change could write, so failure paths can assert that nothing was.
"""

from __future__ import annotations

from typing import Any

from rest_framework.response import Response

from emporium.accounts.models import User
from emporium.carts.models import CartItem
from emporium.carts.services import cart_get_or_create
from emporium.catalog.models import Product
from emporium.core.models import IdempotencyKey
from emporium.integrations.models import OutboxEvent
from emporium.orders.models import Order, OrderItem, OrderStatusChange
from emporium.payments.models import Payment

ORDERS_URL = "/api/orders/"


def order_url(order_id: int, action: str = "") -> str:
    return f"/api/orders/{order_id}/{action + '/' if action else ''}"


def cart_fill(user: User, lines: list[tuple[Product, int]]) -> None:
    """Puts the lines in the user's cart, in the given order (ids follow it).

    Rows are written directly so a test can set up any cart, including one
    that asks for more than is in stock by the time of checkout.
    """
    cart = cart_get_or_create(user=user)
    CartItem.objects.bulk_create(
        [CartItem(cart=cart, product=product, quantity=quantity) for product, quantity in lines]
    )


def cart_lines(user: User) -> list[tuple[int, int]]:
    """(product id, quantity) of the user's cart, by product id."""
    return list(
        CartItem.objects.filter(cart__user=user)
        .order_by("product_id")
        .values_list("product_id", "quantity")
    )


def stock_of(product: Product) -> int:
    return int(Product.objects.values_list("stock_quantity", flat=True).get(pk=product.pk))


def outbox(event_type: str | None = None) -> list[tuple[str, str, str, dict[str, Any]]]:
    """(event type, aggregate type, aggregate id, payload) of the recorded events, sorted."""
    events = OutboxEvent.objects.all()
    if event_type is not None:
        events = events.filter(event_type=event_type)
    return sorted(
        (
            (event.event_type, event.aggregate_type, event.aggregate_id, event.payload)
            for event in events
        ),
        key=lambda row: (row[0], row[1], row[2]),
    )


def error_of(response: Response) -> dict[str, Any]:
    """The error object of a response, after checking the one error shape."""
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message", "details"}, body
    return body["error"]


def database_state() -> dict[str, list[tuple[Any, ...]]]:
    """Every row a checkout, payment start or status change could write or change."""
    return {
        "orders": list(
            Order.objects.order_by("id").values_list(
                "id", "user_id", "order_status", "total_amount", "updated_at"
            )
        ),
        "order_items": list(
            OrderItem.objects.order_by("id").values_list(
                "id", "order_id", "product_id", "quantity", "price"
            )
        ),
        "stock": list(
            Product.objects.order_by("id").values_list("id", "stock_quantity", "updated_at")
        ),
        "cart_items": list(
            CartItem.objects.order_by("id").values_list("id", "cart_id", "product_id", "quantity")
        ),
        "status_changes": list(
            OrderStatusChange.objects.order_by("id").values_list(
                "id", "order_id", "from_status", "to_status", "actor_id", "reason"
            )
        ),
        "outbox": sorted(
            (str(event_id), event_type, aggregate_id)
            for event_id, event_type, aggregate_id in OutboxEvent.objects.values_list(
                "id", "event_type", "aggregate_id"
            )
        ),
        "payments": list(
            Payment.objects.order_by("id").values_list("id", "order_id", "status", "amount")
        ),
        "idempotency_keys": list(
            IdempotencyKey.objects.order_by("id").values_list(
                "id", "user_id", "key", "completed_at", "response_status", "locked_until"
            )
        ),
    }
