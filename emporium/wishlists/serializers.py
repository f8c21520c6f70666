from typing import Any

from rest_framework import serializers

from emporium.catalog.models import Product
from emporium.catalog.serializers import ProductSummarySerializer
from emporium.wishlists.models import WishlistItem


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
