from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from rest_framework import serializers

from emporium.carts.models import CartItem, ShoppingCart
from emporium.catalog.models import Product
from emporium.catalog.serializers import ProductSummarySerializer
from emporium.core.representation import RowShape, decimal_text, serializer_shape


class CartItemSerializer(serializers.ModelSerializer[CartItem]):
    product = ProductSummarySerializer(read_only=True)
    line_total = serializers.DecimalField(max_digits=14, decimal_places=2, read_only=True)

    class Meta:
        model = CartItem
        fields = ["id", "product", "quantity", "line_total", "created_at", "updated_at"]
        read_only_fields = fields


class CartItemCreateSerializer(serializers.Serializer[Any]):
    product = serializers.PrimaryKeyRelatedField(queryset=Product.objects.all())
    quantity = serializers.IntegerField(min_value=1, max_value=10_000, default=1)


class CartItemUpdateSerializer(serializers.Serializer[Any]):
    quantity = serializers.IntegerField(min_value=1, max_value=10_000)


class CartSerializer(serializers.Serializer[Any]):
    id = serializers.IntegerField()
    items = CartItemSerializer(many=True)
    item_count = serializers.IntegerField()
    subtotal = serializers.DecimalField(max_digits=14, decimal_places=2)
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


# The model fields of a cart, a line and a line's product, as columns of one row
# (aliases c, i, p) with their rendering, derived from the serializers above: the
# signed-in cart read (carts.fast_path) selects and writes exactly these, and
# cart_representation adds the nested and computed fields.
CART_SHAPES: tuple[RowShape, RowShape, RowShape] = (
    serializer_shape(CartSerializer, ShoppingCart, alias="c"),
    serializer_shape(CartItemSerializer, CartItem, alias="i"),
    serializer_shape(ProductSummarySerializer, Product, alias="p"),
)
_LINE_FIELDS = tuple(CartItemSerializer.Meta.fields)
_CART_FIELDS = tuple(CartSerializer._declared_fields)


def cart_representation(
    cart: dict[str, Any], lines: Sequence[tuple[dict[str, Any], dict[str, Any]]]
) -> dict[str, Any]:
    """What ``CartSerializer`` writes for a cart, from its rendered fields and its lines.

    ``cart`` holds the cart's model fields and each line its own and its product's
    (``CART_SHAPES``' renderings); the computed values (each line's total, the
    item count, the subtotal) are added here as the serializers compute them.
    Tests hold the result to ``CartSerializer`` for the same cart.
    """
    items = []
    count, subtotal = 0, Decimal("0.00")
    for line, product in lines:
        total = Decimal(product["price"]) * line["quantity"]
        count += line["quantity"]
        subtotal += total
        items.append(cart_line_representation(line, product, total=total))
    values = {**cart, "items": items, "item_count": count, "subtotal": decimal_text(subtotal)}
    return {name: values[name] for name in _CART_FIELDS}


def cart_line_representation(
    line: dict[str, Any], product: dict[str, Any], *, total: Decimal | None = None
) -> dict[str, Any]:
    """What ``CartItemSerializer`` writes for a line, from its and its product's rendered fields."""
    if total is None:
        total = Decimal(product["price"]) * line["quantity"]
    values = {**line, "product": product, "line_total": decimal_text(total)}
    return {name: values[name] for name in _LINE_FIELDS}
