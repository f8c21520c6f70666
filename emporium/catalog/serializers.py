from __future__ import annotations

from decimal import Decimal
from typing import Any

from rest_framework import serializers

from emporium.catalog.models import (
    DEFAULT_PRODUCT_ORDERING,
    PRODUCT_ORDERINGS,
    Category,
    Product,
)
from emporium.catalog.representation import (
    PRODUCT_FIELD_NAMES,
    PRODUCT_READ_ONLY_FIELD_NAMES,
    AnyField,
    computed_serializer_fields,
)
from emporium.core.query_fields import AmountQueryField


class CategorySerializer(serializers.ModelSerializer[Category]):
    class Meta:
        model = Category
        fields = ["id", "name", "parent", "depth", "created_at", "updated_at"]
        read_only_fields = ["id", "depth", "created_at", "updated_at"]
        # Name uniqueness (among siblings, and among roots) is checked by the
        # category services, so both cases answer with the same error.
        validators: list[object] = []


class ProductCategorySerializer(serializers.ModelSerializer[Category]):
    class Meta:
        model = Category
        fields = ["id", "name"]
        read_only_fields = fields


class ProductSummarySerializer(serializers.ModelSerializer[Product]):
    """The few product fields shown inside carts, wishlists and orders."""

    class Meta:
        model = Product
        fields = ["id", "sku", "name", "price", "stock_quantity"]
        read_only_fields = fields


# The read-only values that are not model fields (in_stock, category_name,
# rating_average), as serializer fields made from the declaration.
_COMPUTED_FIELDS = computed_serializer_fields()


# A product: its fields are representation.PRODUCT_FIELDS. The declarations in
# the class are the input rules of writable fields; what each field reads as is
# the declaration's (representation.product_representation gives the same
# output without DRF's field machinery). No docstring: it would become the
# schema's description of the component.
class ProductSerializer(serializers.ModelSerializer[Product]):
    category = serializers.PrimaryKeyRelatedField(queryset=Category.objects.all())
    price = serializers.DecimalField(
        max_digits=12,
        decimal_places=2,
        min_value=Decimal("0.00"),
        max_value=Decimal("9999999999.99"),
    )
    stock_quantity = serializers.IntegerField(min_value=0, max_value=2_147_483_647)
    attributes = serializers.DictField(required=False)

    class Meta:
        model = Product
        fields = list(PRODUCT_FIELD_NAMES)
        read_only_fields = list(PRODUCT_READ_ONLY_FIELD_NAMES)

    def build_field(
        self, field_name: str, info: Any, model_class: Any, nested_depth: int
    ) -> tuple[type[AnyField], dict[str, Any]]:
        computed = _COMPUTED_FIELDS.get(field_name)
        if computed is not None:
            field_class, arguments = computed
            return field_class, dict(arguments)
        return super().build_field(field_name, info, model_class, nested_depth)


class ProductFilterSerializer(serializers.Serializer[None]):
    """Query parameters of the product list."""

    category = serializers.IntegerField(required=False, min_value=1, max_value=2**63 - 1)
    min_price = AmountQueryField(required=False)
    max_price = AmountQueryField(required=False)
    in_stock = serializers.BooleanField(required=False, allow_null=True, default=None)
    q = serializers.CharField(required=False, max_length=200, trim_whitespace=True)
    ordering = serializers.ChoiceField(
        choices=sorted(PRODUCT_ORDERINGS), required=False, default=DEFAULT_PRODUCT_ORDERING
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        low, high = attrs.get("min_price"), attrs.get("max_price")
        if low is not None and high is not None and low > high:
            raise serializers.ValidationError({"max_price": ["Must not be below min_price."]})
        return attrs
