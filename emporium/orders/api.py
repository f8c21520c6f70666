from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from emporium.accounts.auth import authenticated_user
from emporium.accounts.authentication import bearer_user_id
from emporium.core import correlation
from emporium.core.errors import ApplicationError, error_body
from emporium.core.idempotency import HEADER as IDEMPOTENCY_HEADER
from emporium.core.idempotency import KEY_PATTERN as IDEMPOTENCY_KEY_PATTERN
from emporium.core.idempotency import idempotent
from emporium.core.lean import LeanDispatchViewSet
from emporium.core.parsers import JSONTooDeep, json_loads
from emporium.core.permissions import AUTHENTICATED, ActionPermissions, RequiredPermissions
from emporium.orders import selectors, services
from emporium.orders.models import Order, OrderStatus
from emporium.orders.serializers import (
    OrderCancelSerializer,
    OrderPlaceSerializer,
    OrderSerializer,
    OrderStatusChangeSerializer,
    order_representation,
)

_IDEMPOTENCY_META = "HTTP_" + IDEMPOTENCY_HEADER.upper().replace("-", "_")
_renderer = JSONRenderer()


def _token_user_id(request: HttpRequest) -> int | None:
    """The user id of a valid Bearer access token of an active account; else None.

    DRF's own checks (``accounts.authentication``: the remembered token, the
    account's cached state), so a request refused here gets DRF's 401.
    """
    return bearer_user_id(request)


def _json(data: dict[str, Any], status_code: int) -> HttpResponse:
    return HttpResponse(
        _renderer.render(data), status=status_code, content_type=_renderer.media_type
    )


def _place_details(request: HttpRequest) -> dict[str, Any] | None:
    """The checkout body validated by ``OrderPlaceSerializer``, or None to leave it to DRF.

    An empty body is a checkout without shipping details. Anything DRF would
    answer otherwise (a body that is not JSON, not an object, or not valid)
    returns None, so the DRF path gives its 400 in the one error shape.
    """
    if not request.body:
        return {}
    if request.content_type != "application/json":
        return None
    try:
        data = json_loads(request.body)
    except (ValueError, JSONTooDeep):
        return None
    details = OrderPlaceSerializer(data=data)
    if not isinstance(data, dict) or not details.is_valid():
        return None
    return dict(details.validated_data)


IDEMPOTENCY_PARAMETER = OpenApiParameter(
    IDEMPOTENCY_HEADER,
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    required=False,
    pattern=IDEMPOTENCY_KEY_PATTERN,
    description=(
        "1 to 255 printable ASCII characters (anything else is a 400). A retry with the same "
        "key and body replays the first response; a different body gets 422; a retry while "
        "the first is running gets 409."
    ),
)


