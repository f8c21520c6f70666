from __future__ import annotations

from typing import Any

from rest_framework import serializers

from emporium.notifications.channels.models import Channel, Delivery, DevicePlatform, DeviceToken


class DeviceTokenInputSerializer(serializers.Serializer[Any]):
    token = serializers.CharField(max_length=512, trim_whitespace=False)
    platform = serializers.ChoiceField(choices=DevicePlatform.choices)


class DeviceTokenDeleteSerializer(serializers.Serializer[Any]):
    token = serializers.CharField(max_length=512, trim_whitespace=False)


class DeviceTokenSerializer(serializers.ModelSerializer[DeviceToken]):
    class Meta:
        model = DeviceToken
        fields = ["id", "platform", "token", "created_at", "last_seen_at"]


class DeadLetterSerializer(serializers.ModelSerializer[Delivery]):
    recipient_id = serializers.IntegerField(read_only=True)

    class Meta:
        model = Delivery
        fields = [
            "id",
            "channel",
            "recipient_id",
            "kind",
            "dedup_key",
            "critical",
            "payload",
            "attempts",
            "last_error",
            "created_at",
            "finished_at",
        ]


class DeadLetterFilterSerializer(serializers.Serializer[Any]):
    channel = serializers.ChoiceField(choices=Channel.choices, required=False)
    error = serializers.CharField(max_length=200, required=False)


class DeadLetterBulkReplaySerializer(serializers.Serializer[Any]):
    """Which dead letters to replay: by id, or every one matching channel and error."""

    ids = serializers.ListField(
        child=serializers.IntegerField(min_value=1), max_length=10_000, required=False
    )
    channel = serializers.ChoiceField(choices=Channel.choices, required=False)
    error = serializers.CharField(max_length=200, required=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if not attrs.get("ids") and not attrs.get("channel") and not attrs.get("error"):
            raise serializers.ValidationError("Name ids, or a channel or error to match.")
        return attrs


class ReplayResultSerializer(serializers.Serializer[Any]):
    replayed = serializers.IntegerField()
