from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from emporium.accounts.auth import authenticated_user
from emporium.carts import lean, selectors, services
from emporium.carts.models import CartItem
from emporium.carts.serializers import (
    CartItemCreateSerializer,
    CartItemSerializer,
    CartItemUpdateSerializer,
    CartSerializer,
)
from emporium.core.lean import LeanDispatchView
from emporium.core.selectors import get_or_not_found


def _cart_payload(request: Request) -> dict[str, Any]:
    cart = services.cart_get_or_create(user=authenticated_user(request))
    items = list(selectors.cart_items(cart=cart))
    return {
        "id": cart.pk,
        "items": items,
        "item_count": sum(item.quantity for item in items),
        "subtotal": selectors.cart_subtotal(items=items),
        "created_at": cart.created_at,
        "updated_at": cart.updated_at,
    }


class CartView(APIView):
    """The caller's cart, created on first use."""

    permission_classes = [IsAuthenticated]

    @extend_schema(responses=CartSerializer)
    def get(self, request: Request) -> Response:
        return Response(CartSerializer(_cart_payload(request)).data)

    @extend_schema(responses={204: None})
    def delete(self, request: Request) -> Response:
        services.cart_clear(cart=services.cart_get_or_create(user=authenticated_user(request)))
        return Response(status=status.HTTP_204_NO_CONTENT)


class CartItemListView(LeanDispatchView):
    permission_classes = [IsAuthenticated]

    def lean_response(self, request: HttpRequest, **kwargs: Any) -> HttpResponse | None:
        """An add with a Bearer token, in one statement (``carts.lean``)."""
        return lean.cart_item_add(request, self) if request.method == "POST" else None

    @extend_schema(responses=CartItemSerializer(many=True))
    def get(self, request: Request) -> Response:
        cart = services.cart_get_or_create(user=authenticated_user(request))
        return Response(CartItemSerializer(selectors.cart_items(cart=cart), many=True).data)

    @extend_schema(request=CartItemCreateSerializer, responses={201: CartItemSerializer})
    def post(self, request: Request) -> Response:
        serializer = CartItemCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        item = services.cart_item_add(user=authenticated_user(request), **serializer.validated_data)
        return Response(CartItemSerializer(item).data, status=status.HTTP_201_CREATED)


class CartItemDetailView(LeanDispatchView):
    permission_classes = [IsAuthenticated]

    def lean_response(self, request: HttpRequest, **kwargs: Any) -> HttpResponse | None:
        """A quantity change with a Bearer token, in one statement (``carts.lean``)."""
        if request.method != "PATCH":
            return None
        return lean.cart_item_set_quantity(request, self, int(kwargs["pk"]))

    def _item(self, request: Request, item_id: int) -> CartItem:
        # Scoped to the caller's cart: another user's line is simply not found.
        return get_or_not_found(
            CartItem.objects.select_related("product").filter(
                cart__user=authenticated_user(request)
            ),
            pk=item_id,
        )

    @extend_schema(responses=CartItemSerializer)
    def get(self, request: Request, pk: int) -> Response:
        return Response(CartItemSerializer(self._item(request, pk)).data)

    @extend_schema(request=CartItemUpdateSerializer, responses=CartItemSerializer)
    def patch(self, request: Request, pk: int) -> Response:
        item = self._item(request, pk)
        serializer = CartItemUpdateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        item = services.cart_item_set_quantity(item=item, **serializer.validated_data)
        return Response(CartItemSerializer(item).data)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, pk: int) -> Response:
        services.cart_item_remove(item=self._item(request, pk))
        return Response(status=status.HTTP_204_NO_CONTENT)
