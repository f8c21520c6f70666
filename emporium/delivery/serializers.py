"""Serializers for devices, shipments and telemetry reads.

The ingestion path does not use them: ``TelemetryPointDocSerializer`` and
``TelemetryIngestResultSerializer`` only describe it in the OpenAPI document
(validation there is msgspec, see ``validation``).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, TypeAlias

from django.utils import timezone
from rest_framework import serializers

from emporium.delivery.models import CourierDevice, Shipment
from emporium.delivery.selectors import (
    MAX_SUMMARY_WINDOWS,
    WINDOWS,
    Position,
    WindowSummary,
    summary_window_count,
)
from emporium.orders.models import Order

# A serializer field of whichever kind (its value and data types vary by field).
AnyField: TypeAlias = serializers.Field[Any, Any, Any, Any]


class CourierDeviceSerializer(serializers.ModelSerializer[CourierDevice]):
    metadata = serializers.DictField(
        required=False,
        allow_null=True,
        help_text="What staff record about the device (model, IMEI, SIM number); sealed at rest.",
    )

    class Meta:
        model = CourierDevice
        fields = ["id", "name", "metadata", "is_active", "revoked_at", "created_at", "updated_at"]
        read_only_fields = ["id", "is_active", "revoked_at", "created_at", "updated_at"]


class IssuedDeviceSerializer(CourierDeviceSerializer):
    token = serializers.CharField(
        read_only=True,
        help_text="The device's secret, shown only in this response: send it as "
        "'Authorization: Device <token>'.",
    )

    class Meta(CourierDeviceSerializer.Meta):
        fields = [*CourierDeviceSerializer.Meta.fields, "token"]
        read_only_fields = fields


class ShipmentSerializer(serializers.ModelSerializer[Shipment]):
    class Meta:
        model = Shipment
        fields = [
            "id",
            "order",
            "device",
            "status",
            "in_transit_at",
            "delivered_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class ShipmentCreateSerializer(serializers.Serializer[None]):
    order = serializers.PrimaryKeyRelatedField(queryset=Order.objects.all())
    device = serializers.PrimaryKeyRelatedField(queryset=CourierDevice.objects.all())


class PositionSerializer(serializers.Serializer[Position]):
    device_id = serializers.IntegerField()
    recorded_at = serializers.DateTimeField()
    latitude = serializers.FloatField()
    longitude = serializers.FloatField()
    speed = serializers.FloatField(allow_null=True, help_text="Metres per second.")
    heading = serializers.FloatField(allow_null=True, help_text="Degrees clockwise from north.")
    accuracy = serializers.FloatField(allow_null=True, help_text="Metres.")


class WindowSummarySerializer(serializers.Serializer[WindowSummary]):
    start = serializers.DateTimeField()
    end = serializers.DateTimeField()
    count = serializers.IntegerField()
    latitude = serializers.FloatField(help_text="Average latitude of the window's points.")
    longitude = serializers.FloatField(help_text="Average longitude of the window's points.")
    first_seen = serializers.DateTimeField()
    last_seen = serializers.DateTimeField()
    distance_m = serializers.FloatField(help_text="Distance travelled, in metres.")
    max_speed = serializers.FloatField(allow_null=True, help_text="Metres per second.")


class TelemetrySummarySerializer(serializers.Serializer[dict[str, Any]]):
    device_id = serializers.IntegerField()
    window = serializers.ChoiceField(choices=sorted(WINDOWS))
    to = serializers.DateTimeField()
    results = WindowSummarySerializer(many=True)

    def get_fields(self) -> dict[str, AnyField]:
        fields = super().get_fields()
        # "from" is a Python keyword, so it cannot be declared as a class attribute.
        fields["from"] = serializers.DateTimeField()
        return fields


class ShipmentTrackSerializer(serializers.Serializer[dict[str, Any]]):
    shipment = ShipmentSerializer()
    position = PositionSerializer(allow_null=True)
    recent = TelemetrySummarySerializer()


class SummaryQuerySerializer(serializers.Serializer[None]):
    """Query parameters of GET /api/telemetry/summary/."""

    device_id = serializers.IntegerField(min_value=1, max_value=2**63 - 1)
    window = serializers.ChoiceField(choices=sorted(WINDOWS), default="1m")
    to = serializers.DateTimeField(required=False)

    def get_fields(self) -> dict[str, AnyField]:
        fields = super().get_fields()
        fields["from"] = serializers.DateTimeField(
            required=False, help_text="Must be earlier than 'to'; defaults to an hour before it."
        )
        return fields

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        end = attrs.get("to") or timezone.now()
        start = attrs.get("from") or end - timedelta(hours=1)
        if start >= end:
            raise serializers.ValidationError({"from": ["from must be earlier than to."]})
        if summary_window_count(start=start, end=end, window=attrs["window"]) > MAX_SUMMARY_WINDOWS:
            raise serializers.ValidationError(
                {
                    "window": [
                        f"At most {MAX_SUMMARY_WINDOWS} windows per request; "
                        "ask for a shorter span or a longer window."
                    ]
                }
            )
        return {**attrs, "from": start, "to": end}


class LatestQuerySerializer(serializers.Serializer[None]):
    device_id = serializers.IntegerField(min_value=1, max_value=2**63 - 1)


class TelemetryPointDocSerializer(serializers.Serializer[None]):
    """One point of a batch (documentation only)."""

    device_id = serializers.IntegerField(help_text="The sending device's own id.")
    timestamp = serializers.DateTimeField(
        help_text="RFC 3339 with a UTC offset; at most 5 minutes ahead of the server's clock "
        "and not older than the retention period."
    )
    latitude = serializers.FloatField(min_value=-90, max_value=90)
    longitude = serializers.FloatField(min_value=-180, max_value=180)
    speed = serializers.FloatField(required=False, allow_null=True, min_value=0)
    heading = serializers.FloatField(required=False, allow_null=True, min_value=0, max_value=360)
    accuracy = serializers.FloatField(required=False, allow_null=True, min_value=0)


class RejectionSerializer(serializers.Serializer[dict[str, Any]]):
    index = serializers.IntegerField(
        help_text="Position in the array, or line number (from 0) in NDJSON."
    )
    reason = serializers.ChoiceField(
        choices=[
            "malformed",
            "not_finite",
            "foreign_device",
            "latitude_out_of_range",
            "longitude_out_of_range",
            "speed_out_of_range",
            "heading_out_of_range",
            "accuracy_out_of_range",
            "timestamp_without_timezone",
            "timestamp_in_future",
            "timestamp_too_old",
        ]
    )
    message = serializers.CharField()


class TelemetryIngestResultSerializer(serializers.Serializer[dict[str, Any]]):
    accepted = serializers.IntegerField(help_text="New points stored.")
    duplicates = serializers.IntegerField(
        help_text="Points already stored, or repeated in this batch (same device and timestamp)."
    )
    rejected = RejectionSerializer(many=True)
