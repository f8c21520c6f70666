from __future__ import annotations

from django.db.models import QuerySet

from emporium.accounts.models import User
from emporium.payments.models import Payment


def payment_list_for_user(*, user: User) -> QuerySet[Payment]:
    """The payments a user may see: of their own orders, or all with ``payments.view_payment``."""
    queryset = (
        Payment.objects.all()
        if user.has_perm("payments.view_payment")
        else Payment.objects.filter(order__user=user)
    )
    return queryset.order_by("-created_at", "-id")
