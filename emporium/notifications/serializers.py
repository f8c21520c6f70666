"""Request validation and response documentation of the inbox API.

Responses are built by :func:`emporium.notifications.services.notification_event`
and :func:`emporium.notifications.broadcasts.broadcast_progress`; the
serializers here describe them for the schema.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import inline_serializer
from rest_framework import serializers

from emporium.notifications.models import (
    AudienceType,
    BroadcastStatus,
    NotificationChannel,
    NotificationKind,
)

CHANNEL_CHOICES = NotificationChannel.choices


class NotificationListQuerySerializer(serializers.Serializer[None]):
    unread = serializers.BooleanField(
        required=False, default=False, help_text="Only notifications not read yet."
    )
    since = serializers.IntegerField(
        required=False,
        min_value=0,
        help_text=(
            "Resync after a /ws/notifications/ reconnection: the notifications with an id "
            "above this one, oldest first, as {results, has_more}; cursor pages otherwise."
        ),
    )
    limit = serializers.IntegerField(
        min_value=1, max_value=500, default=100, help_text="Page size with since."
    )


# Built from a dict because a field named "data" would shadow Serializer.data.
_NOTIFICATION_FIELDS: dict[str, serializers.Field[Any, Any, Any, Any]] = {
    "id": serializers.IntegerField(),
    "type": serializers.ChoiceField(choices=["notification"]),
    "kind": serializers.ChoiceField(choices=NotificationKind.choices),
    "title": serializers.CharField(),
    "body": serializers.CharField(),
    "data": serializers.DictField(
        help_text="order_id (and order_status), product_id, broadcast_id, or a digest's items."
    ),
    "read_at": serializers.DateTimeField(allow_null=True),
    "created_at": serializers.DateTimeField(),
}
NotificationSerializer = inline_serializer(name="Notification", fields=_NOTIFICATION_FIELDS)
NotificationListSerializer = inline_serializer(
    name="Notification", fields=_NOTIFICATION_FIELDS, many=True
)


class NotificationSincePageSerializer(serializers.Serializer[dict[str, Any]]):
    results = serializers.ListField(child=NotificationSerializer)
    has_more = serializers.BooleanField(help_text="Ask again with since=<last id> for more.")


class UnreadCountSerializer(serializers.Serializer[dict[str, Any]]):
    unread = serializers.IntegerField()
    capped = serializers.BooleanField(help_text="True when there are more unread than shown.")


class ReadAllSerializer(serializers.Serializer[dict[str, Any]]):
    up_to_id = serializers.IntegerField(
        required=False,
        min_value=1,
        help_text="Only notifications up to this id (what the client has seen).",
    )


class ReadAllResultSerializer(serializers.Serializer[dict[str, Any]]):
    marked = serializers.IntegerField()


class QuietHoursSerializer(serializers.Serializer[dict[str, Any]]):
    start = serializers.TimeField(format="%H:%M")
    end = serializers.TimeField(format="%H:%M")


class PreferencesSerializer(serializers.Serializer[dict[str, Any]]):
    """The whole preference matrix on GET; on PUT, only what changes."""

    channels = serializers.DictField(
        child=serializers.DictField(child=serializers.BooleanField()),
        required=False,
        help_text="{kind: {channel: on/off}}; kinds and channels as listed in GET.",
    )
    time_zone = serializers.CharField(required=False, max_length=64)
    quiet_hours = QuietHoursSerializer(
        required=False,
        allow_null=True,
        help_text="Local times; push that is not critical waits until they end. null: none.",
    )
    critical_kinds = serializers.ListField(
        child=serializers.CharField(), read_only=True, help_text="Sent whatever the settings."
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if not attrs:  # an empty or missing body changes nothing: a mistake, not a request
            raise serializers.ValidationError(
                "Name at least one of channels, time_zone and quiet_hours."
            )
        return attrs


class AudienceSerializer(serializers.Serializer[dict[str, Any]]):
    type = serializers.ChoiceField(choices=AudienceType.choices)
    value = serializers.IntegerField(
        required=False,
        allow_null=True,
        help_text="The product or category id, or the number of days (recent_buyers).",
    )


class BroadcastCreateSerializer(serializers.Serializer[dict[str, Any]]):
    """Lengths and channels are checked by the service, which answers every problem at once."""

    title = serializers.CharField(trim_whitespace=False, allow_blank=True)
    body = serializers.CharField(trim_whitespace=False, allow_blank=True)
    channels = serializers.ListField(child=serializers.CharField(), allow_empty=True)
    audience = AudienceSerializer()


class BroadcastSerializer(serializers.Serializer[dict[str, Any]]):
    id = serializers.IntegerField()
    title = serializers.CharField()
    channels = serializers.ListField(child=serializers.ChoiceField(choices=CHANNEL_CHOICES))
    audience = AudienceSerializer()
    status = serializers.ChoiceField(choices=BroadcastStatus.choices)
    batches_total = serializers.IntegerField()
    batches_done = serializers.IntegerField()
    recipients_planned = serializers.IntegerField()
    recipients_done = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
