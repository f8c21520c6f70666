"""Shapes of subscriptions and of the delivery log."""

from __future__ import annotations

from rest_framework import serializers

from emporium.integrations.webhooks.models import (
    WebhookAttempt,
    WebhookDelivery,
    WebhookSubscription,
)
from emporium.integrations.webhooks.services import WEBHOOK_EVENT_TYPES


class SubscriptionSerializer(serializers.ModelSerializer[WebhookSubscription]):
    url = serializers.CharField(max_length=2000)
    event_types = serializers.ListField(
        child=serializers.CharField(max_length=64),
        allow_empty=False,
        help_text="Domain event types to receive: " + ", ".join(WEBHOOK_EVENT_TYPES) + ".",
    )
    signing_secrets = serializers.SerializerMethodField(
        help_text="How many secrets sign each request now (2 during a rotation's grace period)."
    )

    class Meta:
        model = WebhookSubscription
        fields = [
            "id",
            "url",
            "description",
            "event_types",
            "is_active",
            "signing_secrets",
            "previous_secret_expires_at",
            "failing_since",
            "disabled_at",
            "disabled_reason",
            "created_at",
            "updated_at",
        ]
        read_only_fields = [
            "id",
            "signing_secrets",
            "previous_secret_expires_at",
            "failing_since",
            "disabled_at",
            "disabled_reason",
            "created_at",
            "updated_at",
        ]

    def get_signing_secrets(self, subscription: WebhookSubscription) -> int:
        from django.utils import timezone

        expires = subscription.previous_secret_expires_at
        return 2 if expires is not None and expires > timezone.now() else 1


class IssuedSubscriptionSerializer(SubscriptionSerializer):
    secret = serializers.CharField(
        read_only=True,
        help_text="The signing secret, shown only in this response; store it with the receiver.",
    )

    class Meta(SubscriptionSerializer.Meta):
        fields = [*SubscriptionSerializer.Meta.fields, "secret"]
        read_only_fields = fields


class SecretRotateSerializer(serializers.Serializer[None]):
    grace_seconds = serializers.IntegerField(
        min_value=0,
        default=86400,
        help_text="How long the current secret keeps signing beside the new one (0: stop now).",
    )


class AttemptSerializer(serializers.ModelSerializer[WebhookAttempt]):
    class Meta:
        model = WebhookAttempt
        fields = [
            "number",
            "request_headers",
            "response_status",
            "response_body",
            "latency_ms",
            "error",
            "created_at",
        ]
        read_only_fields = fields


class DeliverySerializer(serializers.ModelSerializer[WebhookDelivery]):
    request_body = serializers.JSONField(source="request_body_json", read_only=True)
    log = AttemptSerializer(many=True, read_only=True)

    class Meta:
        model = WebhookDelivery
        fields = [
            "id",
            "event_id",
            "event_type",
            "aggregate_type",
            "aggregate_id",
            "request_id",
            "request_body",
            "status",
            "attempts",
            "next_attempt_at",
            "response_status",
            "response_body",
            "latency_ms",
            "last_error",
            "created_at",
            "last_attempt_at",
            "delivered_at",
            "log",
        ]
        read_only_fields = fields
