from __future__ import annotations

from django.db.models import QuerySet
from rest_framework import viewsets
from rest_framework.permissions import IsAuthenticated

from emporium.accounts.auth import authenticated_user
from emporium.orders import selectors
from emporium.orders.models import Order
from emporium.orders.serializers import OrderSerializer


class OrderViewSet(viewsets.ReadOnlyModelViewSet):
    """Orders with their items: customers see their own, staff see all."""

    serializer_class = OrderSerializer
    lookup_value_regex = r"\d+"
    permission_classes = [IsAuthenticated]

    def get_queryset(self) -> QuerySet[Order]:
        if getattr(self, "swagger_fake_view", False):  # schema generation has no user
            return Order.objects.none()
        return selectors.order_list_for_user(user=authenticated_user(self.request))
