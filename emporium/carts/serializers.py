from typing import Any

from rest_framework import serializers

from emporium.carts.models import CartItem
from emporium.catalog.models import Product
from emporium.catalog.serializers import ProductSummarySerializer


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
