from typing import Any

from django.apps import apps
from rest_framework import serializers

# The order statuses as the orders app declares them, read through the app
# registry (this module loads with the URLs, after the apps are ready):
# realtime never imports orders, which sits above it.
_ORDER_STATUS_CHOICES = list(
    apps.get_model("orders", "Order")._meta.get_field("order_status").choices or []
)


class SinceQuerySerializer(serializers.Serializer[None]):
    since = serializers.IntegerField(
        min_value=0, default=0, help_text="Return events whose id is greater than this."
    )
    limit = serializers.IntegerField(min_value=1, max_value=500, default=100)


class OrderEventSerializer(serializers.Serializer[dict[str, Any]]):
    """Documents the order event; the dict comes from realtime.services.order_event."""

    id = serializers.IntegerField()
    type = serializers.ChoiceField(choices=["order.status_changed"])
    order_id = serializers.IntegerField()
    from_status = serializers.ChoiceField(
        choices=[("", "(placed)"), *_ORDER_STATUS_CHOICES],
        help_text="Empty for the placement of the order.",
    )
    to_status = serializers.ChoiceField(choices=_ORDER_STATUS_CHOICES)
    reason = serializers.CharField()
    created_at = serializers.DateTimeField()


class OrderEventPageSerializer(serializers.Serializer[dict[str, Any]]):
    results = OrderEventSerializer(many=True)
    has_more = serializers.BooleanField(help_text="Ask again with since=<last id> for more.")
