import datetime
from collections.abc import Iterable
from typing import Any

from django.utils import timezone
from rest_framework import serializers

from emporium.core.representation import datetime_text, decimal_text
from emporium.orders.models import Order, OrderItem, OrderStatusChange, phone_normalized


class OrderItemSerializer(serializers.ModelSerializer[OrderItem]):
    line_total = serializers.DecimalField(max_digits=14, decimal_places=2, read_only=True)

    class Meta:
        model = OrderItem
        fields = ["id", "product", "product_name", "quantity", "price", "line_total"]
        read_only_fields = fields


class OrderSerializer(serializers.ModelSerializer[Order]):
    items = OrderItemSerializer(many=True, read_only=True)

    class Meta:
        model = Order
        fields = [
            "id",
            "user",
            "order_status",
            "total_amount",
            "shipping_address",
            "phone",
            "items",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class OrderPlaceSerializer(serializers.Serializer[None]):
    """The checkout's optional body: where to ship and whom to call (both sealed at rest)."""

    shipping_address = serializers.CharField(
        required=False, allow_null=True, max_length=1000, trim_whitespace=True
    )
    phone = serializers.CharField(required=False, allow_null=True, max_length=40)

    def validate_phone(self, value: str | None) -> str | None:
        if value is None:
            return None
        normalized = phone_normalized(value)
        if normalized is None:
            raise serializers.ValidationError(
                "Enter a phone number: 4 to 20 digits, an optional leading +."
            )
        return normalized


def order_representation(
    order: Any, items: Iterable[Any] | None = None, *, zone: datetime.tzinfo | None = None
) -> dict[str, Any]:
    """What ``OrderSerializer(order).data`` holds, for an order with its items prefetched.

    Checkout answers with it: rendering through the serializer cost more CPU
    than the checkout statement itself. Tests pin that both agree; a field added
    to either serializer above must be added here too. ``order`` and ``items``
    may also be rows read without the ORM (``orders.fast_path``): anything with
    the models' attribute names. ``zone`` (the current time zone) saves looking it
    up again for each order of a page.
    """
    zone = zone or timezone.get_current_timezone()
    return {
        "id": order.pk,
        "user": order.user_id,
        "order_status": str(order.order_status),
        "total_amount": decimal_text(order.total_amount),
        "shipping_address": order.shipping_address,
        "phone": order.phone,
        "items": [
            {
                "id": item.pk,
                "product": item.product_id,
                "product_name": str(item.product_name),
                "quantity": int(item.quantity),
                "price": decimal_text(item.price),
                "line_total": decimal_text(item.line_total),
            }
            for item in (order.items.all() if items is None else items)
        ],
        "created_at": datetime_text(order.created_at, zone),
        "updated_at": datetime_text(order.updated_at, zone),
    }


class OrderStatusChangeSerializer(serializers.ModelSerializer[OrderStatusChange]):
    class Meta:
        model = OrderStatusChange
        fields = ["id", "from_status", "to_status", "actor", "reason", "created_at"]
        read_only_fields = fields


class OrderCancelSerializer(serializers.Serializer[None]):
    reason = serializers.CharField(required=False, allow_blank=True, max_length=255, default="")
