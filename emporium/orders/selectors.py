from __future__ import annotations

from django.db.models import Prefetch, QuerySet

from emporium.accounts.models import User
from emporium.orders.models import Order, OrderItem


def order_list_for_user(*, user: User) -> QuerySet[Order]:
    """The orders a user may see: their own, or every order for staff."""
    queryset = Order.objects.all() if user.is_staff else Order.objects.filter(user=user)
    return queryset.prefetch_related(
        Prefetch("items", queryset=OrderItem.objects.order_by("id"))
    ).order_by("-created_at", "-id")
