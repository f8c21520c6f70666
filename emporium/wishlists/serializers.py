from collections.abc import Sequence
from typing import Any

from rest_framework import serializers

from emporium.catalog.models import Product
from emporium.catalog.serializers import ProductSummarySerializer
from emporium.core.representation import RowShape, serializer_shape
from emporium.wishlists.models import Wishlist, WishlistItem


class WishlistItemSerializer(serializers.ModelSerializer[WishlistItem]):
    product = ProductSummarySerializer(read_only=True)

    class Meta:
        model = WishlistItem
        fields = ["id", "product", "created_at"]
        read_only_fields = fields


class WishlistItemCreateSerializer(serializers.Serializer[Any]):
    product = serializers.PrimaryKeyRelatedField(queryset=Product.objects.all())


class WishlistSerializer(serializers.Serializer[Any]):
    id = serializers.IntegerField()
    items = WishlistItemSerializer(many=True)
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


# The model fields of a wishlist, a line and a line's product, as columns of one
# row (aliases w, i, p) with their rendering, derived from the serializers above:
# the signed-in wishlist read (wishlists.fast_path) selects and writes exactly
# these, and wishlist_representation adds the nested fields.
WISHLIST_SHAPES: tuple[RowShape, RowShape, RowShape] = (
    serializer_shape(WishlistSerializer, Wishlist, alias="w"),
    serializer_shape(WishlistItemSerializer, WishlistItem, alias="i"),
    serializer_shape(ProductSummarySerializer, Product, alias="p"),
)
_LINE_FIELDS = tuple(WishlistItemSerializer.Meta.fields)
_WISHLIST_FIELDS = tuple(WishlistSerializer._declared_fields)


def wishlist_representation(
    wishlist: dict[str, Any], lines: Sequence[tuple[dict[str, Any], dict[str, Any]]]
) -> dict[str, Any]:
    """What ``WishlistSerializer`` writes, from the rendered fields of the wishlist and its lines.

    Tests hold the result to ``WishlistSerializer`` for the same wishlist.
    """
    items = [
        {name: {**line, "product": product}[name] for name in _LINE_FIELDS}
        for line, product in lines
    ]
    values = {**wishlist, "items": items}
    return {name: values[name] for name in _WISHLIST_FIELDS}
