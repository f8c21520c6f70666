from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from emporium.accounts.auth import authenticated_user
from emporium.core.idempotency import HEADER as IDEMPOTENCY_HEADER
from emporium.core.idempotency import idempotent
from emporium.core.permissions import IsStaff
from emporium.orders import selectors, services
from emporium.orders.models import Order, OrderStatus
from emporium.orders.serializers import (
    OrderCancelSerializer,
    OrderSerializer,
    OrderStatusChangeSerializer,
)

IDEMPOTENCY_PARAMETER = OpenApiParameter(
    IDEMPOTENCY_HEADER,
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    required=False,
    description=(
        "Up to 255 characters. A retry with the same key and body replays the first "
        "response; a different body gets 422; a retry while the first is running gets 409."
    ),
)


class OrderViewSet(viewsets.ReadOnlyModelViewSet):
    """Orders with their items: customers see their own, staff see all.

    POST turns the caller's cart into an order (checkout).
    """

    serializer_class = OrderSerializer
    lookup_value_regex = r"\d+"
    permission_classes = [IsAuthenticated]

    def get_queryset(self) -> QuerySet[Order]:
        if getattr(self, "swagger_fake_view", False):  # schema generation has no user
            return Order.objects.none()
        return selectors.order_list_for_user(user=authenticated_user(self.request))

    def _reload(self, order_id: int) -> dict[str, Any]:
        order = selectors.order_list_for_user(user=authenticated_user(self.request)).get(
            pk=order_id
        )
        return OrderSerializer(order).data

    @extend_schema(
        request=None, responses={201: OrderSerializer}, parameters=[IDEMPOTENCY_PARAMETER]
    )
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        def place() -> Response:
            order = services.order_place(user=authenticated_user(request))
            return Response(OrderSerializer(order).data, status=status.HTTP_201_CREATED)

        return idempotent(view=self, request=request, scope="orders.place", produce=place)  # type: ignore[return-value]

    @extend_schema(request=OrderCancelSerializer, responses=OrderSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str | None = None) -> Response:
        """Cancels the caller's order while it is pending payment or paid (then refunded)."""
        order = self.get_object()  # scoped: another customer's order is not found
        user = authenticated_user(request)
        serializer = OrderCancelSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        services.order_cancel(order=order, actor=user, reason=serializer.validated_data["reason"])
        return Response(self._reload(order.pk))

    def _move(self, request: Request, to_status: str) -> Response:
        order = self.get_object()
        services.order_transition(
            order_id=order.pk, to_status=to_status, actor=authenticated_user(request)
        )
        return Response(self._reload(order.pk))

    @extend_schema(request=None, responses=OrderSerializer)
    @action(detail=True, methods=["post"], permission_classes=[IsStaff])
    def ship(self, request: Request, pk: str | None = None) -> Response:
        """Staff: marks a paid order shipped."""
        return self._move(request, OrderStatus.SHIPPED)

    @extend_schema(request=None, responses=OrderSerializer)
    @action(detail=True, methods=["post"], permission_classes=[IsStaff])
    def deliver(self, request: Request, pk: str | None = None) -> Response:
        """Staff: marks a shipped order delivered."""
        return self._move(request, OrderStatus.DELIVERED)

    @extend_schema(responses=OrderStatusChangeSerializer(many=True))
    @action(detail=True, methods=["get"])
    def history(self, request: Request, pk: str | None = None) -> Response:
        """Every status change of the order: who, when, from, to."""
        order = self.get_object()
        changes = order.status_changes.order_by("created_at", "id")
        return Response(OrderStatusChangeSerializer(changes, many=True).data)
