from __future__ import annotations

import datetime
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from django.utils import timezone
from rest_framework import serializers

from emporium.catalog.models import Category, Product, rating_average_of
from emporium.catalog.selectors import DEFAULT_PRODUCT_ORDERING, PRODUCT_ORDERINGS
from emporium.core.query_fields import AmountQueryField
from emporium.core.representation import datetime_text, decimal_text


class CategorySerializer(serializers.ModelSerializer):
    class Meta:
        model = Category
        fields = ["id", "name", "parent", "depth", "created_at", "updated_at"]
        read_only_fields = ["id", "depth", "created_at", "updated_at"]
        # Name uniqueness (among siblings, and among roots) is checked by the
        # category services, so both cases answer with the same error.
        validators: list[object] = []


class ProductCategorySerializer(serializers.ModelSerializer):
    class Meta:
        model = Category
        fields = ["id", "name"]
        read_only_fields = fields


class ProductSummarySerializer(serializers.ModelSerializer):
    """The few product fields shown inside carts, wishlists and orders."""

    class Meta:
        model = Product
        fields = ["id", "sku", "name", "price", "stock_quantity"]
        read_only_fields = fields


class ProductSerializer(serializers.ModelSerializer):
    category = serializers.PrimaryKeyRelatedField(queryset=Category.objects.all())
    category_name = serializers.CharField(source="category.name", read_only=True)
    price = serializers.DecimalField(
        max_digits=12,
        decimal_places=2,
        min_value=Decimal("0.00"),
        max_value=Decimal("9999999999.99"),
    )
    stock_quantity = serializers.IntegerField(min_value=0, max_value=2_147_483_647)
    rating_average = serializers.DecimalField(
        max_digits=3, decimal_places=2, read_only=True, allow_null=True
    )
    in_stock = serializers.BooleanField(read_only=True)
    attributes = serializers.DictField(required=False)

    class Meta:
        model = Product
        fields = [
            "id",
            "sku",
            "name",
            "description",
            "price",
            "stock_quantity",
            "in_stock",
            "category",
            "category_name",
            "attributes",
            "rating_average",
            "review_count",
            "created_at",
            "updated_at",
        ]
        read_only_fields = [
            "id",
            "in_stock",
            "category_name",
            "rating_average",
            "review_count",
            "created_at",
            "updated_at",
        ]


def product_representation(product: Product) -> dict[str, Any]:
    """What ``ProductSerializer(product).data`` holds, built without DRF's field machinery."""
    return product_row_representation(
        (
            product.pk,
            product.sku,
            product.name,
            product.description,
            product.price,
            product.stock_quantity,
            product.category_id,
            product.category.name,
            product.attributes,
            product.review_count,
            product.rating_total,
            product.created_at,
            product.updated_at,
        )
    )


def product_row_representation(
    row: Sequence[Any], *, zone: datetime.tzinfo | None = None
) -> dict[str, Any]:
    """A product as the catalog shows it, from a row in ``PRODUCT_ROW_FIELDS`` order.

    The one place the read representation is written: model instances (the
    DRF path) and plain rows (the lean path, docs/adr/0016-lean-catalog-reads.md)
    both come through here. Catalog reads render 20 products per page, and
    serialising them through the ModelSerializer was most of an uncached page's
    time (docs/db_optimization.md). Tests pin that this gives the bytes
    ``ProductSerializer`` gives; a field added to ProductSerializer must be added
    here too. ``zone`` saves looking the current time zone up for every row.
    """
    (
        product_id,
        sku,
        name,
        description,
        price,
        stock_quantity,
        category_id,
        category_name,
        attributes,
        review_count,
        rating_total,
        created_at,
        updated_at,
    ) = row
    if zone is None:
        zone = timezone.get_current_timezone()
    rating = rating_average_of(total=rating_total, count=review_count)
    return {
        "id": product_id,
        "sku": str(sku),
        "name": str(name),
        "description": str(description),
        "price": decimal_text(price),
        "stock_quantity": int(stock_quantity),
        "in_stock": stock_quantity > 0,
        "category": category_id,
        "category_name": str(category_name),
        "attributes": {str(key): value for key, value in attributes.items()},
        "rating_average": None if rating is None else decimal_text(rating),
        "review_count": int(review_count),
        "created_at": datetime_text(created_at, zone),
        "updated_at": datetime_text(updated_at, zone),
    }


class ProductFilterSerializer(serializers.Serializer):
    """Query parameters of the product list."""

    category = serializers.IntegerField(required=False, min_value=1, max_value=2**63 - 1)
    min_price = AmountQueryField(required=False)
    max_price = AmountQueryField(required=False)
    in_stock = serializers.BooleanField(required=False, allow_null=True, default=None)
    q = serializers.CharField(required=False, max_length=200, trim_whitespace=True)
    ordering = serializers.ChoiceField(
        choices=sorted(PRODUCT_ORDERINGS), required=False, default=DEFAULT_PRODUCT_ORDERING
    )

    def validate(self, attrs: dict) -> dict:
        low, high = attrs.get("min_price"), attrs.get("max_price")
        if low is not None and high is not None and low > high:
            raise serializers.ValidationError({"max_price": ["Must not be below min_price."]})
        return attrs