class OrderViewSet(LeanDispatchViewSet[Order], viewsets.ReadOnlyModelViewSet[Order]):
    """Orders with their items: customers see their own, support and admins see all.

    POST turns the caller's cart into an order (checkout). A customer cancels
    their own order; shipping and delivering are for accounts that may change
    any order.
    """

    serializer_class = OrderSerializer
    lookup_value_regex = r"\d+"
    permission_classes = [ActionPermissions]
    required_permissions: RequiredPermissions = {
        "list": AUTHENTICATED,
        "retrieve": AUTHENTICATED,
        "history": AUTHENTICATED,
        "create": AUTHENTICATED,
        "cancel": AUTHENTICATED,
        "ship": ("orders.change_order",),
        "deliver": ("orders.change_order",),
    }

    def lean_response(
        self, request: HttpRequest, action: str, **kwargs: Any
    ) -> HttpResponse | None:
        """Checkout with a valid Bearer token goes past DRF's dispatch (``_place_lean``)."""
        return self._place_lean(request) if action == "create" else None

    def _place_lean(self, request: HttpRequest) -> HttpResponse | None:
        """Checkout without DRF's request wrapping and serializers, or None for the DRF path.

        DRF's dispatch, the user lookup of JWT authentication and the order
        serializer cost several times the checkout statement itself (see
        docs/adr/0017-checkout-in-one-statement.md). The rules are the same:
        DRF's authentication checks the token and the account's state (cached,
        ``accounts.authentication``); the throttles of this view are asked; the
        statement refuses a user who is gone or inactive. Whatever could be
        answered differently takes the DRF path: no or a bad token (401 there),
        an Idempotency-Key (the stored-response protocol), a throttled user
        (429 there; a refused request is not counted), an inactive user, a
        body that is not valid JSON or not a valid checkout (400 there).
        """
        if _IDEMPOTENCY_META in request.META:
            return None
        details = _place_details(request)
        if details is None:
            return None
        user_id = _token_user_id(request)
        if user_id is None:
            return None
        correlation.user_id_bind(user_id)
        caller = SimpleNamespace(
            method=request.method,
            META=request.META,
            user=SimpleNamespace(pk=user_id, is_authenticated=True),
        )
        for throttle in self.get_throttles():
            if not throttle.allow_request(cast(Request, caller), self):
                return None
        try:
            order = services.order_place(user_id=user_id, **details)
        except services.InactiveUser:
            return None
        except ApplicationError as error:
            return _json(error_body(error.code, error.message, error.details), error.status_code)
        return _json(order_representation(order), status.HTTP_201_CREATED)

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """A page of orders, each as ``OrderSerializer`` renders it (``order_representation``).

        The serializers' field-by-field walk had cost about half of the request
        (docs/performance_tuning.md, "A customer's orders").
        """
        queryset = self.filter_queryset(self.get_queryset())
        page = self.paginate_queryset(queryset)
        if page is None:
            return Response([order_representation(order) for order in queryset])
        return self.get_paginated_response([order_representation(order) for order in page])

    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return Response(order_representation(self.get_object()))

    def get_queryset(self) -> QuerySet[Order]:
        if getattr(self, "swagger_fake_view", False):  # schema generation has no user
            return Order.objects.none()
        user = authenticated_user(self.request)
        if self.action in ("cancel", "ship", "deliver"):
            # Someone else's order is as invisible to a change as a missing one.
            return selectors.order_list_for_change(user=user)
        return selectors.order_list_for_user(user=user)

    def _reload(self, order_id: int) -> dict[str, Any]:
        order = selectors.order_list_for_user(user=authenticated_user(self.request)).get(
            pk=order_id
        )
        return OrderSerializer(order).data

    @extend_schema(
        request=OrderPlaceSerializer,
        responses={201: OrderSerializer},
        parameters=[IDEMPOTENCY_PARAMETER],
    )
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        def place() -> Response:
            details = OrderPlaceSerializer(data=request.data)
            details.is_valid(raise_exception=True)
            order = services.order_place(
                user_id=authenticated_user(request).pk, **details.validated_data
            )
            return Response(order_representation(order), status=status.HTTP_201_CREATED)

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
    @action(detail=True, methods=["post"])
    def ship(self, request: Request, pk: str | None = None) -> Response:
        """Marks a paid order shipped (needs orders.change_order)."""
        return self._move(request, OrderStatus.SHIPPED)

    @extend_schema(request=None, responses=OrderSerializer)
    @action(detail=True, methods=["post"])
    def deliver(self, request: Request, pk: str | None = None) -> Response:
        """Marks a shipped order delivered (needs orders.change_order)."""
        return self._move(request, OrderStatus.DELIVERED)

    @extend_schema(responses=OrderStatusChangeSerializer(many=True))
    # The whole history in one list: an order has a handful of changes, no pages.
    @action(detail=True, methods=["get"], pagination_class=None)
    def history(self, request: Request, pk: str | None = None) -> Response:
        """Every status change of the order: who, when, from, to."""
        order = self.get_object()
        changes = order.status_changes.order_by("created_at", "id")
        return Response(OrderStatusChangeSerializer(changes, many=True).data)
