from __future__ import annotations

from decimal import Decimal

from django.db.models import QuerySet

from emporium.carts.models import CartItem, ShoppingCart

# How a cart's lines are listed: in the order they were added.
CART_ITEM_ORDERING = ("id",)


def cart_items(*, cart: ShoppingCart) -> QuerySet[CartItem]:
    return (
        CartItem.objects.filter(cart=cart).select_related("product").order_by(*CART_ITEM_ORDERING)
    )


def cart_subtotal(*, items: list[CartItem]) -> Decimal:
    return sum((item.line_total for item in items), Decimal("0.00"))
