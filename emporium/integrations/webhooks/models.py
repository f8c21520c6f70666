"""Webhook subscriptions and the deliveries made to them.

A delivery is one domain event for one subscription: its body is fixed when
it is created (a replay sends the same bytes), and it is sent, retried and
given up on by :mod:`emporium.integrations.webhooks.services`. Deliveries of
one aggregate (one order) to one subscription go out in the order they were
created: a delivery is only sent while no earlier one of the same
``(subscription, aggregate_type, aggregate_id)`` is still pending.
"""

from __future__ import annotations

import json
from typing import Any

from django.db import models
from django.db.models import Q

from emporium.core.encryption import EncryptedTextField, row_uuid_field
from emporium.core.models import TimeStampedModel


class WebhookSubscription(TimeStampedModel):
    """An endpoint that receives the domain events of the listed types, signed."""

    row_uuid = row_uuid_field()
    url = models.URLField(max_length=2000)
    description = models.CharField(max_length=200, blank=True, default="")
    event_types = models.JSONField(default=list)
    # Sealed at rest (emporium.core.encryption), bound to this row: shown once, at creation.
    secret = EncryptedTextField()
    # After a rotation the former secret signs too, until previous_secret_expires_at.
    previous_secret = EncryptedTextField(null=True, blank=True)
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True)
    is_active = models.BooleanField(default=True)
    # Since when every attempt failed (None while the endpoint answers); the
    # subscription is disabled once this is older than WEBHOOKS_DISABLE_AFTER_SECONDS.
    failing_since = models.DateTimeField(null=True, blank=True)
    disabled_at = models.DateTimeField(null=True, blank=True)
    disabled_reason = models.CharField(max_length=300, blank=True, default="")

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"webhook {self.pk} → {self.url}"


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"  # waiting for its turn, its first attempt or a retry
    DELIVERED = "delivered", "Delivered"  # the endpoint answered 2xx
    FAILED = "failed", "Failed"  # given up: a final answer or too many attempts


class WebhookDelivery(models.Model):
    """One event for one subscription: the request as sent and the last answer."""

    subscription = models.ForeignKey(
        WebhookSubscription, on_delete=models.CASCADE, related_name="deliveries"
    )
    event_id = models.UUIDField()
    event_type = models.CharField(max_length=64)
    aggregate_type = models.CharField(max_length=32)
    aggregate_id = models.CharField(max_length=64)
    # The JSON body exactly as signed and sent.
    request_body = models.TextField()
    # The request id of the work that recorded the event (X-Request-ID).
    request_id = models.CharField(max_length=128, blank=True, default="")
    status = models.CharField(
        max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING
    )
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField()
    # A sender holds the delivery until this time; after it (the sender died) it is free again.
    lease_until = models.DateTimeField(null=True, blank=True)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.TextField(blank=True, default="")  # bounded slice
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            # A re-relayed event never makes a second delivery.
            models.UniqueConstraint(
                fields=["subscription", "event_id"], name="webhook_delivery_once_per_event"
            ),
        ]
        indexes = [
            # The sweep's "due and first of its aggregate" and the ordering check.
            models.Index(
                fields=["subscription", "aggregate_type", "aggregate_id", "id"],
                condition=Q(status="pending"),
                name="webhook_delivery_pending_idx",
            ),
            models.Index(
                fields=["next_attempt_at"],
                condition=Q(status="pending"),
                name="webhook_delivery_due_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"delivery {self.pk} {self.event_type} → subscription {self.subscription_id}"

    @property
    def request_body_json(self) -> Any:
        return json.loads(self.request_body)


class WebhookAttempt(models.Model):
    """One request of a delivery and what came back: the delivery log."""

    delivery = models.ForeignKey(WebhookDelivery, on_delete=models.CASCADE, related_name="log")
    number = models.PositiveIntegerField()  # 1 for the first attempt (of a replay too)
    request_headers = models.JSONField(default=dict)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.TextField(blank=True, default="")  # bounded slice
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    error = models.CharField(max_length=500, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["delivery", "id"], name="webhook_attempt_delivery_idx")]

    def __str__(self) -> str:
        return f"attempt {self.number} of delivery {self.delivery_id}"
