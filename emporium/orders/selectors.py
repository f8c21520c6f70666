from __future__ import annotations

from django.db.models import Prefetch, QuerySet

from emporium.accounts.models import User
from emporium.core.encryption import BlindIndexField
from emporium.orders.models import Order, OrderItem, phone_normalized

# How a user's orders are listed: newest first (keyset pages end with the id).
ORDER_LIST_ORDERING = ("-created_at", "-id")


def order_list_for_user(*, user: User) -> QuerySet[Order]:
    """The orders a user may see: their own, or every order with ``orders.view_order``."""
    return _scoped(user=user, permission="orders.view_order")


def order_list_for_change(*, user: User) -> QuerySet[Order]:
    """The orders a user may act on: their own, or every order with ``orders.change_order``."""
    return _scoped(user=user, permission="orders.change_order")


def _scoped(*, user: User, permission: str) -> QuerySet[Order]:
    queryset = Order.objects.all() if user.has_perm(permission) else Order.objects.filter(user=user)
    return queryset.prefetch_related(
        Prefetch("items", queryset=OrderItem.objects.order_by("id"))
    ).order_by(*ORDER_LIST_ORDERING)


def order_list_for_phone(*, phone: str) -> QuerySet[Order]:
    """Orders whose phone equals ``phone`` (as normalised at checkout), by its blind index.

    One candidate index per listed key, so rows not yet rotated are found too.
    """
    normalized = phone_normalized(phone)
    if normalized is None:
        return Order.objects.none()
    index_field = Order._meta.get_field("phone_index")
    if not isinstance(index_field, BlindIndexField):
        raise TypeError("Order.phone_index is not a blind index")
    return Order.objects.filter(phone_index__in=index_field.candidates(normalized))
