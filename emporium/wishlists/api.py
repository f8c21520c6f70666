from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from emporium.accounts.auth import authenticated_user
from emporium.core.selectors import get_or_not_found
from emporium.wishlists import selectors, services
from emporium.wishlists.models import WishlistItem
from emporium.wishlists.serializers import (
    WishlistItemCreateSerializer,
    WishlistItemSerializer,
    WishlistSerializer,
)


class WishlistView(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(responses=WishlistSerializer)
    def get(self, request: Request) -> Response:
        wishlist = services.wishlist_get_or_create(user=authenticated_user(request))
        payload = {
            "id": wishlist.pk,
            "items": selectors.wishlist_items(wishlist=wishlist),
            "created_at": wishlist.created_at,
            "updated_at": wishlist.updated_at,
        }
        return Response(WishlistSerializer(payload).data)


class WishlistItemListView(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(responses=WishlistItemSerializer(many=True))
    def get(self, request: Request) -> Response:
        wishlist = services.wishlist_get_or_create(user=authenticated_user(request))
        return Response(
            WishlistItemSerializer(selectors.wishlist_items(wishlist=wishlist), many=True).data
        )

    @extend_schema(
        request=WishlistItemCreateSerializer,
        responses={201: WishlistItemSerializer, 200: WishlistItemSerializer},
    )
    def post(self, request: Request) -> Response:
        serializer = WishlistItemCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        item, created = services.wishlist_item_add(
            user=authenticated_user(request),
            product=serializer.validated_data["product"],
        )
        return Response(
            WishlistItemSerializer(item).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )


class WishlistItemDetailView(APIView):
    permission_classes = [IsAuthenticated]

    def _item(self, request: Request, item_id: int) -> WishlistItem:
        return get_or_not_found(
            WishlistItem.objects.select_related("product").filter(
                wishlist__user=authenticated_user(request)
            ),
            pk=item_id,
        )

    @extend_schema(responses=WishlistItemSerializer)
    def get(self, request: Request, pk: int) -> Response:
        return Response(WishlistItemSerializer(self._item(request, pk)).data)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, pk: int) -> Response:
        services.wishlist_item_remove(item=self._item(request, pk))
        return Response(status=status.HTTP_204_NO_CONTENT)
