"""The columns a hot read selects, derived from the serializers and the selectors."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from rest_framework import serializers

from emporium.carts.models import CartItem, ShoppingCart
from emporium.carts.selectors import CART_ITEM_ORDERING
from emporium.carts.serializers import CART_SHAPES
from emporium.catalog.serializers import ProductSummarySerializer
from emporium.core.representation import serializer_shape
from emporium.core.user_lists import user_list_sql
from emporium.wishlists.selectors import WISHLIST_ITEM_ORDERING
from emporium.wishlists.serializers import WISHLIST_SHAPES


class _Line(serializers.ModelSerializer[CartItem]):
    product = ProductSummarySerializer(read_only=True)
    line_total = serializers.DecimalField(max_digits=14, decimal_places=2, read_only=True)

    class Meta:
        model = CartItem
        fields = ["quantity", "product", "line_total", "id"]


def test_a_shape_has_the_serializers_model_columns_in_its_order_and_nothing_else() -> None:
    shape = serializer_shape(_Line, CartItem, alias="x")

    # The nested product and the computed total are the representation's to add.
    assert shape.names == ("quantity", "id")
    assert shape.columns == ("x.quantity", "x.id")
    assert (shape.model, shape.alias) == (CartItem, "x")


def test_a_serializer_without_meta_fields_gives_its_declared_fields() -> None:
    class Cart(serializers.Serializer[Any]):
        updated_at = serializers.DateTimeField()
        items = _Line(many=True)
        item_count = serializers.IntegerField()
        id = serializers.IntegerField()

    assert serializer_shape(Cart, ShoppingCart, alias="c").names == ("updated_at", "id")


def test_a_serializer_of_all_fields_is_refused() -> None:
    class Everything(serializers.ModelSerializer[CartItem]):
        class Meta:
            model = CartItem
            fields = "__all__"

    with pytest.raises(ImproperlyConfigured):
        serializer_shape(Everything, CartItem, alias="i")


@pytest.mark.parametrize(
    ("shapes", "ordering", "expected"),
    [
        (
            CART_SHAPES,
            CART_ITEM_ORDERING,
            " FROM carts_shoppingcart c LEFT JOIN carts_cartitem i ON i.cart_id = c.id"
            " LEFT JOIN catalog_product p ON p.id = i.product_id"
            " WHERE c.user_id = %s ORDER BY i.id",
        ),
        (
            WISHLIST_SHAPES,
            WISHLIST_ITEM_ORDERING,
            " FROM wishlists_wishlist w"
            " LEFT JOIN wishlists_wishlistitem i ON i.wishlist_id = w.id"
            " LEFT JOIN catalog_product p ON p.id = i.product_id"
            " WHERE w.user_id = %s ORDER BY i.created_at DESC, i.id DESC",
        ),
    ],
)
def test_a_users_list_is_joined_by_its_models_relations_in_its_selectors_order(
    shapes: Any, ordering: tuple[str, ...], expected: str
) -> None:
    assert user_list_sql(shapes, ordering).endswith(expected)
