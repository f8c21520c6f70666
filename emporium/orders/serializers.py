from typing import Any

from rest_framework import serializers

from emporium.core.representation import datetime_text, decimal_text
from emporium.orders.models import Order, OrderItem, OrderStatusChange


class OrderItemSerializer(serializers.ModelSerializer):
    line_total = serializers.DecimalField(max_digits=14, decimal_places=2, read_only=True)

    class Meta:
        model = OrderItem
        fields = ["id", "product", "product_name", "quantity", "price", "line_total"]
        read_only_fields = fields


class OrderSerializer(serializers.ModelSerializer):
    items = OrderItemSerializer(many=True, read_only=True)

    class Meta:
        model = Order
        fields = ["id", "user", "order_status", "total_amount", "items", "created_at", "updated_at"]
        read_only_fields = fields


def order_representation(order: Order) -> dict[str, Any]:
    """What ``OrderSerializer(order).data`` holds, for an order with its items prefetched.

    Checkout answers with it: rendering through the serializer cost more CPU
    than the checkout statement itself. Tests pin that both agree; a field added
    to either serializer above must be added here too.
    """
    return {
        "id": order.pk,
        "user": order.user_id,
        "order_status": str(order.order_status),
        "total_amount": decimal_text(order.total_amount),
        "items": [
            {
                "id": item.pk,
                "product": item.product_id,
                "product_name": str(item.product_name),
                "quantity": int(item.quantity),
                "price": decimal_text(item.price),
                "line_total": decimal_text(item.line_total),
            }
            for item in order.items.all()
        ],
        "created_at": datetime_text(order.created_at),
        "updated_at": datetime_text(order.updated_at),
    }


class OrderStatusChangeSerializer(serializers.ModelSerializer):
    class Meta:
        model = OrderStatusChange
        fields = ["id", "from_status", "to_status", "actor", "reason", "created_at"]
        read_only_fields = fields


class OrderCancelSerializer(serializers.Serializer):
    reason = serializers.CharField(required=False, allow_blank=True, max_length=255, default="")
