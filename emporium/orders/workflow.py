"""The order status machine: which moves are legal, and who may make them."""

from __future__ import annotations

from emporium.orders.models import OrderStatus

TRANSITIONS: dict[str, frozenset[str]] = {
    OrderStatus.PENDING_PAYMENT: frozenset(
        {OrderStatus.PAID, OrderStatus.CANCELLED, OrderStatus.PAYMENT_FAILED}
    ),
    OrderStatus.PAID: frozenset({OrderStatus.SHIPPED, OrderStatus.CANCELLED}),
    OrderStatus.SHIPPED: frozenset({OrderStatus.DELIVERED}),
    OrderStatus.DELIVERED: frozenset(),
    OrderStatus.CANCELLED: frozenset(),
    OrderStatus.PAYMENT_FAILED: frozenset(),
}

# States whose stock is still held by the order (released on cancel).
HOLDS_STOCK = frozenset({OrderStatus.PENDING_PAYMENT, OrderStatus.PAID})
# Final states of an order that will never be fulfilled: moving into one from a
# state that holds stock puts that stock back on sale.
RELEASES_STOCK = frozenset({OrderStatus.CANCELLED, OrderStatus.PAYMENT_FAILED})


def can_move(from_status: str, to_status: str) -> bool:
    return to_status in TRANSITIONS.get(from_status, frozenset())
