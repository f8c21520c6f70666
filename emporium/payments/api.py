from __future__ import annotations

from django.db.models import QuerySet
from rest_framework import viewsets
from rest_framework.permissions import IsAuthenticated

from emporium.accounts.auth import authenticated_user
from emporium.payments import selectors
from emporium.payments.models import Payment
from emporium.payments.serializers import PaymentSerializer


class PaymentViewSet(viewsets.ReadOnlyModelViewSet):
    """Payments: customers see those of their own orders, staff see all."""

    serializer_class = PaymentSerializer
    lookup_value_regex = r"\d+"
    permission_classes = [IsAuthenticated]

    def get_queryset(self) -> QuerySet[Payment]:
        if getattr(self, "swagger_fake_view", False):  # schema generation has no user
            return Payment.objects.none()
        return selectors.payment_list_for_user(user=authenticated_user(self.request))
