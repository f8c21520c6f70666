"""Deliveries of notifications by e-mail and push, and the device tokens push goes to.

A delivery is one message on one channel to one recipient. Its ``status`` is a
small state machine; every transition is a conditional UPDATE, so two workers
never both own a row:

    pending --claim--> claimed --provider accepted--> sent
       ^                  |----transient failure----> pending (next_attempt_at later)
       |                  |----permanent failure / attempts spent--> dead
       +------replay----------------------------------------------- dead

A claim is a lease (``claimed_until``): a worker killed mid-batch leaves its
rows claimed, and they become claimable again only once the lease has run out.
``dead`` rows are the dead letters: parked with their last error for staff.
"""

from __future__ import annotations

from typing import Any, cast

from django.conf import settings
from django.db import models
from django.db.models import Q


class Channel(models.TextChoices):
    EMAIL = "email", "E-mail"
    PUSH = "push", "Push"


def channel_config(channel: str) -> dict[str, Any]:
    """The channel's entry of NOTIFICATION_CHANNELS (queue, batch size, rate, concurrency)."""
    return cast("dict[str, dict[str, Any]]", settings.NOTIFICATION_CHANNELS)[channel]


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    CLAIMED = "claimed", "Claimed"
    SENT = "sent", "Sent"
    # Nothing to send to: no e-mail address, no registered device.
    SKIPPED = "skipped", "Skipped"
    DEAD = "dead", "Dead letter"


class Delivery(models.Model):
    id = models.BigAutoField(primary_key=True)
    channel = models.CharField(max_length=16, choices=Channel.choices)
    # Indexed for the cascade when an account is deleted, and for support's lookups.
    recipient = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+"
    )
    kind = models.CharField(max_length=64)
    # {"title", "body", "data"}: what the adapters render.
    payload = models.JSONField(default=dict)
    critical = models.BooleanField(default=False)
    dedup_key = models.CharField(max_length=200)
    status = models.CharField(
        max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING
    )
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField()
    claimed_until = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    # Push: the device tokens that already accepted this message (a retry skips them).
    sent_to = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["channel", "dedup_key"], name="notification_delivery_dedup_unique"
            ),
            models.CheckConstraint(
                condition=Q(channel__in=Channel.values), name="notification_delivery_channel_valid"
            ),
        ]
        indexes = [
            # The sweep: due work only, so sent rows (nearly all) cost nothing.
            models.Index(
                fields=["next_attempt_at"],
                name="notif_delivery_due_idx",
                condition=Q(status__in=[DeliveryStatus.PENDING, DeliveryStatus.CLAIMED]),
            ),
            # Dead letters for staff, newest first, by channel.
            models.Index(
                fields=["channel", "-finished_at"],
                name="notif_delivery_dead_idx",
                condition=Q(status=DeliveryStatus.DEAD),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.channel}:{self.dedup_key} ({self.status})"


class DevicePlatform(models.TextChoices):
    ANDROID = "android", "Android"
    IOS = "ios", "iOS"
    WEB = "web", "Web"


class DeviceToken(models.Model):
    """A push token a user's app registered; removed when the provider says it is dead."""

    id = models.BigAutoField(primary_key=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="device_tokens"
    )
    platform = models.CharField(max_length=16, choices=DevicePlatform.choices)
    token = models.CharField(max_length=512, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_seen_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.platform} token of user {self.user_id}"
